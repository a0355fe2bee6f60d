/* Streaming (non-temporal) stores for large outputs.
 *
 * A store to a line that is not in cache first reads the line from memory
 * (to own it) and writes it back later: writing an output costs two
 * transfers of it where one would do. A non-temporal store writes whole
 * lines without reading them and without keeping them in cache. For an
 * output larger than the cache, which could not stay there anyway, that
 * saves the read; for a small one it would throw away lines the next
 * kernel reads, hence the threshold (bnkernels.h: 16 MiB by default).
 *
 * The kernels below compute the whole 64-byte lines of an output in
 * registers and store each with one 64-byte streaming store, or, for
 * outputs that stay in cache, one aligned ordinary store (`nt` = 0: no
 * store straddles two lines, wherever the output starts); the kernels of
 * standard.inc write the partial lines at either end of a thread's range
 * with ordinary stores (bn_stream_span). Each kernel computes, lane by lane,
 * the IEEE operations of a formula of formulas.h (bn_affine, bn_dx_common,
 * in T), so the bits are the same either way.
 * The vectors inside one (b, c) row take its coefficients as they are; a
 * vector that straddles two rows takes each lane's from its own row (a
 * masked blend), so rows need only be one vector long.
 *
 * Streaming pays only for outputs that would not stay in cache anyway;
 * the placements of the output where it does not (4K aliasing) take
 * ordinary stores or walk down (standard_nhwc.inc). Measurements and what
 * was tried: docs/design/kernels.md. */
/* A reference-only build (BNKERNELS_REFERENCE_ONLY) has no fast tier. */
#ifndef BNKERNELS_REFERENCE_ONLY
#include "bnkernels.h"
#include "compiler.h"
#include "formulas.h"
#include "stream.h"

#if defined(BN_STREAM_KERNELS)
#include <immintrin.h>
#endif

#if defined(BN_STREAM_KERNELS)
#define BN_STREAM_TARGET __attribute__((target("avx512f")))

/* The rows of elements [e, e_hi): row r = e / spatial of channel
 * r % channels, the current one and the next (a vector may reach into it). */
typedef struct {
    int64_t channels, spatial, c, row_end;
} row_walk;

static row_walk walk_from(int64_t e, int64_t channels, int64_t spatial)
{
    const int64_t r = e / spatial;
    row_walk w = {channels, spatial, r % channels, (r + 1) * spatial};
    return w;
}

static int64_t next_channel(const row_walk *w)
{
    return w->c + 1 == w->channels ? 0 : w->c + 1;
}

static void step_row(row_walk *w)
{
    w->c = next_channel(w);
    w->row_end += w->spatial;
}

static int64_t previous_channel(const row_walk *w)
{
    return w->c == 0 ? w->channels - 1 : w->c - 1;
}

static void step_back(row_walk *w)
{
    w->c = previous_channel(w);
    w->row_end -= w->spatial;
}

/* len >= 0 rounded down to a multiple of lanes, a power of two: a mask,
 * not a signed division, whose sign fix-up would sit on every short row's
 * path */
static int64_t whole_vectors(int64_t len, int64_t lanes)
{
    return len & -lanes;
}

/* where the vectors of `lanes` values from e that lie wholly inside the row
 * ending at row_end (> e) stop, at most at e_hi */
static int64_t whole_vectors_end(int64_t e, int64_t row_end, int64_t lanes,
                                 int64_t e_hi)
{
    const int64_t end = e + whole_vectors(row_end - e, lanes);
    return end < e_hi ? end : e_hi;
}

/* lanes [k, 8) (k < 8) or none of eight: the lanes that belong to the next row */
#define NEXT_ROW_LANES8(k) ((__mmask8)((k) < 8 ? 0xFFu << (k) : 0u))

/* Channels last (bn_normalize_affine_nhwc, bn_backward_dx_nhwc): one, two
 * or four ranges of the output side by side, as the ordinary kernel walks
 * them, element e of range k at x[e + k * stride]. Element e belongs to
 * channel e % channels in every range (stride is a multiple of channels),
 * and the per-channel coefficients come as arrays extended past the last
 * channel (value i for channel i % channels, channels + 16 values), so a
 * vector's lanes load theirs in one go across a row's end. One load of the
 * coefficients serves every range's vector. */

/* lanes of element e's channel onward: the next coefficient offset */
static int64_t advance_channel(int64_t j, int64_t lanes, int64_t channels)
{
    for (j += lanes; j >= channels;)
        j -= channels;
    return j;
}

/* The channel of the vector before the one at channel j. */
static int64_t retreat_channel(int64_t j, int64_t lanes, int64_t channels)
{
    for (j -= lanes; j < 0;)
        j += channels;
    return j;
}

/* The NHWC twins below write `streams` (1, 2 or 4) ranges side by side,
 * each vector's stores to y (or dx) whole aligned 64-byte lines: with
 * `nt`, streaming stores; without, ordinary ones, for outputs that stay in
 * cache (a store that straddles two lines costs about two). Each is
 * instantiated for every (streams, nt) by an always-inlined walk with
 * those constant.
 *
 * The y twins walk each range up from e_lo, or with `descending` down
 * from e_hi: for y 1 to 255 bytes past x modulo 4 KB. Walking up, each load
 * of x would come just after a streaming store to y at the same page
 * offset, and wait on it (4K aliasing); walking down, every store to y at
 * that offset comes after the load. */
#define BN_WALK_INLINE static inline __attribute__((always_inline))

/* NHWC_INSTANCES(CALL): CALL(streams, nt) for the one (streams, nt) the
 * arguments name. */
#define NHWC_INSTANCES(CALL)                                                   \
    do {                                                                       \
        if (streams == 4) {                                                    \
            if (nt) CALL(4, 1); else CALL(4, 0);                               \
        } else if (streams == 2) {                                             \
            if (nt) CALL(2, 1); else CALL(2, 0);                               \
        } else {                                                               \
            if (nt) CALL(1, 1); else CALL(1, 0);                               \
        }                                                                      \
    } while (0)

/* the twins, NCHW and NHWC, for each T */
#define T float
#define NAME(f) f##_f32
#define VEC __m512
#define LANES 16
#define MASK __mmask16
#define NEXT_ROW_LANES(k) ((__mmask16)((k) < 16 ? 0xFFFFu << (k) : 0u))
#define V_SET1 _mm512_set1_ps
#define V_LOADU _mm512_loadu_ps
#define V_ADD _mm512_add_ps
#define V_SUB _mm512_sub_ps
#define V_MUL _mm512_mul_ps
#define V_BLEND _mm512_mask_blend_ps
#define V_STORE _mm512_store_ps
#define V_STREAM _mm512_stream_ps
#define V_RELU(v) \
    _mm512_mask_mov_ps(v, _mm512_cmp_ps_mask(v, _mm512_setzero_ps(), _CMP_LT_OQ), \
                       _mm512_setzero_ps())
#include "stream_twins.inc"

#define T double
#define NAME(f) f##_f64
#define VEC __m512d
#define LANES 8
#define MASK __mmask8
#define NEXT_ROW_LANES NEXT_ROW_LANES8
#define V_SET1 _mm512_set1_pd
#define V_LOADU _mm512_loadu_pd
#define V_ADD _mm512_add_pd
#define V_SUB _mm512_sub_pd
#define V_MUL _mm512_mul_pd
#define V_BLEND _mm512_mask_blend_pd
#define V_STORE _mm512_store_pd
#define V_STREAM _mm512_stream_pd
#define V_RELU(v) \
    _mm512_mask_mov_pd(v, _mm512_cmp_pd_mask(v, _mm512_setzero_pd(), _CMP_LT_OQ), \
                       _mm512_setzero_pd())
#include "stream_twins.inc"

#endif

#endif /* BNKERNELS_REFERENCE_ONLY */
