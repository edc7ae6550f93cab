import type { ProgressReport } from '../request.js';
import { formatBytes } from '../util/quantity.js';

/**
 * A one-line progress display on a terminal (stderr): percentage, bytes, rate and ETA when the
 * total is known; bytes and rate otherwise. Redrawn in place with \r.
 */
export class ProgressBar {
  private readonly started = Date.now();
  private drawn = false;
  private lastBytes = -1;
  private lastLength = 0;

  constructor(private readonly out: NodeJS.WriteStream = process.stderr) {}

  update = (report: ProgressReport): void => {
    if (report.bytes === this.lastBytes) return; // the final report often repeats the last one
    this.lastBytes = report.bytes;
    const seconds = Math.max(0.001, (Date.now() - this.started) / 1000);
    const rate = report.bytes / seconds;
    let line: string;
    if (report.total) {
      const fraction = Math.min(1, report.bytes / report.total);
      const width = 24;
      const filled = Math.round(fraction * width);
      // The rate of the first moments (a header read, a slow start) says nothing of the rest.
      const eta = report.bytes >= report.total ? 0 : rate > 0 && seconds >= 1 ? (report.total - report.bytes) / rate : Infinity;
      line =
        `[${'#'.repeat(filled)}${'.'.repeat(width - filled)}] ${(fraction * 100).toFixed(0).padStart(3)}% ` +
        `${formatBytes(report.bytes)} / ${formatBytes(report.total)}  ${formatBytes(rate)}/s  ETA ${formatDuration(eta)}`;
    } else {
      line = `${formatBytes(report.bytes)}  ${formatBytes(rate)}/s`;
    }
    // A pseudo-terminal that was never sized (script, docker run -t) says 0 columns.
    const columns = this.out.columns || 100;
    const text = line.slice(0, columns - 1);
    // Padded over what the last frame drew, so a shorter line leaves nothing of it behind.
    this.out.write(`\r${text.padEnd(Math.min(columns - 1, Math.max(80, this.lastLength)))}`);
    this.lastLength = text.length;
    this.drawn = true;
  };

  /** Prints a line of its own; the bar is drawn again with the next update. */
  note(line: string): void {
    this.out.write(`${this.drawn ? '\r\x1b[K' : ''}${line}\n`);
    this.drawn = false;
    this.lastBytes = -1;
  }

  /** Ends the line so later output starts on a fresh one. */
  done(): void {
    if (this.drawn) this.out.write('\n');
    this.drawn = false;
  }
}

function formatDuration(seconds: number): string {
  if (!Number.isFinite(seconds)) return '--:--';
  const s = Math.round(seconds);
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const rest = String(s % 60).padStart(2, '0');
  return h > 0 ? `${h}:${String(m).padStart(2, '0')}:${rest}` : `${m}:${rest}`;
}
