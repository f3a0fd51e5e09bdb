// `xllama --version`: what llama-cli --version tells too — the version, the commit it was built from,
// what the native addon was built with (backends, CUDA runtime and architectures) and where it was loaded
// from, and the Node.js it runs on. Nothing here needs a GPU or a driver.
import { buildInfo } from './build-info.js';
import { addonOrigin, describeAddonOrigin, loadAddon } from './native/addon.js';

function backendsLine(): string {
  try {
    const b = loadAddon().buildInfo();
    if (!b.backends.includes('cuda')) return 'backends: cpu (built without CUDA)';
    return `backends: cpu, cuda (CUDA runtime ${b.cudaRuntime}; ${b.cudaArchitectures}; ` +
      `${b.cublas ? 'cuBLAS' : "xllama's own tensor-core GEMM, no cuBLAS"})`;
  } catch (err) {
    return `backends: unknown (${(err as Error).message})`;
  }
}

export function versionText(): string {
  const { version, commit } = buildInfo();
  const lines = [
    `xllama ${version} (commit ${commit ?? 'unknown'})`,
    backendsLine(),
    `addon: ${describeAddonOrigin(addonOrigin())}`,
    `node ${process.version} ${process.platform}-${process.arch}`,
  ];
  return `${lines.join('\n')}\n`;
}
