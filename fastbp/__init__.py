"""fastbp: the backpropagation layers of *Deep Learning from Scratch*, compiled.

``from fastbp.layers import *`` replaces the book's ``common.layers``: same
classes, signatures and attributes, same numbers, with the hot loops in
Cython.  ``fastbp.reference`` is the plain NumPy version every compiled
kernel is tested against.
"""
__version__ = "0.1.0"   # written only here: pyproject.toml reads it

from ._backend import COMPILED, get_num_threads, set_num_threads
from ._config import show_config

__all__ = ["COMPILED", "show_config", "set_num_threads", "get_num_threads",
           "TwoLayerNet", "MultiLayerNet", "MultiLayerNetExtend", "SimpleConvNet",
           "DeepConvNet", "Trainer", "__version__"]

_LAZY = {"TwoLayerNet": "networks", "MultiLayerNet": "networks",
         "MultiLayerNetExtend": "networks", "SimpleConvNet": "networks",
         "DeepConvNet": "networks", "Trainer": "trainer"}


def __getattr__(name):
    # Networks and the trainer import lazily: `import fastbp` stays cheap.
    if name in _LAZY:
        import importlib
        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module 'fastbp' has no attribute {name!r}")
