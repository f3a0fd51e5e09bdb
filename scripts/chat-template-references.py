#!/usr/bin/env python3
"""Renders every chat_template in fixtures/chat-templates/templates.jsonl as Hugging Face transformers'
apply_chat_template renders it, for a few conversations, and writes fixtures/chat-templates/hf-renders.jsonl
(one {"template", "family", "conversation", "add_generation_prompt", "text" | "error"} object per line).

The Jinja environment is the one transformers builds in _compile_jinja_template (v4.42 and later):
ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True) with the loopcontrols extension, its own
`tojson` filter (no HTML escaping) and `raise_exception`; the template gets `messages`,
`add_generation_prompt` and the special tokens (bos_token, eos_token). Needs only jinja2 >= 3.1:

    python3 scripts/chat-template-references.py
"""
import json
import os

import jinja2
import jinja2.ext
from jinja2.exceptions import TemplateError
from jinja2.sandbox import ImmutableSandboxedEnvironment

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), '..')
SRC = os.path.join(ROOT, 'fixtures', 'chat-templates', 'templates.jsonl')
DST = os.path.join(ROOT, 'fixtures', 'chat-templates', 'hf-renders.jsonl')

SYSTEM = {'role': 'system', 'content': 'You are terse.'}
U1 = {'role': 'user', 'content': 'Hi!'}
A1 = {'role': 'assistant', 'content': ' Hello there. '}  # surrounding spaces: templates that trim show it
U2 = {'role': 'user', 'content': 'Two lines:\nnaïve — 日本語 "quoted" <b>'}
A2 = {'role': 'assistant', 'content': 'Done.'}

CONVERSATIONS = {
    'one-turn': [U1],
    'system-one-turn': [SYSTEM, U1],
    'multi-turn': [U1, A1, U2],
    'system-multi-turn': [SYSTEM, U1, A1, U2],
    'complete': [SYSTEM, U1, A1, U2, A2],
}
SPECIAL_TOKENS = {'bos_token': '<s>', 'eos_token': '</s>'}


def environment():
    def raise_exception(message):
        raise TemplateError(message)

    def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
        return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=[jinja2.ext.loopcontrols])
    env.filters['tojson'] = tojson
    env.globals['raise_exception'] = raise_exception
    return env


def main():
    env = environment()
    rows = []
    with open(SRC, encoding='utf8') as f:
        templates = [json.loads(line) for line in f if line.strip()]
    for index, entry in enumerate(templates):
        (family, source), = entry.items()
        compiled = env.from_string(source)
        for name, messages in CONVERSATIONS.items():
            for add_generation_prompt in (True, False):
                row = {'template': index, 'family': family, 'conversation': name,
                       'add_generation_prompt': add_generation_prompt}
                try:
                    row['text'] = compiled.render(messages=messages, add_generation_prompt=add_generation_prompt,
                                                  **SPECIAL_TOKENS)
                except TemplateError as err:
                    row['error'] = str(err)
                rows.append(row)
    with open(DST, 'w', encoding='utf8') as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + '\n')
    print(f'{len(rows)} renders of {len(templates)} templates -> {os.path.relpath(DST, ROOT)} (jinja2 {jinja2.__version__})')


if __name__ == '__main__':
    main()
