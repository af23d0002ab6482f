"""Convolution and max-pooling kernels (chapter 7): im2col/col2im in the
book's layout, fastbp's convolution engine and max pooling.

The engine computes a convolution as GEMMs over blocks of output positions:
for output rows [r0, r1) of the batch (r = image * OH + oy) it builds the
transposed im2col block colT (C*FH*FW, J) in a caller-owned buffer sized to
stay in cache, then

    forward    out[:, block] = W (F, K) @ colT,  + b and ReLU in one pass
               (in float32 with few filters, outT = col @ W.T instead, col
               the block's im2col in the book's layout: _rows_first)
    backward   dW.T (K, F)  += colT @ dout[:, block].T
               dcolT        =  W.T @ dout[:, block], added back onto dx

so im2col never materialises for the whole batch: backward rebuilds each
block from x, which costs less than writing and re-reading a batch-sized
col.  Batches are flat arrays with an explicit shape (N, C, H, W) and the
element strides (n, c) of their batch and channel axes (rows of W and planes
of H*W contiguous): NCHW, the layers' layout, is (C*H*W, H*W); the networks'
fused step keeps activations channel-major, CNHW = (H*W, N*H*W), where a
block may span images and every GEMM is one call over it.

Kernels only: fastbp/layers.py, fastbp/util.py and fastbp/_convnet.py check
the arguments and pick dtypes, layouts and buffers.  Each kernel re-checks
that the arrays it is handed hold the extents it will touch (cheap tests)
before any pointer reaches a loop.
"""
from cython cimport floating
from libc.stdint cimport uint8_t
from libc.stdlib cimport malloc, free

from . cimport _loops
from ._loops cimport fb_window, fb_layout
from . cimport _blas
from ._blas cimport gemm_pieces, gemm_rowmajor


include "_gemm_piece_limit.pxi"


# ---------------------------------------------------------------------------
# argument checks (Python level, before the GIL is released)
# ---------------------------------------------------------------------------
cdef fb_window _window(tuple shape, Py_ssize_t fh, Py_ssize_t fw, Py_ssize_t stride,
                       Py_ssize_t pad) except *:
    """The window fh x fw at stride with pad over a batch of ``shape``
    (N, C, H, W), its output size included."""
    cdef fb_window g
    if len(shape) != 4:
        raise ValueError(f"shape: expected (N, C, H, W), got {shape!r}")
    g.n, g.c, g.h, g.w = shape
    g.fh, g.fw, g.stride, g.pad = fh, fw, stride, pad
    if (g.n < 0 or g.c < 1 or g.h < 1 or g.w < 1 or fh < 1 or fw < 1 or stride < 1
            or pad < 0 or fh > g.h + 2 * pad or fw > g.w + 2 * pad):
        raise ValueError(f"window: {fh} x {fw} at stride {stride}, pad {pad} does not fit "
                         f"a batch of shape {shape!r}")
    g.oh = (g.h + 2 * pad - fh) // stride + 1
    g.ow = (g.w + 2 * pad - fw) // stride + 1
    return g


cdef fb_layout _layout(str name, tuple strides, Py_ssize_t size, Py_ssize_t n, Py_ssize_t c,
                       Py_ssize_t hw) except *:
    """The (n, c) element strides of a flat array of ``size`` elements holding
    a batch of n images, c planes of hw each; ValueError unless every
    element they address is inside it."""
    cdef fb_layout l
    if len(strides) != 2:
        raise ValueError(f"{name}: expected (batch, channel) strides, got {strides!r}")
    l.n, l.c = strides
    if l.n < 0 or l.c < 0 or (n > 0 and (n - 1) * l.n + (c - 1) * l.c + hw > size):
        raise ValueError(f"{name}: strides {strides!r} of a batch ({n}, {c}, {hw} "
                         f"elements a plane) reach beyond its {size} elements")
    return l


cdef Py_ssize_t _block_rows(fb_window *g, Py_ssize_t k, Py_ssize_t buffer_size,
                            bint across_images) except -1:
    """Output rows per block: as many as the buffer holds (k * ow elements a
    row), whole images at a time when blocks may span images."""
    cdef Py_ssize_t rows = buffer_size // (k * g.ow)
    if rows < 1:
        raise ValueError(f"col_buffer: expected at least {k * g.ow} elements (one output row "
                         f"of {k} taps x {g.ow}), got {buffer_size}")
    if across_images and rows >= g.oh:
        return rows - rows % g.oh
    return min(rows, g.oh)


cdef bint _direct(const floating *type_hint, fb_window *g, Py_ssize_t scratch_size) noexcept:
    """Whether the direct loops of one input channel compute this window
    (they run on AVX-512, stride 1, at most 25 taps, and need scratch for
    one padded image)."""
    return (_loops.conv1_direct(type_hint, g)
            and scratch_size >= (g.h + 2 * g.pad) * (g.w + 2 * g.pad))


cdef bint _rows_first(const floating *type_hint, Py_ssize_t filters) noexcept:
    """Whether a block's forward GEMM runs with a row of taps per position,
    outT (J, F) = col (J, K) @ W.T, its epilogue transposing outT into out.
    OpenBLAS runs W @ colT far from its peak when F is small: in float32,
    for DeepConvNet's convolutions of 16 and 32 filters, col @ W.T runs
    1.5-1.9x faster, more than the gather into col costs (forward 10.7 ->
    9.4 ms); with 64 filters the gain no longer pays for the gather.  In
    float64 col @ W.T runs slower (63 against 108 GFLOP/s, 16 filters)."""
    return floating is float and filters <= 32


# ---------------------------------------------------------------------------
# im2col / col2im in the book's layout (fastbp.util)
# ---------------------------------------------------------------------------
def im2col(const floating[:, :, :, ::1] x, floating[:, ::1] col, Py_ssize_t filter_h,
           Py_ssize_t filter_w, Py_ssize_t stride, Py_ssize_t pad):
    """The book's im2col: x (N, C, H, W) C-contiguous -> col (N*OH*OW,
    C*FH*FW), rows (n, oy, ox), columns (c, ky, kx), zeros on the padding."""
    cdef fb_window g = _window((x.shape[0], x.shape[1], x.shape[2], x.shape[3]), filter_h,
                               filter_w, stride, pad)
    cdef floating *row_buffer
    if col.shape[0] != g.n * g.oh * g.ow or col.shape[1] != g.c * filter_h * filter_w:
        raise ValueError(f"col: expected shape ({g.n * g.oh * g.ow}, "
                         f"{g.c * filter_h * filter_w}), got {(col.shape[0], col.shape[1])}")
    if g.n == 0:
        return
    row_buffer = <floating *>malloc(g.ow * sizeof(floating))
    if row_buffer == NULL:
        raise MemoryError()
    with nogil:
        _loops.im2col(&x[0, 0, 0, 0], &g, &col[0, 0], row_buffer)
    free(row_buffer)


def col2im(const floating[:, ::1] col, floating[:, :, :, ::1] img, Py_ssize_t filter_h,
           Py_ssize_t filter_w, Py_ssize_t stride, Py_ssize_t pad):
    """The book's col2im: img (N, C, H, W) C-contiguous = col's entries
    added onto the positions im2col read them from, each position from +0
    with its taps in (ky, kx) order (the book's additions, bit for bit)."""
    cdef fb_window g = _window((img.shape[0], img.shape[1], img.shape[2], img.shape[3]),
                               filter_h, filter_w, stride, pad)
    if col.shape[0] != g.n * g.oh * g.ow or col.shape[1] != g.c * filter_h * filter_w:
        raise ValueError(f"col: expected shape ({g.n * g.oh * g.ow}, "
                         f"{g.c * filter_h * filter_w}), got {(col.shape[0], col.shape[1])}")
    if g.n == 0:
        return
    with nogil:
        _loops.col2im(&col[0, 0], &g, &img[0, 0, 0, 0])


# ---------------------------------------------------------------------------
# the convolution engine
# ---------------------------------------------------------------------------
def conv_forward(const floating[::1] x, tuple x_shape, tuple x_strides,
                 const floating[:, ::1] W, Py_ssize_t filter_h, Py_ssize_t filter_w,
                 Py_ssize_t stride, Py_ssize_t pad, const floating[::1] b,
                 floating[::1] out, tuple out_strides, floating[::1] col_buffer,
                 bint relu=False):
    """out = the convolution of x with W, + b (unless b is empty), ReLU if relu.

    x: flat batch of shape x_shape (N, C, H, W) with strides x_strides;
    W: (F, C*FH*FW) C-contiguous; b: (F,) or empty; out: flat batch (N, F,
    OH, OW) with strides out_strides; col_buffer: the block buffer, at least
    C*FH*FW*OW elements (its size sets the block).  Blocks span images when
    out is channel-major (its images adjacent in each channel's row of
    N*OH*OW positions: out_strides[0] == OH*OW, out_strides[1] >= N*OH*OW).
    """
    cdef fb_window g = _window(x_shape, filter_h, filter_w, stride, pad)
    cdef Py_ssize_t F = W.shape[0], K = g.c * filter_h * filter_w, P = g.oh * g.ow
    cdef fb_layout xl = _layout("x", x_strides, x.shape[0], g.n, g.c, g.h * g.w)
    cdef fb_layout ol = _layout("out", out_strides, out.shape[0], g.n, F, P)
    cdef Py_ssize_t rows, r0, r1, i0, J
    cdef const floating *bias = NULL
    cdef floating *block
    cdef floating *scratch = NULL
    cdef floating *out_t = NULL
    cdef bint rows_first
    if W.shape[1] != K or F < 1:
        raise ValueError(f"W: expected shape (F, {K}), got {(W.shape[0], W.shape[1])}")
    if b.shape[0] not in (0, F):
        raise ValueError(f"b: expected {F} or no elements, got {b.shape[0]}")
    if g.n == 0:
        return
    rows = _block_rows(&g, K, col_buffer.shape[0], ol.n == P and ol.c >= g.n * P)
    if b.shape[0] == F:
        bias = &b[0]
    if _direct(&x[0], &g, col_buffer.shape[0]):
        with nogil:
            _loops.conv1_forward(&x[0], xl, &g, &W[0, 0], F, bias, &out[0], ol, relu,
                                 &col_buffer[0])
        return
    rows_first = _rows_first(&x[0], F)
    if rows_first:
        scratch = <floating *>malloc(_loops.im2col_rows_scratch(&g, rows) * sizeof(floating))
        out_t = <floating *>malloc(rows * g.ow * F * sizeof(floating))
        if scratch == NULL or out_t == NULL:
            free(scratch)
            free(out_t)
            raise MemoryError()
    with nogil:
        r0 = 0
        while r0 < g.n * g.oh:
            # a block stays inside one image unless it holds whole images
            r1 = min(r0 + rows, (r0 // g.oh + 1) * g.oh) if rows < g.oh else \
                min(r0 + rows, g.n * g.oh)
            J = (r1 - r0) * g.ow
            i0 = r0 // g.oh
            block = &out[0] + i0 * ol.n + (r0 - i0 * g.oh) * g.ow
            if rows_first:
                _loops.im2col_rows(&x[0], xl, &g, r0, r1, &col_buffer[0], scratch)
                gemm_pieces(False, True, <int>J, <int>F, <int>K, <floating>1,
                            &col_buffer[0], <int>K, &W[0, 0], <int>K, <floating>0, out_t,
                            <int>F)
                _loops.transpose_bias_relu(out_t, J, F, bias, relu, block, ol.c)
            else:
                _loops.im2col_t(&x[0], xl, &g, r0, r1, &col_buffer[0])
                gemm_pieces(False, False, <int>F, <int>J, <int>K, <floating>1, &W[0, 0],
                            <int>K, &col_buffer[0], <int>J, <floating>0, block, <int>ol.c)
                _loops.bias_relu(block, ol.c, F, J, bias, relu)
            r0 = r1
    free(scratch)
    free(out_t)


def conv_backward(const floating[::1] x, tuple x_shape, tuple x_strides,
                  const floating[:, ::1] W, Py_ssize_t filter_h, Py_ssize_t filter_w,
                  Py_ssize_t stride, Py_ssize_t pad, const floating[::1] dout,
                  tuple dout_strides, floating[:, ::1] dW, floating[::1] db,
                  floating[::1] dx, tuple dx_strides, floating[::1] col_buffer,
                  floating[::1] dcol_buffer, const floating[::1] relu_input=None,
                  tuple relu_strides=None):
    """The gradients of a convolution (no bias gradient if db is empty, no dx
    if dx is empty).

    x, W, filter_h ... pad as in conv_forward; dout: flat (N, F, OH, OW)
    with strides dout_strides; dW (F, C*FH*FW) and db (F,) are overwritten;
    dx: flat (N, C, H, W) with strides dx_strides, overwritten, then set to
    +0 where relu_input (a ReLU's output laid out with relu_strides: this
    convolution's input) is <= 0 -- ReLU's backward fused, when given.
    col_buffer and dcol_buffer: block buffers of the same size.
    """
    cdef fb_window g = _window(x_shape, filter_h, filter_w, stride, pad)
    cdef Py_ssize_t F = W.shape[0], K = g.c * filter_h * filter_w, P = g.oh * g.ow
    cdef Py_ssize_t HW = g.h * g.w
    cdef fb_layout xl = _layout("x", x_strides, x.shape[0], g.n, g.c, HW)
    cdef fb_layout dl = _layout("dout", dout_strides, dout.shape[0], g.n, F, P)
    cdef fb_layout dxl, hl
    cdef bint with_dx = dx.shape[0] > 0, masked = relu_input is not None, direct
    cdef Py_ssize_t rows, imgs, n0, n1, r0, r1, i0, J
    cdef floating *part
    cdef floating *dW_t = NULL
    cdef floating beta = 0
    cdef const floating *block
    dxl.n = dxl.c = hl.n = hl.c = 0
    if W.shape[1] != K or F < 1:
        raise ValueError(f"W: expected shape (F, {K}), got {(W.shape[0], W.shape[1])}")
    if dW.shape[0] != F or dW.shape[1] != K:
        raise ValueError(f"dW: expected shape ({F}, {K}), got {(dW.shape[0], dW.shape[1])}")
    if db.shape[0] not in (0, F):
        raise ValueError(f"db: expected {F} or no elements, got {db.shape[0]}")
    if with_dx:
        dxl = _layout("dx", dx_strides, dx.shape[0], g.n, g.c, HW)
        if dcol_buffer.shape[0] < col_buffer.shape[0]:
            raise ValueError(f"dcol_buffer: expected {col_buffer.shape[0]} elements like "
                             f"col_buffer, got {dcol_buffer.shape[0]}")
    if masked:
        if not with_dx:
            raise ValueError("relu_input: the ReLU mask applies to dx, which is not computed")
        hl = _layout("relu_input", relu_strides, relu_input.shape[0], g.n, g.c, HW)
    if g.n == 0:
        dW[:, :] = 0
        if db.shape[0]:
            db[:] = 0
        return
    rows = _block_rows(&g, K, col_buffer.shape[0], dl.n == P and dl.c >= g.n * P)
    imgs = rows // g.oh if rows >= g.oh else 1      # images a group (dx zeroed, masked)
    direct = _direct(&x[0], &g, col_buffer.shape[0])
    if not direct:
        # dW is accumulated transposed, dW.T (K, F) = colT @ dout.T: OpenBLAS
        # runs that product 1.2-1.8x faster than dout @ colT.T (DeepConvNet's
        # convolutions, float32), and the (K, F) transpose costs nothing.
        dW_t = <floating *>malloc(K * F * sizeof(floating))
        if dW_t == NULL:
            raise MemoryError()
    if direct:
        part = <floating *>malloc(16 * F * K * sizeof(floating))
        if part == NULL:
            raise MemoryError()
        with nogil:
            _loops.conv1_weight_grad(&x[0], xl, &g, &dout[0], dl, F, &dW[0, 0], part,
                                     &col_buffer[0])
        free(part)
        if not with_dx and db.shape[0]:
            with nogil:
                _loops.channel_sums(&dout[0], dl, g.n, F, P, &db[0], 0)
        if not with_dx:
            return
    with nogil:
        if db.shape[0]:
            _loops.channel_sums(&dout[0], dl, g.n, F, P, &db[0], 0)
        n0 = 0
        while n0 < g.n:
            n1 = min(n0 + imgs, g.n)
            if with_dx:
                _loops.zero_images(&dx[0], dxl, n0, n1, g.c, HW)
            r0 = n0 * g.oh
            while r0 < n1 * g.oh:
                r1 = min(r0 + rows, n1 * g.oh)
                J = (r1 - r0) * g.ow
                i0 = r0 // g.oh
                block = &dout[0] + i0 * dl.n + (r0 - i0 * g.oh) * g.ow
                # (backward's products go to BLAS whole: in pieces, DeepConvNet's
                # 576-tap dW.T and dcolT ran slower, 5.8 -> 7.1 ms a step)
                if not direct:          # (the direct loops computed dW already)
                    _loops.im2col_t(&x[0], xl, &g, r0, r1, &col_buffer[0])
                    gemm_rowmajor(False, True, <int>K, <int>F, <int>J, <floating>1,
                                  &col_buffer[0], <int>J, block, <int>dl.c, beta, dW_t, <int>F)
                    beta = 1
                if with_dx:
                    gemm_rowmajor(True, False, <int>K, <int>J, <int>F, <floating>1, &W[0, 0],
                                  <int>K, block, <int>dl.c, <floating>0, &dcol_buffer[0],
                                  <int>J)
                    _loops.col2im_t_add(&dcol_buffer[0], &g, r0, r1, &dx[0], dxl)
                r0 = r1
            if masked:
                _loops.relu_mask_images(&dx[0], dxl, &relu_input[0], hl, n0, n1, g.c, HW)
            n0 = n1
        if not direct:
            _loops.transpose(dW_t, K, F, &dW[0, 0])
    if not direct:
        free(dW_t)


# ---------------------------------------------------------------------------
# max pooling
# ---------------------------------------------------------------------------
def maxpool_forward(const floating[::1] x, tuple x_shape, tuple x_strides, Py_ssize_t pool_h,
                    Py_ssize_t pool_w, Py_ssize_t stride, Py_ssize_t pad,
                    floating[::1] out, tuple out_strides, uint8_t[::1] arg,
                    bint relu=False):
    """Max pooling: out (N, C, OH, OW) and arg (the chosen element's position
    ky*pool_w + kx in its window, same layout as out) of x (N, C, H, W);
    ReLU of the result if relu.  pool_h*pool_w <= 256, pad < min(pool_h, pool_w)."""
    cdef fb_window g = _window(x_shape, pool_h, pool_w, stride, pad)
    cdef fb_layout xl = _layout("x", x_strides, x.shape[0], g.n, g.c, g.h * g.w)
    cdef fb_layout ol = _layout("out", out_strides, out.shape[0], g.n, g.c, g.oh * g.ow)
    _layout("arg", out_strides, arg.shape[0], g.n, g.c, g.oh * g.ow)
    if pool_h * pool_w > 256 or pad >= min(pool_h, pool_w):
        raise ValueError(f"pool: expected a window of at most 256 elements and pad < "
                         f"{min(pool_h, pool_w)}, got {pool_h} x {pool_w}, pad {pad}")
    if g.n == 0:
        return
    with nogil:
        _loops.maxpool_forward(&x[0], xl, &g, &out[0], ol, &arg[0], relu)


def maxpool_backward(const floating[::1] dout, tuple out_strides, const uint8_t[::1] arg,
                     tuple x_shape, Py_ssize_t pool_h, Py_ssize_t pool_w, Py_ssize_t stride,
                     Py_ssize_t pad, floating[::1] dx, tuple x_strides,
                     const floating[::1] pooled=None):
    """dx (N, C, H, W) of max pooling: each dout (N, C, OH, OW) added onto
    its window's chosen element (arg from maxpool_forward), in the book's
    order onto +0.  pooled: the output of a forward with relu=True, whose
    windows <= 0 pass nothing (ReLU's backward fused); None without."""
    cdef fb_window g = _window(x_shape, pool_h, pool_w, stride, pad)
    cdef Py_ssize_t OP = g.oh * g.ow
    cdef fb_layout ol = _layout("dout", out_strides, dout.shape[0], g.n, g.c, OP)
    cdef fb_layout xl = _layout("dx", x_strides, dx.shape[0], g.n, g.c, g.h * g.w)
    cdef const floating *pooled_p = NULL
    cdef Py_ssize_t window = pool_h * pool_w, i
    cdef uint8_t largest = 0
    _layout("arg", out_strides, arg.shape[0], g.n, g.c, OP)
    if pooled is not None:
        _layout("pooled", out_strides, pooled.shape[0], g.n, g.c, OP)
    if window > 256 or pad >= min(pool_h, pool_w):
        raise ValueError(f"pool: expected a window of at most 256 elements and pad < "
                         f"{min(pool_h, pool_w)}, got {pool_h} x {pool_w}, pad {pad}")
    if g.n == 0:
        return
    with nogil:                     # every position must lie in its window
        for i in range(arg.shape[0]):
            largest = arg[i] if arg[i] > largest else largest
    if largest >= window:
        raise ValueError(f"arg: expected window positions below {window}, got {largest}")
    if pooled is not None:
        pooled_p = &pooled[0]
    with nogil:
        _loops.maxpool_backward(&dout[0], ol, &arg[0], pooled_p, &g, &dx[0], xl)
