// The --dummy presets: random GPTQ 4-bit models of real shapes that the native addon builds on the GPU
// (addon/glue/model_binding.cc, dummy_preset). The name is checked here, before any GPU is looked for,
// so a wrong name gets the same answer, with the valid ones, on every machine.
import { UserError } from '../errors.js';

export const DUMMY_MODEL_NAMES: readonly string[] = ['llama-7b', 'llama-13b', 'llama3-8b', 'llama-70b', 'tiny'];

export function checkDummyName(name: string): void {
  if (!DUMMY_MODEL_NAMES.includes(name)) {
    throw new UserError(`--dummy ${name}: unknown dummy model (the dummies are ${DUMMY_MODEL_NAMES.join(', ')})`);
  }
}
