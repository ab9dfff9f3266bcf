/* The retrieval grid: for each query, its image and the images of its nearest references,
 * framed by whether the reference's class is the query's, with captions. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "core/status_internal.h"
#include "dml/viz.h"
#include "viz/viz_internal.h"

#define MAX_SIDE 16384
#define HEADER_TEXT \
  "Retrieval: each row is a query (blue) and its nearest references, green = same class, " \
  "red = other class"

int dml__grid_geometry(int height, int width, int scale, int nq, int k, dml__grid_geom *g) {
  const int64_t img_w = (int64_t)width * scale, img_h = (int64_t)height * scale;
  const int64_t cell_w = img_w + 2 * DML__GRID_FRAME, cell_h = img_h + 2 * DML__GRID_FRAME;
  const int64_t row_h = DML__GRID_TEXT + 2 + cell_h + 2 + DML__GRID_TEXT + 2 * DML__GRID_GAP;
  const int64_t header_h = 2 * DML__GRID_TEXT;
  int64_t w = 2 * DML__GRID_MARGIN + cell_w + 2 * DML__GRID_GAP +
              (int64_t)k * (cell_w + DML__GRID_GAP) - DML__GRID_GAP;
  const int64_t header_w = 2 * DML__GRID_MARGIN + dml_canvas_text_width(HEADER_TEXT, 1);
  if (w < header_w) w = header_w;
  const int64_t h = 2 * DML__GRID_MARGIN + header_h + (int64_t)nq * row_h - 2 * DML__GRID_GAP;
  if (w > MAX_SIDE || h > MAX_SIDE) return 0;
  *g = (dml__grid_geom){(int)img_w, (int)img_h, (int)cell_w, (int)cell_h, (int)row_h,
                        (int)header_h, k, (int)w, (int)h};
  return 1;
}

void dml__grid_cell_origin(const dml__grid_geom *g, int row, int col, int *x, int *y) {
  *x = DML__GRID_MARGIN +
       (col == 0 ? 0 : g->cell_w + 2 * DML__GRID_GAP + (col - 1) * (g->cell_w + DML__GRID_GAP));
  *y = DML__GRID_MARGIN + g->header_h + row * g->row_h + DML__GRID_TEXT + 2;
}

static dml_status check_set(const dml_image_set *s, const char *what) {
  if (!s || !s->x)
    return dml__error(DML_ERR_INVALID_ARGUMENT, "dml_viz_retrieval_grid: no %s images", what);
  if (s->n < 1 || (s->channels != 1 && s->channels != 3) || s->height < 1 || s->width < 1 ||
      s->height > 4096 || s->width > 4096)
    return dml__error(DML_ERR_INVALID_ARGUMENT,
                      "dml_viz_retrieval_grid: %s set of %lld images of %d x %d x %d (CHW); "
                      "need n >= 1, 1 or 3 channels, sides 1..4096",
                      what, (long long)s->n, s->channels, s->height, s->width);
  if (!isfinite(s->mean) || !isfinite(s->std))
    return dml__error(DML_ERR_NOT_FINITE, "dml_viz_retrieval_grid: %s set has mean %g, std %g",
                      what, (double)s->mean, (double)s->std);
  return DML_OK;
}

static uint8_t to_byte(float v, float mean, float std) {
  const float p = v * std + mean;
  if (!(p > 0.0f)) return 0; /* also NaN */
  if (p >= 1.0f) return 255;
  return (uint8_t)(p * 255.0f + 0.5f);
}

/* Draws image `row` of s at (x, y), each pixel a scale x scale square. */
static void draw_image(dml_canvas *c, const dml_image_set *s, int64_t row, int x, int y,
                       int scale) {
  const int64_t plane = (int64_t)s->height * s->width;
  const float *img = s->x + row * s->channels * plane;
  for (int i = 0; i < s->height; i++)
    for (int j = 0; j < s->width; j++) {
      uint32_t rgb = 0;
      for (int ch = 0; ch < 3; ch++) {
        const int src = s->channels == 3 ? ch : 0;
        rgb = (rgb << 8) | to_byte(img[src * plane + (int64_t)i * s->width + j], s->mean, s->std);
      }
      dml_canvas_fill_rect(c, x + j * scale, y + i * scale, scale, scale, rgb);
    }
}

static void class_text(int32_t label, const char *const *names, int num_classes, char *buf,
                       int size) {
  if (names && label >= 0 && label < num_classes && names[label])
    snprintf(buf, (size_t)size, "%s", names[label]);
  else
    snprintf(buf, (size_t)size, "%d", (int)label);
}

/* Cuts text so that it fits in max_w pixels, ending it with ".." when cut. */
static void fit_text(char *buf, int size, int max_w) {
  if (dml_canvas_text_width(buf, 1) <= max_w) return;
  char tmp[160];
  tmp[0] = '\0';
  for (int len = (int)strlen(buf) - 1; len >= 0; len--) {
    snprintf(tmp, sizeof tmp, "%.*s..", len, buf);
    if (dml_canvas_text_width(tmp, 1) <= max_w) break;
    tmp[0] = '\0';
  }
  size_t n = strlen(tmp);
  if (n >= (size_t)size) n = (size_t)size - 1;
  memcpy(buf, tmp, n);
  buf[n] = '\0';
}

static void frame(dml_canvas *c, int x, int y, const dml__grid_geom *g, uint32_t rgb) {
  const int f = DML__GRID_FRAME;
  dml_canvas_fill_rect(c, x, y, g->cell_w, f, rgb);
  dml_canvas_fill_rect(c, x, y + g->cell_h - f, g->cell_w, f, rgb);
  dml_canvas_fill_rect(c, x, y, f, g->cell_h, rgb);
  dml_canvas_fill_rect(c, x + g->cell_w - f, y, f, g->cell_h, rgb);
}

dml_status dml_viz_retrieval_grid(const char *png_path, const dml_image_set *queries,
                                  const int32_t *query_labels, const int64_t *query_rows, int nq,
                                  const dml_image_set *refs, const int32_t *ref_labels,
                                  const int64_t *neighbours, int k,
                                  const char *const *class_names, int num_classes, int scale) {
  if (!png_path || !*png_path)
    return dml__error(DML_ERR_INVALID_ARGUMENT, "dml_viz_retrieval_grid: empty output path");
  const char *path = png_path;
  DML_TRY(check_set(queries, "query"));
  DML_TRY(check_set(refs, "reference"));
  if (queries->channels != refs->channels || queries->height != refs->height ||
      queries->width != refs->width)
    return dml__error(DML_ERR_SHAPE,
                      "dml_viz_retrieval_grid ('%s'): query images are %d x %d x %d, reference "
                      "images %d x %d x %d",
                      path, queries->channels, queries->height, queries->width, refs->channels,
                      refs->height, refs->width);
  if (!query_labels || !ref_labels || !neighbours)
    return dml__error(DML_ERR_INVALID_ARGUMENT,
                      "dml_viz_retrieval_grid ('%s'): query_labels, ref_labels and neighbours "
                      "are required", path);
  if (nq < 1 || nq > 1000 || k < 1 || k > 100 || scale < 1 || scale > 16 || num_classes < 0)
    return dml__error(DML_ERR_INVALID_ARGUMENT,
                      "dml_viz_retrieval_grid ('%s'): nq = %d (1..1000), k = %d (1..100), "
                      "scale = %d (1..16), num_classes = %d (>= 0)",
                      path, nq, k, scale, num_classes);
  for (int i = 0; i < nq; i++) {
    const int64_t q = query_rows ? query_rows[i] : i;
    if (q < 0 || q >= queries->n)
      return dml__error(DML_ERR_INVALID_ARGUMENT,
                        "dml_viz_retrieval_grid ('%s'): query_rows[%d] = %lld is not a row of "
                        "the %lld query images", path, i, (long long)q, (long long)queries->n);
    for (int j = 0; j < k; j++) {
      const int64_t r = neighbours[(int64_t)i * k + j];
      if (r < -1 || r >= refs->n)
        return dml__error(DML_ERR_INVALID_ARGUMENT,
                          "dml_viz_retrieval_grid ('%s'): neighbours[%d * %d + %d] = %lld is "
                          "not -1 or a row of the %lld reference images",
                          path, i, k, j, (long long)r, (long long)refs->n);
    }
  }
  dml__grid_geom g;
  if (!dml__grid_geometry(queries->height, queries->width, scale, nq, k, &g))
    return dml__error(DML_ERR_INVALID_ARGUMENT,
                      "dml_viz_retrieval_grid ('%s'): %d rows of %d + 1 images of %d x %d at "
                      "scale %d exceed %d pixels on a side; lower the scale, k or the rows",
                      path, nq, k, queries->height, queries->width, scale, MAX_SIDE);
  dml_canvas *c;
  DML_TRY(dml_canvas_new(g.width, g.height, DML__VIZ_BACKGROUND, &c));
  dml_canvas_text(c, DML__GRID_MARGIN, DML__GRID_MARGIN, HEADER_TEXT, DML__VIZ_INK, 1);
  char name[128], line[192];
  for (int i = 0; i < nq; i++) {
    const int64_t q = query_rows ? query_rows[i] : i;
    const int32_t ql = query_labels[q];
    int x, y;
    dml__grid_cell_origin(&g, i, 0, &x, &y);
    class_text(ql, class_names, num_classes, name, (int)sizeof name);
    if (class_names && ql >= 0 && ql < num_classes && class_names[ql])
      snprintf(line, sizeof line, "query %lld: %s (class %d)", (long long)q, name, (int)ql);
    else
      snprintf(line, sizeof line, "query %lld: class %s", (long long)q, name);
    dml_canvas_text(c, x, y - DML__GRID_TEXT - 2, line, DML__VIZ_INK, 1);
    frame(c, x, y, &g, DML__VIZ_QUERY);
    draw_image(c, queries, q, x + DML__GRID_FRAME, y + DML__GRID_FRAME, scale);
    for (int j = 0; j < k; j++) {
      const int64_t r = neighbours[(int64_t)i * k + j];
      dml__grid_cell_origin(&g, i, j + 1, &x, &y);
      if (r < 0) {
        dml_canvas_fill_rect(c, x, y, g.cell_w, g.cell_h, DML__VIZ_EMPTY);
        continue;
      }
      const int32_t rl = ref_labels[r];
      frame(c, x, y, &g, rl == ql ? DML__VIZ_MATCH : DML__VIZ_MISMATCH);
      draw_image(c, refs, r, x + DML__GRID_FRAME, y + DML__GRID_FRAME, scale);
      class_text(rl, class_names, num_classes, name, (int)sizeof name);
      fit_text(name, (int)sizeof name, g.cell_w + DML__GRID_GAP - 1);
      dml_canvas_text(c, x, y + g.cell_h + 2, name,
                      rl == ql ? DML__VIZ_MATCH : DML__VIZ_MISMATCH, 1);
    }
  }
  return dml__canvas_write_free(c, png_path);
}
