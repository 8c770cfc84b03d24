import { describe, expect, it } from 'vitest';
import { decodeFrameMessage, encodeFrameMessage } from '../src/cluster/nats/frame-codec.js';
import { ClusterNames, streamFromToken, streamToken } from '../src/cluster/nats/subjects.js';
import { configSchema, defaultConfig } from '../src/config/schema.js';
import { ServerMetrics } from '../src/server/metrics.js';

/** The small parts of cluster mode that need no server: config, names, the frame message, the node label. */

describe('cluster config section', () => {
  it('is absent by default: embedded mode', () => {
    expect(defaultConfig().cluster).toBeUndefined();
  });

  it('takes URLs and fills documented defaults', () => {
    const c = configSchema.parse({ cluster: { postgres: 'postgres://u@db:5432/fs', nats: 'nats://n1:4222,nats://n2:4222' } }).cluster!;
    expect(c).toMatchObject({ role: 'both', leaseTtlMs: 6000, heartbeatMs: 2000, prefix: 'facestream' });
    expect(c.nodeId).toMatch(/^[A-Za-z0-9_-]+$/);
  });

  it('refuses what cannot work, with the field named', () => {
    const bad = (cluster: object) => configSchema.safeParse({ cluster }).error?.issues.map((i) => i.path.join('.')) ?? [];
    const base = { postgres: 'postgres://u@db/fs', nats: 'nats://n:4222' };
    expect(bad({ nats: base.nats })).toContain('cluster.postgres');
    expect(bad({ ...base, postgres: 'mysql://db' })).toContain('cluster.postgres');
    expect(bad({ ...base, nats: 'http://n' })).toContain('cluster.nats');
    expect(bad({ ...base, role: 'leader' })).toContain('cluster.role');
    expect(bad({ ...base, nodeId: 'has space' })).toContain('cluster.nodeId');
    // A lease must survive a missed heartbeat.
    expect(bad({ ...base, leaseTtlMs: 3000, heartbeatMs: 2000 })).toContain('cluster.heartbeatMs');
  });
});

describe('cluster names on NATS', () => {
  it('turns every stream id into one subject token and back', () => {
    for (const id of ['cam-1', 'cam.3', 'a.b.c', 'X_y-Z.9']) {
      expect(streamToken(id)).not.toMatch(/[.*>\s]/);
      expect(streamFromToken(streamToken(id))).toBe(id);
    }
    const n = new ClusterNames('fs');
    expect(n.frames('cam.3')).toBe('fs.frames.cam=2E3');
    expect(n.streamOf(n.events('cam.3', 'appearance'))).toBe('cam.3');
    expect(n.allEvents).toBe('fs.events.>');
  });
});

describe('frame message', () => {
  const result = { streamId: 'cam.3', seq: 7, pts: 0.5, capturedAt: 1, processedAt: 2, width: 640, height: 360, faces: [] };
  it('carries a result with or without a JPEG', () => {
    expect(decodeFrameMessage(encodeFrameMessage({ result, node: 'w1' }))).toEqual({ result, node: 'w1', jpeg: undefined });
    const jpeg = { data: Buffer.from([0xff, 0xd8, 1, 2, 3, 0xff, 0xd9]), width: 64, height: 36 };
    const back = decodeFrameMessage(encodeFrameMessage({ result, node: 'w1', jpeg }));
    expect(Buffer.from(back.jpeg!.data)).toEqual(jpeg.data);
    expect(back.jpeg).toMatchObject({ width: 64, height: 36 });
  });
  it('refuses messages that are not ours', () => {
    for (const bad of [Buffer.alloc(2), Buffer.from([0, 0, 1, 0, 1]), Buffer.concat([Buffer.from([0, 0, 0, 2]), Buffer.from('{}')])]) expect(() => decodeFrameMessage(bad)).toThrow();
  });
});

describe('node label', () => {
  it('labels every series with the node id in cluster mode, none in embedded mode', async () => {
    const labelled = new ServerMetrics({ nodeId: 'w1', defaultMetrics: false });
    const text = await labelled.text();
    expect(text).toMatch(/^facestream_build_info\{[^}]*node="w1"/m);
    expect(text.split('\n').filter((l) => /^facestream_\w+\{/.test(l) && !l.includes('node="w1"'))).toEqual([]);
    const plain = new ServerMetrics({ defaultMetrics: false });
    expect(await plain.text()).not.toContain('node=');
    plain.close();
    labelled.close();
  });
});
