// Strict parsing of flag values shared by the commands: every bad value is a one-line UserError naming the flag.
import { Option, type Command } from 'commander';
import { UserError } from '../errors.js';
import type { BackendName } from '../engine/model-handle.js';

/** An integer flag in [min, max]; `max` defaults to the largest exact integer (flags the native side reads pass INT32_MAX or less). */
export function parseInteger(value: string | undefined, flag: string, min: number, max = Number.MAX_SAFE_INTEGER): number | undefined {
  if (value === undefined) return undefined;
  if (!/^[+-]?\d+$/.test(value.trim())) throw new UserError(`${flag}: expected an integer, got '${value}'`);
  const n = Number(value);
  if (!Number.isSafeInteger(n)) throw new UserError(`${flag}: ${value} is too large`);
  if (n < min) throw new UserError(`${flag}: must be >= ${min}, got ${value}`);
  if (n > max) throw new UserError(`${flag}: must be <= ${max}, got ${value}`);
  return n;
}

export function parseNumber(value: string | undefined, flag: string): number | undefined {
  if (value === undefined) return undefined;
  const n = value.trim() === '' ? NaN : Number(value);
  if (!Number.isFinite(n)) throw new UserError(`${flag}: expected a number, got '${value}'`);
  return n;
}

export function parseBackend(value: string | undefined): 'auto' | BackendName {
  const v = value ?? 'auto';
  if (v !== 'auto' && v !== 'cpu' && v !== 'cuda') {
    throw new UserError(`--backend: unknown backend '${v}' (use auto, cpu or cuda)`);
  }
  return v;
}

/** commander collector for repeatable string flags. */
export function collect(value: string, previous: string[] = []): string[] {
  return [...previous, value];
}

/**
 * Another spelling of an option, as people type it by habit from llama.cpp (`--temp`, `-c/--ctx-size`): hidden
 * from --help (the main option's help names it), it sets the main option's value, `target` (its attribute
 * name, e.g. 'maxSeqLen'). Given with the main option too, the last one on the command line wins.
 */
export function addAlias(cmd: Command, flags: string, target: string): Command {
  const alias = new Option(flags).hideHelp();
  cmd.addOption(alias);
  cmd.on(`option:${alias.name()}`, (value: string) => cmd.setOptionValueWithSource(target, value, 'cli'));
  return cmd;
}
