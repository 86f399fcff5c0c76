import gc
import os
import subprocess
import sys
import textwrap

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
