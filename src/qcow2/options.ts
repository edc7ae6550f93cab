export interface Qcow2OpenOptions {
  signal?: AbortSignal;
  /** Directory for the one-pass driver's spill file (clusters that arrive before their mapping). */
  scratchDir?: string;
}
