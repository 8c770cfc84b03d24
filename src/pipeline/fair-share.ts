/** What the fair scheduler needs to know of a stream. */
export interface FairShareStream {
  /** Compute time this stream has been charged (its virtual clock), ms. */
  virtualTime: number;
  /** Measured cost of one of its frames (smoothed), ms. */
  costMs: number;
  /** A frame waiting to be admitted. */
  waiting: boolean;
  /** Frames of it inside the pipeline now. */
  inFlight: number;
}

/**
 * Start-time fair queueing over streams (Goyal et al. 1996, as in network schedulers): each free
 * slot goes to the stream with a waiting frame whose virtual clock is lowest, and admitting a
 * frame advances that stream's clock by its measured cost. Every stream gets an equal share of
 * the machine when overloaded, and a cheap stream that needs less than its share gets all its
 * frames, however heavy its neighbours. A stream that was idle does not bank credit
 * (wakeFairShare). Ties go round-robin from `start`. Pure: the costs come from
 * the caller (measured in the pipeline, injected in tests).
 *
 * Returns the index of the stream to admit from, or -1 when none may take a frame.
 */
export function pickFairShare(streams: readonly FairShareStream[], start: number, perStreamInFlight: number): number {
  let picked = -1;
  for (let i = 0; i < streams.length; i++) {
    const at = (start + i) % streams.length;
    const s = streams[at];
    if (s.waiting && s.inFlight < perStreamInFlight && (picked < 0 || s.virtualTime < streams[picked].virtualTime)) picked = at;
  }
  return picked;
}

/** Charges the admitted stream one frame of its cost. */
export function chargeFairShare(admitted: FairShareStream): void {
  admitted.virtualTime += Math.max(1, admitted.costMs);
}

/**
 * A stream that was idle (nothing waiting, nothing in flight) gets a frame: its clock restarts at
 * the lowest clock of the streams that are busy, so idleness banks no credit (SFQ's virtual start
 * time, max(own finish, system virtual time)). Call before the frame is queued.
 */
export function wakeFairShare(streams: readonly FairShareStream[], woken: FairShareStream): void {
  if (woken.waiting || woken.inFlight) return;
  let floor = Infinity;
  for (const s of streams) if (s !== woken && (s.waiting || s.inFlight)) floor = Math.min(floor, s.virtualTime);
  if (floor !== Infinity && woken.virtualTime < floor) woken.virtualTime = floor;
}
