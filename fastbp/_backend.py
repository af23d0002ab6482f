"""Which implementation runs, and the table of compiled kernels.

The compiled extension modules are imported once here.  When they are
missing (a source checkout that was never built, a failed build) or when the
environment variable FASTBP_PURE is on (1, true, yes or on; 0, false, no,
off or empty is off; anything else stops the import with a ValueError),
fastbp runs entirely on fastbp.reference, warns once, and
``fastbp.show_config()`` says so.

``KERNELS[dtype].<kernel>`` is how the Python side calls a compiled kernel:
the layers pick the dtype once (``_arrays.kernel_dtype``), and the table
below maps each (kernel, dtype) to that dtype's specialisation of a fused
Cython function, e.g. ``KERNELS[float64].relu_forward`` is
``_elementwise.relu_forward["double"]``.  A specialisation skips the fused
dispatcher, which inspects the arguments' dtypes on every call (0.3-1.2 us,
as much as a small kernel's work), and refuses arrays of the other dtype.
"""
import importlib
import numbers
import os
import types
import warnings

import numpy as np

from ._env import env_flag

REQUESTED_PURE = env_flag("FASTBP_PURE")     # ValueError for a value that is neither

#: The compiled extension modules, fastbp/<name>.pyx each (setup.py builds
#: every .pyx there); a new one is added here and to the unpacking below.
MODULE_NAMES = ("_affine", "_conv", "_elementwise", "_optim", "_train", "_batchnorm",
                "_bitgen", "_dropout", "_train_extend")

affine = conv = elementwise = optim = train = batchnorm = bitgen = dropout = train_extend = None
#: the imported compiled modules, in MODULE_NAMES order (empty without them)
MODULES = ()
COMPILED = False
REASON = ""

if REQUESTED_PURE:
    REASON = "FASTBP_PURE is set"
else:
    try:
        MODULES = tuple(importlib.import_module(f"{__package__}.{name}")
                        for name in MODULE_NAMES)
    except ImportError as exc:  # never built, or built for another Python
        REASON = f"compiled core not importable: {exc}"
    else:
        (affine, conv, elementwise, optim, train, batchnorm, bitgen, dropout,
         train_extend) = MODULES
        COMPILED = True

#: the most multiply-adds of a product the compiled steps hand to BLAS whole
#: (0: no limit; fastbp._blas_info)
GEMM_PIECE_LIMIT = 0
#: the compiled modules that split products (each holds its own limit)
PIECE_LIMITED_MODULES = (train, train_extend, conv) if COMPILED else ()
if COMPILED:
    from ._blas_info import gemm_piece_limit
    GEMM_PIECE_LIMIT = gemm_piece_limit()
    for _module in PIECE_LIMITED_MODULES:
        _module.set_gemm_piece_limit(GEMM_PIECE_LIMIT)


def _kernels(c_type):
    """Every compiled kernel specialised for ``c_type``: 'float' (float32) or
    'double' (float64), the name Cython gives the fused ``floating`` type."""
    return types.SimpleNamespace(
        # _affine.pyx
        affine_forward=affine.affine_forward[c_type],
        affine_backward=affine.affine_backward[c_type],
        # _conv.pyx
        im2col=conv.im2col[c_type],
        col2im=conv.col2im[c_type],
        conv_forward=conv.conv_forward[c_type],
        conv_backward=conv.conv_backward[c_type],
        maxpool_forward=conv.maxpool_forward[c_type],
        maxpool_backward=conv.maxpool_backward[c_type],
        # _elementwise.pyx
        relu_forward=elementwise.relu_forward[c_type],
        relu_backward=elementwise.relu_backward[c_type],
        relu_grad=elementwise.relu_grad[c_type],
        sigmoid_forward=elementwise.sigmoid_forward[c_type],
        sigmoid_backward=elementwise.sigmoid_backward[c_type],
        sigmoid_grad=elementwise.sigmoid_grad[c_type],
        softmax_xent_labels=elementwise.softmax_xent_labels[c_type],
        softmax_xent_onehot=elementwise.softmax_xent_onehot[c_type],
        softmax_xent_backward_labels=elementwise.softmax_xent_backward_labels[c_type],
        softmax_xent_backward_onehot=elementwise.softmax_xent_backward_onehot[c_type],
        # _optim.pyx
        sgd=optim.sgd[c_type],
        momentum=optim.momentum[c_type],
        nesterov=optim.nesterov[c_type],
        adagrad=optim.adagrad[c_type],
        rmsprop=optim.rmsprop[c_type],
        adam=optim.adam[c_type],
        # _batchnorm.pyx
        bn_forward_train=batchnorm.bn_forward_train[c_type],
        bn_forward_test=batchnorm.bn_forward_test[c_type],
        bn_backward=batchnorm.bn_backward[c_type],
        # _dropout.pyx
        dropout_forward=dropout.dropout_forward[c_type],
        dropout_apply=dropout.dropout_apply[c_type],
    )


#: {dtype: namespace of that dtype's compiled kernels}: float32 and float64,
#: the dtypes the compiled core computes in (empty without it)
KERNELS = {}
if COMPILED:
    KERNELS = {np.dtype(np.float32): _kernels("float"),
               np.dtype(np.float64): _kernels("double")}

if not COMPILED:
    warnings.warn(f"fastbp is running on its pure-NumPy reference ({REASON}); "
                  "results are the same, only slower", RuntimeWarning, stacklevel=2)


def max_threads():
    """The most threads fastbp accepts for one pool: 4 x the CPU count (more
    only oversubscribes; far more makes OpenMP fail to allocate them)."""
    return 4 * (os.cpu_count() or 1)


def set_num_threads(n):
    """Use ``n`` OpenMP threads in the elementwise kernels (0: the default,
    one thread -- or, when OMP_NUM_THREADS is set at import, OpenMP's count,
    which threadpoolctl can lower).  One by default because a threaded BLAS
    call next to a parallel region waits for the core libgomp's worker spins
    on after it.  ``n``: an integer
    (Python or NumPy) from 0 to ``max_threads()`` (4 x the CPU count).
    BLAS threads are BLAS's own: set them with threadpoolctl or
    OPENBLAS_NUM_THREADS."""
    limit = max_threads()
    if isinstance(n, (bool, np.bool_)) or not isinstance(n, numbers.Integral) \
            or not 0 <= n <= limit:
        raise ValueError(f"n: expected a thread count from 0 (the default) to {limit} "
                         f"(4 x the {os.cpu_count() or 1} CPUs), got {n!r}")
    if COMPILED:
        elementwise.set_num_threads(int(n))


def get_num_threads():
    """Threads the elementwise kernels use for large arrays (1 without OpenMP)."""
    return elementwise.get_num_threads() if COMPILED else 1
