import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import Database from 'better-sqlite3';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { displayText, nameLength, normalizeIdentityName } from '../src/identity-name.js';
import { annotationSvg } from '../src/image/draw.js';
import type { FaceAnalyzer } from '../src/pipeline/analyzer.js';
import { runCli } from './helpers/cli.js';
import { dataFile } from './helpers/paths.js';
import { sharedAnalyzer, startTestServer, WRITE_KEY, type TestServer } from './helpers/server.js';

/** Identity names: one rule for CLI, REST and import, and drawing that survives any stored name. */

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'facestream-names-'));
const LIN = dataFile('faces', 'lin_manuel_miranda', fs.readdirSync(dataFile('faces', 'lin_manuel_miranda'))[0]);
const FAMILY = '\u{1F469}\u200D\u{1F469}\u200D\u{1F467}'; // one character a person sees, 8 UTF-16 units
const E_NFD = 'e\u0301'; // "é" as two code points

const refused: [string, number, RegExp][] = [
  ['Ada\u000bLovelace', 4, /control character, U\+000B \(vertical tab\), at character 4/],
  ['Ada\u0000', 4, /U\+0000 \(NUL\)/],
  ['Bob\r\nSmith', 4, /U\+000D/],
  ['\u202Egnp.exe', 1, /bidirectional control character, U\+202E/],
  ['Zero\u200Bwidth', 5, /invisible format character, U\+200B/],
  [`${FAMILY}x\uD800`, 3, /lone surrogate/],
  ['Line\u2028break', 5, /line or paragraph separator/],
  ['tab\there', 4, /U\+0009 \(tab\)/],
  ['c1\u0085', 3, /control character/],
];

describe('identity names: the rule', () => {
  it('refuses controls, separators, bidi overrides, invisible and broken characters, saying which and where', () => {
    for (const [name, position, message] of refused) {
      let err: (Error & { code?: string; details?: Record<string, unknown> }) | undefined;
      try {
        normalizeIdentityName(name);
      } catch (e) {
        err = e as typeof err;
      }
      expect(err?.message, JSON.stringify(name)).toMatch(message);
      expect(err?.code).toBe('BAD_REQUEST');
      expect(err?.details?.position).toBe(position);
    }
  });

  it('normalises (NFC, spaces) and counts characters as a person does', () => {
    expect(normalizeIdentityName(`  Jos${E_NFD}   Mar\u00EDa\u00A0Garc\u00EDa `)).toBe('Jos\u00E9 Mar\u00EDa Garc\u00EDa');
    expect(normalizeIdentityName('\u0645\u06CC\u200C\u062E\u0648\u0627\u0647\u0645')).toBe('\u0645\u06CC\u200C\u062E\u0648\u0627\u0647\u0645'); // Persian with a ZWNJ
    expect(nameLength(FAMILY)).toBe(1);
    expect(nameLength(`Jos${E_NFD}`)).toBe(4);
    expect(normalizeIdentityName(FAMILY.repeat(256))).toHaveLength(FAMILY.length * 256);
    expect(() => normalizeIdentityName(FAMILY.repeat(257))).toThrow(/1 to 256 characters \(this one has 257\)/);
    expect(() => normalizeIdentityName('   ')).toThrow(/1 to 256 characters/);
  });

  it('draws any text: what a name may not hold becomes U+FFFD, and the SVG stays well-formed', async () => {
    expect(displayText('Ada\u000bLovelace\u202E')).toBe('Ada\uFFFDLovelace\uFFFD');
    const svg = annotationSvg(100, 100, [{ box: [10, 10, 60, 60], label: 'a\u0000b\u000b<c>&\uD800' }]);
    const png = await sharp(Buffer.from(svg)).png().toBuffer();
    expect((await sharp(png).metadata()).width).toBe(100);
  });
});

describe('identity names through the CLI and the REST API', () => {
  let analyzer: FaceAnalyzer;
  let server: TestServer;
  const gallery = path.join(tmp, 'gallery');

  beforeAll(async () => {
    analyzer = await sharedAnalyzer();
    server = await startTestServer({ analyzer, configure: (c) => (c.server.rateLimit = { max: 0, windowMs: 60_000 }) });
  });
  afterAll(async () => {
    await server?.close();
    await analyzer?.runtime.close();
    fs.rmSync(tmp, { recursive: true, force: true });
  });

  const post = (url: string, payload: unknown) => server.app.inject({ method: 'POST', url, headers: { authorization: `Bearer ${WRITE_KEY}`, 'content-type': 'application/json' }, payload: payload as object });

  it('CLI and REST refuse the same names with the same position, and accept and count the same names', async () => {
    for (const [name, position] of [refused[0], refused[3], [`${E_NFD.repeat(257)}`, 0] as const]) {
      const rest = await post('/api/v1/identities', { name });
      expect(rest.statusCode, rest.body).toBe(400);
      const cli = await runCli(['enroll', name, LIN, '--gallery', gallery, '--json'], { cwd: tmp });
      expect(cli.code).not.toBe(0);
      expect(cli.stderr).not.toMatch(/\n\s+at /); // a message, not a stack trace
      const message = (rest.json() as { detail: string }).detail;
      expect(cli.stderr).toContain(message.split(':')[0]);
      if (position) expect(message).toContain(`at character ${position}`);
    }
    // 256 characters of two code points each: over 256 code points, within the one count.
    const long = E_NFD.repeat(256);
    const rest = await post('/api/v1/identities', { name: long });
    expect(rest.statusCode, rest.body).toBe(201);
    expect((rest.json() as { name: string }).name).toBe('\u00E9'.repeat(256));
    const cli = await runCli(['enroll', long, LIN, '--gallery', gallery, '--json'], { cwd: tmp });
    expect(cli.code, cli.stderr).toBe(0);
    expect((JSON.parse(cli.stdout) as { identity: { name: string } }).identity.name).toBe('\u00E9'.repeat(256));
  });

  it('names who a face is the same way in REST, the CLI and the WebSocket frames: identity { id, name, similarity, templateId }, candidates alike', async () => {
    const fd = new FormData();
    fd.append('id', 'lin');
    fd.append('name', 'Lin-Manuel Miranda');
    fd.append('file', new Blob([fs.readFileSync(LIN)]), 'lin.jpg');
    const res = new Response(fd);
    const enroll = await server.app.inject({ method: 'POST', url: '/api/v1/enroll', headers: { authorization: `Bearer ${WRITE_KEY}`, 'content-type': res.headers.get('content-type')! }, payload: Buffer.from(await res.arrayBuffer()) });
    expect(enroll.statusCode, enroll.body).toBe(201);
    const identify = await post('/api/v1/identify?k=3', { image: fs.readFileSync(LIN).toString('base64') });
    expect(identify.statusCode, identify.body).toBe(200);
    const face = (identify.json() as { faces: Record<string, unknown>[] }).faces[0];
    expect(face).not.toHaveProperty('match');
    expect(Object.keys(face.identity as object).sort()).toEqual(['id', 'name', 'similarity', 'templateId']);
    expect(face.identity).toMatchObject({ id: 'lin', name: 'Lin-Manuel Miranda' });
    for (const c of face.candidates as object[]) expect(Object.keys(c).sort()).toEqual(['id', 'name', 'similarity', 'templateId']);

    const cliGallery = path.join(tmp, 'cli-identity-gallery');
    expect((await runCli(['enroll', 'Lin-Manuel Miranda', LIN, '--id', 'lin', '--gallery', cliGallery], { cwd: tmp })).code).toBe(0);
    const cli = await runCli(['identify', LIN, '--gallery', cliGallery, '--json'], { cwd: tmp });
    const cliFace = (JSON.parse(cli.stdout) as { faces: Record<string, unknown>[] }).faces[0];
    expect(Object.keys(cliFace.identity as object).sort()).toEqual(['id', 'name', 'similarity', 'templateId']);
    for (const c of cliFace.candidates as object[]) expect(Object.keys(c).sort()).toEqual(['id', 'name', 'similarity', 'templateId']);
    // The WebSocket's frame faces (ResultFace) use the same word and the same id/name/similarity.
    const schema = (await server.app.inject({ method: 'GET', url: '/openapi.json' })).json() as object;
    expect(JSON.stringify(schema)).not.toMatch(/"match":\{"anyOf"/);
  });

  it('identify --annotate and run --draw work for a name stored before the rule (a vertical tab inside)', async () => {
    const old = path.join(tmp, 'old-gallery');
    const enrolled = await runCli(['enroll', 'Lin Manuel', LIN, '--id', 'lin', '--gallery', old, '--json'], { cwd: tmp });
    expect(enrolled.code, enrolled.stderr).toBe(0);
    const db = new Database(path.join(old, 'gallery.db'));
    db.prepare('UPDATE identities SET name = ? WHERE id = ?').run('Lin\u000bManuel\u202E', 'lin');
    db.close();

    const annotated = path.join(tmp, 'annotated.png');
    const identify = await runCli(['identify', LIN, '--gallery', old, '--annotate', annotated, '--json'], { cwd: tmp });
    expect(identify.code, identify.stderr).toBe(0);
    expect((JSON.parse(identify.stdout) as { faces: { identity: { id: string } | null }[] }).faces[0].identity?.id).toBe('lin');
    expect((await sharp(annotated).metadata()).format).toBe('png');

    // 2 s of the clip where Lin-Manuel Miranda faces the camera.
    const clip = path.join(tmp, 'lin.mp4');
    execFileSync('ffmpeg', ['-v', 'error', '-ss', '4.2', '-t', '1.5', '-i', dataFile('video', 'hamilton_640x360.mp4'), '-an', '-c:v', 'libx264', '-preset', 'ultrafast', clip]);
    const drawn = path.join(tmp, 'drawn.mp4');
    const run = await runCli(['run', clip, '--gallery', old, '--draw', drawn, '--no-attributes'], { cwd: tmp });
    expect(run.code, run.stderr).toBe(0);
    const named = run.stdout.split('\n').filter(Boolean).map((l) => JSON.parse(l) as { faces: { identity: { id: string } | null }[] });
    expect(named.some((r) => r.faces.some((f) => f.identity?.id === 'lin'))).toBe(true);
    const frames = Number(execFileSync('ffprobe', ['-v', 'error', '-count_frames', '-select_streams', 'v:0', '-show_entries', 'stream=nb_read_frames', '-of', 'csv=p=0', drawn]).toString().trim());
    expect(frames).toBe(named.length);
  });
});
