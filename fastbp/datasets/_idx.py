"""The IDX file format of MNIST, raw or gzipped: parsing and validation.

An IDX image file is a 16-byte big-endian header (magic 2051, count, rows,
columns) and ``count * rows * columns`` unsigned bytes; a label file an
8-byte header (magic 2049, count) and ``count`` bytes.  Every problem --
wrong magic, truncated data, trailing bytes, a label outside 0..9, corrupt
gzip data -- is a :class:`ValueError` whose message starts with the file
(or the label given for in-memory data).
"""
import gzip
import os
import struct
import zlib

import numpy as np

__all__ = ["read_idx_images", "read_idx_labels"]

NUM_CLASSES = 10
IMAGE_MAGIC = 2051   # 0x00000803: unsigned byte, 3 dimensions
LABEL_MAGIC = 2049   # 0x00000801: unsigned byte, 1 dimension
GZIP_MAGIC = b"\x1f\x8b"

#: what a corrupt gzip stream raises, in memory or streamed
#: (BadGzipFile: header/CRC/length; EOFError: cut short; zlib.error: deflate data)
GZIP_ERRORS = (gzip.BadGzipFile, EOFError, zlib.error)

#: the most content (uncompressed) a file may hold, read from disk or
#: downloaded: MNIST's largest file is ~47 MB
MAX_CONTENT_BYTES = 256 * 1024 * 1024
_CHUNK = 1 << 16


def is_gzip(data):
    """True when ``data`` (the file's first bytes or all of it) starts like gzip."""
    return data[:2] == GZIP_MAGIC


def corrupt_gzip(exc, source=None):
    """The ValueError for a gzip stream that failed with ``exc`` (one of GZIP_ERRORS)."""
    where = f"{source}: " if source is not None else ""
    return ValueError(f"{where}corrupt gzip data ({type(exc).__name__}: {exc})")


def gunzip(data, source):
    """The decompressed ``data`` (CRC and length checked); ValueError naming ``source``."""
    if not is_gzip(data):
        what = "is empty" if not data else "does not start with the gzip magic bytes"
        raise ValueError(f"{source}: corrupt gzip data (not gzip: the file {what})")
    try:
        return gzip.decompress(data)
    except GZIP_ERRORS as exc:
        raise corrupt_gzip(exc, source) from None


def read_bytes(path, check_start=None, limit=None):
    """Whole content of ``path``, gunzipped if its name ends in ``.gz``.

    Reads in chunks and stops with a ValueError naming the file once the
    content passes ``limit`` bytes (default MAX_CONTENT_BYTES, as a
    download), so a small gzip of zeros can't fill the memory.
    ``check_start(first_bytes)``, if given, sees the first chunk before the
    rest is read (it raises for a wrong header, which then costs one chunk).
    """
    limit = MAX_CONTENT_BYTES if limit is None else limit
    gzipped = str(path).endswith(".gz")
    if not gzipped and os.stat(path).st_size > limit:
        raise ValueError(f"{path}: {os.stat(path).st_size} bytes, more than the "
                         f"{limit}-byte limit of an MNIST file")
    if gzipped:
        with open(path, "rb") as raw:
            start = raw.read(2)
        if not is_gzip(start):
            what = "is empty" if not start else "does not start with the gzip magic bytes"
            raise ValueError(f"{path}: corrupt gzip data (not gzip: the file {what})")
    chunks = []
    try:
        with (gzip.open if gzipped else open)(path, "rb") as f:
            for chunk in capped_chunks(f.read, limit, f"{path}: content larger than the "
                                       f"{limit}-byte limit of an MNIST file"):
                if not chunks and check_start is not None:
                    check_start(chunk)
                chunks.append(chunk)
    except GZIP_ERRORS as exc:
        raise corrupt_gzip(exc, path) from None
    return b"".join(chunks)


def capped_chunks(read, limit, too_large):
    """The data of ``read(size)`` chunk by chunk; ValueError(too_large) past ``limit`` bytes."""
    total = 0
    while True:
        chunk = read(_CHUNK)
        if not chunk:
            return
        total += len(chunk)
        if total > limit:
            raise ValueError(too_large)
        yield chunk


def _gzip_hint(data):
    if is_gzip(data):
        return " (the file looks gzip-compressed; give it a .gz suffix)"
    return ""


def _check_length(source, data, header, expected, what):
    body = len(data) - header
    if body < expected:
        raise ValueError(f"{source}: truncated: header announces {what} = {expected} "
                         f"bytes of data but the file holds only {body}")
    if body > expected:
        raise ValueError(f"{source}: {body - expected} trailing bytes after the "
                         f"{expected} bytes of data the header announces ({what})")


def _image_header(data, source):
    """(n, rows, cols) from the 16-byte header of IDX image bytes ``data``."""
    if len(data) < 16:
        raise ValueError(f"{source}: truncated: {len(data)} bytes, shorter than the "
                         f"16-byte IDX image header{_gzip_hint(data)}")
    magic, n, rows, cols = struct.unpack(">iiii", data[:16])
    if magic != IMAGE_MAGIC:
        raise ValueError(f"{source}: wrong magic number {magic} (0x{magic & 0xffffffff:08x}), "
                         f"expected {IMAGE_MAGIC} (0x{IMAGE_MAGIC:08x}) for an "
                         f"IDX image file{_gzip_hint(data)}")
    if n < 0 or rows <= 0 or cols <= 0:
        raise ValueError(f"{source}: invalid header sizes: {n} images of "
                         f"{rows}x{cols} pixels")
    return n, rows, cols


def _label_header(data, source):
    """n from the 8-byte header of IDX label bytes ``data``."""
    if len(data) < 8:
        raise ValueError(f"{source}: truncated: {len(data)} bytes, shorter than the "
                         f"8-byte IDX label header{_gzip_hint(data)}")
    magic, n = struct.unpack(">ii", data[:8])
    if magic != LABEL_MAGIC:
        raise ValueError(f"{source}: wrong magic number {magic} (0x{magic & 0xffffffff:08x}), "
                         f"expected {LABEL_MAGIC} (0x{LABEL_MAGIC:08x}) for an "
                         f"IDX label file{_gzip_hint(data)}")
    if n < 0:
        raise ValueError(f"{source}: invalid header: {n} labels")
    return n


def _check_announced(source, header_size, body_size):
    if header_size + body_size > MAX_CONTENT_BYTES:
        raise ValueError(f"{source}: the header announces {body_size} bytes of data, more "
                         f"than the {MAX_CONTENT_BYTES}-byte limit of an MNIST file")


def _check_image_start(source):
    """A ``read_bytes`` check_start: the image header, before the rest is read."""
    def check(first):
        if len(first) >= 16:
            n, rows, cols = _image_header(first, source)
            _check_announced(source, 16, n * rows * cols)
    return check


def _check_label_start(source):
    """A ``read_bytes`` check_start: the label header, before the rest is read."""
    def check(first):
        if len(first) >= 8:
            _check_announced(source, 8, _label_header(first, source))
    return check


def parse_images(data, source):
    """(n, rows, cols) uint8 array (read-only view of ``data``, IDX image bytes)."""
    n, rows, cols = _image_header(data, source)
    _check_length(source, data, 16, n * rows * cols, f"{n} images x {rows} x {cols}")
    return np.frombuffer(data, dtype=np.uint8, offset=16).reshape(n, rows, cols)


def parse_labels(data, source):
    """(n,) uint8 array (read-only view of ``data``, IDX label bytes), every value <= 9."""
    n = _label_header(data, source)
    _check_length(source, data, 8, n, f"{n} labels")
    labels = np.frombuffer(data, dtype=np.uint8, offset=8)
    if n and labels.max() >= NUM_CLASSES:
        bad = int(np.argmax(labels >= NUM_CLASSES))
        raise ValueError(f"{source}: label {int(labels[bad])} at index {bad} is out "
                         f"of range (labels must be 0..{NUM_CLASSES - 1})")
    return labels


def read_idx_images(path):
    """Read an IDX image file (raw, or gzipped if the name ends in ``.gz``).

    Returns a read-only ``uint8`` array of shape ``(n, rows, cols)``, sizes
    from the header.  Raises :class:`ValueError` naming the file for a wrong
    magic number (after reading one chunk), truncated data, trailing bytes,
    corrupt gzip data, or content past MAX_CONTENT_BYTES.
    """
    return parse_images(read_bytes(path, _check_image_start(path)), path)


def read_idx_labels(path):
    """Read an IDX label file (raw, or gzipped if the name ends in ``.gz``).

    Returns a read-only ``uint8`` array of shape ``(n,)``.  Raises
    :class:`ValueError` naming the file for a wrong magic number, truncated
    data, trailing bytes, corrupt gzip data, a label outside 0..9 or content
    past MAX_CONTENT_BYTES.
    """
    return parse_labels(read_bytes(path, _check_label_start(path)), path)
