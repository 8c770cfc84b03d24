import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { pino } from 'pino';
import client from 'prom-client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mqttSchema } from '../src/config/sections/mqtt.js';
import { MqttPublisher } from '../src/integrations/mqtt/publisher.js';
import { discoveryId, topicSegment } from '../src/integrations/mqtt/topics.js';
import { freePort, startMosquitto, Subscriber, type Broker } from './helpers/mosquitto.js';
import { CLI, DATA, dataFile, MODELS_DIR } from './helpers/paths.js';
import { waitFor, WRITE_KEY } from './helpers/server.js';

const MQTT_USER = { name: 'facestream', password: 'mqtt-secret-7f3a9c' };
const LIN = 'Lin-Manuel Miranda';

/** The compiled server as users run it (a child process, so that it can be killed for the last will), publishing to a real mosquitto. */
describe('MQTT and Home Assistant discovery (real mosquitto, real server process)', () => {
  let broker: Broker;
  let server: ChildProcess | undefined;
  let url = '';
  let logs = '';
  let watcher: Subscriber;
  const auth = { authorization: `Bearer ${WRITE_KEY}` };
  const api = async (method: string, route: string, body?: unknown) => {
    const res = await fetch(`${url}${route}`, { method, headers: { ...auth, ...(body ? { 'content-type': 'application/json' } : {}) }, body: body ? JSON.stringify(body) : undefined });
    return { status: res.status, body: res.status === 204 ? null : ((await res.json()) as Record<string, unknown>) };
  };

  beforeAll(async () => {
    broker = await startMosquitto({ user: MQTT_USER });
    watcher = await Subscriber.connect(broker.url, ['facestream/#', 'homeassistant/#'], { username: MQTT_USER.name, password: MQTT_USER.password });
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'facestream-mqtt-'));
    const port = await freePort();
    const config = {
      server: { auth: { keys: [WRITE_KEY] }, sources: { allowedDirs: [path.join(DATA, 'video')] } },
      mqtt: { url: broker.url, username: MQTT_USER.name, password: MQTT_USER.password, keepaliveSeconds: 5, minStateIntervalMs: 200, unknownAfterMs: 500 },
    };
    fs.writeFileSync(path.join(dir, 'config.json'), JSON.stringify(config));
    const clean = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('FACESTREAM_')));
    server = spawn(process.execPath, [CLI, 'serve', '--config', path.join(dir, 'config.json'), '--port', String(port), '--gallery', path.join(dir, 'gallery'), '--data-dir', path.join(dir, 'data')], {
      cwd: dir,
      env: { ...clean, FACESTREAM_MODELS_DIR: MODELS_DIR, FACESTREAM_EXECUTION_PROVIDERS: 'cpu', FACESTREAM_LOG_LEVEL: 'debug' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    server.stdout!.on('data', (d: Buffer) => (logs += d.toString()));
    server.stderr!.on('data', (d: Buffer) => (logs += d.toString()));
    url = `http://127.0.0.1:${port}`;
    await waitFor(async () => (await fetch(`${url}/ready`).catch(() => undefined))?.status === 200, 90_000, `the server to be ready (${logs.slice(-2000)})`);
  });
  afterAll(async () => {
    if (server && server.exitCode === null) server.kill('SIGKILL');
    await watcher?.close();
    await broker?.stop();
  });

  it('says it is online, announces streams and identities to Home Assistant, and publishes presence, counts and events', async () => {
    await waitFor(() => watcher.last('facestream/status')?.payload === 'online', 10_000, 'status online');
    const enrolled = await api('POST', '/api/v1/enroll', { id: 'lin', name: LIN, image: fs.readFileSync(dataFile('faces', 'lin_manuel_miranda', '1.png')).toString('base64') });
    expect(enrolled.status).toBe(201);
    const created = await api('POST', '/api/v1/streams', { id: 'hamilton', name: 'Hamilton stage', url: dataFile('video', 'hamilton_640x360.mp4'), loop: true, realtime: true, fps: 10, minFaceSize: 40 });
    expect(created.status).toBe(201);

    // Home Assistant discovery: a device per stream and per identity, every entity tied to the status topic.
    const facesConfig = await waitFor(() => watcher.json('homeassistant/sensor/facestream_stream_hamilton/faces/config'), 10_000, 'stream discovery');
    expect(facesConfig).toMatchObject({
      unique_id: 'facestream_stream_hamilton_faces',
      state_topic: 'facestream/streams/hamilton/faces',
      value_template: '{{ value_json.faces }}',
      availability_topic: 'facestream/status',
      payload_available: 'online',
      payload_not_available: 'offline',
      device: { identifiers: ['facestream_stream_hamilton'], name: 'Hamilton stage', manufacturer: 'facestream' },
    });
    for (const key of ['people', 'fps', 'state']) expect(watcher.json(`homeassistant/sensor/facestream_stream_hamilton/${key}/config`)).toMatchObject({ device: { identifiers: ['facestream_stream_hamilton'] } });
    const present = await waitFor(() => watcher.json('homeassistant/binary_sensor/facestream_identity_lin/present/config'), 10_000, 'identity discovery');
    expect(present).toMatchObject({ device_class: 'presence', state_topic: 'facestream/identities/lin/state', device: { name: LIN, identifiers: ['facestream_identity_lin'] } });
    expect(watcher.json('homeassistant/sensor/facestream_identity_lin/last_camera/config')).toMatchObject({ state_topic: 'facestream/identities/lin/state' });
    expect(watcher.json('homeassistant/sensor/facestream_identity_lin/last_seen/config')).toMatchObject({ device_class: 'timestamp' });

    // Events: Lin appears (with the similarity), and a face nobody enrolled is announced as unknown.
    const events = () => watcher.on('facestream/streams/hamilton/events').map((m) => ({ ...m, event: JSON.parse(m.payload) as Record<string, unknown> }));
    const appeared = await waitFor(() => events().find((e) => e.event.type === 'appeared' && (e.event.identity as { id?: string } | null)?.id === 'lin'), 40_000, 'Lin appearing');
    expect(appeared.retain).toBe(false);
    expect(appeared.event).toMatchObject({ stream: { id: 'hamilton', name: 'Hamilton stage' }, identity: { id: 'lin', name: LIN }, unknown: false });
    // The appearance history's ids, and its crop as the event's picture.
    const ids = appeared.event.appearanceIds as number[];
    expect(ids.length).toBeGreaterThan(0);
    expect(appeared.event.snapshotUrl).toBe(`/api/v1/appearances/${ids[0]}/crop`);
    expect(appeared.event.similarity).toBeGreaterThan(0.3);
    expect(Date.parse(appeared.event.time as string)).toBeGreaterThan(Date.now() - 60_000);
    expect((appeared.event.trackIds as number[]).length).toBeGreaterThan(0);
    const unknown = await waitFor(() => events().find((e) => e.event.type === 'appeared' && e.event.unknown === true), 40_000, 'an unknown face appearing');
    expect(unknown.event).toMatchObject({ identity: null, similarity: null });
    const left = await waitFor(() => events().find((e) => e.event.type === 'left' && (e.event.identity as { id?: string } | null)?.id === 'lin'), 40_000, 'Lin leaving');
    expect(Date.parse(left.event.lastSeen as string)).toBeGreaterThanOrEqual(Date.parse(appeared.event.firstSeen as string));

    // fps is measured over 5 s and refreshed every 5 s: wait for a measured value.
    await waitFor(() => ((watcher.json<{ fps: number }>('facestream/streams/hamilton/state')?.fps ?? 0) > 0), 20_000, 'a measured fps');
    // Retained state, as a subscriber that connects now reads it.
    const late = await Subscriber.connect(broker.url, ['facestream/#'], { username: MQTT_USER.name, password: MQTT_USER.password });
    try {
      await waitFor(() => late.last('facestream/identities/lin/state'), 5000, 'retained identity state');
      const state = late.json<{ state: string; fps: number; name: string }>('facestream/streams/hamilton/state')!;
      expect(late.last('facestream/streams/hamilton/state')!.retain).toBe(true);
      expect(state).toMatchObject({ state: 'live', name: 'Hamilton stage' });
      expect(state.fps).toBeGreaterThan(0);
      expect(late.json('facestream/streams/hamilton/faces')).toEqual({ faces: expect.any(Number), known: expect.any(Number), unknown: expect.any(Number), time: expect.any(String) });
      const people = late.json<{ count: number; unknown: number; people: { id: string; name: string; since: string }[] }>('facestream/streams/hamilton/people')!;
      expect(people.count).toBe(people.people.length + people.unknown);
      const lin = late.json<{ name: string; present: boolean; lastSeen: string; lastStream: string; lastStreamName: string }>('facestream/identities/lin/state')!;
      expect(lin).toMatchObject({ name: LIN, lastStream: 'hamilton', lastStreamName: 'Hamilton stage' });
      expect(Date.parse(lin.lastSeen)).toBeGreaterThan(Date.now() - 60_000);
      expect(late.last('facestream/status')).toMatchObject({ payload: 'online', retain: true });
    } finally {
      await late.close();
    }
    // Face counts are state: spaced out, not one message per frame.
    const counts = watcher.on('facestream/streams/hamilton/faces');
    const frames = ((await api('GET', '/api/v1/streams/hamilton')).body!.stats as { processed: number }).processed;
    expect(counts.length).toBeLessThan(frames / 2);
  });

  it('removes a deleted stream and identity from Home Assistant and clears their retained state', async () => {
    expect((await api('DELETE', '/api/v1/streams/hamilton')).status).toBe(204);
    expect((await api('DELETE', '/api/v1/identities/lin')).status).toBe(204);
    await waitFor(() => watcher.last('homeassistant/sensor/facestream_stream_hamilton/faces/config')?.payload === '', 10_000, 'stream discovery removed');
    await waitFor(() => watcher.last('homeassistant/binary_sensor/facestream_identity_lin/present/config')?.payload === '', 10_000, 'identity discovery removed');
    const late = await Subscriber.connect(broker.url, ['facestream/#', 'homeassistant/#'], { username: MQTT_USER.name, password: MQTT_USER.password });
    try {
      await waitFor(() => late.last('facestream/status'), 5000, 'retained status');
      await new Promise((r) => setTimeout(r, 300));
      const topics = late.messages.map((m) => m.topic);
      expect(topics.filter((t) => t.includes('hamilton') || t.includes('/lin/') || t.includes('identity_lin'))).toEqual([]);
    } finally {
      await late.close();
    }
  });

  it('never logs the broker password, and the broker publishes the last will when the server is killed', async () => {
    expect(logs).toContain('MQTT connected');
    expect(logs).not.toContain(MQTT_USER.password);
    server!.kill('SIGKILL');
    await waitFor(() => watcher.last('facestream/status')?.payload === 'offline', 15_000, 'the last will');
    expect(watcher.last('facestream/status')!.retain).toBe(false);
  });
});

describe('MQTT publisher while the broker is away', () => {
  it('returns at once, keeps a bounded queue (newest retained state per topic), counts drops, and delivers when the broker comes', async () => {
    const port = await freePort();
    const registry = new client.Registry();
    const config = { ...mqttSchema.parse({ url: `mqtt://127.0.0.1:${port}`, maxQueuedMessages: 50, minReconnectMs: 100, maxReconnectMs: 400 }), url: `mqtt://127.0.0.1:${port}` };
    const publisher = new MqttPublisher({ config, logger: pino({ level: 'silent' }), registry, statusTopic: 'fs-test/status' });
    let broker: Broker | undefined;
    try {
      for (let i = 0; i < 10_000; i++) publisher.publish('fs-test/events', JSON.stringify({ i }), false);
      for (let i = 0; i < 100; i++) publisher.publish('fs-test/state', JSON.stringify({ i }), true);
      expect(publisher.connected).toBe(false);
      expect(publisher.queued).toBe(50);
      const dropped = (await registry.getSingleMetric('facestream_mqtt_dropped_total')!.get()).values[0].value;
      // 10 000 events into 50 places, then one retained topic takes one place: the oldest events go.
      expect(dropped).toBe(10_000 - 49);
      expect((await registry.getSingleMetric('facestream_mqtt_queue_depth')!.get()).values[0].value).toBe(50);

      broker = await startMosquitto({ port });
      const sub = await Subscriber.connect(broker.url, ['fs-test/#']);
      await waitFor(() => publisher.connected, 10_000, 'the publisher to reconnect');
      await waitFor(() => sub.on('fs-test/events').length === 49, 10_000, 'the queued events');
      expect(sub.on('fs-test/events').map((m) => (JSON.parse(m.payload) as { i: number }).i)).toEqual(Array.from({ length: 49 }, (_, k) => 10_000 - 49 + k));
      await waitFor(() => sub.json('fs-test/state'), 5000, 'the retained state');
      expect(sub.on('fs-test/state').map((m) => m.payload)).toEqual([JSON.stringify({ i: 99 })]);
      expect(sub.last('fs-test/status')?.payload).toBe('online');
      expect((await registry.getSingleMetric('facestream_mqtt_connected')!.get()).values[0].value).toBe(1);
      await sub.close();
    } finally {
      await publisher.close();
      await broker?.stop();
    }
  });
});

describe('MQTT configuration and topic names', () => {
  it('refuses broker URLs without a scheme, prefixes with wildcards, and unreadable TLS files', () => {
    expect(mqttSchema.safeParse({ url: 'localhost:1883' }).success).toBe(false);
    expect(mqttSchema.safeParse({ url: 'mqtts://broker.lan:8883', password: 12345 }).data?.password).toBe('12345');
    for (const topicPrefix of ['home/#', 'a+b', '/facestream', 'facestream/']) expect(mqttSchema.safeParse({ topicPrefix }).success, topicPrefix).toBe(false);
    expect(mqttSchema.safeParse({ topicPrefix: 'site/facestream' }).success).toBe(true);
    const config = { ...mqttSchema.parse({ tls: { ca: '/nonexistent/ca.pem' } }), url: 'mqtts://127.0.0.1:1' };
    expect(() => new MqttPublisher({ config, logger: pino({ level: 'silent' }), statusTopic: 's' })).toThrow(/mqtt\.tls\.ca/);
  });

  it('makes any id one topic level and a Home Assistant object id, without collisions', () => {
    expect(topicSegment('front/door#1+')).toBe('front_door_1_');
    expect(discoveryId('front_door')).toBe('front_door');
    const a = discoveryId('front.door');
    const b = discoveryId('front:door');
    expect(a).toMatch(/^front_door_[0-9a-f]{8}$/);
    expect(a).not.toBe(b);
  });
});
