/*
 * inflateClusters(input, pieces, clusterSize, output, outcome, callback())
 *
 * Decodes a run of a qcow2's deflate-compressed clusters on a libuv pool thread, as qemu's
 * qcow2-threads.c does: raw deflate with a 4 KiB window, the output must fill the cluster, and
 * trailing input bytes are allowed (a compressed size is only known to 512 bytes). `pieces` is a
 * Float64Array of (offset, length) pairs into `input`; cluster i lands at output[i * clusterSize].
 * `outcome` (a Float64Array of 4) tells how it ended: [0] the kind (0 decoded; 1 a cluster
 * inflates past clusterSize; 2 not valid deflate data; 3 a cluster inflates to fewer bytes),
 * [1] which piece, [2] the bytes it gave (kind 3), [3] the input bytes the last piece decoded took
 * (the one-pass driver learns where a cluster ends). zlib's own words for kind 2 are the
 * callback's argument. src/qcow2/decompress-cluster.ts puts all of it into words.
 *
 * Why native: Node's zlib.inflateRaw makes a stream, its buffers and a callback for each cluster,
 * and with 64 KiB clusters that JavaScript, not the decoding, took the main thread (a 256 MiB
 * `convert -c` image by random access: 0.54 s, main thread idle a tenth of it; qemu-img 0.30 s).
 */
#include <node_api.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>
#include "pool-work.h"

typedef struct {
  PoolWork pool; /* first: the job is its PoolWork */
  const unsigned char *input;
  size_t inputLength;
  const double *pieces;
  size_t count;
  size_t clusterSize;
  unsigned char *output;
  double *outcome;
  char message[128];
} Inflate;

enum { DECODED = 0, PAST = 1, INVALID = 2, SHORT = 3 };

static void setOutcome(Inflate *job, int kind, size_t piece, size_t got, const char *message) {
  job->outcome[0] = kind;
  job->outcome[1] = (double)piece;
  job->outcome[2] = (double)got;
  if (message != NULL) {
    strncpy(job->message, message, sizeof job->message - 1);
    job->message[sizeof job->message - 1] = '\0';
  }
}

static void execute(napi_env env, void *data) {
  (void)env;
  Inflate *job = data;
  z_stream stream;
  memset(&stream, 0, sizeof stream);
  if (inflateInit2(&stream, -12) != Z_OK) {
    setOutcome(job, INVALID, 0, 0, "zlib could not start (out of memory?)");
    return;
  }
  for (size_t i = 0; i < job->count; i++) {
    size_t from = (size_t)job->pieces[2 * i], length = (size_t)job->pieces[2 * i + 1];
    unsigned char *out = job->output + i * job->clusterSize;
    if (i > 0) inflateReset(&stream);
    stream.next_in = (unsigned char *)job->input + from;
    stream.avail_in = (uInt)length;
    stream.next_out = out;
    stream.avail_out = (uInt)job->clusterSize;
    int ret = Z_OK;
    while (ret == Z_OK && stream.avail_out > 0 && stream.avail_in > 0) ret = inflate(&stream, Z_SYNC_FLUSH);
    if (ret != Z_OK && ret != Z_STREAM_END && ret != Z_BUF_ERROR) {
      setOutcome(job, INVALID, i, 0, stream.msg != NULL ? stream.msg : "invalid deflate data");
      break;
    }
    size_t got = job->clusterSize - stream.avail_out;
    if (got < job->clusterSize) {
      setOutcome(job, SHORT, i, got, NULL);
      break;
    }
    if (ret != Z_STREAM_END) {
      /* The cluster is full and the stream goes on: one more byte out means it inflates past the cluster. */
      unsigned char extra;
      stream.next_out = &extra;
      stream.avail_out = 1;
      ret = inflate(&stream, Z_SYNC_FLUSH);
      if (stream.avail_out == 0) {
        setOutcome(job, PAST, i, 0, NULL);
        break;
      }
      if (ret != Z_OK && ret != Z_STREAM_END && ret != Z_BUF_ERROR) {
        setOutcome(job, INVALID, i, 0, stream.msg != NULL ? stream.msg : "invalid deflate data");
        break;
      }
    }
    job->outcome[3] = (double)stream.total_in;
  }
  inflateEnd(&stream);
}

static void complete(napi_env env, napi_status status, void *data) {
  Inflate *job = data;
  napi_value argv[1];
  if (status != napi_ok) setOutcome(job, INVALID, 0, 0, "the decode was cancelled");
  napi_create_string_utf8(env, job->message, NAPI_AUTO_LENGTH, &argv[0]);
  finishWork(env, &job->pool, 1, argv);
  free(job);
}

napi_value inflateClusters(napi_env env, napi_callback_info info) {
  size_t argc = 6;
  napi_value argv[6];
  napi_valuetype type;
  static const char *usage =
      "inflateClusters(input: Buffer, pieces: Float64Array of (offset, length), clusterSize, output: Buffer, outcome: Float64Array(4), callback)";
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc != 6 || napi_typeof(env, argv[5], &type) != napi_ok ||
      type != napi_function) {
    napi_throw_type_error(env, NULL, usage);
    return NULL;
  }
  size_t inputLength = 0, pieceValues = 0, outputLength = 0, outcomeValues = 0;
  uint32_t clusterSize = 0;
  unsigned char *input = typedArrayData(env, argv[0], napi_uint8_array, &inputLength);
  double *pieces = typedArrayData(env, argv[1], napi_float64_array, &pieceValues);
  unsigned char *output = typedArrayData(env, argv[3], napi_uint8_array, &outputLength);
  double *outcome = typedArrayData(env, argv[4], napi_float64_array, &outcomeValues);
  if (input == NULL || pieces == NULL || output == NULL || outcome == NULL || outcomeValues != 4 || pieceValues % 2 != 0 ||
      napi_get_value_uint32(env, argv[2], &clusterSize) != napi_ok || clusterSize == 0 || outputLength / clusterSize < pieceValues / 2) {
    napi_throw_type_error(env, NULL, usage);
    return NULL;
  }
  for (size_t i = 0; i < pieceValues; i += 2) {
    double from = pieces[i], length = pieces[i + 1];
    if (!isWholeOffset(from) || !isWholeOffset(length) || from + length > (double)inputLength || length > 0xffffffffu) {
      napi_throw_range_error(env, NULL, "inflateClusters: a piece lies outside the input");
      return NULL;
    }
  }
  Inflate *job = newJob(env, sizeof *job);
  if (job == NULL) return NULL;
  job->input = input;
  job->inputLength = inputLength;
  job->pieces = pieces;
  job->count = pieceValues / 2;
  job->clusterSize = clusterSize;
  job->output = output;
  job->outcome = outcome;
  setOutcome(job, DECODED, 0, 0, "");
  napi_value held[] = {argv[0], argv[1], argv[3], argv[4]};
  queueWork(env, &job->pool, "cdi-importer:inflateClusters", argv[5], held, 4, execute, complete);
  return NULL;
}
