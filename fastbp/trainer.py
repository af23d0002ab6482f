"""The book's ``common/trainer.py``: mini-batch training with per-epoch evaluation.

Differences from the book:
  * batches come from ``np.random.default_rng(seed)`` (reproducible), drawn
    with replacement as the book's ``np.random.choice`` does;
  * each step is one ``network.train_step(x_batch, t_batch, optimizer)``
    (the fused fast path of ``fastbp.networks``), falling back to
    ``gradient`` + ``optimizer.update`` for networks without it; the recorded
    loss is the one at the parameters used for the gradient (the book records
    a second forward pass after the update); a network without
    ``train_step`` gets ``loss(x, t)`` with its defaults, which for the
    book's ``MultiLayerNetExtend`` is test mode (no dropout, running
    statistics);
  * progress is a tqdm bar (loss and steps/s, refreshed every 20 steps)
    plus one ``tqdm.write`` line per epoch, instead of a print per step; in
    Jupyter the bar is tqdm's notebook widget (``tqdm.auto``; it needs
    ipywidgets, else tqdm falls back to the text bar);
  * the accuracy is evaluated at the end of every epoch (the book evaluates
    after the first step and then every ``iter_per_epoch`` steps);
  * ``max_iter`` can cap the number of steps; ``n_steps``, ``elapsed`` and
    ``test_acc`` report what happened, and ``plot()`` draws the loss and
    accuracy curves (the figure ``fastbp train --plot`` saves).

Optimizers come from ``fastbp.optimizers`` (compiled) when it imports, else
from ``fastbp.reference.optimizers``; assign a module with a
``get_optimizer`` function to ``fastbp.trainer.optimizers_module`` to choose.
"""
import numbers
import time

import numpy as np
from tqdm.auto import tqdm

from ._state import Stateful
from ._trainer_checks import check_training_data

__all__ = ["Trainer"]

#: module providing ``get_optimizer``; None means "find it on first use"
optimizers_module = None

_POSTFIX_EVERY = 20


def _get_optimizers_module():
    global optimizers_module
    if optimizers_module is None:
        try:
            from . import optimizers as mod
        except ImportError:
            from .reference import optimizers as mod
        optimizers_module = mod
    return optimizers_module


def _check_int(name, value, minimum, allow_none=False):
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        what = "a positive integer" if minimum == 1 else f"an integer >= {minimum}"
        if allow_none:
            what += " or None"
        raise ValueError(f"{name}: expected {what}, got {value!r}")
    return int(value)


class Trainer(Stateful):
    """Train ``network`` by mini-batch SGD-style optimization, as in the book.

    network: an object with ``params``, ``gradient(x, t)``, ``loss(x, t)`` and
    ``accuracy(x, t)``, ideally ``train_step(x, t, optimizer)`` (e.g.
    ``fastbp.networks.MultiLayerNet``).
    x_train (N, ...), t_train (N,) or (N, C); x_test, t_test likewise.
    epochs: number of epochs of ``iter_per_epoch = max(N // mini_batch_size, 1)``
    steps each; ``max_iter`` (keyword) overrides the total number of steps.
    optimizer: a name ('SGD', 'Momentum', 'Nesterov', 'AdaGrad', 'RMSprop',
    'Adam', case-insensitive) built with ``optimizer_param`` (default
    {'lr': 0.01}, as in the book), or a ready optimizer instance.
    evaluate_sample_num_per_epoch: evaluate accuracies on the first that many
    train/test samples (None: all).
    verbose: show the progress bar and per-epoch lines (False: print nothing).
    seed: seed of the batch sampler.

    After ``train()``: ``train_loss_list`` (one float per step),
    ``train_acc_list``/``test_acc_list`` (one float per completed epoch),
    ``test_acc`` (final accuracy on the whole test set), ``n_steps`` (steps
    run so far), ``elapsed`` (seconds spent in the last ``train()``);
    ``plot()`` draws them.

    The batch arrays handed to ``train_step`` are buffers reused (overwritten)
    at every step; a network must not keep them across steps.

    The data are checked here, before any step (shapes against the network
    and each other, labels as ``loss`` takes them); errors name the array.
    ``train`` and ``train_step`` take turns per Trainer (``fastbp._state``).
    """

    _serialised_methods = ("train", "train_step")

    def __init__(self, network, x_train, t_train, x_test, t_test, epochs=20,
                 mini_batch_size=100, optimizer="SGD", optimizer_param=None,
                 evaluate_sample_num_per_epoch=None, verbose=True, *, seed=None,
                 max_iter=None):
        self.network = network
        self.x_train, self.t_train, self.x_test, self.t_test = check_training_data(
            network, x_train, t_train, x_test, t_test)
        self.epochs = _check_int("epochs", epochs, 0)
        self.batch_size = _check_int("mini_batch_size", mini_batch_size, 1)
        self.evaluate_sample_num_per_epoch = _check_int(
            "evaluate_sample_num_per_epoch", evaluate_sample_num_per_epoch, 1, allow_none=True)
        self.verbose = bool(verbose)

        if isinstance(optimizer, str) or isinstance(optimizer, type):
            param = {"lr": 0.01} if optimizer_param is None else dict(optimizer_param)
            self.optimizer = _get_optimizers_module().get_optimizer(optimizer, **param)
        elif callable(getattr(optimizer, "update", None)):
            if optimizer_param:
                raise ValueError("optimizer_param: expected None with an optimizer instance "
                                 f"{optimizer!r}, got {optimizer_param!r}")
            self.optimizer = optimizer
        else:
            raise TypeError(f"optimizer: expected a name or an object with an "
                            f"update(params, grads) method, got {type(optimizer).__name__}")

        self.train_size = self.x_train.shape[0]
        self.iter_per_epoch = max(self.train_size // self.batch_size, 1)
        if max_iter is None:
            self.max_iter = self.epochs * self.iter_per_epoch
        else:
            self.max_iter = _check_int("max_iter", max_iter, 0)
        self.rng = np.random.default_rng(seed)

        self.current_iter = 0
        self.current_epoch = 0
        self.train_loss_list = []
        self.train_acc_list = []
        self.test_acc_list = []
        self.test_acc = None
        self.elapsed = 0.0

        self._x_batch = np.empty((self.batch_size,) + self.x_train.shape[1:], self.x_train.dtype)
        self._t_batch = np.empty((self.batch_size,) + self.t_train.shape[1:], self.t_train.dtype)
        self._step = getattr(network, "train_step", None)
        if not callable(self._step):
            self._step = self._gradient_step

    @property
    def n_steps(self):
        """Number of training steps run so far."""
        return self.current_iter

    def _gradient_step(self, x, t, optimizer):
        net = self.network
        grads = net.gradient(x, t)
        loss = net.loss(x, t)  # same parameters as the gradient
        optimizer.update(net.params, grads)
        return loss

    def _evaluate(self):
        n = self.evaluate_sample_num_per_epoch
        x_tr, t_tr, x_te, t_te = self.x_train, self.t_train, self.x_test, self.t_test
        if n is not None:
            x_tr, t_tr, x_te, t_te = x_tr[:n], t_tr[:n], x_te[:n], t_te[:n]
        train_acc = float(self.network.accuracy(x_tr, t_tr))
        test_acc = float(self.network.accuracy(x_te, t_te))
        self.train_acc_list.append(train_acc)
        self.test_acc_list.append(test_acc)
        return train_acc, test_acc

    def train_step(self):
        """One step on a random mini-batch (the book's ``Trainer.train_step``).

        Returns the loss; at the end of an epoch also evaluates accuracies.
        """
        idx = self.rng.integers(0, self.train_size, size=self.batch_size)
        return self._run_steps(idx[None, :], None)[-1]

    def _run_steps(self, index_rows, bar):
        """Run one step per row of batch indices; returns the list of losses."""
        x_buf, t_buf = self._x_batch, self._t_batch
        x_all, t_all = self.x_train, self.t_train
        step, optimizer = self._step, self.optimizer
        losses = self.train_loss_list
        start = len(losses)
        for idx in index_rows:
            np.take(x_all, idx, axis=0, out=x_buf, mode="wrap")
            np.take(t_all, idx, axis=0, out=t_buf, mode="wrap")
            losses.append(float(step(x_buf, t_buf, optimizer)))
            self.current_iter += 1
            if bar is not None and (self.current_iter - self._start_iter) % _POSTFIX_EVERY == 0:
                bar.update(_POSTFIX_EVERY)
                done = self.current_iter - self._start_iter
                rate = done / max(time.perf_counter() - self._t0, 1e-9)
                bar.set_postfix(loss=f"{losses[-1]:.4f}", steps_per_s=f"{rate:.0f}",
                                refresh=False)
            if self.current_iter % self.iter_per_epoch == 0:
                self.current_epoch += 1
                train_acc, test_acc = self._evaluate()
                if self.verbose:
                    tqdm.write(f"epoch {self.current_epoch}: train loss {losses[-1]:.4f}, "
                               f"train acc {train_acc:.4f}, test acc {test_acc:.4f}")
        return losses[start:]

    def train(self):
        """Run ``max_iter`` steps, evaluating at every epoch end; returns self.

        Sets ``test_acc`` (accuracy on the whole test set at the end) and
        ``elapsed`` (seconds).
        """
        self._t0 = time.perf_counter()
        start_iter = self._start_iter = self.current_iter
        bar = tqdm(total=self.max_iter, disable=not self.verbose, unit="step",
                   desc="train", leave=False)
        try:
            remaining = self.max_iter
            while remaining > 0:
                n = min(remaining, self.iter_per_epoch)
                rows = self.rng.integers(0, self.train_size, size=(n, self.batch_size))
                self._run_steps(rows, bar if self.verbose else None)
                remaining -= n
            if self.verbose:
                bar.update((self.current_iter - start_iter) - bar.n)
        finally:
            bar.close()
        self.test_acc = float(self.network.accuracy(self.x_test, self.t_test))
        self.elapsed = time.perf_counter() - self._t0
        if self.verbose:
            steps = self.current_iter - start_iter
            rate = steps / max(self.elapsed, 1e-9)
            tqdm.write(f"final test acc {self.test_acc:.4f} ({steps} steps in "
                       f"{self.elapsed:.2f} s, {rate:.0f} steps/s)")
        return self

    def plot(self, path=None, title=None):
        """The training curves: the loss of every step (left) and the train and
        test accuracy of every epoch (right), with the final test accuracy.

        Returns a ``matplotlib.figure.Figure`` (no pyplot: no window, no global
        state; a notebook displays it inline); with ``path``, also saves it
        there (the format from the extension). ``title`` defaults to the
        network, optimizer and batch size. Needs matplotlib
        (``pip install "fastbp[plot]"``).
        """
        from matplotlib.figure import Figure

        if title is None:
            title = (f"{type(self.network).__name__}, {self.optimizer!r}, "
                     f"batch {self.batch_size}")
        fig = Figure(figsize=(10, 4), layout="constrained")
        ax_loss, ax_acc = fig.subplots(1, 2)
        losses = self.train_loss_list
        ax_loss.plot(range(1, len(losses) + 1), losses, linewidth=0.8)
        ax_loss.set_xlabel("step")
        ax_loss.set_ylabel("training loss (mini-batch)")
        ax_loss.set_title("loss")
        epochs = range(1, len(self.test_acc_list) + 1)
        if len(epochs):
            ax_acc.plot(epochs, self.train_acc_list, marker="o", markersize=3, label="train")
            ax_acc.plot(epochs, self.test_acc_list, marker="s", markersize=3,
                        linestyle="--", label="test")
            ax_acc.legend(loc="lower right")
        else:
            ax_acc.text(0.5, 0.5, "no complete epoch", ha="center", va="center",
                        transform=ax_acc.transAxes)
        ax_acc.set_xlabel("epoch")
        ax_acc.set_ylabel("accuracy")
        ax_acc.set_ylim(0, 1.0)
        final = "not trained yet" if self.test_acc is None else f"final test {self.test_acc:.4f}"
        ax_acc.set_title(f"accuracy ({final})")
        fig.suptitle(title, fontsize=9)
        if path is not None:
            from . import _files
            _files.save_figure(fig, path, dpi=100)   # complete or not written
        return fig
