/* `dml train`: reads a config (JSON file and --key value flags), loads and splits the data,
 * normalises it, builds the model, trains (src/train/), evaluates on the test set and writes
 * the report folder (cli/train_report.c). Ctrl-C saves the position as <out>/last and exits;
 * --resume continues from it. */
#define _POSIX_C_SOURCE 200809L /* sigaction */

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli/cli_util.h"
#include "cli/commands.h"
#include "cli/train_report.h"
#include "dml/dml.h"
#include "dml/train.h"

static int usage(FILE *f, int code) {
  fprintf(f,
          "usage: dml train [--config FILE.json] [--KEY VALUE ...] [options]\n"
          "  Trains an embedding, evaluates it and writes a report folder (metrics in JSON and\n"
          "  Markdown, pictures, checkpoints, a JSON-lines log). Every config key is also a\n"
          "  flag: --optimizer.lr 0.01, --split.test_classes 6,7,8,9 (dml train --keys lists\n"
          "  them). Flags override the file.\n"
          "options:\n"
          "  --config FILE     JSON config (configs/ holds the benchmark recipes)\n"
          "  --out DIR         report folder (also the key 'out'; default runs/<name>)\n"
          "  --resume PREFIX   continue from a checkpoint (e.g. DIR/last), same config\n"
          "  --lr X            short for --optimizer.lr\n"
          "  --progress MODE   bar, lines or none (default: bar on a terminal, else lines)\n"
          "  --no-progress     same as --progress none\n"
          "  --print-config    print the resolved config and exit\n"
          "  --keys            list every config key with its default and exit\n");
  return code;
}

static int train_run(const dml_train_config *c, const char *resume, const char *progress,
                     dml_trainer *volatile *active, void (*sigint_handler)(int));

static dml_trainer *volatile active_trainer;

static void on_sigint(int sig) {
  (void)sig;
  if (active_trainer) dml_trainer_request_stop(active_trainer);
  signal(SIGINT, SIG_DFL); /* a second Ctrl-C ends the process at once */
}

static int fail(const char *what) {
  fprintf(stderr, "dml train: %s: %s\n", what, dml_last_error());
  return 1;
}

static dml_status read_data(const dml_train_config *c, const char *path, const char *labels,
                            int64_t limit, dml_dataset *out) {
  const char *fmt = dml_train_config_string(c, "data.format");
  if (!strcmp(fmt, "idx")) {
    if (!*labels) {
      fprintf(stderr, "dml train: data.format idx needs the labels file of '%s' "
                      "(data.train_labels / data.test_labels)\n", path);
      return DML_ERR_INVALID_ARGUMENT;
    }
    return dml_data_read_idx(path, labels, limit, out);
  }
  if (!strcmp(fmt, "npy")) return dml_data_read_npy(path, *labels ? labels : NULL, limit, out);
  if (!strcmp(fmt, "csv")) {
    dml_csv_options o = {0, -1, NULL};
    const char *lc = dml_train_config_string(c, "data.label_column");
    if (*lc) o.label_column = lc;
    return dml_data_read_csv(path, &o, limit, out);
  }
  dml_image_options io = {(int)dml_train_config_int(c, "data.channels"),
                          (int)dml_train_config_int(c, "data.height"),
                          (int)dml_train_config_int(c, "data.width")};
  if (!strcmp(fmt, "images")) return dml_data_read_image_folder(path, &io, limit, out);
  dml_manifest_options mo;
  memset(&mo, 0, sizeof mo);
  mo.image = io;
  const char *pc = dml_train_config_string(c, "data.path_column");
  const char *lc = dml_train_config_string(c, "data.labels_column");
  const char *root = dml_train_config_string(c, "data.root");
  if (*pc) mo.path_column = pc;
  if (*lc) mo.labels_column = lc;
  return dml_data_read_manifest(path, *root ? root : NULL, &mo, limit, out);
}

/* Names classes 0.. from "a,b,c" (data.class_names) when the reader gave none. */
static int set_class_names(dml_dataset *ds, const char *list) {
  if (!*list || ds->class_names) return 0;
  int n = 1;
  for (const char *p = list; *p; p++) n += *p == ',';
  int32_t mx = -1;
  for (int64_t i = 0; i < ds->n; i++)
    if (ds->labels[i] > mx) mx = ds->labels[i];
  if (mx >= n) {
    fprintf(stderr, "dml train: data.class_names names %d classes, the data has labels up to "
                    "%d\n", n, mx);
    return 1;
  }
  char **names = calloc((size_t)n, sizeof *names);
  if (!names) return 1;
  const char *p = list;
  for (int i = 0; i < n; i++) {
    const char *e = strchr(p, ',');
    size_t len = e ? (size_t)(e - p) : strlen(p);
    names[i] = malloc(len + 1);
    if (!names[i]) {
      for (int j = 0; j < i; j++) free(names[j]);
      free(names);
      return 1;
    }
    memcpy(names[i], p, len);
    names[i][len] = 0;
    p += len + (e ? 1 : 0);
  }
  ds->class_names = names;
  ds->num_classes = n;
  return 0;
}

/* Replaces *ds by its rows[0..n). */
static dml_status keep_rows(dml_dataset *ds, const int64_t *rows, int64_t n) {
  int increasing = 1;
  for (int64_t i = 1; i < n && increasing; i++) increasing = rows[i] > rows[i - 1];
  if (increasing && !ds->paths && !ds->label_offsets) {
    /* in place: no second copy of the data set at the peak of memory use */
    int64_t e = ds->example_numel;
    for (int64_t i = 0; i < n; i++) {
      if (rows[i] != i) memmove(ds->x + i * e, ds->x + rows[i] * e, (size_t)e * sizeof(float));
      ds->labels[i] = ds->labels[rows[i]];
    }
    ds->n = n;
    /* give back the tail: a copy of the kept rows in a buffer of their size */
    float *fit = n > 0 ? dml_alloc_aligned((size_t)(n * e) * sizeof(float)) : NULL;
    if (fit) {
      memcpy(fit, ds->x, (size_t)(n * e) * sizeof(float));
      dml_free_aligned(ds->x);
      ds->x = fit;
    }
    return DML_OK;
  }
  dml_dataset sub;
  dml_status st = dml_dataset_subset(ds, rows, n, &sub);
  if (st != DML_OK) return st;
  dml_dataset_free(ds);
  *ds = sub;
  return DML_OK;
}

static int make_dir(const char *path) {
  char buf[4096];
  snprintf(buf, sizeof buf, "%s", path);
  for (char *p = buf + 1; *p; p++) {
    if (*p != '/') continue;
    *p = 0;
    if (mkdir(buf, 0777) && errno != EEXIST) return -1;
    *p = '/';
  }
  if (mkdir(buf, 0777) && errno != EEXIST) return -1;
  struct stat sb;
  return stat(buf, &sb) == 0 && S_ISDIR(sb.st_mode) ? 0 : -1;
}

static int channels_of(const dml_dataset *ds) {
  /* images (C, H, W) normalise per channel; vectors per feature */
  if (ds->ndim == 3) return (int)ds->shape[0];
  if (ds->ndim == 2) return (int)ds->shape[0];
  return (int)ds->example_numel;
}

int dml_cli_train(int argc, char **argv) {
  const char *config_path = NULL, *resume = NULL, *progress = NULL;
  int print_config = 0;
  for (int i = 1; i < argc; i++) {
    if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) return usage(stdout, 0);
    if (!strcmp(argv[i], "--keys")) {
      printf("config keys (JSON: nest them, {\"optimizer\": {\"lr\": 0.01}}; flags: --optimizer.lr 0.01)\n%s",
             dml_train_config_catalogue());
      return 0;
    }
    if (!strcmp(argv[i], "--config") && i + 1 < argc) config_path = argv[++i];
  }
  dml_train_config *c = NULL;
  if (dml_train_config_new(&c)) return fail("config");
  if (config_path && dml_train_config_merge_file(c, config_path)) {
    dml_train_config_free(c);
    return fail("config");
  }
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    if (!strcmp(a, "--config")) {
      i++;
      continue;
    }
    if (!strcmp(a, "--no-progress")) {
      progress = "none";
      continue;
    }
    if (!strcmp(a, "--print-config")) {
      print_config = 1;
      continue;
    }
    if (strncmp(a, "--", 2) || i + 1 >= argc) {
      fprintf(stderr, "dml train: %s: expected --KEY VALUE\n", a);
      dml_train_config_free(c);
      return usage(stderr, 2);
    }
    const char *v = argv[++i];
    if (!strcmp(a, "--resume")) resume = v;
    else if (!strcmp(a, "--progress")) progress = v;
    else {
      const char *key = !strcmp(a, "--lr") ? "optimizer.lr" : a + 2;
      if (!dml_train_config_has_key(key) || dml_train_config_set(c, key, v)) {
        if (!dml_train_config_has_key(key)) dml_train_config_set(c, key, v); /* sets message */
        fprintf(stderr, "dml train: option --%s: %s\n", key, dml_last_error());
        dml_train_config_free(c);
        return 2;
      }
    }
  }
  if (progress && strcmp(progress, "bar") && strcmp(progress, "lines") &&
      strcmp(progress, "none")) {
    fprintf(stderr, "dml train: --progress must be bar, lines or none, got '%s'\n", progress);
    dml_train_config_free(c);
    return 2;
  }
  if (print_config) {
    char *s = dml_train_config_to_json(c);
    printf("%s\n", s ? s : "{}");
    free(s);
    dml_train_config_free(c);
    return 0;
  }
  int rc = train_run(c, resume, progress, &active_trainer, on_sigint);
  dml_train_config_free(c);
  return rc;
}

/* The run itself, separate from argument handling. */
static int train_run(const dml_train_config *c, const char *resume, const char *progress,
                       dml_trainer *volatile *active, void (*sigint_handler)(int)) {
  int rc = 1;
  dml_dataset train, test, val;
  memset(&train, 0, sizeof train);
  memset(&test, 0, sizeof test);
  memset(&val, 0, sizeof val);
  dml_model *m = NULL;
  dml_trainer *t = NULL;
  train_run_info info;
  memset(&info, 0, sizeof info);
  int64_t *tr = NULL, *te = NULL, *val_rows = NULL, n_val_rows = 0;
  int val_is_test = 0;
  char outdir[4096];
  const char *name = dml_train_config_string(c, "name");
  const char *out = dml_train_config_string(c, "out");
  if (*out) snprintf(outdir, sizeof outdir, "%s", out);
  else snprintf(outdir, sizeof outdir, "runs/%s", *name ? name : "run");
  int threads = (int)dml_train_config_int(c, "threads");
  if (threads < 1) {
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    threads = n > 0 ? (int)n : 1;
  }
  dml_set_num_threads(threads);
  uint64_t seed = (uint64_t)dml_train_config_int(c, "seed");
  info.threads = threads;
  info.t_start = train_now();

  /* ---- data ---- */
  const char *train_path = dml_train_config_string(c, "data.train");
  const char *test_path = dml_train_config_string(c, "data.test");
  if (!*train_path) {
    fprintf(stderr, "dml train: no training data: set data.train (and data.format)\n");
    return 2;
  }
  /* An open set with its own test file: the training file's test-class rows are dropped while
   * reading (IDX), so they never take memory. */
  const char *split = dml_train_config_string(c, "split.kind");
  int excluded_at_read = 0;
  if (!strcmp(dml_train_config_string(c, "data.format"), "idx") && !strcmp(split, "classes") &&
      *test_path) {
    int64_t tc[256];
    int n = dml_train_config_ints(c, "split.test_classes", tc, 256);
    int32_t ex[256];
    for (int i = 0; i < n && i < 256; i++) ex[i] = (int32_t)tc[i];
    const char *tl = dml_train_config_string(c, "data.train_labels");
    if (n >= 1 && n <= 256 && *tl) {
      if (dml_data_read_idx_excluding(train_path, tl, dml_train_config_int(c, "data.limit"), ex,
                                      n, &train)) {
        fail("training data");
        goto done;
      }
      excluded_at_read = 1;
    }
  }
  if (!excluded_at_read &&
      read_data(c, train_path, dml_train_config_string(c, "data.train_labels"),
                dml_train_config_int(c, "data.limit"), &train)) {
    fail("training data");
    goto done;
  }
  if (*test_path && read_data(c, test_path, dml_train_config_string(c, "data.test_labels"), 0,
                              &test)) {
    fail("test data");
    goto done;
  }
  const char *cn = dml_train_config_string(c, "data.class_names");
  if (set_class_names(&train, cn) || (test.n && set_class_names(&test, cn))) goto done;
  if (test.n && test.example_numel != train.example_numel) {
    fprintf(stderr, "dml train: test examples have %lld values, training examples %lld\n",
            (long long)test.example_numel, (long long)train.example_numel);
    goto done;
  }
  /* ---- split ---- */
  int64_t ntr = 0, nte = 0;
  info.open_set = 0;
  if (!strcmp(split, "classes") || !strcmp(split, "random_classes")) {
    info.open_set = 1;
    if (!strcmp(split, "classes")) {
      int64_t tc[256];
      int n = dml_train_config_ints(c, "split.test_classes", tc, 256);
      if (n < 1 || n > 256) {
        fprintf(stderr, "dml train: split.kind classes needs split.test_classes (1 to 256 "
                        "class ids), got %d\n", n);
        goto done;
      }
      info.num_unseen = n;
      for (int i = 0; i < n; i++) info.unseen[i] = (int32_t)tc[i];
      if (!excluded_at_read &&
          dml_split_by_class(train.labels, train.n, info.unseen, n, &tr, &ntr, &te, &nte)) {
        fail("split.test_classes");
        goto done;
      }
    } else {
      int n = (int)dml_train_config_int(c, "split.num_test_classes");
      if (n < 1 || n > 256) {
        fprintf(stderr, "dml train: split.num_test_classes must be 1..256, got %d\n", n);
        goto done;
      }
      info.num_unseen = n;
      if (dml_split_random_classes(train.labels, train.n, n, seed, info.unseen, &tr, &ntr, &te,
                                   &nte)) {
        fail("split.num_test_classes");
        goto done;
      }
    }
    if (!test.n) {
      /* no separate test file: the unseen classes' training rows are the test set */
      if (dml_dataset_subset(&train, te, nte, &test)) {
        fail("split");
        goto done;
      }
    }
    if (!excluded_at_read && keep_rows(&train, tr, ntr)) {
      fail("split");
      goto done;
    }
  } else if (!strcmp(split, "stratified")) {
    if (test.n) {
      fprintf(stderr, "dml train: split.kind stratified takes the test set from data.train; "
                      "remove data.test or use split.kind given\n");
      goto done;
    }
    if (dml_split_stratified(train.labels, train.n, dml_train_config_number(c, "split.test_fraction"),
                             seed, &tr, &ntr, &te, &nte) ||
        dml_dataset_subset(&train, te, nte, &test) || keep_rows(&train, tr, ntr)) {
      fail("split");
      goto done;
    }
  }
  free(tr);
  free(te);
  tr = te = NULL;
  /* ---- validation ---- */
  const char *vsrc = dml_train_config_string(c, "validation.source");
  if (!strcmp(vsrc, "holdout")) {
    if (dml_split_stratified(train.labels, train.n,
                             dml_train_config_number(c, "validation.fraction"), seed ^ 0x7a11dULL,
                             &tr, &ntr, &te, &nte) ||
        dml_dataset_subset(&train, te, nte, &val) || keep_rows(&train, tr, ntr)) {
      fail("validation split");
      goto done;
    }
    free(tr);
    free(te);
    tr = te = NULL;
  }
  /* ---- normalisation ---- */
  {
    int ch = channels_of(&train);
    double mean_d[4096], std_d[4096];
    int nm = dml_train_config_numbers(c, "data.mean", mean_d, 4096);
    int ns = dml_train_config_numbers(c, "data.std", std_d, 4096);
    if (nm != ns || (nm != 0 && nm != 1 && nm != ch)) {
      fprintf(stderr, "dml train: data.mean and data.std need the same length: 1 or %d "
                      "(channels), got %d and %d\n", ch, nm, ns);
      goto done;
    }
    if (ch > 4096) ch = 1;
    float mean[4096], sd[4096];
    if (nm == 0) {
      if (dml_dataset_channel_stats(&train, ch, mean, sd)) {
        fail("normalisation");
        goto done;
      }
      for (int i = 0; i < ch; i++)
        if (!(sd[i] > 0)) sd[i] = 1;
    } else {
      ch = nm;
      for (int i = 0; i < nm; i++) {
        mean[i] = (float)mean_d[i];
        sd[i] = (float)std_d[i];
      }
    }
    if (dml_dataset_normalize_channels(&train, ch, mean, sd) ||
        (val.n && dml_dataset_normalize_channels(&val, ch, mean, sd)) ||
        (test.n && dml_dataset_normalize_channels(&test, ch, mean, sd))) {
      fail("normalisation");
      goto done;
    }
    info.norm_channels = ch;
    for (int i = 0; i < ch && i < TRAIN_REPORT_MAX_CHANNELS; i++) {
      info.mean[i] = mean[i];
      info.std[i] = sd[i];
    }
  }
  if (!strcmp(vsrc, "test")) {
    if (!test.n) {
      fprintf(stderr, "dml train: validation.source test needs a test set\n");
      goto done;
    }
    /* monitor the quantity the run is about: the unseen classes in an open-set split (rows
     * of the test set, which validation embeds whole: no copy) */
    if (info.open_set) {
      val_rows = malloc((size_t)test.n * sizeof(int64_t));
      if (!val_rows) goto done;
      for (int64_t i = 0; i < test.n; i++)
        if (train_is_unseen(&info, test.labels[i])) val_rows[n_val_rows++] = i;
    }
    val_is_test = 1;
  }
  /* ---- model ---- */
  const char *model_path = dml_train_config_string(c, "model");
  const char *model_text = dml_train_config_string(c, "model_text");
  if (!*model_path && !*model_text) {
    fprintf(stderr, "dml train: no model: set model (a model text file, e.g. "
                    "models/fmnist_cnn.txt) or model_text\n");
    goto done;
  }
  if (*model_path ? dml_model_load_text_file(model_path, &m)
                  : dml_model_parse(model_text, "model_text", &m)) {
    fail("model");
    goto done;
  }
  if (dml_model_input_numel(m) != train.example_numel) {
    fprintf(stderr, "dml train: the model takes %lld values per example, the data has %lld "
                    "(change the model's input line)\n",
            (long long)dml_model_input_numel(m), (long long)train.example_numel);
    goto done;
  }
  if (dml_model_init_weights(m, seed)) {
    fail("model");
    goto done;
  }
  if (make_dir(outdir)) {
    fprintf(stderr, "dml train: cannot create the output folder '%s'\n", outdir);
    goto done;
  }
  dml_distance dist;
  if (!cli_parse_distance(dml_train_config_string(c, "eval.distance"), &dist)) goto done;
  /* ---- baselines before training (figures only: nothing of them stays in memory) ---- */
  if (test.n >= 2 && dml_train_config_bool(c, "eval.baselines") && !resume &&
      train_report_baselines(&info, m, &test, dist, seed))
    goto done;
  /* ---- trainer ---- */
  dml_train_options o = dml_train_options_default();
  o.loss_spec = dml_train_config_string(c, "loss");
  o.num_classes = train.num_classes;
  for (int64_t i = 0; i < train.n; i++)
    if (train.labels[i] + 1 > o.num_classes) o.num_classes = train.labels[i] + 1;
  const char *sk = dml_train_config_string(c, "sampler.kind");
  o.loader.batching = !strcmp(sk, "pk") ? DML_BATCHING_PK : DML_BATCHING_SHUFFLE;
  o.loader.p = (int)dml_train_config_int(c, "sampler.p");
  o.loader.k = (int)dml_train_config_int(c, "sampler.k");
  o.loader.batch_size = dml_train_config_int(c, "sampler.batch");
  o.loader.drop_last = 1;
  o.loader.prefetch = (int)dml_train_config_int(c, "sampler.prefetch");
  o.loader.augment.pad_crop = (int)dml_train_config_int(c, "augment.pad_crop");
  o.loader.augment.hflip = dml_train_config_bool(c, "augment.hflip");
  o.loader.augment.rotate_deg = (float)dml_train_config_number(c, "augment.rotate_deg");
  o.loader.augment.scale = (float)dml_train_config_number(c, "augment.scale");
  o.loader.augment.translate = (float)dml_train_config_number(c, "augment.translate");
  o.loader.augment.fill = info.norm_channels >= 1 ? -info.mean[0] / info.std[0] : 0;
  const char *ok = dml_train_config_string(c, "optimizer.kind");
  o.optim = dml_optim_config_default(!strcmp(ok, "sgd")     ? DML_OPTIM_SGD
                                     : !strcmp(ok, "adamw") ? DML_OPTIM_ADAMW
                                                            : DML_OPTIM_ADAM);
  o.optim.lr = (float)dml_train_config_number(c, "optimizer.lr");
  o.optim.weight_decay = (float)dml_train_config_number(c, "optimizer.weight_decay");
  if (o.optim.kind == DML_OPTIM_SGD) {
    o.optim.momentum = (float)dml_train_config_number(c, "optimizer.momentum");
    o.optim.nesterov = dml_train_config_bool(c, "optimizer.nesterov");
  }
  o.loss_lr_scale = (float)dml_train_config_number(c, "optimizer.loss_lr_scale");
  o.clip_grad_norm = (float)dml_train_config_number(c, "optimizer.clip_grad_norm");
  const char *sch = dml_train_config_string(c, "schedule.kind");
  o.schedule.kind = !strcmp(sch, "cosine")        ? DML_SCHEDULE_COSINE
                    : !strcmp(sch, "step")        ? DML_SCHEDULE_STEP
                    : !strcmp(sch, "exponential") ? DML_SCHEDULE_EXPONENTIAL
                                                  : DML_SCHEDULE_CONSTANT;
  o.schedule.warmup_steps = dml_train_config_int(c, "schedule.warmup_steps");
  o.schedule.step_size = dml_train_config_int(c, "schedule.step_size");
  o.schedule.gamma = (float)dml_train_config_number(c, "schedule.gamma");
  o.schedule.min_lr = (float)dml_train_config_number(c, "schedule.min_lr");
  o.epochs = (int)dml_train_config_int(c, "epochs");
  o.seed = seed;
  o.val = val_is_test ? &test : val.n ? &val : NULL;
  o.val_rows = val_rows;
  o.val_num_rows = n_val_rows;
  o.distance = dist;
  o.val_metric = dml_train_config_string(c, "validation.metric");
  o.patience = (int)dml_train_config_int(c, "validation.patience");
  char ckdir[4200], logp[4200], meta[8192];
  snprintf(ckdir, sizeof ckdir, "%s", outdir);
  snprintf(logp, sizeof logp, "%s/log.jsonl", outdir);
  o.checkpoint_dir = ckdir;
  o.log_path = logp;
  train_checkpoint_metadata(&info, &train, meta, sizeof meta);
  o.metadata_json = meta;
  if (progress) {
    o.progress = !strcmp(progress, "bar")     ? DML_PROGRESS_BAR
                 : !strcmp(progress, "lines") ? DML_PROGRESS_LINES
                                              : DML_PROGRESS_NONE;
  } else {
    o.progress = isatty(fileno(stderr)) ? DML_PROGRESS_BAR : DML_PROGRESS_LINES;
  }
  if (dml_trainer_new(m, &train, &o, &t)) {
    fail("set-up");
    goto done;
  }
  if (resume) {
    if (dml_trainer_resume(t, resume)) {
      fail("resume");
      goto done;
    }
    const dml_train_history *rh = dml_trainer_history(t);
    printf("resuming at epoch %d after %lld steps, from %s\n", rh->num_epochs + 1,
           (long long)rh->num_steps, resume);
  }
  {
    char *cfg = dml_train_config_to_json(c);
    char p[4200];
    snprintf(p, sizeof p, "%s/config.json", outdir);
    if (!cfg || cli_write_text(p, cfg)) {
      free(cfg);
      fail("writing config.json");
      goto done;
    }
    free(cfg);
  }
  printf("dml train: %s: %lld training examples (%d classes), %lld validation, %lld test; "
         "%d threads; output in %s\n",
         *name ? name : "run", (long long)train.n, (int)o.num_classes,
         (long long)(val_is_test ? (val_rows ? n_val_rows : test.n) : val.n),
         (long long)test.n, threads, outdir);
  printf("loss: %s\n", dml_loss_spec(dml_trainer_loss(t)));
  fflush(stdout);
  *active = t;
  struct sigaction sa, old;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = sigint_handler;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGINT, &sa, &old);
  dml_status st = dml_trainer_run(t);
  sigaction(SIGINT, &old, NULL);
  *active = NULL;
  if (st) {
    fail("training");
    goto done;
  }
  const dml_train_history *h = dml_trainer_history(t);
  if (h->interrupted) {
    printf("stopped: the position is saved; continue with\n  dml train %s--resume %s/last\n",
           "<the same config and flags> ", outdir);
    rc = 130;
    goto done;
  }
  if (h->stopped_early)
    printf("early stop: no improvement for %d epochs\n", o.patience);
  if (o.val && dml_train_config_bool(c, "validation.restore_best") && h->best_epoch > 0 &&
      h->best_epoch != h->num_epochs) {
    if (dml_trainer_restore_best(t)) {
      fail("restoring the best epoch");
      goto done;
    }
    printf("using the weights of epoch %d (best validation %s %.4f)\n", h->best_epoch,
           o.val_metric, h->best_val_metric);
  }
  /* ---- evaluation and report ---- */
  info.outdir = outdir;
  info.config = c;
  info.history = h;
  rc = train_report_write(&info, m, &train, &test, o.distance, seed) ? 1 : 0;
done:
  free(tr);
  free(te);
  free(val_rows);
  dml_trainer_free(t);
  dml_model_free(m);
  dml_dataset_free(&train);
  dml_dataset_free(&test);
  dml_dataset_free(&val);
  return rc;
}
