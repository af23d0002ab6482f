"""Every optimizer, reference and compiled, against the book's current
``common/optimizer.py``: a transcription of its formulas here (NumPy, the
book's order of operations), and the book's own module when it is beside
the repository.  float64, several steps, within 1e-12."""
import math

import numpy as np
import pytest

import fastbp.optimizers as fast_optimizers
import fastbp.reference.optimizers as ref_optimizers
from bookcode import load_book_module, requires_book

MODULES = pytest.mark.parametrize("O", [fast_optimizers, ref_optimizers],
                                  ids=["compiled", "reference"])
STEPS = 7


# ---------------------------------------------------------------------------
# The book's formulas, one step over every key, state in a dict per optimizer
# ---------------------------------------------------------------------------
def book_sgd(params, grads, state, lr=0.01):
    for key in params:
        params[key] -= lr * grads[key]


def book_momentum(params, grads, state, lr=0.01, momentum=0.9):
    v = state.setdefault("v", {k: np.zeros_like(p) for k, p in params.items()})
    for key in params:
        v[key] = momentum * v[key] - lr * grads[key]
        params[key] += v[key]


def book_nesterov(params, grads, state, lr=0.01, momentum=0.9):
    # the parameter moves with the previous velocity, then the velocity updates
    v = state.setdefault("v", {k: np.zeros_like(p) for k, p in params.items()})
    for key in params:
        params[key] += momentum * momentum * v[key]
        params[key] -= (1 + momentum) * lr * grads[key]
        v[key] *= momentum
        v[key] -= lr * grads[key]


def book_adagrad(params, grads, state, lr=0.01):
    h = state.setdefault("h", {k: np.zeros_like(p) for k, p in params.items()})
    for key in params:
        h[key] += grads[key] * grads[key]
        params[key] -= lr * grads[key] / (np.sqrt(h[key]) + 1e-7)


def book_rmsprop(params, grads, state, lr=0.01, decay_rate=0.99):
    h = state.setdefault("h", {k: np.zeros_like(p) for k, p in params.items()})
    for key in params:
        h[key] *= decay_rate
        h[key] += (1 - decay_rate) * grads[key] * grads[key]
        params[key] -= lr * grads[key] / (np.sqrt(h[key]) + 1e-7)


def book_adam(params, grads, state, lr=0.001, beta1=0.9, beta2=0.999):
    m = state.setdefault("m", {k: np.zeros_like(p) for k, p in params.items()})
    v = state.setdefault("v", {k: np.zeros_like(p) for k, p in params.items()})
    state["iter"] = state.get("iter", 0) + 1
    it = state["iter"]
    lr_t = lr * math.sqrt(1.0 - beta2 ** it) / (1.0 - beta1 ** it)
    for key in params:
        m[key] += (1 - beta1) * (grads[key] - m[key])
        v[key] += (1 - beta2) * (grads[key] ** 2 - v[key])
        params[key] -= lr_t * m[key] / (np.sqrt(v[key]) + 1e-7)


CASES = [  # (class name, hyperparameters, the book's step)
    ("SGD", {"lr": 0.1}, book_sgd),
    ("Momentum", {"lr": 0.05, "momentum": 0.8}, book_momentum),
    ("Nesterov", {"lr": 0.05, "momentum": 0.7}, book_nesterov),
    ("Nesterov", {}, book_nesterov),
    ("AdaGrad", {"lr": 0.3}, book_adagrad),
    ("RMSprop", {"lr": 0.02, "decay_rate": 0.9}, book_rmsprop),
    ("Adam", {"lr": 0.01, "beta1": 0.8, "beta2": 0.95}, book_adam),
    ("Adam", {}, book_adam),
]
IDS = [f"{name}{'-defaults' if not hyper else ''}" for name, hyper, _ in CASES]


def problem(seed, steps=STEPS):
    """Parameters of a small net (odd sizes, a 4-D one) and a gradient per step."""
    rng = np.random.default_rng(seed)
    shapes = {"W1": (7, 5), "b1": (5,), "W2": (3, 2, 3, 3), "b2": (1,)}
    params = {k: rng.standard_normal(s) for k, s in shapes.items()}
    grads = [{k: rng.standard_normal(s) for k, s in shapes.items()} for _ in range(steps)]
    return params, grads


def run_fastbp(O, name, hyper, params, grad_steps):
    opt = getattr(O, name)(**hyper)
    trajectory = []
    for grads in grad_steps:
        opt.update(params, grads)
        trajectory.append({k: p.copy() for k, p in params.items()})
    return trajectory


def run_book_step(step, hyper, params, grad_steps):
    state, trajectory = {}, []
    for grads in grad_steps:
        step(params, grads, state, **hyper)
        trajectory.append({k: p.copy() for k, p in params.items()})
    return trajectory


def assert_same_trajectory(got, want):
    assert len(got) == len(want)
    for i, (g, w) in enumerate(zip(got, want)):
        for key in w:
            np.testing.assert_allclose(g[key], w[key], rtol=1e-12, atol=1e-12,
                                       err_msg=f"step {i + 1}, {key}")


@pytest.mark.parametrize("name,hyper,step", CASES, ids=IDS)
@MODULES
def test_matches_the_books_formulas_over_several_steps(O, name, hyper, step):
    params, grad_steps = problem(0)
    want = run_book_step(step, hyper, {k: p.copy() for k, p in params.items()}, grad_steps)
    got = run_fastbp(O, name, hyper, params, grad_steps)
    assert_same_trajectory(got, want)
    # the steps move the parameters: a test an optimizer doing nothing would fail
    assert not np.allclose(want[-1]["W1"], want[0]["W1"])


@MODULES
def test_nesterov_differs_from_updating_the_velocity_first(O):
    """fastbp used to update v before p, which gives other parameters from
    the second step on; the book's order is the one kept."""
    params, grad_steps = problem(1, steps=2)
    got = run_fastbp(O, "Nesterov", {"lr": 0.1, "momentum": 0.9}, params, grad_steps)
    p0 = problem(1, steps=2)[0]
    velocity_first = {}
    for key, p in p0.items():
        v = np.zeros_like(p)
        for grads in grad_steps:
            v = 0.9 * v - 0.1 * grads[key]
            p = p + 0.81 * v - 1.9 * 0.1 * grads[key]
        velocity_first[key] = p
    assert not np.allclose(got[-1]["W1"], velocity_first["W1"], rtol=1e-6)


@requires_book
@pytest.mark.parametrize("name,hyper,step", CASES, ids=IDS)
@MODULES
def test_matches_the_books_own_optimizer_module(O, name, hyper, step):
    book = load_book_module("common/optimizer.py", "book_common_optimizer")
    params, grad_steps = problem(2)
    book_opt = getattr(book, name)(**hyper)
    book_params = {k: p.copy() for k, p in params.items()}
    want = []
    for grads in grad_steps:
        book_opt.update(book_params, grads)
        want.append({k: p.copy() for k, p in book_params.items()})
    assert_same_trajectory(run_fastbp(O, name, hyper, params, grad_steps), want)
    # and the transcription above is the book's module
    assert_same_trajectory(run_book_step(step, hyper, problem(2)[0], grad_steps), want)
