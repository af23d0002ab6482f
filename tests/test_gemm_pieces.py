"""Products in pieces (``fastbp._blas.gemm_pieces``): the compiled steps and
the convolution engine compute the same numbers, up to rounding, whether a
product goes to BLAS whole or in pieces along its rows, its columns or its
inner dimension; and which BLAS cores get a piece limit
(``fastbp._blas_info``)."""
import platform

import numpy as np
import pytest

from conftest import PURE, cpu_flags, run_isolated
import fastbp
from fastbp import _backend, _blas_info
from fastbp import layers as fast_layers
from fastbp import networks as fast_networks
from fastbp import optimizers as fast_optimizers

compiled = pytest.mark.skipif(PURE, reason="FASTBP_PURE: the compiled core is not loaded")
DTYPES = pytest.mark.parametrize("dtype", [np.float32, np.float64])
RTOL = {np.float32: 1e-5, np.float64: 1e-12}


@pytest.fixture
def piece_limit():
    """Set the piece limit of every module that uses gemm_pieces; the one
    fastbp chose at import is restored after the test."""
    def set_limit(limit):
        for module in _backend.PIECE_LIMITED_MODULES:
            module.set_gemm_piece_limit(limit)
    yield set_limit
    set_limit(_backend.GEMM_PIECE_LIMIT)


def assert_close(a, b, dtype):
    scale = max(1e-30, float(np.max(np.abs(b))))
    np.testing.assert_allclose(a, b, rtol=RTOL[dtype], atol=RTOL[dtype] * scale)


def mlp_steps(sizes, n, dtype, optimizer, rng):
    """Losses and parameters of three train_steps of a MultiLayerNet."""
    net = fast_networks.MultiLayerNet(sizes[0], list(sizes[1:-1]), sizes[-1], dtype=dtype,
                                      seed=0)
    opt = getattr(fast_optimizers, optimizer)(lr=0.01)
    losses = []
    for _ in range(3):
        x = rng.random((n, sizes[0])).astype(dtype)
        losses.append(net.train_step(x, rng.integers(0, sizes[-1], n), opt))
    return losses, net.params


# Under a limit of 70,000 multiply-adds, (16 images) 256-128-96-10 splits
# layer 1's forward along its inner dimension (256 inputs), its dW
# (x.T @ dz) along its rows and layer 2's dx (dz @ W.T) along its columns;
# (256 images) 40-40-10 splits layer 1's forward along its rows (the batch)
# and its dW along its inner dimension (the batch, x transposed).
@compiled
@DTYPES
@pytest.mark.parametrize("optimizer", ["SGD", "Momentum"])     # fused update, gradients
@pytest.mark.parametrize("sizes,n", [((256, 128, 96, 10), 16), ((40, 40, 10), 256)],
                         ids=["wide", "tall"])
def test_mlp_steps_in_pieces_equal_whole_products(sizes, n, optimizer, dtype, piece_limit):
    results = []
    for limit in (0, 70_000):
        piece_limit(limit)
        results.append(mlp_steps(sizes, n, dtype, optimizer, np.random.default_rng(1)))
    (whole_losses, whole), (piece_losses, pieces) = results
    np.testing.assert_allclose(piece_losses, whole_losses, rtol=RTOL[dtype])
    for key in whole:
        assert_close(pieces[key], whole[key], dtype)


@compiled
@DTYPES
def test_batchnorm_step_in_pieces_equals_whole_products(dtype, piece_limit):
    results = []
    for limit in (0, 70_000):
        piece_limit(limit)
        net = fast_networks.MultiLayerNetExtend(256, [128, 96], 10, use_batchnorm=True,
                                                dtype=dtype, seed=0)
        rng = np.random.default_rng(2)
        x = rng.random((16, 256)).astype(dtype)
        loss = net.train_step(x, rng.integers(0, 10, 16), fast_optimizers.SGD(lr=0.01))
        results.append((loss, net.params))
    (whole_loss, whole), (piece_loss, pieces) = results
    assert piece_loss == pytest.approx(whole_loss, rel=RTOL[dtype])
    # (b1, b2 feed batch norm, which takes out their mean: their gradient is
    # 0 but for rounding, and so are their steps, whichever way it rounds)
    for key in sorted(set(whole) - {"b1", "b2"}):
        assert_close(pieces[key], whole[key], dtype)


# 32 channels of 4 x 4 images, 3 x 3 taps (288 an output position), blocks of
# one image (16 positions): the forward product's inner dimension is its
# longest, split with col @ W.T (float32, 8 filters) and W @ colT (float64)
@compiled
@DTYPES
def test_convolution_forward_in_pieces_equals_the_whole_product(dtype, piece_limit,
                                                                 monkeypatch):
    monkeypatch.setattr(fastbp._conv_layers, "BLOCK_BYTES", 16 * 288 * np.dtype(dtype).itemsize)
    monkeypatch.setattr(fastbp._conv_layers, "BLOCK_POSITIONS", 0)
    rng = np.random.default_rng(3)
    W = rng.standard_normal((8, 32, 3, 3)).astype(dtype)
    b = rng.standard_normal(8).astype(dtype)
    x = rng.standard_normal((5, 32, 4, 4)).astype(dtype)
    outs = []
    for limit in (0, 10_000):
        piece_limit(limit)
        outs.append(fast_layers.Convolution(W, b, 1, 1).forward(x))
    assert_close(outs[1], outs[0], dtype)


@pytest.mark.parametrize("core,limit", [("SkylakeX", _blas_info.SMALL_KERNEL_LIMIT),
                                        ("SapphireRapids", _blas_info.SMALL_KERNEL_LIMIT),
                                        ("Haswell", 0), ("Zen", 0), ("NEOVERSEN1", 0),
                                        (None, 0)])
def test_only_cores_with_small_matrix_kernels_get_a_piece_limit(core, limit, monkeypatch):
    monkeypatch.setattr(_blas_info, "scipy_openblas_core", lambda: core)
    assert _blas_info.gemm_piece_limit() == limit


@pytest.mark.parametrize("path,bundled", [
    ("/venv/lib/python3.11/site-packages/scipy.libs/libscipy_openblas-6cdc3b4a.so", True),
    ("/venv/lib/python3.11/site-packages/numpy.libs/libscipy_openblas64_-32a4b2a6.so", False),
    ("/venv/lib/python3.11/site-packages/scipy/.dylibs/libopenblas.0.dylib", True),
    ("/usr/lib/x86_64-linux-gnu/libopenblas.so.0", False),
])
def test_scipys_bundled_library_is_told_from_numpys(path, bundled):
    assert _blas_info._scipys_library(path) is bundled


@compiled
@pytest.mark.skipif(platform.machine().lower() not in ("x86_64", "amd64"),
                    reason="OpenBLAS's x86-64 core names")
@pytest.mark.parametrize("core", [
    "Haswell",
    pytest.param("SkylakeX", marks=pytest.mark.skipif(
        "avx512f" not in cpu_flags(), reason="OpenBLAS's SkylakeX kernels need AVX-512F")),
])
def test_the_modules_use_the_limit_of_the_core_scipy_runs_on(core):
    # A fresh process whose OpenBLAS runs `core` (read when the library
    # loads): the core threadpoolctl then reports, and the limit every module
    # that splits products holds.
    returncode, out, err = run_isolated(f"""
        import os
        os.environ["OPENBLAS_CORETYPE"] = {core!r}
        from fastbp import _backend, _blas_info
        print(_blas_info.scipy_openblas_core())
        print(_backend.GEMM_PIECE_LIMIT, *(module.gemm_piece_limit()
                                           for module in _backend.PIECE_LIMITED_MODULES))
    """)
    assert returncode == 0, err
    reported, limits = out.split("\n")[:2]
    # (an OpenBLAS older than the CPU may name another core: 0.3.18 says
    # Barcelona here; the limit follows the core it names)
    small_kernels = reported.lower() in _blas_info.SMALL_KERNEL_CORES
    expected = _blas_info.SMALL_KERNEL_LIMIT if small_kernels else 0
    assert limits.split() == [str(expected)] * 4
    assert small_kernels == (reported.lower() == core.lower() == "skylakex")
