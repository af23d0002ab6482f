"""Files fastbp writes and reads: written whole or not at all, read only
after their index says they are what is expected.

* :func:`atomic_write` writes into a temporary file in the target's own
  directory and ``os.replace``s it over the target once complete, so a
  failed save (disk full, a size limit, Ctrl-C) leaves the previous file as
  it was and no partial one.
* :func:`npz_index` lists the arrays of an ``.npz`` archive -- name, shape,
  dtype -- from each member's ``.npy`` header alone (a few hundred bytes),
  after checking the member's size agrees with the header; a caller checks
  that index against what it expects before reading any array, so a file
  with an unexpected 400 MB entry costs nothing.
* :func:`check_writable_output` tells, before any work, whether a file can
  be written at a path (what the CLI checks before it trains).
"""
import math
import os
import secrets
import zipfile

import numpy as np

__all__ = ["atomic_write", "check_writable_output", "npz_index", "NpzEntry"]


def _temporary_name(path):
    directory, name = os.path.split(os.path.abspath(path))
    return os.path.join(directory, f".{name}.{secrets.token_hex(6)}.tmp")


def atomic_write(path, write):
    """Call ``write(f)`` on a new binary file, then move it to ``path``.

    The file is created beside ``path`` (same directory, so the final
    ``os.replace`` is atomic), with the permissions a new file gets (mode
    0o666 less the umask), flushed and fsync'ed before it replaces
    ``path``.  On any error, KeyboardInterrupt included, the temporary file
    is removed and ``path`` is left as it was.  Returns ``path``.
    """
    path = os.fspath(path)
    while True:
        temporary = _temporary_name(path)
        try:
            fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        except FileExistsError:      # (48 random bits taken: try another)
            continue
        break
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(temporary, path)
    except BaseException:
        try:
            os.unlink(temporary)
        except OSError:
            pass
        raise
    return path


def check_writable_output(path):
    """OSError/ValueError naming ``path`` unless a file can be written there:
    its directory exists and takes a new file (one is created and removed
    again: the check ``atomic_write`` itself depends on), and ``path`` is not
    a directory."""
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        raise ValueError(f"{path}: directory {directory} does not exist")
    if os.path.isdir(path):
        raise ValueError(f"{path}: is a directory")
    temporary = _temporary_name(path)
    try:
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    except OSError as exc:
        raise OSError(f"{path}: cannot create a file in {directory} "
                      f"({exc.strerror or exc})") from None
    os.close(fd)
    os.unlink(temporary)


class NpzEntry:
    """One array of an ``.npz`` archive, from its header: ``shape``, ``dtype``."""

    __slots__ = ("name", "shape", "dtype")

    def __init__(self, name, shape, dtype):
        self.name, self.shape, self.dtype = name, shape, dtype

    def __repr__(self):
        return f"NpzEntry({self.name!r}, {self.shape}, {self.dtype})"


def _read_header(member):
    version = np.lib.format.read_magic(member)
    if version == (1, 0):
        return np.lib.format.read_array_header_1_0(member)
    if version == (2, 0):
        return np.lib.format.read_array_header_2_0(member)
    raise ValueError(f"unsupported .npy format version {version}")


def npz_index(npz, source):
    """``{name: NpzEntry}`` for every array of the open archive ``npz`` (an
    ``np.load`` result), read from the headers only.

    ValueError naming ``source`` and the entry when a member is not a
    ``.npy`` array, holds Python objects, or has another size than its
    header announces (a truncated or padded member).
    """
    if not isinstance(npz, np.lib.npyio.NpzFile):
        raise ValueError(f"{source}: expected an .npz archive (np.savez), got a single "
                         f"{type(npz).__name__}")
    index = {}
    for info in npz.zip.infolist():
        name = info.filename[:-4] if info.filename.endswith(".npy") else info.filename
        try:
            with npz.zip.open(info) as member:
                shape, _, dtype = _read_header(member)
                header_bytes = member.tell()
        except (ValueError, OSError, EOFError, zipfile.BadZipFile) as exc:
            raise ValueError(f"{source}: entry {name!r} is not a NumPy array ({exc})") from None
        if dtype.hasobject:
            raise ValueError(f"{source}: entry {name!r} holds Python objects (dtype {dtype}); "
                             "a parameter file holds numbers only")
        data_bytes = math.prod(shape) * dtype.itemsize
        if info.file_size != header_bytes + data_bytes:
            raise ValueError(f"{source}: entry {name!r} is {info.file_size - header_bytes} "
                             f"bytes, but its header announces {shape} {dtype} "
                             f"({data_bytes} bytes): the file is damaged")
        index[name] = NpzEntry(name, tuple(shape), dtype)
    return index


def check_figure_format(path, missing_matplotlib_hint):
    """ImportError(``missing_matplotlib_hint``) without matplotlib, or
    ValueError naming ``path`` when its extension names a format matplotlib
    doesn't write (none means PNG): what a plot option checks before work."""
    try:
        from matplotlib.backend_bases import FigureCanvasBase
    except ImportError:
        raise ImportError(missing_matplotlib_hint) from None
    ext = os.path.splitext(os.fspath(path))[1][1:].lower()
    formats = FigureCanvasBase.get_supported_filetypes()
    if ext and ext not in formats:
        raise ValueError(f"{os.fspath(path)}: expected a file name ending in one of "
                         f"{', '.join('.' + f for f in sorted(formats))}, got '.{ext}'")


def save_figure(fig, path, dpi=100):
    """``fig.savefig`` to ``path`` through :func:`atomic_write` (the format
    from the extension, PNG without one)."""
    fmt = os.path.splitext(os.fspath(path))[1][1:].lower() or "png"
    atomic_write(path, lambda f: fig.savefig(f, format=fmt, dpi=dpi))
