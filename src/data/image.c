/* Image decoding for the image readers: files (PNG, JPEG, BMP through stb_image) into CHW
 * float examples in [0,1], resized with stb_image_resize, many files in parallel. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <stb_image.h>
#include <stb_image_resize.h>

#include "core/status_internal.h"
#include "data/data_internal.h"

/* Above this side length a "picture" is a damaged header, not a training image. */
#define MAX_SIDE 65536
#define NOT_AN_IMAGE "corrupt, truncated, or not a PNG, JPEG or BMP image"

int dml__is_image_name(const char *name) {
  const char *dot = strrchr(name, '.');
  if (!dot || dot == name) return 0;
  static const char *const exts[] = {"png", "jpg", "jpeg", "bmp"};
  for (size_t e = 0; e < sizeof exts / sizeof exts[0]; e++) {
    const char *a = dot + 1, *b = exts[e];
    while (*a && *b && (*a | 0x20) == *b) a++, b++;
    if (!*a && !*b) return 1;
  }
  return 0;
}

dml_status dml__image_options(const dml_image_options *opt, dml_image_options *r) {
  dml_image_options o = {0, 0, 0};
  if (opt) o = *opt;
  if (o.channels == 0) o.channels = 1;
  if (o.channels != 1 && o.channels != 3)
    return dml__error(DML_ERR_INVALID_ARGUMENT, "image channels must be 1 (grey) or 3 (RGB), "
                      "not %d", o.channels);
  if ((o.height == 0) != (o.width == 0) || o.height < 0 || o.width < 0 || o.height > MAX_SIDE ||
      o.width > MAX_SIDE)
    return dml__error(DML_ERR_INVALID_ARGUMENT,
                      "image size %d x %d (height x width): give both in 1..%d to resize, or "
                      "both 0 to keep the images' size",
                      o.height, o.width, MAX_SIDE);
  *r = o;
  return DML_OK;
}

/* Opens path for stb (the open error tells a missing file from a corrupt one). */
static dml_status open_image(const char *path, FILE **f) {
  *f = fopen(path, "rb");
  if (!*f) return dml__error(DML_ERR_IO, "%s: cannot open image: %s", path, strerror(errno));
  return DML_OK;
}

/* Decodes one image into dst (channels x H x W). H, W: the target; resize = 0 demands that
 * size (first_path names the image that set it). */
static dml_status load_one(const char *path, int channels, int H, int W, int resize,
                           const char *first_path, float *dst) {
  FILE *f;
  DML_TRY(open_image(path, &f));
  int w = 0, h = 0, comp = 0;
  unsigned char *px = stbi_load_from_file(f, &w, &h, &comp, channels);
  fclose(f);
  if (!px)
    return dml__error(DML_ERR_FORMAT, "%s: cannot read image (%s; stb_image says: %s)", path,
                      NOT_AN_IMAGE, stbi_failure_reason());
  unsigned char *src = px, *rs = NULL;
  if (w != W || h != H) {
    if (!resize) {
      stbi_image_free(px);
      return dml__error(DML_ERR_SHAPE,
                        "%s: image is %d x %d (height x width) but %s is %d x %d; give a "
                        "resize target (height, width) to read images of different sizes",
                        path, h, w, first_path, H, W);
    }
    rs = malloc((size_t)W * (size_t)H * (size_t)channels);
    if (!rs || !stbir_resize_uint8(px, w, h, 0, rs, W, H, 0, channels)) {
      free(rs);
      stbi_image_free(px);
      return dml__error(DML_ERR_NO_MEMORY, "%s: cannot resize the %d x %d image to %d x %d",
                        path, h, w, H, W);
    }
    src = rs;
  }
  /* HWC bytes -> CHW floats */
  const int64_t plane = (int64_t)H * W;
  for (int c = 0; c < channels; c++)
    for (int64_t p = 0; p < plane; p++)
      dst[c * plane + p] = src[p * channels + c] * (1.0f / 255.0f);
  free(rs);
  stbi_image_free(px);
  return DML_OK;
}

dml_status dml__images_read(char *const *paths, int64_t n, const dml_image_options *opt,
                            const char *where_file, const int64_t *where_lines,
                            dml_dataset *out) {
  dml_image_options o;
  DML_TRY(dml__image_options(opt, &o));
  if (n < 1) return dml__error(DML_ERR_INVALID_ARGUMENT, "no images to read");
  int H = o.height, W = o.width, resize = H > 0;
  if (!resize) {
    /* the first image sets the size */
    FILE *f;
    dml_status st = open_image(paths[0], &f);
    int comp = 0;
    if (st == DML_OK) {
      if (!stbi_info_from_file(f, &W, &H, &comp))
        st = dml__error(DML_ERR_FORMAT, "%s: cannot read image (%s; stb_image says: %s)",
                        paths[0], NOT_AN_IMAGE, stbi_failure_reason());
      fclose(f);
    }
    if (st == DML_OK && (H < 1 || W < 1 || H > MAX_SIDE || W > MAX_SIDE))
      st = dml__error(DML_ERR_FORMAT, "%s: image of %d x %d pixels", paths[0], H, W);
    if (st != DML_OK) {
      if (!where_file) return st;
      char msg[2048];
      snprintf(msg, sizeof msg, "%s", dml_last_error()); /* the message buffer is rewritten */
      return dml__error(st, "%s:%lld: %s", where_file, (long long)where_lines[0], msg);
    }
  }
  const int64_t numel = (int64_t)o.channels * H * W;
  float *x = dml_alloc_aligned(n * numel * (int64_t)sizeof(float));
  if (!x)
    return dml__error(DML_ERR_NO_MEMORY, "out of memory for %lld images of %d x %d x %d",
                      (long long)n, o.channels, H, W);
  /* The error reported is the one of the lowest failing index, whatever the schedule: images
   * before a known failure are still read, images after it are skipped. */
  int64_t bad = n;
  dml_status bad_st = DML_OK;
  char *bad_msg = malloc(2048);
  if (!bad_msg) {
    dml_free_aligned(x);
    return dml__error(DML_ERR_NO_MEMORY, "out of memory");
  }
  bad_msg[0] = '\0';
#pragma omp parallel for schedule(dynamic, 4)
  for (int64_t i = 0; i < n; i++) {
    int64_t cur;
#pragma omp atomic read
    cur = bad;
    if (i > cur) continue;
    dml_status s = load_one(paths[i], o.channels, H, W, resize, paths[0], x + i * numel);
    if (s != DML_OK) {
#pragma omp critical(dml_images_error)
      {
        if (i < bad) {
          bad_st = s;
          snprintf(bad_msg, 2048, "%s", dml_last_error());
#pragma omp atomic write
          bad = i;
        }
      }
    }
  }
  dml_status st = DML_OK;
  if (bad < n) {
    dml_free_aligned(x);
    if (where_file)
      st = dml__error(bad_st, "%s:%lld: %s", where_file, (long long)where_lines[bad], bad_msg);
    else
      st = dml__error(bad_st, "%s", bad_msg);
    free(bad_msg);
    return st;
  }
  free(bad_msg);
  out->x = x;
  out->ndim = 3;
  out->shape[0] = o.channels;
  out->shape[1] = H;
  out->shape[2] = W;
  out->example_numel = numel;
  return DML_OK;
}
