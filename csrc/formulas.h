/*
 * Every element and per-channel formula of the kernels, once, as inline
 * functions that both tiers call: the reference tier (csrc/ref/) in plain
 * loops, the fast tier (csrc/fast/) inside its tiles, lanes and threads.
 * The fast tier's AVX-512 twins (fast/stream.c) compute the same
 * expressions lane by lane, operation for operation.
 *
 * Each function is one IEEE expression in a fixed order; compiled with
 * -ffp-contract=off and without fast-math it gives the same bits wherever
 * it is inlined. Per-dtype versions carry the suffix _f32 or _f64.
 */
#ifndef BNKERNELS_FORMULAS_H
#define BNKERNELS_FORMULAS_H

#include <float.h>
#include <math.h>
#include <stdint.h>

#if defined(__GNUC__) || defined(__clang__)
#define BN_FORMULA static inline __attribute__((always_inline))
#else
#define BN_FORMULA static inline
#endif

/* ---- standard numerics (BN paper, PyTorch, cuDNN) ---------------------- */

/* invstd = 1 / sqrt(var + eps), in double */
BN_FORMULA double bn_invstd_of(double var, double eps)
{
    return 1. / sqrt(var + eps);
}

/* running = (1 - momentum) * running + momentum * stat, in double */
BN_FORMULA double bn_momentum_update(double running, double momentum,
                                     double stat)
{
    return (1. - momentum) * running + momentum * stat;
}

/* a = invstd * weight, the affine map's slope (weight NULL means 1) */
BN_FORMULA double bn_scale_f32(double invstd, const float *weight, int64_t c)
{
    return invstd * (weight ? (double)weight[c] : 1.);
}
BN_FORMULA double bn_scale_f64(double invstd, const double *weight, int64_t c)
{
    return invstd * (weight ? weight[c] : 1.);
}

/* shift = bias (bias NULL means 0) */
BN_FORMULA double bn_shift_f32(const float *bias, int64_t c)
{
    return bias ? (double)bias[c] : 0.;
}
BN_FORMULA double bn_shift_f64(const double *bias, int64_t c)
{
    return bias ? bias[c] : 0.;
}

/* The affine map y = (x - mean) * a + shift, as (x - m) * a_T + s in T, from
 * per-channel terms in T: the center m, the slope a_T and the shift s.
 * float64: m = mean, a_T = a, s = shift. float32: like dx, the terms in
 * float about the center m = fl(mean), so fl(x - m) is the centered value
 * to half an ulp (exact within a factor 2 of m), and the center's rounding
 * moves into the shift: s = fl(shift - (mean - m) * a). Its error is at
 * most 3.01u |(x - m) a| + 1.01u |s| + u |y| (u = 2^-24, results in the
 * normal range), whatever the mean: four roundings, each of a term of
 * the result.
 * That needs a slope float can hold (bn_affine_fits: 0 or normal and
 * finite); a channel whose slope it cannot (a variance near 0 with a tiny
 * eps, a subnormal or huge weight) takes bn_affine_wide: in double,
 * rounded once. */
BN_FORMULA int bn_affine_fits_f32(double a)
{
    return (a == 0) | ((fabs(a) >= FLT_MIN) & (fabs(a) <= FLT_MAX));
}
BN_FORMULA int bn_affine_fits_f64(double a)
{
    (void)a;
    return 1;
}
BN_FORMULA float bn_affine_wide_f32(float x, double mean, double a,
                                    double shift)
{
    return (float)(((double)x - mean) * a + shift);
}
BN_FORMULA double bn_affine_wide_f64(double x, double mean, double a,
                                     double shift)
{
    return (x - mean) * a + shift;
}
BN_FORMULA float bn_affine_center_f32(double mean)
{
    return (float)mean;
}
BN_FORMULA double bn_affine_center_f64(double mean)
{
    return mean;
}
BN_FORMULA float bn_affine_slope_f32(double a)
{
    return (float)a;
}
BN_FORMULA double bn_affine_slope_f64(double a)
{
    return a;
}
BN_FORMULA float bn_affine_shift_f32(double mean, double a, double shift)
{
    return (float)(shift - (mean - (double)(float)mean) * a);
}
BN_FORMULA double bn_affine_shift_f64(double mean, double a, double shift)
{
    (void)mean;
    (void)a;
    return shift;
}
BN_FORMULA float bn_affine_f32(float x, float m, float a, float s)
{
    return (x - m) * a + s;
}
BN_FORMULA double bn_affine_f64(double x, double m, double a, double s)
{
    return (x - m) * a + s;
}

/* The fused ReLU: max(y, 0), NaN and -0 kept */
BN_FORMULA float bn_relu_f32(float y)
{
    return y < 0 ? 0.f : y;
}
BN_FORMULA double bn_relu_f64(double y)
{
    return y < 0 ? 0. : y;
}

/* dx's per-channel terms. With mean_g = sum_dy / n and
 * mean_g_xhat = sum_dy_xhat / n:
 *   q = -a * invstd * mean_g_xhat,  p = -a * mean_g
 * so that dx = (g*a + (x - mean)*q) + p. float32 takes its terms in float
 * about the center m = fl(mean), so fl(x - m) is the centered value to
 * half an ulp, and moves the rounding of the center into p:
 *   p_f32 = p - (mean - m) * q. */
BN_FORMULA double bn_dx_q(double a, double invstd, double mean_g_xhat)
{
    return -a * (invstd * mean_g_xhat);
}
BN_FORMULA double bn_dx_p(double a, double mean_g)
{
    return -a * mean_g;
}
BN_FORMULA float bn_dx_p_f32(double a, double mean_g, double mean, float m,
                             double q)
{
    return (float)(bn_dx_p(a, mean_g) - (mean - (double)m) * q);
}

/* dx in the common case (training; with the fused ReLU, of the masked g):
 * (g*a + (x - m)*q) + p, in
 * float for float32 (error within a few ulps of max|dx|), in double for
 * float64 */
BN_FORMULA float bn_dx_common_f32(float g, float x, float a, float m, float q,
                                  float p)
{
    return (g * a + (x - m) * q) + p;
}
BN_FORMULA double bn_dx_common_f64(double g, double x, double a, double m,
                                   double q, double p)
{
    return (g * a + (x - m) * q) + p;
}

/* dx in general, in double: training a * ((g - mean_g) - (x - mean) * k),
 * k = invstd * mean_g_xhat; eval (constant statistics) a * g. g is dy, or
 * with the fused ReLU dy where the forward's y > 0 and 0 elsewhere. */
BN_FORMULA double bn_dx_training(double a, double g, double mean_g, double x,
                                 double mean, double k)
{
    return a * ((g - mean_g) - (x - mean) * k);
}
BN_FORMULA double bn_dx_eval(double a, double g)
{
    return a * g;
}

/* ---- Darknet-exact (pjreddie/darknet, AlexeyAB/darknet, CPU) ----------- */
/* T is float or double; each promotion to double sits where Darknet's C
 * promotes (a double constant, sqrt, pow), so float32 results equal
 * Darknet's bit for bit. */
#define BN_DARKNET_FORMULAS(T, SUF)                                            \
    /* normalize_cpu's denominator, pjreddie: sqrt(var) + eps */               \
    BN_FORMULA double bn_dk_denom_eps_outside_##SUF(T variance, T eps)         \
    {                                                                          \
        return sqrt((double)variance) + (double)eps;                           \
    }                                                                          \
    /* AlexeyAB: sqrt(var + eps), the sum rounded to T first */                \
    BN_FORMULA double bn_dk_denom_eps_inside_##SUF(T variance, T eps)          \
    {                                                                          \
        return sqrt((double)(T)(variance + eps));                              \
    }                                                                          \
    /* normalize_cpu: x = (x - mean) / denom */                                \
    BN_FORMULA T bn_dk_normalize_##SUF(T x, T mean, double denom)              \
    {                                                                          \
        const T centered = x - mean;                                           \
        return (T)((double)centered / denom);                                  \
    }                                                                          \
    /* mean_delta_cpu: sum(delta) * (-1. / sqrt(var + eps)) */                 \
    BN_FORMULA T bn_dk_mean_delta_of_##SUF(T sum, T variance, T eps)           \
    {                                                                          \
        const T shifted_var = variance + eps;                                  \
        return (T)((double)sum * (-1. / sqrt((double)shifted_var)));           \
    }                                                                          \
    /* variance_delta_cpu: sum(delta * (x - mean))                           */\
    /*   * (-.5 * pow(var + eps, -1.5))                                      */\
    BN_FORMULA T bn_dk_variance_delta_of_##SUF(T sum, T variance, T eps)       \
    {                                                                          \
        const T shifted_var = variance + eps;                                  \
        return (T)((double)sum * (-.5 * pow((double)shifted_var, -1.5)));      \
    }                                                                          \
    /* normalize_delta_cpu: delta / denom                                    */\
    /*   + variance_delta * 2. * (x - mean) / n + mean_delta / n             */\
    /* (mean_term = fl(mean_delta / fl(n)), n in double)                     */\
    BN_FORMULA T bn_dk_normalize_delta_##SUF(T g, T x, T mean, double denom,   \
                                             T variance_delta, double n,       \
                                             double mean_term)                 \
    {                                                                          \
        const T centered = x - mean;                                           \
        const double direct = (double)g / denom;                               \
        const double via_var =                                                 \
            ((double)variance_delta * 2.) * (double)centered / n;              \
        return (T)((direct + via_var) + mean_term);                            \
    }                                                                          \
    /* batchnorm_layer.c's rolling update: rolling * keep + take * stat */    \
    BN_FORMULA T bn_dk_rolling_##SUF(T rolling, T keep, T take, T stat)        \
    {                                                                          \
        const T kept = rolling * keep;                                         \
        const T taken = take * stat;                                           \
        return kept + taken;                                                   \
    }

BN_DARKNET_FORMULAS(float, f32)
BN_DARKNET_FORMULAS(double, f64)
#undef BN_DARKNET_FORMULAS

/* ---- Darknet's default -Ofast builds (GCC, x86-64) ---------------------- */
/* -Ofast vectorizes two sums of Darknet's backward and turns one division  */
/* into a multiply; these functions are that order, which both tiers use    */
/* (the order is the formula: it decides the bits). The lanes of one        */
/* (b, c) row p[0..S-1]:                                                    */
/*   4 lanes (-Ofast, SSE2; each fork's Makefile): q_main = 4 * floor(S/4)  */
/*     if S >= 4, else 0; lane_k = sum_{m < q_main/4} p[4m + k], running    */
/*     sums from +0, k = 0..3; the tail p[q_main..S-1] follows one by one.  */
/*   8 lanes (-Ofast -mavx; AlexeyAB's CMake): q_main = 8 * floor(S/8) if   */
/*     S >= 8, else 0; e_k = sum_{m < q_main/8} p[8m + k] (k = 0..7), then  */
/*     four lanes lane_k = e_k + e_(k+4); if at least 4 values remain,      */
/*     lane_k += p[q_main + k] and the tail starts 4 later.                 */
/*   ROW = (lane_0 + lane_2) + (lane_1 + lane_3), when the row had lanes.   */

/* where the lanes stop: *q_main (the wide lanes) and *q_epi (the tail) */
BN_FORMULA void bn_dk_ofast_lane_bounds(int64_t spatial, int wide,
                                        int64_t *q_main, int64_t *q_epi)
{
    const int64_t w = wide ? 8 : 4;
    *q_main = spatial >= w ? spatial - spatial % w : 0;
    *q_epi = wide && spatial - *q_main >= 4 ? *q_main + 4 : *q_main;
}

#define BN_DARKNET_OFAST_FORMULAS(T, SUF)                                      \
    /* four lanes from the wide ones: lanes[k] (+ lanes[k + 4] when wide) */   \
    BN_FORMULA T bn_dk_ofast_fold_##SUF(const T *lanes, int wide, int k)       \
    {                                                                          \
        return wide ? lanes[k] + lanes[k + 4] : lanes[k];                      \
    }                                                                          \
    /* ROW of four lanes: (l0 + l2) + (l1 + l3) */                            \
    BN_FORMULA T bn_dk_ofast_row_##SUF(const T *four)                          \
    {                                                                          \
        return (four[0] + four[2]) + (four[1] + four[3]);                      \
    }                                                                          \
    /* One row's lanes, of a[s] (b NULL) or of the products fl(a[s] * b[s]): */\
    /* four[0..3] as above; returns q_epi, where the tail starts (0: none). */ \
    BN_FORMULA int64_t bn_dk_ofast_row_lanes_##SUF(const T *a, const T *b,     \
                                                   int64_t spatial, int wide,  \
                                                   T *four)                    \
    {                                                                          \
        int64_t q_main, q_epi;                                                 \
        bn_dk_ofast_lane_bounds(spatial, wide, &q_main, &q_epi);               \
        const int w = wide ? 8 : 4;                                            \
        T lanes[8] = {0};                                                      \
        for (int64_t s = 0; s < q_main; s += w)                                \
            for (int k = 0; k < w; ++k) {                                      \
                const T v = b ? a[s + k] * b[s + k] : a[s + k];                \
                lanes[k] += v;                                                 \
            }                                                                  \
        for (int k = 0; k < 4; ++k)                                            \
            four[k] = bn_dk_ofast_fold_##SUF(lanes, wide, k);                  \
        for (int64_t s = q_main; s < q_epi; s += 4)                            \
            for (int k = 0; k < 4; ++k) {                                      \
                const T v = b ? a[s + k] * b[s + k] : a[s + k];                \
                four[k] += v;                                                  \
            }                                                                  \
        return q_epi;                                                          \
    }                                                                          \
    /* normalize_delta_cpu's mean term: fl(mean_delta * fl(1 / fl(n))), */    \
    /* where the strict build divides, fl(mean_delta / fl(n)) */               \
    BN_FORMULA T bn_dk_ofast_inv_n_##SUF(int64_t n)                            \
    {                                                                          \
        return (T)1 / (T)n;                                                    \
    }                                                                          \
    BN_FORMULA double bn_dk_ofast_mean_term_##SUF(T mean_delta, T inv_n)       \
    {                                                                          \
        return (double)(T)(mean_delta * inv_n);                                \
    }

BN_DARKNET_OFAST_FORMULAS(float, f32)
BN_DARKNET_OFAST_FORMULAS(double, f64)
#undef BN_DARKNET_OFAST_FORMULAS

#endif
