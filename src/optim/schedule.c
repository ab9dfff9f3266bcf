/* Learning-rate schedules, evaluated in double for a 0-based step s:
 *   warm-up (any kind, W = warmup_steps > 0):  lr = base (s + 1) / W  for s < W
 *   afterwards, with k = s - W:
 *     constant     base
 *     step         base gamma^floor(k / step_size)            (torch StepLR)
 *     exponential  base gamma^k                               (torch ExponentialLR)
 *     cosine       min + (base - min) (1 + cos(pi k / (T - W))) / 2 for k < T - W, else min,
 *                  T = total_steps                            (torch CosineAnnealingLR's formula) */
#include <math.h>

#include "dml/optim.h"

float dml_schedule_lr(const dml_schedule *s, int64_t step) {
  if (!s) return 0.0f;
  if (step < 0) step = 0;
  const double base = s->base_lr;
  const int64_t warmup = s->warmup_steps > 0 ? s->warmup_steps : 0;
  if (step < warmup) return (float)(base * (double)(step + 1) / (double)warmup);
  const int64_t k = step - warmup;
  switch (s->kind) {
    case DML_SCHEDULE_CONSTANT:
      return (float)base;
    case DML_SCHEDULE_STEP:
      if (s->step_size <= 0) return (float)base;
      return (float)(base * pow((double)s->gamma, (double)(k / s->step_size)));
    case DML_SCHEDULE_EXPONENTIAL:
      return (float)(base * pow((double)s->gamma, (double)k));
    case DML_SCHEDULE_COSINE: {
      const double min_lr = s->min_lr;
      const int64_t span = s->total_steps - warmup;
      if (span <= 0 || k >= span) return (float)min_lr;
      const double pi = 3.14159265358979323846;
      return (float)(min_lr + (base - min_lr) * 0.5 * (1.0 + cos(pi * (double)k / (double)span)));
    }
  }
  return (float)base;
}
