/* Bump allocator for activations, gradients and graph nodes of one training step.
 * dml__arena_reset drops everything at once. When a step needed more than one chunk, reset
 * replaces the chunks by a single one large enough for the whole step, so from the second step
 * on a step of the same shape performs no heap allocation. */
#ifndef DML_CORE_ARENA_H
#define DML_CORE_ARENA_H

#include <stdint.h>

typedef struct dml__arena_chunk dml__arena_chunk;

typedef struct dml__arena {
  dml__arena_chunk *head;  /* current chunk (most recent) */
  int64_t used_in_step;    /* bytes handed out since the last reset */
  int64_t peak_step_bytes; /* largest step seen */
  int64_t heap_allocations; /* chunks malloc'ed over the arena's life */
} dml__arena;

void dml__arena_init(dml__arena *a, int64_t initial_bytes);
/* 64-byte aligned memory, uninitialised; NULL when out of memory. */
void *dml__arena_alloc(dml__arena *a, int64_t bytes);
/* Same, zero-filled. */
void *dml__arena_calloc(dml__arena *a, int64_t bytes);
void dml__arena_reset(dml__arena *a);
void dml__arena_free(dml__arena *a);

#endif
