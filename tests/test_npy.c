/* NumPy .npy reader and writer: files written by numpy itself (tests/fixtures/npy, made by
 * tools/gen_npy_fixtures.py), round trips through dml_npy_write, the unsupported layouts and
 * dtypes with their messages, and corrupt files (bad magic, truncated header or body, trailing
 * bytes, a header that lies about the shape). */
#include <stdio.h>
#include <stdlib.h>

#include "test.h"

static const char *fixture(const char *name, char *buf, int n) {
  snprintf(buf, (size_t)n, "%s/fixtures/npy/%s", dml_test_data_dir(), name);
  return buf;
}

TEST(npy_reads_files_numpy_wrote) {
  char p[1024];
  dml_npy a;
  ASSERT_OK(dml_npy_read(fixture("f32_3x4.npy", p, sizeof p), &a));
  ASSERT_EQ_INT(a.dtype, DML_NPY_F32);
  ASSERT_EQ_INT(a.ndim, 2);
  ASSERT_EQ_INT(a.shape[0], 3);
  ASSERT_EQ_INT(a.shape[1], 4);
  ASSERT_EQ_INT(a.numel, 12);
  for (int i = 0; i < 12; i++) ASSERT_NEAR(((float *)a.data)[i], i * 0.5 - 2.0, 0.0);
  dml_npy_free(&a);
  ASSERT_OK(dml_npy_read(fixture("f32_3x4_v2.npy", p, sizeof p), &a)); /* format 2.0 */
  ASSERT_EQ_INT(a.numel, 12);
  ASSERT_NEAR(((float *)a.data)[11], 3.5, 0.0);
  dml_npy_free(&a);
  ASSERT_OK(dml_npy_read(fixture("i64_5.npy", p, sizeof p), &a));
  ASSERT_EQ_INT(a.dtype, DML_NPY_I64);
  ASSERT_EQ_INT(a.ndim, 1);
  for (int i = 0; i < 5; i++) ASSERT_EQ_INT(((int64_t *)a.data)[i], (int64_t)i * 1000000007);
  dml_npy_free(&a);
  ASSERT_OK(dml_npy_read(fixture("i32_5.npy", p, sizeof p), &a));
  ASSERT_EQ_INT(a.dtype, DML_NPY_I32);
  for (int i = 0; i < 5; i++) ASSERT_EQ_INT(((int32_t *)a.data)[i], i - 2);
  dml_npy_free(&a);
  ASSERT_OK(dml_npy_read(fixture("f32_0d.npy", p, sizeof p), &a));
  ASSERT_EQ_INT(a.ndim, 0);
  ASSERT_EQ_INT(a.numel, 1);
  ASSERT_NEAR(((float *)a.data)[0], 3.25, 0.0);
  dml_npy_free(&a);
  ASSERT_OK(dml_npy_read(fixture("f32_0x5.npy", p, sizeof p), &a));
  ASSERT_EQ_INT(a.ndim, 2);
  ASSERT_EQ_INT(a.shape[0], 0);
  ASSERT_EQ_INT(a.shape[1], 5);
  ASSERT_EQ_INT(a.numel, 0);
  dml_npy_free(&a);
  ASSERT_OK(dml_npy_read(fixture("f32_2x3x2.npy", p, sizeof p), &a));
  ASSERT_EQ_INT(a.ndim, 3);
  ASSERT_NEAR(((float *)a.data)[7], 7.0, 0.0);
  dml_npy_free(&a);
}

TEST(npy_refuses_what_it_cannot_read_and_says_how_to_convert) {
  char p[1024];
  dml_npy a;
  ASSERT_ERROR(dml_npy_read(fixture("f64_3.npy", p, sizeof p), &a), DML_ERR_UNSUPPORTED);
  ASSERT_TRUE(strstr(dml_last_error(), "astype(numpy.float32)") != NULL);
  ASSERT_TRUE(a.data == NULL);
  ASSERT_ERROR(dml_npy_read(fixture("u8_3.npy", p, sizeof p), &a), DML_ERR_UNSUPPORTED);
  ASSERT_ERROR(dml_npy_read(fixture("f32_fortran.npy", p, sizeof p), &a), DML_ERR_UNSUPPORTED);
  ASSERT_TRUE(strstr(dml_last_error(), "ascontiguousarray") != NULL);
  ASSERT_ERROR(dml_npy_read(fixture("f32_bigendian.npy", p, sizeof p), &a),
               DML_ERR_UNSUPPORTED);
  ASSERT_TRUE(strstr(dml_last_error(), "big-endian") != NULL);
  ASSERT_ERROR(dml_npy_read(fixture("no_such_file.npy", p, sizeof p), &a), DML_ERR_IO);
  ASSERT_TRUE(strstr(dml_last_error(), "no_such_file.npy") != NULL);
}

TEST(npy_round_trips) {
  char p[1024];
  const float f[6] = {1.5f, -2.0f, 0.0f, 3.0e-38f, 1e30f, -7.25f};
  const int64_t s2[2] = {2, 3}, s1[1] = {6};
  const int32_t ii[6] = {0, -1, 2, INT32_MAX, INT32_MIN, 5};
  const int64_t ll[6] = {0, -1, 2, INT64_MAX, INT64_MIN, 5};
  dml_npy a;
  dml_test_tmp_path("rt_f32.npy", p, sizeof p);
  ASSERT_OK(dml_npy_write(p, DML_NPY_F32, 2, s2, f));
  ASSERT_OK(dml_npy_read(p, &a));
  ASSERT_EQ_INT(a.ndim, 2);
  ASSERT_EQ_INT(a.shape[1], 3);
  ASSERT_TRUE(memcmp(a.data, f, sizeof f) == 0);
  dml_npy_free(&a);
  dml_test_tmp_path("rt_i32.npy", p, sizeof p);
  ASSERT_OK(dml_npy_write(p, DML_NPY_I32, 1, s1, ii));
  ASSERT_OK(dml_npy_read(p, &a));
  ASSERT_EQ_INT(a.dtype, DML_NPY_I32);
  ASSERT_TRUE(memcmp(a.data, ii, sizeof ii) == 0);
  dml_npy_free(&a);
  dml_test_tmp_path("rt_i64.npy", p, sizeof p);
  ASSERT_OK(dml_npy_write(p, DML_NPY_I64, 1, s1, ll));
  ASSERT_OK(dml_npy_read(p, &a));
  ASSERT_TRUE(memcmp(a.data, ll, sizeof ll) == 0);
  dml_npy_free(&a);
  /* the data starts on a 64-byte boundary, as numpy writes it */
  FILE *fp = fopen(p, "rb");
  ASSERT_TRUE(fp != NULL);
  fseek(fp, 0, SEEK_END);
  const long size = ftell(fp);
  fclose(fp);
  ASSERT_EQ_INT((size - (long)sizeof ll) % 64, 0);
  /* 0-d and empty arrays */
  dml_test_tmp_path("rt_0d.npy", p, sizeof p);
  ASSERT_OK(dml_npy_write(p, DML_NPY_F32, 0, NULL, f));
  ASSERT_OK(dml_npy_read(p, &a));
  ASSERT_EQ_INT(a.ndim, 0);
  ASSERT_NEAR(((float *)a.data)[0], 1.5, 0.0);
  dml_npy_free(&a);
  const int64_t s0[2] = {0, 4};
  dml_test_tmp_path("rt_empty.npy", p, sizeof p);
  ASSERT_OK(dml_npy_write(p, DML_NPY_F32, 2, s0, NULL));
  ASSERT_OK(dml_npy_read(p, &a));
  ASSERT_EQ_INT(a.numel, 0);
  dml_npy_free(&a);
  const int64_t bad[1] = {-1};
  ASSERT_ERROR(dml_npy_write(p, DML_NPY_F32, 1, bad, f), DML_ERR_INVALID_ARGUMENT);
  ASSERT_ERROR(dml_npy_write(p, (dml_npy_dtype)7, 1, s1, f), DML_ERR_INVALID_ARGUMENT);
}

/* Writes bytes to a scratch file and returns its path in buf. */
static const char *scratch_file(const char *name, const void *bytes, size_t n, char *buf,
                                int size) {
  dml_test_tmp_path(name, buf, size);
  FILE *f = fopen(buf, "wb");
  if (f) {
    fwrite(bytes, 1, n, f);
    fclose(f);
  }
  return buf;
}

TEST(npy_rejects_corrupt_files) {
  char p[1024], q[1024];
  dml_npy a;
  /* a valid file to cut and edit */
  const float f[6] = {1, 2, 3, 4, 5, 6};
  const int64_t s[2] = {2, 3};
  dml_test_tmp_path("good.npy", p, sizeof p);
  ASSERT_OK(dml_npy_write(p, DML_NPY_F32, 2, s, f));
  unsigned char buf[256];
  FILE *fp = fopen(p, "rb");
  ASSERT_TRUE(fp != NULL);
  const size_t n = fread(buf, 1, sizeof buf, fp);
  fclose(fp);
  ASSERT_EQ_INT(n, 128 + sizeof f);
  ASSERT_ERROR(dml_npy_read(scratch_file("trunc_body.npy", buf, n - 3, q, sizeof q), &a),
               DML_ERR_FORMAT);
  ASSERT_TRUE(strstr(dml_last_error(), "truncated") != NULL);
  ASSERT_ERROR(dml_npy_read(scratch_file("trunc_head.npy", buf, 40, q, sizeof q), &a),
               DML_ERR_FORMAT);
  ASSERT_ERROR(dml_npy_read(scratch_file("tiny.npy", buf, 5, q, sizeof q), &a), DML_ERR_FORMAT);
  unsigned char longer[300];
  memcpy(longer, buf, n);
  memset(longer + n, 0, 4);
  ASSERT_ERROR(dml_npy_read(scratch_file("trailing.npy", longer, n + 4, q, sizeof q), &a),
               DML_ERR_FORMAT);
  unsigned char e[256];
  memcpy(e, buf, n);
  e[1] = 'X'; /* magic */
  ASSERT_ERROR(dml_npy_read(scratch_file("magic.npy", e, n, q, sizeof q), &a), DML_ERR_FORMAT);
  memcpy(e, buf, n);
  e[6] = 9; /* version */
  ASSERT_ERROR(dml_npy_read(scratch_file("version.npy", e, n, q, sizeof q), &a),
               DML_ERR_UNSUPPORTED);
  /* a header that claims a huge shape: refused before any allocation */
  memcpy(e, buf, n);
  char *sh = strstr((char *)e + 10, "(2, 3)");
  ASSERT_TRUE(sh != NULL);
  memcpy(sh, "(9, 9)", 6);
  ASSERT_ERROR(dml_npy_read(scratch_file("lying.npy", e, n, q, sizeof q), &a), DML_ERR_FORMAT);
  memcpy(sh, "(2; 3)", 6);
  ASSERT_ERROR(dml_npy_read(scratch_file("shape.npy", e, n, q, sizeof q), &a), DML_ERR_FORMAT);
  memcpy(e, buf, n);
  char *d = strstr((char *)e + 10, "descr");
  ASSERT_TRUE(d != NULL);
  memcpy(d, "dexcr", 5);
  ASSERT_ERROR(dml_npy_read(scratch_file("nodescr.npy", e, n, q, sizeof q), &a),
               DML_ERR_FORMAT);
  ASSERT_TRUE(a.data == NULL);
}
