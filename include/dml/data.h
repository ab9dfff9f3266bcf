/* Data sets in memory: examples as float32 rows with integer labels, the readers that fill
 * them (IDX, .npy, CSV, image folders, image manifests), normalisation, train/test splits,
 * augmentation and a background batch loader for training. See docs/data.md.
 * A dml_dataset is a caller-owned struct: a reader fills it and dml_dataset_free releases every
 * array it holds. Split outputs are malloc'ed row arrays the caller frees with free(). A loader
 * borrows its data set, which must outlive it; a batch it returns stays valid until the next
 * dml_loader_next, dml_loader_start_epoch or dml_loader_free on that loader. */
#ifndef DML_DATA_H
#define DML_DATA_H

#include <stdint.h>

#include "dml/status.h"
#include "dml/tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- Data sets ------------------------------------------------------------------------------ */

/* Fields after example_numel are optional: zero (NULL) means absent. */
typedef struct dml_dataset {
  float *x;        /* n * example_numel floats, row-major, 64-byte aligned */
  int32_t *labels; /* n labels; for a multi-label set, each item's smallest label or -1 */
  int64_t n;
  int ndim;                      /* rank of one example */
  int64_t shape[DML_MAX_DIMS];   /* shape of one example (images: [C, H, W]) */
  int64_t example_numel;
  int32_t num_classes;  /* max label + 1 for integer labels, else the number of class_names */
  char **class_names;   /* num_classes names (folder, label string), or NULL for integer labels */
  char **paths;         /* n source files (image readers), or NULL */
  int64_t *label_offsets; /* multi-label only: n + 1 offsets into label_values (CSR), else NULL */
  int32_t *label_values;  /* multi-label only: item i's label set, sorted and distinct, is
                           * label_values[label_offsets[i] .. label_offsets[i + 1]) */
} dml_dataset;

void dml_dataset_free(dml_dataset *ds); /* every array above; NULL is a no-op */

/* Deep copy of rows[0..n) of src (each in [0, src->n); repeats allowed) into *out, in that
 * order: examples, labels, paths, label sets (offsets re-based), class names, num_classes. */
dml_status dml_dataset_subset(const dml_dataset *src, const int64_t *rows, int64_t n,
                              dml_dataset *out);

/* x = (x - mean) / std over every value. */
dml_status dml_dataset_normalize(dml_dataset *ds, float mean, float std);

/* Keeps the examples whose label is in [lo, hi] (order preserved; paths and label sets follow
 * their examples; class ids and names are unchanged). */
dml_status dml_dataset_filter_labels(dml_dataset *ds, int32_t lo, int32_t hi);

/* Per-channel mean and standard deviation (population, 1/N) over every example, examples being
 * `channels` planes of example_numel / channels values each (CHW). mean and std are caller
 * arrays of `channels` floats. Accumulates in double. Errors: empty data set, channels < 1 or
 * not dividing example_numel. */
dml_status dml_dataset_channel_stats(const dml_dataset *ds, int channels, float *mean,
                                     float *std);

/* x[c-plane] = (x - mean[c]) / std[c] for each of `channels` planes of every example. Every
 * std[c] must be > 0 and every value finite. */
dml_status dml_dataset_normalize_channels(dml_dataset *ds, int channels, const float *mean,
                                          const float *std);

/* ---- Readers --------------------------------------------------------------------------------
 * Every reader clears *out first, fills it on success and leaves it zeroed on error. `limit`
 * > 0 keeps only the first `limit` examples (in the reader's order). Error messages name the
 * file and, where it applies, the line (text) or row (arrays) and the problem. A data set with
 * no examples is an error. */

/* Reads an IDX image file (ubyte, rank >= 2, e.g. MNIST/Fashion-MNIST [n,28,28]) and its IDX
 * label file (ubyte, rank 1), gzip-compressed or raw. Pixels are scaled to [0,1]; examples get
 * shape [1, H, W] (one channel). Errors name the file and the problem (wrong magic, truncated,
 * counts differ). */
dml_status dml_data_read_idx(const char *images_path, const char *labels_path, int64_t limit,
                             dml_dataset *out);

/* The same, leaving out the examples whose label is one of exclude_labels[0..num_exclude):
 * they are never held in memory (an open-set training set read without its test classes).
 * num_classes still counts every label of the scanned rows. Leaving out every example is an
 * error. */
dml_status dml_data_read_idx_excluding(const char *images_path, const char *labels_path,
                                       int64_t limit, const int32_t *exclude_labels,
                                       int num_exclude, dml_dataset *out);

/* x_path: float32 .npy of shape [n, ...] (rank >= 2); an example has the shape of the rest
 * ([n, d] gives examples of shape [d]). labels_path: int32 or int64 .npy of shape [n] with
 * values in [0, 2^31), or NULL (every label 0). Errors: counts differ, wrong dtype or rank,
 * negative or too large label (names the row), NaN or infinity in x (DML_ERR_NOT_FINITE, names
 * the row and column). */
dml_status dml_data_read_npy(const char *x_path, const char *labels_path, int64_t limit,
                             dml_dataset *out);

typedef struct dml_csv_options {
  char delimiter;           /* 0 = ',' */
  int header;               /* -1 auto-detect (the first line has a non-numeric field outside
                             * the label column), 0 no, 1 yes */
  const char *label_column; /* header name, or a 0-based index as text ("0", "-1" = last);
                             * NULL = the last column */
} dml_csv_options;

/* CSV (RFC 4180): one example per line; every column except the label column is a numeric
 * feature, giving examples of shape [d]. Quoted fields ("a,b", "" for a quote, line breaks
 * inside quotes), CRLF line ends, blank lines and a UTF-8 byte-order mark are accepted. Labels:
 * when every value of the label column is an integer, those integers (>= 0; class_names NULL);
 * otherwise the distinct label strings (surrounding blanks trimmed), sorted byte-wise, are the
 * class names and the labels their indices. opt may be NULL (all defaults). Errors: empty
 * file, a line whose field count differs from the first line's ("data.csv:17: 5 fields, the
 * header has 6"), a non-numeric feature ("data.csv:4: column 'x3': 'abc' is not a number"),
 * NaN or infinity (DML_ERR_NOT_FINITE), an unknown label column (lists the header names), a
 * negative integer label, a quoted field left open. */
dml_status dml_data_read_csv(const char *path, const dml_csv_options *opt, int64_t limit,
                             dml_dataset *out);

typedef struct dml_image_options {
  int channels;      /* 1 grey, 3 RGB; 0 = 1. Other images are converted (luma / replicated) */
  int height, width; /* resize target, both > 0; both 0 = keep the size, and then every image
                      * must have the first image's size */
} dml_image_options;

/* Image folder: DIR/<class>/<image>, one sub-folder per class. Class names are the sub-folder
 * names sorted byte-wise (ids in that order), images are read class by class, files sorted by
 * name. Files ending in .png, .jpg, .jpeg or .bmp (any case) are read, other files and hidden
 * entries (leading '.') are ignored. Pixels are scaled to [0,1] in CHW layout, examples of
 * shape [C, H, W]; images of another size are resized (stb_image_resize) when a target is set.
 * paths[i] is DIR/<class>/<file>. opt may be NULL (grey, keep size). Errors: DIR missing, no
 * class folders, a class folder without images, an unreadable or corrupt image (names the file
 * and gives the decoder's reason), an image of another size when no target is set. */
dml_status dml_data_read_image_folder(const char *dir, const dml_image_options *opt,
                                      int64_t limit, dml_dataset *out);

typedef struct dml_manifest_options {
  const char *path_column;   /* header name; NULL = the first column */
  const char *labels_column; /* header name; NULL = the second column */
  const char *separator;     /* between label names; NULL = "|" */
  const char *none_label;    /* label name meaning the empty set; NULL = "No Finding" */
  dml_image_options image;
} dml_manifest_options;

/* Multi-label image manifest, a CSV with a header line (the ChestX-ray14 Data_Entry_2017.csv
 * layout: "Image Index,Finding Labels,..." with rows like "00000001_001.png,Effusion|
 * Infiltration,..."). Each row names an image, relative to image_root (NULL = the CSV's
 * folder), and its label names joined by the separator. Label names (trimmed) are collected
 * over the whole file (so ids do not depend on `limit`), sorted byte-wise and numbered: they are
 * the class names. Each item's set is sorted and de-duplicated into label_offsets /
 * label_values; labels[i] is its smallest id, or -1 for the empty set (none_label or nothing).
 * Images are read as dml_data_read_image_folder reads them (opt->image). opt may be NULL.
 * Errors name the line: unknown column (lists the header), too few fields, a missing image
 * ("manifest.csv:12: images/00000013_005.png: no such file"), an unreadable image. */
dml_status dml_data_read_manifest(const char *csv_path, const char *image_root,
                                  const dml_manifest_options *opt, int64_t limit,
                                  dml_dataset *out);

/* ---- Splits ---------------------------------------------------------------------------------
 * Pure functions of (labels, arguments, seed). Outputs are malloc'ed arrays of row indices in
 * increasing order (*train_rows: *n_train of them, *test_rows: *n_test), which the caller frees
 * with free(); together they are every row exactly once. On error they are NULL and 0. */

/* Open-set split: the rows whose label is one of test_classes go to test, the rest to train.
 * Error: a listed class has no rows. */
dml_status dml_split_by_class(const int32_t *labels, int64_t n, const int32_t *test_classes,
                              int num_test_classes, int64_t **train_rows, int64_t *n_train,
                              int64_t **test_rows, int64_t *n_test);

/* Open-set split with num_test_classes unseen classes drawn by the seed among the distinct
 * labels >= 0 (rows labelled < 0 stay in train). test_classes_out (caller array of
 * num_test_classes) gets the chosen classes, sorted. Error: num_test_classes < 1 or not below
 * the number of classes. */
dml_status dml_split_random_classes(const int32_t *labels, int64_t n, int num_test_classes,
                                    uint64_t seed, int32_t *test_classes_out,
                                    int64_t **train_rows, int64_t *n_train,
                                    int64_t **test_rows, int64_t *n_test);

/* Closed-set stratified split: of each class's `count` rows, round(test_fraction * count) go
 * to test (at most count - 1 when count >= 2, so every class with 2+ rows keeps a training
 * row), chosen by a seeded shuffle of the class. test_fraction in [0, 1]. */
dml_status dml_split_stratified(const int32_t *labels, int64_t n, double test_fraction,
                                uint64_t seed, int64_t **train_rows, int64_t *n_train,
                                int64_t **test_rows, int64_t *n_test);

/* ---- Augmentation ---------------------------------------------------------------------------
 * Random transforms of one CHW example, a pure function of (config, input, seed, stream, index)
 * through dml_rng_*: the same bits on any thread count. Applied in this order: pad and crop,
 * flip, then the affine part (rotation, zoom, shift about the centre) by inverse mapping with
 * bilinear interpolation. */
typedef struct dml_augment_config {
  int pad_crop;     /* pad by this many pixels, then crop a random H x W window; 0 = off */
  int hflip;        /* nonzero: flip left-right with probability 1/2 */
  float rotate_deg; /* rotation angle uniform in [-r, r] degrees */
  float scale;      /* zoom factor uniform in [1 - s, 1 + s], 0 <= s < 1 */
  float translate;  /* shift uniform in [-t, t] * width (x) and * height (y) */
  float fill;       /* value of pixels from outside the image (padding included), in the
                     * units of the data: after normalisation, the normalised 0 */
} dml_augment_config;

/* 1 when cfg changes anything (a config of zeros, or NULL, does not). */
int dml_augment_enabled(const dml_augment_config *cfg);

/* out = augmented in; both hold channels * height * width floats (CHW) and must not overlap.
 * A config that changes nothing copies. Errors: NULL or equal pointers, sizes < 1, negative
 * or non-finite parameters, scale >= 1. */
dml_status dml_augment_example(const dml_augment_config *cfg, const float *in, float *out,
                               int channels, int height, int width, uint64_t seed,
                               uint64_t stream, uint64_t index);

/* ---- Batch loader ---------------------------------------------------------------------------
 * Prepares training batches (rows, gathered examples, augmentation) on one background thread,
 * `prefetch` batches ahead. Batch i of epoch e is a pure function of (data set, config, e, i),
 * whatever the timing or prefetch depth, so a run resumed with dml_loader_start_epoch(e, i) is
 * bit-identical to one that ran through. The worker thread uses no OpenMP. One loader is used
 * from one thread at a time. */
typedef enum dml_batching {
  DML_BATCHING_PK,        /* p classes x k examples (dml_sampler_new_pk), batch size p * k */
  DML_BATCHING_SHUFFLE,   /* a seeded permutation per epoch cut into batch_size batches */
  DML_BATCHING_SEQUENTIAL /* rows in order, batch_size per batch */
} dml_batching;

typedef struct dml_loader_config {
  dml_batching batching;
  int p, k;                   /* PK: P classes x K examples per batch */
  int64_t batch_size;         /* SHUFFLE and SEQUENTIAL */
  int drop_last;              /* SHUFFLE/SEQUENTIAL: drop an incomplete last batch */
  dml_augment_config augment; /* all zero: none; examples must be [C, H, W] otherwise */
  uint64_t seed;
  int prefetch; /* batches prepared ahead by the worker (0..1024); 0 = no thread, batches are
                 * prepared in dml_loader_next */
} dml_loader_config;

typedef struct dml_batch {
  const float *x;         /* size * example_numel floats */
  const int32_t *labels;  /* size labels (the data set's labels of the rows) */
  const int64_t *rows;    /* size row indices into the data set */
  int64_t size;           /* 0 at the end of the epoch */
  int64_t epoch, index;   /* which batch this is */
} dml_batch;

typedef struct dml_loader dml_loader;

/* Errors: invalid config (p, k, batch_size < 1, more classes asked than exist, an epoch with no
 * batch), augmentation on examples that are not [C, H, W]. */
dml_status dml_loader_new(const dml_dataset *ds, const dml_loader_config *cfg,
                          dml_loader **out);
int64_t dml_loader_num_batches(const dml_loader *l);   /* per epoch; 0 for NULL */
int64_t dml_loader_max_batch_size(const dml_loader *l); /* 0 for NULL */

/* Starts (or restarts) epoch `epoch` >= 0 at batch first_batch (0 <= first_batch <=
 * num_batches), discarding batches prepared for anything else. */
dml_status dml_loader_start_epoch(dml_loader *l, int64_t epoch, int64_t first_batch);

/* The next batch of the epoch; DML_OK with out->size == 0 at its end. An error met while
 * preparing a batch is returned (with its message) when that batch is due, and again on every
 * call until the next dml_loader_start_epoch. DML_ERR_STATE before the first start_epoch. */
dml_status dml_loader_next(dml_loader *l, dml_batch *out);

void dml_loader_free(dml_loader *l); /* stops the worker, also mid-epoch; NULL is a no-op */

#ifdef __cplusplus
}
#endif
#endif
