/*
 * fb_dispatch.h: the entry points, fb_<kernel>_d and fb_<kernel>_f, the only
 * C functions the Cython code calls (declared in fastbp/_loops.pxd).
 *
 * Each picks, per call, the loop version for this CPU and these sizes: the
 * AVX-512 loop (fb_avx512_loops.h) where fb_use_avx512() and it pays, else
 * the portable loop (fb_generic_loops.h) through FB_GENERIC (fb_dtype.h):
 * the target_clones version the loader chose already (GCC), or the version
 * for fb_cpu_level() (Clang).  A kernel with one version forwards to it.
 *
 * A template over FB_T (fb_dtype.h), compiled once per dtype by fb_loops.h.
 * All arrays are flat and C-contiguous, outputs allocated by the caller,
 * n (and c) >= 0; softmax rows have c >= 1 elements.
 */
#ifndef FB_T
#error "fb_dispatch.h is a template: include fb_loops.h"
#endif

/* out = where(x <= 0, +0, x); mask = (x <= 0), as 0/1 bytes.  Streaming
   stores on AVX-512 for outputs of FB_STREAM_MIN_BYTES or more. */
static inline void FB_NAME(fb_relu_forward)(const FB_T *restrict x, FB_T *restrict out,
                                            uint8_t *restrict mask, ptrdiff_t n)
{
#if FB_AVX512_MODE
    if (fb_use_avx512() && FB_NAME(fb_stream_pays)(out, n)) {
        FB_NAME(fb_avx512_relu_forward)(x, out, mask, n);
        return;
    }
#endif
    FB_GENERIC(fb_generic_relu_forward)(x, out, mask, n);
}

/* dx = where(mask, +0, dout).  Streaming stores as fb_relu_forward. */
static inline void FB_NAME(fb_relu_backward)(const FB_T *restrict dout,
                                             const uint8_t *restrict mask,
                                             FB_T *restrict dx, ptrdiff_t n)
{
#if FB_AVX512_MODE
    if (fb_use_avx512() && FB_NAME(fb_stream_pays)(dx, n)) {
        FB_NAME(fb_avx512_relu_backward)(dout, mask, dx, n);
        return;
    }
#endif
    FB_GENERIC(fb_generic_relu_backward)(dout, mask, dx, n);
}

/* out = (x > 0) as 1 or 0. */
static inline void FB_NAME(fb_relu_grad)(const FB_T *restrict x, FB_T *restrict out,
                                         ptrdiff_t n)
{
    FB_GENERIC(fb_generic_relu_grad)(x, out, n);
}

/* out = 1 / (1 + exp(-x)), overflow-free. */
static inline void FB_NAME(fb_sigmoid_forward)(const FB_T *restrict x, FB_T *restrict out,
                                               ptrdiff_t n)
{
#if FB_AVX512_MODE
    if (fb_use_avx512()) {
        FB_NAME(fb_avx512_sigmoid_forward)(x, out, n);
        return;
    }
#endif
    FB_GENERIC(fb_generic_sigmoid_forward)(x, out, n);
}

/* dx = dout * (1 - out) * out. */
static inline void FB_NAME(fb_sigmoid_backward)(const FB_T *restrict dout,
                                                const FB_T *restrict out, FB_T *restrict dx,
                                                ptrdiff_t n)
{
    FB_GENERIC(fb_generic_sigmoid_backward)(dout, out, dx, n);
}

/* out = (1 - s) * s with s = sigmoid(x). */
static inline void FB_NAME(fb_sigmoid_grad)(const FB_T *restrict x, FB_T *restrict out,
                                            ptrdiff_t n)
{
    FB_GENERIC(fb_generic_sigmoid_grad)(x, out, n);
}

/* Softmax of the rows of x (n, c) into y and their cross-entropy against
   labels (n,) in [0, c) into loss (n,); returns the summed loss.  Rows of
   fewer than FB_AVX512_MIN_ROW classes stay on the portable loop, whose flat
   exp over blocks of rows fills whole vectors where a row would fill a
   fraction of one. */
static inline double FB_NAME(fb_softmax_xent_labels)(const FB_T *restrict x,
                                                     const int64_t *restrict labels,
                                                     FB_T *restrict y, FB_T *restrict loss,
                                                     ptrdiff_t n, ptrdiff_t c)
{
#if FB_AVX512_MODE
    if (c >= FB_AVX512_MIN_ROW && fb_use_avx512())
        return FB_NAME(fb_avx512_softmax_xent_labels)(x, labels, y, loss, n, c);
#endif
    return FB_GENERIC(fb_generic_softmax_xent_labels)(x, labels, y, loss, n, c);
}

/* As fb_softmax_xent_labels with target weights t (n, c), one-hot or soft. */
static inline double FB_NAME(fb_softmax_xent_onehot)(const FB_T *restrict x,
                                                     const FB_T *restrict t,
                                                     FB_T *restrict y, FB_T *restrict loss,
                                                     ptrdiff_t n, ptrdiff_t c)
{
#if FB_AVX512_MODE
    if (c >= FB_AVX512_MIN_ROW && fb_use_avx512())
        return FB_NAME(fb_avx512_softmax_xent_onehot)(x, t, y, loss, n, c);
#endif
    return FB_GENERIC(fb_generic_softmax_xent_onehot)(x, t, y, loss, n, c);
}

/* dx (n, c) = (y - onehot(labels)) * scale. */
static inline void FB_NAME(fb_softmax_xent_backward_labels)(const FB_T *restrict y,
                                                            const int64_t *restrict labels,
                                                            FB_T *restrict dx, FB_T scale,
                                                            ptrdiff_t n, ptrdiff_t c)
{
    FB_GENERIC(fb_generic_softmax_xent_backward_labels)(y, labels, dx, scale, n, c);
}

/* dx = (y - t) * scale over n elements. */
static inline void FB_NAME(fb_softmax_xent_backward_onehot)(const FB_T *restrict y,
                                                            const FB_T *restrict t,
                                                            FB_T *restrict dx, FB_T scale,
                                                            ptrdiff_t n)
{
    FB_GENERIC(fb_generic_softmax_xent_backward_onehot)(y, t, dx, scale, n);
}
