"""The book's parameter files: a pickled dict of NumPy arrays, read safely.

``pickle.load`` runs whatever callable a file names, so a weights file from
the internet could run code.  ``load_array_dict`` unpickles through an
``Unpickler`` whose ``find_class`` admits exactly the globals a pickled dict
of NumPy arrays needs, under the names NumPy 1.x and 2.x write:

=======================================  ==========================================
global in the file                       what it gets
=======================================  ==========================================
``numpy.core.multiarray._reconstruct``   NumPy's ``_reconstruct``, for an empty
``numpy._core.multiarray._reconstruct``  ``ndarray`` only (``__setstate__`` then
                                         fills it from the file's bytes)
``numpy.ndarray``                        a token that only ``_reconstruct`` takes
``numpy.dtype``                          ``numpy.dtype``
``numpy.core.numeric._frombuffer``       NumPy's ``_frombuffer`` (protocol 5)
``numpy._core.numeric._frombuffer``
``_codecs.encode``                       ``str.encode('latin1')`` only (the raw
                                         bytes of protocols 0-2)
``__builtin__.bytes``, ``builtins.bytes``  ``bytes()`` with no argument (an empty
                                         array's data in protocols 0-2)
=======================================  ==========================================

Anything else (``os.system``, ``builtins.eval``, an ndarray subclass, a
NumPy scalar, ...) raises ``pickle.UnpicklingError`` naming the global,
before anything is called.  The result must be a dict of str keys and plain
ndarrays of a real numeric dtype.
"""
import os
import pickle

import numpy as np

from ._files import atomic_write

# NumPy's own reconstructors, taken from what the running NumPy pickles, so
# nothing is imported under the module names a file spells (numpy.core is
# deprecated in NumPy 2, numpy._core does not exist in NumPy < 1.26).
_RECONSTRUCT = np.empty(0).__reduce__()[0]
_FROMBUFFER = np.empty(1).__reduce_ex__(5)[0]


class _Refused(pickle.UnpicklingError):
    """The file names something a parameter file may not hold."""


class _NdarrayToken:
    """Stands for ``numpy.ndarray`` in a file: an argument of ``_reconstruct``
    only, so the file can't call ``ndarray(...)`` itself."""


def _reconstruct_empty(subtype, shape, typecode):
    if subtype is not _NdarrayToken or tuple(shape) != (0,):
        raise _Refused("expected NumPy's _reconstruct(ndarray, (0,), ...) of a "
                                     f"plain array, got arguments {shape!r}")
    return _RECONSTRUCT(np.ndarray, (0,), typecode)


def _latin1_bytes(text, encoding):
    if not isinstance(text, str) or encoding != "latin1":
        raise _Refused("expected _codecs.encode(str, 'latin1') (the bytes of "
                                     f"protocols 0-2), got encoding {encoding!r}")
    return text.encode("latin1")


def _empty_bytes():
    return b""


_ALLOWED = {
    ("numpy.core.multiarray", "_reconstruct"): _reconstruct_empty,
    ("numpy._core.multiarray", "_reconstruct"): _reconstruct_empty,
    ("numpy", "ndarray"): _NdarrayToken,
    ("numpy", "dtype"): np.dtype,
    ("numpy.core.numeric", "_frombuffer"): _FROMBUFFER,
    ("numpy._core.numeric", "_frombuffer"): _FROMBUFFER,
    ("_codecs", "encode"): _latin1_bytes,
    ("builtins", "bytes"): _empty_bytes,
    ("__builtin__", "bytes"): _empty_bytes,
}

#: the (module, name) pairs a parameter file may name
ALLOWED_GLOBALS = tuple(_ALLOWED)


class _ArrayDictUnpickler(pickle.Unpickler):
    def find_class(self, module, name):
        try:
            return _ALLOWED[(module, name)]
        except KeyError:
            raise _Refused(
                f"refused to load {module}.{name}: a parameter file may only hold a dict "
                "of NumPy arrays (loading it would call or build that object)") from None

    def persistent_load(self, pid):
        raise _Refused("refused a persistent id: a parameter file may only "
                                     "hold a dict of NumPy arrays")


def load_array_dict(file_name, max_bytes=None):
    """Read a pickled ``{str: ndarray}`` dict (the book's ``save_params`` format).

    Returns the dict; its values are plain ndarrays of an integer or
    floating dtype.  ``pickle.UnpicklingError`` names the file
    and what it held instead; nothing in the file is ever executed.
    ``max_bytes``: a file larger than that is refused (ValueError) before
    anything is read (a pickle can't be read lazily: its size is the bound).
    """
    path = os.fspath(file_name)
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        if max_bytes is not None and size > max_bytes:
            raise ValueError(f"{path}: {size} bytes, more than the {max_bytes} the "
                             "parameters it should hold can take")
        try:
            data = _ArrayDictUnpickler(f).load()
        except _Refused as exc:
            raise pickle.UnpicklingError(f"{path}: {exc}") from None
        except Exception as exc:       # truncated or garbled data: a parsing error
            raise pickle.UnpicklingError(f"{path}: not a pickled dict of NumPy arrays "
                                         f"({type(exc).__name__}: {exc})") from None
    if type(data) is not dict:
        raise pickle.UnpicklingError(f"{path}: expected a pickled dict of NumPy arrays, "
                                     f"got {type(data).__name__}")
    for key, value in data.items():
        if type(key) is not str:
            raise pickle.UnpicklingError(f"{path}: expected str keys, got {key!r}")
        if type(value) is not np.ndarray or value.dtype.kind not in "iuf":
            what = (f"an array of dtype {value.dtype}" if isinstance(value, np.ndarray)
                    else type(value).__name__)
            raise pickle.UnpicklingError(f"{path}: {key}: expected a NumPy array of "
                                         f"integers or floats, got {what}")
    return data


def save_array_dict(arrays, file_name):
    """Pickle ``{str: ndarray}`` (copies of ``arrays``' values as plain
    ndarrays) to ``file_name`` with protocol 4: the book's ``load_params``
    and ``load_array_dict`` read it.  Written to a temporary file beside
    ``file_name`` and renamed over it once complete (``_files.atomic_write``)."""
    data = {key: np.array(value, copy=True) for key, value in arrays.items()}
    atomic_write(file_name, lambda f: pickle.dump(data, f, protocol=4))
