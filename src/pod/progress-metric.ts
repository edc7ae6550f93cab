/**
 * The import progress CDI's controller scrapes (SPEC §4.4):
 * `kubevirt_cdi_import_progress_total{ownerUID="..."}`, a percentage that only rises, plus the
 * absolute byte counts as gauges (beyond CDI). A private registry keeps Node's default metrics
 * out of the exposition.
 */
import { Counter, Gauge, Registry } from 'prom-client';
import type { ProgressReport } from '../request.js';

export const PROGRESS_METRIC = 'kubevirt_cdi_import_progress_total';
export const PROGRESS_BYTES_METRIC = 'kubevirt_cdi_import_progress_bytes';
export const SOURCE_SIZE_METRIC = 'kubevirt_cdi_import_source_size_bytes';

export class ImportProgressMetric {
  readonly registry = new Registry();
  private readonly percent: Counter<'ownerUID'>;
  private readonly bytes: Gauge<'ownerUID'>;
  private readonly size: Gauge<'ownerUID'>;
  private readonly labels: { ownerUID: string };
  private current = 0;

  constructor(ownerUid: string) {
    this.labels = { ownerUID: ownerUid };
    this.percent = new Counter({
      name: PROGRESS_METRIC,
      help: 'The import progress in percentage',
      labelNames: ['ownerUID'],
      registers: [this.registry],
    });
    this.bytes = new Gauge({
      name: PROGRESS_BYTES_METRIC,
      help: 'Source bytes read so far',
      labelNames: ['ownerUID'],
      registers: [this.registry],
    });
    this.size = new Gauge({
      name: SOURCE_SIZE_METRIC,
      help: 'Total source bytes, when the source tells',
      labelNames: ['ownerUID'],
      registers: [this.registry],
    });
    // Present from the first scrape, at 0.
    this.percent.inc(this.labels, 0);
    this.bytes.set(this.labels, 0);
  }

  get value(): number {
    return this.current;
  }

  update(report: ProgressReport): void {
    this.bytes.set(this.labels, report.bytes);
    if (report.total === undefined || report.total <= 0) return;
    this.size.set(this.labels, report.total);
    // Two decimals: plain digits for the controller's regex (no 1e-7), and 100 only when done.
    const percent = Math.min(99.99, Math.floor((report.bytes / report.total) * 10_000) / 100);
    this.setPercent(percent);
  }

  complete(): void {
    this.setPercent(100);
  }

  private setPercent(percent: number): void {
    if (!(percent > this.current)) return; // a counter only rises
    this.current = percent;
    // Reset and add the whole value so the exposition shows it exactly, free of float drift.
    this.percent.reset();
    this.percent.inc(this.labels, percent);
  }

  metrics(): Promise<string> {
    return this.registry.metrics();
  }
}
