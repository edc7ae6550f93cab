/**
 * The pod's termination message (`/dev/termination-log`), which CDI's controller reads
 * (SPEC §4.3): a JSON object when the importer exits 0, one plain line when it exits 1.
 * Kubernetes keeps at most 4096 bytes of it.
 */
import { writeFileSync } from 'node:fs';

export const TERMINATION_MESSAGE_LIMIT = 4096;

export interface TerminationMessage {
  scratchSpaceRequired?: boolean;
  deadlinePassed?: boolean;
  message?: string;
  preallocationApplied?: boolean;
  labels?: Record<string, string>;
}

/** Cuts `text` to at most `limit` UTF-8 bytes without splitting a character. */
export function truncateUtf8(text: string, limit: number): string {
  const bytes = Buffer.from(text, 'utf8');
  if (bytes.length <= limit) return text;
  let end = limit;
  // Step back over continuation bytes (10xxxxxx) so a multi-byte character is not cut.
  while (end > 0 && (bytes[end]! & 0xc0) === 0x80) end--;
  return bytes.subarray(0, end).toString('utf8');
}

/** One line, no newlines, within the limit: the failure form. */
export function formatFailureLine(text: string): string {
  return truncateUtf8(text.replace(/\s*[\r\n]+\s*/g, ' ').trim(), TERMINATION_MESSAGE_LIMIT);
}

/**
 * The success form: JSON with empty fields omitted, fields in a fixed order. If labels push it
 * over the limit, labels are dropped (the largest first) before the message is shortened, since
 * the message is what the controller acts on. (CDI's importer fails the import instead; an image
 * that imported is worth keeping, and `droppedLabels` lets the log say what is missing.)
 */
export function fitTerminationJson(message: TerminationMessage): { json: string; droppedLabels: string[] } {
  const labels = { ...(message.labels ?? {}) };
  const droppedLabels: string[] = [];
  const render = (): string => {
    const out: Record<string, unknown> = {};
    if (message.scratchSpaceRequired) out.scratchSpaceRequired = true;
    if (message.deadlinePassed) out.deadlinePassed = true;
    if (message.message) out.message = message.message;
    if (message.preallocationApplied !== undefined) out.preallocationApplied = message.preallocationApplied;
    if (Object.keys(labels).length > 0) out.labels = labels;
    return JSON.stringify(out);
  };
  let json = render();
  while (Buffer.byteLength(json) > TERMINATION_MESSAGE_LIMIT && Object.keys(labels).length > 0) {
    const largest = Object.entries(labels).sort((a, b) => b[0].length + b[1].length - a[0].length - a[1].length)[0]!;
    delete labels[largest[0]];
    droppedLabels.push(largest[0]);
    json = render();
  }
  if (Buffer.byteLength(json) > TERMINATION_MESSAGE_LIMIT && message.message) {
    const overflow = Buffer.byteLength(json) - TERMINATION_MESSAGE_LIMIT;
    const shortened = truncateUtf8(message.message, Math.max(0, Buffer.byteLength(message.message) - overflow - 8));
    return { json: formatTerminationJson({ ...message, labels, message: shortened }), droppedLabels };
  }
  return { json, droppedLabels };
}

export function formatTerminationJson(message: TerminationMessage): string {
  return fitTerminationJson(message).json;
}

export function writeTerminationMessage(file: string, content: string): void {
  writeFileSync(file, content, { mode: 0o600 });
}
