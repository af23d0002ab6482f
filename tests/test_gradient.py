"""fastbp.gradient: numerical_gradient, numerical_gradient_at, gradient_check."""
import numpy as np
import pytest

import fastbp.gradient as G
from fastbp.reference.networks import MultiLayerNet, TwoLayerNet


def batch(n=6, d=5, c=3, seed=1):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, d)), rng.integers(0, c, size=n)


def test_numerical_gradient_is_the_reference_one():
    from fastbp.reference.gradient import numerical_gradient
    assert G.numerical_gradient is numerical_gradient


def test_numerical_gradient_of_quadratic_and_restores_x():
    x = np.array([[3.0, -4.0], [0.5, 2.0]])
    saved = x.copy()
    grad = G.numerical_gradient(lambda v: np.sum(v ** 2) + v[0, 1] * v[1, 0], x)
    want = 2 * saved + np.array([[0.0, 0.5], [-4.0, 0.0]])
    np.testing.assert_allclose(grad, want, rtol=1e-8, atol=1e-8)
    np.testing.assert_array_equal(x, saved)
    assert grad.shape == x.shape and grad.dtype == x.dtype


@pytest.mark.parametrize("bad", [np.arange(4), np.array([1, 2], dtype=np.uint8), [1.0, 2.0]])
def test_numerical_gradient_rejects_non_float_arrays(bad):
    with pytest.raises(TypeError, match="x"):
        G.numerical_gradient(lambda v: 0.0, bad)


def test_numerical_gradient_at_selected_entries():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((4, 5))
    saved = x.copy()
    f = lambda v: float(np.sum(np.sin(v)) + np.prod(v[0, :2]))  # noqa: E731
    idx = np.array([0, 1, 7, 19])
    got = G.numerical_gradient_at(f, x, idx)
    full = G.numerical_gradient(f, x.copy())
    np.testing.assert_allclose(got, full.reshape(-1)[idx], rtol=1e-9, atol=1e-11)
    exact = np.cos(saved).reshape(-1)[idx] + np.array([saved[0, 1], saved[0, 0], 0, 0])
    np.testing.assert_allclose(got, exact, rtol=1e-7, atol=1e-9)
    np.testing.assert_array_equal(x, saved)
    assert got.dtype == np.float64 and got.shape == (4,)


def test_numerical_gradient_at_float32_uses_actual_step():
    x = np.array([1000.3, 0.2], dtype=np.float32)   # 1000.3 +- 1e-4 rounds in float32
    got = G.numerical_gradient_at(lambda v: 3.0 * float(v[0]) - 2.0 * float(v[1]), x, [0, 1])
    np.testing.assert_allclose(got, [3.0, -2.0], rtol=1e-6)
    assert x.dtype == np.float32 and x[0] == np.float32(1000.3)


def test_numerical_gradient_at_restores_on_error():
    x = np.array([1.0, 2.0, 3.0])
    calls = []

    def f(v):
        calls.append(v.copy())
        if len(calls) == 2:
            raise RuntimeError("boom")
        return 0.0

    with pytest.raises(RuntimeError):
        G.numerical_gradient_at(f, x, [1])
    assert x.tolist() == [1.0, 2.0, 3.0]
    assert calls[0][1] == 2.0 + 1e-4           # it did perturb


def test_numerical_gradient_at_validation():
    x = np.zeros(3)
    with pytest.raises(ValueError, match="indices"):
        G.numerical_gradient_at(lambda v: 0.0, x, [3])
    with pytest.raises(ValueError, match="indices"):
        G.numerical_gradient_at(lambda v: 0.0, x, [-1])
    with pytest.raises(TypeError, match="indices"):
        G.numerical_gradient_at(lambda v: 0.0, x, [0.5])
    with pytest.raises(TypeError, match="x"):
        G.numerical_gradient_at(lambda v: 0.0, np.zeros(3, dtype=int), [0])
    with pytest.raises(ValueError, match="h"):
        G.numerical_gradient_at(lambda v: 0.0, x, [0], h=0)
    with pytest.raises(ValueError, match="h"):
        G.numerical_gradient_at(lambda v: 0.0, np.array([1e9], dtype=np.float32), [0])


@pytest.mark.parametrize("net", [
    TwoLayerNet(5, 4, 3, weight_init_std=1.0, seed=0),
    MultiLayerNet(5, [6, 4], 3, activation="sigmoid", weight_decay_lambda=0.1, seed=1),
    MultiLayerNet(5, [6], 3, activation="relu", seed=2),
], ids=["two_layer", "multi_sigmoid_wd", "multi_relu"])
def test_gradient_check_small_errors_for_correct_nets(net):
    x, t = batch()
    saved = {k: v.copy() for k, v in net.params.items()}
    report = G.gradient_check(net, x, t)
    assert list(report) == list(net.params)
    for key, r in report.items():
        assert set(r) == {"mean_abs_diff", "max_rel_error", "checked"}
        assert r["checked"] == net.params[key].size
        assert isinstance(r["checked"], int) and isinstance(r["max_rel_error"], float)
        assert r["mean_abs_diff"] < 1e-8, key
        assert r["max_rel_error"] < 1e-6, key
        np.testing.assert_array_equal(net.params[key], saved[key])


def test_gradient_check_detects_a_corrupted_gradient(monkeypatch):
    net = MultiLayerNet(5, [6], 3, seed=2)
    x, t = batch()
    good = net.gradient

    def corrupted(x_, t_):
        grads = good(x_, t_)
        grads["W1"][1, 2] += 1e-2
        grads["b2"] *= 0.9
        return grads

    monkeypatch.setattr(net, "gradient", corrupted)
    report = G.gradient_check(net, x, t)
    assert report["W1"]["max_rel_error"] > 1e-3
    assert report["W1"]["mean_abs_diff"] > 1e-4
    assert report["b2"]["max_rel_error"] > 1e-2
    assert report["W2"]["max_rel_error"] < 1e-6
    assert report["b1"]["max_rel_error"] < 1e-6


def test_gradient_check_samples_large_params_reproducibly():
    net = MultiLayerNet(40, [30], 3, seed=0)       # W1 has 1200 entries
    x, t = batch(d=40)
    r1 = G.gradient_check(net, x, t, max_entries=50, seed=3)
    assert r1["W1"]["checked"] == 50 and r1["W2"]["checked"] == 50
    assert r1["b1"]["checked"] == 30 and r1["b2"]["checked"] == 3
    assert r1["W1"]["max_rel_error"] < 1e-6
    r2 = G.gradient_check(net, x, t, max_entries=50, seed=3)
    assert r1 == r2
    r3 = G.gradient_check(net, x, t, max_entries=50, seed=4)
    assert r3["W1"]["mean_abs_diff"] != r1["W1"]["mean_abs_diff"]
    default = G.gradient_check(net, x, t)
    assert default["W1"]["checked"] == G.DEFAULT_MAX_ENTRIES == 1000
    assert default["W2"]["checked"] == 90


def test_gradient_check_sampled_corruption_found_when_sampled(monkeypatch):
    net = MultiLayerNet(40, [30], 3, seed=0)
    x, t = batch(d=40)
    good = net.gradient

    def corrupted(x_, t_):
        grads = good(x_, t_)
        grads["W1"] += 1e-3          # every entry wrong: any sample sees it
        return grads

    monkeypatch.setattr(net, "gradient", corrupted)
    report = G.gradient_check(net, x, t, max_entries=20)
    assert report["W1"]["checked"] == 20
    assert report["W1"]["mean_abs_diff"] == pytest.approx(1e-3, rel=1e-3)


def test_gradient_check_float32_net_is_loose_but_sane():
    net = MultiLayerNet(5, [6], 3, seed=2, dtype=np.float32)
    x, t = batch()
    report = G.gradient_check(net, x.astype(np.float32), t, h=1e-2)
    for r in report.values():
        assert r["mean_abs_diff"] < 1e-3
    assert all(p.dtype == np.float32 for p in net.params.values())


@pytest.mark.parametrize("bad", [0, -3, 2.5, True])
def test_gradient_check_bad_max_entries(bad):
    net = TwoLayerNet(5, 4, 3, seed=0)
    with pytest.raises(ValueError, match="max_entries"):
        G.gradient_check(net, *batch(), max_entries=bad)


def test_gradient_check_wrong_keys(monkeypatch):
    net = TwoLayerNet(5, 4, 3, seed=0)
    monkeypatch.setattr(net, "gradient", lambda x, t: {"W1": np.zeros((5, 4))})
    with pytest.raises(ValueError, match="keys"):
        G.gradient_check(net, *batch())
