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
