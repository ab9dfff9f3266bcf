/* NumPy .npy reader and writer (include/dml/npy.h). The format (numpy.lib.format):
 *   "\x93NUMPY", major, minor (1.0: a uint16 little-endian header length; 2.0 and 3.0: uint32;
 *   3.0 allows UTF-8 in the header), then the header: a Python dict literal such as
 *   {'descr': '<f4', 'fortran_order': False, 'shape': (60000, 128), }
 *   padded with spaces and ended by '\n' so that the data starts on a 64-byte boundary, then
 *   the elements in C (or Fortran) order.
 * The reader checks the body size against the header before allocating, so a lying header
 * costs nothing; the writer goes through the atomic writer (temporary file + rename). */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/status_internal.h"
#include "dml/npy.h"
#include "nn/safetensors_internal.h" /* dml__write_atomic */

#define MAX_HEADER (1 << 20)

int64_t dml_npy_itemsize(dml_npy_dtype dtype) { return dtype == DML_NPY_I64 ? 8 : 4; }

void dml_npy_free(dml_npy *a) {
  if (!a) return;
  dml_free_aligned(a->data);
  memset(a, 0, sizeof *a);
}

static const char *skip_space(const char *p, const char *end) {
  while (p < end && isspace((unsigned char)*p)) p++;
  return p;
}

/* The value after key `name` in the header dict (points at its first character), or NULL. */
static const char *find_key(const char *h, const char *end, const char *name) {
  const size_t n = strlen(name);
  for (const char *p = h; p + n + 2 <= end; p++) {
    if ((*p != '\'' && *p != '"') || p[n + 1] != *p || memcmp(p + 1, name, n) != 0) continue;
    const char *q = skip_space(p + n + 2, end);
    if (q >= end || *q != ':') continue;
    return skip_space(q + 1, end);
  }
  return NULL;
}

static dml_status parse_header(const char *path, const char *h, size_t len, dml_npy *out) {
  const char *end = h + len;
  const char *v = find_key(h, end, "descr");
  if (!v || (*v != '\'' && *v != '"'))
    return dml__error(DML_ERR_FORMAT, "%s: .npy header has no 'descr'", path);
  const char quote = *v++;
  const char *ve = memchr(v, quote, (size_t)(end - v));
  if (!ve || ve - v > 32)
    return dml__error(DML_ERR_FORMAT, "%s: .npy header has a malformed 'descr'", path);
  char descr[40];
  memcpy(descr, v, (size_t)(ve - v));
  descr[ve - v] = '\0';
  if (!strcmp(descr, "<f4")) {
    out->dtype = DML_NPY_F32;
  } else if (!strcmp(descr, "<i4")) {
    out->dtype = DML_NPY_I32;
  } else if (!strcmp(descr, "<i8")) {
    out->dtype = DML_NPY_I64;
  } else if (descr[0] == '>' && (!strcmp(descr + 1, "f4") || !strcmp(descr + 1, "i4") ||
                                 !strcmp(descr + 1, "i8"))) {
    return dml__error(DML_ERR_UNSUPPORTED,
                      "%s: big-endian array ('%s'); save it little-endian: "
                      "a.astype(a.dtype.newbyteorder('<'))",
                      path, descr);
  } else {
    return dml__error(DML_ERR_UNSUPPORTED,
                      "%s: array of dtype '%s'; dml reads float32 ('<f4'), int32 ('<i4') and "
                      "int64 ('<i8'): convert with a.astype(numpy.float32) (embeddings) or "
                      "a.astype(numpy.int64) (labels, ids)",
                      path, descr);
  }
  v = find_key(h, end, "fortran_order");
  if (!v) return dml__error(DML_ERR_FORMAT, "%s: .npy header has no 'fortran_order'", path);
  if ((size_t)(end - v) >= 4 && !memcmp(v, "True", 4))
    return dml__error(DML_ERR_UNSUPPORTED,
                      "%s: array in Fortran order; save a C-order copy: "
                      "numpy.save(path, numpy.ascontiguousarray(a))",
                      path);
  if ((size_t)(end - v) < 5 || memcmp(v, "False", 5))
    return dml__error(DML_ERR_FORMAT, "%s: .npy header has a malformed 'fortran_order'", path);
  v = find_key(h, end, "shape");
  if (!v || *v != '(')
    return dml__error(DML_ERR_FORMAT, "%s: .npy header has no 'shape' tuple", path);
  v++;
  out->ndim = 0;
  out->numel = 1;
  for (;;) {
    v = skip_space(v, end);
    if (v < end && *v == ')') break;
    if (v >= end || !isdigit((unsigned char)*v))
      return dml__error(DML_ERR_FORMAT, "%s: .npy header has a malformed 'shape'", path);
    int64_t dim = 0;
    while (v < end && isdigit((unsigned char)*v)) {
      if (dim > ((int64_t)1 << 50))
        return dml__error(DML_ERR_FORMAT, "%s: .npy shape is too large", path);
      dim = dim * 10 + (*v++ - '0');
    }
    if (out->ndim == DML_MAX_DIMS)
      return dml__error(DML_ERR_UNSUPPORTED, "%s: array of more than %d dimensions", path,
                        DML_MAX_DIMS);
    if (dim > 0 && out->numel > ((int64_t)1 << 56) / dim)
      return dml__error(DML_ERR_FORMAT, "%s: .npy shape is too large", path);
    out->shape[out->ndim++] = dim;
    out->numel *= dim;
    v = skip_space(v, end);
    if (v < end && *v == ',') v++;
    else if (v < end && *v == ')') break;
    else return dml__error(DML_ERR_FORMAT, "%s: .npy header has a malformed 'shape'", path);
  }
  return DML_OK;
}

static dml_status read_body(FILE *f, const char *path, dml_npy *out) {
  unsigned char pre[12];
  if (fread(pre, 1, 10, f) != 10 || memcmp(pre, "\x93NUMPY", 6) != 0)
    return dml__error(DML_ERR_FORMAT, "%s: not a .npy file (no \\x93NUMPY magic)", path);
  const int major = pre[6];
  size_t hlen, start;
  if (major == 1) {
    hlen = (size_t)pre[8] | (size_t)pre[9] << 8;
    start = 10;
  } else if (major == 2 || major == 3) {
    if (fread(pre + 10, 1, 2, f) != 2)
      return dml__error(DML_ERR_FORMAT, "%s: .npy file is truncated (in the header)", path);
    hlen = (size_t)pre[8] | (size_t)pre[9] << 8 | (size_t)pre[10] << 16 | (size_t)pre[11] << 24;
    start = 12;
  } else {
    return dml__error(DML_ERR_UNSUPPORTED, "%s: .npy format version %d.%d (dml reads 1.0-3.0)",
                      path, major, pre[7]);
  }
  if (hlen > MAX_HEADER)
    return dml__error(DML_ERR_FORMAT, "%s: .npy header of %zu bytes (corrupt?)", path, hlen);
  char *h = malloc(hlen + 1);
  if (!h) return dml__error(DML_ERR_NO_MEMORY, "%s: out of memory", path);
  if (fread(h, 1, hlen, f) != hlen) {
    free(h);
    return dml__error(DML_ERR_FORMAT, "%s: .npy file is truncated (in the header)", path);
  }
  h[hlen] = '\0';
  dml_status st = parse_header(path, h, hlen, out);
  free(h);
  DML_TRY(st);
  /* the body must be exactly numel elements: compare with the file size before allocating */
  if (fseek(f, 0, SEEK_END) != 0)
    return dml__error(DML_ERR_IO, "%s: cannot seek: %s", path, strerror(errno));
  const long size = ftell(f);
  const int64_t want = out->numel * dml_npy_itemsize(out->dtype);
  const int64_t have = size < 0 ? -1 : (int64_t)size - (int64_t)(start + hlen);
  if (have != want)
    return dml__error(DML_ERR_FORMAT,
                      "%s: .npy body is %lld bytes but its header describes %lld (%s)", path,
                      (long long)have, (long long)want,
                      have < want ? "truncated file" : "trailing bytes: corrupt file");
  if (fseek(f, (long)(start + hlen), SEEK_SET) != 0)
    return dml__error(DML_ERR_IO, "%s: cannot seek: %s", path, strerror(errno));
  out->data = dml_alloc_aligned(want > 0 ? want : 1);
  if (!out->data)
    return dml__error(DML_ERR_NO_MEMORY, "%s: out of memory for %lld bytes", path,
                      (long long)want);
  if (want > 0 && fread(out->data, 1, (size_t)want, f) != (size_t)want)
    return dml__error(DML_ERR_IO, "%s: read error: %s", path, strerror(errno));
  return DML_OK;
}

dml_status dml_npy_read(const char *path, dml_npy *out) {
  if (!path || !out) return dml__error(DML_ERR_INVALID_ARGUMENT, "dml_npy_read: NULL argument");
  memset(out, 0, sizeof *out);
  FILE *f = fopen(path, "rb");
  if (!f) return dml__error(DML_ERR_IO, "cannot open '%s': %s", path, strerror(errno));
  dml_status st = read_body(f, path, out);
  fclose(f);
  if (st != DML_OK) dml_npy_free(out);
  return st;
}

typedef struct {
  const char *header;
  size_t header_len;
  const void *data;
  size_t bytes;
} npy_write_ctx;

static dml_status write_npy_body(FILE *f, const char *path, void *vctx) {
  const npy_write_ctx *c = vctx;
  if (fwrite(c->header, 1, c->header_len, f) != c->header_len ||
      (c->bytes > 0 && fwrite(c->data, 1, c->bytes, f) != c->bytes))
    return dml__error(DML_ERR_IO, "cannot write '%s': %s", path, strerror(errno));
  return DML_OK;
}

dml_status dml_npy_write(const char *path, dml_npy_dtype dtype, int ndim, const int64_t *shape,
                         const void *data) {
  if (!path || (ndim > 0 && !shape))
    return dml__error(DML_ERR_INVALID_ARGUMENT, "dml_npy_write: NULL argument");
  if (dtype != DML_NPY_F32 && dtype != DML_NPY_I32 && dtype != DML_NPY_I64)
    return dml__error(DML_ERR_INVALID_ARGUMENT, "dml_npy_write: unknown dtype %d", (int)dtype);
  if (ndim < 0 || ndim > DML_MAX_DIMS)
    return dml__error(DML_ERR_INVALID_ARGUMENT, "dml_npy_write: ndim %d outside 0..%d", ndim,
                      DML_MAX_DIMS);
  int64_t numel = 1;
  char dims[DML_MAX_DIMS * 24 + 8];
  size_t dl = 0;
  dims[0] = '\0';
  for (int i = 0; i < ndim; i++) {
    if (shape[i] < 0 || (shape[i] > 0 && numel > ((int64_t)1 << 56) / shape[i]))
      return dml__error(DML_ERR_INVALID_ARGUMENT, "dml_npy_write: bad shape[%d] = %lld", i,
                        (long long)shape[i]);
    numel *= shape[i];
    dl += (size_t)snprintf(dims + dl, sizeof dims - dl, "%lld,%s", (long long)shape[i],
                           ndim > 1 && i < ndim - 1 ? " " : "");
  }
  if (ndim > 1) dl--, dims[dl] = '\0'; /* (2, 3) not (2, 3,); a 1-d shape keeps its comma */
  if (numel > 0 && !data)
    return dml__error(DML_ERR_INVALID_ARGUMENT, "dml_npy_write: NULL data");
  static const char *const descr[] = {"<f4", "<i4", "<i8"};
  char dict[DML_MAX_DIMS * 24 + 128];
  const int n = snprintf(dict, sizeof dict,
                         "{'descr': '%s', 'fortran_order': False, 'shape': (%s), }",
                         descr[dtype], dims);
  /* magic (6) + version (2) + length (2) + dict + padding + '\n', a multiple of 64 */
  const size_t total = ((size_t)10 + (size_t)n + 1 + 63) / 64 * 64;
  char header[sizeof dict + 128];
  memcpy(header, "\x93NUMPY\x01\x00", 8);
  const size_t hlen = total - 10;
  header[8] = (char)(hlen & 0xff);
  header[9] = (char)(hlen >> 8);
  memcpy(header + 10, dict, (size_t)n);
  memset(header + 10 + n, ' ', total - 10 - (size_t)n - 1);
  header[total - 1] = '\n';
  npy_write_ctx c = {header, total, data, (size_t)(numel * dml_npy_itemsize(dtype))};
  return dml__write_atomic(path, write_npy_body, &c);
}
