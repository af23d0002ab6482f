"""``fastbp bench``: the book's / the reference code against fastbp, one table.

Every row times one piece of work three ways (four with PyTorch):

  reference  the baseline: the book's code written out below (ReLU, Sigmoid,
             softmax + cross_entropy_error) or ``fastbp.reference`` (Affine,
             the networks' ``gradient`` + the reference ``SGD.update``);
  fastbp     ``fastbp.layers`` / ``fastbp.networks.*.train_step`` with
             ``fastbp.optimizers.SGD``;
  floor      what the work cannot go below: the memory passes (ReLU: three
             ``np.copyto`` of the array) or the GEMMs (Affine: 3, a training
             step: 5) alone, with ``np.dot(..., out=)`` into preallocated arrays;
  torch      (only if ``import torch`` works) the same training step in
             PyTorch CPU: ``nn.Sequential(Linear, ReLU, Linear)``,
             ``F.cross_entropy``, ``torch.optim.SGD``.

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
  book's code next to ``_BookRelu`` if ``fastbp.reference`` differs from
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
# the book's code (common/functions.py, common/layers.py), the baseline
# ---------------------------------------------------------------------------

def _book_softmax(x):
    x = x - np.max(x, axis=-1, keepdims=True)   # overflow guard
    return np.exp(x) / np.sum(np.exp(x), axis=-1, keepdims=True)


def _book_cross_entropy_error(y, t):
    if y.ndim == 1:
        t = t.reshape(1, t.size)
        y = y.reshape(1, y.size)
    if t.size == y.size:
        t = t.argmax(axis=1)
    batch_size = y.shape[0]
    return -np.sum(np.log(y[np.arange(batch_size), t] + 1e-7)) / batch_size


class _BookRelu:
    def __init__(self):
        self.mask = None

    def forward(self, x):
        self.mask = (x <= 0)
        out = x.copy()
        out[self.mask] = 0
        return out

    def backward(self, dout):
        # the book writes dout[self.mask] = 0 in place; a copy keeps dout intact
        # across calls (fastbp.layers.Relu never writes into dout either)
        dx = dout.copy()
        dx[self.mask] = 0
        return dx


class _BookSigmoid:
    def __init__(self):
        self.out = None

    def forward(self, x):
        out = 1 / (1 + np.exp(-x))
        self.out = out
        return out

    def backward(self, dout):
        return dout * (1.0 - self.out) * self.out


class _BookSoftmaxWithLoss:
    def __init__(self):
        self.loss = self.y = self.t = None

    def forward(self, x, t):
        self.t = t
        self.y = _book_softmax(x)
        self.loss = _book_cross_entropy_error(self.y, self.t)
        return self.loss

    def backward(self, dout=1):
        batch_size = self.t.shape[0]
        if self.t.size == self.y.size:
            dx = (self.y - self.t) / batch_size
        else:
            dx = self.y.copy()
            dx[np.arange(batch_size), self.t] -= 1
            dx = dx / batch_size
        return dx


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


def _step_floor(x, W1, W2):
    """The five GEMMs of a two-layer step: 2 forward, 2 weight gradients, 1 dx."""
    n, dtype = x.shape[0], x.dtype
    hidden, out = W1.shape[1], W2.shape[1]
    z1 = np.empty((n, hidden), dtype)
    z2 = np.empty((n, out), dtype)
    dz2 = np.full((n, out), 0.01, dtype)
    dh = np.empty((n, hidden), dtype)
    dW1 = np.empty_like(W1)
    dW2 = np.empty_like(W2)

    def call():
        np.dot(x, W1, out=z1)
        np.dot(z1, W2, out=z2)
        np.dot(z1.T, dz2, out=dW2)
        np.dot(dz2, W2.T, out=dh)
        np.dot(x.T, dh, out=dW1)
    return call


# ---------------------------------------------------------------------------
# PyTorch (optional)
# ---------------------------------------------------------------------------

def _torch_step(torch, sizes, x, t, lr):
    nn, F = torch.nn, torch.nn.functional
    tdtype = torch.float64 if x.dtype == np.float64 else torch.float32
    torch.manual_seed(0)
    modules = []
    for i in range(len(sizes) - 1):
        modules.append(nn.Linear(sizes[i], sizes[i + 1]))
        if i < len(sizes) - 2:
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
    return Columns(reference=_fwd_bwd(_BookRelu(), x, dout),
                   fastbp=_fwd_bwd(layers.Relu(), x, dout),
                   floor=_copy_floor(x, dout))


def _build_sigmoid(dtype, torch, *, elements):
    from . import layers
    rng = _data_rng()
    x = rng.standard_normal(elements).astype(dtype)
    dout = rng.standard_normal(elements).astype(dtype)
    return Columns(reference=_fwd_bwd(_BookSigmoid(), x, dout),
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
    return Columns(reference=_loss_fwd_bwd(_BookSoftmaxWithLoss(), x, t),
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


def _softmax_loss_case(batch, classes):
    return Case(f"softmax_loss fwd+bwd {batch}x{classes}", "book", _build_softmax_loss,
                {"batch": batch, "classes": classes})


def _train_step_case(net, sizes, batch):
    return Case(f"train_step {'-'.join(str(s) for s in sizes)} b{batch}", "reference",
                _build_train_step, {"net": net, "sizes": sizes, "batch": batch},
                floor_legend="train_step = its 5 GEMMs",
                torch_legend="train_step = nn.Sequential(Linear, ReLU, Linear) + "
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
    cols = [("case", 30, "name", "s"), ("dtype", 8, "dtype", "s"),
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
