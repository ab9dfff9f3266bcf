/* Loss fixture runner and edge-case helper (see loss_check.h). */
#include "loss_check.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fixture.h"

#define REL_TOL 1e-5
#define ABS_TOL 1e-7

/* |got - ref| <= REL_TOL * max(|ref_k|, max_j |ref_j|) + ABS_TOL for every k. */
static int close_to(const char *what, const char *name, const float *got, const float *ref,
                    int64_t n, double *worst) {
  double scale = 0.0;
  for (int64_t k = 0; k < n; k++) scale = fmax(scale, fabs(ref[k]));
  int bad = 0;
  for (int64_t k = 0; k < n; k++) {
    double err = fabs((double)got[k] - ref[k]);
    double tol = REL_TOL * scale + ABS_TOL;
    if (scale > 0 && worst) *worst = fmax(*worst, err / scale);
    if (!(err <= tol)) {
      if (bad < 4)
        fprintf(stderr, "  %s: %s[%lld] = %.9g, reference %.9g (|diff| %.3g > %.3g)\n", name,
                what, (long long)k, got[k], ref[k], err, tol);
      bad++;
    }
  }
  return bad == 0;
}

static int32_t *read_labels(const cJSON *arr, int64_t *n) {
  *n = cJSON_GetArraySize(arr);
  int32_t *out = malloc((size_t)(*n > 0 ? *n : 1) * sizeof(int32_t));
  for (int64_t i = 0; i < *n; i++) out[i] = (int32_t)cJSON_GetArrayItem(arr, (int)i)->valuedouble;
  return out;
}

/* Loss at emb (the parameters fixed at their current values, gradients discarded). */
static double loss_at(dml_loss *l, const float *emb, const int32_t *labels, int64_t b, int64_t d,
                      const dml_loss_ref *ref) {
  float v = NAN;
  dml_param_store *ps = dml_loss_params(l);
  dml_loss_memory_clear(l);
  dml_loss_set_step(l, 0);
  if (dml_loss_compute(l, emb, labels, b, d, ref, &v, NULL) != DML_OK) return NAN;
  if (ps) dml_params_zero_grad(ps);
  return v;
}

static int check_case(const cJSON *c, double *worst) {
  const char *name = cJSON_GetObjectItem(c, "name")->valuestring;
  const char *spec = cJSON_GetObjectItem(c, "spec")->valuestring;
  const cJSON *cfgj = cJSON_GetObjectItem(c, "config");
  dml_loss_config cfg = {(int64_t)cJSON_GetObjectItem(cfgj, "dim")->valuedouble,
                         (int64_t)cJSON_GetObjectItem(cfgj, "num_classes")->valuedouble,
                         (uint64_t)cJSON_GetObjectItem(cfgj, "seed")->valuedouble};
  float *emb = NULL, *ref_grad = NULL, *ref_emb = NULL;
  int ndim = 0;
  int64_t shape[DML_MAX_DIMS], gshape[DML_MAX_DIMS];
  int ok = 1;
  dml_loss *l = NULL;
  dml_graph *g = NULL;
  int32_t *labels = NULL, *ref_labels = NULL;
  float *grad = NULL, *grad2 = NULL;
  dml_loss_ref ref = {0}, *refp = NULL;
  if (fixture_tensor(cJSON_GetObjectItem(c, "emb"), &emb, &ndim, shape) || ndim != 2 ||
      fixture_tensor(cJSON_GetObjectItem(c, "grad_emb"), &ref_grad, &ndim, gshape)) {
    fprintf(stderr, "  %s: malformed case\n", name);
    ok = 0;
    goto done;
  }
  const int64_t b = shape[0], d = shape[1];
  int64_t nl;
  labels = read_labels(cJSON_GetObjectItem(c, "labels"), &nl);
  const cJSON *rj = cJSON_GetObjectItem(c, "ref");
  if (rj && !cJSON_IsNull(rj)) {
    int64_t rs[DML_MAX_DIMS];
    int rn = 0;
    fixture_tensor(cJSON_GetObjectItem(rj, "emb"), &ref_emb, &rn, rs);
    int64_t nr;
    ref_labels = read_labels(cJSON_GetObjectItem(rj, "labels"), &nr);
    ref.emb = ref_emb;
    ref.labels = ref_labels;
    ref.n = rs[0];
    refp = &ref;
  }
  if (dml_loss_new(spec, &cfg, &l) != DML_OK) {
    fprintf(stderr, "  %s: dml_loss_new(\"%s\"): %s\n", name, spec, dml_last_error());
    ok = 0;
    goto done;
  }
  /* parameter values from the fixture */
  const cJSON *params = cJSON_GetObjectItem(c, "params");
  dml_param_store *ps = dml_loss_params(l);
  for (const cJSON *p = params ? params->child : NULL; p; p = p->next) {
    dml_param *dp = ps ? dml_params_find(ps, p->string) : NULL;
    float *v = NULL;
    int pn = 0;
    int64_t pshape[DML_MAX_DIMS];
    if (!dp || fixture_tensor(p, &v, &pn, pshape)) {
      fprintf(stderr, "  %s: loss has no parameter '%s'\n", name, p->string);
      free(v);
      ok = 0;
      goto done;
    }
    memcpy(dp->value, v, (size_t)dp->numel * sizeof(float));
    free(v);
  }
  if (ps) dml_params_zero_grad(ps);
  grad = malloc((size_t)(b * d) * sizeof(float));
  float value = NAN;
  dml_loss_set_step(l, 0);
  if (dml_loss_compute(l, emb, labels, b, d, refp, &value, grad) != DML_OK) {
    fprintf(stderr, "  %s: dml_loss_compute: %s\n", name, dml_last_error());
    ok = 0;
    goto done;
  }
  const float ref_value = (float)cJSON_GetObjectItem(c, "loss")->valuedouble;
  ok &= close_to("loss", name, &value, &ref_value, 1, worst);
  ok &= close_to("grad_emb", name, grad, ref_grad, b * d, worst);
  const cJSON *gp = cJSON_GetObjectItem(c, "grad_params");
  for (const cJSON *p = gp ? gp->child : NULL; p; p = p->next) {
    dml_param *dp = ps ? dml_params_find(ps, p->string) : NULL;
    float *v = NULL;
    int pn = 0;
    int64_t pshape[DML_MAX_DIMS];
    if (!dp || fixture_tensor(p, &v, &pn, pshape)) {
      free(v);
      ok = 0;
      continue;
    }
    char what[128];
    snprintf(what, sizeof what, "grad %s", p->string);
    ok &= close_to(what, name, dp->grad, v, dp->numel, worst);
    free(v);
  }
  /* the graph node gives the same value and gradients */
  if (ps) dml_params_zero_grad(ps);
  dml_loss_memory_clear(l);
  dml_loss_set_step(l, 0);
  dml_graph_new(&g);
  dml_node *x = NULL, *y = NULL;
  if (dml_graph_input(g, emb, 2, shape, 1, &x) != DML_OK ||
      dml_loss_node(l, g, x, labels, refp, &y) != DML_OK ||
      dml_graph_backward(g, y, NULL) != DML_OK) {
    fprintf(stderr, "  %s: graph node: %s\n", name, dml_last_error());
    ok = 0;
    goto done;
  }
  float node_value = dml_node_value(y)->data[0];
  ok &= close_to("node loss", name, &node_value, &ref_value, 1, NULL);
  const float *ng = dml_node_grad(x);
  if (!ng) {
    int64_t k = 0;
    while (k < b * d && ref_grad[k] == 0.0f) k++;
    if (k < b * d) {
      fprintf(stderr, "  %s: graph node gave no gradient\n", name);
      ok = 0;
    }
  } else {
    ok &= close_to("node grad_emb", name, ng, ref_grad, b * d, NULL);
  }
  /* central finite differences of the float32 loss */
  const cJSON *fd = cJSON_GetObjectItem(c, "fd");
  if (fd && cJSON_IsTrue(fd) && b * d <= 512) {
    const double h = 1e-3;
    double gscale = 0.0;
    for (int64_t k = 0; k < b * d; k++) gscale = fmax(gscale, fabs(grad[k]));
    grad2 = malloc((size_t)(b * d) * sizeof(float));
    memcpy(grad2, emb, (size_t)(b * d) * sizeof(float));
    const double f0 = loss_at(l, grad2, labels, b, d, refp);
    int bad = 0;
    for (int64_t k = 0; k < b * d; k++) {
      const float orig = grad2[k];
      grad2[k] = (float)(orig + h);
      const double hp = (double)grad2[k] - orig;
      const double fp = loss_at(l, grad2, labels, b, d, refp);
      grad2[k] = (float)(orig - h);
      const double hm = orig - (double)grad2[k];
      const double fm = loss_at(l, grad2, labels, b, d, refp);
      grad2[k] = orig;
      const double central = (fp - fm) / (hp + hm), fwd = (fp - f0) / hp, bwd = (f0 - fm) / hm;
      const double tol = 2e-3 * fmax(gscale, fabs(f0)) + 1e-4;
      const double an = grad[k];
      if (fabs(an - central) > tol && fabs(an - fwd) > tol && fabs(an - bwd) > tol) {
        if (bad < 4)
          fprintf(stderr,
                  "  %s: finite differences at [%lld]: analytic %.6g, central %.6g, forward "
                  "%.6g, backward %.6g\n",
                  name, (long long)k, an, central, fwd, bwd);
        bad++;
      }
    }
    ok &= bad == 0;
  }
done:
  if (!ok) fprintf(stderr, "  case %s (%s) failed\n", name, spec);
  dml_graph_free(g);
  dml_loss_free(l);
  free(emb);
  free(ref_grad);
  free(ref_emb);
  free(labels);
  free(ref_labels);
  free(grad);
  free(grad2);
  return ok;
}

int loss_check_file(const char *relpath) {
  cJSON *root = fixture_load(relpath);
  if (!root) return 1;
  int failed = 0, n = 0;
  double worst = 0.0;
  for (const cJSON *c = root->child; c; c = c->next, n++) failed += !check_case(c, &worst);
  cJSON_Delete(root);
  if (n == 0) {
    fprintf(stderr, "  %s holds no case\n", relpath);
    return 1;
  }
  printf("  %s: %d cases, largest error %.2g of the largest reference element\n", relpath, n,
         worst);
  return failed;
}

dml_status loss_check_finite(const char *spec, const dml_loss_config *cfg, const float *emb,
                             const int32_t *labels, int64_t b, int64_t d, float *loss_out,
                             float *grad_out) {
  dml_loss *l = NULL;
  dml_status st = dml_loss_new(spec, cfg, &l);
  if (st != DML_OK) return st;
  float *grad = malloc((size_t)(b * d > 0 ? b * d : 1) * sizeof(float));
  float v = NAN;
  st = dml_loss_compute(l, emb, labels, b, d, NULL, &v, grad);
  if (st == DML_OK) {
    int bad = !isfinite(v);
    for (int64_t k = 0; k < b * d; k++) bad |= !isfinite(grad[k]);
    dml_param_store *ps = dml_loss_params(l);
    for (int p = 0; ps && p < dml_params_count(ps); p++) {
      const dml_param *q = dml_params_get(ps, p);
      for (int64_t k = 0; k < q->numel; k++) bad |= !isfinite(q->grad[k]);
    }
    if (bad) {
      fprintf(stderr, "  %s: non-finite loss (%g) or gradient\n", spec, v);
      st = DML_ERR_INTERNAL;
    }
    if (loss_out) *loss_out = v;
    if (grad_out) memcpy(grad_out, grad, (size_t)(b * d) * sizeof(float));
  }
  free(grad);
  dml_loss_free(l);
  return st;
}
