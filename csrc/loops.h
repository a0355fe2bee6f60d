/* Loop helpers of the kernels (private to csrc/). */
#ifndef BNKERNELS_LOOPS_H
#define BNKERNELS_LOOPS_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "dispatch.h"

/* BN_INLINE: helpers that must be inlined into each SIMD clone of their
 * caller (dispatch.h); a call to an out-of-line copy would run baseline code. */
#if defined(__GNUC__) || defined(__clang__)
#define BN_INLINE static inline __attribute__((always_inline))
#else
#define BN_INLINE static inline
#endif

/* BN_RESTRICT: C99's restrict, which MSVC spells __restrict (its C mode
 * has no restrict keyword before /std:c11, and C++ has none). */
#if defined(_MSC_VER) || defined(__cplusplus)
#define BN_RESTRICT __restrict
#else
#define BN_RESTRICT restrict
#endif

/* A channel's reduction is one chain of dependent adds, limited by the add's
 * latency. Reducing CB channels at once, each in its own accumulator, runs CB
 * independent chains that overlap in the CPU's pipelines, and changes no
 * channel's order of operations.
 *
 * FOR_CHANNEL_BLOCKS(c, width, c_lo, c_hi, CALL) runs CALL for c = c_lo,
 * c_lo + CB, ... with the constant width = CB, then for each leftover channel
 * below c_hi with width = 1. A *_block helper called as CALL is inlined and
 * specialized for both widths, so full blocks and leftovers share one body. */
#define CB 8
#define FOR_CHANNEL_BLOCKS(c, width, c_lo, c_hi, CALL)                         \
    {                                                                          \
        int64_t c = (c_lo);                                                    \
        for (; c + CB <= (c_hi); c += CB) { const int width = CB; CALL; }     \
        for (; c < (c_hi); ++c) { const int width = 1; CALL; }                \
    }

/* Eight doubles in fixed lanes, for the standard family's sums (GCC and
 * Clang vector extensions; each lane is an ordinary IEEE double, so a sum
 * gives the same bits whatever registers hold it). Two forms of the same
 * eight lanes, with the same operations:
 *   W8_*: one 64-byte vector (bn_v8d), one AVX-512 register;
 *   S8_*: two 32-byte halves (bn_v8s: lanes 0-3, then 4-7), two AVX2
 *         registers or four SSE2 ones.
 * Each is fast only where it fits: without 64-byte registers GCC 12 keeps a
 * bn_v8d in memory and moves it through the stack on every add (5-9x slower
 * than the split form under AVX2), and with them the split form issues
 * twice the instructions. standard_sums.inc is written once for either;
 * SUMS_CALL (below) picks the form at run time. LOAD(p) widens p[0..7] to
 * double; SUM adds the lanes in one fixed order. Other compilers, or
 * -DBNKERNELS_NO_VECTOR_EXT, get plain scalar loops instead. */
#if (defined(__GNUC__) || defined(__clang__)) && !defined(BNKERNELS_NO_VECTOR_EXT)
#define BN_VECTOR8 1
typedef double bn_v8d __attribute__((vector_size(64)));
typedef double bn_v4d __attribute__((vector_size(32)));
typedef struct { bn_v4d h[2]; } bn_v8s;  /* lane j: h[j / 4][j % 4] */

#define W8_LOAD(p)                                                             \
    ((bn_v8d){(double)(p)[0], (double)(p)[1], (double)(p)[2], (double)(p)[3], \
              (double)(p)[4], (double)(p)[5], (double)(p)[6], (double)(p)[7]})
#define W8_SPLAT(v) ((bn_v8d){(v), (v), (v), (v), (v), (v), (v), (v)})
#define W8_ADD(a, b) ((a) + (b))
#define W8_SUB(a, b) ((a) - (b))
#define W8_MUL(a, b) ((a) * (b))
#define W8_LANE(v, j) ((v)[j])
/* STORE(p, v): the eight lanes to doubles p[0..7], as whole vectors */
#define W8_STORE(p, v) memcpy((p), &(v), sizeof(bn_v8d))

#define S8_LOAD(p)                                                             \
    ((bn_v8s){{{(double)(p)[0], (double)(p)[1], (double)(p)[2], (double)(p)[3]}, \
               {(double)(p)[4], (double)(p)[5], (double)(p)[6], (double)(p)[7]}}})
/* (a statement expression: GCC 12 takes a compound literal of a variable
 * for maybe uninitialized, wrongly, under -Wall) */
#define S8_SPLAT(v)                                                            \
    __extension__({                                                           \
        const double v_ = (v);                                                 \
        (bn_v8s){{(bn_v4d){v_, v_, v_, v_}, (bn_v4d){v_, v_, v_, v_}}};        \
    })
#define S8_ADD(a, b) ((bn_v8s){{(a).h[0] + (b).h[0], (a).h[1] + (b).h[1]}})
#define S8_SUB(a, b) ((bn_v8s){{(a).h[0] - (b).h[0], (a).h[1] - (b).h[1]}})
#define S8_MUL(a, b) ((bn_v8s){{(a).h[0] * (b).h[0], (a).h[1] * (b).h[1]}})
#define S8_LANE(v, j) ((v).h[(j) / 4][(j) % 4])
#define S8_STORE(p, v)                                                         \
    (memcpy((p), &(v).h[0], sizeof(bn_v4d)),                                   \
     memcpy((p) + 4, &(v).h[1], sizeof(bn_v4d)))

/* the lanes' sum, ((0+1) + (2+3)) + ((4+5) + (6+7)), for either form */
#define SUM8(LANE, v)                                                          \
    (((LANE(v, 0) + LANE(v, 1)) + (LANE(v, 2) + LANE(v, 3))) +                 \
     ((LANE(v, 4) + LANE(v, 5)) + (LANE(v, 6) + LANE(v, 7))))

/* SUM8 of eight one-vector sums at once: lane k of the result is
 * SUM8(W8_LANE, v[k]), the same tree, built by adding neighbouring lanes
 * three times over (each step pairs lanes (2i, 2i+1) of two vectors), so
 * eight short rows pay about 21 vector operations instead of 8 x 14 scalar
 * ones. */
#if defined(__clang__) || (defined(__GNUC__) && __GNUC__ >= 12)
#define W8_SHUFFLE(a, b, ...) __builtin_shufflevector((a), (b), __VA_ARGS__)
#else
typedef long long bn_v8i __attribute__((vector_size(64)));
#define W8_SHUFFLE(a, b, ...) __builtin_shuffle((a), (b), (bn_v8i){__VA_ARGS__})
#endif
#define BN_PAIR_SUMS(a, b)                                                     \
    (W8_SHUFFLE(a, b, 0, 2, 4, 6, 8, 10, 12, 14) +                             \
     W8_SHUFFLE(a, b, 1, 3, 5, 7, 9, 11, 13, 15))
static inline __attribute__((always_inline)) void bn_sum8_rows(const bn_v8d *v,
                                                               bn_v8d *sums)
{
    /* lanes 2k and 2k + 1: (0+1)+(2+3) and (4+5)+(6+7) of row k, rows 0-3,
     * then rows 4-7 */
    const bn_v8d rows0_3 = BN_PAIR_SUMS(BN_PAIR_SUMS(v[0], v[1]),
                                        BN_PAIR_SUMS(v[2], v[3]));
    const bn_v8d rows4_7 = BN_PAIR_SUMS(BN_PAIR_SUMS(v[4], v[5]),
                                        BN_PAIR_SUMS(v[6], v[7]));
    *sums = BN_PAIR_SUMS(rows0_3, rows4_7);
}

/* BN_WIDE8(): whether the running CPU takes the one-vector form. With
 * SIMD clones (dispatch.h) it is the loader's own test for the avx512f
 * clone, so each clone runs the form its registers hold; without them the
 * build's target decides. BN_HAS_WIDE8: the one-vector form is compiled. */
#if defined(BN_SIMD_CLONES_ENABLED)
#define BN_HAS_WIDE8 1
#define BN_WIDE8() __builtin_cpu_supports("avx512f")
#elif defined(__AVX512F__)
#define BN_HAS_WIDE8 1
#define BN_WIDE8() 1
#endif
#endif
#ifndef BN_HAS_WIDE8
#define BN_WIDE8() 0
#endif

/* SUMS_CALL(wide, f, ...): standard_sums.inc's helper f in the form that
 * `wide` (a BN_WIDE8() read once per call of a worker) names. */
#ifdef BN_HAS_WIDE8
#define SUMS_CALL(wide, f, ...)                                                \
    do {                                                                       \
        if (wide)                                                              \
            NAME(f##_wide)(__VA_ARGS__);                                       \
        else                                                                   \
            NAME(f##_split)(__VA_ARGS__);                                      \
    } while (0)
#else
#define SUMS_CALL(wide, f, ...) ((void)(wide), NAME(f##_split)(__VA_ARGS__))
#endif

/* BN_PREFETCH(p, bytes): asks for the cache lines of [p, p + bytes) ahead
 * of their use, where a loop's own reads would leave the memory idle (the
 * second pass over a block in cache). A hint: no effect on any result.
 * BN_PREFETCH_BYTES: how far ahead a second pass looks, at least. */
#define BN_PREFETCH_BYTES 4096
#if defined(__GNUC__) || defined(__clang__)
/* the lines of [p, p + bytes), with __builtin_prefetch's locality hint */
#define BN_PREFETCH_LINES(p, bytes, locality)                                  \
    for (size_t o_ = 0; o_ < (size_t)(bytes); o_ += 64)                       \
        __builtin_prefetch((const char *)(p) + o_, 0, locality)
#else
#define BN_PREFETCH_LINES(p, bytes, locality) ((void)0)
#endif
#define BN_PREFETCH(p, bytes) BN_PREFETCH_LINES(p, bytes, 3)
/* BN_PREFETCH_L2: the same, into the L2 cache and not the L1, for the NHWC
 * reductions, which ask for the next block a strip (a few lines per row) at
 * a time: the lines wait in the L2 instead of holding the L1's miss
 * buffers and evicting the block in use. On a Zen 4 core (32 KB L1), one
 * thread, NHWC statistics at (64,256,28,28): float32 4.4-5.0 -> 3.1-3.8 ms,
 * float64 7.7-8.3 -> 4.4-6.1; at (32,64,56,56) float32 1.8-1.9 -> 1.45-1.49,
 * float64 4.0-4.2 -> 2.5-3.1, and the backward sums there float64 6.6-7.0
 * -> 4.5-4.6. (NCHW keeps BN_PREFETCH: it was measured on Zen 5 with it.) */
#define BN_PREFETCH_L2(p, bytes) BN_PREFETCH_LINES(p, bytes, 2)

/* FOR_ROWS(r, c, r_lo, r_hi): the (b, c) rows r = b * channels + c in
 * [r_lo, r_hi), with c = r % channels kept up to date without a division per
 * row (a 64-bit division costs as much as a short row's arithmetic). An
 * empty range divides by nothing: channels may be 0 then. */
#define FOR_ROWS(r, c, r_lo, r_hi)                                             \
    for (int64_t r = (r_lo), c = (r_lo) < (r_hi) ? (r_lo) % channels : 0;      \
         r < (r_hi); ++r, c = (c + 1 == channels ? 0 : c + 1))

/* Streaming stores (stream.c): outputs of at least bn_get_stream_min_bytes()
 * bytes, on CPUs with 64-byte streaming stores, bypass the cache. A kernel
 * that streams writes the elements [e_lo, e_hi) of its range in three
 * spans (bn_stream_span): the partial 64-byte line at each end with its
 * ordinary loop, and the whole lines between by its bn_stream_* twin,
 * which needs rows (NCHW: H * W values) of one vector at least. */
#define BN_STREAM_MIN_ROW_VALUES 16
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define BN_STREAM_KERNELS 1  /* the bn_stream_* twins exist (AVX-512F code) */
#endif
int bn_stream_output(int64_t bytes);
void bn_stream_normalize_affine_f32(const float *x, const double *mean,
                                    const double *invstd, const float *weight,
                                    const float *bias, int64_t channels,
                                    int64_t spatial, int relu, int64_t e_lo,
                                    int64_t e_hi, float *y);
void bn_stream_normalize_affine_f64(const double *x, const double *mean,
                                    const double *invstd, const double *weight,
                                    const double *bias, int64_t channels,
                                    int64_t spatial, int relu, int64_t e_lo,
                                    int64_t e_hi, double *y);
void bn_stream_normalize_affine_nhwc4_f32(const float *x, const double *ca,
                                          const double *co, int64_t channels,
                                          int relu, int64_t e_lo, int64_t e_hi,
                                          int64_t stride, int descending,
                                          float *y);
void bn_stream_normalize_affine_nhwc4_f64(const double *x, const double *cm,
                                          const double *ca, const double *cs,
                                          int64_t channels, int relu,
                                          int64_t e_lo, int64_t e_hi,
                                          int64_t stride, int descending,
                                          double *y);
void bn_stream_backward_dx_nhwc4_f32(const float *dy, const float *x,
                                     const float *ta, const float *tm,
                                     const float *tq, const float *tp,
                                     int64_t channels, int64_t e_lo,
                                     int64_t e_hi, int64_t stride, float *dx);
void bn_stream_backward_dx_nhwc4_f64(const double *dy, const double *x,
                                     const double *da, const double *dm,
                                     const double *dq, const double *dp,
                                     int64_t channels, int64_t e_lo,
                                     int64_t e_hi, int64_t stride, double *dx);
void bn_stream_backward_dx_f32(const float *dy, const float *x,
                               const float *terms, int64_t channels,
                               int64_t spatial, int64_t e_lo, int64_t e_hi,
                               float *dx);
void bn_stream_backward_dx_f64(const double *dy, const double *x,
                               const double *terms, int64_t channels,
                               int64_t spatial, int64_t e_lo, int64_t e_hi,
                               double *dx);

/* The whole 64-byte lines of out[e_lo, e_hi) (elements of `size` bytes):
 * [*s_lo, *s_hi), empty when out is not aligned to its element size. */
static inline void bn_stream_span(const void *out, int64_t size, int64_t e_lo,
                                  int64_t e_hi, int64_t *s_lo, int64_t *s_hi)
{
    const uintptr_t start = (uintptr_t)out + (uintptr_t)(e_lo * size);
    const int64_t past = (int64_t)(start % 64);
    *s_lo = *s_hi = e_lo;
    if ((uintptr_t)out % (uintptr_t)size)
        return;
    const int64_t first = e_lo + (past ? (64 - past) / size : 0);
    if (first >= e_hi)
        return;
    *s_lo = first;
    *s_hi = first + (e_hi - first) / (64 / size) * (64 / size);
}

/* BN_IVDEP before a loop: its iterations are independent (no element is
 * written by one and read by another), so the compiler may vectorize it
 * without checking its pointers for overlap at run time. */
#if defined(__clang__)
#define BN_IVDEP _Pragma("clang loop vectorize(assume_safety)")
#elif defined(__GNUC__)
#define BN_IVDEP _Pragma("GCC ivdep")
#else
#define BN_IVDEP
#endif

/* Threads. BN_PARALLEL_RANGES(items, work_per_item, lo, hi, CALL) splits the
 * items [0, items) into one contiguous range [lo, hi) per thread and runs
 * CALL on each. Items are independent units of a kernel (a channel, or a
 * (b, c) row) whose results do not depend on which thread computes them, so
 * every kernel gives the same bits for any number of threads. Jobs too small
 * to pay for threads (bn_threads_for) run on the calling thread. Without
 * OpenMP, CALL runs once over all items. */
#define BN_MIN_WORK_PER_THREAD 16384
int bn_threads_for(int64_t items, int64_t work_per_item);

#ifdef _OPENMP
#define BN_PARALLEL_RANGES(items, work_per_item, lo, hi, CALL)                 \
    {                                                                          \
        const int64_t items_ = (items);                                        \
        const int threads_ = bn_threads_for(items_, (work_per_item));          \
        if (threads_ <= 1) {                                                   \
            const int64_t lo = 0, hi = items_;                                 \
            CALL;                                                              \
        } else {                                                               \
            _Pragma("omp parallel for num_threads(threads_) schedule(static, 1)") \
            for (int t_ = 0; t_ < threads_; ++t_) {                            \
                const int64_t lo = items_ * t_ / threads_;                     \
                const int64_t hi = items_ * (t_ + 1) / threads_;               \
                CALL;                                                          \
            }                                                                  \
        }                                                                      \
    }
#else
#define BN_PARALLEL_RANGES(items, work_per_item, lo, hi, CALL)                 \
    {                                                                          \
        const int64_t lo = 0, hi = (items);                                    \
        (void)(work_per_item);                                                 \
        CALL;                                                                  \
    }
#endif

/* BN_PARALLEL_CHANNELS(channels, work_per_channel, lo, hi, CALL): the same
 * over channels, in ranges that start at multiples of CB, so each thread's
 * channels block as in a serial call. */
#define BN_PARALLEL_CHANNELS(channels, work_per_channel, lo, hi, CALL)         \
    BN_PARALLEL_RANGES(((channels) + CB - 1) / CB, CB * (work_per_channel),    \
                       block_lo_, block_hi_,                                   \
        {                                                                      \
            const int64_t lo = block_lo_ * CB;                                 \
            const int64_t hi = block_hi_ * CB < (channels) ? block_hi_ * CB    \
                                                           : (channels);       \
            CALL;                                                              \
        })

#endif
