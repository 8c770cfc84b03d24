import { z } from 'zod';
import { compatSchema } from './compat.js';

/**
 * Configuration of src/server: where it listens, who may use it, what it accepts, how live results
 * reach WebSocket clients. See schema.ts for conventions.
 */

/** A key as clients send it, or "sha256:<64 hex digits>" (the key's SHA-256) so the config file holds no usable secret. */
const apiKey = z.string().min(16, 'an API key needs at least 16 characters').max(512);

export const authSchema = z
  .strictObject({
    /**
     * Keys that may do everything (create streams, enroll, delete). When this list and the
     * readOnly list are both empty, the server generates one key on its first start, prints it
     * once and stores only its SHA-256 in the data directory. Also FACESTREAM_API_KEYS
     * (comma-separated).
     */
    keys: z.array(apiKey).default([]),
    /** Keys that may only read: list streams and identities, watch the WebSocket, use picture routes that change nothing (detect, analyze, identify, verify). */
    readOnlyKeys: z.array(apiKey).default([]),
    /**
     * Let anyone read (GET routes and the WebSocket) without a key; writes still need one. Off:
     * the gallery holds people's names and faces, which is personal data.
     */
    openRead: z.boolean().default(false),
    /** Serve /metrics without a key. On: Prometheus scrapes without credentials, and metrics name no people or camera URLs. */
    openMetrics: z.boolean().default(true),
  })
  .prefault({});

export const corsSchema = z
  .strictObject({
    /**
     * Origins (e.g. "https://dashboard.example.com") allowed to call the API from a browser. Empty:
     * the viewer served by this server only (same origin). "*" allows any origin; keys are still needed.
     */
    origins: z.array(z.string().min(1)).default([]),
  })
  .prefault({});

export const serverLimitsSchema = z
  .strictObject({
    /** Largest JSON body of ordinary routes. Stream and identity definitions are tiny; 64 KiB leaves room for metadata. */
    jsonBodyBytes: z.int().min(1024).default(64 * 1024),
    /**
     * Largest JSON body of routes taking base64 pictures (detect, enroll, ...). Base64 is 4/3 of
     * the bytes; 16 MiB fits two 6 MB phone pictures. Larger bodies are refused with 413 as soon
     * as the limit is passed, without buffering the rest.
     */
    pictureBodyBytes: z.int().min(1024).default(16 * 1024 * 1024),
    /** Pictures in one multipart upload or JSON enrollment. */
    maxFiles: z.int().min(1).max(1000).default(20),
    /** Largest gallery import body (a JSON export with embeddings and crops). */
    importBytes: z.int().min(1024).default(256 * 1024 * 1024),
    /**
     * Requests whose pictures are decoded and analysed at once (detect, analyze, identify,
     * verify, enroll). Each holds at most one decoded picture of limits.maxDecodeSide per file
     * and its detection working set; 2 leaves libuv's 4 threads room to serve files and the database.
     */
    concurrentPictures: z.int().min(1).max(256).default(2),
    /** Picture requests waiting for a turn; more are refused with 503 at once (their bodies are already read: each holds up to pictureBodyBytes). */
    queuedPictures: z.int().min(0).max(10_000).default(32),
  })
  .prefault({});

export const rateLimitSchema = z
  .strictObject({
    /** Requests per client (API key, else address) per window on the expensive routes (picture analysis, enrollment). 0 turns the limit off. */
    max: z.int().min(0).default(60),
    /** The window. 60 per minute keeps one client from taking the models away from live streams on a small machine. */
    windowMs: z.int().min(100).default(60_000),
  })
  .prefault({});

export const sourcesSchema = z
  .strictObject({
    /**
     * Directories whose video files may be used as stream sources (resolved with symlinks; a path
     * outside them is refused, so an API user cannot make the server read /etc or the gallery).
     * Empty: no file sources. `facestream serve --demo` adds the demo video's directory, and
     * `--allow-dir` adds others. Use absolute paths (relative ones are taken from the working directory).
     */
    allowedDirs: z.array(z.string().min(1)).default([]),
    /** Allow ffmpeg's synthetic lavfi sources (test patterns). Graphs that open files (movie, amovie) are refused even then. */
    allowLavfi: z.boolean().default(false),
    /** Allow local capture devices (/dev/videoN, avfoundation, dshow). */
    allowDevices: z.boolean().default(true),
    /**
     * Device paths a v4l2 source may name, as globs (`*` within one path segment), checked on the
     * path and on where its symlinks lead. The default allows the Video4Linux capture nodes only,
     * so `v4l2:/etc/shadow` or `v4l2:/dev/sda` is refused before ffmpeg opens anything.
     */
    allowedDevices: z.array(z.string().min(1)).default(['/dev/video*']),
    /**
     * Hosts network sources may connect to: names (`cam1.lan`, `*.cams.example.org`), IP
     * addresses and CIDR ranges (`192.168.1.0/24`, `fd00::/8`). Names match names (a host given
     * by address must be listed by address). Empty: any host (the default; set it on servers
     * where API users must not reach other machines, e.g. to port-scan through error codes).
     * ffmpeg follows HTTP redirects and HLS playlists to hosts this list does not see.
     */
    allowedHosts: z.array(z.string().min(1)).default([]),
    /** Allow network sources (rtsp, http, https). */
    allowNetwork: z.boolean().default(true),
    /** Most streams the server runs at once; each costs an ffmpeg process and decoding time. */
    maxStreams: z.int().min(1).max(1000).default(32),
  })
  .prefault({});

export const websocketSchema = z
  .strictObject({
    /**
     * Messages waiting per client while its connection is slow. Past this the oldest frame is
     * dropped (and counted): a slow client sees fewer frames but never delays the pipeline or others.
     * 32 is about 1 s of one 25 fps stream.
     */
    maxQueuedMessages: z.int().min(1).max(10_000).default(32),
    /**
     * Bytes handed to a client's socket and not yet sent before the server stops handing it more
     * and lets messages wait in the queue above. 1 MiB is a few JPEG frames.
     */
    maxBufferedBytes: z.int().min(1024).default(1024 * 1024),
    /** Ping every client this often; one that has not answered the previous ping by then is cut off (dead network path). */
    heartbeatMs: z.int().min(100).max(600_000).default(15_000),
    /** Highest JPEG rate a client may ask for, per stream. */
    maxJpegFps: z.number().gt(0).max(60).default(15),
    /** Widest JPEG a client may ask for (frames are never scaled up). */
    maxJpegWidth: z.int().min(16).max(7680).default(1920),
    /** JPEG quality when the client names none; 70 keeps a 640x360 frame near 30 KB. */
    jpegQuality: z.int().min(10).max(100).default(70),
    /** Clients connected at once; more are refused (close code 1013) so sockets cannot exhaust memory. */
    maxClients: z.int().min(1).max(100_000).default(1000),
  })
  .prefault({});

export const demoSchema = z
  .strictObject({
    /** Video looped as the demo camera. Empty: data/video/hamilton_640x360.mp4 under the shared data directory. */
    video: z.string().optional(),
    /** Folder of <person>/<picture> enrolled into an empty gallery. Empty: data/faces under the shared data directory. */
    faces: z.string().optional(),
    /** Shared data directory. Default ../shared/data beside the package (FACESTREAM_DATA). */
    dataDir: z.string().optional(),
  })
  .prefault({});

export const serverSchema = z
  .strictObject({
    /** Address to listen on. 127.0.0.1: only this machine, until a key is set up and the operator opens it (0.0.0.0). */
    host: z.string().min(1).default('127.0.0.1'),
    /** TCP port; 0 picks a free one (tests). */
    port: z.int().min(0).max(65_535).default(8080),
    /** Server state: stream definitions and generated API key hashes (SQLite). Created with mode 0700. */
    dataDir: z.string().min(1).default('./data'),
    /** Trust X-Forwarded-* from a reverse proxy (client addresses for rate limits and logs). */
    trustProxy: z.boolean().default(false),
    /** Serve the OpenAPI browser at /docs (the document itself is always at /openapi.json). */
    docs: z.boolean().default(true),
    auth: authSchema,
    cors: corsSchema,
    limits: serverLimitsSchema,
    rateLimit: rateLimitSchema,
    sources: sourcesSchema,
    websocket: websocketSchema,
    demo: demoSchema,
    compat: compatSchema,
  })
  .prefault({});

export type ServerConfig = z.infer<typeof serverSchema>;
export type WebSocketConfig = z.infer<typeof websocketSchema>;
export type SourcesConfig = z.infer<typeof sourcesSchema>;
