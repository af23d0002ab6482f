"""Tests of fastbp.datasets: MNIST loading, validation, the embedded subset
and downloading (against a real HTTP server on 127.0.0.1; no other network).

Tests that need the full MNIST files are skipped, with the reason, when
``../shared/data/mnist`` (or ``$FASTBP_MNIST_FULL``) is absent.
"""
import gzip
import hashlib
import http.server
import importlib.util
import socket
import struct
import tempfile
import threading
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import full_mnist_candidate, full_mnist_dir

import fastbp.datasets as datasets
from fastbp.datasets import _download as D
from fastbp.datasets import mnist as M
from fastbp.datasets import (MNIST_FILES, MnistUnavailableError, load_mnist,
                             load_mnist_mini, read_idx_images, read_idx_labels)

REPO = Path(__file__).resolve().parents[1]
TRAIN_IMG, TRAIN_LAB, TEST_IMG, TEST_LAB = MNIST_FILES


FULL_DIR = full_mnist_candidate()
HAVE_FULL = full_mnist_dir() is not None
needs_full = pytest.mark.skipif(
    not HAVE_FULL, reason=f"full MNIST files not found in {FULL_DIR} "
                          f"(set FASTBP_MNIST_FULL to a directory holding them)")

TRAIN_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
TEST_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
MINI_TRAIN_COUNTS = [1001, 1127, 991, 1032, 980, 863, 1014, 1070, 944, 978]
MINI_TEST_COUNTS = [175, 234, 219, 207, 217, 179, 178, 205, 192, 194]


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch):
    """No user configuration leaks in; 127.0.0.1 never goes through a proxy."""
    for var in ("FASTBP_DATA", "FASTBP_MNIST_MIRROR"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")


# --------------------------------------------------------------------------
# synthetic IDX files
# --------------------------------------------------------------------------

def idx_images(x):
    x = np.asarray(x, dtype=np.uint8)
    return struct.pack(">iiii", 2051, *x.shape) + x.tobytes()


def idx_labels(t):
    t = np.asarray(t, dtype=np.uint8)
    return struct.pack(">ii", 2049, t.shape[0]) + t.tobytes()


def make_arrays(n_train=5, n_test=3, seed=0):
    rng = np.random.default_rng(seed)
    return {
        TRAIN_IMG: rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        TRAIN_LAB: rng.integers(0, 10, n_train, dtype=np.uint8),
        TEST_IMG: rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        TEST_LAB: rng.integers(0, 10, n_test, dtype=np.uint8),
    }


def encode(arrays):
    """{name: uncompressed IDX bytes}."""
    return {name: (idx_images if "images" in name else idx_labels)(arr)
            for name, arr in arrays.items()}


def write_set(directory, contents, gz=True):
    """Write {name: bytes} to directory, gzipped (name.gz) or raw; return paths."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    paths = {}
    for name, data in contents.items():
        use_gz = gz if isinstance(gz, bool) else name in gz
        path = directory / (name + ".gz" if use_gz else name)
        path.write_bytes(gzip.compress(data, mtime=0) if use_gz else data)
        paths[name] = path
    return paths


def sha(data):
    return hashlib.sha256(data).hexdigest()


# --------------------------------------------------------------------------
# the full MNIST files
# --------------------------------------------------------------------------

@pytest.fixture(scope="module")
def full_raw():
    return load_mnist(normalize=False, path=FULL_DIR, download=False)


@needs_full
def test_full_raw_shapes_dtypes_ranges_and_label_counts(full_raw):
    (x_train, t_train), (x_test, t_test) = full_raw
    assert x_train.shape == (60000, 784) and x_train.dtype == np.uint8
    assert x_test.shape == (10000, 784) and x_test.dtype == np.uint8
    assert t_train.shape == (60000,) and t_train.dtype == np.uint8
    assert t_test.shape == (10000,) and t_test.dtype == np.uint8
    assert x_train.min() == 0 and x_train.max() == 255
    assert x_test.min() == 0 and x_test.max() == 255
    assert np.bincount(t_train, minlength=10).tolist() == TRAIN_COUNTS
    assert np.bincount(t_test, minlength=10).tolist() == TEST_COUNTS
    # The well-known first labels: a 5 in training, a 7 in test.
    assert t_train[:3].tolist() == [5, 0, 4] and t_test[:3].tolist() == [7, 2, 1]
    assert x_train.flags.writeable and x_train.flags.c_contiguous


@needs_full
def test_full_normalized_is_x_over_255_float32(full_raw):
    (x_train, t_train), (x_test, t_test) = load_mnist(path=FULL_DIR, download=False)
    (rx_train, rt_train), (rx_test, rt_test) = full_raw
    assert x_train.dtype == np.float32 and x_test.dtype == np.float32
    assert x_train.shape == (60000, 784) and x_test.shape == (10000, 784)
    assert 0.0 <= x_train.min() and x_train.max() == 1.0
    np.testing.assert_array_equal(x_train, rx_train.astype(np.float32) / np.float32(255))
    np.testing.assert_array_equal(x_test, rx_test.astype(np.float32) / np.float32(255))
    np.testing.assert_array_equal(t_train, rt_train)
    assert t_train.dtype == np.uint8


@needs_full
def test_full_unflattened_one_hot(full_raw):
    (x_train, t_train), (x_test, t_test) = load_mnist(
        normalize=False, flatten=False, one_hot_label=True, path=FULL_DIR, download=False)
    (rx_train, rt_train), (rx_test, rt_test) = full_raw
    assert x_train.shape == (60000, 1, 28, 28) and x_test.shape == (10000, 1, 28, 28)
    assert x_train.dtype == np.uint8
    np.testing.assert_array_equal(x_train.reshape(60000, 784), rx_train)
    assert t_train.shape == (60000, 10) and t_test.shape == (10000, 10)
    assert t_train.dtype == np.float32 and t_test.dtype == np.float32
    np.testing.assert_array_equal(t_train.argmax(axis=1), rt_train)
    np.testing.assert_array_equal(t_test.argmax(axis=1), rt_test)
    assert set(np.unique(t_train).tolist()) == {0.0, 1.0}
    np.testing.assert_array_equal(t_train.sum(axis=1), np.ones(60000, np.float32))


@needs_full
def test_full_mnist_dir_helper_finds_the_shared_files(monkeypatch):
    monkeypatch.setenv("FASTBP_MNIST_FULL", str(FULL_DIR))
    assert full_mnist_dir() == FULL_DIR
    monkeypatch.setenv("FASTBP_MNIST_FULL", str(FULL_DIR / "does-not-exist"))
    assert full_mnist_dir() is None


@needs_full
def test_mini_is_the_first_10000_and_2000_of_full(full_raw):
    (x_train, t_train), (x_test, t_test) = load_mnist_mini(normalize=False)
    (rx_train, rt_train), (rx_test, rt_test) = full_raw
    np.testing.assert_array_equal(x_train, rx_train[:10000])
    np.testing.assert_array_equal(t_train, rt_train[:10000])
    np.testing.assert_array_equal(x_test, rx_test[:2000])
    np.testing.assert_array_equal(t_test, rt_test[:2000])


@needs_full
def test_make_mnist_mini_tool_reproduces_the_embedded_files(tmp_path, capsys):
    spec = importlib.util.spec_from_file_location("make_mnist_mini",
                                                  REPO / "tools/make_mnist_mini.py")
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    assert tool.main(["--src", str(FULL_DIR), "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    for name in MNIST_FILES:
        embedded = (REPO / "fastbp/datasets/data" / (name + ".gz")).read_bytes()
        regenerated = (tmp_path / (name + ".gz")).read_bytes()
        assert gzip.decompress(regenerated) == gzip.decompress(embedded)
        assert sha(gzip.decompress(embedded)) == M.MNIST_MINI_SHA256[name]
        assert M.MNIST_MINI_SHA256[name] in out
        # deterministic gzip header: MTIME field (bytes 4..7) is zero
        assert embedded[4:8] == b"\0\0\0\0" and regenerated[4:8] == b"\0\0\0\0"
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(n + ".gz" for n in MNIST_FILES)


def test_public_names_and_no_development_paths():
    assert sorted(datasets.__all__) == sorted([
        "DEFAULT_MIRRORS", "MNIST_FILES", "MNIST_MINI_SHA256", "MNIST_SHA256",
        "MnistUnavailableError", "download_mnist", "load_mnist", "load_mnist_mini",
        "mnist_dir_default", "mnist_mirrors", "read_idx_images", "read_idx_labels"])
    for name in datasets.__all__:
        assert getattr(datasets, name) is not None, name
    # the checkout's layout (../shared) and the tests' helpers are not the package's
    assert not hasattr(datasets, "SHARED_MNIST_DIR") and not hasattr(datasets, "full_mnist_dir")
    for module in (datasets, M, D):
        assert '"shared"' not in Path(module.__file__).read_text(), module.__name__


# --------------------------------------------------------------------------
# the embedded subset
# --------------------------------------------------------------------------

@pytest.mark.parametrize("normalize", [True, False])
@pytest.mark.parametrize("flatten", [True, False])
@pytest.mark.parametrize("one_hot", [True, False])
def test_mini_shapes_and_dtypes(normalize, flatten, one_hot):
    (x_train, t_train), (x_test, t_test) = load_mnist_mini(normalize, flatten, one_hot)
    img = (784,) if flatten else (1, 28, 28)
    assert x_train.shape == (10000,) + img and x_test.shape == (2000,) + img
    assert x_train.dtype == x_test.dtype == (np.float32 if normalize else np.uint8)
    lab = (10,) if one_hot else ()
    assert t_train.shape == (10000,) + lab and t_test.shape == (2000,) + lab
    assert t_train.dtype == t_test.dtype == (np.float32 if one_hot else np.uint8)
    assert x_train.max() == (1.0 if normalize else 255) and x_train.min() == 0


def test_mini_values_and_label_counts():
    (x_train, t_train), (x_test, t_test) = load_mnist_mini(normalize=False)
    (nx_train, _), (nx_test, _) = load_mnist_mini()
    np.testing.assert_array_equal(nx_train, x_train.astype(np.float32) / np.float32(255))
    np.testing.assert_array_equal(nx_test, x_test.astype(np.float32) / np.float32(255))
    assert np.bincount(t_train, minlength=10).tolist() == MINI_TRAIN_COUNTS
    assert np.bincount(t_test, minlength=10).tolist() == MINI_TEST_COUNTS
    assert t_train[:5].tolist() == [5, 0, 4, 1, 9]
    assert int(x_train.sum(dtype=np.int64)) == 262146600
    assert int(x_test.sum(dtype=np.int64)) == 48335026


def test_mini_returns_copies_so_the_cache_cannot_be_corrupted():
    (x_train, t_train), (x_test, _) = load_mnist_mini(normalize=False)
    before = x_train.copy(), t_train.copy()
    x_train[:] = 7
    t_train[:] = 3
    (x2, t2), _ = load_mnist_mini(normalize=False)
    np.testing.assert_array_equal(x2, before[0])
    np.testing.assert_array_equal(t2, before[1])
    assert x2 is not x_train and not np.shares_memory(x2, x_train)
    (xn, _), _ = load_mnist_mini()
    xn[:] = -1.0
    (xn2, _), _ = load_mnist_mini()
    assert xn2.min() == 0.0


@pytest.fixture
def fresh_mini_cache():
    M._mini_raw.cache_clear()
    yield
    M._mini_raw.cache_clear()


def test_mini_checksum_is_verified(monkeypatch, fresh_mini_cache):
    monkeypatch.setitem(M.MNIST_MINI_SHA256, TEST_LAB, "0" * 64)
    with pytest.raises(ValueError, match="t10k-labels-idx1-ubyte.gz.*SHA-256"):
        load_mnist_mini()


def test_mini_is_parsed_once(monkeypatch, fresh_mini_cache):
    calls = []
    real = M._embedded_bytes
    monkeypatch.setattr(M, "_embedded_bytes", lambda name: calls.append(name) or real(name))
    load_mnist_mini()
    load_mnist_mini(normalize=False, flatten=False, one_hot_label=True)
    assert sorted(calls) == sorted(MNIST_FILES)


# --------------------------------------------------------------------------
# synthetic files: reading and validation
# --------------------------------------------------------------------------

@pytest.mark.parametrize("gz", [True, False, {TRAIN_IMG, TEST_LAB}], ids=["gz", "raw", "mixed"])
def test_synthetic_roundtrip(tmp_path, gz):
    arrays = make_arrays()
    write_set(tmp_path, encode(arrays), gz=gz)
    (x_train, t_train), (x_test, t_test) = load_mnist(normalize=False, flatten=False,
                                                      path=tmp_path, download=False)
    np.testing.assert_array_equal(x_train[:, 0], arrays[TRAIN_IMG])
    np.testing.assert_array_equal(t_train, arrays[TRAIN_LAB])
    np.testing.assert_array_equal(x_test[:, 0], arrays[TEST_IMG])
    np.testing.assert_array_equal(t_test, arrays[TEST_LAB])
    assert x_train.shape == (5, 1, 28, 28) and x_test.shape == (3, 1, 28, 28)


def test_sizes_come_from_the_header(tmp_path):
    arrays = make_arrays()
    arrays[TRAIN_IMG] = np.arange(4 * 3 * 2, dtype=np.uint8).reshape(4, 3, 2)
    arrays[TEST_IMG] = np.zeros((2, 3, 2), np.uint8)
    arrays[TRAIN_LAB] = arrays[TRAIN_LAB][:4]
    arrays[TEST_LAB] = arrays[TEST_LAB][:2]
    write_set(tmp_path, encode(arrays))
    (x, _), (xt, _) = load_mnist(normalize=False, path=tmp_path, download=False)
    assert x.shape == (4, 6) and xt.shape == (2, 6)
    assert x.ravel().tolist() == list(range(24))
    (x, _), _ = load_mnist(flatten=False, path=tmp_path, download=False)
    assert x.shape == (4, 1, 3, 2)


def test_raw_file_is_preferred_when_both_exist(tmp_path):
    arrays = make_arrays(seed=1)
    write_set(tmp_path, encode(arrays), gz=False)
    other = make_arrays(seed=2)
    write_set(tmp_path, encode(other), gz=True)
    (_, t), _ = load_mnist(path=tmp_path, download=False)
    np.testing.assert_array_equal(t, arrays[TRAIN_LAB])


def test_default_directory_is_fastbp_data_env(tmp_path, monkeypatch):
    assert datasets.mnist_dir_default() == Path.home() / ".fastbp" / "mnist"
    arrays = make_arrays()
    write_set(tmp_path, encode(arrays))
    monkeypatch.setenv("FASTBP_DATA", str(tmp_path))
    assert datasets.mnist_dir_default() == tmp_path
    (_, t_train), _ = load_mnist(download=False)
    np.testing.assert_array_equal(t_train, arrays[TRAIN_LAB])


def _corrupt(kind):
    """Return (file to blame, {name: bytes}) for a corrupt set of kind ``kind``."""
    arrays = make_arrays()
    contents = encode(arrays)
    if kind == "image magic":
        contents[TRAIN_IMG] = struct.pack(">i", 2049) + contents[TRAIN_IMG][4:]
        return TRAIN_IMG, contents, "wrong magic number 2049"
    if kind == "label magic":
        contents[TEST_LAB] = struct.pack(">i", 2051) + contents[TEST_LAB][4:]
        return TEST_LAB, contents, "wrong magic number 2051"
    if kind == "truncated images":
        contents[TEST_IMG] = contents[TEST_IMG][:-1]
        return TEST_IMG, contents, "truncated"
    if kind == "truncated labels":
        contents[TRAIN_LAB] = contents[TRAIN_LAB][:-2]
        return TRAIN_LAB, contents, "truncated"
    if kind == "truncated header":
        contents[TRAIN_IMG] = contents[TRAIN_IMG][:10]
        return TRAIN_IMG, contents, "truncated"
    if kind == "trailing images":
        contents[TRAIN_IMG] += b"\0"
        return TRAIN_IMG, contents, "1 trailing bytes"
    if kind == "trailing labels":
        contents[TEST_LAB] += b"junk"
        return TEST_LAB, contents, "4 trailing bytes"
    if kind == "count mismatch":
        contents[TRAIN_LAB] = idx_labels(arrays[TRAIN_LAB][:4])
        return TRAIN_IMG, contents, "5 images but .*4 labels"
    if kind == "label out of range":
        bad = arrays[TEST_LAB].copy()
        bad[2] = 10
        contents[TEST_LAB] = idx_labels(bad)
        return TEST_LAB, contents, "label 10 at index 2"
    if kind == "negative count":
        contents[TRAIN_LAB] = struct.pack(">ii", 2049, -1)
        return TRAIN_LAB, contents, "-1 labels"
    raise AssertionError(kind)


CORRUPTIONS = ["image magic", "label magic", "truncated images", "truncated labels",
               "truncated header", "trailing images", "trailing labels",
               "count mismatch", "label out of range", "negative count"]


@pytest.mark.parametrize("gz", [True, False], ids=["gz", "raw"])
@pytest.mark.parametrize("kind", CORRUPTIONS)
def test_corrupt_idx_is_a_value_error_naming_the_file(tmp_path, kind, gz):
    blame, contents, what = _corrupt(kind)
    paths = write_set(tmp_path, contents, gz=gz)
    with pytest.raises(ValueError, match=what) as info:
        load_mnist(path=tmp_path, download=False)
    assert str(paths[blame]) in str(info.value)


def _gz_variants(data):
    good = gzip.compress(data, mtime=0)
    crc = bytearray(good)
    crc[-8] ^= 0xFF                       # CRC32 field of the trailer
    size = bytearray(good)
    size[-4] ^= 0x01                      # ISIZE field of the trailer
    body = bytearray(good)
    body[len(good) // 2] ^= 0xFF          # deflate stream
    return {
        "bad crc": bytes(crc),
        "bad isize": bytes(size),
        "flipped body byte": bytes(body),
        "cut in half": good[: len(good) // 2],
        "cut trailer": good[:-3],
        "not gzip at all": data,
        "empty": b"",
        "trailing garbage": good + b"garbage!",
    }


@pytest.mark.parametrize("variant", list(_gz_variants(b"x")))
def test_bad_gzip_is_a_value_error_naming_the_file(tmp_path, variant):
    contents = encode(make_arrays())
    paths = write_set(tmp_path, contents)
    paths[TRAIN_IMG].write_bytes(_gz_variants(contents[TRAIN_IMG])[variant])
    with pytest.raises(ValueError, match="corrupt gzip") as info:
        load_mnist(path=tmp_path, download=False)
    assert str(paths[TRAIN_IMG]) in str(info.value)
    assert not isinstance(info.value, (EOFError, OSError))


def test_gzip_data_without_gz_suffix_gets_a_hint(tmp_path):
    contents = encode(make_arrays())
    write_set(tmp_path, contents, gz=False)
    (tmp_path / TRAIN_LAB).write_bytes(gzip.compress(contents[TRAIN_LAB]))
    with pytest.raises(ValueError, match="wrong magic.*gzip-compressed; give it a .gz suffix"):
        load_mnist(path=tmp_path, download=False)


@settings(max_examples=60, deadline=None)
@given(n=st.integers(0, 6), rows=st.integers(1, 5), cols=st.integers(1, 5),
       cut=st.integers(1, 200), extra=st.binary(min_size=0, max_size=5),
       seed=st.integers(0, 2**16))
def test_idx_images_roundtrip_and_any_wrong_length_is_rejected(n, rows, cols, cut, extra, seed):
    x = np.random.default_rng(seed).integers(0, 256, (n, rows, cols), dtype=np.uint8)
    data = idx_images(x)
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "imgs"
        path.write_bytes(data)
        np.testing.assert_array_equal(read_idx_images(path), x)
        path.write_bytes(data[:max(0, len(data) - cut)])
        with pytest.raises(ValueError, match="truncated"):
            read_idx_images(path)
        path.write_bytes(data + extra)
        if extra:
            with pytest.raises(ValueError, match="trailing"):
                read_idx_images(path)
        else:
            assert read_idx_images(path).shape == (n, rows, cols)


def test_read_idx_labels_public_helper(tmp_path):
    path = tmp_path / "labels.gz"
    path.write_bytes(gzip.compress(idx_labels([3, 1, 4, 1, 5, 9])))
    t = read_idx_labels(path)
    assert t.tolist() == [3, 1, 4, 1, 5, 9] and t.dtype == np.uint8


def test_missing_files_without_download_name_directory_and_files(tmp_path):
    target = tmp_path / "nowhere"
    with pytest.raises(MnistUnavailableError) as info:
        load_mnist(path=target, download=False)
    msg = str(info.value)
    assert isinstance(info.value, OSError)
    assert str(target) in msg
    for name in MNIST_FILES:
        assert name in msg
    assert "FASTBP_DATA" in msg and "path=" in msg
    assert not target.exists()            # nothing created


def test_one_missing_file_without_download(tmp_path):
    contents = encode(make_arrays())
    del contents[TEST_LAB]
    write_set(tmp_path, contents)
    with pytest.raises(MnistUnavailableError, match=f"missing from .*: {TEST_LAB} "):
        load_mnist(path=tmp_path, download=False)


def test_mirror_selection(monkeypatch):
    assert datasets.mnist_mirrors() == list(datasets.DEFAULT_MIRRORS)
    assert len(datasets.DEFAULT_MIRRORS) >= 2
    monkeypatch.setenv("FASTBP_MNIST_MIRROR", "http://a/x/, http://b/y/")
    assert datasets.mnist_mirrors() == ["http://a/x/", "http://b/y/"]
    assert datasets.mnist_mirrors("http://c/") == ["http://c/"]
    assert datasets.mnist_mirrors(["http://d/", "http://e/"]) == ["http://d/", "http://e/"]
    with pytest.raises(ValueError, match="at least one mirror"):
        datasets.mnist_mirrors([])


# --------------------------------------------------------------------------
# downloading, against a real local HTTP server
# --------------------------------------------------------------------------

class _Server:
    """A ThreadingHTTPServer on 127.0.0.1 serving ``routes``.

    ``routes[url_path] = (mode, body)``; mode is "ok", "cut" (announces the
    full Content-Length, sends half, closes) or "stall" (sends headers, then
    waits until teardown).  Unknown paths get 404.  ``requests`` lists every
    path requested.
    """

    def __init__(self):
        self.routes = {}
        self.requests = []
        self.release = threading.Event()
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                server.requests.append(self.path)
                mode, body = server.routes.get(self.path, (None, b""))
                if mode is None:
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header("Content-Type", "application/octet-stream")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if mode == "ok":
                    self.wfile.write(body)
                elif mode == "cut":
                    self.wfile.write(body[: len(body) // 2])
                    self.wfile.flush()
                    self.close_connection = True
                elif mode == "stall":
                    self.wfile.flush()
                    server.release.wait(10)

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever,
                                       kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    def serve(self, prefix, contents, mode="ok", gz=True):
        for name, data in contents.items():
            self.routes[f"{prefix}/{name}.gz"] = (mode, gzip.compress(data, mtime=0) if gz else data)
        return self.url + prefix + "/"

    def close(self):
        self.release.set()
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(5)


@pytest.fixture
def server():
    srv = _Server()
    yield srv
    srv.close()


@pytest.fixture
def synthetic(monkeypatch):
    """Synthetic arrays and IDX bytes, with MNIST_SHA256 pointing at them."""
    arrays = make_arrays()
    contents = encode(arrays)
    monkeypatch.setattr(D, "MNIST_SHA256", {n: sha(d) for n, d in contents.items()})
    return arrays, contents


def _listing(directory):
    return sorted(p.name for p in Path(directory).iterdir())


def _check_arrays(loaded, arrays):
    (x_train, t_train), (x_test, t_test) = loaded
    np.testing.assert_array_equal(x_train.reshape(-1, 28, 28), arrays[TRAIN_IMG])
    np.testing.assert_array_equal(t_train, arrays[TRAIN_LAB])
    np.testing.assert_array_equal(x_test.reshape(-1, 28, 28), arrays[TEST_IMG])
    np.testing.assert_array_equal(t_test, arrays[TEST_LAB])


def test_download_good_files_are_cached(tmp_path, server, synthetic):
    arrays, contents = synthetic
    mirror = server.serve("/mnist", contents)
    target = tmp_path / "new" / "dir"
    loaded = load_mnist(normalize=False, path=target, mirror=mirror, progress=False)
    _check_arrays(loaded, arrays)
    assert sorted(server.requests) == sorted(f"/mnist/{n}.gz" for n in MNIST_FILES)
    assert _listing(target) == sorted(n + ".gz" for n in MNIST_FILES)
    for name in MNIST_FILES:
        assert gzip.decompress((target / (name + ".gz")).read_bytes()) == contents[name]
    # second call: served from disk, no request
    loaded = load_mnist(normalize=False, path=target, mirror=mirror, progress=False)
    _check_arrays(loaded, arrays)
    assert len(server.requests) == 4


def test_download_fetches_only_missing_files(tmp_path, server, synthetic):
    arrays, contents = synthetic
    mirror = server.serve("/m", contents)
    write_set(tmp_path, {n: d for n, d in contents.items() if n != TEST_IMG}, gz=False)
    _check_arrays(load_mnist(normalize=False, path=tmp_path, mirror=mirror), arrays)
    assert server.requests == [f"/m/{TEST_IMG}.gz"]


def test_download_uses_env_mirror(tmp_path, server, synthetic, monkeypatch):
    arrays, contents = synthetic
    monkeypatch.setenv("FASTBP_MNIST_MIRROR", server.serve("/env", contents))
    monkeypatch.setenv("FASTBP_DATA", str(tmp_path))
    _check_arrays(load_mnist(normalize=False), arrays)
    assert len(server.requests) == 4 and all(r.startswith("/env/") for r in server.requests)


def test_download_false_never_touches_the_network(tmp_path, server, synthetic):
    _, contents = synthetic
    mirror = server.serve("/m", contents)
    with pytest.raises(MnistUnavailableError):
        load_mnist(path=tmp_path, mirror=mirror, download=False)
    assert server.requests == []
    assert _listing(tmp_path) == []


def test_download_checksum_mismatch_leaves_nothing(tmp_path, server, synthetic):
    _, contents = synthetic
    served = dict(contents)
    served[TRAIN_LAB] = idx_labels([1, 2, 3, 4, 5])    # valid IDX, wrong content
    mirror = server.serve("/m", served)
    present = write_set(tmp_path, {n: d for n, d in contents.items() if n != TRAIN_LAB})
    with pytest.raises(MnistUnavailableError) as info:
        load_mnist(path=tmp_path, mirror=mirror, progress=False)
    msg = str(info.value)
    assert "SHA-256 mismatch" in msg and TRAIN_LAB in msg and str(tmp_path) in msg
    assert f"{mirror}{TRAIN_LAB}.gz" in msg
    assert "FASTBP_DATA" in msg
    assert _listing(tmp_path) == sorted(p.name for p in present.values())


def test_download_corrupt_gzip_leaves_nothing(tmp_path, server, synthetic):
    _, contents = synthetic
    mirror = server.serve("/m", contents)
    path = f"/m/{TEST_IMG}.gz"
    server.routes[path] = ("ok", _gz_variants(contents[TEST_IMG])["bad crc"])
    with pytest.raises(MnistUnavailableError, match="corrupt gzip"):
        load_mnist(path=tmp_path, mirror=mirror, progress=False)
    # files are fetched in order and the first failure stops: the two good
    # files before it were kept, the bad one and its temp file are gone
    assert _listing(tmp_path) == sorted([TRAIN_IMG + ".gz", TRAIN_LAB + ".gz"])


def test_download_connection_cut_leaves_no_partial_file(tmp_path, server, synthetic):
    _, contents = synthetic
    mirror = server.serve("/m", contents)
    path = f"/m/{TRAIN_IMG}.gz"
    server.routes[path] = ("cut", server.routes[path][1])
    with pytest.raises(MnistUnavailableError) as info:
        load_mnist(path=tmp_path, mirror=mirror, progress=False)
    assert "connection closed after" in str(info.value)
    assert TRAIN_IMG + ".gz" not in _listing(tmp_path)
    assert not [p for p in _listing(tmp_path) if p.endswith(".part")]
    assert server.requests.count(path) == 1


def test_download_stall_times_out(tmp_path, server, synthetic):
    _, contents = synthetic
    mirror = server.serve("/m", contents, mode="stall")
    with pytest.raises(MnistUnavailableError, match="timed out") as info:
        load_mnist(path=tmp_path, mirror=mirror, progress=False, timeout=0.3)
    assert TRAIN_IMG in str(info.value)
    assert _listing(tmp_path) == []


def test_download_falls_back_to_the_next_mirror(tmp_path, server, synthetic):
    arrays, contents = synthetic
    bad = dict(contents)
    bad[TRAIN_IMG] = idx_images(np.zeros((5, 28, 28), np.uint8))
    mirrors = [server.url + "/absent/", server.serve("/bad", bad), server.serve("/good", contents)]
    _check_arrays(load_mnist(normalize=False, path=tmp_path, mirror=mirrors), arrays)
    assert server.requests[:3] == [f"/absent/{TRAIN_IMG}.gz", f"/bad/{TRAIN_IMG}.gz",
                                   f"/good/{TRAIN_IMG}.gz"]
    assert _listing(tmp_path) == sorted(n + ".gz" for n in MNIST_FILES)


def test_download_accepts_uncompressed_content_with_matching_checksum(tmp_path, server, synthetic):
    arrays, contents = synthetic
    mirror = server.serve("/raw", contents, gz=False)
    _check_arrays(load_mnist(normalize=False, path=tmp_path, mirror=mirror), arrays)
    assert _listing(tmp_path) == sorted(MNIST_FILES)     # saved without .gz


def test_unreachable_mirror_error_names_directory_files_and_remedy(tmp_path, synthetic):
    with socket.socket() as s:                # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    mirror = f"http://127.0.0.1:{port}/mnist/"
    with pytest.raises(MnistUnavailableError) as info:
        load_mnist(path=tmp_path, mirror=mirror, progress=False, timeout=2)
    msg = str(info.value)
    assert isinstance(info.value, OSError)
    assert str(tmp_path) in msg and mirror in msg
    for name in MNIST_FILES:
        assert name in msg
    assert "FASTBP_DATA" in msg and "path=" in msg
    assert _listing(tmp_path) == []


def test_interrupted_download_removes_the_temp_file(tmp_path, server, synthetic, monkeypatch):
    _, contents = synthetic
    mirror = server.serve("/m", contents)

    def interrupt(path):
        assert Path(path).parent == tmp_path and Path(path).name.endswith(".part")
        assert Path(path).exists()
        raise KeyboardInterrupt

    monkeypatch.setattr(D, "_content_sha256", interrupt)
    with pytest.raises(KeyboardInterrupt):
        load_mnist(path=tmp_path, mirror=mirror, progress=False)
    assert _listing(tmp_path) == []


def test_download_checksums_parameter_and_progress_bar(tmp_path, server, capsys):
    contents = encode(make_arrays(seed=3))
    mirror = server.serve("/m", contents)
    out = datasets.download_mnist(tmp_path, mirror=mirror, progress=True,
                                  checksums={n: sha(d) for n, d in contents.items()})
    assert out == tmp_path
    assert _listing(tmp_path) == sorted(n + ".gz" for n in MNIST_FILES)
    err = capsys.readouterr().err
    assert TRAIN_IMG in err                       # tqdm bar labelled with the file
    # default table: the synthetic files do not match the real MNIST checksums
    with pytest.raises(MnistUnavailableError, match="SHA-256 mismatch"):
        datasets.download_mnist(tmp_path / "other", mirror=mirror, progress=False)
    assert _listing(tmp_path / "other") == []


def test_download_size_limits_name_the_limit(tmp_path, server, synthetic, monkeypatch):
    _, contents = synthetic
    mirror = server.serve("/m", contents)
    monkeypatch.setattr(D, "_MAX_CONTENT_BYTES", 100)        # train images: 3,936 bytes
    with pytest.raises(MnistUnavailableError, match="content larger than 100 bytes"):
        load_mnist(path=tmp_path, mirror=mirror, progress=False)
    monkeypatch.setattr(D, "_MAX_DOWNLOAD_BYTES", 50)
    with pytest.raises(MnistUnavailableError, match="Content-Length .* exceeds the 50-byte"):
        load_mnist(path=tmp_path, mirror=mirror, progress=False)
    assert _listing(tmp_path) == []
