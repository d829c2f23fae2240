// Unit tests of the PWA's pure modules (node --test). The golden test runs when tests/test_pwa.py
// provides ARTEFACT_GOLDEN_DIR (Python's Preprocess.to_pixels output for sample photos).
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { applyOrientation, cropBox, imageToInput, resizeBilinear, toTensorData } from '../src/preprocess.js';
import { answer, decide, rankGallery, rowSimilarities, topK } from '../src/ranking.js';
import { AssetError, checkEmbedding, checkModel, labelHashOf, loadGallery, outputSlots, parseConfig, sha256Hex } from '../src/config.js';

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

// rows: apple1 [10,0,0] [0,10,0] | pear2 [0,0,10] | vase-17 (enrolled) [10,10,0] | seal-2 (enrolled) [0,0,0] [-128,0,0]
const galleryValues = Int8Array.from([10, 0, 0, 0, 10, 0, 0, 0, 10, 10, 10, 0, 0, 0, 0, -128, 0, 0]);
const galleryBlock = (sha256) => ({ file: 'gallery.bin', sha256, rows: 6, dim: 3, dtype: 'int8', similarity: 'cosine', min_similarity: 0.62, objects: [
  { object_id: 'apple1', collection: 'apple', first_row: 0, rows: 2, enrolled: false, label_index: 0, thumbnail: 'thumbs/0.jpg' },
  { object_id: 'pear2', collection: 'pear', first_row: 2, rows: 1, enrolled: false, label_index: 2, thumbnail: 'thumbs/2.jpg' },
  { object_id: 'vase-17', collection: 'vases', first_row: 3, rows: 1, enrolled: true, label_index: null, thumbnail: 'thumbs/enrolled-0.jpg' },
  { object_id: 'seal-2', collection: 'seals', first_row: 4, rows: 2, enrolled: true, label_index: null, thumbnail: 'thumbs/enrolled-1.jpg' }] });
const galleryBytes = new Uint8Array(galleryValues.buffer);
const headLogProbs = Float32Array.from([0.2, 0.3, 0.5].map(Math.log));  // apple1, cup3, pear2

async function galleryConfig(edit = () => {}) {
  const root = JSON.parse(await configText({ embedding: { output_index: 1, dim: 3, dtype: 'float32' }, gallery: galleryBlock(await sha256Hex(galleryBytes)) }));
  edit(root);
  return parseConfig(JSON.stringify(root), ids.join('\n'));
}

test('gallery blocks: parsed, and each inconsistency refused with the key named', async () => {
  const config = await galleryConfig();
  assert.deepEqual(config.embedding, { outputIndex: 1, dim: 3 });
  assert.deepEqual(config.gallery.objects[2], { objectId: 'vase-17', collection: 'vases', firstRow: 3, rows: 1, enrolled: true, labelIndex: null, thumbnail: 'thumbs/enrolled-0.jpg' });
  assert.equal((await parseConfig(await configText(), ids.join('\n'))).gallery, null);
  const refused = (edit, pattern) => assert.rejects(galleryConfig(edit), pattern);
  await refused((c) => delete c.embedding, /'embedding' is missing/);
  await refused((c) => delete c.gallery, /'gallery' is missing/);
  await refused((c) => { c.gallery.dim = 8; }, /'gallery.dim' is 8 but embedding.dim is 3/);
  await refused((c) => { c.gallery.dtype = 'float32'; }, /gallery.dtype/);
  await refused((c) => { c.embedding.dtype = 'int8'; }, /embedding.dtype/);
  await refused((c) => { c.gallery.objects[1].first_row = 3; }, /'gallery.objects\[1\].first_row' is 3, expected 2/);
  await refused((c) => { c.gallery.rows = 7; }, /'gallery.rows' is 7 but the objects cover 6 rows/);
  await refused((c) => { c.gallery.objects[1].label_index = 3; }, /label_index' is 3 but there are 3 labels/);
  await refused((c) => { c.gallery.objects[1].label_index = 1; }, /is 'pear2' but labels\[1\] is 'cup3'/);
  await refused((c) => { c.gallery.objects[2].label_index = 1; }, /must be null for an enrolled object/);
  await refused((c) => { delete c.gallery.objects[0].label_index; }, /'gallery.objects\[0\].label_index' is missing/);
});

test('gallery.bin: size and sha256 checked; model outputs found and checked', async () => {
  const config = await galleryConfig();
  assert.deepEqual([...await loadGallery(config.gallery, galleryBytes)], [...galleryValues]);
  await assert.rejects(loadGallery(config.gallery, galleryBytes.slice(0, 17)), /17 bytes but the config says 6 rows x 3/);
  await assert.rejects(loadGallery(config.gallery, Uint8Array.from(galleryBytes, (b, i) => (i ? b : 11))), /does not match gallery.sha256/);
  const head = { shape: [1, 3], dtype: 'float32' };
  const emb = { shape: [1, 3], dtype: 'float32', name: 'embedding' };
  assert.deepEqual(outputSlots(config, [emb, head]), { logProbs: 1, embedding: 0 });  // same size: by name
  assert.throws(() => outputSlots(config, [head, { ...emb, name: 'output_1' }]), /no output is named "embedding"/);
  assert.throws(() => outputSlots(config, [head]), /1 output\(s\) but the gallery needs the embedding at output 1/);
  assert.throws(() => checkEmbedding(config, { shape: [1, 4], dtype: 'float32' }), /config says dim 3/);
  assert.throws(() => checkEmbedding(config, { shape: [1, 3], dtype: 'int8' }), /is int8, expected float32/);
  const wide = { ...config, embedding: { outputIndex: 1, dim: 8 } };  // sizes differ: found whatever the signature order
  assert.deepEqual(outputSlots(wide, [{ shape: [1, 8] }, { shape: [1, 3] }]), { logProbs: 1, embedding: 0 });
  assert.deepEqual(outputSlots({ ...config, embedding: null }, [head]), { logProbs: 0, embedding: null });
});

test('gallery ranking: cosine to int8 rows, best row per object, ties by index, zero vectors', () => {
  const sims = rowSimilarities(galleryValues, 6, 3, Float32Array.from([3, 0, 0]));
  [1, 0, 0, Math.SQRT1_2, 0, -1].forEach((want, i) => assert.ok(Math.abs(sims[i] - want) < 1e-12, `row ${i}: ${sims[i]}`));
  const gallery = { rows: 6, dim: 3, minSimilarity: 0.62, objects: galleryBlock('').objects.map((o) => ({ firstRow: o.first_row, rows: o.rows, labelIndex: o.label_index })) };
  const order = (e, k = 10) => rankGallery(gallery, galleryValues, Float32Array.from(e), headLogProbs, k, 0.3).matches.map((m) => m.index);
  assert.deepEqual(order([1, 0, 0]), [0, 2, 1, 3]);  // pear2 and seal-2 tie at 0
  assert.deepEqual(order([-1, 0, 0]), [3, 0, 1, 2]);  // int8 is signed
  assert.deepEqual(order([0, 0, 0]), [0, 1, 2, 3]);
  assert.deepEqual(order([1, 0, 0], 2), [0, 2]);
  // enrolled best: min_similarity decides; trained best: the head probability decides (apple1: 0.2)
  assert.equal(rankGallery(gallery, galleryValues, [1, 0.5, 0], headLogProbs, 5, 0.99).confident, true);
  assert.equal(rankGallery({ ...gallery, minSimilarity: 0.95 }, galleryValues, [1, 0.5, 0], headLogProbs, 5, 0).confident, false);
  assert.equal(rankGallery(gallery, galleryValues, [1, 0, 0], headLogProbs, 5, 0.3).confident, false);
  assert.equal(rankGallery(gallery, galleryValues, [1, 0, 0], headLogProbs, 5, 0.19).confident, true);
});

test('answer: similarity, head probability of trained objects, enrolled marker; head-only without gallery', async () => {
  const config = { ...await galleryConfig(), topK: 3 };
  const shown = answer(config, galleryValues, headLogProbs, Float32Array.from([1, 1, 0]));
  assert.deepEqual(shown.candidates.map((c) => [c.objectId, c.enrolled, c.probability === null]), [['vase-17', true, true], ['apple1', false, false], ['pear2', false, false]]);
  assert.ok(Math.abs(shown.candidates[0].similarity - 1) < 1e-12 && Math.abs(shown.candidates[1].probability - 0.2) < 1e-6);
  assert.equal(shown.candidates[0].thumbnail, 'thumbs/enrolled-0.jpg');
  assert.deepEqual([shown.confident, shown.threshold], [true, 0.62]);
  const byHead = answer({ ...config, gallery: null, embedding: null }, null, headLogProbs, null);
  assert.deepEqual(byHead.candidates.map((c) => [c.index, c.similarity]), [[2, null], [1, null], [0, null]]);
  assert.deepEqual([byHead.confident, byHead.threshold], [true, 0.3]);
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
