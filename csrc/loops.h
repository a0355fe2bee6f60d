/* Loop helpers of the Darknet-exact kernels (private to csrc/). */
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

#endif
