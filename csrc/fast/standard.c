/* Standard-numerics kernels for float32 and float64, from one template. */
#include <math.h>
#include <stdlib.h>

#include "bnkernels.h"
#include "dispatch.h"
#include "loops.h"

#define T float
#define NAME(f) f##_f32
#include "standard.inc"
#include "standard_nhwc.inc"
#undef T
#undef NAME

#define T double
#define NAME(f) f##_f64
#include "standard.inc"
#include "standard_nhwc.inc"
#undef T
#undef NAME

/* invstd[c] = 1 / sqrt(var[c] + eps) */
void bn_invstd(int64_t channels, const double *var, double eps, double *invstd)
{
    for (int64_t c = 0; c < channels; ++c)
        invstd[c] = 1. / sqrt(var[c] + eps);
}

/* Moments of several shards merged into those of their union, shard by shard
 * in order (Chan, Golub and LeVeque's parallel update, exact in exact
 * arithmetic and free of the cancellation of sum-of-squares formulas):
 *   n = n_a + n_b,  delta = mean_b - mean_a,
 *   mean = mean_a + delta * n_b / n,  M2 = M2_a + M2_b + delta^2 * n_a * n_b / n
 * Shard p has counts[p] values per channel, means[p * channels + c] and M2s
 * (sums of squared deviations) likewise. Shards with no values are skipped;
 * if there are none at all, mean and M2 are 0. */
void bn_merge_moments(int64_t parts, int64_t channels, const double *counts,
                      const double *means, const double *m2s, double *mean,
                      double *m2)
{
    for (int64_t c = 0; c < channels; ++c) {
        double n = 0., m = 0., q = 0.;
        for (int64_t p = 0; p < parts; ++p) {
            const double n_b = counts[p];
            if (n_b <= 0.)
                continue;
            const double m_b = means[p * channels + c], q_b = m2s[p * channels + c];
            if (n == 0.) {
                n = n_b;
                m = m_b;
                q = q_b;
                continue;
            }
            const double total = n + n_b;
            const double delta = m_b - m;
            m += delta * (n_b / total);
            q += q_b + delta * delta * (n * n_b / total);
            n = total;
        }
        mean[c] = m;
        m2[c] = q;
    }
}
