/**
 * Finds the DataVolumes in a manifest: a DataVolume (`cdi.kubevirt.io/v1alpha1` or `v1beta1`), a
 * VirtualMachine's `spec.dataVolumeTemplates`, or a List of those; several YAML documents may
 * share one file. Only the shape is read here; meaning is in plan-imports.ts.
 */
import { parseAllDocuments } from 'yaml';
import { usageError } from '../errors.js';

export interface DataVolumeEntry {
  name: string;
  /** For messages: which document and which field it came from. */
  origin: string;
  spec: Record<string, unknown>;
}

export type YamlObject = Record<string, unknown>;

export function isObject(value: unknown): value is YamlObject {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** All documents of a YAML file as plain values; a syntax error names the file and line. */
export function parseYamlDocuments(text: string, file: string): unknown[] {
  return parseAllDocuments(text).map((doc) => {
    const error = doc.errors[0];
    if (error) {
      const line = error.linePos?.[0]?.line;
      throw usageError(`${file}${line ? `:${line}` : ''} is not valid YAML: ${error.message.split('\n')[0]!.replace(/:\s*$/, '')}`);
    }
    try {
      return doc.toJS() as unknown;
    } catch (err) {
      // Resolving aliases can fail too ("Excessive alias count…", a billion-laughs document).
      throw usageError(`${file} is not valid YAML: ${(err as Error).message}`);
    }
  });
}

const DATAVOLUME_API = /^cdi\.kubevirt\.io\/v1(alpha1|beta1)$/;

function entryFrom(metadata: unknown, spec: unknown, origin: string, file: string): DataVolumeEntry {
  const name = isObject(metadata) ? metadata.name : undefined;
  if (typeof name !== 'string' || name === '') throw usageError(`${file}: ${origin} has no metadata.name`);
  if (!isObject(spec)) throw usageError(`${file}: ${origin} "${name}" has no spec`);
  return { name, origin: `${origin} "${name}"`, spec };
}

function collect(doc: unknown, file: string, where: string, out: DataVolumeEntry[]): void {
  if (doc === null || doc === undefined) return; // an empty document, e.g. after a trailing ---
  if (!isObject(doc)) throw usageError(`${file}: ${where} is not a Kubernetes object`);
  const kind = doc.kind;
  if (kind === 'DataVolume') {
    if (typeof doc.apiVersion !== 'string' || !DATAVOLUME_API.test(doc.apiVersion)) {
      if (doc.apiVersion === undefined) throw usageError(`${file}: DataVolume has no apiVersion (expected cdi.kubevirt.io/v1beta1 or v1alpha1)`);
      throw usageError(`${file}: DataVolume apiVersion "${String(doc.apiVersion)}" is not cdi.kubevirt.io/v1alpha1 or v1beta1`);
    }
    out.push(entryFrom(doc.metadata, doc.spec, 'DataVolume', file));
  } else if (kind === 'VirtualMachine') {
    const vmName = isObject(doc.metadata) ? String(doc.metadata.name ?? '') : '';
    const templates = isObject(doc.spec) ? doc.spec.dataVolumeTemplates : undefined;
    if (templates === undefined) return; // a VM without DataVolumes imports nothing
    if (!Array.isArray(templates)) throw usageError(`${file}: VirtualMachine "${vmName}" spec.dataVolumeTemplates is not a list`);
    templates.forEach((template: unknown, i) => {
      const origin = `VirtualMachine "${vmName}" dataVolumeTemplates[${i}]`;
      if (!isObject(template)) throw usageError(`${file}: ${origin} is not an object`);
      out.push(entryFrom(template.metadata, template.spec, origin, file));
    });
  } else if (typeof kind === 'string' && kind.endsWith('List')) {
    const items = doc.items;
    if (Array.isArray(items)) items.forEach((item, i) => collect(item, file, `${where} items[${i}]`, out));
  }
  // Other kinds (a Secret, a ConfigMap, a Service next to the VM) are not ours to import.
}

export function dataVolumesFromManifest(text: string, file: string): DataVolumeEntry[] {
  const out: DataVolumeEntry[] = [];
  parseYamlDocuments(text, file).forEach((doc, i) => collect(doc, file, `document ${i + 1}`, out));
  if (out.length === 0) {
    throw usageError(`${file} holds no DataVolume and no VirtualMachine with dataVolumeTemplates`);
  }
  const seen = new Set<string>();
  for (const entry of out) {
    if (seen.has(entry.name)) throw usageError(`${file}: two DataVolumes are named "${entry.name}"`);
    seen.add(entry.name);
  }
  return out;
}
