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

export function createLogger(name: string): Logger {
  return pino({ ...loggerOptions(), name });
}

export type { Logger };
