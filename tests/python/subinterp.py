"""The subinterpreter calls the tests use, on CPython 3.11 and 3.12 (_xxsubinterpreters) and 3.13
(_interpreters).  Every interpreter made by create() shares the main interpreter's GIL (3.11 has no
other kind; on 3.12 and 3.13 it is the "legacy" kind); create_isolated() makes one with its own GIL
(3.12+: test_own_gil.py)."""
import inspect
import os
import sys
import textwrap
import threading

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


# ---- What the subinterpreter tests share (test_subinterpreters.py, test_own_gil.py) ----

def checksum(root):
    return sum(d["k"] + d["v"][0] + d["v"][1] + len(d["s"]) for d in root["items"]) + root["counter"]


CHECKSUM = "\n" + inspect.getsource(checksum)   # the same function, for code run in a subinterpreter


def build(r, n=100):
    with r:
        r.root = {"items": [{"k": i, "v": [i, i + 1], "s": f"s{i}"} for i in range(n)], "counter": 0}


# Every access a non-owner makes, as code run in the subinterpreter on its Region `mine`.
ACCESS = {
    "with": "mine.__enter__()",
    "root": "mine.root",
    "root =": "mine.root = None",
    "collect": "mine.collect()",
    "close": "mine.close()",
    "check": "mine.check()",
    "stats": "mine.stats()",
    "release": "mine.release()",
    "handle": "mine.handle(None)",
}

def access_refused(r, sub, what):
    """Runs ACCESS[what] in sub on r, which the main interpreter owns: it must raise OwnershipError
    naming the owner, and leave r as it was."""
    build(r)
    sub.run(f"""
mine = region.adopt(rid)
try:
    {ACCESS[what]}
except region.OwnershipError as e:
    result = "OwnershipError: " + str(e)
else:
    result = "no error"
""" + sub.send("result"), rid=r.id)
    result = eval(sub.result())
    assert result.startswith("OwnershipError"), result
    assert "owned by a thread of interpreter 0, not by the calling interpreter" in result
    assert r.root["counter"] == 0 and r.owned


def main_refused_while_sub_owns(r, sub):
    """Has sub acquire r (built and released by the main interpreter), then checks that every access
    of the main interpreter raises OwnershipError naming the owning interpreter.  sub keeps r."""
    import pytest
    import region
    build(r)
    r.release()
    sub.run("mine = region.adopt(rid)\nassert mine.acquire(timeout=5)\n", rid=r.id)
    for access in (lambda: r.root, lambda: r.__enter__(), lambda: r.collect(), lambda: r.close(),
                   lambda: r.release(), lambda: r.check()):
        with pytest.raises(region.OwnershipError, match=r"owned by a thread of interpreter \d+, not by "
                                                        r"the calling interpreter 0"):
            access()


PLAYER = CHECKSUM + """
mine = region.adopt(rid)
errors = []
for step in range(1, rounds, 2):
    os.read(sub_in, 1)
    if not mine.acquire(timeout=10):
        errors.append(f"step {step}: acquire timed out")
        break
    root = mine.root
    if root["counter"] != step or checksum(root) != expected + step:
        errors.append(f"step {step}: counter {root['counter']}, checksum {checksum(root)}")
    with mine:
        root["counter"] = step + 1
    del root
    mine.release()
    os.write(to_main, b"x")
"""


def ping_pong(r, sub, rounds):
    """The main interpreter and `sub` (run by a second thread) take turns: each waits for its turn on
    a pipe, acquires, checks the whole graph, changes it inside a block (what it makes there is
    region memory, which any GIL may take), releases and signals."""
    build(r, 50)
    expected = checksum(r.root)
    sub_in, to_sub = os.pipe()
    main_in, to_main = os.pipe()
    errors = []

    def run_sub():
        try:
            sub.run(PLAYER + sub.send("errors"), rid=r.id, rounds=rounds, expected=expected, sub_in=sub_in,
                    to_main=to_main)
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(repr(e))
            os.write(to_main, b"!")

    thread = threading.Thread(target=run_sub)
    thread.start()
    try:
        for step in range(0, rounds, 2):
            assert r.acquire(timeout=10) if step else True
            root = r.root
            assert root["counter"] == step and checksum(root) == expected + step, f"step {step}"
            with r:
                root["counter"] = step + 1
            del root
            r.release()
            os.write(to_sub, b"x")
            if os.read(main_in, 1) == b"!":
                break
    finally:
        thread.join()
        for fd in (to_sub, sub_in, main_in, to_main):
            os.close(fd)
    assert errors == []
    assert eval(sub.result()) == []
    assert r.acquire(timeout=5)
    assert r.root["counter"] == rounds and checksum(r.root) == expected + rounds
