"""fastbp._runtime: the thread limits and optional peers the CLI and the bench share."""
import sys

import pytest

import fastbp
from fastbp import _runtime


class FakeTorch:
    """Just the thread API of torch, recording every change."""

    def __init__(self, threads):
        self.threads = threads
        self.calls = []

    def get_num_threads(self):
        return self.threads

    def set_num_threads(self, n):
        self.calls.append(n)
        self.threads = n


def test_thread_limits_sets_every_pool_and_restores_it():
    # one thread: the limit every pool can honour, however many cores there are
    before = fastbp.get_num_threads()
    torch = FakeTorch(threads=7)
    with _runtime.thread_limits(1, torch) as limited:
        assert limited is _runtime.blas_threads_limitable()
        assert torch.threads == 1
        assert fastbp.get_num_threads() == 1
        if limited:
            from threadpoolctl import threadpool_info
            assert all(pool["num_threads"] == 1 for pool in threadpool_info())
    assert torch.calls == [1, 7]
    assert fastbp.get_num_threads() == before


def test_thread_limits_sets_fastbp_kernel_threads(monkeypatch):
    calls = []
    monkeypatch.setattr(fastbp._backend, "set_num_threads", calls.append)
    with _runtime.thread_limits(3):
        assert calls == [3]
    assert calls == [3, 0]                    # back to the default on exit


def test_thread_limits_restores_on_error():
    before = fastbp.get_num_threads()
    torch = FakeTorch(threads=3)
    with pytest.raises(KeyError):
        with _runtime.thread_limits(1, torch):
            raise KeyError("inside")
    assert torch.threads == 3
    assert fastbp.get_num_threads() == before


@pytest.mark.parametrize("threads", [0, None])
def test_thread_limits_zero_leaves_every_pool_alone(monkeypatch, threads):
    calls = []
    monkeypatch.setattr(fastbp._backend, "set_num_threads", calls.append)
    torch = FakeTorch(threads=5)
    with _runtime.thread_limits(threads, torch) as limited:
        assert limited is False
    assert calls == [] and torch.calls == []


def test_optional_torch_is_none_when_torch_cannot_be_imported(monkeypatch):
    monkeypatch.setitem(sys.modules, "torch", None)       # import torch -> ImportError
    assert _runtime.optional_torch() is None


def test_blas_threads_limitable_follows_threadpoolctl(monkeypatch):
    monkeypatch.setitem(sys.modules, "threadpoolctl", None)
    assert _runtime.blas_threads_limitable() is False
