# Typed access to the C loops of src/fb_loops.h, for every Cython module.
#
# One `cdef inline ... noexcept nogil` wrapper per C entry point, over the
# fused float/double type: the choice between a kernel's fb_<kernel>_f and
# fb_<kernel>_d is written here, once per C function (the pattern of
# scikit-learn's _cython_blas._gemm).  Use:
#
#     from . cimport _loops
#     _loops.relu_forward(&x[0], &out[0], &mask[0], n)
#
# Pointers to flat, contiguous arrays; outputs allocated by the caller; n >= 0.
# The C side documents each loop where its entry point is defined
# (src/fb_dispatch.h).
from cython cimport floating
from libc.stdint cimport int64_t, uint8_t, uint32_t

cdef extern from "fb_loops.h" nogil:
    const char *fb_simd_level()
    const char *fb_compiler()


cdef extern from "fb_loops.h" nogil:
    void fb_relu_forward_f(const float *x, float *out, uint8_t *mask, Py_ssize_t n)
    void fb_relu_forward_d(const double *x, double *out, uint8_t *mask, Py_ssize_t n)

cdef inline void relu_forward(const floating *x, floating *out, uint8_t *mask,
                              Py_ssize_t n) noexcept nogil:
    """out = where(x <= 0, 0, x); mask = (x <= 0)."""
    if floating is float:
        fb_relu_forward_f(x, out, mask, n)
    else:
        fb_relu_forward_d(x, out, mask, n)


cdef extern from "fb_loops.h" nogil:
    void fb_relu_backward_f(const float *dout, const uint8_t *mask, float *dx, Py_ssize_t n)
    void fb_relu_backward_d(const double *dout, const uint8_t *mask, double *dx, Py_ssize_t n)

cdef inline void relu_backward(const floating *dout, const uint8_t *mask, floating *dx,
                               Py_ssize_t n) noexcept nogil:
    """dx = where(mask, 0, dout)."""
    if floating is float:
        fb_relu_backward_f(dout, mask, dx, n)
    else:
        fb_relu_backward_d(dout, mask, dx, n)


cdef extern from "fb_loops.h" nogil:
    void fb_relu_grad_f(const float *x, float *out, Py_ssize_t n)
    void fb_relu_grad_d(const double *x, double *out, Py_ssize_t n)

cdef inline void relu_grad(const floating *x, floating *out, Py_ssize_t n) noexcept nogil:
    """out = (x > 0) as 1 or 0."""
    if floating is float:
        fb_relu_grad_f(x, out, n)
    else:
        fb_relu_grad_d(x, out, n)


cdef extern from "fb_loops.h" nogil:
    void fb_sigmoid_forward_f(const float *x, float *out, Py_ssize_t n)
    void fb_sigmoid_forward_d(const double *x, double *out, Py_ssize_t n)

cdef inline void sigmoid_forward(const floating *x, floating *out, Py_ssize_t n) noexcept nogil:
    """out = 1 / (1 + exp(-x)), overflow-free."""
    if floating is float:
        fb_sigmoid_forward_f(x, out, n)
    else:
        fb_sigmoid_forward_d(x, out, n)


cdef extern from "fb_loops.h" nogil:
    void fb_sigmoid_backward_f(const float *dout, const float *out, float *dx, Py_ssize_t n)
    void fb_sigmoid_backward_d(const double *dout, const double *out, double *dx, Py_ssize_t n)

cdef inline void sigmoid_backward(const floating *dout, const floating *out, floating *dx,
                                  Py_ssize_t n) noexcept nogil:
    """dx = dout * (1 - out) * out."""
    if floating is float:
        fb_sigmoid_backward_f(dout, out, dx, n)
    else:
        fb_sigmoid_backward_d(dout, out, dx, n)


cdef extern from "fb_loops.h" nogil:
    void fb_sigmoid_grad_f(const float *x, float *out, Py_ssize_t n)
    void fb_sigmoid_grad_d(const double *x, double *out, Py_ssize_t n)

cdef inline void sigmoid_grad(const floating *x, floating *out, Py_ssize_t n) noexcept nogil:
    """out = (1 - s) * s with s = sigmoid(x)."""
    if floating is float:
        fb_sigmoid_grad_f(x, out, n)
    else:
        fb_sigmoid_grad_d(x, out, n)


cdef extern from "fb_loops.h" nogil:
    double fb_softmax_xent_labels_f(const float *x, const int64_t *labels, float *y,
                                    float *loss, Py_ssize_t n, Py_ssize_t c)
    double fb_softmax_xent_labels_d(const double *x, const int64_t *labels, double *y,
                                    double *loss, Py_ssize_t n, Py_ssize_t c)

cdef inline double softmax_xent_labels(const floating *x, const int64_t *labels, floating *y,
                                       floating *loss, Py_ssize_t n,
                                       Py_ssize_t c) noexcept nogil:
    """Softmax of the rows of x (n, c) into y, their cross-entropy against
    labels (n,) in [0, c) into loss (n,); returns the summed loss."""
    if floating is float:
        return fb_softmax_xent_labels_f(x, labels, y, loss, n, c)
    else:
        return fb_softmax_xent_labels_d(x, labels, y, loss, n, c)


cdef extern from "fb_loops.h" nogil:
    double fb_softmax_xent_onehot_f(const float *x, const float *t, float *y,
                                    float *loss, Py_ssize_t n, Py_ssize_t c)
    double fb_softmax_xent_onehot_d(const double *x, const double *t, double *y,
                                    double *loss, Py_ssize_t n, Py_ssize_t c)

cdef inline double softmax_xent_onehot(const floating *x, const floating *t, floating *y,
                                       floating *loss, Py_ssize_t n,
                                       Py_ssize_t c) noexcept nogil:
    """As softmax_xent_labels with target weights t (n, c), one-hot or soft."""
    if floating is float:
        return fb_softmax_xent_onehot_f(x, t, y, loss, n, c)
    else:
        return fb_softmax_xent_onehot_d(x, t, y, loss, n, c)


cdef extern from "fb_loops.h" nogil:
    void fb_softmax_xent_backward_labels_f(const float *y, const int64_t *labels, float *dx,
                                           float scale, Py_ssize_t n, Py_ssize_t c)
    void fb_softmax_xent_backward_labels_d(const double *y, const int64_t *labels, double *dx,
                                           double scale, Py_ssize_t n, Py_ssize_t c)

cdef inline void softmax_xent_backward_labels(const floating *y, const int64_t *labels,
                                              floating *dx, floating scale, Py_ssize_t n,
                                              Py_ssize_t c) noexcept nogil:
    """dx (n, c) = (y - onehot(labels)) * scale."""
    if floating is float:
        fb_softmax_xent_backward_labels_f(y, labels, dx, scale, n, c)
    else:
        fb_softmax_xent_backward_labels_d(y, labels, dx, scale, n, c)


cdef extern from "fb_loops.h" nogil:
    void fb_softmax_xent_backward_onehot_f(const float *y, const float *t, float *dx,
                                           float scale, Py_ssize_t n)
    void fb_softmax_xent_backward_onehot_d(const double *y, const double *t, double *dx,
                                           double scale, Py_ssize_t n)

cdef inline void softmax_xent_backward_onehot(const floating *y, const floating *t,
                                              floating *dx, floating scale,
                                              Py_ssize_t n) noexcept nogil:
    """dx = (y - t) * scale over n elements."""
    if floating is float:
        fb_softmax_xent_backward_onehot_f(y, t, dx, scale, n)
    else:
        fb_softmax_xent_backward_onehot_d(y, t, dx, scale, n)


# ---- batch normalisation (src/fb_batchnorm.h) -------------------------------
cdef extern from "fb_loops.h" nogil:
    void fb_bn_forward_train_f(const float *x, const float *gamma, const float *beta,
                               const float *mean_in, const float *var_in, float keep,
                               float take, float *xc, float *xn, float *out, float *std,
                               float *mean_out, float *var_out, Py_ssize_t n, Py_ssize_t d)
    void fb_bn_forward_train_d(const double *x, const double *gamma, const double *beta,
                               const double *mean_in, const double *var_in, double keep,
                               double take, double *xc, double *xn, double *out, double *std,
                               double *mean_out, double *var_out, Py_ssize_t n, Py_ssize_t d)

cdef inline void bn_forward_train(const floating *x, const floating *gamma,
                                  const floating *beta, const floating *mean_in,
                                  const floating *var_in, floating keep, floating take,
                                  floating *xc, floating *xn, floating *out, floating *std,
                                  floating *mean_out, floating *var_out, Py_ssize_t n,
                                  Py_ssize_t d) noexcept nogil:
    """Training-mode batch norm of x (n, d), n, d >= 1: xc = x - mean,
    xn = xc / std, out = gamma * xn + beta (n, d); std = sqrt(var + 1e-6),
    mean_out = keep * mean_in + take * mean, likewise var_out (d,)."""
    if floating is float:
        fb_bn_forward_train_f(x, gamma, beta, mean_in, var_in, keep, take, xc, xn, out, std,
                              mean_out, var_out, n, d)
    else:
        fb_bn_forward_train_d(x, gamma, beta, mean_in, var_in, keep, take, xc, xn, out, std,
                              mean_out, var_out, n, d)


cdef extern from "fb_loops.h" nogil:
    void fb_bn_forward_test_f(const float *x, const float *gamma, const float *beta,
                              const float *mean, const float *var, float *out,
                              Py_ssize_t n, Py_ssize_t d)
    void fb_bn_forward_test_d(const double *x, const double *gamma, const double *beta,
                              const double *mean, const double *var, double *out,
                              Py_ssize_t n, Py_ssize_t d)

cdef inline void bn_forward_test(const floating *x, const floating *gamma,
                                 const floating *beta, const floating *mean,
                                 const floating *var, floating *out, Py_ssize_t n,
                                 Py_ssize_t d) noexcept nogil:
    """Test-mode batch norm: out = gamma * (x - mean) / sqrt(var + 1e-6) + beta."""
    if floating is float:
        fb_bn_forward_test_f(x, gamma, beta, mean, var, out, n, d)
    else:
        fb_bn_forward_test_d(x, gamma, beta, mean, var, out, n, d)


cdef extern from "fb_loops.h" nogil:
    void fb_bn_backward_f(const float *dout, const float *xn, const float *xc,
                          const float *std, const float *gamma, float *dx, float *dgamma,
                          float *dbeta, float *dx_sums, Py_ssize_t n, Py_ssize_t d)
    void fb_bn_backward_d(const double *dout, const double *xn, const double *xc,
                          const double *std, const double *gamma, double *dx,
                          double *dgamma, double *dbeta, double *dx_sums, Py_ssize_t n,
                          Py_ssize_t d)

cdef inline void bn_backward(const floating *dout, const floating *xn, const floating *xc,
                             const floating *std, const floating *gamma, floating *dx,
                             floating *dgamma, floating *dbeta, floating *dx_sums,
                             Py_ssize_t n, Py_ssize_t d) noexcept nogil:
    """Batch-norm backward, n, d >= 1: dx (n, d), dgamma = sum(xn * dout),
    dbeta = sum(dout) (d,); unless dx_sums is NULL, dx_sums (d,) = dx's
    column sums, rows added in order from 0."""
    if floating is float:
        fb_bn_backward_f(dout, xn, xc, std, gamma, dx, dgamma, dbeta, dx_sums, n, d)
    else:
        fb_bn_backward_d(dout, xn, xc, std, gamma, dx, dgamma, dbeta, dx_sums, n, d)


# ---- dropout (src/fb_dropout.h) ------------------------------------------------
cdef extern from "fb_loops.h" nogil:
    ctypedef double (*fb_next_double_fn)(void *state) noexcept nogil
    ctypedef uint32_t (*fb_next_uint32_fn)(void *state) noexcept nogil
    ctypedef struct fb_dropout_stream:
        fb_next_double_fn next_double
        fb_next_uint32_fn next_uint32
        void *state
        double ratio
        uint32_t threshold
        int book
        uint32_t *mt_key
        int *mt_pos
    void fb_dropout_keep(const fb_dropout_stream *stream, uint8_t *keep, Py_ssize_t n)
    void fb_dropout_apply_f(const float *x, const uint8_t *keep, float *out, Py_ssize_t n)
    void fb_dropout_apply_d(const double *x, const uint8_t *keep, double *out, Py_ssize_t n)
    void fb_dropout_forward_f(const fb_dropout_stream *stream, const float *x, uint8_t *keep,
                              float *out, Py_ssize_t n)
    void fb_dropout_forward_d(const fb_dropout_stream *stream, const double *x,
                              uint8_t *keep, double *out, Py_ssize_t n)

cdef inline void dropout_apply(const floating *x, const uint8_t *keep, floating *out,
                               Py_ssize_t n) noexcept nogil:
    """out = x * keep (a nonzero byte of keep counts as 1)."""
    if floating is float:
        fb_dropout_apply_f(x, keep, out, n)
    else:
        fb_dropout_apply_d(x, keep, out, n)

cdef inline void dropout_forward(const fb_dropout_stream *stream, const floating *x,
                                 uint8_t *keep, floating *out, Py_ssize_t n) noexcept nogil:
    """keep drawn from the stream (the caller holds its bit generator's lock),
    out = x * keep."""
    if floating is float:
        fb_dropout_forward_f(stream, x, keep, out, n)
    else:
        fb_dropout_forward_d(stream, x, keep, out, n)


# ---- chapter 7: src/fb_conv.h and src/fb_pool.h ----------------------------
cdef extern from "fb_loops.h" nogil:
    ctypedef struct fb_window:
        Py_ssize_t n, c, h, w       # the input batch
        Py_ssize_t fh, fw           # the window (filter or pooling)
        Py_ssize_t stride, pad
        Py_ssize_t oh, ow           # the positions it takes
    ctypedef struct fb_layout:
        Py_ssize_t n, c             # element strides of the batch and channel axes


cdef extern from "fb_loops.h" nogil:
    void fb_im2col_f(const float *x, const fb_window *g, float *col, float *row_buffer)
    void fb_im2col_d(const double *x, const fb_window *g, double *col, double *row_buffer)

cdef inline void im2col(const floating *x, const fb_window *g, floating *col,
                        floating *row_buffer) noexcept nogil:
    """The book's im2col of x (n, c, h, w) C-contiguous into col
    (n*oh*ow, c*fh*fw); row_buffer holds ow elements."""
    if floating is float:
        fb_im2col_f(x, g, col, row_buffer)
    else:
        fb_im2col_d(x, g, col, row_buffer)


cdef extern from "fb_loops.h" nogil:
    void fb_col2im_f(const float *col, const fb_window *g, float *img)
    void fb_col2im_d(const double *col, const fb_window *g, double *img)

cdef inline void col2im(const floating *col, const fb_window *g, floating *img) noexcept nogil:
    """The book's col2im: img (n, c, h, w) = col's entries added onto their
    positions, in the book's order of additions."""
    if floating is float:
        fb_col2im_f(col, g, img)
    else:
        fb_col2im_d(col, g, img)


cdef extern from "fb_loops.h" nogil:
    void fb_im2col_t_f(const float *x, fb_layout xl, const fb_window *g, Py_ssize_t r0,
                       Py_ssize_t r1, float *colT)
    void fb_im2col_t_d(const double *x, fb_layout xl, const fb_window *g, Py_ssize_t r0,
                       Py_ssize_t r1, double *colT)

cdef inline void im2col_t(const floating *x, fb_layout xl, const fb_window *g, Py_ssize_t r0,
                          Py_ssize_t r1, floating *colT) noexcept nogil:
    """colT (c*fh*fw, (r1 - r0)*ow): the taps of output rows [r0, r1)."""
    if floating is float:
        fb_im2col_t_f(x, xl, g, r0, r1, colT)
    else:
        fb_im2col_t_d(x, xl, g, r0, r1, colT)


cdef extern from "fb_loops.h" nogil:
    Py_ssize_t fb_im2col_rows_scratch(const fb_window *g, Py_ssize_t rows)
    void fb_im2col_rows_f(const float *x, fb_layout xl, const fb_window *g, Py_ssize_t r0,
                          Py_ssize_t r1, float *col, float *scratch)
    void fb_im2col_rows_d(const double *x, fb_layout xl, const fb_window *g, Py_ssize_t r0,
                          Py_ssize_t r1, double *col, double *scratch)
    void fb_transpose_bias_relu_f(const float *outT, Py_ssize_t np, Py_ssize_t nf,
                                  const float *b, int relu, float *out, Py_ssize_t ld)
    void fb_transpose_bias_relu_d(const double *outT, Py_ssize_t np, Py_ssize_t nf,
                                  const double *b, int relu, double *out, Py_ssize_t ld)

cdef inline Py_ssize_t im2col_rows_scratch(const fb_window *g, Py_ssize_t rows) noexcept nogil:
    """Elements of im2col_rows's scratch for blocks of up to rows output rows."""
    return fb_im2col_rows_scratch(g, rows)

cdef inline void im2col_rows(const floating *x, fb_layout xl, const fb_window *g,
                             Py_ssize_t r0, Py_ssize_t r1, floating *col,
                             floating *scratch) noexcept nogil:
    """col ((r1 - r0)*ow, c*fh*fw): the taps of output rows [r0, r1), a row
    per position (the book's layout)."""
    if floating is float:
        fb_im2col_rows_f(x, xl, g, r0, r1, col, scratch)
    else:
        fb_im2col_rows_d(x, xl, g, r0, r1, col, scratch)

cdef inline void transpose_bias_relu(const floating *outT, Py_ssize_t np, Py_ssize_t nf,
                                     const floating *b, bint relu, floating *out,
                                     Py_ssize_t ld) noexcept nogil:
    """out[f*ld + p] = outT[p*nf + f] + b[f] (no bias if b is NULL), ReLU if relu."""
    if floating is float:
        fb_transpose_bias_relu_f(outT, np, nf, b, relu, out, ld)
    else:
        fb_transpose_bias_relu_d(outT, np, nf, b, relu, out, ld)


cdef extern from "fb_loops.h" nogil:
    void fb_col2im_t_add_f(float *colT, const fb_window *g, Py_ssize_t r0, Py_ssize_t r1,
                           float *dx, fb_layout dl)
    void fb_col2im_t_add_d(double *colT, const fb_window *g, Py_ssize_t r0,
                           Py_ssize_t r1, double *dx, fb_layout dl)

cdef inline void col2im_t_add(floating *colT, const fb_window *g, Py_ssize_t r0,
                              Py_ssize_t r1, floating *dx, fb_layout dl) noexcept nogil:
    """dx += the adjoint of im2col_t applied to colT (scratch: its entries that
    came from the padding may be zeroed)."""
    if floating is float:
        fb_col2im_t_add_f(colT, g, r0, r1, dx, dl)
    else:
        fb_col2im_t_add_d(colT, g, r0, r1, dx, dl)


cdef extern from "fb_loops.h" nogil:
    void fb_bias_relu_f(float *out, Py_ssize_t ld, Py_ssize_t rows, Py_ssize_t cols,
                        const float *b, int relu)
    void fb_bias_relu_d(double *out, Py_ssize_t ld, Py_ssize_t rows, Py_ssize_t cols,
                        const double *b, int relu)

cdef inline void bias_relu(floating *out, Py_ssize_t ld, Py_ssize_t rows, Py_ssize_t cols,
                           const floating *b, int relu) noexcept nogil:
    """out (rows, cols; row stride ld) += b[row] (b NULL: none), then ReLU if relu."""
    if floating is float:
        fb_bias_relu_f(out, ld, rows, cols, b, relu)
    else:
        fb_bias_relu_d(out, ld, rows, cols, b, relu)


cdef extern from "fb_loops.h" nogil:
    void fb_zero_images_f(float *x, fb_layout l, Py_ssize_t n0, Py_ssize_t n1, Py_ssize_t c,
                          Py_ssize_t hw)
    void fb_zero_images_d(double *x, fb_layout l, Py_ssize_t n0, Py_ssize_t n1, Py_ssize_t c,
                          Py_ssize_t hw)

cdef inline void zero_images(floating *x, fb_layout l, Py_ssize_t n0, Py_ssize_t n1,
                             Py_ssize_t c, Py_ssize_t hw) noexcept nogil:
    """Zero every plane of images [n0, n1)."""
    if floating is float:
        fb_zero_images_f(x, l, n0, n1, c, hw)
    else:
        fb_zero_images_d(x, l, n0, n1, c, hw)


cdef extern from "fb_loops.h" nogil:
    void fb_relu_mask_images_f(float *dx, fb_layout dl, const float *h, fb_layout hl,
                               Py_ssize_t n0, Py_ssize_t n1, Py_ssize_t c, Py_ssize_t hw)
    void fb_relu_mask_images_d(double *dx, fb_layout dl, const double *h, fb_layout hl,
                               Py_ssize_t n0, Py_ssize_t n1, Py_ssize_t c, Py_ssize_t hw)

cdef inline void relu_mask_images(floating *dx, fb_layout dl, const floating *h, fb_layout hl,
                                  Py_ssize_t n0, Py_ssize_t n1, Py_ssize_t c,
                                  Py_ssize_t hw) noexcept nogil:
    """dx = +0 where h <= 0 (h: a ReLU's output), on images [n0, n1)."""
    if floating is float:
        fb_relu_mask_images_f(dx, dl, h, hl, n0, n1, c, hw)
    else:
        fb_relu_mask_images_d(dx, dl, h, hl, n0, n1, c, hw)


cdef inline void transpose(const floating *a, Py_ssize_t rows, Py_ssize_t cols,
                           floating *out) noexcept nogil:
    """out (cols, rows) = the transpose of a (rows, cols), both C-contiguous."""
    cdef Py_ssize_t i, j
    for i in range(rows):
        for j in range(cols):
            out[j * rows + i] = a[i * cols + j]


cdef extern from "fb_loops.h" nogil:
    void fb_channel_sums_f(const float *dout, fb_layout dl, Py_ssize_t n, Py_ssize_t c,
                           Py_ssize_t hw, float *db, int accumulate)
    void fb_channel_sums_d(const double *dout, fb_layout dl, Py_ssize_t n, Py_ssize_t c,
                           Py_ssize_t hw, double *db, int accumulate)

cdef inline void channel_sums(const floating *dout, fb_layout dl, Py_ssize_t n, Py_ssize_t c,
                              Py_ssize_t hw, floating *db, int accumulate) noexcept nogil:
    """db[ch] (+)= the sum of channel ch's planes over n images."""
    if floating is float:
        fb_channel_sums_f(dout, dl, n, c, hw, db, accumulate)
    else:
        fb_channel_sums_d(dout, dl, n, c, hw, db, accumulate)


cdef extern from "fb_loops.h" nogil:
    int fb_conv1_direct_f(const fb_window *g)
    int fb_conv1_direct_d(const fb_window *g)
    void fb_conv1_forward_f(const float *x, fb_layout xl, const fb_window *g, const float *W,
                            Py_ssize_t f, const float *b, float *out, fb_layout ol, int relu,
                            float *scratch)
    void fb_conv1_forward_d(const double *x, fb_layout xl, const fb_window *g, const double *W,
                            Py_ssize_t f, const double *b, double *out, fb_layout ol, int relu,
                            double *scratch)
    void fb_conv1_weight_grad_f(const float *x, fb_layout xl, const fb_window *g,
                                const float *dout, fb_layout dl, Py_ssize_t f, float *dW,
                                float *part, float *scratch)
    void fb_conv1_weight_grad_d(const double *x, fb_layout xl, const fb_window *g,
                                const double *dout, fb_layout dl, Py_ssize_t f, double *dW,
                                double *part, double *scratch)

cdef inline bint conv1_direct(const floating *type_hint, const fb_window *g) noexcept nogil:
    """True when the direct loops of one input channel run for window g on
    this CPU (type_hint only picks the dtype; it may be NULL)."""
    if floating is float:
        return fb_conv1_direct_f(g)
    else:
        return fb_conv1_direct_d(g)

cdef inline void conv1_forward(const floating *x, fb_layout xl, const fb_window *g,
                               const floating *W, Py_ssize_t f, const floating *b,
                               floating *out, fb_layout ol, int relu,
                               floating *scratch) noexcept nogil:
    """out = x (one channel) convolved with W (f, fh*fw) at stride 1, + b
    (NULL: none), ReLU if relu; scratch: (h + 2 pad) * (w + 2 pad) elements."""
    if floating is float:
        fb_conv1_forward_f(x, xl, g, W, f, b, out, ol, relu, scratch)
    else:
        fb_conv1_forward_d(x, xl, g, W, f, b, out, ol, relu, scratch)

cdef inline void conv1_weight_grad(const floating *x, fb_layout xl, const fb_window *g,
                                   const floating *dout, fb_layout dl, Py_ssize_t f,
                                   floating *dW, floating *part,
                                   floating *scratch) noexcept nogil:
    """dW (f, fh*fw) of the one-channel convolution; part: 16 * f*fh*fw elements."""
    if floating is float:
        fb_conv1_weight_grad_f(x, xl, g, dout, dl, f, dW, part, scratch)
    else:
        fb_conv1_weight_grad_d(x, xl, g, dout, dl, f, dW, part, scratch)


cdef extern from "fb_loops.h" nogil:
    void fb_maxpool_forward_f(const float *x, fb_layout xl, const fb_window *g, float *out,
                              fb_layout ol, uint8_t *arg, int relu)
    void fb_maxpool_forward_d(const double *x, fb_layout xl, const fb_window *g, double *out,
                              fb_layout ol, uint8_t *arg, int relu)

cdef inline void maxpool_forward(const floating *x, fb_layout xl, const fb_window *g,
                                 floating *out, fb_layout ol, uint8_t *arg,
                                 int relu) noexcept nogil:
    """Max pooling of x into out, the chosen positions into arg (layout ol)."""
    if floating is float:
        fb_maxpool_forward_f(x, xl, g, out, ol, arg, relu)
    else:
        fb_maxpool_forward_d(x, xl, g, out, ol, arg, relu)


cdef extern from "fb_loops.h" nogil:
    void fb_maxpool_backward_f(const float *dout, fb_layout ol, const uint8_t *arg,
                               const float *pooled, const fb_window *g, float *dx,
                               fb_layout xl)
    void fb_maxpool_backward_d(const double *dout, fb_layout ol, const uint8_t *arg,
                               const double *pooled, const fb_window *g, double *dx,
                               fb_layout xl)

cdef inline void maxpool_backward(const floating *dout, fb_layout ol, const uint8_t *arg,
                                  const floating *pooled, const fb_window *g, floating *dx,
                                  fb_layout xl) noexcept nogil:
    """dx = each dout scattered to its window's chosen element (pooled: the
    fused ReLU's output, or NULL)."""
    if floating is float:
        fb_maxpool_backward_f(dout, ol, arg, pooled, g, dx, xl)
    else:
        fb_maxpool_backward_d(dout, ol, arg, pooled, g, dx, xl)
