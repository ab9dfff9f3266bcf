/* Data set readers (.npy, CSV, image folders, manifests) on the fixtures of
 * tools/gen_data_fixtures.py and on files written here (JPEG), with their error messages; row
 * subsets, label filtering and per-channel normalisation. */
#define _POSIX_C_SOURCE 200809L /* mkdir */
#include <stdint.h>
#include <stdlib.h>
#include <sys/stat.h>

#include <stb_image_write.h>

#include "test.h"

static const char *fx(const char *name, char *buf, int n) {
  snprintf(buf, (size_t)n, "%s/fixtures/data/%s", dml_test_data_dir(), name);
  return buf;
}

/* A reader that failed left its output zeroed. */
static int is_zeroed(const dml_dataset *ds) {
  dml_dataset z;
  memset(&z, 0, sizeof z);
  return memcmp(ds, &z, sizeof z) == 0;
}

#define ASSERT_MSG(needle)                                                                   \
  do {                                                                                       \
    if (!strstr(dml_last_error(), (needle))) {                                               \
      fprintf(stderr, "  %s:%d: message '%s' lacks '%s'\n", __FILE__, __LINE__,              \
              dml_last_error(), (needle));                                                   \
      DML__FAIL_HERE();                                                                      \
    }                                                                                        \
  } while (0)

/* Pixel formulas of tools/gen_data_fixtures.py. */
static int grey(int y, int x) { return (17 * y + 29 * x + 3) % 256; }
static int rgb(int y, int x, int c) {
  int v = c == 0 ? 40 * y + 7 * x : c == 1 ? 255 - 13 * x - 5 * y : 11 * x * y;
  return ((v % 256) + 256) % 256;
}

/* ---- .npy ---- */

TEST(npy_reads_examples_and_labels) {
  char xp[1024], yp[1024];
  dml_dataset ds;
  ASSERT_OK(dml_data_read_npy(fx("npy/x.npy", xp, sizeof xp), fx("npy/y.npy", yp, sizeof yp), 0,
                              &ds));
  ASSERT_EQ_INT(ds.n, 6);
  ASSERT_EQ_INT(ds.ndim, 1);
  ASSERT_EQ_INT(ds.shape[0], 4);
  ASSERT_EQ_INT(ds.example_numel, 4);
  ASSERT_EQ_INT(ds.num_classes, 6);
  ASSERT_TRUE(ds.class_names == NULL && ds.paths == NULL && ds.label_offsets == NULL);
  for (int i = 0; i < 24; i++) ASSERT_NEAR(ds.x[i], 0.25 * i - 1.0, 0);
  const int32_t want[6] = {2, 0, 1, 2, 0, 5};
  for (int i = 0; i < 6; i++) ASSERT_EQ_INT(ds.labels[i], want[i]);
  dml_dataset_free(&ds);
  /* int32 labels, a limit */
  ASSERT_OK(dml_data_read_npy(xp, fx("npy/y32.npy", yp, sizeof yp), 3, &ds));
  ASSERT_EQ_INT(ds.n, 3);
  ASSERT_EQ_INT(ds.labels[2], 1);
  ASSERT_NEAR(ds.x[11], 0.25 * 11 - 1.0, 0);
  ASSERT_EQ_INT(ds.num_classes, 3);
  dml_dataset_free(&ds);
  /* no labels file: every label 0 */
  ASSERT_OK(dml_data_read_npy(xp, NULL, 0, &ds));
  ASSERT_EQ_INT(ds.num_classes, 1);
  for (int i = 0; i < 6; i++) ASSERT_EQ_INT(ds.labels[i], 0);
  dml_dataset_free(&ds);
  /* rank 4: examples [1, 3, 3] */
  ASSERT_OK(dml_data_read_npy(fx("npy/x_chw.npy", xp, sizeof xp), NULL, 0, &ds));
  ASSERT_EQ_INT(ds.n, 4);
  ASSERT_EQ_INT(ds.ndim, 3);
  ASSERT_EQ_INT(ds.shape[0], 1);
  ASSERT_EQ_INT(ds.shape[2], 3);
  ASSERT_EQ_INT(ds.example_numel, 9);
  ASSERT_NEAR(ds.x[35], 35, 0);
  dml_dataset_free(&ds);
}

TEST(npy_errors_name_the_file_and_row) {
  char xp[1024], yp[1024];
  dml_dataset ds;
  fx("npy/x.npy", xp, sizeof xp);
  ASSERT_ERROR(dml_data_read_npy(xp, fx("npy/y_short.npy", yp, sizeof yp), 0, &ds),
               DML_ERR_SHAPE);
  ASSERT_MSG("has 6 examples but");
  ASSERT_MSG("y_short.npy has 5 labels");
  ASSERT_TRUE(is_zeroed(&ds));
  ASSERT_ERROR(dml_data_read_npy(fx("npy/x_nan.npy", xp, sizeof xp), NULL, 0, &ds),
               DML_ERR_NOT_FINITE);
  ASSERT_MSG("x_nan.npy: row 3, value 2 is NaN");
  ASSERT_TRUE(is_zeroed(&ds));
  /* the NaN row is past the limit: fine */
  ASSERT_OK(dml_data_read_npy(xp, NULL, 3, &ds));
  dml_dataset_free(&ds);
  fx("npy/x.npy", xp, sizeof xp);
  ASSERT_ERROR(dml_data_read_npy(xp, fx("npy/y_negative.npy", yp, sizeof yp), 0, &ds),
               DML_ERR_FORMAT);
  ASSERT_MSG("y_negative.npy: row 2: label -1");
  ASSERT_ERROR(dml_data_read_npy(xp, fx("npy/y_float.npy", yp, sizeof yp), 0, &ds),
               DML_ERR_UNSUPPORTED);
  ASSERT_MSG("int32 or int64");
  ASSERT_ERROR(dml_data_read_npy(fx("npy/x_vector.npy", xp, sizeof xp), NULL, 0, &ds),
               DML_ERR_SHAPE);
  ASSERT_MSG("rank 1");
  ASSERT_ERROR(dml_data_read_npy(fx("npy/nope.npy", xp, sizeof xp), NULL, 0, &ds), DML_ERR_IO);
  ASSERT_MSG("nope.npy");
  ASSERT_TRUE(is_zeroed(&ds));
}

/* ---- CSV ---- */

TEST(csv_with_header_and_integer_labels) {
  char p[1024];
  dml_dataset ds;
  fx("csv/header.csv", p, sizeof p);
  for (int header = -1; header <= 1; header += 2) {
    dml_csv_options o = {0, header, NULL};
    ASSERT_OK(dml_data_read_csv(p, &o, 0, &ds));
    ASSERT_EQ_INT(ds.n, 5);
    ASSERT_EQ_INT(ds.ndim, 1);
    ASSERT_EQ_INT(ds.shape[0], 3);
    ASSERT_EQ_INT(ds.num_classes, 3);
    ASSERT_TRUE(ds.class_names == NULL);
    for (int i = 0; i < 5; i++) {
      ASSERT_EQ_INT(ds.labels[i], i % 3);
      ASSERT_NEAR(ds.x[i * 3 + 0], 0.5 * i, 0);
      ASSERT_NEAR(ds.x[i * 3 + 1], -1.0 * i, 0);
      ASSERT_NEAR(ds.x[i * 3 + 2], i * i / 4.0, 0);
    }
    dml_dataset_free(&ds);
  }
  ASSERT_OK(dml_data_read_csv(p, NULL, 2, &ds)); /* NULL options, a limit */
  ASSERT_EQ_INT(ds.n, 2);
  dml_dataset_free(&ds);
  dml_csv_options o = {0, -1, "label"};
  ASSERT_OK(dml_data_read_csv(p, &o, 0, &ds));
  ASSERT_EQ_INT(ds.labels[4], 1);
  dml_dataset_free(&ds);
  /* a feature column as the label: 'x1' holds 0, 0.5, 1, ... which are not all integers */
  o.label_column = "x1";
  ASSERT_OK(dml_data_read_csv(p, &o, 0, &ds));
  ASSERT_TRUE(ds.class_names != NULL);
  ASSERT_EQ_INT(ds.num_classes, 5);
  ASSERT_TRUE(strcmp(ds.class_names[0], "0") == 0); /* byte-wise: "0" < "0.5" < "1" ... */
  ASSERT_TRUE(strcmp(ds.class_names[4], "2") == 0);
  ASSERT_EQ_INT(ds.labels[3], 3);
  ASSERT_NEAR(ds.x[3 * 3 + 0], -3, 0); /* features x2, x3, label */
  ASSERT_NEAR(ds.x[3 * 3 + 2], 0, 0);
  dml_dataset_free(&ds);
  /* 'x2' holds 0, -1, -2, ...: integers, and negative ones are refused */
  o.label_column = "x2";
  ASSERT_ERROR(dml_data_read_csv(p, &o, 0, &ds), DML_ERR_FORMAT);
  ASSERT_MSG("header.csv:3: label -1");
  o.label_column = "nope";
  ASSERT_ERROR(dml_data_read_csv(p, &o, 0, &ds), DML_ERR_NOT_FOUND);
  ASSERT_MSG("no column named 'nope'");
  ASSERT_MSG("'x1', 'x2', 'x3', 'label'");
  ASSERT_TRUE(is_zeroed(&ds));
  /* header forced off: the header line is data, and 'x1' is not a number */
  o.label_column = NULL;
  o.header = 0;
  ASSERT_ERROR(dml_data_read_csv(p, &o, 0, &ds), DML_ERR_FORMAT);
  ASSERT_MSG("header.csv:1: column 0: 'x1' is not a number");
}

TEST(csv_without_header_other_delimiter) {
  char p[1024];
  dml_dataset ds;
  fx("csv/noheader.csv", p, sizeof p);
  const char *columns[] = {"0", "-4"};
  for (int t = 0; t < 2; t++) {
    dml_csv_options o = {';', -1, columns[t]};
    ASSERT_OK(dml_data_read_csv(p, &o, 0, &ds));
    ASSERT_EQ_INT(ds.n, 5); /* blank trailing lines skipped */
    ASSERT_EQ_INT(ds.shape[0], 3);
    ASSERT_EQ_INT(ds.labels[4], 1);
    ASSERT_NEAR(ds.x[4 * 3 + 2], 4.0, 0);
    dml_dataset_free(&ds);
  }
  dml_csv_options o = {';', 0, "label"};
  ASSERT_ERROR(dml_data_read_csv(p, &o, 0, &ds), DML_ERR_INVALID_ARGUMENT);
  ASSERT_MSG("no header line");
  o.header = -1; /* a name implies a header line, which has no such name */
  ASSERT_ERROR(dml_data_read_csv(p, &o, 0, &ds), DML_ERR_NOT_FOUND);
  ASSERT_MSG("no column named 'label'");
  o.label_column = "7";
  ASSERT_ERROR(dml_data_read_csv(p, &o, 0, &ds), DML_ERR_INVALID_ARGUMENT);
  ASSERT_MSG("outside the 4 columns");
  /* the default delimiter sees one field per line */
  ASSERT_ERROR(dml_data_read_csv(p, NULL, 0, &ds), DML_ERR_FORMAT);
  ASSERT_MSG("delimiter");
}

TEST(csv_quoted_fields_bom_crlf_string_labels) {
  char p[1024];
  dml_dataset ds;
  fx("csv/quoted.csv", p, sizeof p);
  const char *columns[] = {"species", "1"};
  for (int t = 0; t < 2; t++) {
    dml_csv_options o = {0, -1, columns[t]};
    ASSERT_OK(dml_data_read_csv(p, &o, 0, &ds));
    ASSERT_EQ_INT(ds.n, 4);
    ASSERT_EQ_INT(ds.shape[0], 2);
    ASSERT_EQ_INT(ds.num_classes, 3);
    ASSERT_TRUE(ds.class_names != NULL);
    ASSERT_TRUE(strcmp(ds.class_names[0], "bird") == 0);
    ASSERT_TRUE(strcmp(ds.class_names[1], "cat") == 0);
    ASSERT_TRUE(strcmp(ds.class_names[2], "dog \"big\"") == 0);
    const int32_t want[4] = {2, 1, 0, 1};
    const float wx[8] = {1.5f, 2, 3, 4.25f, 5, -6, 7, 8};
    for (int i = 0; i < 4; i++) ASSERT_EQ_INT(ds.labels[i], want[i]);
    for (int i = 0; i < 8; i++) ASSERT_NEAR(ds.x[i], wx[i], 0);
    dml_dataset_free(&ds);
  }
  /* the quoted header name with a comma inside; 'species' is then a feature column */
  dml_csv_options o = {0, 1, "len, cm"};
  ASSERT_ERROR(dml_data_read_csv(p, &o, 0, &ds), DML_ERR_FORMAT);
  ASSERT_MSG("quoted.csv:2: column 'species': 'dog \"big\"' is not a number");
}

TEST(csv_errors_name_file_line_and_column) {
  char p[1024];
  dml_dataset ds;
  ASSERT_ERROR(dml_data_read_csv(fx("csv/bad_fields.csv", p, sizeof p), NULL, 0, &ds),
               DML_ERR_FORMAT);
  ASSERT_MSG("bad_fields.csv:17: 5 fields, the header has 6");
  ASSERT_TRUE(is_zeroed(&ds));
  /* the bad line is past the limit */
  ASSERT_OK(dml_data_read_csv(p, NULL, 15, &ds));
  ASSERT_EQ_INT(ds.n, 15);
  dml_dataset_free(&ds);
  ASSERT_ERROR(dml_data_read_csv(fx("csv/bad_number.csv", p, sizeof p), NULL, 0, &ds),
               DML_ERR_FORMAT);
  ASSERT_MSG("bad_number.csv:4: column 'x3': 'abc' is not a number");
  ASSERT_ERROR(dml_data_read_csv(fx("csv/nan.csv", p, sizeof p), NULL, 0, &ds),
               DML_ERR_NOT_FINITE);
  ASSERT_MSG("nan.csv:3: column 'x2': 'nan' is not finite");
  ASSERT_ERROR(dml_data_read_csv(fx("csv/empty.csv", p, sizeof p), NULL, 0, &ds),
               DML_ERR_FORMAT);
  ASSERT_MSG("empty.csv: the file is empty");
  ASSERT_ERROR(dml_data_read_csv(fx("csv/header_only.csv", p, sizeof p), NULL, 0, &ds),
               DML_ERR_FORMAT);
  ASSERT_MSG("no data rows");
  ASSERT_ERROR(dml_data_read_csv(fx("csv/negative_label.csv", p, sizeof p), NULL, 0, &ds),
               DML_ERR_FORMAT);
  ASSERT_MSG("negative_label.csv:2: label -2");
  ASSERT_ERROR(dml_data_read_csv(fx("csv/unclosed_quote.csv", p, sizeof p), NULL, 0, &ds),
               DML_ERR_FORMAT);
  ASSERT_MSG("unclosed_quote.csv:3: quoted field");
  ASSERT_ERROR(dml_data_read_csv(fx("csv/missing.csv", p, sizeof p), NULL, 0, &ds), DML_ERR_IO);
  ASSERT_MSG("missing.csv");
  dml_csv_options bad = {0, 2, NULL};
  ASSERT_ERROR(dml_data_read_csv(fx("csv/header.csv", p, sizeof p), &bad, 0, &ds),
               DML_ERR_INVALID_ARGUMENT);
  ASSERT_TRUE(is_zeroed(&ds));
}

TEST(csv_text_after_closing_quote_and_embedded_newline) {
  char p[1024];
  dml_test_tmp_path("data_readers_quotes.csv", p, sizeof p);
  FILE *f = fopen(p, "wb");
  ASSERT_TRUE(f != NULL);
  fputs("a,label\n1,\"two\nlines\"\n2,x\n3,\"q\"z\n", f);
  fclose(f);
  dml_dataset ds;
  ASSERT_ERROR(dml_data_read_csv(p, NULL, 0, &ds), DML_ERR_FORMAT);
  ASSERT_MSG(":5: 'z' after a closing quote");
  ASSERT_OK(dml_data_read_csv(p, NULL, 2, &ds));
  ASSERT_EQ_INT(ds.n, 2);
  ASSERT_TRUE(strcmp(ds.class_names[0], "two\nlines") == 0);
  ASSERT_EQ_INT(ds.labels[1], 1);
  dml_dataset_free(&ds);
}

/* ---- image folders ---- */

TEST(image_folder_rgb_resized) {
  char p[1024];
  dml_dataset ds;
  dml_image_options o = {3, 6, 8};
  ASSERT_OK(dml_data_read_image_folder(fx("images", p, sizeof p), &o, 0, &ds));
  ASSERT_EQ_INT(ds.n, 6);
  ASSERT_EQ_INT(ds.ndim, 3);
  ASSERT_EQ_INT(ds.shape[0], 3);
  ASSERT_EQ_INT(ds.shape[1], 6);
  ASSERT_EQ_INT(ds.shape[2], 8);
  ASSERT_EQ_INT(ds.example_numel, 144);
  ASSERT_EQ_INT(ds.num_classes, 3);
  ASSERT_TRUE(strcmp(ds.class_names[0], "cat") == 0);
  ASSERT_TRUE(strcmp(ds.class_names[1], "dog") == 0);
  ASSERT_TRUE(strcmp(ds.class_names[2], "fish") == 0);
  const int32_t want[6] = {0, 0, 1, 1, 2, 2};
  const char *files[6] = {"cat/a_grey.png",         "cat/b_rgb.png", "dog/c_big.PNG",
                          "dog/d.bmp", "fish/e_grey_alpha.png", "fish/f_rgba.png"};
  for (int i = 0; i < 6; i++) {
    ASSERT_EQ_INT(ds.labels[i], want[i]);
    size_t a = strlen(ds.paths[i]), b = strlen(files[i]);
    ASSERT_TRUE(a >= b && strcmp(ds.paths[i] + a - b, files[i]) == 0);
  }
  for (int c = 0; c < 3; c++)
    for (int y = 0; y < 6; y++)
      for (int x = 0; x < 8; x++) {
        int at = c * 48 + y * 8 + x;
        ASSERT_NEAR(ds.x[0 * 144 + at], grey(y, x) / 255.0, 1e-6);   /* grey -> RGB */
        ASSERT_NEAR(ds.x[1 * 144 + at], rgb(y, x, c) / 255.0, 1e-6); /* CHW */
        ASSERT_NEAR(ds.x[3 * 144 + at], rgb(y, x, c) / 255.0, 1e-6); /* BMP */
        ASSERT_NEAR(ds.x[4 * 144 + at], grey(y, x) / 255.0, 1e-6);   /* alpha dropped */
      }
  for (int64_t i = 0; i < ds.n * 144; i++) ASSERT_TRUE(ds.x[i] >= 0 && ds.x[i] <= 1);
  dml_dataset_free(&ds);
  ASSERT_OK(dml_data_read_image_folder(p, &o, 3, &ds));
  ASSERT_EQ_INT(ds.n, 3);
  ASSERT_EQ_INT(ds.num_classes, 3);
  dml_dataset_free(&ds);
}

TEST(image_folder_grey_and_keep_size) {
  char p[1024];
  dml_dataset ds;
  dml_image_options o = {1, 6, 8};
  ASSERT_OK(dml_data_read_image_folder(fx("images", p, sizeof p), &o, 0, &ds));
  ASSERT_EQ_INT(ds.shape[0], 1);
  for (int y = 0; y < 6; y++)
    for (int x = 0; x < 8; x++) {
      /* stb_image's luma: (77 r + 150 g + 29 b) >> 8 */
      int luma = (77 * rgb(y, x, 0) + 150 * rgb(y, x, 1) + 29 * rgb(y, x, 2)) >> 8;
      ASSERT_NEAR(ds.x[y * 8 + x], grey(y, x) / 255.0, 1e-6);
      ASSERT_NEAR(ds.x[48 + y * 8 + x], luma / 255.0, 1e-6);
    }
  dml_dataset_free(&ds);
  /* images of different sizes without a target */
  ASSERT_ERROR(dml_data_read_image_folder(p, NULL, 0, &ds), DML_ERR_SHAPE);
  ASSERT_MSG("c_big.PNG: image is 12 x 10");
  ASSERT_MSG("resize target");
  ASSERT_TRUE(is_zeroed(&ds));
  ASSERT_OK(dml_data_read_image_folder(fx("images_same", p, sizeof p), NULL, 0, &ds));
  ASSERT_EQ_INT(ds.n, 3);
  ASSERT_EQ_INT(ds.shape[0], 1);
  ASSERT_EQ_INT(ds.shape[1], 4);
  ASSERT_EQ_INT(ds.shape[2], 5);
  ASSERT_EQ_INT(ds.labels[2], 1);
  dml_dataset_free(&ds);
  dml_image_options bad = {2, 0, 0};
  ASSERT_ERROR(dml_data_read_image_folder(p, &bad, 0, &ds), DML_ERR_INVALID_ARGUMENT);
  dml_image_options bad2 = {1, 5, 0};
  ASSERT_ERROR(dml_data_read_image_folder(p, &bad2, 0, &ds), DML_ERR_INVALID_ARGUMENT);
}

TEST(image_folder_errors) {
  char p[1024];
  dml_dataset ds;
  ASSERT_ERROR(dml_data_read_image_folder(fx("images_corrupt", p, sizeof p), NULL, 0, &ds),
               DML_ERR_FORMAT);
  ASSERT_MSG("images_corrupt/b/bad.png: cannot read image (corrupt, truncated");
  ASSERT_MSG("stb_image says: ");
  ASSERT_TRUE(is_zeroed(&ds));
  ASSERT_ERROR(dml_data_read_image_folder(fx("images_empty_class", p, sizeof p), NULL, 0, &ds),
               DML_ERR_NOT_FOUND);
  ASSERT_MSG("images_empty_class/b: class folder without images");
  ASSERT_ERROR(dml_data_read_image_folder(fx("no_such_folder", p, sizeof p), NULL, 0, &ds),
               DML_ERR_IO);
  ASSERT_MSG("no_such_folder: cannot open folder");
  /* a folder with files but no sub-folders */
  ASSERT_ERROR(dml_data_read_image_folder(fx("images/cat", p, sizeof p), NULL, 0, &ds),
               DML_ERR_NOT_FOUND);
  ASSERT_MSG("no class folders");
  ASSERT_TRUE(is_zeroed(&ds));
}

/* A folder written here: a JPEG (lossy: compared with a tolerance), an upper-case .JPG of a
 * different size, and a PNG, all of one colour per file. */
TEST(image_folder_jpeg) {
  char root[1024], dir[1200], file[1400];
  dml_test_tmp_path("data_readers_jpeg", root, sizeof root);
  mkdir(root, 0755);
  unsigned char px[20 * 16 * 3];
  const unsigned char colour[3][3] = {{200, 40, 90}, {10, 220, 130}, {90, 90, 250}};
  const char *names[3] = {"x/one.jpg", "x/two.JPG", "y/three.png"};
  const int w[3] = {16, 20, 16}, h[3] = {12, 16, 12};
  for (int k = 0; k < 3; k++) {
    snprintf(dir, sizeof dir, "%s/%c", root, names[k][0]);
    mkdir(dir, 0755);
    for (int i = 0; i < w[k] * h[k]; i++)
      for (int c = 0; c < 3; c++) px[i * 3 + c] = colour[k][c];
    snprintf(file, sizeof file, "%s/%s", root, names[k]);
    int ok = k < 2 ? stbi_write_jpg(file, w[k], h[k], 3, px, 95)
                   : stbi_write_png(file, w[k], h[k], 3, px, w[k] * 3);
    ASSERT_TRUE(ok);
  }
  dml_dataset ds;
  dml_image_options o = {3, 12, 16};
  ASSERT_OK(dml_data_read_image_folder(root, &o, 0, &ds));
  ASSERT_EQ_INT(ds.n, 3);
  ASSERT_EQ_INT(ds.num_classes, 2);
  for (int k = 0; k < 3; k++)
    for (int c = 0; c < 3; c++)
      for (int i = 0; i < 12 * 16; i++)
        ASSERT_NEAR(ds.x[k * 3 * 192 + c * 192 + i], colour[k][c] / 255.0, 4 / 255.0);
  dml_dataset_free(&ds);
}

/* ---- manifests ---- */

static int set_is(const dml_dataset *ds, int64_t i, const int32_t *want, int n) {
  if (ds->label_offsets[i + 1] - ds->label_offsets[i] != n) return 0;
  for (int j = 0; j < n; j++)
    if (ds->label_values[ds->label_offsets[i] + j] != want[j]) return 0;
  return 1;
}

TEST(manifest_multi_label) {
  char p[1024];
  dml_dataset ds;
  ASSERT_OK(dml_data_read_manifest(fx("manifest/manifest.csv", p, sizeof p), NULL, NULL, 0, &ds));
  ASSERT_EQ_INT(ds.n, 6);
  ASSERT_EQ_INT(ds.num_classes, 6);
  const char *names[6] = {"Atelectasis", "Cardiomegaly", "Effusion", "Infiltration", "Mass",
                          "Nodule"};
  for (int c = 0; c < 6; c++) ASSERT_TRUE(strcmp(ds.class_names[c], names[c]) == 0);
  const int32_t s0[] = {2, 3}, s3[] = {1}, s4[] = {0, 4}, s5[] = {4, 5};
  ASSERT_TRUE(set_is(&ds, 0, s0, 2));
  ASSERT_TRUE(set_is(&ds, 1, NULL, 0)); /* No Finding */
  ASSERT_TRUE(set_is(&ds, 2, s0, 2));   /* duplicates removed, sorted */
  ASSERT_TRUE(set_is(&ds, 3, s3, 1));
  ASSERT_TRUE(set_is(&ds, 4, s4, 2)); /* trimmed */
  ASSERT_TRUE(set_is(&ds, 5, s5, 2)); /* quoted field */
  const int32_t first[6] = {2, -1, 2, 1, 0, 4};
  for (int i = 0; i < 6; i++) ASSERT_EQ_INT(ds.labels[i], first[i]);
  ASSERT_TRUE(strstr(ds.paths[3], "manifest/images/00000003_000.png") != NULL);
  ASSERT_EQ_INT(ds.shape[0], 1);
  ASSERT_EQ_INT(ds.shape[1], 8);
  ASSERT_EQ_INT(ds.shape[2], 8);
  for (int y = 0; y < 8; y++)
    for (int x = 0; x < 8; x++) ASSERT_NEAR(ds.x[5 * 64 + y * 8 + x], grey(y, x) / 255.0, 1e-6);

  /* subsets copy and re-base the label sets */
  const int64_t rows[3] = {5, 1, 0};
  dml_dataset sub;
  ASSERT_OK(dml_dataset_subset(&ds, rows, 3, &sub));
  ASSERT_EQ_INT(sub.n, 3);
  ASSERT_EQ_INT(sub.num_classes, 6);
  ASSERT_TRUE(sub.class_names != ds.class_names && strcmp(sub.class_names[5], "Nodule") == 0);
  ASSERT_TRUE(set_is(&sub, 0, s5, 2));
  ASSERT_TRUE(set_is(&sub, 1, NULL, 0));
  ASSERT_TRUE(set_is(&sub, 2, s0, 2));
  ASSERT_EQ_INT(sub.labels[1], -1);
  ASSERT_TRUE(strcmp(sub.paths[0], ds.paths[5]) == 0);
  ASSERT_TRUE(memcmp(sub.x, ds.x + 5 * 64, 64 * sizeof(float)) == 0);
  const int64_t bad_rows[1] = {6};
  dml_dataset bad;
  ASSERT_ERROR(dml_dataset_subset(&ds, bad_rows, 1, &bad), DML_ERR_INVALID_ARGUMENT);
  ASSERT_TRUE(is_zeroed(&bad));
  dml_dataset_free(&sub);

  /* filtering by the first label keeps paths and sets with their examples */
  ASSERT_OK(dml_dataset_filter_labels(&ds, 1, 4));
  ASSERT_EQ_INT(ds.n, 4);
  ASSERT_TRUE(set_is(&ds, 0, s0, 2));
  ASSERT_TRUE(set_is(&ds, 2, s3, 1));
  ASSERT_TRUE(set_is(&ds, 3, s5, 2));
  ASSERT_TRUE(strstr(ds.paths[3], "00000005_000.png") != NULL);
  ASSERT_EQ_INT(ds.label_offsets[4], 7);
  dml_dataset_free(&ds);

  /* a limit keeps the names of the whole file */
  ASSERT_OK(dml_data_read_manifest(p, NULL, NULL, 2, &ds));
  ASSERT_EQ_INT(ds.n, 2);
  ASSERT_EQ_INT(ds.num_classes, 6);
  dml_dataset_free(&ds);
}

TEST(manifest_columns_root_and_errors) {
  char p[1024], root[1024];
  dml_dataset ds;
  dml_manifest_options o;
  memset(&o, 0, sizeof o);
  o.path_column = "Image Index";
  o.labels_column = "Labels";
  o.image.channels = 3;
  o.image.height = 4;
  o.image.width = 4;
  ASSERT_OK(dml_data_read_manifest(fx("manifest/manifest_root.csv", p, sizeof p),
                                   fx("manifest/images", root, sizeof root), &o, 0, &ds));
  ASSERT_EQ_INT(ds.n, 2);
  ASSERT_EQ_INT(ds.num_classes, 1);
  ASSERT_TRUE(strcmp(ds.class_names[0], "Effusion") == 0);
  ASSERT_EQ_INT(ds.labels[0], 0);
  ASSERT_EQ_INT(ds.labels[1], -1); /* empty field: the empty set */
  ASSERT_EQ_INT(ds.shape[0], 3);
  ASSERT_EQ_INT(ds.shape[1], 4);
  dml_dataset_free(&ds);
  o.labels_column = "Findings";
  ASSERT_ERROR(dml_data_read_manifest(p, root, &o, 0, &ds), DML_ERR_NOT_FOUND);
  ASSERT_MSG("no labels column named 'Findings'");
  ASSERT_MSG("'Patient ID', 'Image Index', 'Labels'");
  ASSERT_TRUE(is_zeroed(&ds));
  /* default columns: 'Patient ID' is not an image */
  ASSERT_ERROR(dml_data_read_manifest(p, root, NULL, 0, &ds), DML_ERR_IO);
  ASSERT_MSG("manifest_root.csv:2: ");
  ASSERT_MSG("/1: no such file");
  ASSERT_ERROR(dml_data_read_manifest(fx("manifest/manifest_missing.csv", p, sizeof p), NULL,
                                      NULL, 0, &ds),
               DML_ERR_IO);
  ASSERT_MSG("manifest_missing.csv:3: ");
  ASSERT_MSG("images/00000013_005.png: no such file");
  ASSERT_TRUE(is_zeroed(&ds));
  ASSERT_OK(dml_data_read_manifest(p, NULL, NULL, 1, &ds)); /* the missing one is past it */
  ASSERT_EQ_INT(ds.num_classes, 2);
  dml_dataset_free(&ds);
  /* a corrupt image is named with the manifest line */
  dml_test_tmp_path("data_readers_manifest.csv", p, sizeof p);
  FILE *f = fopen(p, "wb");
  ASSERT_TRUE(f != NULL);
  fprintf(f, "img,labels\n%s,a\n%s,b\n", fx("images_same/a/1.png", root, sizeof root),
          fx("images_corrupt/b/bad.png", root + 512, 512));
  fclose(f);
  ASSERT_ERROR(dml_data_read_manifest(p, "", NULL, 0, &ds), DML_ERR_FORMAT);
  ASSERT_MSG("data_readers_manifest.csv:3: ");
  ASSERT_MSG("bad.png: cannot read image");
  ASSERT_TRUE(is_zeroed(&ds));
}

/* ---- normalisation ---- */

TEST(channel_stats_and_normalize) {
  dml_dataset ds;
  memset(&ds, 0, sizeof ds);
  ds.n = 2;
  ds.ndim = 3;
  ds.shape[0] = 2;
  ds.shape[1] = 1;
  ds.shape[2] = 3;
  ds.example_numel = 6;
  ds.x = dml_alloc_aligned(12 * sizeof(float));
  ds.labels = calloc(2, sizeof(int32_t));
  const float v[12] = {1, 2, 3, 10, 10, 10, 5, 6, 7, 20, 30, 40};
  memcpy(ds.x, v, sizeof v);
  float mean[2], std[2];
  ASSERT_OK(dml_dataset_channel_stats(&ds, 2, mean, std));
  /* channel 0: 1 2 3 5 6 7; channel 1: 10 10 10 20 30 40 */
  ASSERT_NEAR(mean[0], 4.0, 1e-6);
  ASSERT_NEAR(std[0], sqrt((9 + 4 + 1 + 1 + 4 + 9) / 6.0), 1e-6);
  ASSERT_NEAR(mean[1], 20.0, 1e-6);
  ASSERT_NEAR(std[1], sqrt((100 * 3 + 0 + 100 + 400) / 6.0), 1e-5);
  ASSERT_OK(dml_dataset_normalize_channels(&ds, 2, mean, std));
  float m2[2], s2[2];
  ASSERT_OK(dml_dataset_channel_stats(&ds, 2, m2, s2));
  for (int c = 0; c < 2; c++) {
    ASSERT_NEAR(m2[c], 0.0, 1e-6);
    ASSERT_NEAR(s2[c], 1.0, 1e-6);
  }
  ASSERT_NEAR(ds.x[0], (1 - 4.0) / std[0], 1e-6);
  ASSERT_ERROR(dml_dataset_channel_stats(&ds, 4, mean, std), DML_ERR_SHAPE);
  ASSERT_MSG("4 channels do not divide the example size 6");
  const float zero[2] = {1, 0};
  ASSERT_ERROR(dml_dataset_normalize_channels(&ds, 2, mean, zero), DML_ERR_INVALID_ARGUMENT);
  ASSERT_MSG("channel 1");
  dml_dataset_free(&ds);
  dml_dataset empty;
  memset(&empty, 0, sizeof empty);
  ASSERT_ERROR(dml_dataset_channel_stats(&empty, 1, mean, std), DML_ERR_INVALID_ARGUMENT);
  dml_dataset_free(&empty);
}
