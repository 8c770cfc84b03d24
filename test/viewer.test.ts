import fs from 'node:fs';
import path from 'node:path';
import { chromium, type Browser, type BrowserContext, type Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { FaceAnalyzer } from '../src/pipeline/analyzer.js';
import { dataFile, outputDir } from './helpers/paths.js';
import { sharedAnalyzer, startTestServer, waitFor, WRITE_KEY, type TestServer } from './helpers/server.js';

const LIN = 'Lin-Manuel Miranda';
const CHROMIUM = '/usr/bin/chromium';

interface OverlayFace {
  trackId: number;
  score: number;
  name: string | null;
  box: number[];
}
interface Overlay {
  seq: number;
  width: number;
  faces: OverlayFace[];
}

describe('live viewer in headless Chromium', () => {
  let analyzer: FaceAnalyzer;
  let server: TestServer;
  let browser: Browser;
  let context: BrowserContext;
  let page: Page;
  const errors: string[] = [];

  beforeAll(async () => {
    analyzer = await sharedAnalyzer();
    server = await startTestServer({ analyzer });
    await server.ctx.enroller.enrollPictures({ id: 'lin', name: LIN }, [{ name: '1.png', data: fs.readFileSync(dataFile('faces', 'lin_manuel_miranda', '1.png')) }]);
    const r = await server.app.inject({
      method: 'POST',
      url: '/api/v1/streams',
      headers: server.auth,
      payload: { id: 'hamilton', name: 'Hamilton stage', url: dataFile('video', 'hamilton_640x360.mp4'), loop: true, realtime: true, fps: 15, minFaceSize: 40 },
    });
    expect(r.statusCode).toBe(201);
    // A new, empty profile; Debian's chromium, never a downloaded browser.
    browser = await chromium.launch({
      executablePath: CHROMIUM,
      args: ['--headless', '--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
    });
    context = await browser.newContext({ viewport: { width: 1400, height: 900 } });
    page = await context.newPage();
    page.on('pageerror', (err) => errors.push(err.message));
    page.on('console', (msg) => {
      if (msg.type() === 'error') errors.push(msg.text());
    });
  });
  afterAll(async () => {
    await browser?.close();
    await server?.close();
    await analyzer?.runtime.close();
  });

  it('loads, shows the running stream, and draws the enrolled person with the right name on the frame it belongs to', async () => {
    await page.goto(`${server.url}/#key=${WRITE_KEY}`);
    // The key leaves the address bar at once and stays in the browser.
    expect(page.url()).toBe(`${server.url}/`);
    expect(await page.evaluate(() => localStorage.getItem('facestream.key'))).toBe(WRITE_KEY);
    await page.waitForSelector('#connection[data-state="connected"]', { timeout: 10_000 });
    await page.waitForSelector('#stream-list li[data-stream="hamilton"] .pill[data-state="live"]', { timeout: 20_000 });
    expect(await page.textContent('#stream-list li[data-stream="hamilton"]')).toContain('Hamilton stage');

    // Overlay data and canvas pixels are read in one synchronous step, so they describe the same drawn frame.
    const handle = await page.waitForFunction(
      (name) => {
        const state = (window as unknown as { facestream: { overlays: Record<string, Overlay> } }).facestream;
        const o = state.overlays.hamilton;
        // A frame where he faces the camera (his box is over 40 px wide): the top edge is then long enough to read.
        const face = o?.faces.find((f) => f.name === name && f.box[2] - f.box[0] > 40);
        if (!o || !face) return null;
        const canvas = document.querySelector<HTMLCanvasElement>('.tile[data-stream="hamilton"] canvas')!;
        const scale = canvas.width / o.width;
        const [x1, y1, x2] = face.box.map((v) => v * scale);
        // Closest pixel to the box colour on a short column across the top edge (the stroke is anti-aliased).
        const col = canvas.getContext('2d')!.getImageData(Math.round((x1 + x2) / 2), Math.max(0, Math.round(y1) - 3), 1, 7).data;
        let edge = Infinity;
        for (let i = 0; i < col.length; i += 4) edge = Math.min(edge, Math.abs(col[i] - 0x3f) + Math.abs(col[i + 1] - 0xb2) + Math.abs(col[i + 2] - 0x7f));
        return { overlay: o, face, edge, canvas: [canvas.width, canvas.height] };
      },
      LIN,
      { timeout: 40_000, polling: 50 },
    );
    const seen = (await handle.jsonValue()) as { overlay: Overlay; face: OverlayFace; edge: number; canvas: number[] };
    expect(seen.canvas).toEqual([640, 360]);
    expect(seen.face.box[2] - seen.face.box[0]).toBeGreaterThan(40);
    // The box is drawn in the "known" colour (#3fb27f) along the face's top edge.
    expect(seen.edge).toBeLessThan(40);
    const label = await page.evaluate(() => (window as unknown as { facestream: { overlays: Record<string, { faces: { label: string; name: string }[] }> } }).facestream.overlays.hamilton.faces.map((f) => f.label).join(' | '));
    expect(label).toMatch(/#\d+/);
    expect(await page.textContent('.tile[data-stream="hamilton"] .readout')).toMatch(/fps processed .* ms capture→screen/);
    await page.waitForFunction(() => document.querySelectorAll('#appearance-log li').length > 0, undefined, { timeout: 20_000 });
    expect(await page.textContent('#appearance-log')).toContain(LIN);
    const file = path.join(outputDir('viewer'), 'viewer.png');
    await page.screenshot({ path: file });
    expect(fs.statSync(file).size).toBeGreaterThan(10_000);
    expect(errors).toEqual([]);
  });

  it('enrolls an unknown face clicked on the picture under the name typed in', async () => {
    const before = (await server.app.inject({ url: '/api/v1/gallery', headers: server.auth })).json().identities as number;
    let enrolled = false;
    for (let attempt = 0; attempt < 60 && !enrolled; attempt++) {
      const target = await page.evaluate(() => {
        const o = (window as unknown as { facestream: { overlays: Record<string, Overlay> } }).facestream.overlays.hamilton;
        const face = o?.faces.find((f) => f.name === null && f.box[2] - f.box[0] >= 60 && f.score >= 0.95);
        if (!face) return null;
        const rect = document.querySelector('.tile[data-stream="hamilton"] canvas')!.getBoundingClientRect();
        const k = rect.width / o.width;
        return { x: rect.left + ((face.box[0] + face.box[2]) / 2) * k, y: rect.top + ((face.box[1] + face.box[3]) / 2) * k };
      });
      if (!target) {
        await page.waitForTimeout(150);
        continue;
      }
      await page.mouse.click(target.x, target.y);
      if (!(await page.locator('#enroll-dialog[open]').count())) continue;
      await page.fill('#enroll-name', 'Stage Guest');
      await page.click('#enroll-submit');
      const outcome = await Promise.race([
        page.waitForSelector('#toast:not([hidden])', { timeout: 10_000 }).then(() => 'ok'),
        page.waitForSelector('#enroll-error:not([hidden])', { timeout: 10_000 }).then(() => 'error'),
      ]);
      if (outcome === 'ok') {
        enrolled = true;
        expect(await page.textContent('#toast')).toMatch(/Enrolled track #\d+ as Stage Guest/);
      } else {
        // The person left the picture between the click and the request: try another face.
        expect(await page.textContent('#enroll-error')).toMatch(/track|face|quality|small/i);
        await page.click('#enroll-cancel');
      }
    }
    expect(enrolled).toBe(true);
    const list = (await server.app.inject({ url: '/api/v1/identities?search=Stage%20Guest', headers: server.auth })).json();
    expect(list.identities).toHaveLength(1);
    expect(list.identities[0].templates).toBe(1);
    await page.waitForFunction((n) => document.querySelector('#gallery-counts')?.textContent?.startsWith(`${n} identities`), before + 1, { timeout: 10_000 });
    await page.screenshot({ path: path.join(outputDir('viewer'), 'after-enroll.png') });
  });

  it('shows every stream in the grid view and reconnects after the server restarts its connection', async () => {
    const r = await server.app.inject({ method: 'POST', url: '/api/v1/streams', headers: server.auth, payload: { id: 'pattern', name: 'Test pattern', url: 'lavfi:testsrc2=size=320x240:rate=5' } });
    expect(r.statusCode).toBe(201);
    await page.waitForSelector('#stream-list li[data-stream="pattern"]', { timeout: 10_000 });
    await page.check('#grid-toggle');
    await page.waitForFunction(() => {
      const o = (window as unknown as { facestream: { overlays: Record<string, unknown> } }).facestream.overlays;
      return o.hamilton && o.pattern;
    }, undefined, { timeout: 20_000 });
    expect(await page.locator('.tile').count()).toBe(2);
    await page.screenshot({ path: path.join(outputDir('viewer'), 'grid.png') });

    // Drop the browser's socket from the server side; the page reconnects and gets the state again.
    const drawn = await page.evaluate(() => (window as unknown as { facestream: { framesDrawn: number } }).facestream.framesDrawn);
    await waitFor(() => server.ctx.hub.clientCount === 1, 5000, 'one viewer connected');
    (server.ctx.hub as unknown as { clients: Map<string, { socket: { terminate(): void } }> }).clients.forEach((c) => c.socket.terminate());
    await page.waitForSelector('#connection[data-state="disconnected"]', { timeout: 5000 });
    await page.waitForSelector('#connection[data-state="connected"]', { timeout: 10_000 });
    await page.waitForFunction((n) => (window as unknown as { facestream: { framesDrawn: number } }).facestream.framesDrawn > n + 5, drawn, { timeout: 15_000 });
    expect(errors).toEqual([]);
  });
});
