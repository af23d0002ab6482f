"""One helper for the error-message tests of the convolution modules."""
import pytest


def assert_raises_naming(exc, needles, call, *args, **kwargs):
    """``call(*args, **kwargs)`` raises ``exc`` whose message contains every
    string of ``needles``."""
    with pytest.raises(exc) as info:
        call(*args, **kwargs)
    message = str(info.value)
    for needle in needles:
        assert needle in message, (needle, message)
    return info.value
