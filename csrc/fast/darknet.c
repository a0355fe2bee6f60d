/* Darknet-exact kernels for float32 and float64, from one template. */
/* A reference-only build (BNKERNELS_REFERENCE_ONLY) has no fast tier. */
#ifndef BNKERNELS_REFERENCE_ONLY
#include <math.h>

#include "bnkernels.h"
#include "compiler.h"
#include "dispatch.h"
#include "lanes.h"
#include "parallel.h"
#include "formulas.h"
#include "darknet_quick.h"

/* the tiles of darknet.inc for each T (lanes.h, BN_TILES), and for float32
 * the AVX-512F twin of its quotient check; darknet.inc undefines these
 * parameters at its end */
#define T float
#define NAME(f) f##_f32
#define VEC bn_v16f
#define LANES 16
#define DEPTH 8
#define TILE bn_tile16f
#define SQUARES bn_w16f
#define SQUARE_ADD BN_SQUARE_ADD16F
#define NARROW BN_NARROW16F
#ifdef BN_DK_QUICK16
#define CHECKED16 bn_dk_normalize_checked16_f32
#endif
#include "darknet.inc"

#define T double
#define NAME(f) f##_f64
#define VEC bn_v8d
#define LANES 8
#define DEPTH 4
#define TILE bn_tile8d
#define SQUARES bn_v8d
#define SQUARE_ADD BN_SQUARE_ADD8D
#define NARROW BN_NARROW8D
#include "darknet.inc"

#endif /* BNKERNELS_REFERENCE_ONLY */
