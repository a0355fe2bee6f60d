/* Compiler spellings the kernels share (private to csrc/). */
#ifndef BNKERNELS_COMPILER_H
#define BNKERNELS_COMPILER_H

/* BN_INLINE: helpers that must be inlined into each SIMD clone of their
 * caller (fast/dispatch.h); a call to an out-of-line copy would run baseline code. */
#if defined(__GNUC__) || defined(__clang__)
#define BN_INLINE static inline __attribute__((always_inline))
#else
#define BN_INLINE static inline
#endif

/* BN_RESTRICT: C99's restrict, which MSVC spells __restrict (its C mode
 * has no restrict keyword before /std:c11, and C++ has none). */
#if defined(_MSC_VER) || defined(__cplusplus)
#define BN_RESTRICT __restrict
#else
#define BN_RESTRICT restrict
#endif

/* BN_IVDEP before a loop: its iterations are independent (no element is
 * written by one and read by another), so the compiler may vectorize it
 * without checking its pointers for overlap at run time. */
#if defined(__clang__)
#define BN_IVDEP _Pragma("clang loop vectorize(assume_safety)")
#elif defined(__GNUC__)
#define BN_IVDEP _Pragma("GCC ivdep")
#else
#define BN_IVDEP
#endif

#endif
