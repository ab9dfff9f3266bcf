/* The model-text parser: one layer per line, "name key=value ...", '#' starts a comment.
 * The first non-comment line is "input C [H [W]]" (the shape of one example). Every message
 * names the source and line ("model.txt:4: conv2d: unknown option 'kernal' (valid: ...)").
 * See docs/model-text.md for the catalogue. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/file.h"
#include "nn/model_internal.h"

#define MAX_TOKENS 64
#define MAX_INPUT_SIZE ((int64_t)1 << 24)
#define MAX_TEXT_BYTES (16 << 20)

static char *dup_str(const char *s, size_t n) {
  char *d = malloc(n + 1);
  if (!d) return NULL;
  memcpy(d, s, n);
  d[n] = '\0';
  return d;
}

/* Splits buf in place on whitespace; returns the token count or -1 past MAX_TOKENS. */
static int tokenize(char *buf, char **tok) {
  int n = 0;
  char *p = buf;
  for (;;) {
    while (*p == ' ' || *p == '\t' || *p == '\r' || *p == '\v' || *p == '\f') p++;
    if (!*p) return n;
    if (n == MAX_TOKENS) return -1;
    tok[n++] = p;
    while (*p && *p != ' ' && *p != '\t' && *p != '\r' && *p != '\v' && *p != '\f') p++;
    if (*p) *p++ = '\0';
  }
}

static dml_status parse_input(dml_model *m, const char *where, char **tok, int n) {
  if (n < 2 || n > 4)
    return dml__error(DML_ERR_FORMAT, "%s: input: expected 1 to 3 sizes (input C [H [W]]), got %d",
                      where, n - 1);
  for (int i = 1; i < n; i++) {
    char *end;
    errno = 0;
    long long v = strtoll(tok[i], &end, 10);
    if (end == tok[i] || *end != '\0' || errno == ERANGE)
      return dml__error(DML_ERR_FORMAT, "%s: input: size '%s' is not an integer", where, tok[i]);
    if (v < 1 || v > MAX_INPUT_SIZE)
      return dml__error(DML_ERR_FORMAT, "%s: input: size %lld is out of range (1 to %lld)", where,
                        v, (long long)MAX_INPUT_SIZE);
    m->in_shape[i - 1] = v;
  }
  m->in_ndim = n - 1;
  if (dml__shape_numel(m->in_ndim, m->in_shape) < 0)
    return dml__error(DML_ERR_FORMAT, "%s: input: one example would hold more than 2^40 values",
                      where);
  return DML_OK;
}

static void join_names(const char *const *names, char *buf, size_t size) {
  size_t pos = 0;
  buf[0] = '\0';
  for (int i = 0; names[i] && pos < size; i++)
    pos += (size_t)snprintf(buf + pos, size - pos, "%s%s", i ? ", " : "", names[i]);
}

static dml_status push_layer(dml_model *m, dml__layer *l) {
  if (m->n_layers == m->cap_layers) {
    int cap = m->cap_layers ? m->cap_layers * 2 : 16;
    dml__layer **ls = realloc(m->layers, (size_t)cap * sizeof *ls);
    if (!ls) return dml__error(DML_ERR_NO_MEMORY, "out of memory for the layer list");
    m->layers = ls;
    m->cap_layers = cap;
  }
  if (m->n_layers > 0 && !strcmp(l->desc, "relu")) m->layers[m->n_layers - 1]->next_is_relu = 1;
  m->layers[m->n_layers++] = l;
  return DML_OK;
}

static dml_status parse_layer(dml_model *m, const char *where, int line, char **tok, int n) {
  const dml__layer_type *type = dml__layer_type_find(tok[0]);
  if (!type)
    return dml__error(DML_ERR_FORMAT, "%s: unknown layer '%s' (valid: %s)", where, tok[0],
                      dml__layer_type_names());
  dml__layer_opt opts[MAX_TOKENS];
  int n_opts = 0;
  for (int i = 1; i < n; i++) {
    char *eq = strchr(tok[i], '=');
    if (!eq || eq == tok[i])
      return dml__error(DML_ERR_FORMAT, "%s: %s: expected key=value, got '%s'", where, tok[0],
                        tok[i]);
    *eq = '\0';
    const char *key = tok[i], *value = eq + 1;
    int known = 0;
    for (int k = 0; type->opts[k]; k++)
      if (strcmp(type->opts[k], key) == 0) known = 1;
    if (!known) {
      char valid[256];
      join_names(type->opts, valid, sizeof valid);
      if (!type->opts[0])
        return dml__error(DML_ERR_FORMAT, "%s: %s: unknown option '%s' (%s takes no options)",
                          where, tok[0], key, tok[0]);
      return dml__error(DML_ERR_FORMAT, "%s: %s: unknown option '%s' (valid: %s)", where, tok[0],
                        key, valid);
    }
    for (int k = 0; k < n_opts; k++)
      if (strcmp(opts[k].key, key) == 0)
        return dml__error(DML_ERR_FORMAT, "%s: %s: option '%s' is given twice", where, tok[0], key);
    if (!*value)
      return dml__error(DML_ERR_FORMAT, "%s: %s: option '%s' has no value", where, tok[0], key);
    opts[n_opts].key = key;
    opts[n_opts].value = value;
    n_opts++;
  }
  int in_ndim = m->in_ndim;
  const int64_t *in_shape = m->in_shape;
  if (m->n_layers > 0) {
    const dml__layer *prev = m->layers[m->n_layers - 1];
    in_ndim = prev->out_ndim;
    in_shape = prev->out_shape;
  }
  dml__layer_ctx c = {where, tok[0], opts, n_opts, m->n_layers, in_ndim, in_shape, m->store};
  dml__layer *l = NULL;
  DML_TRY(type->create(&c, &l));
  l->line = line;
  /* The description: the line's tokens joined by single spaces (options restored). */
  size_t len = strlen(tok[0]);
  for (int k = 0; k < n_opts; k++) len += strlen(opts[k].key) + strlen(opts[k].value) + 2;
  l->desc = malloc(len + 1);
  if (!l->desc) {
    dml__layer_free(l);
    return dml__error(DML_ERR_NO_MEMORY, "out of memory for the layer description");
  }
  size_t pos = (size_t)snprintf(l->desc, len + 1, "%s", tok[0]);
  for (int k = 0; k < n_opts; k++)
    pos += (size_t)snprintf(l->desc + pos, len + 1 - pos, " %s=%s", opts[k].key, opts[k].value);
  dml_status st = push_layer(m, l);
  if (st != DML_OK) dml__layer_free(l);
  return st;
}

static dml_status parse_lines(dml_model *m, const char *text, const char *src) {
  char *buf = NULL;
  size_t cap = 0;
  int line_no = 0, input_line = 0;
  dml_status st = DML_OK;
  const char *p = text;
  while (*p && st == DML_OK) {
    line_no++;
    const char *nl = strchr(p, '\n');
    size_t len = nl ? (size_t)(nl - p) : strlen(p);
    if (len + 1 > cap) {
      char *b = realloc(buf, len + 1);
      if (!b) {
        st = dml__error(DML_ERR_NO_MEMORY, "%s:%d: out of memory", src, line_no);
        break;
      }
      buf = b;
      cap = len + 1;
    }
    memcpy(buf, p, len);
    buf[len] = '\0';
    p = nl ? nl + 1 : p + len;
    char *hash = strchr(buf, '#');
    if (hash) *hash = '\0';
    char *tok[MAX_TOKENS];
    char where[512];
    snprintf(where, sizeof where, "%s:%d", src, line_no);
    int n = tokenize(buf, tok);
    if (n < 0) {
      st = dml__error(DML_ERR_FORMAT, "%s: more than %d words on one line", where, MAX_TOKENS);
    } else if (n == 0) {
      continue;
    } else if (!input_line) {
      if (strcmp(tok[0], "input") != 0)
        st = dml__error(DML_ERR_FORMAT,
                        "%s: the first line must be 'input C [H [W]]' (the shape of one "
                        "example), got '%s'",
                        where, tok[0]);
      else
        st = parse_input(m, where, tok, n);
      input_line = line_no;
    } else if (strcmp(tok[0], "input") == 0) {
      st = dml__error(DML_ERR_FORMAT,
                      "%s: input: only one input line is allowed (the first is on line %d)", where,
                      input_line);
    } else {
      st = parse_layer(m, where, line_no, tok, n);
    }
  }
  free(buf);
  if (st != DML_OK) return st;
  if (!input_line)
    return dml__error(DML_ERR_FORMAT,
                      "%s: no 'input C [H [W]]' line (the text is empty or only comments)", src);
  if (m->n_layers == 0)
    return dml__error(DML_ERR_FORMAT, "%s: no layers after the input line (line %d)", src,
                      input_line);
  return DML_OK;
}

dml_status dml_model_parse(const char *text, const char *source_name, dml_model **out) {
  if (!out) return dml__error(DML_ERR_INVALID_ARGUMENT, "dml_model_parse: out is NULL");
  *out = NULL;
  if (!text) return dml__error(DML_ERR_INVALID_ARGUMENT, "dml_model_parse: text is NULL");
  const char *src = source_name ? source_name : "model text";
  dml_model *m = calloc(1, sizeof *m);
  if (!m) return dml__error(DML_ERR_NO_MEMORY, "out of memory for a model");
  m->text = dup_str(text, strlen(text));
  m->source = dup_str(src, strlen(src));
  dml_status st = (m->text && m->source)
                      ? dml_params_new(&m->store)
                      : dml__error(DML_ERR_NO_MEMORY, "out of memory for a model");
  if (st == DML_OK) st = parse_lines(m, text, src);
  if (st == DML_OK) st = dml_params_finalize(m->store);
  if (st != DML_OK) {
    dml_model_free(m);
    return st;
  }
  *out = m;
  return DML_OK;
}

dml_status dml_model_load_text_file(const char *path, dml_model **out) {
  if (!out) return dml__error(DML_ERR_INVALID_ARGUMENT, "dml_model_load_text_file: out is NULL");
  *out = NULL;
  if (!path) return dml__error(DML_ERR_INVALID_ARGUMENT, "dml_model_load_text_file: path is NULL");
  char *buf = NULL;
  size_t n = 0;
  dml_status st = dml__read_file(path, "model file", MAX_TEXT_BYTES, &buf, &n);
  if (st == DML_OK && memchr(buf, '\0', n))
    st = dml__error(DML_ERR_FORMAT, "model file '%s' holds a NUL byte (not a text file?)", path);
  if (st == DML_OK) st = dml_model_parse(buf, path, out);
  free(buf);
  return st;
}
