"""Random hyperparameter search (fastbp/tune.py) and ``fastbp tune``.

The trials are tiny (a 16-unit hidden layer, 200 images, 2 epochs) so that
the serial, joblib (2 worker processes) and Dask (a LocalCluster of 2
worker processes on loopback) runs take seconds.  The Dask tests need the
``dask`` extra; CI sets FASTBP_EXPECT_DASK=1 where it installs it, and then
a missing dask.distributed fails instead of skipping.
"""
import json
import math
import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import fastbp
import fastbp.datasets
from fastbp import tune
from fastbp.__main__ import PLOT_HINT, main
from fastbp.tune import SearchResult, Trial, random_search

# a search that trains in milliseconds per trial
TINY = dict(epochs=2, hidden_size_list=[16], batch_size=50, n_samples=200)
TINY_ARGV = ["--epochs", "2", "--hidden", "16", "--batch-size", "50", "--samples", "200"]
FASTBP_PARENT = Path(fastbp.__file__).resolve().parents[1]
FINAL_LINE = re.compile(r"(\d+) trials in [\d.]+ s: [\d.]+ trials/min \((.+)\)")
ROW = re.compile(r"^\s*(\d+)\s+(\d+)\s+(0\.\d{4}|1\.0000)\s+(\S+)\s+\((\d+)\)\s+(\S+)\s+(\S+)"
                 r"\s+(\S+)\s+[\d.]+ s$")


def _dask_or_skip():
    if os.environ.get("FASTBP_EXPECT_DASK") == "1":
        import distributed  # noqa: F401   (must be there)
        return
    pytest.importorskip("distributed")


@pytest.fixture(scope="module")
def dask_client():
    """A Dask LocalCluster on loopback: 2 worker processes of 1 thread each."""
    _dask_or_skip()
    from distributed import Client, LocalCluster
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                      dashboard_address=None) as cluster, \
            Client(cluster, set_as_default=False) as client:
        yield client


@pytest.fixture(scope="module")
def serial_result():
    return random_search(5, seed=3, **TINY)


def run_cli(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def free_port():
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def table_rows(out):
    """(rank, trial, val acc) of each table row in the CLI output, and the rest."""
    rows = []
    for line in out.splitlines():
        m = ROW.match(line)
        if m:
            rows.append((int(m.group(1)), int(m.group(2)), float(m.group(3)),
                         float(m.group(7)), float(m.group(8))))
    return rows


def fake_trial(index, val_acc):
    return Trial(index=index, lr=1e-3, weight_decay=1e-6, val_acc=val_acc, train_acc=0.5,
                 best_val_acc=val_acc, best_epoch=1, val_acc_list=(val_acc,),
                 train_acc_list=(0.5,), loss_list=(1.0,), elapsed=0.1)


# ---------------------------------------------------------------------------
# same seeds, same results: serial, joblib, Dask
# ---------------------------------------------------------------------------

def test_trials_are_the_same_on_two_joblib_workers(serial_result):
    parallel = random_search(5, seed=3, n_jobs=2, **TINY)
    assert parallel.engine == "joblib, 2 workers"
    assert serial_result.engine == "serial"
    # Trial equality covers hyperparameters, accuracies and every curve
    # (not the elapsed time), bit for bit
    assert parallel.trials == serial_result.trials


def test_trials_are_the_same_on_a_dask_cluster(serial_result, dask_client):
    result = random_search(5, seed=3, scheduler=dask_client, **TINY)
    assert result.engine == f"dask at {dask_client.scheduler.address}, 2 worker threads"
    assert result.trials == serial_result.trials


def test_dask_gets_the_training_images_once_per_search(dask_client, monkeypatch):
    scattered = []
    original = dask_client.scatter

    def recording(data, *args, **kwargs):
        scattered.append(data)
        return original(data, *args, **kwargs)

    monkeypatch.setattr(dask_client, "scatter", recording)
    result = random_search(4, seed=3, scheduler=dask_client, **TINY)
    assert len(result) == 4
    # joblib's dask backend scatters each large array once, not once per trial
    shapes = sorted(a.shape for a in scattered if isinstance(a, np.ndarray))
    assert shapes == [(40, 784), (160, 784)]


def test_dask_scheduler_address_and_joblib_dask_backend(serial_result, dask_client):
    import joblib
    address = dask_client.scheduler.address
    by_address = random_search(5, seed=3, scheduler=address, **TINY)
    assert by_address.trials == serial_result.trials
    # the caller's own joblib configuration is used when n_jobs is None
    with joblib.parallel_config(backend="dask", client=dask_client):
        in_context = random_search(5, seed=3, **TINY)
    assert in_context.trials == serial_result.trials
    assert in_context.engine == "joblib, 2 workers"      # the cluster's two threads


def test_a_trial_depends_only_on_the_seed_and_its_index(serial_result):
    by_index = {t.index: t for t in serial_result.trials}
    # fewer trials: the same first ones
    fewer = random_search(3, seed=3, **TINY)
    assert {t.index: t for t in fewer.trials} == {i: by_index[i] for i in range(3)}
    # any trial re-run alone
    assert serial_result.rerun(4) == by_index[4]
    x_train, t_train, x_val, t_val = tune.validation_split(
        *fastbp.datasets.load_mnist_mini()[0], n_samples=200, seed=3)
    assert tune.run_trial(2, serial_result.config, x_train, t_train, x_val, t_val) == by_index[2]
    # another master seed: other hyperparameters
    other = random_search(3, seed=4, **TINY)
    assert {t.lr for t in other.trials}.isdisjoint({t.lr for t in fewer.trials})


def test_trials_run_single_threaded_and_the_limits_come_back(monkeypatch):
    from threadpoolctl import threadpool_info
    seen = []
    original = tune.run_trial

    def recording(*args):
        seen.append(([lib["num_threads"] for lib in threadpool_info()],
                     fastbp.get_num_threads()))
        return original(*args)

    fastbp.set_num_threads(0)
    before = ([lib["num_threads"] for lib in threadpool_info()], fastbp.get_num_threads())
    monkeypatch.setattr(tune, "run_trial", recording)
    random_search(2, seed=0, **TINY)
    assert len(seen) == 2
    for blas_threads, fastbp_threads in seen:
        assert blas_threads and all(n == 1 for n in blas_threads)
        assert fastbp_threads == 1
    assert ([lib["num_threads"] for lib in threadpool_info()], fastbp.get_num_threads()) == before


def _threads_after_a_trial(index, config, split):
    """Run in a worker: a trial as random_search runs it, then the limits."""
    from threadpoolctl import threadpool_info
    tune._trial_task(index, config, *split)
    return [lib["num_threads"] for lib in threadpool_info()], fastbp.get_num_threads()


def test_worker_processes_run_trials_on_one_thread(serial_result):
    import joblib
    config, split = serial_result.config, serial_result._split
    # workers started with two BLAS/OpenMP threads each: a trial takes them to one
    with joblib.parallel_config(backend="loky", inner_max_num_threads=2):
        seen = joblib.Parallel(n_jobs=2)(
            joblib.delayed(_threads_after_a_trial)(i, config, split) for i in range(2))
    for blas_threads, fastbp_threads in seen:
        assert blas_threads and all(n == 1 for n in blas_threads)
        assert fastbp_threads == 1


# ---------------------------------------------------------------------------
# what a trial holds; the draws; the split
# ---------------------------------------------------------------------------

def test_trial_curves_and_summary(serial_result):
    config = serial_result.config
    n_val = serial_result.n_val
    assert (serial_result.n_train, n_val) == (160, 40)
    for t in serial_result.trials:
        assert len(t.val_acc_list) == len(t.train_acc_list) == len(t.loss_list) == config.epochs
        assert t.val_acc == t.val_acc_list[-1] and t.train_acc == t.train_acc_list[-1]
        assert t.best_val_acc == max(t.val_acc_list)
        assert t.val_acc_list.index(t.best_val_acc) == t.best_epoch - 1
        # accuracies are counts over the 40 validation images
        assert all(abs(a * n_val - round(a * n_val)) < 1e-9 for a in t.val_acc_list)
        assert all(math.isfinite(x) and x > 0 for x in t.loss_list)
        assert t.elapsed > 0
        assert (t.lr, t.weight_decay) == tune.draw_hyperparameters(
            config.seed, t.index, config.lr_range, config.weight_decay_range)


def test_a_good_learning_rate_learns():
    # lr fixed at 0.1 (a one-point range): 10 epochs of 8 steps reach far
    # above chance (0.1) on the held-out images
    result = random_search(1, lr_range=(0.1, 0.1), epochs=10, hidden_size_list=[50],
                           batch_size=50, n_samples=500, seed=0)
    trial = result.best
    assert trial.lr == 0.1
    assert trial.val_acc > 0.6
    assert trial.loss_list[-1] < trial.loss_list[0]


@pytest.mark.parametrize("lr_range, wd_range", [
    ((1e-6, 1e-2), (1e-8, 1e-4)),          # the book's
    ((3e-3, 3.5e-3), (0.5, 2.0)),
])
def test_draws_are_log_uniform_within_the_ranges(lr_range, wd_range):
    draws = np.array([tune.draw_hyperparameters(7, i, lr_range, wd_range)
                      for i in range(2000)])
    for values, (low, high) in ((draws[:, 0], lr_range), (draws[:, 1], wd_range)):
        assert values.min() >= low and values.max() <= high
        q = (np.log(values) - np.log(low)) / (np.log(high) - np.log(low))   # ~U(0, 1)
        counts = np.histogram(q, bins=10, range=(0, 1))[0]
        assert counts.min() > 150 and counts.max() < 250                   # 200 expected
    # the two parameters are drawn independently
    assert abs(np.corrcoef(np.log(draws[:, 0]), np.log(draws[:, 1]))[0, 1]) < 0.1


def test_a_one_point_range_is_that_value():
    assert tune.draw_hyperparameters(0, 5, (2e-3, 2e-3), (1e-5, 1e-5)) == (2e-3, 1e-5)


def test_validation_split_is_the_books():
    (x, t), _ = fastbp.datasets.load_mnist_mini()
    x_train, t_train, x_val, t_val = tune.validation_split(x, t, 500, 0.2, seed=1)
    assert x_train.shape == (400, 784) and x_val.shape == (100, 784)
    assert t_train.shape == (400,) and t_val.shape == (100,)
    # a shuffle of exactly the first 500 images, with their labels
    rows = np.concatenate([x_val, x_train])
    labels = np.concatenate([t_val, t_train])
    order = np.lexsort(rows.T)
    ref = np.lexsort(x[:500].T)
    np.testing.assert_array_equal(rows[order], x[:500][ref])
    np.testing.assert_array_equal(labels[order], t[:500][ref])
    assert not np.array_equal(rows, x[:500])
    # the seed decides it
    again = tune.validation_split(x, t, 500, 0.2, seed=1)
    other = tune.validation_split(x, t, 500, 0.2, seed=2)
    np.testing.assert_array_equal(again[2], x_val)
    assert not np.array_equal(other[2], x_val)
    # images given as (N, 1, 28, 28) are flattened
    four_d = tune.validation_split(x.reshape(-1, 1, 28, 28), t, 500, 0.2, seed=1)
    np.testing.assert_array_equal(four_d[0], x_train)


# ---------------------------------------------------------------------------
# the result: sorted table, JSON, plot
# ---------------------------------------------------------------------------

def test_results_are_sorted_by_final_validation_accuracy_then_index():
    trials = [fake_trial(0, 0.5), fake_trial(1, 0.9), fake_trial(2, 0.7), fake_trial(3, 0.9),
              fake_trial(4, 0.1)]
    result = SearchResult(trials, config=None, split=(np.zeros(3),) * 4, elapsed=30.0,
                          engine="serial")
    assert [t.index for t in result.trials] == [1, 3, 2, 0, 4]
    assert result.best.index == 1
    assert result.trials_per_minute == pytest.approx(10.0)
    lines = result.table().splitlines()
    assert lines[0].split()[:3] == ["rank", "trial", "val"]
    assert [tuple(line.split()[:3]) for line in lines[1:]] == [
        ("1", "1", "0.9000"), ("2", "3", "0.9000"), ("3", "2", "0.7000"), ("4", "0", "0.5000"),
        ("5", "4", "0.1000")]
    top = result.table(top=2).splitlines()
    assert len(top) == 4 and top[-1] == "(3 more)"


def test_real_results_are_sorted(serial_result):
    keys = [(-t.val_acc, t.index) for t in serial_result.trials]
    assert keys == sorted(keys)
    assert len(serial_result) == 5
    assert sorted(t.index for t in serial_result.trials) == list(range(5))


def test_save_json_round_trips(serial_result, tmp_path):
    path = tmp_path / "r.json"
    serial_result.save_json(path)
    doc = json.loads(path.read_text())
    assert doc["config"]["seed"] == 3 and doc["config"]["epochs"] == 2
    assert doc["config"]["hidden_size_list"] == [16]
    assert (doc["n_train"], doc["n_val"]) == (160, 40)
    assert [Trial(**{k: tuple(v) if isinstance(v, list) else v for k, v in d.items()})
            for d in doc["trials"]] == serial_result.trials


def test_plot_draws_the_best_trials(serial_result, tmp_path, monkeypatch):
    pytest.importorskip("matplotlib")
    monkeypatch.setenv("MPLBACKEND", "Agg")
    path = tmp_path / "trials.png"
    fig = serial_result.plot(path, top=3)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    drawn = [ax for ax in fig.axes if ax.axison]
    assert len(drawn) == 3
    for ax, trial in zip(drawn, serial_result.trials):
        val_line, train_line = ax.get_lines()
        np.testing.assert_array_equal(val_line.get_ydata(), trial.val_acc_list)
        np.testing.assert_array_equal(train_line.get_ydata(), trial.train_acc_list)
        assert ax.get_title().startswith(f"Best-{drawn.index(ax) + 1}: val {trial.val_acc:.3f}")


def test_check_plot_format():
    pytest.importorskip("matplotlib")
    for good in ("a.png", "a.PDF", "a.svg", "noextension"):
        tune.check_plot_format(good)
    with pytest.raises(ValueError, match=r"a\.xyz: expected a file name ending in one of .*"
                                         r"\.png.*got '\.xyz'"):
        tune.check_plot_format("a.xyz")


# ---------------------------------------------------------------------------
# bad arguments (API)
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("kwargs, message", [
    (dict(n_trials=0), r"n_trials: expected a positive integer, got 0"),
    (dict(n_trials=2.0), r"n_trials: expected a positive integer, got 2\.0"),
    (dict(n_trials=True), r"n_trials: expected a positive integer, got True"),
    (dict(lr_range=(1e-2, 1e-6)), r"lr_range: expected 0 < low <= high .*got \(0\.01, 1e-06\)"),
    (dict(lr_range=(0, 1e-2)), r"lr_range: expected 0 < low <= high"),
    (dict(lr_range=(1e-3, float("inf"))), r"lr_range: expected 0 < low <= high"),
    (dict(lr_range=(1e-3, float("nan"))), r"lr_range: expected 0 < low <= high"),
    (dict(lr_range=0.01), r"lr_range: expected a pair \(low, high\) of positive numbers"),
    (dict(lr_range=(1, 2, 3)), r"lr_range: expected a pair"),
    (dict(weight_decay_range=(1e-4, 1e-8)), r"weight_decay_range: expected 0 < low <= high"),
    (dict(weight_decay_range=(-1e-8, 1e-4)), r"weight_decay_range: expected 0 < low <= high"),
    (dict(epochs=0), r"epochs: expected a positive integer, got 0"),
    (dict(batch_size=0), r"batch_size: expected a positive integer"),
    (dict(hidden_size_list="100"), r"hidden_size_list: expected a list of positive integers"),
    (dict(hidden_size_list=[100, 0]), r"hidden_size_list\[1\]: expected a positive integer"),
    (dict(optimizer="lbfgs"), r"optimizer: expected one of sgd, momentum, .*got 'lbfgs'"),
    (dict(dtype="float16"), r"dtype: expected float32 or float64, got 'float16'"),
    (dict(dtype="nonsense"), r"dtype: expected float32 or float64, got 'nonsense'"),
    (dict(seed=-1), r"seed: expected an integer >= 0, got -1"),
    (dict(n_jobs=0), r"n_jobs: expected None, a positive number of workers or a negative one"),
    (dict(n_jobs=1.5), r"n_jobs: expected None"),
    (dict(n_jobs=2, scheduler="tcp://127.0.0.1:8786"), r"n_jobs: expected None with scheduler="),
    (dict(scheduler=8786), r"scheduler: expected an address like tcp://host:8786 or a "
                           r"dask\.distributed\.Client, got 8786"),
    (dict(n_samples=20000), r"n_samples: expected at most the 10000 images given, got 20000"),
    (dict(n_samples=1), r"n_samples: expected an integer >= 2, got 1"),
    (dict(validation_rate=1.0), r"validation_rate: expected a number in \(0, 1\), got 1\.0"),
    (dict(validation_rate=0.001), r"validation_rate: 0\.001 of 500 samples leaves 0 for "
                                  r"validation"),
    (dict(data=np.zeros((5, 4))), r"data: expected a pair \(x, t\)"),
    (dict(data=(np.zeros((5, 4)), np.zeros(4))), r"t: expected 5 labels"),
])
def test_bad_arguments_name_the_argument(kwargs, message, monkeypatch):
    calls = []
    monkeypatch.setattr(tune, "run_trial", lambda *a: calls.append(a))
    with pytest.raises(ValueError, match="^" + message):
        random_search(**{"n_trials": 2, **kwargs})
    assert calls == []


def test_connect_scheduler_errors():
    _dask_or_skip()
    with pytest.raises(ValueError, match="unknown address scheme 'foo'"):
        tune.connect_scheduler("foo://bar")
    with pytest.raises(ValueError, match="scheduler: expected an address"):
        tune.connect_scheduler("  ")
    with pytest.raises(ValueError, match="missing port number in address '127.0.0.1'"):
        tune.connect_scheduler("tcp://127.0.0.1")
    port = free_port()
    with pytest.raises(OSError, match=f"no Dask scheduler at tcp://127.0.0.1:{port}: "):
        tune.connect_scheduler(f"tcp://127.0.0.1:{port}", timeout=5)


def test_without_dask_the_error_says_how_to_install_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "distributed", None)
    with pytest.raises(ImportError, match=re.escape("pip install 'fastbp[dask]'")):
        tune.connect_scheduler("tcp://127.0.0.1:8786")
    with pytest.raises(ImportError, match=re.escape("pip install 'fastbp[dask]'")):
        random_search(2, scheduler="tcp://127.0.0.1:8786", **TINY)


def test_importing_fastbp_tune_does_not_import_dask():
    code = ("import sys, fastbp.tune, fastbp.__main__; "
            "print(sorted(m for m in ('dask', 'distributed') if m in sys.modules))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(FASTBP_PARENT)}, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"


# ---------------------------------------------------------------------------
# fastbp tune
# ---------------------------------------------------------------------------

@pytest.fixture
def searches(monkeypatch):
    """Records every random_search call the CLI makes (and runs it)."""
    calls = []
    original = tune.random_search

    def recording(*args, **kwargs):
        calls.append(kwargs)
        return original(*args, **kwargs)

    monkeypatch.setattr(tune, "random_search", recording)
    return calls


def test_cli_prints_a_sorted_table_and_the_rate(capsys, searches):
    code, out, err = run_cli(capsys, "tune", "--trials", "4", "--jobs", "1", "--seed", "3",
                             *TINY_ARGV)
    assert code == 0, err
    lines = out.strip().splitlines()
    assert lines[0] == "MultiLayerNet 784-16-10 (relu), sgd, batch 50, 2 epochs, float64"
    m = FINAL_LINE.fullmatch(lines[-1])
    assert m and m.group(1) == "4" and m.group(2) == "serial"
    rows = table_rows(out)
    assert [r[0] for r in rows] == [1, 2, 3, 4]
    assert sorted(r[1] for r in rows) == [0, 1, 2, 3]
    assert [(-r[2], r[1]) for r in rows] == sorted((-r[2], r[1]) for r in rows)
    best = rows[0]
    assert lines[-2] == (f"best: trial {best[1]}, val acc {best[2]:.4f}, lr {best[3]:.3g}, "
                         f"weight decay {best[4]:.3g}")
    # the same trials as the API's
    api = random_search(4, seed=3, **TINY)
    assert [(t.index, round(t.val_acc, 4)) for t in api.trials] == [(r[1], r[2]) for r in rows]
    assert searches[0]["lr_range"] == (1e-6, 1e-2)
    assert searches[0]["weight_decay_range"] == (1e-8, 1e-4)


def test_cli_two_workers_and_dask_print_the_same_table(capsys, dask_client):
    tables = {}
    for how in (["--jobs", "1"], ["--jobs", "2"], ["--scheduler", dask_client.scheduler.address]):
        code, out, err = run_cli(capsys, "tune", "--trials", "4", "--quiet", *how, *TINY_ARGV)
        assert code == 0, err
        tables[how[0] + how[1]] = table_rows(out)
        assert FINAL_LINE.fullmatch(out.strip().splitlines()[-1])
    first, *others = tables.values()
    assert len(first) == 4
    assert all(t == first for t in others)


def test_cli_ranges_reach_the_search(capsys, searches):
    code, out, err = run_cli(capsys, "tune", "--trials", "3", "--jobs", "1", "--lr-range",
                             "1e-3", "2e-3", "--weight-decay-range", "1e-6", "1e-6",
                             *TINY_ARGV)
    assert code == 0, err
    rows = table_rows(out)
    assert len(rows) == 3
    assert all(1e-3 * 0.995 <= r[3] <= 2e-3 * 1.005 for r in rows)   # printed with 3 digits
    assert all(r[4] == 1e-6 for r in rows)


def test_cli_plot_and_save(capsys, tmp_path, monkeypatch):
    pytest.importorskip("matplotlib")
    monkeypatch.setenv("MPLBACKEND", "Agg")
    plot, save = tmp_path / "trials.png", tmp_path / "trials.json"
    code, out, err = run_cli(capsys, "tune", "--trials", "3", "--jobs", "1", "--plot",
                             str(plot), "--save", str(save), *TINY_ARGV)
    assert code == 0, err
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert f"saved curves to {plot}" in out and f"saved results to {save}" in out
    doc = json.loads(save.read_text())
    assert [(t["index"], round(t["val_acc"], 4)) for t in doc["trials"]] == \
        [(r[1], r[2]) for r in table_rows(out)]


@pytest.mark.parametrize("argv", [
    ["--trials", "0"],
    ["--trials", "-1"],
    ["--jobs", "0"],
    ["--epochs", "0"],
    ["--lr-range", "1e-3"],
    ["--lr-range", "0", "1e-2"],
    ["--lr-range", "x", "1e-2"],
    ["--weight-decay-range", "-1e-8", "1e-4"],
    ["--validation-rate", "0"],
    ["--hidden", "16,,16"],
    ["--optimizer", "lbfgs"],
    ["--data", "cifar"],
])
def test_cli_usage_errors(capsys, searches, argv):
    code, out, err = run_cli(capsys, "tune", *argv)
    assert code == 2
    assert "usage: fastbp tune" in err and "error: argument" in err
    assert "Traceback" not in err
    assert searches == []


def free_address():
    return f"tcp://127.0.0.1:{free_port()}"


@pytest.mark.parametrize("argv, message", [
    (["--lr-range", "1e-2", "1e-6"], "--lr-range: expected LOW <= HIGH, got 0.01 1e-06"),
    (["--weight-decay-range", "1e-4", "1e-8"],
     "--weight-decay-range: expected LOW <= HIGH, got 0.0001 1e-08"),
    (["--validation-rate", "1.5"], "--validation-rate: expected a fraction in (0, 1), got 1.5"),
    (["--scheduler", "tcp://127.0.0.1:8786", "--jobs", "2"],
     "--jobs is for local workers: with --scheduler"),
    (["--plot", "out.xyz"], "--plot out.xyz: expected a file name ending in one of"),
    (["--plot", "no/such/dir/out.png"], "--plot no/such/dir/out.png: directory"),
    (["--save", "no/such/dir/r.json"], "--save no/such/dir/r.json: directory"),
])
def test_cli_bad_values_are_one_line_errors(capsys, searches, argv, message):
    if "--plot" in argv:
        pytest.importorskip("matplotlib")
    code, out, err = run_cli(capsys, "tune", *argv)
    assert code == 2
    assert err.startswith(f"fastbp: error: {message}"), err
    assert len(err.strip().splitlines()) == 1
    assert out == ""
    assert searches == []


@pytest.mark.parametrize("address, message", [
    ("foo://bar", "--scheduler foo://bar: unknown address scheme 'foo'"),
    ("tcp://127.0.0.1", "--scheduler tcp://127.0.0.1: missing port number in address"),
    (None, "--scheduler {address}: no Dask scheduler at {address}: "),
])
def test_cli_bad_scheduler_is_a_one_line_error(capsys, searches, address, message):
    _dask_or_skip()
    if address is None:
        address = free_address()
        message = message.format(address=address)
    code, out, err = run_cli(capsys, "tune", "--scheduler", address, "--trials", "2")
    assert code == 2
    assert err.startswith(f"fastbp: error: {message}"), err
    assert len(err.strip().splitlines()) == 1
    assert searches == []


def test_cli_too_many_samples_is_a_one_line_error(capsys):
    code, out, err = run_cli(capsys, "tune", "--samples", "20000", "--trials", "2", "--quiet")
    assert code == 2
    assert err == "fastbp: error: n_samples: expected at most the 10000 images given, " \
                  "got 20000\n"


def test_cli_without_matplotlib_or_dask_says_what_to_install(capsys, searches, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    monkeypatch.setitem(sys.modules, "matplotlib.backend_bases", None)
    monkeypatch.setitem(sys.modules, "distributed", None)
    code, out, err = run_cli(capsys, "tune", "--plot", "x.png")
    assert code == 2 and err == f"fastbp: error: {PLOT_HINT}\n"
    code, out, err = run_cli(capsys, "tune", "--scheduler", "tcp://127.0.0.1:8786")
    assert code == 2
    assert err == f"fastbp: error: --scheduler: {tune.DASK_HINT}\n"
    assert searches == []


def test_cli_bad_scheduler_in_a_real_process(tmp_path):
    # a failed Dask connection must not print anything more at exit
    _dask_or_skip()
    address = free_address()
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(FASTBP_PARENT),
                                                    env.get("PYTHONPATH", "")) if p)
    # FASTBP_PURE=1 runs warn once at import: not what this test is about
    env["PYTHONWARNINGS"] = "ignore:fastbp is running on its pure-NumPy reference"
    proc = subprocess.run([sys.executable, "-m", "fastbp", "tune", "--scheduler", address],
                          capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.startswith(f"fastbp: error: --scheduler {address}: no Dask scheduler")
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert proc.stdout == ""
