/**
 * Verification accuracy in the LFW protocol: pairs split into folds; for each fold the threshold
 * that maximises accuracy on the other folds is applied to it.
 */

export interface ScoredPair {
  similarity: number;
  same: boolean;
}

export interface FoldResult {
  fold: number;
  threshold: number;
  accuracy: number;
}

export interface VerificationReport {
  pairs: number;
  folds: FoldResult[];
  meanAccuracy: number;
  stdAccuracy: number;
  /** At the fixed threshold (the model's default or the user's). */
  atThreshold?: { threshold: number; accuracy: number; falseAcceptRate: number; falseRejectRate: number };
}

export function accuracyAt(pairs: readonly ScoredPair[], threshold: number): number {
  let right = 0;
  for (const p of pairs) if (p.similarity >= threshold === p.same) right++;
  return pairs.length ? right / pairs.length : 0;
}

/** The threshold with the best accuracy, searched over midpoints between sorted similarities. */
export function bestThreshold(pairs: readonly ScoredPair[]): number {
  const sorted = [...pairs].sort((a, b) => a.similarity - b.similarity);
  const totalSame = sorted.filter((p) => p.same).length;
  // Threshold below sorted[i]: pairs [0, i) say "different", [i, n) say "same".
  let sameBelow = 0;
  let best = -Infinity;
  let bestT = sorted.length ? sorted[0].similarity - 1e-6 : 0;
  for (let i = 0; i <= sorted.length; i++) {
    if (i === 0 || i === sorted.length || sorted[i].similarity !== sorted[i - 1].similarity) {
      const right = i - sameBelow + (totalSame - sameBelow);
      if (right > best) {
        best = right;
        bestT = i === 0 ? sorted[0].similarity - 1e-6 : i === sorted.length ? sorted[i - 1].similarity + 1e-6 : (sorted[i - 1].similarity + sorted[i].similarity) / 2;
      }
    }
    if (i < sorted.length && sorted[i].same) sameBelow++;
  }
  return bestT;
}

export function rates(pairs: readonly ScoredPair[], threshold: number): { falseAcceptRate: number; falseRejectRate: number } {
  let fa = 0;
  let diff = 0;
  let fr = 0;
  let same = 0;
  for (const p of pairs) {
    if (p.same) {
      same++;
      if (p.similarity < threshold) fr++;
    } else {
      diff++;
      if (p.similarity >= threshold) fa++;
    }
  }
  return { falseAcceptRate: diff ? fa / diff : 0, falseRejectRate: same ? fr / same : 0 };
}

/**
 * k-fold evaluation; `foldOf(i)` gives pair i's fold (0..k-1). Mean and population standard
 * deviation of the per-fold accuracies, as LFW results are usually reported.
 */
export function kFoldVerification(pairs: readonly ScoredPair[], k: number, foldOf: (i: number) => number, fixedThreshold?: number): VerificationReport {
  const folds: FoldResult[] = [];
  for (let f = 0; f < k; f++) {
    const train = pairs.filter((_, i) => foldOf(i) !== f);
    const test = pairs.filter((_, i) => foldOf(i) === f);
    const threshold = bestThreshold(train);
    folds.push({ fold: f + 1, threshold, accuracy: accuracyAt(test, threshold) });
  }
  const mean = folds.reduce((s, f) => s + f.accuracy, 0) / k;
  const std = Math.sqrt(folds.reduce((s, f) => s + (f.accuracy - mean) ** 2, 0) / k);
  const report: VerificationReport = { pairs: pairs.length, folds, meanAccuracy: mean, stdAccuracy: std };
  if (fixedThreshold !== undefined) report.atThreshold = { threshold: fixedThreshold, accuracy: accuracyAt(pairs, fixedThreshold), ...rates(pairs, fixedThreshold) };
  return report;
}

/** ROC points (false accept rate, true accept rate) over every distinct threshold. */
export function rocCurve(pairs: readonly ScoredPair[]): { threshold: number; far: number; tar: number }[] {
  const sorted = [...pairs].sort((a, b) => b.similarity - a.similarity);
  const same = sorted.filter((p) => p.same).length;
  const diff = sorted.length - same;
  const points = [{ threshold: Infinity, far: 0, tar: 0 }];
  let tp = 0;
  let fp = 0;
  for (let i = 0; i < sorted.length; i++) {
    if (sorted[i].same) tp++;
    else fp++;
    if (i === sorted.length - 1 || sorted[i + 1].similarity !== sorted[i].similarity) {
      points.push({ threshold: sorted[i].similarity, far: diff ? fp / diff : 0, tar: same ? tp / same : 0 });
    }
  }
  return points;
}
