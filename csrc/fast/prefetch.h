/* Software prefetch hints (the fast tier; private to csrc/). */
#ifndef BNKERNELS_PREFETCH_H
#define BNKERNELS_PREFETCH_H

#include <stddef.h>

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
 * buffers and evicting the block in use (docs/design/kernels.md). */
#define BN_PREFETCH_L2(p, bytes) BN_PREFETCH_LINES(p, bytes, 2)

#endif
