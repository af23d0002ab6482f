"""The full MNIST files: the directory that caches them and their download.

The four files sit in one directory (``path=``, else ``$FASTBP_DATA``, else
``~/.fastbp/mnist``), each raw or gzipped.  :func:`download_mnist` fetches
the missing ones from a mirror, checks their SHA-256 and moves each into
place only once it is complete, so the directory never holds a partial
file.  When files are missing and cannot be obtained,
:class:`MnistUnavailableError` says where they were looked for and how to
provide them.
"""
import gzip
import hashlib
import http.client
import os
import sys
import tempfile
import urllib.request
from pathlib import Path

from ._idx import GZIP_ERRORS, MAX_CONTENT_BYTES, corrupt_gzip, is_gzip
from ._idx import capped_chunks as _chunks

__all__ = [
    "MNIST_FILES",
    "MNIST_SHA256",
    "DEFAULT_MIRRORS",
    "MnistUnavailableError",
    "mnist_dir_default",
    "mnist_mirrors",
    "download_mnist",
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

#: Mirror base URLs tried in order when ``mirror`` is not given and
#: ``FASTBP_MNIST_MIRROR`` is not set.  ``<base>/<name>.gz`` is fetched.
DEFAULT_MIRRORS = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
)

DEFAULT_TIMEOUT = 10.0                  # seconds, per connect / per read
_MAX_DOWNLOAD_BYTES = 64 * 1024 * 1024  # compressed; the largest file is ~9.5 MB
_MAX_CONTENT_BYTES = MAX_CONTENT_BYTES   # uncompressed, as local files (_idx.py)


class MnistUnavailableError(OSError):
    """MNIST files are missing and could not be obtained.

    Raised by :func:`load_mnist` / :func:`download_mnist` when ``download``
    is off, there is no network, or every mirror failed (HTTP error, timeout,
    connection cut, checksum mismatch).  The message names the directory, the
    four file names and how to provide them.  Subclass of :class:`OSError`.
    """


# --------------------------------------------------------------------------
# the directory
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


def find_file(directory, name):
    """Path of ``name`` (raw, preferred) or ``name.gz`` in ``directory``, or None."""
    for candidate in (Path(directory) / name, Path(directory) / (name + ".gz")):
        if candidate.is_file():
            return candidate
    return None


def missing_files(directory):
    """The names of MNIST_FILES found in ``directory`` neither raw nor gzipped."""
    return [name for name in MNIST_FILES if find_file(directory, name) is None]


def how_to_provide(directory):
    """The sentence of every MnistUnavailableError: how to give fastbp the files."""
    names = ", ".join(MNIST_FILES)
    return (f"Put the four MNIST files {names} (each raw or gzipped with a .gz "
            f"suffix) in {directory}, or point load_mnist(path=...) or the "
            f"FASTBP_DATA environment variable at a directory that holds them "
            f"(FASTBP_MNIST_MIRROR selects another download mirror).")


# --------------------------------------------------------------------------
# download
# --------------------------------------------------------------------------

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


def _content_sha256(path):
    """SHA-256 of the content of ``path``, gunzipped first if it is gzip data.

    Returns ``(hexdigest, is_gzip)``.  Streams; raises ValueError for corrupt or
    truncated gzip data or content larger than the sanity limit.
    """
    with open(path, "rb") as f:
        gzipped = is_gzip(f.read(2))
    h = hashlib.sha256()
    opener = gzip.open if gzipped else open
    try:
        with opener(path, "rb") as f:
            for chunk in _chunks(f.read, _MAX_CONTENT_BYTES,
                                 f"content larger than {_MAX_CONTENT_BYTES} bytes"):
                h.update(chunk)
    except GZIP_ERRORS as exc:
        raise corrupt_gzip(exc) from None
    return h.hexdigest(), gzipped


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
                    for chunk in _chunks(resp.read, _MAX_DOWNLOAD_BYTES, f"response larger than "
                                         f"the {_MAX_DOWNLOAD_BYTES}-byte limit"):
                        received += len(chunk)
                        out.write(chunk)
                        bar.update(len(chunk))
                if length is not None and received != length:
                    raise ValueError(f"connection closed after {received} of "
                                     f"{length} bytes")
        digest, gzipped = _content_sha256(tmp)
        if digest != expected_sha:
            raise ValueError(f"SHA-256 mismatch of the "
                             f"{'uncompressed ' if gzipped else ''}content: got "
                             f"{digest}, expected {expected_sha}")
        final = Path(directory) / (name + ".gz" if gzipped else name)
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
                   timeout=DEFAULT_TIMEOUT, checksums=None):
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
    missing = missing_files(directory)
    if not missing:
        return directory
    mirrors = mnist_mirrors(mirror)
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise MnistUnavailableError(
            f"MNIST files missing from {directory} ({', '.join(missing)}) and the "
            f"directory cannot be created: {exc}. {how_to_provide(directory)}") from exc
    for name in missing:
        expected = checksums.get(name)
        if not expected:
            raise MnistUnavailableError(
                f"no known SHA-256 for {name}; refusing to download it unverified. "
                f"{how_to_provide(directory)}")
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
                + how_to_provide(directory))
    return directory


