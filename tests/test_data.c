/* IDX reader: the committed Fashion-MNIST subset, and bad files (missing, wrong magic,
 * truncated, count mismatch). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "test.h"

static const char *fixture(const char *name, char *buf, int n) {
  snprintf(buf, (size_t)n, "%s/fixtures/%s", dml_test_data_dir(), name);
  return buf;
}

TEST(reads_fashion_mnist_subset) {
  char ip[1024], lp[1024];
  dml_dataset ds;
  ASSERT_OK(dml_data_read_idx(fixture("fmnist64-images-idx3-ubyte.gz", ip, sizeof ip),
                              fixture("fmnist64-labels-idx1-ubyte.gz", lp, sizeof lp), 0, &ds));
  ASSERT_EQ_INT(ds.n, 64);
  ASSERT_EQ_INT(ds.ndim, 3);
  ASSERT_EQ_INT(ds.shape[0], 1);
  ASSERT_EQ_INT(ds.shape[1], 28);
  ASSERT_EQ_INT(ds.shape[2], 28);
  ASSERT_EQ_INT(ds.example_numel, 784);
  /* Fashion-MNIST's first training labels: ankle boot, T-shirt, T-shirt, dress, T-shirt */
  ASSERT_EQ_INT(ds.labels[0], 9);
  ASSERT_EQ_INT(ds.labels[1], 0);
  ASSERT_EQ_INT(ds.labels[3], 3);
  float lo = 1, hi = 0;
  double sum = 0;
  for (int64_t i = 0; i < ds.n * 784; i++) {
    lo = ds.x[i] < lo ? ds.x[i] : lo;
    hi = ds.x[i] > hi ? ds.x[i] : hi;
    sum += ds.x[i];
  }
  ASSERT_NEAR(lo, 0.0, 0);
  ASSERT_NEAR(hi, 1.0, 1e-6);
  ASSERT_TRUE(sum / (double)(ds.n * 784) > 0.2 && sum / (double)(ds.n * 784) < 0.4);
  ASSERT_OK(dml_dataset_filter_labels(&ds, 0, 5));
  for (int64_t i = 0; i < ds.n; i++) ASSERT_TRUE(ds.labels[i] <= 5);
  ASSERT_TRUE(ds.n < 64 && ds.n > 20);
  dml_dataset_free(&ds);
  dml_dataset_free(NULL);
}

static void write_gz(const char *path, const unsigned char *b, int n) {
  gzFile f = gzopen(path, "wb");
  gzwrite(f, b, (unsigned)n);
  gzclose(f);
}

TEST(bad_idx_files_are_errors) {
  char ip[1024], lp[1024], bad[1024];
  fixture("fmnist64-images-idx3-ubyte.gz", ip, sizeof ip);
  fixture("fmnist64-labels-idx1-ubyte.gz", lp, sizeof lp);
  dml_dataset ds;
  ASSERT_ERROR(dml_data_read_idx("/nonexistent/images.gz", lp, 0, &ds), DML_ERR_IO);
  ASSERT_TRUE(strstr(dml_last_error(), "/nonexistent/images.gz") != NULL);
  /* wrong magic */
  unsigned char junk[16] = {'G', 'I', 'F', '8', 0, 0, 0, 1, 0, 0, 0, 28, 0, 0, 0, 28};
  write_gz(dml_test_tmp_path("junk.gz", bad, sizeof bad), junk, 16);
  ASSERT_ERROR(dml_data_read_idx(bad, lp, 0, &ds), DML_ERR_FORMAT);
  ASSERT_TRUE(strstr(dml_last_error(), "not an IDX file") != NULL);
  /* header promises 64 images, data stops after 10 */
  unsigned char hdr[16 + 784 * 10] = {0, 0, 8, 3, 0, 0, 0, 64, 0, 0, 0, 28, 0, 0, 0, 28};
  write_gz(dml_test_tmp_path("trunc.gz", bad, sizeof bad), hdr, (int)sizeof hdr);
  ASSERT_ERROR(dml_data_read_idx(bad, lp, 0, &ds), DML_ERR_FORMAT);
  ASSERT_TRUE(strstr(dml_last_error(), "truncated") != NULL);
  /* 10 images against 64 labels */
  hdr[7] = 10;
  write_gz(dml_test_tmp_path("ten.gz", bad, sizeof bad), hdr, (int)sizeof hdr);
  ASSERT_ERROR(dml_data_read_idx(bad, lp, 0, &ds), DML_ERR_SHAPE);
  ASSERT_TRUE(strstr(dml_last_error(), "64 labels") != NULL);
  /* float IDX type is refused with a message, not misread */
  hdr[2] = 0x0D;
  write_gz(dml_test_tmp_path("float.gz", bad, sizeof bad), hdr, (int)sizeof hdr);
  ASSERT_ERROR(dml_data_read_idx(bad, lp, 0, &ds), DML_ERR_UNSUPPORTED);
  /* a limit reads only the first images */
  ASSERT_OK(dml_data_read_idx(ip, lp, 5, &ds));
  ASSERT_EQ_INT(ds.n, 5);
  dml_dataset_free(&ds);
}

TEST(idx_excluding_labels_matches_filtering) {
  char ip[1024], lp[1024];
  fixture("fmnist64-images-idx3-ubyte.gz", ip, sizeof ip);
  fixture("fmnist64-labels-idx1-ubyte.gz", lp, sizeof lp);
  dml_dataset all, some;
  ASSERT_OK(dml_data_read_idx(ip, lp, 0, &all));
  const int32_t ex[] = {6, 7, 8, 9};
  ASSERT_OK(dml_data_read_idx_excluding(ip, lp, 0, ex, 4, &some));
  ASSERT_OK(dml_dataset_filter_labels(&all, 0, 5));
  ASSERT_EQ_INT(some.n, all.n);
  ASSERT_EQ_INT(some.num_classes, 10);
  for (int64_t i = 0; i < some.n; i++) ASSERT_EQ_INT(some.labels[i], all.labels[i]);
  ASSERT_TRUE(memcmp(some.x, all.x, (size_t)(some.n * 784) * sizeof(float)) == 0);
  dml_dataset_free(&some);
  const int32_t every[] = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9};
  ASSERT_ERROR(dml_data_read_idx_excluding(ip, lp, 0, every, 10, &some), DML_ERR_FORMAT);
  ASSERT_TRUE(some.x == NULL && some.n == 0);
  dml_dataset_free(&all);
}
