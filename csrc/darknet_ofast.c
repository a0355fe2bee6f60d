/*
 * Darknet's backward as its default -Ofast build computes it (GCC, x86-64,
 * SSE2 baseline), bit for bit, for float32 and float64 (the same order in
 * double). Only three things differ from the strict build (darknet.inc);
 * everything else here follows darknet.inc's order exactly:
 *
 *   backward_scale_cpu (src/batchnorm_layer.c:72 pjreddie, :91 AlexeyAB) and
 *   sum_array (src/utils.c:479 pjreddie, :618 AlexeyAB, which backward_bias
 *   calls) sum each (b, c) row of S = H*W values in four lanes, and
 *   normalize_delta_cpu (src/batchnorm_layer.c:124 pjreddie, :143 AlexeyAB)
 *   divides mean_delta by n as a multiply by the float reciprocal of n.
 *
 * The lane order, for one row p[0..S-1] with Q = 4 * floor(S / 4):
 *   lane_j = sum_{k < Q/4} p[4k + j]   (each a running sum from +0, j = 0..3)
 *   ROW4(p) = (lane_0 + lane_2) + (lane_1 + lane_3)   if S >= 4
 * backward_scale_cpu: acc = fl(acc + ROW4(p_b)), then acc += p_b[Q..S-1] one
 *   by one, for b = 0..batch-1; S < 4: acc += p_b[s] one by one (no lanes).
 * sum_array: row_b = ROW4(p_b) + p_b[Q] + ... + p_b[S-1] left to right
 *   (S < 4: the running sum from +0), then bias_updates += row_b in order of b.
 * normalize_delta_cpu: the mean term is fl(mean_delta * fl(1 / fl(n))),
 *   not fl(mean_delta / fl(n)).
 *
 * The lanes are written out as arrays so that this order does not depend on
 * the compiler: compile without fast-math and with -ffp-contract=off, as
 * darknet.c.
 */
#include <math.h>

#include "bnkernels.h"
#include "dispatch.h"
#include "loops.h"

/* lanes of one row: (l[0] + l[2]) + (l[1] + l[3]) */
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
