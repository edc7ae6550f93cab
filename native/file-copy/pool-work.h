/*
 * What the module's functions share: typed arrays taken from JavaScript, and work queued on libuv's
 * pool that holds the JavaScript values it uses until it is done, then calls back.
 */
#ifndef CDI_IMPORTER_POOL_WORK_H
#define CDI_IMPORTER_POOL_WORK_H

#include <node_api.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#define MAX_HELD 4

typedef struct {
  napi_async_work work;
  napi_ref callback;
  /* Buffers and arrays a pool thread reads or writes: referenced so they stay alive until complete. */
  napi_ref held[MAX_HELD];
  size_t heldCount;
} PoolWork;

/* The data of a typed array of type `want` at `value` (its length in elements), or NULL when it is not one. */
static inline void *typedArrayData(napi_env env, napi_value value, napi_typedarray_type want, size_t *length) {
  bool isTypedArray = false;
  napi_typedarray_type type;
  void *data;
  if (napi_is_typedarray(env, value, &isTypedArray) != napi_ok || !isTypedArray ||
      napi_get_typedarray_info(env, value, &type, length, &data, NULL, NULL) != napi_ok || type != want) {
    return NULL;
  }
  return data;
}

/* A whole, non-negative number below 2^53: a position or length as JavaScript holds one. */
static inline bool isWholeOffset(double value) {
  return value >= 0 && value <= 9007199254740991.0 && value == (double)(int64_t)value;
}

/* A zeroed job of `size` bytes, or NULL with an "out of memory" error thrown. */
static inline void *newJob(napi_env env, size_t size) {
  void *job = calloc(1, size);
  if (job == NULL) napi_throw_error(env, NULL, "out of memory");
  return job;
}

/* Queues `job` (a struct whose first member is a PoolWork) on the pool, holding `values` and the callback. */
static inline void queueWork(napi_env env, PoolWork *job, const char *name, napi_value callback, const napi_value *values, size_t count,
                             napi_async_execute_callback execute, napi_async_complete_callback complete) {
  napi_value resourceName;
  for (size_t i = 0; i < count && i < MAX_HELD; i++) napi_create_reference(env, values[i], 1, &job->held[job->heldCount++]);
  napi_create_reference(env, callback, 1, &job->callback);
  napi_create_string_utf8(env, name, NAPI_AUTO_LENGTH, &resourceName);
  napi_create_async_work(env, NULL, resourceName, execute, complete, job, &job->work);
  napi_queue_async_work(env, job->work);
}

/* From complete: lets the held values go, calls the callback with `argv`, and deletes the work (the job is the caller's to free). */
static inline void finishWork(napi_env env, PoolWork *job, size_t argc, napi_value *argv) {
  napi_value callback, global;
  for (size_t i = 0; i < job->heldCount; i++) napi_delete_reference(env, job->held[i]);
  napi_get_reference_value(env, job->callback, &callback);
  napi_get_global(env, &global);
  napi_call_function(env, global, callback, argc, argv, NULL);
  napi_delete_reference(env, job->callback);
  napi_delete_async_work(env, job->work);
}

#endif
