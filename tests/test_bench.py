"""``fastbp bench`` (fastbp/bench.py): structure and consistency, never speed.

Timings on a shared 2-core machine are noise; these tests check that every
row is there, every median is a positive number and the ratios are the
quotients of the medians they claim to be.
"""
import contextlib
import functools
import io
import json
import math
import timeit

import numpy as np
import pytest

import fastbp
import fastbp.networks
from fastbp import _bench_book as bench_book
from fastbp import bench
from fastbp._runtime import optional_torch
from fastbp.__main__ import main
from bookcode import book_modules, requires_book

EXPECTED_NAMES = [
    "relu fwd+bwd 1e6",
    "sigmoid fwd+bwd 1e6",
    "affine fwd+bwd 100x784x50",
    "softmax_loss fwd+bwd 100x10",
    "softmax_loss fwd+bwd 256x1000",
    "train_step 784-50-10 b1",
    "train_step 784-50-10 b8",
    "train_step 784-50-10 b100",
    "train_step 784-1024-10 b256",
    "batchnorm fwd+bwd 100x100",
    "batchnorm fwd+bwd 100x17280",
    "dropout fwd+bwd 100x100",
    "dropout fwd+bwd 100x17280",
    "dropout rng= fwd+bwd 100x100",
    "train_step bn 784-100x5-10 b100",
    "book step bn, fastbp layers b100",
    "im2col 100x16x28x28 3x3 p1",
    "col2im 100x16x28x28 3x3 p1",
    "conv fwd+bwd 100x1x28x28 30x5x5",
    "conv fwd+bwd 100x16x28x28 16x3x3",
    "pool fwd+bwd 100x30x24x24 2x2",
    "train_step SimpleConvNet b100",
    "train_step DeepConvNet b100",
    "predict DeepConvNet b100",
]
CONVNET_ROWS = EXPECTED_NAMES[EXPECTED_NAMES.index("im2col 100x16x28x28 3x3 p1"):]
WITH_FLOOR = {"relu fwd+bwd 1e6", "affine fwd+bwd 100x784x50", "train_step 784-50-10 b1",
              "train_step 784-50-10 b8", "train_step 784-50-10 b100",
              "train_step 784-1024-10 b256", "batchnorm fwd+bwd 100x100",
              "batchnorm fwd+bwd 100x17280", "dropout fwd+bwd 100x100",
              "dropout fwd+bwd 100x17280", "dropout rng= fwd+bwd 100x100",
              "train_step bn 784-100x5-10 b100", *CONVNET_ROWS}
WITH_TORCH = {name for name in EXPECTED_NAMES
              if name.startswith(("train_step", "batchnorm", "predict", "conv", "pool"))}


def torch_available():
    return optional_torch() is not None


@pytest.fixture(scope="module")
def quick_rows():
    """`fastbp bench --quick --json` once for the module (both dtypes)."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = main(["bench", "--quick", "--json"])
    assert code == 0
    return json.loads(out.getvalue())


def test_rows_cover_every_case_and_dtype(quick_rows):
    assert isinstance(quick_rows, list)
    assert [r["name"] for r in quick_rows] == EXPECTED_NAMES * 2
    n = len(EXPECTED_NAMES)
    assert [r["dtype"] for r in quick_rows] == ["float32"] * n + ["float64"] * n
    assert [case.name for case in bench.CASES] == EXPECTED_NAMES
    assert all(r["threads"] == 1 for r in quick_rows)
    assert all(r["repeat"] == 3 and r["min_time_ms"] == 2.0 for r in quick_rows)
    baselines = {r["name"]: r["baseline"] for r in quick_rows}
    assert baselines["relu fwd+bwd 1e6"] == "book"
    assert baselines["affine fwd+bwd 100x784x50"] == "reference"
    assert baselines["train_step 784-50-10 b100"] == "reference"
    assert baselines["batchnorm fwd+bwd 100x100"] == "book"
    assert baselines["dropout rng= fwd+bwd 100x100"] == "reference"
    assert baselines["train_step bn 784-100x5-10 b100"] == "book"


def test_medians_are_positive_and_ratios_consistent(quick_rows):
    for r in quick_rows:
        for key in ("reference_us", "fastbp_us"):
            assert isinstance(r[key], float) and math.isfinite(r[key]) and r[key] > 0, (r, key)
        assert r["ratio"] == pytest.approx(r["reference_us"] / r["fastbp_us"], rel=1e-9)
        if r["name"] in WITH_FLOOR:
            assert r["floor_us"] > 0
            assert r["fast_over_floor"] == pytest.approx(r["fastbp_us"] / r["floor_us"],
                                                         rel=1e-9)
        else:
            assert r["floor_us"] is None and r["fast_over_floor"] is None


def test_torch_column_only_where_announced(quick_rows):
    have_torch = torch_available()
    for r in quick_rows:
        if have_torch and r["name"] in WITH_TORCH:
            assert r["torch_us"] > 0
            assert r["torch_over_fast"] == pytest.approx(r["torch_us"] / r["fastbp_us"],
                                                         rel=1e-9)
        else:
            assert r["torch_us"] is None and r["torch_over_fast"] is None


def test_a_bigger_job_takes_longer(quick_rows):
    # not a speed claim about fastbp: 100x more samples per step cannot be
    # cheaper than one sample, for the reference and for the GEMM floor
    by_name = {r["name"]: r for r in quick_rows if r["dtype"] == "float64"}
    small, big = by_name["train_step 784-50-10 b1"], by_name["train_step 784-1024-10 b256"]
    assert big["reference_us"] > small["reference_us"]
    assert big["floor_us"] > small["floor_us"]


def test_table_output(capsys, monkeypatch):
    # the rows of a few cases (quick_rows runs them all): one of each kind of column
    by_name = {case.name: case for case in bench.CASES}
    names = [EXPECTED_NAMES[0], EXPECTED_NAMES[2], "pool fwd+bwd 100x30x24x24 2x2"]
    monkeypatch.setattr(bench, "CASES", tuple(by_name[name] for name in names))
    code = bench.run(["--quick", "--dtype", "float32"])
    out = capsys.readouterr().out
    assert code == 0
    lines = out.splitlines()
    assert lines[0].startswith("fastbp bench: threads 1, dtype float32, median of 3 repeats")
    assert lines[1].startswith("machine: simd ") and "blas " in lines[1]
    title = next(i for i, line in enumerate(lines) if line.startswith("case"))
    for col in ("ref µs", "fastbp µs", "ref/fast", "floor µs", "fast/floor"):
        assert col in lines[title]
    rows = lines[title + 1:title + 1 + len(names)]
    assert len(rows) == len(names)
    for name, line in zip(names, rows):
        assert line.startswith(name)
        assert " float32 " in line
        numbers = [float(x) for x in line[len(name):].split() if x[0].isdigit()]
        ref, fast, ratio = numbers[:3]
        assert ratio == pytest.approx(ref / fast, rel=0.02, abs=0.01)   # table rounding
    assert "float64" not in out


def test_threads_option_is_applied_and_restored(monkeypatch):
    before = fastbp.get_num_threads()
    seen = []
    real_build = bench._build_columns

    def spy(case, dtype, torch):
        seen.append(fastbp.get_num_threads())
        return real_build(case, dtype, torch)

    monkeypatch.setattr(bench, "_build_columns", spy)
    monkeypatch.setattr(bench, "CASES", bench.CASES[3:4])     # one small case
    rows = bench.collect(("float64",), threads=2, quick=True)
    assert [r["name"] for r in rows] == ["softmax_loss fwd+bwd 100x10"]
    assert rows[0]["threads"] == 2
    if fastbp.COMPILED:     # a serial build (no OpenMP) always runs one thread
        assert seen == [2 if fastbp._backend.elementwise.openmp_enabled() else 1]
    assert fastbp.get_num_threads() == before


def test_time_per_call_measures_the_call(monkeypatch):
    # A fake clock that each call advances by exactly 1 ms: the calibration and
    # the median are deterministic whatever the machine's speed or load.
    clock = [0.0]
    calls = []

    def work():
        calls.append(1)
        clock[0] += 0.001

    real_timer = timeit.Timer
    monkeypatch.setattr(timeit, "Timer", functools.partial(real_timer, timer=lambda: clock[0]))
    median, number = bench.time_per_call(work, repeat=3, min_time=0.004)
    assert median == pytest.approx(0.001)
    assert number >= 4                          # a repeat lasts >= min_time: four 1 ms calls
    assert len(calls) >= 1 + 3 * number         # warm-up + 3 repeats (+ calibration)


def test_book_baselines_compute_the_books_results():
    """The inline book code is the book's: check it against fastbp.reference."""
    from fastbp.reference import layers as ref

    rng = np.random.default_rng(1)
    x = rng.standard_normal((6, 10))
    dout = rng.standard_normal((6, 10))
    t = rng.integers(0, 10, 6)
    for book, mine in ((bench_book.Relu(), ref.Relu()), (bench_book.Sigmoid(), ref.Sigmoid())):
        np.testing.assert_allclose(book.forward(x), mine.forward(x), rtol=1e-12)
        np.testing.assert_allclose(book.backward(dout), mine.backward(dout), rtol=1e-12)
    book, mine = bench_book.SoftmaxWithLoss(), ref.SoftmaxWithLoss()
    # the book adds 1e-7 inside the log: equal up to ~1e-7 / y per sample
    assert book.forward(x, t) == pytest.approx(mine.forward(x, t), abs=1e-4)
    np.testing.assert_allclose(book.backward(), mine.backward(), rtol=1e-12, atol=1e-15)
    # chapter 6: the same numbers as the reference (bit for bit: NumPy on the same
    # expressions), masks from the same global stream
    for shape in ((6, 10), (4, 2, 3, 5)):
        xs, ds = rng.standard_normal(shape), rng.standard_normal(shape)
        gamma = 1 + rng.standard_normal(int(np.prod(shape[1:])))
        book, mine = bench_book.BatchNormalization(gamma, 0 * gamma), \
            ref.BatchNormalization(gamma, 0 * gamma)
        for train_flg in (True, False):
            np.testing.assert_array_equal(book.forward(xs, train_flg), mine.forward(xs, train_flg))
        np.testing.assert_array_equal(book.backward(ds), mine.backward(ds))
        np.testing.assert_array_equal(book.dgamma, mine.dgamma)
        book, mine = bench_book.Dropout(0.3), ref.Dropout(0.3)
        np.random.seed(4)
        out = book.forward(xs)
        np.random.seed(4)
        np.testing.assert_array_equal(out, mine.forward(xs))
        np.testing.assert_array_equal(book.backward(ds), mine.backward(ds))
        np.testing.assert_array_equal(book.forward(xs, False), mine.forward(xs, False))


@requires_book
@pytest.mark.parametrize("kwargs", [dict(use_batchnorm=True),
                                    dict(use_batchnorm=True, use_dropout=True,
                                         dropout_ration=0.2, weight_decay_lambda=0.1)],
                         ids=["bn", "bn-dropout-decay"])
def test_book_extend_baseline_is_the_books_class(kwargs):
    """The bench's MultiLayerNetExtend is the book's: on the book's weights and
    global stream, the same gradients, bit for bit, and the same SGD step."""
    (book_mod,) = book_modules("common.multi_layer_net_extend")
    rng = np.random.default_rng(2)
    x, t = rng.random((20, 12)), rng.integers(0, 4, 20)
    np.random.seed(8)
    theirs = book_mod.MultiLayerNetExtend(12, [7, 6], 4, **kwargs)
    ours = bench_book.MultiLayerNetExtend(
        {k: v.copy() for k, v in theirs.params.items() if k[0] in "Wb" and k[1:].isdigit()},
        **kwargs)
    assert list(ours.params) == list(theirs.params)
    for _ in range(2):
        np.random.seed(9)
        want = theirs.gradient(x, t)
        np.random.seed(9)
        got = ours.gradient(x, t)
        assert list(got) == list(want)
        for key in want:
            np.testing.assert_array_equal(got[key], want[key], err_msg=key)
        bench_book.sgd_update(ours.params, got, 0.1)
        for key in theirs.params:
            theirs.params[key] -= 0.1 * want[key]
            np.testing.assert_array_equal(ours.params[key], theirs.params[key], err_msg=key)


@requires_book
def test_book_convnet_baselines_are_the_books_code():
    """The chapter 7-8 transcriptions against the book's own modules."""
    book_util, book_layers = book_modules("common.util", "common.layers")
    rng = np.random.default_rng(2)
    x = rng.standard_normal((2, 3, 7, 6))
    for size, stride, pad in ((3, 1, 1), (2, 2, 0), (3, 2, 2)):
        col = bench_book.im2col(x, size, size, stride, pad)
        np.testing.assert_array_equal(col, book_util.im2col(x, size, size, stride, pad))
        np.testing.assert_array_equal(bench_book.col2im(col, x.shape, size, size, stride, pad),
                                      book_util.col2im(col, x.shape, size, size, stride, pad))
    W, b = rng.standard_normal((4, 3, 3, 3)), rng.standard_normal(4)
    dout = rng.standard_normal((2, 4, 7, 6))
    pairs = ((bench_book.Convolution(W, b, 1, 1), book_layers.Convolution(W, b, 1, 1), dout),
             (bench_book.Pooling(2, 2, 2), book_layers.Pooling(2, 2, 2), dout[:, :3, :3, :3]),
             (bench_book.Affine(rng.standard_normal((126, 5)), b[:1]),
              None, rng.standard_normal((2, 5))))
    for ours, theirs, d in pairs:
        theirs = theirs or book_layers.Affine(ours.W, ours.b)
        np.testing.assert_array_equal(ours.forward(x), theirs.forward(x))
        np.testing.assert_array_equal(ours.backward(d), theirs.backward(d))
    ours, theirs = bench_book.Dropout(0.5), book_layers.Dropout(0.5)
    np.random.seed(3)
    a = ours.forward(x)
    np.random.seed(3)
    np.testing.assert_array_equal(a, theirs.forward(x))
    np.testing.assert_array_equal(ours.backward(x), theirs.backward(x))


@requires_book
@pytest.mark.parametrize("name", ["SimpleConvNet", "DeepConvNet"])
def test_book_convnets_are_the_books_gradient(name):
    simple, deep = book_modules("simple_convnet", "deep_convnet", chapters=("ch07", "ch08"))
    net = getattr(fastbp.networks, name)(seed=0)
    ours = bench_book.ConvNet(net)
    theirs = simple.SimpleConvNet() if name == "SimpleConvNet" else deep.DeepConvNet()
    for key, value in ours.params.items():
        theirs.params[key][...] = value
    rng = np.random.default_rng(3)
    x, t = rng.random((3, 1, 28, 28)), rng.integers(0, 10, 3)
    np.testing.assert_array_equal(ours.predict(x), theirs.predict(x))
    np.random.seed(4)
    grads = ours.gradient(x, t)
    np.random.seed(4)
    expected = theirs.gradient(x, t)
    for key in expected:
        np.testing.assert_array_equal(grads[key], expected[key])
    params = {k: v.copy() for k, v in ours.params.items()}
    bench_book.SGD(0.1).update(params, grads)
    for key in params:
        np.testing.assert_array_equal(params[key], ours.params[key] - 0.1 * grads[key])


def test_format_table_of_collected_rows(quick_rows):
    text = bench.format_table(quick_rows, threads=1)
    lines = text.splitlines()
    assert lines[0].startswith("fastbp bench: threads 1, dtype float32 + float64")
    for name in EXPECTED_NAMES:
        assert sum(line.startswith(name + " ") for line in lines) == 2     # once per dtype
    assert ("torch µs" in text) == torch_available()


def test_time_interleaved_times_every_function_in_turns():
    order = []
    fns = {"a": lambda: order.append("a"), "b": lambda: order.append("b")}
    seconds = bench.time_interleaved(fns, repeat=3, min_time=0.0)
    assert set(seconds) == {"a", "b"}
    assert all(s > 0 for s in seconds.values())
    # after calibration (warm-up + one timing call each), repeats alternate a, b, a, b, a, b
    assert order[-6:] == ["a", "b"] * 3


# ---------------------------------------------------------------------------
# the case records
# ---------------------------------------------------------------------------

def test_case_records_carry_their_sizes_and_columns():
    by_name = {case.name: case for case in bench.CASES}
    assert len(by_name) == len(bench.CASES)                      # names are unique
    assert {name for name, case in by_name.items() if case.floor_legend} == WITH_FLOOR
    assert {name for name, case in by_name.items() if case.torch_legend} == WITH_TORCH
    assert by_name["train_step DeepConvNet b100"].params == {
        "net": "DeepConvNet", "batch": 100, "work": "train_step"}
    step = by_name["train_step 784-1024-10 b256"]
    assert step.params == {"net": "MultiLayerNet", "sizes": (784, 1024, 10), "batch": 256}
    assert by_name["train_step 784-50-10 b8"].params["net"] == "TwoLayerNet"
    assert by_name["softmax_loss fwd+bwd 256x1000"].params == {"batch": 256, "classes": 1000}
    assert {case.baseline for case in bench.CASES} == {"book", "reference"}


@pytest.mark.parametrize("case", bench.CASES, ids=lambda case: case.name)
def test_every_builder_makes_the_columns_its_record_announces(case):
    torch = optional_torch()
    columns = bench._build_columns(case, np.float32, torch)
    assert callable(columns.reference) and callable(columns.fastbp)
    assert (columns.floor is not None) == (case.floor_legend is not None)
    assert (columns.torch is not None) == (case.torch_legend is not None and torch is not None)
    assert bench._build_columns(case, np.float64, None).torch is None


def test_train_step_rows_build_the_network_their_record_names(monkeypatch):
    made = []
    real_two, real_multi = fastbp.networks.TwoLayerNet, fastbp.networks.MultiLayerNet
    monkeypatch.setattr(fastbp.networks, "TwoLayerNet",
                        lambda *a, **k: made.append(("two", a)) or real_two(*a, **k))
    monkeypatch.setattr(fastbp.networks, "MultiLayerNet",
                        lambda *a, **k: made.append(("multi", a)) or real_multi(*a, **k))
    by_name = {case.name: case for case in bench.CASES}
    columns = bench._build_columns(by_name["train_step 784-50-10 b8"], np.float64, None)
    bench._build_columns(by_name["train_step 784-1024-10 b256"], np.float64, None)
    assert made == [("two", (784, 50, 10)), ("multi", (784, [1024], 10))]
    columns.fastbp()                                  # one step on the batch of 8
    columns.reference()


def test_a_builder_that_breaks_its_record_is_caught():
    def no_floor(dtype, torch):
        return bench.Columns(reference=lambda: None, fastbp=lambda: None)

    case = bench.Case("broken", "book", no_floor, floor_legend="promised")
    with pytest.raises(ValueError, match="'broken': floor column missing"):
        bench._build_columns(case, np.float64, None)


def test_streamed_table_is_the_formatted_table(quick_rows):
    """`fastbp bench` prints table_lines row by row; format_table joins the same lines."""
    rows = [r for r in quick_rows if r["dtype"] == "float64"]
    streamed = list(bench.table_lines(iter(rows), threads=1, dtypes=("float64",),
                                      with_torch=torch_available()))
    assert "\n".join(streamed) == bench.format_table(rows, threads=1,
                                                      with_torch=torch_available())
    (floor,) = [line for line in streamed if line.startswith("floor: ")]
    assert floor.startswith("floor: relu = 3 np.copyto passes; affine = its 3 GEMMs; "
                            "train_step = its 5 GEMMs; batchnorm = 4 np.copyto passes")
    assert "dropout = np.random.rand alone" in floor and "train_step bn = its 17 GEMMs" in floor
    assert any(line.startswith("torch: train_step = ") for line in streamed) == \
        torch_available()
