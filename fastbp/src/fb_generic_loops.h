/*
 * fb_generic_loops.h: the portable loops, plain C that GCC vectorises.
 *
 * A template over FB_T (fb_dtype.h), compiled once per dtype by fb_loops.h.
 * Every loop is FB_CLONES (fb_cpu.h): a portable build has an AVX-512, an
 * AVX2+FMA and an SSE2 version of each.  The loops that call exp (sigmoid,
 * softmax) are written so that they vectorise: exp is the branch-free
 * polynomial of fb_math.h, every conditional is a select, and nothing calls
 * libm per element.
 *
 * Naming: fb_generic_<kernel>_{d,f} is the portable loop of the kernel whose
 * entry point (fb_dispatch.h) is fb_<kernel>_{d,f}.  Inputs are const,
 * outputs are written once, n may be 0.
 */

/* ---- once: what does not depend on the dtype ---------------------------- */
#ifndef FB_GENERIC_LOOPS_ONCE
#define FB_GENERIC_LOOPS_ONCE

#include <math.h>
#include <stddef.h>
#include <stdint.h>

#include "fb_cpu.h"
#include "fb_math.h"

/* `#pragma omp simd reduction(...)` where -fopenmp-simd (or -fopenmp) is on;
   otherwise a plain serial loop.  Only reductions use it: they are the loops
   the compiler may not vectorise under strict IEEE ordering. */
#if defined(_OPENMP) || defined(FB_OPENMP_SIMD)
#define FB_PRAGMA(x) _Pragma(#x)
#define FB_SIMD_REDUCTION(spec) FB_PRAGMA(omp simd reduction(spec))
#else
#define FB_SIMD_REDUCTION(spec)
#endif
/* Clang (14 at least) vectorises no floating-point max reduction unless NaNs
   are ruled out (-ffinite-math-only), and warns that the `omp simd` it was
   asked for failed: under Clang the row maximum is a plain loop. */
#if defined(__clang__)
#define FB_SIMD_MAX_REDUCTION(spec)
#else
#define FB_SIMD_MAX_REDUCTION(spec) FB_SIMD_REDUCTION(spec)
#endif

/* Rows shorter than this reduce with plain loops (measured: 100x10 softmax
   3.6 us plain vs 4.4 us with omp-simd reductions; 256x1000 1030 vs 460 us). */
#define FB_SHORT_ROW 32
/* Elements exponentiated per flat pass of the softmax (fits in L1/L2). */
#define FB_SOFTMAX_BLOCK 2048

#endif /* FB_GENERIC_LOOPS_ONCE */

/* ---- per dtype ---------------------------------------------------------- */
#ifndef FB_T
#error "fb_generic_loops.h is a template: include fb_loops.h"
#endif

/* ReLU: out = x where x > 0, else +0; mask = (x <= 0). */
FB_CLONES static void FB_NAME(fb_generic_relu_forward)(const FB_T *restrict x,
                                                       FB_T *restrict out,
                                                       uint8_t *restrict mask, ptrdiff_t n)
{
    for (ptrdiff_t i = 0; i < n; i++) {
        FB_T v = x[i];
        int masked = v <= (FB_T)0;            /* NaN: not masked, stays NaN */
        mask[i] = (uint8_t)masked;
        out[i] = masked ? (FB_T)0 : v;
    }
}

FB_CLONES static void FB_NAME(fb_generic_relu_backward)(const FB_T *restrict dout,
                                                        const uint8_t *restrict mask,
                                                        FB_T *restrict dx, ptrdiff_t n)
{
    for (ptrdiff_t i = 0; i < n; i++)
        dx[i] = mask[i] ? (FB_T)0 : dout[i];
}

/* The derivative of ReLU: 1 where x > 0, else 0 (NaN, -0.0 and 0 give 0). */
FB_CLONES static void FB_NAME(fb_generic_relu_grad)(const FB_T *restrict x,
                                                    FB_T *restrict out, ptrdiff_t n)
{
    for (ptrdiff_t i = 0; i < n; i++)
        out[i] = x[i] > (FB_T)0 ? (FB_T)1 : (FB_T)0;
}

/* sigmoid(v) without overflow: only exp(-|v|) <= 1 is computed. */
static inline FB_T FB_NAME(fb_sigmoid)(FB_T v)
{
    FB_T z = FB_EXP(-FB_FABS(v));                /* in [0, 1]: never overflows */
    FB_T s = (FB_T)1 / ((FB_T)1 + z);
    return v >= (FB_T)0 ? s : z * s;             /* NaN -> NaN via z */
}

FB_CLONES static void FB_NAME(fb_generic_sigmoid_forward)(const FB_T *restrict x,
                                                          FB_T *restrict out, ptrdiff_t n)
{
    for (ptrdiff_t i = 0; i < n; i++)
        out[i] = FB_NAME(fb_sigmoid)(x[i]);
}

FB_CLONES static void FB_NAME(fb_generic_sigmoid_backward)(const FB_T *restrict dout,
                                                           const FB_T *restrict out,
                                                           FB_T *restrict dx, ptrdiff_t n)
{
    for (ptrdiff_t i = 0; i < n; i++)
        dx[i] = dout[i] * ((FB_T)1 - out[i]) * out[i];   /* the book's order */
}

/* The derivative of sigmoid at x: (1 - s) * s with s = sigmoid(x). */
FB_CLONES static void FB_NAME(fb_generic_sigmoid_grad)(const FB_T *restrict x,
                                                       FB_T *restrict out, ptrdiff_t n)
{
    for (ptrdiff_t i = 0; i < n; i++) {
        FB_T s = FB_NAME(fb_sigmoid)(x[i]);
        out[i] = ((FB_T)1 - s) * s;
    }
}

/* Softmax works on blocks of rows: per row the maximum and x - max, then exp
   over the whole block as one flat loop (so rows of 10 classes still run at
   full SIMD width), then per row the sum, the division and the log.  `omp
   simd` reductions (-fopenmp-simd) keep partial maxima and sums in vector
   lanes; a NaN or +inf in a row makes the row NaN either way.  Short rows
   (the book's 10 classes) are faster as plain loops: a vector reduction's
   setup and tail cost more than it saves below ~32 elements. */
static inline FB_T FB_NAME(fb_row_max)(const FB_T *restrict xi, ptrdiff_t c)
{
    FB_T row_max = xi[0];
    if (c < FB_SHORT_ROW) {
        for (ptrdiff_t j = 1; j < c; j++)
            row_max = xi[j] > row_max ? xi[j] : row_max;
        return row_max;
    }
    FB_SIMD_MAX_REDUCTION(max : row_max)
    for (ptrdiff_t j = 1; j < c; j++)
        row_max = xi[j] > row_max ? xi[j] : row_max;
    return row_max;
}

static inline FB_T FB_NAME(fb_row_sum)(const FB_T *restrict yi, ptrdiff_t c)
{
    FB_T sum = 0;
    if (c < FB_SHORT_ROW) {
        for (ptrdiff_t j = 0; j < c; j++)
            sum += yi[j];
        return sum;
    }
    FB_SIMD_REDUCTION(+ : sum)
    for (ptrdiff_t j = 0; j < c; j++)
        sum += yi[j];
    return sum;
}

/* Rows [i0, i1): row_max[i - i0] = max(x_i), y_i = exp(x_i - row_max). */
static inline void FB_NAME(fb_softmax_exp_block)(const FB_T *restrict x, FB_T *restrict y,
                                                 FB_T *restrict row_max, ptrdiff_t i0,
                                                 ptrdiff_t i1, ptrdiff_t c)
{
    for (ptrdiff_t i = i0; i < i1; i++) {
        const FB_T *xi = x + i * c;
        FB_T *yi = y + i * c;
        FB_T m = FB_NAME(fb_row_max)(xi, c);
        row_max[i - i0] = m;
        for (ptrdiff_t j = 0; j < c; j++)
            yi[j] = xi[j] - m;
    }
    FB_T *yb = y + i0 * c;
    ptrdiff_t len = (i1 - i0) * c;
    for (ptrdiff_t k = 0; k < len; k++)
        yb[k] = FB_EXP(yb[k]);
}

/* Softmax and cross-entropy of rows [0, n) of x (row stride c).  Writes
   probabilities y and per-row loss, returns the summed loss; labels are
   class indices. */
FB_CLONES static double FB_NAME(fb_generic_softmax_xent_labels)(
        const FB_T *restrict x, const int64_t *restrict labels, FB_T *restrict y,
        FB_T *restrict loss, ptrdiff_t n, ptrdiff_t c)
{
    FB_T row_max[FB_SOFTMAX_BLOCK];
    ptrdiff_t rows = c >= FB_SOFTMAX_BLOCK ? 1 : FB_SOFTMAX_BLOCK / c;
    double total = 0.0;
    for (ptrdiff_t i0 = 0; i0 < n; i0 += rows) {
        ptrdiff_t i1 = i0 + rows < n ? i0 + rows : n;
        FB_NAME(fb_softmax_exp_block)(x, y, row_max, i0, i1, c);
        for (ptrdiff_t i = i0; i < i1; i++) {
            const FB_T *xi = x + i * c;
            FB_T *yi = y + i * c;
            FB_T sum = FB_NAME(fb_row_sum)(yi, c);
            FB_T inv_sum = (FB_T)1 / sum;       /* one division a row, then products */
            for (ptrdiff_t j = 0; j < c; j++)
                yi[j] = yi[j] * inv_sum;
            FB_T li = (FB_T)log((double)sum) - (xi[labels[i]] - row_max[i - i0]);
            loss[i] = li;
            total += (double)li;
        }
    }
    return total;
}

/* The same with target weights t (one-hot or soft, row stride c).  Terms with
   t == 0 are skipped, so a -inf logit elsewhere costs nothing. */
FB_CLONES static double FB_NAME(fb_generic_softmax_xent_onehot)(
        const FB_T *restrict x, const FB_T *restrict t, FB_T *restrict y,
        FB_T *restrict loss, ptrdiff_t n, ptrdiff_t c)
{
    FB_T row_max[FB_SOFTMAX_BLOCK];
    ptrdiff_t rows = c >= FB_SOFTMAX_BLOCK ? 1 : FB_SOFTMAX_BLOCK / c;
    double total = 0.0;
    for (ptrdiff_t i0 = 0; i0 < n; i0 += rows) {
        ptrdiff_t i1 = i0 + rows < n ? i0 + rows : n;
        FB_NAME(fb_softmax_exp_block)(x, y, row_max, i0, i1, c);
        for (ptrdiff_t i = i0; i < i1; i++) {
            const FB_T *xi = x + i * c, *ti = t + i * c;
            FB_T *yi = y + i * c;
            FB_T m = row_max[i - i0];
            FB_T sum = FB_NAME(fb_row_sum)(yi, c);
            FB_T log_sum = (FB_T)log((double)sum);
            FB_T li = 0;
            FB_T inv_sum = (FB_T)1 / sum;
            for (ptrdiff_t j = 0; j < c; j++) {
                yi[j] = yi[j] * inv_sum;
                FB_T term = ti[j] * (log_sum - (xi[j] - m));
                li += ti[j] != (FB_T)0 ? term : (FB_T)0;
            }
            loss[i] = li;
            total += (double)li;
        }
    }
    return total;
}

/* dx = (y - onehot) * scale for rows [0, n); labels are class indices.  One
   flat pass dx = y * scale (y - 0 is y), then the label entries: full-width
   vectors however short the rows. */
FB_CLONES static void FB_NAME(fb_generic_softmax_xent_backward_labels)(
        const FB_T *restrict y, const int64_t *restrict labels, FB_T *restrict dx,
        FB_T scale, ptrdiff_t n, ptrdiff_t c)
{
    for (ptrdiff_t k = 0; k < n * c; k++)
        dx[k] = y[k] * scale;
    for (ptrdiff_t i = 0; i < n; i++) {
        ptrdiff_t k = i * c + labels[i];
        dx[k] = (y[k] - (FB_T)1) * scale;
    }
}

/* dx = (y - t) * scale over n elements (one-hot or soft targets). */
FB_CLONES static void FB_NAME(fb_generic_softmax_xent_backward_onehot)(
        const FB_T *restrict y, const FB_T *restrict t, FB_T *restrict dx, FB_T scale,
        ptrdiff_t n)
{
    for (ptrdiff_t i = 0; i < n; i++)
        dx[i] = (y[i] - t[i]) * scale;
}
