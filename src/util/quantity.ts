/**
 * Kubernetes resource quantities (`10Gi`, `1G`, `512Mi`, `1.5Gi`, `1e9`, plain bytes) to bytes.
 * Binary suffixes are powers of 1024, decimal ones powers of 1000; fractions round up to a whole byte
 * as Kubernetes does for storage.
 */
const SUFFIXES: Record<string, number> = {
  '': 1,
  k: 1e3, M: 1e6, G: 1e9, T: 1e12, P: 1e15, E: 1e18,
  Ki: 2 ** 10, Mi: 2 ** 20, Gi: 2 ** 30, Ti: 2 ** 40, Pi: 2 ** 50, Ei: 2 ** 60,
};

export function parseQuantity(text: string): number {
  const trimmed = text.trim();
  const match = /^([+]?[0-9]+(?:\.[0-9]*)?|[+]?\.[0-9]+)(?:([eE][+-]?[0-9]+)|(Ki|Mi|Gi|Ti|Pi|Ei|k|M|G|T|P|E))?$/.exec(trimmed);
  if (!match) throw new Error(`invalid quantity "${text}": expected a number with an optional suffix such as 10Gi, 1G or 512Mi`);
  const [, number, exponent, suffix = ''] = match;
  const value = exponent ? Number(number + exponent) : Number(number) * SUFFIXES[suffix]!;
  const bytes = Math.ceil(value);
  if (!Number.isSafeInteger(bytes)) throw new Error(`invalid quantity "${text}": too large`);
  return bytes;
}

const UNITS = ['B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB'];

/** 1536 → "1.5 KiB": for progress and messages. */
export function formatBytes(bytes: number): string {
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < UNITS.length - 1) {
    value /= 1024;
    unit++;
  }
  return unit === 0 ? `${value} B` : `${value.toFixed(value >= 100 ? 0 : 1)} ${UNITS[unit]}`;
}

/** 0.055 → "5.5 %": a fraction (the filesystem overhead) for messages, without float noise. */
export function formatPercent(fraction: number): string {
  return `${+(fraction * 100).toFixed(2)} %`;
}
