// xllama's command-line entry: registers each subcommand, turns errors into one-line messages and sets
// the exit code (README "Exit codes": 0 ok, 1 runtime failure, 2 bad input or flags, 130 interrupted).
import { Command, CommanderError } from 'commander';
import { ExitCode, Interrupted, isUserError } from './errors.js';
import { installStdoutGuard, stdoutFailed } from './stdout-guard.js';
import { usageErrorLine } from './usage-error.js';
import { versionText } from './version.js';
import { registerInfo } from './commands/info.js';
import { registerGenerate } from './commands/generate.js';
import { registerGpuMonitor } from './commands/gpu-monitor.js';
import { registerBench } from './commands/bench.js';
import { registerPpl } from './commands/ppl.js';
import { registerBuild } from './commands/build.js';
import { registerChat } from './commands/chat.js';

export function buildProgram(): Command {
  const program = new Command();
  program
    .name('xllama')
    .description('Chat with, evaluate and benchmark GPTQ 4-bit Llama-family models on NVIDIA GPUs')
    .option('-V, --version', 'print the version, commit, backends and CUDA version')
    .exitOverride()
    // Usage errors are printed by main, on one line (see usage-error.ts).
    .configureOutput({ writeErr: (s) => process.stderr.write(s), outputError: () => {} })
    .addHelpText(
      'after',
      `
Examples:
  $ xllama chat                              chat with the bundled demo model (stories260K), no download
  $ xllama chat -m ./Llama-2-7B-Chat-GPTQ    chat with your model, its own chat template
  $ xllama info --gpus                       backends and GPUs this machine has
  $ xllama info ./Llama-2-7B-GPTQ            architecture, quantization and memory of a model
  $ xllama info ./Llama-2-7B-GPTQ --json     the same as JSON
  $ xllama generate -m ./Llama-2-7B-GPTQ -p "The capital of France is" -n 32 --temperature 0
  $ xllama generate                          a story from the bundled demo model (stories260K)
  $ xllama ppl -m ./Llama-2-7B-GPTQ -f wiki.test.raw   perplexity, the GPTQ papers' recipe
  $ xllama bench --dummy llama-7b            speed and memory of a random 7B GPTQ model, no download
  $ xllama gpu-monitor                       live per-engine GPU utilization (q to quit)

Exit codes: 0 ok, 1 runtime failure, 2 bad input or flags, 130 interrupted (Ctrl+C).`,
    );
  // Computed only when asked: it loads the native addon.
  program.on('option:version', () => {
    process.stdout.write(versionText());
    throw new CommanderError(ExitCode.ok, 'commander.version', 'version');
  });
  registerChat(program);
  registerGenerate(program);
  registerPpl(program);
  registerBench(program);
  registerInfo(program);
  registerGpuMonitor(program);
  registerBuild(program);
  return program;
}

/** The subcommand the user typed (for "see xllama generate --help"), if any. */
function commandNameIn(program: Command, args: string[]): string | undefined {
  const first = args[0];
  return program.commands.find((c) => c.name() === first || c.aliases().includes(first ?? ''))?.name();
}

export async function main(argv: string[]): Promise<number> {
  installStdoutGuard();
  const program = buildProgram();
  const args = argv.slice(2);
  if (args.length === 0) {
    // As git and npm do: the help, and a failure code so scripts notice that nothing was done.
    program.outputHelp();
    return ExitCode.failure;
  }
  if (args[0] === 'help' && args[1] !== undefined && !commandNameIn(program, args.slice(1))) {
    process.stderr.write(`xllama: ${usageErrorLine(`unknown command '${args[1]}'`)}\n`);
    return ExitCode.badInput;
  }
  try {
    await program.parseAsync(argv);
    return ExitCode.ok;
  } catch (err) {
    if (err instanceof CommanderError) {
      // --help and --version: 0. Help commander shows by itself when no command was given: its code, 1.
      if (err.code === 'commander.helpDisplayed' || err.code === 'commander.version' || err.code === 'commander.help') {
        return err.exitCode;
      }
      process.stderr.write(`xllama: ${usageErrorLine(err.message, commandNameIn(program, args))}\n`);
      return ExitCode.badInput;
    }
    if (err instanceof Interrupted) return err.exitCode;
    if (isUserError(err)) {
      process.stderr.write(`xllama: ${err.message}\n`);
      return err.exitCode;
    }
    const e = err as Error;
    process.stderr.write(`xllama: internal error: ${e?.message ?? String(err)}\n`);
    if (process.env.XLLAMA_DEBUG) process.stderr.write(`${e?.stack}\n`);
    return ExitCode.failure;
  }
}

// Run when executed (bin/xllama.js imports this module). A failed write to stdout (guard) overrides 0.
const code = await main(process.argv);
process.exitCode = stdoutFailed() && code === ExitCode.ok ? ExitCode.failure : code;
