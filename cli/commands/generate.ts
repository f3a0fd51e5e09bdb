// `xllama generate [-m MODEL] [-p TEXT | -f FILE | < stdin] [...]`: plain text continuation. Text streams to
// stdout, statistics go to stderr; --json prints one object with the text, the ids and the timings instead.
// Ctrl+C stops between two tokens and exits 130; a closed stdout (`| head`) stops it quietly.
import type { Command } from 'commander';
import { Interrupted, UserError } from '../errors.js';
import { writeOut } from '../stdout-guard.js';
import { stopOnInterruptOrClosedOutput } from '../stop-signal.js';
import { loadModelSpec } from '../engine/loader/index.js';
import { TextTokenizer } from '../engine/tokenizer.js';
import { checkPromptFits, promptIds } from '../engine/prompt.js';
import { NonFiniteLogitsError } from '../engine/sampler.js';
import { generate, type GenerationStats } from '../engine/generate.js';
import { NativeModel } from '../engine/native-model.js';
import { prepareWhileOpening } from '../engine/open-while-preparing.js';
import { formatTokens } from '../format.js';
import { addAlias, collect, parseInteger } from './flags.js';
import {
  addModelArgument, addModelOptions, modelDirFrom, openOptionsFrom, withModelArgument, type ModelFlags,
} from './model-options.js';
import { addPromptOptions, promptTextFrom, type PromptFlags } from './prompt-input.js';
import { SAMPLING_DEFAULTS_HELP, addSamplingOptions, givenSampling, resolveSampling, seedFrom, type SamplingFlags } from './sampling-options.js';
import { startSpinner, withSpinner } from './spinner.js';
import { stdoutWriter } from './stdout-writer.js';

interface GenerateFlags extends ModelFlags, SamplingFlags, PromptFlags {
  maxTokens?: string;
  stop?: string[];
  json?: boolean;
}

const DEFAULT_MAX_TOKENS = 256;

function statsLine(s: GenerationStats, backend: string): string {
  const f = (v: number) => v.toFixed(1);
  // The generation rate times the steps after the first token; with fewer than two tokens there were none.
  const rate = s.generatedTokens > 1 ? `, ${f(s.generatedTokensPerSec)} tok/s` : '';
  // With -n 0 only the prompt was read, so there was no first token to time.
  const first = s.generatedTokens > 0 ? `first token after ${f(s.timeToFirstTokenMs)} ms; ` : '';
  return `${backend}: prompt ${formatTokens(s.promptTokens)}, ${f(s.promptTokensPerSec)} tok/s; ` +
    `generated ${formatTokens(s.generatedTokens)}${rate}; ${first}stop: ${s.stopReason ?? 'none'}\n`;
}

/** Every flag checked and converted; nothing is read from disk or stdin yet. */
function parseFlags(flags: GenerateFlags) {
  const stop = flags.stop ?? [];
  if (stop.some((s) => s.length === 0)) throw new UserError('--stop: a stop string is empty');
  return {
    maxTokens: parseInteger(flags.maxTokens, '-n/--max-tokens', 0) ?? DEFAULT_MAX_TOKENS,
    samplingFlags: givenSampling(flags),
    seed: seedFrom(flags),
    open: openOptionsFrom(flags),
    stop,
  };
}

async function runGenerate(flags: GenerateFlags): Promise<void> {
  const opts = parseFlags(flags);
  // Everything that can be checked without the tokenizer is checked before the weights are mapped; what needs it
  // (the prompt's length) is checked while they load.
  const spec = loadModelSpec(modelDirFrom(flags));
  const sampling = resolveSampling(opts.samplingFlags, spec.samplingDefaults);
  const modelMax = spec.arch.maxPositionEmbeddings;
  const maxSeqLen = opts.open.maxSeqLen;
  if (maxSeqLen !== undefined && maxSeqLen > modelMax) {
    throw new UserError(`--max-seq-len: ${maxSeqLen} is more than the model's max_position_embeddings (${modelMax})`);
  }
  const loadStart = performance.now();
  const { prepared: { tokenizer, ids }, opened } = await prepareWhileOpening(
    // Without --max-seq-len the backend sizes the cache: the model's context, capped by free GPU memory.
    () => NativeModel.open(spec, { ...opts.open, maxSeqLen: maxSeqLen ?? 0 }),
    async () => {
      const tokenizer = TextTokenizer.fromFiles(spec.tokenizer, spec);
      const ids = promptIds(tokenizer, await promptTextFrom(flags));
      checkPromptFits(ids, maxSeqLen ?? modelMax, maxSeqLen !== undefined ? '--max-seq-len' : "the model's context");
      return { tokenizer, ids };
    });
  const model = await withSpinner(`loading ${spec.dir}`, () => opened);
  const loadMs = performance.now() - loadStart;
  // Ctrl+C, or the reader of stdout going away, ends generation between two tokens.
  const stop = stopOnInterruptOrClosedOutput();
  try {
    checkPromptFits(ids, model.maxSeqLen, `the KV cache (${model.backend})`);
    const prefill = startSpinner(`reading the prompt (${ids.length} tokens)`);
    const run = generate(model, tokenizer, ids, {
      maxTokens: opts.maxTokens, sampling: sampling.params, seed: opts.seed, stop: opts.stop, signal: stop.signal,
    });
    let text = '';
    try {
      for await (const token of run) {
        prefill.stop();
        text += token.text;
        if (!flags.json) writeOut(token.text);
      }
    } catch (err) {
      // Name the model whose weights gave the NaN / infinite logits.
      throw err instanceof NonFiniteLogitsError ? new UserError(`${spec.dir}: ${err.message}`) : err;
    } finally {
      prefill.stop();
    }
    const { stopReason, ...stats } = run.stats;
    if (flags.json) {
      writeOut(`${JSON.stringify({
        model: spec.dir, backend: model.backend, seed: opts.seed, sampling: sampling.params,
        samplingFromModel: sampling.fromModel, stop: opts.stop,
        maxTokens: opts.maxTokens, maxSeqLen: model.maxSeqLen, text, promptIds: ids, generatedIds: run.generatedIds,
        stopReason, timings: { loadMs, ...stats },
      })}\n`);
    } else {
      // End the streamed text's last line; with no text at all (-n 0, an immediate EOS) stdout stays empty.
      if (text !== '' && !text.endsWith('\n')) writeOut('\n');
      process.stderr.write(statsLine(run.stats, model.backend));
    }
  } finally {
    stop.dispose();
    model.close();
  }
  if (stop.interrupted) throw new Interrupted();
}

export function registerGenerate(program: Command): void {
  const cmd = program
    .command('generate')
    .description('continue a text prompt (no chat template); text streams to stdout, speed to stderr');
  addModelArgument(cmd);
  addModelOptions(cmd);
  addSamplingOptions(cmd);
  addPromptOptions(cmd)
    .option('-n, --max-tokens <n>', `most tokens to generate, also --n-predict; 0 reads and times the prompt only (default ${DEFAULT_MAX_TOKENS})`)
    .option('--stop <text>', 'stop before this text (repeatable)', collect)
    .option('--json', 'print one JSON object with text, ids and timings')
    .addHelpText('after', `
${SAMPLING_DEFAULTS_HELP}

Examples:
  $ xllama generate -m ./Llama-2-7B-GPTQ -p "The capital of France is" -n 32 --temperature 0
  $ xllama generate ./Llama-2-7B-GPTQ -p "Hello"      the folder as the argument, the same as -m
  $ xllama generate -m ./Llama-2-7B-GPTQ -p "Once upon a time" --seed 42 --stop "The end"
  $ xllama generate -m ./Llama-2-7B-GPTQ -p "def fib(n):" --json
  $ xllama generate -m ./Llama-2-7B-GPTQ -f prompt.txt
  $ echo "Once upon a time" | xllama generate -m ./stories260K
  $ xllama generate                  no -m, no prompt: the bundled demo model tells a story from BOS`)
    .action(async (modelArg: string | undefined, flags: GenerateFlags) => runGenerate(withModelArgument('generate', modelArg, flags)));
  addAlias(cmd, '--n-predict <n>', 'maxTokens');
}
