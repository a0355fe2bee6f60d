/* How many threads the kernels use. */
#include "bnkernels.h"
#include "parallel.h"

#ifdef _OPENMP
#include <omp.h>
#endif

/* pthread_atfork, where there are POSIX threads (and so fork) to guard. */
#if defined(_OPENMP) && (defined(__unix__) || defined(__APPLE__))
#include <unistd.h>
#if defined(_POSIX_THREADS) && _POSIX_THREADS > 0
#include <pthread.h>
#define BN_FORK_GUARD 1
#endif
#endif

/* The caller's choice, 0 for OpenMP's default. Read by every kernel call
 * (possibly from several threads at once), written by bn_set_num_threads
 * and, in a forked child, by the fork guard. The busy-machine state below is
 * shared the same way. */
#if defined(__STDC_VERSION__) && __STDC_VERSION__ >= 201112L && \
    !defined(__STDC_NO_ATOMICS__)
#include <stdatomic.h>
#define BN_ATOMIC _Atomic
#else
#define BN_ATOMIC volatile
#endif
static BN_ATOMIC int requested_threads = 0;

#ifdef BN_FORK_GUARD
/* Fork guard. An OpenMP runtime's pool of threads does not survive fork:
 * the child has only the forking thread, and GNU libgomp's next parallel
 * region of more than one thread waits for the missing ones forever. So a
 * child starts at one thread, where BN_PARALLEL_RANGES runs its CALL on the
 * calling thread without entering a parallel region at all, until it calls
 * bn_set_num_threads itself. The handler is registered once, when the
 * library is loaded (GCC and Clang) and in any case before the library's
 * first parallel region (bn_threads_for). */
static void one_thread_in_child(void)
{
    requested_threads = 1;
}

static void register_fork_guard(void)
{
    (void)pthread_atfork(NULL, NULL, one_thread_in_child);
}

static pthread_once_t fork_guard_once = PTHREAD_ONCE_INIT;

#if defined(__GNUC__)
__attribute__((constructor))
#endif
static void install_fork_guard(void)
{
    pthread_once(&fork_guard_once, register_fork_guard);
}
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

/* Busy machine. A team is a loss when one of its threads starts, or finishes
 * its last range, more than BN_LATE_NS after another thread is done and that
 * wait is over half the team's time: the OS kept the thread off its core
 * (another process runs there, or a virtual CPU was slow to wake), and the
 * calling thread, its ranges done, waited at the team's end. Such a wait
 * costs about the same whatever the call, so it is a loss only for calls
 * whose work takes less time than the wait: after a lost team of work W,
 * busy for b ns before its first thread was done, and a wait of d ns, calls
 * of less work than W * d / b (at least W) run on the calling thread until
 * serial_until_ns, while larger calls keep their threads. The time doubles
 * from BN_BACKOFF_MIN_NS up to BN_BACKOFF_MAX_NS with each lost team in a
 * row and drops back after a team without a wait above BN_LATE_NS; within
 * one back-off the work bound only grows. Results are the same bits either
 * way. */
#define BN_LATE_NS ((int64_t)100000)
#define BN_BACKOFF_MIN_NS ((int64_t)10000000)
#define BN_BACKOFF_MAX_NS ((int64_t)1000000000)
static BN_ATOMIC int64_t serial_until_ns = 0;
static BN_ATOMIC int64_t serial_below_work = 0;
static BN_ATOMIC int64_t backoff_ns = BN_BACKOFF_MIN_NS;
static BN_ATOMIC int backoff_enabled = 1;

void bn_set_thread_backoff(int on)
{
    backoff_enabled = on != 0;
    serial_until_ns = 0;
    serial_below_work = 0;
    backoff_ns = BN_BACKOFF_MIN_NS;
}

int64_t bn_now_ns(void)
{
#ifdef _OPENMP
    return (int64_t)(omp_get_wtime() * 1e9);
#else
    return 0;
#endif
}

void bn_team_done(int64_t work, int64_t start_ns, int64_t late_ns,
                  int64_t first_end_ns, int64_t last_end_ns)
{
    int64_t wait = last_end_ns - first_end_ns;
    if (late_ns > wait)
        wait = late_ns;
    if (wait > BN_LATE_NS && 2 * wait > last_end_ns - start_ns) {
        const int64_t busy = first_end_ns - start_ns > 1 ? first_end_ns - start_ns : 1;
        const double scaled = (double)work * (double)wait / (double)busy;
        int64_t below = scaled < 9.0e18 ? (int64_t)scaled : INT64_MAX;
        if (below < work)
            below = work;
        if (last_end_ns < serial_until_ns && serial_below_work > below)
            below = serial_below_work;
        const int64_t backoff = backoff_ns;
        serial_below_work = below;
        serial_until_ns = last_end_ns + backoff;
        backoff_ns = 2 * backoff < BN_BACKOFF_MAX_NS ? 2 * backoff : BN_BACKOFF_MAX_NS;
    } else if (wait <= BN_LATE_NS) {
        backoff_ns = BN_BACKOFF_MIN_NS;
    }
}

/* A thread per BN_MIN_WORK_PER_THREAD elements of work at most: below that,
 * starting threads costs more than it saves. One thread for calls of less
 * work than the back-off's bound while it lasts (above). */
int bn_threads_for(int64_t items, int64_t work_per_item)
{
    const int64_t by_work = items * work_per_item / BN_MIN_WORK_PER_THREAD;
    int64_t threads;
#ifdef BN_FORK_GUARD
    install_fork_guard();
#endif
    threads = bn_get_num_threads();
    if (threads > items)
        threads = items;
    if (threads > by_work)
        threads = by_work;
    if (threads > 1 && backoff_enabled && items * work_per_item < serial_below_work &&
        bn_now_ns() < serial_until_ns)
        threads = 1;
    return threads > 1 ? (int)threads : 1;
}

int bn_threads_for_work(int64_t items, int64_t work_per_item)
{
    return bn_threads_for(items, work_per_item);
}
