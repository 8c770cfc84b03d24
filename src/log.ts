import { pino, type DestinationStream, type Logger, type LevelWithSilent, type LoggerOptions } from 'pino';
import { redactFields, redactText } from './redact.js';

export type { Logger };

/**
 * Camera URLs can carry credentials. Components redact what they log (src/redact.ts), and this
 * hook is the net under them: every string argument and every string field of a log call goes
 * through redactText (URL user-info and credential-like query values), whatever the level.
 * Child loggers' bindings are not hooked by pino: bind only redacted labels. pino's redact covers
 * fields that are secrets by name.
 */
export const redactingOptions: Pick<LoggerOptions, 'hooks' | 'redact'> = {
  hooks: {
    logMethod(args, method) {
      const clean = args.map((a) => (typeof a === 'string' ? redactText(a) : redactFields(a)));
      return method.apply(this, clean as Parameters<typeof method>);
    },
  },
  redact: { paths: ['password', '*.password', 'apiKey', '*.apiKey', 'authorization', '*.authorization', 'headers.authorization'], censor: '[redacted]' },
};

/** Logs go to stderr (or `destination`) so that commands which print JSON on stdout stay machine-readable. */
export function createLogger(level: LevelWithSilent = (process.env.FACESTREAM_LOG_LEVEL as LevelWithSilent) ?? 'info', destination?: DestinationStream): Logger {
  return pino({ level, base: undefined, ...redactingOptions }, destination ?? pino.destination({ fd: 2, sync: true }));
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
