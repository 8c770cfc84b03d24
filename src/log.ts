import { pino, type Logger, type LevelWithSilent } from 'pino';

export type { Logger };

/**
 * Logs go to stderr so that commands which print JSON on stdout stay machine-readable.
 * Camera URLs can carry credentials: every place that logs a source passes it through
 * `redactUrl` first (see src/ingest/source.ts); pino's redact covers structured fields.
 */
export function createLogger(level: LevelWithSilent = (process.env.FACESTREAM_LOG_LEVEL as LevelWithSilent) ?? 'info'): Logger {
  return pino(
    {
      level,
      base: undefined,
      redact: { paths: ['password', '*.password', 'apiKey', '*.apiKey', 'authorization', '*.authorization', 'headers.authorization'], censor: '[redacted]' },
    },
    pino.destination({ fd: 2, sync: true }),
  );
}

let shared: Logger | undefined;

/** The process-wide logger; components take a logger in their options and default to this one. */
export function rootLogger(): Logger {
  shared ??= createLogger();
  return shared;
}

export function setRootLogger(logger: Logger): void {
  shared = logger;
}
