/* Gallery internals shared with matching (match.c) and the gallery fuzz target. */
#ifndef DML_INDEX_GALLERY_INTERNAL_H
#define DML_INDEX_GALLERY_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "dml/index.h"

/* Every label of every item, concatenated (with repeats): pointers into the gallery. */
void dml__gallery_all_labels(const dml_gallery *g, const int32_t **labels, int64_t *count);

/* Parses a whole gallery file held in memory (path only names it in messages). */
dml_status dml__gallery_from_bytes(dml_gallery **out, const uint8_t *buf, size_t size,
                                   const char *path);

#endif
