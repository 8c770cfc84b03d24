import client from 'prom-client';

/** Cluster mode's series (facestream_cluster_*), on the node's registry (which adds the `node` label). */
export class ClusterMetrics {
  readonly leasesHeld: client.Gauge;
  readonly leaseChanges: client.Counter<'change'>;
  readonly framesPublished: client.Counter;
  readonly framesDropped: client.Counter<'reason'>;
  readonly eventsPublished: client.Counter;
  readonly eventsDropped: client.Counter;
  readonly framesReceived: client.Counter;
  readonly eventsReceived: client.Counter;
  readonly liveNodes: client.Gauge<'role'>;

  constructor(registry: client.Registry) {
    const r = [registry];
    this.leasesHeld = new client.Gauge({ name: 'facestream_cluster_leases_held', help: 'Streams whose lease this node holds (the streams it runs).', registers: r });
    this.leaseChanges = new client.Counter({ name: 'facestream_cluster_lease_changes_total', help: 'Leases this node took (acquired) or gave up or lost (released).', labelNames: ['change'], registers: r });
    this.framesPublished = new client.Counter({ name: 'facestream_cluster_frames_published_total', help: 'Per-frame results this worker published on NATS.', registers: r });
    this.framesDropped = new client.Counter({ name: 'facestream_cluster_frames_dropped_total', help: 'Per-frame results not published (disconnected: NATS away; error).', labelNames: ['reason'], registers: r });
    this.eventsPublished = new client.Counter({ name: 'facestream_cluster_events_published_total', help: 'Events (appearances, stream changes) JetStream acknowledged.', registers: r });
    this.eventsDropped = new client.Counter({ name: 'facestream_cluster_events_dropped_total', help: 'Events dropped because the outbox was full while JetStream was away (cluster.maxQueuedEvents).', registers: r });
    this.framesReceived = new client.Counter({ name: 'facestream_cluster_frames_received_total', help: 'Per-frame results this api node received from NATS.', registers: r });
    this.eventsReceived = new client.Counter({ name: 'facestream_cluster_events_received_total', help: 'Events this api node received from JetStream.', registers: r });
    this.liveNodes = new client.Gauge({ name: 'facestream_cluster_nodes', help: 'Live nodes by role, as this node last saw the membership.', labelNames: ['role'], registers: r });
  }
}
