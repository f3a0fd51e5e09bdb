// `xllama generate -m MODEL -p TEXT [...]`: plain text continuation. Text streams to stdout, statistics
// go to stderr; --json prints one object with the text, the ids and the timings instead.
import type { Command } from 'commander';
import { UserError } from '../errors.js';
import { loadModelSpec } from '../engine/loader/index.js';
import { TextTokenizer } from '../engine/tokenizer.js';
import { checkPromptFits, promptIds } from '../engine/prompt.js';
import { NonFiniteLogitsError } from '../engine/sampler.js';
import { generate, type GenerationStats } from '../engine/generate.js';
import { NativeModel } from '../engine/native-model.js';
import { collect, parseInteger } from './flags.js';
import { addModelOptions, modelDirFrom, openOptionsFrom, type ModelFlags } from './model-options.js';
import { addSamplingOptions, samplingFrom, seedFrom, type SamplingFlags } from './sampling-options.js';
import { startSpinner } from './spinner.js';
import { stdoutWriter } from './stdout-writer.js';

interface GenerateFlags extends ModelFlags, SamplingFlags {
  prompt?: string;
  maxTokens?: string;
  stop?: string[];
  json?: boolean;
}

const DEFAULT_MAX_TOKENS = 256;

function statsLine(s: GenerationStats, backend: string): string {
  const f = (v: number) => v.toFixed(1);
  return `${backend}: prompt ${s.promptTokens} tokens, ${f(s.promptTokensPerSec)} tok/s; ` +
    `generated ${s.generatedTokens} tokens, ${f(s.generatedTokensPerSec)} tok/s; ` +
    `first token after ${f(s.timeToFirstTokenMs)} ms; stop: ${s.stopReason ?? 'none'}\n`;
}

/** Every flag checked and converted; nothing is read from disk yet. */
function parseFlags(flags: GenerateFlags) {
  const model = modelDirFrom(flags);
  if (flags.prompt === undefined) throw new UserError('-p/--prompt: give the prompt text');
  const stop = flags.stop ?? [];
  if (stop.some((s) => s.length === 0)) throw new UserError('--stop: a stop string is empty');
  return {
    model,
    prompt: flags.prompt,
    maxTokens: parseInteger(flags.maxTokens, '-n/--max-tokens', 0) ?? DEFAULT_MAX_TOKENS,
    sampling: samplingFrom(flags),
    seed: seedFrom(flags),
    open: openOptionsFrom(flags),
    stop,
  };
}

async function runGenerate(flags: GenerateFlags): Promise<void> {
  const opts = parseFlags(flags);
  // Everything that can be checked without the weights is checked before they are mapped.
  const spec = loadModelSpec(opts.model);
  const tokenizer = TextTokenizer.fromFiles(spec.tokenizer, spec);
  const ids = promptIds(tokenizer, opts.prompt);
  const modelMax = spec.arch.maxPositionEmbeddings;
  const maxSeqLen = opts.open.maxSeqLen;
  if (maxSeqLen !== undefined && maxSeqLen > modelMax) {
    throw new UserError(`--max-seq-len: ${maxSeqLen} is more than the model's max_position_embeddings (${modelMax})`);
  }
  checkPromptFits(ids, maxSeqLen ?? modelMax, maxSeqLen !== undefined ? '--max-seq-len' : "the model's context");

  const spinner = startSpinner(`loading ${spec.dir}`);
  const loadStart = performance.now();
  let model: NativeModel;
  try {
    // Without --max-seq-len the backend sizes the cache: the model's context, capped by free GPU memory.
    model = await NativeModel.open(spec, { ...opts.open, maxSeqLen: maxSeqLen ?? 0 });
  } finally {
    spinner.stop();
  }
  const loadMs = performance.now() - loadStart;
  const abort = new AbortController();
  const onSigint = () => abort.abort(); // a second Ctrl-C kills as usual
  process.once('SIGINT', onSigint);
  const print = stdoutWriter(abort);
  try {
    checkPromptFits(ids, model.maxSeqLen, `the KV cache (${model.backend})`);
    const prefill = startSpinner(`reading the prompt (${ids.length} tokens)`);
    const run = generate(model, tokenizer, ids, {
      maxTokens: opts.maxTokens, sampling: opts.sampling, seed: opts.seed, stop: opts.stop, signal: abort.signal,
    });
    let text = '';
    try {
      for await (const token of run) {
        prefill.stop();
        text += token.text;
        if (!flags.json) print(token.text);
      }
    } catch (err) {
      // Name the model whose weights gave the NaN / infinite logits.
      throw err instanceof NonFiniteLogitsError ? new UserError(`${spec.dir}: ${err.message}`) : err;
    } finally {
      prefill.stop();
    }
    const { stopReason, ...stats } = run.stats;
    if (flags.json) {
      print(`${JSON.stringify({
        model: spec.dir, backend: model.backend, seed: opts.seed, sampling: opts.sampling, stop: opts.stop,
        maxTokens: opts.maxTokens, maxSeqLen: model.maxSeqLen, text, promptIds: ids, generatedIds: run.generatedIds,
        stopReason, timings: { loadMs, ...stats },
      })}\n`);
    } else {
      if (!text.endsWith('\n')) print('\n');
      process.stderr.write(statsLine(run.stats, model.backend));
    }
  } finally {
    process.removeListener('SIGINT', onSigint);
    model.close();
  }
}

export function registerGenerate(program: Command): void {
  const cmd = program
    .command('generate')
    .description('continue a text prompt (no chat template); text streams to stdout, speed to stderr');
  addModelOptions(cmd);
  addSamplingOptions(cmd)
    .option('-p, --prompt <text>', 'prompt text (BOS is added as the model\'s tokenizer does)')
    .option('-n, --max-tokens <n>', `most tokens to generate (default ${DEFAULT_MAX_TOKENS})`)
    .option('--stop <text>', 'stop before this text (repeatable)', collect)
    .option('--json', 'print one JSON object with text, ids and timings')
    .addHelpText('after', `
Examples:
  $ xllama generate -m ./Llama-2-7B-GPTQ -p "The capital of France is" -n 32 --temperature 0
  $ xllama generate -m ./Llama-2-7B-GPTQ -p "Once upon a time" --seed 42 --stop "The end"
  $ xllama generate -m ./Llama-2-7B-GPTQ -p "def fib(n):" --json`)
    .action(async (flags: GenerateFlags) => runGenerate(flags));
}
