// artefact_config.json + labels.txt -> a checked config (see android_demo/ASSETS.md).
// Mirrors android_demo/core FieldConfig.kt: every problem becomes an AssetError with a one-line message.

export const CONFIG_FILE = 'artefact_config.json';
export const FORMAT_VERSION = 1;

export class AssetError extends Error {
  constructor(message) { super(message); this.name = 'AssetError'; }
}

const fail = (key, what) => { throw new AssetError(`${CONFIG_FILE}: '${key}' ${what}`); };

function get(obj, key, path = key) {
  const v = obj?.[key];
  if (v === undefined || v === null) fail(path, 'is missing');
  return v;
}
const str = (o, k, p = k) => { const v = get(o, k, p); return typeof v === 'string' ? v : fail(p, 'must be a string'); };
const num = (o, k, p = k) => { const v = get(o, k, p); return typeof v === 'number' ? v : fail(p, 'must be a number'); };
const int = (o, k, p = k) => { const v = num(o, k, p); return Number.isInteger(v) && v >= 0 ? v : fail(p, 'must be a non-negative integer'); };
const obj = (o, k, p = k) => { const v = get(o, k, p); return typeof v === 'object' && !Array.isArray(v) ? v : fail(p, 'must be an object'); };
function triple(o, k, p) {
  const v = get(o, k, p);
  if (!Array.isArray(v) || v.length !== 3 || v.some((x) => typeof x !== 'number')) fail(p, 'must be a list of 3 numbers');
  return v;
}

export async function sha256Hex(bytes) {
  const digest = await crypto.subtle.digest('SHA-256', bytes);
  return [...new Uint8Array(digest)].map((b) => b.toString(16).padStart(2, '0')).join('');
}

/** artefact.bundle.label_hash of [{objectId, collection}]. */
export function labelHashOf(labels) {
  return sha256Hex(new TextEncoder().encode(labels.map((l) => `${l.objectId}\t${l.collection}`).join('\n')));
}

function parseInput(o) {
  const dtype = str(o, 'dtype', 'input.dtype');
  if (dtype !== 'uint8' && dtype !== 'float32') fail('input.dtype', `must be uint8 or float32, got ${dtype}`);
  for (const [key, want] of [['layout', 'NHWC'], ['channel_order', 'RGB'], ['interpolation', 'bilinear']]) {
    const got = str(o, key, `input.${key}`);
    if (got !== want) fail(`input.${key}`, `must be ${want}, got ${got}`);
  }
  const channels = int(o, 'channels', 'input.channels');
  if (channels !== 3) fail('input.channels', `must be 3, got ${channels}`);
  const width = int(o, 'width', 'input.width');
  const height = int(o, 'height', 'input.height');
  if (width < 1 || height < 1) fail('input.width/height', 'must be positive');
  const cropFraction = num(o, 'crop_fraction', 'input.crop_fraction');
  if (!(cropFraction > 0 && cropFraction <= 1)) fail('input.crop_fraction', `must be in (0, 1], got ${cropFraction}`);
  const std = triple(o, 'std', 'input.std');
  if (std.some((s) => s <= 0)) fail('input.std', 'must be positive');
  if (dtype === 'uint8' && typeof o.quantization !== 'object') fail('input.quantization', 'is missing (needed for a uint8 model)');
  return { width, height, channels, dtype, cropFraction, mean: triple(o, 'mean', 'input.mean'), std };
}

function parseLabels(root, labelsTxt, numClasses) {
  const ids = labelsTxt.split('\n').map((l) => l.trim()).filter((l) => l);
  const entries = get(root, 'labels');
  if (!Array.isArray(entries)) fail('labels', 'must be a list');
  if (ids.length !== numClasses || entries.length !== numClasses) {
    throw new AssetError(`model/label mismatch: the model has ${numClasses} outputs, labels.txt has ${ids.length} lines, ${CONFIG_FILE} lists ${entries.length} labels`);
  }
  return entries.map((e, i) => {
    const label = { index: int(e, 'index', `labels[${i}].index`), objectId: str(e, 'object_id', `labels[${i}].object_id`),
      collection: e.collection ?? '', thumbnail: e.thumbnail ?? '' };
    if (label.index !== i) fail(`labels[${i}].index`, `is ${label.index}; labels must be in model output order`);
    if (label.objectId !== ids[i]) throw new AssetError(`model/label mismatch: labels.txt line ${i + 1} is '${ids[i]}' but ${CONFIG_FILE} says '${label.objectId}'`);
    return label;
  });
}

/** Parse and cross-check the config text and labels.txt text. Throws AssetError. */
export async function parseConfig(configText, labelsTxt) {
  let root;
  try { root = JSON.parse(configText); } catch (err) { throw new AssetError(`${CONFIG_FILE}: not valid JSON (${err.message})`); }
  if (typeof root !== 'object' || root === null || Array.isArray(root)) throw new AssetError(`${CONFIG_FILE}: not a JSON object`);
  const version = int(root, 'format_version');
  if (version !== FORMAT_VERSION) fail('format_version', `is ${version}; this app reads format ${FORMAT_VERSION} (re-export the assets)`);
  const input = parseInput(obj(root, 'input'));
  const output = obj(root, 'output');
  if (str(output, 'type', 'output.type') !== 'log_probabilities') fail('output.type', 'must be log_probabilities');
  const numClasses = int(output, 'num_classes', 'output.num_classes');
  const labels = parseLabels(root, labelsTxt, numClasses);
  const topK = int(root, 'top_k');
  if (topK < 1) fail('top_k', 'must be at least 1');
  const minProbability = num(obj(root, 'threshold'), 'min_probability', 'threshold.min_probability');
  if (!(minProbability >= 0 && minProbability <= 1)) fail('threshold.min_probability', 'must be between 0 and 1');
  const labelHash = str(root, 'label_hash');
  if (labelHash !== await labelHashOf(labels)) throw new AssetError(`${CONFIG_FILE}: label_hash does not match its labels (edited by hand, or assets from two exports)`);
  const embedding = root.embedding == null ? null : parseEmbedding(obj(root, 'embedding'));
  const gallery = root.gallery == null ? null : parseGallery(obj(root, 'gallery'), labels);
  if (!embedding !== !gallery) fail(gallery ? 'embedding' : 'gallery', 'is missing (the embedding and gallery blocks come together)');
  if (gallery && gallery.dim !== embedding.dim) fail('gallery.dim', `is ${gallery.dim} but embedding.dim is ${embedding.dim}`);
  return { modelFile: str(root, 'model_file'), labelsFile: str(root, 'labels_file'),
    modelSha256: str(root, 'model_sha256').toLowerCase(), labelHash, input, numClasses, labels, topK, minProbability, embedding, gallery };
}

function parseEmbedding(o) {
  const dtype = str(o, 'dtype', 'embedding.dtype');
  if (dtype !== 'float32') fail('embedding.dtype', `must be float32, got ${dtype}`);
  const dim = int(o, 'dim', 'embedding.dim');
  if (dim < 1) fail('embedding.dim', 'must be at least 1');
  return { outputIndex: int(o, 'output_index', 'embedding.output_index'), dim };
}

function parseGallery(o, labels) {
  for (const [key, want] of [['dtype', 'int8'], ['similarity', 'cosine']]) {
    const got = str(o, key, `gallery.${key}`);
    if (got !== want) fail(`gallery.${key}`, `must be ${want}, got ${got}`);
  }
  const rows = int(o, 'rows', 'gallery.rows');
  const dim = int(o, 'dim', 'gallery.dim');
  if (dim < 1) fail('gallery.dim', 'must be at least 1');
  const minSimilarity = num(o, 'min_similarity', 'gallery.min_similarity');
  if (!(minSimilarity >= -1 && minSimilarity <= 1)) fail('gallery.min_similarity', 'must be between -1 and 1');
  const entries = get(o, 'objects', 'gallery.objects');
  if (!Array.isArray(entries)) fail('gallery.objects', 'must be a list');
  if (!entries.length) fail('gallery.objects', 'is empty');
  let nextRow = 0;
  const objects = entries.map((e, k) => {
    const object = parseGalleryObject(e, `gallery.objects[${k}]`, labels);
    if (object.firstRow !== nextRow) fail(`gallery.objects[${k}].first_row`, `is ${object.firstRow}, expected ${nextRow} (rows must be contiguous, in order)`);
    nextRow += object.rows;
    return object;
  });
  if (nextRow !== rows) fail('gallery.rows', `is ${rows} but the objects cover ${nextRow} rows`);
  return { file: str(o, 'file', 'gallery.file'), sha256: str(o, 'sha256', 'gallery.sha256').toLowerCase(), rows, dim, minSimilarity, objects };
}

function parseGalleryObject(e, path, labels) {
  if (typeof e !== 'object' || e === null || Array.isArray(e)) fail(path, 'must be an object');
  const enrolled = get(e, 'enrolled', `${path}.enrolled`);
  if (typeof enrolled !== 'boolean') fail(`${path}.enrolled`, 'must be true or false');
  const objectId = str(e, 'object_id', `${path}.object_id`);
  const labelIndex = e.label_index == null ? null : int(e, 'label_index', `${path}.label_index`);
  if (enrolled !== (labelIndex === null)) fail(`${path}.label_index`, enrolled ? 'must be null for an enrolled object' : 'is missing (a trained object needs its label index)');
  if (labelIndex !== null) {
    if (labelIndex >= labels.length) fail(`${path}.label_index`, `is ${labelIndex} but there are ${labels.length} labels`);
    if (labels[labelIndex].objectId !== objectId) fail(`${path}.object_id`, `is '${objectId}' but labels[${labelIndex}] is '${labels[labelIndex].objectId}'`);
  }
  const rows = int(e, 'rows', `${path}.rows`);
  if (rows < 1) fail(`${path}.rows`, 'must be at least 1');
  return { objectId, collection: e.collection ?? '', firstRow: int(e, 'first_row', `${path}.first_row`), rows, enrolled, labelIndex,
    thumbnail: str(e, 'thumbnail', `${path}.thumbnail`) };
}

/** gallery.bin's bytes as int8 rows, after checking their size and sha256 against the config. Throws AssetError. */
export async function loadGallery(gallery, bytes) {
  if (bytes.length !== gallery.rows * gallery.dim) {
    throw new AssetError(`${gallery.file}: ${bytes.length} bytes but the config says ${gallery.rows} rows x ${gallery.dim} (assets from two exports?)`);
  }
  if (await sha256Hex(bytes) !== gallery.sha256) throw new AssetError(`${gallery.file} does not match gallery.sha256 in ${CONFIG_FILE} (assets from two exports?)`);
  return new Int8Array(bytes.buffer, bytes.byteOffset, bytes.length);
}

const size = (detail) => [...detail.shape].reduce((a, d) => a * Math.abs(d), 1);

/**
 * Which of LiteRT.js's outputs hold the log-probabilities and the embedding ({logProbs, embedding},
 * embedding null without a gallery). LiteRT.js may return them in signature order, which need not be
 * the model's output order that embedding.output_index counts: they are told apart by size, and by
 * the exported tensor name "embedding" when the sizes are equal. Throws AssetError.
 */
export function outputSlots(config, outputDetails) {
  const { embedding, modelFile, numClasses } = config;
  const bySize = (want, position) => {
    const found = outputDetails.findIndex((d) => size(d) === want);
    return found >= 0 ? found : position;
  };
  if (!embedding) return { logProbs: bySize(numClasses, 0), embedding: null };
  const n = outputDetails.length;
  if (n <= embedding.outputIndex) throw new AssetError(`${modelFile}: model has ${n} output(s) but the gallery needs the embedding at output ${embedding.outputIndex} (re-export)`);
  if (embedding.dim !== numClasses) return { logProbs: bySize(numClasses, 0), embedding: bySize(embedding.dim, embedding.outputIndex) };
  const named = outputDetails.findIndex((d) => d.name === 'embedding');
  if (named < 0) throw new AssetError(`${modelFile}: the embedding and the log-probabilities both have ${numClasses} values and no output is named "embedding" (re-export)`);
  return { logProbs: outputDetails.findIndex((d, i) => i !== named), embedding: named };
}

/** The embedding output (a TensorDetails) must be float32 with `dim` values. Throws AssetError. */
export function checkEmbedding(config, detail) {
  const { embedding, modelFile } = config;
  if (size(detail) !== embedding.dim) throw new AssetError(`${modelFile}: embedding output is [${[...detail.shape]}] (${size(detail)} values) but the config says dim ${embedding.dim}`);
  if (detail.dtype !== 'float32') throw new AssetError(`${modelFile}: embedding output is ${detail.dtype}, expected float32`);
}

/** Check the compiled model's tensors ({dtype, shape}) against the config. Throws AssetError. */
export function checkModel(config, inputDetail, outputDetail) {
  const { input, modelFile, numClasses } = config;
  const want = [1, input.height, input.width, input.channels];
  const shape = [...inputDetail.shape];
  if (shape[0] === -1) throw new AssetError(`${modelFile}: model input has a dynamic batch dimension; LiteRT.js needs a fixed [${want}] input (re-export)`);
  if (shape.join() !== want.join()) throw new AssetError(`${modelFile}: model input is [${shape}] but the config says [${want}]`);
  if (inputDetail.dtype !== input.dtype) throw new AssetError(`${modelFile}: model input type is ${inputDetail.dtype} but the config says ${input.dtype}`);
  const out = [...outputDetail.shape].map((d) => Math.abs(d));
  if (out[out.length - 1] !== numClasses || out.reduce((a, b) => a * b, 1) !== numClasses) {
    throw new AssetError(`${modelFile}: model has [${out}] outputs but there are ${numClasses} labels (model/label mismatch)`);
  }
  if (outputDetail.dtype !== 'float32') throw new AssetError(`${modelFile}: model output type is ${outputDetail.dtype}, expected float32 log-probabilities`);
}
