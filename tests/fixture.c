/* Fixture loading and the generic forward/backward/finite-difference op checker. */
#include "fixture.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "test.h"

cJSON *fixture_load(const char *relpath) {
  char path[1024];
  snprintf(path, sizeof path, "%s/%s", dml_test_data_dir(), relpath);
  FILE *f = fopen(path, "rb");
  if (!f) {
    fprintf(stderr, "  cannot open fixture %s (regenerate with tools/gen_fixtures.py)\n", path);
    return NULL;
  }
  fseek(f, 0, SEEK_END);
  long n = ftell(f);
  fseek(f, 0, SEEK_SET);
  char *buf = malloc((size_t)n + 1);
  size_t got = buf ? fread(buf, 1, (size_t)n, f) : 0;
  fclose(f);
  if (!buf || got != (size_t)n) {
    free(buf);
    fprintf(stderr, "  cannot read fixture %s\n", path);
    return NULL;
  }
  buf[n] = '\0';
  cJSON *root = cJSON_Parse(buf);
  free(buf);
  if (!root) fprintf(stderr, "  fixture %s is not valid JSON\n", path);
  return root;
}

int fixture_tensor(const cJSON *obj, float **data, int *ndim, int64_t *shape) {
  const cJSON *sh = cJSON_GetObjectItemCaseSensitive(obj, "shape");
  const cJSON *d = cJSON_GetObjectItemCaseSensitive(obj, "data");
  if (!cJSON_IsArray(sh) || !cJSON_IsArray(d)) return -1;
  int nd = cJSON_GetArraySize(sh);
  if (nd > DML_MAX_DIMS) return -1;
  int64_t n = 1;
  for (int i = 0; i < nd; i++) {
    shape[i] = (int64_t)cJSON_GetArrayItem(sh, i)->valuedouble;
    n *= shape[i];
  }
  if (cJSON_GetArraySize(d) != n) return -1;
  float *buf = malloc((size_t)(n > 0 ? n : 1) * sizeof(float));
  if (!buf) return -1;
  int64_t i = 0;
  const cJSON *v;
  cJSON_ArrayForEach(v, d) buf[i++] = (float)v->valuedouble;
  *data = buf;
  *ndim = nd;
  return 0;
}

double fixture_attr_num(const cJSON *attrs, const char *key, double dflt) {
  const cJSON *v = attrs ? cJSON_GetObjectItemCaseSensitive(attrs, key) : NULL;
  if (cJSON_IsNumber(v)) return v->valuedouble;
  if (cJSON_IsBool(v)) return cJSON_IsTrue(v) ? 1.0 : 0.0;
  return dflt;
}

int fixture_attr_ints(const cJSON *attrs, const char *key, int *out, int max_n) {
  const cJSON *v = attrs ? cJSON_GetObjectItemCaseSensitive(attrs, key) : NULL;
  if (cJSON_IsNumber(v)) {
    for (int i = 0; i < max_n; i++) out[i] = v->valueint;
    return max_n;
  }
  if (!cJSON_IsArray(v)) return 0;
  int n = 0;
  const cJSON *e;
  cJSON_ArrayForEach(e, v) {
    if (n < max_n) out[n++] = e->valueint;
  }
  return n;
}

int fixture_compare(const char *what, const float *got, const float *ref, int64_t n,
                    double atol, double rtol) {
  int bad = 0;
  for (int64_t i = 0; i < n; i++) {
    double a = got[i], b = ref[i];
    if (!(fabs(a - b) <= atol + rtol * fabs(b))) {
      if (bad < 5)
        fprintf(stderr, "    %s[%lld]: got %.9g, reference %.9g\n", what, (long long)i, a, b);
      bad++;
    }
  }
  if (bad) fprintf(stderr, "    %s: %d of %lld values outside tolerance\n", what, bad, (long long)n);
  return bad == 0;
}

typedef struct {
  int n;
  float *data[8];
  int ndim[8];
  int64_t shape[8][DML_MAX_DIMS];
  int needs_grad[8];
} case_inputs;

static void inputs_free(case_inputs *in) {
  for (int i = 0; i < in->n; i++) free(in->data[i]);
}

/* Forward on a fresh graph; returns sum(dy * y) in double, or NAN on failure. */
static double projected_forward(dml_graph *g, case_inputs *in, const cJSON *attrs,
                                fixture_build_fn build, void *ctx, const float *dy) {
  dml_graph_reset(g);
  dml_node *nodes[8];
  for (int i = 0; i < in->n; i++)
    if (dml_graph_input(g, in->data[i], in->ndim[i], in->shape[i], 0, &nodes[i]) != DML_OK)
      return NAN;
  dml_node *y;
  if (build(g, nodes, in->n, attrs, ctx, &y) != DML_OK) return NAN;
  const dml_tensor *v = dml_node_value(y);
  int64_t n = dml_tensor_numel(v);
  double s = 0;
  for (int64_t i = 0; i < n; i++) s += (double)dy[i] * (double)v->data[i];
  return s;
}

int fixture_check_case(const cJSON *c, fixture_build_fn build, void *ctx) {
  const char *name = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(c, "name"));
  if (!name) name = "(unnamed)";
  const cJSON *attrs = cJSON_GetObjectItemCaseSensitive(c, "attrs");
  const cJSON *inputs = cJSON_GetObjectItemCaseSensitive(c, "inputs");
  const cJSON *grads = cJSON_GetObjectItemCaseSensitive(c, "grads");
  case_inputs in;
  memset(&in, 0, sizeof in);
  int ok = 1;
  const cJSON *it;
  cJSON_ArrayForEach(it, inputs) {
    if (in.n >= 8 || fixture_tensor(it, &in.data[in.n], &in.ndim[in.n], in.shape[in.n]) != 0) {
      fprintf(stderr, "  case %s: bad input %d\n", name, in.n);
      inputs_free(&in);
      return 0;
    }
    const cJSON *gflag = cJSON_GetObjectItemCaseSensitive(it, "grad");
    in.needs_grad[in.n] = gflag ? cJSON_IsTrue(gflag) : 1;
    in.n++;
  }
  float *ref_y = NULL, *dy = NULL;
  int nd;
  int64_t sh[DML_MAX_DIMS];
  if (fixture_tensor(cJSON_GetObjectItemCaseSensitive(c, "output"), &ref_y, &nd, sh) != 0 ||
      fixture_tensor(cJSON_GetObjectItemCaseSensitive(c, "dy"), &dy, &nd, sh) != 0) {
    fprintf(stderr, "  case %s: bad output or dy\n", name);
    free(ref_y);
    inputs_free(&in);
    return 0;
  }
  dml_graph *g = NULL;
  if (dml_graph_new(&g) != DML_OK) {
    free(ref_y);
    free(dy);
    inputs_free(&in);
    return 0;
  }
  dml_node *nodes[8];
  dml_node *y = NULL;
  for (int i = 0; i < in.n && ok; i++)
    ok = dml_graph_input(g, in.data[i], in.ndim[i], in.shape[i], in.needs_grad[i], &nodes[i]) ==
         DML_OK;
  dml_status st = ok ? build(g, nodes, in.n, attrs, ctx, &y) : DML_ERR_INTERNAL;
  if (st != DML_OK) {
    fprintf(stderr, "  case %s: op failed: %s\n", name, dml_last_error());
    ok = 0;
  }
  if (ok) {
    const dml_tensor *v = dml_node_value(y);
    int64_t n = dml_tensor_numel(v);
    int64_t ref_n = 1;
    for (int i = 0; i < nd; i++) ref_n *= sh[i];
    if (n != ref_n || v->ndim != nd) {
      fprintf(stderr, "  case %s: output has %lld elements (rank %d), reference %lld (rank %d)\n",
              name, (long long)n, v->ndim, (long long)ref_n, nd);
      ok = 0;
    } else {
      char what[160];
      snprintf(what, sizeof what, "%s output", name);
      ok = fixture_compare(what, v->data, ref_y, n, 1e-5, 1e-4);
    }
  }
  if (ok) {
    st = dml_graph_backward(g, y, dy);
    if (st != DML_OK) {
      fprintf(stderr, "  case %s: backward failed: %s\n", name, dml_last_error());
      ok = 0;
    }
  }
  for (int i = 0; ok && i < in.n; i++) {
    const cJSON *gr = cJSON_GetArrayItem(grads, i);
    if (!gr || cJSON_IsNull(gr) || !in.needs_grad[i]) continue;
    float *ref_g = NULL;
    int gnd;
    int64_t gsh[DML_MAX_DIMS];
    if (fixture_tensor(gr, &ref_g, &gnd, gsh) != 0) {
      fprintf(stderr, "  case %s: bad reference gradient %d\n", name, i);
      ok = 0;
      break;
    }
    const float *got = dml_node_grad(nodes[i]);
    int64_t n = 1;
    for (int d = 0; d < in.ndim[i]; d++) n *= in.shape[i][d];
    char what[160];
    snprintf(what, sizeof what, "%s grad[%d]", name, i);
    if (!got) {
      /* no gradient reached this input: it must be all zero in the reference */
      float *zeros = calloc((size_t)n, sizeof(float));
      ok = fixture_compare(what, zeros, ref_g, n, 1e-5, 1e-4);
      free(zeros);
    } else {
      ok = fixture_compare(what, got, ref_g, n, 1e-5, 1e-4);
    }
    free(ref_g);
  }
  /* Central finite differences against our own analytic gradient. */
  const cJSON *fd = cJSON_GetObjectItemCaseSensitive(c, "fd");
  if (ok && (!fd || cJSON_IsTrue(fd))) {
    double eps = fixture_attr_num(c, "fd_eps", 1e-3);
    double tol = fixture_attr_num(c, "fd_tol", 2e-2);
    /* keep analytic grads: the graph is reset by projected_forward */
    float *an[8] = {0};
    for (int i = 0; i < in.n; i++) {
      if (!in.needs_grad[i]) continue;
      int64_t n = 1;
      for (int d = 0; d < in.ndim[i]; d++) n *= in.shape[i][d];
      an[i] = calloc((size_t)n, sizeof(float));
      const float *gsrc = dml_node_grad(nodes[i]);
      if (gsrc) memcpy(an[i], gsrc, (size_t)n * sizeof(float));
    }
    for (int i = 0; ok && i < in.n; i++) {
      if (!an[i]) continue;
      int64_t n = 1;
      for (int d = 0; d < in.ndim[i]; d++) n *= in.shape[i][d];
      double gmax = 0;
      for (int64_t k = 0; k < n; k++) gmax = fmax(gmax, fabs(an[i][k]));
      int64_t stride = n > 48 ? n / 48 : 1;
      for (int64_t k = 0; ok && k < n; k += stride) {
        float x0 = in.data[i][k];
        float xp = (float)(x0 + eps), xm = (float)(x0 - eps);
        in.data[i][k] = xp;
        double fp = projected_forward(g, &in, attrs, build, ctx, dy);
        in.data[i][k] = xm;
        double fm = projected_forward(g, &in, attrs, build, ctx, dy);
        in.data[i][k] = x0;
        double num = (fp - fm) / ((double)xp - (double)xm);
        double a = an[i][k];
        if (!(fabs(num - a) <= tol * (1e-1 * gmax + fabs(a)) + 1e-4)) {
          fprintf(stderr, "  case %s: finite difference of input %d at %lld: %.7g, analytic %.7g\n",
                  name, i, (long long)k, num, a);
          ok = 0;
        }
      }
    }
    for (int i = 0; i < in.n; i++) free(an[i]);
  }
  dml_graph_free(g);
  free(ref_y);
  free(dy);
  inputs_free(&in);
  return ok;
}

int fixture_check_file(const char *relpath, const char *op, fixture_build_fn build, void *ctx) {
  cJSON *root = fixture_load(relpath);
  if (!root) return 1;
  int failed = 0, matched = 0;
  const cJSON *c;
  cJSON_ArrayForEach(c, root) {
    const char *cop = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(c, "op"));
    if (op && (!cop || strcmp(cop, op) != 0)) continue;
    matched++;
    if (!fixture_check_case(c, build, ctx)) failed++;
  }
  cJSON_Delete(root);
  if (!matched) {
    fprintf(stderr, "  no case for op '%s' in %s\n", op ? op : "*", relpath);
    return 1;
  }
  return failed;
}
