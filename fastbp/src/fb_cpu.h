/*
 * fb_cpu.h: which CPU code the loops are compiled for, and which of it runs.
 *
 * Compile time
 *   FB_CLONES       attribute of the portable loops (fb_generic_loops.h).  A
 *                   portable build with GCC on x86-64 Linux compiles each loop
 *                   three times with target_clones (x86-64-v4 = AVX-512,
 *                   x86-64-v3 = AVX2+FMA, the SSE2 baseline) and the loader
 *                   picks one for the running CPU (an ifunc).
 *   FB_HAND_DISPATCH 1 for Clang on x86-64 (Linux, macOS): the same three
 *                   versions, compiled by fb_generic_versions.h (the loop
 *                   file again, under `#pragma clang attribute` target
 *                   features, names suffixed _v4 / _v3) and chosen per call
 *                   by FB_GENERIC (fb_dtype.h) on fb_cpu_level().  Clang
 *                   gets no target_clones here: clang 14 resolves
 *                   "arch=x86-64-v4" clones by CPU vendor, not features,
 *                   and macOS has no ifuncs.
 *                   FASTBP_NATIVE (set by setup.py for a -march=native
 *                   build) or another compiler gives one plain version.
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
 *   fb_cpu_level()   2 (x86-64-v4), 1 (x86-64-v3) or 0: the portable loop
 *                    version FB_GENERIC picks under FB_HAND_DISPATCH
 *   fb_simd_level()  which versions run, in words (`fastbp info`)
 *   fb_compiler()    the compiler that built the loops, in words
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

#if defined(__clang__) && defined(__x86_64__) && !defined(_WIN32) && !defined(FASTBP_NATIVE)
#define FB_HAND_DISPATCH 1
/* The features of each level that clang 14's __builtin_cpu_supports can
   check (x86-64-v3 also has F16C, LZCNT and MOVBE, which these loops don't
   use and no CPU with AVX2+FMA+BMI2 lacks). */
#define FB_V3_FEATURES "avx2,fma,bmi,bmi2"
#define FB_V4_FEATURES FB_V3_FEATURES ",avx512f,avx512cd,avx512bw,avx512dq,avx512vl"
#else
#define FB_HAND_DISPATCH 0
#endif
/* The highest level fb_cpu_level() reports: tests compile with 1 or 0 to run
   the v3 or baseline versions through the dispatch on an AVX-512 CPU. */
#ifndef FB_MAX_CPU_LEVEL
#define FB_MAX_CPU_LEVEL 2
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

/* The level of the portable loop versions under FB_HAND_DISPATCH: 2 when
   the CPU has x86-64-v4's features (AVX-512 F/CD/BW/DQ/VL) and v3's, 1 with
   v3's alone (AVX2, FMA, BMI1/2), else 0.  Cached as fb_use_avx512. */
static inline int fb_cpu_level(void)
{
#if FB_HAND_DISPATCH
    static int cached = -1;
    int level = __atomic_load_n(&cached, __ATOMIC_RELAXED);
    if (level < 0) {
        __builtin_cpu_init();
        int v3 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")
                 && __builtin_cpu_supports("bmi") && __builtin_cpu_supports("bmi2");
        int v4 = v3 && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512cd")
                 && __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512dq")
                 && __builtin_cpu_supports("avx512vl");
        level = v4 ? 2 : v3 ? 1 : 0;
        if (level > FB_MAX_CPU_LEVEL)
            level = FB_MAX_CPU_LEVEL;
        __atomic_store_n(&cached, level, __ATOMIC_RELAXED);
    }
    return level;
#else
    return 0;
#endif
}

/* Which loop versions run on this CPU (the same choices the entry points of
   fb_dispatch.h and the target_clones resolver make).  GCC's target_clones
   and Clang's hand dispatch report the same levels in the same words. */
static inline const char *fb_simd_level(void)
{
#if FB_HAVE_CLONES || FB_HAND_DISPATCH
#if FB_HAVE_CLONES
    __builtin_cpu_init();
    int level = __builtin_cpu_supports("x86-64-v4") ? 2
                : __builtin_cpu_supports("x86-64-v3") ? 1 : 0;
#else
    int level = fb_cpu_level();
#endif
    if (fb_use_avx512())
        return "AVX-512 intrinsics (sigmoid, softmax) + x86-64-v4 loop versions (others)";
    if (level == 2) return "AVX-512 (x86-64-v4 loop versions)";
    if (level == 1) return "AVX2+FMA (x86-64-v3 loop versions)";
    return "SSE2 (x86-64 baseline loop versions)";
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
#if defined(__aarch64__) || defined(_M_ARM64)
    return "NEON (aarch64 baseline, one loop version)";
#else
    return "compiler default (one loop version on this compiler and CPU)";
#endif
#endif
}

/* The compiler that built the loops, e.g. "GCC 12.2.0", "Clang 14.0.6". */
static inline const char *fb_compiler(void)
{
#if defined(__clang__)
    return "Clang " __clang_version__;
#elif defined(__GNUC__)
    return "GCC " __VERSION__;
#elif defined(_MSC_VER)
#define FB_STR2(x) #x
#define FB_STR(x) FB_STR2(x)
    return "MSVC " FB_STR(_MSC_FULL_VER);
#else
    return "unknown";
#endif
}

#endif /* FB_CPU_H */
