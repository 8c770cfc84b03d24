import client from 'prom-client';

/** The history's Prometheus series, registered on the server's registry (no identity or stream URL becomes a label). */
export class HistoryMetrics {
  readonly stored: client.Counter<'kind'>;
  readonly dropped: client.Counter<'reason'>;
  readonly deleted: client.Counter<'reason'>;
  readonly queue: client.Gauge;
  readonly writeSeconds: client.Histogram;
  readonly rows: client.Gauge<'kind'>;
  readonly bytes: client.Gauge<'kind'>;
  readonly clusters: client.Gauge;

  constructor(registry?: client.Registry) {
    const registers = registry ? [registry] : [];
    this.stored = new client.Counter({ name: 'facestream_history_appearances_stored_total', help: 'Appearances written to the history, by kind (known, unknown).', labelNames: ['kind'], registers });
    this.dropped = new client.Counter({
      name: 'facestream_history_appearances_dropped_total',
      help: 'Appearances not stored: queue-full (the write queue was full; the pipeline never waits), error (writing failed).',
      labelNames: ['reason'],
      registers,
    });
    this.deleted = new client.Counter({ name: 'facestream_history_appearances_deleted_total', help: 'Appearances deleted, by reason: age, size (retention), request (API), identity-removed, privacy (unknown storage off).', labelNames: ['reason'], registers });
    this.queue = new client.Gauge({ name: 'facestream_history_queue_depth', help: 'Appearances waiting to be written.', registers });
    this.writeSeconds = new client.Histogram({ name: 'facestream_history_write_seconds', help: 'Time to write one appearance (sharpness, crop, snapshot, files, row).', buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5], registers });
    this.rows = new client.Gauge({ name: 'facestream_history_appearances', help: 'Stored appearances, by kind.', labelNames: ['kind'], registers });
    this.bytes = new client.Gauge({ name: 'facestream_history_bytes', help: 'Bytes the stored appearances take (pictures and embeddings), by kind.', labelNames: ['kind'], registers });
    this.clusters = new client.Gauge({ name: 'facestream_history_clusters', help: 'Clusters of unknown appearances in the face library.', registers });
    for (const k of ['known', 'unknown']) {
      this.stored.inc({ kind: k }, 0);
      this.rows.set({ kind: k }, 0);
      this.bytes.set({ kind: k }, 0);
    }
    for (const r of ['queue-full', 'error']) this.dropped.inc({ reason: r }, 0);
  }
}
