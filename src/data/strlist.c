/* Small string helpers for the readers: copies, path joins, trimming, and a growable list of
 * strings that can be sorted, de-duplicated and searched (class names, label names). */
#include <stdlib.h>
#include <string.h>

#include "core/status_internal.h"
#include "data/data_internal.h"

char *dml__strdup(const char *s) {
  size_t n = strlen(s) + 1;
  char *d = malloc(n);
  if (d) memcpy(d, s, n);
  return d;
}

char *dml__path_join(const char *a, const char *b) {
  if (!a || !a[0]) return dml__strdup(b);
  size_t na = strlen(a), nb = strlen(b);
  int slash = a[na - 1] != '/';
  char *d = malloc(na + (size_t)slash + nb + 1);
  if (!d) return NULL;
  memcpy(d, a, na);
  if (slash) d[na] = '/';
  memcpy(d + na + slash, b, nb + 1);
  return d;
}

void dml__strings_free(char **s, int64_t n) {
  if (!s) return;
  for (int64_t i = 0; i < n; i++) free(s[i]);
  free(s);
}

int dml__cmp_strp(const void *a, const void *b) {
  return strcmp(*(char *const *)a, *(char *const *)b);
}

char *dml__trim(char *s) {
  while (*s == ' ' || *s == '\t') s++;
  size_t n = strlen(s);
  while (n > 0 && (s[n - 1] == ' ' || s[n - 1] == '\t')) s[--n] = '\0';
  return s;
}

dml_status dml__strlist_push(dml__strlist *l, const char *s) {
  if (l->n == l->cap) {
    int64_t cap = l->cap ? l->cap * 2 : 16;
    char **items = realloc(l->items, (size_t)cap * sizeof *items);
    if (!items) return dml__error(DML_ERR_NO_MEMORY, "out of memory (list of %lld strings)",
                                  (long long)cap);
    l->items = items;
    l->cap = cap;
  }
  char *d = dml__strdup(s);
  if (!d) return dml__error(DML_ERR_NO_MEMORY, "out of memory copying a string");
  l->items[l->n++] = d;
  return DML_OK;
}

void dml__strlist_sort_unique(dml__strlist *l) {
  if (l->n < 2) return;
  qsort(l->items, (size_t)l->n, sizeof *l->items, dml__cmp_strp);
  int64_t k = 1;
  for (int64_t i = 1; i < l->n; i++) {
    if (strcmp(l->items[i], l->items[k - 1]) == 0) {
      free(l->items[i]);
    } else {
      l->items[k++] = l->items[i];
    }
  }
  l->n = k;
}

int64_t dml__strlist_find(const dml__strlist *l, const char *s) {
  int64_t lo = 0, hi = l->n;
  while (lo < hi) {
    int64_t mid = lo + (hi - lo) / 2;
    int c = strcmp(l->items[mid], s);
    if (c == 0) return mid;
    if (c < 0) lo = mid + 1;
    else hi = mid;
  }
  return -1;
}

void dml__strlist_free(dml__strlist *l) {
  dml__strings_free(l->items, l->n);
  memset(l, 0, sizeof *l);
}
