// Unit tests of the PWA's pure modules (node --test). The golden test runs when tests/test_pwa.py
// provides ARTEFACT_GOLDEN_DIR (Python's Preprocess.to_pixels output for sample photos).
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { applyOrientation, cropBox, imageToInput, resizeBilinear, toTensorData } from '../src/preprocess.js';
import { decide, topK } from '../src/ranking.js';
import { AssetError, checkModel, labelHashOf, parseConfig } from '../src/config.js';

const gray = (values) => Uint8Array.from(values.flatMap((v) => [v, v, v]));
const reds = (rgb) => [...rgb].filter((_, i) => i % 3 === 0);

test('resize matches Pillow (values from PIL 13)', () => {
  assert.deepEqual(reds(resizeBilinear(gray([0, 0, 255, 255]), 4, 1, 2, 1)), [36, 219]);
  assert.deepEqual(reds(resizeBilinear(gray([10, 200, 30, 90, 250]), 5, 1, 3, 1)), [91, 81, 181]);
  assert.deepEqual(reds(resizeBilinear(gray([10, 200, 30, 90, 250]), 5, 1, 8, 1)), [10, 93, 189, 83, 49, 86, 180, 250]);
});

test('crop box follows Preprocess.crop_box with Python rounding', () => {
  assert.deepEqual(cropBox(100, 60, 1.0), { left: 20, top: 0, side: 60 });
  assert.deepEqual(cropBox(7, 14, 1.0), { left: 0, top: 3, side: 7 });
  assert.equal(cropBox(10, 10, 0.25).side, 2);
  assert.equal(cropBox(10, 10, 0.35).side, 4);
});

test('float models get (pixel - mean) / std', () => {
  const out = toTensorData(Uint8Array.from([0, 255, 128]), { dtype: 'float32', mean: [127.5, 127.5, 127.5], std: [127.5, 127.5, 127.5] });
  assert.deepEqual([...out].map((v) => Number(v.toFixed(5))), [-1, 1, 0.00392]);
});

test('top-k and the confidence threshold', () => {
  const logProbs = Float32Array.from([0.1, 0.5, 0.05, 0.3, 0.05].map(Math.log));
  assert.deepEqual(topK(logProbs, 4).map((m) => m.index), [1, 3, 0, 2]);
  assert.equal(topK(logProbs, 99).length, 5);
  assert.equal(decide(logProbs, 5, 0.49).confident, true);
  assert.equal(decide(logProbs, 5, 0.51).confident, false);
});

const ids = ['apple1', 'cup3', 'pear2'];
async function configText(overrides = {}) {
  const labels = ids.map((id, index) => ({ index, object_id: id, collection: id.replace(/\d+$/, ''), thumbnail: `thumbs/${index}.jpg` }));
  const hash = await labelHashOf(labels.map((l) => ({ objectId: l.object_id, collection: l.collection })));
  return JSON.stringify({ format_version: 1, model_file: 'model.tflite', labels_file: 'labels.txt', model_sha256: 'AB', label_hash: hash,
    input: { width: 64, height: 64, channels: 3, dtype: 'uint8', layout: 'NHWC', channel_order: 'RGB', crop_fraction: 1.0,
      interpolation: 'bilinear', mean: [127.5, 127.5, 127.5], std: [127.5, 127.5, 127.5], quantization: { scale: 1 / 127.5, zero_point: 127 } },
    output: { type: 'log_probabilities', dtype: 'float32', num_classes: 3 }, labels, top_k: 5, threshold: { min_probability: 0.3 }, ...overrides });
}

test('config parsing and the model/label cross-checks', async () => {
  const labelsTxt = ids.join('\n') + '\n';
  const config = await parseConfig(await configText(), labelsTxt);
  assert.deepEqual(config.labels.map((l) => l.objectId), ids);
  assert.equal(config.input.cropFraction, 1.0);
  await assert.rejects(parseConfig(await configText(), 'apple1\ncup3\n'), /model\/label mismatch/);
  await assert.rejects(parseConfig(await configText(), 'apple1\npear2\ncup3\n'), /line 2 is 'pear2'/);
  await assert.rejects(parseConfig(await configText({ label_hash: '0' }), labelsTxt), /label_hash/);
  await assert.rejects(parseConfig('{', labelsTxt), AssetError);
  await assert.rejects(parseConfig(await configText({ top_k: undefined }), labelsTxt), /'top_k' is missing/);
  checkModel(config, { shape: [1, 64, 64, 3], dtype: 'uint8' }, { shape: [1, 3], dtype: 'float32' });
  assert.throws(() => checkModel(config, { shape: [1, 64, 64, 3], dtype: 'uint8' }, { shape: [1, 80], dtype: 'float32' }), /model\/label mismatch/);
  assert.throws(() => checkModel(config, { shape: [1, 32, 32, 3], dtype: 'uint8' }, { shape: [1, 3], dtype: 'float32' }), /model input/);
});

test('golden: preprocess.js equals Python Preprocess.to_pixels within one step', { skip: !process.env.ARTEFACT_GOLDEN_DIR && 'ARTEFACT_GOLDEN_DIR not set' }, () => {
  const dir = process.env.ARTEFACT_GOLDEN_DIR;
  const cases = JSON.parse(readFileSync(join(dir, 'cases.json'), 'utf8'));
  assert.ok(cases.length > 0);
  for (const c of cases) {
    const stored = new Uint8Array(readFileSync(join(dir, c.input)));
    const upright = applyOrientation(stored, c.width, c.height, c.orientation);
    const input = { width: c.input_size, height: c.input_size, cropFraction: c.crop_fraction };
    const actual = imageToInput(upright.rgba, upright.width, upright.height, input);
    const expected = new Uint8Array(readFileSync(join(dir, c.expected)));
    assert.equal(actual.length, expected.length, c.name);
    let maxDiff = 0;
    for (let i = 0; i < expected.length; i++) maxDiff = Math.max(maxDiff, Math.abs(expected[i] - actual[i]));
    console.log(`GOLDEN ${c.name} max_diff=${maxDiff}`);
    assert.ok(maxDiff <= 1, `${c.name}: max difference ${maxDiff}`);
  }
});
