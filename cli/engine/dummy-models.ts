// The --dummy presets: random GPTQ 4-bit models of real shapes that the CUDA backend builds on the GPU.
// The shapes live in the native side (dummy_preset() in addon/glue/model_binding.cc); this mirrors their
// names and context lengths so flags can be checked, and tests planned, before any GPU work starts.

export const DUMMY_CONTEXT: Readonly<Record<string, number>> = {
  'llama-7b': 4096,
  'llama-13b': 4096,
  'llama3-8b': 8192,
  'llama-70b': 4096,
  tiny: 512,
};

export const DUMMY_NAMES: readonly string[] = Object.keys(DUMMY_CONTEXT);

export function isDummyName(name: string): boolean {
  return Object.hasOwn(DUMMY_CONTEXT, name);
}
