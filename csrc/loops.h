/* Loop helpers of the kernels (private to csrc/). */
#ifndef BNKERNELS_LOOPS_H
#define BNKERNELS_LOOPS_H

/* A channel's reduction is one chain of dependent adds, limited by the add's
 * latency. Reducing CB channels at once, each in its own accumulator, runs CB
 * independent chains that overlap in the CPU's pipelines, and changes no
 * channel's order of operations.
 *
 * FOR_CHANNEL_BLOCKS(c, width, CALL) runs CALL for c = 0, CB, 2 CB, ... with
 * the constant width = CB, then for each leftover channel with width = 1. A
 * *_block helper called as CALL is inlined and specialized for both widths,
 * so full blocks and leftovers share one body. */
#define CB 8
#define FOR_CHANNEL_BLOCKS(c, width, CALL)                                     \
    {                                                                          \
        int64_t c = 0;                                                         \
        for (; c + CB <= channels; c += CB) { const int width = CB; CALL; }   \
        for (; c < channels; ++c) { const int width = 1; CALL; }              \
    }


/* Four doubles as one value, for the standard family's sums (GCC and Clang
 * vector extensions; each lane is an ordinary IEEE double, so the result is
 * the same whatever SIMD width the compiler maps it to). LOAD4(p) widens
 * p[0..3] to double. Other compilers, or -DBNKERNELS_NO_VECTOR_EXT, get
 * plain scalar loops instead. */
#if (defined(__GNUC__) || defined(__clang__)) && !defined(BNKERNELS_NO_VECTOR_EXT)
#define BN_VECTOR4 1
typedef double bn_v4d __attribute__((vector_size(32)));
#define LOAD4(p) ((bn_v4d){(double)(p)[0], (double)(p)[1], (double)(p)[2], (double)(p)[3]})
#define SPLAT4(v) ((bn_v4d){(v), (v), (v), (v)})
#define SUM4(v) (((v)[0] + (v)[1]) + ((v)[2] + (v)[3]))
#endif

#endif
