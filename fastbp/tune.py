"""Random hyperparameter search: the book's ``ch06/hyperparameter_optimization.py``.

The book trains ``MultiLayerNet`` (six hidden layers of 100 units, weight
decay, SGD, batch 100, 50 epochs) on 500 MNIST training images, of which 20 %
are held out for validation after shuffling; it draws the learning rate from
10**U(-6, -2) and the weight decay from 10**U(-8, -4), and sorts the trials
by their final validation accuracy.  ``random_search`` does the same, with
the trials run in parallel:

>>> from fastbp.tune import random_search
>>> result = random_search(8, epochs=5, n_jobs=2, seed=0)   # doctest: +SKIP
>>> print(result.table())                                   # doctest: +SKIP
>>> result.plot("trials.png")                               # doctest: +SKIP

Engines.  The trials go through joblib: ``n_jobs=None`` runs them one after
the other in this process (or on whatever ``joblib.parallel_config`` selects,
e.g. ``with parallel_config(backend="dask"):``), ``n_jobs=2`` on two local
worker processes (joblib's loky backend), ``-1`` on every core.
``scheduler="tcp://host:8786"`` (or a ``dask.distributed.Client``) runs them
on a Dask cluster through joblib's dask backend; ``pip install
'fastbp[dask]'``.  Start cluster workers with one thread each (``dask worker
ADDRESS --nthreads 1``, one worker per core): a trial is single-threaded.
Every trial runs with one BLAS/OpenMP thread (threadpoolctl) and
``fastbp.set_num_threads(1)``, so N workers on N cores don't oversubscribe.
In this process the thread limits are restored when the search ends.

Seeding.  Everything random comes from one master ``seed``:

* the validation split: ``np.random.default_rng(seed).permutation`` of the
  first ``n_samples`` images (the same split for every trial, as in the book);
* trial ``i``: ``np.random.SeedSequence(seed, spawn_key=(i,))`` (the i-th
  child of ``SeedSequence(seed).spawn``), itself spawned into three streams:
  the hyperparameter draw (two uniforms, mapped log-uniformly onto the
  ranges), the network's initial weights and the Trainer's batch order.

A trial's result therefore depends only on ``(seed, i)`` and the settings:
not on the number of workers, the engine or the order the trials finish in
(on one machine the numbers are bit-identical; workers on other CPUs may
differ in the last bits through their BLAS kernels).  ``run_trial`` or
``SearchResult.rerun(i)`` runs one trial again on its own.
"""
import contextlib
import dataclasses
import json
import math
import numbers
import socket
import time

import numpy as np

from . import _files
from .trainer import _check_int

__all__ = ["random_search", "run_trial", "validation_split", "check_plot_format",
           "connect_scheduler", "SearchConfig", "SearchResult", "Trial",
           "DEFAULT_LR_RANGE", "DEFAULT_WEIGHT_DECAY_RANGE"]

# the book's settings
DEFAULT_LR_RANGE = (1e-6, 1e-2)
DEFAULT_WEIGHT_DECAY_RANGE = (1e-8, 1e-4)
DEFAULT_HIDDEN = (100, 100, 100, 100, 100, 100)
DEFAULT_EPOCHS = 50
DEFAULT_BATCH = 100
DEFAULT_SAMPLES = 500
DEFAULT_VALIDATION_RATE = 0.2
DEFAULT_PLOT_TRIALS = 20            # the book plots the 20 best
PLOT_COLUMNS = 5

#: seconds to wait for a Dask scheduler to answer
CONNECT_TIMEOUT = 10.0
DASK_HINT = "the Dask engine needs dask.distributed: pip install 'fastbp[dask]'"
PLOT_HINT = "plotting needs matplotlib: pip install 'fastbp[plot]'"


# ---------------------------------------------------------------------------
# settings and results
# ---------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class SearchConfig:
    """Everything that decides a trial's result, besides the data and its index."""

    seed: int
    lr_range: tuple
    weight_decay_range: tuple
    hidden_size_list: tuple
    epochs: int
    batch_size: int
    optimizer: str
    dtype: str


@dataclasses.dataclass(frozen=True)
class Trial:
    """One trial: its hyperparameters and how the network trained.

    ``val_acc``/``train_acc``: accuracies after the last epoch (the book ranks
    by ``val_acc``); ``best_val_acc`` at ``best_epoch`` (1-based, the first
    epoch reaching it); ``val_acc_list``, ``train_acc_list``,
    ``loss_list`` (mean mini-batch loss of each epoch): one float per epoch.
    ``elapsed``: seconds the trial took (not part of equality).
    """

    index: int
    lr: float
    weight_decay: float
    val_acc: float
    train_acc: float
    best_val_acc: float
    best_epoch: int
    val_acc_list: tuple
    train_acc_list: tuple
    loss_list: tuple
    elapsed: float = dataclasses.field(compare=False, default=0.0)

    def to_dict(self):
        d = dataclasses.asdict(self)
        for key in ("val_acc_list", "train_acc_list", "loss_list"):
            d[key] = list(d[key])
        return d


class SearchResult:
    """What ``random_search`` returns.

    ``trials``: list of ``Trial``, best first (final validation accuracy
    descending, ties by trial index); ``best``: ``trials[0]``; ``config``:
    the ``SearchConfig``; ``elapsed``: wall seconds of the search;
    ``engine``: where the trials ran; ``n_train``/``n_val``: split sizes.
    """

    def __init__(self, trials, config, split, elapsed, engine):
        self.trials = sorted(trials, key=lambda tr: (-tr.val_acc, tr.index))
        self.config = config
        self._split = split
        self.n_train = len(split[0])
        self.n_val = len(split[2])
        self.elapsed = float(elapsed)
        self.engine = engine

    def __len__(self):
        return len(self.trials)

    def __repr__(self):
        return (f"<SearchResult: {len(self)} trials, best val acc {self.best.val_acc:.4f} "
                f"(lr {self.best.lr:.3g}, weight decay {self.best.weight_decay:.3g})>")

    @property
    def best(self):
        return self.trials[0]

    @property
    def trials_per_minute(self):
        return 60.0 * len(self.trials) / max(self.elapsed, 1e-9)

    def table(self, top=None):
        """The trials as a text table, best first (``top``: only that many rows)."""
        rows = self.trials if top is None else self.trials[:top]
        lines = ["rank  trial  val acc  best val (epoch)  train acc        lr  weight decay"
                 "    time"]
        for rank, tr in enumerate(rows, 1):
            lines.append(f"{rank:>4}  {tr.index:>5}  {tr.val_acc:7.4f}  {tr.best_val_acc:8.4f} "
                         f"{f'({tr.best_epoch})':>7}  {tr.train_acc:9.4f}  {tr.lr:8.2e}  "
                         f"{tr.weight_decay:12.2e}  {tr.elapsed:5.1f} s")
        if len(rows) < len(self.trials):
            lines.append(f"({len(self.trials) - len(rows)} more)")
        return "\n".join(lines)

    def to_dicts(self):
        """The trials as a list of dicts (best first), e.g. for ``json`` or pandas."""
        return [tr.to_dict() for tr in self.trials]

    def save_json(self, path):
        """Write the settings, split sizes, timing and every trial to ``path``
        (JSON), under a temporary name beside it renamed over it once complete."""
        doc = {"config": dataclasses.asdict(self.config), "n_train": self.n_train,
               "n_val": self.n_val, "elapsed": self.elapsed, "engine": self.engine,
               "trials": self.to_dicts()}
        _files.atomic_write(path, lambda f: f.write(json.dumps(doc, indent=1).encode()))

    def rerun(self, index):
        """Run trial ``index`` again on its own, in this process (same result)."""
        return run_trial(index, self.config, *self._split)

    def plot(self, path=None, top=DEFAULT_PLOT_TRIALS):
        """The book's figure: validation (solid) and training (dashed) accuracy
        per epoch of the ``top`` best trials, in a grid of 5 columns.

        Returns a ``matplotlib.figure.Figure`` (no pyplot, no window); with
        ``path``, also saves it there (the format from the extension).
        """
        from matplotlib.figure import Figure

        shown = self.trials[:top]
        rows = max(1, math.ceil(len(shown) / PLOT_COLUMNS))
        fig = Figure(figsize=(2.4 * PLOT_COLUMNS, 2.0 * rows + 0.6), layout="constrained")
        axes = fig.subplots(rows, PLOT_COLUMNS, squeeze=False).ravel()
        for rank, (ax, tr) in enumerate(zip(axes, shown), 1):
            epochs = np.arange(1, len(tr.val_acc_list) + 1)
            ax.plot(epochs, tr.val_acc_list, label="validation")
            ax.plot(epochs, tr.train_acc_list, "--", label="train")
            ax.set_title(f"Best-{rank}: val {tr.val_acc:.3f}\nlr {tr.lr:.1e}, "
                         f"wd {tr.weight_decay:.1e}", fontsize=8)
            ax.set_ylim(0.0, 1.0)
            ax.set_xticks([])
            if (rank - 1) % PLOT_COLUMNS:
                ax.set_yticks([])
        for ax in axes[len(shown):]:
            ax.set_axis_off()
        if shown:
            axes[0].legend(loc="lower right", fontsize=7)
        fig.suptitle(f"random search: {len(shown)} best of {len(self.trials)} trials "
                     f"(accuracy per epoch)", fontsize=10)
        if path is not None:
            _files.save_figure(fig, path, dpi=100)
        return fig


# ---------------------------------------------------------------------------
# argument checks
# ---------------------------------------------------------------------------

def _check_range(name, value):
    """(low, high) with 0 < low <= high, both finite: a log-uniform range."""
    try:
        low, high = (float(v) for v in value)
    except (TypeError, ValueError):
        raise ValueError(f"{name}: expected a pair (low, high) of positive numbers, "
                         f"got {value!r}") from None
    if not (math.isfinite(low) and math.isfinite(high) and 0 < low <= high):
        raise ValueError(f"{name}: expected 0 < low <= high (finite; a log scale), "
                         f"got ({low!r}, {high!r})")
    return (low, high)


def _check_n_jobs(n_jobs, scheduler):
    if n_jobs is None:
        return None
    if isinstance(n_jobs, bool) or not isinstance(n_jobs, numbers.Integral) or n_jobs == 0:
        raise ValueError(f"n_jobs: expected None, a positive number of workers or a negative "
                         f"one (joblib: -1 = every core), got {n_jobs!r}")
    if scheduler is not None:
        raise ValueError(f"n_jobs: expected None with scheduler= (the Dask cluster's worker "
                         f"threads set the parallelism), got {n_jobs!r}")
    return int(n_jobs)


def check_plot_format(path):
    """Raise before a search if a plot can't be saved as ``path``: ImportError
    without matplotlib, ValueError for a format matplotlib doesn't write (by
    the extension; none means PNG)."""
    _files.check_figure_format(path, PLOT_HINT)


# ---------------------------------------------------------------------------
# data, seeds, one trial
# ---------------------------------------------------------------------------

def validation_split(x, t, n_samples=DEFAULT_SAMPLES, validation_rate=DEFAULT_VALIDATION_RATE,
                     seed=0):
    """The book's split: the first ``n_samples`` of (x, t), shuffled by
    ``np.random.default_rng(seed)``, the first ``int(n_samples *
    validation_rate)`` of them for validation.

    x: (N, ...) images (flattened to (N, D)); t: (N,) labels or (N, C) one-hot.
    Returns ``(x_train, t_train, x_val, t_val)`` (copies).
    """
    x = np.asarray(x)
    t = np.asarray(t)
    if x.ndim < 2 or x.shape[0] == 0:
        raise ValueError(f"x: expected a non-empty batch of images (N, ...), got shape {x.shape}")
    if t.ndim not in (1, 2) or t.shape[0] != x.shape[0]:
        raise ValueError(f"t: expected {x.shape[0]} labels (N,) or one-hot rows (N, C) to "
                         f"match x of shape {x.shape}, got shape {t.shape}")
    n_samples = _check_int("n_samples", n_samples, 2)
    if n_samples > x.shape[0]:
        raise ValueError(f"n_samples: expected at most the {x.shape[0]} images given, "
                         f"got {n_samples}")
    if isinstance(validation_rate, bool) or not isinstance(validation_rate, numbers.Real) \
            or not 0 < validation_rate < 1:
        raise ValueError(f"validation_rate: expected a number in (0, 1), got {validation_rate!r}")
    n_val = int(n_samples * validation_rate)
    if not 0 < n_val < n_samples:
        raise ValueError(f"validation_rate: {validation_rate} of {n_samples} samples leaves "
                         f"{n_val} for validation and {n_samples - n_val} for training; "
                         "expected at least one each")
    order = np.random.default_rng(seed).permutation(n_samples)
    x = x[:n_samples].reshape(n_samples, -1)[order]
    t = t[:n_samples][order]
    return x[n_val:], t[n_val:], x[:n_val], t[:n_val]


def trial_seed(seed, index):
    """Trial ``index``'s SeedSequence: the index-th child of ``SeedSequence(seed)``."""
    return np.random.SeedSequence(seed, spawn_key=(index,))


def _log_uniform(u, low_high):
    low, high = low_high
    value = math.exp(math.log(low) + u * (math.log(high) - math.log(low)))
    return min(max(value, low), high)         # rounding must not step outside


def draw_hyperparameters(seed, index, lr_range, weight_decay_range):
    """Trial ``index``'s (lr, weight_decay), log-uniform on the ranges."""
    u_lr, u_wd = np.random.default_rng(trial_seed(seed, index).spawn(3)[0]).random(2)
    return _log_uniform(u_lr, lr_range), _log_uniform(u_wd, weight_decay_range)


def run_trial(index, config, x_train, t_train, x_val, t_val):
    """Train one network of the search (trial ``index`` under ``config``)
    and return its ``Trial``.  Runs in the calling thread with whatever
    thread limits are set; ``random_search`` sets one thread."""
    from .networks import MultiLayerNet
    from .optimizers import get_optimizer
    from .trainer import Trainer

    start = time.perf_counter()
    _, weight_seed, batch_seed = trial_seed(config.seed, index).spawn(3)
    lr, weight_decay = draw_hyperparameters(config.seed, index, config.lr_range,
                                            config.weight_decay_range)
    n_classes = t_train.shape[1] if t_train.ndim == 2 else \
        int(max(t_train.max(), t_val.max())) + 1
    net = MultiLayerNet(x_train.shape[1], list(config.hidden_size_list), n_classes,
                        weight_decay_lambda=weight_decay, dtype=np.dtype(config.dtype),
                        seed=weight_seed)
    trainer = Trainer(net, x_train, t_train, x_val, t_val, epochs=config.epochs,
                      mini_batch_size=config.batch_size,
                      optimizer=get_optimizer(config.optimizer, lr=lr), verbose=False,
                      seed=batch_seed)
    # a diverging trial (lr too large) is a result, not an error
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        trainer.train()
    val = [float(a) for a in trainer.test_acc_list]
    steps = trainer.iter_per_epoch
    losses = trainer.train_loss_list
    loss_list = tuple(float(np.mean(losses[i:i + steps])) for i in range(0, len(losses), steps))
    best_epoch = int(np.argmax(val)) + 1
    return Trial(index=index, lr=lr, weight_decay=weight_decay, val_acc=val[-1],
                 train_acc=float(trainer.train_acc_list[-1]), best_val_acc=val[best_epoch - 1],
                 best_epoch=best_epoch, val_acc_list=tuple(val),
                 train_acc_list=tuple(float(a) for a in trainer.train_acc_list),
                 loss_list=loss_list, elapsed=time.perf_counter() - start)


def _limit_threads_to_one():
    """One BLAS/OpenMP thread and one fastbp kernel thread in this process,
    left set (a worker may run trials in several threads: restoring after
    one trial would change the limits under another)."""
    from threadpoolctl import threadpool_limits

    from . import _backend
    threadpool_limits(limits=1)
    _backend.set_num_threads(1)


def _trial_task(index, config, x_train, t_train, x_val, t_val):
    """What a worker runs: one thread, then the trial.  The arrays come as
    separate arguments: joblib memory-maps large ones for local processes and
    its dask backend scatters them to the cluster once per search, where a
    tuple of them would travel with every trial."""
    _limit_threads_to_one()
    return run_trial(index, config, x_train, t_train, x_val, t_val)


# ---------------------------------------------------------------------------
# engines
# ---------------------------------------------------------------------------

def _import_distributed():
    try:
        import distributed
    except ImportError:
        raise ImportError(DASK_HINT) from None
    return distributed


def connect_scheduler(address, timeout=CONNECT_TIMEOUT):
    """A ``dask.distributed.Client`` connected to the scheduler at ``address``
    (``tcp://host:port``, or ``host:port``).

    Raises ImportError without dask.distributed, ValueError for a malformed
    address, OSError when nothing answers within ``timeout`` seconds.
    """
    distributed = _import_distributed()
    from distributed.comm.addressing import parse_address, parse_host_port

    if not isinstance(address, str) or not address.strip():
        raise ValueError(f"scheduler: expected an address like tcp://host:8786, got {address!r}")
    address = address.strip()
    scheme, location = parse_address(address)     # ValueError if malformed or no port
    if scheme == "tcp":
        # fail fast, before a Client exists: a Client whose connection
        # failed prints errors from its finaliser
        host, port = parse_host_port(location)
        try:
            socket.create_connection((host, port), timeout=timeout).close()
        except OSError as exc:
            raise OSError(f"no Dask scheduler at {address}: "
                          f"{exc.strerror or exc}") from None
    return distributed.Client(address, timeout=timeout, set_as_default=False)


def _is_client(obj):
    try:
        from distributed import Client
    except ImportError:
        return False
    return isinstance(obj, Client)


def _engine_name(scheduler, n_jobs):
    import joblib
    if scheduler is not None:
        threads = sum(scheduler.ncores().values())
        return f"dask at {scheduler.scheduler.address}, {threads} worker threads"
    workers = joblib.effective_n_jobs(n_jobs)
    return "serial" if workers == 1 else f"joblib, {workers} workers"


# ---------------------------------------------------------------------------
# the search
# ---------------------------------------------------------------------------

def random_search(n_trials=100, *, lr_range=DEFAULT_LR_RANGE,
                  weight_decay_range=DEFAULT_WEIGHT_DECAY_RANGE, epochs=DEFAULT_EPOCHS,
                  hidden_size_list=DEFAULT_HIDDEN, batch_size=DEFAULT_BATCH, optimizer="sgd",
                  dtype="float64", data=None, n_samples=DEFAULT_SAMPLES,
                  validation_rate=DEFAULT_VALIDATION_RATE, n_jobs=None, scheduler=None,
                  seed=0, progress=False):
    """Random search over the learning rate and weight decay (the book's ch. 6).

    n_trials: number of networks trained.
    lr_range, weight_decay_range: (low, high), 0 < low <= high; each trial
    draws both log-uniformly (the book: 10**U(-6, -2) and 10**U(-8, -4)).
    epochs, hidden_size_list, batch_size: the network (``MultiLayerNet``,
    ReLU, He init) and its training (``Trainer``, one epoch = n_train //
    batch_size steps); optimizer: 'sgd' (the book), 'momentum', 'nesterov',
    'adagrad', 'rmsprop' or 'adam', with the drawn lr; dtype: 'float64'
    or 'float32'.
    data: (x, t), training images (N, ...) and labels (N,) or (N, C); None:
    the embedded MNIST subset (``fastbp.datasets.load_mnist_mini``).  The
    first ``n_samples`` are split by ``validation_split`` (the book: 500,
    20 % for validation).
    n_jobs: joblib workers (None: one after the other here, unless a
    ``joblib.parallel_config`` says otherwise; -1: every core).
    scheduler: a Dask scheduler address or a ``dask.distributed.Client``.
    seed: the master seed (see the module docstring); progress: a tqdm bar.

    Returns a ``SearchResult`` (trials sorted by final validation accuracy).
    """
    import joblib
    from tqdm.auto import tqdm

    n_trials = _check_int("n_trials", n_trials, 1)
    lr_range = _check_range("lr_range", lr_range)
    weight_decay_range = _check_range("weight_decay_range", weight_decay_range)
    epochs = _check_int("epochs", epochs, 1)
    batch_size = _check_int("batch_size", batch_size, 1)
    if isinstance(hidden_size_list, (str, bytes)) or not hasattr(hidden_size_list, "__iter__"):
        raise ValueError(f"hidden_size_list: expected a list of positive integers, "
                         f"got {hidden_size_list!r}")
    hidden = tuple(_check_int(f"hidden_size_list[{i}]", h, 1)
                   for i, h in enumerate(hidden_size_list))
    from .optimizers import OPTIMIZERS
    if not isinstance(optimizer, str) or optimizer.lower() not in OPTIMIZERS:
        raise ValueError(f"optimizer: expected one of {', '.join(OPTIMIZERS)}, "
                         f"got {optimizer!r}")
    try:
        np_dtype = np.dtype(dtype)
    except TypeError:
        np_dtype = None
    if np_dtype not in (np.float32, np.float64):
        raise ValueError(f"dtype: expected float32 or float64, got {dtype!r}")
    seed = _check_int("seed", seed, 0)
    n_jobs = _check_n_jobs(n_jobs, scheduler)
    if scheduler is not None and not isinstance(scheduler, str) and not _is_client(scheduler):
        raise ValueError(f"scheduler: expected an address like tcp://host:8786 or a "
                         f"dask.distributed.Client, got {scheduler!r}")
    if data is None:
        from .datasets import load_mnist_mini
        data = load_mnist_mini()[0]
    try:
        x, t = data
    except (TypeError, ValueError):
        raise ValueError("data: expected a pair (x, t) of training images and labels, "
                         f"got {type(data).__name__}") from None
    split = validation_split(x, t, n_samples, validation_rate, seed)
    config = SearchConfig(seed=seed, lr_range=lr_range, weight_decay_range=weight_decay_range,
                          hidden_size_list=hidden, epochs=epochs, batch_size=batch_size,
                          optimizer=optimizer.lower(), dtype=np_dtype.name)

    own_client = isinstance(scheduler, str)
    client = connect_scheduler(scheduler) if own_client else scheduler
    from ._runtime import thread_limits
    try:
        engine = _engine_name(client, n_jobs)
        if client is not None:
            context = joblib.parallel_config(backend="dask", client=client)
        else:
            context = contextlib.nullcontext()      # whatever the caller configured
        start = time.perf_counter()
        trials = []
        # thread_limits: trials that run in this process (serial) get one
        # thread too, restored afterwards
        with context, thread_limits(1), tqdm(total=n_trials, unit="trial", desc="tune",
                                             leave=False, disable=not progress) as bar:
            # batch_size=1: a trial is long enough; finer progress and balance
            parallel = joblib.Parallel(n_jobs=n_jobs, batch_size=1,
                                       return_as="generator_unordered")
            for trial in parallel(joblib.delayed(_trial_task)(i, config, *split)
                                  for i in range(n_trials)):
                trials.append(trial)
                best = max(tr.val_acc for tr in trials)
                bar.set_postfix(best_val_acc=f"{best:.4f}", refresh=False)
                bar.update(1)
        elapsed = time.perf_counter() - start
    finally:
        if own_client:
            client.close()
    return SearchResult(trials, config, split, elapsed, engine)
