/*
 * fb_simd.h: fastbp's vectorisable elementwise loops.
 *
 * The loops that call exp (sigmoid, softmax) are written so that GCC turns
 * them into SIMD code: exp is a branch-free polynomial (Cody-Waite range
 * reduction, Chebyshev polynomial, exponent built from integer bits), every
 * conditional is a select, and nothing calls libm per element.
 *
 * Portable builds compile each loop three times with GCC's target_clones
 * (x86-64-v4 = AVX-512, x86-64-v3 = AVX2+FMA, baseline SSE2); the loader
 * picks the best one for the running CPU.  FASTBP_NATIVE (set by setup.py
 * for a -march=native build) or a compiler without target_clones gives one
 * plain version.  No -ffast-math: IEEE semantics, NaN and inf are kept.
 */
#ifndef FB_SIMD_H
#define FB_SIMD_H

#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && defined(__linux__) \
    && !defined(FASTBP_NATIVE) && !defined(FASTBP_NO_CLONES)
#define FB_CLONES __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#define FB_HAVE_CLONES 1
#else
#define FB_CLONES
#define FB_HAVE_CLONES 0
#endif

/* The exp-heavy loops (sigmoid forward, softmax + cross-entropy forward) also
 * have a version written with AVX-512 intrinsics (below): exp through
 * roundscale + scalef, a reciprocal estimate + Newton steps instead of the
 * division, softmax rows in one fused exp-and-sum pass.  It needs GCC or
 * Clang on x86-64 (target attributes, immintrin.h) and is picked at run time
 * when the CPU has AVX-512F/DQ/BW/VL; a FASTBP_NATIVE build for an AVX-512
 * machine calls it directly.  FB_NO_AVX512_KERNELS compiles it out (the tests
 * use that to check the generic loops on an AVX-512 machine too).
 * FB_AVX512_MODE: 0 = not compiled, 1 = runtime check, 2 = always.
 */
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

/* Which loop version runs on this CPU (the same choices the dispatch below
   and the ifunc resolver make). */
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

/* ---- exp ---------------------------------------------------------------
 * fb_exp_d / fb_exp_f: e**x for x <= 0 (callers only exponentiate shifted,
 * non-positive values): Cody-Waite reduction to |r| <= ln2/2, a Chebyshev
 * polynomial (fitted in 50-digit arithmetic; degree 11 for double, 6 for
 * float: fewer terms than Taylor for the same accuracy), about 1 ulp,
 * subnormal results included,
 * 0 below the underflow limit, NaN in -> NaN out.  Inline and branch-free so
 * the surrounding loop vectorises.
 */
/* The exp constants, shared by the generic loops and the AVX-512 ones:
 * underflow limit, log2(e), ln2 split in two (Cody-Waite), and the Chebyshev
 * coefficients as FB_EXP_*_POLY(STEP): the leading one, then one STEP per
 * Horner step p = p * r + c. */
#define FB_EXP_D_MIN (-746.0)
#define FB_EXP_D_LOG2E 1.4426950408889634074
#define FB_EXP_D_LN2_HI 6.93147180369123816490e-01
#define FB_EXP_D_LN2_LO 1.90821492927058770002e-10
#define FB_EXP_D_LEAD 2.511003760596377771e-8
#define FB_EXP_D_POLY(STEP) \
    STEP(2.763263963904102975e-7) STEP(2.755724091857896982e-6) \
    STEP(2.480148548232849242e-5) STEP(1.984126989004711371e-4) \
    STEP(1.388888895231477465e-3) STEP(8.333333333319600611e-3) \
    STEP(4.166666666648809550e-2) STEP(1.666666666666668081e-1) \
    STEP(5.000000000000018386e-1) STEP(1.0) STEP(1.0)
#define FB_EXP_F_MIN (-104.0f)
#define FB_EXP_F_LOG2E 1.44269504088896341f
#define FB_EXP_F_LN2_HI 0.693145751953125f
#define FB_EXP_F_LN2_LO 1.428606765330187045e-06f
#define FB_EXP_F_LEAD 1.394110843397267461e-3f
#define FB_EXP_F_POLY(STEP) \
    STEP(8.375126398153335682e-3f) STEP(4.166635289677515679e-2f) \
    STEP(1.666641551465327543e-1f) STEP(5.000000047117757674e-1f) \
    STEP(1.000000037716213843f) STEP(1.0f)
#define FB_HORNER_STEP(c) p = p * r + (c);

static inline double fb_exp_d(double x)
{
    const double shifter = 6755399441055744.0;  /* 1.5 * 2**52: rounds to integer */
    double xc = x < FB_EXP_D_MIN ? FB_EXP_D_MIN : x;   /* NaN compares false: kept */
    xc = xc > 0.0 ? 0.0 : xc;
    double t = xc * FB_EXP_D_LOG2E + shifter;
    double n = t - shifter;
    double r = (xc - n * FB_EXP_D_LN2_HI) - n * FB_EXP_D_LN2_LO;  /* |r| <= ln2/2 */
    /* Chebyshev fit of exp on [-ln2/2, ln2/2], degree 11 (error < 2e-17) */
    double p = FB_EXP_D_LEAD;
    FB_EXP_D_POLY(FB_HORNER_STEP)
    /* 2**n as two factors 2**n1 * 2**n2 (n1 = round(n/2), n2 = n - n1) so that
       results in the subnormal range (n down to -1077) are still exact.  Each
       factor's exponent bits come from the shifter trick: the integer k sits
       in the low bits of k + shifter.  Only 64-bit add, subtract and left
       shift on integers: all of them exist in AVX2 as well as AVX-512. */
    double n1 = (n * 0.5 + shifter) - shifter;
    double n2 = n - n1;
    double t1 = n1 + shifter, t2 = n2 + shifter;
    int64_t b1, b2, shifter_bits;
    const double shifter_copy = shifter;
    memcpy(&b1, &t1, sizeof b1);
    memcpy(&b2, &t2, sizeof b2);
    memcpy(&shifter_bits, &shifter_copy, sizeof shifter_bits);
    b1 = (b1 - shifter_bits + 1023) << 52;
    b2 = (b2 - shifter_bits + 1023) << 52;
    double s1, s2;
    memcpy(&s1, &b1, sizeof s1);
    memcpy(&s2, &b2, sizeof s2);
    return p * s1 * s2;
}

static inline float fb_exp_f(float x)
{
    const float shifter = 12582912.0f;  /* 1.5 * 2**23 */
    float xc = x < FB_EXP_F_MIN ? FB_EXP_F_MIN : x;
    xc = xc > 0.0f ? 0.0f : xc;
    float t = xc * FB_EXP_F_LOG2E + shifter;
    float n = t - shifter;
    float r = (xc - n * FB_EXP_F_LN2_HI) - n * FB_EXP_F_LN2_LO;
    /* Chebyshev fit of exp on [-ln2/2, ln2/2], degree 6 (error < 3e-8) */
    float p = FB_EXP_F_LEAD;
    FB_EXP_F_POLY(FB_HORNER_STEP)
    float n1 = (n * 0.5f + shifter) - shifter;    /* as in fb_exp_d */
    float n2 = n - n1;
    float t1 = n1 + shifter, t2 = n2 + shifter;
    int32_t b1, b2, shifter_bits;
    const float shifter_copy = shifter;
    memcpy(&b1, &t1, sizeof b1);
    memcpy(&b2, &t2, sizeof b2);
    memcpy(&shifter_bits, &shifter_copy, sizeof shifter_bits);
    b1 = (b1 - shifter_bits + 127) << 23;
    b2 = (b2 - shifter_bits + 127) << 23;
    float s1, s2;
    memcpy(&s1, &b1, sizeof s1);
    memcpy(&s2, &b2, sizeof s2);
    return p * s1 * s2;
}

/* `#pragma omp simd reduction(...)` where -fopenmp-simd (or -fopenmp) is on;
   otherwise a plain serial loop.  Only reductions use it: they are the loops
   the compiler may not vectorise under strict IEEE ordering. */
#if defined(_OPENMP) || defined(FB_OPENMP_SIMD)
#define FB_PRAGMA(x) _Pragma(#x)
#define FB_SIMD_REDUCTION(spec) FB_PRAGMA(omp simd reduction(spec))
#else
#define FB_SIMD_REDUCTION(spec)
#endif

/* Rows shorter than this reduce with plain loops (measured: 100x10 softmax
   3.6 us plain vs 4.4 us with omp-simd reductions; 256x1000 1030 vs 460 us). */
#define FB_SHORT_ROW 32
/* Elements exponentiated per flat pass of the softmax (fits in L1/L2). */
#define FB_SOFTMAX_BLOCK 2048

/* ---- elementwise loops, one version per dtype ----------------------------
 * FB_ELEMENTWISE(T, SUFFIX, EXP) stamps out the float and double versions.
 * Inputs are const, outputs are written once, n may be 0.
 */
#define FB_ELEMENTWISE(T, S, EXP)                                                   \
FB_CLONES static void fb_generic_relu_forward_##S(const T *restrict x,              \
                                                  T *restrict out,                   \
                                                  uint8_t *restrict mask, ptrdiff_t n) \
{                                                                                    \
    for (ptrdiff_t i = 0; i < n; i++) {                                              \
        T v = x[i];                                                                  \
        int masked = v <= (T)0;            /* NaN: not masked, stays NaN */          \
        mask[i] = (uint8_t)masked;                                                   \
        out[i] = masked ? (T)0 : v;                                                  \
    }                                                                                \
}                                                                                    \
FB_CLONES static void fb_generic_relu_backward_##S(const T *restrict dout,         \
                                                   const uint8_t *restrict mask,     \
                                                   T *restrict dx, ptrdiff_t n)      \
{                                                                                    \
    for (ptrdiff_t i = 0; i < n; i++)                                                \
        dx[i] = mask[i] ? (T)0 : dout[i];                                            \
}                                                                                    \
FB_CLONES static void fb_generic_sigmoid_forward_##S(const T *restrict x,           \
                                                     T *restrict out, ptrdiff_t n)  \
{                                                                                    \
    for (ptrdiff_t i = 0; i < n; i++) {                                              \
        T v = x[i];                                                                  \
        T z = EXP(-fabs##S##_(v));              /* in [0, 1]: never overflows */     \
        T s = (T)1 / ((T)1 + z);                                                     \
        out[i] = v >= (T)0 ? s : z * s;         /* NaN -> NaN via z */               \
    }                                                                                \
}                                                                                    \
FB_CLONES static void fb_sigmoid_backward_##S(const T *restrict dout,                \
                                              const T *restrict out,                 \
                                              T *restrict dx, ptrdiff_t n)           \
{                                                                                    \
    for (ptrdiff_t i = 0; i < n; i++)                                                \
        dx[i] = dout[i] * ((T)1 - out[i]) * out[i];   /* the book's order */         \
}                                                                                    \
/* Softmax works on blocks of rows: per row the maximum and x - max, then   */       \
/* exp over the whole block as one flat loop (so rows of 10 classes still   */       \
/* run at full SIMD width), then per row the sum, the division and the log. */       \
/* `omp simd` reductions (-fopenmp-simd) keep partial maxima and sums in    */       \
/* vector lanes; a NaN or +inf in a row makes the row NaN either way.       */       \
/* Short rows (the book's 10 classes) are faster as plain loops: a vector  */        \
/* reduction's setup and tail cost more than it saves below ~32 elements.   */       \
static inline T fb_row_max_##S(const T *restrict xi, ptrdiff_t c)                    \
{                                                                                    \
    T row_max = xi[0];                                                               \
    if (c < FB_SHORT_ROW) {                                                          \
        for (ptrdiff_t j = 1; j < c; j++)                                            \
            row_max = xi[j] > row_max ? xi[j] : row_max;                             \
        return row_max;                                                              \
    }                                                                                \
    FB_SIMD_REDUCTION(max : row_max)                                                 \
    for (ptrdiff_t j = 1; j < c; j++)                                                \
        row_max = xi[j] > row_max ? xi[j] : row_max;                                 \
    return row_max;                                                                  \
}                                                                                    \
static inline T fb_row_sum_##S(const T *restrict yi, ptrdiff_t c)                    \
{                                                                                    \
    T sum = 0;                                                                       \
    if (c < FB_SHORT_ROW) {                                                          \
        for (ptrdiff_t j = 0; j < c; j++)                                            \
            sum += yi[j];                                                            \
        return sum;                                                                  \
    }                                                                                \
    FB_SIMD_REDUCTION(+ : sum)                                                       \
    for (ptrdiff_t j = 0; j < c; j++)                                                \
        sum += yi[j];                                                                \
    return sum;                                                                      \
}                                                                                    \
/* Rows [i0, i1): row_max[i - i0] = max(x_i), y_i = exp(x_i - row_max).   */         \
static inline void fb_softmax_exp_block_##S(const T *restrict x, T *restrict y,      \
        T *restrict row_max, ptrdiff_t i0, ptrdiff_t i1, ptrdiff_t c)                \
{                                                                                    \
    for (ptrdiff_t i = i0; i < i1; i++) {                                            \
        const T *xi = x + i * c;                                                     \
        T *yi = y + i * c;                                                           \
        T m = fb_row_max_##S(xi, c);                                                 \
        row_max[i - i0] = m;                                                         \
        for (ptrdiff_t j = 0; j < c; j++)                                            \
            yi[j] = xi[j] - m;                                                       \
    }                                                                                \
    T *yb = y + i0 * c;                                                              \
    ptrdiff_t len = (i1 - i0) * c;                                                   \
    for (ptrdiff_t k = 0; k < len; k++)                                              \
        yb[k] = EXP(yb[k]);                                                          \
}                                                                                    \
/* Softmax and cross-entropy of rows [0, n) of x (row stride c).           */        \
/* Writes probabilities y and per-row loss, returns the summed loss;       */        \
/* labels are class indices.                                               */        \
FB_CLONES static double fb_generic_softmax_xent_labels_##S(const T *restrict x,      \
        const int64_t *restrict labels, T *restrict y, T *restrict loss,             \
        ptrdiff_t n, ptrdiff_t c)                                                    \
{                                                                                    \
    T row_max[FB_SOFTMAX_BLOCK];                                                     \
    ptrdiff_t rows = c >= FB_SOFTMAX_BLOCK ? 1 : FB_SOFTMAX_BLOCK / c;               \
    double total = 0.0;                                                              \
    for (ptrdiff_t i0 = 0; i0 < n; i0 += rows) {                                     \
        ptrdiff_t i1 = i0 + rows < n ? i0 + rows : n;                                \
        fb_softmax_exp_block_##S(x, y, row_max, i0, i1, c);                          \
        for (ptrdiff_t i = i0; i < i1; i++) {                                        \
            const T *xi = x + i * c;                                                 \
            T *yi = y + i * c;                                                       \
            T sum = fb_row_sum_##S(yi, c);                                           \
            T inv_sum = (T)1 / sum;       /* one division a row, then products */     \
            for (ptrdiff_t j = 0; j < c; j++)                                        \
                yi[j] = yi[j] * inv_sum;                                             \
            T li = (T)log((double)sum) - (xi[labels[i]] - row_max[i - i0]);          \
            loss[i] = li;                                                            \
            total += (double)li;                                                     \
        }                                                                            \
    }                                                                                \
    return total;                                                                    \
}                                                                                    \
/* The same with target weights t (one-hot or soft, row stride c).        */         \
/* Terms with t == 0 are skipped, so a -inf logit elsewhere costs nothing. */        \
FB_CLONES static double fb_generic_softmax_xent_onehot_##S(const T *restrict x,      \
        const T *restrict t, T *restrict y, T *restrict loss, ptrdiff_t n,           \
        ptrdiff_t c)                                                                 \
{                                                                                    \
    T row_max[FB_SOFTMAX_BLOCK];                                                     \
    ptrdiff_t rows = c >= FB_SOFTMAX_BLOCK ? 1 : FB_SOFTMAX_BLOCK / c;               \
    double total = 0.0;                                                              \
    for (ptrdiff_t i0 = 0; i0 < n; i0 += rows) {                                     \
        ptrdiff_t i1 = i0 + rows < n ? i0 + rows : n;                                \
        fb_softmax_exp_block_##S(x, y, row_max, i0, i1, c);                          \
        for (ptrdiff_t i = i0; i < i1; i++) {                                        \
            const T *xi = x + i * c, *ti = t + i * c;                                \
            T *yi = y + i * c;                                                       \
            T m = row_max[i - i0];                                                   \
            T sum = fb_row_sum_##S(yi, c);                                           \
            T log_sum = (T)log((double)sum);                                         \
            T li = 0;                                                                \
            T inv_sum = (T)1 / sum;                                                  \
            for (ptrdiff_t j = 0; j < c; j++) {                                      \
                yi[j] = yi[j] * inv_sum;                                             \
                T term = ti[j] * (log_sum - (xi[j] - m));                            \
                li += ti[j] != (T)0 ? term : (T)0;                                   \
            }                                                                        \
            loss[i] = li;                                                            \
            total += (double)li;                                                     \
        }                                                                            \
    }                                                                                \
    return total;                                                                    \
}                                                                                    \
/* dx = (y - onehot) * scale for rows [0, n); labels are class indices.  One  */    \
/* flat pass dx = y * scale (y - 0 is y), then the label entries: full-width */      \
/* vectors however short the rows.                                            */    \
FB_CLONES static void fb_softmax_xent_backward_labels_##S(const T *restrict y,      \
        const int64_t *restrict labels, T *restrict dx, T scale, ptrdiff_t n,        \
        ptrdiff_t c)                                                                 \
{                                                                                    \
    for (ptrdiff_t k = 0; k < n * c; k++)                                            \
        dx[k] = y[k] * scale;                                                        \
    for (ptrdiff_t i = 0; i < n; i++) {                                              \
        ptrdiff_t k = i * c + labels[i];                                             \
        dx[k] = (y[k] - (T)1) * scale;                                               \
    }                                                                                \
}                                                                                    \
/* a[i] = log(a[i]) for the AVX-512 softmax's row sums (FB_LOG_BLOCK below). */     \
static inline void fb_log_in_place_##S(T *a, ptrdiff_t n)                            \
{                                                                                    \
    for (ptrdiff_t i = 0; i < n; i++)                                                \
        a[i] = (T)log((double)a[i]);                                                 \
}                                                                                    \
FB_CLONES static void fb_softmax_xent_backward_onehot_##S(const T *restrict y,      \
        const T *restrict t, T *restrict dx, T scale, ptrdiff_t n)                   \
{                                                                                    \
    for (ptrdiff_t i = 0; i < n; i++)                                                \
        dx[i] = (y[i] - t[i]) * scale;                                               \
}

#define fabsf_(v) fabsf(v)
#define fabsd_(v) fabs(v)
FB_ELEMENTWISE(float, f, fb_exp_f)
FB_ELEMENTWISE(double, d, fb_exp_d)

/* Rows per block of the AVX-512 softmax: each block's row sums go through
   log in a loop of their own, after the vector passes over its rows (a libm
   call inside the vector loop costs a vzeroupper and the reload of every
   constant after it: 100x10 float32 ~2.4 -> ~1.8 us). */
#define FB_LOG_BLOCK 256
/* Shortest softmax row the AVX-512 loops take (measured, 100 x c rows: from
   6 classes up they beat the generic blocks: c = 10 float32 2.3 -> 1.8 us,
   c = 16 float64 3.6 -> 2.7 us; below, one row fills too little of a vector). */
#define FB_AVX512_MIN_ROW 6

#if FB_AVX512_MODE
/* ---- AVX-512 intrinsics --------------------------------------------------
 * fb_exp512_d / fb_exp512_f: e**x on 8 doubles / 16 floats.  The float one is
 * fb_exp_f (same reduction and coefficients); the double one a table-driven
 * variant (below).  Inputs x <= 0 or NaN.
 * max(limit, x) clamps at the underflow limit and keeps NaN (MAXPD returns
 * its second operand when either is NaN); scalef multiplies by 2**n with one
 * rounding, so subnormal results are exact without the two-factor trick.
 */
#define FB_HORNER512_D(c) p = _mm512_fmadd_pd(p, r, _mm512_set1_pd(c));
#define FB_HORNER512_F(c) p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(c));
/* fb_exp512_d reduces further than fb_exp_d: x = (k/16) ln2 + r, |r| <= ln2/32,
 * e**x = 2**floor(k/16) * 2**((k mod 16)/16) * e**r.  2**(j/16) comes from a
 * 16-entry table held in two registers (permutex2var picks by the low 4 bits
 * of k, which sit in the low bits of k + shifter), as a double plus the
 * double nearest its remainder; e**r = 1 + r P(r) with P of degree 5.
 * Fewer vector operations than the degree-11 polynomial (sigmoid forward
 * 1e6 float64: 0.97 -> 0.87 ns per element) and closer: 0.66 ulp against
 * 0.95 over [-745, 0].  Constants from tools/exp_coefficients.py. */
static const double fb_exp2_16ths_hi[16] __attribute__((aligned(64))) = {
    1.0, 1.0442737824274138, 1.0905077326652577, 1.1387886347566916,
    1.189207115002721, 1.241857812073484, 1.2968395546510096, 1.3542555469368927,
    1.4142135623730951, 1.4768261459394993, 1.5422108254079407, 1.6104903319492543,
    1.681792830507429, 1.7562521603732995, 1.8340080864093424, 1.9152065613971474};
static const double fb_exp2_16ths_lo[16] __attribute__((aligned(64))) = {
    0.0, 8.551889705537965e-17, -3.046782079812471e-17, 8.912812676025408e-17,
    3.982015231465646e-17, 4.658027591836937e-17, 2.5382502794888315e-17,
    7.70094837980299e-17, -9.667293313452913e-17, -3.483994556892796e-17,
    7.949834809697621e-17, 2.4707192569797888e-17, 8.199010020581497e-17,
    2.960140695448873e-17, 3.283107224245627e-17, -1.0619946056195963e-16};
#define FB_EXPM1_D_LEAD 0.0013889063440655326116
#define FB_EXPM1_D_POLY(STEP) \
    STEP(0.0083334729749512293007) STEP(0.041666666663595472992) \
    STEP(0.16666666664209707102) STEP(0.50000000000000008005) STEP(1.0000000000000006404)
FB_AVX512 static inline __m512d fb_exp512_d(__m512d x)
{
    const __m512d shifter = _mm512_set1_pd(6755399441055744.0);   /* 1.5 * 2**52 */
    x = _mm512_max_pd(_mm512_set1_pd(FB_EXP_D_MIN), x);
    __m512d t = _mm512_fmadd_pd(x, _mm512_set1_pd(16.0 * FB_EXP_D_LOG2E), shifter);
    __m512d k = _mm512_sub_pd(t, shifter);                      /* round(16 x / ln2) */
    __m512d r = _mm512_fnmadd_pd(k, _mm512_set1_pd(FB_EXP_D_LN2_HI / 16.0), x);
    r = _mm512_fnmadd_pd(k, _mm512_set1_pd(FB_EXP_D_LN2_LO / 16.0), r);
    __m512d p = _mm512_set1_pd(FB_EXPM1_D_LEAD);
    FB_EXPM1_D_POLY(FB_HORNER512_D)
    __m512d q = _mm512_mul_pd(p, r);                            /* e**r - 1 */
    __m512i j = _mm512_castpd_si512(t);
    __m512d hi = _mm512_permutex2var_pd(_mm512_load_pd(fb_exp2_16ths_hi), j,
                                        _mm512_load_pd(fb_exp2_16ths_hi + 8));
    __m512d lo = _mm512_permutex2var_pd(_mm512_load_pd(fb_exp2_16ths_lo), j,
                                        _mm512_load_pd(fb_exp2_16ths_lo + 8));
    /* 2**(j/16) e**r = hi + (hi q + lo), and 2**floor(k/16) by scalef */
    return _mm512_scalef_pd(_mm512_add_pd(hi, _mm512_fmadd_pd(hi, q, lo)),
                            _mm512_mul_pd(k, _mm512_set1_pd(1.0 / 16.0)));
}

FB_AVX512 static inline __m512 fb_exp512_f(__m512 x)
{
    x = _mm512_max_ps(_mm512_set1_ps(FB_EXP_F_MIN), x);
    __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(FB_EXP_F_LOG2E)),
                                    _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(FB_EXP_F_LN2_HI), x);
    r = _mm512_fnmadd_ps(n, _mm512_set1_ps(FB_EXP_F_LN2_LO), r);
    __m512 p = _mm512_set1_ps(FB_EXP_F_LEAD);
    FB_EXP_F_POLY(FB_HORNER512_F)
    return _mm512_scalef_ps(p, n);
}

/* fb_recip512_d / fb_recip512_f: 1/d for d in [1, 2] (sigmoid's 1 + z).
 * rcp14 is good to 2**-14; each Newton step r += r*(1 - d*r) squares the
 * error: two steps reach double precision, one step float (measured on the
 * tests' sweeps: within 1 ulp of the division, see test_simd_paths.py).
 */
FB_AVX512 static inline __m512d fb_recip512_d(__m512d d)
{
    const __m512d one = _mm512_set1_pd(1.0);
    __m512d r = _mm512_rcp14_pd(d);
    r = _mm512_fmadd_pd(r, _mm512_fnmadd_pd(d, r, one), r);
    return _mm512_fmadd_pd(r, _mm512_fnmadd_pd(d, r, one), r);
}

FB_AVX512 static inline __m512 fb_recip512_f(__m512 d)
{
    __m512 r = _mm512_rcp14_ps(d);
    return _mm512_fmadd_ps(r, _mm512_fnmadd_ps(d, r, _mm512_set1_ps(1.0f)), r);
}

/* FB_AVX512_ELEMENTWISE(T, S, V, P, M, W) stamps out the loops per dtype:
 * T the element type, V the vector type, P the intrinsic suffix (pd, ps),
 * M the mask type, W the lanes.  Each loop runs whole vectors, then one
 * masked vector for the last n % W elements (masked-off lanes are neither
 * read nor written).
 */
#define FB_AVX512_ELEMENTWISE(T, S, V, P, M, W)                                     \
/* Mask of the first n lanes (all W of them when n >= W). */                        \
FB_AVX512 static inline M fb_lanes512_##S(ptrdiff_t n)                              \
{                                                                                    \
    return n >= W ? (M)~(M)0 : (M)((1u << n) - 1);                                   \
}                                                                                    \
/* sigmoid of 8 / 16 values: as the generic loop, exp(-|v|) and 1/(1 + z). */       \
FB_AVX512 static inline V fb_sigmoid512_##S(V v)                                    \
{                                                                                    \
    V minus_abs = _mm512_or_##P(v, _mm512_set1_##P((T)-0.0));  /* NaN stays NaN */ \
    V z = fb_exp512_##S(minus_abs);                                                  \
    V s = fb_recip512_##S(_mm512_add_##P(_mm512_set1_##P((T)1), z));                 \
    /* v < 0 or NaN: z * s (NaN through z) */                                        \
    M neg = _mm512_cmp_##P##_mask(v, _mm512_setzero_##P(), _CMP_NGE_UQ);             \
    return _mm512_mask_mul_##P(s, neg, z, s);                                        \
}                                                                                    \
/* out = sigmoid(x) for n elements. */                                               \
FB_AVX512 static void fb_avx512_sigmoid_forward_##S(const T *restrict x,             \
                                                    T *restrict out, ptrdiff_t n)    \
{                                                                                    \
    ptrdiff_t i = 0;                                                                 \
    for (; i + W <= n; i += W)                                                       \
        _mm512_storeu_##P(out + i, fb_sigmoid512_##S(_mm512_loadu_##P(x + i)));      \
    if (i < n) {                                                                     \
        M k = fb_lanes512_##S(n - i);                                                \
        _mm512_mask_storeu_##P(out + i, k,                                           \
                               fb_sigmoid512_##S(_mm512_maskz_loadu_##P(k, x + i))); \
    }                                                                                \
}                                                                                    \
/* ReLU with streaming stores, for arrays far larger than the L2 cache   */         \
/* (FB_STREAM_MIN_BYTES): out / dx bypass the caches instead of being    */          \
/* read into them first only to be overwritten (a third less memory      */          \
/* traffic; fastbp bench relu 1e6 float64 ~20% faster).  The head up to  */          \
/* a 64-byte boundary of the output runs the generic loop (streaming     */          \
/* stores need the alignment), the end one masked vector.                */          \
FB_AVX512 static inline ptrdiff_t fb_stream_head_##S(const T *out, ptrdiff_t n)     \
{                                                                                    \
    ptrdiff_t head = (ptrdiff_t)((64 - ((uintptr_t)out & 63)) & 63) / (ptrdiff_t)sizeof(T); \
    return head < n ? head : n;                                                      \
}                                                                                    \
FB_AVX512 static void fb_avx512_relu_forward_##S(const T *restrict x,                \
        T *restrict out, uint8_t *restrict mask, ptrdiff_t n)                        \
{                                                                                    \
    ptrdiff_t i = fb_stream_head_##S(out, n);                                        \
    fb_generic_relu_forward_##S(x, out, mask, i);                                    \
    const V zero = _mm512_setzero_##P();                                             \
    const __m128i one = _mm_set1_epi8(1);                                            \
    for (; i + W <= n; i += W) {                                                     \
        V v = _mm512_loadu_##P(x + i);                                               \
        M k = _mm512_cmp_##P##_mask(v, zero, _CMP_LE_OQ);  /* NaN: not masked */     \
        _mm512_stream_##P(out + i, _mm512_mask_blend_##P(k, v, zero));               \
        _mm_mask_storeu_epi8(mask + i, (__mmask16)fb_lanes512_##S(W),                \
                             _mm_maskz_mov_epi8((__mmask16)k, one));                 \
    }                                                                                \
    _mm_sfence();                       /* streaming stores visible before return */ \
    fb_generic_relu_forward_##S(x + i, out + i, mask + i, n - i);                    \
}                                                                                    \
FB_AVX512 static void fb_avx512_relu_backward_##S(const T *restrict dout,            \
        const uint8_t *restrict mask, T *restrict dx, ptrdiff_t n)                   \
{                                                                                    \
    ptrdiff_t i = fb_stream_head_##S(dx, n);                                         \
    fb_generic_relu_backward_##S(dout, mask, dx, i);                                 \
    for (; i + W <= n; i += W) {                                                     \
        __m128i m = _mm_maskz_loadu_epi8((__mmask16)fb_lanes512_##S(W), mask + i);   \
        M keep = (M)_mm_testn_epi8_mask(m, m);             /* mask byte == 0 */      \
        _mm512_stream_##P(dx + i, _mm512_maskz_loadu_##P(keep, dout + i));           \
    }                                                                                \
    _mm_sfence();                                                                    \
    fb_generic_relu_backward_##S(dout + i, mask + i, dx + i, n - i);                 \
}                                                                                    \
/* One softmax row of c elements: y = exp(x - max(x)), returns sum(y) and     */    \
/* sets *row_max.  Two passes over x (the max, then exp with the sum kept in  */    \
/* a vector register) instead of the generic code's four.  A NaN or +inf in  */     \
/* x makes some y NaN (x - max is NaN), hence the sum and then the whole row. */    \
FB_AVX512 static inline T fb_avx512_softmax_exp_row_##S(const T *restrict xi,       \
        T *restrict yi, ptrdiff_t c, T *row_max)                                     \
{                                                                                    \
    ptrdiff_t j;                                                                     \
    M tail = fb_lanes512_##S(c % W);                                                 \
    V vmax = _mm512_set1_##P((T)-INFINITY);                                          \
    for (j = 0; j + W <= c; j += W)                                                  \
        vmax = _mm512_max_##P(vmax, _mm512_loadu_##P(xi + j));                       \
    if (j < c)                                                                       \
        vmax = _mm512_mask_max_##P(vmax, tail, vmax,                                 \
                                   _mm512_maskz_loadu_##P(tail, xi + j));            \
    T m = _mm512_reduce_max_##P(vmax);                                               \
    V vm = _mm512_set1_##P(m), vsum = _mm512_setzero_##P();                          \
    for (j = 0; j + W <= c; j += W) {                                                \
        V y = fb_exp512_##S(_mm512_sub_##P(_mm512_loadu_##P(xi + j), vm));          \
        _mm512_storeu_##P(yi + j, y);                                                \
        vsum = _mm512_add_##P(vsum, y);                                              \
    }                                                                                \
    if (j < c) {                                                                     \
        V y = fb_exp512_##S(_mm512_sub_##P(_mm512_maskz_loadu_##P(tail, xi + j), vm)); \
        _mm512_mask_storeu_##P(yi + j, tail, y);                                     \
        vsum = _mm512_mask_add_##P(vsum, tail, vsum, y);                             \
    }                                                                                \
    *row_max = m;                                                                    \
    return _mm512_reduce_add_##P(vsum);                                              \
}                                                                                    \
/* One softmax row: y = exp(x - max) / sum, *row_max = max; returns sum.  */     \
FB_AVX512 static inline T fb_avx512_softmax_row_##S(const T *restrict xi,           \
        T *restrict yi, ptrdiff_t c, T *row_max)                                     \
{                                                                                    \
    M tail = fb_lanes512_##S(c % W);                                                 \
    T sum = fb_avx512_softmax_exp_row_##S(xi, yi, c, row_max);                       \
    V inv_sum = _mm512_set1_##P((T)1 / sum);                                         \
    ptrdiff_t j;                                                                     \
    for (j = 0; j + W <= c; j += W)                                                  \
        _mm512_storeu_##P(yi + j, _mm512_mul_##P(_mm512_loadu_##P(yi + j), inv_sum)); \
    if (j < c)                                                                       \
        _mm512_mask_storeu_##P(yi + j, tail,                                         \
            _mm512_mul_##P(_mm512_maskz_loadu_##P(tail, yi + j), inv_sum));           \
    return sum;                                                                      \
}                                                                                    \
/* Softmax rows [i0, i0 + rows) of x into y (rows <= FB_LOG_BLOCK), with     */     \
/* log_sum[r] = log(sum of row i0 + r's exps) and row_max[r] its maximum.    */     \
FB_AVX512 static inline void fb_avx512_softmax_block_##S(const T *restrict x,       \
        T *restrict y, ptrdiff_t i0, ptrdiff_t rows, ptrdiff_t c,                     \
        T *restrict log_sum, T *restrict row_max)                                    \
{                                                                                    \
    for (ptrdiff_t r = 0; r < rows; r++)                                             \
        log_sum[r] = fb_avx512_softmax_row_##S(x + (i0 + r) * c, y + (i0 + r) * c,   \
                                               c, &row_max[r]);                      \
    fb_log_in_place_##S(log_sum, rows);                                              \
}                                                                                    \
/* fb_generic_softmax_xent_labels with the fused rows (same inputs/outputs), */     \
/* a block of rows at a time: softmax rows, their logs, their losses.        */     \
FB_AVX512 static double fb_avx512_softmax_xent_labels_##S(const T *restrict x,      \
        const int64_t *restrict labels, T *restrict y, T *restrict loss,             \
        ptrdiff_t n, ptrdiff_t c)                                                    \
{                                                                                    \
    T log_sum[FB_LOG_BLOCK], row_max[FB_LOG_BLOCK];                                  \
    double total = 0.0;                                                              \
    for (ptrdiff_t i0 = 0; i0 < n; i0 += FB_LOG_BLOCK) {                             \
        ptrdiff_t rows = n - i0 < FB_LOG_BLOCK ? n - i0 : FB_LOG_BLOCK;              \
        fb_avx512_softmax_block_##S(x, y, i0, rows, c, log_sum, row_max);            \
        for (ptrdiff_t r = 0; r < rows; r++) {                                       \
            ptrdiff_t i = i0 + r;                                                    \
            T li = log_sum[r] - (x[i * c + labels[i]] - row_max[r]);                 \
            loss[i] = li;                                                            \
            total += (double)li;                                                     \
        }                                                                            \
    }                                                                                \
    return total;                                                                    \
}                                                                                    \
/* fb_generic_softmax_xent_onehot with the fused rows, by blocks as above:   */     \
/* the loss pass sums t * (log(sum) - (x - max)) over the lanes where t != 0 */     \
/* (NaN t counts, as in the generic loop).                                    */    \
FB_AVX512 static double fb_avx512_softmax_xent_onehot_##S(const T *restrict x,      \
        const T *restrict t, T *restrict y, T *restrict loss, ptrdiff_t n,           \
        ptrdiff_t c)                                                                 \
{                                                                                    \
    T log_sum[FB_LOG_BLOCK], row_max[FB_LOG_BLOCK];                                  \
    double total = 0.0;                                                              \
    for (ptrdiff_t i0 = 0; i0 < n; i0 += FB_LOG_BLOCK) {                             \
        ptrdiff_t rows = n - i0 < FB_LOG_BLOCK ? n - i0 : FB_LOG_BLOCK;              \
        fb_avx512_softmax_block_##S(x, y, i0, rows, c, log_sum, row_max);            \
        for (ptrdiff_t r = 0; r < rows; r++) {                                       \
            const T *xi = x + (i0 + r) * c, *ti = t + (i0 + r) * c;                  \
            V vlog_sum = _mm512_set1_##P(log_sum[r]), vm = _mm512_set1_##P(row_max[r]); \
            V vloss = _mm512_setzero_##P();                                          \
            for (ptrdiff_t j = 0; j < c; j += W) {                                   \
                M k = fb_lanes512_##S(c - j);                                        \
                V tj = _mm512_maskz_loadu_##P(k, ti + j);                            \
                V xj = _mm512_maskz_loadu_##P(k, xi + j);                            \
                V term = _mm512_mul_##P(tj, _mm512_sub_##P(vlog_sum, _mm512_sub_##P(xj, vm))); \
                k &= _mm512_cmp_##P##_mask(tj, _mm512_setzero_##P(), _CMP_NEQ_UQ);   \
                vloss = _mm512_mask_add_##P(vloss, k, vloss, term);                  \
            }                                                                        \
            T li = _mm512_reduce_add_##P(vloss);                                     \
            loss[i0 + r] = li;                                                       \
            total += (double)li;                                                     \
        }                                                                            \
    }                                                                                \
    return total;                                                                    \
}

FB_AVX512_ELEMENTWISE(float, f, __m512, ps, __mmask16, 16)
FB_AVX512_ELEMENTWISE(double, d, __m512d, pd, __mmask8, 8)
#endif /* FB_AVX512_MODE */

/* ---- the entry points: AVX-512 intrinsics where they run, else generic ---- */
#if FB_AVX512_MODE
#define FB_DISPATCH(call) if (fb_use_avx512()) return fb_avx512_##call; return fb_generic_##call
#else
#define FB_DISPATCH(call) return fb_generic_##call
#endif

/* Outputs at least this large (per call, i.e. per thread's chunk) are written */
/* with streaming stores where the AVX-512 loops run: a core's L2 here.         */
#define FB_STREAM_MIN_BYTES ((ptrdiff_t)1 << 21)
#if FB_AVX512_MODE
#define FB_STREAMING(T, n, out) (fb_use_avx512() && (n) * (ptrdiff_t)sizeof(T) >= FB_STREAM_MIN_BYTES \
                                 && (uintptr_t)(out) % sizeof(T) == 0)
#define FB_STREAM_CALL(call) fb_avx512_##call
#else
#define FB_STREAMING(T, n, out) 0
#define FB_STREAM_CALL(call) fb_generic_##call
#endif

#define FB_ENTRY_POINTS(T, S)                                                        \
static void fb_relu_forward_##S(const T *restrict x, T *restrict out,                \
                                uint8_t *restrict mask, ptrdiff_t n)                 \
{                                                                                    \
    if (FB_STREAMING(T, n, out))                                                     \
        FB_STREAM_CALL(relu_forward_##S(x, out, mask, n));                           \
    else                                                                             \
        fb_generic_relu_forward_##S(x, out, mask, n);                                \
}                                                                                    \
static void fb_relu_backward_##S(const T *restrict dout, const uint8_t *restrict mask, \
                                 T *restrict dx, ptrdiff_t n)                        \
{                                                                                    \
    if (FB_STREAMING(T, n, dx))                                                      \
        FB_STREAM_CALL(relu_backward_##S(dout, mask, dx, n));                        \
    else                                                                             \
        fb_generic_relu_backward_##S(dout, mask, dx, n);                             \
}                                                                                    \
static void fb_sigmoid_forward_##S(const T *restrict x, T *restrict out, ptrdiff_t n) \
{                                                                                    \
    FB_DISPATCH(sigmoid_forward_##S(x, out, n));                                     \
}                                                                                    \
/* Softmax rows of fewer than FB_AVX512_MIN_ROW classes stay on the generic  */   \
/* loops, whose flat exp over blocks of rows fills whole vectors where a row  */    \
/* would fill a fraction of one.                                               */   \
static double fb_softmax_xent_labels_##S(const T *restrict x,                       \
        const int64_t *restrict labels, T *restrict y, T *restrict loss,             \
        ptrdiff_t n, ptrdiff_t c)                                                    \
{                                                                                    \
    if (c < FB_AVX512_MIN_ROW)                                                       \
        return fb_generic_softmax_xent_labels_##S(x, labels, y, loss, n, c);         \
    FB_DISPATCH(softmax_xent_labels_##S(x, labels, y, loss, n, c));                  \
}                                                                                    \
static double fb_softmax_xent_onehot_##S(const T *restrict x, const T *restrict t,   \
        T *restrict y, T *restrict loss, ptrdiff_t n, ptrdiff_t c)                   \
{                                                                                    \
    if (c < FB_AVX512_MIN_ROW)                                                       \
        return fb_generic_softmax_xent_onehot_##S(x, t, y, loss, n, c);              \
    FB_DISPATCH(softmax_xent_onehot_##S(x, t, y, loss, n, c));                       \
}

FB_ENTRY_POINTS(float, f)
FB_ENTRY_POINTS(double, d)

#endif /* FB_SIMD_H */
