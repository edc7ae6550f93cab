/**
 * Text from an untrusted file (a qcow2's backing file name, an archive member's name) shown in a
 * line on a terminal or in JSON: quoted, so it stays on one line and cannot pass for our words.
 */

/**
 * In quotes, safe on a terminal: JSON escapes the C0 controls (ESC included), and DEL and the C1
 * controls (some terminals act on U+009B as on ESC [) are escaped too.
 */
export function quoteText(text: string): string {
  return escapeC1(JSON.stringify(text));
}

/** DEL and C1 controls as JSON `\u` escapes (JSON.stringify leaves them raw); the text stays valid JSON. */
export function escapeC1(json: string): string {
  return json.replace(/[\u007f-\u009f]/g, asEscape);
}

/**
 * A line of ours that may hold names from outside (a file name given on the command line, a
 * URL's path) made safe on a terminal without quoting it: control characters as `\u` escapes.
 */
export function escapeControls(line: string): string {
  return line.replace(/[\u0000-\u001f\u007f-\u009f]/g, asEscape);
}

const asEscape = (c: string) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`;
