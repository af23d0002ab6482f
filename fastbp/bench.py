"""``fastbp bench``: the book's / the reference code against fastbp, one table.

Every row times one piece of work three ways (four with PyTorch):

  reference  the baseline: the book's code in fastbp._bench_book (ReLU, Sigmoid,
             softmax + cross_entropy_error; chapter 6's Dropout,
             BatchNormalization and MultiLayerNetExtend's ``gradient`` + the
             book's SGD update) or ``fastbp.reference`` (Affine, the
             networks' ``gradient`` + the reference ``SGD.update``, Dropout
             with ``rng=``);
  fastbp     ``fastbp.layers`` / ``fastbp.networks.*.train_step`` with
             ``fastbp.optimizers.SGD`` (one row: the book's own
             MultiLayerNetExtend with ``fastbp.layers`` dropped in);
  floor      what the work cannot go below: the memory passes (ReLU: three
             ``np.copyto`` of the array), the GEMMs (Affine: 3, a training
             step: 5 for two layers, 17 for six) alone, with
             ``np.dot(..., out=)`` into preallocated arrays, or the random
             generator alone (Dropout);
  torch      (only if ``import torch`` works) the same work in PyTorch CPU:
             a training step (``nn.Sequential(Linear, ReLU, Linear)``, with
             ``BatchNorm1d`` for the batch-norm net, ``F.cross_entropy``,
             ``torch.optim.SGD``) or ``F.batch_norm`` forward + backward.

Each column is the median over ``repeat`` repeats (7; ``--quick``: 3) of
the time per call, the columns of a row taking turns repeat by repeat (so a
slow spell of a shared machine hits all of them), each repeat running enough
calls to last >= 20 ms
(``--quick``: 2 ms), after one warm-up call; ``ratio`` is reference/fastbp
(> 1: fastbp is faster) and ``fast_over_floor`` is fastbp/floor.

Data are MNIST-like random arrays from ``np.random.default_rng(0)``: images
of 784 pixels in [0, 1], about 19% nonzero, integer labels 0..9.

Use: ``fastbp bench [--dtype float32|float64|both] [--threads N] [--quick]
[--json]``, or ``run(argv)`` / ``collect(...)`` from Python.

Adding a row
------------
A row is one :class:`Case` record in ``CASES``; what it times comes from
its builder.  The record holds the row's ``name`` (its label and its JSON
``name``), its ``baseline`` ("book": the book's code, written out in this
module; "reference": ``fastbp.reference``), the ``build`` function, the
builder's keyword arguments ``params`` (the sizes, the network class...)
and, in ``floor_legend`` and ``torch_legend``, one phrase each for the
legend saying what the floor and the torch columns time (None: the row has
no such column).

``build(dtype, torch, **params)`` is called once per dtype, just before
the row is timed, and returns :class:`Columns`: ``reference``, ``fastbp`` and, if
the record names them, ``floor`` and ``torch`` -- callables that each do the
work once per call, on data made beforehand from ``_data_rng()`` with
outputs preallocated where the work allows.  ``torch`` is the torch module,
or None when PyTorch is not importable (then build no torch column).

* Another size of an existing kind of work: one more record (the
  ``_softmax_loss_case`` / ``_train_step_case`` helpers write the name from
  the sizes, so the two cannot disagree).
* A new kind of work (a layer, a convnet step): write the baseline (the
  book's code next to ``book.Relu`` if ``fastbp.reference`` differs from
  the book), the floor (the GEMMs alone, the copies, the random generator)
  and optionally the PyTorch peer, then ``_build_<kind>(dtype, torch,
  **sizes) -> Columns`` in the "cases" section, then its records.

A row whose columns differ from what its record announces is an error
(``_build_columns``); ``tests/test_bench.py`` builds every record.
"""
import argparse
import json
import math
import statistics
import sys
import timeit
from dataclasses import dataclass, field
from typing import Callable, Mapping, Optional

import numpy as np

from . import _bench_book as book
from ._argtypes import positive_thread_count
from ._runtime import blas_threads_limitable, optional_torch, thread_limits

__all__ = ["CASES", "DESCRIPTION", "Case", "Columns", "add_arguments", "collect",
           "format_table", "iter_rows", "run", "run_args", "table_lines", "thread_limits",
           "time_interleaved", "time_per_call"]

DESCRIPTION = ("Time the book's code / fastbp.reference against fastbp (and the GEMM or "
               "memory floor, and PyTorch CPU when importable): medians of repeated "
               "timings after a warm-up, one table.")

FULL = {"repeat": 7, "min_time": 0.020}
QUICK = {"repeat": 3, "min_time": 0.002}
_LR = 0.01          # training steps repeat on one batch: keep the weights tame


# ---------------------------------------------------------------------------
# the book's code (fastbp._bench_book) and layer-call helpers
# ---------------------------------------------------------------------------

def _fwd_bwd(layer, x, dout):
    def call():
        layer.forward(x)
        layer.backward(dout)
    return call


def _loss_fwd_bwd(layer, x, t):
    def call():
        layer.forward(x, t)
        layer.backward(1)
    return call


# ---------------------------------------------------------------------------
# data and floors
# ---------------------------------------------------------------------------

def _images(rng, n, dtype, pixels=784):
    """MNIST-like batch: (n, pixels) in [0, 1], ~19% nonzero pixels."""
    x = rng.random((n, pixels))
    x[rng.random((n, pixels)) > 0.19] = 0.0
    return x.astype(dtype)


def _labels(rng, n):
    return rng.integers(0, 10, size=n).astype(np.int64)


def _copy_floor(x, dout):
    a, b = np.empty_like(x), np.empty_like(x)

    def call():
        np.copyto(a, x)
        np.copyto(b, dout)
        np.copyto(a, b)
    return call


def _affine_floor(x, W, dout):
    out = np.empty((x.shape[0], W.shape[1]), x.dtype)
    dx = np.empty_like(x)
    dW = np.empty_like(W)

    def call():
        np.dot(x, W, out=out)
        np.dot(dout, W.T, out=dx)
        np.dot(x.T, dout, out=dW)
    return call


def _step_floor(x, *weights):
    """The GEMMs of a training step through weights W1, W2, ...: one forward
    product and one weight gradient per layer, an input gradient per layer
    but the first (a two-layer step: 5 GEMMs)."""
    n, dtype = x.shape[0], x.dtype
    z = [np.empty((n, W.shape[1]), dtype) for W in weights]
    dz = [np.full((n, W.shape[1]), 0.01, dtype) for W in weights]
    dW = [np.empty_like(W) for W in weights]

    def call():
        h = x
        for W, out in zip(weights, z):
            np.dot(h, W, out=out)
            h = out
        for i in range(len(weights) - 1, -1, -1):
            np.dot(x.T if i == 0 else z[i - 1].T, dz[i], out=dW[i])
            if i > 0:
                np.dot(dz[i], weights[i].T, out=dz[i - 1])
    return call


def _batchnorm_floor(x, dout):
    """The arrays batch norm must touch: x read and xc, xn, out written in
    forward, dout (and xn, xc) read and dx written in backward, as four
    np.copyto passes."""
    xc, xn, out, dx = (np.empty_like(x) for _ in range(4))

    def call():
        np.copyto(xc, x)
        np.copyto(xn, x)
        np.copyto(out, x)
        np.copyto(dx, dout)
    return call


# ---------------------------------------------------------------------------
# PyTorch (optional)
# ---------------------------------------------------------------------------

def _torch_dtype(torch, dtype):
    return torch.float64 if dtype == np.float64 else torch.float32


def _torch_step(torch, sizes, x, t, lr, batchnorm=False):
    nn, F = torch.nn, torch.nn.functional
    tdtype = _torch_dtype(torch, x.dtype)
    torch.manual_seed(0)
    modules = []
    for i in range(len(sizes) - 1):
        modules.append(nn.Linear(sizes[i], sizes[i + 1]))
        if i < len(sizes) - 2:
            if batchnorm:
                modules.append(nn.BatchNorm1d(sizes[i + 1], eps=1e-6, momentum=0.1))
            modules.append(nn.ReLU())
    model = nn.Sequential(*modules).to(tdtype)
    opt = torch.optim.SGD(model.parameters(), lr=lr)
    xt = torch.from_numpy(np.ascontiguousarray(x))
    tt = torch.from_numpy(np.ascontiguousarray(t, dtype=np.int64))

    def call():
        opt.zero_grad(set_to_none=True)
        loss = F.cross_entropy(model(xt), tt)
        loss.backward()
        opt.step()
    return call


def _torch_batchnorm(torch, x, dout):
    """F.batch_norm in training mode, forward and backward (autograd)."""
    tdtype = _torch_dtype(torch, x.dtype)
    xt = torch.from_numpy(np.ascontiguousarray(x)).to(tdtype).requires_grad_(True)
    dt = torch.from_numpy(np.ascontiguousarray(dout)).to(tdtype)
    d = x.shape[1]
    gamma = torch.ones(d, dtype=tdtype, requires_grad=True)
    beta = torch.zeros(d, dtype=tdtype, requires_grad=True)
    mean, var = torch.zeros(d, dtype=tdtype), torch.ones(d, dtype=tdtype)

    def call():
        xt.grad = gamma.grad = beta.grad = None
        out = torch.nn.functional.batch_norm(xt, mean, var, gamma, beta, training=True,
                                             momentum=0.1, eps=1e-6)
        out.backward(dt)
    return call


def _conv_gemms(col, W2, dout2d, with_dx=True):
    """The GEMMs of a convolution, book layout: col (N*OH*OW, K) @ W2 (K, F),
    col.T @ dout2d (N*OH*OW, F), dout2d @ W2.T (unless not with_dx), into
    arrays made here; returns the calls."""
    out, dW, dcol = (np.empty((col.shape[0], W2.shape[1]), col.dtype), np.empty_like(W2),
                     np.empty_like(col))
    forward = [lambda: np.dot(col, W2, out=out)]
    backward = [lambda: np.dot(col.T, dout2d, out=dW)]
    if with_dx:
        backward.append(lambda: np.dot(dout2d, W2.T, out=dcol))
    return forward, backward


def _convnet_gemms(net, n, rng):
    """(forward, backward): the GEMM calls of a convnet's step on n images,
    each on arrays of its own shape (random values; no activations between)."""
    dtype = net.dtype
    forward, backward = [], []
    shape = net.input_dim
    convs = [net.conv_param] if hasattr(net, "conv_param") else net.conv_params
    for i, param in enumerate(convs, start=1):
        W = net.params[f"W{i}"]
        k = W[0].size
        h, w = (_conv_out(d, param) for d in shape[1:])
        col = rng.random((n * h * w, k)).astype(dtype)
        dout2d = rng.standard_normal((n * h * w, W.shape[0])).astype(dtype)
        f, b = _conv_gemms(col, W.reshape(W.shape[0], -1).T.copy(), dout2d, with_dx=i > 1)
        forward += f
        backward += b
        shape = (W.shape[0], h, w)
        if len(convs) == 1 or i % 2 == 0:
            shape = (shape[0], h // 2, w // 2)
    for i in range(len(convs) + 1, len(convs) + 3):
        W = net.params[f"W{i}"]
        x = rng.random((n, W.shape[0])).astype(dtype)
        dz = rng.standard_normal((n, W.shape[1])).astype(dtype)
        z, dW, dx = np.empty((n, W.shape[1]), dtype), np.empty_like(W), np.empty_like(x)
        forward.append(lambda x=x, W=W, z=z: np.dot(x, W, out=z))
        backward += [lambda x=x, dz=dz, dW=dW: np.dot(x.T, dz, out=dW),
                     lambda dz=dz, W=W, dx=dx: np.dot(dz, W.T, out=dx)]
    return forward, backward


def _conv_out(size, param):
    return (size + 2 * param["pad"] - param["filter_size"]) // param["stride"] + 1


def _calls(calls):
    def call():
        for c in calls:
            c()
    return call


def _torch_convnet(torch, net):
    """The network of ``net`` (a fastbp convnet) in PyTorch: Conv2d, ReLU,
    MaxPool2d, Linear, Dropout, in net's dtype."""
    nn = torch.nn
    modules, channels = [], net.input_dim[0]
    convs = [net.conv_param] if hasattr(net, "conv_param") else net.conv_params
    for i, param in enumerate(convs, start=1):
        modules += [nn.Conv2d(channels, param["filter_num"], param["filter_size"],
                              stride=param["stride"], padding=param["pad"]), nn.ReLU()]
        channels = param["filter_num"]
        if len(convs) == 1 or i % 2 == 0:
            modules.append(nn.MaxPool2d(2, 2))
    n = len(convs)
    hidden, out = net.params[f"W{n + 1}"].shape, net.params[f"W{n + 2}"].shape
    modules += [nn.Flatten(), nn.Linear(*hidden), nn.ReLU()]
    if n > 1:
        modules.append(nn.Dropout(0.5))
    modules.append(nn.Linear(*out))
    if n > 1:
        modules.append(nn.Dropout(0.5))
    tdtype = torch.float64 if net.dtype == np.float64 else torch.float32
    return nn.Sequential(*modules).to(tdtype)


def _torch_convnet_step(torch, net, x, t, lr):
    torch.manual_seed(0)
    model = _torch_convnet(torch, net)
    opt = torch.optim.SGD(model.parameters(), lr=lr)
    xt = torch.from_numpy(np.ascontiguousarray(x))
    tt = torch.from_numpy(np.ascontiguousarray(t, dtype=np.int64))

    def call():
        opt.zero_grad(set_to_none=True)
        torch.nn.functional.cross_entropy(model(xt), tt).backward()
        opt.step()
    return call


def _torch_convnet_predict(torch, net, x):
    torch.manual_seed(0)
    model = _torch_convnet(torch, net).eval()
    xt = torch.from_numpy(np.ascontiguousarray(x))

    def call():
        with torch.no_grad():
            model(xt)
    return call


def _torch_layer(torch, forward, inputs, dout):
    """forward(*tensors) then backward(dout), every input requiring a gradient."""
    tensors = [torch.from_numpy(np.ascontiguousarray(a)).requires_grad_(True) for a in inputs]
    grad = torch.from_numpy(np.ascontiguousarray(dout))

    def call():
        for a in tensors:
            a.grad = None
        forward(*tensors).backward(grad)
    return call


# ---------------------------------------------------------------------------
# the cases
# ---------------------------------------------------------------------------

@dataclass
class Columns:
    """What one row times: callables doing the work once per call."""

    reference: Callable[[], object]
    fastbp: Callable[[], object]
    floor: Optional[Callable[[], object]] = None
    torch: Optional[Callable[[], object]] = None


@dataclass(frozen=True)
class Case:
    """One row of the table, run once per dtype (see "Adding a row" above)."""

    name: str                   # the row's label and JSON "name"
    baseline: str               # "book" or "reference"
    build: Callable[..., Columns]   # build(dtype, torch, **params) -> Columns
    params: Mapping = field(default_factory=dict)   # sizes, network class...
    floor_legend: Optional[str] = None   # what the floor times; None: no floor column
    torch_legend: Optional[str] = None   # what the torch peer times; None: none


def _data_rng():
    """The generator every builder draws its data from, so rows are reproducible."""
    return np.random.default_rng(0)


def _build_relu(dtype, torch, *, elements):
    from . import layers
    rng = _data_rng()
    x = rng.standard_normal(elements).astype(dtype)
    dout = rng.standard_normal(elements).astype(dtype)
    return Columns(reference=_fwd_bwd(book.Relu(), x, dout),
                   fastbp=_fwd_bwd(layers.Relu(), x, dout),
                   floor=_copy_floor(x, dout))


def _build_sigmoid(dtype, torch, *, elements):
    from . import layers
    rng = _data_rng()
    x = rng.standard_normal(elements).astype(dtype)
    dout = rng.standard_normal(elements).astype(dtype)
    return Columns(reference=_fwd_bwd(book.Sigmoid(), x, dout),
                   fastbp=_fwd_bwd(layers.Sigmoid(), x, dout))


def _build_affine(dtype, torch, *, batch, inputs, outputs):
    from . import layers
    from .reference import layers as ref_layers
    rng = _data_rng()
    x = _images(rng, batch, dtype, inputs)
    W = (0.01 * rng.standard_normal((inputs, outputs))).astype(dtype)
    b = np.zeros(outputs, dtype)
    dout = rng.standard_normal((batch, outputs)).astype(dtype)
    return Columns(reference=_fwd_bwd(ref_layers.Affine(W, b), x, dout),
                   fastbp=_fwd_bwd(layers.Affine(W, b), x, dout),
                   floor=_affine_floor(x, W, dout))


def _build_softmax_loss(dtype, torch, *, batch, classes):
    from . import layers
    rng = _data_rng()
    x = rng.standard_normal((batch, classes)).astype(dtype)
    t = _labels(rng, batch)
    return Columns(reference=_loss_fwd_bwd(book.SoftmaxWithLoss(), x, t),
                   fastbp=_loss_fwd_bwd(layers.SoftmaxWithLoss(), x, t))


def _build_train_step(dtype, torch, *, net, sizes, batch):
    """One SGD step of ``net`` ("TwoLayerNet" or "MultiLayerNet") of layer ``sizes``."""
    from . import networks, optimizers
    from .reference import networks as ref_networks
    from .reference import optimizers as ref_optimizers
    rng = _data_rng()
    x = _images(rng, batch, dtype, sizes[0])
    t = _labels(rng, batch)
    if net == "TwoLayerNet":
        ref_net = ref_networks.TwoLayerNet(*sizes, dtype=dtype, seed=0)
        fast_net = networks.TwoLayerNet(*sizes, dtype=dtype, seed=0)
    else:
        hidden = list(sizes[1:-1])
        ref_net = ref_networks.MultiLayerNet(sizes[0], hidden, sizes[-1], dtype=dtype, seed=0)
        fast_net = networks.MultiLayerNet(sizes[0], hidden, sizes[-1], dtype=dtype, seed=0)
    ref_opt = ref_optimizers.SGD(lr=_LR)
    fast_opt = optimizers.SGD(lr=_LR)

    def reference():
        grads = ref_net.gradient(x, t)
        ref_opt.update(ref_net.params, grads)

    def fast():
        fast_net.train_step(x, t, fast_opt)

    params = fast_net.params
    return Columns(reference=reference, fastbp=fast,
                   floor=_step_floor(x, params["W1"].copy(), params["W2"].copy()),
                   torch=None if torch is None else _torch_step(torch, sizes, x, t, _LR))


def _build_batchnorm(dtype, torch, *, batch, features):
    """BatchNormalization forward (training mode) + backward on (batch, features)."""
    from . import layers
    rng = _data_rng()
    x = (1 + 2 * rng.standard_normal((batch, features))).astype(dtype)
    dout = rng.standard_normal((batch, features)).astype(dtype)
    gamma = (1 + 0.1 * rng.standard_normal(features)).astype(dtype)
    beta = (0.1 * rng.standard_normal(features)).astype(dtype)
    return Columns(
        reference=_fwd_bwd(book.BatchNormalization(gamma.copy(), beta.copy()), x, dout),
        fastbp=_fwd_bwd(layers.BatchNormalization(gamma.copy(), beta.copy()), x, dout),
        floor=_batchnorm_floor(x, dout),
        torch=None if torch is None else _torch_batchnorm(torch, x, dout))


def _build_dropout(dtype, torch, *, batch, features, stream):
    """Dropout(0.5) forward (training mode) + backward on (batch, features).
    stream "book": the book's layer vs fastbp's on np.random.rand's stream,
    the floor np.random.rand alone; "rng": fastbp.reference's Dropout(rng=)
    vs fastbp's, the floor Generator.random(float32) alone."""
    from . import layers
    from .reference import layers as ref_layers
    rng = _data_rng()
    shape = (batch, features)
    x = rng.standard_normal(shape).astype(dtype)
    dout = rng.standard_normal(shape).astype(dtype)
    if stream == "book":
        return Columns(reference=_fwd_bwd(book.Dropout(0.5), x, dout),
                       fastbp=_fwd_bwd(layers.Dropout(0.5), x, dout),
                       floor=lambda: np.random.rand(*shape))
    generator = np.random.default_rng(1)
    return Columns(reference=_fwd_bwd(ref_layers.Dropout(0.5, rng=2), x, dout),
                   fastbp=_fwd_bwd(layers.Dropout(0.5, rng=3), x, dout),
                   floor=lambda: generator.random(shape, dtype=np.float32))


def _book_extend_params(rng, sizes, dtype):
    """He-initialised weights W1, b1, ... of the book's MultiLayerNetExtend."""
    params = {}
    for i in range(1, len(sizes)):
        scale = np.sqrt(2.0 / sizes[i - 1])
        params[f"W{i}"] = (scale * rng.standard_normal((sizes[i - 1], sizes[i]))).astype(dtype)
        params[f"b{i}"] = np.zeros(sizes[i], dtype)
    return params


def _book_extend_step(net, x, t):
    def call():
        book.sgd_update(net.params, net.gradient(x, t), _LR)
    return call


def _build_extend_step(dtype, torch, *, sizes, batch, book_layers):
    """One SGD step of the book's MultiLayerNetExtend with batch norm on
    ``sizes``, against fastbp: its own MultiLayerNetExtend.train_step
    (book_layers False), or the book's net with fastbp.layers dropped in
    (book_layers True)."""
    from . import layers, networks, optimizers
    rng = _data_rng()
    x = _images(rng, batch, dtype, sizes[0])
    t = _labels(rng, batch)
    params = _book_extend_params(rng, sizes, dtype)
    books_net = book.MultiLayerNetExtend({k: v.copy() for k, v in params.items()},
                                         use_batchnorm=True)
    if book_layers:
        dropped_in = book.MultiLayerNetExtend({k: v.copy() for k, v in params.items()},
                                              use_batchnorm=True, layers=layers)
        return Columns(reference=_book_extend_step(books_net, x, t),
                       fastbp=_book_extend_step(dropped_in, x, t))
    fast_net = networks.MultiLayerNetExtend(sizes[0], list(sizes[1:-1]), sizes[-1],
                                            use_batchnorm=True, dtype=dtype, seed=0)
    for key, value in params.items():
        np.copyto(fast_net.params[key], value)
    fast_opt = optimizers.SGD(lr=_LR)
    return Columns(reference=_book_extend_step(books_net, x, t),
                   fastbp=lambda: fast_net.train_step(x, t, fast_opt),
                   floor=_step_floor(x, *(params[f"W{i}"].copy()
                                          for i in range(1, len(sizes)))),
                   torch=None if torch is None else _torch_step(torch, sizes, x, t, _LR,
                                                                batchnorm=True))


def _build_im2col(dtype, torch, *, shape, size, pad, adjoint):
    """im2col (or, adjoint, col2im) of a batch of ``shape`` for size x size filters."""
    from . import util
    rng = _data_rng()
    x = rng.random(shape).astype(dtype)
    col = util.im2col(x, size, size, 1, pad)
    copy = np.empty_like(col)
    if adjoint:
        return Columns(reference=lambda: book.col2im(col, shape, size, size, 1, pad),
                       fastbp=lambda: util.col2im(col, shape, size, size, 1, pad),
                       floor=lambda: np.copyto(copy, col))
    return Columns(reference=lambda: book.im2col(x, size, size, 1, pad),
                   fastbp=lambda: util.im2col(x, size, size, 1, pad),
                   floor=lambda: np.copyto(copy, col))


def _build_convolution(dtype, torch, *, shape, filters, size, pad):
    from . import layers, util
    rng = _data_rng()
    x = rng.random(shape).astype(dtype)
    W = (rng.standard_normal((filters, shape[1], size, size))
         * np.sqrt(2.0 / (shape[1] * size * size))).astype(dtype)
    b = np.zeros(filters, dtype)
    out_hw = shape[2] + 2 * pad - size + 1
    dout = rng.standard_normal((shape[0], filters, out_hw, out_hw)).astype(dtype)
    col = util.im2col(x, size, size, 1, pad)
    forward, backward = _conv_gemms(col, W.reshape(filters, -1).T.copy(),
                                    dout.transpose(0, 2, 3, 1).reshape(-1, filters).copy())
    peer = None
    if torch is not None:
        conv2d = torch.nn.functional.conv2d
        peer = _torch_layer(torch, lambda x, W, b: conv2d(x, W, b, padding=pad), (x, W, b),
                            dout)
    return Columns(reference=_fwd_bwd(book.Convolution(W, b, 1, pad), x, dout),
                   fastbp=_fwd_bwd(layers.Convolution(W, b, 1, pad), x, dout),
                   floor=_calls(forward + backward), torch=peer)


def _build_pooling(dtype, torch, *, shape):
    from . import layers
    rng = _data_rng()
    x = rng.standard_normal(shape).astype(dtype)
    dout = rng.standard_normal(shape[:2] + (shape[2] // 2, shape[3] // 2)).astype(dtype)
    dx = np.empty_like(x)
    peer = None
    if torch is not None:
        pool = torch.nn.functional.max_pool2d
        peer = _torch_layer(torch, lambda x: pool(x, 2, 2), (x,), dout)
    return Columns(reference=_fwd_bwd(book.Pooling(2, 2, 2), x, dout),
                   fastbp=_fwd_bwd(layers.Pooling(2, 2, 2), x, dout),
                   floor=lambda: np.copyto(dx, x), torch=peer)


def _build_convnet(dtype, torch, *, net, batch, work):
    """A convnet's SGD step (work "train_step": the book's gradient() + SGD
    update against fastbp's train_step) or its predict."""
    from . import networks, optimizers
    rng = _data_rng()
    fast_net = getattr(networks, net)(dtype=dtype, seed=0)
    book_net = book.ConvNet(fast_net)
    x = _images(rng, batch, dtype).reshape((batch,) + fast_net.input_dim)
    t = _labels(rng, batch)
    forward, backward = _convnet_gemms(fast_net, batch, rng)
    if work == "predict":
        return Columns(reference=lambda: book_net.predict(x), fastbp=lambda: fast_net.predict(x),
                       floor=_calls(forward),
                       torch=None if torch is None else _torch_convnet_predict(torch, fast_net,
                                                                               x))
    book_opt, fast_opt = book.SGD(_LR), optimizers.SGD(lr=_LR)

    def reference():
        book_opt.update(book_net.params, book_net.gradient(x, t))

    return Columns(reference=reference, fastbp=lambda: fast_net.train_step(x, t, fast_opt),
                   floor=_calls(forward + backward),
                   torch=None if torch is None else _torch_convnet_step(torch, fast_net, x, t,
                                                                        _LR))


def _softmax_loss_case(batch, classes):
    return Case(f"softmax_loss fwd+bwd {batch}x{classes}", "book", _build_softmax_loss,
                {"batch": batch, "classes": classes})


def _train_step_case(net, sizes, batch):
    return Case(f"train_step {'-'.join(str(s) for s in sizes)} b{batch}", "reference",
                _build_train_step, {"net": net, "sizes": sizes, "batch": batch},
                floor_legend="train_step = its 5 GEMMs",
                torch_legend="train_step = nn.Sequential(Linear, ReLU, Linear) + "
                             "F.cross_entropy + torch.optim.SGD step")


def _batchnorm_case(batch, features):
    return Case(f"batchnorm fwd+bwd {batch}x{features}", "book", _build_batchnorm,
                {"batch": batch, "features": features},
                floor_legend="batchnorm = 4 np.copyto passes (x to xc, xn, out; dout to dx)",
                torch_legend="batchnorm = F.batch_norm(training=True) + autograd backward")


def _dropout_case(batch, features, stream):
    if stream == "book":
        return Case(f"dropout fwd+bwd {batch}x{features}", "book", _build_dropout,
                    {"batch": batch, "features": features, "stream": stream},
                    floor_legend="dropout = np.random.rand alone")
    return Case(f"dropout rng= fwd+bwd {batch}x{features}", "reference", _build_dropout,
                {"batch": batch, "features": features, "stream": stream},
                floor_legend="dropout rng= = Generator.random(float32) alone")


# the book's ch06 experiments' shape: five hidden layers of 100 (ch06/batch_norm_test.py)
_EXTEND_SIZES = (784, 100, 100, 100, 100, 100, 10)

_CONV_TORCH = "conv = F.conv2d forward + backward (oneDNN)"
_CONVNET_FLOOR = ("convnet train_step = its GEMMs (im2col layout; none for the first "
                  "layer's dx)")
_CONVNET_TORCH = ("convnet train_step = Conv2d/ReLU/MaxPool2d/Linear/Dropout + "
                  "F.cross_entropy + torch.optim.SGD step")

#: every row, in order
CASES = (
    Case("relu fwd+bwd 1e6", "book", _build_relu, {"elements": 10 ** 6},
         floor_legend="relu = 3 np.copyto passes"),
    Case("sigmoid fwd+bwd 1e6", "book", _build_sigmoid, {"elements": 10 ** 6}),
    Case("affine fwd+bwd 100x784x50", "reference", _build_affine,
         {"batch": 100, "inputs": 784, "outputs": 50},
         floor_legend="affine = its 3 GEMMs"),
    _softmax_loss_case(100, 10),
    _softmax_loss_case(256, 1000),
    _train_step_case("TwoLayerNet", (784, 50, 10), 1),        # the book's net
    _train_step_case("TwoLayerNet", (784, 50, 10), 8),
    _train_step_case("TwoLayerNet", (784, 50, 10), 100),
    _train_step_case("MultiLayerNet", (784, 1024, 10), 256),
    # chapter 6
    _batchnorm_case(100, 100),
    _batchnorm_case(100, 17280),       # a convnet's activation, (100, 16, 36, 30) flattened
    _dropout_case(100, 100, "book"),
    _dropout_case(100, 17280, "book"),
    _dropout_case(100, 100, "rng"),
    Case("train_step bn 784-100x5-10 b100", "book", _build_extend_step,
         {"sizes": _EXTEND_SIZES, "batch": 100, "book_layers": False},
         floor_legend="train_step bn = its 17 GEMMs",
         torch_legend="train_step bn = the same with BatchNorm1d before each ReLU"),
    Case("book step bn, fastbp layers b100", "book", _build_extend_step,
         {"sizes": _EXTEND_SIZES, "batch": 100, "book_layers": True}),
    # chapters 7-8: the book's im2col/col2im, layers and convnets
    Case("im2col 100x16x28x28 3x3 p1", "book", _build_im2col,
         {"shape": (100, 16, 28, 28), "size": 3, "pad": 1, "adjoint": False},
         floor_legend="im2col, col2im = one np.copyto of col"),
    Case("col2im 100x16x28x28 3x3 p1", "book", _build_im2col,
         {"shape": (100, 16, 28, 28), "size": 3, "pad": 1, "adjoint": True},
         floor_legend="im2col, col2im = one np.copyto of col"),
    Case("conv fwd+bwd 100x1x28x28 30x5x5", "book", _build_convolution,
         {"shape": (100, 1, 28, 28), "filters": 30, "size": 5, "pad": 0},
         floor_legend="conv = its 3 GEMMs on im2col's col", torch_legend=_CONV_TORCH),
    Case("conv fwd+bwd 100x16x28x28 16x3x3", "book", _build_convolution,
         {"shape": (100, 16, 28, 28), "filters": 16, "size": 3, "pad": 1},
         floor_legend="conv = its 3 GEMMs on im2col's col", torch_legend=_CONV_TORCH),
    Case("pool fwd+bwd 100x30x24x24 2x2", "book", _build_pooling,
         {"shape": (100, 30, 24, 24)}, floor_legend="pool = one np.copyto of x",
         torch_legend="pool = F.max_pool2d forward + backward"),
    Case("train_step SimpleConvNet b100", "book", _build_convnet,
         {"net": "SimpleConvNet", "batch": 100, "work": "train_step"},
         floor_legend=_CONVNET_FLOOR, torch_legend=_CONVNET_TORCH),
    Case("train_step DeepConvNet b100", "book", _build_convnet,
         {"net": "DeepConvNet", "batch": 100, "work": "train_step"},
         floor_legend=_CONVNET_FLOOR, torch_legend=_CONVNET_TORCH),
    Case("predict DeepConvNet b100", "book", _build_convnet,
         {"net": "DeepConvNet", "batch": 100, "work": "predict"},
         floor_legend="predict = its forward GEMMs",
         torch_legend="predict = the same layers, eval mode, no_grad"),
)


def _build_columns(case, dtype, torch):
    """``case.build(dtype, torch, **case.params)``, checked against what ``case`` announces."""
    columns = case.build(np.dtype(dtype), torch, **case.params)
    if (columns.floor is None) != (case.floor_legend is None):
        raise ValueError(f"bench case {case.name!r}: floor column "
                         f"{'missing' if columns.floor is None else 'not announced'}")
    if (columns.torch is None) != (case.torch_legend is None or torch is None):
        raise ValueError(f"bench case {case.name!r}: torch column "
                         f"{'missing' if columns.torch is None else 'not expected'}")
    return columns


# ---------------------------------------------------------------------------
# timing
# ---------------------------------------------------------------------------

def _calibrated(fn, min_time):
    """(timer, number): ``number`` calls of ``fn`` last >= ``min_time`` seconds."""
    timer = timeit.Timer(fn)
    fn()                                    # warm-up: allocations, BLAS threads, caches
    number = 1
    elapsed = timer.timeit(number)
    while elapsed < min_time and number < 10 ** 7:
        grow = min_time * 1.2 / max(elapsed, 1e-9)
        number = min(max(number + 1, math.ceil(number * grow)), 10 ** 7)
        elapsed = timer.timeit(number)
    return timer, number


def time_per_call(fn, repeat=FULL["repeat"], min_time=FULL["min_time"]):
    """Median seconds per call of ``fn()`` and the calls per repeat.

    One warm-up call, then the number of calls per repeat is grown until one
    repeat lasts >= ``min_time`` seconds; ``repeat`` repeats of that many
    calls are timed with ``timeit`` (garbage collection off while timing).
    """
    timer, number = _calibrated(fn, min_time)
    times = timer.repeat(repeat=repeat, number=number)
    return statistics.median(times) / number, number


def time_interleaved(fns, repeat=FULL["repeat"], min_time=FULL["min_time"]):
    """Median seconds per call of each function in ``fns`` (name -> callable).

    Like ``time_per_call``, but the repeats take turns (a repeat of each
    function, then the next round), so a slow spell of a shared machine hits
    every column alike and the ratios between columns stay meaningful.
    """
    calibrated = {name: _calibrated(fn, min_time) for name, fn in fns.items()}
    times = {name: [] for name in fns}
    for _ in range(repeat):
        for name, (timer, number) in calibrated.items():
            times[name].append(timer.timeit(number) / number)
    return {name: statistics.median(t) for name, t in times.items()}


def _ratio(a, b):
    return a / b if a is not None and b is not None and b > 0 else None


def _select(cases):
    """The records of CASES named in ``cases`` (None: all of them), in table order."""
    return [c for c in CASES if cases is None or c.name in cases]


def iter_rows(dtypes=("float32", "float64"), threads=1, quick=False, cases=None):
    """Time every case (all, or those named in ``cases``) for every dtype; yield row dicts.

    Rows come as they are timed, inside ``thread_limits(threads)``; see
    ``collect`` for the keys.
    """
    setup = QUICK if quick else FULL
    torch = optional_torch()
    selected = _select(cases)
    with thread_limits(threads, torch):
        for dtype in dtypes:
            for case in selected:
                # Timing, not checking: NumPy's products in the book's code and
                # the floors leave spurious floating-point flags on some BLAS
                # kernels (OpenBLAS on aarch64, numpy#28967), which NumPy turns
                # into RuntimeWarnings; the row's own numbers are unaffected.
                with np.errstate(all="ignore"):
                    fns = vars(_build_columns(case, dtype, torch))
                    present = {c: fn for c, fn in fns.items() if fn is not None}
                    seconds = time_interleaved(present, setup["repeat"], setup["min_time"])
                us = {c: seconds[c] * 1e6 if c in seconds else None for c in fns}
                yield {
                    "name": case.name, "dtype": np.dtype(dtype).name, "threads": threads,
                    "baseline": case.baseline,
                    "reference_us": us["reference"], "fastbp_us": us["fastbp"],
                    "ratio": _ratio(us["reference"], us["fastbp"]),
                    "floor_us": us["floor"],
                    "fast_over_floor": _ratio(us["fastbp"], us["floor"]),
                    "torch_us": us["torch"],
                    "torch_over_fast": _ratio(us["torch"], us["fastbp"]),
                    "repeat": setup["repeat"], "min_time_ms": setup["min_time"] * 1e3,
                }


def collect(dtypes=("float32", "float64"), threads=1, quick=False, cases=None,
            on_row=None):
    """Time every case for every dtype; return the list of row dicts.

    Row keys: name, dtype, threads, baseline ('book' or 'reference'),
    reference_us, fastbp_us, ratio (reference/fastbp), floor_us and
    fast_over_floor (None where no floor applies), torch_us and
    torch_over_fast (None without torch or outside training steps),
    repeat and min_time_ms (the timing setup).  Times are medians in
    microseconds per call.  ``cases``: names of the rows to run (None: all).
    ``on_row(row)`` is called as each row completes.
    """
    rows = []
    for row in iter_rows(dtypes, threads, quick, cases):
        rows.append(row)
        if on_row is not None:
            on_row(row)
    return rows


# ---------------------------------------------------------------------------
# output
# ---------------------------------------------------------------------------

def _fmt(value, spec):
    return "-" if value is None else format(value, spec)


def _columns(with_torch):
    cols = [("case", 33, "name", "s"), ("dtype", 8, "dtype", "s"),
            ("baseline", 9, "baseline", "s"), ("ref µs", 11, "reference_us", ".1f"),
            ("fastbp µs", 11, "fastbp_us", ".1f"), ("ref/fast", 9, "ratio", ".2f"),
            ("floor µs", 11, "floor_us", ".1f"), ("fast/floor", 10, "fast_over_floor", ".2f")]
    if with_torch:
        cols += [("torch µs", 11, "torch_us", ".1f"), ("torch/fast", 10, "torch_over_fast", ".2f")]
    return cols


def _cells(texts, cols):
    """One table line: the first three columns left-aligned, the numbers right-aligned."""
    cells = [t.ljust(w) if i < 3 else t.rjust(w) for i, (t, (_, w, _, _)) in
             enumerate(zip(texts, cols))]
    return " ".join(cells).rstrip()


def _header(threads, dtypes, quick, limited, with_torch):
    from ._config import config_dict
    info = config_dict()
    setup = QUICK if quick else FULL
    lines = [
        f"fastbp bench: threads {threads}, dtype {' + '.join(dtypes)}, "
        f"median of {setup['repeat']} repeats of >= {setup['min_time'] * 1e3:g} ms"
        f"{' (--quick)' if quick else ''}",
        f"machine: simd {info['simd']}; blas {info['blas']}; openmp {info['openmp']}; "
        f"compiled core {info['compiled core']}; numpy {info['numpy']}",
    ]
    if not limited:
        lines.append("note: threadpoolctl is not installed: BLAS threads are not limited "
                     "(pip install threadpoolctl)")
    if not with_torch:
        lines.append("torch: not importable, no PyTorch column")
    return lines


def _legend(cases, with_torch):
    """What the ratios mean and what each floor / torch column of ``cases`` times."""
    lines = ["ref/fast > 1: fastbp is faster than the baseline (book: the book's code; "
             "reference: fastbp.reference)."]
    floors = list(dict.fromkeys(c.floor_legend for c in cases if c.floor_legend))
    if floors:
        lines.append(f"floor: {'; '.join(floors)}; outputs preallocated "
                     "(np.copyto, np.dot(out=)).")
    peers = list(dict.fromkeys(c.torch_legend for c in cases if c.torch_legend))
    if with_torch and peers:
        lines.append(f"torch: {'; '.join(peers)}; torch/fast > 1: fastbp is faster.")
    return lines


def table_lines(rows, *, cases=CASES, threads=1, dtypes=("float32", "float64"), quick=False,
                limited=True, with_torch=True):
    """The table line by line: header, column titles, one line per row as
    ``rows`` yields it (so a live run prints each row when it is timed), legend.

    cases: the records the rows come from (the legend describes their floor
    and torch columns); limited: whether BLAS threads were limited;
    with_torch: whether the table has the torch columns.
    """
    cols = _columns(with_torch)
    yield from _header(threads, dtypes, quick, limited, with_torch)
    yield _cells([title for title, _, _, _ in cols], cols)
    for row in rows:
        yield _cells([_fmt(row[key], spec) for _, _, key, spec in cols], cols)
    yield from _legend(cases, with_torch)


def format_table(rows, threads=1, dtypes=None, quick=False, limited=True, with_torch=None):
    """The whole table (header, column titles, rows, legend) of collected ``rows``."""
    if dtypes is None:
        dtypes = list(dict.fromkeys(r["dtype"] for r in rows))
    if with_torch is None:
        with_torch = any(r["torch_us"] is not None for r in rows)
    cases = _select({r["name"] for r in rows})
    return "\n".join(table_lines(rows, cases=cases, threads=threads, dtypes=dtypes,
                                 quick=quick, limited=limited, with_torch=with_torch))


# ---------------------------------------------------------------------------
# command line
# ---------------------------------------------------------------------------

def add_arguments(parser):
    """Add the bench options to ``parser`` (used by ``fastbp bench``)."""
    parser.add_argument("--dtype", choices=("float32", "float64", "both"), default="both",
                        help="[both]")
    parser.add_argument("--threads", type=positive_thread_count, default=1,
                        help="BLAS/OpenMP threads (threadpoolctl) and fastbp's kernel "
                             "threads  [1]")
    parser.add_argument("--quick", action="store_true",
                        help="smoke run: 3 repeats of >= 2 ms (numbers are rough)")
    parser.add_argument("--json", action="store_true",
                        help="print the rows as a JSON list instead of the table")
    return parser


def run_args(args, file=None):
    """Run the bench for parsed ``args``; print the table (row by row) or JSON; return 0."""
    out = file or sys.stdout
    dtypes = ("float32", "float64") if args.dtype == "both" else (args.dtype,)
    rows = iter_rows(dtypes, args.threads, args.quick)
    if args.json:
        print(json.dumps(list(rows), indent=1), file=out)
        return 0
    for line in table_lines(rows, threads=args.threads, dtypes=dtypes, quick=args.quick,
                            limited=blas_threads_limitable(),
                            with_torch=optional_torch() is not None):
        print(line, file=out, flush=True)
    return 0


def run(argv=None):
    """``fastbp bench`` as a function: parse ``argv`` and run; returns the exit code."""
    parser = add_arguments(argparse.ArgumentParser(prog="fastbp bench",
                                                   description=DESCRIPTION))
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else 2
    return run_args(args)


if __name__ == "__main__":
    sys.exit(run())
