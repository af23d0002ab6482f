"""The pure-NumPy fallback, in fresh interpreters.

* ``FASTBP_PURE=1``: ``import fastbp`` warns exactly once (RuntimeWarning
  naming the reference), ``fastbp.COMPILED`` is False, ``show_config()`` says
  the compiled core is NOT loaded, no compiled module gets imported, and the
  layers, functions, networks and optimizers give the reference's numbers.
* The compiled extension unimportable (``sys.modules['fastbp._affine'] =
  None``, or a meta path finder raising ImportError for ``fastbp._elementwise``):
  the same fallback, with the cause in the warning and in ``show_config()``.
* ``FASTBP_PURE`` unset, empty or 0 with the core built: no warning, compiled.

Each scenario runs a script in a subprocess and prints one JSON line.
"""
import json
import os
import subprocess
import sys
import textwrap

import pytest

import fastbp

REPO = os.path.dirname(os.path.dirname(os.path.abspath(fastbp.__file__)))


def core_is_built():
    """The compiled modules exist and import in a clean interpreter."""
    code = ("import importlib\nfrom fastbp._backend import MODULE_NAMES\n"
            "for name in MODULE_NAMES:\n    importlib.import_module('fastbp.' + name)")
    env = _env(None)
    # cwd=REPO (the directory fastbp was imported from): `python -c` puts the
    # cwd first on sys.path, and from a checkout's root the uncompiled tree
    # would shadow the installed package
    return subprocess.run([sys.executable, "-c", code], env=env, cwd=REPO,
                          capture_output=True).returncode == 0


def _env(pure):
    env = {k: v for k, v in os.environ.items() if k != "FASTBP_PURE"}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (REPO, os.environ.get("PYTHONPATH")) if p)
    if pure is not None:
        env["FASTBP_PURE"] = pure
    return env


# Runs after the scenario's preamble; prints a JSON summary.
PROBE = r'''
import io, json, sys, warnings
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    PREAMBLE
    import fastbp
    import fastbp.layers, fastbp.functions, fastbp.networks, fastbp.optimizers
    import fastbp.reference
    import numpy as np
    config = io.StringIO()
    fastbp.show_config(file=config)

    from fastbp import layers as F, functions as FF, networks as FN, optimizers as FO
    from fastbp.reference import layers as R, functions as RF, networks as RN
    from fastbp.reference import optimizers as RO
    rng = np.random.default_rng(0)
    same = {}
    for dtype in (np.float64, np.float32):
        x = rng.standard_normal((5, 6)).astype(dtype)
        W = rng.standard_normal((6, 3)).astype(dtype)
        b = rng.standard_normal(3).astype(dtype)
        d = rng.standard_normal((5, 3)).astype(dtype)
        t = np.array([0, 2, 1, 1, 0])
        key = np.dtype(dtype).name
        outs = {}
        for name, L in (("fast", F), ("ref", R)):
            relu, sig, aff, swl = L.Relu(), L.Sigmoid(), L.Affine(W, b), L.SoftmaxWithLoss()
            o = [relu.forward(x), relu.backward(x), sig.forward(x), sig.backward(x),
                 aff.forward(x), aff.backward(d), aff.dW, aff.db,
                 np.array(swl.forward(d, t)), swl.backward()]
            outs[name] = o
        same[f"layers {key}"] = all(
            a.dtype == b.dtype and np.array_equal(a, b) for a, b in zip(outs["fast"], outs["ref"]))
        same[f"functions {key}"] = all(
            np.array_equal(f(x), g(x)) for f, g in ((FF.sigmoid, RF.sigmoid),
                                                    (FF.softmax, RF.softmax)))
    losses = {}
    for name, N, O in (("fast", FN, FO), ("ref", RN, RO)):
        net = N.MultiLayerNet(6, [8], 3, seed=1)
        opt = O.Adam(lr=0.01)
        xs = rng.standard_normal((20, 6)) if name == "fast" else xs
        ts = rng.integers(0, 3, 20) if name == "fast" else ts
        losses[name] = [net.train_step(xs, ts, opt) for _ in range(5)]
        losses[name + " params"] = [v.tolist() for v in net.params.values()]
    same["train_step"] = losses["fast"] == losses["ref"] and \
        losses["fast params"] == losses["ref params"]
    affine_works = F.Affine(np.eye(2), np.ones(2)).forward(np.ones((1, 2))).tolist()

print(json.dumps({
    "compiled": fastbp.COMPILED,
    "reason": fastbp._backend.REASON,
    "warnings": [[w.category.__name__, str(w.message)] for w in caught],
    "config": config.getvalue(),
    "compiled_modules_imported": sorted(m for m in sys.modules
                                        if m in ("fastbp._affine", "fastbp._elementwise",
                                                 "fastbp._optim", "fastbp._train")),
    "same": same,
    "affine": affine_works,
    "threads": fastbp.get_num_threads(),
}))
'''


def run_probe(preamble="pass", pure=None):
    script = PROBE.replace("PREAMBLE", textwrap.indent(textwrap.dedent(preamble),
                                                       "    ").strip())
    proc = subprocess.run([sys.executable, "-c", script], env=_env(pure), capture_output=True,
                          text=True, timeout=120, cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def assert_falls_back(result, cause):
    assert result["compiled"] is False
    runtime = [w for w in result["warnings"] if w[0] == "RuntimeWarning"]
    assert len(runtime) == 1, result["warnings"]
    message = runtime[0][1]
    assert "reference" in message and cause in message, message
    assert result["warnings"] == runtime, f"other warnings: {result['warnings']}"
    assert cause in result["reason"]
    config = result["config"]
    assert "compiled core: NOT loaded" in config, config
    assert cause in config, config
    assert "simd: none (pure NumPy)" in config
    assert all(result["same"].values()), result["same"]
    assert result["affine"] == [[2.0, 2.0]]
    assert result["threads"] == 1


@pytest.mark.parametrize("value", ["1", "yes", "true", "ON", " on "])
def test_fastbp_pure_runs_the_reference_and_warns_once(value):
    result = run_probe(pure=value)
    assert_falls_back(result, "FASTBP_PURE is set")
    assert result["compiled_modules_imported"] == []


def test_unimportable_affine_module_falls_back_naming_the_cause():
    result = run_probe("sys.modules['fastbp._affine'] = None")
    assert_falls_back(result, "compiled core not importable")
    assert "fastbp._affine" in result["reason"], result["reason"]
    assert "fastbp._affine" in result["warnings"][0][1]


def test_extension_failing_to_load_falls_back_naming_the_cause():
    """A meta path finder standing in for an extension built for another Python."""
    preamble = """
    import importlib.abc
    class Broken(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name == "fastbp._elementwise":
                raise ImportError("simulated: _elementwise built for another Python")
            return None
    sys.meta_path.insert(0, Broken())
    """
    result = run_probe(preamble)
    assert_falls_back(result, "simulated: _elementwise built for another Python")
    assert "fastbp._elementwise" not in result["compiled_modules_imported"]


@pytest.mark.parametrize("value", [None, "", "0", "false", "No", "off"],
                         ids=["unset", "empty", "0", "false", "No", "off"])
def test_compiled_core_loads_without_a_warning(value):
    if not core_is_built():
        pytest.skip("the compiled core is not built in this checkout")
    result = run_probe(pure=value)
    assert result["compiled"] is True
    assert result["warnings"] == []
    assert "compiled core: loaded" in result["config"]
    assert result["compiled_modules_imported"] == ["fastbp._affine", "fastbp._elementwise",
                                                   "fastbp._optim", "fastbp._train"]
    # layers: kernels vs reference agree within tolerance, not bit for bit
    assert result["affine"] == [[2.0, 2.0]]


@pytest.mark.parametrize("value", ["maybe", "2", "enable", "0.0"])
def test_fastbp_pure_refuses_other_values_naming_them(value):
    # A typo must not pick a mode silently (anything but "" and "0" once meant
    # pure, "false" and "no" included).
    proc = subprocess.run([sys.executable, "-c", "import fastbp"], env=_env(value), cwd=REPO,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1
    last = proc.stderr.strip().splitlines()[-1]
    assert last == (f"ValueError: FASTBP_PURE={value!r}: expected 1, true, yes or on (on), "
                    "or 0, false, no, off or empty (off), in any case"), proc.stderr
