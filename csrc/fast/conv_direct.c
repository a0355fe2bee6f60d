/* Direct 2-D convolution, float32, stride 1 (conv_direct.h has the formula).
 *
 * x is first copied into the workspace with its padding as zeros: plane c of
 * sample n is (H + 2*ph) x (W + 2*pw) = hp x wp values. Output position
 * (oh, ow) is then q = oh * wp + ow, and tap (i, j) of it reads the padded
 * plane at q + i * wp + j: for a fixed tap, consecutive q read consecutive
 * values, so one vector load serves 16 positions. The positions q run over
 * [0, (OH - 1) * wp + OW); those with ow >= OW (the last kw - 1 of each
 * padded row) are computed and dropped. The last block of QB positions
 * reads fewer than QB values past the last plane's end (its last position
 * is before q = (OH - 1) * wp + OW, and OW + kw - 1 = wp), which the
 * workspace holds as zeros.
 *
 * A block is RO output channels x QB positions (RO x RW vectors, all in
 * registers), summed over (c, i, j) in that order: per tap, RW loads of x and
 * RO broadcast weights feed RO * RW fused multiply-adds. The weights are
 * packed so that a block's RO weights of one tap are consecutive, in the
 * order the taps are read. A thread keeps the sums of up to GROUP output
 * blocks while it walks x's channels (all at once where the position
 * block's values of x fit in L1, else in blocks of CHUNK_BYTES), then goes
 * on to the next group: a sum
 * stored and loaded again keeps its float32 value, so each output is still
 * one chain in (c, i, j) order. Threads take (sample, position block,
 * group) items one at a time, the groups of a layer of equal size: each
 * output is the same chain whichever thread computes it. A sample's last
 * block computes only the vectors of 16 positions it has.
 *
 * A kernel with one side 1 runs on the grid of x transposed where that grid
 * computes fewer positions (a 1xk kernel on a narrow map drops k - 1 of
 * every W + 2*pw; transposed, none): x is copied transposed, the kernel read
 * as kx1 and the outputs written back transposed. Its taps are then summed
 * in the same order, so the bits are those of x's own grid. */
#include <stdint.h>
#include <string.h>

#include "conv_direct.h"

#ifndef BNKERNELS_REFERENCE_ONLY
#include "lanes.h"
#include "parallel.h"
#endif

#if !defined(BNKERNELS_REFERENCE_ONLY) && defined(BN_HAS_WIDE8)
#include <immintrin.h>

#define TARGET __attribute__((target("avx512f")))

enum { RO = 8, RW = 3, QB = RW * 16 };

/* the workspace's parts, in floats: packed weights and biases, then x */
static int64_t packed_floats(int64_t channels, int64_t out_channels,
                             int64_t kernel_h, int64_t kernel_w)
{
    const int64_t blocks = (out_channels + RO - 1) / RO;
    return blocks * RO * (channels * kernel_h * kernel_w + 1);
}

int64_t bn_conv_direct_work_f32(int64_t batch, int64_t channels, int64_t height,
                                int64_t width, int64_t out_channels,
                                int64_t kernel_h, int64_t kernel_w, int64_t pad_h,
                                int64_t pad_w)
{
    const int64_t plane = (height + 2 * pad_h) * (width + 2 * pad_w);
    return packed_floats(channels, out_channels, kernel_h, kernel_w) +
           batch * channels * plane + QB + kernel_w + 16;
}

int bn_conv_direct_available(void) { return BN_WIDE8() ? 1 : 0; }

/* Blocks [lo, hi) of RO output channels, each: its biases (RO values, 0
 * past the last channel), then for each tap (c, i, j) in order its RO
 * weights. */
static void pack_weights(const float *weight, const float *bias, int64_t out_channels,
                         int64_t taps, int64_t lo, int64_t hi, float *packed)
{
    for (int64_t b = lo; b < hi; ++b) {
        float *p = packed + b * RO * (taps + 1);
        for (int64_t r = 0; r < RO; ++r) {
            const int64_t o = b * RO + r;
            p[r] = o < out_channels && bias ? bias[o] : 0.0f;
            for (int64_t t = 0; t < taps; ++t)
                p[RO * (t + 1) + r] = o < out_channels ? weight[o * taps + t] : 0.0f;
        }
    }
}

/* planes [lo, hi) of x copied transposed into their padded places: value
 * (h, w) at (pad_w + w, pad_h + h) of a (width + 2*pad_w) x (height +
 * 2*pad_h) plane */
static void pad_planes_transposed(const float *x, int64_t height, int64_t width,
                                  int64_t pad_h, int64_t pad_w, int64_t lo, int64_t hi,
                                  float *padded)
{
    const int64_t wp = height + 2 * pad_h, hp = width + 2 * pad_w;
    for (int64_t p = lo; p < hi; ++p) {
        float *dst = padded + p * hp * wp;
        const float *src = x + p * height * width;
        memset(dst, 0, (size_t)(hp * wp) * sizeof(float));
        for (int64_t h = 0; h < height; ++h)
            for (int64_t w = 0; w < width; ++w)
                dst[(pad_w + w) * wp + pad_h + h] = src[h * width + w];
    }
}

/* planes [lo, hi) of x copied into their padded places */
static void pad_planes(const float *x, int64_t height, int64_t width, int64_t pad_h,
                       int64_t pad_w, int64_t lo, int64_t hi, float *padded)
{
    const int64_t wp = width + 2 * pad_w, hp = height + 2 * pad_h;
    for (int64_t p = lo; p < hi; ++p) {
        float *dst = padded + p * hp * wp;
        const float *src = x + p * height * width;
        memset(dst, 0, (size_t)(pad_h * wp) * sizeof(float));
        for (int64_t h = 0; h < height; ++h) {
            float *row = dst + (pad_h + h) * wp;
            memset(row, 0, (size_t)pad_w * sizeof(float));
            memcpy(row + pad_w, src + h * width, (size_t)width * sizeof(float));
            memset(row + pad_w + width, 0, (size_t)pad_w * sizeof(float));
        }
        memset(dst + (pad_h + height) * wp, 0, (size_t)(pad_h * wp) * sizeof(float));
    }
}

/* all `planes` planes of x, each `plane` floats, padded on x's grid or,
 * where `transposed`, on its transpose's: the forward's and dW's copy */
static void pad_x(const float *x, int64_t planes, int64_t plane, int64_t height,
                  int64_t width, int64_t pad_h, int64_t pad_w, int transposed,
                  float *padded)
{
    if (transposed)
        BN_PARALLEL_RANGES(planes, plane, lo, hi,
                           pad_planes_transposed(x, height, width, pad_h, pad_w, lo, hi,
                                                 padded))
    else
        BN_PARALLEL_RANGES(planes, plane, lo, hi,
                           pad_planes(x, height, width, pad_h, pad_w, lo, hi, padded))
}

/* One block's RO x (16 * nv) sums, sums[r * QB + k], nv <= RW vectors of
 * positions, over channels [0, channels) of x (the block's first position in
 * the first channel's padded plane), with w at those channels' first packed
 * weights: started from bias (RO values) if bias is not NULL, else continued
 * from sums. A block short of QB positions (a sample's last) takes only the
 * vectors it has. */
TARGET static inline __attribute__((always_inline)) void block_sums_of(
    const float *x, int64_t plane, int64_t channels, int64_t wp, int64_t kernel_h,
    int64_t kernel_w, const float *bias, const float *w, float *sums, const int nv)
{
    __m512 a0[RO], a1[RO], a2[RO];
#define INIT(r)                                                                \
    if (bias) {                                                                \
        a0[r] = a1[r] = a2[r] = _mm512_set1_ps(bias[r]);                       \
    } else {                                                                   \
        a0[r] = _mm512_loadu_ps(sums + (r) * QB);                              \
        a1[r] = nv > 1 ? _mm512_loadu_ps(sums + (r) * QB + 16) : a0[r];        \
        a2[r] = nv > 2 ? _mm512_loadu_ps(sums + (r) * QB + 32) : a0[r];        \
    }
    INIT(0) INIT(1) INIT(2) INIT(3) INIT(4) INIT(5) INIT(6) INIT(7)
#undef INIT
    for (int64_t c = 0; c < channels; ++c, x += plane)
        for (int64_t i = 0; i < kernel_h; ++i) {
            const float *row = x + i * wp;
            for (int64_t j = 0; j < kernel_w; ++j, w += RO) {
                const __m512 v0 = _mm512_loadu_ps(row + j);
                const __m512 v1 = nv > 1 ? _mm512_loadu_ps(row + j + 16) : v0;
                const __m512 v2 = nv > 2 ? _mm512_loadu_ps(row + j + 32) : v0;
#define TAP(r)                                                                 \
    {                                                                          \
        const __m512 s = _mm512_set1_ps(w[r]);                                 \
        a0[r] = _mm512_fmadd_ps(s, v0, a0[r]);                                 \
        if (nv > 1)                                                            \
            a1[r] = _mm512_fmadd_ps(s, v1, a1[r]);                             \
        if (nv > 2)                                                            \
            a2[r] = _mm512_fmadd_ps(s, v2, a2[r]);                             \
    }
                TAP(0) TAP(1) TAP(2) TAP(3) TAP(4) TAP(5) TAP(6) TAP(7)
#undef TAP
            }
        }
#define STORE(r)                                                               \
    _mm512_storeu_ps(sums + (r) * QB, a0[r]);                                  \
    if (nv > 1)                                                                \
        _mm512_storeu_ps(sums + (r) * QB + 16, a1[r]);                         \
    if (nv > 2)                                                                \
        _mm512_storeu_ps(sums + (r) * QB + 32, a2[r]);
    STORE(0) STORE(1) STORE(2) STORE(3) STORE(4) STORE(5) STORE(6) STORE(7)
#undef STORE
}

TARGET static void block_sums(const float *x, int64_t plane, int64_t channels, int64_t wp,
                              int64_t kernel_h, int64_t kernel_w, const float *bias,
                              const float *w, float *sums, int nv)
{
    if (nv >= RW)
        block_sums_of(x, plane, channels, wp, kernel_h, kernel_w, bias, w, sums, RW);
    else if (nv == 2)
        block_sums_of(x, plane, channels, wp, kernel_h, kernel_w, bias, w, sums, 2);
    else
        block_sums_of(x, plane, channels, wp, kernel_h, kernel_w, bias, w, sums, 1);
}

/* Output channel blocks whose running sums a thread keeps (on its stack,
 * GROUP * RO * QB floats: 24 KB). A position block's values of x over all
 * channels are read once per output block: up to L1_BYTES they are read in
 * one go, beyond it in channel blocks of at most CHUNK_BYTES (measured on
 * Inception-v3's layers: 10-40 % faster where x's values are 60-100 KB,
 * 20 % slower where they are 45 KB and split). */
enum { GROUP = 16, L1_BYTES = 48 * 1024, CHUNK_BYTES = 24 * 1024 };

/* The grid's geometry (hp, wp, kernel_h, kernel_w, out_h, out_w) is x's,
 * or, when transposed, that of x with its two axes swapped: grid output
 * (oh, ow) goes to y at oh * y_row + ow * y_col. */
typedef struct {
    const float *padded, *packed;
    int64_t channels, out_channels, hp, wp, kernel_h, kernel_w, out_h, out_w;
    int64_t positions, blocks_per_sample, channel_block, y_row, y_col;
    int64_t groups, group_blocks;   /* output blocks in groups of group_blocks */
} Job;

/* sums[r * QB + k] of positions [q0, q1) to their places in y's planes
 * y_planes[r * out_plane], r < rows: a run per grid row, ow < out_w */
static void scatter(const Job *job, const float *sums, int64_t rows, int64_t q0,
                    int64_t q1, float *y)
{
    const int64_t out_plane = job->out_h * job->out_w;
    for (int64_t r = 0; r < rows; ++r)
        for (int64_t q = q0; q < q1;) {
            const int64_t oh = q / job->wp, ow = q - oh * job->wp;
            if (ow >= job->out_w) {
                q += job->wp - ow;
                continue;
            }
            const int64_t run = job->out_w - ow < q1 - q ? job->out_w - ow : q1 - q;
            float *dst = y + r * out_plane + oh * job->y_row + ow * job->y_col;
            const float *src = sums + r * QB + (q - q0);
            if (job->y_col == 1)
                memcpy(dst, src, (size_t)run * sizeof(float));
            else
                for (int64_t k = 0; k < run; ++k)
                    dst[k * job->y_col] = src[k];
            q += run;
        }
}

/* items [lo, hi): item = (n * blocks_per_sample + position block) * groups
 * + group of output channel blocks. For each, channel blocks of x (which
 * then stay in L1) outside, the group's output blocks inside. */
TARGET static void run_items(const Job *job, int64_t lo, int64_t hi, float *y)
{
    float sums[GROUP * RO * QB];
    const int64_t plane = job->hp * job->wp;
    const int64_t taps = job->kernel_h * job->kernel_w;
    const int64_t out_blocks = (job->out_channels + RO - 1) / RO;
    const int64_t block_floats = RO * (job->channels * taps + 1);
    const int64_t out_plane = job->out_h * job->out_w;
    for (int64_t item = lo; item < hi; ++item) {
        const int64_t sample_block = item / job->groups;
        const int64_t n = sample_block / job->blocks_per_sample;
        const int64_t q0 = (sample_block % job->blocks_per_sample) * QB;
        const int64_t q1 = q0 + QB < job->positions ? q0 + QB : job->positions;
        const float *x = job->padded + n * job->channels * plane + q0;
        const int64_t g0 = item % job->groups * job->group_blocks;
        const int64_t g1 = g0 + job->group_blocks < out_blocks ? g0 + job->group_blocks
                                                               : out_blocks;
        for (int64_t c0 = 0; c0 < job->channels; c0 += job->channel_block) {
            const int64_t cs = job->channels - c0 < job->channel_block
                                   ? job->channels - c0 : job->channel_block;
            for (int64_t b = g0; b < g1; ++b) {
                const float *packed = job->packed + b * block_floats;
                block_sums(x + c0 * plane, plane, cs, job->wp, job->kernel_h,
                           job->kernel_w, c0 == 0 ? packed : NULL,
                           packed + RO * (1 + c0 * taps), sums + (b - g0) * RO * QB,
                           (int)((q1 - q0 + 15) / 16));
            }
        }
        for (int64_t b = g0; b < g1; ++b) {
            const int64_t o0 = b * RO;
            const int64_t rows = job->out_channels - o0 < RO ? job->out_channels - o0 : RO;
            scatter(job, sums + (b - g0) * RO * QB, rows, q0, q1,
                    y + (n * job->out_channels + o0) * out_plane);
        }
    }
}

/* vectors of 16 positions a sample's grid computes: full blocks, then the
 * last block's vectors */
static int64_t grid_vectors(int64_t hp, int64_t wp, int64_t kernel_h, int64_t kernel_w)
{
    const int64_t positions = (hp - kernel_h) * wp + wp - kernel_w + 1;
    return positions / QB * RW + (positions % QB + 15) / 16;
}

/* Whether the grid runs over x transposed: for a kernel with one side 1
 * (whose (c, i, j) order is then the same chain), where that grid computes
 * fewer positions (a 1xk kernel on a narrow map drops k - 1 of every W +
 * 2*pw positions; transposed, none). */
static int transpose_grid(int64_t height, int64_t width, int64_t kernel_h,
                          int64_t kernel_w, int64_t pad_h, int64_t pad_w)
{
    if (kernel_h != 1 && kernel_w != 1)
        return 0;
    const int64_t hp = height + 2 * pad_h, wp = width + 2 * pad_w;
    return grid_vectors(wp, hp, kernel_w, kernel_h) < grid_vectors(hp, wp, kernel_h, kernel_w);
}

/* The grid a convolution runs on: x's, or x's transposed (transpose_grid),
 * with its padded plane (hp x wp), kernel and outputs in grid order. */
typedef struct {
    int transposed;
    int64_t hp, wp, kernel_h, kernel_w, out_h, out_w;
} Grid;

static Grid grid_of(int64_t height, int64_t width, int64_t kernel_h, int64_t kernel_w,
                    int64_t pad_h, int64_t pad_w)
{
    Grid g;
    g.transposed = transpose_grid(height, width, kernel_h, kernel_w, pad_h, pad_w);
    g.hp = g.transposed ? width + 2 * pad_w : height + 2 * pad_h;
    g.wp = g.transposed ? height + 2 * pad_h : width + 2 * pad_w;
    g.kernel_h = g.transposed ? kernel_w : kernel_h;
    g.kernel_w = g.transposed ? kernel_h : kernel_w;
    g.out_h = g.hp - g.kernel_h + 1;
    g.out_w = g.wp - g.kernel_w + 1;
    return g;
}

void bn_conv_direct_f32(const float *x, int64_t batch, int64_t channels,
                        int64_t height, int64_t width, const float *weight,
                        const float *bias, int64_t out_channels, int64_t kernel_h,
                        int64_t kernel_w, int64_t pad_h, int64_t pad_w, float *work,
                        float *y)
{
    Job job;
    const Grid grid = grid_of(height, width, kernel_h, kernel_w, pad_h, pad_w);
    const int transposed = grid.transposed;
    job.channels = channels;
    job.out_channels = out_channels;
    job.hp = grid.hp;
    job.wp = grid.wp;
    job.kernel_h = grid.kernel_h;
    job.kernel_w = grid.kernel_w;
    job.out_h = grid.out_h;
    job.out_w = grid.out_w;
    job.y_row = transposed ? 1 : job.out_w;
    job.y_col = transposed ? job.out_h : 1;
    job.positions = (job.out_h - 1) * job.wp + job.out_w;
    job.blocks_per_sample = (job.positions + QB - 1) / QB;
    {
        const int64_t out_blocks = (out_channels + RO - 1) / RO;
        job.groups = (out_blocks + GROUP - 1) / GROUP;
        job.group_blocks = job.groups ? (out_blocks + job.groups - 1) / job.groups : 0;
    }
    /* the bytes of one channel that a position block reads, QB + (kh - 1) *
     * wp + kw - 1 values: all channels at once where they fit in L1 */
    const int64_t span =
        (QB + (job.kernel_h - 1) * job.wp + job.kernel_w) * (int64_t)sizeof(float);
    job.channel_block = channels * span <= L1_BYTES ? channels
                        : span < CHUNK_BYTES ? CHUNK_BYTES / span : 1;
    const int64_t taps = channels * kernel_h * kernel_w;
    const int64_t planes = batch * channels, plane = job.hp * job.wp;
    float *packed = work;
    float *padded = work + packed_floats(channels, out_channels, kernel_h, kernel_w);
    job.packed = packed;
    job.padded = padded;
    if (batch == 0 || channels == 0 || out_channels == 0)
        return;
    BN_PARALLEL_RANGES((out_channels + RO - 1) / RO, RO * (taps + 1), lo, hi,
                       pack_weights(weight, bias, out_channels, taps, lo, hi, packed))
    /* the values past the last plane that the last blocks read */
    memset(padded + planes * plane, 0, (size_t)(QB + kernel_w + 16) * sizeof(float));
    pad_x(x, planes, plane, height, width, pad_h, pad_w, transposed, padded);
    BN_PARALLEL_ITEMS(batch * job.blocks_per_sample * job.groups,
                       QB * job.group_blocks * RO * taps, lo, hi, run_items(&job, lo, hi, y))
}

/* ------------------------------------------------------------------------
 * The weight gradient. On the same padded grid as the forward (x's, or
 * x's transposed: Grid), with dy copied to it (plane stride dw_plane: OH *
 * wp rounded up to a multiple of 16; zeros where ow >= OW and past OH * wp;
 * OH, OW and wp the grid's):
 *
 *   dW[o, c, i, j] += sum over n, q of dyp[n, o, q] * xp[n, c, q + i*wp + j]
 *
 * over the positions q whose ow < OW; a mask per 16 positions drops the
 * others from the sums (x there is a value of the plane's next row, which
 * 0 * inf would otherwise turn into NaN). An item is RO output channels x
 * a block of input channels; per channel its taps go in groups of up to TG
 * (offsets i*wp + j in (i, j) order), RO x TG vector sums over (n, q), then
 * each sum's 16 lanes are added (_mm512_reduce_add_ps) and the total added
 * to dW. A thread computes whole items, so any thread count gives the same
 * bits. */

enum { TG = 3 };

static int64_t dw_plane(int64_t out_h, int64_t wp) { return (out_h * wp + 15) / 16 * 16; }

int64_t bn_conv_direct_dw_work_f32(int64_t batch, int64_t channels, int64_t height,
                                   int64_t width, int64_t out_channels,
                                   int64_t kernel_h, int64_t kernel_w, int64_t pad_h,
                                   int64_t pad_w)
{
    const Grid g = grid_of(height, width, kernel_h, kernel_w, pad_h, pad_w);
    const int64_t dq = dw_plane(g.out_h, g.wp);
    const int64_t o8 = (out_channels + RO - 1) / RO * RO;
    /* padded x, its zeros read past the last plane, up to 16 floats to
     * align dyp to 64 bytes, dyp, the masks (as uint16 in floats) */
    return batch * channels * g.hp * g.wp + 32 + g.kernel_w + 16 + batch * o8 * dq + dq / 32 +
           1;
}

typedef struct {
    const float *xp, *dyp;
    const uint16_t *masks;
    int64_t channels, out_channels, o8, plane, dq, batch, wp, kernel_h, kernel_w;
    int64_t channel_block;
    float *grad_weight;
} DwJob;

/* Positions per chunk (VC vectors, or whole samples of fewer): a chunk's RO
 * rows of dy (16 KB) stay in L1 while every channel of an item's block and
 * every tap group reads them.
 * The lane sums of an item's channels and taps (DW_SUMS floats, 24 KB, on
 * the thread's stack) hold one channel of up to BN_CONV_DIRECT_DW_MAX_TAPS
 * taps at least. */
enum { VC = 32, DW_SUMS = (BN_CONV_DIRECT_DW_MAX_TAPS + TG - 1) / TG * RO * TG * 16 };

/* one tap group's RO x g sums (sums[(r * TG + k) * 16]), continued over
 * vectors [v0, v1) of samples n0, n0 + 1, ... (samples of them, in order):
 * x at sample n0's plane of the channel, d at its block's first dy row */
TARGET static inline __attribute__((always_inline)) void dw_group(
    const DwJob *job, const float *x, const float *d, const int64_t *off, int g,
    int64_t samples, int64_t v0, int64_t v1, float *sums)
{
    __m512 acc[RO][TG];
    for (int r = 0; r < RO; ++r)
        for (int k = 0; k < g; ++k)
            acc[r][k] = _mm512_loadu_ps(sums + (r * TG + k) * 16);
    const int64_t x_step = job->channels * job->plane, d_step = job->o8 * job->dq;
    for (int64_t n = 0; n < samples; ++n, x += x_step, d += d_step) {
        for (int64_t v = v0; v < v1; ++v) {
            const __mmask16 m = job->masks[v];
            __m512 xv[TG];
            for (int k = 0; k < g; ++k)
                xv[k] = _mm512_loadu_ps(x + 16 * v + off[k]);
            for (int r = 0; r < RO; ++r) {
                __m512 dv = _mm512_loadu_ps(d + r * job->dq + 16 * v);
                /* in a register: else GCC folds the load into each of the g
                 * multiply-adds, g loads of the same vector where one serves
                 * (docs/design/networks.md has the cost) */
                __asm__("" : "+v"(dv));
                for (int k = 0; k < g; ++k)
                    acc[r][k] = _mm512_mask3_fmadd_ps(dv, xv[k], acc[r][k], m);
            }
        }
    }
    for (int r = 0; r < RO; ++r)
        for (int k = 0; k < g; ++k)
            _mm512_storeu_ps(sums + (r * TG + k) * 16, acc[r][k]);
}

/* items [lo, hi): item = b * channel blocks + channel block. Per chunk of
 * positions (or of whole samples), each channel and tap group of the block
 * continues its lane sums (kept in sums[]); at the end the lanes are added
 * into dW. Each lane's sum runs over (n, position) in order whatever the
 * blocking. */
TARGET static void dw_items(const DwJob *job, int64_t lo, int64_t hi)
{
    float sums[DW_SUMS];
    const int64_t taps = job->kernel_h * job->kernel_w;
    const int64_t groups = (taps + TG - 1) / TG;
    const int64_t blocks = (job->channels + job->channel_block - 1) / job->channel_block;
    const int64_t vectors = job->dq / 16;
    /* samples per chunk: one, or as many whole samples as VC vectors hold */
    const int64_t samples = vectors < VC ? VC / vectors : 1;
    /* each tap group's offsets i * wp + j in the padded plane (a group short
     * of TG taps repeats its last) */
    int64_t offsets[(BN_CONV_DIRECT_DW_MAX_TAPS + TG - 1) / TG][TG];
    for (int64_t gi = 0; gi < groups; ++gi)
        for (int k = 0; k < TG; ++k) {
            const int64_t t = gi * TG + k < taps ? gi * TG + k : taps - 1;
            offsets[gi][k] = t / job->kernel_w * job->wp + t % job->kernel_w;
        }
    for (int64_t item = lo; item < hi; ++item) {
        const int64_t b = item / blocks;
        const int64_t c0 = item % blocks * job->channel_block;
        const int64_t cs = job->channels - c0 < job->channel_block
                               ? job->channels - c0 : job->channel_block;
        memset(sums, 0, (size_t)(cs * groups * RO * TG * 16) * sizeof(float));
        for (int64_t n = 0; n < job->batch; n += samples) {
            const int64_t ns = job->batch - n < samples ? job->batch - n : samples;
            const float *d = job->dyp + (n * job->o8 + b * RO) * job->dq;
            for (int64_t v0 = 0; v0 < vectors; v0 += VC) {
                const int64_t v1 = v0 + VC < vectors ? v0 + VC : vectors;
                for (int64_t c = 0; c < cs; ++c) {
                    const float *x = job->xp + (n * job->channels + c0 + c) * job->plane;
                    for (int64_t gi = 0; gi < groups; ++gi) {
                        float *s = sums + (c * groups + gi) * RO * TG * 16;
                        const int64_t *off = offsets[gi];
                        const int g = taps - gi * TG < TG ? (int)(taps - gi * TG) : TG;
                        if (g == TG)
                            dw_group(job, x, d, off, TG, ns, v0, v1, s);
                        else if (g == 2)
                            dw_group(job, x, d, off, 2, ns, v0, v1, s);
                        else
                            dw_group(job, x, d, off, 1, ns, v0, v1, s);
                    }
                }
            }
        }
        for (int64_t c = 0; c < cs; ++c)
            for (int64_t gi = 0; gi < groups; ++gi) {
                const float *s = sums + (c * groups + gi) * RO * TG * 16;
                for (int r = 0; r < RO && b * RO + r < job->out_channels; ++r)
                    for (int k = 0; k < TG && gi * TG + k < taps; ++k)
                        job->grad_weight[((b * RO + r) * job->channels + c0 + c) * taps +
                                         gi * TG + k] +=
                            _mm512_reduce_add_ps(_mm512_loadu_ps(s + (r * TG + k) * 16));
            }
    }
}

/* dy's planes [lo, hi) of (n, o) over o8 planes per sample: values at
 * their places in the grid g (output (oh, ow) of a transposed grid is dy's
 * (ow, oh)), zeros elsewhere (and in the planes o >= O) */
static void dy_planes(const float *dy, int64_t out_channels, int64_t o8, const Grid *g,
                      int64_t dq, int64_t lo, int64_t hi, float *dyp)
{
    const int64_t out_h = g->out_h, out_w = g->out_w, wp = g->wp;
    for (int64_t p = lo; p < hi; ++p) {
        const int64_t n = p / o8, o = p % o8;
        float *dst = dyp + p * dq;
        memset(dst, 0, (size_t)dq * sizeof(float));
        if (o >= out_channels)
            continue;
        const float *src = dy + (n * out_channels + o) * out_h * out_w;
        if (g->transposed)   /* dy is out_w x out_h */
            for (int64_t h = 0; h < out_w; ++h)
                for (int64_t w = 0; w < out_h; ++w)
                    dst[w * wp + h] = src[h * out_h + w];
        else
            for (int64_t h = 0; h < out_h; ++h)
                memcpy(dst + h * wp, src + h * out_w, (size_t)out_w * sizeof(float));
    }
}

void bn_conv_direct_dw_f32(const float *x, int64_t batch, int64_t channels,
                           int64_t height, int64_t width, const float *dy,
                           int64_t out_channels, int64_t kernel_h, int64_t kernel_w,
                           int64_t pad_h, int64_t pad_w, float *work, float *grad_weight)
{
    const Grid grid = grid_of(height, width, kernel_h, kernel_w, pad_h, pad_w);
    const int64_t wp = grid.wp, out_h = grid.out_h, out_w = grid.out_w;
    const int64_t dq = dw_plane(out_h, wp), plane = grid.hp * wp;
    const int64_t o8 = (out_channels + RO - 1) / RO * RO;
    const int64_t planes = batch * channels;
    float *padded = work;
    float *dyp = work + planes * plane + 32 + grid.kernel_w;
    dyp += (16 - (int64_t)((uintptr_t)dyp / sizeof(float) % 16)) % 16;
    uint16_t *masks = (uint16_t *)(dyp + batch * o8 * dq);
    DwJob job;
    job.xp = work;
    job.dyp = dyp;
    job.masks = (const uint16_t *)(job.dyp + batch * o8 * dq);
    job.channels = channels;
    job.out_channels = out_channels;
    job.o8 = o8;
    job.plane = plane;
    job.dq = dq;
    job.batch = batch;
    job.wp = wp;
    job.kernel_h = grid.kernel_h;   /* a tap's index is the same on either grid */
    job.kernel_w = grid.kernel_w;
    job.grad_weight = grad_weight;
    /* channels per item: as many as DW_SUMS floats of sums hold */
    {
        const int64_t per_channel = (kernel_h * kernel_w + TG - 1) / TG * RO * TG * 16;
        const int64_t fit = DW_SUMS / per_channel;
        job.channel_block = fit < 1 ? 1 : fit < channels ? fit : channels;
    }
    if (batch == 0 || channels == 0 || out_channels == 0)
        return;
    memset(padded + planes * plane, 0, (size_t)(32 + grid.kernel_w) * sizeof(float));
    pad_x(x, planes, plane, height, width, pad_h, pad_w, grid.transposed, padded);
    BN_PARALLEL_RANGES(batch * o8, dq, lo, hi,
                       dy_planes(dy, out_channels, o8, &grid, dq, lo, hi, dyp))
    for (int64_t v = 0; v < dq / 16; ++v) {
        uint16_t m = 0;
        for (int l = 0; l < 16; ++l) {
            const int64_t q = 16 * v + l;
            if (q < out_h * wp && q % wp < out_w)
                m |= (uint16_t)(1u << l);
        }
        masks[v] = m;
    }
    const int64_t blocks = (channels + job.channel_block - 1) / job.channel_block;
    BN_PARALLEL_ITEMS(o8 / RO * blocks,
                       batch * dq * RO * kernel_h * kernel_w * job.channel_block, lo, hi,
                       dw_items(&job, lo, hi))
}

#else /* no AVX-512F code in this build */

int bn_conv_direct_available(void) { return 0; }

int64_t bn_conv_direct_work_f32(int64_t batch, int64_t channels, int64_t height,
                                int64_t width, int64_t out_channels,
                                int64_t kernel_h, int64_t kernel_w, int64_t pad_h,
                                int64_t pad_w)
{
    (void)batch, (void)channels, (void)height, (void)width, (void)out_channels;
    (void)kernel_h, (void)kernel_w, (void)pad_h, (void)pad_w;
    return 0;
}

void bn_conv_direct_f32(const float *x, int64_t batch, int64_t channels,
                        int64_t height, int64_t width, const float *weight,
                        const float *bias, int64_t out_channels, int64_t kernel_h,
                        int64_t kernel_w, int64_t pad_h, int64_t pad_w, float *work,
                        float *y)
{
    (void)x, (void)batch, (void)channels, (void)height, (void)width, (void)weight;
    (void)bias, (void)out_channels, (void)kernel_h, (void)kernel_w, (void)pad_h;
    (void)pad_w, (void)work, (void)y;
}

int64_t bn_conv_direct_dw_work_f32(int64_t batch, int64_t channels, int64_t height,
                                   int64_t width, int64_t out_channels,
                                   int64_t kernel_h, int64_t kernel_w, int64_t pad_h,
                                   int64_t pad_w)
{
    (void)batch, (void)channels, (void)height, (void)width, (void)out_channels;
    (void)kernel_h, (void)kernel_w, (void)pad_h, (void)pad_w;
    return 0;
}

void bn_conv_direct_dw_f32(const float *x, int64_t batch, int64_t channels,
                           int64_t height, int64_t width, const float *dy,
                           int64_t out_channels, int64_t kernel_h, int64_t kernel_w,
                           int64_t pad_h, int64_t pad_w, float *work, float *grad_weight)
{
    (void)x, (void)batch, (void)channels, (void)height, (void)width, (void)dy;
    (void)out_channels, (void)kernel_h, (void)kernel_w, (void)pad_h, (void)pad_w;
    (void)work, (void)grad_weight;
}

#endif
