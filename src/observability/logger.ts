// The pino logger, with secrets redacted wherever they could appear.
import { type Logger, type LoggerOptions, pino } from 'pino';

export const REDACT_PATHS = [
  'token',
  '*.token',
  'evidence',
  '*.evidence',
  'adminToken',
  '*.adminToken',
  'authorization',
  '*.authorization',
  'headers.authorization',
  'req.headers.authorization',
  'req.headers.cookie',
];

export function createLogger(
  level: LoggerOptions['level'] = 'info',
  destination?: pino.DestinationStream,
): Logger {
  const options: LoggerOptions = {
    level: level ?? 'info',
    base: { service: 'writ' },
    redact: { paths: REDACT_PATHS, censor: '[redacted]' },
    timestamp: pino.stdTimeFunctions.isoTime,
  };
  // Standard output written asynchronously: under load lines are gathered into few writes instead of one
  // blocking write(2) each on the event loop. pino flushes what is buffered when the process exits.
  return pino(options, destination ?? pino.destination({ dest: 1, sync: false }));
}
