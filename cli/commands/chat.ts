// `xllama chat -m MODEL` (or `--dummy NAME`): a multi-turn chat. In a terminal, the Ink screen; with stdin or
// stdout piped, or with --prompt, a plain line mode (Ink is never loaded there). The conversation, its template
// and the KV-cache reuse live in cli/engine/chat-session.ts.
import { basename } from 'node:path';
import type { Command } from 'commander';
import { UserError } from '../errors.js';
import { ChatController } from '../chat/chat-controller.js';
import { describeQuantization, describeSampling, type ChatHeaderInfo } from '../chat/header-info.js';
import { runPlainChat } from '../chat/plain-chat.js';
import { ChatSession } from '../engine/chat-session.js';
import { BUILTIN_TEMPLATE_NAMES, parseTemplateName, resolveChatFormat, type ChatFormat } from '../engine/chat-templates.js';
import { dummyArch } from '../engine/dummy-models.js';
import { dummyTokenizer } from '../engine/dummy-tokenizer.js';
import { loadModelSpec } from '../engine/loader/index.js';
import type { ModelSpec } from '../engine/model-spec.js';
import { NativeModel } from '../engine/native-model.js';
import { prepareWhileOpening } from '../engine/open-while-preparing.js';
import { readTextFile } from '../engine/text-file.js';
import { TextTokenizer } from '../engine/tokenizer.js';
import { loadAddon } from '../native/addon.js';
import { parseInteger } from './flags.js';
import {
  addModelArgument, addModelOptions, modelDirFrom, openOptionsFrom, withModelArgument, type ModelFlags,
} from './model-options.js';
import {
  SAMPLING_DEFAULTS_HELP, addSamplingOptions, givenSampling, resolveSampling, seedFrom, type ResolvedSampling, type SamplingFlags,
} from './sampling-options.js';
import { withSpinner } from './spinner.js';

interface ChatFlags extends ModelFlags, SamplingFlags {
  dummy?: string;
  system?: string;
  systemFile?: string;
  template?: string;
  maxTokens?: string;
  prompt?: string;
}

/** Slows the Ink screen's stream by this many ms a token (tests interrupt replies of a tiny, fast model). */
const TOKEN_DELAY_ENV = 'XLLAMA_CHAT_TOKEN_DELAY_MS';

/** A system prompt is short; the bound only keeps a wrong file (a disk image, /dev/zero) from filling memory. */
const MAX_SYSTEM_PROMPT_BYTES = 4 * 1024 * 1024;

function systemFrom(flags: ChatFlags): string | null {
  if (flags.system !== undefined && flags.systemFile !== undefined) throw new UserError('--system and --system-file: give one of them');
  if (flags.systemFile === undefined) return flags.system ?? null;
  // Bounded and non-blocking: a FIFO or a device is refused in one line instead of hanging the chat's start.
  try {
    return readTextFile(flags.systemFile, { maxBytes: MAX_SYSTEM_PROMPT_BYTES }).trim();
  } catch (err) {
    throw err instanceof UserError ? new UserError(`--system-file: ${err.message}`) : err;
  }
}

/** Every flag checked and converted; nothing is read from disk but the system-prompt file. */
function parseFlags(flags: ChatFlags) {
  if (flags.dummy !== undefined && flags.model !== undefined) throw new UserError('give either -m/--model DIR or --dummy NAME, not both');
  if (flags.template !== undefined) parseTemplateName(flags.template);
  if (flags.prompt !== undefined && flags.prompt.trim() === '') throw new UserError('--prompt: the message is empty');
  return {
    model: flags.dummy === undefined ? modelDirFrom(flags) : null,
    dummy: flags.dummy ?? null,
    system: systemFrom(flags),
    template: flags.template,
    maxTokens: parseInteger(flags.maxTokens, '-n/--max-tokens', 1) ?? null,
    samplingFlags: givenSampling(flags),
    seed: seedFrom(flags),
    open: openOptionsFrom(flags),
    prompt: flags.prompt ?? null,
  };
}

type ChatOptions = ReturnType<typeof parseFlags>;

interface OpenedChat {
  model: NativeModel;
  tokenizer: TextTokenizer;
  /** The flags over the model's generation_config.json over xllama's defaults. */
  sampling: ResolvedSampling;
  format: ChatFormat;
  name: string;
  spec: ModelSpec | null;
}

/** The template, checked on a first message and against the system prompt before any weights are loaded. */
function formatFor(tokenizer: TextTokenizer, opts: ChatOptions, name: string, source: string): ChatFormat {
  const format = resolveChatFormat(tokenizer, { template: opts.template, modelName: name, source });
  // One that can't render a one-line conversation, or goes past the bounds on its work, would fail every turn.
  format.template.render([{ role: 'user', content: 'Hi' }]);
  if (opts.system !== null) {
    try {
      format.template.render([{ role: 'system', content: opts.system }, { role: 'user', content: 'Hi' }]);
    } catch (err) {
      const flag = opts.template !== undefined ? ' (choose another --template)' : '';
      throw new UserError(`--system: the chat template takes no system prompt${flag}: ${(err as Error).message}`);
    }
  }
  return format;
}

// The tokenizer is built and the template checked while the weights load (open-while-preparing.ts); a template
// that fails is still reported before the chat starts.
async function openChat(opts: ChatOptions): Promise<OpenedChat> {
  if (opts.dummy !== null) {
    const name = opts.dummy;
    const { prepared, opened } = await prepareWhileOpening(
      () => NativeModel.openDummy(name, { ...opts.open, maxSeqLen: opts.open.maxSeqLen ?? 0 }),
      () => {
        const tokenizer = dummyTokenizer(name, dummyArch(name).vocabSize);
        return { tokenizer, format: formatFor(tokenizer, opts, name, `--dummy ${name}`) };
      });
    const model = await withSpinner(`building dummy model ${name}`, () => opened);
    return { model, ...prepared, sampling: resolveSampling(opts.samplingFlags), name: `${name} (dummy)`, spec: null };
  }
  const spec = loadModelSpec(opts.model!);
  const sampling = resolveSampling(opts.samplingFlags, spec.samplingDefaults);
  const name = basename(spec.dir);
  const modelMax = spec.arch.maxPositionEmbeddings;
  const maxSeqLen = opts.open.maxSeqLen;
  if (maxSeqLen !== undefined && maxSeqLen > modelMax) {
    throw new UserError(`--max-seq-len: ${maxSeqLen} is more than the model's max_position_embeddings (${modelMax})`);
  }
  const { prepared, opened } = await prepareWhileOpening(
    // Without --max-seq-len the backend sizes the cache: the model's context, capped by free GPU memory.
    () => NativeModel.open(spec, { ...opts.open, maxSeqLen: maxSeqLen ?? 0 }),
    () => {
      const tokenizer = TextTokenizer.fromFiles(spec.tokenizer, spec);
      return { tokenizer, format: formatFor(tokenizer, opts, name, tokenizer.chatTemplateSource) };
    });
  const model = await withSpinner(`loading ${spec.dir}`, () => opened);
  return { model, ...prepared, sampling, name, spec };
}

function headerInfo(opened: OpenedChat, opts: ChatOptions, session: ChatSession): ChatHeaderInfo {
  const { model, spec } = opened;
  let gpus: string[] = [];
  if (model.backend === 'cuda') {
    const all = loadAddon().systemInfo().gpus;
    const devices = model.plan ? [...new Set(model.plan.stages.map((s) => s.device))] : [opts.open.device ?? 0];
    gpus = devices.map((d) => all.find((g) => g.index === d)?.name ?? `GPU ${d}`);
  }
  return {
    model: opened.name,
    quantization: spec ? describeQuantization(spec) : 'GPTQ 4-bit g128, random weights',
    backend: model.backend, gpus, contextSize: model.maxSeqLen,
    template: opened.format.description, seed: opts.seed,
    sampling: describeSampling(opened.sampling.params, opened.sampling.fromModel),
    maxTokens: opts.maxTokens, system: session.system,
  };
}

async function runChat(flags: ChatFlags): Promise<void> {
  const opts = parseFlags(flags);
  const opened = await openChat(opts);
  const { model, tokenizer, format } = opened;
  try {
    const session = new ChatSession(model, tokenizer, {
      format, sampling: opened.sampling.params, seed: opts.seed, maxTokens: opts.maxTokens, system: opts.system,
    });
    const controller = new ChatController(session, { model: opened.spec?.dir ?? opened.name });
    if (opts.prompt !== null) {
      await runPlainChat(controller, { prompt: opts.prompt });
    } else if (process.stdin.isTTY && process.stdout.isTTY) {
      // Ink and React load only here: piped runs and --prompt never import them. React's development build
      // (NODE_ENV unset) re-renders several times slower, which the streaming reply would feel.
      process.env.NODE_ENV ??= 'production';
      const { runChatApp } = await import('../ui/chat/chat-app.js');
      const delay = parseInteger(process.env[TOKEN_DELAY_ENV], TOKEN_DELAY_ENV, 0) ?? 0;
      await runChatApp(controller, headerInfo(opened, opts, session), delay);
    } else {
      await runPlainChat(controller, { input: process.stdin });
    }
  } finally {
    model.close();
  }
}

export function registerChat(program: Command): void {
  const cmd = program
    .command('chat')
    .description('chat with a model: an interactive screen in a terminal, one message per line when piped');
  addModelArgument(cmd);
  addModelOptions(cmd);
  addSamplingOptions(cmd)
    .option('--dummy <name>', 'a random GPTQ 4-bit model of a real shape, built on the GPU (llama-7b, llama-13b, llama3-8b, llama-70b, tiny)')
    .option('--system <text>', 'system prompt')
    .option('--system-file <file>', 'system prompt from a file')
    .option('--template <name>', `chat template instead of the model's own: ${BUILTIN_TEMPLATE_NAMES.join(', ')} ` +
      "(default: the model's chat_template; for models without one, a guess from its tokens and name, else plain)")
    .option('-n, --max-tokens <n>', 'most tokens per reply (default: until the end of the turn or of the context)')
    .option('--prompt <text>', 'send one message, print the reply and exit')
    .addHelpText('after', `
${SAMPLING_DEFAULTS_HELP}

In the chat: /reset, /system TEXT, /save FILE, /load FILE, /regen, /help, /exit. Ctrl+C stops a reply
(keeping what it said) or, at an empty prompt, exits; Ctrl+D exits; up/down recall earlier inputs.
Without a terminal each input line is one message and each reply one block of plain text ending in a newline.

Examples:
  $ xllama chat -m ./Llama-2-7B-Chat-GPTQ
  $ xllama chat ./Llama-2-7B-Chat-GPTQ       the same: the folder as the argument
  $ xllama chat -m ./Mistral-7B-Instruct-GPTQ --temperature 0.7 --system "Answer briefly."
  $ xllama chat -m ./model --prompt "Name three colors." --temperature 0
  $ printf 'Hi!\\nTell me a joke.\\n' | xllama chat -m ./model > replies.txt
  $ xllama chat --dummy llama-7b             speed of a 7B model, no download (random weights)`)
    .action(async (modelArg: string | undefined, flags: ChatFlags) => runChat(withModelArgument('chat', modelArg, flags)));
}
