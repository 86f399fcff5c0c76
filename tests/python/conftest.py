import gc
import os
import subprocess
import sys
import textwrap
import threading

import pytest

import region


@pytest.fixture
def r():
    """A fresh region, dropped after the test (its objects become ordinary objects)."""
    reg = region.region("test")
    yield reg
    del reg
    gc.collect()


def run_python(code, *args, env=None):
    """Runs code in a fresh interpreter (the one running the tests) with the package importable."""
    full_env = dict(os.environ)
    full_env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)
    full_env.update(env or {})
    return subprocess.run([sys.executable, *args, "-c", textwrap.dedent(code)], capture_output=True,
                          text=True, env=full_env, timeout=120)


def in_thread(fn):
    """Runs fn in a new thread; returns what it returned or raises what it raised."""
    out = {}

    def run():
        try:
            out["value"] = fn()
        except BaseException as e:  # noqa: BLE001 - handed to the caller
            out["error"] = e

    t = threading.Thread(target=run)
    t.start()
    t.join()
    if "error" in out:
        raise out["error"]
    return out.get("value")


needs_debug_build = pytest.mark.skipif(not hasattr(sys, "gettotalrefcount"),
                                       reason="needs a debug interpreter (python3-dbg): sys.gettotalrefcount")


def refcount_growth(work, warmup=5, rounds=20):
    """How much sys.gettotalrefcount() grows over `rounds` runs of work (after `warmup` runs that
    fill caches), in a debug build: a leaked reference per run shows as growth >= rounds."""
    for _ in range(warmup):
        work()
    gc.collect()
    before = sys.gettotalrefcount()
    for _ in range(rounds):
        work()
    gc.collect()
    return sys.gettotalrefcount() - before
