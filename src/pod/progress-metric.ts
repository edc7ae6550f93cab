/**
 * The import progress CDI's controller scrapes (SPEC §4.4):
 * `kubevirt_cdi_import_progress_total{ownerUID="..."}`, a percentage that only rises, plus the
 * absolute byte counts as gauges (beyond CDI), in Prometheus' text exposition format. Three
 * samples need no client library (prom-client took ~25 ms of every pod's start to load), and
 * Node's default process metrics stay out of it as before.
 */
import type { ProgressReport } from '../request.js';

const PROGRESS_METRIC = 'kubevirt_cdi_import_progress_total';
const PROGRESS_BYTES_METRIC = 'kubevirt_cdi_import_progress_bytes';
const SOURCE_SIZE_METRIC = 'kubevirt_cdi_import_source_size_bytes';

/** Prometheus text format 0.0.4, as Go's client and prom-client serve it. */
const EXPOSITION_CONTENT_TYPE = 'text/plain; version=0.0.4; charset=utf-8';

export class ImportProgressMetric {
  readonly contentType = EXPOSITION_CONTENT_TYPE;
  private readonly labels: string;
  private current = 0;
  private bytes = 0;
  private size: number | undefined;

  constructor(ownerUid: string) {
    // Label values escape backslash, double quote and line feed (the exposition format's rules).
    this.labels = `{ownerUID="${ownerUid.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n')}"}`;
  }

  get value(): number {
    return this.current;
  }

  update(report: ProgressReport): void {
    this.bytes = report.bytes;
    if (report.total === undefined || report.total <= 0) return;
    this.size = report.total;
    // Two decimals: plain digits for the controller's regex (no 1e-7), and 100 only when done.
    const percent = Math.min(99.99, Math.floor((report.bytes / report.total) * 10_000) / 100);
    this.setPercent(percent);
  }

  complete(): void {
    this.setPercent(100);
  }

  private setPercent(percent: number): void {
    if (percent > this.current) this.current = percent; // a counter only rises
  }

  /** The exposition: every metric from the first scrape (the percentage and bytes at 0), the size once known. */
  metrics(): string {
    const metric = (name: string, type: 'counter' | 'gauge', help: string, value: number | undefined) =>
      `# HELP ${name} ${help}\n# TYPE ${name} ${type}\n${value === undefined ? '' : `${name}${this.labels} ${value}\n`}`;
    return [
      metric(PROGRESS_METRIC, 'counter', 'The import progress in percentage', this.current),
      // An image read by random access (a qcow2 by Range) counts the source's share its written
      // extents cover, as qemu-img -p does: its reads skip holes and run ahead of the writes.
      metric(PROGRESS_BYTES_METRIC, 'gauge', 'Source bytes done so far (for an image read by random access, the share of the source the disk written so far covers)', this.bytes),
      metric(SOURCE_SIZE_METRIC, 'gauge', 'Total source bytes, when the source tells', this.size),
    ].join('\n');
  }
}
