"""MNIST loader: a drop-in for the book's ``dataset/mnist.py``.

Two entry points:

* :func:`load_mnist` reads the four standard IDX files of the full MNIST
  database (60,000 training and 10,000 test images) from a directory,
  downloading whatever is missing from a public mirror.
* :func:`load_mnist_mini` reads a subset shipped inside the package (the
  first 10,000 training and first 2,000 test images), so examples, the
  ``fastbp train`` command and tests work offline.

Both return ``((x_train, t_train), (x_test, t_test))`` exactly like the book:

=================  ======================================  ===================
array              shape                                   dtype
=================  ======================================  ===================
``x_*``            ``(N, 784)`` if ``flatten`` else        ``float32`` in
                   ``(N, 1, 28, 28)``                      [0, 1] if
                                                           ``normalize`` else
                                                           ``uint8`` (0..255)
``t_*``            ``(N,)``, or ``(N, 10)`` if             ``uint8`` (0..9), or
                   ``one_hot_label``                       ``float32`` one-hot
=================  ======================================  ===================

(``784 = 28 * 28``; the sizes are taken from the IDX headers.)

Every file is validated: IDX magic numbers, header sizes against the actual
data length (truncated files and trailing bytes are rejected), image and label
counts agreeing, labels in 0..9, and gzip integrity (CRC and length).  Any
problem is a :class:`ValueError` naming the file and what is wrong; a wrong
array is never returned silently.

Missing files: :func:`load_mnist` raises :class:`MnistUnavailableError`
(a subclass of :class:`OSError`) when files are missing and cannot be
downloaded (``download=False``, no network, every mirror failed).  Its message
names the directory and the four file names and says how to provide them.

MNIST is by Yann LeCun, Corinna Cortes and Christopher J.C. Burges, and is
distributed under CC BY-SA 3.0.
"""
import functools
import gzip
import hashlib
import http.client
import importlib.resources
import os
import struct
import sys
import tempfile
import urllib.request
import zlib
from pathlib import Path

import numpy as np

__all__ = [
    "MNIST_FILES",
    "MNIST_SHA256",
    "MNIST_MINI_SHA256",
    "DEFAULT_MIRRORS",
    "SHARED_MNIST_DIR",
    "MnistUnavailableError",
    "mnist_dir_default",
    "full_mnist_dir",
    "mnist_mirrors",
    "download_mnist",
    "load_mnist",
    "load_mnist_mini",
    "read_idx_images",
    "read_idx_labels",
]

#: The four standard MNIST file names (without the ``.gz`` suffix), in the
#: order train images, train labels, test images, test labels.
MNIST_FILES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)

#: SHA-256 of the *uncompressed* content of each official MNIST file.  A
#: download is accepted only if its content matches.  Looked up at call time,
#: so tests may monkeypatch this dict (or pass ``checksums=``).
MNIST_SHA256 = {
    "train-images-idx3-ubyte": "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
    "train-labels-idx1-ubyte": "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
    "t10k-images-idx3-ubyte": "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
    "t10k-labels-idx1-ubyte": "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
}

#: SHA-256 of the *uncompressed* content of the embedded subset (the first
#: 10,000 training / 2,000 test images and labels), as written by
#: ``tools/make_mnist_mini.py``.  Checked every time the subset is parsed.
MNIST_MINI_SHA256 = {
    "train-images-idx3-ubyte": "2889698e6bc3614913e76901316712919d1998fc2b44512451bfe65bc1e668b1",
    "train-labels-idx1-ubyte": "651e38e2ac0632f5113ec18f1df4977117f953197819034009971a6675a0df78",
    "t10k-images-idx3-ubyte": "3f6bd66dee48df299584c67669bceee490faa25f931496bd7473b42106d7daed",
    "t10k-labels-idx1-ubyte": "7b098e5f6a3065807cebeabf36fb1724a8aff19f2673ac08b4923e0e8c715bce",
}

#: Mirror base URLs tried in order when ``mirror`` is not given and
#: ``FASTBP_MNIST_MIRROR`` is not set.  ``<base>/<name>.gz`` is fetched.
DEFAULT_MIRRORS = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
)

#: Where the full MNIST files live in the development checkout
#: (``<repo>/../shared/data/mnist``).  May not exist; see :func:`full_mnist_dir`.
SHARED_MNIST_DIR = Path(__file__).resolve().parents[3] / "shared" / "data" / "mnist"

_IMAGE_MAGIC = 2051   # 0x00000803: unsigned byte, 3 dimensions
_LABEL_MAGIC = 2049   # 0x00000801: unsigned byte, 1 dimension
_NUM_CLASSES = 10
_DEFAULT_TIMEOUT = 10.0                 # seconds, per connect / per read
_MAX_DOWNLOAD_BYTES = 64 * 1024 * 1024  # compressed; the largest file is ~9.5 MB
_MAX_CONTENT_BYTES = 256 * 1024 * 1024  # uncompressed; the largest file is ~47 MB
_CHUNK = 1 << 16


class MnistUnavailableError(OSError):
    """MNIST files are missing and could not be obtained.

    Raised by :func:`load_mnist` / :func:`download_mnist` when ``download``
    is off, there is no network, or every mirror failed (HTTP error, timeout,
    connection cut, checksum mismatch).  The message names the directory, the
    four file names and how to provide them.  Subclass of :class:`OSError`.
    """


# --------------------------------------------------------------------------
# locations
# --------------------------------------------------------------------------

def mnist_dir_default():
    """Default directory of the full MNIST files, as a :class:`pathlib.Path`.

    ``$FASTBP_DATA`` if set (the directory holding the four files itself),
    else ``~/.fastbp/mnist``.  The directory need not exist.
    """
    env = os.environ.get("FASTBP_DATA")
    if env:
        return Path(env).expanduser()
    return Path.home() / ".fastbp" / "mnist"


def full_mnist_dir():
    """Directory holding the full MNIST files for tests and benchmarks, or None.

    ``$FASTBP_MNIST_FULL`` if set, else :data:`SHARED_MNIST_DIR`; returned only
    if all four files are present there (raw or gzipped), otherwise ``None``.
    Use as ``pytest.mark.skipif(full_mnist_dir() is None, reason=...)``.
    """
    env = os.environ.get("FASTBP_MNIST_FULL")
    d = Path(env).expanduser() if env else SHARED_MNIST_DIR
    if all(_find_file(d, name) is not None for name in MNIST_FILES):
        return d
    return None


def mnist_mirrors(mirror=None):
    """The list of mirror base URLs to try.

    ``mirror`` (a URL or a sequence of URLs) if given, else
    ``$FASTBP_MNIST_MIRROR`` (one URL, or several separated by whitespace or
    commas), else :data:`DEFAULT_MIRRORS`.
    """
    if mirror is None:
        env = os.environ.get("FASTBP_MNIST_MIRROR", "").strip()
        if env:
            mirror = env.replace(",", " ").split()
        else:
            mirror = DEFAULT_MIRRORS
    if isinstance(mirror, (str, bytes, os.PathLike)):
        mirror = [mirror]
    mirrors = [os.fsdecode(m) if not isinstance(m, str) else m for m in mirror]
    if not mirrors:
        raise ValueError("mirror: expected at least one mirror base URL, got none")
    return mirrors


def _find_file(directory, name):
    """Path of ``name`` (raw, preferred) or ``name.gz`` in ``directory``, or None."""
    for candidate in (Path(directory) / name, Path(directory) / (name + ".gz")):
        if candidate.is_file():
            return candidate
    return None


def _how_to_provide(directory):
    names = ", ".join(MNIST_FILES)
    return (f"Put the four MNIST files {names} (each raw or gzipped with a .gz "
            f"suffix) in {directory}, or point load_mnist(path=...) or the "
            f"FASTBP_DATA environment variable at a directory that holds them "
            f"(FASTBP_MNIST_MIRROR selects another download mirror).")


# --------------------------------------------------------------------------
# IDX parsing
# --------------------------------------------------------------------------

def _read_bytes(path):
    """Whole content of ``path``, gunzipped (CRC and length checked) if ``.gz``."""
    path = Path(path)
    with open(path, "rb") as f:
        data = f.read()
    return _maybe_gunzip(data, path)


def _maybe_gunzip(data, path):
    if str(path).endswith(".gz"):
        if data[:2] != b"\x1f\x8b":
            raise ValueError(f"{path}: corrupt gzip data (not gzip: the file "
                             f"{'is empty' if not data else 'does not start with the gzip magic bytes'})")
        try:
            return gzip.decompress(data)
        except (OSError, EOFError, zlib.error) as exc:
            raise ValueError(f"{path}: corrupt gzip data "
                             f"({type(exc).__name__}: {exc})") from None
    return data


def _gzip_hint(data):
    if data[:2] == b"\x1f\x8b":
        return " (the file looks gzip-compressed; give it a .gz suffix)"
    return ""


def _check_length(path, data, header, expected, what):
    body = len(data) - header
    if body < expected:
        raise ValueError(f"{path}: truncated: header announces {what} = {expected} "
                         f"bytes of data but the file holds only {body}")
    if body > expected:
        raise ValueError(f"{path}: {body - expected} trailing bytes after the "
                         f"{expected} bytes of data the header announces ({what})")


def _parse_images(data, path):
    """(n, rows, cols) uint8 array (read-only view of ``data``)."""
    if len(data) < 16:
        raise ValueError(f"{path}: truncated: {len(data)} bytes, shorter than the "
                         f"16-byte IDX image header{_gzip_hint(data)}")
    magic, n, rows, cols = struct.unpack(">iiii", data[:16])
    if magic != _IMAGE_MAGIC:
        raise ValueError(f"{path}: wrong magic number {magic} (0x{magic & 0xffffffff:08x}), "
                         f"expected {_IMAGE_MAGIC} (0x{_IMAGE_MAGIC:08x}) for an "
                         f"IDX image file{_gzip_hint(data)}")
    if n < 0 or rows <= 0 or cols <= 0:
        raise ValueError(f"{path}: invalid header sizes: {n} images of "
                         f"{rows}x{cols} pixels")
    _check_length(path, data, 16, n * rows * cols, f"{n} images x {rows} x {cols}")
    return np.frombuffer(data, dtype=np.uint8, offset=16).reshape(n, rows, cols)


def _parse_labels(data, path):
    """(n,) uint8 array (read-only view of ``data``), every value checked <= 9."""
    if len(data) < 8:
        raise ValueError(f"{path}: truncated: {len(data)} bytes, shorter than the "
                         f"8-byte IDX label header{_gzip_hint(data)}")
    magic, n = struct.unpack(">ii", data[:8])
    if magic != _LABEL_MAGIC:
        raise ValueError(f"{path}: wrong magic number {magic} (0x{magic & 0xffffffff:08x}), "
                         f"expected {_LABEL_MAGIC} (0x{_LABEL_MAGIC:08x}) for an "
                         f"IDX label file{_gzip_hint(data)}")
    if n < 0:
        raise ValueError(f"{path}: invalid header: {n} labels")
    _check_length(path, data, 8, n, f"{n} labels")
    labels = np.frombuffer(data, dtype=np.uint8, offset=8)
    if n and labels.max() >= _NUM_CLASSES:
        bad = int(np.argmax(labels >= _NUM_CLASSES))
        raise ValueError(f"{path}: label {int(labels[bad])} at index {bad} is out "
                         f"of range (labels must be 0..{_NUM_CLASSES - 1})")
    return labels


def read_idx_images(path):
    """Read an IDX image file (raw, or gzipped if the name ends in ``.gz``).

    Returns a read-only ``uint8`` array of shape ``(n, rows, cols)``, sizes
    from the header.  Raises :class:`ValueError` naming the file for a wrong
    magic number, truncated data, trailing bytes or corrupt gzip data.
    """
    return _parse_images(_read_bytes(path), path)


def read_idx_labels(path):
    """Read an IDX label file (raw, or gzipped if the name ends in ``.gz``).

    Returns a read-only ``uint8`` array of shape ``(n,)``.  Raises
    :class:`ValueError` naming the file for a wrong magic number, truncated
    data, trailing bytes, corrupt gzip data or a label outside 0..9.
    """
    return _parse_labels(_read_bytes(path), path)


def _check_pair(images, img_path, labels, lab_path):
    if images.shape[0] != labels.shape[0]:
        raise ValueError(f"{img_path} holds {images.shape[0]} images but {lab_path} "
                         f"holds {labels.shape[0]} labels; they must agree")


def _convert(x, t, normalize, flatten, one_hot_label):
    """Book-style conversion; always returns fresh, writable arrays."""
    n, rows, cols = x.shape
    if normalize:
        x = x.astype(np.float32)
        x /= np.float32(255.0)
    else:
        x = x.copy()
    x = x.reshape(n, rows * cols) if flatten else x.reshape(n, 1, rows, cols)
    if one_hot_label:
        onehot = np.zeros((t.shape[0], _NUM_CLASSES), dtype=np.float32)
        onehot[np.arange(t.shape[0]), t] = 1.0
        t = onehot
    else:
        t = t.copy()
    return x, t


def _convert_all(raw, normalize, flatten, one_hot_label):
    x_train, t_train, x_test, t_test = raw
    return (_convert(x_train, t_train, normalize, flatten, one_hot_label),
            _convert(x_test, t_test, normalize, flatten, one_hot_label))


def _load_dir(directory):
    """The four raw uint8 arrays from ``directory`` (all files must exist)."""
    paths = [_find_file(directory, name) for name in MNIST_FILES]
    x_train = read_idx_images(paths[0])
    t_train = read_idx_labels(paths[1])
    x_test = read_idx_images(paths[2])
    t_test = read_idx_labels(paths[3])
    _check_pair(x_train, paths[0], t_train, paths[1])
    _check_pair(x_test, paths[2], t_test, paths[3])
    if x_train.shape[1:] != x_test.shape[1:]:
        raise ValueError(f"{paths[0]} holds {x_train.shape[1]}x{x_train.shape[2]} images "
                         f"but {paths[2]} holds {x_test.shape[1]}x{x_test.shape[2]}; "
                         f"they must agree")
    return x_train, t_train, x_test, t_test


# --------------------------------------------------------------------------
# download
# --------------------------------------------------------------------------

def _content_sha256(path):
    """SHA-256 of the content of ``path``, gunzipped first if it is gzip data.

    Returns ``(hexdigest, is_gzip)``.  Streams; raises ValueError for corrupt or
    truncated gzip data or content larger than the sanity limit.
    """
    with open(path, "rb") as f:
        is_gzip = f.read(2) == b"\x1f\x8b"
    h = hashlib.sha256()
    total = 0
    opener = gzip.open if is_gzip else open
    try:
        with opener(path, "rb") as f:
            while True:
                chunk = f.read(_CHUNK)
                if not chunk:
                    break
                total += len(chunk)
                if total > _MAX_CONTENT_BYTES:
                    raise ValueError(f"content larger than {_MAX_CONTENT_BYTES} bytes")
                h.update(chunk)
    except (EOFError, zlib.error, gzip.BadGzipFile) as exc:
        raise ValueError(f"corrupt gzip data ({type(exc).__name__}: {exc})") from None
    return h.hexdigest(), is_gzip


def _fetch_one(url, directory, name, expected_sha, progress, timeout):
    """Download ``url`` into ``directory`` atomically; return the final path.

    The body goes to a temporary file in ``directory`` which is checked
    (complete, gzip CRC, SHA-256 of the content) and only then renamed to
    ``name.gz`` (or ``name`` if the mirror served uncompressed data).  On any
    failure, including KeyboardInterrupt, the temporary file is removed.
    """
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{name}.", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as out:
            req = urllib.request.Request(url, headers={"User-Agent": "fastbp-datasets"})
            with urllib.request.urlopen(req, timeout=timeout) as resp:
                length = resp.headers.get("Content-Length")
                length = int(length) if length and length.strip().isdigit() else None
                if length is not None and length > _MAX_DOWNLOAD_BYTES:
                    raise ValueError(f"Content-Length {length} exceeds the "
                                     f"{_MAX_DOWNLOAD_BYTES}-byte limit")
                received = 0
                with _progress_bar(progress, length, name) as bar:
                    while True:
                        chunk = resp.read(_CHUNK)
                        if not chunk:
                            break
                        received += len(chunk)
                        if received > _MAX_DOWNLOAD_BYTES:
                            raise ValueError(f"response larger than the "
                                             f"{_MAX_DOWNLOAD_BYTES}-byte limit")
                        out.write(chunk)
                        bar.update(len(chunk))
                if length is not None and received != length:
                    raise ValueError(f"connection closed after {received} of "
                                     f"{length} bytes")
        digest, is_gzip = _content_sha256(tmp)
        if digest != expected_sha:
            raise ValueError(f"SHA-256 mismatch of the "
                             f"{'uncompressed ' if is_gzip else ''}content: got "
                             f"{digest}, expected {expected_sha}")
        final = Path(directory) / (name + ".gz" if is_gzip else name)
        os.replace(tmp, final)
        return final
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


class _NoBar:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def update(self, n):
        pass


def _progress_bar(progress, total, name):
    if progress is None:
        progress = hasattr(sys.stderr, "isatty") and sys.stderr.isatty()
    if not progress:
        return _NoBar()
    try:
        from tqdm.auto import tqdm
    except ImportError:  # pragma: no cover - tqdm is a dependency
        return _NoBar()
    return tqdm(total=total, desc=name, unit="B", unit_scale=True,
                unit_divisor=1024, leave=False, file=sys.stderr)


def download_mnist(path=None, *, mirror=None, progress=None,
                   timeout=_DEFAULT_TIMEOUT, checksums=None):
    """Download the MNIST files missing from ``path``; return the directory.

    Files already present (raw or ``.gz``) are left alone.  Each missing file
    is fetched as ``<mirror>/<name>.gz`` from each mirror in turn (see
    :func:`mnist_mirrors`), with a tqdm progress bar (``progress=None``: only
    when stderr is a terminal) and a ``timeout`` in seconds.  The SHA-256 of
    the uncompressed content must match ``checksums`` (default
    :data:`MNIST_SHA256`); a mirror that serves the raw file with a matching
    checksum is accepted too (saved without ``.gz``).  Data is written to a
    temporary file in the same directory and moved into place with
    :func:`os.replace`, so an interrupted or corrupt download never leaves a
    partial file.

    Raises :class:`MnistUnavailableError` (an :class:`OSError`) naming the
    directory, the files and every mirror's failure when a file cannot be
    obtained.
    """
    directory = Path(path).expanduser() if path is not None else mnist_dir_default()
    checksums = MNIST_SHA256 if checksums is None else checksums
    missing = [name for name in MNIST_FILES if _find_file(directory, name) is None]
    if not missing:
        return directory
    mirrors = mnist_mirrors(mirror)
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise MnistUnavailableError(
            f"MNIST files missing from {directory} ({', '.join(missing)}) and the "
            f"directory cannot be created: {exc}. {_how_to_provide(directory)}") from exc
    for name in missing:
        expected = checksums.get(name)
        if not expected:
            raise MnistUnavailableError(
                f"no known SHA-256 for {name}; refusing to download it unverified. "
                f"{_how_to_provide(directory)}")
        failures = []
        for base in mirrors:
            url = base.rstrip("/") + "/" + name + ".gz"
            try:
                _fetch_one(url, directory, name, expected, progress, timeout)
                break
            except (OSError, ValueError, http.client.HTTPException) as exc:
                # HTTPError/URLError/timeouts/connection resets are OSErrors;
                # http.client.HTTPException (e.g. IncompleteRead) is not.
                failures.append(f"{url}: {type(exc).__name__}: {exc}")
        else:
            raise MnistUnavailableError(
                f"MNIST file {name} is missing from {directory} and could not be "
                f"downloaded: " + "; ".join(failures) + ". "
                + _how_to_provide(directory))
    return directory


# --------------------------------------------------------------------------
# public loaders
# --------------------------------------------------------------------------

def load_mnist(normalize=True, flatten=True, one_hot_label=False, *, path=None,
               download=True, mirror=None, progress=None, timeout=_DEFAULT_TIMEOUT):
    """Load the full MNIST data set, as the book's ``dataset.mnist.load_mnist``.

    Parameters
    ----------
    normalize : bool
        ``True``: images as ``float32`` in [0, 1] (``x / 255``); ``False``:
        the raw ``uint8`` pixel values 0..255.
    flatten : bool
        ``True``: images of shape ``(N, 784)``; ``False``: ``(N, 1, 28, 28)``.
    one_hot_label : bool
        ``True``: labels as one-hot ``float32`` of shape ``(N, 10)``;
        ``False``: ``uint8`` class indices of shape ``(N,)``.
    path : str or os.PathLike, optional
        Directory holding ``train-images-idx3-ubyte``,
        ``train-labels-idx1-ubyte``, ``t10k-images-idx3-ubyte`` and
        ``t10k-labels-idx1-ubyte``, each raw or gzipped (``.gz``; the raw file
        is used if both exist).  Default: :func:`mnist_dir_default`
        (``$FASTBP_DATA``, else ``~/.fastbp/mnist``).
    download : bool
        Download missing files (see :func:`download_mnist`).  ``False``:
        raise :class:`MnistUnavailableError` instead.
    mirror : str or sequence of str, optional
        Mirror base URL(s); default ``$FASTBP_MNIST_MIRROR``, else
        :data:`DEFAULT_MIRRORS`.
    progress : bool, optional
        Show a download progress bar; default: when stderr is a terminal.
    timeout : float
        Network timeout in seconds.

    Returns
    -------
    ((x_train, t_train), (x_test, t_test))
        ``N`` is 60,000 for training and 10,000 for test (from the headers).
        Fresh arrays that the caller owns.

    Raises
    ------
    ValueError
        A file is malformed (wrong magic, truncated, trailing bytes, corrupt
        gzip, image/label counts disagree, label > 9); the message names it.
    MnistUnavailableError
        Files are missing and cannot be downloaded (subclass of OSError).
    """
    directory = Path(path).expanduser() if path is not None else mnist_dir_default()
    missing = [name for name in MNIST_FILES if _find_file(directory, name) is None]
    if missing:
        if not download:
            raise MnistUnavailableError(
                f"MNIST files missing from {directory}: {', '.join(missing)} "
                f"(download=False). {_how_to_provide(directory)}")
        download_mnist(directory, mirror=mirror, progress=progress, timeout=timeout)
    raw = _load_dir(directory)
    return _convert_all(raw, normalize, flatten, one_hot_label)


_DATA_PACKAGE = __name__.rpartition(".")[0] or "fastbp.datasets"


def _embedded_bytes(name):
    ref = importlib.resources.files(_DATA_PACKAGE).joinpath("data", name + ".gz")
    label = f"{ref} (embedded MNIST subset)"
    try:
        data = ref.read_bytes()
    except OSError as exc:
        raise OSError(f"{label}: cannot read it ({exc}); the package data "
                      f"fastbp/datasets/data/*.gz was not installed") from exc
    try:
        data = gzip.decompress(data)
    except (OSError, EOFError, zlib.error) as exc:
        raise ValueError(f"{label}: corrupt gzip data "
                         f"({type(exc).__name__}: {exc})") from None
    digest = hashlib.sha256(data).hexdigest()
    if digest != MNIST_MINI_SHA256[name]:
        raise ValueError(f"{label}: SHA-256 {digest} does not match the recorded "
                         f"{MNIST_MINI_SHA256[name]}; the package data is corrupt")
    return data, label


@functools.lru_cache(maxsize=1)
def _mini_raw():
    """The embedded subset as four read-only uint8 arrays (parsed once)."""
    arrays = []
    for name, parse in zip(MNIST_FILES, (_parse_images, _parse_labels) * 2):
        data, label = _embedded_bytes(name)
        arr = parse(data, label)
        arr.flags.writeable = False
        arrays.append((arr, label))
    (x_train, a), (t_train, b), (x_test, c), (t_test, d) = arrays
    _check_pair(x_train, a, t_train, b)
    _check_pair(x_test, c, t_test, d)
    return x_train, t_train, x_test, t_test


def load_mnist_mini(normalize=True, flatten=True, one_hot_label=False):
    """Load the MNIST subset shipped with fastbp (no files, no network).

    The first 10,000 training and the first 2,000 test images and labels of
    MNIST, in the same order.  Arguments and return value as
    :func:`load_mnist`: ``x`` is ``float32`` in [0, 1] if ``normalize`` else
    ``uint8``, of shape ``(N, 784)`` if ``flatten`` else ``(N, 1, 28, 28)``;
    ``t`` is ``uint8`` ``(N,)`` or one-hot ``float32`` ``(N, 10)``, with
    ``N`` = 10,000 (train) and 2,000 (test).

    The files are parsed and checksum-verified once per process; every call
    returns fresh copies, so modifying them does not affect later calls.
    """
    return _convert_all(_mini_raw(), normalize, flatten, one_hot_label)
