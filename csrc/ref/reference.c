/*
 * The reference tier: every kernel of bnkernels.h as plain loops over the
 * formulas of formulas.h, float32 and float64 from one template each
 * (darknet.inc, darknet_ofast.inc, standard.inc for NCHW and NHWC,
 * conv_pool.inc). No threads, no tiling, no SIMD clones, no streaming
 * stores.
 *
 * Full build: the kernels are named bn_ref_* (rename.h) and the fast tier
 * (csrc/fast/) defines bnkernels.h's names. Reference-only build
 * (-DBNKERNELS_REFERENCE_ONLY, which leaves csrc/fast/ empty): these are
 * bnkernels.h's kernels. bn_rolling_update, bn_invstd and bn_merge_moments
 * have no fast twin and are defined here under their public names in both.
 */
#include <math.h>
#include <stdint.h>

#include "bnkernels.h"
#include "formulas.h"
#include "geometry.h"
#include "reference.h"

#ifndef BNKERNELS_REFERENCE_ONLY
#include "rename.h"
#endif

#define T float
#define NAME(f) f##_f32
#include "darknet.inc"
#include "darknet_ofast.inc"
#include "conv_pool.inc"
#define AT(b, c, s) ((((b) * channels) + (c)) * spatial + (s))
#define KERNEL(f) f##_f32
#include "standard.inc"
#undef AT
#undef KERNEL
#define AT(b, c, s) ((((b) * spatial) + (s)) * channels + (c))
#define KERNEL(f) f##_nhwc_f32
#include "standard.inc"
#undef AT
#undef KERNEL
#undef T
#undef NAME

#define T double
#define NAME(f) f##_f64
#include "darknet.inc"
#include "darknet_ofast.inc"
#include "conv_pool.inc"
#define AT(b, c, s) ((((b) * channels) + (c)) * spatial + (s))
#define KERNEL(f) f##_f64
#include "standard.inc"
#undef AT
#undef KERNEL
#define AT(b, c, s) ((((b) * spatial) + (s)) * channels + (c))
#define KERNEL(f) f##_nhwc_f64
#include "standard.inc"
#undef AT
#undef KERNEL
#undef T
#undef NAME

#ifndef BNKERNELS_REFERENCE_ONLY
#include "unrename.h"
#endif

/* running_mean = (1 - momentum) * running_mean + momentum * mean,
 * running_var = (1 - momentum) * running_var + momentum * var * count / (count - ddof) */
#define ROLLING_UPDATE(T, SUF)                                                 \
    void bn_rolling_update_##SUF(int64_t channels, double momentum,            \
                                 int64_t count, int64_t ddof,                  \
                                 const double *mean, const double *var,        \
                                 T *running_mean, T *running_var)              \
    {                                                                          \
        const double unbias = (double)count / (double)(count - ddof);          \
        for (int64_t c = 0; c < channels; ++c) {                               \
            running_mean[c] = (T)bn_momentum_update((double)running_mean[c],   \
                                                    momentum, mean[c]);        \
            running_var[c] = (T)bn_momentum_update((double)running_var[c],     \
                                                   momentum, var[c] * unbias); \
        }                                                                      \
    }
ROLLING_UPDATE(float, f32)
ROLLING_UPDATE(double, f64)

/* invstd[c] = 1 / sqrt(var[c] + eps) */
void bn_invstd(int64_t channels, const double *var, double eps, double *invstd)
{
    for (int64_t c = 0; c < channels; ++c)
        invstd[c] = bn_invstd_of(var[c], eps);
}

/* Moments of several shards merged into those of their union, shard by shard
 * in order (Chan, Golub and LeVeque's parallel update, exact in exact
 * arithmetic and free of the cancellation of sum-of-squares formulas):
 *   n = n_a + n_b,  delta = mean_b - mean_a,
 *   mean = mean_a + delta * n_b / n,  M2 = M2_a + M2_b + delta^2 * n_a * n_b / n
 * Shards with no values are skipped; if there are none at all, mean and M2
 * are 0. */
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
