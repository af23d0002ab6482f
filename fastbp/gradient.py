"""Numerical gradients and gradient checking (the book's section 5.7.3).

``numerical_gradient(f, x, h=1e-4)`` is the book's central difference over
every entry of ``x`` (re-exported from ``fastbp.reference.gradient``).
``numerical_gradient_at(f, x, indices)`` does the same for selected entries
only.  Two checks return a :class:`GradientCheckReport`:

* ``gradient_check(net, x, t)`` compares a network's backprop ``gradient``
  with central differences, sampling the entries of large parameters so
  that checking an MNIST-sized network takes seconds;
* ``compare_gradients(grad_backprop, grad_numerical)`` compares two full
  gradient dicts, as the book's ``ch05/gradient_check.py`` does.

The report is the dict of per-parameter errors, with its verdict
(``report.passed(tol)``) and its printed form (``print(report.format(tol))``,
what ``fastbp gradcheck`` shows).
"""
import inspect
import numbers

import numpy as np

from .reference.gradient import numerical_gradient

__all__ = ["numerical_gradient", "numerical_gradient_at", "gradient_check",
           "compare_gradients", "GradientCheckReport", "DEFAULT_MAX_ENTRIES"]

#: entries checked per parameter by ``gradient_check`` when max_entries is None
DEFAULT_MAX_ENTRIES = 1000

_TINY = np.finfo(np.float64).tiny


def _check_float_array(name, x):
    if not isinstance(x, np.ndarray):
        raise TypeError(f"{name}: expected a floating numpy array, got {type(x).__name__}")
    if x.dtype.kind != "f":
        raise TypeError(f"{name}: expected a floating dtype, got {x.dtype}; "
                        "convert with x.astype(np.float64)")


def numerical_gradient_at(f, x, indices, h=1e-4):
    """Central-difference derivatives of ``f`` w.r.t. selected entries of ``x``.

    f: called as ``f(x)``, returns a scalar.  x: floating ndarray (any shape),
    changed in place during the call and restored exactly (also on error).
    indices: flat (C-order) indices into x, array-like of ints in [0, x.size).
    Returns a float64 array of len(indices): (f(x + h e_i) - f(x - h e_i))
    divided by the distance between the two perturbed values as stored in
    x's dtype (2h up to rounding; this keeps float32 parameters honest).
    """
    _check_float_array("x", x)
    idx = np.asarray(indices)
    if idx.size and idx.dtype.kind not in "iu":
        raise TypeError(f"indices: expected integer flat indices, got dtype {idx.dtype}")
    idx = idx.astype(np.intp).reshape(-1)
    if idx.size and (idx.min() < 0 or idx.max() >= x.size):
        bad = int(idx.min()) if idx.min() < 0 else int(idx.max())
        raise ValueError(f"indices: expected flat indices in [0, {x.size - 1}] for x of "
                         f"shape {x.shape}, got {bad}")
    h = float(h)
    if not np.isfinite(h) or h <= 0:
        raise ValueError(f"h: expected a finite positive step, got {h!r}")
    out = np.empty(idx.size, dtype=np.float64)
    for j, flat in enumerate(idx):
        pos = np.unravel_index(flat, x.shape)
        original = x[pos].copy()
        try:
            x[pos] = original + h
            plus = float(x[pos])
            f_plus = float(f(x))
            x[pos] = original - h
            minus = float(x[pos])
            f_minus = float(f(x))
        finally:
            x[pos] = original
        step = plus - minus
        if step == 0:
            raise ValueError(f"h: the step {h} vanishes at x[{pos}] = {float(original)!r} "
                             f"in {x.dtype}; use a larger h")
        out[j] = (f_plus - f_minus) / step
    return out


class GradientCheckReport(dict):
    """The result of a gradient check, per parameter and as a whole.

    A dict ``{param_name: {'mean_abs_diff': float, 'max_rel_error': float,
    'checked': int}}`` (see :func:`gradient_check`), plus:

    total
        entries in all the parameters; ``checked`` (a property) is how many
        of them were compared.
    max_entries, seed
        the per-parameter sample size and its seed, or None when every entry
        was compared (:func:`compare_gradients`).

    ``failed(tol)`` lists the parameters whose mean |difference| exceeds
    ``tol`` (NaN fails too), ``passed(tol)`` says whether none does, and
    ``format(tol)`` is the printable report: one line per parameter, then,
    with a ``tol``, the verdict.  ``str(report)`` is ``report.format()``.
    """

    def __init__(self, errors, *, total, max_entries=None, seed=None):
        super().__init__(errors)
        self.total = int(total)
        self.max_entries = max_entries
        self.seed = seed

    @property
    def checked(self):
        """Entries compared, over all parameters."""
        return sum(r["checked"] for r in self.values())

    @property
    def scope(self):
        """What was compared, e.g. 'all 7960 entries' or '130 of 39760 entries (...)'."""
        if self.checked == self.total:
            return f"all {self.total} entries"
        return (f"{self.checked} of {self.total} entries (at most {self.max_entries} per "
                f"parameter, drawn at random with seed {self.seed})")

    def failed(self, tol):
        """Names of the parameters whose mean |backprop - numerical| is not <= ``tol``."""
        return [key for key, r in self.items() if not r["mean_abs_diff"] <= tol]

    def passed(self, tol):
        """True when every parameter's mean |backprop - numerical| is <= ``tol``."""
        return not self.failed(tol)

    def format(self, tol=None):
        """The report as text: a line per parameter and, given ``tol``, the verdict."""
        failed = set() if tol is None else set(self.failed(tol))
        lines = [f"{key}: mean |diff| = {r['mean_abs_diff']:.1e}, max rel = "
                 f"{r['max_rel_error']:.1e}{'  <-- FAILED' if key in failed else ''}"
                 for key, r in self.items()]
        if tol is not None and failed:
            lines.append(f"gradient check FAILED: mean |diff| > {tol:g} for "
                         f"{', '.join(self.failed(tol))}")
        elif tol is not None:
            lines.append(f"gradient check passed: every mean |diff| <= {tol:g}")
        return "\n".join(lines)

    def __str__(self):
        return self.format()


def _errors(backprop, numerical):
    """mean |a - b|, max |a - b| / max(|a| + |b|, tiny) and the count, in float64."""
    a = np.asarray(backprop, dtype=np.float64).reshape(-1)
    b = np.asarray(numerical, dtype=np.float64).reshape(-1)
    diff = np.abs(a - b)
    rel = diff / np.maximum(np.abs(a) + np.abs(b), _TINY)
    return {
        "mean_abs_diff": float(diff.mean()) if diff.size else 0.0,
        "max_rel_error": float(rel.max()) if rel.size else 0.0,
        "checked": int(diff.size),
    }


def compare_gradients(grad_backprop, grad_numerical):
    """Compare two full gradients entry by entry, as the book's gradient check.

    grad_backprop, grad_numerical: dicts with the same keys (e.g.
    ``net.gradient(x, t)`` and ``net.numerical_gradient(x, t)``), arrays of
    the same shape under each key.  Returns a :class:`GradientCheckReport`
    over every entry (errors as in :func:`gradient_check`).
    """
    if set(grad_numerical) != set(grad_backprop):
        raise ValueError(f"grad_numerical: expected the keys of grad_backprop "
                         f"{list(grad_backprop)}, got {list(grad_numerical)}")
    errors = {}
    for key, a in grad_backprop.items():
        b = grad_numerical[key]
        if np.shape(a) != np.shape(b):
            raise ValueError(f"grad_numerical[{key!r}]: expected shape {np.shape(a)}, "
                             f"got {np.shape(b)}")
        errors[key] = _errors(a, b)
    return GradientCheckReport(errors, total=sum(r["checked"] for r in errors.values()))


def _training_loss(net, x, t):
    """f(_) = the loss ``net.gradient`` differentiates: ``net.loss(x, t)``, with
    ``train_flg=True`` when ``net.loss`` takes it."""
    try:
        takes_flag = "train_flg" in inspect.signature(net.loss).parameters
    except (TypeError, ValueError):           # no signature to read: the plain call
        takes_flag = False
    if takes_flag:
        return lambda _: net.loss(x, t, train_flg=True)
    return lambda _: net.loss(x, t)


def gradient_check(net, x, t, *, max_entries=None, seed=0, h=1e-4):
    """Compare ``net.gradient(x, t)`` (backprop) with central differences.

    net: any network with ``params`` (dict of floating ndarrays), ``loss(x, t)``
    and ``gradient(x, t)`` (e.g. ``TwoLayerNet``, ``MultiLayerNet``).  When
    ``net.loss`` takes ``train_flg`` (the book's ``MultiLayerNetExtend``) the
    loss is differentiated in training mode, as ``gradient`` is: batch
    statistics for batch norm (dropout would draw new masks at every
    evaluation: check a net without it).
    x, t: a (small) batch, as accepted by ``net.loss``.
    max_entries: entries checked per parameter (default ``DEFAULT_MAX_ENTRIES``
    = 1000); a larger parameter is checked on a random subset of that many
    entries drawn with ``np.random.default_rng(seed)``.  Pass
    ``max_entries=param.size`` (or more) to check everything.

    Returns a :class:`GradientCheckReport`: ``{param_name: {'mean_abs_diff':
    float, 'max_rel_error': float, 'checked': int}}`` with, over the checked
    entries, the mean of |a - b| and the max of |a - b| / max(|a| + |b|, tiny),
    a = backprop, b = numerical, both in float64.  For a correct float64 net
    expect mean_abs_diff below ~1e-8 and max_rel_error below ~1e-5 (ReLU
    kinks closer than h to an input can cause isolated larger errors).  A
    float32 net gives errors limited by float32 precision of the loss (~1e-3
    relative).  The parameters are restored exactly.
    """
    if max_entries is None:
        limit = DEFAULT_MAX_ENTRIES
    else:
        if isinstance(max_entries, bool) or not isinstance(max_entries, numbers.Integral) \
                or max_entries < 1:
            raise ValueError(f"max_entries: expected a positive integer or None, "
                             f"got {max_entries!r}")
        limit = int(max_entries)
    params = net.params
    analytic = net.gradient(x, t)
    if set(analytic) != set(params):
        raise ValueError(f"net.gradient: expected the keys of net.params {list(params)}, "
                         f"got {list(analytic)}")
    rng = np.random.default_rng(seed)
    f = _training_loss(net, x, t)
    errors = {}
    for key, param in params.items():
        _check_float_array(f"params[{key!r}]", param)
        a = np.asarray(analytic[key], dtype=np.float64)
        if a.shape != param.shape:
            raise ValueError(f"net.gradient[{key!r}]: expected shape {param.shape}, "
                             f"got {a.shape}")
        if param.size > limit:
            idx = np.sort(rng.choice(param.size, size=limit, replace=False))
        else:
            idx = np.arange(param.size)
        num = numerical_gradient_at(f, param, idx, h=h)
        errors[key] = _errors(a.reshape(-1)[idx], num)
    return GradientCheckReport(errors, total=sum(p.size for p in params.values()),
                               max_entries=limit, seed=seed)
