/* What the C timers of benchmarks/c/ share: a monotonic clock, buffers on
 * a boundary, and inputs filled with a repeating ramp. */
#ifndef BNKERNELS_BENCH_TIMING_H
#define BNKERNELS_BENCH_TIMING_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static double seconds(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

/* at least bytes + boundary bytes starting on a multiple of boundary (a
 * power of two), so that a buffer placed up to boundary bytes in still
 * holds `bytes`; exits on failure */
static void *boundary_buffer(size_t boundary, size_t bytes)
{
    void *p = aligned_alloc(boundary, (bytes + 2 * boundary) / boundary * boundary);
    if (!p) {
        fprintf(stderr, "out of memory\n");
        exit(1);
    }
    return p;
}

/* v[i] = base + (i % period) * step for i < n, as T (size 4 or 8) */
static void fill(void *v, int size, int64_t n, double base, int period,
                 double step)
{
    for (int64_t i = 0; i < n; ++i) {
        const double value = base + (double)(i % period) * step;
        if (size == 8)
            ((double *)v)[i] = value;
        else
            ((float *)v)[i] = (float)value;
    }
}

#endif
