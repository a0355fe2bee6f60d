/* The float32 quotient check of the Darknet-exact normalize (the fast tier;
 * private to csrc/): its constants, for darknet.inc's normalize_checked, and
 * that function's AVX-512F twin (darknet_quick.c). The proof that the check
 * keeps every bit is the comment above normalize_checked. */
#ifndef BNKERNELS_DARKNET_QUICK_H
#define BNKERNELS_DARKNET_QUICK_H

#include <stdint.h>

#include "lanes.h"

/* the 29 low bits of a double that rounding to float32 drops, and their
 * value at a midpoint between two floats */
#define BN_DK_DROPPED 0x1FFFFFFFu
#define BN_DK_MIDPOINT 0x10000000u
/* the bits of (float)2^-125 and (float)2^127 */
#define BN_DK_FLOAT_SAFE_MIN 0x01000000u
#define BN_DK_FLOAT_SAFE_MAX 0x7F000000u

/* BN_DK_QUICK16: bn_dk_normalize_checked16_f32 is compiled (AVX-512F code,
 * x86-64 with GCC or Clang, where lanes.h compiles its one-vector form);
 * call it only where BN_WIDE8(). */
#ifdef BN_HAS_WIDE8
#define BN_DK_QUICK16 1
int bn_dk_normalize_checked16_f32(const float *src, int64_t n, float mean,
                                  double recip, int affine, float scale,
                                  float bias, int lower_end, float *dst);
#endif

#endif
