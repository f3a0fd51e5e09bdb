// `xllama --version`: what llama-cli --version tells too — the version, the commit it was built from,
// what the native addon was built with (backends, CUDA runtime), and the Node.js it runs on.
import { buildInfo } from './build-info.js';
import { loadAddon } from './native/addon.js';

function backendsLine(): string {
  try {
    const sys = loadAddon().systemInfo();
    return sys.cudaCompiled ? `backends: cpu, cuda (CUDA runtime ${sys.cudaRuntime})` : 'backends: cpu (built without CUDA)';
  } catch (err) {
    return `backends: unknown (${(err as Error).message})`;
  }
}

export function versionText(): string {
  const { version, commit } = buildInfo();
  const lines = [
    `xllama ${version} (commit ${commit ?? 'unknown'})`,
    backendsLine(),
    // MERGE(install): add here `addon: ${describeAddonOrigin(addonOrigin())}` from cli/native/addon.ts
    // (prebuilt or local build, and its path) once the install branch is in.
    `node ${process.version} ${process.platform}-${process.arch}`,
  ];
  return `${lines.join('\n')}\n`;
}
