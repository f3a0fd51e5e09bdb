// `xllama chat` on a GPU.
// (1) The KV cache kept across turns is exact on the backend: for each fixture model, turn 2's greedy reply
//     (prefilling only what the cache lacks) against generate() over the whole rendered history from an empty
//     cache: the same ids, or where they part and the reference's top-2 margin there (fp16 activations may
//     break a near-tie the other way). Then the same with a repetition penalty, picked on the backend from the
//     token history the reply sets (the whole conversation), against the host sampler's penalties.
// (2) Speed with --dummy llama-7b (--no-speed skips it): each reply's tokens/s — the figure the status line
//     shows — against `xllama bench`'s decode over the same stretch of the cache, and what turn 2 prefilled,
//     from the plain line mode and, where `script` gives a pseudo-terminal, from the Ink screen's last status line.
// Writes $OUT/chat-<backend>.json and prints a summary; exit 1 if a check fails.
//   node scripts/device/check-chat.mjs [--backend cuda|cpu] [--no-speed] [--dummy NAME]
import { spawn, spawnSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { loadModelSpec } from '../../dist/cli/engine/loader/index.js';
import { NativeModel } from '../../dist/cli/engine/native-model.js';
import { TextTokenizer } from '../../dist/cli/engine/tokenizer.js';
import { ChatSession } from '../../dist/cli/engine/chat-session.js';
import { chatPromptIds, resolveChatFormat } from '../../dist/cli/engine/chat-templates.js';
import { generate } from '../../dist/cli/engine/generate.js';

const args = process.argv.slice(2);
const opt = (name, fallback) => (args.includes(name) ? args[args.indexOf(name) + 1] : fallback);
const backend = opt('--backend', 'cuda');
const dummy = opt('--dummy', 'llama-7b');
const out = process.env.OUT ?? '.';
mkdirSync(out, { recursive: true });
const GREEDY = { temperature: 0, topK: 0, topP: 1, minP: 0, typicalP: 1, repeatPenalty: 1, frequencyPenalty: 0, presencePenalty: 0 };
const MODELS = ['stories260K', 'stories260K-gptq-4bit-g32', 'stories260K-gptq-4bit-g64-actorder'];
const report = { backend, exactness: [], speed: null };
let failures = 0;
const lines = [];
function check(name, ok, detail) {
  lines.push(`${ok ? 'PASS' : 'FAIL'}  ${name}  ${detail}`);
  if (!ok) failures++;
}

async function drain(reply) {
  for await (const _ of reply);
  return reply;
}

function top2Margin(logits) {
  let a = -Infinity, b = -Infinity;
  for (const v of logits) {
    if (v > a) { b = a; a = v; } else if (v > b) b = v;
  }
  return a - b;
}

// ---- (1) exactness of the cache reuse
// A typical-p a hair under 1 keeps the reference's penalties on the host sampler and drops nothing it would keep.
const SAMPLINGS = [
  { label: '', chat: GREEDY, ref: GREEDY },
  { label: ' (repeat penalty 1.3)', chat: { ...GREEDY, repeatPenalty: 1.3 }, ref: { ...GREEDY, repeatPenalty: 1.3, typicalP: 0.999999999 } },
];
for (const name of MODELS) for (const { label, chat, ref: refSampling } of SAMPLINGS) {
  const spec = loadModelSpec(join('fixtures/models', name));
  const tok = TextTokenizer.fromFiles(spec.tokenizer, spec);
  const format = resolveChatFormat(tok, { modelName: name, source: name });
  const chatModel = await NativeModel.open(spec, { backend });
  const fresh = await NativeModel.open(spec, { backend });
  try {
    const session = new ChatSession(chatModel, tok, { format, sampling: chat, seed: 1, maxTokens: 48, system: 'A short story.' });
    await drain(session.send('Once there was a dog.'));
    const r2 = await drain(session.send('What did it do?'));
    const ids = chatPromptIds(tok, format.template.render(session.messages.slice(0, 4)));
    const chatIds = chatModel.cachedTokens.slice(ids.length);
    const ref = generate(fresh, tok, ids, { maxTokens: 48, sampling: refSampling, seed: 0, stop: format.stopStrings, stopTokenIds: format.stopTokenIds });
    let refText = '';
    for await (const t of ref) refText += t.text;
    const refIds = ref.generatedIds.slice(0, -1); // the last pick is never fed to the cache
    let same = 0;
    while (same < refIds.length && chatIds[same] === refIds[same]) same++;
    const exact = same === refIds.length && chatIds.length === refIds.length && r2.text === refText;
    let margin = null;
    if (!exact) {
      await fresh.trimCache(0);
      margin = top2Margin(await fresh.forward(ids.concat(refIds.slice(0, same)), 0));
    }
    const entry = {
      model: name + label, promptTokens: r2.stats.promptTokens, cachedPromptTokens: r2.stats.cachedPromptTokens,
      generated: refIds.length + 1, sameIds: same, exact, marginWhereTheyPart: margin,
    };
    report.exactness.push(entry);
    check(`${name}${label}: turn 2 = generate over the history`, exact || (margin !== null && margin < 0.05),
      exact ? `same ${refIds.length + 1} ids; ${r2.stats.cachedPromptTokens} of ${r2.stats.promptTokens} prompt tokens from the cache`
        : `ids part after ${same} (top-2 margin there ${margin?.toFixed(4)})`);
  } finally {
    chatModel.close();
    fresh.close();
  }
}

// ---- (2) speed with a dummy model
const STATS = /reply (\d+) tokens, ([\d.,]+) tok\/s; first token after ([\d.]+ m?s); prompt ([\d,]+) tokens \(([\d,]+) prefilled, ([\d,]+) from the cache\)/;
const num = (s) => Number(String(s).replace(/,/g, ''));
const xllama = (argv, input) => spawnSync(process.execPath, ['bin/xllama.js', ...argv], { encoding: 'utf8', input, timeout: 300_000 });

/** The environment without CI markers: Ink draws nothing live when it believes it runs in CI. */
function withoutCi() {
  const env = { ...process.env };
  delete env.CI;
  delete env.CONTINUOUS_INTEGRATION;
  return env;
}

/** The Ink screen in a pseudo-terminal from util-linux `script`: sends each message once the prompt is back. */
function inkRun(chatArgs, messages) {
  return new Promise((resolve) => {
    // The pseudo-terminal starts 0×0 (no terminal feeds `script`): give it a size first.
    const cmd = `stty cols 100 rows 30; ${['node', 'bin/xllama.js', 'chat', ...chatArgs].map((a) => `'${a.replace(/'/g, "'\\''")}'`).join(' ')}`;
    const child = spawn('script', ['-qfec', cmd, '/dev/null'], { env: withoutCi(), stdio: ['pipe', 'pipe', 'pipe'] });
    let screen = '';
    let sent = 0;
    let promptsSeen = 0;
    const timer = setTimeout(() => child.kill('SIGKILL'), 240_000);
    child.stdout.on('data', (d) => {
      screen += d.toString();
      const prompts = screen.split('Send a message').length - 1;
      if (prompts > promptsSeen) {
        promptsSeen = prompts;
        if (sent < messages.length) child.stdin.write(`${messages[sent++]}\r`);
        else if (sent === messages.length) { sent++; child.stdin.write('\x04'); }
      }
    });
    child.on('close', (code) => {
      clearTimeout(timer);
      const text = screen.replace(/\x1b\[[0-9;?]*[A-Za-z]/g, '').replace(/\r/g, '');
      const all = [...text.matchAll(/([\d.,]+) tok\/s · first token ([\d.]+ m?s)/g)];
      resolve({ code, statuses: all.map((m) => ({ tokensPerSec: num(m[1]), firstToken: m[2] })) });
    });
  });
}

if (!args.includes('--no-speed') && backend === 'cuda') {
  const speed = {};
  // A long system prompt makes turn 1's first token slow; turn 2 prefills only its own message.
  const system = join(out, 'chat-system.txt');
  writeFileSync(system, 'You are a careful assistant who answers in plain words. '.repeat(120));
  const chatArgs = ['--dummy', dummy, '--max-seq-len', '2048', '--temperature', '0', '-n', '256', '--system-file', system];
  const messages = ['Hello there, who are you?', 'Tell me more about that, please.'];
  const plain = xllama(['chat', ...chatArgs], `${messages.join('\n')}\n`);
  const turns = plain.stderr.split('\n').map((l) => STATS.exec(l)).filter(Boolean).map((m) => ({
    tokens: num(m[1]), tokensPerSec: num(m[2]), firstToken: m[3], promptTokens: num(m[4]), prefilled: num(m[5]), cached: num(m[6]),
  }));
  speed.plain = { status: plain.status, turns, stderr: plain.status === 0 ? undefined : plain.stderr.trim() };
  if (turns.length !== 2) {
    check('plain chat', false, plain.stderr.trim().split('\n').slice(-3).join(' | '));
  } else {
    // bench's decode over the same stretch of the cache as each reply: from its prompt's end, 256 tokens.
    const contexts = turns.map((t) => t.promptTokens).join(',');
    const b = xllama(['bench', '--dummy', dummy, '--max-seq-len', '2048', '-p', 'none', '-d', contexts, '-n', '256',
      '-r', '3', '--json']);
    const rows = b.status === 0 ? JSON.parse(b.stdout).results.filter((r) => r.kind === 'tg' && r.status === 'ok') : [];
    speed.bench = rows.length === turns.length
      ? turns.map((t) => rows.find((r) => r.depth === t.promptTokens)).map((r) => ({ context: r.depth, tokensPerSec: r.tokensPerSec.mean }))
      : null;
    if (!speed.bench) check('bench', false, b.stderr.trim());
    for (const [i, t] of turns.entries()) {
      if (!speed.bench) break;
      const ref = speed.bench[i].tokensPerSec;
      check(`plain chat turn ${i + 1} speed`, t.tokensPerSec >= 0.95 * ref, `${t.tokensPerSec} tok/s = ${(100 * t.tokensPerSec / ref).toFixed(1)}% ` +
        `of bench decode @${speed.bench[i].context} (${ref.toFixed(1)}); first token ${t.firstToken}; prefilled ${t.prefilled}, ${t.cached} from the cache`);
    }
    // Turn 1's whole prompt must come from the cache. Its reply is rendered back as text: where a random model's
    // tokens don't re-tokenize the same way, the rest of the reply is prefilled again (exactness first).
    check('turn 2 reuses the cache', turns[1].cached >= turns[0].promptTokens,
      `turn 1: prompt ${turns[0].promptTokens}, first token ${turns[0].firstToken}; turn 2: ${turns[1].prefilled} prefilled, ` +
      `${turns[1].cached} from the cache, first token ${turns[1].firstToken}`);
    if (spawnSync('script', ['--version']).status === 0) {
      const ink = await inkRun(chatArgs, messages);
      speed.ink = ink;
      const last = ink.statuses.at(-1);
      if (last && speed.bench) {
        const ref = speed.bench[1].tokensPerSec;
        check('Ink status line speed (turn 2)', last.tokensPerSec >= 0.95 * ref && ink.code === 0,
          `${last.tokensPerSec} tok/s = ${(100 * last.tokensPerSec / ref).toFixed(1)}% of bench decode @${speed.bench[1].context}; ` +
          `first token ${last.firstToken}; exit ${ink.code}`);
      } else {
        check('Ink status line', false, `no status line read (exit ${ink.code})`);
      }
    } else {
      lines.push('SKIP  Ink status line: no `script` (util-linux) for a pseudo-terminal');
    }
  }
  report.speed = speed;
}

writeFileSync(join(out, `chat-${backend}.json`), `${JSON.stringify(report, null, 2)}\n`);
console.log(lines.join('\n'));
console.log(failures === 0 ? 'chat checks: all passed' : `chat checks: ${failures} failed`);
process.exit(failures === 0 ? 0 : 1);
