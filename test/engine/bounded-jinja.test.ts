// The bounded renderer of chat templates: the same text as @huggingface/jinja's own Template.render on every real
// template we hold (errors included), and a one-line refusal, quickly, for templates that would run for ever or
// fill memory.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Template } from '@huggingface/jinja';
import { fixtures } from '../helpers/run-cli.js';
import { DEFAULT_RENDER_BOUNDS, RenderBoundExceeded, renderBounded, type RenderBounds } from '../../cli/engine/bounded-jinja.js';

/** Real chat_template strings (ollama's test data), one `{family: template}` object per line. */
const templates = readFileSync(join(fixtures, 'chat-templates', 'templates.jsonl'), 'utf8')
  .split('\n').filter((l) => l.trim()).map((l) => Object.entries(JSON.parse(l) as Record<string, string>)[0]!);

function conversation(turns: number): { role: string; content: string }[] {
  const messages = [{ role: 'system', content: 'You are terse.' }];
  for (let i = 0; i < turns; i++) {
    messages.push({ role: 'user', content: `Question ${i}?` }, { role: 'assistant', content: `Answer ${i}.` });
  }
  messages.push({ role: 'user', content: 'Last question?' });
  return messages;
}

/** The rendered text, or the error's message. */
function outcome(render: () => string): { text: string } | { error: string } {
  try {
    return { text: render() };
  } catch (err) {
    return { error: (err as Error).message };
  }
}

test('every real template renders exactly as the library renders it, errors included', () => {
  assert.ok(templates.length >= 30);
  let rendered = 0;
  for (const [family, text] of templates) {
    const template = new Template(text);
    for (const addGenerationPrompt of [true, false]) {
      const items = { messages: conversation(20), add_generation_prompt: addGenerationPrompt, bos_token: '<s>', eos_token: '</s>' };
      const ours = outcome(() => renderBounded(template, items));
      assert.deepEqual(ours, outcome(() => template.render(items)), family);
      if ('text' in ours) rendered++;
    }
  }
  assert.ok(rendered >= 50, `${rendered} renders succeeded`);
});

test('a 2,000-message conversation stays far inside the default bounds on every real template', () => {
  const items = { messages: conversation(1000), add_generation_prompt: true, bos_token: '<s>', eos_token: '</s>' };
  const tight: RenderBounds = { ...DEFAULT_RENDER_BOUNDS, maxSteps: DEFAULT_RENDER_BOUNDS.maxSteps / 4 };
  for (const [family, text] of templates) {
    const template = new Template(text);
    const ours = outcome(() => renderBounded(template, items, tight));
    if ('error' in ours) assert.doesNotMatch(ours.error, /steps|more than/, family);
  }
});

test('the globals: strftime_now and raise_exception as the library has them', () => {
  const now = new Template('{{ strftime_now("%Y-%m-%d %b %B %H:%M %% %x") }}');
  const before = now.render({});
  const ours = renderBounded(now, {});
  assert.ok(ours === before || ours === now.render({}), `${ours} vs ${before}`);  // (a minute may turn between them)
  const raise = new Template('{{ raise_exception("Conversation roles must alternate") }}');
  assert.deepEqual(outcome(() => renderBounded(raise, {})), outcome(() => raise.render({})));
  const ranges = new Template('{{ range(3) | join(",") }};{{ range(2, 8, 3) | join(",") }};{{ range(5, 0, -2) | join(",") }};{{ range(0) | length }}');
  assert.equal(renderBounded(ranges, {}), ranges.render({}));
});

const SMALL: RenderBounds = { maxSteps: 100_000, maxChars: 1 << 16, maxItems: 1 << 12 };

/**
 * Refused with RenderBoundExceeded naming the bound, within seconds. 100,000 steps take ~1 s on CI's 2 cores, so the
 * allowance is 5 s: what it guards against, a loop left to run (16 million iterations here), takes minutes.
 */
function assertStopped(text: string, bound: RegExp, bounds: RenderBounds = SMALL): void {
  const t0 = performance.now();
  assert.throws(() => renderBounded(new Template(text), { messages: conversation(1) }, bounds),
    (err) => err instanceof RenderBoundExceeded && bound.test(err.message), text);
  assert.ok(performance.now() - t0 < 5000, `${text}: ${performance.now() - t0} ms`);
}

test('templates that would run for ever or fill memory are stopped, naming the bound', () => {
  // range() refuses before it builds anything (the library's own took 2.3 GB, then the process, for a billion).
  assertStopped('{% for i in range(1000000000) %}x{% endfor %}', /^range\(\) of 1,000,000,000 items is more than 4,096$/);
  assertStopped('{% for i in range(10**9) %}{% endfor %}', /range\(\) of 1,000,000,000 items/);
  // Loops whose bodies are empty still count their items.
  assertStopped('{% for i in range(4000) %}{% for j in range(4000) %}{% endfor %}{% endfor %}', /more than 100,000 steps/);
  // A value doubled each time round.
  assertStopped('{% set ns = namespace(a=[1]) %}{% for i in range(40) %}{% set ns.a = ns.a + ns.a %}{% endfor %}',
    /list of more than 4,096 items|more than 100,000 steps/);
  assertStopped("{% set ns = namespace(a='xy') %}{% for i in range(60) %}{% set ns.a = ns.a + ns.a %}{% endfor %}",
    /string of more than 65,536 characters/);
  // Lists built over and over count their items; long strings copied over and over count their length.
  assertStopped('{% for i in range(4000) %}{% set x = range(4000) | length %}{% endfor %}', /more than 100,000 steps/);
  assertStopped("{% set ns = namespace(a='xy') %}{% for i in range(15) %}{% set ns.a = ns.a + ns.a %}{% endfor %}" +
    '{% for i in range(4000) %}{% set t = ns.a | upper %}{% endfor %}', /more than 100,000 steps/);
});

test('the default bounds stop a loop of ten billion empty iterations within seconds', () => {
  const t0 = performance.now();
  assert.throws(() => renderBounded(new Template('{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}'), {}),
    /more than 1,000,000 steps/);
  assert.ok(performance.now() - t0 < 15_000, `${performance.now() - t0} ms`);
});
