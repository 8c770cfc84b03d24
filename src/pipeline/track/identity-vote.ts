/** One recognition of a tracked face: who the gallery said (or unknown) and how much to trust it. */
export interface Vote {
  identityId: string | null;
  name: string | null;
  similarity: number;
  /** Larger faces and clearer margins over the threshold count more. */
  weight: number;
}

export interface VoteOptions {
  /** How many recent recognitions a track remembers. */
  window: number;
  /** Share of the remembered weight the leading identity needs to be shown (above 0.5 means a majority). */
  minShare: number;
}

export interface Decision {
  id: string;
  name: string;
  /** Mean similarity of the winning identity's votes in the window. */
  similarity: number;
}

/**
 * Weight of one recognition: face size (saturating at 112 px, the embedder's input) times the
 * margin above the threshold, so a big clear face outvotes a small borderline one. Unknown votes
 * weigh by size alone: a stranger seen clearly should hold the label at "unknown".
 */
export function voteWeight(faceSize: number, similarity: number, minSimilarity: number, known: boolean): number {
  const size = Math.min(1, faceSize / 112);
  if (!known) return size * 0.5;
  return size * (0.5 + Math.min(1, (similarity - minSimilarity) / Math.max(1e-6, 1 - minSimilarity)));
}

/** Keeps a track's recent votes and decides its label; ties and weak pluralities abstain (null). */
export class IdentityVoter {
  private votes: Vote[] = [];

  constructor(private readonly opts: VoteOptions) {}

  add(vote: Vote): void {
    this.votes.push(vote);
    if (this.votes.length > this.opts.window) this.votes.shift();
  }

  get count(): number {
    return this.votes.length;
  }

  decide(): Decision | null {
    if (this.votes.length === 0) return null;
    const totals = new Map<string | null, { weight: number; sims: number; n: number; name: string | null }>();
    let all = 0;
    for (const v of this.votes) {
      const t = totals.get(v.identityId) ?? { weight: 0, sims: 0, n: 0, name: v.name };
      t.weight += v.weight;
      t.sims += v.similarity;
      t.n += 1;
      totals.set(v.identityId, t);
      all += v.weight;
    }
    let best: [string | null, { weight: number; sims: number; n: number; name: string | null }] | undefined;
    let tie = false;
    for (const entry of totals) {
      if (!best || entry[1].weight > best[1].weight) {
        best = entry;
        tie = false;
      } else if (entry[1].weight === best[1].weight) tie = true;
    }
    if (!best || tie || best[0] === null || all === 0 || best[1].weight / all < this.opts.minShare) return null;
    return { id: best[0], name: best[1].name ?? best[0], similarity: best[1].sims / best[1].n };
  }
}
