/* Streaming (non-temporal) stores for large outputs.
 *
 * A store to a line that is not in cache first reads the line from memory
 * (to own it) and writes it back later: writing an output costs two
 * transfers of it where one would do. A non-temporal store writes whole
 * lines without reading them and without keeping them in cache. For an
 * output larger than the cache, which could not stay there anyway, that
 * saves the read; for a small one it would throw away lines the next
 * kernel reads, hence the threshold. Measured on Zen 5 (y = x*a + b over
 * 25.7 and 51 MB): 10-20 % faster with 64-byte streaming stores, slower
 * with 16-byte ones, so only CPUs with AVX-512 stream.
 *
 * The kernels compute their output a tile at a time into a buffer in L1
 * and copy it out with bn_stream_copy (loops.h, BN_WRITE_OUTPUT): the
 * values, and so the bits, are the same either way.
 *
 * Off by default: on Zen 5 some placements of x relative to y (in pages)
 * ran slower streamed, once 2x, for a reason not found (4 KB aliasing of
 * x's loads with the pending streaming stores is a guess). The NHWC
 * kernels, tried the same way, ran slower streamed at some channel counts
 * (1024 channels: 1.4x slower), so they never stream. */
#include <string.h>

#include "bnkernels.h"
#include "loops.h"

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define BN_STREAM_X86 1
#include <immintrin.h>
#endif

#if defined(__STDC_VERSION__) && __STDC_VERSION__ >= 201112L && \
    !defined(__STDC_NO_ATOMICS__)
#include <stdatomic.h>
static _Atomic int64_t stream_min_bytes = -1;  /* off until asked */
#else
static volatile int64_t stream_min_bytes = -1;
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
#if defined(BN_STREAM_X86)
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

#if defined(BN_STREAM_X86)
__attribute__((target("avx512f")))
static void stream_lines(char *dst, const char *src, int64_t lines)
{
    for (int64_t i = 0; i < lines; ++i)
        _mm512_stream_si512((void *)(dst + 64 * i),
                            _mm512_load_si512((const void *)(src + 64 * i)));
}
#endif

/* dst[0, bytes) = src[0, bytes): whole 64-byte lines by streaming stores
 * (dst and src 64-byte aligned), the rest by ordinary ones. */
void bn_stream_copy(void *dst, const void *src, int64_t bytes)
{
    int64_t done = 0;
#if defined(BN_STREAM_X86)
    done = bytes / 64 * 64;
    stream_lines((char *)dst, (const char *)src, bytes / 64);
#endif
    memcpy((char *)dst + done, (const char *)src + done, (size_t)(bytes - done));
}

/* Orders a thread's streaming stores before anything it does next (they
 * are weakly ordered): each worker calls it once, after its last copy. */
void bn_stream_fence(void)
{
#if defined(BN_STREAM_X86)
    _mm_sfence();
#endif
}
