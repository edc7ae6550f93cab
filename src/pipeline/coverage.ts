/**
 * The ranges of the disk that extents have covered, merged. Used to zero what no extent wrote on
 * targets whose old contents are unknown (block devices). Cheap for in-order extents (appends).
 */
export class Coverage {
  private readonly starts: number[] = [];
  private readonly ends: number[] = [];

  add(start: number, end: number): void {
    if (end <= start) return;
    const last = this.ends.length - 1;
    if (last >= 0 && this.starts[last]! <= start) {
      if (start <= this.ends[last]!) {
        this.ends[last] = Math.max(this.ends[last]!, end);
        return;
      }
      this.starts.push(start);
      this.ends.push(end);
      return;
    }
    // Out of order: insert, then merge neighbours.
    let index = this.starts.findIndex((s) => s > start);
    if (index < 0) index = this.starts.length;
    this.starts.splice(index, 0, start);
    this.ends.splice(index, 0, end);
    this.mergeAround(Math.max(0, index - 1));
  }

  private mergeAround(from: number): void {
    let i = from;
    while (i < this.starts.length - 1) {
      if (this.starts[i + 1]! <= this.ends[i]!) {
        this.ends[i] = Math.max(this.ends[i]!, this.ends[i + 1]!);
        this.starts.splice(i + 1, 1);
        this.ends.splice(i + 1, 1);
      } else if (i > from) {
        return;
      } else {
        i++;
      }
    }
  }

  /** The ranges inside [0, size) that were not covered. */
  gaps(size: number): Array<{ offset: number; length: number }> {
    const result: Array<{ offset: number; length: number }> = [];
    let position = 0;
    for (let i = 0; i < this.starts.length && position < size; i++) {
      const start = Math.min(this.starts[i]!, size);
      if (start > position) result.push({ offset: position, length: start - position });
      position = Math.max(position, this.ends[i]!);
    }
    if (position < size) result.push({ offset: position, length: size - position });
    return result;
  }
}
