// A throwaway npm registry on 127.0.0.1 that serves the dependencies installed in this repo's node_modules,
// so a test can `npm install -g` a packed xllama exactly as a user does, without the network. Versions are
// those of package-lock.json, manifests are the installed package.json files, and each tarball is packed
// from the installed folder (without its nested node_modules) when npm asks for it.
import { spawn } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { createServer, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';

interface Installed {
  dir: string;
  manifest: Record<string, unknown>;
}

export interface LocalRegistry {
  url: string;
  /** name@version of every tarball npm fetched. */
  fetched: string[];
  close(): Promise<void>;
}

/** name → version → installed folder, from package-lock.json's "packages" (nested copies included). */
function installedPackages(repoRoot: string): Map<string, Map<string, Installed>> {
  const lock = JSON.parse(readFileSync(join(repoRoot, 'package-lock.json'), 'utf8')) as
    { packages: Record<string, { version?: string; link?: boolean }> };
  const byName = new Map<string, Map<string, Installed>>();
  for (const [path, entry] of Object.entries(lock.packages)) {
    const dir = join(repoRoot, path);
    if (!path || entry.link || !entry.version || !existsSync(join(dir, 'package.json'))) continue;
    const name = path.slice(path.lastIndexOf('node_modules/') + 'node_modules/'.length);
    const manifest = JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8')) as Record<string, unknown>;
    if (!byName.has(name)) byName.set(name, new Map());
    byName.get(name)!.set(entry.version, { dir, manifest });
  }
  return byName;
}

function packFolder(dir: string, res: ServerResponse): void {
  // npm tarballs hold the package under "package/".
  const tar = spawn('tar', ['-czf', '-', '--exclude=./node_modules', '--transform', 's,^\\.,package,', '-C', dir, '.']);
  res.writeHead(200, { 'content-type': 'application/octet-stream' });
  tar.stdout.pipe(res);
}

export async function startLocalRegistry(repoRoot: string): Promise<LocalRegistry> {
  const packages = installedPackages(repoRoot);
  const fetched: string[] = [];
  const server = createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://localhost');
    const tarball = /^\/-\/tarballs\/(.+)\/([^/]+)\.tgz$/.exec(url.pathname);
    if (tarball) {
      const name = decodeURIComponent(tarball[1]);
      const found = packages.get(name)?.get(decodeURIComponent(tarball[2]));
      if (!found) return void res.writeHead(404).end();
      fetched.push(`${name}@${tarball[2]}`);
      return packFolder(found.dir, res);
    }
    const name = decodeURIComponent(url.pathname.slice(1));
    const versions = packages.get(name);
    if (!versions) return void res.writeHead(404, { 'content-type': 'application/json' }).end('{"error":"not found"}');
    const base = `http://${req.headers.host}`;
    const doc = { name, 'dist-tags': { latest: [...versions.keys()].pop() }, versions: {} as Record<string, unknown> };
    for (const [version, { manifest }] of versions) {
      doc.versions[version] = { ...manifest, name, version,
        dist: { tarball: `${base}/-/tarballs/${encodeURIComponent(name)}/${version}.tgz` } };
    }
    res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(doc));
  });
  await new Promise<void>((ready) => server.listen(0, '127.0.0.1', ready));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}/`,
    fetched,
    close: () => new Promise((done) => server.close(() => done())),
  };
}
