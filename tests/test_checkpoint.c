/* safetensors and checkpoints: bit-identical round trips, the file layout, PyTorch-written
 * weights giving torch's outputs, corrupt and mismatched files failing cleanly with the store
 * unchanged, atomic writes that leave the old file intact, optimiser state. */
#define _POSIX_C_SOURCE 200809L

#include <dirent.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fixture.h"
#include "test.h"

/* ---- helpers ---- */

static dml_model *parse_or_null(const char *text) {
  dml_model *m = NULL;
  if (dml_model_parse(text, "test", &m) != DML_OK) {
    fprintf(stderr, "  parse failed: %s\n", dml_last_error());
    return NULL;
  }
  return m;
}

static dml_model *load_models_file(const char *name) {
  char path[1024];
  snprintf(path, sizeof path, "%s/../models/%s", dml_test_data_dir(), name);
  dml_model *m = NULL;
  if (dml_model_load_text_file(path, &m) != DML_OK) {
    fprintf(stderr, "  %s\n", dml_last_error());
    return NULL;
  }
  return m;
}

static char *read_file(const char *path, long *size) {
  FILE *f = fopen(path, "rb");
  if (!f) return NULL;
  fseek(f, 0, SEEK_END);
  long n = ftell(f);
  fseek(f, 0, SEEK_SET);
  char *buf = malloc((size_t)n + 1);
  if (buf && fread(buf, 1, (size_t)n, f) != (size_t)n) {
    free(buf);
    buf = NULL;
  }
  fclose(f);
  if (buf) buf[n] = '\0';
  if (size) *size = n;
  return buf;
}

static int write_file(const char *path, const void *data, long n) {
  FILE *f = fopen(path, "wb");
  if (!f) return -1;
  size_t w = fwrite(data, 1, (size_t)n, f);
  fclose(f);
  return w == (size_t)n ? 0 : -1;
}

static int file_exists(const char *path) {
  struct stat st;
  return stat(path, &st) == 0;
}

/* Writes a safetensors file from a header JSON (padded here) and raw data bytes. */
static int write_st(const char *path, const char *header, const void *data, long data_len) {
  long h = (long)strlen(header), padded = (h + 7) / 8 * 8;
  long total = 8 + padded + data_len;
  unsigned char *buf = malloc((size_t)total);
  if (!buf) return -1;
  for (int i = 0; i < 8; i++) buf[i] = (unsigned char)((unsigned long long)padded >> (8 * i));
  memcpy(buf + 8, header, (size_t)h);
  memset(buf + 8 + h, ' ', (size_t)(padded - h));
  if (data_len) memcpy(buf + 8 + padded, data, (size_t)data_len);
  int r = write_file(path, buf, total);
  free(buf);
  return r;
}

/* Copies every parameter value of the store (to check it is unchanged later). */
static float *snapshot(dml_param_store *ps) {
  int64_t n = dml_params_numel(ps), off = 0;
  float *s = malloc((size_t)(n > 0 ? n : 1) * sizeof(float));
  for (int i = 0; s && i < dml_params_count(ps); i++) {
    dml_param *p = dml_params_get(ps, i);
    memcpy(s + off, p->value, (size_t)p->numel * sizeof(float));
    off += p->numel;
  }
  return s;
}

static int same_as_snapshot(dml_param_store *ps, const float *s) {
  int64_t off = 0;
  for (int i = 0; i < dml_params_count(ps); i++) {
    dml_param *p = dml_params_get(ps, i);
    if (memcmp(s + off, p->value, (size_t)p->numel * sizeof(float)) != 0) return 0;
    off += p->numel;
  }
  return 1;
}

static int stores_identical(dml_param_store *a, dml_param_store *b) {
  if (dml_params_count(a) != dml_params_count(b)) return 0;
  for (int i = 0; i < dml_params_count(a); i++) {
    dml_param *x = dml_params_get(a, i), *y = dml_params_get(b, i);
    if (strcmp(x->name, y->name) || x->numel != y->numel || x->trainable != y->trainable) return 0;
    if (memcmp(x->value, y->value, (size_t)x->numel * sizeof(float)) != 0) return 0;
  }
  return 1;
}

/* Gives every parameter and buffer distinct non-trivial values. */
static void randomize(dml_param_store *ps, uint64_t seed) {
  for (int i = 0; i < dml_params_count(ps); i++) {
    dml_param *p = dml_params_get(ps, i);
    dml_rng_fill_uniform(p->value, p->numel, 0.25f, 1.5f, seed, (uint64_t)i);
  }
}

static const char *SMALL = "input 4\nlinear out=3\nbatchnorm\n";

/* ---- round trips ---- */

TEST(checkpoint_round_trip_is_bit_identical) {
  dml_model *m = load_models_file("fmnist_cnn.txt");
  ASSERT_TRUE(m != NULL);
  ASSERT_OK(dml_model_init_weights(m, 3));
  dml_graph *g;
  ASSERT_OK(dml_graph_new(&g));
  enum { N = 4 };
  float *x = malloc(N * 784 * sizeof(float)), *y0 = malloc(N * 128 * sizeof(float));
  float *y1 = malloc(N * 128 * sizeof(float));
  ASSERT_TRUE(x && y0 && y1);
  dml_rng_fill_uniform(x, N * 784, 0.0f, 1.0f, 5, 0);
  /* one training-mode pass so the running statistics are not the defaults */
  int64_t shape[4] = {N, 1, 28, 28};
  dml_node *in, *out;
  ASSERT_OK(dml_graph_input(g, x, 4, shape, 0, &in));
  ASSERT_OK(dml_model_forward(m, g, in, &out));
  ASSERT_OK(dml_model_predict(m, g, x, N, N, y0));

  char prefix[1024];
  dml_test_tmp_path("ckpt_roundtrip", prefix, sizeof prefix);
  ASSERT_OK(dml_checkpoint_save(prefix, m, NULL, "{\"epoch\": 3, \"note\": \"x\\\"y\"}"));
  dml_model *m2 = NULL;
  char *meta = NULL;
  ASSERT_OK(dml_checkpoint_load(prefix, &m2, &meta));
  ASSERT_TRUE(stores_identical(dml_model_params(m), dml_model_params(m2)));
  ASSERT_TRUE(strcmp(dml_model_text(m), dml_model_text(m2)) == 0);
  ASSERT_OK(dml_model_predict(m2, g, x, N, N, y1));
  ASSERT_TRUE(memcmp(y0, y1, N * 128 * sizeof(float)) == 0);
  cJSON *mj = cJSON_Parse(meta);
  ASSERT_TRUE(mj != NULL);
  ASSERT_EQ_INT(cJSON_GetObjectItem(mj, "epoch")->valuedouble, 3);
  ASSERT_TRUE(strcmp(cJSON_GetObjectItem(mj, "note")->valuestring, "x\"y") == 0);
  cJSON_Delete(mj);
  free(meta);
  dml_model_free(m2);

  /* without metadata: "{}"; metadata_json may be NULL */
  ASSERT_OK(dml_checkpoint_save(prefix, m, NULL, NULL));
  ASSERT_OK(dml_checkpoint_load(prefix, &m2, &meta));
  ASSERT_TRUE(strcmp(meta, "{}") == 0);
  free(meta);
  dml_model_free(m2);
  ASSERT_OK(dml_checkpoint_load(prefix, &m2, NULL));
  dml_model_free(m2);
  ASSERT_ERROR(dml_checkpoint_save(prefix, m, NULL, "[1, 2]"), DML_ERR_INVALID_ARGUMENT);
  ASSERT_ERROR(dml_checkpoint_save(prefix, m, NULL, "{broken"), DML_ERR_INVALID_ARGUMENT);
  ASSERT_ERROR(dml_checkpoint_save(NULL, m, NULL, NULL), DML_ERR_INVALID_ARGUMENT);
  ASSERT_ERROR(dml_checkpoint_load(NULL, &m2, NULL), DML_ERR_INVALID_ARGUMENT);

  /* A checkpoint for tools/check_safetensors.py: export_cnn.{json,safetensors,io.json} */
  char ex[1024], io_path[1100];
  dml_test_tmp_path("export_cnn", ex, sizeof ex);
  ASSERT_OK(dml_checkpoint_save(ex, m, NULL, "{\"purpose\": \"python check\"}"));
  snprintf(io_path, sizeof io_path, "%s.io.json", ex);
  cJSON *io = cJSON_CreateObject(), *ji = cJSON_AddObjectToObject(io, "input");
  cJSON *jo = cJSON_AddObjectToObject(io, "output");
  int64_t oshape[2] = {N, 128};
  cJSON_AddItemToObject(ji, "shape", cJSON_CreateIntArray((const int[]){N, 1, 28, 28}, 4));
  cJSON *xs = cJSON_AddArrayToObject(ji, "data"), *ys = NULL;
  for (int i = 0; i < N * 784; i++) cJSON_AddItemToArray(xs, cJSON_CreateNumber(x[i]));
  cJSON_AddItemToObject(jo, "shape",
                        cJSON_CreateIntArray((const int[]){(int)oshape[0], (int)oshape[1]}, 2));
  ys = cJSON_AddArrayToObject(jo, "data");
  for (int i = 0; i < N * 128; i++) cJSON_AddItemToArray(ys, cJSON_CreateNumber(y0[i]));
  char *io_text = cJSON_PrintUnformatted(io);
  ASSERT_TRUE(io_text != NULL);
  ASSERT_EQ_INT(write_file(io_path, io_text, (long)strlen(io_text)), 0);
  cJSON_free(io_text);
  cJSON_Delete(io);

  free(x);
  free(y0);
  free(y1);
  dml_graph_free(g);
  dml_model_free(m);
}

TEST(safetensors_layout_matches_the_format) {
  dml_model *m = parse_or_null(SMALL);
  ASSERT_TRUE(m != NULL);
  dml_param_store *ps = dml_model_params(m);
  randomize(ps, 1);
  char path[1024];
  dml_test_tmp_path("layout.safetensors", path, sizeof path);
  const char *meta[] = {"a", "b", "epoch", "7", NULL};
  ASSERT_OK(dml_safetensors_write(path, ps, meta));
  long size;
  unsigned char *buf = (unsigned char *)read_file(path, &size);
  ASSERT_TRUE(buf != NULL);
  unsigned long long hlen = 0;
  for (int i = 0; i < 8; i++) hlen |= (unsigned long long)buf[i] << (8 * i);
  ASSERT_EQ_INT(hlen % 8, 0);
  /* 0.weight 12 + 0.bias 3 + bn 4 x 3 = 27 floats */
  ASSERT_EQ_INT(size, (long)(8 + hlen + 27 * 4));
  cJSON *h = cJSON_ParseWithLength((const char *)buf + 8, (size_t)hlen);
  ASSERT_TRUE(h != NULL);
  const cJSON *md = cJSON_GetObjectItem(h, "__metadata__");
  ASSERT_TRUE(cJSON_IsString(cJSON_GetObjectItem(md, "a")));
  ASSERT_TRUE(strcmp(cJSON_GetObjectItem(md, "epoch")->valuestring, "7") == 0);
  ASSERT_EQ_INT(cJSON_GetArraySize(h), 7);
  for (int i = 0; i < dml_params_count(ps); i++) {
    dml_param *p = dml_params_get(ps, i);
    const cJSON *e = cJSON_GetObjectItem(h, p->name);
    ASSERT_TRUE(e != NULL);
    ASSERT_TRUE(strcmp(cJSON_GetObjectItem(e, "dtype")->valuestring, "F32") == 0);
    const cJSON *sh = cJSON_GetObjectItem(e, "shape");
    ASSERT_EQ_INT(cJSON_GetArraySize(sh), p->ndim);
    for (int d = 0; d < p->ndim; d++)
      ASSERT_EQ_INT(cJSON_GetArrayItem(sh, d)->valuedouble, p->shape[d]);
    const cJSON *off = cJSON_GetObjectItem(e, "data_offsets");
    long b = (long)cJSON_GetArrayItem(off, 0)->valuedouble;
    long en = (long)cJSON_GetArrayItem(off, 1)->valuedouble;
    ASSERT_EQ_INT(en - b, p->numel * 4);
    /* little-endian float32 data (this test machine is little-endian) */
    ASSERT_TRUE(memcmp(buf + 8 + hlen + b, p->value, (size_t)p->numel * 4) == 0);
  }
  cJSON_Delete(h);
  free(buf);
  dml_model_free(m);
}

/* ---- PyTorch-written weights ---- */

static void check_torch_fixture(const char *model_file, const char *weights, const char *io) {
  char path[1024];
  snprintf(path, sizeof path, "%s/fixtures/%s", dml_test_data_dir(), model_file);
  dml_model *m = NULL;
  ASSERT_OK(dml_model_load_text_file(path, &m));
  snprintf(path, sizeof path, "%s/fixtures/%s", dml_test_data_dir(), weights);
  ASSERT_OK(dml_safetensors_read(path, dml_model_params(m), NULL));
  cJSON *j = fixture_load(io);
  ASSERT_TRUE(j != NULL);
  float *x = NULL, *ref = NULL;
  int nx, ny;
  int64_t sx[DML_MAX_DIMS], sy[DML_MAX_DIMS];
  ASSERT_EQ_INT(fixture_tensor(cJSON_GetObjectItem(j, "input"), &x, &nx, sx), 0);
  ASSERT_EQ_INT(fixture_tensor(cJSON_GetObjectItem(j, "output"), &ref, &ny, sy), 0);
  cJSON_Delete(j);
  ASSERT_EQ_INT(sy[1], dml_model_output_numel(m));
  float *got = malloc((size_t)(sy[0] * sy[1]) * sizeof(float));
  dml_graph *g;
  ASSERT_OK(dml_graph_new(&g));
  ASSERT_OK(dml_model_predict(m, g, x, sx[0], 2, got));
  int ok = fixture_compare(weights, got, ref, sy[0] * sy[1], 1e-5, 1e-4);
  free(x);
  free(ref);
  free(got);
  dml_graph_free(g);
  dml_model_free(m);
  ASSERT_TRUE(ok);
}

TEST(torch_weights_give_torch_outputs_2d) {
  check_torch_fixture("small_cnn.txt", "torch_weights.safetensors", "fixtures/torch_weights.json");
}

TEST(torch_weights_give_torch_outputs_1d) {
  check_torch_fixture("small_cnn1d.txt", "torch_weights_1d.safetensors",
                      "fixtures/torch_weights_1d.json");
}

/* ---- corrupt and mismatched files ---- */

typedef struct {
  const char *header;
  long data_len;
  dml_status status;
  const char *msg;
} bad_header;

TEST(corrupt_safetensors_fail_cleanly) {
  dml_model *m = parse_or_null(SMALL);
  ASSERT_TRUE(m != NULL);
  dml_param_store *ps = dml_model_params(m);
  randomize(ps, 2);
  char good[1024], bad[1024];
  dml_test_tmp_path("good.safetensors", good, sizeof good);
  dml_test_tmp_path("bad.safetensors", bad, sizeof bad);
  ASSERT_OK(dml_safetensors_write(good, ps, NULL));
  randomize(ps, 3);
  float *before = snapshot(ps);
  ASSERT_TRUE(before != NULL);
  long size;
  char *bytes = read_file(good, &size);
  ASSERT_TRUE(bytes != NULL);
  long hlen = (long)(unsigned char)bytes[0] | (long)(unsigned char)bytes[1] << 8;

  /* truncated at several points */
  long cuts[] = {0, 3, 7, 8, 9, 8 + hlen / 2, 8 + hlen - 1, 8 + hlen, 8 + hlen + 5, size - 1};
  for (size_t i = 0; i < sizeof cuts / sizeof cuts[0]; i++) {
    ASSERT_EQ_INT(write_file(bad, bytes, cuts[i]), 0);
    dml_clear_error();
    dml_status st = dml_safetensors_read(bad, ps, NULL);
    if (st != DML_ERR_FORMAT) fprintf(stderr, "  cut at %ld: %s\n", cuts[i], dml_last_error());
    ASSERT_EQ_INT(st, DML_ERR_FORMAT);
    ASSERT_TRUE(strstr(dml_last_error(), bad) != NULL);
    ASSERT_TRUE(same_as_snapshot(ps, before));
  }
  /* header length far past the end of the file */
  char *copy = malloc((size_t)size);
  memcpy(copy, bytes, (size_t)size);
  memset(copy, 0xff, 8);
  ASSERT_EQ_INT(write_file(bad, copy, size), 0);
  ASSERT_ERROR(dml_safetensors_read(bad, ps, NULL), DML_ERR_FORMAT);
  ASSERT_TRUE(strstr(dml_last_error(), "header length") != NULL);
  /* header length 0 */
  memset(copy, 0, 8);
  ASSERT_EQ_INT(write_file(bad, copy, size), 0);
  ASSERT_ERROR(dml_safetensors_read(bad, ps, NULL), DML_ERR_FORMAT);
  free(copy);
  ASSERT_TRUE(same_as_snapshot(ps, before));

  float data[32]; /* 27 floats for the model, room for one extra tensor */
  for (int i = 0; i < 32; i++) data[i] = (float)i;
  const char *w = "\"0.weight\":{\"dtype\":\"F32\",\"shape\":[3,4],\"data_offsets\":[0,48]}";
  const char *b = "\"0.bias\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[48,60]}";
  const char *bn =
      "\"1.weight\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[60,72]},"
      "\"1.bias\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[72,84]},"
      "\"1.running_mean\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[84,96]}";
  const char *rv = "\"1.running_var\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[96,108]}";
  char h[8][1024];
  /* a hand-made valid file first, so the failures below are about the one change each */
  snprintf(h[0], sizeof h[0], "{%s,%s,%s,%s}", w, b, bn, rv);
  ASSERT_EQ_INT(write_st(bad, h[0], data, 108), 0);
  ASSERT_OK(dml_safetensors_read(bad, ps, NULL));
  ASSERT_TRUE(dml_params_find(ps, "1.running_var")->value[2] == 26.0f);
  free(before);
  before = snapshot(ps);
  snprintf(h[1], sizeof h[1], "{%s,%s,%s}", w, b, bn); /* missing running_var */
  snprintf(h[2], sizeof h[2],
           "{%s,%s,%s,%s,\"2.weight\":{\"dtype\":\"F32\",\"shape\":[],\"data_offsets\":[108,112]}}",
           w, b, bn, rv);
  snprintf(h[3], sizeof h[3],
           "{\"0.weight\":{\"dtype\":\"F16\",\"shape\":[3,4],\"data_offsets\":[0,24]},"
           "\"0.bias\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[24,36]},%s,%s}",
           bn, rv);
  snprintf(h[4], sizeof h[4],
           "{\"0.weight\":{\"dtype\":\"F32\",\"shape\":[4,3],\"data_offsets\":[0,48]},%s,%s,%s}", b,
           bn, rv);
  snprintf(h[5], sizeof h[5],
           "{\"0.weight\":{\"dtype\":\"F32\",\"shape\":[3,4],\"data_offsets\":[0,48]},"
           "\"0.bias\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[40,52]},%s,%s}",
           bn, rv);
  snprintf(h[6], sizeof h[6], "{%s,%s,%s,%s,\"__metadata__\":{\"k\":3}}", w, b, bn, rv);
  snprintf(h[7], sizeof h[7], "{%s,%s,%s,%s}xyz", w, b, bn, rv);
  bad_header cases[] = {
      {h[1], 108, DML_ERR_NOT_FOUND, "missing tensor '1.running_var'"},
      {h[2], 112, DML_ERR_FORMAT, "unexpected tensor '2.weight'"},
      {h[3], 108, DML_ERR_UNSUPPORTED, "dtype F16"},
      {h[4], 108, DML_ERR_SHAPE,
       "'0.weight' has shape [4, 3] in the file, the model expects [3, 4]"},
      {h[5], 108, DML_ERR_FORMAT, "overlap"},
      {h[6], 108, DML_ERR_FORMAT, "metadata"},
      {h[7], 108, DML_ERR_FORMAT, "after the header"},
      {h[0], 100, DML_ERR_FORMAT, "truncated"},
      {"{not json!!}", 108, DML_ERR_FORMAT, "not valid JSON"},
      {"[1, 2, 3]", 108, DML_ERR_FORMAT, "not a JSON object"},
      {"{\"0.weight\": 5}", 108, DML_ERR_FORMAT, "'0.weight'"},
      {"{\"0.weight\":{\"dtype\":\"F32\",\"shape\":[3,4],\"data_offsets\":[0,44]}}", 108,
       DML_ERR_FORMAT, "needs 48"},
      {"{\"0.weight\":{\"dtype\":\"F32\",\"shape\":[3,4],\"data_offsets\":[-4,44]}}", 108,
       DML_ERR_FORMAT, "non-negative"},
      {"{\"0.weight\":{\"dtype\":\"F32\",\"shape\":[3,4],\"data_offsets\":[48,0]}}", 108,
       DML_ERR_FORMAT, "end before"},
      {"{\"0.weight\":{\"dtype\":\"F32\",\"shape\":[3.5,4],\"data_offsets\":[0,48]}}", 108,
       DML_ERR_FORMAT, "shape"},
      {"{\"0.weight\":{\"dtype\":\"Q7\",\"shape\":[3,4],\"data_offsets\":[0,48]}}", 108,
       DML_ERR_FORMAT, "unknown dtype 'Q7'"},
      {"{\"0.weight\":{\"dtype\":\"F32\",\"shape\":[1,1,1,1,1,1,12],\"data_offsets\":[0,48]}}", 108,
       DML_ERR_UNSUPPORTED, "rank 7"},
      {"{\"0.weight\":{\"dtype\":\"F32\",\"shape\":[3,4],\"data_offsets\":[0,48]},"
       "\"0.weight\":{\"dtype\":\"F32\",\"shape\":[3,4],\"data_offsets\":[48,96]}}",
       108, DML_ERR_FORMAT, "twice"},
      {"{\"0.weight\":{\"dtype\":\"F32\",\"shape\":[3,4],\"data_offsets\":[0,1e300]}}", 108,
       DML_ERR_FORMAT, "non-negative integers"},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    ASSERT_EQ_INT(write_st(bad, cases[i].header, data, cases[i].data_len), 0);
    dml_clear_error();
    dml_status st = dml_safetensors_read(bad, ps, NULL);
    int ok = st == cases[i].status && strstr(dml_last_error(), cases[i].msg) != NULL;
    if (!ok) fprintf(stderr, "  case %zu: got %s: %s\n", i, dml_status_str(st), dml_last_error());
    ASSERT_TRUE(ok);
    ASSERT_TRUE(same_as_snapshot(ps, before));
  }
  /* a skip prefix ignores extra tensors with that prefix only */
  char skip[2048];
  snprintf(
      skip, sizeof skip,
      "{%s,%s,%s,%s,\"optim.0.x\":{\"dtype\":\"F16\",\"shape\":[2],\"data_offsets\":[108,112]}}", w,
      b, bn, rv);
  ASSERT_EQ_INT(write_st(bad, skip, data, 112), 0);
  ASSERT_ERROR(dml_safetensors_read(bad, ps, NULL), DML_ERR_FORMAT);
  ASSERT_OK(dml_safetensors_read(bad, ps, "optim."));

  /* missing file, a directory, NULL arguments */
  char missing[1024], dir[1024];
  dml_test_tmp_path("no_such.safetensors", missing, sizeof missing);
  ASSERT_ERROR(dml_safetensors_read(missing, ps, NULL), DML_ERR_IO);
  ASSERT_TRUE(strstr(dml_last_error(), missing) != NULL);
  dml_test_tmp_path("", dir, sizeof dir);
  ASSERT_TRUE(dml_safetensors_read(dir, ps, NULL) != DML_OK);
  ASSERT_ERROR(dml_safetensors_read(NULL, ps, NULL), DML_ERR_INVALID_ARGUMENT);
  ASSERT_ERROR(dml_safetensors_write(bad, NULL, NULL), DML_ERR_INVALID_ARGUMENT);
  const char *odd_meta[] = {"key", NULL, NULL};
  ASSERT_ERROR(dml_safetensors_write(bad, ps, odd_meta), DML_ERR_INVALID_ARGUMENT);

  free(before);
  free(bytes);
  dml_model_free(m);
}

/* Random byte changes in a valid file: any status, never a crash, store unchanged on failure. */
TEST(safetensors_fuzz_never_crashes) {
  dml_model *m = parse_or_null(SMALL);
  ASSERT_TRUE(m != NULL);
  dml_param_store *ps = dml_model_params(m);
  randomize(ps, 4);
  char good[1024], bad[1024];
  dml_test_tmp_path("fuzz_good.safetensors", good, sizeof good);
  dml_test_tmp_path("fuzz_bad.safetensors", bad, sizeof bad);
  ASSERT_OK(dml_safetensors_write(good, ps, NULL));
  randomize(ps, 5);
  float *before = snapshot(ps);
  long size;
  char *bytes = read_file(good, &size);
  char *copy = malloc((size_t)size);
  ASSERT_TRUE(bytes && copy && before);
  long hlen = (long)(unsigned char)bytes[0];
  int failures = 0;
  for (uint64_t it = 0; it < 300; it++) {
    memcpy(copy, bytes, (size_t)size);
    int flips = 1 + (int)dml_rng_below(7, it, 0, 4);
    for (int k = 0; k < flips; k++) {
      /* mostly in the header, where the parser is */
      long pos = (long)dml_rng_below(7, it, 1 + (uint64_t)k, (uint64_t)(8 + hlen));
      copy[pos] = (char)dml_rng_below(7, it, 100 + (uint64_t)k, 256);
    }
    ASSERT_EQ_INT(write_file(bad, copy, size), 0);
    if (dml_safetensors_read(bad, ps, NULL) != DML_OK) {
      failures++;
      ASSERT_TRUE(dml_last_error()[0] != '\0');
      ASSERT_TRUE(same_as_snapshot(ps, before));
    } else {
      free(before);
      before = snapshot(ps);
    }
  }
  ASSERT_TRUE(failures > 200);
  free(before);
  free(bytes);
  free(copy);
  dml_model_free(m);
}

TEST(mismatched_model_is_reported_by_name) {
  dml_model *a = parse_or_null("input 4\nlinear out=4\nbatchnorm\n");
  dml_model *b = parse_or_null(SMALL);
  dml_model *c = parse_or_null("input 4\nlinear out=3\nbatchnorm\nlinear out=2\n");
  dml_model *d = parse_or_null("input 4\nlinear out=3\n");
  ASSERT_TRUE(a && b && c && d);
  char path[1024];
  dml_test_tmp_path("mismatch.safetensors", path, sizeof path);
  ASSERT_OK(dml_safetensors_write(path, dml_model_params(a), NULL));
  ASSERT_ERROR(dml_safetensors_read(path, dml_model_params(b), NULL), DML_ERR_SHAPE);
  ASSERT_TRUE(strstr(dml_last_error(), "'0.weight'") && strstr(dml_last_error(), "[4, 4]") &&
              strstr(dml_last_error(), "[3, 4]"));
  ASSERT_OK(dml_safetensors_write(path, dml_model_params(b), NULL));
  ASSERT_ERROR(dml_safetensors_read(path, dml_model_params(c), NULL), DML_ERR_NOT_FOUND);
  ASSERT_TRUE(strstr(dml_last_error(), "'2.weight'") != NULL);
  ASSERT_ERROR(dml_safetensors_read(path, dml_model_params(d), NULL), DML_ERR_FORMAT);
  ASSERT_TRUE(strstr(dml_last_error(), "'1.") != NULL);
  dml_model_free(a);
  dml_model_free(b);
  dml_model_free(c);
  dml_model_free(d);
}

TEST(corrupt_checkpoint_json_fails_cleanly) {
  dml_model *m = parse_or_null(SMALL);
  ASSERT_TRUE(m != NULL);
  ASSERT_OK(dml_model_init_weights(m, 1));
  char prefix[1024], jpath[1100];
  dml_test_tmp_path("ckpt_bad", prefix, sizeof prefix);
  snprintf(jpath, sizeof jpath, "%s.json", prefix);
  ASSERT_OK(dml_checkpoint_save(prefix, m, NULL, NULL));
  dml_model *out = (dml_model *)&out;
  struct {
    const char *json;
    dml_status status;
    const char *msg;
  } cases[] = {
      {"not json", DML_ERR_FORMAT, "not a JSON object"},
      {"{\"format\": \"other\", \"version\": 1}", DML_ERR_FORMAT, "dml-checkpoint"},
      {"{\"format\": \"dml-checkpoint\"}", DML_ERR_FORMAT, "version"},
      {"{\"format\": \"dml-checkpoint\", \"version\": 2, \"model\": \"input 2\\nrelu\","
       " \"weights\": \"ckpt_bad.safetensors\"}",
       DML_ERR_UNSUPPORTED, "version 2"},
      {"{\"format\": \"dml-checkpoint\", \"version\": 1, \"weights\": \"ckpt_bad.safetensors\"}",
       DML_ERR_FORMAT, "model"},
      {"{\"format\": \"dml-checkpoint\", \"version\": 1, \"model\": \"input 4\\nlinear out=3\\n"
       "batchnrm\\n\", \"weights\": \"ckpt_bad.safetensors\"}",
       DML_ERR_FORMAT, "ckpt_bad.json (model text):3: unknown layer 'batchnrm'"},
      {"{\"format\": \"dml-checkpoint\", \"version\": 1, \"model\": \"input 4\\nlinear out=3\","
       " \"weights\": \"../x.safetensors\"}",
       DML_ERR_FORMAT, "weights"},
      {"{\"format\": \"dml-checkpoint\", \"version\": 1, \"model\": \"input 4\\nlinear out=3\","
       " \"weights\": \"nothere.safetensors\"}",
       DML_ERR_IO, "nothere.safetensors"},
      {"{\"format\": \"dml-checkpoint\", \"version\": 1, \"model\": \"input 4\\nlinear out=5\\n"
       "batchnorm\", \"weights\": \"ckpt_bad.safetensors\"}",
       DML_ERR_SHAPE, "'0.weight' has shape [3, 4] in the file, the model expects [5, 4]"},
      {"{\"format\": \"dml-checkpoint\", \"version\": 1, \"model\": \"input 4\\nlinear out=3\","
       " \"weights\": \"ckpt_bad.safetensors\"}",
       DML_ERR_FORMAT, "unexpected tensor '1.weight'"},
      {"{\"format\": \"dml-checkpoint\", \"version\": 1, \"model\": \"input 4\\nlinear out=3\\n"
       "batchnorm\", \"weights\": \"ckpt_bad.safetensors\", \"metadata\": 3}",
       DML_ERR_FORMAT, "metadata"},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    ASSERT_EQ_INT(write_file(jpath, cases[i].json, (long)strlen(cases[i].json)), 0);
    dml_clear_error();
    char *meta = (char *)&meta;
    dml_status st = dml_checkpoint_load(prefix, &out, &meta);
    int ok = st == cases[i].status && out == NULL && meta == NULL &&
             strstr(dml_last_error(), cases[i].msg) != NULL;
    if (!ok) fprintf(stderr, "  case %zu: got %s: %s\n", i, dml_status_str(st), dml_last_error());
    ASSERT_TRUE(ok);
  }
  char missing[1024];
  dml_test_tmp_path("no_such_ckpt", missing, sizeof missing);
  ASSERT_ERROR(dml_checkpoint_load(missing, &out, NULL), DML_ERR_IO);
  ASSERT_TRUE(strstr(dml_last_error(), "no_such_ckpt.json") != NULL);
  dml_model_free(m);
}

/* 1 when a temporary file "<target>.tmp.*" of the atomic writer is left beside target. */
static int temp_file_left(const char *target) {
  char dir[1200];
  snprintf(dir, sizeof dir, "%s", target);
  char *slash = strrchr(dir, '/');
  const char *base = slash ? slash + 1 : target;
  if (slash) *slash = '\0';
  char prefix[400];
  snprintf(prefix, sizeof prefix, "%s.tmp.", base);
  DIR *d = opendir(slash ? dir : ".");
  if (!d) return 0;
  int found = 0;
  struct dirent *e;
  while ((e = readdir(d)) != NULL)
    if (strncmp(e->d_name, prefix, strlen(prefix)) == 0) found = 1;
  closedir(d);
  return found;
}

/* ---- atomic writes ---- */

TEST(atomic_write_keeps_the_old_file_on_failure) {
  dml_model *m = parse_or_null(SMALL);
  ASSERT_TRUE(m != NULL);
  ASSERT_OK(dml_model_init_weights(m, 1));
  char prefix[1024], wpath[1100], jpath[1100];
  dml_test_tmp_path("ckpt_atomic", prefix, sizeof prefix);
  snprintf(wpath, sizeof wpath, "%s.safetensors", prefix);
  snprintf(jpath, sizeof jpath, "%s.json", prefix);
  ASSERT_OK(dml_checkpoint_save(prefix, m, NULL, "{\"v\": 1}"));
  long wsize, jsize;
  char *wold = read_file(wpath, &wsize), *jold = read_file(jpath, &jsize);
  ASSERT_TRUE(wold && jold);

  ASSERT_OK(dml_model_init_weights(m, 2));
  /* 2. the directory does not exist */
  char nodir[1024];
  dml_test_tmp_path("no_such_dir/ckpt", nodir, sizeof nodir);
  ASSERT_ERROR(dml_checkpoint_save(nodir, m, NULL, NULL), DML_ERR_IO);
  ASSERT_TRUE(strstr(dml_last_error(), "no_such_dir") != NULL);

  /* 3. the rename fails (the target is a non-empty directory): no temporary file is left */
  char dprefix[1024], dtarget[1100], inner[1200];
  dml_test_tmp_path("ckpt_dir_target", dprefix, sizeof dprefix);
  snprintf(dtarget, sizeof dtarget, "%s.safetensors", dprefix);
  snprintf(inner, sizeof inner, "%s/keep", dtarget);
  mkdir(dtarget, 0755);
  ASSERT_EQ_INT(write_file(inner, "x", 1), 0);
  ASSERT_ERROR(dml_checkpoint_save(dprefix, m, NULL, NULL), DML_ERR_IO);
  ASSERT_TRUE(!temp_file_left(dtarget));
  ASSERT_TRUE(file_exists(inner));
  unlink(inner);
  rmdir(dtarget);

  /* failed saves left the old checkpoint's files byte for byte */
  long n1, n2;
  char *wnow = read_file(wpath, &n1), *jnow = read_file(jpath, &n2);
  ASSERT_TRUE(wnow && jnow && n1 == wsize && n2 == jsize);
  ASSERT_TRUE(memcmp(wnow, wold, (size_t)wsize) == 0 && memcmp(jnow, jold, (size_t)jsize) == 0);
  free(wnow);
  free(jnow);
  ASSERT_TRUE(!temp_file_left(wpath));

  /* 4. an unwritable directory (only meaningful when not running as root) */
  if (geteuid() != 0) {
    char ro[1024], roprefix[1100];
    dml_test_tmp_path("ro_dir", ro, sizeof ro);
    mkdir(ro, 0755);
    snprintf(roprefix, sizeof roprefix, "%s/ckpt", ro);
    ASSERT_OK(dml_checkpoint_save(roprefix, m, NULL, NULL));
    ASSERT_EQ_INT(chmod(ro, 0555), 0);
    ASSERT_ERROR(dml_checkpoint_save(roprefix, m, NULL, NULL), DML_ERR_IO);
    chmod(ro, 0755);
    dml_model *back = NULL;
    ASSERT_OK(dml_checkpoint_load(roprefix, &back, NULL));
    dml_model_free(back);
  }

  /* the old checkpoint still loads, with the old weights */
  dml_model *back = NULL;
  char *meta = NULL;
  ASSERT_OK(dml_checkpoint_load(prefix, &back, &meta));
  ASSERT_TRUE(strstr(meta, "1") != NULL);
  dml_model *ref = parse_or_null(SMALL);
  ASSERT_OK(dml_model_init_weights(ref, 1));
  ASSERT_TRUE(stores_identical(dml_model_params(back), dml_model_params(ref)));
  free(meta);
  free(wold);
  free(jold);
  dml_model_free(back);
  dml_model_free(ref);
  dml_model_free(m);
}

/* ---- optimiser state ---- */

static void set_grads(dml_param_store *ps, uint64_t seed) {
  for (int i = 0; i < dml_params_count(ps); i++) {
    dml_param *p = dml_params_get(ps, i);
    if (p->trainable) dml_rng_fill_uniform(p->grad, p->numel, -1.0f, 1.0f, seed, (uint64_t)i);
  }
}

TEST(optimizer_state_round_trip) {
  char path[1024];
  snprintf(path, sizeof path, "%s/../models/two_moons_mlp.txt", dml_test_data_dir());
  dml_model *m = NULL;
  ASSERT_OK(dml_model_load_text_file(path, &m));
  ASSERT_OK(dml_model_init_weights(m, 1));
  dml_optim_config cfg = dml_optim_config_default(DML_OPTIM_ADAM);
  dml_optim *o;
  ASSERT_OK(dml_optim_new(dml_model_params(m), &cfg, &o));
  for (uint64_t s = 0; s < 3; s++) {
    set_grads(dml_model_params(m), s);
    ASSERT_OK(dml_optim_step(o));
  }
  char prefix[1024];
  dml_test_tmp_path("ckpt_optim", prefix, sizeof prefix);
  ASSERT_OK(dml_checkpoint_save(prefix, m, o, "{\"epoch\": 1}"));

  dml_model *m2 = NULL;
  ASSERT_OK(dml_checkpoint_load(prefix, &m2, NULL));
  ASSERT_TRUE(stores_identical(dml_model_params(m), dml_model_params(m2)));
  dml_optim *o2;
  ASSERT_OK(dml_optim_new(dml_model_params(m2), &cfg, &o2));
  ASSERT_OK(dml_checkpoint_load_optim(prefix, o2));
  ASSERT_EQ_INT(dml_optim_step_count(o2), 3);
  /* one more identical step on both gives identical weights */
  set_grads(dml_model_params(m), 9);
  set_grads(dml_model_params(m2), 9);
  ASSERT_OK(dml_optim_step(o));
  ASSERT_OK(dml_optim_step(o2));
  ASSERT_TRUE(stores_identical(dml_model_params(m), dml_model_params(m2)));

  /* an optimiser of another kind, and a checkpoint without optimiser state */
  dml_optim_config sgd = dml_optim_config_default(DML_OPTIM_SGD);
  sgd.momentum = 0.9f;
  dml_optim *o3;
  ASSERT_OK(dml_optim_new(dml_model_params(m2), &sgd, &o3));
  ASSERT_ERROR(dml_checkpoint_load_optim(prefix, o3), DML_ERR_SHAPE);
  char plain[1024];
  dml_test_tmp_path("ckpt_no_optim", plain, sizeof plain);
  ASSERT_OK(dml_checkpoint_save(plain, m2, NULL, NULL));
  ASSERT_ERROR(dml_checkpoint_load_optim(plain, o2), DML_ERR_NOT_FOUND);
  ASSERT_ERROR(dml_checkpoint_load_optim(NULL, o2), DML_ERR_INVALID_ARGUMENT);
  dml_optim_free(o);
  dml_optim_free(o2);
  dml_optim_free(o3);
  dml_model_free(m);
  dml_model_free(m2);
}

/* An optimiser belongs to one store: saving it beside another model, or restoring state into
 * an optimiser of a different model, is an error, never a read or write out of bounds. */
TEST(optimiser_of_another_model_is_refused) {
  dml_model *big, *small;
  ASSERT_OK(dml_model_parse("input 64\nlinear out=64\nrelu\nlinear out=64\n", "big", &big));
  ASSERT_OK(dml_model_parse("input 4\nlinear out=2\n", "small", &small));
  dml_optim_config cfg = dml_optim_config_default(DML_OPTIM_ADAM);
  dml_optim *ob, *os;
  ASSERT_OK(dml_optim_new(dml_model_params(big), &cfg, &ob));
  ASSERT_OK(dml_optim_new(dml_model_params(small), &cfg, &os));
  char prefix[1024];
  dml_test_tmp_path("ckpt_optim_mismatch", prefix, sizeof prefix);
  ASSERT_ERROR(dml_checkpoint_save(prefix, small, ob, NULL), DML_ERR_INVALID_ARGUMENT);
  ASSERT_OK(dml_checkpoint_save(prefix, big, ob, NULL));
  dml_status st = dml_checkpoint_load_optim(prefix, os);
  ASSERT_TRUE(st != DML_OK);
  ASSERT_TRUE(dml_last_error()[0] != '\0');
  ASSERT_OK(dml_checkpoint_load_optim(prefix, ob));
  dml_optim_free(ob);
  dml_optim_free(os);
  dml_model_free(big);
  dml_model_free(small);
}
