// Writes the benchmark's disk-like raw image (random, text-like and zero regions).
import { makeDiskLikeImage } from '../test/support/disk-images.js';

const [file, size] = process.argv.slice(2);
if (!file || !size) throw new Error('usage: make-disk-image.ts FILE BYTES');
makeDiskLikeImage(file, Number(size));
