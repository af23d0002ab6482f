"""fastbp.trainer.Trainer: the book's common/trainer.py with a seeded sampler."""
import types

import numpy as np
import pytest

import fastbp.trainer as trainer_mod
from fastbp.reference import optimizers as O
from fastbp.reference.networks import MultiLayerNet, TwoLayerNet
from fastbp.trainer import Trainer


def blobs(n_per_class=100, d=6, c=3, seed=0, noise=1.0):
    rng = np.random.default_rng(seed)
    centres = 3.0 * np.eye(c, d)
    x = np.concatenate([centres[k] + noise * rng.standard_normal((n_per_class, d))
                        for k in range(c)])
    t = np.repeat(np.arange(c), n_per_class)
    perm = rng.permutation(x.shape[0])
    return x[perm], t[perm]


@pytest.fixture(scope="module")
def data():
    x_train, t_train = blobs(seed=0)           # 300 samples
    x_test, t_test = blobs(n_per_class=40, seed=1)
    return x_train, t_train, x_test, t_test


def make_net(seed=0, **kw):
    return MultiLayerNet(6, [16], 3, seed=seed, **kw)


def test_trainer_learns_and_histories_have_right_lengths(data, capsys):
    net = make_net()
    tr = Trainer(net, *data, epochs=6, mini_batch_size=32, optimizer="Adam",
                 optimizer_param={"lr": 0.01}, verbose=False, seed=0)
    assert tr.iter_per_epoch == 300 // 32 == 9
    assert tr.max_iter == 54
    assert isinstance(tr.optimizer, O.Adam) or type(tr.optimizer).__name__ == "Adam"
    assert tr.train() is tr
    assert tr.n_steps == 54
    assert len(tr.train_loss_list) == 54
    assert len(tr.train_acc_list) == len(tr.test_acc_list) == 6
    assert all(isinstance(v, float) for v in tr.train_loss_list + tr.test_acc_list)
    assert np.mean(tr.train_loss_list[-10:]) < 0.5 * np.mean(tr.train_loss_list[:10])
    assert tr.test_acc_list[-1] > tr.test_acc_list[0] or tr.test_acc_list[0] >= 0.9
    assert isinstance(tr.test_acc, float) and tr.test_acc >= 0.9
    assert tr.test_acc == net.accuracy(data[2], data[3])
    assert tr.elapsed > 0
    out = capsys.readouterr()
    assert out.out == "" and out.err == ""


def test_verbose_prints_one_line_per_epoch_and_final(data, capsys):
    tr = Trainer(make_net(), *data, epochs=3, mini_batch_size=50, verbose=True, seed=0)
    tr.train()
    captured = capsys.readouterr()
    text = captured.out + captured.err
    for epoch in (1, 2, 3):
        assert f"epoch {epoch}:" in text
    assert "epoch 4:" not in text
    assert "final test acc" in text
    assert text.count("train acc") == 3      # one line per epoch, no per-step prints


def test_same_seed_same_run_and_different_seed_differs(data):
    runs = []
    for seed in (5, 5, 6):
        tr = Trainer(make_net(), *data, epochs=2, mini_batch_size=20, verbose=False,
                     seed=seed, optimizer="momentum", optimizer_param={"lr": 0.05})
        tr.train()
        runs.append(tr)
    assert runs[0].train_loss_list == runs[1].train_loss_list
    np.testing.assert_array_equal(runs[0].network.params["W1"], runs[1].network.params["W1"])
    assert runs[0].train_loss_list != runs[2].train_loss_list


def test_max_iter_overrides_epochs_and_partial_epochs(data):
    tr = Trainer(make_net(), *data, epochs=100, mini_batch_size=100, verbose=False,
                 seed=0, max_iter=7)
    tr.train()
    assert tr.iter_per_epoch == 3
    assert len(tr.train_loss_list) == 7 and tr.n_steps == 7
    assert len(tr.test_acc_list) == 2 and tr.current_epoch == 2
    assert tr.test_acc is not None


def test_small_train_set_has_one_iteration_per_epoch(data):
    x, t = data[0][:30], data[1][:30]
    tr = Trainer(make_net(), x, t, data[2], data[3], epochs=4, mini_batch_size=100,
                 verbose=False, seed=0)
    assert tr.iter_per_epoch == 1
    tr.train()
    assert len(tr.train_loss_list) == 4 and len(tr.train_acc_list) == 4


def test_batches_are_drawn_from_the_seeded_rng(data):
    seen = []

    class Recorder:
        params = {}

        def train_step(self, x, t, optimizer):
            seen.append((x.copy(), t.copy()))
            return 1.0

        def accuracy(self, x, t):
            return 0.5

    x_train, t_train = data[0], data[1]
    tr = Trainer(Recorder(), x_train, t_train, data[2], data[3], epochs=2,
                 mini_batch_size=8, verbose=False, seed=11)
    tr.train()
    rng = np.random.default_rng(11)
    rows = [rng.integers(0, 300, size=(tr.iter_per_epoch, 8)) for _ in range(2)]
    expected = np.concatenate(rows)
    assert len(seen) == expected.shape[0]
    for (xb, tb), idx in zip(seen, expected):
        np.testing.assert_array_equal(xb, x_train[idx])
        np.testing.assert_array_equal(tb, t_train[idx])


def test_network_without_train_step_falls_back_to_gradient_and_update(data):
    class BookStyle:
        """Only the book's methods: params, gradient, loss, accuracy."""

        def __init__(self, net):
            self._net = net
            self.params = net.params

        def gradient(self, x, t):
            return self._net.gradient(x, t)

        def loss(self, x, t):
            return self._net.loss(x, t)

        def accuracy(self, x, t):
            return self._net.accuracy(x, t)

    fused = Trainer(make_net(), *data, epochs=2, mini_batch_size=25, verbose=False, seed=1,
                    optimizer="sgd", optimizer_param={"lr": 0.1})
    book = Trainer(BookStyle(make_net()), *data, epochs=2, mini_batch_size=25,
                   verbose=False, seed=1, optimizer="sgd", optimizer_param={"lr": 0.1})
    fused.train()
    book.train()
    assert not hasattr(book.network, "train_step")
    assert book.train_loss_list == fused.train_loss_list
    np.testing.assert_array_equal(book.network.params["W2"], fused.network.params["W2"])


def test_evaluate_sample_num_per_epoch_limits_evaluation(data):
    sizes = []
    net = make_net()
    original = net.accuracy

    def accuracy(x, t):
        sizes.append(x.shape[0])
        return original(x, t)

    net.accuracy = accuracy
    tr = Trainer(net, *data, epochs=2, mini_batch_size=100, verbose=False, seed=0,
                 evaluate_sample_num_per_epoch=17)
    tr.train()
    assert sizes == [17, 17, 17, 17, 120]      # 2 epochs x (train, test), then final test


def test_optimizer_instance_and_default_param(data):
    opt = O.RMSprop(lr=0.001)
    tr = Trainer(make_net(), *data, optimizer=opt, verbose=False)
    assert tr.optimizer is opt
    tr2 = Trainer(make_net(), *data, optimizer="Adam", verbose=False)
    assert tr2.optimizer.lr == 0.01             # the book's default optimizer_param
    with pytest.raises(ValueError, match="optimizer_param"):
        Trainer(make_net(), *data, optimizer=opt, optimizer_param={"lr": 0.1})
    with pytest.raises(ValueError, match="adagrad"):
        Trainer(make_net(), *data, optimizer="adadelta")
    with pytest.raises(TypeError, match="optimizer"):
        Trainer(make_net(), *data, optimizer=3)


def test_optimizers_module_can_be_swapped(data, monkeypatch):
    made = []

    def get_optimizer(name, **params):
        made.append((name, params))
        return O.SGD(**params)

    monkeypatch.setattr(trainer_mod, "optimizers_module",
                        types.SimpleNamespace(get_optimizer=get_optimizer))
    tr = Trainer(make_net(), *data, optimizer="whatever", optimizer_param={"lr": 0.2},
                 verbose=False)
    assert made == [("whatever", {"lr": 0.2})]
    assert isinstance(tr.optimizer, O.SGD) and tr.optimizer.lr == 0.2


def test_default_optimizers_module_has_get_optimizer():
    mod = trainer_mod._get_optimizers_module()
    assert mod.__name__ in ("fastbp.optimizers", "fastbp.reference.optimizers")
    assert type(mod.get_optimizer("sgd", lr=0.3)).__name__ == "SGD"


@pytest.mark.parametrize("kwargs,arg", [({"mini_batch_size": 0}, "mini_batch_size"),
                                        ({"epochs": -1}, "epochs"),
                                        ({"max_iter": -5}, "max_iter"),
                                        ({"evaluate_sample_num_per_epoch": 0},
                                         "evaluate_sample_num_per_epoch")])
def test_bad_arguments(data, kwargs, arg):
    with pytest.raises(ValueError, match=arg):
        Trainer(make_net(), *data, **kwargs)


def test_mismatched_data_lengths(data):
    x_train, t_train, x_test, t_test = data
    with pytest.raises(ValueError, match="t_train"):
        Trainer(make_net(), x_train, t_train[:-1], x_test, t_test)
    with pytest.raises(ValueError, match="t_test"):
        Trainer(make_net(), x_train, t_train, x_test, t_test[:5])
    with pytest.raises(ValueError, match="x_train"):
        Trainer(make_net(), x_train[:0], t_train[:0], x_test, t_test)


def test_two_layer_net_with_one_hot_labels_and_float32(data):
    x_train, t_train, x_test, t_test = data
    eye = np.eye(3, dtype=np.float32)
    net = TwoLayerNet(6, 12, 3, weight_init_std=0.1, seed=0, dtype=np.float32)
    tr = Trainer(net, x_train.astype(np.float32), eye[t_train], x_test.astype(np.float32),
                 eye[t_test], epochs=5, mini_batch_size=30, optimizer="SGD",
                 optimizer_param={"lr": 0.2}, verbose=False, seed=0)
    tr.train()
    assert net.params["W1"].dtype == np.float32
    assert tr.test_acc >= 0.9
    assert tr.train_loss_list[-1] < tr.train_loss_list[0]


def test_zero_epochs_trains_nothing_but_records_final_accuracy(data):
    net = make_net()
    W1 = net.params["W1"].copy()
    tr = Trainer(net, *data, epochs=0, verbose=False)
    tr.train()
    assert tr.train_loss_list == [] and tr.n_steps == 0
    np.testing.assert_array_equal(net.params["W1"], W1)
    assert tr.test_acc == net.accuracy(data[2], data[3])


# ---------------------------------------------------------------------------
# plot() and the progress bar
# ---------------------------------------------------------------------------

def test_plot_draws_the_recorded_curves(data, tmp_path):
    pytest.importorskip("matplotlib")
    from matplotlib.figure import Figure
    tr = Trainer(make_net(), *data, epochs=3, mini_batch_size=32, verbose=False, seed=0)
    untrained = tr.plot()
    assert "not trained yet" in untrained.axes[1].get_title()
    tr.train()
    path = tmp_path / "curves.png"
    fig = tr.plot(path, title="my run")
    assert isinstance(fig, Figure) and fig._suptitle.get_text() == "my run"
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    ax_loss, ax_acc = fig.axes
    (loss_line,) = ax_loss.get_lines()
    np.testing.assert_array_equal(loss_line.get_xdata(), np.arange(1, tr.n_steps + 1))
    np.testing.assert_array_equal(loss_line.get_ydata(), tr.train_loss_list)
    train_line, test_line = ax_acc.get_lines()
    np.testing.assert_array_equal(train_line.get_ydata(), tr.train_acc_list)
    np.testing.assert_array_equal(test_line.get_ydata(), tr.test_acc_list)
    assert f"final test {tr.test_acc:.4f}" in ax_acc.get_title()
    # the default title names the network, optimizer and batch size
    assert tr.plot()._suptitle.get_text() == f"MultiLayerNet, {tr.optimizer!r}, batch 32"


def test_progress_bar_is_tqdm_auto():
    """tqdm.auto's bar: tqdm's notebook widget in Jupyter, the text bar elsewhere
    (tqdm.auto.tqdm is not tqdm.std.tqdm, so a plain `from tqdm import tqdm`
    fails this)."""
    import tqdm.auto
    assert trainer_mod.tqdm is tqdm.auto.tqdm
