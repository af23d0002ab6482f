"""The ``fastbp`` command line (fastbp/__main__.py): train, gradcheck, info, errors.

Most tests call ``main([...])`` in-process and read the output with capsys;
a few run ``python -m fastbp`` in a subprocess to check the real entry point.
Runs are kept short (tens of steps, a small hidden layer for gradcheck).
"""
import io
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import full_mnist_dir

import fastbp
import fastbp.networks
import fastbp.trainer
from fastbp.__main__ import DEFAULT_EPOCHS, PLOT_HINT, SIGPIPE_STATUS, main
from fastbp.networks import MultiLayerNet, TwoLayerNet

FINAL_RE = re.compile(r"test accuracy: 0\.\d{4} \(\d+ steps, [\d.]+ s, [\d.]+ steps/s\)")
FINAL_PARSE = re.compile(r"test accuracy: (0\.\d{4}) \((\d+) steps, ([\d.]+) s, ([\d.]+) steps/s\)")
GRAD_LINE = re.compile(r"^(W1|b1|W2|b2): mean \|diff\| = (\S+), max rel = (\S+?)(\s|$)", re.M)
# the directory holding the fastbp this process imported (the checkout, or
# site-packages when testing an installed package): subprocesses must use it
FASTBP_PARENT = Path(fastbp.__file__).resolve().parents[1]


def run_cli(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def final_line(out):
    lines = out.strip().splitlines()
    assert lines, "no output"
    m = FINAL_PARSE.fullmatch(lines[-1])
    assert m, f"last line {lines[-1]!r} is not the final accuracy line"
    return float(m.group(1)), int(m.group(2)), float(m.group(3)), float(m.group(4))


def run_module(tmp_path, *argv, timeout=300):
    """``python -m fastbp ARGV`` on the same fastbp as this process.

    The working directory is a temporary one: ``python -m`` puts the cwd on
    sys.path, and from the repository root that would be the (possibly
    uncompiled) checkout instead of the package under test.
    """
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(FASTBP_PARENT), env.get("PYTHONPATH", "")) if p)
    proc = subprocess.run([sys.executable, "-m", "fastbp", *argv], capture_output=True,
                          text=True, env=env, cwd=tmp_path, timeout=timeout)
    return proc


@pytest.fixture
def trainers(monkeypatch):
    """Records every Trainer whose train() ran (to compare with what was saved)."""
    seen = []
    original = fastbp.trainer.Trainer.train

    def train(self):
        seen.append(self)
        return original(self)

    monkeypatch.setattr(fastbp.trainer.Trainer, "train", train)
    return seen


# ---------------------------------------------------------------------------
# train
# ---------------------------------------------------------------------------

def test_train_quiet_prints_only_the_final_line_and_learns(capsys, trainers):
    code, out, err = run_cli(capsys, "train", "--iters", "100", "--quiet")
    assert code == 0, err
    lines = out.strip().splitlines()
    assert len(lines) == 1, out                      # --quiet: nothing but the result
    assert FINAL_RE.fullmatch(lines[0])
    acc, steps, seconds, rate = final_line(out)
    assert steps == 100
    assert acc > 0.3                                  # chance is 0.1
    # The printed numbers are the trainer's, rounded for print (seconds to
    # 0.01, the rate to 0.1); the rate is steps over the unrounded time, so
    # compare each with what it was rounded from, whatever the machine's speed.
    (trainer,) = trainers
    assert trainer.n_steps == steps and trainer.elapsed > 0
    assert seconds == pytest.approx(trainer.elapsed, rel=0, abs=0.005 + 1e-9)
    assert rate == pytest.approx(steps / trainer.elapsed, rel=1e-12, abs=0.05 + 1e-9)


def test_train_verbose_reports_setup_and_epochs(capsys):
    # batch 500 on the 10k subset: 20 steps per epoch, so 40 steps = 2 epochs
    code, out, err = run_cli(capsys, "train", "--iters", "40", "--batch-size", "500")
    assert code == 0, err
    assert out.startswith("TwoLayerNet 784-50-10 (relu), SGD(lr=0.1), batch 500, float64")
    assert "embedded MNIST subset, 10000 train / 2000 test images" in out
    assert re.search(r"^epoch 1: .*test acc 0\.\d{4}$", out, re.M)
    assert re.search(r"^epoch 2: ", out, re.M)
    assert not re.search(r"^epoch 3: ", out, re.M)
    assert final_line(out)[1] == 40


def test_default_epochs_give_the_book_experiment(monkeypatch, capsys):
    """No arguments: TwoLayerNet 784-50-10, batch 100, SGD lr 0.1, float64,
    DEFAULT_EPOCHS epochs (the run itself is too long for a unit test: stop it
    right after construction and check the setup)."""
    captured = []

    def fake_train(self):
        captured.append(self)
        self.test_acc, self.elapsed = 0.5, 1.0
        return self

    monkeypatch.setattr(fastbp.trainer.Trainer, "train", fake_train)
    code, out, err = run_cli(capsys, "train")
    assert code == 0, err
    (tr,) = captured
    net = tr.network
    assert type(net) is TwoLayerNet
    assert (net.input_size, net.hidden_size, net.output_size) == (784, 50, 10)
    assert net.dtype == np.float64
    assert tr.batch_size == 100 and tr.max_iter == DEFAULT_EPOCHS * 100
    assert type(tr.optimizer).__name__ == "SGD" and tr.optimizer.lr == 0.1
    assert type(tr.optimizer).__module__ == "fastbp.optimizers"
    assert f"{DEFAULT_EPOCHS} epochs x 100 steps" in out


def test_reference_and_fast_backends_agree(tmp_path, capsys, trainers):
    results = {}
    for backend in ("fast", "reference"):
        path = tmp_path / f"{backend}.npz"
        code, out, err = run_cli(capsys, "train", "--iters", "60", "--seed", "3", "--quiet",
                                 "--backend", backend, "--save", str(path))
        assert code == 0, err
        with np.load(path) as data:
            results[backend] = (final_line(out)[:2], {k: data[k] for k in data.files})
    fast_net, ref_net = (t.network for t in trainers)
    assert type(fast_net).__module__ == "fastbp.networks"
    assert type(ref_net).__module__ == "fastbp.reference.networks"
    assert type(trainers[1].optimizer).__module__ == "fastbp.reference.optimizers"
    assert results["fast"][0] == results["reference"][0]          # same accuracy, 60 steps
    for key in ("W1", "b1", "W2", "b2"):
        np.testing.assert_allclose(results["fast"][1][key], results["reference"][1][key],
                                   rtol=1e-9, atol=1e-12)


def test_save_writes_the_trained_parameters(tmp_path, capsys, trainers):
    path = tmp_path / "params.npz"
    code, out, err = run_cli(capsys, "train", "--iters", "30", "--seed", "5", "--save",
                             str(path), "--dtype", "float32")
    assert code == 0, err
    assert f"saved parameters to {path}" in out
    (trainer,) = trainers
    trained = trainer.network.params
    loaded = TwoLayerNet(784, 50, 10, dtype=np.float32).load(path)
    untrained = TwoLayerNet(784, 50, 10, dtype=np.float32, seed=5)
    for key in ("W1", "b1", "W2", "b2"):
        assert loaded.params[key].dtype == np.float32
        np.testing.assert_array_equal(loaded.params[key], trained[key])
    assert not np.array_equal(loaded.params["W2"], untrained.params["W2"])  # it trained


def test_list_of_hidden_sizes_runs_multilayernet(tmp_path, capsys, trainers):
    path = tmp_path / "multi.npz"
    code, out, err = run_cli(capsys, "train", "--hidden", "30,20", "--activation", "sigmoid",
                             "--optimizer", "adam", "--iters", "20", "--quiet",
                             "--save", str(path))
    assert code == 0, err
    assert FINAL_RE.fullmatch(out.strip())
    with np.load(path) as data:
        assert {"W1", "W2", "W3", "b3"} <= set(data.files)
        assert data["W1"].shape == (784, 30)
        assert data["W2"].shape == (30, 20)
        assert data["W3"].shape == (20, 10)
    (trainer,) = trainers
    assert type(trainer.network) is MultiLayerNet
    assert trainer.network.activation == "sigmoid"
    assert type(trainer.optimizer).__name__ == "Adam" and trainer.optimizer.lr == 0.001
    net = MultiLayerNet(784, [30, 20], 10, activation="sigmoid").load(path)
    np.testing.assert_array_equal(net.params["W3"], trainer.network.params["W3"])


def test_sigmoid_alone_selects_multilayernet_and_lr_is_used(capsys, trainers):
    code, out, err = run_cli(capsys, "train", "--activation", "sigmoid", "--iters", "5",
                             "--quiet", "--lr", "0.5", "--optimizer", "momentum")
    assert code == 0, err
    (trainer,) = trainers
    assert type(trainer.network) is MultiLayerNet
    assert trainer.network.hidden_size_list == [50]
    assert type(trainer.optimizer).__name__ == "Momentum" and trainer.optimizer.lr == 0.5


@pytest.mark.parametrize("backend", ["fast", "reference"])
def test_chapter6_options_select_multilayernetextend(capsys, trainers, backend):
    code, out, err = run_cli(capsys, "train", "--hidden", "30,20", "--batchnorm",
                             "--dropout", "0.2", "--weight-decay", "0.01", "--iters", "30",
                             "--batch-size", "50", "--seed", "3", "--backend", backend)
    assert code == 0, err
    assert out.splitlines()[0].startswith(
        "MultiLayerNetExtend 784-30-20-10 (relu, batchnorm, dropout 0.2, weight decay 0.01), "
        "SGD(lr=0.1), batch 50, float64")
    (trainer,) = trainers
    net = trainer.network
    assert type(net).__name__ == "MultiLayerNetExtend"
    assert type(net).__module__ == ("fastbp.networks" if backend == "fast"
                                    else "fastbp.reference.multi_layer_net_extend")
    assert net.use_batchnorm and net.use_dropout
    assert net.dropout_ration == 0.2 and net.weight_decay_lambda == 0.01
    assert net.hidden_size_list == [30, 20]
    assert net.layers["Dropout1"].rng is not None           # the masks come from --seed
    assert net.layers["BatchNorm2"].running_var is not None   # it trained in training mode
    assert trainer.n_steps == 30
    acc, *_ = final_line(out)
    assert acc > 0.3


@pytest.mark.parametrize("option,attribute,value", [
    (["--batchnorm"], "use_batchnorm", True),
    (["--dropout", "0"], "use_dropout", True),
    (["--weight-decay", "0"], "weight_decay_lambda", 0.0)])
def test_each_chapter6_option_alone_selects_it(capsys, trainers, option, attribute, value):
    code, out, err = run_cli(capsys, "train", *option, "--iters", "2", "--quiet")
    assert code == 0, err
    (trainer,) = trainers
    assert type(trainer.network).__name__ == "MultiLayerNetExtend"
    assert trainer.network.hidden_size_list == [50]
    assert getattr(trainer.network, attribute) == value
    others = {"use_batchnorm": False, "use_dropout": False, "weight_decay_lambda": 0}
    others.pop(attribute)
    for name, default in others.items():
        assert getattr(trainer.network, name) == default


def test_threads_option_limits_training_and_is_restored(monkeypatch, capsys):
    before = fastbp.get_num_threads()
    during = []
    original = fastbp.trainer.Trainer.train

    def train(self):
        during.append(fastbp.get_num_threads())
        return original(self)

    monkeypatch.setattr(fastbp.trainer.Trainer, "train", train)
    code, out, err = run_cli(capsys, "train", "--iters", "10", "--quiet", "--threads", "1")
    assert code == 0, err
    assert final_line(out)[1] == 10
    if fastbp.COMPILED:
        assert during == [1]
    assert fastbp.get_num_threads() == before


def test_train_via_subprocess(tmp_path):
    proc = run_module(tmp_path, "train", "--iters", "30", "--quiet")
    assert proc.returncode == 0, proc.stderr
    assert FINAL_RE.fullmatch(proc.stdout.strip().splitlines()[-1]), proc.stdout
    assert "Traceback" not in proc.stderr


@pytest.mark.skipif(full_mnist_dir() is None, reason="full MNIST files not available")
def test_train_on_full_mnist(capsys):
    code, out, err = run_cli(capsys, "train", "--data-dir", str(full_mnist_dir()),
                             "--no-download", "--iters", "20", "--batch-size", "50")
    assert code == 0, err
    assert "60000 train / 10000 test images" in out
    assert final_line(out)[1] == 20


# ---------------------------------------------------------------------------
# --plot
# ---------------------------------------------------------------------------

def test_plot_without_matplotlib_fails_before_training(tmp_path, monkeypatch, capsys, trainers):
    # every matplotlib module gone, those an earlier test imported too (an
    # import of a submodule already in sys.modules would still succeed)
    for name in [m for m in sys.modules if m == "matplotlib" or m.startswith("matplotlib.")] \
            + ["matplotlib", "matplotlib.figure", "matplotlib.backend_bases"]:
        monkeypatch.setitem(sys.modules, name, None)
    save = tmp_path / "p.npz"
    code, out, err = run_cli(capsys, "train", "--iters", "5", "--plot",
                             str(tmp_path / "c.png"), "--save", str(save))
    assert code == 2
    assert PLOT_HINT == "--plot needs matplotlib: pip install 'fastbp[plot]'"
    assert PLOT_HINT in err
    assert "Traceback" not in err
    assert trainers == []                     # no training started
    assert "test accuracy" not in out
    assert not save.exists() and not (tmp_path / "c.png").exists()


def test_plot_writes_a_png(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    path = tmp_path / "curve.png"
    code, out, err = run_cli(capsys, "train", "--iters", "120", "--plot", str(path))
    assert code == 0, err
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert f"saved curves to {path}" in out


# ---------------------------------------------------------------------------
# bad arguments and runtime errors
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("argv", [
    [],
    ["nope"],
    ["train", "--bogus"],
    ["train", "--epochs", "2", "--iters", "5"],
    ["train", "--epochs", "0"],
    ["train", "--iters", "-3"],
    ["train", "--batch-size", "ten"],
    ["train", "--lr", "0"],
    ["train", "--lr", "-0.1"],
    ["train", "--lr", "nan"],
    ["train", "--hidden", "30,,20"],
    ["train", "--hidden", "0"],
    ["train", "--optimizer", "lbfgs"],
    ["train", "--activation", "tanh"],
    ["train", "--dtype", "float16"],
    ["train", "--backend", "torch"],
    ["train", "--seed", "-1"],
    ["train", "--data", "cifar"],
    ["train", "--data", "mini", "--data-dir", "."],
    ["train", "--no-download"],
    ["train", "--threads", "-1"],
    ["gradcheck", "--hidden", "0"],
    ["gradcheck", "--max-entries", "x"],
    ["train", "--dropout", "1"],
    ["train", "--dropout", "-0.1"],
    ["train", "--dropout", "half"],
    ["train", "--weight-decay", "-1"],
    ["train", "--weight-decay", "nan"],
    ["train", "--batchnorm", "yes"],
    ["info", "--verbose"],
    ["bench", "--threads", "0"],
    ["bench", "--dtype", "float16"],
])
def test_bad_arguments_are_usage_errors(capsys, trainers, argv):
    code, out, err = run_cli(capsys, *argv)
    assert code == 2
    assert "usage:" in err
    assert "error:" in err
    assert "Traceback" not in err
    assert trainers == []


def test_bad_arguments_via_subprocess(tmp_path):
    proc = run_module(tmp_path, "train", "--epochs", "3", "--iters", "5", timeout=120)
    assert proc.returncode == 2
    assert "usage: fastbp train" in proc.stderr
    assert "not allowed with argument" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert proc.stdout == ""


def test_help_exits_zero(capsys):
    code, out, err = run_cli(capsys, "train", "--help")
    assert code == 0
    assert "--iters" in out and "--plot" in out


def test_missing_data_dir_is_a_one_line_error(tmp_path, capsys):
    missing = tmp_path / "nowhere"
    code, out, err = run_cli(capsys, "train", "--data-dir", str(missing), "--no-download",
                             "--iters", "5")
    assert code == 1
    assert err.startswith("fastbp: error: cannot load MNIST: ")
    assert str(missing) in err
    assert len(err.strip().splitlines()) == 1
    assert "Traceback" not in err
    assert "test accuracy" not in out


def test_corrupt_data_files_are_a_one_line_error(tmp_path, capsys):
    for name in ("train-images-idx3-ubyte", "train-labels-idx1-ubyte",
                 "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"):
        (tmp_path / name).write_bytes(b"not an idx file")
    code, out, err = run_cli(capsys, "gradcheck", "--data", "mnist", "--data-dir",
                             str(tmp_path), "--no-download")
    assert code == 1
    assert err.startswith("fastbp: error: cannot load MNIST: ")
    assert len(err.strip().splitlines()) == 1
    assert "Traceback" not in err


def test_save_into_missing_directory_fails_before_training(tmp_path, capsys, trainers):
    code, out, err = run_cli(capsys, "train", "--iters", "5", "--save",
                             str(tmp_path / "no" / "p.npz"))
    assert code == 2
    assert err.startswith("fastbp: error: --save")
    assert trainers == []


# ---------------------------------------------------------------------------
# gradcheck, info
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("backend", ["fast", "reference"])
def test_gradcheck_passes(capsys, backend):
    code, out, err = run_cli(capsys, "gradcheck", "--hidden", "10", "--backend", backend)
    assert code == 0, out + err
    lines = GRAD_LINE.findall(out)
    assert [name for name, *_ in lines] == ["W1", "b1", "W2", "b2"]
    for name, mean_diff, max_rel, _ in lines:
        assert 0 <= float(mean_diff) <= 1e-9, name
        assert float(max_rel) < 1e-4, name
    assert "all 7960 entries" in out        # 784*10 + 10 + 10*10 + 10: every entry
    assert "passed" in out


def test_gradcheck_sampled(capsys):
    code, out, err = run_cli(capsys, "gradcheck", "--max-entries", "40")
    assert code == 0, out + err
    assert "130 of 39760 entries" in out    # 40 of W1, 40 of b1, 40 of W2, all 10 of b2
    assert len(GRAD_LINE.findall(out)) == 4


def test_gradcheck_fails_on_a_wrong_gradient(monkeypatch, capsys):
    original = fastbp.networks.TwoLayerNet.gradient

    def corrupted(self, x, t):
        grads = original(self, x, t)
        grads["W2"] = grads["W2"] + 1e-3
        return grads

    monkeypatch.setattr(fastbp.networks.TwoLayerNet, "gradient", corrupted)
    code, out, err = run_cli(capsys, "gradcheck", "--hidden", "5")
    assert code == 1
    diffs = {name: float(mean) for name, mean, _, _ in GRAD_LINE.findall(out)}
    assert diffs["W2"] > 1e-9
    assert diffs["W1"] <= 1e-9
    assert "FAILED" in out and "W2" in out.split("FAILED")[-1]


BN_GRAD_LINE = re.compile(r"^(\w+): mean \|diff\| = (\S+), max rel = (\S+?)(\s|$)", re.M)


@pytest.mark.parametrize("backend", ["fast", "reference"])
def test_gradcheck_batchnorm_is_the_books_chapter6_check(capsys, backend):
    code, out, err = run_cli(capsys, "gradcheck", "--batchnorm", "--hidden", "8",
                             "--backend", backend)
    assert code == 0, out + err
    assert out.splitlines()[0].startswith(
        "MultiLayerNetExtend 784-8-8-10 with batch norm float64")
    assert "10 images: all 6474 entries" in out    # W 784*8 + 8*8 + 8*10, b 8+8+10, gamma/beta 4*8
    lines = BN_GRAD_LINE.findall(out)
    assert [name for name, *_ in lines] == ["W1", "b1", "gamma1", "beta1", "W2", "b2",
                                            "gamma2", "beta2", "W3", "b3"]
    for name, mean_diff, _, _ in lines:
        assert 0 <= float(mean_diff) <= 1e-8, name
    assert "passed: every mean |diff| <= 1e-08" in out


def test_gradcheck_batchnorm_sampled_uses_the_training_mode_loss(capsys):
    code, out, err = run_cli(capsys, "gradcheck", "--batchnorm", "--hidden", "12",
                             "--max-entries", "20")
    assert code == 0, out + err
    diffs = {name: float(mean) for name, mean, _, _ in BN_GRAD_LINE.findall(out)}
    assert set(diffs) == {"W1", "b1", "W2", "b2", "W3", "b3", "gamma1", "beta1", "gamma2",
                          "beta2"}
    assert max(diffs.values()) <= 1e-8          # test mode's running statistics would fail


def test_every_subcommand_is_one_parser_function_and_one_handler():
    import fastbp.__main__ as cli
    parser = cli.build_parser()
    (subparsers,) = parser._subparsers._group_actions
    names = subparsers.choices
    assert list(names) == ["train", "gradcheck", "evaluate", "info", "bench", "tune"]
    assert [f.__name__ for f in cli.SUBCOMMANDS] == [f"_{name}_parser" for name in names]
    for name, subparser in names.items():
        assert subparser.get_default("handler") is getattr(cli, f"cmd_{name}")
        assert subparser.get_default("command_parser") is subparser


def test_info_shows_the_configuration(capsys):
    code, out, err = run_cli(capsys, "info")
    assert code == 0
    assert "compiled core" in out
    assert "simd" in out and "blas" in out


class ClosedPipe(io.StringIO):
    """A stdout whose reader has gone away after the first line (`| head -1`)."""

    def write(self, text):
        if self.getvalue().count("\n") >= 1:
            raise BrokenPipeError(32, "Broken pipe")
        return super().write(text)


def test_info_into_a_closed_pipe_stops_quietly(capsys, monkeypatch):
    pipe = ClosedPipe()
    monkeypatch.setattr(sys, "stdout", pipe)
    code = main(["info"])
    err = capsys.readouterr().err
    assert code == SIGPIPE_STATUS == 141
    assert err == "" and pipe.getvalue().count("\n") == 1     # no traceback, no message


def test_info_via_subprocess_runs_the_package_under_test(tmp_path):
    proc = run_module(tmp_path, "info", timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "compiled core: " in proc.stdout
    if fastbp.COMPILED:
        assert "compiled core: loaded" in proc.stdout
        assert str(FASTBP_PARENT / "fastbp") in proc.stdout
