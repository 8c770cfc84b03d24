/**
 * Stream assignment policy: which live worker should run which stream. Pure (no clock, no I/O):
 * every worker computes it from the same facts (the streams, the live workers from membership, the
 * current lease holders, the costs workers measured) and acts only on its own part, acquiring or
 * releasing leases; the leases, not this function, guarantee that a stream runs on one worker.
 *
 * Method: keep every stream where it runs (moves cost a restart); place unowned streams, most
 * expensive first, on the least loaded worker (LPT, Graham 1969); then move single streams from the
 * most to the least loaded worker while a move lowers the pair's larger load by more than
 * `threshold` of it (hysteresis: small cost noise moves nothing; a joining worker at load 0 draws
 * streams back until the loads are within the threshold).
 */

export interface AssignmentInput {
  /** Streams that should run (enabled definitions), any order. */
  streams: readonly string[];
  /** Live workers' node ids (membership), any order. */
  workers: readonly string[];
  /** Current lease holders: stream id -> node id (holders that are not live are ignored). */
  current: ReadonlyMap<string, string>;
  /** Measured cost of each stream (ms of pipeline work per second of video); missing: not measured yet. */
  costs: ReadonlyMap<string, number>;
  /** Share of the larger load a move must save to be made (0..1); see cluster.rebalanceThreshold. */
  threshold: number;
}

export interface Assignment {
  /** Stream id -> node id, for every stream (empty when no worker is live). */
  owners: Map<string, string>;
  /** Streams whose owner differs from `current` (placements of unowned streams included). */
  moves: number;
  /** Each worker's total cost under this assignment. */
  loads: Map<string, number>;
}

/**
 * The cost a stream is charged: its measured cost, else the median of the measured ones (a new
 * stream is probably like the others), else 1 (nothing measured yet: balance by count).
 */
export function costOf(costs: ReadonlyMap<string, number>): (streamId: string) => number {
  const known = [...costs.values()].filter((c) => Number.isFinite(c) && c > 0).sort((a, b) => a - b);
  const fallback = known.length ? known[Math.floor(known.length / 2)] : 1;
  return (id) => {
    const c = costs.get(id);
    return c !== undefined && Number.isFinite(c) && c > 0 ? c : fallback;
  };
}

export function assignStreams(input: AssignmentInput): Assignment {
  const workers = [...new Set(input.workers)].sort();
  const owners = new Map<string, string>();
  const loads = new Map<string, number>(workers.map((w) => [w, 0]));
  if (workers.length === 0) return { owners, moves: 0, loads };
  const cost = costOf(input.costs);
  const streams = [...new Set(input.streams)].sort();
  const live = new Set(workers);
  const byWorker = new Map<string, Set<string>>(workers.map((w) => [w, new Set()]));
  const place = (s: string, w: string) => {
    owners.set(s, w);
    loads.set(w, loads.get(w)! + cost(s));
    byWorker.get(w)!.add(s);
  };
  const unplace = (s: string, w: string) => {
    owners.delete(s);
    loads.set(w, loads.get(w)! - cost(s));
    byWorker.get(w)!.delete(s);
  };
  // Least loaded first, ties by node id: every node computes the same answer.
  const lightest = () => workers.reduce((a, b) => (loads.get(b)! < loads.get(a)! ? b : a));
  const heaviest = () => workers.reduce((a, b) => (loads.get(b)! > loads.get(a)! ? b : a));

  const unowned: string[] = [];
  for (const s of streams) {
    const holder = input.current.get(s);
    if (holder !== undefined && live.has(holder)) place(s, holder);
    else unowned.push(s);
  }
  unowned.sort((a, b) => cost(b) - cost(a) || (a < b ? -1 : 1));
  for (const s of unowned) place(s, lightest());

  // Each accepted move lowers the largest load of a pair strictly, so this ends; the bound is a guard.
  for (let guard = streams.length * workers.length + 1; guard > 0; guard--) {
    const from = heaviest();
    const to = lightest();
    if (from === to) break;
    const high = loads.get(from)!;
    const low = loads.get(to)!;
    let best: string | undefined;
    let bestMax = high;
    for (const s of [...byWorker.get(from)!].sort()) {
      const c = cost(s);
      const pairMax = Math.max(high - c, low + c);
      if (pairMax < bestMax) {
        bestMax = pairMax;
        best = s;
      }
    }
    if (best === undefined || high - bestMax <= input.threshold * high) break;
    unplace(best, from);
    place(best, to);
  }

  let moves = 0;
  for (const [s, w] of owners) if (input.current.get(s) !== w) moves++;
  return { owners, moves, loads };
}
