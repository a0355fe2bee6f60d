/* Runtime SIMD dispatch for elementwise kernels (private to csrc/).
 *
 * BN_SIMD_CLONES compiles a function for baseline x86-64 and again for AVX2
 * and AVX-512F; the loader picks the widest the CPU has (GCC's and Clang's
 * target_clones, via ifunc on glibc). The default build therefore runs on any x86-64 and
 * still uses wide vectors where they exist. Clones are given only to kernels
 * whose order of operations the ISA cannot change: elementwise kernels (one
 * IEEE-rounded expression per element), sums written with fixed vector lanes
 * (lanes.h), and the Darknet sums, whose per-channel chains the compiler may
 * only run side by side across channels (no -ffast-math, so it never
 * reassociates). All clones give the same bits (-ffp-contract=off keeps AVX2
 * from fusing multiply-adds).
 * Elsewhere (other compilers, CPUs or C libraries, or BNKERNELS_NO_DISPATCH) the macro is
 * empty and the baseline code is all there is. */
#ifndef BNKERNELS_DISPATCH_H
#define BNKERNELS_DISPATCH_H

#if defined(__GNUC__) && defined(__x86_64__) && defined(__GLIBC__) && \
    !defined(BNKERNELS_NO_DISPATCH) && defined(__has_attribute)
#if __has_attribute(target_clones)  /* GCC 6 and Clang 14 on */
#define BN_SIMD_CLONES_ENABLED 1
#endif
#endif
#ifdef BN_SIMD_CLONES_ENABLED
#define BN_SIMD_CLONES __attribute__((target_clones("default", "avx2", "avx512f")))
#else
#define BN_SIMD_CLONES
#endif

#endif
