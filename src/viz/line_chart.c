/* Line charts (loss, learning rate, recall over epochs): one layout of axes, ticks and legend,
 * drawn either as SVG text or on a canvas written as PNG. A non-finite coordinate ends a line;
 * a point with no finite neighbour in its series is drawn as a dot. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "core/status_internal.h"
#include "nn/safetensors_internal.h" /* dml__write_atomic */
#include "viz/viz_internal.h"

#define MARGIN 12
#define MAX_TICKS 32
#define MAX_SERIES 64
#define LEGEND_LINE 16
#define SVG_W 800
#define SVG_H 500

typedef struct metrics {
  int (*text_w)(const char *); /* width of one line of tick or legend text */
  int line_h;                  /* height of that text */
  int title_h;                 /* height of the title line */
  int ylabel_left;             /* room left of the tick labels for a rotated y label */
  int ylabel_top;              /* room above the box for a horizontal y label */
} metrics;

typedef struct chart {
  double xlo, xhi, ylo, yhi, xstep, ystep;
  double xt[MAX_TICKS], yt[MAX_TICKS];
  int nxt, nyt;
  int left, top, right, bottom; /* the plot box */
  int legend_w, legend_shown;
} chart;

static int svg_text_w(const char *s) { return 7 * (int)strlen(s); } /* 12px sans-serif */
static int png_text_w(const char *s) { return dml_canvas_text_width(s, 1); }

static const char *series_name(const dml_series *s, int k, char *buf, int size) {
  if (s[k].name) return s[k].name;
  snprintf(buf, (size_t)size, "series %d", k);
  return buf;
}

/* Point i of a series; 0 when it is a gap. */
static int point(const dml_series *s, int64_t i, double *x, double *y) {
  *x = s->x ? s->x[i] : (double)i;
  *y = s->y[i];
  return isfinite(*x) && isfinite(*y);
}

static dml_status check_series(const char *fn, const char *path, const dml_series *s, int ns) {
  if (!path || !*path) return dml__error(DML_ERR_INVALID_ARGUMENT, "%s: empty output path", fn);
  if (!s || ns < 1 || ns > MAX_SERIES)
    return dml__error(DML_ERR_INVALID_ARGUMENT, "%s ('%s'): %d series (need 1..%d)", fn, path,
                      ns, MAX_SERIES);
  for (int k = 0; k < ns; k++)
    if (s[k].n < 0 || (s[k].n > 0 && !s[k].y))
      return dml__error(DML_ERR_INVALID_ARGUMENT, "%s ('%s'): series %d has n = %lld and %s",
                        fn, path, k, (long long)s[k].n, s[k].y ? "values" : "no values");
  return DML_OK;
}

static int layout(chart *ch, int width, int height, const char *title, const char *x_label,
                  const dml_series *s, int ns, const metrics *m) {
  double xlo = INFINITY, xhi = -INFINITY, ylo = INFINITY, yhi = -INFINITY;
  for (int k = 0; k < ns; k++)
    for (int64_t i = 0; i < s[k].n; i++) {
      double x, y;
      if (!point(&s[k], i, &x, &y)) continue;
      xlo = fmin(xlo, x);
      xhi = fmax(xhi, x);
      ylo = fmin(ylo, y);
      yhi = fmax(yhi, y);
    }
  dml__axis_range(&xlo, &xhi, 0.0);
  dml__axis_range(&ylo, &yhi, 0.05);
  ch->xlo = xlo;
  ch->xhi = xhi;
  ch->ylo = ylo;
  ch->yhi = yhi;
  ch->nxt = dml__nice_ticks(xlo, xhi, 8, ch->xt, MAX_TICKS, &ch->xstep);
  ch->nyt = dml__nice_ticks(ylo, yhi, 6, ch->yt, MAX_TICKS, &ch->ystep);
  char buf[64], nb[32];
  int ytw = 0;
  for (int t = 0; t < ch->nyt; t++) {
    dml__format_tick(ch->yt[t], ch->ystep, buf, (int)sizeof buf);
    const int w = m->text_w(buf);
    if (w > ytw) ytw = w;
  }
  int lw = 0;
  for (int k = 0; k < ns; k++) {
    const int w = m->text_w(series_name(s, k, nb, (int)sizeof nb));
    if (w > lw) lw = w;
  }
  lw += 28; /* swatch and gap */
  if (lw > width / 4) lw = width / 4;
  ch->legend_w = lw;
  ch->top = MARGIN + (title && *title ? m->title_h + 8 : 0) + m->ylabel_top;
  ch->left = MARGIN + m->ylabel_left + ytw + 8;
  ch->right = width - MARGIN - lw - MARGIN;
  ch->bottom = height - MARGIN - m->line_h - 6 - (x_label && *x_label ? m->line_h + 6 : 0);
  const int room = (ch->bottom - ch->top) / LEGEND_LINE;
  ch->legend_shown = ns <= room ? ns : (room > 1 ? room - 1 : 0);
  return ch->right - ch->left >= 40 && ch->bottom - ch->top >= 40;
}

static double map_x(const chart *ch, double x) {
  return ch->left + (x - ch->xlo) / (ch->xhi - ch->xlo) * (ch->right - ch->left);
}
static double map_y(const chart *ch, double y) {
  return ch->bottom - (y - ch->ylo) / (ch->yhi - ch->ylo) * (ch->bottom - ch->top);
}

/* ---- SVG ------------------------------------------------------------------------------- */
static void svg_escaped(FILE *f, const char *s) {
  for (; s && *s; s++) {
    const unsigned char ch = (unsigned char)*s;
    if (ch == '&') fputs("&amp;", f);
    else if (ch == '<') fputs("&lt;", f);
    else if (ch == '>') fputs("&gt;", f);
    else if (ch == '"') fputs("&quot;", f);
    else if (ch == '\'') fputs("&apos;", f);
    else if (ch < 32) fputc(' ', f); /* control characters are not allowed in XML 1.0 */
    else fputc(ch, f);
  }
}

static void svg_text(FILE *f, double x, double y, const char *anchor, const char *extra,
                     const char *text) {
  fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"%s\"%s>", x, y, anchor, extra);
  svg_escaped(f, text);
  fputs("</text>\n", f);
}

typedef struct svg_ctx {
  const char *title, *x_label, *y_label;
  const dml_series *s;
  int ns;
  const chart *ch;
} svg_ctx;

static dml_status svg_body(FILE *f, const char *path, void *ctx) {
  const svg_ctx *c = ctx;
  const chart *ch = c->ch;
  char buf[64], nb[32];
  fprintf(f,
          "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" "
          "viewBox=\"0 0 %d %d\" font-family=\"sans-serif\" font-size=\"12\">\n",
          SVG_W, SVG_H, SVG_W, SVG_H);
  fprintf(f, "<rect width=\"%d\" height=\"%d\" fill=\"#ffffff\"/>\n", SVG_W, SVG_H);
  if (c->title && *c->title)
    svg_text(f, SVG_W / 2.0, MARGIN + 14, "middle", " font-size=\"16\" font-weight=\"bold\"",
             c->title);
  for (int t = 0; t < ch->nxt; t++) {
    const double x = map_x(ch, ch->xt[t]);
    fprintf(f, "<line x1=\"%.1f\" y1=\"%d\" x2=\"%.1f\" y2=\"%d\" stroke=\"#%06x\"/>\n", x,
            ch->top, x, ch->bottom + 4, DML__VIZ_GRID);
    dml__format_tick(ch->xt[t], ch->xstep, buf, (int)sizeof buf);
    svg_text(f, x, ch->bottom + 18, "middle", "", buf);
  }
  for (int t = 0; t < ch->nyt; t++) {
    const double y = map_y(ch, ch->yt[t]);
    fprintf(f, "<line x1=\"%d\" y1=\"%.1f\" x2=\"%d\" y2=\"%.1f\" stroke=\"#%06x\"/>\n",
            ch->left - 4, y, ch->right, y, DML__VIZ_GRID);
    dml__format_tick(ch->yt[t], ch->ystep, buf, (int)sizeof buf);
    svg_text(f, ch->left - 8, y + 4, "end", "", buf);
  }
  fprintf(f,
          "<rect x=\"%d\" y=\"%d\" width=\"%d\" height=\"%d\" fill=\"none\" "
          "stroke=\"#%06x\"/>\n",
          ch->left, ch->top, ch->right - ch->left, ch->bottom - ch->top, DML__VIZ_INK);
  if (c->x_label && *c->x_label)
    svg_text(f, (ch->left + ch->right) / 2.0, SVG_H - MARGIN, "middle", "", c->x_label);
  if (c->y_label && *c->y_label) {
    const double cy = (ch->top + ch->bottom) / 2.0;
    char rot[64];
    snprintf(rot, sizeof rot, " transform=\"rotate(-90 %d %.1f)\"", MARGIN + 10, cy);
    svg_text(f, MARGIN + 10, cy, "middle", rot, c->y_label);
  }
  for (int k = 0; k < c->ns; k++) {
    const dml_series *s = &c->s[k];
    const uint32_t col = dml_viz_class_colour(k);
    fprintf(f, "<g stroke=\"#%06x\" fill=\"#%06x\">\n", col, col);
    for (int64_t i = 0; i < s->n; i++) {
      double x, y, xp, yp, xn, yn;
      if (!point(s, i, &x, &y)) continue;
      const int prev = i > 0 && point(s, i - 1, &xp, &yp);
      const int next = i + 1 < s->n && point(s, i + 1, &xn, &yn);
      if (!prev && !next) {
        fprintf(f, "<circle cx=\"%.2f\" cy=\"%.2f\" r=\"2.5\" stroke=\"none\"/>\n",
                map_x(ch, x), map_y(ch, y));
        continue;
      }
      /* one path element per run of finite points */
      fputs(prev ? " L" : "<path fill=\"none\" stroke-width=\"2\" d=\"M", f);
      fprintf(f, "%.2f %.2f", map_x(ch, x), map_y(ch, y));
      if (!next) fputs("\"/>\n", f);
    }
    fputs("</g>\n", f);
  }
  const int lx = ch->right + MARGIN;
  for (int k = 0; k < ch->legend_shown; k++) {
    const int ly = ch->top + k * LEGEND_LINE;
    fprintf(f,
            "<line x1=\"%d\" y1=\"%d\" x2=\"%d\" y2=\"%d\" stroke=\"#%06x\" "
            "stroke-width=\"3\"/>\n",
            lx, ly + 8, lx + 18, ly + 8, dml_viz_class_colour(k));
    svg_text(f, lx + 24, ly + 12, "start", "", series_name(c->s, k, nb, (int)sizeof nb));
  }
  if (ch->legend_shown < c->ns) {
    snprintf(buf, sizeof buf, "+%d more", c->ns - ch->legend_shown);
    svg_text(f, lx, ch->top + ch->legend_shown * LEGEND_LINE + 12, "start", "", buf);
  }
  fputs("</svg>\n", f);
  if (ferror(f)) return dml__error(DML_ERR_IO, "cannot write '%s': write failed", path);
  return DML_OK;
}

dml_status dml_viz_line_chart_svg(const char *svg_path, const char *title, const char *x_label,
                                  const char *y_label, const dml_series *series,
                                  int num_series) {
  DML_TRY(check_series("dml_viz_line_chart_svg", svg_path, series, num_series));
  const metrics m = {svg_text_w, 14, 18, 20, 0};
  chart ch;
  if (!layout(&ch, SVG_W, SVG_H, title, x_label, series, num_series, &m))
    return dml__error(DML_ERR_INVALID_ARGUMENT,
                      "dml_viz_line_chart_svg ('%s'): the series names leave no room for the "
                      "plot", svg_path);
  svg_ctx c = {title, x_label, y_label, series, num_series, &ch};
  return dml__write_atomic(svg_path, svg_body, &c);
}

/* ---- PNG ------------------------------------------------------------------------------- */
dml_status dml_viz_line_chart_png(const char *png_path, const char *title, const char *x_label,
                                  const char *y_label, const dml_series *series, int num_series,
                                  int width, int height) {
  DML_TRY(check_series("dml_viz_line_chart_png", png_path, series, num_series));
  if (width < 200 || height < 200 || width > 8192 || height > 8192)
    return dml__error(DML_ERR_INVALID_ARGUMENT,
                      "dml_viz_line_chart_png ('%s'): %d x %d pixels (sides 200..8192)",
                      png_path, width, height);
  const int has_ylabel = y_label && *y_label;
  const metrics m = {png_text_w, DML__GRID_TEXT, 2 * DML__GRID_TEXT, 0,
                     has_ylabel ? DML__GRID_TEXT + 4 : 0};
  chart ch;
  if (!layout(&ch, width, height, title, x_label, series, num_series, &m))
    return dml__error(DML_ERR_INVALID_ARGUMENT,
                      "dml_viz_line_chart_png ('%s'): %d x %d pixels leave no room for the plot",
                      png_path, width, height);
  dml_canvas *c;
  DML_TRY(dml_canvas_new(width, height, DML__VIZ_BACKGROUND, &c));
  char buf[64], nb[32];
  if (title && *title) {
    const int tw = dml_canvas_text_width(title, 2);
    dml_canvas_text(c, tw < width ? (width - tw) / 2 : 0, MARGIN, title, DML__VIZ_INK, 2);
  }
  for (int t = 0; t < ch.nxt; t++) {
    const int x = (int)lround(map_x(&ch, ch.xt[t]));
    dml_canvas_fill_rect(c, x, ch.top, 1, ch.bottom - ch.top + 4, DML__VIZ_GRID);
    dml__format_tick(ch.xt[t], ch.xstep, buf, (int)sizeof buf);
    dml_canvas_text(c, x - dml_canvas_text_width(buf, 1) / 2, ch.bottom + 6, buf, DML__VIZ_INK,
                    1);
  }
  for (int t = 0; t < ch.nyt; t++) {
    const int y = (int)lround(map_y(&ch, ch.yt[t]));
    dml_canvas_fill_rect(c, ch.left - 4, y, ch.right - ch.left + 4, 1, DML__VIZ_GRID);
    dml__format_tick(ch.yt[t], ch.ystep, buf, (int)sizeof buf);
    dml_canvas_text(c, ch.left - 8 - dml_canvas_text_width(buf, 1), y - 4, buf, DML__VIZ_INK, 1);
  }
  if (x_label && *x_label)
    dml_canvas_text(c, (ch.left + ch.right - dml_canvas_text_width(x_label, 1)) / 2,
                    height - MARGIN - DML__GRID_TEXT, x_label, DML__VIZ_INK, 1);
  if (has_ylabel)
    dml_canvas_text(c, MARGIN, ch.top - DML__GRID_TEXT - 2, y_label, DML__VIZ_INK, 1);
  for (int k = 0; k < num_series; k++) {
    const dml_series *s = &series[k];
    const uint32_t col = dml_viz_class_colour(k);
    for (int64_t i = 0; i < s->n; i++) {
      double x, y, xn, yn, xp, yp;
      if (!point(s, i, &x, &y)) continue;
      const int next = i + 1 < s->n && point(s, i + 1, &xn, &yn);
      const int prev = i > 0 && point(s, i - 1, &xp, &yp);
      const int px = (int)lround(map_x(&ch, x)), py = (int)lround(map_y(&ch, y));
      if (next)
        dml_canvas_line(c, px, py, (int)lround(map_x(&ch, xn)), (int)lround(map_y(&ch, yn)), col,
                        2);
      else if (!prev)
        dml_canvas_fill_rect(c, px - 2, py - 2, 5, 5, col);
    }
  }
  dml_canvas_fill_rect(c, ch.left, ch.top, ch.right - ch.left + 1, 1, DML__VIZ_INK);
  dml_canvas_fill_rect(c, ch.left, ch.bottom, ch.right - ch.left + 1, 1, DML__VIZ_INK);
  dml_canvas_fill_rect(c, ch.left, ch.top, 1, ch.bottom - ch.top + 1, DML__VIZ_INK);
  dml_canvas_fill_rect(c, ch.right, ch.top, 1, ch.bottom - ch.top + 1, DML__VIZ_INK);
  const int lx = ch.right + MARGIN;
  for (int k = 0; k < ch.legend_shown; k++) {
    const int ly = ch.top + k * LEGEND_LINE;
    dml_canvas_fill_rect(c, lx, ly + 5, 18, 3, dml_viz_class_colour(k));
    snprintf(buf, sizeof buf, "%s", series_name(series, k, nb, (int)sizeof nb));
    for (size_t len = strlen(buf); len > 0 && dml_canvas_text_width(buf, 1) > ch.legend_w - 24;
         len--)
      buf[len - 1] = '\0';
    dml_canvas_text(c, lx + 24, ly + 1, buf, DML__VIZ_INK, 1);
  }
  if (ch.legend_shown < num_series) {
    snprintf(buf, sizeof buf, "+%d more", num_series - ch.legend_shown);
    dml_canvas_text(c, lx, ch.top + ch.legend_shown * LEGEND_LINE + 1, buf, DML__VIZ_INK, 1);
  }
  return dml__canvas_write_free(c, png_path);
}
