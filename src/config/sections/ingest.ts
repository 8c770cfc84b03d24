import { z } from 'zod';

/**
 * Error codes of src/ingest (see src/ingest/errors.ts for what each means). Listed here so the
 * config can name them without importing the ingest module.
 */
export const INGEST_ERROR_CODES = [
  'FFMPEG_NOT_FOUND',
  'INVALID_SOURCE',
  'UNAUTHORIZED',
  'FORBIDDEN',
  'NOT_FOUND',
  'CONNECTION_REFUSED',
  'HOST_UNREACHABLE',
  'TIMEOUT',
  'PROTOCOL_NOT_FOUND',
  'DECODER_NOT_FOUND',
  'INVALID_DATA',
  'NO_VIDEO',
  'PERMISSION_DENIED',
  'DEVICE_BUSY',
  'STALLED',
  'STREAM_ENDED',
  'REFUSED',
  'FFMPEG_FAILED',
] as const;

const ingestErrorCode = z.enum(INGEST_ERROR_CODES);

export const reconnectSchema = z
  .strictObject({
    /** Wait before the first reconnect. Short: most drops (camera reboot, Wi-Fi blip) heal within a second or two. */
    initialDelayMs: z.number().min(0).max(600_000).default(500),
    /** Longest wait between attempts; 30 s keeps a dead camera from costing a connect per second forever. */
    maxDelayMs: z.number().min(0).max(3_600_000).default(30_000),
    /** Each failed attempt multiplies the wait by this. */
    factor: z.number().min(1).max(10).default(2),
    /**
     * Random spread of each wait, as a share of it (0.2: +-20%), so that many cameras behind one
     * switch that went down do not all reconnect in the same millisecond.
     */
    jitter: z.number().min(0).max(1).default(0.2),
    /** Attempts in a row without a stable connection before the stream is given up as failed; 0 retries forever (cameras come back). */
    maxAttempts: z.int().min(0).max(1_000_000).default(0),
    /**
     * A connection that delivered frames this long counts as a success and resets the backoff; a
     * shorter one (a camera that accepts, sends a frame and drops) counts as a failed attempt, so
     * the wait grows across short-lived connections.
     */
    stableAfterMs: z.number().min(0).max(3_600_000).default(30_000),
  })
  .prefault({});

/** Configuration of src/ingest: how ffmpeg reads sources, and how streams recover. See schema.ts for conventions. */
export const ingestSchema = z
  .strictObject({
    /** The ffmpeg program (a name on PATH or a path). ffmpeg 4.4 or newer; Debian 12's 5.1 is tested. */
    ffmpegPath: z.string().min(1).default('ffmpeg'),
    /**
     * Largest frame delivered; larger sources are scaled down inside ffmpeg keeping their aspect
     * ratio (never up). 1920x1080 leaves 1080p cameras untouched and brings 4K ones down to a size
     * where detection cost stays bounded while faces of ~20 px at 1080p are still found.
     */
    maxWidth: z.int().min(16).max(16_384).default(1920),
    maxHeight: z.int().min(16).max(16_384).default(1080),
    /**
     * Most frames per second delivered per stream; faster sources are thinned inside ffmpeg
     * (frames dropped, never duplicated). Empty: the source's own rate.
     */
    fps: z.number().gt(0).max(240).optional(),
    /** RTSP transport. TCP by default: it survives NAT and packet loss without smeared frames; UDP has less latency on clean networks. */
    rtspTransport: z.enum(['tcp', 'udp']).default('tcp'),
    /**
     * Network read/connect timeout inside ffmpeg (RTSP `-timeout`, HTTP `-rw_timeout`). Also bounds
     * how long an orphaned ffmpeg could wait on a dead socket where the kernel cannot kill it for us.
     */
    ioTimeoutMs: z.number().min(100).max(600_000).default(5000),
    /** From starting ffmpeg to the first frame. RTSP setup plus the wait for a key frame (cameras send one every 1-4 s) fits in 15 s. */
    startTimeoutMs: z.number().min(100).max(600_000).default(15_000),
    /**
     * A live stream with no frame for this long is stalled and restarted (the watchdog). The
     * watchdog and ioTimeoutMs follow the source's measured frame interval (three intervals) when
     * that is longer: a camera sending a frame every 8 s is not stalled (src/ingest/cadence.ts).
     */
    stallTimeoutMs: z.number().min(100).max(600_000).default(5000),
    /** After asking ffmpeg to quit (SIGTERM), how long to wait before killing it (SIGKILL). */
    killTimeoutMs: z.number().min(0).max(60_000).default(2000),
    reconnect: reconnectSchema,
    /**
     * Errors that end a network or device stream as 'failed' instead of reconnecting: retrying
     * cannot fix a wrong password or path. Files and lavfi sources fail on any error.
     * Remove NOT_FOUND to keep retrying a path that a media server publishes later.
     */
    failOn: z
      .array(ingestErrorCode)
      .default(['UNAUTHORIZED', 'FORBIDDEN', 'NOT_FOUND', 'REFUSED', 'NO_VIDEO', 'DECODER_NOT_FOUND', 'PROTOCOL_NOT_FOUND', 'INVALID_SOURCE', 'FFMPEG_NOT_FOUND', 'PERMISSION_DENIED']),
    /**
     * How raw frames come from ffmpeg. 'fifo': a named pipe per run, read into one reused buffer,
     * allocating nothing per read (src/ingest/frame-pipe.ts: four 1080p streams through stdout made
     * the garbage collector pause the event loop ~19 times a second). 'stdout': ffmpeg's standard
     * output, for platforms without `mkfifo`; a run whose fifo cannot be made falls back to it.
     */
    framePipe: z.enum(['fifo', 'stdout']).default('fifo'),
    /** ffmpeg stderr lines kept per stream (credentials scrubbed) for error reports. */
    stderrLines: z.int().min(1).max(10_000).default(50),
    /**
     * Linux: start ffmpeg through util-linux's `setpriv --pdeathsig KILL` so the kernel kills it
     * when this process dies, even by SIGKILL. Off, or without setpriv, ffmpeg is still killed on
     * stop and on a normal exit, and an orphan quits at its next write or I/O timeout.
     */
    killWithParent: z.boolean().default(true),
  })
  .prefault({});

export type IngestConfig = z.infer<typeof ingestSchema>;
export type ReconnectConfig = z.infer<typeof reconnectSchema>;
