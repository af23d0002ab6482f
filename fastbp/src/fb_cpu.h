/*
 * fb_cpu.h: which CPU code the loops are compiled for, and which of it runs.
 *
 * Compile time
 *   FB_CLONES       attribute of the portable loops (fb_generic_loops.h).  A
 *                   portable build with GCC on x86-64 Linux compiles each loop
 *                   three times with target_clones (x86-64-v4 = AVX-512,
 *                   x86-64-v3 = AVX2+FMA, the SSE2 baseline) and the loader
 *                   picks one for the running CPU (an ifunc).  FASTBP_NATIVE
 *                   (set by setup.py for a -march=native build) or another
 *                   compiler gives one plain version.
 *   FB_AVX512_MODE  the hand-written AVX-512 loops (fb_avx512_loops.h):
 *                   0 = not compiled, 1 = compiled and chosen at run time,
 *                   2 = always run (a FASTBP_NATIVE build for an AVX-512 CPU).
 *                   They need GCC or Clang on x86-64 (target attributes,
 *                   immintrin.h).  FB_NO_AVX512_KERNELS compiles them out (the
 *                   tests use it to check the portable loops on an AVX-512
 *                   machine too).
 *   FB_AVX512       attribute of the AVX-512 loops: the features they use.
 * Run time
 *   fb_use_avx512()  1 when the AVX-512 loops run on this CPU
 *   fb_simd_level()  which versions run, in words (`fastbp info`)
 *
 * No -ffast-math anywhere: IEEE semantics, NaN and inf are kept.
 */
#ifndef FB_CPU_H
#define FB_CPU_H

#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && defined(__linux__) \
    && !defined(FASTBP_NATIVE)
#define FB_HAVE_CLONES 1
#define FB_CLONES __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define FB_HAVE_CLONES 0
#define FB_CLONES
#endif

#if defined(FB_NO_AVX512_KERNELS) || !defined(__GNUC__) || !defined(__x86_64__)
#define FB_AVX512_MODE 0
#elif defined(FASTBP_NATIVE)
#if defined(__AVX512F__) && defined(__AVX512DQ__) && defined(__AVX512BW__) \
    && defined(__AVX512VL__)
#define FB_AVX512_MODE 2
#else
#define FB_AVX512_MODE 0
#endif
#else
#define FB_AVX512_MODE 1
#endif

#if FB_AVX512_MODE
#include <immintrin.h>
#define FB_AVX512 __attribute__((target("avx512f,avx512dq,avx512bw,avx512vl")))
#endif

/* 1 when the AVX-512 intrinsic loops run on this CPU.  The CPU check runs
   once; relaxed atomics because several OpenMP threads may ask at once (they
   all store the same value). */
static inline int fb_use_avx512(void)
{
#if FB_AVX512_MODE == 2
    return 1;
#elif FB_AVX512_MODE == 1
    static int cached = -1;
    int use = __atomic_load_n(&cached, __ATOMIC_RELAXED);
    if (use < 0) {
        __builtin_cpu_init();
        use = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq")
              && __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl");
        __atomic_store_n(&cached, use, __ATOMIC_RELAXED);
    }
    return use;
#else
    return 0;
#endif
}

/* Which loop versions run on this CPU (the same choices the entry points of
   fb_dispatch.h and the target_clones resolver make). */
static inline const char *fb_simd_level(void)
{
#if FB_HAVE_CLONES
    __builtin_cpu_init();
    if (fb_use_avx512())
        return "AVX-512 intrinsics (sigmoid, softmax) + x86-64-v4 target_clones (others)";
    if (__builtin_cpu_supports("x86-64-v4")) return "AVX-512 (x86-64-v4, target_clones)";
    if (__builtin_cpu_supports("x86-64-v3")) return "AVX2+FMA (x86-64-v3, target_clones)";
    return "SSE2 (x86-64 baseline, target_clones)";
#elif defined(FASTBP_NATIVE)
#if FB_AVX512_MODE == 2
    return "AVX-512 intrinsics (sigmoid, softmax) + AVX-512 loops (-march=native build)";
#elif defined(__AVX512F__)
    return "AVX-512 (-march=native build)";
#elif defined(__AVX2__)
    return "AVX2 (-march=native build)";
#else
    return "compiler default (-march=native build)";
#endif
#else
    if (fb_use_avx512())
        return "AVX-512 intrinsics (sigmoid, softmax) + compiler default (others)";
    return "compiler default (no target_clones on this compiler)";
#endif
}

#endif /* FB_CPU_H */
