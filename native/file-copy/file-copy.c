/*
 * copyRuns(sourceFd, targetFd, runs, written, callback(err))
 *
 * Copies runs of one file into another, off the main thread, leaving out every all-zero 4 KiB
 * block (aligned to the target's offsets), so that the target, a fresh sparse file, keeps its
 * holes there, as src/targets/zero-runs.ts does for bytes in JavaScript. `runs` is a Float64Array
 * of (sourcePosition, targetPosition, length) triples; the bytes each run wrote go into `written`
 * (a Float64Array, one number per run). The callback runs once the whole batch is done.
 *
 * Why native: a qcow2's data clusters need no decoding, and the JavaScript that read, scanned and
 * wrote them per MiB was a third of a conversion's CPU time on two cores. Why batches copied by
 * two threads (the libuv pool thread and one of the batch's own, each reading and writing a MiB at
 * a time): that keeps a read and a write going at once, as qemu-img's convert does, without a trip
 * through the event loop per MiB. A pool job per run, several in flight, had more writers take
 * turns on the target's inode lock (the waiting kernel threads spin): 2 GiB qcow2 -> raw, medians
 * of 9, 0.450 s that way against 0.39 s in batches; three threads instead of two, no faster.
 *
 * An error comes back as { errno, syscall: 'read' | 'write' }; errno 0 with 'read' means the source
 * ended before a run's bytes (the file shrank while being read).
 */
#define _GNU_SOURCE
#include <node_api.h>
#include <errno.h>
#ifdef __GLIBC__
#include <malloc.h>
#endif
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "pool-work.h"

#define HOLE_BLOCK 4096
#define CHUNK (1 << 20)
/* Threads copying a batch: the pool thread and COPIERS - 1 of its own (see copyChunks). */
#define COPIERS 2

/* The pool thread's chunk buffer, kept for the thread's life: a fresh MiB costs 256 page faults. */
static __thread unsigned char *poolBuffer;

typedef struct {
  PoolWork pool; /* first: the job is its PoolWork */
  int source, target;
  int copiesFiles; /* copyRuns: larger writes, without turns (see writeAll) */
  const double *runs; /* (sourcePosition, targetPosition, length) triples */
  double *written;    /* bytes written, per run */
  size_t count;
  /* The next chunk to copy: run `run`, from `done` bytes into it. */
  size_t run;
  int64_t done;
  /* The first failure; the other threads stop at their next chunk. */
  int error;
  const char *syscall;
  pthread_mutex_t lock;
} Batch;

static void fail(Batch *batch, int error, const char *syscall) {
  pthread_mutex_lock(&batch->lock);
  if (batch->syscall == NULL) {
    batch->error = error;
    batch->syscall = syscall;
  }
  pthread_mutex_unlock(&batch->lock);
}

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

/*
 * Decoded bytes (writeData) go to the file in writes that take turns. Buffered writes to one file
 * take turns on its inode lock, and the kernel's waiters for that lock spin while its holder copies
 * pages in. On two cores a spinning writer took the core the decoder needed: raw.zst to ext4, system
 * time 0.4 s in good runs and up to 1.8 s in bad ones, half of it in rwsem_spin_on_owner. Those
 * writers to one descriptor take turns on a mutex of ours first, whose waiters sleep; reads and
 * zero-block scans still run side by side. Striped by descriptor: two targets rarely share a stripe,
 * and sharing one only makes their writes take turns.
 * A copy between files (copyRuns) has no decoder to give a core to: its two threads write without
 * turns, as qemu-img's do (2 GiB qcow2 -> raw in 1 MiB writes, 7 alternating runs on 2026-11-28:
 * 0.24-0.27 s without turns, 0.26-0.31 s with them, qemu-img 0.26-0.30 s).
 */
#define WRITE_LOCKS 16
static pthread_mutex_t writeLocks[WRITE_LOCKS] = {[0 ... WRITE_LOCKS - 1] = PTHREAD_MUTEX_INITIALIZER};

static ssize_t pwriteInTurn(int fd, const void *p, size_t n, int64_t at) {
  pthread_mutex_t *lock = &writeLocks[(unsigned)fd % WRITE_LOCKS];
  pthread_mutex_lock(lock);
  ssize_t done = pwrite(fd, p, n, at);
  int error = errno;
  pthread_mutex_unlock(lock);
  errno = error;
  return done;
}

/*
 * The most one pwrite is given. The page cache takes a larger write in larger folios, whose pages
 * come from the free memory's larger blocks; a VM that hands its free memory back to the host
 * (virtio-balloon free page reporting, a couple of seconds after it is freed, large blocks first)
 * then waits for the host to give each one back. 800 MiB written with dd after 3 s idle here:
 * 1.1-2.1 s in 1-2 MiB writes, 0.2-1.1 s in 64-512 KiB ones, depending on what ran before.
 * Decoded bytes: 128 KiB, what `zstd -dc` writes: raw.zst 1 GiB to ext4, 9 alternating runs, 0.55 s
 * against 1.12 s in 512 KiB writes (runs up to 0.63 against 1.47 s); qcow2.xz 1.50 against 1.71 s.
 * A copy between files: 512 KiB, below the sizes that were slowest in every slow spell. Without
 * turns there, the write size is what a copy's speed depends on (2026-11-28, machine not in its
 * slow state; 2 GiB qcow2 -> raw, alternating runs, qemu-img 0.26-0.37 s): 128 KiB 0.31-0.40 s,
 * 256 KiB 0.28-0.33 s, 512 KiB 0.26-0.30 s, 1 MiB 0.26-0.29 s.
 */
#define MAX_DECODED_PWRITE (128 << 10)
#define MAX_COPY_PWRITE (512 << 10)

static int writeAll(Batch *batch, const unsigned char *p, size_t n, int64_t at, double *written) {
  while (n > 0) {
    ssize_t done = batch->copiesFiles ? pwrite(batch->target, p, n < MAX_COPY_PWRITE ? n : MAX_COPY_PWRITE, at)
                                      : pwriteInTurn(batch->target, p, n < MAX_DECODED_PWRITE ? n : MAX_DECODED_PWRITE, at);
    if (done < 0) {
      if (errno == EINTR) continue;
      fail(batch, errno, "write");
      return -1;
    }
    p += done;
    n -= (size_t)done;
    at += done;
    *written += (double)done;
  }
  return 0;
}

static int readAll(Batch *batch, unsigned char *p, size_t n, int64_t at) {
  while (n > 0) {
    ssize_t done = pread(batch->source, p, n, at);
    if (done < 0) {
      if (errno == EINTR) continue;
      fail(batch, errno, "read");
      return -1;
    }
    if (done == 0) {
      fail(batch, 0, "read");
      return -1;
    }
    p += done;
    n -= (size_t)done;
    at += done;
  }
  return 0;
}

/* Writes the non-zero blocks of buffer[0, n), which belongs at `at` in the target. */
static int writeData(Batch *batch, const unsigned char *buffer, size_t n, int64_t at, double *written) {
  size_t position = 0, runStart = SIZE_MAX;
  size_t firstBoundary = (size_t)((HOLE_BLOCK - at % HOLE_BLOCK) % HOLE_BLOCK);
  while (position < n) {
    size_t end = position == 0 && firstBoundary > 0 ? firstBoundary : position + HOLE_BLOCK;
    if (end > n) end = n;
    if (isZero(buffer + position, end - position)) {
      if (runStart != SIZE_MAX && writeAll(batch, buffer + runStart, position - runStart, at + (int64_t)runStart, written)) return -1;
      runStart = SIZE_MAX;
    } else if (runStart == SIZE_MAX) {
      runStart = position;
    }
    position = end;
  }
  if (runStart != SIZE_MAX) return writeAll(batch, buffer + runStart, n - runStart, at + (int64_t)runStart, written);
  return 0;
}

/*
 * Each copying thread takes the next chunk of the batch, reads it and writes its data, until none
 * is left or a copy failed. Chunks end on the target's 4 KiB boundaries, so that a block is never
 * judged in two halves.
 */
static void copyChunks(Batch *batch, unsigned char *chunkBuffer) {
  if (chunkBuffer == NULL) {
    fail(batch, ENOMEM, "read");
    return;
  }
  for (;;) {
    pthread_mutex_lock(&batch->lock);
    while (batch->run < batch->count && batch->done >= (int64_t)batch->runs[3 * batch->run + 2]) {
      batch->run++;
      batch->done = 0;
    }
    if (batch->syscall != NULL || batch->run == batch->count) {
      pthread_mutex_unlock(&batch->lock);
      return;
    }
    size_t r = batch->run;
    int64_t source = (int64_t)batch->runs[3 * r], target = (int64_t)batch->runs[3 * r + 1], length = (int64_t)batch->runs[3 * r + 2];
    int64_t done = batch->done;
    size_t n = CHUNK - (size_t)((target + done) % HOLE_BLOCK);
    if (length - done < (int64_t)n) n = (size_t)(length - done);
    batch->done += (int64_t)n;
    pthread_mutex_unlock(&batch->lock);
    double written = 0;
    int failed = readAll(batch, chunkBuffer, n, source + done) || writeData(batch, chunkBuffer, n, target + done, &written);
    pthread_mutex_lock(&batch->lock);
    batch->written[r] += written;
    pthread_mutex_unlock(&batch->lock);
    if (failed) return;
  }
}

/* A batch's own thread lives for the batch, its buffer too. */
static void *copyChunksOnOwnThread(void *data) {
  unsigned char *buffer = aligned_alloc(4096, CHUNK);
  copyChunks(data, buffer);
  free(buffer);
  return NULL;
}

static void execute(napi_env env, void *data) {
  (void)env;
  Batch *batch = data;
  pthread_t threads[COPIERS - 1];
  int started = 0;
  while (started < COPIERS - 1 && pthread_create(&threads[started], NULL, copyChunksOnOwnThread, batch) == 0) started++; /* fewer: the same result */
  if (poolBuffer == NULL) poolBuffer = aligned_alloc(4096, CHUNK);
  copyChunks(batch, poolBuffer);
  for (int i = 0; i < started; i++) pthread_join(threads[i], NULL);
}

static void complete(napi_env env, napi_status status, void *data) {
  Batch *batch = data;
  napi_value argv[1];
  if (status != napi_ok || batch->syscall != NULL) {
    napi_value number, syscall;
    napi_create_object(env, &argv[0]);
    napi_create_int32(env, status != napi_ok ? ECANCELED : batch->error, &number);
    napi_set_named_property(env, argv[0], "errno", number);
    napi_create_string_utf8(env, batch->syscall != NULL ? batch->syscall : "write", NAPI_AUTO_LENGTH, &syscall);
    napi_set_named_property(env, argv[0], "syscall", syscall);
  } else {
    napi_get_null(env, &argv[0]);
  }
  finishWork(env, &batch->pool, 1, argv);
  pthread_mutex_destroy(&batch->lock);
  free(batch);
}

static napi_value copyRuns(napi_env env, napi_callback_info info) {
  size_t argc = 5;
  napi_value argv[5];
  napi_valuetype type;
  static const char *usage = "copyRuns(sourceFd, targetFd, runs: Float64Array of (source, target, length), written: Float64Array, callback)";
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc != 5 || napi_typeof(env, argv[4], &type) != napi_ok ||
      type != napi_function) {
    napi_throw_type_error(env, NULL, usage);
    return NULL;
  }
  size_t runValues = 0, writtenValues = 0;
  double *runs = typedArrayData(env, argv[2], napi_float64_array, &runValues);
  double *written = typedArrayData(env, argv[3], napi_float64_array, &writtenValues);
  int source = -1, target = -1;
  if (runs == NULL || written == NULL || runValues % 3 != 0 || writtenValues != runValues / 3 || napi_get_value_int32(env, argv[0], &source) != napi_ok ||
      napi_get_value_int32(env, argv[1], &target) != napi_ok || source < 0 || target < 0) {
    napi_throw_type_error(env, NULL, usage);
    return NULL;
  }
  for (size_t i = 0; i < runValues; i++) {
    /* Whole, non-negative numbers below 2^53: positions and lengths. */
    if (!isWholeOffset(runs[i])) {
      napi_throw_range_error(env, NULL, "copyRuns: positions and lengths must be non-negative integers");
      return NULL;
    }
  }
  Batch *batch = newJob(env, sizeof *batch);
  if (batch == NULL) return NULL;
  batch->source = source;
  batch->target = target;
  batch->copiesFiles = 1;
  batch->runs = runs;
  batch->written = written;
  batch->count = runValues / 3;
  for (size_t r = 0; r < batch->count; r++) written[r] = 0;
  pthread_mutex_init(&batch->lock, NULL);
  queueWork(env, &batch->pool, "cdi-importer:copyRuns", argv[4], &argv[2], 2, execute, complete);
  return NULL;
}

/*
 * writeData(targetFd, data, position, callback(err, written))
 *
 * Writes the bytes of `data` (a Buffer) at `position`, leaving out its all-zero 4 KiB blocks as
 * copyRuns does, on the pool: what SparseFileTarget.write did in JavaScript (zero-runs.ts and a
 * FileHandle.write per run) for bytes that were decoded in memory. Node's write path (argument
 * checks, a promise per call) and the block scan were a tenth of the main thread's time in a
 * qcow2.xz import. `written` counts the bytes written; an error is { errno, syscall: 'write' }.
 */
typedef struct {
  Batch batch; /* first: the job is its PoolWork; batch.target is the file */
  const unsigned char *data;
  size_t length;
  int64_t position;
  double written;
} WriteJob;

static void executeWrite(napi_env env, void *data) {
  (void)env;
  WriteJob *job = data;
  if (job->length > 0) writeData(&job->batch, job->data, job->length, job->position, &job->written);
}

static void completeWrite(napi_env env, napi_status status, void *data) {
  WriteJob *job = data;
  napi_value argv[2];
  if (status != napi_ok || job->batch.syscall != NULL) {
    napi_value number, syscall;
    napi_create_object(env, &argv[0]);
    napi_create_int32(env, status != napi_ok ? ECANCELED : job->batch.error, &number);
    napi_set_named_property(env, argv[0], "errno", number);
    napi_create_string_utf8(env, "write", NAPI_AUTO_LENGTH, &syscall);
    napi_set_named_property(env, argv[0], "syscall", syscall);
  } else {
    napi_get_null(env, &argv[0]);
  }
  napi_create_double(env, job->written, &argv[1]);
  finishWork(env, &job->batch.pool, 2, argv);
  pthread_mutex_destroy(&job->batch.lock);
  free(job);
}

static napi_value writeDataFunction(napi_env env, napi_callback_info info) {
  size_t argc = 4;
  napi_value argv[4];
  napi_valuetype type;
  bool isBuffer = false;
  void *bytes = NULL;
  size_t length = 0;
  int target = -1;
  double position = -1;
  static const char *usage = "writeData(targetFd, data: Buffer, position, callback)";
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc != 4 || napi_typeof(env, argv[3], &type) != napi_ok ||
      type != napi_function || napi_is_buffer(env, argv[1], &isBuffer) != napi_ok || !isBuffer ||
      napi_get_buffer_info(env, argv[1], &bytes, &length) != napi_ok || napi_get_value_int32(env, argv[0], &target) != napi_ok || target < 0 ||
      napi_get_value_double(env, argv[2], &position) != napi_ok) {
    napi_throw_type_error(env, NULL, usage);
    return NULL;
  }
  if (!isWholeOffset(position) || !isWholeOffset(position + (double)length)) {
    napi_throw_range_error(env, NULL, "writeData: the position must be a non-negative integer");
    return NULL;
  }
  WriteJob *job = newJob(env, sizeof *job);
  if (job == NULL) return NULL;
  job->batch.target = target;
  job->batch.source = -1;
  job->data = bytes;
  job->length = length;
  job->position = (int64_t)position;
  pthread_mutex_init(&job->batch.lock, NULL);
  queueWork(env, &job->batch.pool, "cdi-importer:writeData", argv[3], &argv[1], 1, executeWrite, completeWrite);
  return NULL;
}

/* inflate-clusters.c */
napi_value inflateClusters(napi_env env, napi_callback_info info);

NAPI_MODULE_INIT() {
  napi_value function;
#ifdef __GLIBC__
  /*
   * Freed memory stays with the allocator for the next allocation instead of going back to the
   * kernel. Each xz block's decoder allocates its dictionary (1-64 MiB) on a pool thread and frees
   * it when the block ends; glibc gave it back each time (madvise) and the next block faulted in
   * and zeroed fresh pages: ~30 000 of the 50 000 page faults of the qcow2.xz benchmark, ~0.1 s of
   * CPU on a run bound by CPU (2.48 -> 2.42 s, medians of 9). 32 MiB is glibc's largest mmap
   * threshold (allocations above it still get their own mapping, returned when freed).
   */
  mallopt(M_MMAP_THRESHOLD, 32 << 20);
  mallopt(M_TRIM_THRESHOLD, 128 << 20);
  /*
   * Each thread that allocates gets an arena of its own, up to 8 per core, each reserving 64 MiB of
   * address space: the pool and decoder threads took a 200 MiB raw.xz import to 1.2-1.3 GB of virtual
   * memory (55-108 MB resident), and under `ulimit -v 1048576` V8 then could not commit its heap and
   * aborted. Two arenas, as MALLOC_ARENA_MAX=2 gives, keep it at Node's own ~0.73 GB.
   */
  mallopt(M_ARENA_MAX, 2);
#endif
  napi_create_function(env, "copyRuns", NAPI_AUTO_LENGTH, copyRuns, NULL, &function);
  napi_set_named_property(env, exports, "copyRuns", function);
  napi_create_function(env, "writeData", NAPI_AUTO_LENGTH, writeDataFunction, NULL, &function);
  napi_set_named_property(env, exports, "writeData", function);
  napi_create_function(env, "inflateClusters", NAPI_AUTO_LENGTH, inflateClusters, NULL, &function);
  napi_set_named_property(env, exports, "inflateClusters", function);
  return exports;
}
