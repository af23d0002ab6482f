"""The public surface: which implementation runs, where it was loaded from,
and that the compiled modules have exactly the reference's names and
signatures."""
import importlib.machinery
import inspect
import os
from pathlib import Path

import numpy as np
import pytest

import fastbp
import fastbp._backend as backend
import fastbp.functions as fast_functions
import fastbp.layers as fast_layers
import fastbp.reference.functions as ref_functions
import fastbp.reference.layers as ref_layers
from conftest import PURE

CHECKOUT = Path(__file__).resolve().parent.parent
EXPECT_INSTALLED = os.environ.get("FASTBP_EXPECT_INSTALLED", "0") not in ("", "0")


def is_inside(path, directory):
    try:
        Path(path).resolve().relative_to(directory)
        return True
    except ValueError:
        return False


# ---------------------------------------------------------------------------
# Which implementation runs, and from where
# ---------------------------------------------------------------------------
def test_compiled_core_is_the_one_running():
    if PURE:
        assert fastbp.COMPILED is False
        assert backend.affine is None and backend.elementwise is None
        assert "FASTBP_PURE" in backend.REASON
    else:
        assert fastbp.COMPILED is True, f"compiled core not loaded: {backend.REASON}"
        assert backend.COMPILED is True


def fused_kernels(module):
    """{name: fused function} of a compiled module's public fused-type kernels."""
    return {name: fn for name, fn in vars(module).items()
            if not name.startswith("_") and hasattr(fn, "__signatures__")}


def test_kernel_table_holds_each_dtypes_specialisations():
    """The layers call compiled kernels through backend.KERNELS, one namespace
    of specialisations per dtype (no fused dispatcher per call), written out
    in backend._kernels: both dtypes have every fused kernel of every
    compiled module, each the specialisation of its dtype."""
    if PURE:
        assert backend.KERNELS == {}
        return
    assert set(backend.KERNELS) == {np.dtype(np.float32), np.dtype(np.float64)}
    table_float, table_double = (vars(backend.KERNELS[np.dtype(t)])
                                 for t in (np.float32, np.float64))
    assert table_float.keys() == table_double.keys()
    every_kernel = {}
    for module in backend.MODULES:
        every_kernel.update(fused_kernels(module))
    kernels = ("affine_forward", "affine_backward", "im2col", "col2im", "conv_forward",
               "conv_backward", "maxpool_forward", "maxpool_backward", "relu_forward",
               "relu_backward",
               "relu_grad", "sigmoid_forward", "sigmoid_backward", "sigmoid_grad",
               "softmax_xent_labels", "softmax_xent_onehot", "softmax_xent_backward_labels",
               "softmax_xent_backward_onehot", "sgd", "momentum", "nesterov", "adagrad",
               "rmsprop", "adam", "bn_forward_train", "bn_forward_test", "bn_backward",
               "dropout_forward", "dropout_apply")
    assert sorted(table_float) == sorted(kernels) == sorted(every_kernel)
    for name, fused in every_kernel.items():
        assert table_float[name] is fused.__signatures__["float"], name
        assert table_double[name] is fused.__signatures__["double"], name


@pytest.mark.skipif(PURE, reason="FASTBP_PURE=1: no compiled kernel is loaded")
@pytest.mark.parametrize("dtype,other", [(np.float32, np.float64), (np.float64, np.float32)],
                         ids=["float32", "float64"])
def test_a_specialisation_refuses_the_other_dtype(dtype, other):
    table = backend.KERNELS[np.dtype(dtype)]
    out = np.empty(3, dtype)
    table.sigmoid_forward(np.zeros(3, dtype), out)
    np.testing.assert_array_equal(out, 0.5)
    table.relu_grad(np.array([-1, 0, 2], dtype), out)
    np.testing.assert_array_equal(out, [0, 0, 1])
    for kernel, args in ((table.sigmoid_forward, (np.zeros(3, other), np.empty(3, other))),
                         (table.relu_grad, (np.zeros(3, other), np.empty(3, other))),
                         (table.sgd, (np.zeros(3, other), np.zeros(3, other), 0.1))):
        with pytest.raises(ValueError, match="dtype mismatch"):    # no dispatch to `other`
            kernel(*args)


def test_every_compiled_module_is_listed_once():
    """backend.MODULE_NAMES is the list of compiled modules the Python side
    imports and `fastbp info` shows: one per .pyx file shipped with the package."""
    shipped = sorted(path.stem for path in Path(fastbp.__file__).parent.glob("*.pyx"))
    assert shipped == sorted(backend.MODULE_NAMES)
    if PURE:
        assert backend.MODULES == ()
        return
    assert [m.__name__ for m in backend.MODULES] == [f"fastbp.{n}" for n in backend.MODULE_NAMES]
    assert (backend.affine, backend.conv, backend.elementwise, backend.optim, backend.train,
            backend.batchnorm, backend.bitgen, backend.dropout, backend.train_extend) == \
        backend.MODULES


@pytest.mark.skipif(PURE, reason="FASTBP_PURE=1: no compiled module is loaded")
@pytest.mark.parametrize("name", backend.MODULE_NAMES)
def test_compiled_modules_are_shared_libraries_next_to_the_package(name):
    module = backend.MODULES[backend.MODULE_NAMES.index(name)]
    assert module.__file__.endswith(tuple(importlib.machinery.EXTENSION_SUFFIXES)), \
        module.__file__
    # loaded from the same fastbp package as the Python code, not from elsewhere
    assert Path(module.__file__).resolve().parent == Path(fastbp.__file__).resolve().parent


@pytest.mark.skipif(not EXPECT_INSTALLED,
                    reason="FASTBP_EXPECT_INSTALLED is not set (testing the checkout)")
def test_installed_package_is_tested_not_the_checkout():
    """In CI the tests must exercise the installed wheel/sdist: a checkout's
    pure-Python tree shadowing it would silently test something else."""
    assert not is_inside(fastbp.__file__, CHECKOUT), \
        f"fastbp imported from the checkout {fastbp.__file__}, not the installed package"
    if PURE:        # FASTBP_PURE=1 run: the compiled core is deliberately not loaded
        return
    assert fastbp.COMPILED is True, f"installed fastbp has no compiled core: {backend.REASON}"
    for module in backend.MODULES:
        so = module.__file__
        assert not is_inside(so, CHECKOUT), f"{so} lives in the source checkout {CHECKOUT}"


def test_show_config_names_the_facts(capsys):
    fastbp.show_config()
    out = capsys.readouterr().out
    for key in ("compiled core", "blas", "openmp", "simd", "threads"):
        assert key in out, key
    core_line = next(line for line in out.splitlines() if "compiled core" in line)
    if PURE:
        assert "NOT loaded" in core_line
    else:
        assert core_line.rstrip().endswith("loaded") and "NOT" not in core_line
        simd_line = next(line for line in out.splitlines() if "simd" in line)
        assert "pure NumPy" not in simd_line
        compiler = fastbp._config.config_dict()["compiler"]
        assert compiler.split()[0] in ("GCC", "Clang", "MSVC") and compiler == compiler.strip()
        modules_line = next(line for line in out.splitlines() if "compiled modules" in line)
        for module in backend.MODULES:      # every one of them
            assert module.__file__ in modules_line


def test_set_num_threads_validates_and_round_trips():
    for bad in (-1, True, 1.5, "2"):
        with pytest.raises(ValueError):
            fastbp.set_num_threads(bad)
    default = fastbp.get_num_threads()
    try:
        fastbp.set_num_threads(1)
        assert fastbp.get_num_threads() == 1
    finally:
        fastbp.set_num_threads(0)
    assert fastbp.get_num_threads() == default


# ---------------------------------------------------------------------------
# Same names, same signatures as the reference
# ---------------------------------------------------------------------------
def test_all_lists_match():
    assert fast_layers.__all__ == ref_layers.__all__
    assert fast_functions.__all__ == ref_functions.__all__
    assert set(fast_layers.__all__) >= {"AddLayer", "MulLayer", "Relu", "ReLU", "Sigmoid",
                                        "Affine", "SoftmaxWithLoss"}
    assert set(fast_functions.__all__) >= {"sigmoid", "relu", "softmax",
                                           "softmax_cross_entropy", "cross_entropy_error"}


@pytest.mark.parametrize("module", [fast_layers, fast_functions], ids=lambda m: m.__name__)
def test_star_import_gives_exactly_all(module):
    namespace = {}
    exec(f"from {module.__name__} import *", namespace)
    namespace.pop("__builtins__")
    assert sorted(namespace) == sorted(module.__all__)


def test_relu_alias():
    assert fast_layers.ReLU is fast_layers.Relu
    assert ref_layers.ReLU is ref_layers.Relu


def public_methods(cls):
    return {name for name, _ in inspect.getmembers(cls, callable)
            if not name.startswith("_") or name == "__init__"}


@pytest.mark.parametrize("name", [n for n in ref_layers.__all__
                                  if inspect.isclass(getattr(ref_layers, n))])
def test_layer_classes_have_the_reference_signatures(name):
    fast, ref = getattr(fast_layers, name), getattr(ref_layers, name)
    assert inspect.isclass(fast)
    assert issubclass(fast, ref)                 # isinstance checks against the book's classes
    assert fast.__name__ == ref.__name__
    assert fast.__doc__ == ref.__doc__
    assert public_methods(fast) == public_methods(ref)
    for method in public_methods(ref):
        assert inspect.signature(getattr(fast, method)) == \
            inspect.signature(getattr(ref, method)), f"{name}.{method}"


@pytest.mark.parametrize("name", ref_functions.__all__)
def test_functions_have_the_reference_signatures(name):
    fast, ref = getattr(fast_functions, name), getattr(ref_functions, name)
    assert callable(fast)
    assert fast.__name__ == ref.__name__
    assert inspect.signature(fast) == inspect.signature(ref), name


def test_layer_attributes_after_init_match_the_reference():
    import numpy as np
    W, b = np.ones((3, 2)), np.zeros(2)
    for name, args in (("Relu", ()), ("Sigmoid", ()), ("Affine", (W, b)),
                       ("SoftmaxWithLoss", ()), ("MulLayer", ()), ("AddLayer", ())):
        fast = getattr(fast_layers, name)(*args)
        ref = getattr(ref_layers, name)(*args)
        public = {k for k in vars(ref) if not k.startswith("_")}
        assert public <= set(vars(fast)), name
        for key in public:
            assert getattr(fast, key) is getattr(ref, key) or \
                (getattr(fast, key) is None and getattr(ref, key) is None), (name, key)


# --- which build is running: CI installs a release and a debug build and says
# which it expects, so a build option that silently did nothing fails here.

@pytest.mark.skipif(PURE or os.environ.get("FASTBP_EXPECT_OPENMP") is None,
                    reason="FASTBP_EXPECT_OPENMP is not set (CI sets it for the serial build)")
def test_openmp_build_is_the_expected_one(capsys):
    expected = os.environ["FASTBP_EXPECT_OPENMP"] == "1"
    assert backend.elementwise.openmp_enabled() is expected
    fastbp.show_config()
    line = next(l for l in capsys.readouterr().out.splitlines() if "openmp" in l)
    assert ("yes" in line) is expected
    if not expected:
        assert "serial build" in line
        assert fastbp.get_num_threads() == 1


@pytest.mark.skipif(PURE or os.environ.get("FASTBP_EXPECT_BOUNDSCHECK") != "1",
                    reason="FASTBP_EXPECT_BOUNDSCHECK is not set (CI sets it for the debug build)")
def test_debug_build_checks_bounds(monkeypatch):
    """Kernels are noexcept: a bounds failure can't propagate, Cython reports
    it through sys.unraisablehook.  A release build reads past the bias silently."""
    import sys

    import numpy as np
    reported = []
    monkeypatch.setattr(sys, "unraisablehook", lambda info: reported.append(info.exc_type))
    x = np.ones((2, 3))
    W = np.ones((3, 4))
    padded_bias = np.ones(4)
    short_bias = padded_bias[:2]       # the kernel reads b[0..3]: out of bounds
    backend.affine.affine_forward(x, W, short_bias, np.empty((2, 4)))
    assert IndexError in reported
