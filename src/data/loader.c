/* The training batch loader: batch plans (P x K sampler, seeded shuffle, sequential), gathering
 * and augmenting examples, and one pthread worker that keeps `prefetch` batches ready in a ring
 * of prefetch + 1 buffers.
 *
 * Determinism: batch i of epoch e is fill_batch(e, i), which reads only the data set, the
 * config, the epoch's plan (the sampler's epoch, or the shuffle keyed by e) and counter-based
 * random numbers keyed by (seed, stream(e), i * max_batch + j). Timing decides only when a
 * batch is made, never what it holds.
 *
 * Ring protocol (all counters are batch indices of the current epoch, under mu):
 *   released <= consumed <= produced <= end, produced - released <= nslots.
 * The worker fills batch `produced` in slot produced % nslots while produced - released <
 * nslots; the consumer hands out batch `consumed` once produced > consumed and keeps it until
 * its next call (then released = consumed). start_epoch bumps `generation`, so a batch the
 * worker was filling for the old epoch is dropped, and waits until the worker is idle before
 * it changes the plan. */
#define _POSIX_C_SOURCE 200809L
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "core/status_internal.h"
#include "dml/rng.h"
#include "dml/sampler.h"
#include "data/data_internal.h"

#define MAX_PREFETCH 1024
#define STREAM_SHUFFLE 0x4c4f414453485546ull /* "LOADSHUF" */
#define STREAM_AUGMENT 0x4c4f414441554745ull /* "LOADAUGE" */

typedef struct {
  float *x;
  int32_t *labels;
  int64_t *rows;
  int64_t size;
} slot;

struct dml_loader {
  const dml_dataset *ds;
  dml_loader_config cfg;
  dml_sampler *sampler; /* PK */
  int64_t *perm;        /* SHUFFLE: this epoch's order of the rows */
  int64_t num_batches, max_batch;
  int augment, C, H, W;
  int nslots;
  slot *slots;
  int64_t inject_at;

  int threaded;
  pthread_t thread;
  pthread_mutex_t mu;
  pthread_cond_t cv_work; /* consumer -> worker: work to do, or stop */
  pthread_cond_t cv_done; /* worker -> consumer: a batch is ready, or the worker went idle */
  /* under mu */
  int stop, active, busy, started;
  uint64_t generation;
  int64_t epoch, produced, consumed, released, end;
  int holding;
  int failed;
  int64_t fail_index;
  dml_status fail_status;
  char fail_msg[1024];
};

/* splitmix64's finaliser: one stream per (purpose, epoch). */
static uint64_t stream_of(uint64_t purpose, int64_t epoch) {
  uint64_t z = purpose + 0x9E3779B97F4A7C15ull * (uint64_t)(epoch + 1);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

/* Batch `index` of `epoch` into s. Reads the epoch's plan, which start_epoch does not change
 * while a fill runs. No OpenMP here: this runs on the worker thread. */
static dml_status fill_batch(dml_loader *l, int64_t epoch, int64_t index, slot *s) {
  const dml_dataset *ds = l->ds;
  const int64_t n = ds->n, d = ds->example_numel;
  if (index == l->inject_at)
    return dml__error(DML_ERR_INTERNAL, "injected failure at batch %lld", (long long)index);
  if (l->cfg.batching == DML_BATCHING_PK) {
    DML_TRY(dml_sampler_batch(l->sampler, index, s->rows));
    s->size = l->max_batch;
  } else {
    const int64_t bs = l->cfg.batch_size, start = index * bs;
    s->size = n - start < bs ? n - start : bs;
    for (int64_t j = 0; j < s->size; j++)
      s->rows[j] = l->cfg.batching == DML_BATCHING_SHUFFLE ? l->perm[start + j] : start + j;
  }
  const uint64_t stream = stream_of(STREAM_AUGMENT, epoch);
  for (int64_t j = 0; j < s->size; j++) {
    const int64_t r = s->rows[j];
    s->labels[j] = ds->labels[r];
    if (l->augment)
      DML_TRY(dml_augment_example(&l->cfg.augment, ds->x + r * d, s->x + j * d, l->C, l->H, l->W,
                                  l->cfg.seed, stream, (uint64_t)(index * l->max_batch + j)));
    else
      memcpy(s->x + j * d, ds->x + r * d, (size_t)d * sizeof(float));
  }
  return DML_OK;
}

static void *worker(void *arg) {
  dml_loader *l = arg;
  char msg[sizeof l->fail_msg];
  pthread_mutex_lock(&l->mu);
  for (;;) {
    while (!l->stop && !(l->active && !l->failed && l->produced < l->end &&
                         l->produced - l->released < l->nslots))
      pthread_cond_wait(&l->cv_work, &l->mu);
    if (l->stop) break;
    const int64_t b = l->produced, e = l->epoch;
    const uint64_t gen = l->generation;
    slot *s = &l->slots[b % l->nslots];
    l->busy = 1;
    pthread_mutex_unlock(&l->mu);
    dml_status st = fill_batch(l, e, b, s);
    if (st != DML_OK) snprintf(msg, sizeof msg, "%s", dml_last_error()); /* thread-local */
    pthread_mutex_lock(&l->mu);
    l->busy = 0;
    if (gen == l->generation) {
      if (st == DML_OK) {
        l->produced++;
      } else {
        l->failed = 1;
        l->fail_index = b;
        l->fail_status = st;
        memcpy(l->fail_msg, msg, sizeof msg);
      }
    }
    pthread_cond_broadcast(&l->cv_done);
  }
  pthread_mutex_unlock(&l->mu);
  return NULL;
}

void dml__loader_inject_error(dml_loader *l, int64_t index) {
  if (l) l->inject_at = index;
}

void dml_loader_free(dml_loader *l) {
  if (!l) return;
  if (l->threaded) {
    pthread_mutex_lock(&l->mu);
    l->stop = 1;
    pthread_cond_broadcast(&l->cv_work);
    pthread_mutex_unlock(&l->mu);
    pthread_join(l->thread, NULL);
    pthread_cond_destroy(&l->cv_work);
    pthread_cond_destroy(&l->cv_done);
    pthread_mutex_destroy(&l->mu);
  }
  for (int i = 0; l->slots && i < l->nslots; i++) {
    dml_free_aligned(l->slots[i].x);
    free(l->slots[i].labels);
    free(l->slots[i].rows);
  }
  free(l->slots);
  free(l->perm);
  dml_sampler_free(l->sampler);
  free(l);
}

static dml_status check_config(const dml_dataset *ds, const dml_loader_config *cfg) {
  if (!ds || !cfg)
    return dml__error(DML_ERR_INVALID_ARGUMENT, "dml_loader_new: data set or config is NULL");
  if (ds->n < 1 || !ds->x || !ds->labels || ds->example_numel < 1)
    return dml__error(DML_ERR_INVALID_ARGUMENT, "dml_loader_new: the data set is empty");
  if (cfg->prefetch < 0 || cfg->prefetch > MAX_PREFETCH)
    return dml__error(DML_ERR_INVALID_ARGUMENT, "dml_loader_new: prefetch %d is outside 0..%d",
                      cfg->prefetch, MAX_PREFETCH);
  switch (cfg->batching) {
    case DML_BATCHING_PK:
      if (cfg->p < 1 || cfg->k < 1)
        return dml__error(DML_ERR_INVALID_ARGUMENT, "dml_loader_new: P x K batches need p >= 1 "
                          "and k >= 1 (got p = %d, k = %d)", cfg->p, cfg->k);
      break;
    case DML_BATCHING_SHUFFLE:
    case DML_BATCHING_SEQUENTIAL:
      if (cfg->batch_size < 1)
        return dml__error(DML_ERR_INVALID_ARGUMENT, "dml_loader_new: batch_size %lld < 1",
                          (long long)cfg->batch_size);
      if (cfg->drop_last && cfg->batch_size > ds->n)
        return dml__error(DML_ERR_INVALID_ARGUMENT,
                          "dml_loader_new: with drop_last, batch_size %lld above the %lld "
                          "examples leaves no batch",
                          (long long)cfg->batch_size, (long long)ds->n);
      break;
    default:
      return dml__error(DML_ERR_INVALID_ARGUMENT, "dml_loader_new: unknown batching %d",
                        (int)cfg->batching);
  }
  if (dml_augment_enabled(&cfg->augment) &&
      (ds->ndim != 3 || ds->shape[0] < 1 || ds->shape[1] < 1 || ds->shape[2] < 1 ||
       ds->shape[0] > 1 << 20 || ds->shape[1] > 1 << 20 || ds->shape[2] > 1 << 20))
    return dml__error(DML_ERR_SHAPE,
                      "dml_loader_new: augmentation needs [C, H, W] examples, the data set's "
                      "examples have rank %d",
                      ds->ndim);
  return DML_OK;
}

dml_status dml_loader_new(const dml_dataset *ds, const dml_loader_config *cfg,
                          dml_loader **out) {
  if (!out) return dml__error(DML_ERR_INVALID_ARGUMENT, "dml_loader_new: out is NULL");
  *out = NULL;
  DML_TRY(check_config(ds, cfg));
  dml_loader *l = calloc(1, sizeof *l);
  if (!l) return dml__error(DML_ERR_NO_MEMORY, "out of memory");
  l->ds = ds;
  l->cfg = *cfg;
  l->inject_at = -1;
  dml_status st = DML_OK;
  if (cfg->batching == DML_BATCHING_PK) {
    st = dml_sampler_new_pk(ds->labels, ds->n, cfg->p, cfg->k, cfg->seed, &l->sampler);
    if (st == DML_OK) {
      l->num_batches = dml_sampler_num_batches(l->sampler);
      l->max_batch = dml_sampler_batch_size(l->sampler);
    }
  } else {
    const int64_t bs = cfg->batch_size, n = ds->n;
    l->max_batch = bs < n ? bs : n;
    l->num_batches = cfg->drop_last ? n / bs : n / bs + (n % bs != 0);
    if (cfg->batching == DML_BATCHING_SHUFFLE) {
      l->perm = malloc((size_t)n * sizeof(int64_t));
      if (!l->perm) st = dml__error(DML_ERR_NO_MEMORY, "out of memory");
    }
  }
  if (st == DML_OK && l->max_batch > (INT64_C(1) << 40) / ds->example_numel)
    st = dml__error(DML_ERR_INVALID_ARGUMENT, "dml_loader_new: batches of %lld examples of %lld "
                    "values are too large", (long long)l->max_batch, (long long)ds->example_numel);
  l->augment = dml_augment_enabled(&cfg->augment);
  if (l->augment) {
    l->C = (int)ds->shape[0];
    l->H = (int)ds->shape[1];
    l->W = (int)ds->shape[2];
  }
  l->nslots = cfg->prefetch + 1;
  if (st == DML_OK) {
    l->slots = calloc((size_t)l->nslots, sizeof(slot));
    if (!l->slots) st = dml__error(DML_ERR_NO_MEMORY, "out of memory");
  }
  for (int i = 0; st == DML_OK && i < l->nslots; i++) {
    slot *s = &l->slots[i];
    s->x = dml_alloc_aligned(l->max_batch * ds->example_numel * (int64_t)sizeof(float));
    s->labels = malloc((size_t)l->max_batch * sizeof(int32_t));
    s->rows = malloc((size_t)l->max_batch * sizeof(int64_t));
    if (!s->x || !s->labels || !s->rows)
      st = dml__error(DML_ERR_NO_MEMORY, "out of memory for %d batch buffers of %lld examples",
                      l->nslots, (long long)l->max_batch);
  }
  /* an invalid augmentation config fails here, not later on the worker */
  if (st == DML_OK && l->augment)
    st = dml_augment_example(&cfg->augment, ds->x, l->slots[0].x, l->C, l->H, l->W, 0, 0, 0);
  if (st == DML_OK && cfg->prefetch > 0) {
    int rc = pthread_mutex_init(&l->mu, NULL);
    if (rc == 0 && (rc = pthread_cond_init(&l->cv_work, NULL)) != 0) pthread_mutex_destroy(&l->mu);
    if (rc == 0 && (rc = pthread_cond_init(&l->cv_done, NULL)) != 0) {
      pthread_cond_destroy(&l->cv_work);
      pthread_mutex_destroy(&l->mu);
    }
    if (rc == 0 && (rc = pthread_create(&l->thread, NULL, worker, l)) != 0) {
      pthread_cond_destroy(&l->cv_done);
      pthread_cond_destroy(&l->cv_work);
      pthread_mutex_destroy(&l->mu);
    }
    if (rc != 0) st = dml__error(DML_ERR_INTERNAL, "dml_loader_new: cannot start the loader "
                                 "thread (error %d)", rc);
    else l->threaded = 1;
  }
  if (st != DML_OK) {
    dml_loader_free(l);
    return st;
  }
  *out = l;
  return DML_OK;
}

int64_t dml_loader_num_batches(const dml_loader *l) { return l ? l->num_batches : 0; }
int64_t dml_loader_max_batch_size(const dml_loader *l) { return l ? l->max_batch : 0; }

dml_status dml_loader_start_epoch(dml_loader *l, int64_t epoch, int64_t first_batch) {
  if (!l) return dml__error(DML_ERR_INVALID_ARGUMENT, "dml_loader_start_epoch: loader is NULL");
  if (epoch < 0 || first_batch < 0 || first_batch > l->num_batches)
    return dml__error(DML_ERR_INVALID_ARGUMENT,
                      "dml_loader_start_epoch: epoch %lld, first batch %lld (epochs are >= 0, "
                      "batches 0..%lld)",
                      (long long)epoch, (long long)first_batch, (long long)l->num_batches);
  if (l->threaded) {
    pthread_mutex_lock(&l->mu);
    l->generation++;
    l->active = 0;
    while (l->busy) pthread_cond_wait(&l->cv_done, &l->mu);
    pthread_mutex_unlock(&l->mu);
  }
  /* the worker is idle and stays so until active is set again */
  l->started = 0;
  if (l->cfg.batching == DML_BATCHING_PK) {
    DML_TRY(dml_sampler_epoch(l->sampler, epoch));
  } else if (l->cfg.batching == DML_BATCHING_SHUFFLE) {
    for (int64_t i = 0; i < l->ds->n; i++) l->perm[i] = i;
    dml_rng_shuffle_i64(l->perm, l->ds->n, l->cfg.seed, stream_of(STREAM_SHUFFLE, epoch));
  }
  if (l->threaded) pthread_mutex_lock(&l->mu);
  l->epoch = epoch;
  l->produced = l->consumed = l->released = first_batch;
  l->end = l->num_batches;
  l->holding = 0;
  l->failed = 0;
  l->started = 1;
  l->active = 1;
  if (l->threaded) {
    pthread_cond_broadcast(&l->cv_work);
    pthread_mutex_unlock(&l->mu);
  }
  return DML_OK;
}

static void set_batch(const dml_loader *l, const slot *s, int64_t index, dml_batch *out) {
  out->x = s->x;
  out->labels = s->labels;
  out->rows = s->rows;
  out->size = s->size;
  out->epoch = l->epoch;
  out->index = index;
}

dml_status dml_loader_next(dml_loader *l, dml_batch *out) {
  if (!l || !out) return dml__error(DML_ERR_INVALID_ARGUMENT, "dml_loader_next: NULL argument");
  memset(out, 0, sizeof *out);
  if (!l->threaded) {
    if (!l->started)
      return dml__error(DML_ERR_STATE, "dml_loader_next: call dml_loader_start_epoch first");
    out->epoch = l->epoch;
    out->index = l->consumed;
    if (l->consumed >= l->end) return DML_OK;
    if (l->failed) return dml__error(l->fail_status, "%s", l->fail_msg);
    dml_status st = fill_batch(l, l->epoch, l->consumed, &l->slots[0]);
    if (st != DML_OK) {
      l->failed = 1;
      l->fail_status = st;
      snprintf(l->fail_msg, sizeof l->fail_msg, "%s", dml_last_error());
      return st;
    }
    set_batch(l, &l->slots[0], l->consumed++, out);
    return DML_OK;
  }
  pthread_mutex_lock(&l->mu);
  if (!l->started) {
    pthread_mutex_unlock(&l->mu);
    return dml__error(DML_ERR_STATE, "dml_loader_next: call dml_loader_start_epoch first");
  }
  if (l->holding) {
    l->released = l->consumed;
    l->holding = 0;
    pthread_cond_signal(&l->cv_work);
  }
  out->epoch = l->epoch;
  out->index = l->consumed;
  if (l->consumed >= l->end) {
    pthread_mutex_unlock(&l->mu);
    return DML_OK;
  }
  while (l->produced <= l->consumed && !(l->failed && l->fail_index == l->consumed))
    pthread_cond_wait(&l->cv_done, &l->mu);
  if (l->produced <= l->consumed) {
    char msg[sizeof l->fail_msg];
    memcpy(msg, l->fail_msg, sizeof msg);
    dml_status st = l->fail_status;
    pthread_mutex_unlock(&l->mu);
    return dml__error(st, "%s", msg);
  }
  const int64_t b = l->consumed++;
  l->holding = 1;
  const slot *s = &l->slots[b % l->nslots];
  pthread_mutex_unlock(&l->mu);
  set_batch(l, s, b, out);
  return DML_OK;
}
