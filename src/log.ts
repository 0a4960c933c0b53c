import { pino, type Logger, type LoggerOptions } from 'pino';

/**
 * Secrets can reach a log line through request headers or a config object; pino removes them
 * before serialisation, so no code path has to remember to.
 */
export const REDACT_PATHS = [
  'req.headers.authorization',
  'req.headers["x-api-key"]',
  'req.headers["api-key"]',
  'req.headers.cookie',
  'headers.authorization',
  'headers["x-api-key"]',
  'headers["api-key"]',
  '*.api_key',
  '*.apiKey',
  '*.key',
  '*.password',
  '*.secret',
  'config.providers.*.api_key',
];

const LEVELS = ['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent'];

/** A LOG_LEVEL pino does not know is a setting to correct, not a crash with a stack trace. */
export class LogLevelError extends Error {
  override name = 'LogLevelError';
}

export function loggerOptions(): LoggerOptions {
  const level = process.env.LOG_LEVEL || 'info';
  if (!LEVELS.includes(level)) throw new LogLevelError(`LOG_LEVEL must be one of ${LEVELS.join(', ')} (got ${JSON.stringify(level)})`);
  return {
    level,
    base: { pid: process.pid },
    redact: { paths: REDACT_PATHS, censor: '[redacted]' },
  };
}

/** A log line's fields when each is a plain value, as an attempt line's are. */
export type FlatFields = Record<string, string | number | boolean | null | undefined>;

/** A logger of lines whose fields are plain values (FlatFields), which skip redaction. */
export interface FlatLogger {
  info(fields: FlatFields, msg: string): void;
}

/**
 * Every redact path above names a field inside an object, so none can match a line of plain
 * values; yet pino's redaction walks each line for them, about 7 µs, as much as the rest of the
 * line costs. A job's attempt line is written for every attempt of every job, so it is written
 * without that walk, and the type keeps any object out of it.
 */
export function flatLogger(log: Logger): FlatLogger {
  const unredacted = log.child({}, { redact: [] });
  return { info: (fields, msg) => unredacted.info(fields, msg) };
}

export function createLogger(name: string): Logger {
  return pino({ ...loggerOptions(), name });
}

export type { Logger };
