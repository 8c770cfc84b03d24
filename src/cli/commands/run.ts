import path from 'node:path';
import { Command, Option } from 'commander';
import { ffmpegSetup } from '../../ingest/ffmpeg.js';
import { FrameSource } from '../../ingest/stream.js';
import { errorMessage } from '../../errors.js';
import { redactText, urlHost } from '../../redact.js';
import type { SourceSpec } from '../../ingest/source.js';
import { Pipeline, type GalleryLike } from '../../pipeline/pipeline.js';
import type { FrameResult } from '../../pipeline/result.js';
import { AnnotatedVideoWriter } from '../annotated-video.js';
import { contextFor, parseNumber, printJson, type CliContext } from '../context.js';
import { openIfPresent } from './gallery-open.js';

interface RunOptions {
  gallery?: string;
  json?: boolean;
  pretty?: boolean;
  draw?: string;
  realtime?: boolean;
  loop?: boolean;
  fps?: number;
  maxWidth?: number;
  minFace?: number;
  recognitionInterval?: number;
  detection?: 'tracked' | 'full';
  keyframeInterval?: number;
  duration?: number;
  attributes?: boolean;
}

const isFileSource = (url: string) => !/^[a-z][a-z0-9+.-]*:/i.test(url) || url.startsWith('file:');

/** Stream ids from the sources: the file name (or host) made unique. */
function streamIds(sources: string[]): string[] {
  const seen = new Map<string, number>();
  return sources.map((s) => {
    // The host as ffmpeg parses it (user-info up to the last '@'), so no part of a password becomes an id.
    let base = isFileSource(s) ? path.parse(s.replace(/^file:\/\//, '')).name : s.startsWith('lavfi:') ? 'lavfi' : (urlHost(s) ?? 'stream');
    base = base.replace(/[^A-Za-z0-9._-]/g, '_').slice(0, 48) || 'stream';
    const n = (seen.get(base) ?? 0) + 1;
    seen.set(base, n);
    return n === 1 ? base : `${base}-${n}`;
  });
}

function drawPath(draw: string, id: string, many: boolean): string {
  if (!many) return draw;
  const p = path.parse(draw);
  return path.join(p.dir, `${p.name}-${id}${p.ext || '.mp4'}`);
}

/** A one-line-per-stream summary refreshed in place (stderr), for people watching a terminal. */
function renderPretty(pipeline: Pipeline, sources: Map<string, FrameSource>, lastFaces: Map<string, FrameResult>): string {
  const lines = ['stream'.padEnd(20) + 'state'.padEnd(14) + 'fps'.padStart(6) + 'done'.padStart(8) + 'dropped'.padStart(9) + 'lat ms'.padStart(8) + '  faces'];
  for (const [id, src] of sources) {
    const s = pipeline.streamStats(id);
    const r = lastFaces.get(id);
    const faces = r ? r.faces.map((f) => `#${f.trackId}:${f.identity?.name ?? '?'}`).join(' ') : '';
    const dropped = s ? s.dropped.stale + s.dropped['too-old'] + s.dropped.error : 0;
    lines.push(
      id.slice(0, 19).padEnd(20) + src.state.padEnd(14) + (s ? s.fps.toFixed(1) : '-').padStart(6) + String(s?.processed ?? 0).padStart(8) + String(dropped).padStart(9) + String(s?.lastLatencyMs ?? '-').padStart(8) + `  ${faces}`,
    );
  }
  return lines.join('\n');
}

async function runSources(ctx: CliContext, sources: string[], opts: RunOptions): Promise<void> {
  const analyzer = await ctx.analyzer();
  const gallery: GalleryLike | undefined = await openIfPresent(ctx, analyzer, opts.gallery);
  const pipeline = new Pipeline(analyzer, ctx.config.pipeline, { gallery, logger: ctx.logger });
  const ids = streamIds(sources);
  const frameSources = new Map<string, FrameSource>();
  const writers = new Map<string, AnnotatedVideoWriter>();
  const lastResults = new Map<string, FrameResult>();
  const ended = new Set<string>();
  const failed = new Set<string>();
  const drawErrors = new Set<string>();
  let finish!: () => void;
  const allEnded = new Promise<void>((r) => (finish = r));

  sources.forEach((url, i) => {
    const id = ids[i];
    const file = isFileSource(url);
    // Files default to offline work: every frame, as fast as the models go. --realtime paces them like a camera.
    const realtime = file ? Boolean(opts.realtime) : true;
    const spec: SourceSpec = { id, url, realtime, loop: Boolean(opts.loop), fps: opts.fps, maxWidth: opts.maxWidth };
    const source = new FrameSource(spec, { config: ctx.config.ingest, logger: ctx.logger });
    pipeline.addStream(id, { mode: realtime ? 'live' : 'offline', minFaceSize: opts.minFace, recognitionInterval: opts.recognitionInterval, detection: { mode: opts.detection, keyframeIntervalMs: opts.keyframeInterval }, source });
    source.on('frame', (frame) => pipeline.offer(frame));
    source.on('state', (change) => {
      if (change.error) process.stderr.write(`facestream: stream ${id}: ${change.state}: ${redactText(change.error.message, source.source.secrets)}\n`);
      if (change.state === 'failed') failed.add(id);
      if (change.state === 'stopped' || change.state === 'failed') {
        ended.add(id);
        if (ended.size === sources.length) finish();
      }
    });
    frameSources.set(id, source);
  });

  pipeline.bus.on('frame', (result, frame) => {
    lastResults.set(result.streamId, result);
    if (!opts.pretty) printJson(result);
    if (opts.draw) {
      let w = writers.get(result.streamId);
      if (!w) {
        const fps = opts.fps ?? 25;
        w = new AnnotatedVideoWriter(drawPath(opts.draw, result.streamId, sources.length > 1), result.width, result.height, fps, ffmpegSetup(ctx.config.ingest).options.passthrough);
        writers.set(result.streamId, w);
        // The video asked for cannot be written: say so now rather than after the whole source.
        void w.failed.then((err) => {
          drawErrors.add(err.message);
          finish();
        });
      }
      void w.write(result, frame);
    }
  });

  let ticker: NodeJS.Timeout | undefined;
  if (opts.pretty) {
    ticker = setInterval(() => process.stderr.write(`\x1b[2J\x1b[H${renderPretty(pipeline, frameSources, lastResults)}\n`), 1000);
  }
  const stop = () => finish();
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
  const timer = opts.duration ? setTimeout(stop, opts.duration * 1000) : undefined;

  for (const s of frameSources.values()) s.start();
  await allEnded;
  if (timer) clearTimeout(timer);
  process.off('SIGINT', stop);
  process.off('SIGTERM', stop);
  await Promise.all([...frameSources.values()].map((s) => s.stop()));
  await pipeline.idle();
  if (ticker) {
    clearInterval(ticker);
    process.stderr.write(`${renderPretty(pipeline, frameSources, lastResults)}\n`);
  }
  const closed = await Promise.allSettled([...writers.values()].map((w) => w.close()));
  [...writers].forEach(([id, w], i) => {
    const outcome = closed[i];
    if (outcome.status === 'rejected') {
      drawErrors.add(errorMessage(outcome.reason));
      return;
    }
    const plain = w.drawFailures ? ` (${w.drawFailures} frames without annotations: ${w.lastDrawError})` : '';
    process.stderr.write(`facestream: annotated video of ${id} written to ${w.file}${plain}\n`);
  });
  await pipeline.close();
  for (const message of drawErrors) process.stderr.write(`facestream: ${redactText(message)}\n`);
  if (failed.size || drawErrors.size) process.exitCode = 1;
}

export function runCommand(): Command {
  return new Command('run')
    .description('recognise faces in one or more video sources (files, rtsp://, http(s)://, /dev/videoN, lavfi:...); prints one JSON line per processed frame')
    .argument('<sources...>', 'video sources')
    .option('--gallery <dir>', 'gallery directory to recognise enrolled people (default: config gallery.dir when it exists)')
    .option('--json', 'print JSON lines (the default output)')
    .option('--pretty', 'show a live summary table instead of JSON lines')
    .option('--draw <out.mp4>', 'write an annotated video (boxes, names, track ids); one file per source when several')
    .option('--realtime', 'read files at their native rate, like a camera (default: as fast as possible, every frame)')
    .option('--loop', 'loop files forever')
    .option('--fps <n>', 'process at most this many frames per second per source', parseNumber('--fps', 0.1, 240))
    .option('--max-width <px>', 'scale frames down to at most this width', parseNumber('--max-width', 16))
    .option('--min-face <px>', 'smallest face to detect', parseNumber('--min-face', 12))
    .option('--recognition-interval <n>', 'recognise each tracked face every n frames', parseNumber('--recognition-interval', 1))
    .addOption(new Option('--detection <mode>', "'tracked': keyframes, tracked faces and motion between them; 'full': the whole picture every frame (default: config detector.mode)").choices(['tracked', 'full']))
    .option('--keyframe-interval <ms>', 'stream time between keyframes in tracked mode (default: config detector.keyframeIntervalMs)', parseNumber('--keyframe-interval', 0))
    .option('--duration <seconds>', 'stop after this many seconds', parseNumber('--duration', 0.1))
    .option('--no-attributes', 'skip age and gender')
    .action(async (sources: string[], opts: RunOptions, cmd: Command) => {
      const ctx = contextFor(cmd, { attributes: { enabled: opts.attributes !== false } });
      await runSources(ctx, sources, opts);
      await ctx.close();
    });
}
