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
 * items [0, items) into contiguous ranges [lo, hi) and runs CALL on each.
 * Items are independent units of a kernel (a channel, or a (b, c) row) whose
 * results do not depend on which thread computes them nor on where a range
 * starts or ends, so every kernel gives the same bits for any number of
 * threads and any ranges. Jobs too small to pay for threads (bn_threads_for)
 * run on the calling thread. A team takes BN_CHUNKS_PER_THREAD ranges per
 * thread, each thread the next free one (dynamic schedule), so a thread the
 * OS has not yet run leaves its share to those that run; the team's start
 * and end times and its work go to bn_team_done, which turns later calls of
 * up to comparable work serial for a while when a thread was kept off its
 * core (see threads.c). BN_PARALLEL_ITEMS is the same with a range per
 * item, for kernels whose every item is long (a convolution's block of
 * outputs): a thread that finishes early then waits at most one item.
 * Without OpenMP, CALL runs once over all items. */
#define BN_MIN_WORK_PER_THREAD 65536
#define BN_CHUNKS_PER_THREAD 4
int bn_threads_for(int64_t items, int64_t work_per_item);
int64_t bn_now_ns(void);
void bn_team_done(int64_t work, int64_t start_ns, int64_t late_ns,
                  int64_t first_end_ns, int64_t last_end_ns);

#ifdef _OPENMP
#include <omp.h>
#define BN_PARALLEL_RANGES(items, work_per_item, lo, hi, CALL)                 \
    BN_PARALLEL_CHUNKS(items, work_per_item, BN_CHUNKS_PER_THREAD, lo, hi, CALL)
#define BN_PARALLEL_ITEMS(items, work_per_item, lo, hi, CALL)                  \
    BN_PARALLEL_CHUNKS(items, work_per_item, INT64_MAX, lo, hi, CALL)
/* at most per_thread ranges per thread, and at most one per item */
#define BN_PARALLEL_CHUNKS(items, work_per_item, per_thread, lo, hi, CALL)     \
    BN_PARALLEL_TEAM(bn_threads_for(items_, per_item_), items, work_per_item,  \
                     per_thread, lo, hi, CALL)
/* the same on `threads` threads (an expression of items_ and per_item_),
 * for callers that cap bn_threads_for's count */
#define BN_PARALLEL_TEAM(threads, items, work_per_item, per_thread, lo, hi, CALL) \
    {                                                                          \
        const int64_t items_ = (items);                                        \
        const int64_t per_item_ = (work_per_item);                             \
        const int threads_ = (threads);                                        \
        if (threads_ <= 1) {                                                   \
            const int64_t lo = 0, hi = items_;                                 \
            CALL;                                                              \
        } else {                                                               \
            const int64_t per_thread_ = (per_thread);                          \
            const int64_t chunks_ = items_ / threads_ < per_thread_            \
                                        ? items_ : threads_ * per_thread_;     \
            const int64_t start_ = bn_now_ns();                                \
            int64_t late_ = 0, first_end_ = INT64_MAX, last_end_ = 0;          \
            _Pragma("omp parallel num_threads(threads_) reduction(max: late_, last_end_) reduction(min: first_end_)") \
            {                                                                  \
                if (omp_get_thread_num() != 0)                                 \
                    late_ = bn_now_ns() - start_;                              \
                _Pragma("omp for schedule(dynamic, 1) nowait")                 \
                for (int64_t k_ = 0; k_ < chunks_; ++k_) {                     \
                    const int64_t lo = items_ * k_ / chunks_;                  \
                    const int64_t hi = items_ * (k_ + 1) / chunks_;            \
                    CALL;                                                      \
                }                                                              \
                first_end_ = last_end_ = bn_now_ns();                          \
            }                                                                  \
            bn_team_done(items_ * per_item_, start_, late_, first_end_,        \
                         last_end_);                                           \
        }                                                                      \
    }
#else
#define BN_PARALLEL_RANGES(items, work_per_item, lo, hi, CALL)                 \
    {                                                                          \
        const int64_t lo = 0, hi = (items);                                    \
        (void)(work_per_item);                                                 \
        CALL;                                                                  \
    }
#define BN_PARALLEL_ITEMS BN_PARALLEL_RANGES
#define BN_PARALLEL_TEAM(threads, items, work_per_item, per_thread, lo, hi, CALL) \
    BN_PARALLEL_RANGES(items, work_per_item, lo, hi, CALL)
#endif

#endif
