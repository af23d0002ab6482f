"""Smoke test of the asv benchmark suite in asv_benchmarks/benchmarks.

Imports every benchmark module the way asv does (as the package
``benchmarks``), and for every benchmark class, at one small parameter
combination (per implementation / thread count / dtype), runs
setup_cache/setup/teardown and calls each time_/peakmem_/track_ method
once.  Checks that track_ methods return positive finite floats, that the
"fast" and "reference" variants of a benchmark compute the same numbers
(through the classes' ``result()`` hook), that thread counts do not change
results, and that the parameter grids hold the values the suite promises.
No timings are asserted.
"""
import importlib
import inspect
import itertools
import math
import sys
from pathlib import Path

import numpy as np
import pytest

ASV_DIR = Path(__file__).resolve().parent.parent / "asv_benchmarks"
BENCH_DIR = ASV_DIR / "benchmarks"

if not (BENCH_DIR / "__init__.py").is_file():
    pytest.skip(f"asv benchmark suite not found at {BENCH_DIR} (the source tree's "
                "asv_benchmarks/ directory is not shipped with the package)",
                allow_module_level=True)

import fastbp  # noqa: E402

MODULE_NAMES = ["layers", "losses", "optimizers", "training", "threads", "chapter6",
                "convnets"]
BENCH_PREFIXES = ("time_", "timeraw_", "mem_", "peakmem_", "track_")

# The small combination each class is exercised at; parameters named here
# are fixed, "impl", "threads" and "dtype" run over all their values.
SMALL = {"batch": 32, "width": 50}
SWEEP = ("impl", "threads", "dtype")

REQUIRED = {
    "dtype": ["float32", "float64"],
    "batch": [1, 32, 100, 1024],
    "width": [50, 1024],
    "impl": ["fast", "reference"],
}


def _import_suite():
    """Import asv_benchmarks/benchmarks as the package ``benchmarks`` (as
    asv does, so the modules' relative imports work)."""
    sys.path.insert(0, str(ASV_DIR))
    try:
        package = importlib.import_module("benchmarks")
        location = Path(package.__file__).resolve().parent
        assert location == BENCH_DIR.resolve(), (
            f"a different 'benchmarks' package was imported: {location}")
        return {name: importlib.import_module(f"benchmarks.{name}") for name in MODULE_NAMES}
    finally:
        sys.path.remove(str(ASV_DIR))


MODULES = _import_suite()


def _benchmark_methods(cls):
    return sorted(name for name, _ in inspect.getmembers(cls, inspect.isfunction)
                  if name.startswith(BENCH_PREFIXES))


def _benchmark_classes():
    """(module name, class name) of every class asv would discover."""
    found = []
    for mod_name, module in MODULES.items():
        for name, obj in vars(module).items():
            if (inspect.isclass(obj) and not name.startswith("_")
                    and obj.__module__ == module.__name__ and _benchmark_methods(obj)):
                found.append((mod_name, name))
    return found


CLASSES = _benchmark_classes()


def _params(cls):
    names = list(getattr(cls, "param_names", []))
    params = list(getattr(cls, "params", []))
    if params and not isinstance(params[0], list):   # a single parameter
        params = [params]
    assert len(names) == len(params), (cls.__name__, names, params)
    return dict(zip(names, params))


def _combinations(cls):
    """Small combinations: SWEEP parameters take every value, the rest one."""
    params = _params(cls)
    axes = []
    for name, values in params.items():
        if name in SWEEP:
            axes.append(values)
        elif name in SMALL:
            assert SMALL[name] in values, (cls.__name__, name, values)
            axes.append([SMALL[name]])
        else:
            axes.append(values[:1])
    return list(params), [tuple(c) for c in itertools.product(*axes)]


def _assert_same(fast, ref, dtype, what):
    assert fast.keys() == ref.keys(), what
    float32 = np.dtype(dtype) == np.float32
    rtol, atol = (2e-4, 1e-5) if float32 else (1e-9, 1e-12)
    for key in ref:
        a, b = fast[key], ref[key]
        if isinstance(b, float):
            assert isinstance(a, float), (what, key, type(a))
            assert a == pytest.approx(b, rel=rtol, abs=atol), (what, key)
            continue
        a, b = np.asarray(a), np.asarray(b)
        assert a.shape == b.shape and a.dtype == b.dtype, (what, key, a.dtype, b.dtype)
        np.testing.assert_allclose(a, b, rtol=rtol, atol=atol, err_msg=f"{what}: {key}")


@pytest.mark.parametrize("mod_name, cls_name", CLASSES,
                         ids=[f"{m}.{c}" for m, c in CLASSES])
def test_benchmark_class_runs(mod_name, cls_name):
    cls = getattr(MODULES[mod_name], cls_name)
    names, combos = _combinations(cls)
    methods = _benchmark_methods(cls)
    cache_holder = cls()
    cache = cache_holder.setup_cache() if hasattr(cls, "setup_cache") else None
    prefix = () if cache is None else (cache,)

    results, skipped = {}, {}
    for combo in combos:
        args = prefix + combo
        for method in methods + ["result"]:
            if method == "result" and not hasattr(cls, "result"):
                continue
            bench = cls()
            try:
                bench.setup(*args)
            except NotImplementedError as exc:       # asv's "skip this combination"
                skipped[combo] = str(exc)
                break
            try:
                if method == "result":
                    results[combo] = bench.result()
                    continue
                value = getattr(bench, method)(*args)
                if method.startswith("track_"):
                    assert isinstance(value, float), (method, combo, value)
                    assert math.isfinite(value) and value > 0, (method, combo, value)
            finally:
                bench.teardown(*args)
            assert fastbp.get_num_threads() >= 1

    params = dict(zip(names, zip(*combos)))
    if fastbp.COMPILED and "threads" not in names:
        assert not skipped, f"{cls_name}: unexpectedly skipped {skipped}"
    if not hasattr(cls, "result"):
        return
    # the variants of one benchmark must compute the same numbers
    for axis in ("impl", "threads"):
        if axis not in names:
            continue
        i = names.index(axis)
        first = params[axis][0]
        for combo, res in results.items():
            if combo[i] == first:
                continue
            base = combo[:i] + (first,) + combo[i + 1:]
            if base not in results:
                continue                                # e.g. skipped thread count
            dtype = combo[names.index("dtype")]
            if axis == "threads":
                for key in res:                          # chunking is exact
                    np.testing.assert_array_equal(res[key], results[base][key],
                                                  err_msg=f"{cls_name} {combo} {key}")
            else:
                _assert_same(results[base] if first == "fast" else res,
                             res if first == "fast" else results[base],
                             dtype, f"{cls_name} {combo}")
    if "impl" in names:
        compared = [c for c in results if c[names.index("impl")] == "reference"]
        assert compared, f"{cls_name}: no fast/reference pair was compared"


def test_parameter_grids():
    classes = {name: getattr(MODULES[mod], name) for mod, name in CLASSES}
    expected = {"Relu", "Sigmoid", "Affine", "SoftmaxWithLoss", "OptimizerUpdate",
                "TwoLayerNetTrainStep", "MultiLayerNetTrainStep", "TrainStepPeakMemory",
                "TrainStepSpeedup", "ElementwiseThreads", "BatchNormalization", "Dropout",
                "ExtendTrainStep", "ExtendTrainStepSpeedup", "Im2col", "ConvolutionLayer",
                "PoolingLayer", "ConvNetTrainStep", "ConvNetPredict", "ConvNetTrainStepSpeedup",
                "ConvNetPeakMemory"}
    assert expected <= set(classes), expected - set(classes)
    assert set(_params(classes["ConvNetTrainStep"])["net"]) == {"SimpleConvNet", "DeepConvNet"}
    assert 100 in _params(classes["ConvNetTrainStep"])["images"]
    for name, cls in classes.items():
        params = _params(cls)
        for param, required in REQUIRED.items():
            if param in params:
                assert set(required) <= set(params[param]), (name, param, params[param])
        if name != "ElementwiseThreads":
            assert "dtype" in params, name
    for name in ("Relu", "Sigmoid", "Affine", "TwoLayerNetTrainStep",
                 "MultiLayerNetTrainStep", "TrainStepPeakMemory", "TrainStepSpeedup"):
        assert {"dtype", "batch", "width"} <= set(_params(classes[name])), name
    for name in ("Relu", "Sigmoid", "Affine", "SoftmaxWithLoss", "OptimizerUpdate",
                 "TwoLayerNetTrainStep", "MultiLayerNetTrainStep", "TrainStepPeakMemory"):
        assert "impl" in _params(classes[name]), name
    assert "batch" in _params(classes["SoftmaxWithLoss"])
    assert "width" in _params(classes["OptimizerUpdate"])
    assert {"sgd", "momentum", "adam"} <= set(_params(classes["OptimizerUpdate"])["optimizer"])
    assert _params(classes["ElementwiseThreads"])["threads"] == [1, 2]
    assert classes["ElementwiseThreads"].size == 10**7
    assert [m for m in _benchmark_methods(classes["TrainStepPeakMemory"])
            if m.startswith("peakmem_")]
    speed = classes["TrainStepSpeedup"]
    assert speed.unit == "x"
    assert {"track_two_layer_net", "track_multi_layer_net"} <= set(_benchmark_methods(speed))


def test_one_thread_by_default():
    """Benchmarks pin fastbp's kernels to one thread in setup and undo it in
    teardown (the thread benchmark excepted)."""
    common = importlib.import_module("benchmarks.common")
    bench = common.Benchmark()
    bench.limit_threads()
    try:
        assert fastbp.get_num_threads() == 1
    finally:
        bench.teardown()
    assert bench._thread_limit is None
