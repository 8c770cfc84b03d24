import type { Writable } from 'node:stream';
import ffmpeg from 'fluent-ffmpeg';
import type { IngestConfig } from '../config/sections/ingest.js';
import type { VersionedOptions } from './ffmpeg.js';
import type { ResolvedSource } from './source.js';

export interface FfmpegArgs {
  /** Global and input options, before -i. */
  inputOptions: string[];
  input: string;
  /** The video filter chain (-vf). */
  filters: string;
  /** Output options after the filters (stream selection, sync, raw format). */
  outputOptions: string[];
}

/**
 * Keeps at most `fps` frames per second by dropping, never duplicating: a frame passes when it is
 * the first in its 1/fps slot of stream time. ffmpeg's fps filter would also pad gaps with copies
 * of the last frame, so a camera that hiccups for a second would come back with a burst of stale
 * duplicates. Frames without a timestamp, and time running backwards (a looped clip, a camera
 * reset), always pass so the stream never freezes.
 */
export function rateLimitFilter(fps: number): string {
  const r = Number(fps.toFixed(6));
  return `select='isnan(t)+isnan(prev_selected_t)+lt(t,prev_selected_t)+gt(floor(t*${r}),floor(prev_selected_t*${r}))'`;
}

/**
 * Scales down to fit maxWidth x maxHeight keeping the aspect ratio, never up, to even sizes; the
 * conversion to RGB happens in the same swscale pass. 'area' averages the pixels a target pixel
 * covers, the cheap way to shrink without aliasing; at the source's own size it only converts.
 */
export function scaleFilter(maxWidth: number, maxHeight: number): string {
  return `scale=w='min(${maxWidth},iw)':h='min(${maxHeight},ih)':force_original_aspect_ratio=decrease:force_divisible_by=2:flags=area`;
}

/** The ffmpeg arguments for a source, without the program (pure; see the tests for examples). */
export function ffmpegArgs(src: ResolvedSource, config: IngestConfig, options: VersionedOptions): FfmpegArgs {
  const ioTimeoutUs = String(Math.round(config.ioTimeoutMs * 1000));
  // repeat: every error line, not "last message repeated"; level: [error]/[info] prefixes that
  // tell errors from chatter; showinfo needs info. -nostdin: ffmpeg must not take keys from a pipe.
  const inputOptions = ['-hide_banner', '-nostdin', '-nostats', '-loglevel', 'repeat+level+info'];
  switch (src.kind) {
    case 'rtsp':
      inputOptions.push('-rtsp_transport', src.rtspTransport, options.rtspTimeout, ioTimeoutUs, '-allowed_media_types', 'video');
      break;
    case 'http':
      inputOptions.push('-rw_timeout', ioTimeoutUs);
      if (src.realtime) inputOptions.push('-re');
      if (src.loop) inputOptions.push('-stream_loop', '-1');
      break;
    case 'file':
      if (src.realtime) inputOptions.push('-re');
      if (src.loop) inputOptions.push('-stream_loop', '-1');
      break;
    case 'lavfi':
      inputOptions.push('-f', 'lavfi');
      if (src.realtime) inputOptions.push('-re');
      break;
    case 'device':
      inputOptions.push('-f', src.format ?? 'v4l2');
      if (src.videoSize) inputOptions.push('-video_size', src.videoSize);
      if (src.framerate) inputOptions.push('-framerate', String(src.framerate));
      if (src.inputFormat) inputOptions.push('-input_format', src.inputFormat);
      break;
  }
  const filters = [
    ...(src.fps ? [rateLimitFilter(src.fps)] : []),
    scaleFilter(src.maxWidth, src.maxHeight),
    'format=rgb24',
    // One line per delivered frame with its timestamp and size: how bytes become frames.
    options.showinfo,
    // Strictly increasing output timestamps: with passthrough sync, a timeline that jumps back
    // (looped RTSP clip, camera reset) would otherwise make the muxer complain on every frame.
    'setpts=N/TB',
  ].join(',');
  // -autoscale 0: when the input changes resolution mid-stream (a camera switching profile, MPEG-TS
  // segments of two sizes), ffmpeg would otherwise scale every later frame back to the first size
  // after showinfo reported the new one, and the framer would cut the bytes at the wrong size. With
  // it, each frame is written at the size its showinfo line gives (rawvideo takes any size).
  const outputOptions = ['-map', '0:v:0', '-an', '-sn', '-dn', '-vf', filters, ...options.passthrough, '-autoscale', '0', '-pix_fmt', 'rgb24', '-f', 'rawvideo'];
  return { inputOptions, input: src.input, filters, outputOptions };
}

/** A fluent-ffmpeg command writing raw RGB frames of `src` to `output` (a stream, or a FIFO's path). */
export function createCommand(args: FfmpegArgs, output: Writable | string, stderrLines: number): ffmpeg.FfmpegCommand {
  // Options go in as separate arguments: given one array, fluent-ffmpeg splits any option that
  // contains a space in two.
  return ffmpeg({ stdoutLines: stderrLines })
    .input(args.input)
    .inputOptions(...args.inputOptions)
    .output(output, typeof output === 'string' ? {} : { end: true })
    .outputOptions(...args.outputOptions);
}
