import fs from 'node:fs';
import path from 'node:path';
import { chromium, type Browser, type Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { FaceAnalyzer } from '../src/pipeline/analyzer.js';
import { dataFile, outputDir } from './helpers/paths.js';
import { sharedAnalyzer, startTestServer, waitFor, WRITE_KEY, type TestServer } from './helpers/server.js';

const LIN = 'Lin-Manuel Miranda';

/** The history, identity and face library pages in headless Chromium, on appearances the Hamilton clip left. */
describe('history pages in headless Chromium', () => {
  let analyzer: FaceAnalyzer;
  let server: TestServer;
  let browser: Browser;
  let page: Page;
  const errors: string[] = [];
  const state: { identity?: { id: string; templates: number } } = {};

  beforeAll(async () => {
    analyzer = await sharedAnalyzer();
    server = await startTestServer({ analyzer, configure: (c) => void (c.history = { ...c.history, endAfterMs: 1000 }) });
    // Nobody is enrolled: Lin-Manuel Miranda is an unknown group until he is named on the library page.
    const r = await server.app.inject({ method: 'POST', url: '/api/v1/streams', headers: server.auth, payload: { id: 'hamilton', url: dataFile('video', 'hamilton_640x360.mp4'), loop: false, realtime: true, fps: 10, minFaceSize: 40 } });
    expect(r.statusCode).toBe(201);
    browser = await chromium.launch({ executablePath: '/usr/bin/chromium', args: ['--headless', '--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'] });
    page = await (await browser.newContext({ viewport: { width: 1300, height: 900 } })).newPage();
    page.on('pageerror', (err) => errors.push(err.message));
    page.on('console', (msg) => {
      if (msg.type() === 'error') errors.push(msg.text());
    });
    await waitFor(() => server.ctx.streams.get('hamilton').state === 'stopped', 90_000, 'the clip to end');
    await waitFor(() => server.ctx.history!['recorder'].open().length === 0, 10_000, 'open appearances to end');
    await server.ctx.history!.flush();
    // The key is stored by the live page, as a user would set it.
    await page.goto(`${server.url}/#key=${WRITE_KEY}`);
  }, 150_000);

  afterAll(async () => {
    await browser?.close();
    await server?.close();
    await analyzer?.runtime.close();
  });

  const ready = () => page.waitForSelector('body[data-ready="true"]', { timeout: 10_000 });
  const imagesLoaded = (selector: string) =>
    page.waitForFunction((sel) => {
      const imgs = Array.from(document.querySelectorAll<HTMLImageElement>(sel));
      return imgs.length > 0 && imgs.every((i) => i.complete && i.naturalWidth > 0);
    }, selector, { timeout: 10_000 });

  it('lists appearances with their crops, filters them, and shows a snapshot with a link to the stream', async () => {
    const stored = server.ctx.history!.store.usage();
    expect(stored.unknown.rows).toBeGreaterThan(1);
    await page.goto(`${server.url}/history.html`);
    await ready();
    await imagesLoaded('#appearance-grid .card img');
    expect(await page.locator('#appearance-grid .card').count()).toBe(stored.unknown.rows);
    expect(await page.textContent('#history-usage')).toContain(`${stored.unknown.rows} unknown`);

    await page.selectOption('#f-known', 'true');
    await page.click('#f-apply');
    await page.waitForSelector('#empty:not([hidden])', { timeout: 10_000 });
    expect(await page.locator('#appearance-grid .card').count()).toBe(0);
    await page.selectOption('#f-known', '');
    await page.selectOption('#f-stream', 'hamilton');
    await page.click('#f-apply');
    await page.waitForFunction((n) => document.querySelectorAll('#appearance-grid .card').length === n, stored.unknown.rows, { timeout: 10_000 });

    await page.locator('#appearance-grid .card').first().click();
    await page.waitForFunction(() => {
      const img = document.querySelector<HTMLImageElement>('#ad-snapshot');
      return img?.complete && img.naturalWidth === 640;
    }, undefined, { timeout: 10_000 });
    expect(await page.getAttribute('#ad-stream', 'href')).toBe('/#stream=hamilton');
    expect(await page.isHidden('#ad-identity')).toBe(true);
    await page.screenshot({ path: path.join(outputDir('history-viewer'), 'appearance.png') });
    expect(errors).toEqual([]);
  });

  it('searches the history by an uploaded face', async () => {
    await page.goto(`${server.url}/history.html`);
    await ready();
    await page.setInputFiles('#face-file', dataFile('faces', 'lin_manuel_miranda', '1.png'));
    await page.waitForSelector('#search-info:not([hidden])', { timeout: 15_000 });
    expect(await page.textContent('#search-info')).toMatch(/^\d+ appearances match the face in 1\.png/);
    expect(await page.locator('#appearance-grid .card').count()).toBeGreaterThan(0);
    expect(await page.locator('#appearance-grid .card .who').first().textContent()).toBe('unknown');
    expect(errors).toEqual([]);
  });

  it('names an unknown group in the face library', async () => {
    const clusters = server.ctx.history!.clusters.size;
    expect(clusters).toBeGreaterThan(0);
    await page.goto(`${server.url}/history.html#library`);
    await ready();
    expect(await page.locator('#cluster-list .cluster').count()).toBe(clusters);
    await imagesLoaded('#cluster-list .samples img');
    await page.screenshot({ path: path.join(outputDir('history-viewer'), 'library.png') });
    // Lin-Manuel Miranda's group: the one his picture finds (his face is large and frontal: the crops pass the enrollment gates).
    const found = await server.app.inject({ method: 'POST', url: '/api/v1/appearances/search?k=1', headers: server.auth, payload: { image: fs.readFileSync(dataFile('faces', 'lin_manuel_miranda', '1.png')).toString('base64') } });
    const clusterId = found.json().appearances[0].clusterId as number;
    const row = page.locator(`#cluster-list .cluster[data-cluster="${clusterId}"]`);
    await row.locator('.cluster-name').fill(LIN);
    await row.locator('.cluster-save').click();
    await page.waitForSelector('#toast:not([hidden])', { timeout: 15_000 });
    expect(await page.textContent('#toast')).toMatch(new RegExp(`^Named \\d+ appearances ${LIN}: \\d+ faces enrolled`));
    await page.waitForFunction((n) => document.querySelectorAll('#cluster-list .cluster').length === n, clusters - 1, { timeout: 10_000 });
    const list = (await server.app.inject({ url: '/api/v1/identities?search=Lin', headers: server.auth })).json();
    expect(list.identities).toHaveLength(1);
    expect(list.identities[0].templates).toBeGreaterThan(0);
    state.identity = list.identities[0];
    expect(errors).toEqual([]);
  });

  it('shows the named identity\'s page: its templates and its appearances', async () => {
    const { id, templates } = state.identity!;
    await page.goto(`${server.url}/history.html#identity=${encodeURIComponent(id)}`);
    await page.waitForSelector('body[data-view="identity"][data-ready="true"]', { timeout: 10_000 });
    expect(await page.textContent('#identity-name')).toBe(LIN);
    await imagesLoaded('#identity-templates img');
    await imagesLoaded('#identity-appearances img');
    expect(await page.locator('#identity-templates .card').count()).toBe(templates);
    const named = server.ctx.history!.store.count({ identityId: id });
    expect(named).toBeGreaterThan(0);
    expect(await page.locator('#identity-appearances .card').count()).toBe(named);
    expect(await page.textContent('#identity-info')).toMatch(/last seen .* on hamilton/);
    await page.locator('#identity-appearances .card').first().click();
    await page.waitForSelector('#appearance-dialog[open]', { timeout: 5000 });
    expect(await page.textContent('#ad-title')).toBe(`${LIN} on hamilton`);
    await page.screenshot({ path: path.join(outputDir('history-viewer'), 'identity.png') });
    expect(errors).toEqual([]);
  });
});
