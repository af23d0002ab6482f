/*
 * fb_avx512_loops.h: hand-written AVX-512 versions of the loops that pay for
 * them, chosen at run time by the entry points (fb_dispatch.h).
 *
 *   sigmoid forward    exp through roundscale/table + scalef, a reciprocal
 *                      estimate + Newton steps instead of the division
 *                      (fb_math.h)
 *   softmax + cross-   each row in one fused exp-and-sum pass, the logs of a
 *   entropy forward    block of row sums in a loop of their own
 *   ReLU forward and   streaming stores for outputs far larger than the L2
 *   backward           cache (FB_STREAM_MIN_BYTES)
 *
 * A template over FB_T (fb_dtype.h), compiled once per dtype by fb_loops.h,
 * and only where FB_AVX512_MODE is on (fb_cpu.h).  Each loop runs whole
 * vectors of FB_W lanes, then one masked vector for the last n % FB_W
 * elements (masked-off lanes are neither read nor written).  Naming:
 * fb_avx512_<kernel>_{d,f} is the AVX-512 version of fb_<kernel>_{d,f}.
 */

/* ---- once: what does not depend on the dtype ---------------------------- */
#ifndef FB_AVX512_LOOPS_ONCE
#define FB_AVX512_LOOPS_ONCE

#include <math.h>
#include <stddef.h>
#include <stdint.h>

#include "fb_cpu.h"
#include "fb_math.h"

/* Rows per block of the AVX-512 softmax: each block's row sums go through
   log in a loop of their own, after the vector passes over its rows (a libm
   call inside the vector loop costs a vzeroupper and the reload of every
   constant after it: 100x10 float32 ~2.4 -> ~1.8 us). */
#define FB_LOG_BLOCK 256
/* Shortest softmax row the AVX-512 loops take (measured, 100 x c rows: from
   6 classes up they beat the generic blocks: c = 10 float32 2.3 -> 1.8 us,
   c = 16 float64 3.6 -> 2.7 us; below, one row fills too little of a vector). */
#define FB_AVX512_MIN_ROW 6
/* Outputs at least this large (per call, i.e. per thread's chunk) are written
   with streaming stores where the AVX-512 loops run: a core's L2 here. */
#define FB_STREAM_MIN_BYTES ((ptrdiff_t)1 << 21)

#endif /* FB_AVX512_LOOPS_ONCE */

/* ---- per dtype ---------------------------------------------------------- */
#ifndef FB_T
#error "fb_avx512_loops.h is a template: include fb_loops.h"
#endif

#if FB_AVX512_MODE

/* Mask of the first n lanes (all FB_W of them when n >= FB_W). */
FB_AVX512 static inline FB_M FB_NAME(fb_lanes512)(ptrdiff_t n)
{
    return n >= FB_W ? (FB_M)~(FB_M)0 : (FB_M)((1u << n) - 1);
}

/* sigmoid of one vector: as the portable loop, exp(-|v|) and 1/(1 + z). */
FB_AVX512 static inline FB_V FB_NAME(fb_sigmoid512)(FB_V v)
{
    FB_V minus_abs = FB_VEC(or)(v, FB_VEC(set1)((FB_T)-0.0));   /* NaN stays NaN */
    FB_V z = FB_NAME(fb_exp512)(minus_abs);
    FB_V s = FB_NAME(fb_recip512)(FB_VEC(add)(FB_VEC(set1)((FB_T)1), z));
    /* v < 0 or NaN: z * s (NaN through z) */
    FB_M neg = FB_VEC_MASK(cmp)(v, FB_VEC(setzero)(), _CMP_NGE_UQ);
    return FB_VEC(mask_mul)(s, neg, z, s);
}

/* out = sigmoid(x) for n elements. */
FB_AVX512 static void FB_NAME(fb_avx512_sigmoid_forward)(const FB_T *restrict x,
                                                         FB_T *restrict out, ptrdiff_t n)
{
    ptrdiff_t i = 0;
    for (; i + FB_W <= n; i += FB_W)
        FB_VEC(storeu)(out + i, FB_NAME(fb_sigmoid512)(FB_VEC(loadu)(x + i)));
    if (i < n) {
        FB_M k = FB_NAME(fb_lanes512)(n - i);
        FB_VEC(mask_storeu)(out + i, k, FB_NAME(fb_sigmoid512)(FB_VEC(maskz_loadu)(k, x + i)));
    }
}

/* ReLU with streaming stores, for arrays far larger than the L2 cache
   (FB_STREAM_MIN_BYTES): out / dx bypass the caches instead of being read
   into them first only to be overwritten (a third less memory traffic;
   fastbp bench relu 1e6 float64 ~20% faster).  The head up to a 64-byte
   boundary of the output runs the portable loop (streaming stores need the
   alignment), the end one masked vector. */

/* Elements before out's first 64-byte boundary (at most n). */
FB_AVX512 static inline ptrdiff_t FB_NAME(fb_stream_head)(const FB_T *out, ptrdiff_t n)
{
    ptrdiff_t head = (ptrdiff_t)((64 - ((uintptr_t)out & 63)) & 63) / (ptrdiff_t)sizeof(FB_T);
    return head < n ? head : n;
}

/* 1 when the output of n elements at out is worth streaming stores: large,
   and aligned to its element size (so its 64-byte boundaries are reachable). */
static inline int FB_NAME(fb_stream_pays)(const FB_T *out, ptrdiff_t n)
{
    return n * (ptrdiff_t)sizeof(FB_T) >= FB_STREAM_MIN_BYTES
           && (uintptr_t)out % sizeof(FB_T) == 0;
}

FB_AVX512 static void FB_NAME(fb_avx512_relu_forward)(const FB_T *restrict x,
                                                      FB_T *restrict out,
                                                      uint8_t *restrict mask, ptrdiff_t n)
{
    ptrdiff_t i = FB_NAME(fb_stream_head)(out, n);
    FB_NAME(fb_generic_relu_forward)(x, out, mask, i);
    const FB_V zero = FB_VEC(setzero)();
    const __m128i one = _mm_set1_epi8(1);
    for (; i + FB_W <= n; i += FB_W) {
        FB_V v = FB_VEC(loadu)(x + i);
        FB_M k = FB_VEC_MASK(cmp)(v, zero, _CMP_LE_OQ);     /* NaN: not masked */
        FB_VEC(stream)(out + i, FB_VEC(mask_blend)(k, v, zero));
        _mm_mask_storeu_epi8(mask + i, (__mmask16)FB_NAME(fb_lanes512)(FB_W),
                             _mm_maskz_mov_epi8((__mmask16)k, one));
    }
    _mm_sfence();                       /* streaming stores visible before return */
    FB_NAME(fb_generic_relu_forward)(x + i, out + i, mask + i, n - i);
}

FB_AVX512 static void FB_NAME(fb_avx512_relu_backward)(const FB_T *restrict dout,
                                                       const uint8_t *restrict mask,
                                                       FB_T *restrict dx, ptrdiff_t n)
{
    ptrdiff_t i = FB_NAME(fb_stream_head)(dx, n);
    FB_NAME(fb_generic_relu_backward)(dout, mask, dx, i);
    for (; i + FB_W <= n; i += FB_W) {
        __m128i m = _mm_maskz_loadu_epi8((__mmask16)FB_NAME(fb_lanes512)(FB_W), mask + i);
        FB_M keep = (FB_M)_mm_testn_epi8_mask(m, m);            /* mask byte == 0 */
        FB_VEC(stream)(dx + i, FB_VEC(maskz_loadu)(keep, dout + i));
    }
    _mm_sfence();
    FB_NAME(fb_generic_relu_backward)(dout + i, mask + i, dx + i, n - i);
}

/* One softmax row of c elements: y = exp(x - max(x)), returns sum(y) and sets
   *row_max.  Two passes over x (the max, then exp with the sum kept in a
   vector register) instead of the portable code's four.  A NaN or +inf in x
   makes some y NaN (x - max is NaN), hence the sum and then the whole row. */
FB_AVX512 static inline FB_T FB_NAME(fb_avx512_softmax_exp_row)(const FB_T *restrict xi,
                                                                FB_T *restrict yi,
                                                                ptrdiff_t c, FB_T *row_max)
{
    ptrdiff_t j;
    FB_M tail = FB_NAME(fb_lanes512)(c % FB_W);
    FB_V vmax = FB_VEC(set1)((FB_T)-INFINITY);
    for (j = 0; j + FB_W <= c; j += FB_W)
        vmax = FB_VEC(max)(vmax, FB_VEC(loadu)(xi + j));
    if (j < c)
        vmax = FB_VEC(mask_max)(vmax, tail, vmax, FB_VEC(maskz_loadu)(tail, xi + j));
    FB_T m = FB_VEC(reduce_max)(vmax);
    FB_V vm = FB_VEC(set1)(m), vsum = FB_VEC(setzero)();
    for (j = 0; j + FB_W <= c; j += FB_W) {
        FB_V y = FB_NAME(fb_exp512)(FB_VEC(sub)(FB_VEC(loadu)(xi + j), vm));
        FB_VEC(storeu)(yi + j, y);
        vsum = FB_VEC(add)(vsum, y);
    }
    if (j < c) {
        FB_V y = FB_NAME(fb_exp512)(FB_VEC(sub)(FB_VEC(maskz_loadu)(tail, xi + j), vm));
        FB_VEC(mask_storeu)(yi + j, tail, y);
        vsum = FB_VEC(mask_add)(vsum, tail, vsum, y);
    }
    *row_max = m;
    return FB_VEC(reduce_add)(vsum);
}

/* One softmax row: y = exp(x - max) / sum, *row_max = max; returns sum. */
FB_AVX512 static inline FB_T FB_NAME(fb_avx512_softmax_row)(const FB_T *restrict xi,
                                                            FB_T *restrict yi, ptrdiff_t c,
                                                            FB_T *row_max)
{
    FB_M tail = FB_NAME(fb_lanes512)(c % FB_W);
    FB_T sum = FB_NAME(fb_avx512_softmax_exp_row)(xi, yi, c, row_max);
    FB_V inv_sum = FB_VEC(set1)((FB_T)1 / sum);
    ptrdiff_t j;
    for (j = 0; j + FB_W <= c; j += FB_W)
        FB_VEC(storeu)(yi + j, FB_VEC(mul)(FB_VEC(loadu)(yi + j), inv_sum));
    if (j < c)
        FB_VEC(mask_storeu)(yi + j, tail,
                            FB_VEC(mul)(FB_VEC(maskz_loadu)(tail, yi + j), inv_sum));
    return sum;
}

/* a[i] = log(a[i]): the row sums of a block, after its vector passes. */
static inline void FB_NAME(fb_log_in_place)(FB_T *a, ptrdiff_t n)
{
    for (ptrdiff_t i = 0; i < n; i++)
        a[i] = (FB_T)log((double)a[i]);
}

/* Softmax rows [i0, i0 + rows) of x into y (rows <= FB_LOG_BLOCK), with
   log_sum[r] = log(sum of row i0 + r's exps) and row_max[r] its maximum. */
FB_AVX512 static inline void FB_NAME(fb_avx512_softmax_block)(
        const FB_T *restrict x, FB_T *restrict y, ptrdiff_t i0, ptrdiff_t rows, ptrdiff_t c,
        FB_T *restrict log_sum, FB_T *restrict row_max)
{
    for (ptrdiff_t r = 0; r < rows; r++)
        log_sum[r] = FB_NAME(fb_avx512_softmax_row)(x + (i0 + r) * c, y + (i0 + r) * c, c,
                                                    &row_max[r]);
    FB_NAME(fb_log_in_place)(log_sum, rows);
}

/* fb_generic_softmax_xent_labels with the fused rows (same inputs and
   outputs), a block of rows at a time: softmax rows, their logs, their losses. */
FB_AVX512 static double FB_NAME(fb_avx512_softmax_xent_labels)(
        const FB_T *restrict x, const int64_t *restrict labels, FB_T *restrict y,
        FB_T *restrict loss, ptrdiff_t n, ptrdiff_t c)
{
    FB_T log_sum[FB_LOG_BLOCK], row_max[FB_LOG_BLOCK];
    double total = 0.0;
    for (ptrdiff_t i0 = 0; i0 < n; i0 += FB_LOG_BLOCK) {
        ptrdiff_t rows = n - i0 < FB_LOG_BLOCK ? n - i0 : FB_LOG_BLOCK;
        FB_NAME(fb_avx512_softmax_block)(x, y, i0, rows, c, log_sum, row_max);
        for (ptrdiff_t r = 0; r < rows; r++) {
            ptrdiff_t i = i0 + r;
            FB_T li = log_sum[r] - (x[i * c + labels[i]] - row_max[r]);
            loss[i] = li;
            total += (double)li;
        }
    }
    return total;
}

/* fb_generic_softmax_xent_onehot with the fused rows, by blocks as above: the
   loss pass sums t * (log(sum) - (x - max)) over the lanes where t != 0 (NaN
   t counts, as in the portable loop). */
FB_AVX512 static double FB_NAME(fb_avx512_softmax_xent_onehot)(
        const FB_T *restrict x, const FB_T *restrict t, FB_T *restrict y,
        FB_T *restrict loss, ptrdiff_t n, ptrdiff_t c)
{
    FB_T log_sum[FB_LOG_BLOCK], row_max[FB_LOG_BLOCK];
    double total = 0.0;
    for (ptrdiff_t i0 = 0; i0 < n; i0 += FB_LOG_BLOCK) {
        ptrdiff_t rows = n - i0 < FB_LOG_BLOCK ? n - i0 : FB_LOG_BLOCK;
        FB_NAME(fb_avx512_softmax_block)(x, y, i0, rows, c, log_sum, row_max);
        for (ptrdiff_t r = 0; r < rows; r++) {
            const FB_T *xi = x + (i0 + r) * c, *ti = t + (i0 + r) * c;
            FB_V vlog_sum = FB_VEC(set1)(log_sum[r]), vm = FB_VEC(set1)(row_max[r]);
            FB_V vloss = FB_VEC(setzero)();
            for (ptrdiff_t j = 0; j < c; j += FB_W) {
                FB_M k = FB_NAME(fb_lanes512)(c - j);
                FB_V tj = FB_VEC(maskz_loadu)(k, ti + j);
                FB_V xj = FB_VEC(maskz_loadu)(k, xi + j);
                FB_V term = FB_VEC(mul)(tj, FB_VEC(sub)(vlog_sum, FB_VEC(sub)(xj, vm)));
                k &= FB_VEC_MASK(cmp)(tj, FB_VEC(setzero)(), _CMP_NEQ_UQ);
                vloss = FB_VEC(mask_add)(vloss, k, vloss, term);
            }
            FB_T li = FB_VEC(reduce_add)(vloss);
            loss[i0 + r] = li;
            total += (double)li;
        }
    }
    return total;
}

#endif /* FB_AVX512_MODE */
