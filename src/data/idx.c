/* IDX reader (LeCun's MNIST format, used by Fashion-MNIST): big-endian header
 *   [0, 0, type, rank] [dim_0] ... [dim_rank-1] (uint32 each), then the data;
 * type 0x08 = unsigned byte. Files may be gzip-compressed (zlib reads both). */
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "core/status_internal.h"
#include "dml/data.h"

typedef struct {
  int rank;
  int64_t dims[8];
  int64_t count; /* product of dims */
} idx_header;

static dml_status read_exact(gzFile f, void *buf, int64_t n, const char *path, const char *what) {
  unsigned char *p = buf;
  while (n > 0) {
    unsigned chunk = n > (1 << 30) ? (1u << 30) : (unsigned)n;
    int got = gzread(f, p, chunk);
    if (got < 0) {
      int err;
      const char *msg = gzerror(f, &err);
      return dml__error(DML_ERR_IO, "%s: read error in %s: %s", path, what, msg);
    }
    if (got == 0)
      return dml__error(DML_ERR_FORMAT, "%s: file is truncated (in %s)", path, what);
    p += got;
    n -= got;
  }
  return DML_OK;
}

static dml_status read_header(gzFile f, const char *path, int want_rank_min, idx_header *h) {
  unsigned char magic[4];
  DML_TRY(read_exact(f, magic, 4, path, "the IDX magic number"));
  if (magic[0] != 0 || magic[1] != 0)
    return dml__error(DML_ERR_FORMAT,
                      "%s: not an IDX file (magic bytes %02x %02x %02x %02x; expected 00 00 08 ..)",
                      path, magic[0], magic[1], magic[2], magic[3]);
  if (magic[2] != 0x08)
    return dml__error(DML_ERR_UNSUPPORTED,
                      "%s: IDX element type 0x%02x is not supported (only unsigned bytes, 0x08)",
                      path, magic[2]);
  h->rank = magic[3];
  if (h->rank < want_rank_min || h->rank > 4)
    return dml__error(DML_ERR_FORMAT, "%s: IDX rank %d, expected %s", path, h->rank,
                      want_rank_min == 1 ? "1 (labels)" : "2 to 4 (images)");
  h->count = 1;
  for (int i = 0; i < h->rank; i++) {
    unsigned char b[4];
    DML_TRY(read_exact(f, b, 4, path, "the IDX dimensions"));
    h->dims[i] = ((int64_t)b[0] << 24) | ((int64_t)b[1] << 16) | ((int64_t)b[2] << 8) | b[3];
    if (h->dims[i] <= 0 || h->dims[i] > (1 << 28))
      return dml__error(DML_ERR_FORMAT, "%s: IDX dimension %d is %lld", path, i,
                        (long long)h->dims[i]);
    if (h->count > ((int64_t)1 << 36) / h->dims[i])
      return dml__error(DML_ERR_FORMAT, "%s: IDX header promises more than 2^36 values", path);
    h->count *= h->dims[i];
  }
  return DML_OK;
}

static dml_status open_gz(const char *path, gzFile *out) {
  if (!path) return dml__error(DML_ERR_INVALID_ARGUMENT, "IDX path is NULL");
  gzFile f = gzopen(path, "rb");
  if (!f) return dml__error(DML_ERR_IO, "%s: cannot open (missing file or no permission)", path);
  *out = f;
  return DML_OK;
}

/* Reads the labels, then streams the images a row at a time, converting only the rows kept
 * (limit, then the excluded labels): the whole file is never in memory as bytes, and the
 * dropped rows are never in memory as floats. */
static dml_status read_idx(const char *images_path, const char *labels_path, int64_t limit,
                           const int32_t *exclude, int num_exclude, dml_dataset *out) {
  if (!out) return dml__error(DML_ERR_INVALID_ARGUMENT, "dml_data_read_idx: out is NULL");
  memset(out, 0, sizeof *out);
  if (num_exclude < 0 || (num_exclude > 0 && !exclude))
    return dml__error(DML_ERR_INVALID_ARGUMENT, "dml_data_read_idx: bad excluded labels");
  gzFile fi = NULL, fl = NULL;
  unsigned char *lab = NULL, *row = NULL;
  dml_status st = open_gz(images_path, &fi);
  if (st == DML_OK) st = open_gz(labels_path, &fl);
  idx_header hi, hl;
  if (st == DML_OK) st = read_header(fi, images_path, 2, &hi);
  if (st == DML_OK) st = read_header(fl, labels_path, 1, &hl);
  if (st == DML_OK && hl.rank != 1)
    st = dml__error(DML_ERR_FORMAT, "%s: labels must be rank 1, file has rank %d", labels_path,
                    hl.rank);
  if (st == DML_OK && hl.dims[0] != hi.dims[0])
    st = dml__error(DML_ERR_SHAPE, "%s has %lld images but %s has %lld labels", images_path,
                    (long long)hi.dims[0], labels_path, (long long)hl.dims[0]);
  if (st == DML_OK) {
    int64_t n = hi.dims[0];
    int64_t per = hi.count / n;
    int64_t scan = (limit > 0 && limit < n) ? limit : n;
    /* [n,F] -> examples [F]; [n,H,W] -> [1,H,W] (one channel); [n,C,H,W] -> [C,H,W] */
    if (hi.rank == 3) {
      out->ndim = 3;
      out->shape[0] = 1;
      out->shape[1] = hi.dims[1];
      out->shape[2] = hi.dims[2];
    } else {
      out->ndim = hi.rank - 1;
      for (int i = 1; i < hi.rank; i++) out->shape[i - 1] = hi.dims[i];
    }
    out->example_numel = per;
    lab = malloc((size_t)(scan > 0 ? scan : 1));
    row = malloc((size_t)(per > 0 ? per : 1));
    if (!lab || !row) st = dml__error(DML_ERR_NO_MEMORY, "out of memory reading %s", labels_path);
    if (st == DML_OK) st = read_exact(fl, lab, scan, labels_path, "the label data");
    int64_t keep = 0;
    for (int64_t i = 0; st == DML_OK && i < scan; i++) {
      int skip = 0;
      for (int e = 0; e < num_exclude; e++) skip |= exclude[e] == (int32_t)lab[i];
      keep += !skip;
      if (lab[i] + 1 > out->num_classes) out->num_classes = lab[i] + 1;
    }
    if (st == DML_OK && keep == 0)
      st = dml__error(DML_ERR_FORMAT, "%s: no example is left after leaving out the excluded "
                      "labels", labels_path);
    if (st == DML_OK) {
      out->n = keep;
      out->x = dml_alloc_aligned(keep * per * (int64_t)sizeof(float));
      out->labels = malloc((size_t)keep * sizeof(int32_t));
      if (!out->x || !out->labels)
        st = dml__error(DML_ERR_NO_MEMORY, "out of memory reading %lld images", (long long)keep);
    }
    for (int64_t i = 0, k = 0; st == DML_OK && i < scan; i++) {
      st = read_exact(fi, row, per, images_path, "the image data");
      int skip = 0;
      for (int e = 0; e < num_exclude; e++) skip |= exclude[e] == (int32_t)lab[i];
      if (st != DML_OK || skip) continue;
      float *dst = out->x + k * per;
      for (int64_t j = 0; j < per; j++) dst[j] = row[j] * (1.0f / 255.0f);
      out->labels[k++] = lab[i];
    }
  }
  free(lab);
  free(row);
  if (fi) gzclose(fi);
  if (fl) gzclose(fl);
  if (st != DML_OK) dml_dataset_free(out);
  return st;
}

dml_status dml_data_read_idx(const char *images_path, const char *labels_path, int64_t limit,
                             dml_dataset *out) {
  return read_idx(images_path, labels_path, limit, NULL, 0, out);
}

dml_status dml_data_read_idx_excluding(const char *images_path, const char *labels_path,
                                       int64_t limit, const int32_t *exclude_labels,
                                       int num_exclude, dml_dataset *out) {
  return read_idx(images_path, labels_path, limit, exclude_labels, num_exclude, out);
}
