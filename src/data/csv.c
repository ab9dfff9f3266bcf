/* CSV records (RFC 4180) streamed from a file, shared by the CSV and manifest readers, and the
 * strict number parsing they use for fields. */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/status_internal.h"
#include "data/data_internal.h"

enum { CSV_CHUNK = 1 << 16 };
/* A record longer than this is not a CSV line but a damaged or binary file. */
#define CSV_MAX_BYTES ((size_t)1 << 31)
#define CSV_MAX_FIELDS (1 << 24)

dml_status dml__csv_open(dml__csv *c, const char *path, char delim) {
  memset(c, 0, sizeof *c);
  if (!path) return dml__error(DML_ERR_INVALID_ARGUMENT, "CSV path is NULL");
  c->path = path;
  c->delim = delim;
  c->next_line = 1;
  c->f = fopen(path, "rb");
  if (!c->f) return dml__error(DML_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
  c->in = malloc(CSV_CHUNK);
  if (!c->in) {
    dml__csv_close(c);
    return dml__error(DML_ERR_NO_MEMORY, "%s: out of memory", path);
  }
  c->in_len = fread(c->in, 1, CSV_CHUNK, c->f);
  if (c->in_len >= 3 && memcmp(c->in, "\xEF\xBB\xBF", 3) == 0) c->in_pos = 3;
  return DML_OK;
}

void dml__csv_close(dml__csv *c) {
  if (c->f) fclose(c->f);
  free(c->in);
  free(c->buf);
  free(c->starts);
  memset(c, 0, sizeof *c);
}

/* Next byte, or EOF (-1) at the end of the file or on a read error (checked by the caller). */
static int getch(dml__csv *c) {
  if (c->in_pos == c->in_len) {
    if (c->eof) return EOF;
    c->in_len = fread(c->in, 1, CSV_CHUNK, c->f);
    c->in_pos = 0;
    if (c->in_len == 0) {
      c->eof = 1;
      return EOF;
    }
  }
  return (unsigned char)c->in[c->in_pos++];
}

/* Consumes a '\n' right after a '\r' (CRLF is one line end). */
static void after_cr(dml__csv *c) {
  int ch = getch(c);
  if (ch != '\n' && ch != EOF) c->in_pos--; /* the byte just read is still in the buffer */
}

static dml_status put(dml__csv *c, char ch) {
  if (c->len + 1 >= c->cap) {
    if (c->cap >= CSV_MAX_BYTES)
      return dml__error(DML_ERR_FORMAT, "%s:%lld: record longer than %zu bytes (not a CSV file?)",
                        c->path, (long long)c->line, CSV_MAX_BYTES);
    size_t cap = c->cap ? c->cap * 2 : 256;
    char *b = realloc(c->buf, cap);
    if (!b) return dml__error(DML_ERR_NO_MEMORY, "%s: out of memory", c->path);
    c->buf = b;
    c->cap = cap;
  }
  c->buf[c->len++] = ch;
  return DML_OK;
}

static dml_status start_field(dml__csv *c) {
  if (c->nfields == c->cap_fields) {
    if (c->cap_fields >= CSV_MAX_FIELDS)
      return dml__error(DML_ERR_FORMAT, "%s:%lld: more than %d fields", c->path,
                        (long long)c->line, CSV_MAX_FIELDS);
    int cap = c->cap_fields ? c->cap_fields * 2 : 16;
    size_t *s = realloc(c->starts, (size_t)cap * sizeof *s);
    if (!s) return dml__error(DML_ERR_NO_MEMORY, "%s: out of memory", c->path);
    c->starts = s;
    c->cap_fields = cap;
  }
  c->starts[c->nfields++] = c->len;
  return DML_OK;
}

dml_status dml__csv_next(dml__csv *c, int *more) {
  *more = 0;
  for (;;) {
    c->len = 0;
    c->nfields = 0;
    c->line = c->next_line;
    int quoted_any = 0, blank = 1, ended = 0, at_eof = 0;
    DML_TRY(start_field(c));
    while (!ended) {
      int ch = getch(c);
      if (ch == '"' && c->len == c->starts[c->nfields - 1]) {
        /* a quoted field: runs to the next lone quote */
        quoted_any = 1;
        blank = 0;
        int64_t open_line = c->next_line;
        for (;;) {
          ch = getch(c);
          if (ch == EOF) {
            if (ferror(c->f)) break;
            return dml__error(DML_ERR_FORMAT,
                              "%s:%lld: quoted field opened on this line is never closed",
                              c->path, (long long)open_line);
          }
          if (ch == '"') {
            ch = getch(c);
            if (ch != '"') break;
          } else if (ch == '\n') {
            c->next_line++;
          }
          DML_TRY(put(c, (char)ch));
        }
        while (ch == ' ' || ch == '\t') ch = getch(c);
        if (ch != c->delim && ch != '\n' && ch != '\r' && ch != EOF)
          return dml__error(DML_ERR_FORMAT,
                            "%s:%lld: '%c' after a closing quote (a quote inside a quoted field "
                            "is written \"\")",
                            c->path, (long long)c->next_line, ch >= 32 && ch < 127 ? ch : '?');
      }
      if (ch == EOF) {
        if (ferror(c->f))
          return dml__error(DML_ERR_IO, "%s:%lld: read error: %s", c->path,
                            (long long)c->next_line, strerror(errno));
        at_eof = 1;
        ended = 1;
      } else if (ch == '\n' || ch == '\r') {
        if (ch == '\r') after_cr(c);
        c->next_line++;
        ended = 1;
      } else if (ch == c->delim) {
        blank = 0;
        DML_TRY(put(c, '\0'));
        DML_TRY(start_field(c));
      } else {
        if (ch != ' ' && ch != '\t') blank = 0;
        DML_TRY(put(c, (char)ch));
      }
    }
    DML_TRY(put(c, '\0'));
    if (blank && !quoted_any) {
      if (at_eof) return DML_OK;
      continue; /* blank line */
    }
    *more = 1;
    return DML_OK;
  }
}

int dml__parse_float(const char *s, float *out) {
  char *end;
  while (*s == ' ' || *s == '\t') s++;
  if (!*s) return 0;
  double v = strtod(s, &end);
  if (end == s) return 0;
  while (*end == ' ' || *end == '\t') end++;
  if (*end) return 0;
  *out = (float)v;
  return 1;
}

int dml__parse_int(const char *s, int64_t *out) {
  char *end;
  while (*s == ' ' || *s == '\t') s++;
  if (!*s || *s == ' ') return 0;
  errno = 0;
  long long v = strtoll(s, &end, 10);
  if (end == s || errno == ERANGE) return 0;
  while (*end == ' ' || *end == '\t') end++;
  if (*end) return 0;
  *out = v;
  return 1;
}
