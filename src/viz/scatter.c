/* The scatter plot of a 2-D map (PCA, t-SNE) coloured by class, with axes, title and legend. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/check.h"
#include "core/status_internal.h"
#include "viz/viz_internal.h"

#define MARGIN 12
#define LEGEND_LINE 14
#define MAX_TICKS 32

/* A filled disc of radius r (r = 0: one pixel). */
static void dot(dml_canvas *c, int x, int y, int r, uint32_t rgb) {
  for (int dy = -r; dy <= r; dy++) {
    const int hw = (int)floor(sqrt((double)(r * r - dy * dy) + 0.25));
    dml_canvas_fill_rect(c, x - hw, y + dy, 2 * hw + 1, 1, rgb);
  }
}

static void legend_name(const char *const *names, int cls, char *buf, int size) {
  if (cls < 0)
    snprintf(buf, (size_t)size, "unlabelled");
  else if (names && names[cls])
    snprintf(buf, (size_t)size, "%s", names[cls]);
  else
    snprintf(buf, (size_t)size, "%d", cls);
}

static void clip_text(char *buf, int max_w) {
  for (size_t len = strlen(buf); len > 0 && dml_canvas_text_width(buf, 1) > max_w; len--)
    buf[len - 1] = '\0';
}

dml_status dml_viz_scatter_png(const char *png_path, const float *xy, const int32_t *labels,
                               int64_t n, const char *const *class_names, int num_classes,
                               const char *title, int width, int height) {
  if (!png_path || !*png_path)
    return dml__error(DML_ERR_INVALID_ARGUMENT, "dml_viz_scatter_png: empty output path");
  if (n < 0 || (n > 0 && !xy) || width < 200 || height < 200 || width > 8192 ||
      height > 8192 || num_classes < 0)
    return dml__error(DML_ERR_INVALID_ARGUMENT,
                      "dml_viz_scatter_png ('%s'): n = %lld, %d x %d pixels, num_classes = %d "
                      "(need n >= 0 with points, sides 200..8192, num_classes >= 0)",
                      png_path, (long long)n, width, height, num_classes);
  if (class_names && num_classes == 0)
    return dml__error(DML_ERR_INVALID_ARGUMENT,
                      "dml_viz_scatter_png ('%s'): class_names given without num_classes",
                      png_path);
  if (n > 0) DML_TRY(dml__check_finite_rows(xy, n, 2, "dml_viz_scatter_png", "point"));
  int64_t classes = num_classes;
  int unlabelled = 0;
  if (labels) {
    int32_t max_label = -1;
    for (int64_t i = 0; i < n; i++) {
      if (labels[i] < 0) unlabelled = 1;
      if (labels[i] > max_label) max_label = labels[i];
      if (num_classes > 0 && labels[i] >= num_classes)
        return dml__error(DML_ERR_INVALID_ARGUMENT,
                          "dml_viz_scatter_png ('%s'): label %d of point %lld is not below "
                          "num_classes = %d",
                          png_path, (int)labels[i], (long long)i, num_classes);
    }
    if (num_classes == 0) classes = (int64_t)max_label + 1;
  }

  /* geometry: title, legend on the right, tick labels left of and below the box */
  double xlo = INFINITY, xhi = -INFINITY, ylo = INFINITY, yhi = -INFINITY;
  for (int64_t i = 0; i < n; i++) {
    xlo = fmin(xlo, xy[2 * i]);
    xhi = fmax(xhi, xy[2 * i]);
    ylo = fmin(ylo, xy[2 * i + 1]);
    yhi = fmax(yhi, xy[2 * i + 1]);
  }
  dml__axis_range(&xlo, &xhi, 0.04);
  dml__axis_range(&ylo, &yhi, 0.04);
  double xt[MAX_TICKS], yt[MAX_TICKS], xstep, ystep;
  const int nxt = dml__nice_ticks(xlo, xhi, 7, xt, MAX_TICKS, &xstep);
  const int nyt = dml__nice_ticks(ylo, yhi, 6, yt, MAX_TICKS, &ystep);
  char buf[160];
  int ytw = 0;
  for (int t = 0; t < nyt; t++) {
    dml__format_tick(yt[t], ystep, buf, (int)sizeof buf);
    const int tw = dml_canvas_text_width(buf, 1);
    if (tw > ytw) ytw = tw;
  }
  const int top = MARGIN + (title && *title ? 2 * DML__GRID_TEXT + 8 : 0);
  const int bottom = height - MARGIN - DML__GRID_TEXT - 6;
  /* legend: as many entries as fit under each other, then "+N more" */
  const int has_legend = labels && (classes > 0 || unlabelled);
  const int64_t entries = classes + unlabelled;
  const int room = (bottom - top) / LEGEND_LINE;
  const int shown = entries <= room ? (int)entries : (room > 1 ? room - 1 : 0);
  int legend_w = 0;
  if (has_legend) {
    for (int e = 0; e < shown; e++) {
      legend_name(class_names, e - unlabelled, buf, (int)sizeof buf);
      const int tw = dml_canvas_text_width(buf, 1);
      if (tw > legend_w) legend_w = tw;
    }
    legend_w += 16;
    if (legend_w < 60) legend_w = 60;
    if (legend_w > width / 3) legend_w = width / 3;
  }
  const int left = MARGIN + ytw + 8;
  const int right = width - MARGIN - (has_legend ? legend_w + MARGIN : 0);
  if (right - left < 40 || bottom - top < 40)
    return dml__error(DML_ERR_INVALID_ARGUMENT,
                      "dml_viz_scatter_png ('%s'): %d x %d pixels leave no room for the plot",
                      png_path, width, height);

  dml_canvas *c;
  DML_TRY(dml_canvas_new(width, height, DML__VIZ_BACKGROUND, &c));
  if (title && *title) {
    const int tw = dml_canvas_text_width(title, 2);
    dml_canvas_text(c, tw < width ? (width - tw) / 2 : 0, MARGIN, title, DML__VIZ_INK, 2);
  }
  const double sx = (right - left) / (xhi - xlo), sy = (bottom - top) / (yhi - ylo);
  for (int t = 0; t < nxt; t++) {
    const int px = left + (int)lround((xt[t] - xlo) * sx);
    dml_canvas_fill_rect(c, px, top, 1, bottom - top, DML__VIZ_GRID);
    dml_canvas_fill_rect(c, px, bottom, 1, 4, DML__VIZ_INK);
    dml__format_tick(xt[t], xstep, buf, (int)sizeof buf);
    dml_canvas_text(c, px - dml_canvas_text_width(buf, 1) / 2, bottom + 6, buf, DML__VIZ_INK, 1);
  }
  for (int t = 0; t < nyt; t++) {
    const int py = bottom - (int)lround((yt[t] - ylo) * sy);
    dml_canvas_fill_rect(c, left, py, right - left, 1, DML__VIZ_GRID);
    dml_canvas_fill_rect(c, left - 4, py, 4, 1, DML__VIZ_INK);
    dml__format_tick(yt[t], ystep, buf, (int)sizeof buf);
    dml_canvas_text(c, left - 6 - dml_canvas_text_width(buf, 1), py - 4, buf, DML__VIZ_INK, 1);
  }
  /* points: unlabelled first, so that classes are drawn over them */
  const int r = n <= 1000 ? 3 : n <= 10000 ? 2 : 1;
  for (int pass = 0; pass < 2; pass++)
    for (int64_t i = 0; i < n; i++) {
      const int32_t l = labels ? labels[i] : 0;
      if ((l < 0) != (pass == 0)) continue;
      const int px = left + (int)lround((xy[2 * i] - xlo) * sx);
      const int py = bottom - (int)lround((xy[2 * i + 1] - ylo) * sy);
      dot(c, px, py, r, dml_viz_class_colour(l));
    }
  /* the box over the points' edges */
  dml_canvas_fill_rect(c, left, top, right - left + 1, 1, DML__VIZ_INK);
  dml_canvas_fill_rect(c, left, bottom, right - left + 1, 1, DML__VIZ_INK);
  dml_canvas_fill_rect(c, left, top, 1, bottom - top + 1, DML__VIZ_INK);
  dml_canvas_fill_rect(c, right, top, 1, bottom - top + 1, DML__VIZ_INK);
  if (has_legend) {
    const int lx = right + MARGIN;
    for (int e = 0; e < shown; e++) {
      const int ly = top + e * LEGEND_LINE;
      dml_canvas_fill_rect(c, lx, ly + 1, 9, 9, dml_viz_class_colour(e - unlabelled));
      legend_name(class_names, e - unlabelled, buf, (int)sizeof buf);
      clip_text(buf, legend_w - 14);
      dml_canvas_text(c, lx + 14, ly + 1, buf, DML__VIZ_INK, 1);
    }
    if (shown < entries) {
      snprintf(buf, sizeof buf, "+%lld more", (long long)(entries - shown));
      dml_canvas_text(c, lx, top + shown * LEGEND_LINE + 1, buf, DML__VIZ_INK, 1);
    }
  }
  return dml__canvas_write_free(c, png_path);
}
