"""region.pytest_plugin: every test in a region of its own, and a test that leaves it uncloseable fails."""
import textwrap

from conftest import run_python

SUITE = '''
import logging, region, pytest
KEPT = []

class Node:
    pass

def test_runs_inside_a_region():
    assert region.current() is not None and region.current().name == "test:test_runs_inside_a_region"
    made = [{"i": i} for i in range(10)]
    assert region.region_of(made) is region.current()

def test_garbage_and_cycles_are_fine():
    a = Node()
    a.me = a
    logging.getLogger("plugin-test").warning("logged %s", [1])   # logging's registry keeps the logger

def test_keeps_an_object():
    KEPT.append({"made": "in the test"})

def test_fails_on_its_own():
    assert [1] == [2]

@pytest.mark.no_region
def test_outside():
    assert region.current() is None
'''


def run_suite(tmp_path, *args):
    (tmp_path / "test_suite.py").write_text(SUITE)
    return run_python(f"""
        import sys, pytest
        sys.exit(pytest.main(["-q", "-p", "no:cacheprovider", *{list(args)!r}, {str(tmp_path)!r}]))
    """)


def test_the_plugin_runs_each_test_in_a_region_and_fails_the_ones_that_escape(tmp_path):
    result = run_suite(tmp_path, "-p", "region.pytest_plugin")
    out = result.stdout
    assert "1 failed, 4 passed, 1 error" in out, out + result.stderr
    summary = out.split("short test summary")[-1].splitlines()
    assert any(line.startswith("ERROR") and "::test_keeps_an_object" in line for line in summary), out
    assert any(line.startswith("FAILED") and "::test_fails_on_its_own" in line for line in summary), out
    assert "left its region uncloseable" in out and "(dict) is referenced from outside the region" in out
    assert not any("test_garbage_and_cycles_are_fine" in line for line in summary)


def test_the_option_turns_it_on_and_without_it_nothing_changes(tmp_path):
    on = run_suite(tmp_path, "-p", "region.pytest_plugin", "--region", "--region-strict")
    assert "1 failed" in on.stdout and "error" in on.stdout, on.stdout + on.stderr
    off = run_suite(tmp_path)
    assert "2 failed, 3 passed" in off.stdout, off.stdout + off.stderr   # no region: current() is None
    assert "uncloseable" not in off.stdout
