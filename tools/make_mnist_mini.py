#!/usr/bin/env python3
"""Regenerate the MNIST subset embedded in ``fastbp/datasets/data/``.

Reads the four full MNIST files (gzipped IDX) from ``--src`` (default
``<repo>/../shared/data/mnist``), checks their SHA-256 against the official
values, keeps the first 10,000 training and first 2,000 test images and
labels, and writes them as gzipped IDX files with the standard names to
``--out`` (default ``<repo>/fastbp/datasets/data``).  gzip is written with
``mtime=0`` and no file name, so the output is deterministic.  Files are
written atomically (temporary file + ``os.replace``).

Prints the SHA-256 of the uncompressed content of each output file; these are
the values of ``MNIST_MINI_SHA256`` in ``fastbp/datasets/mnist.py`` (the
script says whether they agree).

Self-contained on purpose (NumPy-free, no fastbp import), so it runs before
the package is built.

    python tools/make_mnist_mini.py [--src DIR] [--out DIR] [--check]
"""
import argparse
import gzip
import hashlib
import os
import re
import struct
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEFAULT_SRC = REPO.parent / "shared" / "data" / "mnist"
DEFAULT_OUT = REPO / "fastbp" / "datasets" / "data"
MODULE = REPO / "fastbp" / "datasets" / "mnist.py"

N_TRAIN = 10_000
N_TEST = 2_000

FULL_SHA256 = {
    "train-images-idx3-ubyte": "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
    "train-labels-idx1-ubyte": "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
    "t10k-images-idx3-ubyte": "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
    "t10k-labels-idx1-ubyte": "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
}


def read_source(src, name):
    path = Path(src) / (name + ".gz")
    if not path.is_file():
        path = Path(src) / name
    data = path.read_bytes()
    if path.suffix == ".gz":
        data = gzip.decompress(data)
    digest = hashlib.sha256(data).hexdigest()
    if digest != FULL_SHA256[name]:
        sys.exit(f"{path}: SHA-256 {digest} is not the official {FULL_SHA256[name]}")
    return data


def subset(data, name, n):
    """First ``n`` records of an IDX file, with the header count rewritten."""
    if "images" in name:
        magic, total, rows, cols = struct.unpack(">iiii", data[:16])
        assert magic == 2051 and n <= total, (name, magic, total)
        return struct.pack(">iiii", magic, n, rows, cols) + data[16:16 + n * rows * cols]
    magic, total = struct.unpack(">ii", data[:8])
    assert magic == 2049 and n <= total, (name, magic, total)
    return struct.pack(">ii", magic, n) + data[8:8 + n]


def gzip_bytes(data):
    # gzip.compress writes no file name; mtime=0 makes the header constant.
    # Level 6 (zlib default): level 9 is 13x slower for 2% smaller output.
    return gzip.compress(data, compresslevel=6, mtime=0)


def write_atomic(path, blob):
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(blob)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def recorded_sha256():
    """MNIST_MINI_SHA256 as recorded in fastbp/datasets/mnist.py (or {})."""
    try:
        text = MODULE.read_text()
    except OSError:
        return {}
    block = re.search(r"MNIST_MINI_SHA256 = \{(.*?)\}", text, re.S)
    return dict(re.findall(r'"([\w-]+)":\s*"(\w+)"', block.group(1))) if block else {}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--src", type=Path, default=DEFAULT_SRC,
                    help=f"directory of the full MNIST files (default {DEFAULT_SRC})")
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT,
                    help=f"output directory (default {DEFAULT_OUT})")
    ap.add_argument("--check", action="store_true",
                    help="write nothing; exit 1 unless the files in --out are "
                         "byte-identical to what would be written")
    args = ap.parse_args(argv)

    sizes = {"train": N_TRAIN, "t10k": N_TEST}
    recorded = recorded_sha256()
    ok = True
    if not args.check:
        args.out.mkdir(parents=True, exist_ok=True)
    for name in FULL_SHA256:
        content = subset(read_source(args.src, name), name, sizes[name.split("-")[0]])
        blob = gzip_bytes(content)
        digest = hashlib.sha256(content).hexdigest()
        target = args.out / (name + ".gz")
        if args.check:
            same = target.is_file() and target.read_bytes() == blob
            ok &= same
            print(f"{target}: {'up to date' if same else 'DIFFERS'}")
        else:
            write_atomic(target, blob)
            print(f"{target}: {len(blob)} bytes")
        agrees = recorded.get(name) == digest
        ok &= agrees or not args.check
        print(f'    "{name}": "{digest}",'
              f"  # {'matches' if agrees else 'NOT the value recorded in'} {MODULE.name}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
