"""What a stateful fastbp object promises about threads and copies.

fastbp's layers, networks, optimizers and ``Trainer`` keep state between
calls (a layer keeps what its ``backward`` needs, a network its compiled
step's buffers, an optimizer its per-parameter state).  Every one of them
derives from :class:`Stateful`, which gives it two rules:

* **One call at a time per object.**  The methods named in the class's
  ``_serialised_methods`` hold the object's re-entrant lock for the whole
  call, so two threads calling the same object take turns: the results are
  those of the same calls made one after the other, never a mix.  Different
  objects share no lock and run in parallel (the compiled kernels release
  the GIL).  A subclass gets the same for its own overrides of those
  methods: ``__init_subclass__`` wraps them when the class is created.
* **Copies leave out what can be rebuilt.**  ``pickle``, ``copy.copy`` and
  ``copy.deepcopy`` skip the lock and the attributes named in
  ``_transient_attributes`` (caches such as a network's compiled step and
  its buffers: they hold no numbers a later call reads, only memory to write
  into); the copy gets a new lock and those attributes as None, and
  rebuilds them on first use.  Nothing else differs: the copy computes
  exactly what the original would.  ``copy.deepcopy`` holds the object's
  lock while it copies, so it never sees a call half done; ``pickle`` reads
  the arrays after taking the state, so pickle an object no other thread
  is changing.

A class lists the public methods that read or write its state in
``_serialised_methods`` and its caches in ``_transient_attributes``
(each with a class-level default of None that the code rebuilds from).
"""
import copy
import functools
import inspect
import threading

__all__ = ["Stateful", "StatefulLayer", "StatefulNetwork", "serialised"]

_LOCK_FOR_NEW_LOCKS = threading.Lock()


def serialised(method):
    """``method`` run while holding ``self``'s lock (see :class:`Stateful`)."""
    if getattr(method, "_fastbp_serialised", False):
        return method
    locked = _wrapper_with_own_parameters(method)
    if locked is None:
        def locked(self, *args, **kwargs):
            with self._lock:
                return method(self, *args, **kwargs)
    functools.update_wrapper(locked, method)
    locked._fastbp_serialised = True
    return locked


def _wrapper_with_own_parameters(method):
    """A locking wrapper with ``method``'s own parameter list, or None when
    that list has anything but plain parameters (``*args``, keyword-only...).

    Every layer call goes through one of these: a wrapper that forwards
    ``*args, **kwargs`` costs about 0.25 µs more per call (building and
    unpacking them), a twentieth of a small layer's whole call.  So the
    wrapper is written for the signature, as ``dataclasses`` writes its
    methods: ``def forward(self, x, train_flg=<default>)`` taking
    ``self._lock`` around ``method(self, x, train_flg)``."""
    try:
        parameters = list(inspect.signature(method).parameters.values())
    except (TypeError, ValueError):
        return None
    if not parameters or any(p.kind is not p.POSITIONAL_OR_KEYWORD or p.name.startswith("_fastbp")
                             for p in parameters):
        return None
    namespace = {"_fastbp_method": method}
    declared = []
    for i, p in enumerate(parameters):
        if p.default is p.empty:
            declared.append(p.name)
        else:
            namespace[f"_fastbp_default{i}"] = p.default
            declared.append(f"{p.name}=_fastbp_default{i}")
    names = [p.name for p in parameters]
    # the wrapper's own name is the method's: Python < 3.10 names a function
    # by its code object in errors ("forward() missing 1 required ...")
    name = method.__name__ if method.__name__.isidentifier() else "locked"
    # acquire/try/finally rather than `with`: 0.1 µs less a call, and no
    # different for an exception arriving between the acquire and the try
    # (`with` has the same window between __enter__ and its own cleanup)
    source = (f"def {name}({', '.join(declared)}):\n"
              f"    _fastbp_lock = {names[0]}._lock\n"
              f"    _fastbp_lock.acquire()\n"
              f"    try:\n"
              f"        return _fastbp_method({', '.join(names)})\n"
              f"    finally:\n"
              f"        _fastbp_lock.release()\n")
    exec(compile(source, f"<fastbp: {method.__qualname__} holding the lock>", "exec"), namespace)
    return namespace[name]


class Stateful:
    """Base of fastbp's stateful objects: a lock per object around the
    methods in ``_serialised_methods``, and copies without the lock or the
    caches in ``_transient_attributes`` (see the module docstring)."""

    # The lock lives in a slot, not in the instance's __dict__: vars(obj)
    # shows the object's state only.  Subclasses keep their __dict__.
    __slots__ = ("_lock",)

    #: public methods that hold the object's lock for the whole call
    _serialised_methods = ()
    #: caches left out of copies (set to None there, rebuilt on first use)
    _transient_attributes = ()

    def __new__(cls, *args, **kwargs):
        obj = super().__new__(cls)
        obj._lock = threading.RLock()
        return obj

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        for name in cls._serialised_methods:
            method = getattr(cls, name, None)
            if callable(method) and not getattr(method, "_fastbp_serialised", False):
                setattr(cls, name, serialised(method))

    def __getattr__(self, name):
        # Only reached when normal lookup fails: an object made without
        # __new__ (object.__new__(cls), old pickle protocols) gets its lock
        # on first use, made once under a module-wide lock.
        if name == "_lock":
            with _LOCK_FOR_NEW_LOCKS:
                try:
                    return object.__getattribute__(self, "_lock")
                except AttributeError:
                    lock = self._lock = threading.RLock()
                    return lock
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    def __getstate__(self):
        with self._lock:
            state = dict(self.__dict__)
        for name in self._transient_attributes:
            if name in state:
                state[name] = None
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)

    def __deepcopy__(self, memo):
        with self._lock:
            cls = type(self)
            duplicate = cls.__new__(cls)
            memo[id(self)] = duplicate
            duplicate.__setstate__(copy.deepcopy(self.__getstate__(), memo))
            return duplicate


class StatefulLayer(Stateful):
    """Base of every layer (``fastbp.reference.layers`` and so
    ``fastbp.layers``): ``forward`` and ``backward`` take turns per layer."""

    _serialised_methods = ("forward", "backward")


class StatefulNetwork(Stateful):
    """Base of every network: its public methods take turns per network
    (they drive the layers, whose state they share, and the compiled step's
    buffers); the compiled step is a cache a copy rebuilds."""

    _serialised_methods = ("predict", "loss", "accuracy", "gradient", "loss_and_gradient",
                           "numerical_gradient", "train_step", "save", "load", "save_params",
                           "load_params")
    _transient_attributes = ("_workspace",)
