/**
 * The JSON-lines logger (pino) used by pod mode and the commands that log. Logs go to stderr so
 * that stdout stays free for results (`--json`); writes are synchronous so the last lines before
 * process.exit are not lost.
 */
import { pino, type Logger as PinoLogger, type Level } from 'pino';

export type LogLevel = Level | 'silent';

export interface LoggerOptions {
  level?: LogLevel;
  /** File descriptor to write to (2 = stderr by default). */
  fd?: number;
  /** Extra fields on every line, e.g. `{ component: 'importer' }`. */
  base?: Record<string, unknown>;
}

export type AppLogger = PinoLogger;

export function createLogger(options: LoggerOptions = {}): AppLogger {
  return pino(
    {
      level: options.level ?? 'info',
      base: options.base ?? {},
      timestamp: pino.stdTimeFunctions.isoTime,
      formatters: { level: (label) => ({ level: label }) },
    },
    pino.destination({ fd: options.fd ?? 2, sync: true }),
  );
}

/**
 * klog verbosity (`-v=N`) to a pino level. CDI logs its routine progress at V(1) and details at
 * V(3), so 0 keeps info and above, 1–2 adds debug, 3+ adds trace.
 */
export function levelFromVerbosity(verbosity: number): LogLevel {
  if (verbosity >= 3) return 'trace';
  if (verbosity >= 1) return 'debug';
  return 'info';
}
