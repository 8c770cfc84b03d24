import path from 'node:path';
import { Command } from 'commander';
import { demoPaths, setupDemo } from '../../server/demo.js';
import { startServer, type RunningServer } from '../../server/server.js';
import { contextFor, parseNumber } from '../context.js';

interface ServeOptions {
  host?: string;
  port?: number;
  gallery?: string;
  dataDir?: string;
  allowDir?: string[];
  demo?: boolean;
  resetKey?: boolean;
}

const collect = (v: string, all: string[] = []) => [...all, v];

/** What to open and which key to use, on stdout (never in the logs). */
function banner(server: RunningServer, demo: boolean): string {
  const u = server.url.replace('://0.0.0.0', '://127.0.0.1').replace('://[::]', '://127.0.0.1');
  const lines = ['', `facestream ${server.ctx.version} is running${demo ? ' the demo' : ''}.`, ''];
  const cluster = server.ctx.config.cluster;
  if (cluster?.role === 'worker') {
    // A worker serves no API or viewer (421 WRONG_NODE): say where it stands instead.
    lines.push(`  cluster worker ${cluster.nodeId}: runs the streams it holds; the viewer and the API are on the api nodes.`, `  health:   ${u}/health`, `  metrics:  ${u}/metrics`, '', 'Press Ctrl+C to stop.', '');
    return lines.join('\n');
  }
  if (server.generatedKey) {
    lines.push(
      `  viewer:   ${u}/#key=${server.generatedKey}`,
      `  API key:  ${server.generatedKey}`,
      `            generated now and shown only this once; only its hash is kept in ${server.ctx.dataDir}.`,
      `            Send it as "Authorization: Bearer <key>"; run with --reset-key to replace it.`,
    );
  } else {
    lines.push(`  viewer:   ${u}/`);
    lines.push(
      server.keySource === 'config'
        ? '  API key:  one of the keys in your configuration (server.auth.keys)'
        : `  API key:  the one printed when ${server.ctx.dataDir} was first used (lost it? restart with --reset-key)${server.ctx.config.server.auth.readOnlyKeys.length ? '; your configured keys may only read' : ''}`,
    );
  }
  lines.push(`  API docs: ${u}/docs`, `  metrics:  ${u}/metrics`, '', 'Press Ctrl+C to stop.', '');
  return lines.join('\n');
}

export function serveCommand(): Command {
  return new Command('serve')
    .description('run the server: REST API, live WebSocket, viewer at /, Prometheus metrics at /metrics')
    .option('--host <address>', 'address to listen on (default 127.0.0.1; also FACESTREAM_HOST)')
    .option('--port <n>', 'TCP port (default 8080; 0 picks a free one; also FACESTREAM_PORT)', parseNumber('--port', 0, 65535))
    .option('--gallery <dir>', 'gallery directory (default ./gallery)')
    .option('--data-dir <dir>', 'server state: stream definitions, key hash (default ./data; also FACESTREAM_DATA_DIR)')
    .option('--allow-dir <dir>', 'a directory whose video files may be stream sources (repeatable)', collect)
    .option('--demo', 'loop the Hamilton clip as a camera and enroll the people in the shared faces folder when the gallery is empty')
    .option('--reset-key', 'replace the generated API key with a new one (printed once)')
    .action(async (opts: ServeOptions, cmd: Command) => {
      const globals = cmd.optsWithGlobals() as { logLevel?: string };
      // A server's log is its record: info by default, unlike the one-shot commands.
      if (!globals.logLevel && !process.env.FACESTREAM_LOG_LEVEL) process.env.FACESTREAM_LOG_LEVEL = 'info';
      const server: Record<string, unknown> = {};
      if (opts.host) server.host = opts.host;
      if (opts.port !== undefined) server.port = opts.port;
      if (opts.dataDir) server.dataDir = opts.dataDir;
      const ctx = contextFor(cmd, { ...(Object.keys(server).length ? { server } : {}), ...(opts.gallery ? { gallery: { dir: opts.gallery } } : {}) });
      const demo = opts.demo ? demoPaths(ctx.config) : undefined;
      const extraSourceDirs = [...(opts.allowDir ?? []).map((d) => path.resolve(d)), ...(demo ? [path.dirname(demo.video)] : [])];
      const running = await startServer(ctx.config, { logger: ctx.logger, resetKey: opts.resetKey, extraSourceDirs });
      if (demo) {
        const r = await setupDemo(running, demo);
        if (r.enrolled) ctx.logger.info({ identities: r.enrolled.identities, added: r.enrolled.added, rejected: r.enrolled.rejected }, 'demo: enrolled the shared faces');
      }
      process.stdout.write(banner(running, Boolean(demo)));
      await new Promise<void>((resolve) => {
        let stopping = false;
        const stop = () => {
          if (stopping) {
            // A second Ctrl+C: the user does not want to wait for streams and clients to close.
            process.stderr.write('stopping now\n');
            process.exit(130);
          }
          stopping = true;
          process.stderr.write('\nstopping (Ctrl+C again to quit at once)…\n');
          void running.close().then(resolve, resolve);
        };
        process.on('SIGINT', stop);
        process.on('SIGTERM', stop);
      });
    });
}
