import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { CLI, DATA, MODELS_DIR } from './helpers/paths.js';
import { waitFor } from './helpers/server.js';

/** `facestream serve --demo` as a user runs it (the compiled CLI), with one person to enroll so that it starts quickly. */
describe('facestream serve --demo', () => {
  let child: ChildProcess | undefined;
  afterAll(() => {
    if (child && child.exitCode === null) child.kill('SIGKILL');
  });

  it('starts the server with the looped clip as a camera, enrolls the demo people, says where to go and which key to use, and stops on Ctrl+C', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'facestream-serve-'));
    const faces = path.join(dir, 'faces');
    fs.mkdirSync(path.join(faces, 'lin_manuel_miranda'), { recursive: true });
    fs.symlinkSync(path.join(DATA, 'faces', 'lin_manuel_miranda', '1.png'), path.join(faces, 'lin_manuel_miranda', '1.png'));
    fs.writeFileSync(path.join(dir, 'config.yaml'), `server:\n  demo:\n    faces: ${faces}\n    dataDir: ${DATA}\n`);
    const clean = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('FACESTREAM_')));
    child = spawn(process.execPath, [CLI, 'serve', '--demo', '--port', '0', '--config', path.join(dir, 'config.yaml'), '--gallery', path.join(dir, 'gallery'), '--data-dir', path.join(dir, 'data')], {
      cwd: dir,
      env: { ...clean, FACESTREAM_MODELS_DIR: MODELS_DIR, FACESTREAM_EXECUTION_PROVIDERS: 'cpu' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout!.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
    const banner = await waitFor(() => /Press Ctrl\+C/.test(stdout) && stdout, 60_000, `the banner (stderr: ${stderr.slice(-2000)})`);
    const viewer = /viewer: +(http:\/\/127\.0\.0\.1:\d+)\/#key=(fsk_[\w-]+)/.exec(banner);
    expect(viewer, banner).not.toBeNull();
    const [, url, key] = viewer!;
    expect(banner).toContain(`API key:  ${key}`);
    expect(banner).toContain(`${url}/docs`);
    // The key is printed for the user, never logged.
    expect(stderr).not.toContain(key);

    const auth = { authorization: `Bearer ${key}` };
    expect((await fetch(`${url}/ready`)).status).toBe(200);
    expect(((await (await fetch(`${url}/api/v1/gallery`, { headers: auth })).json()) as { identities: number }).identities).toBe(1);
    const demo = await waitFor(async () => {
      const s = (await (await fetch(`${url}/api/v1/streams/demo`, { headers: auth })).json()) as { state: string; stats: { processed: number }; options: { loop?: boolean } };
      return s.state === 'live' && s.stats.processed > 0 ? s : undefined;
    }, 30_000, 'the demo camera to be processed');
    expect(demo.options.loop).toBe(true);
    expect((await fetch(`${url}/`)).headers.get('content-type')).toMatch(/text\/html/);

    const exited = new Promise<number | null>((resolve) => child!.once('exit', (code) => resolve(code)));
    child.kill('SIGINT');
    expect(await exited).toBe(0);
    expect(stderr).not.toMatch(/"level":50/);
  });
});
