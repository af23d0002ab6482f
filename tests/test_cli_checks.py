"""The command line checks everything before it works.

Every subcommand that writes a file (train: --save, --plot; tune: --save,
--plot) checks each path and format before any data is loaded or any step
runs: a directory that doesn't exist, a path that is a directory (also
``--save d`` when ``d.npz`` is one), a directory that takes no new file
(/proc), a format matplotlib doesn't write.  Sizes that can't fit in memory
and thread or worker counts past 4 x the CPUs are usage errors too.  Every
error is one ``fastbp: error: ...`` line (argparse's own say ``fastbp
COMMAND: error:``), exit 2, no traceback.
"""
import os

import numpy as np
import pytest
import threadpoolctl

import fastbp
import fastbp.trainer
import fastbp.tune
from fastbp.__main__ import main


@pytest.fixture
def work_started(monkeypatch):
    """Records every start of real work: data loading, training, a search."""
    started = []
    import fastbp.__main__ as cli

    def recorder(name, original):
        def record(*args, **kwargs):
            started.append(name)
            return original(*args, **kwargs)
        return record

    monkeypatch.setattr(cli, "_load_data", recorder("load", cli._load_data))
    monkeypatch.setattr(fastbp.trainer.Trainer, "train",
                        recorder("train", fastbp.trainer.Trainer.train))
    monkeypatch.setattr(fastbp.tune, "random_search",
                        recorder("search", fastbp.tune.random_search))
    return started


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_line_usage_error(code, err, *needles):
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("fastbp: error: "), err
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    assert "Traceback" not in err


BAD_OUTPUTS = {
    # name: (option, path maker, what the message says)
    "plot format": ("--plot", lambda tmp: tmp / "curve.xyz", "got '.xyz'"),
    "plot into /proc": ("--plot", lambda tmp: "/proc/curve.png", "cannot create a file in /proc"),
    "plot into a missing directory": ("--plot", lambda tmp: tmp / "no" / "c.png",
                                      "does not exist"),
    "save into /proc": ("--save", lambda tmp: "/proc/m.npz", "cannot create a file in /proc"),
    "save into a missing directory": ("--save", lambda tmp: tmp / "no" / "m.npz",
                                      "does not exist"),
    "save onto a directory": ("--save", lambda tmp: _directory(tmp / "d.npz"),
                              "is a directory"),
}


def _directory(path):
    path.mkdir()
    return path


@pytest.mark.parametrize("case", BAD_OUTPUTS)
@pytest.mark.parametrize("command", ["train", "tune"])
def test_every_output_is_checked_before_any_work(command, case, tmp_path, capsys, work_started):
    option, make_path, needle = BAD_OUTPUTS[case]
    path = make_path(tmp_path)
    code, out, err = run(capsys, command, option, path, "--quiet")
    assert_one_line_usage_error(code, err, option, needle)
    assert work_started == []


def test_train_save_whose_npz_name_is_a_directory(tmp_path, capsys, work_started):
    # `--save d` writes d.npz: that is the path to check
    (tmp_path / "d.npz").mkdir()
    code, out, err = run(capsys, "train", "--save", tmp_path / "d", "--quiet")
    assert_one_line_usage_error(code, err, "--save", "d.npz: is a directory")
    assert work_started == []


def test_a_checked_output_path_leaves_no_file_behind(tmp_path, capsys, monkeypatch):
    # The check creates and removes a file; the run then writes the real one.
    def no_training(self):
        self.test_acc = 0.5
        return self
    monkeypatch.setattr(fastbp.trainer.Trainer, "train", no_training)
    code, out, err = run(capsys, "train", "--iters", "1", "--save", tmp_path / "m", "--quiet")
    assert code == 0, err
    assert sorted(os.listdir(tmp_path)) == ["m.npz"]


MEMORY_CASES = {
    "train batch": (["train", "--batch-size", 10 ** 10], "--batch-size and --hidden"),
    "train hidden": (["train", "--hidden", 10 ** 9], "--batch-size and --hidden"),
    "train hidden list": (["train", "--hidden", f"100,{10 ** 9}"], "--batch-size and --hidden"),
    "tune batch": (["tune", "--batch-size", 10 ** 10], "--batch-size and --hidden"),
    "tune hidden": (["tune", "--hidden", 10 ** 9], "--batch-size and --hidden"),
    "gradcheck hidden": (["gradcheck", "--hidden", 10 ** 11], "--hidden"),
}


@pytest.mark.parametrize("case", MEMORY_CASES)
def test_sizes_that_cannot_fit_in_memory_are_a_usage_error(case, capsys, work_started):
    argv, what = MEMORY_CASES[case]
    code, out, err = run(capsys, *argv, "--quiet") if argv[0] != "gradcheck" else \
        run(capsys, *argv)
    assert_one_line_usage_error(code, err, what, "the run needs at least", "more than this machine's")
    assert work_started == []


def test_an_allocation_that_fails_anyway_is_one_line(capsys, monkeypatch):
    def out_of_memory(self):
        raise MemoryError("Unable to allocate 8 GiB")
    monkeypatch.setattr(fastbp.trainer.Trainer, "train", out_of_memory)
    code, out, err = run(capsys, "train", "--iters", "1", "--quiet")
    assert_one_line_usage_error(code, err, "out of memory", "Unable to allocate 8 GiB",
                                "--batch-size")


LIMIT = 4 * (os.cpu_count() or 1)


@pytest.mark.parametrize("argv,lowest", [
    (["train", "--threads", 3_000_000_000], 0),
    (["train", "--threads", LIMIT + 1], 0),
    (["train", "--threads", -1], 0),
    (["bench", "--threads", LIMIT + 1], 1),
    (["bench", "--threads", 0], 1),
    (["tune", "--jobs", 100_000], 1),
    (["tune", "--jobs", 0], 1),
])
def test_thread_and_worker_counts_are_capped(argv, lowest, capsys, work_started):
    code, out, err = run(capsys, *argv)
    assert code == 2
    last = err.strip().splitlines()[-1]
    assert last.startswith(f"fastbp {argv[0]}: error: argument {argv[1]}: expected "), err
    assert f"from {lowest} to {LIMIT} (4 x the {LIMIT // 4} CPUs), got '{argv[2]}'" in last
    assert "Traceback" not in err
    assert work_started == []


@pytest.mark.parametrize("n", [0, 1, LIMIT, np.int64(2), np.uint8(1), np.int32(LIMIT)])
def test_set_num_threads_takes_python_and_numpy_integers(n):
    threaded = fastbp.COMPILED and fastbp._backend.elementwise.openmp_enabled()
    try:
        if threaded and not n:
            # 0 hands the count back to the default: OpenMP's own setting when
            # OMP_NUM_THREADS asked for it (two settings made through
            # threadpoolctl, as a user would, give two counts), else one
            follows_openmp = "OMP_NUM_THREADS" in os.environ
            for openmp_threads in (1, 2):
                with threadpoolctl.threadpool_limits(limits=openmp_threads, user_api="openmp"):
                    fastbp.set_num_threads(3)          # away from it first
                    fastbp.set_num_threads(n)
                    assert fastbp.get_num_threads() == (openmp_threads if follows_openmp else 1)
        else:
            fastbp.set_num_threads(n)
            # a serial build takes the count and runs one
            assert fastbp.get_num_threads() == (int(n) if threaded else 1)
    finally:
        fastbp.set_num_threads(0)


@pytest.mark.parametrize("n", [-1, LIMIT + 1, 2 ** 31, 3_000_000_000, np.int64(2 ** 40),
                               True, np.bool_(True), 2.0, "2", None])
def test_set_num_threads_refuses_other_counts_clearly(n):
    before = fastbp.get_num_threads()
    with pytest.raises(ValueError) as info:
        fastbp.set_num_threads(n)
    assert str(info.value) == (f"n: expected a thread count from 0 (the default) to {LIMIT} "
                               f"(4 x the {os.cpu_count() or 1} CPUs), got {n!r}")
    assert fastbp.get_num_threads() == before
