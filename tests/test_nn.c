/* Model text and layers: every file in models/ parses with the right shapes and parameter
 * counts; every parse error names its line; forward/predict agree; initialisation is
 * deterministic and follows torch's defaults. */
#include <dirent.h>
#include <stdlib.h>
#include <string.h>

#include "test.h"

static dml_model *parse_or_null(const char *text) {
  dml_model *m = NULL;
  if (dml_model_parse(text, "model.txt", &m) != DML_OK) {
    fprintf(stderr, "  parse failed: %s\n", dml_last_error());
    return NULL;
  }
  return m;
}

static const char *models_path(const char *name, char *buf, int size) {
  snprintf(buf, (size_t)size, "%s/../models/%s", dml_test_data_dir(), name);
  return buf;
}

static int64_t buffer_numel(dml_model *m) {
  dml_param_store *ps = dml_model_params(m);
  return dml_params_numel(ps) - dml_params_trainable_numel(ps);
}

/* Fills x with a deterministic pattern in [-1, 1). */
static void pattern(float *x, int64_t n, uint64_t seed) {
  dml_rng_fill_uniform(x, n, -1.0f, 1.0f, seed, 99);
}

typedef struct {
  const char *file;
  int layers;
  int out_ndim;
  int64_t out_shape[3];
  int64_t trainable, buffers;
} model_expect;

/* Trainable counts, by layer:
 *  fmnist_cnn: conv 32*1*9+32 = 320, bn 64, conv 64*32*9+64 = 18496, bn 128,
 *              linear 3136*128+128 = 401536 -> 420544; buffers 2*32 + 2*64 = 192
 *  mlp_784:    784*512+512 = 401920, 512*512+512 = 262656, 512*128+128 = 65664 -> 730240
 *  ecg_cnn1d:  16*1*7+16 = 128, bn 32, 32*16*5+32 = 2592, bn 64, 64*32*3+64 = 6208, bn 128,
 *              64*64+64 = 4160 -> 13312; buffers 32 + 64 + 128 = 224
 *  two_moons:  2*64+64 = 192, 64*64+64 = 4160, 64*2+2 = 130 -> 4482 */
static const model_expect expected_models[] = {
    {"fmnist_cnn.txt", 11, 1, {128}, 420544, 192},
    {"mlp_784.txt", 6, 1, {128}, 730240, 0},
    {"ecg_cnn1d.txt", 14, 1, {64}, 13312, 224},
    {"two_moons_mlp.txt", 5, 1, {2}, 4482, 0},
};

TEST(model_files_parse_with_expected_shapes) {
  for (size_t i = 0; i < sizeof expected_models / sizeof expected_models[0]; i++) {
    const model_expect *e = &expected_models[i];
    char path[1024];
    dml_model *m = NULL;
    ASSERT_OK(dml_model_load_text_file(models_path(e->file, path, sizeof path), &m));
    ASSERT_EQ_INT(dml_model_num_layers(m), e->layers);
    int nd;
    int64_t shape[DML_MAX_DIMS];
    dml_model_output_shape(m, &nd, shape);
    ASSERT_EQ_INT(nd, e->out_ndim);
    for (int d = 0; d < nd; d++) ASSERT_EQ_INT(shape[d], e->out_shape[d]);
    ASSERT_EQ_INT(dml_params_trainable_numel(dml_model_params(m)), e->trainable);
    ASSERT_EQ_INT(buffer_numel(m), e->buffers);
    dml_model_free(m);
  }
}

TEST(every_file_in_models_parses) {
  char dir_path[1024];
  snprintf(dir_path, sizeof dir_path, "%s/../models", dml_test_data_dir());
  DIR *dir = opendir(dir_path);
  ASSERT_TRUE(dir != NULL);
  int n = 0, failed = 0;
  struct dirent *ent;
  while ((ent = readdir(dir)) != NULL) {
    size_t len = strlen(ent->d_name);
    if (len < 5 || strcmp(ent->d_name + len - 4, ".txt") != 0) continue;
    char path[2048];
    snprintf(path, sizeof path, "%s/%s", dir_path, ent->d_name);
    dml_model *m = NULL;
    if (dml_model_load_text_file(path, &m) != DML_OK) {
      fprintf(stderr, "  %s: %s\n", ent->d_name, dml_last_error());
      failed++;
    }
    dml_model_free(m);
    n++;
  }
  closedir(dir);
  ASSERT_EQ_INT(failed, 0);
  ASSERT_TRUE(n >= 4);
}

TEST(reference_cnn_parameters_and_summary) {
  char path[1024];
  dml_model *m = NULL;
  ASSERT_OK(dml_model_load_text_file(models_path("fmnist_cnn.txt", path, sizeof path), &m));
  dml_param_store *ps = dml_model_params(m);
  dml_param *w0 = dml_params_find(ps, "0.weight");
  ASSERT_TRUE(w0 != NULL);
  ASSERT_EQ_INT(w0->ndim, 4);
  ASSERT_EQ_INT(w0->shape[0], 32);
  ASSERT_EQ_INT(w0->shape[1], 1);
  ASSERT_EQ_INT(w0->shape[2], 3);
  ASSERT_EQ_INT(w0->fan_in, 9);
  dml_param *rm = dml_params_find(ps, "1.running_mean");
  ASSERT_TRUE(rm != NULL && !rm->trainable);
  ASSERT_TRUE(dml_params_find(ps, "5.running_var") != NULL);
  dml_param *lw = dml_params_find(ps, "9.weight");
  ASSERT_TRUE(lw != NULL);
  ASSERT_EQ_INT(lw->shape[0], 128);
  ASSERT_EQ_INT(lw->shape[1], 3136);
  ASSERT_TRUE(dml_params_find(ps, "9.bias") != NULL);
  ASSERT_TRUE(dml_params_find(ps, "3.weight") == NULL);
  ASSERT_EQ_INT(dml_model_input_numel(m), 784);
  ASSERT_EQ_INT(dml_model_output_numel(m), 128);
  ASSERT_TRUE(strstr(dml_model_text(m), "conv2d out=32 k=3 pad=1") != NULL);

  FILE *f = tmpfile();
  ASSERT_TRUE(f != NULL);
  dml_model_print_summary(m, f);
  char buf[8192];
  rewind(f);
  size_t n = fread(buf, 1, sizeof buf - 1, f);
  buf[n] = '\0';
  fclose(f);
  const char *expect[] = {"input 1 28 28",  "conv2d out=32 k=3 pad=1",
                          "[32, 28, 28]",   "[32, 14, 14]",
                          "[64, 7, 7]",     "[3136]",
                          "linear out=128", "401536",
                          "18496",          "420544 trainable",
                          "192 buffer"};
  for (size_t i = 0; i < sizeof expect / sizeof expect[0]; i++) {
    if (!strstr(buf, expect[i])) fprintf(stderr, "  summary lacks '%s':\n%s", expect[i], buf);
    ASSERT_TRUE(strstr(buf, expect[i]) != NULL);
  }
  dml_model_free(m);
}

typedef struct {
  const char *text;
  dml_status status;
  const char *msg1, *msg2;
} error_case;

static const error_case error_cases[] = {
    {"input 1 28 28\nconv2d out=32 k=3\nrelu\nconv2d out=8 kernal=3\n", DML_ERR_FORMAT,
     "model.txt:4: conv2d: unknown option 'kernal' (valid: out, k, kh, kw, stride, pad, "
     "dilation, groups, bias, init)",
     NULL},
    {"input 4\nlinaer out=3\n", DML_ERR_FORMAT,
     "model.txt:2: unknown layer 'linaer' (valid: ", "linear, conv1d, conv2d"},
    {"input 784\nconv2d out=8 k=3\n", DML_ERR_SHAPE, "model.txt:2: conv2d:", "[784]"},
    {"input 3 32 32\nconv1d out=8 k=3\n", DML_ERR_SHAPE, "model.txt:2: conv1d:", "[3, 32, 32]"},
    {"input 1 28 28\nlinear out=10\n", DML_ERR_SHAPE, "model.txt:2: linear:", "flatten"},
    {"input 4\nlinear out=12x\n", DML_ERR_FORMAT, "model.txt:2: linear:", "'12x'"},
    {"input 4\nlinear out=0\n", DML_ERR_FORMAT, "model.txt:2: linear: out=0 is out of range", NULL},
    {"input 4\nlinear out=99999999999999999999\n", DML_ERR_FORMAT, "model.txt:2:", "out="},
    {"input 4\ndropout p=1\n", DML_ERR_FORMAT, "model.txt:2: dropout: p=1 is out of range", NULL},
    {"input 4\ndropout p=-0.1\n", DML_ERR_FORMAT, "model.txt:2: dropout:", "out of range"},
    {"input 4\ndropout p=nan\n", DML_ERR_FORMAT, "model.txt:2: dropout:", "not a finite number"},
    {"input 4\ndropout p=0.5.1\n", DML_ERR_FORMAT, "model.txt:2: dropout:", "not a finite"},
    {"input 4\nlinear\n", DML_ERR_FORMAT, "model.txt:2: linear:", "missing required option out"},
    {"input 4\nlinear out=3 out=4\n", DML_ERR_FORMAT, "model.txt:2: linear:", "given twice"},
    {"input 4\nlinear 12\n", DML_ERR_FORMAT, "model.txt:2: linear:", "expected key=value"},
    {"input 4\nlinear out=\n", DML_ERR_FORMAT, "model.txt:2: linear:", "no value"},
    {"input 4\nlinear out=3 bias=2\n", DML_ERR_FORMAT, "model.txt:2: linear:", "0 or 1"},
    {"input 4\nlinear out=3 init=orthogonal\n", DML_ERR_FORMAT,
     "model.txt:2: linear:", "unknown init 'orthogonal'"},
    {"# comment\n\nlinear out=3\n", DML_ERR_FORMAT, "model.txt:3:", "input C [H [W]]"},
    {"input 4\nrelu\ninput 4\n", DML_ERR_FORMAT, "model.txt:3: input:", "line 1"},
    {"", DML_ERR_FORMAT, "model.txt:", "no 'input"},
    {"# only a comment\n   \n", DML_ERR_FORMAT, "model.txt:", "no 'input"},
    {"input 4 # no layers\n", DML_ERR_FORMAT, "model.txt:", "no layers"},
    {"input 0\nrelu\n", DML_ERR_FORMAT, "model.txt:1: input:", "out of range"},
    {"input 2x\nrelu\n", DML_ERR_FORMAT, "model.txt:1: input:", "'2x'"},
    {"input 1 2 3 4\nrelu\n", DML_ERR_FORMAT, "model.txt:1: input:", "1 to 3 sizes"},
    {"input 3 8 8\nconv2d out=4 k=3 groups=2\n", DML_ERR_SHAPE, "model.txt:2: conv2d:", "groups=2"},
    {"input 1 4 4\nconv2d out=2 k=5\n", DML_ERR_SHAPE, "model.txt:2: conv2d:", "[1, 4, 4]"},
    {"input 1 4 4\nconv2d out=2 k=3 kh=3 kw=3\n", DML_ERR_FORMAT,
     "model.txt:2: conv2d:", "either k="},
    {"input 1 4 4\nconv2d out=2 kh=3\n", DML_ERR_FORMAT, "model.txt:2: conv2d:", "kernel size"},
    {"input 1 4 4\nconv2d out=2 k=3 stride=1,2,3\n", DML_ERR_FORMAT,
     "model.txt:2: conv2d:", "stride="},
    {"input 1 3\nmaxpool1d k=4\n", DML_ERR_SHAPE, "model.txt:2: maxpool1d:", "[1, 3]"},
    {"input 1 8\nmaxpool1d k=2 pad=2\n", DML_ERR_FORMAT, "model.txt:2: maxpool1d:", "half"},
    {"input 1 8\nmaxpool1d k=2 count_include_pad=1\n", DML_ERR_FORMAT,
     "model.txt:2: maxpool1d: unknown option 'count_include_pad' (valid: k, stride, pad)", NULL},
    {"input 1 8 8\nmaxpool2d\n", DML_ERR_FORMAT, "model.txt:2: maxpool2d:", "k="},
    {"input 12\nreshape shape=5,2\n", DML_ERR_SHAPE, "model.txt:2: reshape:", "[12]"},
    {"input 12\nreshape shape=-1,-1\n", DML_ERR_FORMAT, "model.txt:2: reshape:", "-1"},
    {"input 12\nreshape shape=0,12\n", DML_ERR_FORMAT, "model.txt:2: reshape:", "positive"},
    {"input 12\nreshape shape=5,-1\n", DML_ERR_SHAPE, "model.txt:2: reshape:", "12"},
    {"input 12\nreshape\n", DML_ERR_FORMAT, "model.txt:2: reshape:", "shape="},
    {"input 12\nglobalavgpool\n", DML_ERR_SHAPE, "model.txt:2: globalavgpool:", "[12]"},
    {"input 16\nreshape shape=1,2,2,4\nbatchnorm\n", DML_ERR_SHAPE,
     "model.txt:3: batchnorm:", "[1, 2, 2, 4]"},
    {"input 4\nbatchnorm momentum=2\n", DML_ERR_FORMAT, "model.txt:2: batchnorm:", "momentum"},
    {"input 4\nlayernorm eps=0\n", DML_ERR_FORMAT, "model.txt:2: layernorm:", "eps"},
    {"input 4\nsoftplus beta=0\n", DML_ERR_FORMAT, "model.txt:2: softplus:", "beta"},
    {"input 4\nrelu inplace=1\n", DML_ERR_FORMAT,
     "model.txt:2: relu: unknown option 'inplace' (relu takes no options)", NULL},
    {"input 4\r\nlinear out=2\r\nlinear out=2 foo=1\r\n", DML_ERR_FORMAT,
     "model.txt:3: linear:", "'foo'"},
};

TEST(parse_errors_name_the_line) {
  for (size_t i = 0; i < sizeof error_cases / sizeof error_cases[0]; i++) {
    const error_case *c = &error_cases[i];
    dml_model *m = (dml_model *)&m; /* must be reset to NULL on failure */
    dml_clear_error();
    dml_status st = dml_model_parse(c->text, "model.txt", &m);
    const char *msg = dml_last_error();
    int ok = st == c->status && m == NULL && strstr(msg, c->msg1) == msg &&
             (!c->msg2 || strstr(msg, c->msg2));
    if (!ok) fprintf(stderr, "  case %zu (%s): got %s '%s'\n", i, c->text, dml_status_str(st), msg);
    ASSERT_TRUE(ok);
  }
}

TEST(parse_bad_arguments_and_missing_file) {
  dml_model *m = NULL;
  ASSERT_ERROR(dml_model_parse(NULL, "x", &m), DML_ERR_INVALID_ARGUMENT);
  ASSERT_ERROR(dml_model_parse("input 2\nrelu\n", "x", NULL), DML_ERR_INVALID_ARGUMENT);
  ASSERT_ERROR(dml_model_parse("input 2\nrelux\n", NULL, &m), DML_ERR_FORMAT);
  ASSERT_TRUE(strstr(dml_last_error(), "model text:2:") == dml_last_error());
  char path[1024];
  dml_test_tmp_path("no_such_model.txt", path, sizeof path);
  ASSERT_ERROR(dml_model_load_text_file(path, &m), DML_ERR_IO);
  ASSERT_TRUE(strstr(dml_last_error(), path) != NULL);
  ASSERT_TRUE(m == NULL);
  /* Errors in a file name the file and the line. */
  dml_test_tmp_path("bad_model.txt", path, sizeof path);
  FILE *f = fopen(path, "w");
  ASSERT_TRUE(f != NULL);
  fputs("input 1 8 8\n\n# c\nconv2d out=2 k=3 strid=2\n", f);
  fclose(f);
  ASSERT_ERROR(dml_model_load_text_file(path, &m), DML_ERR_FORMAT);
  char want[1200];
  snprintf(want, sizeof want, "%s:4: conv2d: unknown option 'strid'", path);
  ASSERT_TRUE(strstr(dml_last_error(), want) == dml_last_error());
  dml_model_free(NULL);
}

TEST(options_and_shapes) {
  dml_model *m = parse_or_null(
      "input 3 17 11  # comment after the input\n"
      "conv2d out=6 kh=3 kw=2 stride=2,1 pad=1,0 dilation=1,2 groups=3 bias=0\n"
      "avgpool2d k=2 stride=1 pad=1 count_include_pad=0\n"
      "reshape shape=-1,6\n"
      "layernorm eps=1e-3 affine=0\n"
      "batchnorm affine=0 momentum=0.5\n"
      "flatten\n"
      "linear out=5 bias=0\n");
  ASSERT_TRUE(m != NULL);
  /* conv: H (17 + 2 - 3) / 2 + 1 = 9, W (11 - 2*1 - 1) / 1 + 1 = 9; avgpool: 10 x 10 */
  int nd;
  int64_t s[DML_MAX_DIMS];
  dml_model_output_shape(m, &nd, s);
  ASSERT_EQ_INT(nd, 1);
  ASSERT_EQ_INT(s[0], 5);
  dml_param_store *ps = dml_model_params(m);
  dml_param *w = dml_params_find(ps, "0.weight");
  ASSERT_TRUE(w != NULL);
  ASSERT_EQ_INT(w->shape[1], 1); /* 3 channels / 3 groups */
  ASSERT_EQ_INT(w->shape[2], 3);
  ASSERT_EQ_INT(w->shape[3], 2);
  ASSERT_TRUE(dml_params_find(ps, "0.bias") == NULL);
  ASSERT_TRUE(dml_params_find(ps, "3.weight") == NULL); /* layernorm affine=0 */
  ASSERT_TRUE(dml_params_find(ps, "4.weight") == NULL); /* batchnorm affine=0 */
  dml_param *rv = dml_params_find(ps, "4.running_var");
  ASSERT_TRUE(rv != NULL);
  ASSERT_EQ_INT(rv->shape[0], 100); /* reshape gives [100, 6]: batchnorm over 100 channels */
  dml_param *lw = dml_params_find(ps, "6.weight");
  ASSERT_TRUE(lw != NULL);
  ASSERT_EQ_INT(lw->shape[1], 600);
  dml_model_free(m);
}

TEST(forward_reference_cnn_gives_unit_rows) {
  char path[1024];
  dml_model *m = NULL;
  ASSERT_OK(dml_model_load_text_file(models_path("fmnist_cnn.txt", path, sizeof path), &m));
  ASSERT_OK(dml_model_init_weights(m, 1));
  dml_graph *g;
  ASSERT_OK(dml_graph_new(&g));
  enum { N = 3 };
  float *x = malloc(N * 784 * sizeof(float));
  ASSERT_TRUE(x != NULL);
  pattern(x, N * 784, 5);
  int64_t shape[4] = {N, 1, 28, 28};
  for (int training = 1; training >= 0; training--) {
    dml_graph_reset(g);
    dml_graph_set_training(g, training);
    dml_node *in, *out;
    ASSERT_OK(dml_graph_input(g, x, 4, shape, 0, &in));
    ASSERT_OK(dml_model_forward(m, g, in, &out));
    const dml_tensor *y = dml_node_value(out);
    ASSERT_EQ_INT(y->ndim, 2);
    ASSERT_EQ_INT(y->shape[0], N);
    ASSERT_EQ_INT(y->shape[1], 128);
    for (int i = 0; i < N; i++) {
      double ss = 0;
      for (int j = 0; j < 128; j++) ss += (double)y->data[i * 128 + j] * y->data[i * 128 + j];
      ASSERT_NEAR(sqrt(ss), 1.0, 1e-5);
    }
  }
  /* training mode moved the running mean away from 0 */
  dml_param *rm = dml_params_find(dml_model_params(m), "1.running_mean");
  double s = 0;
  for (int i = 0; i < 32; i++) s += fabs(rm->value[i]);
  ASSERT_TRUE(s > 0);
  free(x);
  dml_graph_free(g);
  dml_model_free(m);
}

TEST(forward_rejects_wrong_input_shape) {
  dml_model *m = parse_or_null("input 1 8 8\nconv2d out=2 k=3\nflatten\n");
  ASSERT_TRUE(m != NULL);
  dml_graph *g;
  ASSERT_OK(dml_graph_new(&g));
  float x[2 * 64] = {0};
  int64_t bad[3] = {2, 8, 8}, empty[4] = {0, 1, 8, 8};
  dml_node *in, *out = NULL;
  ASSERT_OK(dml_graph_input(g, x, 3, bad, 0, &in));
  ASSERT_ERROR(dml_model_forward(m, g, in, &out), DML_ERR_SHAPE);
  ASSERT_TRUE(strstr(dml_last_error(), "[2, 8, 8]") && strstr(dml_last_error(), "[1, 8, 8]"));
  ASSERT_OK(dml_graph_input(g, x, 4, empty, 0, &in));
  ASSERT_ERROR(dml_model_forward(m, g, in, &out), DML_ERR_SHAPE);
  ASSERT_ERROR(dml_model_forward(NULL, g, in, &out), DML_ERR_INVALID_ARGUMENT);
  dml_graph_free(g);
  dml_model_free(m);
}

static int same_values(dml_model *a, dml_model *b, int count) {
  dml_param_store *pa = dml_model_params(a), *pb = dml_model_params(b);
  for (int i = 0; i < count; i++) {
    dml_param *x = dml_params_get(pa, i), *y = dml_params_get(pb, i);
    if (strcmp(x->name, y->name) != 0 || x->numel != y->numel) return 0;
    if (memcmp(x->value, y->value, (size_t)x->numel * sizeof(float)) != 0) return 0;
  }
  return 1;
}

TEST(init_is_deterministic_per_seed) {
  char path[1024];
  dml_model *a = NULL, *b = NULL, *c = NULL;
  ASSERT_OK(dml_model_load_text_file(models_path("fmnist_cnn.txt", path, sizeof path), &a));
  ASSERT_OK(dml_model_load_text_file(path, &b));
  ASSERT_OK(dml_model_load_text_file(path, &c));
  ASSERT_OK(dml_model_init_weights(a, 42));
  ASSERT_OK(dml_model_init_weights(b, 42));
  ASSERT_OK(dml_model_init_weights(c, 43));
  int n = dml_params_count(dml_model_params(a));
  ASSERT_TRUE(same_values(a, b, n));
  dml_param *wa = dml_params_find(dml_model_params(a), "0.weight");
  dml_param *wc = dml_params_find(dml_model_params(c), "0.weight");
  ASSERT_TRUE(memcmp(wa->value, wc->value, (size_t)wa->numel * sizeof(float)) != 0);
  /* Appending a layer keeps the earlier weights. */
  size_t len = strlen(dml_model_text(a));
  char *text = malloc(len + 32);
  ASSERT_TRUE(text != NULL);
  memcpy(text, dml_model_text(a), len);
  strcpy(text + len, "\nlinear out=10\n");
  dml_model *d = parse_or_null(text);
  free(text);
  ASSERT_TRUE(d != NULL);
  ASSERT_OK(dml_model_init_weights(d, 42));
  ASSERT_EQ_INT(dml_params_count(dml_model_params(d)), n + 2);
  ASSERT_TRUE(same_values(a, d, n));
  dml_model_free(a);
  dml_model_free(b);
  dml_model_free(c);
  dml_model_free(d);
}

/* max |v|, mean and variance of a parameter's values */
static void stats(const dml_param *p, double *maxabs, double *mean, double *var) {
  double s = 0, s2 = 0, mx = 0;
  for (int64_t i = 0; i < p->numel; i++) {
    double v = p->value[i];
    s += v;
    s2 += v * v;
    if (fabs(v) > mx) mx = fabs(v);
  }
  *maxabs = mx;
  *mean = s / (double)p->numel;
  *var = s2 / (double)p->numel - *mean * *mean;
}

TEST(init_follows_torch_defaults) {
  char path[1024];
  dml_model *m = NULL;
  ASSERT_OK(dml_model_load_text_file(models_path("fmnist_cnn.txt", path, sizeof path), &m));
  ASSERT_OK(dml_model_init_weights(m, 3));
  dml_param_store *ps = dml_model_params(m);
  double mx, mean, var;
  /* linear 3136 -> 128: U(-b, b), b = 1/sqrt(3136) = 1/56; variance b^2 / 3 */
  double b = 1.0 / 56.0;
  stats(dml_params_find(ps, "9.weight"), &mx, &mean, &var);
  ASSERT_TRUE(mx <= b);
  ASSERT_TRUE(mx > 0.99 * b);
  ASSERT_NEAR(mean, 0.0, 1e-4);
  ASSERT_NEAR(var, b * b / 3.0, 0.02 * b * b / 3.0);
  stats(dml_params_find(ps, "9.bias"), &mx, &mean, &var);
  ASSERT_TRUE(mx <= b && mx > 0.5 * b);
  /* conv 1 -> 32, 3x3: fan_in 9, bound 1/3 */
  stats(dml_params_find(ps, "0.weight"), &mx, &mean, &var);
  ASSERT_TRUE(mx <= 1.0 / 3.0 && mx > 0.9 / 3.0);
  stats(dml_params_find(ps, "4.weight"), &mx, &mean, &var); /* fan_in 32 * 9 */
  ASSERT_TRUE(mx <= 1.0 / sqrt(288.0) && mx > 0.99 / sqrt(288.0));
  const char *ones[] = {"1.weight", "1.running_var", "5.weight", "5.running_var"};
  const char *zeros[] = {"1.bias", "1.running_mean", "5.bias", "5.running_mean"};
  for (int k = 0; k < 4; k++) {
    dml_param *p1 = dml_params_find(ps, ones[k]), *p0 = dml_params_find(ps, zeros[k]);
    for (int64_t i = 0; i < p1->numel; i++) ASSERT_TRUE(p1->value[i] == 1.0f);
    for (int64_t i = 0; i < p0->numel; i++) ASSERT_TRUE(p0->value[i] == 0.0f);
  }
  dml_model_free(m);

  /* Chosen initialisers: Kaiming with the ReLU gain, Xavier with gain 1. */
  m = parse_or_null(
      "input 1000\nlinear out=500 init=kaiming_normal\n"
      "linear out=300 init=xavier_uniform\nlinear out=200 init=kaiming_uniform\n"
      "layernorm\n");
  ASSERT_TRUE(m != NULL);
  ASSERT_OK(dml_model_init_weights(m, 9));
  ps = dml_model_params(m);
  stats(dml_params_find(ps, "0.weight"), &mx, &mean, &var);
  ASSERT_NEAR(var, 2.0 / 1000.0, 0.02 * 2.0 / 1000.0);
  stats(dml_params_find(ps, "1.weight"), &mx, &mean, &var);
  double xb = sqrt(6.0 / 800.0);
  ASSERT_TRUE(mx <= xb && mx > 0.99 * xb);
  stats(dml_params_find(ps, "2.weight"), &mx, &mean, &var);
  double kb = sqrt(6.0 / 300.0);
  ASSERT_TRUE(mx <= kb && mx > 0.99 * kb);
  stats(dml_params_find(ps, "3.weight"), &mx, &mean, &var);
  ASSERT_TRUE(mean == 1.0 && var == 0.0);
  dml_model_free(m);
}

TEST(predict_matches_eval_forward_and_restores_mode) {
  char path[1024];
  dml_model *m = NULL;
  ASSERT_OK(dml_model_load_text_file(models_path("ecg_cnn1d.txt", path, sizeof path), &m));
  ASSERT_OK(dml_model_init_weights(m, 11));
  /* non-trivial running statistics */
  dml_param_store *ps = dml_model_params(m);
  for (int i = 0; i < dml_params_count(ps); i++) {
    dml_param *p = dml_params_get(ps, i);
    if (strstr(p->name, "running_mean"))
      dml_rng_fill_uniform(p->value, p->numel, -0.2f, 0.2f, 1, (uint64_t)i);
    if (strstr(p->name, "running_var"))
      dml_rng_fill_uniform(p->value, p->numel, 0.5f, 1.5f, 1, (uint64_t)i);
  }
  enum { N = 7 };
  float *x = malloc(N * 252 * sizeof(float)), *ref = malloc(N * 64 * sizeof(float));
  float *got = malloc(N * 64 * sizeof(float));
  ASSERT_TRUE(x && ref && got);
  pattern(x, N * 252, 21);
  dml_graph *g;
  ASSERT_OK(dml_graph_new(&g));
  dml_graph_set_training(g, 0);
  int64_t shape[3] = {N, 1, 252};
  dml_node *in, *out;
  ASSERT_OK(dml_graph_input(g, x, 3, shape, 0, &in));
  ASSERT_OK(dml_model_forward(m, g, in, &out));
  memcpy(ref, dml_node_value(out)->data, N * 64 * sizeof(float));
  for (int training = 0; training <= 1; training++) {
    dml_graph_set_training(g, training);
    memset(got, 0, N * 64 * sizeof(float));
    ASSERT_OK(dml_model_predict(m, g, x, N, 3, got));
    ASSERT_EQ_INT(dml_graph_training(g), training);
    for (int i = 0; i < N * 64; i++) ASSERT_NEAR(got[i], ref[i], 1e-5 + 1e-4 * fabs(ref[i]));
  }
  /* predict in evaluation mode left the running statistics alone */
  dml_param *rm = dml_params_find(ps, "1.running_mean");
  float rm0 = rm->value[0];
  ASSERT_OK(dml_model_predict(m, g, x, N, N, got));
  ASSERT_TRUE(rm->value[0] == rm0);
  ASSERT_OK(dml_model_predict(m, g, NULL, 0, 4, NULL));
  ASSERT_ERROR(dml_model_predict(m, g, x, N, 0, got), DML_ERR_INVALID_ARGUMENT);
  ASSERT_ERROR(dml_model_predict(m, g, x, -1, 2, got), DML_ERR_INVALID_ARGUMENT);
  ASSERT_ERROR(dml_model_predict(m, g, NULL, N, 2, got), DML_ERR_INVALID_ARGUMENT);
  free(x);
  free(ref);
  free(got);
  dml_graph_free(g);
  dml_model_free(m);
}

TEST(every_layer_kind_runs_forward_and_backward) {
  const char *texts[] = {
      "input 2 12 10\n"
      "conv2d out=4 k=3 pad=1 stride=1,2 dilation=1\nbatchnorm2d\nrelu\n"
      "maxpool2d k=2 stride=2,1 pad=1\nconv2d out=4 k=2 groups=2 init=kaiming_normal\n"
      "leakyrelu slope=0.2\navgpool2d k=2\ngelu\nglobalavgpool\nlinear out=6\n"
      "layernorm\ntanh\ndropout p=0.25\nlinear out=3 init=xavier_normal\nl2norm eps=1e-8\n",
      "input 3 40\n"
      "conv1d out=6 k=5 stride=2 pad=2 groups=3\nbatchnorm1d momentum=0.2 eps=1e-3\nsigmoid\n"
      "maxpool1d k=3 stride=2 pad=1\nconv1d out=4 k=3 dilation=2\navgpool1d k=2 "
      "count_include_pad=0 pad=1\nglobalmaxpool\nsoftplus beta=2 threshold=10\nreshape "
      "shape=2,2\nflatten\nbatchnorm\nlinear out=2\n",
  };
  dml_graph *g;
  ASSERT_OK(dml_graph_new(&g));
  for (int t = 0; t < 2; t++) {
    dml_model *m = parse_or_null(texts[t]);
    ASSERT_TRUE(m != NULL);
    ASSERT_OK(dml_model_init_weights(m, 5));
    int64_t in_numel = dml_model_input_numel(m), out_numel = dml_model_output_numel(m);
    int nd;
    int64_t shape[DML_MAX_DIMS];
    dml_model_input_shape(m, &nd, shape + 1);
    shape[0] = 4;
    float *x = malloc((size_t)(4 * in_numel) * sizeof(float));
    float *dy = malloc((size_t)(4 * out_numel) * sizeof(float));
    ASSERT_TRUE(x && dy);
    pattern(x, 4 * in_numel, 3);
    pattern(dy, 4 * out_numel, 4);
    dml_graph_reset(g);
    dml_graph_set_training(g, 1);
    dml_graph_set_seed(g, 1, 0);
    dml_params_zero_grad(dml_model_params(m));
    dml_node *in, *out;
    ASSERT_OK(dml_graph_input(g, x, nd + 1, shape, 1, &in));
    ASSERT_OK(dml_model_forward(m, g, in, &out));
    ASSERT_EQ_INT(dml_tensor_numel(dml_node_value(out)), 4 * out_numel);
    ASSERT_OK(dml_tensor_check_finite(dml_node_value(out), "output"));
    ASSERT_OK(dml_graph_backward(g, out, dy));
    const dml_param *w0 = dml_params_find(dml_model_params(m), "0.weight");
    double gs = 0;
    for (int64_t i = 0; i < w0->numel; i++) gs += fabs(w0->grad[i]);
    ASSERT_TRUE(gs > 0 && isfinite(gs));
    ASSERT_TRUE(dml_node_grad(in) != NULL);
    free(x);
    free(dy);
    dml_model_free(m);
  }
  dml_graph_free(g);
}

TEST(dropout_layer_follows_training_mode) {
  dml_model *m = parse_or_null("input 1000\ndropout p=0.5\n");
  ASSERT_TRUE(m != NULL);
  dml_graph *g;
  ASSERT_OK(dml_graph_new(&g));
  float x[1000];
  for (int i = 0; i < 1000; i++) x[i] = 1.0f;
  int64_t shape[2] = {1, 1000};
  dml_node *in, *out;
  ASSERT_OK(dml_graph_input(g, x, 2, shape, 0, &in));
  ASSERT_OK(dml_model_forward(m, g, in, &out));
  int zeros = 0;
  for (int i = 0; i < 1000; i++) {
    float v = dml_node_value(out)->data[i];
    ASSERT_TRUE(v == 0.0f || v == 2.0f);
    zeros += v == 0.0f;
  }
  ASSERT_TRUE(zeros > 400 && zeros < 600);
  float y[1000];
  ASSERT_OK(dml_model_predict(m, g, x, 1, 1, y));
  for (int i = 0; i < 1000; i++) ASSERT_TRUE(y[i] == 1.0f);
  dml_graph_free(g);
  dml_model_free(m);
}

TEST(accessors_tolerate_null) {
  int nd = 7;
  int64_t s[DML_MAX_DIMS];
  dml_model_input_shape(NULL, &nd, s);
  ASSERT_EQ_INT(nd, 0);
  ASSERT_EQ_INT(dml_model_num_layers(NULL), 0);
  ASSERT_TRUE(dml_model_params(NULL) == NULL);
  ASSERT_TRUE(dml_model_text(NULL) == NULL);
  ASSERT_EQ_INT(dml_model_output_numel(NULL), 0);
  ASSERT_ERROR(dml_model_init_weights(NULL, 1), DML_ERR_INVALID_ARGUMENT);
  dml_model_print_summary(NULL, stdout);
}

/* dml_model_predict records for inference (batch norm fused with its ReLU, ReLU in place,
 * max pooling without argmax, one graph per thread): the same bits as the evaluation-mode
 * forward on a graph that could run backward, for 1 and 2 threads; and a forward recorded for
 * inference refuses backward. */
#include "core/graph_internal.h"

TEST(predict_matches_evaluation_forward) {
  dml_model *m = NULL;
  ASSERT_OK(dml_model_parse("input 1 12 12\nconv2d out=6 k=3 pad=1\nbatchnorm\nrelu\n"
                            "maxpool2d k=2\nconv2d out=4 k=3 pad=1\nbatchnorm\nrelu\nflatten\n"
                            "linear out=8\nrelu\nlinear out=5\nl2norm\n",
                            "fused", &m));
  ASSERT_OK(dml_model_init_weights(m, 3));
  /* non-trivial running statistics */
  dml_param_store *ps = dml_model_params(m);
  for (int i = 0; i < dml_params_count(ps); i++) {
    dml_param *p = dml_params_get(ps, i);
    if (strstr(p->name, "running_mean"))
      for (int64_t k = 0; k < p->numel; k++) p->value[k] = 0.1f * (float)(k % 3) - 0.1f;
    if (strstr(p->name, "running_var"))
      for (int64_t k = 0; k < p->numel; k++) p->value[k] = 0.5f + 0.25f * (float)(k % 4);
  }
  enum { N = 37 };
  float *x = malloc(N * 144 * sizeof(float)), ref[N * 5], got[N * 5];
  for (int i = 0; i < N * 144; i++) x[i] = (float)((i * 7919) % 211) / 105.0f - 1.0f;
  dml_graph *g;
  ASSERT_OK(dml_graph_new(&g));
  dml_graph_set_training(g, 0);
  int64_t shape[4] = {N, 1, 12, 12};
  dml_node *xin, *y;
  ASSERT_OK(dml_graph_input(g, x, 4, shape, 1, &xin)); /* requires grad: nothing fused */
  ASSERT_OK(dml_model_forward(m, g, xin, &y));
  memcpy(ref, dml_node_value(y)->data, sizeof ref);
  int threads = dml_get_num_threads();
  for (int t = 1; t <= 2; t++) {
    dml_set_num_threads(t);
    for (int b = 1; b <= 64; b *= 4) {
      memset(got, 0, sizeof got);
      ASSERT_OK(dml_model_predict(m, g, x, N, b, got));
      for (int i = 0; i < N * 5; i++) ASSERT_NEAR(got[i], ref[i], 2e-6);
    }
  }
  dml_set_num_threads(threads);
  /* inference forward: backward is refused */
  dml_graph_reset(g);
  dml__graph_set_inference(g, 1);
  ASSERT_OK(dml_graph_input(g, x, 4, shape, 1, &xin));
  ASSERT_OK(dml_model_forward(m, g, xin, &y));
  ASSERT_ERROR(dml_graph_backward(g, y, ref), DML_ERR_STATE);
  ASSERT_TRUE(strstr(dml_last_error(), "inference") != NULL);
  dml_graph_free(g);
  dml_model_free(m);
  free(x);
}
