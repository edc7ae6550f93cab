// The one-pass driver's wants for host bytes still to come, by the host cluster they start in (one-pass.ts).
import type { Want } from './want.js';

const NONE: readonly Want[] = [];

/**
 * Wants waiting for their host cluster. An image whose L2 tables come before its data has one per
 * mapped cluster, all waiting at once, so the usual one (a whole data cluster) is kept as just its
 * guest offset, and made a Want again only when its cluster arrives: a Want object and its boxed
 * numbers took ~150 bytes and lived long enough to reach V8's old space, where they piled up as
 * garbage after use (1 040 000 waiting 512-byte clusters: 122 MB live, a 627-696 MB peak).
 */
export class WaitingWants {
  /** A guest offset (a whole data cluster, see above), one Want, or several. */
  private readonly byCluster = new Map<number, number | Want | Want[]>();
  /** Wants waiting, all kinds. */
  count = 0;

  constructor(private readonly clusterSize: number) {}

  /** The wants waiting for host cluster `index` (none: an empty list). */
  at(index: number): readonly Want[] {
    return this.unpack(index, this.byCluster.get(index));
  }

  add(index: number, want: Want): void {
    this.count++;
    const there = this.byCluster.get(index);
    if (there === undefined) {
      const whole = want.kind === 'data' && want.start === index * this.clusterSize && want.length === this.clusterSize && !want.buf;
      this.byCluster.set(index, whole ? want.guestOffset! : want);
    } else if (Array.isArray(there)) {
      there.push(want);
    } else {
      this.byCluster.set(index, [...this.unpack(index, there), want]);
    }
  }

  /** Moves the wants waiting for host cluster `index` to the end of `into` (once per host cluster: no list made for one). */
  takeInto(index: number, into: Want[]): void {
    const there = this.byCluster.get(index);
    if (there === undefined) return;
    this.byCluster.delete(index);
    if (Array.isArray(there)) {
      this.count -= there.length;
      for (const want of there) into.push(want);
    } else {
      this.count--;
      into.push(typeof there === 'number' ? this.wholeDataCluster(index, there) : there);
    }
  }

  /** Removes and returns every want still waiting. */
  takeAll(): Want[] {
    const wants = [...this.byCluster].flatMap(([index, there]) => this.unpack(index, there));
    this.byCluster.clear();
    this.count = 0;
    return wants;
  }

  private unpack(index: number, there: number | Want | Want[] | undefined): readonly Want[] {
    if (there === undefined) return NONE;
    if (Array.isArray(there)) return there;
    return [typeof there === 'number' ? this.wholeDataCluster(index, there) : there];
  }

  private wholeDataCluster(index: number, guestOffset: number): Want {
    const start = index * this.clusterSize;
    return { start, end: start + this.clusterSize, kind: 'data', guestOffset, length: this.clusterSize };
  }
}
