// `xllama ppl -m MODEL -f FILE [...]` (or FILE as the argument): perplexity of a model on a text
// (cli/engine/perplexity.ts has the rules).
// Progress goes to stderr; the final estimate, or with --json one object, to stdout.
import type { Command } from 'commander';
import { performance } from 'node:perf_hooks';
import { UserError } from '../errors.js';
import { formatInteger } from '../format.js';
import { loadModelSpec } from '../engine/loader/index.js';
import { NativeModel } from '../engine/native-model.js';
import { prepareWhileOpening } from '../engine/open-while-preparing.js';
import { TextTokenizer } from '../engine/tokenizer.js';
import { dummyTokenizer } from '../engine/dummy-tokenizer.js';
import { DUMMY_NAMES, dummyArch } from '../engine/dummy-models.js';
import { readTextFile } from '../engine/text-file.js';
import { DEFAULT_PPL_CTX, PPL_MODES, checkWindowShape, planWindows, resolveCtx, runPerplexity, type PplMode,
  type PplPlan, type PplResult } from '../engine/perplexity.js';
import { parseInteger } from './flags.js';
import { addModelOptions, modelDirFrom, openOptionsFrom, type ModelFlags } from './model-options.js';
import { PplProgressReporter } from './ppl-progress.js';
import { withSpinner } from './spinner.js';

interface PplFlags extends ModelFlags {
  file?: string;
  mode?: string;
  ctx?: string;
  chunks?: string;
  stride?: string;
  dummy?: string;
  json?: boolean;
}

/** Every flag checked and converted; nothing is read from disk yet. */
function parseFlags(flags: PplFlags) {
  const dummy = flags.dummy;
  if (dummy !== undefined && flags.model !== undefined) throw new UserError('give either -m/--model DIR or --dummy NAME');
  if (flags.file === undefined) {
    throw new UserError('-f/--file: give the text file to evaluate (-f FILE, or FILE as the argument)');
  }
  const mode = (flags.mode ?? 'gptq') as PplMode;
  if (!PPL_MODES.includes(mode)) throw new UserError(`--mode: unknown mode '${flags.mode}' (use ${PPL_MODES.join(' or ')})`);
  const ctx = parseInteger(flags.ctx, '--ctx', 0);
  const stride = parseInteger(flags.stride, '--stride', 1);
  if (ctx !== undefined) checkWindowShape(mode, ctx, stride);
  return {
    file: flags.file, mode, ctx, stride,
    maxChunks: parseInteger(flags.chunks, '--chunks', 1),
    source: dummy === undefined ? { dir: modelDirFrom(flags) } : { dummy },
    open: openOptionsFrom(flags),
  };
}

type Options = ReturnType<typeof parseFlags>;

/** KV-cache positions for windows of ctx tokens (--max-seq-len may give more, not fewer). */
function cacheSize(opts: Options, ctx: number): number {
  const asked = opts.open.maxSeqLen;
  if (asked !== undefined && asked < ctx) throw new UserError(`--max-seq-len: ${asked} is less than --ctx ${ctx}`);
  return asked ?? ctx;
}

interface Prepared {
  model: NativeModel;
  name: string;
  ids: number[];
  bosId: number | null;
  plan: PplPlan;
  loadMs: number;
  tokenizeMs: number;
}

/** What ppl needs of a model before its weights load: its context, its tokenizer, and how to open it. */
interface ModelSource {
  name: string;
  context: number;
  tokenizer(): TextTokenizer;
  loading: string;
  open(maxSeqLen: number): Promise<NativeModel>;
}

function checkpointSource(opts: Options, dir: string): ModelSource {
  const spec = loadModelSpec(dir);
  return {
    name: spec.dir, context: spec.arch.maxPositionEmbeddings, loading: `loading ${spec.dir}`,
    tokenizer: () => TextTokenizer.fromFiles(spec.tokenizer, spec),
    open: (maxSeqLen) => NativeModel.open(spec, { ...opts.open, maxSeqLen }),
  };
}

/** A --dummy model: random weights built on the GPU, with a real tokenizer of its vocabulary size. */
function dummySource(opts: Options, name: string): ModelSource {
  const arch = dummyArch(name);
  return {
    name: `${name} (dummy)`, context: arch.maxPositionEmbeddings, loading: `building ${name}`,
    tokenizer: () => dummyTokenizer(name, arch.vocabSize),
    open: (maxSeqLen) => NativeModel.openDummy(name, { ...opts.open, maxSeqLen }),
  };
}

/**
 * Everything that can fail on the flags fails before the weights load; the tokenizer is built and the text tokenized
 * while they load (open-while-preparing.ts), and a failure there is reported at once.
 */
async function prepare(opts: Options, source: ModelSource, text: string): Promise<Prepared> {
  const ctx = resolveCtx(opts.ctx, source.context);
  const maxSeqLen = cacheSize(opts, ctx);
  const loadStart = performance.now();
  const { prepared, opened } = await prepareWhileOpening(() => source.open(maxSeqLen), async () => {
    const t0 = performance.now();
    const tokenizer = source.tokenizer();
    const ids = await withSpinner(`tokenizing ${opts.file}`, () => tokenizer.encode(text, { addSpecial: true }));
    const tokenizeMs = performance.now() - t0;
    // The BOS that llama.cpp mode starts each chunk with: the one the tokenizer puts at the start, if any.
    const bosId = tokenizer.bosId !== null && ids[0] === tokenizer.bosId ? tokenizer.bosId : null;
    const plan = planWindows(ids.length, { mode: opts.mode, ctx, stride: opts.stride, maxChunks: opts.maxChunks }, bosId, opts.file);
    return { ids, bosId, plan, tokenizeMs };
  });
  const model = await withSpinner(source.loading, () => opened);
  return { model, name: source.name, ...prepared, loadMs: performance.now() - loadStart };
}

/** "37 chunks of 128 (gptq mode, stride 64)" */
function chunksText(plan: PplPlan): string {
  return `${plan.windows.length} chunks of ${plan.ctx} (${plan.mode} mode${plan.stride === null ? '' : `, stride ${plan.stride}`})`;
}

function summaryLines(r: PplResult, plan: PplPlan, backend: string): string {
  const estimate = `Final estimate: PPL = ${r.ppl.toFixed(4)}${r.stderr === null ? '' : ` +/- ${r.stderr.toFixed(4)}`}`;
  return `${estimate}\n${formatInteger(r.tokens)} tokens scored in ${chunksText(plan)}; ${formatInteger(r.evaluatedTokens)} ` +
    `tokens evaluated in ${(r.scoreMs / 1000).toFixed(2)} s, ${formatInteger(r.tokensPerSec)} tokens/s (${backend})\n`;
}

async function runPpl(flags: PplFlags): Promise<void> {
  const opts = parseFlags(flags);
  const text = readTextFile(opts.file);
  const { dummy, dir } = opts.source;
  const source = dummy !== undefined ? dummySource(opts, dummy) : checkpointSource(opts, dir as string);
  const p = await prepare(opts, source, text);
  const { model, plan } = p;
  try {
    const progress = new PplProgressReporter();
    progress.line(`ppl: ${p.name} on ${opts.file}: ${formatInteger(p.ids.length)} tokens, ${chunksText(plan)}, ` +
      `${formatInteger(plan.predictions)} predictions to score (${model.backend})`);
    const result = await runPerplexity(model, p.ids, plan, p.bosId, (u) => progress.update(u));
    progress.finish();
    if (flags.json) {
      const { runningPpl, scoreMs, evaluatedTokens, tokensPerSec, ...estimate } = result;
      process.stdout.write(`${JSON.stringify({
        model: p.name, backend: model.backend, file: opts.file, mode: plan.mode, ctx: plan.ctx, stride: plan.stride,
        textTokens: p.ids.length, ...estimate, runningPpl,
        timings: { loadMs: p.loadMs, tokenizeMs: p.tokenizeMs, scoreMs, evaluatedTokens, tokensPerSec },
      })}\n`);
    } else {
      process.stdout.write(summaryLines(result, plan, model.backend));
    }
  } finally {
    model.close();
  }
}

/** The text file, from -f/--file or the argument (both only if they name the same path). */
function textFileFrom(fileArg: string | undefined, fileFlag: string | undefined): string | undefined {
  if (fileArg !== undefined && fileFlag !== undefined && fileArg !== fileFlag) {
    throw new UserError(`ppl: two text files (-f ${fileFlag} and ${fileArg}); give one`);
  }
  return fileArg ?? fileFlag;
}

export function registerPpl(program: Command): void {
  const cmd = program
    .command('ppl')
    .description('perplexity of a model on a text file (GPTQ papers\' or llama.cpp\'s recipe)')
    .argument('[file]', 'the text to evaluate (the same as -f/--file)');
  addModelOptions(cmd, { ctxSizeFor: 'ctx' })
    .option('-f, --file <path>', 'UTF-8 text to evaluate (e.g. WikiText-2\'s wiki.test.raw)')
    .option('--mode <mode>', 'gptq: every prediction of each chunk, one BOS at the text\'s start (default); ' +
      'llama.cpp: each chunk starts with BOS, its second half is scored')
    .option('--ctx <n>', `tokens per chunk, also -c/--ctx-size (default ${DEFAULT_PPL_CTX}, capped by the model's context)`)
    .option('--chunks <n>', 'stop after this many chunks')
    .option('--stride <n>', 'sliding window: a chunk every n tokens, each scoring its last n predictions')
    .option('--dummy <name>', `random GPTQ 4-bit model built on the GPU (speed only): ${DUMMY_NAMES.join(', ')}`)
    .option('--json', 'print one JSON object (ppl, stderr, nll, tokens, chunks, mode, ctx, timings)')
    .addHelpText('after', `
Examples:
  $ xllama ppl -m ./Llama-2-7B-GPTQ -f wiki.test.raw                  GPTQ papers' recipe, 2048-token chunks
  $ xllama ppl -m ./Llama-2-7B-GPTQ wiki.test.raw                     the same: the file as the argument
  $ xllama ppl -m ./Llama-2-7B-GPTQ -f wiki.test.raw --mode llama.cpp --ctx 512
  $ xllama ppl -m ./Llama-2-7B-GPTQ -f wiki.test.raw --ctx 2048 --stride 512 --chunks 20 --json
  $ xllama ppl --dummy llama-7b -f wiki.test.raw --chunks 20          speed on a random 7B model`)
    .action(async (fileArg: string | undefined, flags: PplFlags) =>
      runPpl({ ...flags, file: textFileFrom(fileArg, flags.file) }));
}
