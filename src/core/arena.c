/* Bump allocator with chunk coalescing on reset (see arena.h). */
#include "core/arena.h"

#include <stdlib.h>
#include <string.h>

struct dml__arena_chunk {
  dml__arena_chunk *prev;
  int64_t capacity;
  int64_t used;
  unsigned char *base; /* 64-byte aligned */
};

static dml__arena_chunk *chunk_new(dml__arena *a, int64_t capacity) {
  dml__arena_chunk *c = malloc(sizeof *c);
  if (!c) return NULL;
  capacity = (capacity + 63) / 64 * 64;
  c->base = aligned_alloc(64, (size_t)capacity);
  if (!c->base) {
    free(c);
    return NULL;
  }
  c->capacity = capacity;
  c->used = 0;
  c->prev = NULL;
  a->heap_allocations++;
  return c;
}

static void chunks_free(dml__arena_chunk *c) {
  while (c) {
    dml__arena_chunk *p = c->prev;
    free(c->base);
    free(c);
    c = p;
  }
}

void dml__arena_init(dml__arena *a, int64_t initial_bytes) {
  memset(a, 0, sizeof *a);
  if (initial_bytes < (1 << 20)) initial_bytes = 1 << 20;
  a->head = chunk_new(a, initial_bytes);
}

void *dml__arena_alloc(dml__arena *a, int64_t bytes) {
  if (bytes < 0) return NULL;
  int64_t need = (bytes + 63) / 64 * 64;
  if (need == 0) need = 64;
  if (!a->head || a->head->used + need > a->head->capacity) {
    int64_t cap = a->head ? a->head->capacity * 2 : (1 << 20);
    if (cap < need) cap = need;
    dml__arena_chunk *c = chunk_new(a, cap);
    if (!c) return NULL;
    c->prev = a->head;
    a->head = c;
  }
  void *p = a->head->base + a->head->used;
  a->head->used += need;
  a->used_in_step += need;
  if (a->used_in_step > a->peak_step_bytes) a->peak_step_bytes = a->used_in_step;
  return p;
}

void *dml__arena_calloc(dml__arena *a, int64_t bytes) {
  void *p = dml__arena_alloc(a, bytes);
  if (p) memset(p, 0, (size_t)bytes);
  return p;
}

void dml__arena_reset(dml__arena *a) {
  if (a->head && a->head->prev) {
    /* The step spilled into several chunks: replace them by one that holds the peak. */
    int64_t want = a->peak_step_bytes + a->peak_step_bytes / 8;
    chunks_free(a->head);
    a->head = chunk_new(a, want);
  }
  if (a->head) a->head->used = 0;
  a->used_in_step = 0;
}

void dml__arena_free(dml__arena *a) {
  chunks_free(a->head);
  memset(a, 0, sizeof *a);
}
