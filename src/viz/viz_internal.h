/* Internal pieces shared by the picture files of src/viz: the frame colours of the retrieval
 * grid and its geometry (exposed for the tests), axis ticks, number formatting, and PNG
 * writing of a canvas that a picture builds and frees. */
#ifndef DML_VIZ_INTERNAL_H
#define DML_VIZ_INTERNAL_H

#include <stdint.h>

#include "dml/viz.h"

#define DML__VIZ_BACKGROUND 0xffffffu
#define DML__VIZ_INK 0x202020u       /* text and axes */
#define DML__VIZ_GRID 0xe6e6e6u      /* grid lines */
#define DML__VIZ_MATCH 0x1a9641u     /* retrieved image of the query's class */
#define DML__VIZ_MISMATCH 0xd7191cu  /* retrieved image of another class */
#define DML__VIZ_QUERY 0x2b83bau     /* the query image */
#define DML__VIZ_EMPTY 0xf0f0f0u     /* a missing neighbour */

/* Retrieval grid geometry, in pixels. A cell is an image of (width * scale) x
 * (height * scale) inside a frame of DML__GRID_FRAME pixels; cell (row, col) has its frame's
 * top-left corner at dml__grid_cell_origin. Column 0 is the query, 1..k the neighbours. */
#define DML__GRID_MARGIN 10
#define DML__GRID_FRAME 3
#define DML__GRID_GAP 6     /* between cells of a row; twice this after the query */
#define DML__GRID_TEXT 12   /* one line of scale-1 text */

typedef struct dml__grid_geom {
  int img_w, img_h;   /* image size after scaling */
  int cell_w, cell_h; /* framed image */
  int row_h;          /* caption + cell + class line + gap */
  int header_h;
  int k;
  int width, height; /* the whole picture */
} dml__grid_geom;

/* Geometry for images of height x width pixels upscaled by scale, nq rows, k neighbours.
 * Returns 0 when the picture would exceed 16384 pixels on a side. */
int dml__grid_geometry(int height, int width, int scale, int nq, int k, dml__grid_geom *g);
void dml__grid_cell_origin(const dml__grid_geom *g, int row, int col, int *x, int *y);

/* "Nice" axis ticks (1, 2, 5 x 10^e) covering [lo, hi]: at most max_ticks values written to
 * ticks, first >= lo, last <= hi; returns the count. *step gets the spacing. */
int dml__nice_ticks(double lo, double hi, int target, double *ticks, int max_ticks,
                    double *step);

/* Widens [*lo, *hi] to a non-empty range (a single value v becomes v -/+ max(|v| 0.05, 0.5))
 * and pads it by `pad` of its width on both sides. */
void dml__axis_range(double *lo, double *hi, double pad);

/* A tick label: %g with at most 6 significant digits, "0" for values within step 1e-9 of 0. */
void dml__format_tick(double v, double step, char *buf, int size);

/* Writes c to path and frees it (also on failure). */
dml_status dml__canvas_write_free(dml_canvas *c, const char *path);

#endif
