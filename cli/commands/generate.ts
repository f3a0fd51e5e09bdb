// `xllama generate -m MODEL -p TEXT [...]`: plain text continuation. Text streams to stdout, statistics
// go to stderr; --json prints one object with the text, the ids and the timings instead.
import type { Command } from 'commander';
import { UserError } from '../errors.js';
import { loadModelSpec } from '../engine/loader/index.js';
import { TextTokenizer } from '../engine/tokenizer.js';
import { checkPromptFits, promptIds } from '../engine/prompt.js';
import { DEFAULT_SAMPLING, NonFiniteLogitsError, checkSampling, type SamplingParams } from '../engine/sampler.js';
import { generate, type GenerationStats } from '../engine/generate.js';
import { randomSeed } from '../engine/rng.js';
import { NativeModel } from '../engine/native-model.js';
import { INT32_MAX, MAX_THREADS } from '../engine/native-limits.js';
import { collect, parseBackend, parseInteger, parseNumber } from './flags.js';
import { startSpinner } from './spinner.js';

interface GenerateFlags {
  model?: string;
  prompt?: string;
  maxTokens?: string;
  temperature?: string;
  topK?: string;
  topP?: string;
  minP?: string;
  typicalP?: string;
  repeatPenalty?: string;
  frequencyPenalty?: string;
  presencePenalty?: string;
  seed?: string;
  stop?: string[];
  backend?: string;
  maxSeqLen?: string;
  threads?: string;
  json?: boolean;
}

const DEFAULT_MAX_TOKENS = 256;

function samplingFrom(flags: GenerateFlags): SamplingParams {
  const d = DEFAULT_SAMPLING;
  const p: SamplingParams = {
    temperature: parseNumber(flags.temperature, '--temperature') ?? d.temperature,
    topK: parseInteger(flags.topK, '--top-k', 0, INT32_MAX) ?? d.topK,
    topP: parseNumber(flags.topP, '--top-p') ?? d.topP,
    minP: parseNumber(flags.minP, '--min-p') ?? d.minP,
    typicalP: parseNumber(flags.typicalP, '--typical-p') ?? d.typicalP,
    repeatPenalty: parseNumber(flags.repeatPenalty, '--repeat-penalty') ?? d.repeatPenalty,
    frequencyPenalty: parseNumber(flags.frequencyPenalty, '--frequency-penalty') ?? d.frequencyPenalty,
    presencePenalty: parseNumber(flags.presencePenalty, '--presence-penalty') ?? d.presencePenalty,
  };
  const problem = checkSampling(p);
  if (problem) throw new UserError(`--${problem}`);
  return p;
}

function statsLine(s: GenerationStats, backend: string): string {
  const f = (v: number) => v.toFixed(1);
  return `${backend}: prompt ${s.promptTokens} tokens, ${f(s.promptTokensPerSec)} tok/s; ` +
    `generated ${s.generatedTokens} tokens, ${f(s.generatedTokensPerSec)} tok/s; ` +
    `first token after ${f(s.timeToFirstTokenMs)} ms; stop: ${s.stopReason ?? 'none'}\n`;
}

/** Every flag checked and converted; nothing is read from disk yet. */
function parseFlags(flags: GenerateFlags) {
  if (!flags.model) throw new UserError('-m/--model: give the model folder');
  if (flags.prompt === undefined) throw new UserError('-p/--prompt: give the prompt text');
  const stop = flags.stop ?? [];
  if (stop.some((s) => s.length === 0)) throw new UserError('--stop: a stop string is empty');
  return {
    model: flags.model,
    prompt: flags.prompt,
    maxTokens: parseInteger(flags.maxTokens, '-n/--max-tokens', 0) ?? DEFAULT_MAX_TOKENS,
    sampling: samplingFrom(flags),
    seed: parseInteger(flags.seed, '--seed', 0) ?? randomSeed(),
    backend: parseBackend(flags.backend),
    maxSeqLen: parseInteger(flags.maxSeqLen, '--max-seq-len', 2, INT32_MAX),
    threads: parseInteger(flags.threads, '--threads', 1, MAX_THREADS),
    stop,
  };
}

/** stdout writes that stop, and abort generation, when the reader goes away (`| head`) instead of crashing. */
function stdoutWriter(abort: AbortController): (text: string) => void {
  let open = true;
  process.stdout.on('error', (err: NodeJS.ErrnoException) => {
    if (err.code !== 'EPIPE') throw err;
    open = false;
    abort.abort();
  });
  return (text) => {
    if (open && text) process.stdout.write(text);
  };
}

async function runGenerate(flags: GenerateFlags): Promise<void> {
  const opts = parseFlags(flags);
  // Everything that can be checked without the weights is checked before they are mapped.
  const spec = loadModelSpec(opts.model);
  const tokenizer = TextTokenizer.fromFiles(spec.tokenizer, spec);
  const ids = promptIds(tokenizer, opts.prompt);
  const modelMax = spec.arch.maxPositionEmbeddings;
  if (opts.maxSeqLen !== undefined && opts.maxSeqLen > modelMax) {
    throw new UserError(`--max-seq-len: ${opts.maxSeqLen} is more than the model's max_position_embeddings (${modelMax})`);
  }
  checkPromptFits(ids, opts.maxSeqLen ?? modelMax, opts.maxSeqLen !== undefined ? '--max-seq-len' : "the model's context");

  const spinner = startSpinner(`loading ${spec.dir}`);
  const loadStart = performance.now();
  let model: NativeModel;
  try {
    // Without --max-seq-len the backend sizes the cache: the model's context, capped by free GPU memory.
    model = await NativeModel.open(spec, { backend: opts.backend, maxSeqLen: opts.maxSeqLen ?? 0, threads: opts.threads });
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
  program
    .command('generate')
    .description('continue a text prompt (no chat template); text streams to stdout, speed to stderr')
    .option('-m, --model <dir>', 'model folder in Hugging Face layout')
    .option('-p, --prompt <text>', 'prompt text (BOS is added as the model\'s tokenizer does)')
    .option('-n, --max-tokens <n>', `most tokens to generate (default ${DEFAULT_MAX_TOKENS})`)
    .option('--temperature <t>', `0 = greedy (default ${DEFAULT_SAMPLING.temperature})`)
    .option('--top-k <k>', `keep the k most likely tokens, 0 = off (default ${DEFAULT_SAMPLING.topK})`)
    .option('--top-p <p>', `nucleus sampling, in (0, 1], 1 = off (default ${DEFAULT_SAMPLING.topP})`)
    .option('--min-p <p>', `drop tokens below p × the top probability, 0 = off (default ${DEFAULT_SAMPLING.minP})`)
    .option('--typical-p <p>', 'locally typical sampling, in (0, 1], 1 = off (default 1)')
    .option('--repeat-penalty <r>', 'divide positive / multiply negative logits of seen tokens, 1 = off (default 1)')
    .option('--frequency-penalty <f>', 'subtract f × count of each generated token, in [-2, 2] (default 0)')
    .option('--presence-penalty <f>', 'subtract f once for each generated token, in [-2, 2] (default 0)')
    .option('--seed <n>', 'random seed (default: random; --json reports it)')
    .option('--stop <text>', 'stop before this text (repeatable)', collect)
    .option('--backend <name>', 'auto, cpu or cuda (default auto)')
    .option('--max-seq-len <n>', "KV-cache positions (default: the model's max_position_embeddings, capped by free GPU memory)")
    .option('--threads <n>', 'CPU threads (default: all cores)')
    .option('--json', 'print one JSON object with text, ids and timings')
    .addHelpText('after', `
Examples:
  $ xllama generate -m ./Llama-2-7B-GPTQ -p "The capital of France is" -n 32 --temperature 0
  $ xllama generate -m ./Llama-2-7B-GPTQ -p "Once upon a time" --seed 42 --stop "The end"
  $ xllama generate -m ./Llama-2-7B-GPTQ -p "def fib(n):" --json`)
    .action(async (flags: GenerateFlags) => runGenerate(flags));
}
