/*
 * Darknet's backward as GCC's -Ofast builds of it compute it, bit for bit,
 * for float32 and float64 (the same order in double). Only three things
 * differ from the strict build (darknet.inc); everything else here follows
 * darknet.inc's order exactly:
 *
 *   backward_scale_cpu (src/batchnorm_layer.c:72 pjreddie, :91 AlexeyAB) and
 *   sum_array (src/utils.c:479 pjreddie, :618 AlexeyAB, which backward_bias
 *   calls) sum each (b, c) row of S = H*W values in lanes, and
 *   normalize_delta_cpu (src/batchnorm_layer.c:124 pjreddie, :143 AlexeyAB)
 *   divides mean_delta by n as a multiply by the float reciprocal of n.
 *
 * The lane order of one row p[0..S-1], in two forms:
 *   4 lanes (bn_dk_ofast_*: -Ofast, SSE2 baseline, each fork's Makefile):
 *     q = 4 * floor(S / 4) if S >= 4, else 0 (no lanes);
 *     lane_k = sum_{m < q/4} p[4m + k]   (running sums from +0, k = 0..3)
 *   8 lanes (bn_dk_ofast_avx_*: -Ofast -mavx -mavx2, AlexeyAB's CMake):
 *     Q = 8 * floor(S / 8) if S >= 8, else 0;
 *     e_k = sum_{m < Q/8} p[8m + k] (running sums from +0, k = 0..7),
 *     lane_k = e_k + e_(k+4) (k = 0..3),
 *     then if S - Q >= 4: lane_k += p[Q + k] and q = Q + 4, else q = Q;
 *   ROW(p) = (lane_0 + lane_2) + (lane_1 + lane_3)   if q > 0
 * backward_scale_cpu: acc = fl(acc + ROW(p_b)) if q > 0, then acc += p_b[s]
 *   for s = q..S-1 one by one, for b = 0..batch-1.
 * sum_array: row_b = ROW(p_b) + p_b[q] + ... + p_b[S-1] left to right (q = 0:
 *   the running sum from +0), then bias_updates += row_b in order of b.
 * normalize_delta_cpu: the mean term is fl(mean_delta * fl(1 / fl(n))),
 *   not fl(mean_delta / fl(n)) (both forms).
 *
 * The lanes are written out as arrays so that this order does not depend on
 * the compiler: compile without fast-math and with -ffp-contract=off, as
 * darknet.c.
 */
#include <math.h>

#include "bnkernels.h"
#include "dispatch.h"
#include "loops.h"

/* ROW of four lanes: (l[0] + l[2]) + (l[1] + l[3]) */
#define ROW4(l) (((l)[0] + (l)[2]) + ((l)[1] + (l)[3]))

#define T float
#define NAME(f) f##_f32
#include "darknet_ofast.inc"
#undef T
#undef NAME

#define T double
#define NAME(f) f##_f64
#include "darknet_ofast.inc"
#undef T
#undef NAME
