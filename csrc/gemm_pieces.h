/* Matrix products on the kernels' threads (private to csrc/; the nn layers
 * call it through _kernels._gemm_pieces).
 *
 * Each piece is one product of the BLAS the caller names, in its own
 * (Fortran, column-major) terms:
 *
 *   c = op(a) @ op(b) + (accumulate ? c : 0),  c m x n, op(a) m x k,
 *
 * op(a) = a (transa 'N', a m x k with leading dimension lda) or a's
 * transpose ('T', a k x m); op(b) likewise. The pieces run on up to
 * max_threads of the kernels' OpenMP team, a piece on one thread, so the
 * BLAS must run each call on its caller's thread (one BLAS thread). Pieces
 * write disjoint c, so the result does not depend on which thread runs which
 * piece. The caller checks every size and leading dimension. */
#ifndef BNKERNELS_GEMM_PIECES_H
#define BNKERNELS_GEMM_PIECES_H

#include <stddef.h>
#include <stdint.h>

typedef struct {
    const void *a, *b;
    void *c;
    int64_t m, n, k, lda, ldb, ldc;
    char transa, transb;
    int accumulate;
} bn_gemm_piece;

/* The BLAS's sgemm_ or dgemm_ (Fortran calling convention: every argument by
 * address, then the lengths of the two character arguments). Its integers
 * are 64-bit (ILP64) or 32-bit: the caller passes 64-bit ones, whose low 32
 * bits an LP64 BLAS reads on a little-endian CPU, with every value below
 * 2**31. */
typedef void (*bn_gemm_fn)(const char *transa, const char *transb,
                           const int64_t *m, const int64_t *n, const int64_t *k,
                           const void *alpha, const void *a, const int64_t *lda,
                           const void *b, const int64_t *ldb, const void *beta,
                           void *c, const int64_t *ldc, size_t transa_len,
                           size_t transb_len);

/* Run count pieces through gemm (sgemm_ where is_double is 0, else dgemm_). */
void bn_gemm_pieces(bn_gemm_fn gemm, int is_double, const bn_gemm_piece *pieces,
                    int64_t count, int max_threads);

#endif
