import { EventEmitter } from 'node:events';
import fs from 'node:fs';
import os from 'node:os';
import mqtt, { type IClientOptions, type MqttClient } from 'mqtt';
import client from 'prom-client';
import type { MqttConfig } from '../../config/sections/mqtt.js';
import { FacestreamError } from '../../errors.js';
import { redactUrl } from '../../ingest/source.js';
import type { Logger } from '../../log.js';

interface Pending {
  topic: string;
  payload: string;
  retain: boolean;
}

export interface MqttPublisherOptions {
  config: MqttConfig & { url: string };
  logger: Logger;
  /** Where the publisher's metrics go (the server's registry). */
  registry?: client.Registry;
  /** Retained status topic: "online" after each connect, "offline" as the last will and on close. */
  statusTopic: string;
  /** Topics to subscribe to (Home Assistant's birth messages); their messages are emitted as 'message'. */
  subscriptions?: string[];
}

interface MqttPublisherEvents {
  /** Connected (first time or again): retained state should be published again. */
  connect: [];
  message: [topic: string, payload: string];
}

function readPem(file: string | undefined, what: string): Buffer | undefined {
  if (!file) return undefined;
  try {
    return fs.readFileSync(file);
  } catch (err) {
    throw new FacestreamError('CONFIG_INVALID', `cannot read mqtt.tls.${what} (${file}): ${(err as Error).message}`, { file });
  }
}

/** Messages handed to the socket and not yet acknowledged; more wait in our own bounded queue. */
const MAX_IN_FLIGHT = 64;

/**
 * A connection to the broker that never makes its caller wait: publish() queues and returns.
 * While the broker is away or slow, messages wait in a bounded queue: a retained topic keeps only
 * its newest value (state replaces state), and past `maxQueuedMessages` the oldest event is
 * dropped and counted. Reconnects back off from minReconnectMs, doubling to maxReconnectMs.
 */
export class MqttPublisher extends EventEmitter<MqttPublisherEvents> {
  private readonly client: MqttClient;
  private readonly queue: Pending[] = [];
  /** Queued retained messages by topic, so a newer value replaces the waiting one in place. */
  private readonly queuedRetained = new Map<string, Pending>();
  private inFlight = 0;
  private closed = false;
  private readonly qos: 0 | 1;
  private readonly maxQueued: number;
  private readonly metrics: { connected: client.Gauge; published: client.Counter; dropped: client.Counter; failed: client.Counter };

  constructor(private readonly opts: MqttPublisherOptions) {
    super();
    const cfg = opts.config;
    this.qos = cfg.qos;
    this.maxQueued = cfg.maxQueuedMessages;
    const registers = opts.registry ? [opts.registry] : [];
    this.metrics = {
      connected: new client.Gauge({ name: 'facestream_mqtt_connected', help: '1 while connected to the MQTT broker.', registers }),
      published: new client.Counter({ name: 'facestream_mqtt_published_total', help: 'MQTT messages the broker accepted (QoS 1) or that were written to it (QoS 0).', registers }),
      dropped: new client.Counter({ name: 'facestream_mqtt_dropped_total', help: 'MQTT messages dropped because the queue for an absent or slow broker was full (mqtt.maxQueuedMessages).', registers }),
      failed: new client.Counter({ name: 'facestream_mqtt_publish_errors_total', help: 'MQTT publishes the broker or the connection refused.', registers }),
    };
    const queue = this.queue;
    new client.Gauge({
      name: 'facestream_mqtt_queue_depth',
      help: 'MQTT messages waiting for the broker.',
      registers,
      collect() {
        this.set(queue.length);
      },
    });
    this.metrics.connected.set(0);
    this.metrics.dropped.inc(0);

    const options: IClientOptions = {
      clientId: cfg.clientId ?? `facestream-${os.hostname()}`.replace(/[^A-Za-z0-9_-]/g, '-').slice(0, 128),
      username: cfg.username,
      password: cfg.password,
      keepalive: cfg.keepaliveSeconds,
      reconnectPeriod: cfg.minReconnectMs,
      connectTimeout: 10_000,
      clean: true,
      // Our own queue bounds what waits while offline; mqtt.js's offline queue would grow without limit.
      queueQoSZero: false,
      will: { topic: opts.statusTopic, payload: Buffer.from('offline'), qos: 1, retain: true },
      ca: readPem(cfg.tls.ca, 'ca'),
      cert: readPem(cfg.tls.cert, 'cert'),
      key: readPem(cfg.tls.key, 'key'),
      rejectUnauthorized: cfg.tls.rejectUnauthorized,
    };
    const where = redactUrl(cfg.url);
    this.client = mqtt.connect(cfg.url, options);
    let failures = 0;
    this.client.on('connect', () => {
      failures = 0;
      this.client.options.reconnectPeriod = cfg.minReconnectMs;
      this.metrics.connected.set(1);
      opts.logger.info({ broker: where }, 'MQTT connected');
      this.client.publish(opts.statusTopic, 'online', { qos: 1, retain: true });
      if (opts.subscriptions?.length) this.client.subscribe(opts.subscriptions, { qos: 0 });
      this.emit('connect');
      this.drain();
    });
    this.client.on('reconnect', () => {
      failures++;
      // mqtt.js waits reconnectPeriod before each attempt; doubling it here spaces the next one out.
      this.client.options.reconnectPeriod = Math.min(cfg.maxReconnectMs, cfg.minReconnectMs * 2 ** Math.min(failures, 20));
    });
    this.client.on('close', () => {
      this.metrics.connected.set(0);
      if (!this.closed && failures === 0) opts.logger.warn({ broker: where }, 'MQTT connection lost; reconnecting');
    });
    this.client.on('error', (err) => {
      if (failures <= 1 || failures % 10 === 0) opts.logger.warn({ broker: where, err: err.message, attempts: failures }, 'MQTT connection failed');
    });
    this.client.on('message', (topic, payload) => this.emit('message', topic, payload.toString('utf8')));
  }

  get connected(): boolean {
    return this.client.connected;
  }

  /** Messages waiting for the broker. */
  get queued(): number {
    return this.queue.length;
  }

  /** Queues a message and returns at once; it is sent when the broker is there. */
  publish(topic: string, payload: string, retain: boolean): void {
    if (this.closed) return;
    if (retain) {
      const waiting = this.queuedRetained.get(topic);
      if (waiting) {
        waiting.payload = payload;
        return;
      }
    }
    const msg: Pending = { topic, payload, retain };
    this.queue.push(msg);
    if (retain) this.queuedRetained.set(topic, msg);
    if (this.queue.length > this.maxQueued) this.dropOne();
    this.drain();
  }

  /**
   * Publishes "offline", waits up to `timeoutMs` for what is queued, and disconnects (a clean
   * disconnect: the broker does not send the last will, hence the explicit "offline").
   */
  async close(timeoutMs = 2000): Promise<void> {
    if (this.closed) return;
    if (this.client.connected) {
      this.publish(this.opts.statusTopic, 'offline', true);
      const deadline = Date.now() + timeoutMs;
      while ((this.queue.length || this.inFlight) && this.client.connected && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    }
    this.closed = true;
    await this.client.endAsync(!this.client.connected);
    this.metrics.connected.set(0);
  }

  /** The oldest event goes first; retained state only when nothing else is left to drop. */
  private dropOne(): void {
    let i = this.queue.findIndex((m) => !m.retain);
    if (i < 0) i = 0;
    const [gone] = this.queue.splice(i, 1);
    if (gone.retain) this.queuedRetained.delete(gone.topic);
    this.metrics.dropped.inc();
  }

  private drain(): void {
    while (this.client.connected && this.inFlight < MAX_IN_FLIGHT && this.queue.length) {
      const msg = this.queue.shift()!;
      if (msg.retain) this.queuedRetained.delete(msg.topic);
      this.inFlight++;
      this.client.publish(msg.topic, msg.payload, { qos: this.qos, retain: msg.retain }, (err) => {
        this.inFlight--;
        if (err) this.metrics.failed.inc();
        else this.metrics.published.inc();
        this.drain();
      });
    }
  }
}
