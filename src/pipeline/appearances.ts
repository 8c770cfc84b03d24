import type { AppearanceEvent, PipelineBus } from './bus.js';

interface Presence {
  name: string;
  tracks: Set<number>;
  firstSeen: number;
  lastSeen: number;
  /** When its last track went away; 'left' is announced once the grace time has passed. */
  goneAt?: number;
}

/**
 * Who is in view on one stream: an identity "appears" when its first labelled track shows up and
 * "leaves" when no track has shown it for `graceMs` (a face lost for a few frames, or a track
 * that restarts, is not a departure). Keeps a bounded log of these events.
 */
export class AppearanceLog {
  private readonly present = new Map<string, Presence>();
  private readonly trackIdentity = new Map<number, string>();
  readonly log: AppearanceEvent[] = [];

  constructor(
    private readonly streamId: string,
    private readonly bus: PipelineBus,
    private readonly graceMs = 2000,
    private readonly maxLog = 500,
  ) {}

  /** Announces departures whose grace time ended by `at` (called once per processed frame). */
  flush(at: number): void {
    for (const [id, p] of this.present) {
      if (p.goneAt !== undefined && at - p.goneAt >= this.graceMs) {
        this.present.delete(id);
        this.emit('left', id, p);
      }
    }
  }

  /** Records that `trackId` is shown as `identity` (or nobody) at time `at`. */
  observe(trackId: number, identity: { id: string; name: string } | null, at: number): void {
    const previous = this.trackIdentity.get(trackId);
    if (previous && previous !== identity?.id) this.release(trackId, previous, at);
    if (!identity) return;
    this.trackIdentity.set(trackId, identity.id);
    let p = this.present.get(identity.id);
    if (!p) {
      p = { name: identity.name, tracks: new Set([trackId]), firstSeen: at, lastSeen: at };
      this.present.set(identity.id, p);
      this.emit('appeared', identity.id, p);
    }
    p.tracks.add(trackId);
    p.lastSeen = at;
    p.goneAt = undefined;
  }

  /** The track ended. */
  end(trackId: number, at: number): void {
    const id = this.trackIdentity.get(trackId);
    if (id) this.release(trackId, id, at);
  }

  /** Everyone leaves at once (stream stopped). */
  clear(at: number): void {
    for (const trackId of [...this.trackIdentity.keys()]) this.end(trackId, at);
    this.flush(Infinity);
  }

  current(): { id: string; name: string; firstSeen: number; lastSeen: number }[] {
    return [...this.present].filter(([, p]) => p.goneAt === undefined).map(([id, p]) => ({ id, name: p.name, firstSeen: p.firstSeen, lastSeen: p.lastSeen }));
  }

  private release(trackId: number, identityId: string, _at: number): void {
    this.trackIdentity.delete(trackId);
    const p = this.present.get(identityId);
    if (!p) return;
    p.tracks.delete(trackId);
    if (p.tracks.size === 0) p.goneAt = p.lastSeen;
  }

  private emit(type: AppearanceEvent['type'], id: string, p: Presence, trackIds = [...p.tracks]): void {
    const event: AppearanceEvent = { type, streamId: this.streamId, identity: { id, name: p.name }, firstSeen: p.firstSeen, lastSeen: p.lastSeen, trackIds };
    this.log.push(event);
    if (this.log.length > this.maxLog) this.log.shift();
    this.bus.emit('appearance', event);
  }
}
