/* `dml index build|add|remove|search|info`: galleries of labelled embeddings on disk
 * (include/dml/index.h). Every change is written back atomically. */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli_util.h"
#include "cli/commands.h"

static const char *CMD = "index";

static int usage(FILE *f, int code) {
  fprintf(f,
          "usage: dml index <action> [options]\n"
          "  build   --emb E.npy --out G.dmlg [--labels Y.npy] [--ids I.npy]\n"
          "          [--distance cosine|euclidean|sqeuclidean|dot] [--factory STRING]\n"
          "          [--param NAME=VALUE]...\n"
          "          Makes a gallery. --factory is \"Flat\" (exact, the default) or a FAISS\n"
          "          index-factory string such as HNSW32, IVF1024,Flat or IVF1024,PQ16 (trained\n"
          "          on the embeddings given). --param sets a search parameter: efSearch for\n"
          "          HNSW, nprobe for IVF.\n"
          "  add     --index G.dmlg --emb E.npy [--labels Y.npy] [--ids I.npy]\n"
          "          Adds items (a class never seen in training is fine). Ids default to the\n"
          "          largest id + 1 onwards.\n"
          "  remove  --index G.dmlg (--ids I.npy | --id N[,N...])\n"
          "  search  --index G.dmlg --queries Q.npy [--k 10] [--param NAME=VALUE]...\n"
          "          [--out-ids I.npy] [--out-dists D.npy]\n"
          "          Without --out-ids, prints the neighbours of the first queries.\n"
          "  info    --index G.dmlg\n"
          "Embeddings are float32 .npy [items, dimensions]; labels are int32/int64 [items] or a\n"
          "0/1 multi-hot [items, labels] array; ids are int64 [items].\n"
          "FAISS indexes are %savailable in this build.\n",
          dml_gallery_has_faiss() ? "" : "NOT ");
  return code;
}

typedef struct {
  const char *emb, *out, *labels, *ids, *id_list, *index, *queries, *out_ids, *out_dists;
  const char *factory;
  dml_distance dist;
  int64_t k;
  const char *params[8];
  int nparams;
} options;

static int parse(int argc, char **argv, options *o) {
  memset(o, 0, sizeof *o);
  o->dist = DML_DIST_COSINE;
  o->k = 10;
  for (int i = 2; i < argc; i++) {
    const char *a = argv[i];
    if (!strcmp(a, "--help") || !strcmp(a, "-h")) return usage(stdout, 0) - 1;
    const char *v = cli_value(CMD, argc, argv, &i);
    if (!v) return 2;
    if (!strcmp(a, "--emb")) o->emb = v;
    else if (!strcmp(a, "--out")) o->out = v;
    else if (!strcmp(a, "--labels")) o->labels = v;
    else if (!strcmp(a, "--ids")) o->ids = v;
    else if (!strcmp(a, "--id")) o->id_list = v;
    else if (!strcmp(a, "--index")) o->index = v;
    else if (!strcmp(a, "--queries")) o->queries = v;
    else if (!strcmp(a, "--out-ids")) o->out_ids = v;
    else if (!strcmp(a, "--out-dists")) o->out_dists = v;
    else if (!strcmp(a, "--factory")) o->factory = v;
    else if (!strcmp(a, "--distance")) {
      if (!cli_parse_distance(v, &o->dist)) return 2;
    } else if (!strcmp(a, "--k")) {
      if (!cli_int(CMD, a, v, 1, 100000, &o->k)) return 2;
    } else if (!strcmp(a, "--param")) {
      if (o->nparams == 8) {
        fprintf(stderr, "dml index: at most 8 --param options\n");
        return 2;
      }
      o->params[o->nparams++] = v;
    } else {
      fprintf(stderr, "dml index: unknown option %s\n", a);
      return 2;
    }
  }
  return 0;
}

static int need(const char *value, const char *opt, const char *action) {
  if (value) return 1;
  fprintf(stderr, "dml index %s: %s is required (see dml index --help)\n", action, opt);
  return 0;
}

static int apply_params(dml_gallery *g, const options *o) {
  for (int i = 0; i < o->nparams; i++) {
    char name[64];
    const char *eq = strchr(o->params[i], '=');
    double value;
    if (!eq || eq == o->params[i] || (size_t)(eq - o->params[i]) >= sizeof name) {
      fprintf(stderr, "dml index: --param expects NAME=VALUE, got '%s'\n", o->params[i]);
      return 2;
    }
    memcpy(name, o->params[i], (size_t)(eq - o->params[i]));
    name[eq - o->params[i]] = 0;
    if (!cli_double(CMD, "--param", eq + 1, &value)) return 2;
    if (dml_gallery_set_param(g, name, value) != DML_OK) return cli_fail(CMD, "search parameter");
  }
  return 0;
}

/* Adds the items of --emb/--labels/--ids to g. */
static int add_items(dml_gallery *g, const options *o) {
  cli_matrix m;
  cli_labels y = {0};
  int64_t *ids = NULL, nids = 0;
  if (cli_read_matrix(CMD, o->emb, &m)) return 1;
  int rc = 1;
  if (m.d != dml_gallery_dim(g)) {
    fprintf(stderr, "dml index: %s has %lld dimensions; the gallery has %lld\n", o->emb,
            (long long)m.d, (long long)dml_gallery_dim(g));
    goto done;
  }
  if (o->labels && cli_read_labels(CMD, o->labels, &y)) goto done;
  if (o->labels && y.l.n != m.n) {
    fprintf(stderr, "dml index: %s has %lld labels for %lld embeddings in %s\n", o->labels,
            (long long)y.l.n, (long long)m.n, o->emb);
    goto done;
  }
  if (o->ids && cli_read_ids(CMD, o->ids, &ids, &nids)) goto done;
  if (o->ids && nids != m.n) {
    fprintf(stderr, "dml index: %s has %lld ids for %lld embeddings\n", o->ids, (long long)nids,
            (long long)m.n);
    goto done;
  }
  if (dml_gallery_add(g, m.x, m.n, ids, o->labels ? &y.l : NULL) != DML_OK) {
    cli_fail(CMD, "adding items");
    goto done;
  }
  rc = 0;
done:
  free(ids);
  cli_labels_free(&y);
  dml_npy_free(&m.npy);
  return rc;
}

static void print_info(const dml_gallery *g, const char *path) {
  printf("%s: %lld items of dimension %lld, distance %s, index %s\n", path,
         (long long)dml_gallery_size(g), (long long)dml_gallery_dim(g),
         cli_distance_name(dml_gallery_distance(g)), dml_gallery_factory(g));
  if (strcmp(dml_gallery_factory(g), "Flat") != 0 && dml_gallery_size(g) > 0 &&
      !dml_gallery_index_ready(g))
    printf("note: the %s index has too few items to train yet; searches are exact until "
           "more are added\n",
           dml_gallery_factory(g));
}

static int build(const options *o) {
  if (!need(o->emb, "--emb", "build") || !need(o->out, "--out", "build")) return 2;
  cli_matrix m;
  if (cli_read_matrix(CMD, o->emb, &m)) return 1;
  int64_t d = m.d;
  dml_npy_free(&m.npy);
  dml_gallery *g;
  if (dml_gallery_create(&g, d, o->dist, o->factory) != DML_OK) return cli_fail(CMD, "build");
  int rc = apply_params(g, o);
  if (!rc) rc = add_items(g, o);
  if (!rc && dml_gallery_save(g, o->out) != DML_OK) rc = cli_fail(CMD, "saving");
  if (!rc) print_info(g, o->out);
  dml_gallery_free(g);
  return rc;
}

static int load(const options *o, const char *action, dml_gallery **g) {
  if (!need(o->index, "--index", action)) return 2;
  if (dml_gallery_load(g, o->index) != DML_OK) return cli_fail(CMD, "loading the gallery");
  return 0;
}

static int add(const options *o) {
  if (!need(o->emb, "--emb", "add")) return 2;
  dml_gallery *g;
  int rc = load(o, "add", &g);
  if (rc) return rc;
  int64_t before = dml_gallery_size(g);
  rc = add_items(g, o);
  if (!rc && dml_gallery_save(g, o->out ? o->out : o->index) != DML_OK) rc = cli_fail(CMD, "saving");
  if (!rc) {
    printf("added %lld items\n", (long long)(dml_gallery_size(g) - before));
    print_info(g, o->out ? o->out : o->index);
  }
  dml_gallery_free(g);
  return rc;
}

static int parse_id_list(const char *s, int64_t **ids, int64_t *n) {
  int64_t cap = 1;
  for (const char *p = s; *p; p++) cap += *p == ',';
  *ids = malloc((size_t)cap * sizeof **ids);
  *n = 0;
  if (!*ids) return 1;
  const char *p = s;
  while (*p) {
    char *end;
    errno = 0;
    long long v = strtoll(p, &end, 10);
    if (end == p || errno || (*end && *end != ',')) {
      fprintf(stderr, "dml index: --id expects comma-separated integers, got '%s'\n", s);
      return 2;
    }
    (*ids)[(*n)++] = v;
    p = *end ? end + 1 : end;
  }
  return 0;
}

static int remove_items(const options *o) {
  if (!o->ids && !o->id_list) {
    fprintf(stderr, "dml index remove: --ids or --id is required\n");
    return 2;
  }
  int64_t *ids = NULL, n = 0;
  int rc = o->ids ? cli_read_ids(CMD, o->ids, &ids, &n) : parse_id_list(o->id_list, &ids, &n);
  if (rc) {
    free(ids);
    return rc;
  }
  dml_gallery *g;
  rc = load(o, "remove", &g);
  if (rc) {
    free(ids);
    return rc;
  }
  int64_t removed = 0;
  if (dml_gallery_remove(g, ids, n, &removed) != DML_OK) rc = cli_fail(CMD, "removing items");
  if (!rc && dml_gallery_save(g, o->out ? o->out : o->index) != DML_OK) rc = cli_fail(CMD, "saving");
  if (!rc) {
    printf("removed %lld of %lld ids (the others were not in the gallery)\n", (long long)removed,
           (long long)n);
    print_info(g, o->out ? o->out : o->index);
  }
  free(ids);
  dml_gallery_free(g);
  return rc;
}

static int search(const options *o) {
  if (!need(o->queries, "--queries", "search")) return 2;
  dml_gallery *g;
  int rc = load(o, "search", &g);
  if (rc) return rc;
  cli_matrix q;
  if ((rc = apply_params(g, o)) || (rc = cli_read_matrix(CMD, o->queries, &q))) {
    dml_gallery_free(g);
    return rc;
  }
  int64_t k = o->k;
  int64_t *ids = malloc((size_t)(q.n * k + 1) * sizeof *ids);
  float *dists = malloc((size_t)(q.n * k + 1) * sizeof *dists);
  if (!ids || !dists) {
    fprintf(stderr, "dml index: out of memory\n");
    rc = 1;
  } else if (q.d != dml_gallery_dim(g)) {
    fprintf(stderr, "dml index: queries have %lld dimensions; the gallery has %lld\n",
            (long long)q.d, (long long)dml_gallery_dim(g));
    rc = 1;
  } else if (dml_gallery_search(g, q.x, q.n, k, ids, dists) != DML_OK) {
    rc = cli_fail(CMD, "search");
  }
  int64_t shape[2] = {q.n, k};
  if (!rc && o->out_ids && dml_npy_write(o->out_ids, DML_NPY_I64, 2, shape, ids) != DML_OK)
    rc = cli_fail(CMD, "writing ids");
  if (!rc && o->out_dists && dml_npy_write(o->out_dists, DML_NPY_F32, 2, shape, dists) != DML_OK)
    rc = cli_fail(CMD, "writing distances");
  if (!rc && !o->out_ids) {
    int64_t show = q.n < 10 ? q.n : 10;
    for (int64_t i = 0; i < show; i++) {
      printf("query %lld:", (long long)i);
      for (int64_t j = 0; j < k; j++) {
        int64_t id = ids[i * k + j];
        if (id < 0) break;
        const int32_t *lab;
        int64_t c = 0;
        dml_gallery_labels(g, id, &lab, &c);
        if (c)
          printf(" %lld (%.4g, label %d)", (long long)id, (double)dists[i * k + j], lab[0]);
        else
          printf(" %lld (%.4g)", (long long)id, (double)dists[i * k + j]);
      }
      printf("\n");
    }
    if (show < q.n) printf("... %lld more queries (use --out-ids)\n", (long long)(q.n - show));
  } else if (!rc) {
    printf("wrote the %lld nearest items of %lld queries to %s\n", (long long)k, (long long)q.n,
           o->out_ids);
  }
  free(ids);
  free(dists);
  dml_npy_free(&q.npy);
  dml_gallery_free(g);
  return rc;
}

int dml_cli_index(int argc, char **argv) {
  if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"))
    return usage(argc < 2 ? stderr : stdout, argc < 2 ? 2 : 0);
  options o;
  int rc = parse(argc, argv, &o);
  if (rc) return rc < 0 ? 0 : rc;
  const char *action = argv[1];
  if (!strcmp(action, "build")) return build(&o);
  if (!strcmp(action, "add")) return add(&o);
  if (!strcmp(action, "remove")) return remove_items(&o);
  if (!strcmp(action, "search")) return search(&o);
  if (!strcmp(action, "info")) {
    dml_gallery *g;
    if ((rc = load(&o, "info", &g))) return rc;
    print_info(g, o.index);
    dml_gallery_free(g);
    return 0;
  }
  fprintf(stderr, "dml index: unknown action '%s' (build, add, remove, search, info)\n", action);
  return 2;
}
