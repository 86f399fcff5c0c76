"""The subinterpreter calls the tests use, on CPython 3.11 and 3.12 (_xxsubinterpreters) and 3.13
(_interpreters).  Every interpreter made by create() shares the main interpreter's GIL: 3.11 has no
other kind, and on 3.12 and 3.13 the tests ask for the "legacy" kind (an isolated interpreter, with
its own GIL, cannot import the single-phase region._region: CPython refuses that import itself)."""
import sys

try:
    import _xxsubinterpreters as _low
except ImportError:
    import _interpreters as _low


class RunFailed(Exception):
    """Code run in a subinterpreter raised: "<class 'module.Name'>: message", as 3.11 words it."""


def create():
    if sys.version_info >= (3, 13):
        return _low.create("legacy")
    if sys.version_info >= (3, 12):
        return _low.create(isolated=False)
    return _low.create()


def create_isolated():
    """An interpreter with its own GIL (3.12+); None on 3.11, which has none."""
    if sys.version_info >= (3, 13):
        return _low.create("isolated")
    if sys.version_info >= (3, 12):
        return _low.create(isolated=True)
    return None


def run_string(interp, code, shared=None):
    if sys.version_info >= (3, 13):   # returns a description of the exception instead of raising
        failure = _low.run_string(interp, code, shared=shared)
        if failure is not None:
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
