/* The RGB canvas: allocation, rectangles, lines, and writing it as PNG through stb_image_write
 * (whose implementation is in Debian's libstb) onto a temporary file that is renamed into
 * place. */
#include <stb_image_write.h>
#include <stdlib.h>
#include <string.h>

#include "core/status_internal.h"
#include "dml/viz.h"
#include "nn/safetensors_internal.h" /* dml__write_atomic */
#include "viz/viz_internal.h"

#define MAX_SIDE 16384

dml_status dml_canvas_new(int width, int height, uint32_t background_rgb, dml_canvas **out) {
  if (!out) return dml__error(DML_ERR_INVALID_ARGUMENT, "dml_canvas_new: out is NULL");
  *out = NULL;
  if (width < 1 || height < 1 || width > MAX_SIDE || height > MAX_SIDE)
    return dml__error(DML_ERR_INVALID_ARGUMENT,
                      "dml_canvas_new: a canvas of %d x %d pixels; each side must be 1..%d",
                      width, height, MAX_SIDE);
  dml_canvas *c = malloc(sizeof *c);
  const size_t bytes = (size_t)width * (size_t)height * 3;
  uint8_t *rgb = malloc(bytes);
  if (!c || !rgb) {
    free(c);
    free(rgb);
    return dml__error(DML_ERR_NO_MEMORY, "dml_canvas_new: out of memory for %d x %d pixels",
                      width, height);
  }
  c->width = width;
  c->height = height;
  c->rgb = rgb;
  dml_canvas_fill_rect(c, 0, 0, width, height, background_rgb);
  *out = c;
  return DML_OK;
}

void dml_canvas_free(dml_canvas *c) {
  if (!c) return;
  free(c->rgb);
  free(c);
}

void dml_canvas_fill_rect(dml_canvas *c, int x, int y, int w, int h, uint32_t rgb) {
  if (!c || w <= 0 || h <= 0) return;
  /* clip in 64 bits: x + w may overflow int for callers passing extreme values */
  int64_t x0 = x, y0 = y, x1 = (int64_t)x + w, y1 = (int64_t)y + h;
  if (x0 < 0) x0 = 0;
  if (y0 < 0) y0 = 0;
  if (x1 > c->width) x1 = c->width;
  if (y1 > c->height) y1 = c->height;
  if (x0 >= x1 || y0 >= y1) return;
  const uint8_t r = (uint8_t)(rgb >> 16), g = (uint8_t)(rgb >> 8), b = (uint8_t)rgb;
  for (int64_t yy = y0; yy < y1; yy++) {
    uint8_t *p = c->rgb + 3 * (yy * c->width + x0);
    for (int64_t xx = x0; xx < x1; xx++, p += 3) {
      p[0] = r;
      p[1] = g;
      p[2] = b;
    }
  }
}

/* Bresenham over the integer grid; each step stamps a thickness x thickness square centred on
 * the point, so diagonal and straight lines look equally heavy. */
void dml_canvas_line(dml_canvas *c, int x0, int y0, int x1, int y1, uint32_t rgb,
                     int thickness) {
  if (!c) return;
  thickness = thickness < 1 ? 1 : thickness > 64 ? 64 : thickness;
  const int off = (thickness - 1) / 2;
  /* clamp far-away endpoints so the loop stays bounded (a line leaving the canvas is still
   * drawn up to the border; the slope changes only for points beyond +-2^20) */
  const int lim = 1 << 20;
  x0 = x0 < -lim ? -lim : x0 > lim ? lim : x0;
  x1 = x1 < -lim ? -lim : x1 > lim ? lim : x1;
  y0 = y0 < -lim ? -lim : y0 > lim ? lim : y0;
  y1 = y1 < -lim ? -lim : y1 > lim ? lim : y1;
  const int dx = abs(x1 - x0), dy = -abs(y1 - y0);
  const int sx = x0 < x1 ? 1 : -1, sy = y0 < y1 ? 1 : -1;
  int err = dx + dy;
  for (;;) {
    dml_canvas_fill_rect(c, x0 - off, y0 - off, thickness, thickness, rgb);
    if (x0 == x1 && y0 == y1) break;
    const int e2 = 2 * err;
    if (e2 >= dy) {
      err += dy;
      x0 += sx;
    }
    if (e2 <= dx) {
      err += dx;
      y0 += sy;
    }
  }
}

typedef struct png_ctx {
  const dml_canvas *c;
  FILE *f;
  int failed;
} png_ctx;

static void png_sink(void *context, void *data, int size) {
  png_ctx *p = context;
  if (!p->failed && size > 0 && fwrite(data, 1, (size_t)size, p->f) != (size_t)size)
    p->failed = 1;
}

static dml_status png_body(FILE *f, const char *path, void *ctx) {
  png_ctx *p = ctx;
  p->f = f;
  if (!stbi_write_png_to_func(png_sink, p, p->c->width, p->c->height, 3, p->c->rgb,
                              p->c->width * 3))
    return dml__error(DML_ERR_NO_MEMORY, "cannot write '%s': PNG encoding of %d x %d pixels "
                      "failed (out of memory)", path, p->c->width, p->c->height);
  if (p->failed) return dml__error(DML_ERR_IO, "cannot write '%s': write failed", path);
  return DML_OK;
}

dml_status dml_canvas_write_png(const dml_canvas *c, const char *path) {
  if (!c || !c->rgb)
    return dml__error(DML_ERR_INVALID_ARGUMENT, "dml_canvas_write_png: no canvas for '%s'",
                      path ? path : "(null)");
  if (!path || !*path)
    return dml__error(DML_ERR_INVALID_ARGUMENT, "dml_canvas_write_png: empty output path");
  png_ctx p = {c, NULL, 0};
  return dml__write_atomic(path, png_body, &p);
}

dml_status dml__canvas_write_free(dml_canvas *c, const char *path) {
  dml_status st = dml_canvas_write_png(c, path);
  dml_canvas_free(c);
  return st;
}
