/* Pictures (src/viz): PNGs read back with stb_image (size, frame colours where the layout puts
 * them, text changing pixels), PCA and the t-SNE affinities against numpy / scikit-learn
 * (tests/fixtures/viz/viz_ref.json, written by tools/viz_ref/gen_viz_fixtures.py), t-SNE
 * keeping separated clusters apart with a decreasing error and the same map for 1 and 2
 * threads, well-formed SVG, and the errors: bad paths, bad rows, NaN, too many points. */
#include <stb_image.h>
#include <stdlib.h>

#include "fixture.h"
#include "test.h"
#include "viz/tsne_internal.h"
#include "viz/viz_internal.h"

#define MISSING_DIR "/nonexistent-dml-dir/sub"

static uint32_t pixel(const unsigned char *img, int w, int x, int y) {
  const unsigned char *p = img + 3 * ((size_t)y * (size_t)w + (size_t)x);
  return ((uint32_t)p[0] << 16) | ((uint32_t)p[1] << 8) | p[2];
}

static unsigned char *load_png(const char *path, int *w, int *h) {
  int comp = 0;
  return stbi_load(path, w, h, &comp, 3);
}

static char *read_text(const char *path, long *len) {
  FILE *f = fopen(path, "rb");
  if (!f) return NULL;
  fseek(f, 0, SEEK_END);
  *len = ftell(f);
  fseek(f, 0, SEEK_SET);
  char *s = malloc((size_t)*len + 1);
  if (s && fread(s, 1, (size_t)*len, f) != (size_t)*len) {
    free(s);
    s = NULL;
  }
  fclose(f);
  if (s) s[*len] = '\0';
  return s;
}

/* ---- canvas ---------------------------------------------------------------------------- */
TEST(canvas_png_round_trip) {
  dml_canvas *c;
  ASSERT_OK(dml_canvas_new(37, 23, 0x102030u, &c));
  dml_canvas_fill_rect(c, 5, 6, 10, 4, 0xff8000u);
  dml_canvas_fill_rect(c, -10, -10, 12, 12, 0x00ff00u); /* clipped at the corner */
  dml_canvas_fill_rect(c, 30, 20, 100, 100, 0x0000ffu);
  dml_canvas_line(c, 0, 22, 36, 22, 0xffffffu, 1);
  char path[512];
  dml_test_tmp_path("viz_canvas.png", path, (int)sizeof path);
  ASSERT_OK(dml_canvas_write_png(c, path));
  int w, h;
  unsigned char *img = load_png(path, &w, &h);
  ASSERT_TRUE(img != NULL);
  ASSERT_EQ_INT(w, 37);
  ASSERT_EQ_INT(h, 23);
  ASSERT_TRUE(memcmp(img, c->rgb, 37 * 23 * 3) == 0);
  ASSERT_EQ_INT(pixel(img, w, 5, 6), 0xff8000);
  ASSERT_EQ_INT(pixel(img, w, 14, 9), 0xff8000);
  ASSERT_EQ_INT(pixel(img, w, 15, 9), 0x102030);
  ASSERT_EQ_INT(pixel(img, w, 1, 1), 0x00ff00);
  ASSERT_EQ_INT(pixel(img, w, 2, 2), 0x102030);
  ASSERT_EQ_INT(pixel(img, w, 36, 21), 0x0000ff);
  ASSERT_EQ_INT(pixel(img, w, 20, 22), 0xffffff);
  stbi_image_free(img);
  dml_canvas_free(c);
  dml_canvas_free(NULL);
  ASSERT_ERROR(dml_canvas_new(0, 10, 0, &c), DML_ERR_INVALID_ARGUMENT);
  ASSERT_ERROR(dml_canvas_new(10, 20000, 0, &c), DML_ERR_INVALID_ARGUMENT);
}

static int count_colour(const dml_canvas *c, uint32_t rgb, int *x0, int *y0, int *x1, int *y1) {
  int n = 0;
  *x0 = *y0 = 1 << 30;
  *x1 = *y1 = -1;
  for (int y = 0; y < c->height; y++)
    for (int x = 0; x < c->width; x++)
      if (pixel(c->rgb, c->width, x, y) == rgb) {
        n++;
        if (x < *x0) *x0 = x;
        if (y < *y0) *y0 = y;
        if (x > *x1) *x1 = x;
        if (y > *y1) *y1 = y;
      }
  return n;
}

TEST(canvas_text_changes_pixels_inside_its_box) {
  dml_canvas *c;
  ASSERT_OK(dml_canvas_new(200, 60, 0xffffffu, &c));
  const char *text = "Recall@1 = 0.87";
  dml_canvas_text(c, 10, 5, text, 0x000000u, 1);
  int x0, y0, x1, y1;
  const int n1 = count_colour(c, 0x000000u, &x0, &y0, &x1, &y1);
  ASSERT_TRUE(n1 > 40);
  ASSERT_TRUE(x0 >= 10 && y0 >= 5);
  ASSERT_TRUE(x1 < 10 + dml_canvas_text_width(text, 1));
  ASSERT_TRUE(y1 < 5 + dml_canvas_text_height(text, 1));
  /* twice the scale: four times the pixels, inside the doubled box */
  dml_canvas_fill_rect(c, 0, 0, 200, 60, 0xffffffu);
  dml_canvas_text(c, 0, 20, "AB", 0x000000u, 2);
  const int n2 = count_colour(c, 0x000000u, &x0, &y0, &x1, &y1);
  dml_canvas_fill_rect(c, 0, 0, 200, 60, 0xffffffu);
  dml_canvas_text(c, 0, 20, "AB", 0x000000u, 1);
  ASSERT_EQ_INT(n2, 4 * count_colour(c, 0x000000u, &x0, &y0, &x1, &y1));
  ASSERT_EQ_INT(dml_canvas_text_width("AB", 2), 2 * dml_canvas_text_width("AB", 1));
  ASSERT_EQ_INT(dml_canvas_text_height("a\nb", 1), 24);
  /* bytes outside printable ASCII are drawn as '?', off-canvas text is clipped */
  dml_canvas_fill_rect(c, 0, 0, 200, 60, 0xffffffu);
  dml_canvas_text(c, 0, 0, "\x01\x7f\xff\t", 0x000000u, 1);
  const int bad = count_colour(c, 0x000000u, &x0, &y0, &x1, &y1);
  dml_canvas_fill_rect(c, 0, 0, 200, 60, 0xffffffu);
  dml_canvas_text(c, 0, 0, "????", 0x000000u, 1);
  ASSERT_EQ_INT(bad, count_colour(c, 0x000000u, &x0, &y0, &x1, &y1));
  dml_canvas_text(c, -1000, 55, "clipped", 0x000000u, 3);
  dml_canvas_text(c, 190, -5, "clipped", 0x000000u, 3);
  dml_canvas_free(c);
}

/* ---- retrieval grid -------------------------------------------------------------------- */
TEST(retrieval_grid_frames_and_images) {
  enum { C = 3, H = 6, W = 5, NQ = 3, NR = 7, K = 4, S = 2 };
  float *qx = malloc(sizeof(float) * NQ * C * H * W), *rx = malloc(sizeof(float) * NR * C * H * W);
  /* image r: constant per channel, normalised with mean 0.5, std 0.25 */
  for (int r = 0; r < NQ; r++)
    for (int ch = 0; ch < C; ch++)
      for (int p = 0; p < H * W; p++)
        qx[(r * C + ch) * H * W + p] = (0.1f * r + 0.2f * ch - 0.5f) / 0.25f;
  for (int r = 0; r < NR; r++)
    for (int ch = 0; ch < C; ch++)
      for (int p = 0; p < H * W; p++)
        rx[(r * C + ch) * H * W + p] = (0.05f * r + 0.1f * ch - 0.5f) / 0.25f;
  rx[(2 * C + 0) * H * W] = 100.0f; /* clamps to 255 */
  const dml_image_set qs = {qx, NQ, C, H, W, 0.5f, 0.25f}, rs = {rx, NR, C, H, W, 0.5f, 0.25f};
  const int32_t ql[NQ] = {0, 1, 2}, rl[NR] = {0, 1, 2, 0, 1, 2, 7};
  const int64_t rows[NQ] = {2, 0, 1};
  const int64_t nb[NQ * K] = {2, 5, 0, -1, /* query 2 (label 2) */
                              0, 3, 6, 1,  /* query 0 */
                              4, 1, 2, 6}; /* query 1 */
  const char *names[3] = {"tee", "trouser & co", NULL};
  char path[512];
  dml_test_tmp_path("viz_grid.png", path, (int)sizeof path);
  ASSERT_OK(dml_viz_retrieval_grid(path, &qs, ql, rows, NQ, &rs, rl, nb, K, names, 3, S));
  dml__grid_geom g;
  ASSERT_TRUE(dml__grid_geometry(H, W, S, NQ, K, &g));
  int w, h;
  unsigned char *img = load_png(path, &w, &h);
  ASSERT_TRUE(img != NULL);
  ASSERT_EQ_INT(w, g.width);
  ASSERT_EQ_INT(h, g.height);
  for (int i = 0; i < NQ; i++) {
    int x, y;
    dml__grid_cell_origin(&g, i, 0, &x, &y);
    ASSERT_EQ_INT(pixel(img, w, x, y), DML__VIZ_QUERY);
    ASSERT_EQ_INT(pixel(img, w, x + g.cell_w - 1, y + g.cell_h - 1), DML__VIZ_QUERY);
    /* the query image: channel values 0.1 q + 0.2 ch */
    const int64_t q = rows[i];
    uint32_t want = 0;
    for (int ch = 0; ch < C; ch++)
      want = (want << 8) | (uint32_t)((0.1f * q + 0.2f * ch) * 255.0f + 0.5f);
    for (int corner = 0; corner < 2; corner++) {
      const uint32_t got = corner ? pixel(img, w, x + g.cell_w - DML__GRID_FRAME - 1,
                                          y + g.cell_h - DML__GRID_FRAME - 1)
                                  : pixel(img, w, x + DML__GRID_FRAME, y + DML__GRID_FRAME);
      for (int ch = 0; ch < 3; ch++)
        ASSERT_NEAR((double)((got >> (8 * ch)) & 255u), (double)((want >> (8 * ch)) & 255u), 1);
    }
    for (int j = 0; j < K; j++) {
      dml__grid_cell_origin(&g, i, j + 1, &x, &y);
      const int64_t r = nb[i * K + j];
      const uint32_t frame = r < 0 ? DML__VIZ_EMPTY
                             : rl[r] == ql[q] ? DML__VIZ_MATCH
                                              : DML__VIZ_MISMATCH;
      ASSERT_EQ_INT(pixel(img, w, x, y), frame);
      ASSERT_EQ_INT(pixel(img, w, x + g.cell_w - 1, y + g.cell_h - 1), frame);
      ASSERT_EQ_INT(pixel(img, w, x + g.cell_w / 2, y + 1), frame);
      if (r < 0) continue;
      uint32_t want_r = 0;
      for (int ch = 0; ch < C; ch++)
        want_r = (want_r << 8) | (uint32_t)((0.05f * r + 0.1f * ch) * 255.0f + 0.5f);
      const int ix = x + DML__GRID_FRAME + S * W - 1, iy = y + DML__GRID_FRAME + S * H - 1;
      const uint32_t got = pixel(img, w, ix, iy);
      for (int ch = 0; ch < 3; ch++) /* the normalise-and-back round trip may move a level */
        ASSERT_NEAR((double)((got >> (8 * ch)) & 255u), (double)((want_r >> (8 * ch)) & 255u), 1);
      if (r == 2) ASSERT_EQ_INT(pixel(img, w, x + DML__GRID_FRAME, y + DML__GRID_FRAME) >> 16, 255);
    }
  }
  /* the header and captions drew text: dark pixels above the first row */
  int dark = 0;
  for (int y = 0; y < g.header_h + DML__GRID_MARGIN; y++)
    for (int x = 0; x < w; x++) dark += pixel(img, w, x, y) == DML__VIZ_INK;
  ASSERT_TRUE(dark > 100);
  stbi_image_free(img);

  /* grey images, no names, rows 0..nq-1 */
  const dml_image_set gq = {qx, NQ * C, 1, H, W, 0.5f, 0.25f};
  const int32_t gl[NQ * C] = {0, 0, 0, 1, 1, 1, 2, 2, 2};
  ASSERT_OK(dml_viz_retrieval_grid(path, &gq, gl, NULL, 2, &gq, gl, nb, 2, NULL, 0, 1));
  img = load_png(path, &w, &h);
  ASSERT_TRUE(img != NULL);
  ASSERT_TRUE(dml__grid_geometry(H, W, 1, 2, 2, &g));
  ASSERT_EQ_INT(w, g.width);
  ASSERT_EQ_INT(h, g.height);
  int x, y;
  dml__grid_cell_origin(&g, 1, 1, &x, &y); /* query 1 (label 0), neighbour 0 (label 0) */
  ASSERT_EQ_INT(pixel(img, w, x, y), DML__VIZ_MATCH);
  const uint32_t v = (uint32_t)(0.5f + 255.0f * 0.0f);
  ASSERT_EQ_INT(pixel(img, w, x + DML__GRID_FRAME, y + DML__GRID_FRAME), v * 0x010101u);
  stbi_image_free(img);
  free(qx);
  free(rx);
}

TEST(retrieval_grid_errors) {
  float x[2 * 4] = {0};
  const dml_image_set s = {x, 2, 1, 2, 2, 0.0f, 1.0f}, s3 = {x, 2, 1, 1, 2, 0.0f, 1.0f};
  const int32_t l[2] = {0, 1};
  const int64_t good[2] = {1, 0}, bad[2] = {1, 2}, q_bad[1] = {5};
  char path[512];
  dml_test_tmp_path("viz_grid_err.png", path, (int)sizeof path);
  ASSERT_ERROR(dml_viz_retrieval_grid(path, &s, l, NULL, 1, &s, l, bad, 2, NULL, 0, 1),
               DML_ERR_INVALID_ARGUMENT);
  ASSERT_TRUE(strstr(dml_last_error(), "neighbours[0 * 2 + 1] = 2") != NULL);
  ASSERT_ERROR(dml_viz_retrieval_grid(path, &s, l, q_bad, 1, &s, l, good, 2, NULL, 0, 1),
               DML_ERR_INVALID_ARGUMENT);
  ASSERT_ERROR(dml_viz_retrieval_grid(path, &s, l, NULL, 1, &s3, l, good, 2, NULL, 0, 1),
               DML_ERR_SHAPE);
  ASSERT_ERROR(dml_viz_retrieval_grid(path, &s, l, NULL, 1, &s, l, good, 2, NULL, 0, 0),
               DML_ERR_INVALID_ARGUMENT);
  ASSERT_ERROR(dml_viz_retrieval_grid(path, &s, l, NULL, 1, &s, NULL, good, 2, NULL, 0, 1),
               DML_ERR_INVALID_ARGUMENT);
  /* too large a picture */
  static float big[1];
  const dml_image_set huge = {big, 1, 1, 4000, 4000, 0.0f, 1.0f};
  const int64_t one[1] = {0};
  ASSERT_ERROR(dml_viz_retrieval_grid(path, &huge, l, NULL, 1, &huge, l, one, 1, NULL, 0, 16),
               DML_ERR_INVALID_ARGUMENT);
}

TEST(missing_directory_is_an_io_error_naming_the_path) {
  const char *png = MISSING_DIR "/pic.png", *svg = MISSING_DIR "/chart.svg";
  dml_canvas *c;
  ASSERT_OK(dml_canvas_new(4, 4, 0, &c));
  ASSERT_ERROR(dml_canvas_write_png(c, png), DML_ERR_IO);
  ASSERT_TRUE(strstr(dml_last_error(), png) != NULL);
  dml_canvas_free(c);

  float x[4] = {0};
  const dml_image_set s = {x, 1, 1, 2, 2, 0.0f, 1.0f};
  const int32_t l[1] = {0};
  const int64_t nb[1] = {0};
  ASSERT_ERROR(dml_viz_retrieval_grid(png, &s, l, NULL, 1, &s, l, nb, 1, NULL, 0, 1), DML_ERR_IO);
  ASSERT_TRUE(strstr(dml_last_error(), png) != NULL);

  const float xy[4] = {0, 0, 1, 1};
  ASSERT_ERROR(dml_viz_scatter_png(png, xy, l, 1, NULL, 0, "t", 300, 300), DML_ERR_IO);
  ASSERT_TRUE(strstr(dml_last_error(), png) != NULL);

  const double yv[3] = {1, 2, 3};
  const dml_series ser = {"loss", NULL, yv, 3};
  ASSERT_ERROR(dml_viz_line_chart_svg(svg, "t", "x", "y", &ser, 1), DML_ERR_IO);
  ASSERT_TRUE(strstr(dml_last_error(), svg) != NULL);
  ASSERT_ERROR(dml_viz_line_chart_png(png, "t", "x", "y", &ser, 1, 400, 300), DML_ERR_IO);
  ASSERT_TRUE(strstr(dml_last_error(), png) != NULL);
}

/* ---- PCA ------------------------------------------------------------------------------- */
static double *doubles(const cJSON *a) {
  const int m = cJSON_GetArraySize(a);
  double *v = malloc(sizeof(double) * (size_t)(m > 0 ? m : 1));
  int i = 0;
  const cJSON *e;
  cJSON_ArrayForEach(e, a) v[i++] = e->valuedouble;
  return v;
}

static float *floats(const cJSON *a) {
  const int m = cJSON_GetArraySize(a);
  float *v = malloc(sizeof(float) * (size_t)(m > 0 ? m : 1));
  int i = 0;
  const cJSON *e;
  cJSON_ArrayForEach(e, a) v[i++] = (float)e->valuedouble;
  return v;
}

static const cJSON *item(const cJSON *o, const char *k) {
  return cJSON_GetObjectItemCaseSensitive(o, k);
}

TEST(pca_matches_numpy_and_recovers_the_axes) {
  cJSON *root = fixture_load("fixtures/viz/viz_ref.json");
  ASSERT_TRUE(root != NULL);
  const cJSON *cs;
  int cases = 0;
  cJSON_ArrayForEach(cs, item(root, "pca")) {
    const int n = item(cs, "n")->valueint, d = item(cs, "d")->valueint;
    float *x = floats(item(cs, "x"));
    double *ref = doubles(item(cs, "coords")), *ex = doubles(item(cs, "explained"));
    double *ax1 = doubles(item(cs, "axis1")), *ax2 = doubles(item(cs, "axis2"));
    float *out = malloc(sizeof(float) * 2 * (size_t)n);
    double explained[2];
    ASSERT_OK(dml_pca_2d(x, n, d, out, explained));
    ASSERT_NEAR(explained[0], ex[0], 1e-8);
    ASSERT_NEAR(explained[1], ex[1], 1e-8);
    for (int i = 0; i < 2 * n; i++) ASSERT_NEAR(out[i], ref[i], 2e-5 + 2e-5 * fabs(ref[i]));
    /* the axis behind each coordinate, v_k ~ sum_i out_ik (x_i - mean), is the rotation's */
    for (int k = 0; k < 2; k++) {
      double *v = calloc((size_t)d, sizeof(double)), *mean = calloc((size_t)d, sizeof(double));
      for (int i = 0; i < n; i++)
        for (int t = 0; t < d; t++) mean[t] += x[i * d + t] / (double)n;
      for (int i = 0; i < n; i++)
        for (int t = 0; t < d; t++) v[t] += out[2 * i + k] * (x[i * d + t] - mean[t]);
      double nv = 0, dot = 0;
      const double *axis = k == 0 ? ax1 : ax2;
      for (int t = 0; t < d; t++) {
        nv += v[t] * v[t];
        dot += v[t] * axis[t];
      }
      free(v);
      free(mean);
      ASSERT_TRUE(fabs(dot) / sqrt(nv) > 0.98);
    }
    free(x);
    free(ref);
    free(ex);
    free(ax1);
    free(ax2);
    free(out);
    cases++;
  }
  cJSON_Delete(root);
  ASSERT_EQ_INT(cases, 2);
}

TEST(pca_edge_cases) {
  float x[12] = {1, 2, 3, 1, 2, 3, 1, 2, 3, 1, 2, 3}, out[8];
  double ex[2] = {-1, -1};
  ASSERT_OK(dml_pca_2d(x, 4, 3, out, ex)); /* all points equal */
  for (int i = 0; i < 8; i++) ASSERT_EQ_INT(out[i], 0);
  ASSERT_NEAR(ex[0], 0.0, 0);
  const float line[4] = {1, 3, 2, 6}; /* d = 1 */
  ASSERT_OK(dml_pca_2d(line, 4, 1, out, ex));
  ASSERT_NEAR(out[0], -2.0, 1e-6);
  ASSERT_NEAR(out[6], 3.0, 1e-6);
  ASSERT_NEAR(out[1], 0.0, 0);
  ASSERT_NEAR(ex[0], 1.0, 1e-12);
  ASSERT_NEAR(ex[1], 0.0, 0);
  /* rank one in 3-d (fewer points than dimensions) */
  const float r1[6] = {1, 2, 2, -1, -2, -2};
  ASSERT_OK(dml_pca_2d(r1, 2, 3, out, ex));
  ASSERT_NEAR(out[0], 3.0, 1e-5); /* positive: the largest component of (1,2,2)/3 is + */
  ASSERT_NEAR(out[2], -3.0, 1e-5);
  ASSERT_NEAR(ex[0], 1.0, 1e-9);
  ASSERT_NEAR(ex[1], 0.0, 1e-9);
  ASSERT_OK(dml_pca_2d(x, 0, 3, out, ex));
  x[4] = NAN;
  ASSERT_ERROR(dml_pca_2d(x, 4, 3, out, ex), DML_ERR_NOT_FINITE);
  ASSERT_TRUE(strstr(dml_last_error(), "row 1") != NULL);
}

/* ---- t-SNE affinities ------------------------------------------------------------------ */
TEST(tsne_affinities_match_scikit_learn) {
  cJSON *root = fixture_load("fixtures/viz/viz_ref.json");
  ASSERT_TRUE(root != NULL);
  const cJSON *cs;
  int cases = 0;
  cJSON_ArrayForEach(cs, item(root, "tsne_p")) {
    const int n = item(cs, "n")->valueint, d = item(cs, "d")->valueint;
    const double perp = item(cs, "perplexity")->valuedouble;
    float *x = floats(item(cs, "x")), *sqd = floats(item(cs, "sqdist"));
    double *cond = doubles(item(cs, "conditional")), *joint = doubles(item(cs, "joint"));
    double *got = malloc(sizeof(double) * (size_t)n * (size_t)n);
    float *gotf = malloc(sizeof(float) * (size_t)n * (size_t)n);
    /* the search on scikit-learn's own float32 distances */
    dml__tsne_conditional(sqd, n, perp, got);
    for (int i = 0; i < n * n; i++) ASSERT_NEAR(got[i], cond[i], 1e-13 + 1e-9 * cond[i]);
    /* the distances dml computes itself, and the joint P from the points */
    ASSERT_OK(dml__tsne_sqdist(x, n, d, gotf));
    for (int i = 0; i < n * n; i++) ASSERT_NEAR(gotf[i], sqd[i], 1e-6 * (1 + sqd[i]));
    ASSERT_OK(dml__tsne_joint(x, n, d, perp, gotf));
    for (int i = 0; i < n; i++)
      for (int j = 0; j < n; j++) {
        const double want = i == j ? 0.0 : joint[i * n + j];
        ASSERT_NEAR(gotf[i * n + j], want, 1e-14 + 2e-5 * want);
      }
    free(x);
    free(sqd);
    free(cond);
    free(joint);
    free(got);
    free(gotf);
    cases++;
  }
  cJSON_Delete(root);
  ASSERT_EQ_INT(cases, 5);
}

/* ---- t-SNE maps ------------------------------------------------------------------------ */
/* Three Gaussian clusters of `per` points in d dimensions, centres 10 apart. */
static float *clusters(int per, int d, int32_t *labels) {
  float *x = malloc(sizeof(float) * 3 * (size_t)per * (size_t)d);
  for (int i = 0; i < 3 * per; i++) {
    labels[i] = i % 3;
    for (int t = 0; t < d; t++)
      x[(size_t)i * d + t] =
          dml_rng_normal(7, 0, (uint64_t)i * d + t) + (t == labels[i] ? 10.0f : 0.0f);
  }
  return x;
}

/* Leave-one-out 1-NN accuracy of the map y [n, 2]. */
static double nn_accuracy(const float *y, const int32_t *labels, int n) {
  int right = 0;
  for (int i = 0; i < n; i++) {
    double best = INFINITY;
    int arg = -1;
    for (int j = 0; j < n; j++) {
      if (j == i) continue;
      const double dx = y[2 * i] - y[2 * j], dy = y[2 * i + 1] - y[2 * j + 1];
      if (dx * dx + dy * dy < best) {
        best = dx * dx + dy * dy;
        arg = j;
      }
    }
    right += labels[arg] == labels[i];
  }
  return (double)right / n;
}

TEST(tsne_keeps_separated_clusters_apart_and_the_error_decreases) {
  enum { PER = 200, D = 50, N = 3 * PER };
  int32_t labels[N];
  float *x = clusters(PER, D, labels);
  float *y = malloc(sizeof(float) * 2 * N);
  int iters[64];
  double errs[64], exag[64];
  dml__tsne_trace tr = {64, 0, iters, errs, exag};
  double kl = -1;
  ASSERT_OK(dml__tsne_run(x, N, D, NULL, y, &kl, &tr));
  ASSERT_NEAR(nn_accuracy(y, labels, N), 1.0, 0);
  ASSERT_TRUE(kl > 0 && isfinite(kl));
  /* checks at steps 49, 99, ..., 999; the first five with P exaggerated */
  ASSERT_TRUE(tr.count >= 6);
  ASSERT_EQ_INT(tr.iteration[0], 49);
  ASSERT_NEAR(tr.exaggeration[0], 12.0, 0);
  int first2 = -1;
  for (int k = 0; k < tr.count; k++)
    if (tr.exaggeration[k] == 1.0 && first2 < 0) first2 = k;
  ASSERT_TRUE(first2 > 0);
  ASSERT_TRUE(tr.error[first2 - 1] < tr.error[0]);
  ASSERT_TRUE(tr.error[tr.count - 1] < tr.error[first2]);
  ASSERT_TRUE(kl <= tr.error[first2]);
  for (int k = first2 + 1; k < tr.count; k++) ASSERT_TRUE(tr.error[k] <= tr.error[k - 1] * 1.01);
  free(x);
  free(y);
}

TEST(tsne_map_is_the_same_for_one_and_two_threads) {
  enum { PER = 120, D = 20, N = 3 * PER };
  int32_t labels[N];
  float *x = clusters(PER, D, labels);
  float *y1 = malloc(sizeof(float) * 2 * N), *y2 = malloc(sizeof(float) * 2 * N);
  const int before = dml_get_num_threads();
  dml_tsne_config cfg = dml_tsne_config_default();
  cfg.iterations = 400;
  cfg.perplexity = 20;
  double kl1, kl2;
  for (int init = 0; init < 2; init++) {
    cfg.init = init ? DML_TSNE_INIT_RANDOM : DML_TSNE_INIT_PCA;
    cfg.seed = 3;
    dml_set_num_threads(1);
    ASSERT_OK(dml_tsne_2d(x, N, D, &cfg, y1, &kl1));
    dml_set_num_threads(2);
    ASSERT_OK(dml_tsne_2d(x, N, D, &cfg, y2, &kl2));
    dml_set_num_threads(before);
    ASSERT_TRUE(memcmp(y1, y2, sizeof(float) * 2 * N) == 0);
    ASSERT_TRUE(kl1 == kl2);
  }
  free(x);
  free(y1);
  free(y2);
}

TEST(tsne_refuses_bad_input) {
  enum { N = 10001 };
  float *x = calloc(N, sizeof(float)), *y = malloc(sizeof(float) * 2 * N);
  ASSERT_ERROR(dml_tsne_2d(x, N, 1, NULL, y, NULL), DML_ERR_INVALID_ARGUMENT);
  ASSERT_TRUE(strstr(dml_last_error(), "subsample") != NULL);
  for (int i = 0; i < 40; i++) x[i] = (float)i;
  dml_tsne_config cfg = dml_tsne_config_default();
  cfg.perplexity = 5;
  x[17] = NAN;
  ASSERT_ERROR(dml_tsne_2d(x, 20, 2, &cfg, y, NULL), DML_ERR_NOT_FINITE);
  ASSERT_TRUE(strstr(dml_last_error(), "row 8") != NULL);
  x[17] = 1.0f;
  cfg.perplexity = 30; /* not below the 20 points */
  ASSERT_ERROR(dml_tsne_2d(x, 20, 2, &cfg, y, NULL), DML_ERR_INVALID_ARGUMENT);
  cfg.perplexity = 5;
  cfg.iterations = 0;
  ASSERT_ERROR(dml_tsne_2d(x, 20, 2, &cfg, y, NULL), DML_ERR_INVALID_ARGUMENT);
  cfg.iterations = 300;
  cfg.early_exaggeration = 0.5;
  ASSERT_ERROR(dml_tsne_2d(x, 20, 2, &cfg, y, NULL), DML_ERR_INVALID_ARGUMENT);
  ASSERT_ERROR(dml_tsne_2d(x, 1, 2, NULL, y, NULL), DML_ERR_INVALID_ARGUMENT);
  cfg.early_exaggeration = 12;
  double kl;
  ASSERT_OK(dml_tsne_2d(x, 20, 2, &cfg, y, &kl)); /* a tiny input works */
  for (int i = 0; i < 40; i++) ASSERT_TRUE(isfinite(y[i]));
  free(x);
  free(y);
}

/* ---- scatter plot ---------------------------------------------------------------------- */
TEST(scatter_png_draws_every_class) {
  enum { N = 400 };
  float xy[2 * N];
  int32_t lab[N];
  for (int i = 0; i < N; i++) {
    lab[i] = i % 13 == 0 ? -1 : i % 12;
    xy[2 * i] = (float)(lab[i] * 3) + dml_rng_normal(1, 0, (uint64_t)i);
    xy[2 * i + 1] = (float)(lab[i] % 4) + 0.3f * dml_rng_normal(1, 1, (uint64_t)i);
  }
  const char *names[12] = {"a", "b", "c", "d", "e", "f", "g", "h", "i", "j", "k & l", NULL};
  char path[512];
  dml_test_tmp_path("viz_scatter.png", path, (int)sizeof path);
  ASSERT_OK(dml_viz_scatter_png(path, xy, lab, N, names, 12, "t-SNE of the test set", 640, 480));
  int w, h;
  unsigned char *img = load_png(path, &w, &h);
  ASSERT_TRUE(img != NULL);
  ASSERT_EQ_INT(w, 640);
  ASSERT_EQ_INT(h, 480);
  dml_canvas view = {w, h, img};
  int x0, y0, x1, y1;
  for (int cls = -1; cls < 12; cls++)
    ASSERT_TRUE(count_colour(&view, dml_viz_class_colour(cls), &x0, &y0, &x1, &y1) > 9);
  ASSERT_TRUE(count_colour(&view, DML__VIZ_INK, &x0, &y0, &x1, &y1) > 500);
  stbi_image_free(img);
  /* 10 base colours, distinct shades beyond */
  ASSERT_TRUE(dml_viz_class_colour(0) != dml_viz_class_colour(10));
  ASSERT_TRUE(dml_viz_class_colour(3) != dml_viz_class_colour(-1));
  /* no labels, many classes inferred, bad labels, NaN */
  ASSERT_OK(dml_viz_scatter_png(path, xy, NULL, N, NULL, 0, NULL, 300, 200));
  int32_t many[N];
  for (int i = 0; i < N; i++) many[i] = i;
  ASSERT_OK(dml_viz_scatter_png(path, xy, many, N, NULL, 0, "many", 400, 300));
  ASSERT_OK(dml_viz_scatter_png(path, xy, lab, 0, NULL, 0, "empty", 400, 300));
  ASSERT_ERROR(dml_viz_scatter_png(path, xy, lab, N, names, 5, NULL, 400, 300),
               DML_ERR_INVALID_ARGUMENT);
  ASSERT_ERROR(dml_viz_scatter_png(path, xy, lab, N, NULL, 0, NULL, 100, 300),
               DML_ERR_INVALID_ARGUMENT);
  xy[7] = NAN;
  ASSERT_ERROR(dml_viz_scatter_png(path, xy, lab, N, NULL, 0, NULL, 400, 300), DML_ERR_NOT_FINITE);
}

/* ---- line charts ----------------------------------------------------------------------- */
/* 1 when the tags of an XML text (no comments, no CDATA) open and close in order. */
static int tags_balanced(const char *s) {
  char stack[64][32];
  int depth = 0;
  for (const char *p = strchr(s, '<'); p; p = strchr(p + 1, '<')) {
    const int closing = p[1] == '/';
    const char *name = p + 1 + closing;
    size_t len = strcspn(name, " \t\n/>");
    const char *end = strchr(p, '>');
    if (!end || len == 0 || len >= 32) return 0;
    if (closing) {
      if (depth == 0 || strncmp(stack[depth - 1], name, len) != 0 || stack[depth - 1][len])
        return 0;
      depth--;
    } else if (end[-1] != '/') {
      if (depth == 64) return 0;
      memcpy(stack[depth], name, len);
      stack[depth++][len] = '\0';
    }
    if (memchr(p + 1, '<', (size_t)(end - p - 1))) return 0;
  }
  return depth == 0;
}

static int count_of(const char *s, const char *what) {
  int n = 0;
  for (const char *p = strstr(s, what); p; p = strstr(p + 1, what)) n++;
  return n;
}

TEST(line_chart_svg_is_well_formed_and_holds_the_series) {
  double ep[20], loss[20], rec[20];
  for (int i = 0; i < 20; i++) {
    ep[i] = i + 1;
    loss[i] = 2.0 * exp(-0.2 * i);
    rec[i] = i == 7 || i == 9 ? NAN : 0.4 + 0.02 * i; /* gaps: one isolated point at 8 */
  }
  const dml_series s[2] = {{"train loss", ep, loss, 20}, {"recall@1 <val> & co", ep, rec, 20}};
  char path[512];
  dml_test_tmp_path("viz_chart.svg", path, (int)sizeof path);
  ASSERT_OK(dml_viz_line_chart_svg(path, "Training", "epoch", "value", s, 2));
  long len;
  char *text = read_text(path, &len);
  ASSERT_TRUE(text != NULL);
  ASSERT_TRUE(strncmp(text, "<svg", 4) == 0);
  while (len > 0 && (text[len - 1] == '\n' || text[len - 1] == ' ')) text[--len] = '\0';
  ASSERT_TRUE(len > 6 && strcmp(text + len - 6, "</svg>") == 0);
  ASSERT_TRUE(tags_balanced(text));
  ASSERT_TRUE(strstr(text, "train loss") != NULL);
  ASSERT_TRUE(strstr(text, "recall@1 &lt;val&gt; &amp; co") != NULL);
  ASSERT_TRUE(strstr(text, "Training") != NULL);
  ASSERT_TRUE(strstr(text, ">epoch<") != NULL);
  ASSERT_EQ_INT(count_of(text, "<path"), 3); /* loss: 1; recall: 0..6 and 10..19 */
  ASSERT_EQ_INT(count_of(text, "<circle"), 1);
  ASSERT_EQ_INT(count_of(text, "nan"), 0);
  free(text);
  /* no x: the index; an all-NaN series; NULL names and labels */
  const double nan3[3] = {NAN, NAN, NAN};
  const dml_series t[2] = {{NULL, NULL, loss, 20}, {"none", NULL, nan3, 3}};
  ASSERT_OK(dml_viz_line_chart_svg(path, NULL, NULL, NULL, t, 2));
  text = read_text(path, &len);
  ASSERT_TRUE(text != NULL && tags_balanced(text));
  ASSERT_TRUE(strstr(text, "series 0") != NULL);
  free(text);
  ASSERT_ERROR(dml_viz_line_chart_svg(path, NULL, NULL, NULL, t, 0), DML_ERR_INVALID_ARGUMENT);
  const dml_series bad = {"x", NULL, NULL, 3};
  ASSERT_ERROR(dml_viz_line_chart_svg(path, NULL, NULL, NULL, &bad, 1), DML_ERR_INVALID_ARGUMENT);

  dml_test_tmp_path("viz_chart.png", path, (int)sizeof path);
  ASSERT_OK(dml_viz_line_chart_png(path, "Training", "epoch", "value", s, 2, 500, 320));
  int w, h;
  unsigned char *img = load_png(path, &w, &h);
  ASSERT_TRUE(img != NULL);
  ASSERT_EQ_INT(w, 500);
  ASSERT_EQ_INT(h, 320);
  dml_canvas view = {w, h, img};
  int x0, y0, x1, y1;
  ASSERT_TRUE(count_colour(&view, dml_viz_class_colour(0), &x0, &y0, &x1, &y1) > 200);
  ASSERT_TRUE(count_colour(&view, dml_viz_class_colour(1), &x0, &y0, &x1, &y1) > 200);
  stbi_image_free(img);
}
