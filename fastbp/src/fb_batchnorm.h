/*
 * fb_batchnorm.h: batch normalisation over the rows of an (n, d) array, the
 * book's BatchNormalization (chapter 6), in the book's order of operations.
 *
 * A template over FB_T (fb_dtype.h), compiled once per dtype by fb_loops.h.
 * Entry points (each _d and _f):
 *   fb_bn_forward_train   batch mean and biased variance, xc, xn, out, std
 *                         and the running statistics, in one sweep of memory
 *   fb_bn_forward_test    out from the running statistics
 *   fb_bn_backward        dx, dgamma, dbeta (and, if asked, dx's column sums)
 * All arrays C-contiguous: x, xc, xn, out, dout, dx (n, d); the others (d,).
 *
 * Same numbers as NumPy on the book's expressions: every element goes
 * through the same operations, rounded the same way (divisions stay
 * divisions, no product is fused into an add: FP contraction is off here),
 * and the column sums add in NumPy's order: for d >= 2 NumPy's axis-0
 * reduction of a C-contiguous array adds row after row to zeros, which the
 * loops below do for a block of columns at a time; for d == 1 the column is
 * one contiguous run, which NumPy sums pairwise (fb_pairwise_sum).  So a
 * C-contiguous float64 or float32 batch gives NumPy's results bit for bit.
 *
 * Memory is swept once: the columns are taken in blocks narrow enough that
 * the block of every array a sweep touches stays in cache (FB_BN_CACHE_BYTES)
 * while the passes over its rows (sum, then centre and square, then
 * normalise) run; a pass over a block's rows is a loop over the block's
 * columns, which vectorises (one column a lane).
 */

/* ---- once: what does not depend on the dtype ---------------------------- */
#ifndef FB_BATCHNORM_ONCE
#define FB_BATCHNORM_ONCE

#include <math.h>
#include <stddef.h>
#include <stdlib.h>

#include "fb_cpu.h"

/* The book's epsilon (10e-7 = 1e-6), added to the variance. */
#define FB_BN_EPS 10e-7
/* Most columns in a block (the per-column scratch arrays live on the stack). */
#define FB_BN_MAX_COLS 512
/* Fewest columns in a block (a cache line of floats), however many rows. */
#define FB_BN_MIN_COLS 16
/* Bytes of all the arrays' blocks together: about half a small L2. */
#define FB_BN_CACHE_BYTES (256 * 1024)
/* Rows a column sum takes per load and store of its accumulator (the adds
   stay in row order). */
#define FB_BN_ROWS 4
/* NumPy's pairwise summation: runs of up to 128 summed with 8 accumulators. */
#define FB_PAIRWISE_BLOCK 128

/* The helpers of a FB_CLONES loop are inlined into it, so that they are
   compiled for its instruction set (a helper left out of line would run the
   baseline's code). */
#if defined(__GNUC__)
#define FB_BN_INLINE static inline __attribute__((always_inline))
#else
#define FB_BN_INLINE static inline
#endif

/* Columns per block when `arrays` arrays of (n, d) items of `item` bytes are
   swept together: a multiple of FB_BN_MIN_COLS (whole cache lines of floats). */
static inline ptrdiff_t fb_bn_block_cols(ptrdiff_t n, ptrdiff_t d, size_t item, int arrays)
{
    ptrdiff_t rows = n > 0 ? n : 1;
    ptrdiff_t cols = (ptrdiff_t)(FB_BN_CACHE_BYTES / ((size_t)arrays * item)) / rows;
    cols -= cols % FB_BN_MIN_COLS;
    if (cols < FB_BN_MIN_COLS)
        cols = FB_BN_MIN_COLS;
    if (cols > FB_BN_MAX_COLS)
        cols = FB_BN_MAX_COLS;
    return cols < d ? cols : d;
}

#endif /* FB_BATCHNORM_ONCE */

/* ---- per dtype ---------------------------------------------------------- */
#ifndef FB_T
#error "fb_batchnorm.h is a template: include fb_loops.h"
#endif

#undef FB_SQRT
#if FB_DTYPE_DOUBLE
#define FB_SQRT sqrt
#else
#define FB_SQRT sqrtf
#endif

/* No fused multiply-add in this file: NumPy rounds every product. */
#if defined(__clang__)
#pragma STDC FP_CONTRACT OFF
#elif defined(__GNUC__)
#pragma GCC push_options
#pragma GCC optimize("fp-contract=off")
#endif

/* The sum of a[0..n) in the order NumPy's add.reduce adds a contiguous run
   (pairwise_sum in NumPy's loops_utils.h): plainly below 8 elements, with 8
   interleaved accumulators up to 128, else the two halves (the first a
   multiple of 8 long) separately.  NumPy adds the result to the reduction's
   initial 0; the callers do. */
FB_CLONES static FB_T FB_NAME(fb_pairwise_sum)(const FB_T *restrict a, ptrdiff_t n)
{
    if (n < 8) {
        FB_T res = 0;
        for (ptrdiff_t i = 0; i < n; i++)
            res += a[i];
        return res;
    }
    if (n <= FB_PAIRWISE_BLOCK) {
        FB_T r[8];
        ptrdiff_t i;
        for (int k = 0; k < 8; k++)
            r[k] = a[k];
        for (i = 8; i < n - (n % 8); i += 8)
            for (int k = 0; k < 8; k++)
                r[k] += a[i + k];
        FB_T res = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]));
        for (; i < n; i++)
            res += a[i];
        return res;
    }
    ptrdiff_t half = n / 2;
    half -= half % 8;
    return FB_NAME(fb_pairwise_sum)(a, half) + FB_NAME(fb_pairwise_sum)(a + half, n - half);
}

/* ---- forward, training mode --------------------------------------------- */

/* The running statistic momentum * old + (1 - momentum) * batch, rounded as
   NumPy rounds the book's expression (keep = momentum, take = 1 - momentum,
   each already rounded to FB_T). */
FB_BN_INLINE FB_T FB_NAME(fb_bn_running)(FB_T keep, FB_T old, FB_T take, FB_T batch)
{
    FB_T a = keep * old;
    FB_T b = take * batch;
    return a + b;
}

/* acc[0..w) += rows [i0, i1) of columns [j0, j0 + w) of a (., d) array: the
   rows added one after another, as NumPy's axis-0 sum adds them, with each
   acc[j] loaded and stored once per FB_BN_ROWS rows. */
FB_BN_INLINE void FB_NAME(fb_bn_add_rows)(FB_T *restrict acc, const FB_T *restrict a,
                                          ptrdiff_t d, ptrdiff_t j0, ptrdiff_t w,
                                          ptrdiff_t i0, ptrdiff_t i1)
{
    ptrdiff_t i = i0;
    for (; i + FB_BN_ROWS <= i1; i += FB_BN_ROWS) {
        const FB_T *a0 = a + i * d + j0, *a1 = a0 + d, *a2 = a1 + d, *a3 = a2 + d;
        for (ptrdiff_t j = 0; j < w; j++) {
            FB_T sum = acc[j];
            sum += a0[j];
            sum += a1[j];
            sum += a2[j];
            sum += a3[j];
            acc[j] = sum;
        }
    }
    for (; i < i1; i++) {
        const FB_T *ai = a + i * d + j0;
        for (ptrdiff_t j = 0; j < w; j++)
            acc[j] += ai[j];
    }
}

/* From the block's mean mu: the biased variance of columns [j0, j0 + w),
   d >= 2, as the sum of (x - mu)**2 over its rows (storing xc = x - mu when
   xc is not NULL) over n; sd = sqrt(var + eps) for the block; std, mean_out
   and var_out at j0. */
FB_BN_INLINE void FB_NAME(fb_bn_block_variance)(
        const FB_T *restrict x, const FB_T *restrict mean_in, const FB_T *restrict var_in,
        FB_T keep, FB_T take, FB_T *restrict xc, FB_T *restrict std,
        FB_T *restrict mean_out, FB_T *restrict var_out, const FB_T *restrict mu,
        FB_T *restrict sd, ptrdiff_t n, ptrdiff_t d, ptrdiff_t j0, ptrdiff_t w)
{
    FB_T acc[FB_BN_MAX_COLS];
    const FB_T count = (FB_T)n, eps = (FB_T)FB_BN_EPS;
    for (ptrdiff_t j = 0; j < w; j++)
        acc[j] = 0;
    ptrdiff_t i = 0;
    if (xc == NULL) {
        for (; i + FB_BN_ROWS <= n; i += FB_BN_ROWS) {
            const FB_T *x0 = x + i * d + j0, *x1 = x0 + d, *x2 = x1 + d, *x3 = x2 + d;
            for (ptrdiff_t j = 0; j < w; j++) {
                FB_T m = mu[j], a = acc[j];
                FB_T v0 = x0[j] - m, v1 = x1[j] - m, v2 = x2[j] - m, v3 = x3[j] - m;
                FB_T q0 = v0 * v0, q1 = v1 * v1, q2 = v2 * v2, q3 = v3 * v3;
                a += q0;
                a += q1;
                a += q2;
                a += q3;
                acc[j] = a;
            }
        }
    }
    for (; i < n; i++) {
        const FB_T *xi = x + i * d + j0;
        if (xc != NULL) {
            FB_T *ci = xc + i * d + j0;
            for (ptrdiff_t j = 0; j < w; j++) {
                FB_T v = xi[j] - mu[j];
                FB_T square = v * v;
                ci[j] = v;
                acc[j] += square;
            }
        } else {
            for (ptrdiff_t j = 0; j < w; j++) {
                FB_T v = xi[j] - mu[j];
                FB_T square = v * v;
                acc[j] += square;
            }
        }
    }
    for (ptrdiff_t j = 0; j < w; j++) {                 /* std = sqrt(var + eps) */
        FB_T var = acc[j] / count;
        sd[j] = FB_SQRT(var + eps);
        std[j0 + j] = sd[j];
        mean_out[j0 + j] = FB_NAME(fb_bn_running)(keep, mean_in[j0 + j], take, mu[j]);
        var_out[j0 + j] = FB_NAME(fb_bn_running)(keep, var_in[j0 + j], take, var);
    }
}

/* The batch statistics of columns [j0, j0 + w), d >= 2: mu (the mean) and
   what fb_bn_block_variance writes.  Two passes over the block's rows, the
   first reading x from memory. */
FB_BN_INLINE void FB_NAME(fb_bn_block_statistics)(
        const FB_T *restrict x, const FB_T *restrict mean_in, const FB_T *restrict var_in,
        FB_T keep, FB_T take, FB_T *restrict xc, FB_T *restrict std,
        FB_T *restrict mean_out, FB_T *restrict var_out, FB_T *restrict mu,
        FB_T *restrict sd, ptrdiff_t n, ptrdiff_t d, ptrdiff_t j0, ptrdiff_t w)
{
    const FB_T count = (FB_T)n;
    for (ptrdiff_t j = 0; j < w; j++)
        mu[j] = 0;
    FB_NAME(fb_bn_add_rows)(mu, x, d, j0, w, 0, n);     /* mu = x.mean(axis=0) */
    for (ptrdiff_t j = 0; j < w; j++)
        mu[j] = mu[j] / count;
    FB_NAME(fb_bn_block_variance)(x, mean_in, var_in, keep, take, xc, std, mean_out, var_out,
                                  mu, sd, n, d, j0, w);
}

/* Columns [j0, j0 + w) of a (n, d) batch, d >= 2: see fb_bn_forward_train.
   The statistics (xc stored), then xn = xc / std and out = gamma * xn + beta
   from xc, which the block's size keeps in cache. */
FB_BN_INLINE void FB_NAME(fb_bn_forward_train_block)(
        const FB_T *restrict x, const FB_T *restrict gamma, const FB_T *restrict beta,
        const FB_T *restrict mean_in, const FB_T *restrict var_in, FB_T keep, FB_T take,
        FB_T *restrict xc, FB_T *restrict xn, FB_T *restrict out, FB_T *restrict std,
        FB_T *restrict mean_out, FB_T *restrict var_out, ptrdiff_t n, ptrdiff_t d,
        ptrdiff_t j0, ptrdiff_t w)
{
    FB_T mu[FB_BN_MAX_COLS], sd[FB_BN_MAX_COLS];
    FB_NAME(fb_bn_block_statistics)(x, mean_in, var_in, keep, take, xc, std, mean_out,
                                    var_out, mu, sd, n, d, j0, w);
    const FB_T *g = gamma + j0, *b = beta + j0;
    for (ptrdiff_t i = 0; i < n; i++) {                 /* xn = xc / std; out = gamma xn + beta */
        const FB_T *ci = xc + i * d + j0;
        FB_T *ni = xn + i * d + j0, *oi = out + i * d + j0;
        for (ptrdiff_t j = 0; j < w; j++) {
            FB_T v = ci[j] / sd[j];
            FB_T scaled = g[j] * v;
            ni[j] = v;
            oi[j] = scaled + b[j];
        }
    }
}

/* One column (d == 1): NumPy sums it pairwise; xn holds the squares first. */
FB_BN_INLINE void FB_NAME(fb_bn_forward_train_column)(
        const FB_T *restrict x, const FB_T *restrict gamma, const FB_T *restrict beta,
        const FB_T *restrict mean_in, const FB_T *restrict var_in, FB_T keep, FB_T take,
        FB_T *restrict xc, FB_T *restrict xn, FB_T *restrict out, FB_T *restrict std,
        FB_T *restrict mean_out, FB_T *restrict var_out, ptrdiff_t n)
{
    const FB_T count = (FB_T)n, eps = (FB_T)FB_BN_EPS;
    FB_T mu = ((FB_T)0 + FB_NAME(fb_pairwise_sum)(x, n)) / count;
    for (ptrdiff_t i = 0; i < n; i++) {
        FB_T v = x[i] - mu;
        xc[i] = v;
        xn[i] = v * v;
    }
    FB_T var = ((FB_T)0 + FB_NAME(fb_pairwise_sum)(xn, n)) / count;
    FB_T sd = FB_SQRT(var + eps);
    std[0] = sd;
    mean_out[0] = FB_NAME(fb_bn_running)(keep, mean_in[0], take, mu);
    var_out[0] = FB_NAME(fb_bn_running)(keep, var_in[0], take, var);
    for (ptrdiff_t i = 0; i < n; i++) {
        FB_T v = xc[i] / sd;
        FB_T scaled = gamma[0] * v;
        xn[i] = v;
        out[i] = scaled + beta[0];
    }
}

FB_CLONES static void FB_NAME(fb_generic_bn_forward_train)(
        const FB_T *restrict x, const FB_T *restrict gamma, const FB_T *restrict beta,
        const FB_T *restrict mean_in, const FB_T *restrict var_in, FB_T keep, FB_T take,
        FB_T *restrict xc, FB_T *restrict xn, FB_T *restrict out, FB_T *restrict std,
        FB_T *restrict mean_out, FB_T *restrict var_out, ptrdiff_t n, ptrdiff_t d)
{
    if (d == 1) {
        FB_NAME(fb_bn_forward_train_column)(x, gamma, beta, mean_in, var_in, keep, take,
                                            xc, xn, out, std, mean_out, var_out, n);
        return;
    }
    ptrdiff_t w = fb_bn_block_cols(n, d, sizeof(FB_T), 2);   /* x and xc, read again */
    for (ptrdiff_t j0 = 0; j0 < d; j0 += w)
        FB_NAME(fb_bn_forward_train_block)(x, gamma, beta, mean_in, var_in, keep, take,
                                           xc, xn, out, std, mean_out, var_out, n, d, j0,
                                           w < d - j0 ? w : d - j0);
}

/* ---- forward, test mode -------------------------------------------------- */

/* out = gamma * ((x - mean) / sqrt(var + eps)) + beta with the running
   statistics mean, var: the book's test-mode expression.  No reductions:
   any n (0 included), d >= 1. */
FB_CLONES static void FB_NAME(fb_generic_bn_forward_test)(
        const FB_T *restrict x, const FB_T *restrict gamma, const FB_T *restrict beta,
        const FB_T *restrict mean, const FB_T *restrict var, FB_T *restrict out,
        ptrdiff_t n, ptrdiff_t d)
{
    FB_T sd[FB_BN_MAX_COLS];
    const FB_T eps = (FB_T)FB_BN_EPS;
    ptrdiff_t block = fb_bn_block_cols(n, d, sizeof(FB_T), 2);   /* x, out */
    for (ptrdiff_t j0 = 0; j0 < d; j0 += block) {
        ptrdiff_t w = block < d - j0 ? block : d - j0;
        const FB_T *g = gamma + j0, *b = beta + j0, *m = mean + j0;
        for (ptrdiff_t j = 0; j < w; j++)
            sd[j] = FB_SQRT(var[j0 + j] + eps);
        for (ptrdiff_t i = 0; i < n; i++) {
            const FB_T *xi = x + i * d + j0;
            FB_T *oi = out + i * d + j0;
            for (ptrdiff_t j = 0; j < w; j++) {
                FB_T v = (xi[j] - m[j]) / sd[j];
                FB_T scaled = g[j] * v;
                oi[j] = scaled + b[j];
            }
        }
    }
}

/* ---- backward ------------------------------------------------------------ */

/* dxc = dxn / std + ((2 / n) * xc) * dvar with dxn = gamma * dout: the
   book's expressions, in its order. */
FB_BN_INLINE FB_T FB_NAME(fb_bn_dxc)(FB_T g, FB_T dout, FB_T s, FB_T two_over_n, FB_T xc,
                                     FB_T dvar)
{
    FB_T dxn = g * dout;
    FB_T dxc = dxn / s;
    FB_T scaled = two_over_n * xc;
    FB_T correction = scaled * dvar;
    return dxc + correction;
}

/* The backward pass's sums over columns [j0, j0 + w), d >= 2, in one pass
   over the block's rows (reading dout, xn and xc from memory): dbeta =
   sum(dout), dgamma = sum(xn * dout) at j0, and dvar (the block's) from
   sum((dxn * xc) / (std * std)). */
FB_BN_INLINE void FB_NAME(fb_bn_block_sums)(
        const FB_T *restrict dout, const FB_T *restrict xn, const FB_T *restrict xc,
        const FB_T *restrict std, const FB_T *restrict gamma, FB_T *restrict dgamma,
        FB_T *restrict dbeta, FB_T *restrict dvar, ptrdiff_t n, ptrdiff_t d, ptrdiff_t j0,
        ptrdiff_t w)
{
    FB_T sum_dout[FB_BN_MAX_COLS], sum_xn_dout[FB_BN_MAX_COLS], sum_dstd[FB_BN_MAX_COLS];
    FB_T std_sq[FB_BN_MAX_COLS];
    const FB_T half = (FB_T)0.5;
    const FB_T *g = gamma + j0, *s = std + j0;
    for (ptrdiff_t j = 0; j < w; j++) {
        sum_dout[j] = 0;
        sum_xn_dout[j] = 0;
        sum_dstd[j] = 0;
        std_sq[j] = s[j] * s[j];
    }
    ptrdiff_t i = 0;
    for (; i + FB_BN_ROWS <= n; i += FB_BN_ROWS) {
        const FB_T *di = dout + i * d + j0, *ni = xn + i * d + j0, *ci = xc + i * d + j0;
        for (ptrdiff_t j = 0; j < w; j++) {
            FB_T a = sum_dout[j], b = sum_xn_dout[j], c = sum_dstd[j];
            for (ptrdiff_t r = 0; r < FB_BN_ROWS; r++) {
                FB_T dr = di[r * d + j], cr = ci[r * d + j];
                FB_T product = ni[r * d + j] * dr;
                FB_T dxn = g[j] * dr;
                FB_T term = dxn * cr;
                a += dr;
                b += product;
                c += term / std_sq[j];
            }
            sum_dout[j] = a;
            sum_xn_dout[j] = b;
            sum_dstd[j] = c;
        }
    }
    for (; i < n; i++) {
        const FB_T *di = dout + i * d + j0, *ni = xn + i * d + j0, *ci = xc + i * d + j0;
        for (ptrdiff_t j = 0; j < w; j++) {
            FB_T product = ni[j] * di[j];
            FB_T dxn = g[j] * di[j];
            FB_T term = dxn * ci[j];
            sum_dout[j] += di[j];
            sum_xn_dout[j] += product;
            sum_dstd[j] += term / std_sq[j];
        }
    }
    for (ptrdiff_t j = 0; j < w; j++) {
        FB_T dstd = -sum_dstd[j];
        FB_T scaled = half * dstd;
        dbeta[j0 + j] = sum_dout[j];
        dgamma[j0 + j] = sum_xn_dout[j];
        dvar[j] = scaled / s[j];
    }
}

/* dxc of columns [j0, j0 + w), d >= 2 (see fb_bn_dxc), into row i of `to`
   at to + i * to_stride, and its column sums, rows added in order, in dmu. */
FB_BN_INLINE void FB_NAME(fb_bn_block_dxc)(
        const FB_T *restrict dout, const FB_T *restrict xc, const FB_T *restrict std,
        const FB_T *restrict gamma, const FB_T *restrict dvar, FB_T *restrict to,
        ptrdiff_t to_stride, FB_T *restrict dmu, ptrdiff_t n, ptrdiff_t d, ptrdiff_t j0,
        ptrdiff_t w)
{
    const FB_T two_over_n = (FB_T)(2.0 / (double)n);     /* the book's 2.0 / n */
    const FB_T *g = gamma + j0, *s = std + j0;
    for (ptrdiff_t j = 0; j < w; j++)
        dmu[j] = 0;
    ptrdiff_t i = 0;
    for (; i + FB_BN_ROWS <= n; i += FB_BN_ROWS) {
        const FB_T *di = dout + i * d + j0, *ci = xc + i * d + j0;
        FB_T *ti = to + i * to_stride;
        for (ptrdiff_t j = 0; j < w; j++) {
            FB_T m = dmu[j];
            for (ptrdiff_t r = 0; r < FB_BN_ROWS; r++) {
                FB_T dxc = FB_NAME(fb_bn_dxc)(g[j], di[r * d + j], s[j], two_over_n,
                                              ci[r * d + j], dvar[j]);
                ti[r * to_stride + j] = dxc;
                m += dxc;
            }
            dmu[j] = m;
        }
    }
    for (; i < n; i++) {
        const FB_T *di = dout + i * d + j0, *ci = xc + i * d + j0;
        FB_T *ti = to + i * to_stride;
        for (ptrdiff_t j = 0; j < w; j++) {
            FB_T dxc = FB_NAME(fb_bn_dxc)(g[j], di[j], s[j], two_over_n, ci[j], dvar[j]);
            ti[j] = dxc;
            dmu[j] += dxc;
        }
    }
}

/* Columns [j0, j0 + w) of the backward pass, d >= 2: see fb_bn_backward.
   The sums; dxc into dx and its sum dmu; dx -= dmu / n (dx, written by the
   second pass, is still in cache for the third). */
FB_BN_INLINE void FB_NAME(fb_bn_backward_block)(
        const FB_T *restrict dout, const FB_T *restrict xn, const FB_T *restrict xc,
        const FB_T *restrict std, const FB_T *restrict gamma, FB_T *restrict dx,
        FB_T *restrict dgamma, FB_T *restrict dbeta, FB_T *restrict dx_sums, ptrdiff_t n,
        ptrdiff_t d, ptrdiff_t j0, ptrdiff_t w)
{
    FB_T dvar[FB_BN_MAX_COLS], dmu[FB_BN_MAX_COLS];
    const FB_T count = (FB_T)n;
    FB_NAME(fb_bn_block_sums)(dout, xn, xc, std, gamma, dgamma, dbeta, dvar, n, d, j0, w);
    FB_NAME(fb_bn_block_dxc)(dout, xc, std, gamma, dvar, dx + j0, d, dmu, n, d, j0, w);
    for (ptrdiff_t j = 0; j < w; j++)
        dmu[j] = dmu[j] / count;                         /* dmu / n */
    if (dx_sums == NULL) {
        for (ptrdiff_t i = 0; i < n; i++) {             /* dx = dxc - dmu / n */
            FB_T *oi = dx + i * d + j0;
            for (ptrdiff_t j = 0; j < w; j++)
                oi[j] = oi[j] - dmu[j];
        }
        return;
    }
    FB_T sums[FB_BN_MAX_COLS];                          /* and dx's column sums */
    for (ptrdiff_t j = 0; j < w; j++)
        sums[j] = 0;
    for (ptrdiff_t i = 0; i < n; i++) {
        FB_T *oi = dx + i * d + j0;
        for (ptrdiff_t j = 0; j < w; j++) {
            FB_T v = oi[j] - dmu[j];
            oi[j] = v;
            sums[j] += v;
        }
    }
    for (ptrdiff_t j = 0; j < w; j++)
        dx_sums[j0 + j] = sums[j];
}

/* One column (d == 1): pairwise sums, dx holding each summand first. */
FB_BN_INLINE void FB_NAME(fb_bn_backward_column)(
        const FB_T *restrict dout, const FB_T *restrict xn, const FB_T *restrict xc,
        const FB_T *restrict std, const FB_T *restrict gamma, FB_T *restrict dx,
        FB_T *restrict dgamma, FB_T *restrict dbeta, FB_T *restrict dx_sums, ptrdiff_t n)
{
    const FB_T count = (FB_T)n, half = (FB_T)0.5;
    const FB_T two_over_n = (FB_T)(2.0 / (double)n);
    const FB_T g = gamma[0], s = std[0], std_sq = s * s;
    dbeta[0] = (FB_T)0 + FB_NAME(fb_pairwise_sum)(dout, n);
    for (ptrdiff_t i = 0; i < n; i++)
        dx[i] = xn[i] * dout[i];
    dgamma[0] = (FB_T)0 + FB_NAME(fb_pairwise_sum)(dx, n);
    for (ptrdiff_t i = 0; i < n; i++) {
        FB_T dxn = g * dout[i];
        FB_T term = dxn * xc[i];
        dx[i] = term / std_sq;
    }
    FB_T dstd = -((FB_T)0 + FB_NAME(fb_pairwise_sum)(dx, n));
    FB_T scaled_dstd = half * dstd;
    FB_T dvar = scaled_dstd / s;
    for (ptrdiff_t i = 0; i < n; i++)
        dx[i] = FB_NAME(fb_bn_dxc)(g, dout[i], s, two_over_n, xc[i], dvar);
    FB_T dmu_over_n = ((FB_T)0 + FB_NAME(fb_pairwise_sum)(dx, n)) / count;
    for (ptrdiff_t i = 0; i < n; i++)
        dx[i] = dx[i] - dmu_over_n;
    if (dx_sums != NULL) {                              /* in row order, from 0 */
        FB_T sum = 0;
        for (ptrdiff_t i = 0; i < n; i++)
            sum += dx[i];
        dx_sums[0] = sum;
    }
}

FB_CLONES static void FB_NAME(fb_generic_bn_backward)(
        const FB_T *restrict dout, const FB_T *restrict xn, const FB_T *restrict xc,
        const FB_T *restrict std, const FB_T *restrict gamma, FB_T *restrict dx,
        FB_T *restrict dgamma, FB_T *restrict dbeta, FB_T *restrict dx_sums, ptrdiff_t n,
        ptrdiff_t d)
{
    if (d == 1) {
        FB_NAME(fb_bn_backward_column)(dout, xn, xc, std, gamma, dx, dgamma, dbeta, dx_sums,
                                       n);
        return;
    }
    ptrdiff_t w = fb_bn_block_cols(n, d, sizeof(FB_T), 3);   /* dout, xc, dx: read again */
    for (ptrdiff_t j0 = 0; j0 < d; j0 += w)
        FB_NAME(fb_bn_backward_block)(dout, xn, xc, std, gamma, dx, dgamma, dbeta, dx_sums, n,
                                      d, j0, w < d - j0 ? w : d - j0);
}

/* ---- AVX-512: streaming stores for batches far larger than the caches --- */
#if FB_AVX512_MODE

/* dst[0..w) = src[0..w) (src any alignment, dst aligned to its element size):
   whole 64-byte lines of dst in streaming stores, the partial ones at its
   ends in plain stores. */
FB_AVX512 static inline void FB_NAME(fb_bn_stream_row)(FB_T *restrict dst,
                                                      const FB_T *restrict src, ptrdiff_t w)
{
    ptrdiff_t k = FB_NAME(fb_stream_head)(dst, w);
    for (ptrdiff_t h = 0; h < k; h++)
        dst[h] = src[h];
    for (; k + FB_W <= w; k += FB_W)
        FB_VEC(stream)(dst + k, FB_VEC(loadu)(src + k));
    for (; k < w; k++)
        dst[k] = src[k];
}

/* fb_bn_forward_train for outputs far larger than the caches: xc, xn and out
   are written once each, in streaming stores (a row of the block computed
   into L1 buffers first), instead of being read into the cache only to be
   overwritten.  The same operations, in the same order, as the portable
   loops. */
FB_AVX512 static void FB_NAME(fb_avx512_bn_forward_train)(
        const FB_T *restrict x, const FB_T *restrict gamma, const FB_T *restrict beta,
        const FB_T *restrict mean_in, const FB_T *restrict var_in, FB_T keep, FB_T take,
        FB_T *restrict xc, FB_T *restrict xn, FB_T *restrict out, FB_T *restrict std,
        FB_T *restrict mean_out, FB_T *restrict var_out, ptrdiff_t n, ptrdiff_t d)
{
    FB_T mu[FB_BN_MAX_COLS], sd[FB_BN_MAX_COLS];
    FB_T row_c[FB_BN_MAX_COLS], row_n[FB_BN_MAX_COLS], row_o[FB_BN_MAX_COLS];
    ptrdiff_t block = fb_bn_block_cols(n, d, sizeof(FB_T), 1);   /* x stays in cache */
    for (ptrdiff_t j0 = 0; j0 < d; j0 += block) {
        ptrdiff_t w = block < d - j0 ? block : d - j0;
        FB_NAME(fb_bn_block_statistics)(x, mean_in, var_in, keep, take, NULL, std, mean_out,
                                        var_out, mu, sd, n, d, j0, w);
        const FB_T *g = gamma + j0, *b = beta + j0;
        for (ptrdiff_t i = 0; i < n; i++) {
            const FB_T *xi = x + i * d + j0;
            for (ptrdiff_t j = 0; j < w; j++) {
                FB_T v = xi[j] - mu[j];
                FB_T normal = v / sd[j];
                FB_T scaled = g[j] * normal;
                row_c[j] = v;
                row_n[j] = normal;
                row_o[j] = scaled + b[j];
            }
            FB_NAME(fb_bn_stream_row)(xc + i * d + j0, row_c, w);
            FB_NAME(fb_bn_stream_row)(xn + i * d + j0, row_n, w);
            FB_NAME(fb_bn_stream_row)(out + i * d + j0, row_o, w);
        }
    }
    _mm_sfence();                       /* streaming stores visible before return */
}

/* fb_bn_backward for batches far larger than the caches: dx written once, in
   streaming stores; dxc kept in `scratch` (n * block elements, block from
   fb_bn_block_cols(n, d, sizeof(FB_T), 3)) between the second and third
   passes. */
FB_AVX512 static void FB_NAME(fb_avx512_bn_backward)(
        const FB_T *restrict dout, const FB_T *restrict xn, const FB_T *restrict xc,
        const FB_T *restrict std, const FB_T *restrict gamma, FB_T *restrict dx,
        FB_T *restrict dgamma, FB_T *restrict dbeta, ptrdiff_t n, ptrdiff_t d,
        FB_T *restrict scratch)
{
    FB_T dvar[FB_BN_MAX_COLS], dmu[FB_BN_MAX_COLS], row[FB_BN_MAX_COLS];
    const FB_T count = (FB_T)n;
    ptrdiff_t block = fb_bn_block_cols(n, d, sizeof(FB_T), 3);   /* dout, xc, scratch */
    for (ptrdiff_t j0 = 0; j0 < d; j0 += block) {
        ptrdiff_t w = block < d - j0 ? block : d - j0;
        FB_NAME(fb_bn_block_sums)(dout, xn, xc, std, gamma, dgamma, dbeta, dvar, n, d, j0, w);
        FB_NAME(fb_bn_block_dxc)(dout, xc, std, gamma, dvar, scratch, w, dmu, n, d, j0, w);
        for (ptrdiff_t j = 0; j < w; j++)
            dmu[j] = dmu[j] / count;
        for (ptrdiff_t i = 0; i < n; i++) {             /* dx = dxc - dmu / n */
            const FB_T *ri = scratch + i * w;
            for (ptrdiff_t j = 0; j < w; j++)
                row[j] = ri[j] - dmu[j];
            FB_NAME(fb_bn_stream_row)(dx + i * d + j0, row, w);
        }
    }
    _mm_sfence();
}

#endif /* FB_AVX512_MODE */

#if defined(__clang__)
#pragma STDC FP_CONTRACT DEFAULT
#elif defined(__GNUC__)
#pragma GCC pop_options
#endif

/* ---- entry points ---------------------------------------------------------- */

/* Training-mode forward of a batch x (n, d), n >= 1, d >= 1.  Writes
   xc = x - mean, xn = xc / std, out = gamma * xn + beta (n, d),
   std = sqrt(var + 1e-6) (d,) with the batch mean and biased variance, and
   the running statistics mean_out = keep * mean_in + take * mean (likewise
   var_out from var_in), keep = momentum and take = 1 - momentum. */
static inline void FB_NAME(fb_bn_forward_train)(
        const FB_T *restrict x, const FB_T *restrict gamma, const FB_T *restrict beta,
        const FB_T *restrict mean_in, const FB_T *restrict var_in, FB_T keep, FB_T take,
        FB_T *restrict xc, FB_T *restrict xn, FB_T *restrict out, FB_T *restrict std,
        FB_T *restrict mean_out, FB_T *restrict var_out, ptrdiff_t n, ptrdiff_t d)
{
#if FB_AVX512_MODE
    if (d >= 2 && fb_use_avx512() && FB_NAME(fb_stream_pays)(xc, n * d)
            && FB_NAME(fb_stream_pays)(xn, n * d) && FB_NAME(fb_stream_pays)(out, n * d)) {
        FB_NAME(fb_avx512_bn_forward_train)(x, gamma, beta, mean_in, var_in, keep, take, xc,
                                            xn, out, std, mean_out, var_out, n, d);
        return;
    }
#endif
    FB_NAME(fb_generic_bn_forward_train)(x, gamma, beta, mean_in, var_in, keep, take, xc, xn,
                                         out, std, mean_out, var_out, n, d);
}

/* Test-mode forward: out (n, d) from the running statistics mean, var (d,). */
static inline void FB_NAME(fb_bn_forward_test)(
        const FB_T *restrict x, const FB_T *restrict gamma, const FB_T *restrict beta,
        const FB_T *restrict mean, const FB_T *restrict var, FB_T *restrict out,
        ptrdiff_t n, ptrdiff_t d)
{
    FB_NAME(fb_generic_bn_forward_test)(x, gamma, beta, mean, var, out, n, d);
}

/* Backward of a training-mode forward: from dout (n, d) and what the forward
   kept (xn, xc, std), dx (n, d), dgamma = sum(xn * dout) and
   dbeta = sum(dout) (d,); dx_sums (d,), unless NULL, = dx's column sums,
   its rows added in order from 0 (what a following affine's bias gradient
   sums).  n >= 1, d >= 1. */
static inline void FB_NAME(fb_bn_backward)(
        const FB_T *restrict dout, const FB_T *restrict xn, const FB_T *restrict xc,
        const FB_T *restrict std, const FB_T *restrict gamma, FB_T *restrict dx,
        FB_T *restrict dgamma, FB_T *restrict dbeta, FB_T *restrict dx_sums, ptrdiff_t n,
        ptrdiff_t d)
{
#if FB_AVX512_MODE
    if (d >= 2 && dx_sums == NULL && fb_use_avx512() && FB_NAME(fb_stream_pays)(dx, n * d)) {
        ptrdiff_t block = fb_bn_block_cols(n, d, sizeof(FB_T), 3);
        FB_T *scratch = (FB_T *)malloc((size_t)(n * block) * sizeof(FB_T));
        if (scratch != NULL) {
            FB_NAME(fb_avx512_bn_backward)(dout, xn, xc, std, gamma, dx, dgamma, dbeta, n, d,
                                           scratch);
            free(scratch);
            return;
        }
    }
#endif
    FB_NAME(fb_generic_bn_backward)(dout, xn, xc, std, gamma, dx, dgamma, dbeta, dx_sums, n,
                                    d);
}
