/** The expected checksum of a source, as the CLI's --checksum and CDI's IMPORTER_CHECKSUM give it. */
import { usageError } from '../errors.js';
import type { ChecksumSpec } from '../request.js';

const ALGORITHMS = { md5: 32, sha1: 40, sha256: 64, sha512: 128 } as const;

/** `algo:hex` (SPEC §4.1), algorithm case-insensitive. */
export function parseChecksum(text: string): ChecksumSpec {
  const match = /^([A-Za-z0-9]+):(.*)$/.exec(text.trim());
  const algorithm = match?.[1]!.toLowerCase() as keyof typeof ALGORITHMS | undefined;
  if (!match || !algorithm || !(algorithm in ALGORITHMS)) {
    throw usageError(`invalid checksum "${text}": expected ALGORITHM:HEX with ALGORITHM one of md5, sha1, sha256, sha512`);
  }
  // The algorithm is right: what is wrong is the digits, said as such.
  const notHex = /[^0-9A-Fa-f]/.exec(match[2]!);
  if (match[2] === '' || notHex) {
    throw usageError(`invalid checksum "${text}": the ${algorithm} digest must be hex digits (0-9, a-f)${notHex ? `, not "${notHex[0]}"` : ''}`);
  }
  const hex = match[2]!.toLowerCase();
  if (hex.length !== ALGORITHMS[algorithm]) {
    throw usageError(`invalid checksum "${text}": a ${algorithm} digest has ${ALGORITHMS[algorithm]} hex digits, not ${hex.length}`);
  }
  return { algorithm, hex };
}
