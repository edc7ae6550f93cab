import type { Command } from 'commander';
import { parseHeaderLines } from '../sources/http/request-headers.js';
import type { TransportOptions } from '../request.js';
import { usageError } from '../errors.js';
import { parseSeconds } from './parse-options.js';

/** The transport flags as commander parses them. */
export interface TransportFlags {
  user?: string;
  password?: string;
  secret?: string;
  insecure?: boolean;
  caCert?: string[];
  header?: string[];
  arch?: string;
  stallTimeout?: string;
}

/** For repeatable options: `--header A --header B` → ['A', 'B']. */
export const collect = (value: string, previous: string[] = []) => [...previous, value];

/** Adds the flags of the network sources (HTTP and registry) to a command. */
export function addTransportOptions(command: Command): Command {
  return command
    .option('--user <user>', 'HTTP Basic auth / registry user')
    .option('--password <password>', 'HTTP Basic auth / registry password')
    .option('--secret <file>', 'Kubernetes Secret YAML with base64 accessKeyId/secretKey (instead of --user/--password)')
    .option('--ca-cert <file|dir>', 'extra CA certificate file or directory of PEM files (repeatable); a directory may also hold a client certificate as NAME.cert + NAME.key', collect)
    .option('--insecure', 'do not verify TLS certificates')
    .option('--header <header>', 'extra HTTP header "Name: value" (repeatable)', collect)
    .option('--arch <arch>', 'platform architecture to pick from a registry manifest list')
    .option('--stall-timeout <seconds>', 'a download that receives nothing (or under 16 KiB) for this long is resumed where it stopped (default 60)');
}

/** Transport flags → TransportOptions for HTTP and registry sources. */
export async function buildTransport(options: TransportFlags): Promise<TransportOptions> {
  if ((options.user === undefined) !== (options.password === undefined)) {
    throw usageError('--user and --password go together: give both or neither');
  }
  if (options.secret !== undefined && options.user !== undefined) throw usageError('give either --secret or --user/--password, not both');
  parseHeaderLines(options.header); // checked whatever the source, as the other flags are
  return {
    auth:
      options.secret !== undefined
        ? (await import('../sources/k8s-secret.js')).readSecretCredentials(options.secret)
        : options.user !== undefined
          ? { username: options.user, password: options.password! }
          : undefined,
    caPaths: options.caCert,
    insecure: options.insecure === true,
    headers: options.header,
    architecture: options.arch,
    stallTimeoutSeconds: options.stallTimeout !== undefined ? parseSeconds(options.stallTimeout, '--stall-timeout') : undefined,
  };
}
