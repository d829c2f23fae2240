// The field client: load the exported assets, run model.tflite with LiteRT.js (CPU / XNNPACK wasm),
// rank by the embedding gallery when the assets have one (else by the head's top-k), show the top-k
// view, keep a local history. Every failure ends as a message on screen.
import { loadLiteRt, loadAndCompile, Tensor } from '@litertjs/core';
import { AssetError, parseConfig, checkModel, checkEmbedding, loadGallery, outputSlots, sha256Hex } from './config.js';
import { cropBox, cropToInput, toTensorData } from './preprocess.js';
import { answer } from './ranking.js';

const ASSETS = './assets/';
const WASM_DIR = './node_modules/@litertjs/core/wasm/';
const HISTORY_KEY = 'artefact-history-v1';
const HISTORY_MAX = 50;
const OFFLINE_CACHE = 'artefact-v2';  // the cache sw.js serves from (same name there)

const $ = (id) => document.getElementById(id);
const state = { config: null, model: null, values: null, slots: null, results: [] };
window.artefact = state;  // read by the end-to-end test

function setState(name, message = '') {
  document.body.dataset.state = name;
  $('status').textContent = message;
  $('status').className = name === 'error' ? 'status error' : 'status';
}

async function fetchAsset(name, kind) {
  let response;
  try {
    response = await fetch(ASSETS + name, { cache: 'no-cache' });
  } catch (err) {
    throw new AssetError(`assets/${name}: cannot be loaded (${err.message}); open the app once online, or copy the exported assets`);
  }
  if (!response.ok) {
    throw new AssetError(`assets/${name}: missing (HTTP ${response.status}). Export with "artefact-export --target android" and copy the folder to pwa/assets/`);
  }
  return kind === 'bytes' ? new Uint8Array(await response.arrayBuffer()) : response.text();
}

async function start() {
  setState('loading', 'Loading the catalogue model…');
  try {
    const config = await parseConfig(await fetchAsset('artefact_config.json', 'text'), await fetchAsset('labels.txt', 'text'));
    const bytes = await fetchAsset(`${config.modelFile}?v=${config.modelSha256.slice(0, 16)}`, 'bytes');
    if (await sha256Hex(bytes) !== config.modelSha256) {
      throw new AssetError(`assets/${config.modelFile}: does not match model_sha256 in artefact_config.json (assets from two different exports?)`);
    }
    const values = config.gallery && await loadGallery(config.gallery, await fetchAsset(galleryPath(config.gallery), 'bytes'));
    await loadLiteRt(WASM_DIR);
    let model;
    try {
      model = await loadAndCompile(bytes, { accelerator: 'wasm' });
    } catch (err) {
      throw new AssetError(`assets/${config.modelFile}: LiteRT cannot load this model (${err.message})`);
    }
    const outputs = model.getOutputDetails();
    const slots = outputSlots(config, outputs);
    checkModel(config, model.getInputDetails()[0], outputs[slots.logProbs]);
    if (slots.embedding !== null) checkEmbedding(config, outputs[slots.embedding]);
    Object.assign(state, { config, model, values, slots });
    const objects = config.gallery ? `${config.gallery.objects.length} catalogue objects (${config.gallery.objects.filter((o) => o.enrolled).length} enrolled), embedding gallery`
      : `${config.numClasses} catalogue objects`;
    $('catalogue').textContent = `${objects} · input ${config.input.width}×${config.input.height} ${config.input.dtype}`;
    setState('ready', 'Ready: take or choose a photo of the object.');
    $('actions').hidden = false;
    keepOffline(config).catch((err) => console.warn('offline cache incomplete:', err));
  } catch (err) {
    console.error(err);
    setState('error', err instanceof AssetError ? err.message : `Cannot start: ${err.message}`);
  }
  renderHistory();
}

/** gallery.bin's path, versioned by its sha256 (a new export gets a new offline-cache key). */
const galleryPath = (gallery) => `${gallery.file}?v=${gallery.sha256.slice(0, 16)}`;

/** URL of an asset thumbnail, versioned by the export (gallery sha256, else label hash) for the offline cache. */
function thumbUrl(config, path) {
  return `${ASSETS}${path}?v=${(config.gallery?.sha256 ?? config.labelHash).slice(0, 16)}`;
}

/**
 * Put everything this start-up loaded (shell, LiteRT wasm, model, config, gallery.bin) and the
 * thumbnails into the service worker's cache, so the next start works without a network.
 */
async function keepOffline(config) {
  if (!('caches' in window) || !('serviceWorker' in navigator)) return;
  const urls = new Set(performance.getEntriesByType('resource').map((e) => e.name).filter((u) => u.startsWith(location.origin)));
  urls.add(new URL('./', location.href).href);
  if (config.gallery) urls.add(new URL(ASSETS + galleryPath(config.gallery), location.href).href);
  for (const { thumbnail } of [...config.labels, ...(config.gallery?.objects ?? [])]) urls.add(new URL(thumbUrl(config, thumbnail), location.href).href);
  const cache = await caches.open(OFFLINE_CACHE);
  await Promise.all([...urls].map(async (url) => {
    if (await cache.match(url)) return;
    const response = await fetch(url);
    if (response.ok) await cache.put(url, response);
  }));
  state.offlineReady = true;
}

/** Decode a picked file upright (EXIF applied by the browser, no colour management, as PIL). */
async function decodeFile(file) {
  try {
    return await createImageBitmap(file, { imageOrientation: 'from-image', colorSpaceConversion: 'none', premultiplyAlpha: 'none' });
  } catch {
    throw new AssetError(`${file.name}: cannot decode this photo (not an image, or a damaged file); try another one`);
  }
}

/** The centre crop of an upright source (ImageBitmap or <video>) as RGBA pixels, copied 1:1. */
function cropPixels(source, width, height) {
  if (Math.min(width, height) < 16) throw new AssetError(`photo too small (${width}×${height}, need at least 16 px)`);
  const { left, top, side } = cropBox(width, height, state.config.input.cropFraction);
  const canvas = new OffscreenCanvas(side, side);
  const ctx = canvas.getContext('2d', { willReadFrequently: true });
  ctx.drawImage(source, left, top, side, side, 0, 0, side, side);
  return { rgba: ctx.getImageData(0, 0, side, side, { colorSpace: 'srgb' }).data, side, canvas };
}

async function classify(source, width, height, name, origin) {
  const { config, model, values, slots } = state;
  setState('busy', `Analysing ${name}…`);
  const t0 = performance.now();
  const { rgba, side, canvas } = cropPixels(source, width, height);
  const rgb = cropToInput(rgba, side, config.input);
  const t1 = performance.now();
  const input = new Tensor(toTensorData(rgb, config.input), [1, config.input.height, config.input.width, 3]);
  let logProbs;
  let embedding = null;
  try {
    const outputs = await model.run(input);  // an array in signature order: see outputSlots
    logProbs = Float32Array.from(await outputs[slots.logProbs].data());
    if (slots.embedding !== null) embedding = Float32Array.from(await outputs[slots.embedding].data());
    outputs.forEach((t) => t.delete());
  } finally {
    input.delete();
  }
  const t2 = performance.now();
  const verdict = answer(config, values, logProbs, embedding);
  const result = {
    name, origin, preprocessMs: t1 - t0, inferenceMs: t2 - t1, confident: verdict.confident, threshold: verdict.threshold,
    matches: verdict.candidates, thumb: await thumbnail(canvas),
  };
  state.results.push(result);
  renderResult(result);
  addHistory(result);
  setState('result', '');
  return result;
}

async function thumbnail(canvas) {
  const small = new OffscreenCanvas(72, 72);
  small.getContext('2d').drawImage(canvas, 0, 0, 72, 72);
  const blob = await small.convertToBlob({ type: 'image/jpeg', quality: 0.7 });
  return new Promise((resolve) => { const r = new FileReader(); r.onload = () => resolve(r.result); r.readAsDataURL(blob); });
}

const pct = (p) => `${(100 * p).toFixed(p >= 0.995 || p < 0.001 ? 0 : 1)}%`;

/** "Best match: …" or "No confident match: …", naming the number the decision used (probability or similarity). */
function verdictText({ matches: [best], confident, threshold }) {
  const similar = best.similarity === null ? '' : `${pct(best.similarity)} similar`;
  if (best.enrolled) {
    return confident ? `Best match: ${best.objectId} (enrolled object, ${similar})`
      : `No confident match: the best candidate, enrolled object ${best.objectId}, is ${similar}, below ${pct(threshold)}. Treat the list as leads only.`;
  }
  if (confident) return `Best match: ${best.objectId} (${pct(best.probability)}${similar && `, ${similar}`})`;
  const has = similar ? `the best candidate, ${best.objectId} (${similar}), has probability ${pct(best.probability)}` : `the best candidate has ${pct(best.probability)}`;
  return `No confident match: ${has}, below ${pct(threshold)}. Treat the list as leads only.`;
}

function renderResult(result) {
  const { config } = state;
  $('result').hidden = false;
  $('query').src = result.thumb;
  $('verdict').className = result.confident ? 'verdict ok' : 'verdict unsure';
  $('verdict').textContent = verdictText(result);
  $('timing').textContent = `Inference ${result.inferenceMs.toFixed(1)} ms · preprocessing ${result.preprocessMs.toFixed(1)} ms · on this device, offline`;
  const list = $('matches');
  list.replaceChildren(...result.matches.map((m, rank) => {
    const li = document.createElement('li');
    li.innerHTML = `<img alt="" loading="lazy"><div class="who"><b></b><span></span></div><div class="bar"><i></i></div><em></em>`;
    li.querySelector('img').src = thumbUrl(config, m.thumbnail);
    li.querySelector('img').onerror = (e) => { e.target.replaceWith(Object.assign(document.createElement('div'), { className: 'nothumb', textContent: '?' })); };
    li.querySelector('b').textContent = `${rank + 1}. ${m.objectId}`;
    if (m.enrolled) li.querySelector('b').after(Object.assign(document.createElement('small'), { className: 'enrolled', textContent: 'enrolled' }));
    li.querySelector('span').textContent = (m.collection || '—') + (m.similarity === null ? '' : ` · ${pct(m.similarity)} similar`);
    li.querySelector('i').style.width = `${Math.min(100, Math.max(1, 100 * m.score))}%`;
    li.querySelector('em').textContent = pct(m.score);
    return li;
  }));
}

function loadHistory() {
  try { return JSON.parse(localStorage.getItem(HISTORY_KEY) || '[]'); } catch { return []; }
}

function addHistory(result) {
  const entry = { time: Date.now(), name: result.name, origin: result.origin, confident: result.confident,
    ms: Math.round(result.inferenceMs), thumb: result.thumb,
    matches: result.matches.map((m) => [m.objectId, Number(m.score.toFixed(4))]) };
  const history = [entry, ...loadHistory()].slice(0, HISTORY_MAX);
  try { localStorage.setItem(HISTORY_KEY, JSON.stringify(history)); } catch { /* storage full: keep the view */ }
  renderHistory();
}

function renderHistory() {
  const history = loadHistory();
  $('history-section').hidden = history.length === 0;
  $('history').replaceChildren(...history.map((h) => {
    const li = document.createElement('li');
    li.innerHTML = '<img alt=""><span></span>';
    li.querySelector('img').src = h.thumb;
    const [id, p] = h.matches[0];
    li.querySelector('span').textContent = `${new Date(h.time).toLocaleString()} · ${h.confident ? id : `no confident match (${id}?)`} · ${pct(p)} · ${h.ms} ms`;
    return li;
  }));
}

async function onFile(event) {
  const file = event.target.files?.[0];
  event.target.value = '';
  if (!file || !state.model) return;
  try {
    const bitmap = await decodeFile(file);
    try {
      await classify(bitmap, bitmap.width, bitmap.height, file.name, 'file');
    } finally {
      bitmap.close();
    }
  } catch (err) {
    console.error(err);
    setState('error', err instanceof AssetError ? err.message : `Could not analyse ${file.name}: ${err.message}`);
    $('actions').hidden = false;
  }
}

let stream = null;

function cameraError(err) {
  if (!navigator.mediaDevices?.getUserMedia) return 'This browser gives no camera access here (it needs HTTPS). Use "Choose photo" instead.';
  switch (err?.name) {
    case 'NotAllowedError': case 'SecurityError':
      return 'Camera permission denied. Allow camera access in the browser settings, or use "Choose photo".';
    case 'NotFoundError': case 'OverconstrainedError':
      return 'No camera found on this device. Use "Choose photo" instead.';
    case 'NotReadableError':
      return 'The camera is in use by another app. Close it and try again, or use "Choose photo".';
    default:
      return `Cannot open the camera (${err?.message || err}). Use "Choose photo" instead.`;
  }
}

async function openCamera() {
  setState('busy', 'Opening the camera…');
  try {
    if (!navigator.mediaDevices?.getUserMedia) throw new Error('no mediaDevices');
    stream = await navigator.mediaDevices.getUserMedia({ video: { facingMode: { ideal: 'environment' }, width: { ideal: 1920 } }, audio: false });
    $('video').srcObject = stream;
    $('camera').hidden = false;
    setState('camera', 'Frame the object in the square and press Capture.');
  } catch (err) {
    console.warn(err);
    setState('error', cameraError(err));
  }
}

function closeCamera() {
  stream?.getTracks().forEach((t) => t.stop());
  stream = null;
  $('camera').hidden = true;
}

async function capture() {
  const video = $('video');
  if (!video.videoWidth) return;
  try {
    await classify(video, video.videoWidth, video.videoHeight, `camera ${new Date().toLocaleTimeString()}`, 'camera');
  } catch (err) {
    setState('error', `Could not analyse the capture: ${err.message}`);
  } finally {
    closeCamera();
  }
}

$('file').addEventListener('change', onFile);
$('open-camera').addEventListener('click', openCamera);
$('capture').addEventListener('click', capture);
$('close-camera').addEventListener('click', () => { closeCamera(); setState('ready', 'Ready.'); });
$('clear-history').addEventListener('click', () => { localStorage.removeItem(HISTORY_KEY); renderHistory(); });

if ('serviceWorker' in navigator && !new URLSearchParams(location.search).has('nosw')) {
  navigator.serviceWorker.register('./sw.js').catch((err) => console.warn('offline cache unavailable:', err));
}
start();
