/**
 * CDI starts its importer with klog flags (`-v=1`, `-alsologtostderr`, ...). We accept the whole
 * klog flag set, Go style (one or two dashes, `-name=value` or `-name value`), take the verbosity
 * for the log level and ignore the rest.
 */
import { levelFromVerbosity, type LogLevel } from '../util/logger.js';
import { parseGoBool } from '../util/cdi-environment.js';

/** klog flags that take a value. */
const VALUE_FLAGS = new Set([
  'v',
  'vmodule',
  'log_dir',
  'log_file',
  'log_file_max_size',
  'log_backtrace_at',
  'stderrthreshold',
]);

/** klog flags that are booleans (`-name`, `-name=true|false`). */
const BOOLEAN_FLAGS = new Set([
  'alsologtostderr',
  'logtostderr',
  'add_dir_header',
  'skip_headers',
  'skip_log_headers',
  'one_output',
]);

export interface KlogFlags {
  /** `-v` level; 0 when not given. */
  verbosity: number;
}

class KlogFlagError extends Error {}

function splitFlag(arg: string): { name: string; value?: string } | undefined {
  const match = /^--?([A-Za-z_][A-Za-z0-9_]*)(?:=(.*))?$/s.exec(arg);
  if (!match) return undefined;
  return { name: match[1]!, value: match[2] };
}

/** Parses klog flags; throws KlogFlagError for anything else, naming the argument. */
export function parseKlogFlags(args: string[]): KlogFlags {
  let verbosity = 0;
  for (let i = 0; i < args.length; i++) {
    const arg = args[i]!;
    const flag = splitFlag(arg);
    if (!flag) throw new KlogFlagError(`unexpected argument "${arg}": pod mode takes only klog flags such as -v=1`);
    if (BOOLEAN_FLAGS.has(flag.name)) {
      if (flag.value !== undefined && parseGoBool(flag.value) === undefined) {
        throw new KlogFlagError(`invalid value "${flag.value}" for flag -${flag.name}: expected true or false`);
      }
      continue;
    }
    if (!VALUE_FLAGS.has(flag.name)) throw new KlogFlagError(`unknown flag "${arg}": pod mode takes only klog flags such as -v=1`);
    let value = flag.value;
    if (value === undefined) {
      value = args[++i];
      if (value === undefined) throw new KlogFlagError(`flag -${flag.name} needs a value`);
    }
    if (flag.name === 'v') {
      if (!/^[0-9]+$/.test(value)) throw new KlogFlagError(`invalid value "${value}" for flag -v: expected a number`);
      verbosity = Number(value);
    }
  }
  return { verbosity };
}

/**
 * The pod's log level from its command line, or undefined after saying on stderr what is wrong
 * with it (the caller exits 2).
 */
export function podLogLevel(argv: string[]): LogLevel | undefined {
  try {
    return levelFromVerbosity(parseKlogFlags(argv).verbosity);
  } catch (err) {
    if (!(err instanceof KlogFlagError)) throw err;
    process.stderr.write(`cdi-importer: error: ${err.message}\n`);
    return undefined;
  }
}
