// Top-k and the "no confident match" decision (mirrors android_demo/core Ranking.kt).

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
