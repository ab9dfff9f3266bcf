/* What a person watching training sees: on a terminal a bar redrawn in place (epoch, step,
 * loss, images/s, time left); elsewhere (a log file, a pipe) a plain line every tenth of an
 * epoch; and a summary line after every epoch. */
#include <math.h>
#include <stdio.h>

#include "train/train_internal.h"

static void fmt_time(double s, char *buf, size_t cap) {
  if (!isfinite(s) || s < 0) s = 0;
  long t = (long)(s + 0.5);
  if (t >= 3600)
    snprintf(buf, cap, "%ld:%02ld:%02ld", t / 3600, (t / 60) % 60, t % 60);
  else
    snprintf(buf, cap, "%ld:%02ld", t / 60, t % 60);
}

void dml__progress_start(const dml_train_options *o, int64_t epoch, int64_t batch,
                         int64_t batches_per_epoch) {
  if (o->progress == DML_PROGRESS_NONE) return;
  if (epoch > 0 || batch > 0)
    fprintf(o->progress_stream, "resuming at epoch %lld, batch %lld of %lld\n",
            (long long)epoch + 1, (long long)batch, (long long)batches_per_epoch);
}

void dml__progress_step(const dml_train_options *o, int64_t epoch, int64_t batch,
                        int64_t batches_per_epoch, double mean_loss, double images_per_s,
                        double elapsed_s, int64_t steps_this_run) {
  if (o->progress == DML_PROGRESS_NONE) return;
  int64_t done = steps_this_run;
  int64_t left = (int64_t)o->epochs * batches_per_epoch - (epoch * batches_per_epoch + batch);
  double eta = done > 0 ? elapsed_s / (double)done * (double)left : 0;
  char eta_s[32], el_s[32];
  fmt_time(eta, eta_s, sizeof eta_s);
  fmt_time(elapsed_s, el_s, sizeof el_s);
  FILE *f = o->progress_stream;
  if (o->progress == DML_PROGRESS_BAR) {
    enum { WIDTH = 24 };
    int filled = (int)((double)batch / (double)batches_per_epoch * WIDTH);
    char bar[WIDTH + 1];
    for (int i = 0; i < WIDTH; i++) bar[i] = i < filled ? '#' : '-';
    bar[WIDTH] = 0;
    fprintf(f, "\r  epoch %lld/%d [%s] %lld/%lld  loss %.4f  %6.0f img/s  %s elapsed, %s left ",
            (long long)epoch + 1, o->epochs, bar, (long long)batch, (long long)batches_per_epoch,
            mean_loss, images_per_s, el_s, eta_s);
    fflush(f);
    return;
  }
  int64_t every = batches_per_epoch >= 10 ? batches_per_epoch / 10 : 1;
  if (batch % every && batch != batches_per_epoch) return;
  fprintf(f, "  epoch %lld/%d  step %lld/%lld  loss %.4f  %.0f images/s  %s left\n",
          (long long)epoch + 1, o->epochs, (long long)batch, (long long)batches_per_epoch,
          mean_loss, images_per_s, eta_s);
  fflush(f);
}

void dml__progress_epoch(const dml_train_options *o, const dml_train_history *h,
                         const dml_epoch_record *r, int improved) {
  if (o->progress == DML_PROGRESS_NONE) return;
  FILE *f = o->progress_stream;
  if (o->progress == DML_PROGRESS_BAR) fputc('\n', f);
  fprintf(f, "epoch %d/%d: loss %.4f, %.1f s, %.0f images/s", r->epoch, o->epochs, r->loss,
          r->seconds, r->images_per_s);
  if (isfinite(r->val_metric))
    fprintf(f, ", validation %s %.4f%s", o->val_metric ? o->val_metric : "map_at_r",
            r->val_metric, improved ? " (best so far)" : "");
  fputc('\n', f);
  (void)h;
  fflush(f);
}

void dml__progress_interrupted(const dml_train_options *o, int64_t epoch, int64_t batch) {
  if (o->progress == DML_PROGRESS_NONE) return;
  if (o->progress == DML_PROGRESS_BAR) fputc('\n', o->progress_stream);
  fprintf(o->progress_stream, "interrupted at epoch %lld, batch %lld%s\n", (long long)epoch + 1,
          (long long)batch, o->checkpoint_dir ? ": saved the position as last" : "");
  fflush(o->progress_stream);
}
