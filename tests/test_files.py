"""Files fastbp writes and reads.

* Saves are atomic: a save that fails part-way (a file-size limit, an error
  inside the writer) leaves the previous file exactly as it was and no
  temporary file behind -- ``save``, the convnets' ``save_params``.
* ``load`` checks the archive's index (names, shapes, dtypes, member sizes)
  and the settings it records against the network before it reads any
  array; an entry it doesn't need is never read, so a small file hiding a
  huge entry costs no memory.
* Local MNIST files are read under the download's cap: a small gzip of
  zeros or a header announcing gigabytes is refused after one chunk.
"""
import os
import pickle
import subprocess
import sys
import textwrap
import tracemalloc
from types import SimpleNamespace

import numpy as np
import pytest

import fastbp
from fastbp import networks as fast_networks
from fastbp.datasets import _idx, read_idx_images, read_idx_labels
from fastbp.reference import convnets as ref_convnets
from fastbp.reference import multi_layer_net_extend as ref_extend
from fastbp.reference import networks as ref_networks

IMPLS = {"fastbp": fast_networks,
         "reference": SimpleNamespace(TwoLayerNet=ref_networks.TwoLayerNet,
                                      MultiLayerNet=ref_networks.MultiLayerNet,
                                      MultiLayerNetExtend=ref_extend.MultiLayerNetExtend,
                                      SimpleConvNet=ref_convnets.SimpleConvNet)}


def leftovers(directory, keep):
    """Files in ``directory`` other than ``keep`` (temporary files left behind)."""
    return sorted(set(os.listdir(directory)) - set(keep))


# ---------------------------------------------------------------------------
# Atomic saves
# ---------------------------------------------------------------------------
def test_save_that_hits_a_file_size_limit_keeps_the_previous_checkpoint(tmp_path):
    # The reproduction: RLIMIT_FSIZE makes the second, larger save
    # fail part-way (EFBIG).  Python ignores SIGXFSZ, so the write raises.
    code = f"""
        import resource, numpy as np
        from fastbp.networks import MultiLayerNet
        path = {str(tmp_path / "model.npz")!r}
        small = MultiLayerNet(20, [10], 3, seed=1)
        small.save(path)
        size = __import__("os").path.getsize(path)
        resource.setrlimit(resource.RLIMIT_FSIZE, (size + 4096, resource.RLIM_INFINITY))
        big = MultiLayerNet(20, [10], 3, seed=2)
        big.params["W1"][...] = 0                       # distinguishable from small's
        big_file = MultiLayerNet(2000, [100], 3, seed=3)
        try:
            big_file.save(path)
        except OSError as exc:
            print("OSError", exc.errno)
        check = MultiLayerNet(20, [10], 3, seed=9).load(path)
        print(all(np.array_equal(check.params[k], small.params[k]) for k in small.params))
        """
    package_parent = os.path.dirname(os.path.dirname(fastbp.__file__))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        p for p in (package_parent, os.environ.get("PYTHONPATH")) if p))
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True,
                          text=True, timeout=120, cwd=tmp_path, env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = proc.stdout.split("\n")
    assert lines[0].startswith("OSError"), proc.stdout
    assert lines[1] == "True", proc.stdout          # the previous checkpoint loads intact
    assert leftovers(tmp_path, ["model.npz"]) == []
    # the package under test: compiled, or the reference under FASTBP_PURE as here
    assert ("pure-NumPy" in proc.stderr) == (not fastbp.COMPILED)


@pytest.mark.parametrize("impl", IMPLS)
def test_save_failing_inside_the_writer_leaves_the_old_file(impl, tmp_path, monkeypatch):
    path = tmp_path / "net.npz"
    net = IMPLS[impl].TwoLayerNet(6, 4, 3, seed=0)
    net.save(path)
    before = path.read_bytes()

    def failing_savez(file, **arrays):
        file.write(b"PK partial")
        raise KeyboardInterrupt       # Ctrl-C halfway through the write
    monkeypatch.setattr(np, "savez", failing_savez)
    with pytest.raises(KeyboardInterrupt):
        IMPLS[impl].TwoLayerNet(6, 4, 3, seed=5).save(path)
    assert path.read_bytes() == before
    assert leftovers(tmp_path, ["net.npz"]) == []


def test_save_gives_the_new_file_the_usual_permissions(tmp_path):
    umask = os.umask(0o022)
    os.umask(umask)
    path = fast_networks.TwoLayerNet(6, 4, 3, seed=0).save(tmp_path / "net")
    assert path == str(tmp_path / "net.npz")
    assert os.stat(path).st_mode & 0o777 == 0o666 & ~umask


def test_convnet_save_params_is_atomic(tmp_path, monkeypatch):
    path = tmp_path / "params.pkl"
    net = fast_networks.SimpleConvNet((1, 8, 8), {"filter_num": 2, "filter_size": 3},
                                      hidden_size=4, output_size=3, seed=0)
    net.save_params(path)
    before = path.read_bytes()

    def failing_dump(obj, file, protocol=None):
        file.write(b"\x80\x04partial")
        raise OSError(28, "No space left on device")
    monkeypatch.setattr(pickle, "dump", failing_dump)
    with pytest.raises(OSError, match="No space"):
        net.save_params(path)
    assert path.read_bytes() == before
    assert leftovers(tmp_path, ["params.pkl"]) == []


def test_convnet_load_params_refuses_a_file_too_large_for_its_parameters(tmp_path):
    net = fast_networks.SimpleConvNet((1, 8, 8), {"filter_num": 2, "filter_size": 3},
                                      hidden_size=4, output_size=3, seed=0)
    path = tmp_path / "params.pkl"
    with open(path, "wb") as f:
        pickle.dump({**net.params, "junk": np.zeros(1_000_000)}, f, protocol=4)
    before = {k: v.copy() for k, v in net.params.items()}
    with pytest.raises(ValueError, match="bytes, more than the .* parameters it should hold"):
        net.load_params(path)
    assert all(np.array_equal(net.params[k], before[k]) for k in before)


# ---------------------------------------------------------------------------
# load: the index and the settings before any array
# ---------------------------------------------------------------------------
def saved(net, path, **extra):
    """``net``'s save() entries plus ``extra``, written with np.savez_compressed."""
    with np.load(net.save(path)) as data:
        arrays = {k: data[k] for k in data.files}
    arrays.update(extra)
    np.savez_compressed(path, **arrays)
    return path


def peak_while(call):
    """(result or exception, peak traced memory in bytes) of ``call()``."""
    tracemalloc.start()
    try:
        try:
            result = call()
        except Exception as exc:        # the caller checks which
            result = exc
        return result, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


@pytest.mark.parametrize("impl", IMPLS)
def test_an_extra_parameter_entry_is_refused_before_it_is_read(impl, tmp_path):
    # 64 MB of zeros compresses to ~64 kB: reading it would show in the peak
    path = saved(IMPLS[impl].TwoLayerNet(6, 4, 3, seed=0), tmp_path / "net.npz",
                 W9=np.zeros(8_000_000))
    assert path.stat().st_size < 1_000_000
    net = IMPLS[impl].TwoLayerNet(6, 4, 3, seed=1)
    result, peak = peak_while(lambda: net.load(path))
    assert isinstance(result, ValueError) and "also holds ['W9']" in str(result)
    assert peak < 4_000_000, peak


@pytest.mark.parametrize("impl", IMPLS)
def test_an_unknown_metadata_entry_is_never_read(impl, tmp_path):
    source = IMPLS[impl].TwoLayerNet(6, 4, 3, seed=0)
    path = saved(source, tmp_path / "net.npz", __notes__=np.zeros(8_000_000))
    net = IMPLS[impl].TwoLayerNet(6, 4, 3, seed=1)
    result, peak = peak_while(lambda: net.load(path))
    assert result is net
    assert peak < 4_000_000, peak
    assert all(np.array_equal(net.params[k], source.params[k]) for k in source.params)


def test_a_member_whose_size_disagrees_with_its_header_is_refused(tmp_path):
    import zipfile
    net = fast_networks.TwoLayerNet(6, 4, 3, seed=0)
    good = net.save(tmp_path / "good.npz")
    bad = tmp_path / "bad.npz"
    with zipfile.ZipFile(good) as src, zipfile.ZipFile(bad, "w") as dst:
        for info in src.infolist():
            data = src.read(info)
            if info.filename == "W1.npy":
                data += b"\0" * 8000         # padded past what the header announces
            dst.writestr(info.filename, data)
    before = {k: v.copy() for k, v in net.params.items()}
    with pytest.raises(ValueError, match="entry 'W1' .* header announces .* damaged"):
        net.load(bad)
    assert all(np.array_equal(net.params[k], before[k]) for k in before)


SETTINGS_CASES = {
    # the file's network, the network it is loaded into, what the error names
    "sigmoid into relu": (lambda m: m.MultiLayerNet(6, [4], 3, activation="sigmoid", seed=0),
                          lambda m: m.MultiLayerNet(6, [4], 3, seed=0), "activation 'sigmoid'"),
    "MultiLayerNet into TwoLayerNet": (lambda m: m.MultiLayerNet(6, [4], 3, seed=0),
                                       lambda m: m.TwoLayerNet(6, 4, 3, seed=0),
                                       "class 'MultiLayerNet'"),
    "weight decay": (lambda m: m.MultiLayerNet(6, [4], 3, weight_decay_lambda=0.1, seed=0),
                     lambda m: m.MultiLayerNet(6, [4], 3, seed=0), "weight_decay_lambda 0.1"),
    "dropout": (lambda m: m.MultiLayerNetExtend(6, [4], 3, use_dropout=True, seed=0),
                lambda m: m.MultiLayerNetExtend(6, [4], 3, seed=0), "use_dropout True"),
    "dtype": (lambda m: m.TwoLayerNet(6, 4, 3, dtype=np.float32, seed=0),
              lambda m: m.TwoLayerNet(6, 4, 3, seed=0), "dtype"),
}


@pytest.mark.parametrize("case", SETTINGS_CASES)
@pytest.mark.parametrize("impl", IMPLS)
def test_a_file_of_another_kind_of_network_is_refused(impl, case, tmp_path):
    make_saved, make_loading, needle = SETTINGS_CASES[case]
    module = IMPLS[impl]
    path = make_saved(module).save(tmp_path / "net.npz")
    net = make_loading(module)
    before = {k: v.copy() for k, v in net.params.items()}
    with pytest.raises(ValueError) as info:
        net.load(path)
    assert needle in str(info.value)
    assert all(np.array_equal(net.params[k], before[k]) for k in before)


def test_the_file_names_the_settings_it_was_saved_with(tmp_path):
    net = fast_networks.MultiLayerNetExtend(6, [4, 5], 3, activation="sigmoid",
                                            weight_decay_lambda=0.25, use_batchnorm=True,
                                            dropout_ration=0.3, use_dropout=True, seed=0)
    with np.load(net.save(tmp_path / "net")) as data:
        settings = {k: data[k].tolist() for k in data.files if k.startswith("__")
                    and not k.startswith(("__running_mean", "__running_var"))}
    assert settings == {"__class__": "MultiLayerNetExtend", "__sizes__": [6, 4, 5, 3],
                        "__dtype__": "float64", "__activation__": "sigmoid",
                        "__weight_decay_lambda__": 0.25, "__use_dropout__": True,
                        "__dropout_ration__": 0.3, "__use_batchnorm__": True}


@pytest.mark.parametrize("impl", IMPLS)
def test_fastbp_and_reference_files_interchange_and_old_files_still_load(impl, tmp_path):
    other = "reference" if impl == "fastbp" else "fastbp"
    source = IMPLS[other].MultiLayerNet(6, [4], 3, seed=0)
    net = IMPLS[impl].MultiLayerNet(6, [4], 3, seed=1).load(source.save(tmp_path / "a.npz"))
    assert all(np.array_equal(net.params[k], source.params[k]) for k in source.params)
    # a file from before the settings were saved: only params, __class__, __sizes__, __dtype__
    old = tmp_path / "old.npz"
    np.savez(old, **source.params, __class__=np.asarray("MultiLayerNet"),
             __sizes__=np.asarray([6, 4, 3]), __dtype__=np.asarray("float64"))
    net = IMPLS[impl].MultiLayerNet(6, [4], 3, activation="sigmoid", seed=2).load(old)
    assert all(np.array_equal(net.params[k], source.params[k]) for k in source.params)


def test_a_single_npy_file_is_refused_clearly(tmp_path):
    path = tmp_path / "w.npy"
    np.save(path, np.zeros(3))
    with pytest.raises(ValueError, match="expected an .npz archive"):
        fast_networks.TwoLayerNet(6, 4, 3).load(path)


# ---------------------------------------------------------------------------
# Local MNIST files: capped like downloads
# ---------------------------------------------------------------------------
def gzipped(tmp_path, name, content):
    import gzip
    path = tmp_path / name
    with gzip.open(path, "wb", compresslevel=9) as f:
        f.write(content)
    return path


def test_a_gzip_of_zeros_is_refused_after_one_chunk(tmp_path):
    # the issue: 2 MB of gzip, ~1 GB of zeros, read whole before "wrong magic"
    path = gzipped(tmp_path, "train-images-idx3-ubyte.gz", b"\0" * 200_000_000)
    assert path.stat().st_size < 1_000_000
    result, peak = peak_while(lambda: read_idx_images(path))
    assert isinstance(result, ValueError) and "wrong magic number 0" in str(result)
    assert peak < 2_000_000, peak


def test_a_header_announcing_more_than_the_cap_is_refused_after_one_chunk(tmp_path):
    header = np.array([2051, 1_000_000, 28, 28], ">i4").tobytes()    # 784 MB announced
    path = gzipped(tmp_path, "train-images-idx3-ubyte.gz", header + b"\0" * 50_000_000)
    result, peak = peak_while(lambda: read_idx_images(path))
    assert isinstance(result, ValueError) and "limit of an MNIST file" in str(result)
    assert peak < 2_000_000, peak


@pytest.mark.parametrize("compressed", [False, True])
def test_content_past_the_cap_stops_the_read(tmp_path, monkeypatch, compressed):
    monkeypatch.setattr(_idx, "MAX_CONTENT_BYTES", 100_000)
    content = np.array([2049, 10], ">i4").tobytes() + bytes(10) + b"\0" * 300_000
    if compressed:
        path = gzipped(tmp_path, "t10k-labels-idx1-ubyte.gz", content)
    else:
        path = tmp_path / "t10k-labels-idx1-ubyte"
        path.write_bytes(content)
    with pytest.raises(ValueError, match="100000-byte limit"):
        read_idx_labels(path)
