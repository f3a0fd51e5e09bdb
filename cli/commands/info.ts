// `xllama info [MODEL_DIR] [--gpus] [--json]`: what this machine can run, and what a model is.
import type { Command } from 'commander';
import { loadAddon } from '../native/addon.js';
import { UserError } from '../errors.js';

interface InfoOptions {
  gpus?: boolean;
  json?: boolean;
}

function formatGiB(bytes: number): string {
  return `${(bytes / 1024 ** 3).toFixed(1)} GiB`;
}

function printGpus(json: boolean): void {
  const sys = loadAddon().systemInfo();
  const backends = ['cpu', ...(sys.cudaCompiled && sys.gpus.length > 0 ? ['cuda'] : [])];
  if (json) {
    process.stdout.write(`${JSON.stringify({ backends, ...sys })}\n`);
    return;
  }
  const lines = [`backends: ${backends.join(', ')}${sys.cudaCompiled ? ` (CUDA runtime ${sys.cudaRuntime})` : ''}`];
  if (sys.gpus.length === 0) lines.push(`GPUs: none (${sys.gpuUnavailableReason ?? 'unknown reason'})`);
  for (const g of sys.gpus) {
    lines.push(`GPU ${g.index}: ${g.name}, ${formatGiB(g.totalMemory)} (${formatGiB(g.freeMemory)} free), ` +
      `compute capability ${g.computeCapability}, ${g.multiprocessors} SMs, PCI ${g.pciBusId}`);
  }
  process.stdout.write(`${lines.join('\n')}\n`);
}

export function registerInfo(program: Command): void {
  program
    .command('info')
    .description('describe a model folder, or list the backends and GPUs (--gpus)')
    .argument('[model]', 'model folder in Hugging Face layout')
    .option('--gpus', 'list the available backends and each GPU')
    .option('--json', 'print JSON')
    .action(async (model: string | undefined, opts: InfoOptions) => {
      if (opts.gpus || !model) {
        if (!opts.gpus && !model) throw new UserError('info: give a model folder, or --gpus');
        printGpus(Boolean(opts.json));
        return;
      }
      throw new UserError('info MODEL: not implemented yet');
    });
}
