/**
 * Image config env vars → labels, as CDI's envsToLabels does: a variable whose name contains
 * `KUBEVIRT_IO_` becomes `<prefix parts joined by .>.kubevirt.io/<rest with _ as ->`, lower-cased:
 * INSTANCETYPE_KUBEVIRT_IO_DEFAULT_INSTANCETYPE=u1.small → instancetype.kubevirt.io/default-instancetype: u1.small.
 */
const ENV_MARK = 'KUBEVIRT_IO_';

export function envToLabel(name: string): string {
  const at = name.indexOf(ENV_MARK);
  const before = name.slice(0, at).replace(/_$/, '');
  const after = name.slice(at + ENV_MARK.length);
  const prefix = before ? `${before.split('_').join('.')}.` : '';
  return `${prefix}kubevirt.io/${after.split('_').join('-')}`.toLowerCase();
}

export function labelsFromEnv(env: readonly unknown[] | undefined): Record<string, string> {
  const labels: Record<string, string> = {};
  for (const entry of env ?? []) {
    if (typeof entry !== 'string') continue;
    const eq = entry.indexOf('=');
    if (eq < 0) continue;
    const name = entry.slice(0, eq);
    if (!name.includes(ENV_MARK)) continue;
    labels[envToLabel(name)] = entry.slice(eq + 1);
  }
  return labels;
}
