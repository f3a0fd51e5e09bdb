// Renders the Markdown table (the one `xllama bench -o md` prints, footer included) from a saved
// `xllama bench -o json` document, so one GPU run gives both: node scripts/device/summarize-bench.mjs bench.json
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const { renderMarkdown } = await import(join(root, 'dist', 'cli', 'bench', 'output.js'));
const doc = JSON.parse(readFileSync(process.argv[2], 'utf8'));
const run = { version: doc.xllama.version, commit: doc.xllama.commit, driver: doc.system.driver, ...doc.settings };
process.stdout.write(renderMarkdown(doc.results, run, { gpus: doc.system.gpus, gpuNote: doc.system.gpuNote, cuda: doc.system.cuda }));
