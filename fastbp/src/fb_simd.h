/*
 * fb_simd.h: fastbp's vectorisable elementwise loops.
 *
 * The loops that call exp (sigmoid, softmax) are written so that GCC turns
 * them into SIMD code: exp is a branch-free polynomial (Cody-Waite range
 * reduction, Taylor polynomial, exponent built from integer bits), every
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
static const char *fb_simd_level(void)
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
 * non-positive values), accurate to about 1 ulp, subnormal results included,
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
    double p = 1.0 / 6227020800.0;              /* Taylor to r**13 */
    p = p * r + 1.0 / 479001600.0;
    p = p * r + 1.0 / 39916800.0;
    p = p * r + 1.0 / 3628800.0;
    p = p * r + 1.0 / 362880.0;
    p = p * r + 1.0 / 40320.0;
    p = p * r + 1.0 / 5040.0;
    p = p * r + 1.0 / 720.0;
    p = p * r + 1.0 / 120.0;
    p = p * r + 1.0 / 24.0;
    p = p * r + 1.0 / 6.0;
    p = p * r + 0.5;
    p = p * r + 1.0;
    p = p * r + 1.0;
    /* n sits in the low bits of t; 2**n as two factors so that results in
       the subnormal range (n down to -1077) are still exact powers of two. */
    int64_t tbits, one_bits;
    const double shifter_copy = shifter;
    memcpy(&tbits, &t, sizeof tbits);
    memcpy(&one_bits, &shifter_copy, sizeof one_bits);
    int64_t ni = tbits - one_bits;
    int64_t n1 = ni / 2;
    int64_t n2 = ni - n1;
    int64_t b1 = (n1 + 1023) << 52, b2 = (n2 + 1023) << 52;
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
    float p = 1.0f / 5040.0f;                   /* Taylor to r**7 */
    p = p * r + 1.0f / 720.0f;
    p = p * r + 1.0f / 120.0f;
    p = p * r + 1.0f / 24.0f;
    p = p * r + 1.0f / 6.0f;
    p = p * r + 0.5f;
    p = p * r + 1.0f;
    p = p * r + 1.0f;
    int32_t tbits, one_bits;
    const float shifter_copy = shifter;
    memcpy(&tbits, &t, sizeof tbits);
    memcpy(&one_bits, &shifter_copy, sizeof one_bits);
    int32_t ni = tbits - one_bits;
    int32_t n1 = ni / 2;
    int32_t n2 = ni - n1;
    int32_t b1 = (n1 + 127) << 23, b2 = (n2 + 127) << 23;
    float s1, s2;
    memcpy(&s1, &b1, sizeof s1);
    memcpy(&s2, &b2, sizeof s2);
    return p * s1 * s2;
}

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
/* Softmax and cross-entropy of rows [0, n) of x (row stride c).                  */ \
/* Writes probabilities y, returns the summed loss; labels are class indices.     */ \
FB_CLONES static double fb_softmax_xent_labels_##S(const T *restrict x,             \
        const int64_t *restrict labels, T *restrict y, T *restrict loss,             \
        ptrdiff_t n, ptrdiff_t c)                                                    \
{                                                                                    \
    double total = 0.0;                                                              \
    for (ptrdiff_t i = 0; i < n; i++) {                                              \
        const T *xi = x + i * c;                                                     \
        T *yi = y + i * c;                                                           \
        T row_max = xi[0];                                                           \
        for (ptrdiff_t j = 1; j < c; j++)                                            \
            row_max = xi[j] > row_max ? xi[j] : row_max;                             \
        T sum = 0;                                                                   \
        for (ptrdiff_t j = 0; j < c; j++) {                                          \
            T e = EXP(xi[j] - row_max);                                              \
            yi[j] = e;                                                               \
            sum += e;                                                                \
        }                                                                            \
        for (ptrdiff_t j = 0; j < c; j++)                                            \
            yi[j] = yi[j] / sum;                                                     \
        T li = (T)log((double)sum) - (xi[labels[i]] - row_max);                      \
        loss[i] = li;                                                                \
        total += (double)li;                                                         \
    }                                                                                \
    return total;                                                                    \
}                                                                                    \
/* The same with target weights t (one-hot or soft, row stride c).              */ \
/* Terms with t == 0 are skipped, so a -inf logit elsewhere costs nothing.       */ \
FB_CLONES static double fb_softmax_xent_onehot_##S(const T *restrict x,             \
        const T *restrict t, T *restrict y, T *restrict loss, ptrdiff_t n,           \
        ptrdiff_t c)                                                                 \
{                                                                                    \
    double total = 0.0;                                                              \
    for (ptrdiff_t i = 0; i < n; i++) {                                              \
        const T *xi = x + i * c, *ti = t + i * c;                                    \
        T *yi = y + i * c;                                                           \
        T row_max = xi[0];                                                           \
        for (ptrdiff_t j = 1; j < c; j++)                                            \
            row_max = xi[j] > row_max ? xi[j] : row_max;                             \
        T sum = 0;                                                                   \
        for (ptrdiff_t j = 0; j < c; j++) {                                          \
            T e = EXP(xi[j] - row_max);                                              \
            yi[j] = e;                                                               \
            sum += e;                                                                \
        }                                                                            \
        T log_sum = (T)log((double)sum);                                             \
        T li = 0;                                                                    \
        for (ptrdiff_t j = 0; j < c; j++) {                                          \
            yi[j] = yi[j] / sum;                                                     \
            T term = ti[j] * (log_sum - (xi[j] - row_max));                          \
            li += ti[j] != (T)0 ? term : (T)0;                                       \
        }                                                                            \
        loss[i] = li;                                                                \
        total += (double)li;                                                         \
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
