/* Random augmentation of one CHW example: pad-and-crop, horizontal flip, and an affine part
 * (rotation, zoom, shift about the centre) sampled by inverse mapping with bilinear
 * interpolation. Every random value is dml_rng_*(seed, stream, 8 * index + k), k naming the
 * draw, so an example's transform depends on nothing else. */
#include <math.h>
#include <string.h>

#include "core/status_internal.h"
#include "dml/rng.h"
#include "data/data_internal.h"

enum { DRAW_CROP_Y, DRAW_CROP_X, DRAW_FLIP, DRAW_ANGLE, DRAW_SCALE, DRAW_SHIFT_X, DRAW_SHIFT_Y,
       DRAWS_PER_EXAMPLE = 8 };

int dml_augment_enabled(const dml_augment_config *cfg) {
  return cfg && (cfg->pad_crop > 0 || cfg->hflip || cfg->rotate_deg != 0 || cfg->scale != 0 ||
                 cfg->translate != 0);
}

/* The example after pad-crop and flip, read at integer (i, j); outside it: fill. */
typedef struct {
  const float *in;
  int H, W, pad, oy, ox, flip;
  float fill;
} cropped;

static inline float at(const cropped *s, const float *plane, int64_t i, int64_t j) {
  if (i < 0 || j < 0 || i >= s->H || j >= s->W) return s->fill;
  if (s->flip) j = s->W - 1 - j;
  i += s->oy - s->pad;
  j += s->ox - s->pad;
  if (i < 0 || j < 0 || i >= s->H || j >= s->W) return s->fill;
  return plane[i * s->W + j];
}

static float uniform_pm1(uint64_t seed, uint64_t stream, uint64_t index) {
  return 2.0f * dml_rng_uniform(seed, stream, index) - 1.0f;
}

dml_status dml_augment_example(const dml_augment_config *cfg, const float *in, float *out,
                               int channels, int height, int width, uint64_t seed,
                               uint64_t stream, uint64_t index) {
  if (!cfg || !in || !out || in == out)
    return dml__error(DML_ERR_INVALID_ARGUMENT,
                      "dml_augment_example: config, in or out is NULL, or in == out");
  if (channels < 1 || height < 1 || width < 1)
    return dml__error(DML_ERR_INVALID_ARGUMENT,
                      "dml_augment_example: example of %d x %d x %d (C x H x W)", channels,
                      height, width);
  if (cfg->pad_crop < 0 || cfg->pad_crop > 1 << 20 || !(cfg->rotate_deg >= 0) ||
      !isfinite(cfg->rotate_deg) || !(cfg->scale >= 0 && cfg->scale < 1) ||
      !(cfg->translate >= 0) || !isfinite(cfg->translate) || !isfinite(cfg->fill))
    return dml__error(DML_ERR_INVALID_ARGUMENT,
                      "augmentation: pad_crop %d, rotate_deg %g, scale %g, translate %g, fill %g: "
                      "each must be finite and >= 0, scale below 1",
                      cfg->pad_crop, (double)cfg->rotate_deg, (double)cfg->scale,
                      (double)cfg->translate, (double)cfg->fill);
  const int64_t plane = (int64_t)height * width;
  if (!dml_augment_enabled(cfg)) {
    memcpy(out, in, (size_t)(channels * plane) * sizeof(float));
    return DML_OK;
  }
  const uint64_t base = index * DRAWS_PER_EXAMPLE;
  cropped s = {in, height, width, cfg->pad_crop, cfg->pad_crop, cfg->pad_crop, 0, cfg->fill};
  if (cfg->pad_crop > 0) {
    const uint64_t span = 2 * (uint64_t)cfg->pad_crop + 1;
    s.oy = (int)dml_rng_below(seed, stream, base + DRAW_CROP_Y, span);
    s.ox = (int)dml_rng_below(seed, stream, base + DRAW_CROP_X, span);
  }
  if (cfg->hflip) s.flip = (int)(dml_rng_u64(seed, stream, base + DRAW_FLIP) >> 63);
  const int affine = cfg->rotate_deg != 0 || cfg->scale != 0 || cfg->translate != 0;
  if (!affine) {
    for (int c = 0; c < channels; c++) {
      const float *src = in + c * plane;
      float *dst = out + c * plane;
      for (int64_t i = 0; i < height; i++)
        for (int64_t j = 0; j < width; j++) dst[i * width + j] = at(&s, src, i, j);
    }
    return DML_OK;
  }
  const double angle = cfg->rotate_deg != 0
                           ? uniform_pm1(seed, stream, base + DRAW_ANGLE) * cfg->rotate_deg
                           : 0.0;
  const double zoom =
      cfg->scale != 0 ? 1.0 + uniform_pm1(seed, stream, base + DRAW_SCALE) * cfg->scale : 1.0;
  const double tx =
      cfg->translate != 0 ? uniform_pm1(seed, stream, base + DRAW_SHIFT_X) * cfg->translate * width
                          : 0.0;
  const double ty =
      cfg->translate != 0
          ? uniform_pm1(seed, stream, base + DRAW_SHIFT_Y) * cfg->translate * height
          : 0.0;
  /* Forward map about the centre c: q = zoom * R(angle) (p - c) + c + t. Each output pixel q
   * reads p = R(-angle) (q - c - t) / zoom + c. */
  const double rad = angle * (3.14159265358979323846 / 180.0);
  const double cs = cos(rad) / zoom, sn = sin(rad) / zoom;
  const double cx = 0.5 * (width - 1), cy = 0.5 * (height - 1);
  for (int64_t i = 0; i < height; i++) {
    for (int64_t j = 0; j < width; j++) {
      const double dx = (double)j - cx - tx, dy = (double)i - cy - ty;
      const double u = cs * dx + sn * dy + cx, v = -sn * dx + cs * dy + cy;
      const double fu = floor(u), fv = floor(v);
      const float ax = (float)(u - fu), ay = (float)(v - fv);
      /* clamp far-away coordinates before converting: everything there reads fill */
      const int64_t j0 = fu < -2 ? -2 : fu > width + 1 ? width + 1 : (int64_t)fu;
      const int64_t i0 = fv < -2 ? -2 : fv > height + 1 ? height + 1 : (int64_t)fv;
      for (int c = 0; c < channels; c++) {
        const float *src = in + c * plane;
        const float top = (1 - ax) * at(&s, src, i0, j0) + ax * at(&s, src, i0, j0 + 1);
        const float bot = (1 - ax) * at(&s, src, i0 + 1, j0) + ax * at(&s, src, i0 + 1, j0 + 1);
        out[c * plane + i * width + j] = (1 - ay) * top + ay * bot;
      }
    }
  }
  return DML_OK;
}
