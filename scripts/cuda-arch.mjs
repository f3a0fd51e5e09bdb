// Which CUDA architectures to compile for (pure functions; scripts/build-addon.mjs runs the tools).
//   explicit list ("89", "80,86,90", "90-real;80-virtual") → as given, checked
//   "portable"  → CMakeLists.txt's list: sm_80 sm_86 sm_89 sm_90 + compute_90 PTX (newer GPUs JIT it)
//   "native"    → the build machine's GPUs (an error when it has none)
//   unset       → the build machine's GPUs when it has supported ones, else "portable"

/** The oldest compute capability xllama's kernels support (cuda/device_query.h: kMinComputeCapability). */
export const MIN_ARCH = 80;

const ARCH = /^(\d{2,3})[af]?(-real|-virtual)?$/;

/** "80,86;90-real" → { archs: "80;86;90-real" } or { error } (the message names `source`). */
export function parseArchList(value, source, nvccArchs = []) {
  const v = value.trim();
  if (v === 'portable' || v === 'native') return { archs: v };
  const items = v.split(/[,;\s]+/).filter(Boolean);
  if (items.length === 0) return { error: `${source}: expected CUDA architectures such as 89 or 80,86,90 (got "${value}")` };
  for (const item of items) {
    const m = ARCH.exec(item);
    if (!m) return { error: `${source}: "${item}" is not a CUDA architecture (use numbers such as 86 or 90, "portable" or "native")` };
    const cc = Number(m[1]);
    if (cc < MIN_ARCH) {
      return { error: `${source}: ${item} is older than compute capability 8.0, the oldest xllama's kernels support` };
    }
    if (nvccArchs.length > 0 && !nvccArchs.includes(cc)) {
      return { error: `${source}: this nvcc cannot compile for ${cc} (it knows ${nvccArchs.join(', ')})` };
    }
  }
  return { archs: items.join(';') };
}

/** `nvcc --list-gpu-arch` output ("compute_75\ncompute_80…") → [75, 80, …]. */
export function parseNvccArchs(output) {
  return [...output.matchAll(/compute_(\d+)/g)].map((m) => Number(m[1]));
}

/**
 * The build machine's GPUs from `nvidia-smi --query-gpu=name,compute_cap --format=csv,noheader`
 * ("NVIDIA H200, 9.0" per line) → { archs: "90" } for supported GPUs nvcc can target, plus a note for any it skips.
 */
export function nativeArchitectures(smiOutput, nvccArchs = []) {
  const archs = new Set();
  const notes = [];
  for (const line of smiOutput.split('\n')) {
    const m = /^(.*),\s*(\d+)\.(\d+)\s*$/.exec(line.trim());
    if (!m) continue;
    const name = m[1].trim();
    const cc = Number(m[2]) * 10 + Number(m[3]);
    if (cc < MIN_ARCH) notes.push(`${name} (compute capability ${m[2]}.${m[3]}) is older than xllama supports`);
    else if (nvccArchs.length > 0 && !nvccArchs.includes(cc)) notes.push(`this nvcc cannot compile for ${name} (${cc})`);
    else archs.add(cc);
  }
  return { archs: [...archs].sort((a, b) => a - b).join(';'), notes };
}
