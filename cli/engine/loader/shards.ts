// Which safetensors files make up the checkpoint: the shards of model.safetensors.index.json,
// else model.safetensors, else every *.safetensors file of the folder.
import { existsSync, readdirSync } from 'node:fs';
import { basename, join } from 'node:path';
import { showValue, UserError } from '../../errors.js';
import { isJsonObject, readJsonObject } from './json-file.js';

export interface ShardPlan {
  files: string[];
  /** tensor name → shard file, when an index names them. */
  weightMap: Map<string, string> | null;
  indexFile: string | null;
}

function fromIndex(dir: string, indexFile: string): ShardPlan {
  const index = readJsonObject(indexFile, true);
  const map = index.weight_map;
  if (!isJsonObject(map) || Object.keys(map).length === 0) {
    throw new UserError(`${indexFile}: weight_map is missing or empty (expected {"tensor name": "shard file"})`);
  }
  const weightMap = new Map<string, string>();
  for (const [tensor, shard] of Object.entries(map)) {
    if (typeof shard !== 'string' || shard.includes('/') || shard.includes('\\')) {
      throw new UserError(`${indexFile}: weight_map["${tensor}"] is ${showValue(shard)}, expected a file name in the folder`);
    }
    weightMap.set(tensor, join(dir, shard));
  }
  const files = [...new Set(weightMap.values())].sort();
  for (const f of files) {
    if (!existsSync(f)) throw new UserError(`${indexFile}: shard ${basename(f)} is missing`);
  }
  return { files, weightMap, indexFile };
}

export function planShards(dir: string): ShardPlan {
  const indexFile = join(dir, 'model.safetensors.index.json');
  if (existsSync(indexFile)) return fromIndex(dir, indexFile);
  const single = join(dir, 'model.safetensors');
  if (existsSync(single)) return { files: [single], weightMap: null, indexFile: null };
  const names = readdirSync(dir);
  const found = names.filter((n) => n.endsWith('.safetensors')).sort().map((n) => join(dir, n));
  if (found.length === 0) {
    const bin = names.some((n) => n.endsWith('.bin') || n.endsWith('.pt'));
    throw new UserError(`${dir}: no model.safetensors, model.safetensors.index.json or *.safetensors file` +
      (bin ? ' (PyTorch .bin/.pt checkpoints are not supported; convert them to safetensors)' : ''));
  }
  return { files: found, weightMap: null, indexFile: null };
}
