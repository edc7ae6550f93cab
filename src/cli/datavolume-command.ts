/**
 * `cdi-importer datavolume <manifest.yaml>`: runs, locally, the imports a DataVolume or a
 * VirtualMachine's dataVolumeTemplates would make CDI run, one `<out>/<name>.img` per volume.
 */
import { readFileSync, rmdirSync } from 'node:fs';
import path from 'node:path';
import type { Command } from 'commander';
import { fileProblem, targetError, usageError } from '../errors.js';
import { makeDirectories } from '../util/make-directories.js';
import type { PlannedImport } from '../datavolume/plan-imports.js';
import { VolumePlanError } from '../datavolume/volume-plan-error.js';
import type { ConfigMapResolver } from '../datavolume/references.js';
import { checkedScratchDir, parseOverhead, refuseBlank } from './parse-options.js';
import { collect } from './transport-options.js';
import { reportFailure } from './report-failure.js';
import { runImport } from './run-import.js';

interface DatavolumeOptions {
  secret?: string[];
  configMap?: string[];
  insecure?: boolean;
  out: string;
  filesystemOverhead?: string;
  preallocation?: boolean;
  scratch?: string;
  json?: boolean;
  quiet?: boolean;
  progress?: boolean;
}


export function registerDatavolumeCommand(program: Command): void {
  program
    .command('datavolume')
    .description(
      "import every DataVolume of a manifest (a DataVolume, or a VirtualMachine's dataVolumeTemplates) to " +
        '<out>/<name>.img, sized by its requested storage; sources: http, registry, blank',
    )
    .argument('<manifest>', 'YAML file with DataVolume / VirtualMachine documents')
    .option('--secret <file>', "Secret manifest(s) for the sources' secretRef (base64 accessKeyId/secretKey; repeatable); a single one also serves an empty secretRef, unless the URL carries its own credentials", collect)
    .option('--config-map <file|dir>', "ConfigMap manifest, or a directory of PEM files, for the sources' certConfigMap (repeatable)", collect)
    .option('--insecure', "do not verify TLS certificates, and allow registries that serve plain http (what CDI's insecureRegistries allows)")
    .option('--out <dir>', 'directory for the images (created if missing)', '.')
    .option('--filesystem-overhead <fraction>', 'space reserved as on a filesystem PVC (default 0: each image is the requested size, rounded down to whole MiB as CDI does)')
    .option('--preallocation', 'allocate each image fully instead of writing it sparse')
    .option('--scratch <dir>', 'scratch directory for qcow2 clusters that arrive before their mapping (default: --out; CDI gives such volumes a scratch PVC)')
    .option('--json', 'print one JSON result object per volume on stdout')
    .option('-q, --quiet', 'no progress bar and no summary lines')
    .option('--progress', 'show the progress bar even when stderr is not a terminal')
    .action(async (manifest: string, options: DatavolumeOptions) => {
      process.exitCode = await datavolumeAction(manifest, options);
    });
}

async function datavolumeAction(manifest: string, options: DatavolumeOptions): Promise<number> {
  let configMaps: ConfigMapResolver | undefined;
  try {
    // Loaded here, not at startup: YAML parsing is the slowest module to load, and only this command needs it.
    const [{ dataVolumesFromManifest }, { planImports }, { ConfigMapResolver, SecretResolver }] = await Promise.all([
      import('../datavolume/manifest.js'),
      import('../datavolume/plan-imports.js'),
      import('../datavolume/references.js'),
    ]);
    refuseBlank(manifest, 'the manifest', 'give a YAML file');
    refuseBlank(options.out, '--out', 'give the directory for the images (. for this one)');
    const filesystemOverhead = options.filesystemOverhead !== undefined ? parseOverhead(options.filesystemOverhead) : 0;
    let text: string;
    try {
      text = readFileSync(manifest, 'utf8');
    } catch (err) {
      throw usageError(`cannot read manifest ${manifest}: ${fileProblem(err)}`);
    }
    const entries = dataVolumesFromManifest(text, manifest);
    configMaps = new ConfigMapResolver(options.configMap ?? []);
    const plans = planImports(entries, {
      outDir: options.out,
      secrets: new SecretResolver(options.secret ?? []),
      configMaps,
      filesystemOverhead,
      preallocation: options.preallocation === true,
      scratchDir: options.scratch ?? options.out,
      insecure: options.insecure === true,
    });
    if (options.scratch !== undefined) await checkedScratchDir(options.scratch);
    for (const warning of plans.flatMap((plan) => plan.warnings)) process.stderr.write(`cdi-importer: warning: ${warning}\n`);
    const madeOut = outputDirectory(options.out);
    const code = await importAll(plans, options);
    // A run that failed (or was cancelled) before its first volume leaves no empty --out it made.
    if (code !== 0 && madeOut !== undefined) rmEmptyDirectories(madeOut, options.out);
    return code;
  } catch (err) {
    return reportFailure(err, options.json === true, undefined, err instanceof VolumePlanError ? { name: err.volume } : undefined);
  } finally {
    configMaps?.cleanup();
  }
}

/** One after the other (they share the disk and the network); the first failure stops the run. */
async function importAll(plans: PlannedImport[], options: DatavolumeOptions): Promise<number> {
  for (const [index, plan] of plans.entries()) {
    if (!options.quiet && !options.json) process.stderr.write(`${plan.origin}: importing\n`);
    const directory = plan.request.target.kind === 'directory' ? plan.request.target.path : undefined;
    // The first directory mkdir made, if any: a failed import removes it again (when still empty).
    let made: string | undefined;
    let code: number;
    try {
      made = directory !== undefined ? outputDirectory(directory) : undefined;
      code = await runImport(plan.request, { ...options, command: 'datavolume', jsonFields: { name: plan.name } });
    } catch (err) {
      // The volume's directory could not be made: this volume's failure, said as any other's.
      code = reportFailure(err, options.json === true, undefined, { name: plan.name });
    }
    if (code !== 0 && made !== undefined) rmEmptyDirectories(made, directory!);
    if (code !== 0) {
      process.stderr.write(`cdi-importer: ${plan.origin} failed; ${afterFailure(index, plans.map((p) => p.name))}\n`);
      return code;
    }
  }
  return 0;
}

/** --out, or an archive volume's directory in it, made if missing: a failure is the destination's, in words. */
function outputDirectory(dir: string): string | undefined {
  try {
    return makeDirectories(dir);
  } catch (err) {
    const problem = (err as NodeJS.ErrnoException).code === 'EEXIST' ? 'a file by that name is in the way' : fileProblem(err);
    throw targetError(`cannot create the output directory ${dir}: ${problem}`, err);
  }
}

/** Removes `innermost` and its parents up to `outermost` (mkdir's first new directory) while they are empty. */
function rmEmptyDirectories(outermost: string, innermost: string): void {
  for (let dir = path.resolve(innermost); ; dir = path.dirname(dir)) {
    try {
      rmdirSync(dir);
    } catch {
      return; // not empty (or gone): leave it and its parents
    }
    if (dir === path.resolve(outermost)) return;
  }
}

/** What a failure of the volume at `index` (imported in order) leaves done and not done, by name. */
function afterFailure(index: number, names: string[]): string {
  if (names.length === 1) return 'nothing imported';
  const done = names.slice(0, index);
  const skipped = names.slice(index + 1);
  return [done.length > 0 ? `imported before it: ${done.join(', ')}` : '', skipped.length > 0 ? `not imported: ${skipped.join(', ')}` : '']
    .filter(Boolean)
    .join('; ');
}
