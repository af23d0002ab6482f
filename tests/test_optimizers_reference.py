"""fastbp.reference.optimizers against the book's formulas, written out here
element by element in plain Python floats (no NumPy in-place arithmetic)."""
import math

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from fastbp.reference import optimizers as O


# ---------------------------------------------------------------------------
# Independent per-element implementations of the book's formulas.
# Each takes a scalar parameter and a list of scalar gradients (one per step)
# and returns the parameter after all steps.
# ---------------------------------------------------------------------------
def expected_sgd(p, gs, lr):
    for g in gs:
        p = p - lr * g
    return p


def expected_momentum(p, gs, lr, m):
    v = 0.0
    for g in gs:
        v = m * v - lr * g
        p = p + v
    return p


def expected_nesterov(p, gs, lr, m):
    v = 0.0
    for g in gs:
        p = p + m * m * v
        p = p - (1 + m) * lr * g
        v = v * m
        v = v - lr * g
    return p


def expected_adagrad(p, gs, lr):
    h = 0.0
    for g in gs:
        h = h + g * g
        p = p - lr * g / (math.sqrt(h) + 1e-7)
    return p


def expected_rmsprop(p, gs, lr, decay):
    h = 0.0
    for g in gs:
        h = h * decay
        h = h + (1 - decay) * g * g
        p = p - lr * g / (math.sqrt(h) + 1e-7)
    return p


def expected_adam(p, gs, lr, b1, b2):
    m = v = 0.0
    for it, g in enumerate(gs, start=1):
        lr_t = lr * math.sqrt(1.0 - b2 ** it) / (1.0 - b1 ** it)
        m = m + (1 - b1) * (g - m)
        v = v + (1 - b2) * (g * g - v)
        p = p - lr_t * m / (math.sqrt(v) + 1e-7)
    return p


CASES = [
    (O.SGD, {"lr": 0.1}, lambda p, gs: expected_sgd(p, gs, 0.1)),
    (O.Momentum, {"lr": 0.05, "momentum": 0.8},
     lambda p, gs: expected_momentum(p, gs, 0.05, 0.8)),
    (O.Nesterov, {"lr": 0.05, "momentum": 0.7},
     lambda p, gs: expected_nesterov(p, gs, 0.05, 0.7)),
    (O.AdaGrad, {"lr": 0.3}, lambda p, gs: expected_adagrad(p, gs, 0.3)),
    (O.RMSprop, {"lr": 0.02, "decay_rate": 0.9},
     lambda p, gs: expected_rmsprop(p, gs, 0.02, 0.9)),
    (O.Adam, {"lr": 0.01, "beta1": 0.8, "beta2": 0.95},
     lambda p, gs: expected_adam(p, gs, 0.01, 0.8, 0.95)),
]
IDS = [c[0].__name__ for c in CASES]


def make_problem(seed=0, steps=5):
    rng = np.random.default_rng(seed)
    params = {"W": rng.standard_normal((3, 4)), "b": rng.standard_normal(4)}
    grads = [{"W": rng.standard_normal((3, 4)), "b": rng.standard_normal(4)}
             for _ in range(steps)]
    return params, grads


def expected_params(params, grad_steps, formula):
    out = {}
    for key, p0 in params.items():
        flat = [formula(float(p0.flat[i]), [float(g[key].flat[i]) for g in grad_steps])
                for i in range(p0.size)]
        out[key] = np.array(flat).reshape(p0.shape)
    return out


@pytest.mark.parametrize("cls,hyper,formula", CASES, ids=IDS)
def test_update_matches_book_formula_over_several_steps(cls, hyper, formula):
    params, grad_steps = make_problem()
    initial = {k: v.copy() for k, v in params.items()}
    want = expected_params(initial, grad_steps, formula)
    opt = cls(**hyper)
    for grads in grad_steps:
        opt.update(params, grads)
    for key in params:
        np.testing.assert_allclose(params[key], want[key], rtol=1e-12, atol=1e-12)
        assert not np.array_equal(params[key], initial[key])


@pytest.mark.parametrize("cls,hyper,formula", CASES, ids=IDS)
def test_update_is_in_place(cls, hyper, formula):
    params, grad_steps = make_problem(1, steps=1)
    arrays = dict(params)
    view = params["W"][0]          # a view must see the update
    before = view.copy()
    cls(**hyper).update(params, grad_steps[0])
    for key in arrays:
        assert params[key] is arrays[key]
    assert not np.array_equal(view, before)


def test_default_hyperparameters_are_the_books():
    assert O.SGD().lr == 0.01
    assert (O.Momentum().lr, O.Momentum().momentum) == (0.01, 0.9)
    assert (O.Nesterov().lr, O.Nesterov().momentum) == (0.01, 0.9)
    assert O.AdaGrad().lr == 0.01
    assert (O.RMSprop().lr, O.RMSprop().decay_rate) == (0.01, 0.99)
    adam = O.Adam()
    assert (adam.lr, adam.beta1, adam.beta2) == (0.001, 0.9, 0.999)


def test_default_adam_matches_formula():
    params, grad_steps = make_problem(2, steps=4)
    want = expected_params({k: v.copy() for k, v in params.items()}, grad_steps,
                           lambda p, gs: expected_adam(p, gs, 0.001, 0.9, 0.999))
    opt = O.Adam()
    for grads in grad_steps:
        opt.update(params, grads)
    assert opt.iter == 4
    assert opt.lr_t == pytest.approx(0.001 * math.sqrt(1 - 0.999 ** 4) / (1 - 0.9 ** 4),
                                     rel=1e-15)
    for key in params:
        np.testing.assert_allclose(params[key], want[key], rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("cls,names", [(O.Momentum, ("v",)), (O.Nesterov, ("v",)),
                                       (O.AdaGrad, ("h",)), (O.RMSprop, ("h",)),
                                       (O.Adam, ("m", "v"))])
def test_state_is_created_lazily_per_key(cls, names):
    opt = cls()
    for name in names:
        assert getattr(opt, name) == {}
    params = {"a": np.ones((2, 3), dtype=np.float32), "b": np.ones(3, dtype=np.float32)}
    grads = {"a": np.full((2, 3), 0.5, dtype=np.float32), "b": np.ones(3, dtype=np.float32)}
    opt.update(params, grads)
    for name in names:
        state = getattr(opt, name)
        assert set(state) == {"a", "b"}
        assert state["a"].shape == (2, 3) and state["a"].dtype == np.float32
        assert np.any(state["a"] != 0)
    assert all(p.dtype == np.float32 for p in params.values())


@pytest.mark.parametrize("cls,hyper,formula", CASES, ids=IDS)
def test_float32_params_stay_float32_and_close(cls, hyper, formula):
    params64, grad_steps = make_problem(3, steps=3)
    params32 = {k: v.astype(np.float32) for k, v in params64.items()}
    grads32 = [{k: v.astype(np.float32) for k, v in g.items()} for g in grad_steps]
    opt32, opt64 = cls(**hyper), cls(**hyper)
    for g32, g64 in zip(grads32, grad_steps):
        opt32.update(params32, g32)
        opt64.update(params64, g64)
    for key in params32:
        assert params32[key].dtype == np.float32
        np.testing.assert_allclose(params32[key], params64[key], rtol=1e-4, atol=1e-5)


# -- validation ----------------------------------------------------------------
def _one_valid_step(opt):
    params, grad_steps = make_problem(4, steps=1)
    opt.update(params, grad_steps[0])
    return params


def _snapshot(opt, params):
    state = {name: {k: v.copy() for k, v in getattr(opt, name).items()}
             for name in opt._state_names}
    return {k: v.copy() for k, v in params.items()}, state, getattr(opt, "iter", None)


def _assert_unchanged(opt, params, snap):
    p0, state0, iter0 = snap
    for k in params:
        assert np.array_equal(params[k], p0[k])
    for name, store in state0.items():
        assert set(getattr(opt, name)) == set(store)
        for k in store:
            assert np.array_equal(getattr(opt, name)[k], store[k])
    assert getattr(opt, "iter", None) == iter0


@pytest.mark.parametrize("cls", [c[0] for c in CASES], ids=IDS)
def test_missing_key_raises_and_changes_nothing(cls):
    opt = cls()
    params = _one_valid_step(opt)
    snap = _snapshot(opt, params)
    grads = {"W": np.ones((3, 4))}
    with pytest.raises(ValueError, match=r"missing \['b'\]"):
        opt.update(params, grads)
    _assert_unchanged(opt, params, snap)


@pytest.mark.parametrize("cls", [c[0] for c in CASES], ids=IDS)
def test_extra_key_raises_and_changes_nothing(cls):
    opt = cls()
    params = _one_valid_step(opt)
    snap = _snapshot(opt, params)
    grads = {"W": np.ones((3, 4)), "b": np.ones(4), "c": np.ones(2)}
    with pytest.raises(ValueError, match=r"unexpected \['c'\]"):
        opt.update(params, grads)
    _assert_unchanged(opt, params, snap)


@pytest.mark.parametrize("cls", [c[0] for c in CASES], ids=IDS)
def test_shape_mismatch_in_last_key_raises_and_changes_nothing(cls):
    opt = cls()
    params = _one_valid_step(opt)
    snap = _snapshot(opt, params)
    # 'W' is valid and comes first: it must not be updated either
    grads = {"W": np.ones((3, 4)), "b": np.ones(5)}
    with pytest.raises(ValueError) as err:
        opt.update(params, grads)
    msg = str(err.value)
    assert "'b'" in msg and "(4,)" in msg and "(5,)" in msg
    _assert_unchanged(opt, params, snap)


def test_shape_mismatch_on_first_update_creates_no_state():
    opt = O.Adam()
    params = {"W": np.zeros((2, 2)), "b": np.zeros(2)}
    with pytest.raises(ValueError):
        opt.update(params, {"W": np.ones((2, 2)), "b": np.ones((2, 1))})
    assert opt.m == {} and opt.v == {} and opt.iter == 0
    assert np.all(params["W"] == 0)


@pytest.mark.parametrize("bad", [np.arange(4), np.arange(4).tolist(), np.ones(4, dtype=bool)])
def test_non_float_params_raise_type_error(bad):
    params = {"W": np.zeros(4), "b": bad}
    with pytest.raises(TypeError, match=r"params\['b'\]"):
        O.SGD().update(params, {"W": np.ones(4), "b": np.ones(4)})
    assert np.all(params["W"] == 0)


def test_read_only_param_raises_before_updating_anything():
    W = np.zeros(3)
    b = np.zeros(3)
    b.flags.writeable = False
    with pytest.raises(ValueError, match="read-only"):
        O.Momentum().update({"W": W, "b": b}, {"W": np.ones(3), "b": np.ones(3)})
    assert np.all(W == 0)


def test_non_dict_arguments_raise_type_error():
    with pytest.raises(TypeError, match="params"):
        O.SGD().update([np.zeros(2)], {"a": np.zeros(2)})
    with pytest.raises(TypeError, match="grads"):
        O.SGD().update({"a": np.zeros(2)}, [np.zeros(2)])


def test_optimizer_reused_on_other_shapes_raises():
    opt = O.Momentum()
    opt.update({"W": np.zeros((2, 2))}, {"W": np.ones((2, 2))})
    with pytest.raises(ValueError, match=r"params\['W'\]"):
        opt.update({"W": np.zeros((3, 2))}, {"W": np.ones((3, 2))})


def test_grad_as_list_is_accepted():
    params = {"w": np.array([1.0, 2.0])}
    O.SGD(lr=0.5).update(params, {"w": [2.0, 2.0]})
    assert params["w"].tolist() == [0.0, 1.0]


@pytest.mark.parametrize("cls,arg", [(O.SGD, "lr"), (O.Momentum, "lr"), (O.Momentum, "momentum"),
                                     (O.Nesterov, "momentum"), (O.AdaGrad, "lr"),
                                     (O.RMSprop, "decay_rate"), (O.Adam, "lr"),
                                     (O.Adam, "beta1"), (O.Adam, "beta2")])
@pytest.mark.parametrize("value", [-0.1, float("nan"), float("inf"), "0.1", None, True])
def test_bad_hyperparameters_raise_naming_the_argument(cls, arg, value):
    with pytest.raises(ValueError, match=arg):
        cls(**{arg: value})


@pytest.mark.parametrize("cls,arg,value", [(O.Adam, "beta1", 1.0), (O.Adam, "beta2", 1.0),
                                           (O.RMSprop, "decay_rate", 1.5)])
def test_out_of_range_rates_raise(cls, arg, value):
    with pytest.raises(ValueError, match=arg):
        cls(**{arg: value})


def test_zero_learning_rate_is_allowed_and_is_a_no_op():
    params = {"w": np.array([1.0, -2.0])}
    O.SGD(lr=0).update(params, {"w": np.array([5.0, 5.0])})
    assert params["w"].tolist() == [1.0, -2.0]


# -- subclass hooks --------------------------------------------------------------
def test_hooks_called_after_validation_in_key_order():
    calls = []

    class Recording(O.SGD):
        def _begin_step(self):
            calls.append("begin")

        def _update_one(self, key, param, grad):
            calls.append(key)
            super()._update_one(key, param, grad)

    opt = Recording(lr=1.0)
    params = {"z": np.zeros(2), "a": np.zeros(1)}
    with pytest.raises(ValueError):
        opt.update(params, {"z": np.ones(2), "a": np.ones(3)})
    assert calls == []
    opt.update(params, {"z": np.ones(2), "a": np.ones(1)})
    assert calls == ["begin", "z", "a"]
    assert params["z"].tolist() == [-1.0, -1.0]


# -- registry ----------------------------------------------------------------------
def test_registry_names():
    assert O.OPTIMIZERS == {"sgd": O.SGD, "momentum": O.Momentum, "nesterov": O.Nesterov,
                            "adagrad": O.AdaGrad, "rmsprop": O.RMSprop, "adam": O.Adam}


@pytest.mark.parametrize("name,cls", [("SGD", O.SGD), ("sgd", O.SGD), ("Momentum", O.Momentum),
                                      ("NESTEROV", O.Nesterov), ("AdaGrad", O.AdaGrad),
                                      ("RMSprop", O.RMSprop), ("adam", O.Adam)])
def test_get_optimizer_by_name_case_insensitive(name, cls):
    opt = O.get_optimizer(name, lr=0.5)
    assert type(opt) is cls and opt.lr == 0.5


def test_get_optimizer_unknown_name_lists_valid_names():
    with pytest.raises(ValueError) as err:
        O.get_optimizer("rmsprpo")
    for name in O.OPTIMIZERS:
        assert name in str(err.value)
    assert "rmsprpo" in str(err.value)


def test_get_optimizer_instance_and_class():
    adam = O.Adam(lr=0.1)
    assert O.get_optimizer(adam) is adam
    with pytest.raises(ValueError):
        O.get_optimizer(adam, lr=0.2)
    m = O.get_optimizer(O.Momentum, momentum=0.5)
    assert isinstance(m, O.Momentum) and m.momentum == 0.5
    with pytest.raises(TypeError):
        O.get_optimizer(3)
    with pytest.raises(TypeError):
        O.get_optimizer("sgd", learning_rate=0.1)


def test_resolve_optimizer_uses_the_given_registry():
    class MySGD(O.SGD):
        pass

    opt = O.resolve_optimizer({"sgd": MySGD}, "SGD", lr=0.3)
    assert type(opt) is MySGD and opt.lr == 0.3
    with pytest.raises(ValueError, match="'sgd'"):
        O.resolve_optimizer({"sgd": MySGD}, "adam")


# -- property test -------------------------------------------------------------------
finite = st.floats(-10, 10, allow_nan=False, allow_subnormal=False)


@settings(max_examples=60, deadline=None)
@given(p=finite, gs=st.lists(finite, min_size=1, max_size=6),
       lr=st.floats(0, 1, allow_subnormal=False), m=st.floats(0, 0.99, allow_subnormal=False),
       b1=st.floats(0, 0.99, allow_subnormal=False), b2=st.floats(0, 0.999, allow_subnormal=False))
def test_property_scalar_updates_match_formulas(p, gs, lr, m, b1, b2):
    makers = [(O.Momentum(lr=lr, momentum=m), expected_momentum(p, gs, lr, m)),
              (O.Nesterov(lr=lr, momentum=m), expected_nesterov(p, gs, lr, m)),
              (O.AdaGrad(lr=lr), expected_adagrad(p, gs, lr)),
              (O.RMSprop(lr=lr, decay_rate=m), expected_rmsprop(p, gs, lr, m)),
              (O.Adam(lr=lr, beta1=b1, beta2=b2), expected_adam(p, gs, lr, b1, b2))]
    for opt, want in makers:
        params = {"x": np.array([p])}
        for g in gs:
            opt.update(params, {"x": np.array([g])})
        assert params["x"][0] == pytest.approx(want, rel=1e-12, abs=1e-12), type(opt).__name__
