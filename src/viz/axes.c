/* Axis ranges, "nice" tick positions (steps of 1, 2 or 5 times a power of ten, as in
 * Heckbert, "Nice numbers for graph labels", Graphics Gems 1990) and tick labels, shared by
 * the scatter plot and the line charts. */
#include <float.h>
#include <math.h>
#include <stdio.h>

#include "viz/viz_internal.h"

void dml__axis_range(double *lo, double *hi, double pad) {
  if (!(*lo <= *hi)) { /* no finite value seen */
    *lo = 0.0;
    *hi = 1.0;
  }
  if (*hi - *lo <= 1e-12 * fmax(fabs(*lo), fabs(*hi))) {
    const double v = 0.5 * (*lo + *hi), h = fmax(fabs(v) * 0.05, 0.5);
    *lo = v - h;
    *hi = v + h;
  }
  const double w = *hi - *lo;
  *lo -= pad * w;
  *hi += pad * w;
}

int dml__nice_ticks(double lo, double hi, int target, double *ticks, int max_ticks,
                    double *step) {
  if (target < 2) target = 2;
  const double raw = (hi - lo) / (target - 1);
  if (!(raw > 0) || !isfinite(raw)) {
    if (step) *step = 1.0;
    return 0;
  }
  const double mag = pow(10.0, floor(log10(raw)));
  const double f = raw / mag;
  const double s = (f < 1.5 ? 1.0 : f < 3.5 ? 2.0 : f < 7.5 ? 5.0 : 10.0) * mag;
  if (step) *step = s;
  int count = 0;
  for (double k = ceil(lo / s - 1e-9); count < max_ticks; k += 1.0) {
    const double v = k * s;
    if (v > hi + 1e-9 * s) break;
    ticks[count++] = v;
  }
  return count;
}

void dml__format_tick(double v, double step, char *buf, int size) {
  if (fabs(v) < 1e-9 * step) v = 0.0;
  snprintf(buf, (size_t)size, "%.6g", v);
}
