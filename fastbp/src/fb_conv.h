/*
 * fb_conv.h: the loops around a convolution's GEMMs (chapter 7): im2col and
 * col2im in the book's layout, their transposed block versions that feed
 * fastbp's convolution engine, a block version in the book's layout (the
 * float32 forward's col @ W.T) with its transposing epilogue, the bias + ReLU
 * epilogue, the ReLU mask of a gradient, the bias gradient, and the direct
 * convolution of one input channel.
 *
 * A template over FB_T (fb_dtype.h), compiled once per dtype by fb_loops.h;
 * the loops are FB_CLONES (fb_cpu.h) so that GCC vectorises them for each
 * CPU level.  No -ffast-math: 0 + v is computed (it turns -0.0 into +0.0,
 * as the book's additions onto zeros do) and NaN propagates.
 *
 * Batches are 4-D (N, C, H, W) with rows of W contiguous elements and planes
 * of H*W; where a function takes an fb_layout, the batch (n) and channel (c)
 * axes have the element strides it gives: NCHW is {C*H*W, H*W}, the engine's
 * channel-major CNHW is {H*W, N*H*W}.  Sizes are ptrdiff_t and > 0 unless
 * stated; outputs are allocated by the caller.
 */

/* ---- once: what does not depend on the dtype ---------------------------- */
#ifndef FB_CONV_ONCE
#define FB_CONV_ONCE

#include <stddef.h>
#include <string.h>

#include "fb_cpu.h"

/* A window sliding over a batch: the input (n, c, h, w), the window fh x fw,
   its stride and zero padding, and the oh x ow positions it takes. */
typedef struct {
    ptrdiff_t n, c, h, w;
    ptrdiff_t fh, fw;
    ptrdiff_t stride, pad;
    ptrdiff_t oh, ow;
} fb_window;

/* Element strides of a 4-D batch's n and c axes (h, w are contiguous). */
typedef struct {
    ptrdiff_t n, c;
} fb_layout;

/* The output positions ox in [*lo, *hi) whose tap kx falls inside the input
   row: 0 <= ox*stride + kx - pad < w. */
static inline void fb_valid_columns(const fb_window *g, ptrdiff_t kx, ptrdiff_t *lo,
                                    ptrdiff_t *hi)
{
    ptrdiff_t first = g->pad - kx;                  /* ox*stride >= first */
    ptrdiff_t last = g->w - 1 + g->pad - kx;        /* ox*stride <= last */
    ptrdiff_t a = first <= 0 ? 0 : (first + g->stride - 1) / g->stride;
    ptrdiff_t b = last < 0 ? 0 : last / g->stride + 1;
    *lo = a < g->ow ? a : g->ow;
    *hi = b < g->ow ? b : g->ow;
    if (*hi < *lo) *hi = *lo;
}

/* For a stride-1 convolution's tap row ky (fb_im2col_t_unit_stride_tap):
   the output rows [r, r1) of the batch that lie in one image, from r on --
   image i, starting at row oy, rows of them -- and among those the rows
   [first, last) whose input row oy + ky - pad is inside the image
   (0 <= first <= last <= rows). */
typedef struct {
    ptrdiff_t i, oy, rows, first, last;
} fb_unit_stride_run;

static inline fb_unit_stride_run fb_unit_stride_run_at(const fb_window *g, ptrdiff_t r,
                                                       ptrdiff_t r1, ptrdiff_t ky)
{
    fb_unit_stride_run run;
    run.i = r / g->oh;
    run.oy = r % g->oh;
    run.rows = (r1 - r < g->oh - run.oy) ? r1 - r : g->oh - run.oy;
    run.first = g->pad - ky - run.oy;
    run.last = g->h + g->pad - ky - run.oy;
    if (run.first < 0) run.first = 0;
    if (run.first > run.rows) run.first = run.rows;
    if (run.last > run.rows) run.last = run.rows;
    if (run.last < run.first) run.last = run.first;
    return run;
}

/* Elements of the scratch fb_im2col_rows needs for blocks of up to rows
   output rows: one image's zero-bordered input rows for them, c planes of
   span x (w + 2*pad), and a vector's slack for its overlapping copies. */
static inline ptrdiff_t fb_im2col_rows_scratch(const fb_window *g, ptrdiff_t rows)
{
    ptrdiff_t r = rows < g->oh ? rows : g->oh;
    return g->c * ((r - 1) * g->stride + g->fh) * (g->w + 2 * g->pad) + 4;
}

#endif /* FB_CONV_ONCE */

/* ---- per dtype ---------------------------------------------------------- */
#ifndef FB_T
#error "fb_conv.h is a template: include fb_loops.h"
#endif

/* One output row of taps: dst[ox] = src[ox*stride + kx - pad] for ox in
   [0, ow), 0 outside the input row src (w elements); [lo, hi) are the
   columns inside it (fb_valid_columns of kx). */
static inline void FB_NAME(fb_tap_row_within)(const FB_T *restrict src, FB_T *restrict dst,
                                              const fb_window *g, ptrdiff_t kx, ptrdiff_t lo,
                                              ptrdiff_t hi)
{
    ptrdiff_t ox, s = g->stride;
    for (ox = 0; ox < lo; ox++)
        dst[ox] = 0;
    const FB_T *from = src + kx - g->pad;
    if (s == 1) {
        for (ox = lo; ox < hi; ox++)
            dst[ox] = from[ox];
    } else {
        for (ox = lo; ox < hi; ox++)
            dst[ox] = from[ox * s];
    }
    for (ox = hi; ox < g->ow; ox++)
        dst[ox] = 0;
}

static inline void FB_NAME(fb_tap_row)(const FB_T *restrict src, FB_T *restrict dst,
                                       const fb_window *g, ptrdiff_t kx)
{
    ptrdiff_t lo, hi;
    fb_valid_columns(g, kx, &lo, &hi);
    FB_NAME(fb_tap_row_within)(src, dst, g, kx, lo, hi);
}

/* im2col in the book's layout: x (n, c, h, w) C-contiguous ->
   col (n*oh*ow, c*fh*fw), col[(i*oh + oy)*ow + ox, (ch*fh + ky)*fw + kx] =
   x[i, ch, oy*stride + ky - pad, ox*stride + kx - pad], 0 on the padding.
   Built one (image, oy, channel, ky, kx) tap row at a time in a buffer of ow
   elements (row_buffer), then spread into the ow rows of col it belongs to,
   which stay in cache while (channel, ky, kx) run through. */
FB_CLONES static void FB_NAME(fb_generic_im2col)(const FB_T *restrict x, const fb_window *g,
                                                 FB_T *restrict col, FB_T *restrict row_buffer)
{
    const ptrdiff_t k = g->c * g->fh * g->fw, hw = g->h * g->w;
    for (ptrdiff_t i = 0; i < g->n; i++) {
        for (ptrdiff_t oy = 0; oy < g->oh; oy++) {
            FB_T *rows = col + (i * g->oh + oy) * g->ow * k;    /* ow rows of k */
            for (ptrdiff_t ch = 0; ch < g->c; ch++) {
                const FB_T *plane = x + (i * g->c + ch) * hw;
                for (ptrdiff_t ky = 0; ky < g->fh; ky++) {
                    ptrdiff_t y = oy * g->stride + ky - g->pad;
                    FB_T *out = rows + (ch * g->fh + ky) * g->fw;
                    for (ptrdiff_t kx = 0; kx < g->fw; kx++) {
                        if (y < 0 || y >= g->h) {
                            for (ptrdiff_t ox = 0; ox < g->ow; ox++)
                                out[ox * k + kx] = 0;
                            continue;
                        }
                        FB_NAME(fb_tap_row)(plane + y * g->w, row_buffer, g, kx);
                        for (ptrdiff_t ox = 0; ox < g->ow; ox++)
                            out[ox * k + kx] = row_buffer[ox];
                    }
                }
            }
        }
    }
}

/* col2im in the book's layout, the adjoint of fb_im2col: img (n, c, h, w)
   C-contiguous = the entries of col added onto the positions im2col read
   them from, what fell on the padding dropped.  Each position starts at +0
   and receives its taps in (ky, kx) order -- the book's order of additions,
   so results are the book's bit for bit: windows are visited in descending
   (oy, ox) order, in which a position's taps come in ascending (ky, kx). */
FB_CLONES static void FB_NAME(fb_generic_col2im)(const FB_T *restrict col, const fb_window *g,
                                                 FB_T *restrict img)
{
    const ptrdiff_t k = g->c * g->fh * g->fw, hw = g->h * g->w, p = g->oh * g->ow;
    memset(img, 0, (size_t)(g->n * g->c * hw) * sizeof(FB_T));
    for (ptrdiff_t i = 0; i < g->n; i++) {
        FB_T *img_i = img + i * g->c * hw;
        for (ptrdiff_t oy = g->oh - 1; oy >= 0; oy--) {
            for (ptrdiff_t ox = g->ow - 1; ox >= 0; ox--) {
                const FB_T *row = col + (i * p + oy * g->ow + ox) * k;
                ptrdiff_t lo, hi;           /* the taps kx inside the row */
                lo = g->pad - ox * g->stride;
                hi = g->w + g->pad - ox * g->stride;
                if (lo < 0) lo = 0;
                if (hi > g->fw) hi = g->fw;
                for (ptrdiff_t ch = 0; ch < g->c; ch++) {
                    for (ptrdiff_t ky = 0; ky < g->fh; ky++) {
                        ptrdiff_t y = oy * g->stride + ky - g->pad;
                        if (y < 0 || y >= g->h)
                            continue;
                        FB_T *dst = img_i + ch * hw + y * g->w + ox * g->stride - g->pad;
                        const FB_T *src = row + (ch * g->fh + ky) * g->fw;
                        for (ptrdiff_t kx = lo; kx < hi; kx++)
                            dst[kx] += src[kx];
                    }
                }
            }
        }
    }
}

/* fb_generic_im2col_t's tap (ch, ky, kx) for a stride-1 convolution (all
   the book's): the tap rows of one image's consecutive oy are consecutive
   input rows shifted by kx - pad.  Per image, the rows whose input row is
   inside the image are copied in one run when the output is as wide as the
   input ("same": the book's 3x3, pad 1), else a row at a time (pad 2: one
   wider); then the columns that fall on the padding are zeroed, a column at
   a time across the run (a same run's copy put a neighbouring row's end
   there).  dst: the tap's row of colT. */
static inline void FB_NAME(fb_im2col_t_unit_stride_tap)(const FB_T *restrict x, fb_layout xl,
                                                        const fb_window *g, ptrdiff_t r0,
                                                        ptrdiff_t r1, ptrdiff_t ch,
                                                        ptrdiff_t ky, ptrdiff_t kx,
                                                        FB_T *restrict dst)
{
    const ptrdiff_t w = g->w, ow = g->ow, shift = kx - g->pad;
    ptrdiff_t lo, hi;                           /* the columns inside the input row */
    fb_valid_columns(g, kx, &lo, &hi);
    ptrdiff_t r = r0;
    while (r < r1) {
        const fb_unit_stride_run run_at = fb_unit_stride_run_at(g, r, r1, ky);
        const ptrdiff_t i = run_at.i, oy = run_at.oy, rows = run_at.rows;
        const ptrdiff_t first = run_at.first, last = run_at.last;
        FB_T *out = dst + (r - r0) * ow;
        memset(out, 0, (size_t)(first * ow) * sizeof(FB_T));
        memset(out + last * ow, 0, (size_t)((rows - last) * ow) * sizeof(FB_T));
        r += rows;
        if (last == first)
            continue;
        const ptrdiff_t len = (last - first) * ow;
        FB_T *run = out + first * ow;
        if (hi == lo) {
            memset(run, 0, (size_t)len * sizeof(FB_T));
            continue;
        }
        const FB_T *src = x + i * xl.n + ch * xl.c + (oy + first + ky - g->pad) * w;
        if (ow == w) {          /* run[k] = src[k + shift], k in [lo, len - (w - hi)) */
            memcpy(run + lo, src + lo + shift, (size_t)(len - lo - (w - hi)) * sizeof(FB_T));
        } else {
            for (ptrdiff_t q = 0; q < last - first; q++)
                memcpy(run + q * ow + lo, src + q * w + lo + shift,
                       (size_t)(hi - lo) * sizeof(FB_T));
        }
        for (ptrdiff_t e = 0; e < lo; e++)          /* (strided stores: no memset calls) */
            for (ptrdiff_t q = e; q < len; q += ow)
                run[q] = 0;
        for (ptrdiff_t e = hi; e < ow; e++)
            for (ptrdiff_t q = e; q < len; q += ow)
                run[q] = 0;
    }
}

/* The transposed im2col of output rows [r0, r1) (r = image * oh + oy) of a
   batch x with layout xl: colT (c*fh*fw, (r1 - r0)*ow), row (ch, ky, kx),
   column (r - r0)*ow + ox -- the B of out = W (f, c*fh*fw) @ colT, whose
   columns are output positions.  Each entry is one contiguous tap row. */
FB_CLONES static void FB_NAME(fb_generic_im2col_t)(const FB_T *restrict x, fb_layout xl,
                                                   const fb_window *g, ptrdiff_t r0, ptrdiff_t r1,
                                                   FB_T *restrict colT)
{
    /* (the divisions -- row r to image and oy, the valid columns -- are
       made once a tap, not once a tap row: millions of rows a step) */
    const ptrdiff_t j = (r1 - r0) * g->ow;
    for (ptrdiff_t ch = 0; ch < g->c; ch++) {
        for (ptrdiff_t ky = 0; ky < g->fh; ky++) {
            for (ptrdiff_t kx = 0; kx < g->fw; kx++) {
                FB_T *dst = colT + ((ch * g->fh + ky) * g->fw + kx) * j;
                if (g->stride == 1) {
                    FB_NAME(fb_im2col_t_unit_stride_tap)(x, xl, g, r0, r1, ch, ky, kx, dst);
                    continue;
                }
                ptrdiff_t lo, hi, i = r0 / g->oh, oy = r0 % g->oh;
                fb_valid_columns(g, kx, &lo, &hi);
                for (ptrdiff_t r = r0; r < r1; r++, dst += g->ow) {
                    ptrdiff_t y = oy * g->stride + ky - g->pad;
                    if (y < 0 || y >= g->h) {
                        for (ptrdiff_t ox = 0; ox < g->ow; ox++)
                            dst[ox] = 0;
                    } else {
                        FB_NAME(fb_tap_row_within)(x + i * xl.n + ch * xl.c + y * g->w, dst, g,
                                                   kx, lo, hi);
                    }
                    if (++oy == g->oh) {
                        oy = 0;
                        i++;
                    }
                }
            }
        }
    }
}

/* fb_generic_col2im_t_add's tap (ch, ky, kx) for a same convolution
   (stride 1, ow == w; see fb_im2col_t_unit_stride_tap): per image, the rows
   whose input row is inside the image are one run of the tap's row src of
   colT, added onto the input rows
   they were read from by one loop, once the entries that came from the
   padding columns are zeroed in src (scratch).  The zeros then land on a
   neighbouring row's elements and change nothing: each sum starts at +0 and
   never holds -0 (x + -x is +0 when rounding to nearest), so y + (+0) is y,
   bit for bit. */
static inline void FB_NAME(fb_col2im_t_add_same_tap)(FB_T *restrict src, const fb_window *g,
                                                     ptrdiff_t r0, ptrdiff_t r1, ptrdiff_t ch,
                                                     ptrdiff_t ky, ptrdiff_t kx,
                                                     FB_T *restrict dx, fb_layout dl)
{
    const ptrdiff_t w = g->w, shift = kx - g->pad, edge = shift < 0 ? -shift : shift;
    if (edge >= w)
        return;                                 /* every entry came from the padding */
    ptrdiff_t r = r0;
    while (r < r1) {
        const fb_unit_stride_run run_at = fb_unit_stride_run_at(g, r, r1, ky);
        const ptrdiff_t i = run_at.i, oy = run_at.oy, rows = run_at.rows;
        const ptrdiff_t first = run_at.first, last = run_at.last;
        if (last > first) {
            const ptrdiff_t len = (last - first) * w;
            FB_T *run = src + (r - r0 + first) * w;
            FB_T *dst = dx + i * dl.n + ch * dl.c + (oy + first + ky - g->pad) * w;
            if (shift < 0) {        /* dst[k + shift] += run[k]; the first columns dropped */
                for (ptrdiff_t e = 0; e < edge; e++)
                    for (ptrdiff_t q = e; q < len; q += w)
                        run[q] = 0;
                for (ptrdiff_t k = 0; k < len - edge; k++)
                    dst[k] += run[k + edge];
            } else {                /* the last columns dropped */
                for (ptrdiff_t e = w - edge; e < w; e++)
                    for (ptrdiff_t q = e; q < len; q += w)
                        run[q] = 0;
                for (ptrdiff_t k = 0; k < len - edge; k++)
                    dst[k + edge] += run[k];
            }
        }
        r += rows;
    }
}

/* The adjoint of fb_im2col_t: dx += the entries of colT added onto the
   positions they were read from (the padding dropped); dx has layout dl.
   colT is scratch: entries that came from the padding may be zeroed. */
FB_CLONES static void FB_NAME(fb_generic_col2im_t_add)(FB_T *restrict colT,
                                                       const fb_window *g, ptrdiff_t r0,
                                                       ptrdiff_t r1, FB_T *restrict dx,
                                                       fb_layout dl)
{
    const ptrdiff_t j = (r1 - r0) * g->ow, s = g->stride;
    const int same = s == 1 && g->ow == g->w;
    for (ptrdiff_t ch = 0; ch < g->c; ch++) {
        for (ptrdiff_t ky = 0; ky < g->fh; ky++) {
            for (ptrdiff_t kx = 0; kx < g->fw; kx++) {
                FB_T *src = colT + ((ch * g->fh + ky) * g->fw + kx) * j;
                if (same) {
                    FB_NAME(fb_col2im_t_add_same_tap)(src, g, r0, r1, ch, ky, kx, dx, dl);
                    continue;
                }
                ptrdiff_t lo, hi;
                fb_valid_columns(g, kx, &lo, &hi);
                ptrdiff_t i = r0 / g->oh, oy = r0 % g->oh;   /* (once a tap) */
                for (ptrdiff_t r = r0; r < r1; r++, src += g->ow) {
                    ptrdiff_t y = oy * s + ky - g->pad;
                    if (y >= 0 && y < g->h) {
                        FB_T *dst = dx + i * dl.n + ch * dl.c + y * g->w + kx - g->pad;
                        if (s == 1) {
                            for (ptrdiff_t ox = lo; ox < hi; ox++)
                                dst[ox] += src[ox];
                        } else {
                            for (ptrdiff_t ox = lo; ox < hi; ox++)
                                dst[ox * s] += src[ox];
                        }
                    }
                    if (++oy == g->oh) {
                        oy = 0;
                        i++;
                    }
                }
            }
        }
    }
}

/* The epilogue of a block's GEMM: out (rows, cols, row stride ld) += b[row]
   (b may be NULL: no bias), then ReLU (out <= 0 -> +0, NaN kept) if relu. */
FB_CLONES static void FB_NAME(fb_generic_bias_relu)(FB_T *restrict out, ptrdiff_t ld,
                                                    ptrdiff_t rows, ptrdiff_t cols,
                                                    const FB_T *restrict b, int relu)
{
    for (ptrdiff_t f = 0; f < rows; f++) {
        FB_T *row = out + f * ld;
        if (b != NULL) {
            FB_T bias = b[f];
            if (relu) {
                for (ptrdiff_t q = 0; q < cols; q++) {
                    FB_T v = row[q] + bias;
                    row[q] = v <= (FB_T)0 ? (FB_T)0 : v;
                }
            } else {
                for (ptrdiff_t q = 0; q < cols; q++)
                    row[q] = row[q] + bias;
            }
        } else if (relu) {
            for (ptrdiff_t q = 0; q < cols; q++) {
                FB_T v = row[q];
                row[q] = v <= (FB_T)0 ? (FB_T)0 : v;
            }
        }
    }
}

/* im2col of output rows [r0, r1) (r = image * oh + oy) of a batch x with
   layout xl, in the book's layout: col ((r1 - r0)*ow, c*fh*fw), row
   (r - r0)*ow + ox, column (ch*fh + ky)*fw + kx -- the A of
   out.T = col @ W.T, whose rows are output positions.  Per image, the input
   rows the block reads are copied zero-bordered into scratch (c planes of
   span rows of wp = w + 2*pad; fb_im2col_rows_scratch), so that a
   position's taps are, per (ch, ky), fw contiguous elements of scratch.
   3 taps wide (the book's 3 x 3) they are copied as 4: each copy's extra
   element is overwritten by the next one, and the last is copied exact. */
FB_CLONES static void FB_NAME(fb_generic_im2col_rows)(const FB_T *restrict x, fb_layout xl,
                                                      const fb_window *g, ptrdiff_t r0,
                                                      ptrdiff_t r1, FB_T *restrict col,
                                                      FB_T *restrict scratch)
{
    const ptrdiff_t wp = g->w + 2 * g->pad, s = g->stride, fw = g->fw, fh = g->fh;
    const ptrdiff_t runs = g->c * fh;           /* (ch, ky) runs of fw taps a position */
    FB_T *dst = col;
    ptrdiff_t r = r0;
    while (r < r1) {
        const ptrdiff_t i = r / g->oh, oy0 = r % g->oh;
        const ptrdiff_t rows = r1 - r < g->oh - oy0 ? r1 - r : g->oh - oy0;
        const ptrdiff_t y0 = oy0 * s - g->pad, span = (rows - 1) * s + fh;
        for (ptrdiff_t ch = 0; ch < g->c; ch++) {
            const FB_T *plane = x + i * xl.n + ch * xl.c;
            for (ptrdiff_t q = 0; q < span; q++) {
                FB_T *row = scratch + (ch * span + q) * wp;
                const ptrdiff_t y = y0 + q;
                if (y < 0 || y >= g->h) {
                    memset(row, 0, (size_t)wp * sizeof(FB_T));
                    continue;
                }
                memset(row, 0, (size_t)g->pad * sizeof(FB_T));
                memcpy(row + g->pad, plane + y * g->w, (size_t)g->w * sizeof(FB_T));
                memset(row + g->pad + g->w, 0, (size_t)g->pad * sizeof(FB_T));
            }
        }
        if (fh == 3 && fw == 3) {               /* the book's 3 x 3: straight-line copies */
            const ptrdiff_t plane = span * wp, k = runs * 3;
            for (ptrdiff_t oy = 0; oy < rows; oy++) {
                for (ptrdiff_t ox = 0; ox < g->ow; ox++, dst += k) {
                    const FB_T *src = scratch + oy * s * wp + ox * s;
                    FB_T *d = dst;
                    for (ptrdiff_t ch = 0; ch < g->c - 1; ch++, src += plane, d += 9) {
                        memcpy(d, src, 4 * sizeof(FB_T));
                        memcpy(d + 3, src + wp, 4 * sizeof(FB_T));
                        memcpy(d + 6, src + 2 * wp, 4 * sizeof(FB_T));
                    }
                    memcpy(d, src, 4 * sizeof(FB_T));
                    memcpy(d + 3, src + wp, 4 * sizeof(FB_T));
                    memcpy(d + 6, src + 2 * wp, 3 * sizeof(FB_T));
                }
            }
            r += rows;
            continue;
        }
        for (ptrdiff_t oy = 0; oy < rows; oy++) {
            for (ptrdiff_t ox = 0; ox < g->ow; ox++) {
                const FB_T *first = scratch + oy * s * wp + ox * s;
                FB_T *d = dst;
                for (ptrdiff_t ch = 0; ch < g->c; ch++) {
                    const FB_T *src = first + ch * span * wp;
                    if (fw == 3) {
                        const ptrdiff_t wide = ch == g->c - 1 ? fh - 1 : fh;
                        for (ptrdiff_t ky = 0; ky < wide; ky++, src += wp, d += 3)
                            memcpy(d, src, 4 * sizeof(FB_T));
                        if (wide < fh) {
                            memcpy(d, src, 3 * sizeof(FB_T));
                            d += 3;
                        }
                    } else {
                        for (ptrdiff_t ky = 0; ky < fh; ky++, src += wp, d += fw)
                            for (ptrdiff_t kx = 0; kx < fw; kx++)
                                d[kx] = src[kx];
                    }
                }
                dst += runs * fw;
            }
        }
        r += rows;
    }
}

/* The epilogue of a block's GEMM in the book's orientation, outT (np, nf)
   = col @ W.T: out[f*ld + p] = outT[p*nf + f] + b[f] (b may be NULL: no
   bias), then ReLU (<= 0 -> +0, NaN kept) if relu -- transposed into the
   engine's rows of positions, 16 positions at a time so that a tile of outT
   stays in L1 while its nf rows of out are written. */
FB_CLONES static void FB_NAME(fb_generic_transpose_bias_relu)(const FB_T *restrict outT,
                                                              ptrdiff_t np, ptrdiff_t nf,
                                                              const FB_T *restrict b, int relu,
                                                              FB_T *restrict out, ptrdiff_t ld)
{
    for (ptrdiff_t p0 = 0; p0 < np; p0 += 16) {
        const ptrdiff_t pn = np - p0 < 16 ? np - p0 : 16;
        for (ptrdiff_t f = 0; f < nf; f++) {
            const FB_T *src = outT + p0 * nf + f;
            FB_T *dst = out + f * ld + p0;
            if (b != NULL) {
                const FB_T bias = b[f];
                for (ptrdiff_t q = 0; q < pn; q++) {
                    FB_T v = src[q * nf] + bias;
                    dst[q] = relu && v <= (FB_T)0 ? (FB_T)0 : v;
                }
            } else {
                for (ptrdiff_t q = 0; q < pn; q++) {
                    FB_T v = src[q * nf];
                    dst[q] = relu && v <= (FB_T)0 ? (FB_T)0 : v;
                }
            }
        }
    }
}

/* Zero the planes of images [n0, n1), every channel, of a batch with layout l. */
static inline void FB_NAME(fb_zero_images)(FB_T *x, fb_layout l, ptrdiff_t n0, ptrdiff_t n1,
                                    ptrdiff_t c, ptrdiff_t hw)
{
    for (ptrdiff_t i = n0; i < n1; i++)
        for (ptrdiff_t ch = 0; ch < c; ch++)
            memset(x + i * l.n + ch * l.c, 0, (size_t)hw * sizeof(FB_T));
}

/* ReLU's backward on images [n0, n1): dx = +0 where h <= 0 (h the ReLU's
   output, so h <= 0 exactly where the book's mask x <= 0 is set; NaN
   passes), else dx.  dx has layout dl, h layout hl. */
FB_CLONES static void FB_NAME(fb_generic_relu_mask_images)(FB_T *restrict dx, fb_layout dl,
                                                           const FB_T *restrict h, fb_layout hl,
                                                           ptrdiff_t n0, ptrdiff_t n1, ptrdiff_t c,
                                                           ptrdiff_t hw)
{
    for (ptrdiff_t i = n0; i < n1; i++) {
        for (ptrdiff_t ch = 0; ch < c; ch++) {
            FB_T *d = dx + i * dl.n + ch * dl.c;
            const FB_T *a = h + i * hl.n + ch * hl.c;
            for (ptrdiff_t q = 0; q < hw; q++)
                d[q] = a[q] <= (FB_T)0 ? (FB_T)0 : d[q];
        }
    }
}

/* The bias gradient of a convolution: db[ch] (+)= the sum of dout's plane
   elements of channel ch over images [0, n) (layout dl, planes of hw);
   accumulate: add to db instead of overwriting it. */
FB_CLONES static void FB_NAME(fb_generic_channel_sums)(const FB_T *restrict dout, fb_layout dl,
                                                       ptrdiff_t n, ptrdiff_t c, ptrdiff_t hw,
                                                       FB_T *restrict db, int accumulate)
{
    for (ptrdiff_t ch = 0; ch < c; ch++) {
        FB_T total = 0;
        for (ptrdiff_t i = 0; i < n; i++) {
            const FB_T *a = dout + i * dl.n + ch * dl.c;
            FB_T plane = 0;
            FB_SIMD_REDUCTION(+:plane)
            for (ptrdiff_t q = 0; q < hw; q++)
                plane += a[q];
            total += plane;
        }
        db[ch] = accumulate ? db[ch] + total : total;
    }
}

/* ---- entry points: one per loop above (the loops are FB_CLONES, these inline) */
static inline void FB_NAME(fb_im2col)(const FB_T *restrict x, const fb_window *g,
                                      FB_T *restrict col, FB_T *restrict row_buffer)
{
    FB_NAME(fb_generic_im2col)(x, g, col, row_buffer);
}

static inline void FB_NAME(fb_col2im)(const FB_T *restrict col, const fb_window *g,
                                      FB_T *restrict img)
{
    FB_NAME(fb_generic_col2im)(col, g, img);
}

static inline void FB_NAME(fb_im2col_t)(const FB_T *restrict x, fb_layout xl,
                                        const fb_window *g, ptrdiff_t r0, ptrdiff_t r1,
                                        FB_T *restrict colT)
{
    FB_NAME(fb_generic_im2col_t)(x, xl, g, r0, r1, colT);
}

static inline void FB_NAME(fb_im2col_rows)(const FB_T *restrict x, fb_layout xl,
                                           const fb_window *g, ptrdiff_t r0, ptrdiff_t r1,
                                           FB_T *restrict col, FB_T *restrict scratch)
{
    FB_NAME(fb_generic_im2col_rows)(x, xl, g, r0, r1, col, scratch);
}

static inline void FB_NAME(fb_transpose_bias_relu)(const FB_T *restrict outT, ptrdiff_t np,
                                                   ptrdiff_t nf, const FB_T *restrict b,
                                                   int relu, FB_T *restrict out, ptrdiff_t ld)
{
    FB_NAME(fb_generic_transpose_bias_relu)(outT, np, nf, b, relu, out, ld);
}

static inline void FB_NAME(fb_col2im_t_add)(FB_T *restrict colT, const fb_window *g,
                                            ptrdiff_t r0, ptrdiff_t r1, FB_T *restrict dx,
                                            fb_layout dl)
{
    FB_NAME(fb_generic_col2im_t_add)(colT, g, r0, r1, dx, dl);
}

static inline void FB_NAME(fb_bias_relu)(FB_T *restrict out, ptrdiff_t ld, ptrdiff_t rows,
                                         ptrdiff_t cols, const FB_T *restrict b, int relu)
{
    FB_NAME(fb_generic_bias_relu)(out, ld, rows, cols, b, relu);
}

static inline void FB_NAME(fb_relu_mask_images)(FB_T *restrict dx, fb_layout dl,
                                                const FB_T *restrict h, fb_layout hl,
                                                ptrdiff_t n0, ptrdiff_t n1, ptrdiff_t c,
                                                ptrdiff_t hw)
{
    FB_NAME(fb_generic_relu_mask_images)(dx, dl, h, hl, n0, n1, c, hw);
}

static inline void FB_NAME(fb_channel_sums)(const FB_T *restrict dout, fb_layout dl,
                                            ptrdiff_t n, ptrdiff_t c, ptrdiff_t hw,
                                            FB_T *restrict db, int accumulate)
{
    FB_NAME(fb_generic_channel_sums)(dout, dl, n, c, hw, db, accumulate);
}

#if FB_AVX512_MODE
/* ---- AVX-512: direct convolution of one input channel at stride 1 -------
   (SimpleConvNet's and DeepConvNet's first layers.)  With one channel the
   GEMM's inner dimension is only fh*fw (25 or 9), too short for BLAS to run
   near its peak, and im2col writes fh*fw copies of the input; here each
   output row is a few vectors of accumulators over register-blocked filters
   (forward) or taps (weight gradient), read straight from the image, which
   is copied into a zero-bordered scratch image when padded.  Blocks are
   compile-time sizes (always_inline + switch) so the accumulators stay in
   registers.  Lanes past the row end are masked. */
#undef FB_ALWAYS_INLINE
#define FB_ALWAYS_INLINE __attribute__((always_inline)) inline

/* The image of batch element i, zero-bordered by pad, as rows of ld
   elements: x itself when pad == 0, else copied into scratch. */
static const FB_T *FB_NAME(fb_conv1_image)(const FB_T *x, fb_layout xl, const fb_window *g,
                                           ptrdiff_t i, FB_T *scratch, ptrdiff_t *ld)
{
    const FB_T *src = x + i * xl.n;
    if (g->pad == 0) {
        *ld = g->w;
        return src;
    }
    ptrdiff_t wp = g->w + 2 * g->pad, hp = g->h + 2 * g->pad;
    memset(scratch, 0, (size_t)(hp * wp) * sizeof(FB_T));
    for (ptrdiff_t y = 0; y < g->h; y++)
        memcpy(scratch + (y + g->pad) * wp + g->pad, src + y * g->w, (size_t)g->w * sizeof(FB_T));
    *ld = wp;
    return scratch;
}

/* Outputs of nf filters (W rows of taps), nv vectors of row oy from ox0:
   out = b + sum over taps of W * image, ReLU if relu; the last vector masked
   by tail. */
FB_AVX512 static FB_ALWAYS_INLINE void FB_NAME(fb_conv1_forward_block)(
    const FB_T *img, ptrdiff_t ld, const fb_window *g, const FB_T *W, const FB_T *b,
    FB_T *out, ptrdiff_t out_c, FB_M tail, int relu, const int nf, const int nv)
{
    const ptrdiff_t taps = g->fh * g->fw;
    FB_V acc[4][4], xv[4];
    for (int j = 0; j < nf; j++)
        for (int v = 0; v < nv; v++)
            acc[j][v] = FB_VEC(setzero)();
    for (ptrdiff_t ky = 0; ky < g->fh; ky++) {
        for (ptrdiff_t kx = 0; kx < g->fw; kx++) {
            const FB_T *row = img + ky * ld + kx;
            for (int v = 0; v < nv; v++)
                xv[v] = v == nv - 1 ? FB_VEC(maskz_loadu)(tail, row + v * FB_W)
                                    : FB_VEC(loadu)(row + v * FB_W);
            for (int j = 0; j < nf; j++) {
                FB_V w = FB_VEC(set1)(W[j * taps + ky * g->fw + kx]);
                for (int v = 0; v < nv; v++)
                    acc[j][v] = FB_VEC(fmadd)(w, xv[v], acc[j][v]);
            }
        }
    }
    const FB_V zero = FB_VEC(setzero)();
    for (int j = 0; j < nf; j++) {
        FB_V bias = FB_VEC(set1)(b != NULL ? b[j] : (FB_T)0);
        for (int v = 0; v < nv; v++) {
            FB_V r = FB_VEC(add)(acc[j][v], bias);
            if (relu)
                r = FB_VEC(mask_mov)(r, FB_VEC_MASK(cmp)(r, zero, _CMP_LE_OQ), zero);
            FB_VEC(mask_storeu)(out + j * out_c + v * FB_W, v == nv - 1 ? tail : (FB_M)~(FB_M)0,
                                r);
        }
    }
}

/* out (N, F, oh, ow) with layout ol = the convolution of x (N, 1, h, w),
   layout xl, with W (F, fh*fw) at stride 1, + b (NULL: none), ReLU if relu.
   scratch: (h + 2 pad) * (w + 2 pad) elements. */
FB_AVX512 static void FB_NAME(fb_avx512_conv1_forward)(const FB_T *x, fb_layout xl,
                                                       const fb_window *g, const FB_T *W,
                                                       ptrdiff_t f, const FB_T *b, FB_T *out,
                                                       fb_layout ol, int relu, FB_T *scratch)
{
    const ptrdiff_t taps = g->fh * g->fw, span = 4 * FB_W;
    for (ptrdiff_t i = 0; i < g->n; i++) {
        ptrdiff_t ld;
        const FB_T *img = FB_NAME(fb_conv1_image)(x, xl, g, i, scratch, &ld);
        for (ptrdiff_t oy = 0; oy < g->oh; oy++) {
            for (ptrdiff_t ox0 = 0; ox0 < g->ow; ox0 += span) {
                ptrdiff_t left = g->ow - ox0 < span ? g->ow - ox0 : span;
                int nv = (int)((left + FB_W - 1) / FB_W);
                FB_M tail = FB_NAME(fb_lanes512)(left - (nv - 1) * FB_W);
                for (ptrdiff_t f0 = 0; f0 < f; f0 += 4) {
                    int nf = f - f0 < 4 ? (int)(f - f0) : 4;
                    const FB_T *w0 = W + f0 * taps, *b0 = b != NULL ? b + f0 : NULL;
                    const FB_T *src = img + oy * ld + ox0;
                    FB_T *dst = out + i * ol.n + f0 * ol.c + oy * g->ow + ox0;
#define FB_CONV1_CASE(NF, NV)                                                                 \
    case NF * 8 + NV:                                                                         \
        FB_NAME(fb_conv1_forward_block)(src, ld, g, w0, b0, dst, ol.c, tail, relu, NF, NV);  \
        break;
                    switch (nf * 8 + nv) {
                    FB_CONV1_CASE(1, 1) FB_CONV1_CASE(1, 2) FB_CONV1_CASE(1, 3) FB_CONV1_CASE(1, 4)
                    FB_CONV1_CASE(2, 1) FB_CONV1_CASE(2, 2) FB_CONV1_CASE(2, 3) FB_CONV1_CASE(2, 4)
                    FB_CONV1_CASE(3, 1) FB_CONV1_CASE(3, 2) FB_CONV1_CASE(3, 3) FB_CONV1_CASE(3, 4)
                    FB_CONV1_CASE(4, 1) FB_CONV1_CASE(4, 2) FB_CONV1_CASE(4, 3) FB_CONV1_CASE(4, 4)
                    default: break;
                    }
#undef FB_CONV1_CASE
                }
            }
        }
    }
}

/* Partial weight gradients of nf filters x nt taps (from tap t0) over the
   rows of one image: the vector at part + (j * taps + t) * FB_W (lanes
   summed at the end) += sum over oy, ox of dout * image at the tap's offset;
   nv vectors from ox0, the last masked by tail (dout's masked lanes are 0). */
FB_AVX512 static FB_ALWAYS_INLINE void FB_NAME(fb_conv1_grad_block)(
    const FB_T *img, ptrdiff_t ld, const fb_window *g, const FB_T *dout, ptrdiff_t dout_c,
    ptrdiff_t t0, FB_T *part, ptrdiff_t taps, ptrdiff_t ox0, FB_M tail, const int nf,
    const int nt, const int nv)
{
    FB_V acc[2][3][4], dv[2][4];
    ptrdiff_t off[3];
    for (int t = 0; t < nt; t++)
        off[t] = ((t0 + t) / g->fw) * ld + (t0 + t) % g->fw + ox0;
    for (int j = 0; j < nf; j++)
        for (int t = 0; t < nt; t++)
            for (int v = 0; v < nv; v++)
                acc[j][t][v] = FB_VEC(setzero)();
    for (ptrdiff_t oy = 0; oy < g->oh; oy++) {
        for (int j = 0; j < nf; j++)
            for (int v = 0; v < nv; v++)
                dv[j][v] = FB_VEC(maskz_loadu)(v == nv - 1 ? tail : (FB_M)~(FB_M)0,
                                               dout + j * dout_c + oy * g->ow + ox0 + v * FB_W);
        for (int t = 0; t < nt; t++) {
            const FB_T *row = img + oy * ld + off[t];
            for (int v = 0; v < nv; v++) {
                FB_V xv = FB_VEC(maskz_loadu)(v == nv - 1 ? tail : (FB_M)~(FB_M)0,
                                              row + v * FB_W);
                for (int j = 0; j < nf; j++)
                    acc[j][t][v] = FB_VEC(fmadd)(dv[j][v], xv, acc[j][t][v]);
            }
        }
    }
    for (int j = 0; j < nf; j++)
        for (int t = 0; t < nt; t++) {
            FB_T *p = part + (j * taps + t0 + t) * FB_W;
            FB_V sum = FB_VEC(loadu)(p);
            for (int v = 0; v < nv; v++)
                sum = FB_VEC(add)(sum, acc[j][t][v]);
            FB_VEC(storeu)(p, sum);
        }
}

/* dW (F, fh*fw) = the weight gradient of the convolution of x (N, 1, h, w),
   layout xl, at stride 1, given dout (N, F, oh, ow), layout dl.  part: F *
   fh*fw vectors (FB_W elements each) of partial sums; scratch as forward. */
FB_AVX512 static void FB_NAME(fb_avx512_conv1_weight_grad)(const FB_T *x, fb_layout xl,
                                                           const fb_window *g,
                                                           const FB_T *dout, fb_layout dl,
                                                           ptrdiff_t f, FB_T *dW, FB_T *part,
                                                           FB_T *scratch)
{
    const ptrdiff_t taps = g->fh * g->fw, span = 4 * FB_W;
    memset(part, 0, (size_t)(f * taps * FB_W) * sizeof(FB_T));
    for (ptrdiff_t i = 0; i < g->n; i++) {
        ptrdiff_t ld;
        const FB_T *img = FB_NAME(fb_conv1_image)(x, xl, g, i, scratch, &ld);
        for (ptrdiff_t ox0 = 0; ox0 < g->ow; ox0 += span) {
            ptrdiff_t left = g->ow - ox0 < span ? g->ow - ox0 : span;
            int nv = (int)((left + FB_W - 1) / FB_W);
            FB_M tail = FB_NAME(fb_lanes512)(left - (nv - 1) * FB_W);
            int tile = nv == 4 ? 2 : 3;                 /* taps a block: registers */
            for (ptrdiff_t f0 = 0; f0 < f; f0 += 2) {
                int nf = f - f0 < 2 ? 1 : 2;
                const FB_T *d0 = dout + i * dl.n + f0 * dl.c;
                FB_T *p0 = part + f0 * taps * FB_W;
                for (ptrdiff_t t0 = 0; t0 < taps; t0 += tile) {
                    int nt = taps - t0 < tile ? (int)(taps - t0) : tile;
#define FB_CONV1_GRAD_CASE(NF, NT, NV)                                                      \
    case (NF * 4 + NT) * 8 + NV:                                                            \
        FB_NAME(fb_conv1_grad_block)(img, ld, g, d0, dl.c, t0, p0, taps, ox0, tail, NF, NT,   \
                                     NV);                                                   \
        break;
                    switch ((nf * 4 + nt) * 8 + nv) {
                    FB_CONV1_GRAD_CASE(1, 1, 1) FB_CONV1_GRAD_CASE(1, 1, 2)
                    FB_CONV1_GRAD_CASE(1, 1, 3) FB_CONV1_GRAD_CASE(1, 1, 4)
                    FB_CONV1_GRAD_CASE(1, 2, 1) FB_CONV1_GRAD_CASE(1, 2, 2)
                    FB_CONV1_GRAD_CASE(1, 2, 3) FB_CONV1_GRAD_CASE(1, 2, 4)
                    FB_CONV1_GRAD_CASE(1, 3, 1) FB_CONV1_GRAD_CASE(1, 3, 2)
                    FB_CONV1_GRAD_CASE(1, 3, 3)
                    FB_CONV1_GRAD_CASE(2, 1, 1) FB_CONV1_GRAD_CASE(2, 1, 2)
                    FB_CONV1_GRAD_CASE(2, 1, 3) FB_CONV1_GRAD_CASE(2, 1, 4)
                    FB_CONV1_GRAD_CASE(2, 2, 1) FB_CONV1_GRAD_CASE(2, 2, 2)
                    FB_CONV1_GRAD_CASE(2, 2, 3) FB_CONV1_GRAD_CASE(2, 2, 4)
                    FB_CONV1_GRAD_CASE(2, 3, 1) FB_CONV1_GRAD_CASE(2, 3, 2)
                    FB_CONV1_GRAD_CASE(2, 3, 3)
                    default: break;
                    }
#undef FB_CONV1_GRAD_CASE
                }
            }
        }
    }
    for (ptrdiff_t q = 0; q < f * taps; q++)
        dW[q] = FB_VEC(reduce_add)(FB_VEC(loadu)(part + q * FB_W));
}
#endif /* FB_AVX512_MODE */

/* 1 when the direct loops of one input channel run for this window on this
   CPU (AVX-512, stride 1, at most 25 taps); then fb_conv1_forward and
   fb_conv1_weight_grad may be called instead of the GEMM engine. */
static inline int FB_NAME(fb_conv1_direct)(const fb_window *g)
{
#if FB_AVX512_MODE
    return fb_use_avx512() && g->c == 1 && g->stride == 1 && g->fh * g->fw <= 25;
#else
    (void)g;
    return 0;
#endif
}

static inline void FB_NAME(fb_conv1_forward)(const FB_T *x, fb_layout xl, const fb_window *g,
                                             const FB_T *W, ptrdiff_t f, const FB_T *b,
                                             FB_T *out, fb_layout ol, int relu, FB_T *scratch)
{
#if FB_AVX512_MODE
    FB_NAME(fb_avx512_conv1_forward)(x, xl, g, W, f, b, out, ol, relu, scratch);
#else
    (void)x; (void)xl; (void)g; (void)W; (void)f; (void)b; (void)out; (void)ol; (void)relu;
    (void)scratch;
#endif
}

/* part: 16 * f*fh*fw elements of scratch (a vector of partial sums a weight). */
static inline void FB_NAME(fb_conv1_weight_grad)(const FB_T *x, fb_layout xl,
                                                 const fb_window *g, const FB_T *dout,
                                                 fb_layout dl, ptrdiff_t f, FB_T *dW,
                                                 FB_T *part, FB_T *scratch)
{
#if FB_AVX512_MODE
    FB_NAME(fb_avx512_conv1_weight_grad)(x, xl, g, dout, dl, f, dW, part, scratch);
#else
    (void)x; (void)xl; (void)g; (void)dout; (void)dl; (void)f; (void)dW; (void)part;
    (void)scratch;
#endif
}
