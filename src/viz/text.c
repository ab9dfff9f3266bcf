/* Text on a canvas: stb_easy_font turns each character into axis-aligned quads of font pixels,
 * which are filled as scale x scale squares. This is the only file that includes
 * stb_easy_font.h (a header of static functions). */
#include <string.h>

#if defined(__GNUC__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wunused-function"
#pragma GCC diagnostic ignored "-Wmissing-braces"
#endif
#include <stb_easy_font.h>
#if defined(__GNUC__)
#pragma GCC diagnostic pop
#endif

#include "dml/viz.h"

#define LINE_H 12 /* stb_easy_font's line advance */
#define MAX_SCALE 64

/* stb_easy_font indexes its tables by c - 32 and reads entry c - 31: only 32..126 are safe. */
static char printable(char ch) {
  const unsigned char u = (unsigned char)ch;
  return (u >= 32 && u <= 126) ? ch : '?';
}

static int char_advance(char ch) {
  char s[2] = {printable(ch), '\0'};
  return stb_easy_font_width(s);
}

void dml_canvas_text(dml_canvas *c, int x, int y, const char *text, uint32_t rgb, int scale) {
  if (!c || !text) return;
  scale = scale < 1 ? 1 : scale > MAX_SCALE ? MAX_SCALE : scale;
  /* one character at a time: a glyph has at most a few dozen quads of 64 bytes each */
  float quads[1024];
  int pen_x = 0, pen_y = 0;
  for (const char *t = text; *t; t++) {
    if (*t == '\n') {
      pen_x = 0;
      pen_y += LINE_H;
      continue;
    }
    char s[2] = {printable(*t), '\0'};
    const int nq = stb_easy_font_print(0.0f, 0.0f, s, NULL, quads, (int)sizeof quads);
    for (int q = 0; q < nq; q++) {
      /* 4 vertices of 16 bytes (x, y, z, rgba); the quad spans the min..max corners */
      const float *v = quads + q * 16;
      float x0 = v[0], x1 = v[0], y0 = v[1], y1 = v[1];
      for (int j = 1; j < 4; j++) {
        const float vx = v[4 * j], vy = v[4 * j + 1];
        if (vx < x0) x0 = vx;
        if (vx > x1) x1 = vx;
        if (vy < y0) y0 = vy;
        if (vy > y1) y1 = vy;
      }
      const int px = x + (pen_x + (int)x0) * scale, py = y + (pen_y + (int)y0) * scale;
      dml_canvas_fill_rect(c, px, py, (int)(x1 - x0) * scale, (int)(y1 - y0) * scale, rgb);
    }
    pen_x += char_advance(*t);
  }
}

int dml_canvas_text_width(const char *text, int scale) {
  if (!text) return 0;
  scale = scale < 1 ? 1 : scale > MAX_SCALE ? MAX_SCALE : scale;
  int best = 0, cur = 0;
  for (const char *t = text; *t; t++) {
    if (*t == '\n') {
      cur = 0;
      continue;
    }
    cur += char_advance(*t);
    if (cur > best) best = cur;
  }
  return best * scale;
}

int dml_canvas_text_height(const char *text, int scale) {
  if (!text || !*text) return 0;
  scale = scale < 1 ? 1 : scale > MAX_SCALE ? MAX_SCALE : scale;
  int lines = 1;
  for (const char *t = text; *t; t++) lines += *t == '\n';
  return lines * LINE_H * scale;
}
