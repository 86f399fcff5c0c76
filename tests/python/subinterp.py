"""The subinterpreter calls the tests use, on CPython 3.11 and 3.12 (_xxsubinterpreters) and 3.13
(_interpreters).  Every interpreter made by create() shares the main interpreter's GIL (3.11 has no
other kind; on 3.12 and 3.13 it is the "legacy" kind); create_isolated() makes one with its own GIL
(3.12+: test_own_gil.py)."""
import os
import sys
import textwrap

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


class Sub:
    """A subinterpreter (with its own GIL if isolated); run() executes code in it (in the calling
    thread) with `out` (the write end of a pipe to send results back on) and the keyword arguments as
    globals."""

    def __init__(self, isolated=False):
        self.id = create_isolated() if isolated else create()
        self.results, self.out = os.pipe()
        self.pending = b""
        self.run("import os, region")

    def run(self, code, **shared):
        run_string(self.id, textwrap.dedent(code), shared={"out": self.out, **shared})

    def send(self, expression):
        """Code that sends repr(expression) back (one NUL-terminated line; results are small, far
        below what a pipe buffers)."""
        return f"os.write(out, repr({expression}).encode() + b'\\0')\n"

    def result(self):
        while b"\0" not in self.pending:
            self.pending += os.read(self.results, 65536)
        data, _, self.pending = self.pending.partition(b"\0")
        return data.decode()

    def destroy(self):
        if self.id is not None:
            destroy(self.id)
            self.id = None
            os.close(self.results)
            os.close(self.out)
