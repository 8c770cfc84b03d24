import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { dataFile } from './helpers/paths.js';
import { HttpTestServer } from './helpers/http-server.js';
import { recordedSource, waitFor, type Recorded } from './helpers/ingest.js';

const HAMILTON = dataFile('video', 'hamilton_640x360.mp4');
let dir: string;
let server: HttpTestServer;
const open: Recorded[] = [];

beforeAll(async () => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'facestream-http-'));
  // HLS as a media server would publish it (the clip's H.264, copied into 2 s segments), and an
  // MJPEG camera's stream (ffmpeg's multipart JPEG output, played in a loop by the test server).
  execFileSync('ffmpeg', ['-v', 'error', '-i', HAMILTON, '-an', '-c', 'copy', '-f', 'hls', '-hls_time', '2', '-hls_list_size', '0', '-hls_playlist_type', 'vod', path.join(dir, 'clip.m3u8')]);
  execFileSync('ffmpeg', ['-v', 'error', '-i', HAMILTON, '-an', '-t', '2', '-vf', 'scale=320:-2', '-c:v', 'mjpeg', '-q:v', '5', '-f', 'mpjpeg', path.join(dir, 'cam.mjpeg')]);
  server = await HttpTestServer.start(dir);
});
afterEach(async () => {
  await Promise.all(open.splice(0).map((r) => r.source.stop()));
});
afterAll(async () => {
  await server?.close();
  if (dir) fs.rmSync(dir, { recursive: true, force: true });
});

describe('HTTP sources', () => {
  it('reads an HLS playlist to its end (every frame of the clip)', async () => {
    const rec = recordedSource({ id: 'hls', url: server.url('clip.m3u8'), onEnd: 'stop' });
    open.push(rec);
    rec.source.start();
    await waitFor('the end of the playlist', () => rec.ended > 0, 30_000);
    expect(rec.frames).toHaveLength(275);
    expect(rec.frames[0]).toMatchObject({ width: 640, height: 360 });
    expect(rec.source.state).toBe('stopped');
  });

  it('reads an MJPEG camera stream (multipart over HTTP)', async () => {
    const rec = recordedSource({ id: 'mjpeg', url: server.url('cam.mjpeg') });
    open.push(rec);
    rec.source.start();
    await waitFor('40 frames', () => rec.frames.length >= 40, 20_000);
    expect(rec.frames[0]).toMatchObject({ width: 320, height: 180 });
    expect(rec.source.state).toBe('live');
  });
});
