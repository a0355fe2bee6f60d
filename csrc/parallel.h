/* Rows and thread ranges (private to csrc/). */
#ifndef BNKERNELS_PARALLEL_H
#define BNKERNELS_PARALLEL_H

#include <stdint.h>

/* FOR_ROWS(r, c, r_lo, r_hi): the (b, c) rows r = b * channels + c in
 * [r_lo, r_hi), with c = r % channels kept up to date without a division per
 * row (a 64-bit division costs as much as a short row's arithmetic). An
 * empty range divides by nothing: channels may be 0 then. */
#define FOR_ROWS(r, c, r_lo, r_hi)                                             \
    for (int64_t r = (r_lo), c = (r_lo) < (r_hi) ? (r_lo) % channels : 0;      \
         r < (r_hi); ++r, c = (c + 1 == channels ? 0 : c + 1))

/* Threads. BN_PARALLEL_RANGES(items, work_per_item, lo, hi, CALL) splits the
 * items [0, items) into one contiguous range [lo, hi) per thread and runs
 * CALL on each. Items are independent units of a kernel (a channel, or a
 * (b, c) row) whose results do not depend on which thread computes them, so
 * every kernel gives the same bits for any number of threads. Jobs too small
 * to pay for threads (bn_threads_for) run on the calling thread. Without
 * OpenMP, CALL runs once over all items. */
#define BN_MIN_WORK_PER_THREAD 16384
int bn_threads_for(int64_t items, int64_t work_per_item);

#ifdef _OPENMP
#define BN_PARALLEL_RANGES(items, work_per_item, lo, hi, CALL)                 \
    {                                                                          \
        const int64_t items_ = (items);                                        \
        const int threads_ = bn_threads_for(items_, (work_per_item));          \
        if (threads_ <= 1) {                                                   \
            const int64_t lo = 0, hi = items_;                                 \
            CALL;                                                              \
        } else {                                                               \
            _Pragma("omp parallel for num_threads(threads_) schedule(static, 1)") \
            for (int t_ = 0; t_ < threads_; ++t_) {                            \
                const int64_t lo = items_ * t_ / threads_;                     \
                const int64_t hi = items_ * (t_ + 1) / threads_;               \
                CALL;                                                          \
            }                                                                  \
        }                                                                      \
    }
#else
#define BN_PARALLEL_RANGES(items, work_per_item, lo, hi, CALL)                 \
    {                                                                          \
        const int64_t lo = 0, hi = (items);                                    \
        (void)(work_per_item);                                                 \
        CALL;                                                                  \
    }
#endif

#endif
