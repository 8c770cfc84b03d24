import { Writable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { resolveSource } from '../src/ingest/source.js';
import { ingestSchema } from '../src/config/sections/ingest.js';
import { createLogger } from '../src/log.js';
import { redactText, redactUrl, urlHost, urlSecrets } from '../src/redact.js';

/** Passwords as people type them: every character ffmpeg's URL parser treats specially. */
const PASSWORDS = ['ab#c%zz', 'p/ss:w0rd', 'a?b=c&d', 'x@y@z', 'se cret', 'ümlaut€', '%23%2F%3F', 'p;w,d!$', "q'\"<>", 'tab\\slash', 'h#a/s?h@', '::::', 'last@', '@first'];
const USERS = ['alice', 'admin', 'us:er', 'a@b.c', 'üser', 'o/x'];

describe('redaction (URLs parsed the way ffmpeg parses them)', () => {
  it('removes user-info up to the last @ for every password and user spelling, keeping host and path', () => {
    for (const user of USERS) {
      for (const pw of PASSWORDS) {
        for (const scheme of ['rtsp', 'RTSP', 'rtsps', 'http', 'https']) {
          const url = `${scheme}://${user}:${pw}@cam.example.org:554/live/ch1?transport=tcp`;
          const out = redactUrl(url);
          expect(out, url).toBe(`${scheme}://***@cam.example.org:554/live/ch1?transport=tcp`);
          // In ffmpeg's own messages: the URL followed by a colon, in quotes, twice on a line.
          const line = `[rtsp @ 0x5581] method DESCRIBE failed: 401 Unauthorized\n'${url}': Connection refused; retry ${url}`;
          const cleaned = redactText(line, urlSecrets(url));
          expect(cleaned, line).not.toContain(pw);
          expect(cleaned).toContain('cam.example.org:554/live/ch1');
          expect(cleaned).toContain('[rtsp @ 0x5581]');
        }
      }
    }
  });

  it('removes credential-like query values (password=, passwd=, pass=, pwd=, token=, auth=, key=, signature...)', () => {
    for (const name of ['password', 'passwd', 'pass', 'pwd', 'token', 'access_token', 'auth', 'authorization', 'key', 'api_key', 'apikey', 'secret', 'sig', 'X-Amz-Signature', 'camPassword', 'PWD', 'Token']) {
      for (const value of ['hunter2xyz', 'a#b/c', 'x%26y']) {
        const url = `http://cam.local/cgi-bin/mjpg?user=bob&${name}=${value}&res=720`;
        const out = redactUrl(url);
        expect(out, url).not.toContain(value);
        expect(out).toContain(`${name}=***`);
        expect(out).toContain('res=720');
        expect(out).toContain('user=bob');
        expect(redactText(`error opening ${url}: 404`, urlSecrets(url))).not.toContain(value);
      }
    }
    // ; separates parameters too (some cameras), and credentials in both places at once.
    expect(redactUrl('rtsp://u:p4ss@h/s;token=abc123;x=1')).toBe('rtsp://***@h/s;token=***;x=1');
  });

  it('leaves URLs without credentials, paths and lavfi graphs alone', () => {
    for (const s of ['rtsp://10.0.0.5:554/stream1', 'http://[::1]:8080/a.m3u8', '/srv/video/a b.mp4', 'lavfi:testsrc2=size=640x360:rate=25', 'v4l2:/dev/video0', 'no url here']) {
      expect(redactUrl(s)).toBe(s);
    }
  });

  it('finds the host ffmpeg connects to, never a part of the password', () => {
    expect(urlHost('rtsp://alice:ab#c%zz@Host.Example:554/s')).toBe('host.example');
    expect(urlHost('rtsp://alice:a/b@10.1.2.3/s')).toBe('10.1.2.3');
    expect(urlHost('http://u:p@[fe80::1]:80/x')).toBe('fe80::1');
    expect(urlHost('rtsp://cam/s')).toBe('cam');
    expect(urlHost('/dev/video0')).toBeUndefined();
  });

  it('a resolved source labels itself without the password and knows its secrets raw and decoded', () => {
    const src = resolveSource({ id: 'cam', url: 'rtsp://alice:ab#c%2Fzz@host/s' }, ingestSchema.parse({}));
    expect(src.label).toBe('rtsp://***@host/s');
    expect(src.secrets).toContain('ab#c%2Fzz');
    expect(src.secrets).toContain('ab#c/zz');
  });

  it('the logger redacts URLs in messages and fields at every level, including errors', () => {
    const lines: string[] = [];
    const sink = new Writable({
      write(chunk: Buffer, _enc, done) {
        lines.push(chunk.toString('utf8'));
        done();
      },
    });
    const log = createLogger('trace', sink);
    const url = 'rtsp://alice:ab#c%zz@host/s';
    log.trace({ source: url }, `opening ${url}`);
    log.info(`plain ${url}`);
    log.warn({ err: new Error(`failed: ${url}`) }, 'x');
    log.child({ stream: 'a' }).error({ list: [url], nested: { url } }, 'y');
    expect(lines.length).toBe(4);
    for (const l of lines) {
      expect(l).not.toContain('ab#c');
      expect(l).toContain('***@host/s');
    }
  });
});
