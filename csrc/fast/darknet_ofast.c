/*
 * The fast tier's kernels for Darknet's default -Ofast builds, float32 and
 * float64 from one template: the same bits as the reference tier's
 * (ref/darknet_ofast.inc), whose comments state what each computes; the
 * lane order is formulas.h's (bn_dk_ofast_*). A reference-only build
 * (BNKERNELS_REFERENCE_ONLY) has no fast tier.
 */
#ifndef BNKERNELS_REFERENCE_ONLY
#include <math.h>

#include "bnkernels.h"
#include "compiler.h"
#include "dispatch.h"
#include "formulas.h"
#include "lanes.h"
#include "parallel.h"

#define T float
#define NAME(f) f##_f32
#include "darknet_ofast.inc"
#undef T
#undef NAME

#define T double
#define NAME(f) f##_f64
#include "darknet_ofast.inc"
#undef T
#undef NAME

#endif /* BNKERNELS_REFERENCE_ONLY */
