/* Standard-numerics kernels for float32 and float64, from one template. */
/* A reference-only build (BNKERNELS_REFERENCE_ONLY) has no fast tier. */
#ifndef BNKERNELS_REFERENCE_ONLY
#include <math.h>
#include <stdlib.h>

#include "bnkernels.h"
#include "compiler.h"
#include "dispatch.h"
#include "formulas.h"
#include "lanes.h"
#include "parallel.h"
#include "prefetch.h"
#include "stream.h"

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
