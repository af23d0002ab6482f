"""A stateful differential fuzzer of the layers: fastbp.layers against
fastbp.reference.layers, call after call.

``LayerStateMachine`` (hypothesis ``RuleBasedStateMachine``) builds, for
every layer class ``fastbp.layers`` exports, a fastbp layer and its
reference twin from the same arguments, then interleaves on them:

* ``forward`` (new inputs, sometimes of a wrong shape or another dtype,
  training or test mode) and ``backward`` (dout of the last output's shape,
  sometimes not);
* reassigning any public attribute of the layer (``W``, ``mask``, ``x``,
  ``original_x_shape``, ``y``, ``running_mean``, ``stride``...) with a value
  derived from the current one: another dtype, byte order, layout or
  shape, the same values at an odd address, a list, None, a scalar nearby;
* changing in place an array the layer holds, or an input it was given;
* copying the layer (``copy.deepcopy`` or pickle) and going on with the copy.

After every call both layers must agree: the same exception type, or equal
results (NaN where NaN; float64 within 1e-9, float32 within 1e-4); their
public attributes equal; the caller's inputs unchanged; and the fastbp
layer may warn only where the reference warns.  The specs below say how to
build each class and what its forward takes; everything else is generic
over the attributes a layer has, so compiled Dropout, BatchNormalization,
Convolution and Pooling are covered as they land.  A class in
``fastbp.layers.__all__`` without a spec fails the run.

``run(max_examples, steps_per_example)`` runs the machine and returns the
number of calls and changes made; ``python statefuzz.py [EXAMPLES [STEPS
[random]]]`` too (``random``: a new sequence each run, not CI's).
"""
import copy
import inspect
import math
import pickle
import sys
import warnings
from dataclasses import dataclass
from typing import Callable

import numpy as np
from hypothesis import HealthCheck, settings, strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, rule, run_state_machine_as_test

from fastbp import layers as fast_layers
from fastbp.reference import layers as ref_layers

# relative (and absolute) tolerance of float results, by the least precise
# float dtype among the call's inputs and the layer's arrays (a float64
# result computed from float32 state carries float32's rounding)
RTOL = {np.dtype(np.float64): 1e-9, np.dtype(np.float32): 1e-4}
STEPS = [0]          # calls made by every machine of this process


# ---------------------------------------------------------------------------
# What each layer class is built from and what its forward takes
# ---------------------------------------------------------------------------
@dataclass
class Spec:
    dims: st.SearchStrategy            # the sizes of one layer pair, drawn once
    build: Callable                    # build(module, dims, seed) -> layer
    forward_args: Callable             # forward_args(rng, dims, dtype, variant) -> tuple
    train_flag: bool = False           # forward takes train_flg


def _normal(rng, shape, dtype):
    values = rng.standard_normal(shape)
    if np.dtype(dtype).kind in "iu":
        return np.round(values * 3).astype(dtype)
    return values.astype(dtype)


def _batch(rng, dims, dtype, variant, features):
    """(N, features) or, for variant 1, (N, features, 1)."""
    shape = (dims["n"], features) if variant != 1 else (dims["n"], features, 1)
    return _normal(rng, shape, dtype)


def _images(rng, dims, dtype, variant):
    return _normal(rng, (dims["n"], dims["c"], dims["h"], dims["w"]), dtype)


def _labels(rng, dims, variant):
    n, c = dims["n"], dims["classes"]
    t = rng.integers(0, c, n)
    if variant == 1:
        return t.reshape(n, 1)
    if variant == 2:
        return np.eye(c)[t]
    return t


SMALL = st.integers(1, 4)
IMAGE = st.fixed_dictionaries({"n": SMALL, "c": st.integers(1, 2), "h": st.integers(3, 6),
                               "w": st.integers(3, 6)})

SPECS = {
    "MulLayer": Spec(st.fixed_dictionaries({"n": SMALL, "d": SMALL}),
                     lambda m, d, s: m.MulLayer(),
                     lambda r, d, t, v: (_batch(r, d, t, v, d["d"]), _batch(r, d, t, v, d["d"]))),
    "AddLayer": Spec(st.fixed_dictionaries({"n": SMALL, "d": SMALL}),
                     lambda m, d, s: m.AddLayer(),
                     lambda r, d, t, v: (_batch(r, d, t, v, d["d"]), _batch(r, d, t, v, d["d"]))),
    "Relu": Spec(st.fixed_dictionaries({"n": SMALL, "d": st.integers(1, 6)}),
                 lambda m, d, s: m.Relu(),
                 lambda r, d, t, v: (_batch(r, d, t, v, d["d"]),)),
    "Sigmoid": Spec(st.fixed_dictionaries({"n": SMALL, "d": st.integers(1, 6)}),
                    lambda m, d, s: m.Sigmoid(),
                    lambda r, d, t, v: (_batch(r, d, t, v, d["d"]),)),
    "Affine": Spec(st.fixed_dictionaries({"n": SMALL, "d": st.integers(1, 6), "m": SMALL}),
                   lambda m, d, s: m.Affine(_normal(np.random.default_rng(s), (d["d"], d["m"]),
                                                    np.float64), np.zeros(d["m"])),
                   lambda r, d, t, v: (_batch(r, d, t, v, d["d"]),)),
    "SoftmaxWithLoss": Spec(st.fixed_dictionaries({"n": SMALL, "classes": st.integers(2, 5)}),
                            lambda m, d, s: m.SoftmaxWithLoss(),
                            lambda r, d, t, v: (_normal(r, (d["n"], d["classes"]), t),
                                                _labels(r, d, v))),
    "Dropout": Spec(st.fixed_dictionaries({"n": SMALL, "d": st.integers(1, 6),
                                           "ratio": st.sampled_from([0.0, 0.3, 0.5])}),
                    lambda m, d, s: m.Dropout(d["ratio"], rng=np.random.default_rng(s)),
                    lambda r, d, t, v: (_batch(r, d, t, v, d["d"]),), train_flag=True),
    "BatchNormalization": Spec(
        st.fixed_dictionaries({"n": st.integers(2, 4), "c": st.integers(1, 2),
                               "h": st.integers(1, 2), "w": st.integers(1, 2)}),
        lambda m, d, s: m.BatchNormalization(
            1 + 0.1 * _normal(np.random.default_rng(s), d["c"] * d["h"] * d["w"], np.float64),
            np.zeros(d["c"] * d["h"] * d["w"]), momentum=0.9),
        lambda r, d, t, v: ((_images(r, d, t, v),) if v == 1 else
                            (_normal(r, (d["n"], d["c"] * d["h"] * d["w"]), t),)),
        train_flag=True),
    "Convolution": Spec(
        IMAGE.flatmap(lambda d: st.fixed_dictionaries({
            **{k: st.just(v) for k, v in d.items()}, "fn": st.integers(1, 3),
            "fh": st.integers(1, 3), "fw": st.integers(1, 3), "stride": st.integers(1, 2),
            "pad": st.integers(0, 1)})),
        lambda m, d, s: m.Convolution(
            _normal(np.random.default_rng(s), (d["fn"], d["c"], d["fh"], d["fw"]), np.float64),
            np.zeros(d["fn"]), d["stride"], d["pad"]),
        lambda r, d, t, v: (_images(r, d, t, v),)),
    "Pooling": Spec(
        IMAGE.flatmap(lambda d: st.fixed_dictionaries({
            **{k: st.just(v) for k, v in d.items()}, "ph": st.integers(1, 3),
            "pw": st.integers(1, 3), "stride": st.integers(1, 2)})),
        lambda m, d, s: m.Pooling(d["ph"], d["pw"], d["stride"], 0),
        lambda r, d, t, v: (_images(r, d, t, v),)),
}


def layer_classes():
    """The distinct layer classes of ``fastbp.layers.__all__``, by name (an
    alias such as ReLU counts once)."""
    seen, names = set(), []
    for name in fast_layers.__all__:
        cls = getattr(fast_layers, name)
        if isinstance(cls, type) and cls not in seen:
            seen.add(cls)
            names.append(name)
    missing = [name for name in names if name not in SPECS]
    if missing:
        raise AssertionError(f"statefuzz: no Spec for {missing}: add one to SPECS")
    return names


# ---------------------------------------------------------------------------
# Outcomes and their comparison
# ---------------------------------------------------------------------------
def call(function, *args, **kwargs):
    """``("returns", value, warnings)`` or ``("raises", type name, warnings)``."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            value = ("returns", function(*args, **kwargs))
        except (Exception, RecursionError) as exc:   # compared, not judged
            value = ("raises", type(exc).__name__)
    return value + ({w.category.__name__ for w in caught},)


def tolerance(*values):
    """The RTOL of the least precise float array among ``values`` (and
    inside tuples, lists and layers' public attributes)."""
    rtol = RTOL[np.dtype(np.float64)]

    def visit(value):
        nonlocal rtol
        if isinstance(value, np.ndarray):
            rtol = max(rtol, RTOL.get(value.dtype, 1e-3) if value.dtype.kind == "f" else 0)
        elif isinstance(value, (tuple, list)):
            for item in value:
                visit(item)
        elif hasattr(value, "__dict__") and not isinstance(value, type):
            for item in public_state(value).values():
                visit(item)
    for value in values:
        visit(value)
    return rtol


def same_value(fast, ref, where, rtol=None):
    """AssertionError describing the first difference between two values."""
    if isinstance(ref, np.ndarray) or isinstance(fast, np.ndarray):
        assert isinstance(fast, np.ndarray) and isinstance(ref, np.ndarray), \
            f"{where}: {type(fast).__name__} vs {type(ref).__name__}"
        assert fast.shape == ref.shape and fast.dtype == ref.dtype, \
            f"{where}: {fast.dtype}{fast.shape} vs {ref.dtype}{ref.shape}"
        if ref.dtype.kind in "fc":
            rtol = max(rtol or 0, RTOL.get(ref.dtype, 1e-3))
            np.testing.assert_allclose(fast, ref, rtol=rtol, atol=rtol, equal_nan=True,
                                       err_msg=where)
        else:
            np.testing.assert_array_equal(fast, ref, err_msg=where)
        return
    if isinstance(ref, (tuple, list)) and isinstance(fast, (tuple, list)):
        assert type(fast) is type(ref) and len(fast) == len(ref), f"{where}: {fast!r} vs {ref!r}"
        for i, (f, r) in enumerate(zip(fast, ref)):
            same_value(f, r, f"{where}[{i}]", rtol)
        return
    if isinstance(ref, float) and isinstance(fast, float):
        # (a Python float from float32 arrays, such as a loss, has their precision)
        assert math.isclose(fast, ref, rel_tol=1e-5, abs_tol=1e-6) or (
            math.isnan(fast) and math.isnan(ref)), f"{where}: {fast!r} vs {ref!r}"
        return
    if isinstance(ref, (int, str, bool, type(None), np.generic)):
        assert type(fast) is type(ref) and (fast == ref or (fast != fast and ref != ref)), \
            f"{where}: {fast!r} vs {ref!r}"


def same_outcome(fast, ref, where, rtol):
    assert fast[0] == ref[0], f"{where}: fastbp {fast[:2]} but reference {ref[:2]}"
    if fast[0] == "raises":
        assert fast[1] == ref[1], f"{where}: fastbp raises {fast[1]}, reference {ref[1]}"
    else:
        same_value(fast[1], ref[1], where, rtol)
    extra = fast[2] - ref[2]
    assert not extra, f"{where}: fastbp warns {extra}, the reference doesn't"


def public_state(layer):
    """The layer's public attributes: its instance attributes, and the book's
    attributes a compiled layer computes when read (data descriptors such
    as Convolution.col and Pooling.arg_max)."""
    state = {k: v for k, v in vars(layer).items() if not k.startswith("_")}
    for name in dir(type(layer)):
        if not name.startswith("_") and inspect.isdatadescriptor(getattr(type(layer), name)):
            state[name] = getattr(layer, name)
    return state


# ---------------------------------------------------------------------------
# Values for reassignment and in-place changes, derived from the current one
# ---------------------------------------------------------------------------
def replacements(value, rng):
    """Candidate values a caller might assign instead of ``value``."""
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")       # (NaN or 1e30 cast to an integer)
        return _replacements(value, rng)


def _replacements(value, rng):
    if isinstance(value, np.ndarray):
        out = [value.astype(np.float32), value.astype(np.float64), None, value.tolist(),
               np.asfortranarray(value), np.repeat(value, 2, axis=-1)[..., ::2]
               if value.ndim else value, value * 0.5 if value.dtype.kind in "fiu" else ~value,
               np.array(value)[()] if value.ndim == 0 else value.reshape(-1),
               value[:-1] if value.ndim and value.shape[0] > 1 else np.zeros(3),
               np.concatenate([value, value]) if value.ndim else value,
               value.T, np.zeros(value.shape, np.int64), value.astype(np.int8),
               value.astype(bool)]
        readonly = np.array(value)
        readonly.setflags(write=False)
        out.append(readonly)
        if value.dtype.kind in "fiu" and value.dtype.itemsize > 1:
            # the same numbers in the other byte order (same type number: a kernel
            # checking only that reads the swapped bytes), and at an odd address
            out.append(value.astype(value.dtype.newbyteorder()))
            out.append(np.frombuffer(b"\0" + value.tobytes(), value.dtype,
                                     offset=1).reshape(value.shape))
        return out
    if isinstance(value, (bool, np.bool_)):
        return [not value, None, 1]
    if isinstance(value, (int, np.integer)):
        return [value + 1, max(value - 1, 0), 0, -1, 0.5, "2", None, np.int64(value),
                2 * value if abs(value) < 4 else 1, True]
    if isinstance(value, float):
        return [value + 0.1, 0.0, -0.5, 1.0, 2.0, float("nan"), None, np.float32(value)]
    if isinstance(value, tuple):
        return [value[::-1], value + (1,), tuple(-1 if i == 0 else d for i, d in
                                                  enumerate(value)), list(value), None, ()]
    if isinstance(value, np.random.Generator):
        return [np.random.default_rng(int(rng.integers(1000)))]
    if value is None:
        return [None, np.zeros(3), np.zeros((2, 2), bool), 1]
    return []


def in_place_changes(array):
    """In-place operations for ``array`` (the same one is applied to both
    layers' arrays)."""
    if not isinstance(array, np.ndarray) or not array.flags.writeable or array.size == 0:
        return []
    if array.dtype.kind == "b":
        return [lambda a: np.logical_not(a, out=a), lambda a: a.fill(False)]
    if array.dtype.kind in "iu":
        return [lambda a: a.__iadd__(1), lambda a: a.fill(0),
                lambda a: a.__setitem__(tuple(0 for _ in a.shape), -1)]
    return [lambda a: a.__imul__(-2.0), lambda a: a.__iadd__(0.25), lambda a: a.fill(0),
            lambda a: a.__setitem__(tuple(0 for _ in a.shape), np.nan),
            lambda a: a.__setitem__(tuple(0 for _ in a.shape), 1e30)]


# ---------------------------------------------------------------------------
# The machine
# ---------------------------------------------------------------------------
class Pair:
    """A fastbp layer, its reference twin, and what was last given to them."""

    def __init__(self, name, dims, seed):
        self.name, self.dims = name, dims
        spec = SPECS[name]
        self.fast = spec.build(fast_layers, dims, seed)
        self.ref = spec.build(ref_layers, dims, seed)
        self.inputs = None           # (fast's args, reference's args) of the last forward
        self.out_shape = None        # the shape of the reference's last forward result

    def __repr__(self):
        return f"<{self.name} pair>"


class LayerStateMachine(RuleBasedStateMachine):

    @initialize(data=st.data())
    def build_every_layer(self, data):
        self.pairs = []
        for i, name in enumerate(layer_classes()):
            dims = data.draw(SPECS[name].dims, label=f"{name} sizes")
            self.pairs.append(Pair(name, dims, seed=1000 + i))

    def _pick(self, data):
        return data.draw(st.sampled_from(self.pairs), label="layer")

    def _check_state(self, pair, where, rtol=None):
        fast, ref = public_state(pair.fast), public_state(pair.ref)
        assert sorted(fast) == sorted(ref), f"{where}: attributes {sorted(fast)} vs {sorted(ref)}"
        rtol = max(rtol or 0, tolerance(pair.ref))
        for key in ref:
            same_value(fast[key], ref[key], f"{where}: .{key}", rtol)

    @rule(data=st.data())
    def forward(self, data):
        pair = self._pick(data)
        spec = SPECS[pair.name]
        dtype = data.draw(st.sampled_from([np.float64] * 4 + [np.float32, np.int32]),
                          label="dtype")
        variant = data.draw(st.integers(0, 2), label="variant")
        dims = dict(pair.dims)
        if data.draw(st.integers(0, 9), label="wrong size") == 0:
            key = data.draw(st.sampled_from(sorted(dims)), label="size changed")
            if isinstance(dims[key], int):
                dims[key] = max(1, dims[key] + data.draw(st.sampled_from([-1, 1]), label="by"))
        rng = np.random.default_rng(data.draw(st.integers(0, 2 ** 32 - 1), label="seed"))
        args = spec.forward_args(rng, dims, dtype, variant)
        kwargs = {}
        if spec.train_flag:
            kwargs["train_flg"] = data.draw(st.booleans(), label="train_flg")
        fast_args = copy.deepcopy(args)
        ref_args = copy.deepcopy(args)
        rtol = tolerance(args, pair.ref)
        fast = call(pair.fast.forward, *fast_args, **kwargs)
        ref = call(pair.ref.forward, *ref_args, **kwargs)
        STEPS[0] += 1
        where = f"{pair.name}.forward{tuple(np.shape(a) for a in args)} {kwargs}"
        same_outcome(fast, ref, where, rtol)
        for given, passed in zip(args, fast_args):
            np.testing.assert_array_equal(passed, given, err_msg=f"{where} changed its input")
        if ref[0] == "returns":
            pair.inputs = (fast_args, ref_args)
            pair.out_shape = np.shape(ref[1])
        self._check_state(pair, where, rtol)

    @rule(data=st.data())
    def backward(self, data):
        pair = self._pick(data)
        rng = np.random.default_rng(data.draw(st.integers(0, 2 ** 32 - 1), label="seed"))
        if pair.name == "SoftmaxWithLoss":
            dout = data.draw(st.sampled_from([1, 2.5, np.float32(0.5), np.array(1.0),
                                              np.ones(2), True, "1"]), label="dout")
        else:
            shape = pair.out_shape if pair.out_shape is not None else (2, 3)
            if data.draw(st.integers(0, 9), label="wrong shape") == 0:
                shape = tuple(shape)[:-1] + (max(1, shape[-1] + 1),) if shape else (2,)
            dtype = data.draw(st.sampled_from([np.float64] * 4 + [np.float32, np.int32]),
                              label="dtype")
            dout = _normal(rng, shape, dtype)
        fast_dout, ref_dout = copy.deepcopy(dout), copy.deepcopy(dout)
        rtol = tolerance(dout, pair.ref, pair.inputs and pair.inputs[1])
        fast = call(pair.fast.backward, fast_dout)
        ref = call(pair.ref.backward, ref_dout)
        STEPS[0] += 1
        where = f"{pair.name}.backward({np.shape(dout)} {np.asarray(dout).dtype})"
        same_outcome(fast, ref, where, rtol)
        if isinstance(dout, np.ndarray):
            np.testing.assert_array_equal(fast_dout, dout, err_msg=f"{where} changed dout")
        self._check_state(pair, where, rtol)

    @rule(data=st.data())
    def reassign_attribute(self, data):
        pair = self._pick(data)
        names = sorted(public_state(pair.ref))
        if not names:
            return
        name = data.draw(st.sampled_from(names), label="attribute")
        rng = np.random.default_rng(data.draw(st.integers(0, 2 ** 16), label="seed"))
        candidates = replacements(getattr(pair.ref, name), rng)
        if not candidates:
            return
        value = data.draw(st.sampled_from(candidates), label=f"new {name}")
        setattr(pair.fast, name, copy.deepcopy(value))
        setattr(pair.ref, name, copy.deepcopy(value))
        STEPS[0] += 1

    @rule(data=st.data())
    def change_an_attribute_in_place(self, data):
        pair = self._pick(data)
        names = [k for k, v in sorted(public_state(pair.ref).items())
                 if in_place_changes(v) and isinstance(getattr(pair.fast, k), np.ndarray)
                 and getattr(pair.fast, k).shape == v.shape
                 and getattr(pair.fast, k).dtype == v.dtype
                 and getattr(pair.fast, k).flags.writeable]
        if not names:
            return
        name = data.draw(st.sampled_from(names), label="attribute")
        changes = in_place_changes(getattr(pair.ref, name))
        change = changes[data.draw(st.integers(0, len(changes) - 1), label="change")]
        fast_value, ref_value = getattr(pair.fast, name), getattr(pair.ref, name)
        if fast_value is ref_value or np.shares_memory(fast_value, ref_value):
            return
        change(fast_value)
        change(ref_value)
        STEPS[0] += 1

    @rule(data=st.data())
    def change_an_input_in_place(self, data):
        pair = self._pick(data)
        if pair.inputs is None:
            return
        fast_args, ref_args = pair.inputs
        index = data.draw(st.integers(0, len(ref_args) - 1), label="argument")
        changes = in_place_changes(ref_args[index])
        if not changes:
            return
        change = changes[data.draw(st.integers(0, len(changes) - 1), label="change")]
        change(fast_args[index])
        change(ref_args[index])
        STEPS[0] += 1

    @rule(data=st.data())
    def copy_the_layer(self, data):
        pair = self._pick(data)
        how = data.draw(st.sampled_from(["deepcopy", "pickle"]), label="copy")
        duplicate = copy.deepcopy if how == "deepcopy" else \
            (lambda obj: pickle.loads(pickle.dumps(obj)))
        # both layers with the inputs they hold, as one object graph each
        pair.fast, fast_args = duplicate((pair.fast, pair.inputs and pair.inputs[0]))
        pair.ref, ref_args = duplicate((pair.ref, pair.inputs and pair.inputs[1]))
        if pair.inputs is not None:
            pair.inputs = (fast_args, ref_args)
        STEPS[0] += 1
        self._check_state(pair, f"{pair.name} after {how}")


def run(max_examples, steps_per_example, derandomize=True):
    """Run the machine; returns the number of calls and changes made."""
    STEPS[0] = 0
    run_state_machine_as_test(LayerStateMachine, settings=settings(
        max_examples=max_examples, stateful_step_count=steps_per_example, deadline=None,
        derandomize=derandomize, database=None, print_blob=True,
        suppress_health_check=list(HealthCheck)))
    return STEPS[0]


if __name__ == "__main__":
    import faulthandler
    import time
    faulthandler.enable()
    examples = int(sys.argv[1]) if len(sys.argv) > 1 else 200
    steps = int(sys.argv[2]) if len(sys.argv) > 2 else 100
    start = time.perf_counter()
    total = run(examples, steps, derandomize=sys.argv[3:4] != ["random"])
    print(f"statefuzz: {total} steps in {examples} examples, "
          f"{time.perf_counter() - start:.1f} s")
