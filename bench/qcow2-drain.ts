// Profiling aid: drains the random-access driver without writing. node --import tsx bench/qcow2-drain.ts FILE
import { openQcow2RandomAccess } from '../src/qcow2/index.js';
import { fileReader } from '../test/qcow2/helpers.js';
const started = process.hrtime.bigint();
const reader = await fileReader(process.argv[2]!);
const image = await openQcow2RandomAccess(reader);
let bytes = 0;
for await (const e of image.extents()) if (e.data) bytes += e.length;
console.log(JSON.stringify({ seconds: Number(process.hrtime.bigint() - started) / 1e9, bytes }));
