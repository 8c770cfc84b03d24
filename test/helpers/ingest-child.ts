// A Node process that runs frame sources, for the tests that kill it (test/ingest-orphans.test.ts).
// argv[2]: JSON { specs: SourceSpec[], config: Partial<IngestConfig>, exitWhenRunning?: boolean }.
// Prints one JSON line { pid, ffmpeg: [pids] } once every source has an ffmpeg running, then either
// keeps running until killed or calls process.exit(0) (exitWhenRunning).
import { FrameSource } from '../../src/ingest/stream.js';
import type { SourceSpec } from '../../src/ingest/source.js';
import { createLogger } from '../../src/log.js';
import { ingestConfig } from './ingest.js';

const { specs, config, exitWhenRunning } = JSON.parse(process.argv[2]) as { specs: SourceSpec[]; config: Parameters<typeof ingestConfig>[0]; exitWhenRunning?: boolean };
const sources = specs.map((s) => new FrameSource(s, { config: ingestConfig(config), logger: createLogger('silent') }));
for (const s of sources) {
  s.on('frame', () => {});
  s.start();
}
const timer = setInterval(() => {
  const pids = sources.map((s) => s.stats.pid);
  if (pids.some((p) => p === undefined)) return;
  clearInterval(timer);
  process.stdout.write(`${JSON.stringify({ pid: process.pid, ffmpeg: pids })}\n`);
  if (exitWhenRunning) setTimeout(() => process.exit(0), 50);
}, 20);
setInterval(() => {}, 60_000);
