// Top-k, the embedding-gallery ranking and the "no confident match" decision
// (mirrors android_demo/core Ranking.kt, Gallery.kt and Answer.kt; see android_demo/ASSETS.md).

/** The k most probable outputs of log-probabilities, best first (ties: lower index first). */
export function topK(logProbs, k) {
  if (!logProbs.length) throw new Error('empty model output');
  const n = Math.min(Math.max(k, 1), logProbs.length);
  return [...logProbs.keys()]
    .sort((a, b) => (logProbs[b] - logProbs[a]) || (a - b))
    .slice(0, n)
    .map((index) => ({ index, probability: Math.exp(logProbs[index]) }));
}

/** {matches, confident}: confident when the best probability reaches the threshold. */
export function decide(logProbs, k, minProbability) {
  if ([...logProbs].some(Number.isNaN)) throw new Error('model output contains NaN');
  const matches = topK(logProbs, k);
  return { matches, confident: matches[0].probability >= minProbability };
}

const rowNorms = new WeakMap();  // int8 gallery rows -> their norms, computed once per gallery

function normsOf(values, rows, dim) {
  let norms = rowNorms.get(values);
  if (!norms || norms.length !== rows) {
    norms = new Float64Array(rows);
    for (let r = 0; r < rows; r++) {
      let sq = 0;
      for (let o = r * dim; o < (r + 1) * dim; o++) sq += values[o] * values[o];
      norms[r] = Math.sqrt(sq);
    }
    rowNorms.set(values, norms);
  }
  return norms;
}

/** Cosine similarity of `embedding` to every int8 row of `values` (rows x dim); 0 where either vector is zero. */
export function rowSimilarities(values, rows, dim, embedding) {
  if (embedding.length !== dim) throw new Error(`embedding has ${embedding.length} values, the gallery ${dim}`);
  if ([...embedding].some(Number.isNaN)) throw new Error('model embedding contains NaN');
  let norm = 0;
  for (const e of embedding) norm += e * e;
  norm = Math.sqrt(norm);
  const q = Float64Array.from(embedding, (e) => (norm > 0 ? e / norm : 0));
  const norms = normsOf(values, rows, dim);
  const sims = new Float64Array(rows);
  for (let r = 0; r < rows; r++) {
    let dot = 0;
    for (let i = 0, o = r * dim; i < dim; i++, o++) dot += q[i] * values[o];
    sims[r] = norms[r] > 0 ? dot / norms[r] : 0;
  }
  return sims;
}

/**
 * Gallery objects by their best row's similarity, best first (ties: lower object index), at most k:
 * {matches: [{index, similarity}], confident}. Confident when the best is enrolled and reaches
 * min_similarity, or is a trained object whose head probability exp(logProbs[label_index]) reaches minProbability.
 */
export function rankGallery(gallery, values, embedding, logProbs, k, minProbability) {
  const sims = rowSimilarities(values, gallery.rows, gallery.dim, embedding);
  const scores = gallery.objects.map((o) => sims.subarray(o.firstRow, o.firstRow + o.rows).reduce((a, b) => Math.max(a, b), -Infinity));
  const n = Math.min(Math.max(k, 1), scores.length);
  const matches = [...scores.keys()].sort((a, b) => (scores[b] - scores[a]) || (a - b)).slice(0, n)
    .map((index) => ({ index, similarity: scores[index] }));
  const { labelIndex } = gallery.objects[matches[0].index];
  const confident = labelIndex === null ? matches[0].similarity >= gallery.minSimilarity : Math.exp(logProbs[labelIndex]) >= minProbability;
  return { matches, confident };
}

/**
 * What the screen shows: {candidates, confident, threshold}. By the gallery when the config has one
 * (`values`: its int8 rows), else by the head's top-k. A candidate: {index (label, or gallery object),
 * objectId, collection, thumbnail, probability (head; null when enrolled), similarity (null without
 * gallery), enrolled, score (what the decision compares: probability, else similarity)}.
 */
export function answer(config, values, logProbs, embedding) {
  if ([...logProbs].some(Number.isNaN)) throw new Error('model output contains NaN');
  const { gallery } = config;
  if (!gallery) {
    const verdict = decide(logProbs, config.topK, config.minProbability);
    const candidates = verdict.matches.map(({ index, probability }) => {
      const { objectId, collection, thumbnail } = config.labels[index];
      return { index, objectId, collection, thumbnail, probability, similarity: null, enrolled: false, score: probability };
    });
    return { candidates, confident: verdict.confident, threshold: config.minProbability };
  }
  const ranking = rankGallery(gallery, values, embedding, logProbs, config.topK, config.minProbability);
  const candidates = ranking.matches.map(({ index, similarity }) => {
    const { objectId, collection, thumbnail, enrolled, labelIndex } = gallery.objects[index];
    const probability = labelIndex === null ? null : Math.exp(logProbs[labelIndex]);
    return { index, objectId, collection, thumbnail, probability, similarity, enrolled, score: probability ?? similarity };
  });
  const threshold = candidates[0].enrolled ? gallery.minSimilarity : config.minProbability;
  return { candidates, confident: ranking.confident, threshold };
}
