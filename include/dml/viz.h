/* Pictures of a training report: an RGB canvas with text, a retrieval grid, a class-coloured
 * scatter plot, line charts (SVG and PNG), and the 2-D projections (PCA, exact t-SNE) that
 * feed the scatter plot. The caller owns every input array and every output buffer; a canvas
 * is allocated by dml_canvas_new and freed by dml_canvas_free. Nothing is retained after a
 * call returns. Files are written atomically (a temporary name, then rename): a failed write
 * leaves whatever was at the path before. Definitions and limits: docs/viz.md. */
#ifndef DML_VIZ_H
#define DML_VIZ_H

#include <stdint.h>

#include "dml/status.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- Canvas ------------------------------------------------------------------------------
 * Colours are 0xRRGGBB. Pixel (x, y) is rgb[3 * (y * width + x) + {0, 1, 2}], y downwards.
 * Drawing calls clip to the canvas and never fail. */
typedef struct dml_canvas {
  int width, height;
  uint8_t *rgb; /* width * height * 3 bytes, owned by the canvas */
} dml_canvas;

/* A width x height canvas filled with background_rgb; 1 <= width, height <= 16384. */
dml_status dml_canvas_new(int width, int height, uint32_t background_rgb, dml_canvas **out);
void dml_canvas_free(dml_canvas *c);

/* Fills the rectangle [x, x + w) x [y, y + h). */
void dml_canvas_fill_rect(dml_canvas *c, int x, int y, int w, int h, uint32_t rgb);

/* Straight line from (x0, y0) to (x1, y1) inclusive, `thickness` pixels wide (1..64). */
void dml_canvas_line(dml_canvas *c, int x0, int y0, int x1, int y1, uint32_t rgb,
                     int thickness);

/* Text with its top-left corner at (x, y), drawn with stb_easy_font's bitmap glyphs, each
 * font pixel a scale x scale square (scale is clamped to 1..64). '\n' starts a new line; bytes
 * outside printable ASCII are drawn as '?'. A line is 12 * scale pixels high. */
void dml_canvas_text(dml_canvas *c, int x, int y, const char *text, uint32_t rgb, int scale);

/* Size in pixels that dml_canvas_text would cover: width of the longest line, and
 * 12 * scale per line. */
int dml_canvas_text_width(const char *text, int scale);
int dml_canvas_text_height(const char *text, int scale);

/* Writes the canvas as an 8-bit RGB PNG. DML_ERR_IO naming the path when it cannot be
 * written (missing directory, no permission, disk full). */
dml_status dml_canvas_write_png(const dml_canvas *c, const char *path);

/* Colour of class `label` in every picture: a fixed 10-colour palette, cycling through darker
 * and lighter shades of it for labels >= 10; labels < 0 (unlabelled) are light grey. */
uint32_t dml_viz_class_colour(int32_t label);

/* ---- Retrieval grid ---------------------------------------------------------------------- */
/* Images stored as normalised float CHW rows, as the data layer gives them: image r is
 * x[r * channels * height * width ...]; its pixel value is x * std + mean, clamped to [0, 1]
 * (NaN drawn as 0). channels is 1 (grey) or 3 (RGB). */
typedef struct dml_image_set {
  const float *x;
  int64_t n; /* images in the set */
  int channels, height, width;
  float mean, std;
} dml_image_set;

/* One row per query: a caption line ("query <row>: <class>"), then the query image framed
 * blue, then its k retrieved images, each framed green when its label equals the query's and
 * red otherwise, with the retrieved image's class under it. Images are upscaled by `scale`
 * (nearest neighbour, 1..16); a header line explains the colours.
 *   queries, query_labels [queries->n]: the query set and its labels;
 *   query_rows [nq]: which query images to show (NULL: rows 0 .. nq-1), 1 <= nq <= 1000;
 *   refs, ref_labels [refs->n]: the reference set (may be the query set);
 *   neighbours [nq * k]: rows of refs, nearest first, -1 for none (an empty cell), 1 <= k <= 100;
 *   class_names [num_classes] (may be NULL): names of labels 0 .. num_classes-1; other labels
 *   are shown by number.
 * Both sets must have the same image shape. Rows out of range are DML_ERR_INVALID_ARGUMENT
 * naming the row; a picture above 16384 pixels on a side is refused (lower scale or k). */
dml_status dml_viz_retrieval_grid(const char *png_path, const dml_image_set *queries,
                                  const int32_t *query_labels, const int64_t *query_rows, int nq,
                                  const dml_image_set *refs, const int32_t *ref_labels,
                                  const int64_t *neighbours, int k,
                                  const char *const *class_names, int num_classes, int scale);

/* ---- 2-D projections of embeddings -------------------------------------------------------
 * emb [n, d] row-major float; out [n, 2] row-major float, caller-allocated. NaN or Inf in emb
 * is DML_ERR_NOT_FINITE naming the row. Both are deterministic for any thread count. */

/* Principal component analysis: out[i] = ((x_i - mean) . v1, (x_i - mean) . v2) for the two
 * leading eigenvectors v1, v2 of the covariance matrix, each signed so that its
 * largest-magnitude component is positive. explained (may be NULL) [2]: the fraction of the
 * total variance along v1 and v2 (0 when the points are all equal). When d == 1 the second
 * coordinate is 0. Memory: d x d doubles. */
dml_status dml_pca_2d(const float *emb, int64_t n, int64_t d, float *out, double *explained);

typedef enum dml_tsne_init {
  DML_TSNE_INIT_PCA = 0, /* PCA, scaled to standard deviation 1e-4 on the first axis */
  DML_TSNE_INIT_RANDOM = 1 /* independent normals of standard deviation 1e-4 from `seed` */
} dml_tsne_init;

typedef struct dml_tsne_config {
  double perplexity;         /* effective number of neighbours, 0 < perplexity < n (30) */
  int iterations;            /* gradient steps, >= 1 (1000); the first 250 are exaggerated */
  double learning_rate;      /* > 0, or 0 = auto: max(n / early_exaggeration / 4, 50) (0) */
  double early_exaggeration; /* >= 1 (12) */
  dml_tsne_init init;        /* (DML_TSNE_INIT_PCA) */
  uint64_t seed;             /* for DML_TSNE_INIT_RANDOM (0) */
} dml_tsne_config;

/* The defaults in parentheses above, which are scikit-learn 1.2's. */
dml_tsne_config dml_tsne_config_default(void);

/* Exact t-SNE (van der Maaten and Hinton, JMLR 2008) as scikit-learn's method="exact" runs it:
 * Gaussian affinities from squared Euclidean distances at the given perplexity, Student-t
 * similarities in the map, gradient descent with momentum, gains and early exaggeration, and
 * scikit-learn's stopping rules (checked every 50 steps). cfg may be NULL (defaults).
 * kl (may be NULL): the Kullback-Leibler divergence KL(P || Q) of the returned map.
 * Time and memory are O(n^2) (4 n^2 bytes): n > 10000 is refused with
 * DML_ERR_INVALID_ARGUMENT; subsample the points first. n >= 2. */
dml_status dml_tsne_2d(const float *emb, int64_t n, int64_t d, const dml_tsne_config *cfg,
                       float *out, double *kl);

/* ---- Plots -------------------------------------------------------------------------------- */
/* Scatter plot of the 2-D points xy [n, 2] coloured by class (dml_viz_class_colour), in an
 * axes box with tick labels, under `title` (may be NULL), with a legend of class names
 * (class_names [num_classes], or the class numbers when NULL). labels [n] may be NULL (one
 * colour, no legend); labels < 0 are drawn grey; num_classes == 0 takes max label + 1, and a
 * label >= num_classes > 0 is an error. 200 <= width, height <= 8192. */
dml_status dml_viz_scatter_png(const char *png_path, const float *xy, const int32_t *labels,
                               int64_t n, const char *const *class_names, int num_classes,
                               const char *title, int width, int height);

/* One series of a line chart: n points (x[i], y[i]); a point with a NaN or infinite coordinate
 * is a gap in the line. x == NULL means x[i] = i. */
typedef struct dml_series {
  const char *name;
  const double *x;
  const double *y;
  int64_t n;
} dml_series;

/* Line chart as an SVG file (800 x 500, opens in any browser): the series over one shared x
 * axis, axes with tick labels, a legend of series names, the title and axis labels (any may
 * be NULL). Colours follow dml_viz_class_colour(series index). 1 <= num_series <= 64. */
dml_status dml_viz_line_chart_svg(const char *svg_path, const char *title, const char *x_label,
                                  const char *y_label, const dml_series *series,
                                  int num_series);

/* The same chart drawn on a width x height canvas (200 .. 8192) and written as PNG. */
dml_status dml_viz_line_chart_png(const char *png_path, const char *title, const char *x_label,
                                  const char *y_label, const dml_series *series, int num_series,
                                  int width, int height);

#ifdef __cplusplus
}
#endif
#endif
