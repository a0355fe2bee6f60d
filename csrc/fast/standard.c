/* Standard-numerics kernels for float32 and float64, from one template. */
/* A reference-only build (BNKERNELS_REFERENCE_ONLY) has no fast tier. */
#ifndef BNKERNELS_REFERENCE_ONLY
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "bnkernels.h"
#include "compiler.h"
#include "dispatch.h"
#include "formulas.h"
#include "lanes.h"
#include "parallel.h"
#include "prefetch.h"
#include "stream.h"

/* A type's non-NaN values in order, as integers one apart: -0 and +0 are
 * both 0, -inf and +inf the ends (relu_range bisects over them). */
static inline int64_t value_key_f32(float v)
{
    uint32_t bits;
    memcpy(&bits, &v, sizeof bits);
    const int64_t magnitude = (int64_t)(bits & 0x7fffffffu);
    return bits >> 31 ? -magnitude : magnitude;
}
static inline float key_value_f32(int64_t key)
{
    const uint32_t bits = key < 0 ? 0x80000000u | (uint32_t)-key : (uint32_t)key;
    float v;
    memcpy(&v, &bits, sizeof v);
    return v;
}
static inline int64_t value_key_f64(double v)
{
    uint64_t bits;
    memcpy(&bits, &v, sizeof bits);
    const int64_t magnitude = (int64_t)(bits & 0x7fffffffffffffffu);
    return bits >> 63 ? -magnitude : magnitude;
}
static inline double key_value_f64(int64_t key)
{
    const uint64_t bits = key < 0 ? 0x8000000000000000u | (uint64_t)-key
                                  : (uint64_t)key;
    double v;
    memcpy(&v, &bits, sizeof v);
    return v;
}

#define T float
#define NAME(f) f##_f32
#include "standard.inc"
#include "standard_nhwc.inc"
#undef T
#undef NAME

#define T double
#define NAME(f) f##_f64
#include "standard.inc"
#include "standard_nhwc.inc"
#undef T
#undef NAME

#endif /* BNKERNELS_REFERENCE_ONLY */
