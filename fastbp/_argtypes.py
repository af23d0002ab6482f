"""argparse value types shared by the ``fastbp`` command and ``fastbp bench``."""
import argparse
import math


def int_at_least(minimum, what):
    """An argparse type: an integer >= ``minimum``, described as ``what``."""
    def parse(text):
        try:
            value = int(text)
        except ValueError:
            value = None
        if value is None or value < minimum:
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}")
        return value
    parse.__name__ = what.replace(" ", "_")
    return parse


positive_int = int_at_least(1, "a positive integer")
non_negative_int = int_at_least(0, "a non-negative integer")


def positive_float(text):
    """An argparse type: a finite number > 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}") from None
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"expected a finite positive number, got {text!r}")
    return value



def count_up_to_max_threads(minimum, what):
    """An argparse type: ``what`` (a count of threads or workers) from
    ``minimum`` to ``_backend.max_threads()`` (4 x the CPU count)."""
    def parse(text):
        from ._backend import max_threads
        limit = max_threads()
        try:
            value = int(text)
        except ValueError:
            value = None
        if value is None or not minimum <= value <= limit:
            raise argparse.ArgumentTypeError(
                f"expected {what} from {minimum} to {limit} (4 x the {limit // 4} CPUs), "
                f"got {text!r}")
        return value
    parse.__name__ = what.replace(" ", "_")
    return parse


thread_count = count_up_to_max_threads(0, "a thread count")
positive_thread_count = count_up_to_max_threads(1, "a thread count")
worker_count = count_up_to_max_threads(1, "a number of workers")


def non_negative_float(text):
    """An argparse type: a finite number >= 0."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value >= 0):
        raise argparse.ArgumentTypeError(f"expected a finite non-negative number, got {text!r}")
    return value


def fraction_below_one(text):
    """An argparse type: a number in [0, 1) (a dropout ratio)."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not 0 <= value < 1:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1), got {text!r}")
    return value
