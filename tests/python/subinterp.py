"""The subinterpreter calls the tests use, on CPython 3.11 (_xxsubinterpreters) and 3.13
(_interpreters).  Every interpreter made here shares the main interpreter's GIL: 3.11 has no other
kind, and on 3.13 the "legacy" config asks for it (an isolated one, with its own GIL, cannot import
the single-phase region._region: CPython refuses that import itself)."""
try:
    import _xxsubinterpreters as _low
    LEGACY_CONFIG = ()
except ImportError:
    import _interpreters as _low
    LEGACY_CONFIG = ("legacy",)


class RunFailed(Exception):
    """Code run in a subinterpreter raised; the message names the exception's type and text."""


def create():
    return _low.create(*LEGACY_CONFIG)


def create_isolated():
    """A 3.13 interpreter with its own GIL (None on 3.11, which has none)."""
    return _low.create("isolated") if LEGACY_CONFIG else None


def run_string(interp, code, shared=None):
    if LEGACY_CONFIG:
        failure = _low.run_string(interp, code, shared=shared)
        if failure is not None:   # worded as 3.11's RunFailedError: "<class 'module.Name'>: message"
            t = failure.type
            name = t.__qualname__ if t.__module__ == "builtins" else f"{t.__module__}.{t.__qualname__}"
            raise RunFailed(f"<class '{name}'>: {failure.msg}")
    else:
        try:
            _low.run_string(interp, code, shared=shared)
        except _low.RunFailedError as e:
            raise RunFailed(str(e)) from None


def destroy(interp):
    _low.destroy(interp)
