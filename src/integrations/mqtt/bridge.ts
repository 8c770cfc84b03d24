import type { MqttConfig } from '../../config/sections/mqtt.js';
import type { Gallery, IdentityRecord } from '../../index/gallery.js';
import type { AppearanceEvent } from '../../pipeline/bus.js';
import type { LiveSource } from '../../server/live/source.js';
import type { FrameResult } from '../../pipeline/result.js';
import type { StreamChange, StreamInfo } from '../../server/streams.js';
import type { HomeAssistantDiscovery } from './discovery.js';
import type { MqttTopics } from './topics.js';

/** What the bridge publishes through (MqttPublisher; publish() must never block). */
export interface MessageSink {
  publish(topic: string, payload: string, retain: boolean): void;
}

/** The parts of the server the bridge reads: the live results and presence, streams, gallery. */
export interface BridgeSources {
  /** Results and appearance events: this process's pipeline, or every worker's over NATS (cluster mode). */
  bus: Pick<LiveSource, 'on' | 'off'>;
  /** Who is in view on a stream now (the pipeline's appearance log). */
  present(streamId: string): { id: string; name: string; firstSeen: number }[];
  streams: {
    list(): StreamInfo[];
    has(id: string): boolean;
    on(event: 'change', fn: (change: StreamChange) => void): unknown;
    off(event: 'change', fn: (change: StreamChange) => void): unknown;
  };
  gallery: Gallery;
  /** The appearance history's ids and crop URLs for tracks of a stream (absent: no history). */
  appearances?: (streamId: string, trackIds: number[], identityId: string | null, appeared: boolean) => { id: number; cropUrl: string }[];
}

/** An appeared / left message on <prefix>/streams/<id>/events. */
export interface PresenceEventMessage {
  type: 'appeared' | 'left';
  stream: { id: string; name: string };
  /** Who appeared; null for an unknown person. */
  identity: { id: string; name: string } | null;
  unknown: boolean;
  /** Best cosine similarity seen for this identity in this appearance (null: unknown person or not yet seen). */
  similarity: number | null;
  /** ISO times: the event, the appearance's first and latest sighting. */
  time: string;
  firstSeen: string;
  lastSeen: string;
  trackIds: number[];
  /** The best face of the appearance so far (path of the history's crop URL, under the server's address; needs a read key); null without the history. */
  snapshotUrl: string | null;
  /** The appearance history's ids of these tracks' appearances (GET /api/v1/appearances/{id}). */
  appearanceIds: number[];
}

interface UnknownTrack {
  firstSeen: number;
  lastSeen: number;
  announced: boolean;
}

interface StreamView {
  name: string;
  /** Best similarity per identity during its current appearance. */
  best: Map<string, number>;
  unknown: Map<number, UnknownTrack>;
}

interface IdentityState {
  name: string;
  presentOn: Set<string>;
  lastSeen: number | null;
  lastStream: string | null;
  lastStreamName: string | null;
}

const iso = (ms: number) => new Date(ms).toISOString();

/**
 * Publishes what the server sees to MQTT: stream state and fps, face counts, who is present, appeared
 * and left events (unknown people too: a track unrecognised for `unknownAfterMs`), each identity's last
 * sighting, and Home Assistant discovery. It only listens to the pipeline's bus, the stream manager and
 * the gallery, and hands messages to a sink that never blocks: a slow or absent broker cannot slow
 * the pipeline. State messages of one topic are spaced by `minStateIntervalMs` (the newest value wins).
 */
export class MqttBridge {
  private readonly views = new Map<string, StreamView>();
  private readonly identities = new Map<string, IdentityState>();
  private readonly discoveredIdentities = new Set<string>();
  private readonly lastSent = new Map<string, { payload: string; at: number }>();
  private readonly pendingState = new Map<string, { payload: string; timer: NodeJS.Timeout }>();
  private readonly refresh: NodeJS.Timeout;
  private readonly unsubscribe: (() => void)[] = [];
  private closed = false;

  constructor(
    private readonly sources: BridgeSources,
    private readonly sink: MessageSink,
    private readonly topics: MqttTopics,
    private readonly discovery: HomeAssistantDiscovery | null,
    private readonly config: Pick<MqttConfig, 'minStateIntervalMs' | 'unknownAfterMs' | 'homeAssistant'>,
    private readonly graceMs: number,
  ) {
    for (const s of sources.streams.list()) this.views.set(s.id, this.newView(s.name));
    const onFrame = (r: FrameResult) => this.onFrame(r);
    const onAppearance = (e: AppearanceEvent) => this.onAppearance(e);
    const onStream = (c: StreamChange) => this.onStreamChange(c);
    sources.bus.on('frame', onFrame);
    sources.bus.on('appearance', onAppearance);
    sources.streams.on('change', onStream);
    const g = sources.gallery;
    const created = ({ identity }: { identity: IdentityRecord }) => this.onIdentity(identity);
    const updated = ({ identity }: { identity: IdentityRecord }) => this.onIdentity(identity);
    const removed = ({ identity }: { identity: IdentityRecord }) => this.onIdentityRemoved(identity.id);
    g.on('identity-created', created);
    g.on('identity-updated', updated);
    g.on('identity-removed', removed);
    this.unsubscribe.push(
      () => sources.bus.off('frame', onFrame),
      () => sources.bus.off('appearance', onAppearance),
      () => sources.streams.off('change', onStream),
      () => g.off('identity-created', created),
      () => g.off('identity-updated', updated),
      () => g.off('identity-removed', removed),
    );
    // fps changes without any event; it is measured over 5 s, so refreshing more often says nothing new.
    this.refresh = setInterval(() => {
      for (const s of this.sources.streams.list()) this.state(this.topics.streamState(s.id), this.streamStatePayload(s));
    }, 5000);
    this.refresh.unref();
  }

  /**
   * Everything retained, again: after each (re)connect (a restarted broker without persistence
   * lost it) and when Home Assistant comes online.
   */
  publishAll(): void {
    for (const s of this.sources.streams.list()) {
      this.publishDiscovery(this.discovery?.stream(s));
      this.sendState(this.topics.streamState(s.id), this.streamStatePayload(s));
      this.sendState(this.topics.streamPeople(s.id), this.peoplePayload(s.id));
      const last = this.lastSent.get(this.topics.streamFaces(s.id));
      this.sendState(this.topics.streamFaces(s.id), last?.payload ?? JSON.stringify({ faces: 0, known: 0, unknown: 0, time: iso(Date.now()) }));
    }
    this.publishIdentityDiscovery();
    for (const [id, st] of this.identities) this.sendState(this.topics.identityState(id), this.identityPayload(st));
  }

  /** Home Assistant's discovery again (its birth message after a restart). */
  publishDiscovery(messages?: { topic: string; payload: string }[]): void {
    for (const m of messages ?? []) this.sink.publish(m.topic, m.payload, true);
  }

  publishIdentityDiscovery(): void {
    if (!this.discovery) return;
    const max = this.config.homeAssistant.maxIdentities;
    if (max === 0) return;
    for (const identity of this.sources.gallery.listIdentities({ limit: max })) {
      this.discoveredIdentities.add(identity.id);
      this.publishDiscovery(this.discovery.identity(identity));
    }
  }

  /**
   * A retained identity state found at the broker (published before a restart): its last sighting
   * is kept, and it is not present any more unless this server sees it.
   */
  seedIdentity(identityId: string, payload: string): void {
    if (this.identities.has(identityId) || !payload) return;
    const identity = this.sources.gallery.getIdentityById(identityId);
    if (!identity) return this.sink.publish(this.topics.identityState(identityId), '', true);
    let old: Partial<{ lastSeen: string; lastStream: string; lastStreamName: string }> = {};
    try {
      old = JSON.parse(payload) as typeof old;
    } catch {
      /* not ours: replaced below */
    }
    const lastSeen = old.lastSeen ? Date.parse(old.lastSeen) : NaN;
    const st: IdentityState = {
      name: identity.name,
      presentOn: new Set(),
      lastSeen: Number.isFinite(lastSeen) ? lastSeen : null,
      lastStream: old.lastStream ?? null,
      lastStreamName: old.lastStreamName ?? null,
    };
    this.identities.set(identityId, st);
    this.sendState(this.topics.identityState(identityId), this.identityPayload(st));
  }

  /** Stops listening; with `offline`, marks every stream stopped with nobody present (graceful shutdown). */
  close(offline = true): void {
    if (this.closed) return;
    this.closed = true;
    for (const off of this.unsubscribe) off();
    clearInterval(this.refresh);
    for (const p of this.pendingState.values()) clearTimeout(p.timer);
    this.pendingState.clear();
    if (!offline) return;
    const now = iso(Date.now());
    for (const s of this.sources.streams.list()) {
      this.sink.publish(this.topics.streamState(s.id), JSON.stringify({ ...JSON.parse(this.streamStatePayload(s)), state: 'stopped', fps: 0, inputFps: 0 }), true);
      this.sink.publish(this.topics.streamFaces(s.id), JSON.stringify({ faces: 0, known: 0, unknown: 0, time: now }), true);
      this.sink.publish(this.topics.streamPeople(s.id), JSON.stringify({ count: 0, unknown: 0, people: [] }), true);
    }
    for (const [id, st] of this.identities) {
      if (!st.presentOn.size) continue;
      st.presentOn.clear();
      this.sink.publish(this.topics.identityState(id), this.identityPayload(st), true);
    }
  }

  // ------------------------------------------------------------------ pipeline

  private onFrame(r: FrameResult): void {
    const v = this.views.get(r.streamId);
    if (!v) return;
    let known = 0;
    for (const f of r.faces) {
      if (f.identity) {
        known++;
        const best = v.best.get(f.identity.id);
        if (best === undefined || f.identity.similarity > best) v.best.set(f.identity.id, f.identity.similarity);
        const u = v.unknown.get(f.trackId);
        if (u) this.endUnknown(r.streamId, v, f.trackId, u, r.capturedAt);
      } else {
        const u = v.unknown.get(f.trackId);
        if (!u) v.unknown.set(f.trackId, { firstSeen: r.capturedAt, lastSeen: r.capturedAt, announced: false });
        else u.lastSeen = r.capturedAt;
      }
    }
    for (const [trackId, u] of v.unknown) {
      if (r.capturedAt - u.lastSeen > this.graceMs) this.endUnknown(r.streamId, v, trackId, u, r.capturedAt);
      else if (!u.announced && u.lastSeen - u.firstSeen >= this.config.unknownAfterMs) {
        u.announced = true;
        this.publishEvent(r.streamId, v, 'appeared', null, { firstSeen: u.firstSeen, lastSeen: u.lastSeen, trackIds: [trackId], time: r.capturedAt });
        this.state(this.topics.streamPeople(r.streamId), this.peoplePayload(r.streamId));
      }
    }
    const faces = r.faces.length;
    this.state(this.topics.streamFaces(r.streamId), JSON.stringify({ faces, known, unknown: faces - known, time: iso(r.capturedAt) }), (a, b) => a.slice(0, a.indexOf('"time"')) === b.slice(0, b.indexOf('"time"')));
  }

  private endUnknown(streamId: string, v: StreamView, trackId: number, u: UnknownTrack, at: number): void {
    v.unknown.delete(trackId);
    if (!u.announced) return;
    this.publishEvent(streamId, v, 'left', null, { firstSeen: u.firstSeen, lastSeen: u.lastSeen, trackIds: [trackId], time: at });
    this.state(this.topics.streamPeople(streamId), this.peoplePayload(streamId));
  }

  private onAppearance(e: AppearanceEvent): void {
    const v = this.views.get(e.streamId);
    const st = this.identities.get(e.identity.id) ?? { name: e.identity.name, presentOn: new Set<string>(), lastSeen: null, lastStream: null, lastStreamName: null };
    this.identities.set(e.identity.id, st);
    st.name = e.identity.name;
    if (e.type === 'appeared') st.presentOn.add(e.streamId);
    else st.presentOn.delete(e.streamId);
    st.lastSeen = e.lastSeen;
    st.lastStream = e.streamId;
    st.lastStreamName = v?.name ?? e.streamId;
    this.sendState(this.topics.identityState(e.identity.id), this.identityPayload(st));
    if (!v) return;
    // The similarity comes with the frame result, which the pipeline emits right after this event.
    setImmediate(() => {
      this.publishEvent(e.streamId, v, e.type, e.identity, { firstSeen: e.firstSeen, lastSeen: e.lastSeen, trackIds: e.trackIds, time: e.type === 'appeared' ? e.firstSeen : e.lastSeen });
      if (e.type === 'left') v.best.delete(e.identity.id);
      if (this.sources.streams.has(e.streamId)) this.state(this.topics.streamPeople(e.streamId), this.peoplePayload(e.streamId));
    });
  }

  private publishEvent(
    streamId: string,
    v: StreamView,
    type: 'appeared' | 'left',
    identity: { id: string; name: string } | null,
    at: { firstSeen: number; lastSeen: number; trackIds: number[]; time: number },
  ): void {
    if (this.closed) return;
    const refs = this.sources.appearances?.(streamId, at.trackIds, identity?.id ?? null, type === 'appeared') ?? [];
    const msg: PresenceEventMessage = {
      type,
      stream: { id: streamId, name: v.name },
      identity,
      unknown: identity === null,
      similarity: identity ? (v.best.get(identity.id) ?? null) : null,
      time: iso(at.time),
      firstSeen: iso(at.firstSeen),
      lastSeen: iso(at.lastSeen),
      trackIds: at.trackIds,
      snapshotUrl: refs[0]?.cropUrl ?? null,
      appearanceIds: refs.map((r) => r.id),
    };
    this.sink.publish(this.topics.streamEvents(streamId), JSON.stringify(msg), false);
  }

  // ------------------------------------------------------------------ streams and identities

  private onStreamChange({ type, stream }: StreamChange): void {
    if (type === 'removed') {
      this.views.delete(stream.id);
      for (const t of this.topics.streamRetained(stream.id)) this.clearRetained(t);
      if (this.discovery) this.publishDiscovery(this.discovery.removeStream(stream.id));
      return;
    }
    const v = this.views.get(stream.id);
    if (!v) {
      this.views.set(stream.id, this.newView(stream.name));
      this.publishDiscovery(this.discovery?.stream(stream));
      this.sendState(this.topics.streamPeople(stream.id), this.peoplePayload(stream.id));
    } else if (v.name !== stream.name) {
      v.name = stream.name;
      this.publishDiscovery(this.discovery?.stream(stream));
    }
    this.sendState(this.topics.streamState(stream.id), this.streamStatePayload(stream));
  }

  private onIdentity(identity: IdentityRecord): void {
    const st = this.identities.get(identity.id);
    if (st) st.name = identity.name;
    if (!this.discovery) return;
    if (!this.discoveredIdentities.has(identity.id) && this.discoveredIdentities.size >= this.config.homeAssistant.maxIdentities) return;
    this.discoveredIdentities.add(identity.id);
    this.publishDiscovery(this.discovery.identity(identity));
  }

  private onIdentityRemoved(identityId: string): void {
    this.identities.delete(identityId);
    this.clearRetained(this.topics.identityState(identityId));
    if (this.discovery && this.discoveredIdentities.delete(identityId)) this.publishDiscovery(this.discovery.removeIdentity(identityId));
  }

  // ------------------------------------------------------------------ payloads

  private newView(name: string): StreamView {
    return { name, best: new Map(), unknown: new Map() };
  }

  private streamStatePayload(s: StreamInfo): string {
    return JSON.stringify({ state: s.state, fps: Math.round(s.fps * 10) / 10, inputFps: Math.round(s.inputFps * 10) / 10, name: s.name, error: s.error?.message ?? null });
  }

  private peoplePayload(streamId: string): string {
    const people = this.sources.present(streamId).map((p) => ({ id: p.id, name: p.name, since: iso(p.firstSeen) }));
    let unknown = 0;
    for (const u of this.views.get(streamId)?.unknown.values() ?? []) if (u.announced) unknown++;
    return JSON.stringify({ count: people.length + unknown, unknown, people });
  }

  private identityPayload(st: IdentityState): string {
    return JSON.stringify({
      name: st.name,
      present: st.presentOn.size > 0,
      streams: [...st.presentOn],
      lastSeen: st.lastSeen === null ? null : iso(st.lastSeen),
      lastStream: st.lastStream,
      lastStreamName: st.lastStreamName,
    });
  }

  // ------------------------------------------------------------------ sending

  private clearRetained(topic: string): void {
    const p = this.pendingState.get(topic);
    if (p) clearTimeout(p.timer);
    this.pendingState.delete(topic);
    this.lastSent.delete(topic);
    this.sink.publish(topic, '', true);
  }

  /** Sends retained state now, whatever the spacing. */
  private sendState(topic: string, payload: string): void {
    const p = this.pendingState.get(topic);
    if (p) clearTimeout(p.timer);
    this.pendingState.delete(topic);
    this.lastSent.set(topic, { payload, at: Date.now() });
    this.sink.publish(topic, payload, true);
  }

  /**
   * Sends retained state unless it equals what was sent (per `same`), spacing messages of a topic
   * by minStateIntervalMs: a change inside the interval is sent when it ends, newest value only.
   */
  private state(topic: string, payload: string, same: (a: string, b: string) => boolean = (a, b) => a === b): void {
    if (this.closed) return;
    const last = this.lastSent.get(topic);
    const pending = this.pendingState.get(topic);
    if (pending) {
      pending.payload = payload;
      return;
    }
    if (last && same(last.payload, payload)) return;
    const wait = last ? last.at + this.config.minStateIntervalMs - Date.now() : 0;
    if (wait <= 0) return this.sendState(topic, payload);
    const timer = setTimeout(() => {
      const p = this.pendingState.get(topic);
      this.pendingState.delete(topic);
      if (p && !this.closed) this.sendState(topic, p.payload);
    }, wait);
    timer.unref();
    this.pendingState.set(topic, { payload, timer });
  }
}
