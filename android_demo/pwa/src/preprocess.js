// The preprocessing contract of artefact.contract.Preprocess, in the browser (and in Node for tests):
// upright RGBA pixels -> opaque on white -> centre square crop -> Pillow-exact bilinear resize -> uint8 RGB.
// Mirrors android_demo/core (PilResize.kt, Preprocessor.kt); both are checked against Python.

const PRECISION_BITS = 32 - 8 - 2;
const HALF = 1 << (PRECISION_BITS - 1);

/** Python's round(): half to even. */
function pyRound(value) {
  const floor = Math.floor(value);
  const diff = value - floor;
  if (diff > 0.5) return floor + 1;
  if (diff < 0.5) return floor;
  return floor % 2 === 0 ? floor : floor + 1;
}

/** Centre square crop {left, top, side} of an upright width x height image (Preprocess.crop_box). */
export function cropBox(width, height, cropFraction) {
  const side = Math.max(1, pyRound(Math.min(width, height) * cropFraction));
  return { left: Math.floor((width - side) / 2), top: Math.floor((height - side) / 2), side };
}

/** Pillow's filter taps for one axis (Resample.c precompute_coeffs + 8-bit fixed point weights). */
function taps(inSize, outSize) {
  const scale = inSize / outSize;
  const filterScale = Math.max(scale, 1.0);
  const support = filterScale;
  const ksize = Math.ceil(support) * 2 + 1;
  const start = new Int32Array(outSize);
  const count = new Int32Array(outSize);
  const weights = new Int32Array(outSize * ksize);
  const k = new Float64Array(ksize);
  const inv = 1.0 / filterScale;
  for (let i = 0; i < outSize; i++) {
    const center = (i + 0.5) * scale;
    const lo = Math.max(Math.trunc(center - support + 0.5), 0);
    const n = Math.min(Math.trunc(center + support + 0.5), inSize) - lo;
    let sum = 0;
    for (let x = 0; x < n; x++) {
      const d = Math.abs((x + lo - center + 0.5) * inv);
      k[x] = d < 1 ? 1 - d : 0;
      sum += k[x];
    }
    for (let x = 0; x < n; x++) {
      const w = sum !== 0 ? k[x] / sum : k[x];
      weights[i * ksize + x] = w < 0 ? Math.trunc(-0.5 + w * (1 << PRECISION_BITS)) : Math.trunc(0.5 + w * (1 << PRECISION_BITS));
    }
    start[i] = lo;
    count[i] = n;
  }
  return { ksize, start, count, weights };
}

function clip8(acc) {
  const v = acc >> PRECISION_BITS;
  return v < 0 ? 0 : v > 255 ? 255 : v;
}

/** One separable pass over interleaved RGB; `horizontal` picks the axis. */
function pass(src, width, height, outSize, horizontal) {
  const t = taps(horizontal ? width : height, outSize);
  const outW = horizontal ? outSize : width;
  const outH = horizontal ? height : outSize;
  const out = new Uint8Array(outW * outH * 3);
  for (let y = 0; y < outH; y++) {
    for (let x = 0; x < outW; x++) {
      const i = horizontal ? x : y;
      let r = HALF, g = HALF, b = HALF;
      for (let j = 0; j < t.count[i]; j++) {
        const s = horizontal ? (y * width + t.start[i] + j) * 3 : ((t.start[i] + j) * width + x) * 3;
        const w = t.weights[i * t.ksize + j];
        r += src[s] * w; g += src[s + 1] * w; b += src[s + 2] * w;
      }
      const o = (y * outW + x) * 3;
      out[o] = clip8(r); out[o + 1] = clip8(g); out[o + 2] = clip8(b);
    }
  }
  return out;
}

/** Pillow's Image.resize((outW, outH), BILINEAR) on interleaved RGB bytes. */
export function resizeBilinear(rgb, width, height, outW, outH) {
  let data = rgb;
  if (outW !== width) data = pass(data, width, height, outW, true);
  if (outH !== height) data = pass(data, outW, height, outH, false);
  return data;
}

/** RGBA (non-premultiplied) -> RGB, translucent pixels composited on white like artefact.images. */
export function rgbaToRgbOnWhite(rgba) {
  const n = rgba.length / 4;
  const out = new Uint8Array(n * 3);
  for (let i = 0; i < n; i++) {
    const a = rgba[i * 4 + 3];
    for (let c = 0; c < 3; c++) {
      const v = rgba[i * 4 + c];
      out[i * 3 + c] = a === 255 ? v : Math.floor((v * a + 255 * (255 - a) + 127) / 255);
    }
  }
  return out;
}

/** The stored-pixel coordinate shown at upright (x, y) for EXIF orientation 1-8 (w, h: stored size). */
function sourceOf(orientation, x, y, w, h) {
  switch (orientation) {
    case 2: return [w - 1 - x, y];
    case 3: return [w - 1 - x, h - 1 - y];
    case 4: return [x, h - 1 - y];
    case 5: return [y, x];
    case 6: return [y, h - 1 - x];
    case 7: return [w - 1 - y, h - 1 - x];
    case 8: return [w - 1 - y, x];
    default: return [x, y];
  }
}

/** Make stored RGBA pixels upright (browsers already do this when decoding; used for raw pixels). */
export function applyOrientation(rgba, width, height, orientation) {
  if (!(orientation >= 2 && orientation <= 8)) return { rgba, width, height };
  const swap = orientation >= 5;
  const w = swap ? height : width;
  const h = swap ? width : height;
  const out = new Uint8Array(w * h * 4);
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) {
      const [sx, sy] = sourceOf(orientation, x, y, width, height);
      out.set(rgba.subarray((sy * width + sx) * 4, (sy * width + sx) * 4 + 4), (y * w + x) * 4);
    }
  }
  return { rgba: out, width: w, height: h };
}

/**
 * Upright RGBA of the centre crop region only (as produced by drawing the crop onto a canvas)
 * -> the model's uint8 RGB NHWC input.
 */
export function cropToInput(cropRgba, side, input) {
  return resizeBilinear(rgbaToRgbOnWhite(cropRgba), side, side, input.width, input.height);
}

/** Full upright RGBA image -> model input (crop, composite, resize). */
export function imageToInput(rgba, width, height, input) {
  const { left, top, side } = cropBox(width, height, input.cropFraction);
  const crop = new Uint8Array(side * side * 4);
  for (let y = 0; y < side; y++) {
    const from = ((top + y) * width + left) * 4;
    crop.set(rgba.subarray(from, from + side * 4), y * side * 4);
  }
  return cropToInput(crop, side, input);
}

/** uint8 RGB -> the tensor data for the model's input type. */
export function toTensorData(rgb, input) {
  if (input.dtype === 'uint8') return rgb;
  const out = new Float32Array(rgb.length);
  const f = Math.fround;  // float32 arithmetic, as numpy does it in Preprocess.normalize
  for (let i = 0; i < rgb.length; i++) out[i] = f(f(rgb[i] - f(input.mean[i % 3])) / f(input.std[i % 3]));
  return out;
}
