/* Sums in fixed lanes and channel blocks (the fast tier; private to csrc/). */
#ifndef BNKERNELS_LANES_H
#define BNKERNELS_LANES_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "compiler.h"
#include "dispatch.h"
#include "parallel.h"

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
 * Each is fast only where it fits: without 64-byte registers a compiler
 * keeps a bn_v8d in memory and moves it through the stack on every add,
 * and with them the split form issues twice the instructions. standard_sums.inc is written once for either;
 * SUMS_CALL (below) picks the form at run time. LOAD(p) widens p[0..7] to
 * double; SUM adds the lanes in one fixed order. Other compilers, or
 * -DBNKERNELS_NO_VECTOR_EXT, get plain scalar loops instead. */
#if (defined(__GNUC__) || defined(__clang__)) && !defined(_MSC_VER) && \
    !defined(BNKERNELS_NO_VECTOR_EXT)
#define BN_VECTOR8 1
typedef double bn_v8d __attribute__((vector_size(64)));
typedef double bn_v4d __attribute__((vector_size(32)));
typedef struct { bn_v4d h[2]; } bn_v8s;  /* lane j: h[j / 4][j % 4] */
/* eight floats, and their lanes as integers (for masks); BN_CONVERT8:
 * __builtin_convertvector, lane by lane conversions between them and
 * bn_v8d (GCC 9, Clang) */
typedef float bn_v8f __attribute__((vector_size(32)));
typedef int bn_v8fi __attribute__((vector_size(32)));
#if defined(__clang__) || __GNUC__ >= 9
#define BN_CONVERT8 1
#endif

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

/* Transposed tiles, for the Darknet sums (darknet.inc). A tile is L rows of
 * L / 2 consecutive values, L = 64 bytes / sizeof(T) (16 floats in a
 * bn_v16f, 8 doubles in a bn_v8d), transposed: vector k holds value k of
 * every row, row j in lane j. A channel's sum taken over vectors k = 0, 1,
 * ... in order is then the same chain of adds, in lane j for row j, as a
 * scalar loop over k.
 *
 * The transpose is the classic one: two rows loaded into each vector,
 * shuffles within 128-bit blocks (unpack, then pairs; for doubles unpack
 * alone), and a last stage that takes whole blocks (0 and 2, or 1 and 3, of
 * two vectors). The rows are paired at the load so that this last stage puts
 * them in order; the comments in each function say what every block holds.
 * BN_TILES: compiled (the one-vector form, and __builtin_shufflevector, GCC
 * 12 or Clang); darknet.inc uses it where BN_WIDE8(). */
#if defined(BN_HAS_WIDE8) && defined(BN_CONVERT8) && \
    (defined(__clang__) || __GNUC__ >= 12)
#define BN_TILES 1
typedef float bn_v16f __attribute__((vector_size(64)));

#define BN_SHUFFLE __builtin_shufflevector
/* per 128-bit block q of a and b (indices 16 on, 8 on: b):
 * UNPACK_LO: a[4q] b[4q] a[4q+1] b[4q+1], UNPACK_HI: a[4q+2] b[4q+2] ...;
 * PAIRS_LO: a[4q] a[4q+1] b[4q] b[4q+1], PAIRS_HI: a[4q+2] a[4q+3] b[..];
 * BLOCKS_02: blocks 0 and 2 of a, then of b; BLOCKS_13: blocks 1 and 3 */
#define BN_UNPACK_LO16 0, 16, 1, 17, 4, 20, 5, 21, 8, 24, 9, 25, 12, 28, 13, 29
#define BN_UNPACK_HI16 2, 18, 3, 19, 6, 22, 7, 23, 10, 26, 11, 27, 14, 30, 15, 31
#define BN_PAIRS_LO16 0, 1, 16, 17, 4, 5, 20, 21, 8, 9, 24, 25, 12, 13, 28, 29
#define BN_PAIRS_HI16 2, 3, 18, 19, 6, 7, 22, 23, 10, 11, 26, 27, 14, 15, 30, 31
#define BN_BLOCKS_02_16 0, 1, 2, 3, 8, 9, 10, 11, 16, 17, 18, 19, 24, 25, 26, 27
#define BN_BLOCKS_13_16 4, 5, 6, 7, 12, 13, 14, 15, 20, 21, 22, 23, 28, 29, 30, 31
/* doubles: a block is two lanes; UNPACK_LO: a[2q] b[2q], UNPACK_HI:
 * a[2q+1] b[2q+1] */
#define BN_UNPACK_LO8 0, 8, 2, 10, 4, 12, 6, 14
#define BN_UNPACK_HI8 1, 9, 3, 11, 5, 13, 7, 15
#define BN_BLOCKS_02_8 0, 1, 4, 5, 8, 9, 12, 13
#define BN_BLOCKS_13_8 2, 3, 6, 7, 10, 11, 14, 15

/* v[k] lane j = p[j * stride + k], k < 8, j < 16 */
static inline __attribute__((always_inline)) void
bn_tile16f(const float *p, int64_t stride, bn_v16f *v)
{
    bn_v16f r[8], t[8], u[8];
    /* r[i]: row i's 8 values, then row i + 4's (i < 4); rows i + 4 and
     * i + 8 (i >= 4). Blocks: values 0-3, 4-7 of the first, of the second. */
    for (int i = 0; i < 8; ++i) {
        const int64_t row = i < 4 ? i : i + 4;
        bn_v8f lo, hi;
        memcpy(&lo, p + row * stride, sizeof lo);
        memcpy(&hi, p + (row + 4) * stride, sizeof hi);
        r[i] = BN_SHUFFLE(lo, hi, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12,
                          13, 14, 15);
    }
    /* t[2m], t[2m + 1]: values 0-1, 2-3 (of each block's four) of the rows
     * of r[2m] and r[2m + 1], interleaved */
    for (int m = 0; m < 4; ++m) {
        t[2 * m] = BN_SHUFFLE(r[2 * m], r[2 * m + 1], BN_UNPACK_LO16);
        t[2 * m + 1] = BN_SHUFFLE(r[2 * m], r[2 * m + 1], BN_UNPACK_HI16);
    }
    /* u[g + k], k < 4: value k (block 0: rows g'..g'+3, g' = 0 or 8),
     * value k + 4 (block 1), then the same for rows g' + 4 .. g' + 7 */
    for (int g = 0; g < 8; g += 4) {
        u[g] = BN_SHUFFLE(t[g], t[g + 2], BN_PAIRS_LO16);
        u[g + 1] = BN_SHUFFLE(t[g], t[g + 2], BN_PAIRS_HI16);
        u[g + 2] = BN_SHUFFLE(t[g + 1], t[g + 3], BN_PAIRS_LO16);
        u[g + 3] = BN_SHUFFLE(t[g + 1], t[g + 3], BN_PAIRS_HI16);
    }
    for (int k = 0; k < 4; ++k) {
        v[k] = BN_SHUFFLE(u[k], u[k + 4], BN_BLOCKS_02_16);
        v[k + 4] = BN_SHUFFLE(u[k], u[k + 4], BN_BLOCKS_13_16);
    }
}

/* v[k] lane j = p[j * stride + k], k < 4, j < 8 */
static inline __attribute__((always_inline)) void
bn_tile8d(const double *p, int64_t stride, bn_v8d *v)
{
    bn_v8d r[4], t[4];
    /* r[i]: rows (0, 2), (1, 3), (4, 6), (5, 7), four values each; blocks:
     * values 0-1, 2-3 of the first row, of the second */
    for (int i = 0; i < 4; ++i) {
        const int64_t row = (i & 1) + 4 * (i >> 1);
        bn_v4d lo, hi;
        memcpy(&lo, p + row * stride, sizeof lo);
        memcpy(&hi, p + (row + 2) * stride, sizeof hi);
        r[i] = BN_SHUFFLE(lo, hi, 0, 1, 2, 3, 4, 5, 6, 7);
    }
    /* t[2m]: values 0 (blocks 0, 2) and 2 (blocks 1, 3) of two rows
     * side by side; t[2m + 1]: values 1 and 3 */
    for (int m = 0; m < 2; ++m) {
        t[2 * m] = BN_SHUFFLE(r[2 * m], r[2 * m + 1], BN_UNPACK_LO8);
        t[2 * m + 1] = BN_SHUFFLE(r[2 * m], r[2 * m + 1], BN_UNPACK_HI8);
    }
    v[0] = BN_SHUFFLE(t[0], t[2], BN_BLOCKS_02_8);
    v[1] = BN_SHUFFLE(t[1], t[3], BN_BLOCKS_02_8);
    v[2] = BN_SHUFFLE(t[0], t[2], BN_BLOCKS_13_8);
    v[3] = BN_SHUFFLE(t[1], t[3], BN_BLOCKS_13_8);
}

/* Darknet's variance step, acc = fl_T(double(acc) + d * d) with d exact in
 * double, lane by lane. The accumulator (bn_w16f) holds 16 float lanes as
 * doubles, each rounded to float after every step (the value is the float
 * acc exactly); BN_NARROW16F gives the floats. Double lanes (bn_v8d) need
 * no conversion. (Statement macros: a function taking or returning a 64-byte
 * vector would change the ABI in the baseline clone.) */
typedef struct { bn_v8d h[2]; } bn_w16f;  /* lanes 0-7, 8-15 */
/* eight floats to doubles: the conversion written for 16 lanes, the upper
 * eight zero and dropped (GCC 12 splits an eight-lane one into halves) */
typedef double bn_v16d __attribute__((vector_size(128)));
#define BN_WIDEN8F(f)                                                          \
    __extension__({                                                           \
        const bn_v16d w_ = __builtin_convertvector(                            \
            __builtin_shufflevector((f), (bn_v8f){0}, 0, 1, 2, 3, 4, 5, 6, 7,  \
                                    8, 9, 10, 11, 12, 13, 14, 15),             \
            bn_v16d);                                                          \
        __builtin_shufflevector(w_, w_, 0, 1, 2, 3, 4, 5, 6, 7);               \
    })
#define BN_SQUARE_ADD16F(acc, d)                                               \
    do {                                                                       \
        const bn_v16f d_ = (d);                                                \
        const bn_v8d d_lo_ =                                                   \
            BN_WIDEN8F(__builtin_shufflevector(d_, d_, 0, 1, 2, 3, 4, 5, 6, 7)); \
        const bn_v8d d_hi_ = BN_WIDEN8F(                                       \
            __builtin_shufflevector(d_, d_, 8, 9, 10, 11, 12, 13, 14, 15));    \
        const bn_v8d lo_ = (acc).h[0] + d_lo_ * d_lo_;                         \
        const bn_v8d hi_ = (acc).h[1] + d_hi_ * d_hi_;                         \
        (acc).h[0] = BN_WIDEN8F(__builtin_convertvector(lo_, bn_v8f));         \
        (acc).h[1] = BN_WIDEN8F(__builtin_convertvector(hi_, bn_v8f));         \
    } while (0)
#define BN_NARROW16F(acc)                                                      \
    __builtin_shufflevector(__builtin_convertvector((acc).h[0], bn_v8f),       \
                            __builtin_convertvector((acc).h[1], bn_v8f), 0, 1, \
                            2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15)
#define BN_SQUARE_ADD8D(acc, d)                                                \
    do {                                                                       \
        const bn_v8d d_ = (d);                                                 \
        (acc) = (acc) + d_ * d_;                                               \
    } while (0)
#define BN_NARROW8D(acc) (acc)
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
