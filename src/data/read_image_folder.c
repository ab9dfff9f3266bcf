/* Image folder reader: DIR/<class>/<image>, one sub-folder per class, into [C, H, W] examples
 * with class names. */
#define _POSIX_C_SOURCE 200809L /* opendir, stat */
#include <dirent.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "core/status_internal.h"
#include "data/data_internal.h"

/* The visible entries of dir that are folders (want_dirs) or image files, sorted by name. */
static dml_status list_dir(const char *dir, int want_dirs, dml__strlist *names) {
  DIR *d = opendir(dir);
  if (!d) return dml__error(DML_ERR_IO, "%s: cannot open folder: %s", dir, strerror(errno));
  dml_status st = DML_OK;
  struct dirent *e;
  while (st == DML_OK && (e = readdir(d)) != NULL) {
    if (e->d_name[0] == '.') continue;
    if (!want_dirs && !dml__is_image_name(e->d_name)) continue;
    char *full = dml__path_join(dir, e->d_name);
    if (!full) {
      st = dml__error(DML_ERR_NO_MEMORY, "out of memory listing %s", dir);
      break;
    }
    struct stat sb;
    int ok = stat(full, &sb) == 0 && (want_dirs ? S_ISDIR(sb.st_mode) : S_ISREG(sb.st_mode));
    free(full);
    if (ok) st = dml__strlist_push(names, e->d_name);
  }
  closedir(d);
  if (st == DML_OK) dml__strlist_sort_unique(names);
  return st;
}

dml_status dml_data_read_image_folder(const char *dir, const dml_image_options *opt,
                                      int64_t limit, dml_dataset *out) {
  if (!out) return dml__error(DML_ERR_INVALID_ARGUMENT, "dml_data_read_image_folder: out is NULL");
  memset(out, 0, sizeof *out);
  if (!dir) return dml__error(DML_ERR_INVALID_ARGUMENT, "dml_data_read_image_folder: dir is NULL");
  dml_image_options o;
  DML_TRY(dml__image_options(opt, &o));
  dml__strlist classes = {0}, paths = {0};
  int32_t *labels = NULL;
  int64_t cap = 0;
  dml_status st = list_dir(dir, 1, &classes);
  if (st == DML_OK && classes.n == 0)
    st = dml__error(DML_ERR_NOT_FOUND,
                    "%s: no class folders (expected %s/<class>/<image>.png|jpg|jpeg|bmp)", dir,
                    dir);
  if (st == DML_OK && classes.n > INT32_MAX)
    st = dml__error(DML_ERR_FORMAT, "%s: too many class folders", dir);
  for (int64_t c = 0; st == DML_OK && c < classes.n; c++) {
    char *cdir = dml__path_join(dir, classes.items[c]);
    dml__strlist files = {0};
    if (!cdir) st = dml__error(DML_ERR_NO_MEMORY, "out of memory");
    if (st == DML_OK) st = list_dir(cdir, 0, &files);
    if (st == DML_OK && files.n == 0)
      st = dml__error(DML_ERR_NOT_FOUND,
                      "%s: class folder without images (.png, .jpg, .jpeg or .bmp files)", cdir);
    for (int64_t i = 0; st == DML_OK && i < files.n; i++) {
      char *p = dml__path_join(cdir, files.items[i]);
      if (!p) {
        st = dml__error(DML_ERR_NO_MEMORY, "out of memory");
        break;
      }
      st = dml__strlist_push(&paths, p);
      free(p);
      if (st == DML_OK && paths.n > cap) {
        cap = cap ? cap * 2 : 256;
        int32_t *l = realloc(labels, (size_t)cap * sizeof *l);
        if (!l) st = dml__error(DML_ERR_NO_MEMORY, "out of memory");
        else labels = l;
      }
      if (st == DML_OK) labels[paths.n - 1] = (int32_t)c;
    }
    dml__strlist_free(&files);
    free(cdir);
  }
  if (st == DML_OK) {
    int64_t n = (limit > 0 && limit < paths.n) ? limit : paths.n;
    /* the paths past the limit are dropped; the kept ones become the data set's */
    for (int64_t i = n; i < paths.n; i++) free(paths.items[i]);
    paths.n = n;
    out->paths = paths.items;
    out->labels = labels;
    out->n = n;
    out->class_names = classes.items;
    out->num_classes = (int32_t)classes.n;
    memset(&paths, 0, sizeof paths);
    memset(&classes, 0, sizeof classes);
    labels = NULL;
    st = dml__images_read(out->paths, n, &o, NULL, NULL, out);
  }
  dml__strlist_free(&paths);
  dml__strlist_free(&classes);
  free(labels);
  if (st != DML_OK) dml_dataset_free(out);
  return st;
}
