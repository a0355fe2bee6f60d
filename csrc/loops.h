/* Loop helpers of the kernels (private to csrc/). */
#ifndef BNKERNELS_LOOPS_H
#define BNKERNELS_LOOPS_H

#include <stddef.h>
#include <stdint.h>

/* BN_INLINE: helpers that must be inlined into each SIMD clone of their
 * caller (dispatch.h); a call to an out-of-line copy would run baseline code. */
#if defined(__GNUC__) || defined(__clang__)
#define BN_INLINE static inline __attribute__((always_inline))
#else
#define BN_INLINE static inline
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

/* Eight doubles as one value, for the standard family's sums (GCC and Clang
 * vector extensions; each lane is an ordinary IEEE double, so the result is
 * the same whatever SIMD width the compiler maps it to: one AVX-512
 * register, two AVX2 or four SSE2 ones). LOAD8(p) widens p[0..7] to double.
 * Other compilers, or -DBNKERNELS_NO_VECTOR_EXT, get plain scalar loops
 * instead. */
#if (defined(__GNUC__) || defined(__clang__)) && !defined(BNKERNELS_NO_VECTOR_EXT)
#define BN_VECTOR8 1
typedef double bn_v8d __attribute__((vector_size(64)));
#define LOAD8(p)                                                               \
    ((bn_v8d){(double)(p)[0], (double)(p)[1], (double)(p)[2], (double)(p)[3], \
              (double)(p)[4], (double)(p)[5], (double)(p)[6], (double)(p)[7]})
#define SPLAT8(v) ((bn_v8d){(v), (v), (v), (v), (v), (v), (v), (v)})
#define SUM8(v)                                                                \
    ((((v)[0] + (v)[1]) + ((v)[2] + (v)[3])) +                                 \
     (((v)[4] + (v)[5]) + ((v)[6] + (v)[7])))
#endif

/* BN_PREFETCH(p, bytes): asks for the cache lines of [p, p + bytes) ahead
 * of their use, where a loop's own reads would leave the memory idle (the
 * second pass over a block in cache). A hint: no effect on any result.
 * BN_PREFETCH_BYTES: how far ahead a second pass looks, at least. */
#define BN_PREFETCH_BYTES 4096
#if defined(__GNUC__) || defined(__clang__)
#define BN_PREFETCH(p, bytes)                                                  \
    for (size_t o_ = 0; o_ < (size_t)(bytes); o_ += 64)                       \
        __builtin_prefetch((const char *)(p) + o_)
#else
#define BN_PREFETCH(p, bytes) ((void)0)
#endif

/* FOR_ROWS(r, c, r_lo, r_hi): the (b, c) rows r = b * channels + c in
 * [r_lo, r_hi), with c = r % channels kept up to date without a division per
 * row (a 64-bit division costs as much as a short row's arithmetic). An
 * empty range divides by nothing: channels may be 0 then. */
#define FOR_ROWS(r, c, r_lo, r_hi)                                             \
    for (int64_t r = (r_lo), c = (r_lo) < (r_hi) ? (r_lo) % channels : 0;      \
         r < (r_hi); ++r, c = (c + 1 == channels ? 0 : c + 1))

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
