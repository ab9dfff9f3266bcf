/* Augmentation (identity copies, flips undo themselves, pad-crop shifts, affine output stays a
 * convex mix, determinism on any thread count) and the batch loader (P x K batches equal the
 * sampler's, shuffle/sequential coverage, the same bits for any prefetch depth, resuming
 * mid-epoch, freeing mid-epoch, errors from the worker with their message). */
#include <stdint.h>
#include <stdlib.h>

#include "data/data_internal.h"
#include "test.h"

#define C 2
#define H 5
#define W 7
#define NUMEL (C * H * W)

static void pattern(float *x) {
  for (int i = 0; i < NUMEL; i++) x[i] = (float)((i * 37) % 23) - 5.0f;
}

/* ---- augmentation ---- */

TEST(augment_identity_copies) {
  float in[NUMEL], out[NUMEL];
  pattern(in);
  dml_augment_config cfg;
  memset(&cfg, 0, sizeof cfg);
  cfg.fill = 3; /* a fill alone changes nothing */
  ASSERT_TRUE(!dml_augment_enabled(&cfg));
  ASSERT_TRUE(!dml_augment_enabled(NULL));
  ASSERT_OK(dml_augment_example(&cfg, in, out, C, H, W, 1, 2, 3));
  ASSERT_TRUE(memcmp(in, out, sizeof in) == 0);
  ASSERT_ERROR(dml_augment_example(&cfg, in, in, C, H, W, 1, 2, 3), DML_ERR_INVALID_ARGUMENT);
  cfg.scale = 1.0f;
  ASSERT_ERROR(dml_augment_example(&cfg, in, out, C, H, W, 1, 2, 3), DML_ERR_INVALID_ARGUMENT);
  ASSERT_TRUE(strstr(dml_last_error(), "scale below 1") != NULL);
  cfg.scale = 0;
  cfg.rotate_deg = NAN;
  ASSERT_ERROR(dml_augment_example(&cfg, in, out, C, H, W, 1, 2, 3), DML_ERR_INVALID_ARGUMENT);
}

TEST(augment_hflip_twice_is_identity) {
  float in[NUMEL], out[NUMEL], back[NUMEL];
  pattern(in);
  dml_augment_config cfg;
  memset(&cfg, 0, sizeof cfg);
  cfg.hflip = 1;
  int flipped = 0, kept = 0;
  for (uint64_t index = 0; index < 64; index++) {
    ASSERT_OK(dml_augment_example(&cfg, in, out, C, H, W, 5, 9, index));
    int is_mirror = 1;
    for (int c = 0; c < C; c++)
      for (int y = 0; y < H; y++)
        for (int x = 0; x < W; x++)
          is_mirror &= out[(c * H + y) * W + x] == in[(c * H + y) * W + (W - 1 - x)];
    if (!is_mirror) {
      ASSERT_TRUE(memcmp(in, out, sizeof in) == 0); /* not flipped: copied */
      kept++;
      continue;
    }
    flipped++;
    /* the same draw flips the flipped example back */
    ASSERT_OK(dml_augment_example(&cfg, out, back, C, H, W, 5, 9, index));
    ASSERT_TRUE(memcmp(in, back, sizeof in) == 0);
  }
  ASSERT_TRUE(flipped > 10 && kept > 10); /* about half each */
}

TEST(augment_pad_crop_shifts_content) {
  float in[NUMEL], out[NUMEL];
  pattern(in);
  dml_augment_config cfg;
  memset(&cfg, 0, sizeof cfg);
  cfg.pad_crop = 2;
  cfg.fill = -100;
  int shifts_seen[5][5] = {{0}};
  for (uint64_t index = 0; index < 100; index++) {
    ASSERT_OK(dml_augment_example(&cfg, in, out, C, H, W, 42, 0, index));
    /* out(y, x) = in(y + dy, x + dx), fill outside, for one (dy, dx) in [-2, 2]^2 */
    int found = 0;
    for (int dy = -2; dy <= 2 && !found; dy++)
      for (int dx = -2; dx <= 2 && !found; dx++) {
        int ok = 1;
        for (int c = 0; c < C && ok; c++)
          for (int y = 0; y < H && ok; y++)
            for (int x = 0; x < W && ok; x++) {
              int sy = y + dy, sx = x + dx;
              float want = sy < 0 || sx < 0 || sy >= H || sx >= W ? -100.0f
                                                                  : in[(c * H + sy) * W + sx];
              ok = out[(c * H + y) * W + x] == want;
            }
        if (ok) {
          found = 1;
          shifts_seen[dy + 2][dx + 2] = 1;
        }
      }
    ASSERT_TRUE(found);
  }
  int distinct = 0;
  for (int i = 0; i < 25; i++) distinct += shifts_seen[i / 5][i % 5];
  ASSERT_TRUE(distinct >= 15); /* 100 draws over 25 shifts */
}

TEST(augment_affine_is_a_convex_mix_and_deterministic) {
  enum { N = 64 };
  static float in[N * NUMEL], a[N * NUMEL], b[N * NUMEL];
  for (int i = 0; i < N; i++) pattern(in + i * NUMEL);
  dml_augment_config cfg;
  memset(&cfg, 0, sizeof cfg);
  cfg.pad_crop = 1;
  cfg.hflip = 1;
  cfg.rotate_deg = 30;
  cfg.scale = 0.2f;
  cfg.translate = 0.1f;
  cfg.fill = -7;
  for (int i = 0; i < N; i++)
    ASSERT_OK(dml_augment_example(&cfg, in + i * NUMEL, a + i * NUMEL, C, H, W, 3, 4, (uint64_t)i));
  /* the same calls on several threads give the same bits */
  int bad = 0;
#pragma omp parallel for schedule(dynamic, 1) reduction(+ : bad)
  for (int i = 0; i < N; i++)
    bad += dml_augment_example(&cfg, in + i * NUMEL, b + i * NUMEL, C, H, W, 3, 4,
                               (uint64_t)i) != DML_OK;
  ASSERT_EQ_INT(bad, 0);
  ASSERT_TRUE(memcmp(a, b, sizeof a) == 0);
  /* bilinear weights sum to 1: values stay within [min(in, fill), max(in, fill)] */
  for (int i = 0; i < N * NUMEL; i++) ASSERT_TRUE(a[i] >= -7.0001f && a[i] <= 17.0001f);
  /* examples at different indices get different transforms */
  int same = 0;
  for (int i = 1; i < N; i++) same += memcmp(a, a + i * NUMEL, NUMEL * sizeof(float)) == 0;
  ASSERT_TRUE(same < 2);
  /* a constant image with the same fill stays constant */
  for (int i = 0; i < NUMEL; i++) in[i] = 2.5f;
  cfg.fill = 2.5f;
  ASSERT_OK(dml_augment_example(&cfg, in, a, C, H, W, 3, 4, 17));
  for (int i = 0; i < NUMEL; i++) ASSERT_NEAR(a[i], 2.5, 1e-5);
}

/* ---- loader ---- */

/* 8 classes x 5 examples of [1, 4, 4], x[i][p] = 100 i + p, labels interleaved. */
#define LN 40
static void make_dataset(dml_dataset *ds) {
  memset(ds, 0, sizeof *ds);
  ds->n = LN;
  ds->ndim = 3;
  ds->shape[0] = 1;
  ds->shape[1] = 4;
  ds->shape[2] = 4;
  ds->example_numel = 16;
  ds->x = dml_alloc_aligned(LN * 16 * sizeof(float));
  ds->labels = malloc(LN * sizeof(int32_t));
  for (int i = 0; i < LN; i++) {
    ds->labels[i] = (i * 3) % 8;
    for (int p = 0; p < 16; p++) ds->x[i * 16 + p] = (float)(100 * i + p);
  }
  ds->num_classes = 8;
}

/* Every batch of an epoch, concatenated: rows, labels and x. */
typedef struct {
  int64_t nb, total;
  int64_t sizes[64];
  int64_t rows[64 * 16];
  int32_t labels[64 * 16];
  float x[64 * 16 * 16];
} epoch_dump;

static int run_epoch(dml_loader *l, int64_t epoch, int64_t first, epoch_dump *d) {
  memset(d, 0, sizeof *d);
  if (dml_loader_start_epoch(l, epoch, first) != DML_OK) return 0;
  for (;;) {
    dml_batch b;
    if (dml_loader_next(l, &b) != DML_OK) return 0;
    if (b.size == 0) return 1;
    if (b.epoch != epoch || b.index != first + d->nb || d->nb >= 64) return 0;
    d->sizes[d->nb++] = b.size;
    memcpy(d->rows + d->total, b.rows, (size_t)b.size * sizeof(int64_t));
    memcpy(d->labels + d->total, b.labels, (size_t)b.size * sizeof(int32_t));
    memcpy(d->x + d->total * 16, b.x, (size_t)b.size * 16 * sizeof(float));
    d->total += b.size;
  }
}

static int dumps_equal(const epoch_dump *a, const epoch_dump *b) {
  return a->nb == b->nb && a->total == b->total &&
         memcmp(a->sizes, b->sizes, sizeof a->sizes) == 0 &&
         memcmp(a->rows, b->rows, (size_t)a->total * sizeof(int64_t)) == 0 &&
         memcmp(a->labels, b->labels, (size_t)a->total * sizeof(int32_t)) == 0 &&
         memcmp(a->x, b->x, (size_t)a->total * 16 * sizeof(float)) == 0;
}

static dml_loader_config pk_config(int prefetch) {
  dml_loader_config cfg;
  memset(&cfg, 0, sizeof cfg);
  cfg.batching = DML_BATCHING_PK;
  cfg.p = 4;
  cfg.k = 3;
  cfg.seed = 1234;
  cfg.prefetch = prefetch;
  return cfg;
}

TEST(loader_pk_batches_are_the_samplers) {
  dml_dataset ds;
  make_dataset(&ds);
  dml_loader_config cfg = pk_config(2);
  dml_loader *l;
  ASSERT_OK(dml_loader_new(&ds, &cfg, &l));
  ASSERT_EQ_INT(dml_loader_max_batch_size(l), 12);
  dml_sampler *s;
  ASSERT_OK(dml_sampler_new_pk(ds.labels, LN, 4, 3, 1234, &s));
  ASSERT_EQ_INT(dml_loader_num_batches(l), dml_sampler_num_batches(s));
  static epoch_dump d;
  for (int64_t e = 0; e < 3; e++) {
    ASSERT_TRUE(run_epoch(l, e, 0, &d));
    ASSERT_OK(dml_sampler_epoch(s, e));
    ASSERT_EQ_INT(d.nb, dml_sampler_num_batches(s));
    for (int64_t i = 0; i < d.nb; i++) {
      int64_t rows[12];
      ASSERT_OK(dml_sampler_batch(s, i, rows));
      ASSERT_EQ_INT(d.sizes[i], 12);
      for (int j = 0; j < 12; j++) {
        int64_t at = i * 12 + j;
        ASSERT_EQ_INT(d.rows[at], rows[j]);
        ASSERT_EQ_INT(d.labels[at], ds.labels[rows[j]]);
        for (int p = 0; p < 16; p++) ASSERT_NEAR(d.x[at * 16 + p], 100 * rows[j] + p, 0);
      }
    }
  }
  /* after the end, more calls keep answering "end" */
  dml_batch b;
  ASSERT_OK(dml_loader_next(l, &b));
  ASSERT_EQ_INT(b.size, 0);
  dml_sampler_free(s);
  dml_loader_free(l);
  dml_loader_free(NULL);
  dml_dataset_free(&ds);
}

TEST(loader_shuffle_and_sequential_cover_every_row) {
  dml_dataset ds;
  make_dataset(&ds);
  dml_loader_config cfg;
  memset(&cfg, 0, sizeof cfg);
  cfg.batching = DML_BATCHING_SHUFFLE;
  cfg.batch_size = 16;
  cfg.seed = 9;
  cfg.prefetch = 1;
  dml_loader *l;
  ASSERT_OK(dml_loader_new(&ds, &cfg, &l));
  ASSERT_EQ_INT(dml_loader_num_batches(l), 3);
  static epoch_dump d0, d1;
  ASSERT_TRUE(run_epoch(l, 0, 0, &d0));
  ASSERT_EQ_INT(d0.sizes[2], 8);
  ASSERT_EQ_INT(d0.total, LN);
  int seen[LN] = {0};
  for (int i = 0; i < LN; i++) seen[d0.rows[i]]++;
  for (int i = 0; i < LN; i++) ASSERT_EQ_INT(seen[i], 1);
  ASSERT_TRUE(run_epoch(l, 1, 0, &d1));
  ASSERT_TRUE(memcmp(d0.rows, d1.rows, LN * sizeof(int64_t)) != 0); /* a new order per epoch */
  dml_loader_free(l);
  cfg.drop_last = 1;
  ASSERT_OK(dml_loader_new(&ds, &cfg, &l));
  ASSERT_EQ_INT(dml_loader_num_batches(l), 2);
  ASSERT_TRUE(run_epoch(l, 0, 0, &d1));
  ASSERT_EQ_INT(d1.total, 32);
  ASSERT_TRUE(memcmp(d0.rows, d1.rows, 32 * sizeof(int64_t)) == 0); /* same plan, cut short */
  dml_loader_free(l);
  cfg.batching = DML_BATCHING_SEQUENTIAL;
  cfg.drop_last = 0;
  cfg.batch_size = 64;
  ASSERT_OK(dml_loader_new(&ds, &cfg, &l));
  ASSERT_EQ_INT(dml_loader_max_batch_size(l), LN);
  ASSERT_TRUE(run_epoch(l, 5, 0, &d1));
  ASSERT_EQ_INT(d1.nb, 1);
  for (int i = 0; i < LN; i++) ASSERT_EQ_INT(d1.rows[i], i);
  dml_loader_free(l);
  dml_dataset_free(&ds);
}

/* The same batches, bit for bit, with any prefetch depth, with augmentation on, and when an
 * epoch is resumed at a later batch (on a new loader, or on the same one mid-epoch). */
TEST(loader_prefetch_and_resume_are_bit_identical) {
  dml_dataset ds;
  make_dataset(&ds);
  const dml_batching modes[2] = {DML_BATCHING_PK, DML_BATCHING_SHUFFLE};
  static epoch_dump ref, got, tail;
  for (int m = 0; m < 2; m++) {
    dml_loader_config cfg = pk_config(0);
    cfg.batching = modes[m];
    cfg.batch_size = 7;
    cfg.augment.pad_crop = 1;
    cfg.augment.hflip = 1;
    cfg.augment.rotate_deg = 10;
    cfg.augment.fill = -1;
    dml_loader *l0;
    ASSERT_OK(dml_loader_new(&ds, &cfg, &l0));
    for (int64_t e = 0; e < 2; e++) {
      ASSERT_TRUE(run_epoch(l0, e, 0, &ref));
      ASSERT_TRUE(ref.nb >= 4);
      for (int prefetch = 1; prefetch <= 3; prefetch += 2) {
        cfg.prefetch = prefetch;
        dml_loader *l;
        ASSERT_OK(dml_loader_new(&ds, &cfg, &l));
        ASSERT_TRUE(run_epoch(l, e, 0, &got));
        ASSERT_TRUE(dumps_equal(&ref, &got));
        /* resume at batch 3 on a fresh loader */
        dml_loader *r;
        ASSERT_OK(dml_loader_new(&ds, &cfg, &r));
        ASSERT_TRUE(run_epoch(r, e, 3, &tail));
        ASSERT_EQ_INT(tail.nb, ref.nb - 3);
        int64_t skip = ref.sizes[0] + ref.sizes[1] + ref.sizes[2];
        ASSERT_TRUE(memcmp(tail.rows, ref.rows + skip, (size_t)tail.total * sizeof(int64_t)) == 0);
        ASSERT_TRUE(memcmp(tail.x, ref.x + skip * 16, (size_t)tail.total * 16 * sizeof(float)) == 0);
        dml_loader_free(r);
        /* restart the same loader mid-epoch, after a batch of another epoch */
        dml_batch b;
        ASSERT_OK(dml_loader_start_epoch(l, e + 7, 0));
        ASSERT_OK(dml_loader_next(l, &b));
        ASSERT_TRUE(run_epoch(l, e, 0, &got));
        ASSERT_TRUE(dumps_equal(&ref, &got));
        dml_loader_free(l);
      }
      cfg.prefetch = 0;
    }
    dml_loader_free(l0);
  }
  dml_dataset_free(&ds);
}

TEST(loader_free_mid_epoch_and_state_errors) {
  dml_dataset ds;
  make_dataset(&ds);
  for (int prefetch = 0; prefetch <= 4; prefetch += 2) {
    dml_loader_config cfg = pk_config(prefetch);
    dml_loader *l;
    ASSERT_OK(dml_loader_new(&ds, &cfg, &l));
    dml_batch b;
    ASSERT_ERROR(dml_loader_next(l, &b), DML_ERR_STATE);
    dml_loader_free(l); /* never started */
    ASSERT_OK(dml_loader_new(&ds, &cfg, &l));
    ASSERT_OK(dml_loader_start_epoch(l, 0, 0));
    dml_loader_free(l); /* started, nothing taken */
    ASSERT_OK(dml_loader_new(&ds, &cfg, &l));
    ASSERT_OK(dml_loader_start_epoch(l, 0, 0));
    ASSERT_OK(dml_loader_next(l, &b));
    ASSERT_EQ_INT(b.size, 12);
    dml_loader_free(l); /* mid-epoch, holding a batch, the worker waiting on the ring */
    ASSERT_OK(dml_loader_new(&ds, &cfg, &l));
    int64_t nb = dml_loader_num_batches(l);
    ASSERT_OK(dml_loader_start_epoch(l, 1, nb)); /* resuming at the end: nothing left */
    ASSERT_OK(dml_loader_next(l, &b));
    ASSERT_EQ_INT(b.size, 0);
    ASSERT_ERROR(dml_loader_start_epoch(l, 1, nb + 1), DML_ERR_INVALID_ARGUMENT);
    ASSERT_ERROR(dml_loader_start_epoch(l, -1, 0), DML_ERR_INVALID_ARGUMENT);
    dml_loader_free(l);
  }
  dml_dataset_free(&ds);
}

TEST(loader_worker_errors_reach_next_with_their_message) {
  dml_dataset ds;
  make_dataset(&ds);
  for (int prefetch = 0; prefetch <= 3; prefetch += 3) {
    dml_loader_config cfg = pk_config(prefetch);
    dml_loader *l;
    ASSERT_OK(dml_loader_new(&ds, &cfg, &l));
    ASSERT_EQ_INT(dml_loader_num_batches(l), 4);
    dml__loader_inject_error(l, 2);
    ASSERT_OK(dml_loader_start_epoch(l, 0, 0));
    dml_batch b;
    for (int i = 0; i < 2; i++) {
      ASSERT_OK(dml_loader_next(l, &b));
      ASSERT_EQ_INT(b.index, i);
    }
    for (int again = 0; again < 2; again++) {
      ASSERT_ERROR(dml_loader_next(l, &b), DML_ERR_INTERNAL);
      ASSERT_TRUE(strcmp(dml_last_error(), "injected failure at batch 2") == 0);
    }
    /* a new start clears the failure; batches past it come through */
    ASSERT_OK(dml_loader_start_epoch(l, 0, 3));
    ASSERT_OK(dml_loader_next(l, &b));
    ASSERT_EQ_INT(b.index, 3);
    ASSERT_EQ_INT(b.size, 12);
    ASSERT_OK(dml_loader_next(l, &b));
    ASSERT_EQ_INT(b.size, 0);
    dml_loader_free(l);
  }
  dml_dataset_free(&ds);
}

TEST(loader_config_errors) {
  dml_dataset ds;
  make_dataset(&ds);
  dml_loader *l = (dml_loader *)&ds;
  dml_loader_config cfg = pk_config(0);
  cfg.p = 9; /* 8 classes */
  ASSERT_ERROR(dml_loader_new(&ds, &cfg, &l), DML_ERR_INVALID_ARGUMENT);
  ASSERT_TRUE(l == NULL);
  cfg = pk_config(-1);
  ASSERT_ERROR(dml_loader_new(&ds, &cfg, &l), DML_ERR_INVALID_ARGUMENT);
  cfg = pk_config(0);
  cfg.batching = DML_BATCHING_SHUFFLE;
  ASSERT_ERROR(dml_loader_new(&ds, &cfg, &l), DML_ERR_INVALID_ARGUMENT);
  ASSERT_TRUE(strstr(dml_last_error(), "batch_size 0") != NULL);
  cfg.batch_size = 41;
  cfg.drop_last = 1;
  ASSERT_ERROR(dml_loader_new(&ds, &cfg, &l), DML_ERR_INVALID_ARGUMENT);
  cfg.drop_last = 0;
  cfg.augment.scale = 2;
  ASSERT_ERROR(dml_loader_new(&ds, &cfg, &l), DML_ERR_INVALID_ARGUMENT);
  cfg.augment.scale = 0.1f;
  ds.ndim = 1;
  ds.shape[0] = 16;
  ASSERT_ERROR(dml_loader_new(&ds, &cfg, &l), DML_ERR_SHAPE);
  ASSERT_TRUE(strstr(dml_last_error(), "[C, H, W]") != NULL);
  dml_dataset_free(&ds);
}
