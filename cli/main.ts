// xllama's command-line entry: registers each subcommand and turns user errors into one-line messages.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Command, CommanderError } from 'commander';
import { isUserError } from './errors.js';
import { packageRoot } from './native/addon.js';
import { registerInfo } from './commands/info.js';
import { registerGenerate } from './commands/generate.js';
import { registerGpuMonitor } from './commands/gpu-monitor.js';
import { registerBench } from './commands/bench.js';
import { registerPpl } from './commands/ppl.js';
import { registerBuild } from './commands/build.js';
import { registerChat } from './commands/chat.js';

function packageVersion(): string {
  const pkg = JSON.parse(readFileSync(join(packageRoot, 'package.json'), 'utf8')) as { version: string };
  return pkg.version;
}

export function buildProgram(): Command {
  const program = new Command();
  program
    .name('xllama')
    .description('Chat with, evaluate and benchmark GPTQ 4-bit Llama-family models on NVIDIA GPUs')
    .version(packageVersion(), '-V, --version')
    .showHelpAfterError('(run with --help for usage)')
    .exitOverride()
    .configureOutput({ writeErr: (s) => process.stderr.write(s) })
    .addHelpText(
      'after',
      `
Examples:
  $ xllama info --gpus                       backends and GPUs this machine has
  $ xllama info ./Llama-2-7B-GPTQ            architecture, quantization and memory of a model
  $ xllama info ./Llama-2-7B-GPTQ --json     the same as JSON
  $ xllama generate -m ./Llama-2-7B-GPTQ -p "The capital of France is" -n 32 --temperature 0
  $ xllama bench --dummy llama-7b            speed and memory of a random 7B GPTQ model, no download
  $ xllama gpu-monitor                       live per-engine GPU utilization (q to quit)`,
    );
  registerInfo(program);
  registerGenerate(program);
  registerGpuMonitor(program);
  registerBench(program);
  registerPpl(program);
  registerBuild(program);
  registerChat(program);
  return program;
}

export async function main(argv: string[]): Promise<number> {
  const program = buildProgram();
  try {
    await program.parseAsync(argv);
    return 0;
  } catch (err) {
    if (err instanceof CommanderError) {
      // --help and --version end with exit code 0; usage errors have been printed by commander.
      return err.exitCode === 0 ? 0 : 2;
    }
    if (isUserError(err)) {
      process.stderr.write(`xllama: ${err.message}\n`);
      return err.exitCode;
    }
    const e = err as Error;
    process.stderr.write(`xllama: internal error: ${e?.message ?? String(err)}\n`);
    if (process.env.XLLAMA_DEBUG) process.stderr.write(`${e?.stack}\n`);
    return 1;
  }
}

// Run when executed (bin/xllama.js imports this module).
const code = await main(process.argv);
process.exitCode = code;
