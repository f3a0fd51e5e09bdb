// Renders a Jinja template (a chat template from a downloaded model folder) within bounds on work and size, so that
// a hostile or broken one (`range(10**9)`, nested loops that never end, a value doubled until memory runs out) is a
// one-line error instead of a hang or a crash of the whole process. @huggingface/jinja has no limits of its own:
// this renders its parsed program with an interpreter that counts evaluation steps and checks what each step made.
import { Environment, Interpreter, type Template } from '@huggingface/jinja';

// The package's declarations re-export these classes from extension-less paths, which NodeNext resolution can't
// follow, so TypeScript sees them untyped: these are the parts used here.
interface RuntimeValue {
  value: unknown;
}
interface JinjaEnvironment {
  set(name: string, value: unknown): RuntimeValue;
}
interface JinjaInterpreter {
  run(program: unknown): RuntimeValue;
  evaluate(statement: unknown, environment: JinjaEnvironment): RuntimeValue;
}
const InterpreterBase = Interpreter as unknown as new (env: JinjaEnvironment) => JinjaInterpreter;

export interface RenderBounds {
  /**
   * Work, in steps: one per expression or statement evaluated, one per item a for loop goes over or a step builds
   * into a list or mapping, and one per 1,024 characters of each string a step makes (or items of a list it only
   * looks up). A 200-message chat takes real templates under 10,000 steps; a million is a few seconds at most.
   */
  maxSteps: number;
  /** Characters in any one string a step makes (the rendered prompt included). */
  maxChars: number;
  /** Items in any one list, from range() or from a step. */
  maxItems: number;
}

export const DEFAULT_RENDER_BOUNDS: RenderBounds = { maxSteps: 1_000_000, maxChars: 16 << 20, maxItems: 1 << 20 };

/** Characters of a string (or items of a list looked up) that count as one step. */
const SIZE_PER_STEP = 1024;

/** Why a render was stopped; its message names the bound. */
export class RenderBoundExceeded extends Error {}

/** The parts of a parsed node looked at here. */
interface Node {
  type: string;
  iterable?: Node & { lhs?: Node };
}

class BoundedInterpreter extends InterpreterBase {
  private steps = 0;
  /** Nodes that give a for loop its items: `for x in ITEMS` and `for x in ITEMS if test`. */
  private readonly loopSources = new WeakSet<object>();

  constructor(env: JinjaEnvironment, private readonly bounds: RenderBounds) {
    super(env);
  }

  private charge(steps: number): void {
    this.steps += steps;
    if (this.steps > this.bounds.maxSteps) {
      throw new RenderBoundExceeded(`rendering took more than ${this.bounds.maxSteps.toLocaleString('en-US')} steps`);
    }
  }

  // Every node the interpreter visits goes through evaluate(), loop bodies and macro calls included. A loop with an
  // empty body visits no node per item, so each time a loop's items are evaluated, every item counts as a step.
  override evaluate(statement: unknown, environment: JinjaEnvironment): RuntimeValue {
    this.charge(1);
    const node = statement as Node | undefined;
    if (node?.type === 'For' && node.iterable) {
      this.loopSources.add(node.iterable.type === 'SelectExpression' && node.iterable.lhs ? node.iterable.lhs : node.iterable);
    }
    const result = super.evaluate(statement, environment);
    const value: unknown = result.value;
    const size = typeof value === 'string' || Array.isArray(value) ? value.length : value instanceof Map ? value.size : 0;
    if (typeof value === 'string' && size > this.bounds.maxChars) {
      throw new RenderBoundExceeded(`it made a string of more than ${this.bounds.maxChars.toLocaleString('en-US')} characters`);
    }
    if (Array.isArray(value) && size > this.bounds.maxItems) {
      throw new RenderBoundExceeded(`it made a list of more than ${this.bounds.maxItems.toLocaleString('en-US')} items`);
    }
    // A list or mapping a step builds (range(), a filter, `+`) took a runtime value per item, about a step's work
    // each; one a step only looks up (`messages`, `ns.items`) took none, and a string is copied at memory speed.
    const looksUp = node?.type === 'Identifier' || node?.type === 'MemberExpression';
    const built = typeof value === 'string' || looksUp ? Math.floor(size / SIZE_PER_STEP) : size;
    this.charge(built + (node && this.loopSources.has(node) ? size : 0));
    return result;
  }
}

/** Python's range(), refusing before it allocates a list longer than the bound. */
function boundedRange(maxItems: number) {
  return (start: number, stop?: number, step = 1): number[] => {
    if (stop === undefined) [start, stop] = [0, start];
    if (![start, stop, step].every(Number.isFinite)) throw new Error('range() needs finite numbers');
    if (step === 0) throw new Error('range() step must not be zero');
    const count = Math.max(0, Math.ceil((stop - start) / step));
    if (count > maxItems) {
      throw new RenderBoundExceeded(`range() of ${count.toLocaleString('en-US')} items is more than ${maxItems.toLocaleString('en-US')}`);
    }
    const out: number[] = [];
    for (let i = start; step > 0 ? i < stop : i > stop; i += step) out.push(i);
    return out;
  };
}

/** strftime_now as the library defines it (the codes Llama 3's templates use for today's date). */
function strftimeNow(format: string): string {
  const now = new Date();
  const pad2 = (n: number) => String(n).padStart(2, '0');
  const month = (style: 'long' | 'short') => new Intl.DateTimeFormat(undefined, { month: style }).format(now);
  const codes: Record<string, () => string> = {
    '%Y': () => String(now.getFullYear()), '%m': () => pad2(now.getMonth() + 1), '%d': () => pad2(now.getDate()),
    '%b': () => month('short'), '%B': () => month('long'), '%H': () => pad2(now.getHours()),
    '%M': () => pad2(now.getMinutes()), '%%': () => '%',
  };
  return format.replace(/%[YmdbBHM%]/g, (code) => codes[code]!());
}

/** Template.render(items), with the library's globals, inside the bounds. */
export function renderBounded(template: Template, items: Record<string, unknown>,
                              bounds: RenderBounds = DEFAULT_RENDER_BOUNDS): string {
  const env: JinjaEnvironment = new Environment();
  const globals: Record<string, unknown> = {
    false: false, true: true, none: null, False: false, True: true, None: null,
    raise_exception: (message: unknown) => {
      throw new Error(String(message));
    },
    range: boundedRange(bounds.maxItems),
    strftime_now: strftimeNow,
  };
  for (const [name, value] of Object.entries({ ...globals, ...items })) env.set(name, value);
  return new BoundedInterpreter(env, bounds).run(template.parsed).value as string;
}
