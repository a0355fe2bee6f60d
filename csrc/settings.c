/* When the fast tier streams its outputs (bnkernels.h: bn_set_stream_min_bytes).
 * A reference-only build (BNKERNELS_REFERENCE_ONLY) never streams. */
#include <stdint.h>

#include "bnkernels.h"
#ifndef BNKERNELS_REFERENCE_ONLY
#include "fast/stream.h"
#endif

#if defined(__STDC_VERSION__) && __STDC_VERSION__ >= 201112L && \
    !defined(__STDC_NO_ATOMICS__)
#include <stdatomic.h>
static _Atomic int64_t stream_min_bytes = BN_STREAM_DEFAULT_MIN_BYTES;
#else
static volatile int64_t stream_min_bytes = BN_STREAM_DEFAULT_MIN_BYTES;
#endif

void bn_set_stream_min_bytes(int64_t bytes)
{
    stream_min_bytes = bytes < 0 ? -1 : bytes;
}

int64_t bn_get_stream_min_bytes(void)
{
    return stream_min_bytes;
}

int bn_stream_available(void)
{
#if defined(BN_STREAM_KERNELS) && !defined(BNKERNELS_REFERENCE_ONLY)
    return __builtin_cpu_supports("avx512f");
#else
    return 0;
#endif
}

int bn_stream_output(int64_t bytes)
{
    const int64_t min_bytes = stream_min_bytes;
    return min_bytes >= 0 && bytes >= min_bytes && bytes > 0 &&
           bn_stream_available();
}
