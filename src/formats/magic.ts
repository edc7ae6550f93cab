/** Format detection by magic bytes (SPEC §3). Extensions are never consulted. */
import { isTarHeaderBlock } from './tar/tar-prepass.js';

export type CompressionFormat = 'gzip' | 'xz' | 'zstd';
export type DiskFormat = 'qcow2' | 'tar' | UnsupportedDiskFormat | 'iso' | 'raw';
/** Disk formats qemu-img reads that we recognise but do not convert. */
export type UnsupportedDiskFormat = 'vmdk' | 'vdi' | 'vhd' | 'vhdx' | 'qed' | 'parallels' | 'luks' | 'bochs' | 'cloop';
/** Not an image at all: what a login page, an error page or a wrong link sends with a 200. */
export type PageFormat = 'html';
/** Compression we recognise but do not decode: LZMA-alone (.lzma, `xz --format=lzma`), bzip2, LZ4 (neither does CDI). */
const UNSUPPORTED_COMPRESSIONS = ['lzma', 'bzip2', 'lz4'] as const;
export type UnsupportedCompression = (typeof UNSUPPORTED_COMPRESSIONS)[number];
export type DetectedFormat = CompressionFormat | DiskFormat | PageFormat | UnsupportedCompression;

/** Bytes needed to see every magic (ISO's CD001 sits at 32769). */
export const DETECTION_BYTES = 32774;

const USTAR_MAGIC = Buffer.from('ustar', 'latin1');

interface Magic {
  format: DetectedFormat;
  offset: number;
  bytes: Buffer;
}

const MAGICS: Magic[] = [
  { format: 'gzip', offset: 0, bytes: Buffer.from([0x1f, 0x8b]) },
  { format: 'xz', offset: 0, bytes: Buffer.from([0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00]) },
  { format: 'zstd', offset: 0, bytes: Buffer.from([0x28, 0xb5, 0x2f, 0xfd]) },
  { format: 'qcow2', offset: 0, bytes: Buffer.from('QFI\xfb', 'latin1') },
  { format: 'vmdk', offset: 0, bytes: Buffer.from('KDMV', 'latin1') },
  { format: 'vhdx', offset: 0, bytes: Buffer.from('vhdxfile', 'latin1') },
  { format: 'vhd', offset: 0, bytes: Buffer.from('conectix', 'latin1') },
  { format: 'vdi', offset: 64, bytes: Buffer.from([0x7f, 0x10, 0xda, 0xbe]) },
  { format: 'vmdk', offset: 0, bytes: Buffer.from('COWD', 'latin1') },
  { format: 'qed', offset: 0, bytes: Buffer.from('QED\0', 'latin1') },
  { format: 'cloop', offset: 0, bytes: Buffer.from('#!/bin/sh\n#V2.0 Format\nmodprobe cloop file=$0 && mount -r -t iso9660 /dev/cloop $1\n', 'latin1') },
  { format: 'tar', offset: 257, bytes: USTAR_MAGIC },
  { format: 'iso', offset: 32769, bytes: Buffer.from('CD001', 'latin1') },
];

export function detectFormat(head: Buffer): DetectedFormat {
  // A tar's first header begins with its first member's name: a member named "QED" or "KDMV…"
  // (or "\x1f\x8b…") is not that format. The ustar magic with a checksum that adds up is a tar.
  if (head.subarray(257, 262).equals(USTAR_MAGIC) && isTarHeaderBlock(head.subarray(0, 512))) return 'tar';
  if (startsWithZstdSkippableFrame(head)) return 'zstd';
  for (const magic of MAGICS) {
    const end = magic.offset + magic.bytes.length;
    if (head.length >= end && head.subarray(magic.offset, end).equals(magic.bytes)) return magic.format;
  }
  const probed = probedLikeQemu(head);
  if (probed) return probed;
  if (looksLikeLzmaAlone(head)) return 'lzma';
  if (looksLikeBzip2(head)) return 'bzip2';
  if (looksLikeLz4(head)) return 'lz4';
  return looksLikeHtml(head) ? 'html' : 'raw';
}

/**
 * The rest of what qemu-img recognises, checked as its block drivers' probe functions check them
 * (qemu 7.2): a header that only starts like one is raw to qemu-img, and so to us. As raw, each of
 * these would be a copy of the container rather than of the disk inside.
 */
function probedLikeQemu(head: Buffer): UnsupportedDiskFormat | undefined {
  const text = (start: number, end: number) => head.toString('latin1', start, end);
  const cString = (start: number, size: number) => text(start, start + size).split('\0')[0];
  // parallels_probe: either magic, then version 2.
  if (head.length >= 64 && ['WithoutFreeSpace', 'WithouFreSpacExt'].includes(text(0, 16)) && head.readUInt32LE(16) === 2) return 'parallels';
  // qcrypto_block_luks_has_format: the magic and version 1 (qemu reads no LUKS2; to it, as to CDI, that is a raw disk).
  if (head.length >= 8 && text(0, 6) === 'LUKS\xba\xbe' && head.readUInt16BE(6) === 1) return 'luks';
  // bochs_probe: a growing redolog, header version 1 or 2.
  if (
    head.length >= 512 &&
    cString(0, 32) === 'Bochs Virtual HD Image' &&
    cString(32, 16) === 'Redolog' &&
    cString(48, 16) === 'Growing' &&
    [0x00010000, 0x00020000].includes(head.readUInt32LE(64))
  ) {
    return 'bochs';
  }
  return isVmdkDescriptor(head.subarray(0, 2048)) ? 'vmdk' : undefined;
}

/**
 * vmdk_probe for a text descriptor: comment lines and lines of spaces, then `version=1`, 2 or 3
 * (qemu probes its first 2048 bytes).
 */
function isVmdkDescriptor(buf: Buffer): boolean {
  let p = 0;
  while (p < buf.length) {
    if (buf[p] === 0x23 /* # */) {
      const lineEnd = buf.indexOf(0x0a, p);
      p = lineEnd < 0 ? buf.length + 1 : lineEnd + 1;
      continue;
    }
    if (buf[p] === 0x20) {
      while (p < buf.length && buf[p] === 0x20) p++;
      if (p < buf.length && buf[p] === 0x0d) p++;
      if (p === buf.length || buf[p] !== 0x0a) return false;
      p++;
      continue;
    }
    return /^version=[123]\r?\n/.test(buf.toString('latin1', p, p + 11));
  }
  return false;
}

/**
 * A zstd skippable frame (magic 0x184D2A50–0x184D2A5F, little-endian): metadata that libzstd steps
 * over, and what pzstd writes before every frame, so a .zst may start with one instead of a frame.
 */
function startsWithZstdSkippableFrame(head: Buffer): boolean {
  return head.length >= 4 && (head[0]! & 0xf0) === 0x50 && head[1] === 0x2a && head[2] === 0x4d && head[3] === 0x18;
}

/**
 * An LZMA-alone header (`xz --format=lzma`, lzma-utils), checked as xz's own detection does: a
 * properties byte for valid lc/lp/pb (below 225; 0x5D is the default), a dictionary size that is
 * 2^n or 2^n + 2^(n-1) from 4 KiB up, and an uncompressed size that is unknown (all ones) or
 * below 256 GiB (and not 0), then the LZMA data's first byte, 0. It has no magic; disks do not start like this (boot code, zeros, a file
 * system's own magic all fail the dictionary test).
 */
/** "BZh", the block size digit, then a block's magic (π) or the end of an empty stream's (√π). */
function looksLikeBzip2(head: Buffer): boolean {
  if (head.length < 10 || head.toString('latin1', 0, 3) !== 'BZh' || head[3]! < 0x31 || head[3]! > 0x39) return false;
  const next = head.toString('hex', 4, 10);
  return next === '314159265359' || next === '177245385090';
}

/** An LZ4 frame (magic 0x184D2204, then a version-01 descriptor) or the legacy format (0x184C2102): lz4, zstd --format=lz4. */
function looksLikeLz4(head: Buffer): boolean {
  if (head.length < 5) return false;
  const magic = head.readUInt32LE(0);
  return (magic === 0x184d2204 && head[4]! >> 6 === 1) || magic === 0x184c2102;
}

function looksLikeLzmaAlone(head: Buffer): boolean {
  if (head.length < 13 || head[0]! >= 225) return false;
  const dictionary = head.readUInt32LE(1);
  const powerOfTwo = (n: number) => Number.isInteger(n) && n > 0 && 2 ** Math.round(Math.log2(n)) === n;
  const usualSize = powerOfTwo(dictionary) || (dictionary % 3 === 0 && powerOfTwo(dictionary / 3)) || dictionary === 0xffffffff;
  if (dictionary < 4096 || !usualSize) return false;
  const size = head.readBigUInt64LE(5);
  // The range coder's first byte is always 0, and a known size of 0 is no image: a raw disk that
  // starts 00 00 10 00 00 and then zeros passes the tests above, but not these.
  if (size === 0n || (head.length > 13 && head[13] !== 0)) return false;
  return size === 0xffffffffffffffffn || size < 2n ** 38n;
}

/** How a web page (HTML, XHTML, an XML error document, a listing) starts, after a byte-order mark and white space. */
const PAGE_STARTS = ['<!doctype html', '<html', '<?xml', '<!--', '<head', '<body'];

/**
 * A web page: `<!DOCTYPE html`, `<html`, an XML declaration (XHTML, an S3-style XML error, nginx's
 * XML listing), a comment, `<head` or `<body` first. No disk starts like that (a boot sector, a
 * partition table, a file system's zeros), and a raw import would hand the guest a web page.
 */
function looksLikeHtml(head: Buffer): boolean {
  const text = head.subarray(0, 1024).toString('latin1').replace(/^\xef\xbb\xbf/, '').trimStart().slice(0, 14).toLowerCase();
  return PAGE_STARTS.some((start) => text.startsWith(start));
}

/**
 * Text, not a disk: the first 4 KiB (all of a smaller file) hold no NUL byte and nothing but
 * printable UTF-8 and white space. Every disk has zeros near its start (a partition table's empty
 * entries, an ISO's 32 KiB system area, a file system's padding); a JSON error, a "File not found"
 * or a directory listing in text has none.
 */
export function looksLikeText(head: Buffer): boolean {
  const sample = head.subarray(0, 4096);
  if (sample.length === 0 || sample.includes(0)) return false;
  const text = sample.toString('utf8');
  // A multibyte character cut at the sample's end decodes as one replacement character.
  const body = sample.length === head.length ? text : text.replace(/\ufffd$/, '');
  return !/[\ufffd\x00-\x08\x0b\x0e-\x1f\x7f]/.test(body);
}

export function isCompression(format: DetectedFormat): format is CompressionFormat {
  return format === 'gzip' || format === 'xz' || format === 'zstd';
}

const UNSUPPORTED_DISK_FORMAT_NAMES: Record<UnsupportedDiskFormat, string> = {
  vmdk: 'VMDK',
  vdi: 'VDI',
  vhd: 'VHD',
  vhdx: 'VHDX',
  qed: 'QED',
  parallels: 'Parallels',
  luks: 'LUKS-encrypted',
  bochs: 'Bochs',
  cloop: 'cloop',
};

/** Formats we recognise but do not convert: importing them as raw would hand the guest garbage. */
export function isUnsupportedDiskFormat(format: string): format is UnsupportedDiskFormat {
  return Object.hasOwn(UNSUPPORTED_DISK_FORMAT_NAMES, format);
}

/** The name users know a format we refuse by ("a VMDK image"). */
export function unsupportedFormatName(format: UnsupportedDiskFormat): string {
  return UNSUPPORTED_DISK_FORMAT_NAMES[format];
}

/**
 * Whether `head` starts like a tar archive without the `ustar` magic: a header block whose
 * checksum adds up (v7 tars, GNU volume-label headers) or the zero blocks of an empty archive.
 * Only for the archive content type, where a tar is expected: GNU tar (CDI's extractor) reads
 * these, and a disk image's first sector passing a tar checksum by chance is not a worry there.
 */
export function looksLikeTar(head: Buffer): boolean {
  if (head.length < 1024) return false;
  // An empty archive is zeros throughout (GNU tar pads to 10 KiB): a disk whose first sectors
  // are zero (an ext4 image) has something after them and is no tar.
  if (head.subarray(0, 1024).every((byte) => byte === 0)) return head.every((byte) => byte === 0);
  const field = head.subarray(148, 156).toString('latin1').replace(/[\0 ]+$/, '').trim();
  if (!/^[0-7]+$/.test(field)) return false;
  let sum = 0;
  for (let i = 0; i < 512; i++) sum += i >= 148 && i < 156 ? 0x20 : head[i]!;
  return sum === parseInt(field, 8);
}

/** The line for a disk format cdi-importer recognises but does not convert (import's failure, info's import-refused). */
export function unsupportedDiskFormatRefusal(description: string, format: UnsupportedDiskFormat): string {
  if (format === 'luks') {
    return `${description} is a LUKS-encrypted image, which is not supported: decrypt it to raw or qcow2 first with its passphrase (qemu-img convert --object secret,id=key,file=PASSFILE --image-opts driver=luks,key-secret=key,file.filename=IMAGE -O qcow2 OUT); a disk its guest encrypts whole is raw: cdi-importer convert -f raw copies it as it is`;
  }
  return `${description} is a ${unsupportedFormatName(format)} image, which is not supported: convert it to raw or qcow2 first (qemu-img convert -O qcow2)`;
}

/**
 * Why an import refuses data detected as `format` that is no disk image it can read (a web page,
 * compression it does not decode, a disk format it does not convert), in the words it fails with;
 * undefined for the rest. A tar is not among them: the archive content type takes it.
 */
export function importRefusal(description: string, format: DetectedFormat): string | undefined {
  if (isUnsupportedCompression(format)) return unsupportedCompression(description, format);
  if (format === 'html') {
    return /^https?:\/\//.test(description)
      ? `${description} is an HTML page, not a disk image (a login or error page, or the wrong link?): check the URL`
      : `${description} is an HTML page, not a disk image (a saved web page instead of the download?)`;
  }
  return isUnsupportedDiskFormat(format) ? unsupportedDiskFormatRefusal(description, format) : undefined;
}

/** The line for data compressed in a way cdi-importer recognises but does not decode. */
export function unsupportedCompression(description: string, format: UnsupportedCompression): string {
  switch (format) {
    case 'lzma':
      return `${description} is LZMA-alone (.lzma) data, which is not supported: recompress it as xz (xz -dc FILE | xz > FILE.xz) or gzip first`;
    case 'bzip2':
      return `${description} is bzip2-compressed, which is not supported (nor by CDI): recompress it as xz (bzip2 -dc FILE | xz > FILE.xz), gzip or zstd first`;
    case 'lz4':
      return `${description} is LZ4-compressed, which is not supported (nor by CDI): recompress it as zstd (lz4 -dc FILE | zstd > FILE.zst), xz or gzip first`;
  }
}

export function isUnsupportedCompression(format: string): format is UnsupportedCompression {
  return (UNSUPPORTED_COMPRESSIONS as readonly string[]).includes(format);
}
