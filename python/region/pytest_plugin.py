"""A pytest plugin that runs every test inside a region of its own.

Turn it on with ``pytest --region`` (the package registers the plugin under the ``pytest11`` entry
point, so the option exists wherever ``region`` is installed) or ``pytest -p region.pytest_plugin``.

For each test, a fresh region is made; the test's call phase runs inside ``with r:``, so what the test
body creates lives in the region (fixtures are set up and torn down outside it: a session fixture made
in one test's region would pin that region for the rest of the session).  After the teardown phase,
when pytest and the fixtures have let go of everything, the region is closed.  A test that passed but
leaves its region uncloseable - something outside still holds an object the test made there - fails
at teardown with the region's escape report: each object, its type, and what holds it.

A test that failed is not blamed for its region: its traceback keeps its frames, and their locals, in
pytest's report.  Its region is dropped instead (its objects become ordinary objects).

What the test frameworks themselves keep from a test - pytest's reports of subtests, hypothesis's
resolved strategies and caches (FRAMEWORK_PACKAGES) - counts, like the interpreter's own lazily made
state, as given back by close() rather than as an escape of the test.

``--region-strict`` also checks that nothing the test made still refers to mutable objects outside the
region (``r.check()``, which close() does not require); useful for code meant to hand regions to other
threads.
"""

import pytest

import region as _region_module

# Packages whose objects count as the interpreter's own state while the plugin runs: what they make
# during a test and keep afterwards is the test machinery's, not the code under test's.
FRAMEWORK_PACKAGES = ("_pytest", "pytest", "pluggy", "hypothesis", "_hypothesis_pytestplugin",
                      "_hypothesis_globals")

_ACTIVE = "_region_plugin_active"
_REGION = pytest.StashKey()        # the test's region, from its call phase to its teardown
_CALL_FAILED = pytest.StashKey()


def pytest_addoption(parser):
    group = parser.getgroup("region", "run each test inside a region (region.pytest_plugin)")
    group.addoption("--region", action="store_true", default=False,
                    help="run every test's call phase inside a fresh region and close the region "
                         "after the test: a test that leaves it uncloseable fails with the escape report")
    group.addoption("--region-strict", action="store_true", default=False,
                    help="with --region, also fail tests whose region refers to mutable outside "
                         "objects (r.check())")


def pytest_configure(config):
    explicitly_loaded = "region.pytest_plugin" in (getattr(config.option, "plugins", None) or [])
    active = config.getoption("region") or config.getoption("region_strict") or explicitly_loaded
    setattr(config, _ACTIVE, active)
    if active:   # the test frameworks' own caches (subtests' reports, hypothesis's strategies):
        from . import _audit   # kept across tests, and not the code under test
        _audit.STATE_PACKAGES.update(FRAMEWORK_PACKAGES)
    config.addinivalue_line("markers", "no_region: run this test outside any region (region.pytest_plugin)")


def _active(item):
    return getattr(item.config, _ACTIVE, False) and item.get_closest_marker("no_region") is None


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item):
    if not _active(item):
        return (yield)
    try:
        r = _region_module.region(f"test:{item.name}"[:60])
    except (_region_module.RegionError, MemoryError) as error:   # out of memory, or no arena for the binding
        if not getattr(item.config, "_region_plugin_warned", False):
            item.config._region_plugin_warned = True
            item.warn(pytest.PytestWarning(f"region.pytest_plugin: {error}; this test and the next ones "
                                           f"that cannot get a region run outside regions"))
        return (yield)
    item.stash[_REGION] = r
    r.__enter__()
    try:
        return (yield)
    finally:
        r.__exit__(None, None, None)


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_teardown(item, nextitem):
    # tryfirst: the outermost wrapper, so this runs after every other plugin's teardown (the logging
    # plugin drops the test's log records only then).
    result = yield
    r = item.stash.get(_REGION, None)
    if r is None:
        return result
    del item.stash[_REGION]
    if item.stash.get(_CALL_FAILED, False):
        return result   # the failure's traceback holds the test's frames: not the test's fault
    try:
        if item.config.getoption("region_strict"):
            r.check()
        r.close()
    except _region_module.IsolationError as error:
        raise RegionEscapeError(item.nodeid, error) from None
    return result


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    report = yield
    if call.when == "call" and report.failed and item.stash.get(_REGION, None) is not None:
        item.stash[_CALL_FAILED] = True
    return report


class RegionEscapeError(AssertionError):
    """A test left its region uncloseable; the message is the region's escape report."""

    def __init__(self, nodeid, error):
        super().__init__(f"{nodeid} left its region uncloseable (region.pytest_plugin):\n{error}")
        self.offenders = getattr(error, "offenders", [])
