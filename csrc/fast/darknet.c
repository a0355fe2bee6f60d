/* Darknet-exact kernels for float32 and float64, from one template. */
#include <math.h>

#include "bnkernels.h"
#include "dispatch.h"
#include "loops.h"

#define T float
#define NAME(f) f##_f32
#include "darknet.inc"
#undef T
#undef NAME

#define T double
#define NAME(f) f##_f64
#include "darknet.inc"
#undef T
#undef NAME
