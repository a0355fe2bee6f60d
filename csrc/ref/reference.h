/*
 * The reference tier (csrc/ref/): every kernel of bnkernels.h in plain loops
 * that read like its formula, the oracle of the C tests and of the fuzz
 * harness. In a full build its kernels are named bn_ref_* (bn_ref_dk_mean_f32,
 * bn_ref_stats_nhwc_f64, ...), with bnkernels.h's arguments; in a
 * reference-only build (BNKERNELS_REFERENCE_ONLY) they are bnkernels.h's
 * kernels themselves, and these names are the same functions.
 */
#ifndef BNKERNELS_REFERENCE_H
#define BNKERNELS_REFERENCE_H

#include "bnkernels.h"

#ifdef __cplusplus
extern "C" {
#endif

#ifndef BNKERNELS_REFERENCE_ONLY
#include "rename.h"
BN_DECLARE_DARKNET(float, f32)
BN_DECLARE_DARKNET(double, f64)
BN_DECLARE_DARKNET_OFAST(float, f32)
BN_DECLARE_DARKNET_OFAST(double, f64)
BN_DECLARE_STANDARD(float, f32)
BN_DECLARE_STANDARD(double, f64)
BN_DECLARE_CONV_POOL(float, f32)
BN_DECLARE_CONV_POOL(double, f64)
BN_DECLARE_RELU(float, f32)
BN_DECLARE_RELU(double, f64)
#include "unrename.h"
#else
#include "rename_public.h"
#endif

#ifdef __cplusplus
}
#endif

#endif
