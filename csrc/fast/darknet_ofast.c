/*
 * The fast tier's kernels for Darknet's default -Ofast builds, float32 and
 * float64 from one template: the same bits as the reference tier's
 * (ref/darknet_ofast.inc), whose comments state what each computes; the
 * lane order is formulas.h's (bn_dk_ofast_*). darknet_ofast.inc takes T,
 * NAME and the tile parameters of tiles.inc, and undefines them at its end.
 * A reference-only build (BNKERNELS_REFERENCE_ONLY) has no fast tier.
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
#define VEC bn_v16f
#define LANES 16
#define DEPTH 8
#define TILE bn_tile16f
#include "darknet_ofast.inc"

#define T double
#define NAME(f) f##_f64
#define VEC bn_v8d
#define LANES 8
#define DEPTH 4
#define TILE bn_tile8d
#include "darknet_ofast.inc"

#endif /* BNKERNELS_REFERENCE_ONLY */
