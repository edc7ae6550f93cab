/**
 * Host byte ranges that went by as all zeros while a table that may map them was still to come:
 * kept as ranges (no scratch), in ascending order, touching ranges joined.
 */
export class PassedZeroRanges {
  private readonly starts: number[] = [];
  private readonly ends: number[] = [];

  /** Adds [start, end); ranges arrive in ascending order. */
  add(start: number, end: number): void {
    const last = this.ends.length - 1;
    if (last >= 0 && this.ends[last] === start) this.ends[last] = end;
    else {
      this.starts.push(start);
      this.ends.push(end);
    }
  }

  /** The end of the range that holds `at`, or `at` when none does. */
  endAt(at: number): number {
    let lo = 0;
    let hi = this.starts.length - 1;
    while (lo <= hi) {
      const mid = (lo + hi) >> 1;
      if (this.starts[mid]! > at) hi = mid - 1;
      else if (this.ends[mid]! <= at) lo = mid + 1;
      else return this.ends[mid]!;
    }
    return at;
  }
}
