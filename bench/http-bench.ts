/**
 * HTTP benchmarks (issue 4), medians of RUNS runs each, against nginx on 127.0.0.1:
 *   1. raw.gz → file:        cdi-importer   vs  curl -s URL | gzip -dc > file                 (target ≤ 1.0)
 *   2. qcow2 (Range) → raw:  cdi-importer   vs  qemu-img convert of a local copy              (target ≤ 1.2)
 *   3. qcow2.xz → raw:       cdi-importer   vs  curl | xz -dc > scratch; qemu-img convert     (target ≤ 0.6, 0 scratch bytes)
 * Runs `bin/cdi-importer` (build first: npm run build). Prints one table and the ratios.
 *
 * Environment: BENCH_RUNS or RUNS (default 3), SIZE_MIB (default 512: at 64 MiB Node's start is most of a qcow2 run);
 *   BENCH_MAIN=path/cdi-importer  the launcher to measure (default bin/cdi-importer);
 *   BENCH_BASELINE=path/cdi-importer  another build (e.g. a copy of bin/ and dist/ from before a change), run alternately
 *                                 with ours on the same inputs, so "before" and "after" share one run;
 *   BENCH_IMAGES_DIR=dir          make the images there once and reuse them (xz of a 1 GiB disk takes minutes);
 *   BENCH_OUT_DIR=/dev/shm        where outputs (and the CDI path's scratch) go: tmpfs takes this disk's write stalls out;
 *   BENCH_CASES=qcow2,xz          only the cases whose name contains one of these words.
 */
import { spawn, spawnSync } from 'node:child_process';
import { once } from 'node:events';
import { existsSync, mkdtempSync, rmSync, statSync } from 'node:fs';
import path from 'node:path';
import { repoRoot } from '../test/support/cli.js';
import { freePort } from '../test/support/free-port.js';
import { startNginx } from '../test/support/nginx.js';
import { makeTempDir, run, sh } from '../test/support/tools.js';

// BENCH_RUNS as the other benchmark scripts read it; RUNS as this one always has.
const RUNS = Number(process.env.BENCH_RUNS ?? process.env.RUNS ?? 3);
const SIZE_MIB = Number(process.env.SIZE_MIB ?? 512);
// The installed launcher (bin/cdi-importer), which also sizes the thread pool as users get it.
const main = process.env.BENCH_MAIN ?? path.join(repoRoot, 'bin', 'cdi-importer');
const baseline = process.env.BENCH_BASELINE;
const only = process.env.BENCH_CASES?.split(',').filter(Boolean);

function timed(line: string): { seconds: number; stdout: string } {
  const start = process.hrtime.bigint();
  const result = spawnSync('bash', ['-o', 'pipefail', '-c', line], { encoding: 'utf8', maxBuffer: 16 << 20 });
  const seconds = Number(process.hrtime.bigint() - start) / 1e9;
  if (result.status !== 0) throw new Error(`${line} failed (${result.status}): ${result.stderr}`);
  return { seconds, stdout: result.stdout };
}

// Node reads the file NODE_EXTRA_CA_CERTS names at every start, before any of our code runs. This
// machine sets it to the whole system bundle, which adds ~30 ms to each run; the container image
// sets nothing of the kind, so the runs below go without it (the last context row shows the cost).
const machineExtraCaCerts = process.env.NODE_EXTRA_CA_CERTS;
delete process.env.NODE_EXTRA_CA_CERTS;

const median = (values: number[]) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)]!;

const dir = makeTempDir('cdi-bench-http-');
const www = process.env.BENCH_IMAGES_DIR ? path.join(process.env.BENCH_IMAGES_DIR, `http-${SIZE_MIB}M`) : dir.join('www');
if (!existsSync(path.join(www, 'disk.qcow2.xz'))) {
  sh(`mkdir -p ${www}`);
  // A disk that looks like one: random data (binaries), compressible text, and zeros.
  const quarter = Math.max(1, Math.floor(SIZE_MIB / 4));
  sh(`truncate -s ${SIZE_MIB}M ${www}/disk.raw`);
  sh(`head -c ${quarter}M /dev/urandom | dd of=${www}/disk.raw conv=notrunc status=none`);
  sh(`head -c ${Math.floor((quarter * 3) / 4)}M /dev/urandom | base64 -w 100 | dd of=${www}/disk.raw bs=1M seek=${quarter} conv=notrunc status=none`);
  run('qemu-img', ['convert', '-f', 'raw', '-O', 'qcow2', `${www}/disk.raw`, `${www}/disk.qcow2`]);
  // The .xz last and under a temporary name: its presence says the set is complete.
  sh(`gzip -kf -6 ${www}/disk.raw && xz -T2 -6 -c ${www}/disk.qcow2 > ${www}/disk.qcow2.xz.tmp && mv ${www}/disk.qcow2.xz.tmp ${www}/disk.qcow2.xz`);
}
const expected = sh(`sha256sum < ${www}/disk.raw`).split(' ')[0];

const nginx = await startNginx({ root: www });
// The same nginx 20 ms of round trip away (bench/delay-proxy.ts), for the rows that show what a
// real network's latency does to each way of downloading.
const RTT_MS = 20;
const farPort = await freePort();
const delayProxy = spawn(process.execPath, ['--import', 'tsx', path.join(repoRoot, 'bench', 'delay-proxy.ts'), String(farPort), new URL(nginx.http).port, String(RTT_MS / 2)], {
  stdio: ['ignore', 'pipe', 'inherit'],
});
await once(delayProxy.stdout!, 'data');
const far = `http://127.0.0.1:${farPort}/`;
const outDir = process.env.BENCH_OUT_DIR ? mkdtempSync(path.join(process.env.BENCH_OUT_DIR, 'cdi-bench-http-')) : dir.path;
const out = path.join(outDir, 'out.img');
const scratch = path.join(outDir, 'scratch.qcow2');
const check = () => {
  const got = sh(`sha256sum < ${out}`).split(' ')[0];
  if (got !== expected) throw new Error(`output differs from the source disk (${got} vs ${expected})`);
};

interface Case {
  name: string;
  ours: string;
  theirs: string;
  /** Ratio to meet; none for lines that only give context. */
  target?: number;
  /** Compare the output with the source disk (default true). */
  verify?: boolean;
}
const cases: Case[] = [
  {
    name: 'raw.gz → file',
    ours: `node ${main} import ${nginx.http}disk.raw.gz -o ${out} --no-fsync --quiet`,
    theirs: `curl -s ${nginx.http}disk.raw.gz | gzip -dc > ${out}`,
    target: 1.0,
  },
  {
    name: 'qcow2 (Range) → raw',
    ours: `node ${main} import ${nginx.http}disk.qcow2 -o ${out} --no-fsync --quiet`,
    theirs: `qemu-img convert -f qcow2 -O raw ${www}/disk.qcow2 ${out}`,
    target: 1.2,
  },
  {
    name: 'qcow2.xz → raw',
    ours: `node ${main} import ${nginx.http}disk.qcow2.xz -o ${out} --no-fsync --quiet`,
    theirs: `curl -s ${nginx.http}disk.qcow2.xz | xz -dc > ${scratch} && qemu-img convert -f qcow2 -O raw ${scratch} ${out} && rm -f ${scratch}`,
    target: 0.6,
  },
  // The rows above skip the final fsync on both sides (qemu-img, curl and the decompressors do not
  // fsync). `import` fsyncs by default, as CDI does, so a disk survives a node crash: these rows
  // compare that with the same references plus `sync FILE` (one fsync of the output).
  {
    name: 'raw.gz → file +sync',
    ours: `node ${main} import ${nginx.http}disk.raw.gz -o ${out} --quiet`,
    theirs: `curl -s ${nginx.http}disk.raw.gz | gzip -dc > ${out} && sync ${out}`,
    target: 1.0,
  },
  {
    name: 'qcow2 (Range) → raw +sync',
    ours: `node ${main} import ${nginx.http}disk.qcow2 -o ${out} --quiet`,
    theirs: `qemu-img convert -f qcow2 -O raw ${www}/disk.qcow2 ${out} && sync ${out}`,
    target: 1.2,
  },
  {
    name: 'qcow2.xz → raw +sync',
    ours: `node ${main} import ${nginx.http}disk.qcow2.xz -o ${out} --quiet`,
    theirs: `curl -s ${nginx.http}disk.qcow2.xz | xz -dc > ${scratch} && qemu-img convert -f qcow2 -O raw ${scratch} ${out} && sync ${out} && rm -f ${scratch}`,
    target: 0.6,
  },
  // Context: what the HTTP transport costs (our import of the same files from local disk),
  // and the Range path against downloading a local copy first.
  { name: 'raw.gz http vs local', ours: `node ${main} import ${nginx.http}disk.raw.gz -o ${out} --quiet`, theirs: `node ${main} import ${www}/disk.raw.gz -o ${out} --quiet` },
  { name: 'qcow2 http vs local', ours: `node ${main} import ${nginx.http}disk.qcow2 -o ${out} --quiet`, theirs: `node ${main} import ${www}/disk.qcow2 -o ${out} --quiet` },
  { name: 'qcow2.xz http vs local', ours: `node ${main} import ${nginx.http}disk.qcow2.xz -o ${out} --quiet`, theirs: `node ${main} import ${www}/disk.qcow2.xz -o ${out} --quiet` },
  {
    name: 'qcow2 vs curl+qemu-img',
    ours: `node ${main} import ${nginx.http}disk.qcow2 -o ${out} --no-fsync --quiet`,
    theirs: `curl -s -o ${scratch} ${nginx.http}disk.qcow2 && qemu-img convert -f qcow2 -O raw ${scratch} ${out} && rm -f ${scratch}`,
  },
  // The floor of any import over HTTP: only downloading the qcow2 (curl to /dev/null, no writing)
  // against qemu-img's whole conversion of a local copy. Above 1.2, the Range target is out of reach.
  { name: 'floor: curl download only vs qemu-img', ours: `curl -s -o /dev/null ${nginx.http}disk.qcow2`, theirs: `qemu-img convert -f qcow2 -O raw ${www}/disk.qcow2 ${out}`, verify: false },
  // The same with three connections at once, each fetching a third (what parallel Range reads can do).
  { name: 'floor: 3 parallel curl ranges vs qemu-img', ours: parallelCurl(`${nginx.http}disk.qcow2`, statSync(`${www}/disk.qcow2`).size, 3), theirs: `qemu-img convert -f qcow2 -O raw ${www}/disk.qcow2 ${out}`, verify: false },
  // Context: a server 20 ms away. CDI's path for raw.gz is one streaming GET into the decompressor
  // (curl | gzip), for qcow2 a download to scratch and then qemu-img convert.
  { name: `raw.gz ${RTT_MS} ms away vs curl | gzip`, ours: `node ${main} import ${far}disk.raw.gz -o ${out} --no-fsync --quiet`, theirs: `curl -s ${far}disk.raw.gz | gzip -dc > ${out}` },
  {
    name: `qcow2 ${RTT_MS} ms away vs curl+qemu-img`,
    ours: `node ${main} import ${far}disk.qcow2 -o ${out} --no-fsync --quiet`,
    theirs: `curl -s -o ${scratch} ${far}disk.qcow2 && qemu-img convert -f qcow2 -O raw ${scratch} ${out} && rm -f ${scratch}`,
  },
  { name: 'node start (--help)', ours: `node ${main} --help > /dev/null`, theirs: 'true', verify: false },
];
if (machineExtraCaCerts) {
  cases.push({ name: "node start: this machine's NODE_EXTRA_CA_CERTS vs none", ours: `NODE_EXTRA_CA_CERTS=${machineExtraCaCerts} node -e 0`, theirs: 'node -e 0', verify: false });
}

/** A shell line that downloads `url` (`size` bytes) to /dev/null as `parts` Range requests at once. */
function parallelCurl(url: string, size: number, parts: number): string {
  const step = Math.ceil(size / parts);
  const ranges = Array.from({ length: parts }, (_, i) => `${i * step}-${Math.min(size, (i + 1) * step) - 1}`);
  return `${ranges.map((range) => `curl -s -r ${range} -o /dev/null ${url} &`).join(' ')} wait`;
}

const rows: string[] = [];
let failed = false;
try {
  for (const c of cases) {
    if (only && !only.some((word) => c.name.includes(word))) continue;
    const ours: number[] = [];
    const theirs: number[] = [];
    const before: number[] = [];
    let oursOk = true;
    const runTheirs = () => {
      rmSync(out, { force: true });
      theirs.push(timed(c.theirs).seconds);
      if (c.verify !== false) check();
    };
    const runBaseline = () => {
      if (!baseline || !c.ours.includes(main)) return;
      rmSync(out, { force: true });
      before.push(timed(c.ours.split(main).join(baseline)).seconds);
      if (c.verify !== false) check();
    };
    for (let i = 0; i < RUNS; i++) {
      // Who goes first alternates: on a busy machine the first command after another workload is
      // often the slow one, and a fixed order would put that on one side every time.
      if (i % 2 === 1) {
        runTheirs();
        runBaseline();
      }
      rmSync(out, { force: true });
      try {
        ours.push(timed(c.ours).seconds);
        if (c.verify !== false) check();
      } catch (err) {
        oursOk = false;
        rows.push(`${c.name}: cdi-importer failed: ${String((err as Error).message).split('\n')[0]}`);
        break;
      }
      if (i % 2 === 0) {
        runBaseline();
        runTheirs();
      }
    }
    if (!oursOk) {
      failed = true;
      continue;
    }
    const ratio = median(ours) / median(theirs);
    // Each run's own ratio (ours against the reference run next to it, on the machine as it was
    // then); the verdict takes the larger of the two, as bench/lib.sh's compare does.
    const paired = median(ours.map((seconds, i) => seconds / theirs[i]!));
    const missed = c.target !== undefined && Math.max(ratio, paired) > c.target;
    if (missed) failed = true;
    const goal = c.target !== undefined ? ` (target ≤ ${c.target})${missed ? '  MISSED' : ''}` : ' (context)';
    const then = before.length ? `  | baseline build ${median(before).toFixed(3)} s, ratio ${(median(before) / median(theirs)).toFixed(2)}` : '';
    rows.push(`${c.name.padEnd(26)} ours ${median(ours).toFixed(3)} s  reference ${median(theirs).toFixed(3)} s  ratio ${ratio.toFixed(2)}, run by run ${paired.toFixed(2)}${goal}${then}`);
  }
  // Scratch use of our qcow2.xz import, from its JSON result.
  if (!only || only.some((word) => 'qcow2.xz'.includes(word))) {
    try {
      rmSync(out, { force: true });
      const json = JSON.parse(timed(`node ${main} import ${nginx.http}disk.qcow2.xz -o ${out} --quiet --json`).stdout) as { scratchBytesUsed?: number };
      rows.push(`qcow2.xz scratch bytes used by cdi-importer: ${json.scratchBytesUsed}; by the CDI path: ${statSync(`${www}/disk.qcow2`).size} (the whole qcow2)`);
    } catch (err) {
      rows.push(`qcow2.xz scratch check failed: ${String((err as Error).message).split('\n')[0]}`);
    }
  }
} finally {
  delayProxy.kill();
  await nginx.stop();
  dir.remove();
  if (outDir !== dir.path) rmSync(outDir, { recursive: true, force: true });
}
console.log(
  `HTTP benchmarks: ${SIZE_MIB} MiB disk, median of ${RUNS} runs, nginx on 127.0.0.1, output in ${outDir}${baseline ? `; baseline build ${baseline}` : ''}`,
);
for (const row of rows) console.log(row);
process.exitCode = failed ? 1 : 0;
