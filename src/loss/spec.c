/* Spec strings ("triplet margin=0.2 miner=semihard"): splitting into a name and key=value
 * pairs, numeric options checked against their declared ranges, and the canonical form with
 * every option spelled out. Shared by losses and miners. */
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "loss/loss_internal.h"

double dml__reduce_scale(dml__reduction red, int64_t n_terms, int64_t n_nonzero) {
  if (red == DML__RED_SUM) return 1.0;
  const int64_t div = red == DML__RED_MEAN ? n_terms : n_nonzero;
  return div > 0 ? 1.0 / (double)div : 0.0;
}

dml_status dml__spec_split(const char *spec, char *name, int name_size, dml__spec_kv *kv,
                           int max_kv, int *n_kv) {
  if (!spec) return dml__error(DML_ERR_INVALID_ARGUMENT, "spec is NULL");
  const char *s = spec;
  int count = 0;
  name[0] = '\0';
  while (*s) {
    while (*s && isspace((unsigned char)*s)) s++;
    if (!*s) break;
    const char *start = s;
    while (*s && !isspace((unsigned char)*s)) s++;
    int len = (int)(s - start);
    const char *eq = memchr(start, '=', (size_t)len);
    if (!name[0] && !eq) {
      if (len >= name_size)
        return dml__error(DML_ERR_INVALID_ARGUMENT, "spec '%s': name '%.*s' is too long", spec,
                          len, start);
      memcpy(name, start, (size_t)len);
      name[len] = '\0';
      continue;
    }
    if (!eq)
      return dml__error(DML_ERR_INVALID_ARGUMENT,
                        "spec '%s': '%.*s' is not a key=value parameter (one name, then "
                        "key=value pairs separated by spaces)",
                        spec, len, start);
    if (!name[0])
      return dml__error(DML_ERR_INVALID_ARGUMENT, "spec '%s' starts with a parameter, not a name",
                        spec);
    int klen = (int)(eq - start), vlen = len - klen - 1;
    if (klen == 0 || vlen == 0)
      return dml__error(DML_ERR_INVALID_ARGUMENT, "spec '%s': '%.*s' has an empty key or value",
                        spec, len, start);
    if (count >= max_kv)
      return dml__error(DML_ERR_INVALID_ARGUMENT, "spec '%s' has more than %d parameters", spec,
                        max_kv);
    if (klen >= (int)sizeof kv[count].key || vlen >= (int)sizeof kv[count].value)
      return dml__error(DML_ERR_INVALID_ARGUMENT, "spec '%s': parameter '%.*s' is too long",
                        spec, len, start);
    for (int i = 0; i < count; i++)
      if ((int)strlen(kv[i].key) == klen && !strncmp(kv[i].key, start, (size_t)klen))
        return dml__error(DML_ERR_INVALID_ARGUMENT, "spec '%s': parameter '%.*s' is given twice",
                          spec, klen, start);
    memcpy(kv[count].key, start, (size_t)klen);
    kv[count].key[klen] = '\0';
    memcpy(kv[count].value, eq + 1, (size_t)vlen);
    kv[count].value[vlen] = '\0';
    count++;
  }
  if (!name[0]) return dml__error(DML_ERR_INVALID_ARGUMENT, "empty spec: expected a name");
  *n_kv = count;
  return DML_OK;
}

dml_status dml__opts_apply(const char *what, const dml__opt_def *defs, int n_defs, double *opt,
                           const dml__spec_kv *kv, int n_kv, int *used) {
  for (int k = 0; k < n_defs; k++) opt[k] = defs[k].dflt;
  for (int i = 0; i < n_kv; i++) {
    for (int k = 0; k < n_defs; k++) {
      if (strcmp(kv[i].key, defs[k].name)) continue;
      char *end = NULL;
      errno = 0;
      double v = strtod(kv[i].value, &end);
      if (end == kv[i].value || *end || errno == ERANGE || !isfinite(v))
        return dml__error(DML_ERR_INVALID_ARGUMENT, "%s: %s=%s is not a number", what,
                          kv[i].key, kv[i].value);
      if (v < defs[k].lo || v > defs[k].hi)
        return dml__error(DML_ERR_INVALID_ARGUMENT, "%s: %s=%g is outside [%g, %g] (%s)", what,
                          kv[i].key, v, defs[k].lo, defs[k].hi, defs[k].help);
      opt[k] = v;
      if (used) used[i] = 1;
    }
  }
  return DML_OK;
}

void dml__opts_format(char *buf, int size, const dml__opt_def *defs, int n_defs,
                      const double *opt) {
  size_t len = strlen(buf);
  for (int k = 0; k < n_defs && len + 1 < (size_t)size; k++) {
    snprintf(buf + len, (size_t)size - len, " %s=%.9g", defs[k].name, opt[k]);
    len = strlen(buf);
  }
}
