#include "gemm_pieces.h"

#include <stddef.h>
#include <string.h>

#include "parallel.h"

static void run_piece(bn_gemm_fn gemm, int is_double, const bn_gemm_piece *p)
{
    if (p->m == 0 || p->n == 0)
        return;
    if (p->k == 0) {   /* an empty sum: c stays, or becomes 0 */
        if (!p->accumulate) {
            const size_t size = is_double ? sizeof(double) : sizeof(float);
            for (int64_t j = 0; j < p->n; ++j)
                memset((char *)p->c + (size_t)(j * p->ldc) * size, 0,
                       (size_t)p->m * size);
        }
        return;
    }
    if (is_double) {
        const double one = 1.0, beta = p->accumulate ? 1.0 : 0.0;
        gemm(&p->transa, &p->transb, &p->m, &p->n, &p->k, &one, p->a, &p->lda,
             p->b, &p->ldb, &beta, p->c, &p->ldc, 1, 1);
    } else {
        const float one = 1.0f, beta = p->accumulate ? 1.0f : 0.0f;
        gemm(&p->transa, &p->transb, &p->m, &p->n, &p->k, &one, p->a, &p->lda,
             p->b, &p->ldb, &beta, p->c, &p->ldc, 1, 1);
    }
}

void bn_gemm_pieces(bn_gemm_fn gemm, int is_double, const bn_gemm_piece *pieces,
                    int64_t count, int max_threads)
{
    if (count <= 0)
        return;
    /* a piece's work for the thread policy, in units of about a kernel's
     * element (a nanosecond or so of one core): its multiply-adds / 64, on
     * average (in double: m * n * k may pass int64's range) */
    double sum = 0.0;
    for (int64_t i = 0; i < count; ++i)
        sum += (double)pieces[i].m * (double)pieces[i].n * (double)pieces[i].k;
    const double mean = sum / (double)count / 64.0;
    const int64_t per_piece = mean < 1e15 ? (int64_t)mean : INT64_C(1000000000000000);
    int threads = bn_threads_for(count, per_piece);
    if (threads > max_threads)
        threads = max_threads > 1 ? max_threads : 1;
    BN_PARALLEL_TEAM(threads, count, per_piece, INT64_MAX, lo, hi,
                     for (int64_t i = lo; i < hi; ++i)
                         run_piece(gemm, is_double, &pieces[i]));
}
