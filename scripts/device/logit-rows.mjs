// Row helpers the device checks share, over a flat Float32Array of rows × vocab logits.

/** −log softmax(row)[target], in float64. */
export function nllAt(logits, row, vocab, target) {
  let max = -Infinity;
  for (let i = 0; i < vocab; i++) max = Math.max(max, logits[row * vocab + i]);
  let sum = 0;
  for (let i = 0; i < vocab; i++) sum += Math.exp(logits[row * vocab + i] - max);
  return Math.log(sum) + max - logits[row * vocab + target];
}

/** The row's first largest id (HF's tie rule). */
export function argmaxRow(logits, row, vocab) {
  let best = 0;
  for (let i = 1; i < vocab; i++) if (logits[row * vocab + i] > logits[row * vocab + best]) best = i;
  return best;
}
