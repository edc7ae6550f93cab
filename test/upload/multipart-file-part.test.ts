/**
 * The streaming multipart parser on its own: the `file` part's bytes come out exactly, however the
 * body is cut into chunks, even when the data contains near-boundaries; bad bodies fail in one line.
 */
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { Readable } from 'node:stream';
import { describe, test } from 'node:test';
import { MultipartFilePart, multipartBoundary } from '../../src/upload/multipart-file-part.js';

const BOUNDARY = '------------------------a1b2c3d4e5f6';

function part(name: string, data: Buffer, filename?: string): Buffer {
  const disposition = `form-data; name="${name}"${filename ? `; filename="${filename}"` : ''}`;
  const type = filename ? '\r\nContent-Type: application/octet-stream' : '';
  return Buffer.concat([Buffer.from(`--${BOUNDARY}\r\nContent-Disposition: ${disposition}${type}\r\n\r\n`), data, Buffer.from('\r\n')]);
}

const closing = Buffer.from(`--${BOUNDARY}--\r\n`);

/** Feeds `body` in chunks of the given sizes (cycled) and collects what comes out. */
async function parse(body: Buffer, chunkSizes: number[]): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for (let offset = 0, i = 0; offset < body.length; i++) {
    const size = chunkSizes[i % chunkSizes.length]!;
    chunks.push(body.subarray(offset, offset + size));
    offset += size;
  }
  const out: Buffer[] = [];
  for await (const chunk of Readable.from(chunks).pipe(new MultipartFilePart(BOUNDARY))) out.push(chunk as Buffer);
  return Buffer.concat(out);
}

const sha = (data: Buffer) => createHash('sha256').update(data).digest('hex');

describe('multipart file part', () => {
  test('a form whose lines end in LF only (accepted by Go, CDI\'s reader): the file part comes out exactly', async () => {
    const data = Buffer.concat([randomBytes(20_000), Buffer.from(`\n--${BOUNDARY.slice(0, -1)}X\r\n`), randomBytes(100)]);
    const lf = Buffer.concat([
      Buffer.from(`--${BOUNDARY}\nContent-Disposition: form-data; name="note"\n\nhello\n`),
      Buffer.from(`--${BOUNDARY}\nContent-Disposition: form-data; name="file"; filename="disk.img"\nContent-Type: application/octet-stream\n\n`),
      data,
      Buffer.from(`\n--${BOUNDARY}--\n`),
    ]);
    for (const sizes of [[1], [7, 13], [lf.length]]) assert.equal(sha(await parse(lf, sizes)), sha(data), `chunks of ${sizes.join('/')}`);
  });

  // Data that contains most of a delimiter, a CRLF before it, and ends in CRLF: only the full
  // `\r\n--boundary` may end the part.
  const tricky = Buffer.concat([
    randomBytes(70_000),
    Buffer.from(`\r\n--${BOUNDARY.slice(0, -1)}X`),
    randomBytes(5000),
    Buffer.from(`--${BOUNDARY}`), // a boundary without the CRLF before it is data
    randomBytes(3000),
    Buffer.from('\r\n\r\n'),
  ]);
  const body = Buffer.concat([Buffer.from('preamble text\r\n'), part('note', Buffer.from('hello')), part('file', tricky, 'disk.img'), part('after', Buffer.from('x')), closing]);

  for (const sizes of [[1], [7, 13], [BOUNDARY.length + 3], [65536], [body.length]]) {
    test(`the file part comes out exactly, chunks of ${sizes.join('/')} bytes`, async () => {
      assert.equal(sha(await parse(body, sizes)), sha(tricky));
    });
  }

  test('the delimiter that ends the part, split at every byte across two chunks of any size', async () => {
    const data = randomBytes(3000);
    const form = Buffer.concat([part('file', data, 'disk.img'), closing]);
    const delimiterStart = form.indexOf(`\r\n--${BOUNDARY}`, 100);
    for (let split = delimiterStart - 2; split <= delimiterStart + BOUNDARY.length + 6; split++) {
      for (const rest of [form.length - split, 50, 44, 43]) {
        assert.equal(sha(await parse(form, [split, rest])), sha(data), `split at ${split}, then chunks of ${rest}`);
      }
    }
  });

  // Go's reader (CDI's) ends a part only at `\r\n--boundary` followed by `--`, a space, a tab, a
  // line end or the end of the body: the same bytes followed by anything else are data.
  test('the whole delimiter followed by another byte is data, as Go\'s reader has it, in every chunking', async () => {
    const data = Buffer.concat([randomBytes(5000), Buffer.from(`\r\n--${BOUNDARY}X`), randomBytes(3000), Buffer.from(`\r\n--${BOUNDARY}-Y`), randomBytes(2000)]);
    const form = Buffer.concat([part('note', Buffer.from(`a note with \r\n--${BOUNDARY}Z in it`)), part('file', data, 'disk.img'), closing]);
    for (const sizes of [[1], [2], [7, 13], [BOUNDARY.length + 2], [BOUNDARY.length + 4, 1], [4096], [form.length]]) {
      assert.equal(sha(await parse(form, sizes)), sha(data), `chunks of ${sizes.join('/')}`);
    }
  });

  test('a body that ends right after the file part\'s delimiter gives the file; one dash after it is a body cut short', async () => {
    const data = randomBytes(9000);
    const ended = Buffer.concat([part('file', data, 'disk.img').subarray(0, -2), Buffer.from(`\r\n--${BOUNDARY}`)]);
    for (const sizes of [[1], [100], [ended.length]]) assert.equal(sha(await parse(ended, sizes)), sha(data), `chunks of ${sizes.join('/')}`);
    await assert.rejects(parse(Buffer.concat([ended, Buffer.from('-')]), [100]), /ended inside the "file" part/);
  });

  test('a preamble line that only starts like the boundary is preamble; a boundary line with more after it is refused', async () => {
    const data = randomBytes(4000);
    const withPreamble = Buffer.concat([Buffer.from(`--${BOUNDARY}--not the end\r\n--${BOUNDARY}x\r\n`), part('file', data, 'disk.img'), closing]);
    for (const sizes of [[1], [5], [withPreamble.length]]) assert.equal(sha(await parse(withPreamble, sizes)), sha(data), `chunks of ${sizes.join('/')}`);
    const trailing = Buffer.concat([part('note', Buffer.from('hi')), Buffer.from(`--${BOUNDARY} extra\r\n`), part('file', data, 'disk.img').subarray(BOUNDARY.length + 4), closing]);
    await assert.rejects(parse(trailing, [64]), (err: Error) => {
      assert.match(err.message, /^a multipart boundary line goes on after the boundary \(" extra"\): this is not a form as curl -F or a browser sends it$/);
      return true;
    });
  });

  test('the part comes out in whole 1 MiB chunks counted from its start, however the body arrives', async () => {
    const data = randomBytes(3 * 1024 * 1024 + 12345);
    const form = Buffer.concat([part('note', Buffer.from('hello')), part('file', data, 'disk.img'), closing]);
    const sizes: number[] = [];
    const parser = Readable.from([form.subarray(0, 1000), form.subarray(1000, 70_000), form.subarray(70_000)]).pipe(new MultipartFilePart(BOUNDARY));
    // 'data' events: one per chunk pushed (an async iterator's read() would join them).
    parser.on('data', (chunk: Buffer) => sizes.push(chunk.length));
    await new Promise((resolve, reject) => parser.on('end', resolve).on('error', reject));
    assert.deepEqual(sizes, [1 << 20, 1 << 20, 1 << 20, 12345]);
  });

  test('an empty file part is an empty stream', async () => {
    const empty = Buffer.concat([part('file', Buffer.alloc(0), 'empty.img'), closing]);
    assert.equal((await parse(empty, [3])).length, 0);
  });

  test('no part named file: one line naming the parts found', async () => {
    const noFile = Buffer.concat([part('image', randomBytes(100)), closing]);
    await assert.rejects(parse(noFile, [50]), /no part named "file" \(parts found: image\)/);
  });

  test('a body cut inside the file part fails instead of ending quietly', async () => {
    const cut = part('file', randomBytes(10_000), 'disk.img').subarray(0, 5000);
    await assert.rejects(parse(cut, [1000]), /ended inside the "file" part/);
  });

  test('oversized part headers are refused', async () => {
    const huge = Buffer.from(`--${BOUNDARY}\r\nX-Padding: ${'a'.repeat(40_000)}`);
    await assert.rejects(parse(huge, [4096]), /part headers exceed/);
  });

  test('boundary from the Content-Type header', () => {
    assert.equal(multipartBoundary(`multipart/form-data; boundary=${BOUNDARY}`), BOUNDARY);
    assert.equal(multipartBoundary('multipart/form-data; charset=utf-8; boundary="quoted boundary"'), 'quoted boundary');
    assert.equal(multipartBoundary('application/octet-stream'), undefined);
    assert.equal(multipartBoundary('multipart/form-data'), undefined);
    assert.equal(multipartBoundary(undefined), undefined);
  });
});
