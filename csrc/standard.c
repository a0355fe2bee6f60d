/* Standard-numerics kernels for float32 and float64, from one template. */
#include <math.h>

#include "bnkernels.h"
#include "dispatch.h"
#include "loops.h"

#define T float
#define NAME(f) f##_f32
#include "standard.inc"
#undef T
#undef NAME

#define T double
#define NAME(f) f##_f64
#include "standard.inc"
#undef T
#undef NAME

/* invstd[c] = 1 / sqrt(var[c] + eps) */
void bn_invstd(int64_t channels, const double *var, double eps, double *invstd)
{
    for (int64_t c = 0; c < channels; ++c)
        invstd[c] = 1. / sqrt(var[c] + eps);
}
