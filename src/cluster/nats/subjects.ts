/**
 * Names on NATS: subjects, KV buckets and JetStream streams of one cluster, all under the
 * configured prefix (cluster.prefix) so that two clusters can share one NATS.
 *
 * Stream ids ([A-Za-z0-9._-], src/server/schemas.ts) become one subject token / KV key: a dot
 * would split the subject, so it is written "=2E" (ids never hold "=").
 */

export function streamToken(streamId: string): string {
  return streamId.replace(/\./g, '=2E');
}

export function streamFromToken(token: string): string {
  return token.replace(/=2E/g, '.');
}

export class ClusterNames {
  constructor(readonly prefix: string) {}

  /** KV bucket of stream leases: key = stream token, value = holder's node id. */
  get leaseBucket(): string {
    return `${this.prefix}_leases`;
  }

  /** KV bucket of live nodes: key = node id, value = NodeBeat JSON. */
  get memberBucket(): string {
    return `${this.prefix}_members`;
  }

  /** JetStream stream holding the events that must not be lost. */
  get eventStream(): string {
    return `${this.prefix.toUpperCase()}_EVENTS`;
  }

  /** Per-frame results of one stream (core NATS, lossy); '*' for every stream. */
  frames(streamId: string | '*'): string {
    return `${this.prefix}.frames.${streamId === '*' ? '*' : streamToken(streamId)}`;
  }

  /** A stream's status (StreamInfo with its owner), about once a second (core NATS). */
  status(streamId: string | '*'): string {
    return `${this.prefix}.status.${streamId === '*' ? '*' : streamToken(streamId)}`;
  }

  /** Events of a stream (JetStream): appearances and state changes; `kind` is appearance or stream. */
  events(streamId: string | '*', kind: 'appearance' | 'stream' | '*' = '*'): string {
    return `${this.prefix}.events.${streamId === '*' ? '*' : streamToken(streamId)}.${kind}`;
  }

  /** Every event subject (the event stream's subjects). */
  get allEvents(): string {
    return `${this.prefix}.events.>`;
  }

  /** Api nodes say here which streams their viewers want pictures of (core NATS). */
  get pictureInterest(): string {
    return `${this.prefix}.pictures.wanted`;
  }

  /** The stream id of a frames/status/events subject. */
  streamOf(subject: string): string {
    return streamFromToken(subject.split('.')[2] ?? '');
  }
}
