/* How many threads the kernels use. */
#include "bnkernels.h"
#include "loops.h"

#ifdef _OPENMP
#include <omp.h>
#endif

/* The caller's choice, 0 for OpenMP's default. Read by every kernel call
 * (possibly from several threads at once), written by bn_set_num_threads. */
#if defined(__STDC_VERSION__) && __STDC_VERSION__ >= 201112L && \
    !defined(__STDC_NO_ATOMICS__)
#include <stdatomic.h>
static _Atomic int requested_threads = 0;
#else
static volatile int requested_threads = 0;
#endif

void bn_set_num_threads(int threads)
{
    requested_threads = threads > 0 ? threads : 0;
}

int bn_get_num_threads(void)
{
#ifdef _OPENMP
    const int requested = requested_threads;
    const int threads = requested > 0 ? requested : omp_get_max_threads();
    return threads < BN_MAX_THREADS ? threads : BN_MAX_THREADS;
#else
    return 1;
#endif
}

int bn_openmp_enabled(void)
{
#ifdef _OPENMP
    return 1;
#else
    return 0;
#endif
}

/* A thread per BN_MIN_WORK_PER_THREAD elements of work at most: below that,
 * starting threads costs more than it saves. */
int bn_threads_for(int64_t items, int64_t work_per_item)
{
    const int64_t by_work = items * work_per_item / BN_MIN_WORK_PER_THREAD;
    int64_t threads = bn_get_num_threads();
    if (threads > items)
        threads = items;
    if (threads > by_work)
        threads = by_work;
    return threads > 1 ? (int)threads : 1;
}
