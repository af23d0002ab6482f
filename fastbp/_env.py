"""fastbp's environment variables that switch something on or off."""
import os

__all__ = ["env_flag"]

_TRUE = ("1", "true", "yes", "on")
_FALSE = ("", "0", "false", "no", "off")


def env_flag(name, environ=None):
    """Whether the environment variable ``name`` is on: unset, empty, 0,
    false, no or off (any case, surrounding blanks ignored) is off; 1, true,
    yes or on is on.  Anything else is a ValueError naming the variable and
    the accepted spellings (a typo must not silently pick a mode)."""
    raw = (os.environ if environ is None else environ).get(name, "")
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ValueError(f"{name}={raw!r}: expected 1, true, yes or on (on), or 0, false, no, "
                     "off or empty (off), in any case")
