# Dropout masks drawn from a NumPy bit generator (fastbp/_bitgen.pyx), for the
# Cython modules that draw them: _dropout.pyx (the Dropout layer) and
# _train_extend.pyx (the fused training step).  The C loops are in
# src/fb_dropout.h.
from libc.stdint cimport uint8_t

from ._loops cimport fb_dropout_stream

cdef int open_stream(fb_dropout_stream *stream, object bit_generator, bint book_stream,
                     double ratio) except -1
cdef int draw_keep(object bit_generator, bint book_stream, double ratio, uint8_t *keep,
                   Py_ssize_t n) except -1
