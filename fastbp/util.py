"""The book's ``common/util.py``: im2col/col2im and the data helpers.

A drop-in for ``from common.util import *``, with the same names, signatures
and layouts.  For now these are the plain-NumPy versions of
``fastbp.reference.util`` (see there for shapes and dtypes).
"""
from .reference.util import col2im, conv_output_size, im2col, shuffle_dataset, smooth_curve

__all__ = ["im2col", "col2im", "conv_output_size", "smooth_curve", "shuffle_dataset"]
