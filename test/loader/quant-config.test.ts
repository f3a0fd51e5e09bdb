// GPTQ settings from the real TheBloke configs in fixtures/configs, and the 4-bit-only rule.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { fixtures } from '../helpers/run-cli.js';
import { UserError } from '../../cli/errors.js';
import { gptqSettingsFromConfigs, parseGptqSettings } from '../../cli/engine/loader/quantization.js';
import { parseModelConfig } from '../../cli/engine/loader/config.js';
import { readJson } from './model-dir.js';

const cfg = (repo: string, file: string) => join(fixtures, 'configs', repo, file);
const LLAMA13 = 'TheBloke_Llama-2-13B-chat-GPTQ';
const MYTHO = 'TheBloke_MythoMax-L2-13B-GPTQ';
const GENZ = 'TheBloke_Genz-70b-GPTQ';

function quantizeConfig(repo: string, file: string) {
  const path = cfg(repo, file);
  return parseGptqSettings(readJson(path), path, '', 'quantize_config.json');
}

test('Llama-2-13B-chat: 4-bit g128 without act-order, from config.json and from quantize_config.json', () => {
  const path = cfg(LLAMA13, 'config.json');
  const fromConfig = gptqSettingsFromConfigs(readJson(path), path, null, 'quantize_config.json');
  assert.deepEqual(fromConfig, { bits: 4, groupSize: 128, descAct: false, sym: true, checkpointFormat: 'gptq', source: 'config.json' });
  assert.deepEqual(quantizeConfig(LLAMA13, 'quantize_config.json'),
    { ...fromConfig, source: 'quantize_config.json' });
  const arch = parseModelConfig(readJson(path), path);
  assert.equal(arch.numLayers, 40);
  assert.equal(arch.numHeads, 40);
  assert.equal(arch.numKvHeads, 40);
  assert.equal(arch.headDim, 128);
  assert.equal(arch.ropeTheta, 10000); // absent in this config: the Llama default
  assert.equal(arch.rmsNormEps, 1e-5);
  assert.equal(arch.tieWordEmbeddings, false);
});

test('config.json quantization_config wins over quantize_config.json', () => {
  const path = cfg(MYTHO, 'config.main.json');
  const q = gptqSettingsFromConfigs(readJson(path), path, readJson(cfg(MYTHO, 'quantize_config.4bit_g32_actorder.json')), 'q');
  assert.equal(q?.groupSize, 128);
  assert.equal(q?.descAct, false);
  assert.equal(q?.source, 'config.json');
});

test('MythoMax: the 4-bit g32 / g128 act-order / g128 branches are accepted', () => {
  assert.deepEqual(quantizeConfig(MYTHO, 'quantize_config.4bit_g32_actorder.json'),
    { bits: 4, groupSize: 32, descAct: true, sym: true, checkpointFormat: 'gptq', source: 'quantize_config.json' });
  assert.deepEqual(quantizeConfig(MYTHO, 'quantize_config.4bit_g128_actorder.json'),
    { bits: 4, groupSize: 128, descAct: true, sym: true, checkpointFormat: 'gptq', source: 'quantize_config.json' });
  assert.deepEqual(quantizeConfig(MYTHO, 'quantize_config.main_4bit_g128_noact.json'),
    { bits: 4, groupSize: 128, descAct: false, sym: true, checkpointFormat: 'gptq', source: 'quantize_config.json' });
});

test('Genz-70B: 4-bit g128 act-order accepted; GQA 64/8 read from its config', () => {
  assert.deepEqual(quantizeConfig(GENZ, 'quantize_config.4bit_g128_actorder.json'),
    { bits: 4, groupSize: 128, descAct: true, sym: true, checkpointFormat: 'gptq', source: 'quantize_config.json' });
  const path = cfg(GENZ, 'config.3bit_branch.json');
  const arch = parseModelConfig(readJson(path), path);
  assert.equal(arch.numHeads, 64);
  assert.equal(arch.numKvHeads, 8);
  assert.equal(arch.numLayers, 80);
  assert.equal(arch.intermediateSize, 28672);
  assert.equal(arch.torchDtype, 'bfloat16');
});

function assertOnly4Bit(fn: () => unknown, file: string, bits: number): void {
  assert.throws(fn, (err: unknown) => {
    assert.ok(err instanceof UserError);
    assert.match(err.message, /only 4-bit/);
    assert.match(err.message, new RegExp(`bits is ${bits}`));
    assert.ok(err.message.includes(file), err.message);
    return true;
  });
}

test('3-bit (Genz) and 8-bit (MythoMax) configs are refused: only 4-bit', () => {
  const genzConfig = cfg(GENZ, 'config.3bit_branch.json');
  assertOnly4Bit(() => gptqSettingsFromConfigs(readJson(genzConfig), genzConfig, null, 'q'), 'config.3bit_branch.json', 3);
  assertOnly4Bit(() => quantizeConfig(GENZ, 'quantize_config.3bit_nogroup_actorder.json'), 'quantize_config.3bit_nogroup_actorder.json', 3);
  assertOnly4Bit(() => quantizeConfig(MYTHO, 'quantize_config.8bit_nogroup_actorder.json'), 'quantize_config.8bit_nogroup_actorder.json', 8);
});

test('gptq_v2, asym, no grouping, and other methods', () => {
  const base = { bits: 4, group_size: -1, desc_act: true, sym: false };
  assert.deepEqual(parseGptqSettings({ ...base, checkpoint_format: 'gptq_v2' }, 'f', '', 'quantize_config.json'),
    { bits: 4, groupSize: -1, descAct: true, sym: false, checkpointFormat: 'gptq_v2', source: 'quantize_config.json' });
  // GPTQModel spells it `format`.
  assert.equal(parseGptqSettings({ ...base, format: 'gptq_v2' }, 'f', '', 'quantize_config.json').checkpointFormat, 'gptq_v2');
  assert.throws(() => parseGptqSettings({ ...base, quant_method: 'awq' }, 'c.json', 'quantization_config.', 'config.json'),
    /c\.json: quantization_config\.quant_method is "awq"; only GPTQ 4-bit/);
  assert.throws(() => parseGptqSettings({ ...base, checkpoint_format: 'marlin' }, 'f', '', 'quantize_config.json'),
    /checkpoint_format is "marlin", expected "gptq" or "gptq_v2"/);
  assert.throws(() => parseGptqSettings({ ...base, group_size: 0 }, 'f', '', 'quantize_config.json'), /group_size is 0/);
});
