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


# ---------------------------------------------------------------------------
# The report: compare_gradients, GradientCheckReport
# ---------------------------------------------------------------------------

def test_compare_gradients_errors_per_key():
    backprop = {"W": np.array([[1.0, 2.0], [0.0, -4.0]]), "b": np.array([0.5], np.float32)}
    numerical = {"b": np.array([0.5]), "W": np.array([[1.0, 3.0], [0.0, -4.0]])}
    report = G.compare_gradients(backprop, numerical)
    assert isinstance(report, G.GradientCheckReport) and isinstance(report, dict)
    assert list(report) == ["W", "b"]                       # the backprop order
    assert report["W"] == {"mean_abs_diff": 0.25, "max_rel_error": 0.2, "checked": 4}
    assert report["b"] == {"mean_abs_diff": 0.0, "max_rel_error": 0.0, "checked": 1}
    assert report.total == report.checked == 5
    assert report.max_entries is None and report.scope == "all 5 entries"


def test_compare_gradients_rejects_other_keys_or_shapes():
    a = {"W": np.zeros((2, 3)), "b": np.zeros(3)}
    with pytest.raises(ValueError, match="grad_numerical: expected the keys"):
        G.compare_gradients(a, {"W": np.zeros((2, 3))})
    with pytest.raises(ValueError, match=r"grad_numerical\['b'\]: expected shape \(3,\)"):
        G.compare_gradients(a, {"W": np.zeros((2, 3)), "b": np.zeros(4)})


def test_compare_gradients_is_gradient_check_over_every_entry():
    net = TwoLayerNet(5, 4, 3, weight_init_std=1.0, seed=0)
    x, t = batch()
    book = G.compare_gradients(net.gradient(x, t), net.numerical_gradient(x, t))
    every = G.gradient_check(net, x, t, max_entries=10**6)
    assert list(book) == list(every) == list(net.params)
    assert book.scope == every.scope == "all 39 entries"      # 5*4 + 4 + 4*3 + 3
    for key in net.params:
        assert book[key]["checked"] == every[key]["checked"] == net.params[key].size
        assert book[key]["mean_abs_diff"] < 1e-8 and every[key]["mean_abs_diff"] < 1e-8


def test_report_of_a_sample_names_its_size_and_seed():
    net = MultiLayerNet(40, [30], 3, seed=0)
    report = G.gradient_check(net, *batch(d=40), max_entries=50, seed=3)
    assert (report.total, report.checked) == (1200 + 30 + 90 + 3, 50 + 30 + 50 + 3)
    assert (report.max_entries, report.seed) == (50, 3)
    assert report.scope == ("133 of 1323 entries (at most 50 per parameter, drawn at "
                            "random with seed 3)")


def test_report_verdict_and_printed_form():
    report = G.GradientCheckReport(
        {"W1": {"mean_abs_diff": 2e-10, "max_rel_error": 3e-7, "checked": 6},
         "b1": {"mean_abs_diff": float("nan"), "max_rel_error": float("nan"), "checked": 2},
         "W2": {"mean_abs_diff": 5e-3, "max_rel_error": 0.5, "checked": 4}}, total=12)
    assert report.failed(1e-9) == ["b1", "W2"]             # NaN fails too
    assert not report.passed(1e-9) and report.failed(1.0) == ["b1"]
    assert report.format(1e-9).splitlines() == [
        "W1: mean |diff| = 2.0e-10, max rel = 3.0e-07",
        "b1: mean |diff| = nan, max rel = nan  <-- FAILED",
        "W2: mean |diff| = 5.0e-03, max rel = 5.0e-01  <-- FAILED",
        "gradient check FAILED: mean |diff| > 1e-09 for b1, W2",
    ]
    assert str(report) == report.format() == "\n".join(report.format(1e-9).splitlines()[:3]) \
        .replace("  <-- FAILED", "")
    del report["b1"], report["W2"]
    assert report.passed(1e-9)
    assert report.format(1e-9).splitlines()[-1] == \
        "gradient check passed: every mean |diff| <= 1e-09"
