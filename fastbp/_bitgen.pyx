"""Dropout masks drawn from a NumPy bit generator: the stream descriptions
the C loops of src/fb_dropout.h draw from.

A bit generator is a ``numpy.random.BitGenerator``: the global RandomState's
(``np.random.get_bit_generator()``, the stream of ``np.random.rand``) or a
Generator's (``rng.bit_generator``).  Its C interface (``bitgen_t``) comes
from its ``capsule``; draws happen holding its ``lock``, as NumPy's own
methods do.

NumPy's MT19937 (the global RandomState's generator: the book's stream) is
also drawn from without a call per draw: its state is NumPy's
``mt19937_state`` struct, ``{uint32_t key[624]; int pos;}``, and the loops
run the Mersenne Twister on it directly.  That layout is NumPy's, not a
documented API, so it is checked once against what ``bit_generator.state``
reports (the key and the position) before it is used; if it ever differs,
every MT19937 goes through its ``next_double`` like any other generator.
"""
from cpython.pycapsule cimport PyCapsule_GetPointer, PyCapsule_IsValid
from libc.math cimport floor
from libc.stdint cimport uint8_t, uint32_t
from numpy.random cimport bitgen_t

from . cimport _loops

from numpy.random import MT19937

cdef enum:
    MT_WORDS = 624          # NumPy's RK_STATE_LEN

# -1: not checked yet; 1: NumPy's MT19937 state is {uint32 key[624]; int pos}; 0: not
cdef int _mt19937_layout = -1


cdef bint _mt19937_layout_matches(object bit_generator, void *state) except -1:
    """True when the state behind the capsule reads as NumPy's MT19937 state
    reports it: its 624 key words, then the position.  Called holding the lock."""
    cdef const uint32_t *key = <const uint32_t *>state
    cdef const int *pos = <const int *>(key + MT_WORDS)
    cdef Py_ssize_t i
    reported = bit_generator.state
    if reported.get("bit_generator") != "MT19937":
        return False
    words, position = reported["state"]["key"], reported["state"]["pos"]
    if len(words) != MT_WORDS or position != pos[0]:
        return False
    for i in range(MT_WORDS):
        if key[i] != words[i]:
            return False
    return True


cdef int _use_inline_mt19937(fb_dropout_stream *stream, object bit_generator) except -1:
    """Point stream.mt_key / mt_pos at an MT19937's state when its layout is
    NumPy's and its position valid (else leave them NULL).  Holds the lock."""
    global _mt19937_layout
    cdef uint32_t *key = <uint32_t *>stream.state
    cdef int *pos = <int *>(key + MT_WORDS)
    with bit_generator.lock:
        if _mt19937_layout < 0:
            _mt19937_layout = _mt19937_layout_matches(bit_generator, stream.state)
        if _mt19937_layout == 1 and 0 <= pos[0] <= MT_WORDS:
            stream.mt_key = key
            stream.mt_pos = pos
    return 0


cdef int open_stream(fb_dropout_stream *stream, object bit_generator, bint book_stream,
                     double ratio) except -1:
    """Fill ``stream`` for masks from ``bit_generator`` (a numpy.random.BitGenerator,
    else TypeError): next_double() > ratio (book_stream: np.random.rand's
    stream) or (next_uint32() >> 8) > floor(ratio * 2**24)
    (Generator.random(float32) > ratio).  ratio in [0, 1), else ValueError.
    Draw from it holding ``bit_generator.lock``."""
    cdef bitgen_t *bitgen
    capsule = getattr(bit_generator, "capsule", None)
    if capsule is None or not PyCapsule_IsValid(capsule, "BitGenerator"):
        raise TypeError(f"bit_generator: expected a numpy.random.BitGenerator, got "
                        f"{type(bit_generator).__name__}")
    if not (0.0 <= ratio < 1.0):          # NaN fails too
        raise ValueError(f"ratio: expected a number in [0, 1), got {ratio!r}")
    bitgen = <bitgen_t *>PyCapsule_GetPointer(capsule, "BitGenerator")
    stream.next_double = <_loops.fb_next_double_fn>bitgen.next_double
    stream.next_uint32 = <_loops.fb_next_uint32_fn>bitgen.next_uint32
    stream.state = bitgen.state
    stream.ratio = ratio
    # a float32 uniform (u >> 8) * 2**-24 is > ratio exactly when u >> 8 > this
    stream.threshold = <uint32_t>floor(ratio * 16777216.0)
    stream.book = book_stream
    stream.mt_key = NULL
    stream.mt_pos = NULL
    if book_stream and type(bit_generator) is MT19937 and _mt19937_layout != 0:
        _use_inline_mt19937(stream, bit_generator)
    return 0


cdef int draw_keep(object bit_generator, bint book_stream, double ratio, uint8_t *keep,
                   Py_ssize_t n) except -1:
    """keep[:n] = the dropout keep-mask (0/1 bytes) drawn from bit_generator
    as open_stream describes, holding its lock."""
    cdef fb_dropout_stream stream
    open_stream(&stream, bit_generator, book_stream, ratio)
    with bit_generator.lock:
        with nogil:
            _loops.fb_dropout_keep(&stream, keep, n)
    return 0


def inline_mt19937(bit_generator):
    """True when book-stream masks from ``bit_generator`` run the Mersenne
    Twister inline (an MT19937 with NumPy's state layout), False when they
    call its next_double per draw (for tests and ``fastbp info``)."""
    cdef _loops.fb_dropout_stream stream
    open_stream(&stream, bit_generator, True, 0.5)
    return stream.mt_key != NULL
