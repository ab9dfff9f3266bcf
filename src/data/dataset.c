/* The dml_dataset struct itself: releasing it, row subsets, label filtering, and normalisation
 * (one mean/std for every value, or per channel of CHW examples). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/status_internal.h"
#include "data/data_internal.h"

void dml_dataset_free(dml_dataset *ds) {
  if (!ds) return;
  dml_free_aligned(ds->x);
  free(ds->labels);
  dml__strings_free(ds->class_names, ds->class_names ? ds->num_classes : 0);
  dml__strings_free(ds->paths, ds->paths ? ds->n : 0);
  free(ds->label_offsets);
  free(ds->label_values);
  memset(ds, 0, sizeof *ds);
}

dml_status dml_dataset_subset(const dml_dataset *src, const int64_t *rows, int64_t n,
                              dml_dataset *out) {
  if (!out) return dml__error(DML_ERR_INVALID_ARGUMENT, "dml_dataset_subset: out is NULL");
  memset(out, 0, sizeof *out);
  if (!src || (!rows && n > 0) || n < 0)
    return dml__error(DML_ERR_INVALID_ARGUMENT,
                      "dml_dataset_subset: NULL data set or rows, or negative count");
  for (int64_t i = 0; i < n; i++)
    if (rows[i] < 0 || rows[i] >= src->n)
      return dml__error(DML_ERR_INVALID_ARGUMENT,
                        "dml_dataset_subset: rows[%lld] = %lld is outside the data set's %lld "
                        "rows",
                        (long long)i, (long long)rows[i], (long long)src->n);
  const int64_t d = src->example_numel;
  out->n = n;
  out->ndim = src->ndim;
  memcpy(out->shape, src->shape, sizeof out->shape);
  out->example_numel = d;
  out->num_classes = src->num_classes;
  int oom = 0;
  out->x = dml_alloc_aligned((n * d > 0 ? n * d : 1) * (int64_t)sizeof(float));
  out->labels = malloc((size_t)(n > 0 ? n : 1) * sizeof(int32_t));
  oom |= !out->x || !out->labels;
  if (!oom && src->class_names) {
    out->class_names = calloc((size_t)(src->num_classes > 0 ? src->num_classes : 1),
                              sizeof(char *));
    oom |= !out->class_names;
    for (int32_t c = 0; !oom && c < src->num_classes; c++)
      oom |= !(out->class_names[c] = dml__strdup(src->class_names[c]));
  }
  if (!oom && src->paths) {
    out->paths = calloc((size_t)(n > 0 ? n : 1), sizeof(char *));
    oom |= !out->paths;
    for (int64_t i = 0; !oom && i < n; i++) oom |= !(out->paths[i] = dml__strdup(src->paths[rows[i]]));
  }
  if (!oom && src->label_offsets) {
    int64_t total = 0;
    for (int64_t i = 0; i < n; i++)
      total += src->label_offsets[rows[i] + 1] - src->label_offsets[rows[i]];
    out->label_offsets = malloc((size_t)(n + 1) * sizeof(int64_t));
    out->label_values = malloc((size_t)(total > 0 ? total : 1) * sizeof(int32_t));
    oom |= !out->label_offsets || !out->label_values;
    if (!oom) {
      out->label_offsets[0] = 0;
      for (int64_t i = 0; i < n; i++) {
        int64_t a = src->label_offsets[rows[i]], b = src->label_offsets[rows[i] + 1];
        memcpy(out->label_values + out->label_offsets[i], src->label_values + a,
               (size_t)(b - a) * sizeof(int32_t));
        out->label_offsets[i + 1] = out->label_offsets[i] + (b - a);
      }
    }
  }
  if (oom) {
    dml_dataset_free(out);
    return dml__error(DML_ERR_NO_MEMORY, "out of memory copying %lld rows of a data set",
                      (long long)n);
  }
  for (int64_t i = 0; i < n; i++) {
    memcpy(out->x + i * d, src->x + rows[i] * d, (size_t)d * sizeof(float));
    out->labels[i] = src->labels[rows[i]];
  }
  return DML_OK;
}

dml_status dml_dataset_normalize(dml_dataset *ds, float mean, float std) {
  if (!ds || !ds->x) return dml__error(DML_ERR_INVALID_ARGUMENT, "normalize: empty data set");
  if (!(std > 0)) return dml__error(DML_ERR_INVALID_ARGUMENT, "normalize: std must be > 0");
  int64_t n = ds->n * ds->example_numel;
  float inv = 1.0f / std;
#pragma omp parallel for schedule(static) if (n > 65536)
  for (int64_t i = 0; i < n; i++) ds->x[i] = (ds->x[i] - mean) * inv;
  return DML_OK;
}

dml_status dml_dataset_filter_labels(dml_dataset *ds, int32_t lo, int32_t hi) {
  if (!ds) return dml__error(DML_ERR_INVALID_ARGUMENT, "filter: NULL data set");
  int64_t k = 0, d = ds->example_numel, v = 0;
  for (int64_t i = 0; i < ds->n; i++) {
    int keep = ds->labels[i] >= lo && ds->labels[i] <= hi;
    if (ds->paths && !keep) free(ds->paths[i]);
    if (!keep) continue;
    if (k != i) memmove(ds->x + k * d, ds->x + i * d, (size_t)d * sizeof(float));
    ds->labels[k] = ds->labels[i];
    if (ds->paths) ds->paths[k] = ds->paths[i];
    if (ds->label_offsets) {
      /* compacting in place: the kept sets move towards the front, never past unread ones */
      int64_t a = ds->label_offsets[i], b = ds->label_offsets[i + 1];
      memmove(ds->label_values + v, ds->label_values + a, (size_t)(b - a) * sizeof(int32_t));
      ds->label_offsets[k] = v;
      v += b - a;
    }
    k++;
  }
  if (ds->label_offsets) ds->label_offsets[k] = v;
  ds->n = k;
  return DML_OK;
}

static dml_status check_channels(const dml_dataset *ds, int channels, const char *fn) {
  if (!ds || !ds->x || ds->n < 1)
    return dml__error(DML_ERR_INVALID_ARGUMENT, "%s: empty data set", fn);
  if (channels < 1 || ds->example_numel % channels != 0)
    return dml__error(DML_ERR_SHAPE,
                      "%s: %d channels do not divide the example size %lld (examples must be "
                      "[C, H, W] with C = channels)",
                      fn, channels, (long long)ds->example_numel);
  return DML_OK;
}

dml_status dml_dataset_channel_stats(const dml_dataset *ds, int channels, float *mean,
                                     float *std) {
  DML_TRY(check_channels(ds, channels, "dml_dataset_channel_stats"));
  if (!mean || !std)
    return dml__error(DML_ERR_INVALID_ARGUMENT, "dml_dataset_channel_stats: mean/std is NULL");
  const int64_t plane = ds->example_numel / channels;
  const double count = (double)ds->n * (double)plane;
  /* two passes (mean, then squared deviations) in double: no cancellation from sum x^2 */
  for (int c = 0; c < channels; c++) {
    double s = 0;
    for (int64_t i = 0; i < ds->n; i++) {
      const float *p = ds->x + i * ds->example_numel + c * plane;
      for (int64_t j = 0; j < plane; j++) s += p[j];
    }
    double m = s / count, q = 0;
    for (int64_t i = 0; i < ds->n; i++) {
      const float *p = ds->x + i * ds->example_numel + c * plane;
      for (int64_t j = 0; j < plane; j++) q += ((double)p[j] - m) * ((double)p[j] - m);
    }
    mean[c] = (float)m;
    std[c] = (float)sqrt(q / count);
  }
  return DML_OK;
}

dml_status dml_dataset_normalize_channels(dml_dataset *ds, int channels, const float *mean,
                                          const float *std) {
  DML_TRY(check_channels(ds, channels, "dml_dataset_normalize_channels"));
  if (!mean || !std)
    return dml__error(DML_ERR_INVALID_ARGUMENT,
                      "dml_dataset_normalize_channels: mean/std is NULL");
  for (int c = 0; c < channels; c++)
    if (!(std[c] > 0) || !isfinite(std[c]) || !isfinite(mean[c]))
      return dml__error(DML_ERR_INVALID_ARGUMENT,
                        "dml_dataset_normalize_channels: channel %d has mean %g, std %g (std "
                        "must be > 0 and both finite)",
                        c, (double)mean[c], (double)std[c]);
  const int64_t plane = ds->example_numel / channels, n = ds->n;
#pragma omp parallel for schedule(static) if (n * ds->example_numel > 65536)
  for (int64_t i = 0; i < n; i++)
    for (int c = 0; c < channels; c++) {
      float *p = ds->x + i * ds->example_numel + c * plane;
      const float m = mean[c], inv = 1.0f / std[c];
      for (int64_t j = 0; j < plane; j++) p[j] = (p[j] - m) * inv;
    }
  return DML_OK;
}
