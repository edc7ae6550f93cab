/*
 * copyData(sourceFd, targetFd, sourcePosition, targetPosition, length, callback(err, bytesWritten))
 *
 * Copies [sourcePosition, +length) of one file to targetPosition of another on a libuv pool thread,
 * leaving out every all-zero 4 KiB block (aligned to the target's offsets), so that the target,
 * a fresh sparse file, keeps its holes there, as src/targets/zero-runs.ts does for bytes in
 * JavaScript. Why native: a qcow2's data clusters need no decoding, and the JavaScript that read,
 * scanned and wrote them per MiB was a third of a conversion's CPU time on two cores.
 *
 * An error comes back as { errno, syscall: 'read' | 'write' }; errno 0 with 'read' means the source
 * ended before `length` bytes (the file shrank while being read).
 */
#define _GNU_SOURCE
#include <node_api.h>
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define HOLE_BLOCK 4096
#define CHUNK (1 << 20)

typedef struct {
  napi_async_work work;
  napi_ref callback;
  int source, target;
  int64_t sourcePosition, targetPosition, length;
  int64_t written;
  int error;
  const char *syscall;
} Copy;

static int isZero(const unsigned char *p, size_t n) {
  if (p[0] != 0 || p[n - 1] != 0) return 0; /* most data blocks are told apart here */
  size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    uint64_t word;
    memcpy(&word, p + i, 8);
    if (word != 0) return 0;
  }
  for (; i < n; i++)
    if (p[i] != 0) return 0;
  return 1;
}

static int writeAll(Copy *copy, const unsigned char *p, size_t n, int64_t at) {
  while (n > 0) {
    ssize_t done = pwrite(copy->target, p, n, at);
    if (done < 0) {
      if (errno == EINTR) continue;
      copy->error = errno;
      copy->syscall = "write";
      return -1;
    }
    p += done;
    n -= (size_t)done;
    at += done;
    copy->written += done;
  }
  return 0;
}

static int readAll(Copy *copy, unsigned char *p, size_t n, int64_t at) {
  while (n > 0) {
    ssize_t done = pread(copy->source, p, n, at);
    if (done < 0) {
      if (errno == EINTR) continue;
      copy->error = errno;
      copy->syscall = "read";
      return -1;
    }
    if (done == 0) {
      copy->error = 0;
      copy->syscall = "read";
      return -1;
    }
    p += done;
    n -= (size_t)done;
    at += done;
  }
  return 0;
}

/* Writes the non-zero blocks of buffer[0, n), which belongs at `at` in the target. */
static int writeData(Copy *copy, const unsigned char *buffer, size_t n, int64_t at) {
  size_t position = 0, runStart = SIZE_MAX;
  size_t firstBoundary = (size_t)((HOLE_BLOCK - at % HOLE_BLOCK) % HOLE_BLOCK);
  while (position < n) {
    size_t end = position == 0 && firstBoundary > 0 ? firstBoundary : position + HOLE_BLOCK;
    if (end > n) end = n;
    if (isZero(buffer + position, end - position)) {
      if (runStart != SIZE_MAX && writeAll(copy, buffer + runStart, position - runStart, at + (int64_t)runStart)) return -1;
      runStart = SIZE_MAX;
    } else if (runStart == SIZE_MAX) {
      runStart = position;
    }
    position = end;
  }
  if (runStart != SIZE_MAX) return writeAll(copy, buffer + runStart, n - runStart, at + (int64_t)runStart);
  return 0;
}

static void execute(napi_env env, void *data) {
  (void)env;
  Copy *copy = data;
  /* One buffer per pool thread, kept for the process's life: a fresh MiB per copy costs 256 page
     faults, which made the copies slower than JavaScript's pooled buffers. */
  static __thread unsigned char *buffer;
  if (buffer == NULL && (buffer = aligned_alloc(4096, CHUNK)) == NULL) {
    copy->error = ENOMEM;
    copy->syscall = "read";
    return;
  }
  int64_t done = 0;
  while (done < copy->length) {
    /* Chunks end on the target's 4 KiB boundaries, so that a block is never judged in two halves. */
    size_t n = CHUNK - (size_t)((copy->targetPosition + done) % HOLE_BLOCK);
    if (copy->length - done < (int64_t)n) n = (size_t)(copy->length - done);
    if (readAll(copy, buffer, n, copy->sourcePosition + done)) return;
    if (writeData(copy, buffer, n, copy->targetPosition + done)) return;
    done += (int64_t)n;
  }
  copy->syscall = NULL;
}

static void complete(napi_env env, napi_status status, void *data) {
  Copy *copy = data;
  napi_value callback, global, argv[2];
  napi_get_reference_value(env, copy->callback, &callback);
  napi_get_global(env, &global);
  if (status != napi_ok || copy->syscall != NULL) {
    napi_value number, syscall;
    napi_create_object(env, &argv[0]);
    napi_create_int32(env, status != napi_ok ? ECANCELED : copy->error, &number);
    napi_set_named_property(env, argv[0], "errno", number);
    napi_create_string_utf8(env, copy->syscall != NULL ? copy->syscall : "write", NAPI_AUTO_LENGTH, &syscall);
    napi_set_named_property(env, argv[0], "syscall", syscall);
    napi_get_undefined(env, &argv[1]);
  } else {
    napi_get_null(env, &argv[0]);
    napi_create_int64(env, copy->written, &argv[1]);
  }
  napi_call_function(env, global, callback, 2, argv, NULL);
  napi_delete_reference(env, copy->callback);
  napi_delete_async_work(env, copy->work);
  free(copy);
}

static napi_value copyData(napi_env env, napi_callback_info info) {
  size_t argc = 6;
  napi_value argv[6], name;
  napi_valuetype type;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc != 6 ||
      napi_typeof(env, argv[5], &type) != napi_ok || type != napi_function) {
    napi_throw_type_error(env, NULL, "copyData(sourceFd, targetFd, sourcePosition, targetPosition, length, callback)");
    return NULL;
  }
  Copy *copy = calloc(1, sizeof *copy);
  if (copy == NULL) {
    napi_throw_error(env, NULL, "out of memory");
    return NULL;
  }
  if (napi_get_value_int32(env, argv[0], &copy->source) != napi_ok || napi_get_value_int32(env, argv[1], &copy->target) != napi_ok ||
      napi_get_value_int64(env, argv[2], &copy->sourcePosition) != napi_ok ||
      napi_get_value_int64(env, argv[3], &copy->targetPosition) != napi_ok || napi_get_value_int64(env, argv[4], &copy->length) != napi_ok ||
      copy->source < 0 || copy->target < 0 || copy->sourcePosition < 0 || copy->targetPosition < 0 || copy->length < 0) {
    free(copy);
    napi_throw_type_error(env, NULL, "copyData: descriptors, positions and length must be non-negative integers");
    return NULL;
  }
  napi_create_reference(env, argv[5], 1, &copy->callback);
  napi_create_string_utf8(env, "cdi-importer:copyData", NAPI_AUTO_LENGTH, &name);
  napi_create_async_work(env, NULL, name, execute, complete, copy, &copy->work);
  napi_queue_async_work(env, copy->work);
  return NULL;
}

NAPI_MODULE_INIT() {
  napi_value function;
  napi_create_function(env, "copyData", NAPI_AUTO_LENGTH, copyData, NULL, &function);
  napi_set_named_property(env, exports, "copyData", function);
  return exports;
}
