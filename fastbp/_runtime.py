"""Thread pools and optional peers at run time: shared by the CLI and ``fastbp bench``.

``thread_limits(n)`` pins every pool a run touches -- BLAS/OpenMP through
threadpoolctl, fastbp's own kernels through ``fastbp.set_num_threads`` and,
if given, PyTorch's intra-op pool -- to ``n`` threads for a ``with`` block.
``blas_threads_limitable()`` says whether threadpoolctl is there to do the
BLAS part; ``optional_torch()`` imports PyTorch, the optional peer of the
benchmarks, or returns None.
"""
import contextlib

__all__ = ["blas_threads_limitable", "optional_torch", "thread_limits"]


def blas_threads_limitable():
    """True when threadpoolctl is importable, so ``thread_limits`` can limit BLAS."""
    try:
        import threadpoolctl  # noqa: F401
    except ImportError:
        return False
    return True


def optional_torch():
    """The ``torch`` module with ``torch.nn`` and ``torch.nn.functional``, or None.

    PyTorch is never a dependency: a missing or broken install (any error on
    import) means "no PyTorch column", not a failure.
    """
    try:
        import torch
        import torch.nn  # noqa: F401
        import torch.nn.functional  # noqa: F401
    except Exception:
        return None
    return torch


@contextlib.contextmanager
def thread_limits(threads, torch=None):
    """Limit BLAS/OpenMP (threadpoolctl), fastbp's kernels and ``torch`` to ``threads``.

    threads: a positive count, or 0 / None to leave every pool as it is (the
    block then runs with the libraries' defaults).  torch: the torch module,
    or None to leave PyTorch alone.

    Yields whether threadpoolctl was there to limit BLAS (False for
    threads 0 / None).  On exit BLAS and torch get their previous limits
    back and fastbp's kernels the default (``set_num_threads(0)``).
    """
    if not threads:
        yield False
        return
    from . import _backend
    with contextlib.ExitStack() as stack:
        try:
            from threadpoolctl import threadpool_limits
        except ImportError:
            limited = False
        else:
            stack.enter_context(threadpool_limits(limits=threads))
            limited = True
        _backend.set_num_threads(threads)
        stack.callback(_backend.set_num_threads, 0)
        if torch is not None:
            previous = torch.get_num_threads()
            torch.set_num_threads(threads)
            stack.callback(torch.set_num_threads, previous)
        yield limited
