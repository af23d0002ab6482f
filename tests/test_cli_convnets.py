"""The command line's chapters 7-8: ``fastbp train --net simple-convnet|
deep-convnet``, ``fastbp gradcheck --net simple-convnet`` and ``fastbp
evaluate PARAMS.pkl`` (the book's ch08/misclassified_mnist.py)."""
import pickle
import re

import numpy as np
import pytest
from threadpoolctl import threadpool_limits

import fastbp.trainer
from bookcode import BOOK_DIR, requires_book
from fastbp.__main__ import CONVNET_EPOCHS, CONVNET_EVAL_SAMPLES, main
from fastbp.datasets import load_mnist_mini
from fastbp.networks import DeepConvNet, SimpleConvNet

EVALUATE_LAST = re.compile(r"test accuracy: (\d\.\d{4}) \((\d+) images, [\d.]+ s, \d+ images/s\)")


def run_cli(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def fake_training(monkeypatch):
    """Trainer.train replaced: the trainers built, not run (to check the setup)."""
    built = []

    def train(self):
        built.append(self)
        self.test_acc, self.elapsed = 0.5, 1.0
        return self

    monkeypatch.setattr(fastbp.trainer.Trainer, "train", train)
    return built


def test_simple_convnet_trains_saves_and_evaluates(tmp_path, capsys):
    path = tmp_path / "simple.pkl"
    code, out, err = run_cli(capsys, "train", "--net", "simple-convnet", "--iters", "60",
                             "--save", str(path), "--seed", "1")
    assert code == 0, err
    assert out.startswith("SimpleConvNet(input_dim=(1, 28, 28)")
    assert "Adam(lr=0.001" in out
    accuracy = float(re.search(r"test accuracy: (0\.\d{4})", out.splitlines()[-1]).group(1))
    assert accuracy > 0.5                          # chance is 0.1
    with open(path, "rb") as f:                    # the book's format: a plain dict of arrays
        saved = pickle.load(f)
    assert sorted(saved) == ["W1", "W2", "W3", "b1", "b2", "b3"]
    code, out, err = run_cli(capsys, "evaluate", str(path), "--show", "3")
    assert code == 0, err
    match = EVALUATE_LAST.fullmatch(out.splitlines()[-1])
    assert match and int(match.group(2)) == 2000
    assert float(match.group(1)) == accuracy       # the test set the trainer measured
    assert re.search(r"misclassified: \d+; the first 3 as \{index: \(label, predicted\)\}: "
                     r"\{\d+: \(\d, \d\), \d+: \(\d, \d\), \d+: \(\d, \d\)\}", out)


@pytest.mark.parametrize("net,cls", [("simple-convnet", SimpleConvNet),
                                     ("deep-convnet", DeepConvNet)])
def test_convnets_train_as_the_book(net, cls, capsys, fake_training):
    code, out, err = run_cli(capsys, "train", "--net", net, "--dtype", "float32")
    assert code == 0, err
    (trainer,) = fake_training
    assert type(trainer.network) is cls and trainer.network.dtype == np.float32
    assert trainer.network.params["W1"].shape[1:] == (1,) + trainer.network.params["W1"].shape[2:]
    assert type(trainer.optimizer).__name__ == "Adam" and trainer.optimizer.lr == 0.001
    assert trainer.max_iter == CONVNET_EPOCHS[net] * 100 and trainer.batch_size == 100
    assert trainer.evaluate_sample_num_per_epoch == CONVNET_EVAL_SAMPLES
    assert trainer.x_train.shape[1:] == (1, 28, 28)


def test_convnet_hidden_size_and_optimizer_options(capsys, fake_training):
    code, out, err = run_cli(capsys, "train", "--net", "deep-convnet", "--hidden", "20",
                             "--optimizer", "sgd", "--epochs", "1")
    assert code == 0, err
    (trainer,) = fake_training
    assert trainer.network.hidden_size == 20 and trainer.optimizer.lr == 0.1


@pytest.mark.parametrize("argv,needle", [
    (["train", "--net", "simple-convnet", "--activation", "sigmoid"], "--activation is for"),
    (["train", "--net", "deep-convnet", "--hidden", "10,20"], "one hidden affine layer"),
    (["train", "--net", "lenet"], "invalid choice"),
    (["gradcheck", "--net", "deep-convnet"], "invalid choice"),
    (["evaluate"], "the following arguments are required: PARAMS.pkl"),
    (["evaluate", "p.pkl", "--net", "mlp"], "invalid choice"),
])
def test_bad_convnet_arguments_are_usage_errors(argv, needle, capsys, fake_training):
    code, out, err = run_cli(capsys, *argv)
    assert code == 2 and needle in err and "Traceback" not in err
    assert fake_training == []


def test_gradcheck_simple_convnet(capsys):
    code, out, err = run_cli(capsys, "gradcheck", "--net", "simple-convnet", "--seed", "1")
    assert code == 0, err
    assert out.startswith("SimpleConvNet 1x10x10-conv10x3x3-10-10 float64 (fast backend), "
                          "3 images: all 1820 entries")
    diffs = dict(re.findall(r"^(\w\d): mean \|diff\| = (\S+),", out, re.M))
    assert list(diffs) == ["W1", "b1", "W2", "b2", "W3", "b3"]
    assert all(float(v) <= 1e-9 for v in diffs.values())
    assert out.rstrip().endswith("gradient check passed: every mean |diff| <= 1e-09")


@requires_book
@pytest.mark.parametrize("params_file,cls", [("ch07/params.pkl", SimpleConvNet),
                                             ("ch08/deep_convnet_params.pkl", DeepConvNet)])
def test_evaluate_the_books_files(params_file, cls, capsys):
    path = f"{BOOK_DIR}/{params_file}"
    code, out, err = run_cli(capsys, "evaluate", path, "--quiet")
    assert code == 0, err
    (line,) = out.splitlines()
    accuracy, images = EVALUATE_LAST.fullmatch(line).groups()
    net = cls(seed=0).load_params(path)
    (_, _), (x_test, t_test) = load_mnist_mini(flatten=False)
    assert images == "2000"
    with threadpool_limits(1):          # as evaluate: a convnet's GEMMs are too small for threads
        assert accuracy == f"{net.accuracy(x_test, t_test):.4f}"


def test_evaluate_refuses_files_that_are_not_the_networks(tmp_path, capsys):
    net = SimpleConvNet(seed=0)
    simple = tmp_path / "simple.pkl"
    net.save_params(simple)
    # larger than DeepConvNet's parameters can be: refused before it is read
    code, out, err = run_cli(capsys, "evaluate", str(simple), "--net", "deep-convnet")
    assert code == 1 and "cannot load" in err and "into DeepConvNet" in err
    assert "more than the" in err
    deep = tmp_path / "deep.pkl"
    DeepConvNet(seed=0).save_params(deep)
    code, out, err = run_cli(capsys, "evaluate", str(deep), "--net", "simple-convnet")
    assert code == 1 and "into SimpleConvNet" in err and "expected the parameters" in err
    other = tmp_path / "other.pkl"
    with open(other, "wb") as f:
        pickle.dump({"W1": np.ones(3)}, f)
    code, out, err = run_cli(capsys, "evaluate", str(other))
    assert code == 1 and "cannot tell the network" in err
    code, out, err = run_cli(capsys, "evaluate", str(tmp_path / "missing.pkl"))
    assert code == 1 and "cannot read" in err


class RunsCode:
    def __reduce__(self):
        import os
        return (os.getcwd, ())


def test_evaluate_never_runs_code_from_the_file(tmp_path, capsys):
    path = tmp_path / "evil.pkl"
    with open(path, "wb") as f:
        pickle.dump({"W1": RunsCode()}, f)
    code, out, err = run_cli(capsys, "evaluate", str(path))
    assert code == 1 and "refused to load" in err
