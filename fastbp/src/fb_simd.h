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

/* Which loop version runs on this CPU (the same choice the ifunc resolver makes). */
static inline const char *fb_simd_level(void)
{
#if FB_HAVE_CLONES
    __builtin_cpu_init();
    if (__builtin_cpu_supports("x86-64-v4")) return "AVX-512 (x86-64-v4, target_clones)";
    if (__builtin_cpu_supports("x86-64-v3")) return "AVX2+FMA (x86-64-v3, target_clones)";
    return "SSE2 (x86-64 baseline, target_clones)";
#elif defined(FASTBP_NATIVE)
#if defined(__AVX512F__)
    return "AVX-512 (-march=native build)";
#elif defined(__AVX2__)
    return "AVX2 (-march=native build)";
#else
    return "compiler default (-march=native build)";
#endif
#else
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
static inline double fb_exp_d(double x)
{
    const double log2e = 1.4426950408889634074;
    const double ln2_hi = 6.93147180369123816490e-01;
    const double ln2_lo = 1.90821492927058770002e-10;
    const double shifter = 6755399441055744.0;  /* 1.5 * 2**52: rounds to integer */
    double xc = x < -746.0 ? -746.0 : x;         /* NaN compares false: kept */
    xc = xc > 0.0 ? 0.0 : xc;
    double t = xc * log2e + shifter;
    double n = t - shifter;
    double r = (xc - n * ln2_hi) - n * ln2_lo;  /* |r| <= ln2/2 */
    /* Chebyshev fit of exp on [-ln2/2, ln2/2], degree 11 (error < 2e-17) */
    double p = 2.511003760596377771e-8;
    p = p * r + 2.763263963904102975e-7;
    p = p * r + 2.755724091857896982e-6;
    p = p * r + 2.480148548232849242e-5;
    p = p * r + 1.984126989004711371e-4;
    p = p * r + 1.388888895231477465e-3;
    p = p * r + 8.333333333319600611e-3;
    p = p * r + 4.166666666648809550e-2;
    p = p * r + 1.666666666666668081e-1;
    p = p * r + 5.000000000000018386e-1;
    p = p * r + 1.0;
    p = p * r + 1.0;
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
    const float log2e = 1.44269504088896341f;
    const float ln2_hi = 0.693145751953125f;
    const float ln2_lo = 1.428606765330187045e-06f;
    const float shifter = 12582912.0f;  /* 1.5 * 2**23 */
    float xc = x < -104.0f ? -104.0f : x;
    xc = xc > 0.0f ? 0.0f : xc;
    float t = xc * log2e + shifter;
    float n = t - shifter;
    float r = (xc - n * ln2_hi) - n * ln2_lo;
    /* Chebyshev fit of exp on [-ln2/2, ln2/2], degree 6 (error < 3e-8) */
    float p = 1.394110843397267461e-3f;
    p = p * r + 8.375126398153335682e-3f;
    p = p * r + 4.166635289677515679e-2f;
    p = p * r + 1.666641551465327543e-1f;
    p = p * r + 5.000000047117757674e-1f;
    p = p * r + 1.000000037716213843f;
    p = p * r + 1.0f;
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
FB_CLONES static void fb_relu_forward_##S(const T *restrict x, T *restrict out,      \
                                          uint8_t *restrict mask, ptrdiff_t n)       \
{                                                                                    \
    for (ptrdiff_t i = 0; i < n; i++) {                                              \
        T v = x[i];                                                                  \
        int masked = v <= (T)0;            /* NaN: not masked, stays NaN */          \
        mask[i] = (uint8_t)masked;                                                   \
        out[i] = masked ? (T)0 : v;                                                  \
    }                                                                                \
}                                                                                    \
FB_CLONES static void fb_relu_backward_##S(const T *restrict dout,                   \
                                           const uint8_t *restrict mask,             \
                                           T *restrict dx, ptrdiff_t n)              \
{                                                                                    \
    for (ptrdiff_t i = 0; i < n; i++)                                                \
        dx[i] = mask[i] ? (T)0 : dout[i];                                            \
}                                                                                    \
FB_CLONES static void fb_sigmoid_forward_##S(const T *restrict x, T *restrict out,   \
                                             ptrdiff_t n)                            \
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
FB_CLONES static double fb_softmax_xent_labels_##S(const T *restrict x,              \
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
FB_CLONES static double fb_softmax_xent_onehot_##S(const T *restrict x,              \
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
/* dx = (y - onehot) * scale for rows [0, n); labels are class indices.          */ \
FB_CLONES static void fb_softmax_xent_backward_labels_##S(const T *restrict y,      \
        const int64_t *restrict labels, T *restrict dx, T scale, ptrdiff_t n,        \
        ptrdiff_t c)                                                                 \
{                                                                                    \
    for (ptrdiff_t i = 0; i < n; i++) {                                              \
        const T *yi = y + i * c;                                                     \
        T *dxi = dx + i * c;                                                         \
        int64_t label = labels[i];                                                   \
        for (ptrdiff_t j = 0; j < c; j++)                                            \
            dxi[j] = (yi[j] - (j == label ? (T)1 : (T)0)) * scale;                   \
    }                                                                                \
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

#endif /* FB_SIMD_H */
