import fs from 'node:fs';
import http from 'node:http';
import type net from 'node:net';
import path from 'node:path';

const TYPES: Record<string, string> = { '.m3u8': 'application/vnd.apple.mpegurl', '.ts': 'video/mp2t', '.mp4': 'video/mp4' };

/**
 * An HTTP server on 127.0.0.1 for ingest tests: files of `dir` as they are (HLS playlists and
 * segments), 404 for anything missing, and `*.mjpeg` files (ffmpeg's mpjpeg output) played as an
 * endless MJPEG camera: multipart/x-mixed-replace, one JPEG every 1/fps s, looping.
 */
export class HttpTestServer {
  private readonly sockets = new Set<net.Socket>();
  private readonly timers = new Set<NodeJS.Timeout>();

  private constructor(
    private readonly server: http.Server,
    readonly port: number,
  ) {
    server.on('connection', (s) => {
      this.sockets.add(s);
      s.once('close', () => this.sockets.delete(s));
    });
  }

  static async start(dir: string, fps = 25): Promise<HttpTestServer> {
    let self!: HttpTestServer;
    const server = http.createServer((req, res) => {
      const file = path.join(dir, path.normalize(decodeURIComponent(new URL(req.url ?? '/', 'http://x').pathname)));
      if (!file.startsWith(dir) || !fs.existsSync(file) || !fs.statSync(file).isFile()) {
        res.writeHead(404, { 'content-type': 'text/plain' });
        res.end('not found');
        return;
      }
      if (file.endsWith('.mjpeg')) return self.playMjpeg(file, fps, res);
      res.writeHead(200, { 'content-type': TYPES[path.extname(file)] ?? 'application/octet-stream', 'content-length': fs.statSync(file).size });
      fs.createReadStream(file).pipe(res);
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    self = new HttpTestServer(server, (server.address() as net.AddressInfo).port);
    return self;
  }

  url(name: string): string {
    return `http://127.0.0.1:${this.port}/${name}`;
  }

  private playMjpeg(file: string, fps: number, res: http.ServerResponse): void {
    const boundary = Buffer.from('--ffmpeg\r\n');
    const all = fs.readFileSync(file);
    const parts: Buffer[] = [];
    for (let at = all.indexOf(boundary); at >= 0; ) {
      const next = all.indexOf(boundary, at + boundary.length);
      parts.push(all.subarray(at, next < 0 ? all.length : next));
      at = next;
    }
    res.writeHead(200, { 'content-type': 'multipart/x-mixed-replace;boundary=ffmpeg' });
    let i = 0;
    const timer = setInterval(() => res.write(parts[i++ % parts.length]), 1000 / fps);
    this.timers.add(timer);
    res.once('close', () => {
      clearInterval(timer);
      this.timers.delete(timer);
    });
  }

  async close(): Promise<void> {
    for (const t of this.timers) clearInterval(t);
    for (const s of this.sockets) s.destroy();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }
}
