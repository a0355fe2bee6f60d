/* Streaming stores (private to csrc/): the affine map of one row,
 *     y[s] = fl( x[s] * a + off ),  then max(y, 0) if relu (NaN stays NaN),
 * the same bits as standard.inc's affine_value, written with non-temporal
 * stores that bypass the cache. For outputs larger than the cache holds,
 * this saves reading each output line before writing it and keeps the input
 * in the cache for the next pass. bn_stream_rows says when to use it: an
 * AVX-512 CPU, an output of at least 3/4 of the L3 cache (glibc's memcpy
 * threshold for the same choice), rows of at least 1 KiB (shorter rows leave
 * partial cache lines, which streaming makes slower). */
#ifndef BNKERNELS_STREAM_H
#define BNKERNELS_STREAM_H

#include <stdint.h>

int bn_stream_rows(int64_t output_bytes, int64_t row_bytes);
void bn_affine_row_stream_f32(const float *x, int64_t n, double a, double off,
                              int relu, float *y);
void bn_affine_row_stream_f64(const double *x, int64_t n, double a, double off,
                              int relu, double *y);
/* Orders a thread's streaming stores before what follows (sfence). */
void bn_stream_fence(void);
/* Testing: output bytes from which to stream (< 0: the default). */
void bn_set_stream_threshold(int64_t bytes);

#endif
