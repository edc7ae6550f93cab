// Writes the qcow2 benchmark's raw source: 1 MiB regions, 2 of every 5 holding data (one random,
// one text-like), the rest zeros — about 40 % data, like a real guest disk.
import { closeSync, ftruncateSync, openSync, writeSync } from 'node:fs';
import { randomBytes } from 'node:crypto';

const [file, sizeText] = process.argv.slice(2);
if (!file || !sizeText) throw new Error('usage: qcow2-make-image.ts FILE BYTES');
const size = Number(sizeText);
const REGION = 1 << 20;
const words = 'boot kernel initrd grub partition inode journal ext4 systemd unit service sshd config'.split(' ');
const fd = openSync(file, 'w');
let state = 12345;
for (let offset = 0, index = 0; offset < size; offset += REGION, index++) {
  const length = Math.min(REGION, size - offset);
  if (index % 5 === 0) writeSync(fd, randomBytes(length), 0, length, offset);
  else if (index % 5 === 2) {
    const parts: string[] = [];
    let used = 0;
    while (used < length) {
      state = (state * 1103515245 + 12345) >>> 0;
      const word = `${words[state % words.length]}${state % 11 === 0 ? '\n' : ' '}`;
      parts.push(word);
      used += word.length;
    }
    writeSync(fd, Buffer.from(parts.join('')).subarray(0, length), 0, length, offset);
  }
}
ftruncateSync(fd, size);
closeSync(fd);
