/*
 * fb_math.h: exp and reciprocal, the primitives of the sigmoid and softmax
 * loops.
 *
 * fb_exp_d / fb_exp_f      scalar, inline and branch-free: the portable loops
 *                          that call them vectorise (fb_generic_loops.h)
 * fb_exp512_d / _f,        8 doubles / 16 floats at a time with AVX-512
 * fb_recip512_d / _f       intrinsics (fb_avx512_loops.h); compiled only where
 *                          FB_AVX512_MODE is on (fb_cpu.h)
 *
 * All exps take x <= 0 or NaN: callers only exponentiate shifted,
 * non-positive values.  tools/exp_coefficients.py fits the coefficients.
 */
#ifndef FB_MATH_H
#define FB_MATH_H

#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "fb_cpu.h"

/* ---- scalar exp --------------------------------------------------------
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

/* ---- AVX-512 exp and reciprocal ------------------------------------------
 * fb_exp512_d / fb_exp512_f: e**x on 8 doubles / 16 floats.  The float one is
 * fb_exp_f (same reduction and coefficients); the double one a table-driven
 * variant (below).  Inputs x <= 0 or NaN.
 * max(limit, x) clamps at the underflow limit and keeps NaN (MAXPD returns
 * its second operand when either is NaN); scalef multiplies by 2**n with one
 * rounding, so subnormal results are exact without the two-factor trick.
 */
#if FB_AVX512_MODE
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
#endif /* FB_AVX512_MODE */

#endif /* FB_MATH_H */
