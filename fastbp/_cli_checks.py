"""What the ``fastbp`` command checks before any work starts: that every
file it will write can be written, and that the sizes it was given fit in
this machine's memory.  Each check raises ValueError (or OSError) with a
message the command prints as its one-line error."""
import os

from . import _files

__all__ = ["check_output_path", "check_memory", "mlp_run_bytes", "physical_memory"]


def check_output_path(path, suffix=None):
    """The path that will be written (``suffix`` appended when missing, as
    ``np.savez`` appends ``.npz``), after checking a file can be created
    there: its directory exists and takes a new file, and it is not a
    directory.  ValueError/OSError otherwise."""
    path = os.fspath(path)
    if suffix is not None and not path.endswith(suffix):
        path += suffix
    _files.check_writable_output(path)
    return path


def physical_memory():
    """This machine's memory in bytes, or None when the system won't say."""
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


_OPTIMIZER_STATES = {"sgd": 0, "momentum": 1, "nesterov": 1, "adagrad": 1, "rmsprop": 1,
                     "adam": 2}


def mlp_run_bytes(sizes, batch, itemsize, optimizer="sgd", input_itemsize=4,
                  eval_block=512):
    """About the memory a training run of an MLP of widths ``sizes`` allocates
    (a lower bound, in bytes): the parameters, their gradients and the
    optimizer's state; the compiled step's buffers for ``batch`` rows (the
    cast input, each layer's output and its gradient, the activations, their
    gradients and masks); the trainer's batch buffers; the evaluation's
    blocks of ``eval_block`` rows."""
    sizes = [int(s) for s in sizes]
    params = sum(d * m + m for d, m in zip(sizes[:-1], sizes[1:]))
    outputs, hidden = sum(sizes[1:]), sum(sizes[1:-1])
    per_row = itemsize * (sizes[0] + 2 * outputs + 2 * hidden) + hidden   # (+ the masks)
    return (itemsize * params * (2 + _OPTIMIZER_STATES.get(optimizer, 2))
            + per_row * batch + input_itemsize * sizes[0] * batch
            + per_row * eval_block)


def check_memory(what, needed, copies=1):
    """ValueError naming ``what`` (the options that set the sizes) when
    ``copies`` runs of ``needed`` bytes each exceed this machine's memory."""
    total = physical_memory()
    if total is not None and needed * copies > total:
        each = f" ({copies} workers x {_gigabytes(needed)})" if copies > 1 else ""
        raise ValueError(f"{what}: the run needs at least {_gigabytes(needed * copies)} of "
                         f"memory{each}, more than this machine's {_gigabytes(total)}")


def _gigabytes(n):
    """``n`` bytes in GB, TB or PB, three significant digits."""
    for unit, scale in (("PB", 1e15), ("TB", 1e12)):
        if n >= scale:
            return f"{n / scale:.3g} {unit}"
    return f"{n / 1e9:.3g} GB"
