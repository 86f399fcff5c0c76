"""The C API for extension modules (pyregion.h, the capsule region._C_API), through _capi_probe: an
extension built as a third party builds one.  Every call, and every misuse a C caller can make -
wrong type, NULL, a closed region, a region another thread owns, a foreign pointer - gets the Python
API's exception (or libregion's status for PyRegion_Lib's calls), never a crash."""
import math
import os
import sys
import threading

import pytest

import region
from conftest import in_thread, needs_debug_build, refcount_growth
from region import HandleError, IsolationError, OwnershipError, RegionError

import _capi_probe as probe   # built next to the package (meson -Dpython_tests=true, the default)


def buffer_bytes(r):
    s = r.stats()
    return s["bytes"] - s["object_bytes"]


# ---- Import and versions ----

def test_the_headers_are_where_get_include_says():
    include = region.get_include()
    assert os.path.isfile(os.path.join(include, "pyregion.h"))
    assert os.path.isfile(os.path.join(include, "region.h"))   # pyregion.h includes it


def test_the_capsule_loads_and_carries_its_version():
    probe.import_api()
    assert probe.api_version() >= 1
    assert probe.lib_version() == region.__version__


def test_a_package_older_than_the_header_is_refused_at_import(monkeypatch):
    real = region._C_API
    monkeypatch.setattr(region, "_C_API", probe.older_capsule(probe.api_version() - 1))
    with pytest.raises(ImportError, match=rf"pyregion.h is API version {probe.api_version()}, but the installed "
                                          rf"region package implements version {probe.api_version() - 1}"):
        probe.import_api()
    monkeypatch.setattr(region, "_C_API", probe.older_capsule(probe.api_version() + 1))   # newer: fine
    probe.import_api()
    monkeypatch.setattr(region, "_C_API", real)
    probe.import_api()


# ---- Which region ----

def test_of_and_current(r):
    assert probe.current() is None
    with r:
        obj = {"a": [1, 2]}
        assert probe.current() is r
    assert probe.of(obj) is r
    assert probe.of({}) is None
    with pytest.raises(TypeError, match="PyRegion_Of: obj is NULL"):
        probe.of(None)


# ---- Raw memory ----

def test_malloc_puts_the_buffer_in_the_region_and_free_gives_it_back(r):
    before = buffer_bytes(r)
    p = probe.malloc(r, 1 << 20)           # outside any block: the region is named, not current
    assert buffer_bytes(r) >= before + (1 << 20)
    probe.free(r, p)
    assert buffer_bytes(r) < before + (1 << 20)
    q = probe.malloc(r, 4096)
    probe.free(None, q)                     # "whichever region holds it": a deallocator's call
    probe.free(r, None)                     # NULL: nothing
    probe.free(None, None)


def test_a_buffer_goes_with_the_region_when_it_is_closed(r):
    p = probe.malloc(r, 8 << 20)
    assert buffer_bytes(r) >= 8 << 20
    r.close()                               # nobody freed p: the region's heap goes, and p with it
    with pytest.raises(RegionError, match="it is in no region's memory"):
        probe.free(None, p)


def test_a_buffer_of_a_dissolved_region_can_still_be_freed():
    r = region.region("dissolving")
    with r:
        keep = [1, 2, 3]
    p = probe.malloc(r, 4096)
    del r                                   # the last Region goes: keep is an ordinary object now,
    probe.free(None, p)                     # and the region's memory stays while it lives
    assert keep == [1, 2, 3]


def test_a_dissolved_region_holding_only_buffers_is_freed_with_them():
    r = region.region("only buffers")
    p = probe.malloc(r, 4096)
    del r                                   # no object is left to use p: it goes with the region
    with pytest.raises(RegionError, match="it is in no region's memory"):
        probe.free(None, p)


# PyRegion_Free(NULL, p) is no misuse: it frees p in whichever region holds it (tested above).
@pytest.mark.parametrize("call, bad", [(call, bad) for call in ["malloc", "free", "new_handle", "as_region",
                                                                  "acquire", "release"]
                                       for bad in [None, 42, "r"] if (call, bad) != ("free", None)])
def test_a_region_argument_that_is_not_a_region_is_a_type_error(call, bad):
    args = {"malloc": (bad, 8), "free": (bad, 1 << 40), "new_handle": (bad, []), "as_region": (bad,),
            "acquire": (bad, 0.0), "release": (bad,)}[call]
    kind = "NULL" if bad is None else type(bad).__name__
    with pytest.raises(TypeError, match=rf"PyRegion_\w+: (expected a region.Region, not {kind}|region is NULL)"):
        getattr(probe, call)(*args)


def test_calls_on_a_closed_region_are_region_errors():
    r = region.region("shut")
    with r:
        obj = [1]
    h = r.handle(obj)
    del obj
    r.close()
    for call, args in [("malloc", (r, 8)), ("new_handle", (r, [])), ("as_region", (r,)),
                       ("acquire", (r, 0.0)), ("release", (r,))]:
        with pytest.raises(RegionError, match=r"region 'shut' \(id \d+\) is closed"):
            getattr(probe, call)(*args)
    with pytest.raises(HandleError, match="the region is gone"):
        probe.resolve(h)


def test_calls_from_a_thread_that_does_not_own_the_region_are_ownership_errors(r):
    with r:
        obj = [1]
    p = probe.malloc(r, 64)
    h = r.handle(obj)
    for call, args in [("malloc", (r, 8)), ("free", (r, p)), ("free", (None, p)), ("new_handle", (r, obj)),
                       ("as_region", (r,)), ("release", (r,)), ("resolve", (h,))]:
        with pytest.raises(OwnershipError, match="owned by another thread"):
            in_thread(lambda: getattr(probe, call)(*args))
    del obj
    r.release()
    with pytest.raises(OwnershipError, match="owned by no thread"):
        probe.malloc(r, 8)
    assert r.acquire()
    probe.free(r, p)                        # the failed frees changed nothing


def test_free_refuses_what_is_not_a_buffer_of_the_region(r):
    other = region.region("other")
    with r:
        obj = [1, 2, 3]
    p = probe.malloc(other, 64)
    with pytest.raises(RegionError, match=r"PyRegion_Free\(region 'test' .*: it is not in the region's memory"):
        probe.free(r, p)
    with pytest.raises(RegionError, match="it is in the region's memory but not a buffer from PyRegion_Malloc"):
        probe.free(r, id(obj))
    with pytest.raises(RegionError, match=r"PyRegion_Free\(NULL, .*\): it is in a region's memory but not a buffer"):
        probe.free(None, id(obj))
    with pytest.raises(RegionError, match="it is in no region's memory"):
        probe.free(None, id(object()))
    probe.free(other, p)
    other.close()


def test_malloc_of_more_than_a_block_can_hold_is_a_memory_error(r):
    with pytest.raises(MemoryError, match=r"PyRegion_Malloc\(\d+ bytes\) in region 'test' .*one block is at most"):
        probe.malloc(r, 1 << 40)


# ---- Handles ----

def test_handles_are_the_python_handles(r):
    with r:
        obj = {"k": 1}
    outside = {"k": 2}
    h = probe.new_handle(r, obj)
    assert isinstance(h, region.Handle) and h() is obj and probe.resolve(h) is obj
    assert probe.resolve(r.handle(obj)) is obj
    del obj
    with pytest.raises(HandleError, match="the object was freed"):
        probe.resolve(h)
    with pytest.raises(RegionError, match="it is not an object of any region"):
        probe.new_handle(r, outside)
    with pytest.raises(TypeError, match="PyRegion_NewHandle: obj is NULL"):
        probe.new_handle(r, None)
    with pytest.raises(TypeError, match="PyRegion_Resolve: expected a region.Handle, not dict"):
        probe.resolve({})
    with pytest.raises(TypeError, match="PyRegion_Resolve: expected a region.Handle, not NULL"):
        probe.resolve(None)


# ---- Ownership ----

def test_acquire_and_release(r):
    probe.release(r)
    assert not r.owned
    assert probe.acquire(r, 0.0) == 1 and r.owned
    with pytest.raises(RegionError, match="already owns"):
        probe.acquire(r, 0.0)
    probe.release(r)
    assert in_thread(lambda: (r.acquire(), r.release())) == (True, None)
    assert probe.acquire(r, -1.0) == 1       # negative: forever (it is free)
    assert in_thread(lambda: probe.acquire(r, 0.05)) == 0   # timed out: the main thread owns it
    with pytest.raises(ValueError, match="timeout is NaN"):
        probe.acquire(r, math.nan)


def test_acquire_waits_with_the_gil_released(r):
    r.release()
    holder_has_it, main_ran = threading.Event(), threading.Event()

    def holder():
        probe.acquire(r, -1.0)
        holder_has_it.set()
        main_ran.wait(10)
        probe.release(r)

    t = threading.Thread(target=holder)
    t.start()
    assert holder_has_it.wait(10)
    got = {}
    waiter = threading.Thread(target=lambda: got.setdefault("v", probe.acquire(r, 10.0)))
    waiter.start()
    ran = sum(range(100000))                 # runs while the waiter waits: the GIL is free
    main_ran.set()
    waiter.join()
    t.join()
    assert ran == 4999950000 and got["v"] == 1
    assert not r.owned                        # the waiter thread owns it now; it ended with it


def test_release_refuses_a_region_that_is_not_isolated(r):
    outside = []
    with r:
        inner = [outside]
        r.root = inner
    with pytest.raises(IsolationError):
        probe.release(r)
    assert r.owned


# ---- PyRegion_AsRegion and PyRegion_Lib ----

def test_lib_calls_on_the_package_region(r):
    raddr = probe.as_region(r)
    assert probe.lib_describe(raddr) == (("test", r.id), "REGION_OK: success")
    before = buffer_bytes(r)
    p, status = probe.lib_alloc(raddr, 100000, False)
    assert status == "REGION_OK: success" and buffer_bytes(r) >= before + 100000
    size, _ = probe.lib_usable_size(raddr, p)
    assert size >= 100000
    q, _ = probe.lib_realloc(raddr, p, 300000)
    assert q is not None and probe.lib_usable_size(raddr, q)[0] >= 300000
    assert probe.lib_free(raddr, q)[0] == "REGION_OK: success"
    z, _ = probe.lib_alloc(raddr, 5000, True)   # calloc: checked zeroed in the probe
    assert probe.lib_free(raddr, z)[0] == "REGION_OK: success"


def test_lib_misuse_gets_statuses(r):
    raddr = probe.as_region(r)
    with r:
        obj = [1]
    status, message = probe.lib_free(raddr, id(obj))
    assert status.startswith("REGION_ENOTREGION") and "is not a block of this region's buffers" in message
    status, message = probe.lib_free(raddr, 0)
    assert status == "REGION_OK: success"  # NULL: nothing, as free(NULL)
    status, message = probe.lib_free(12345, 0)
    assert status.startswith("REGION_EINVAL") and "is not a region (use PyRegion_AsRegion)" in message
    assert probe.lib_alloc(raddr, 1 << 40, False) == (None, "REGION_EINVAL: invalid argument")
    value, status = in_thread(lambda: probe.lib_alloc(raddr, 8, False))
    assert value is None and status.startswith("REGION_ENOTOWNER")
    assert "does not own the region (r.owned is False)" in in_thread(
        lambda: (probe.lib_alloc(raddr, 8, False), probe.lib_last_error())[1])
    del obj
    r.close()
    assert probe.lib_alloc(raddr, 8, False) == (None, "REGION_EDEAD: the region was destroyed")
    assert probe.lib_describe(raddr) == ((None, 0), "REGION_EDEAD: the region was destroyed")


# ---- Interpreters with their own GIL; references ----

@pytest.mark.skipif(sys.version_info < (3, 12), reason="interpreters with their own GIL exist from CPython 3.12")
def test_the_c_api_in_an_interpreter_with_its_own_gil(r):
    """The calls check the calling GIL's types: that interpreter's Region and Handle, and its owner."""
    import subinterp

    sub = subinterp.Sub(isolated=True)
    try:
        r.release()
        sub.run("""
import _capi_probe as probe
mine = region.adopt(rid)
assert probe.acquire(mine, 5.0) == 1
p = probe.malloc(mine, 1 << 16)
with mine:
    obj = [1, 2]
h = probe.new_handle(mine, obj)
same = probe.resolve(h) is obj and probe.of(obj) is mine
probe.free(None, p)
del obj, h
probe.release(mine)
""" + sub.send("same"), rid=r.id)
        assert sub.result() == "True"
        assert r.acquire(timeout=5)
    finally:
        sub.destroy()


@needs_debug_build
def test_the_calls_leak_no_reference(r):
    with r:
        obj = {"k": [1]}
    idle = region.region("idle")   # isolated: it can be released and acquired again

    def work():
        p = probe.malloc(r, 256)
        probe.free(None, p)
        assert probe.of(obj) is r and probe.current() is None
        h = probe.new_handle(r, obj)
        assert probe.resolve(h) is obj
        probe.release(idle)
        assert probe.acquire(idle, 0.0) == 1
        raddr = probe.as_region(r)
        q, _ = probe.lib_alloc(raddr, 64, False)
        probe.lib_free(raddr, q)
        with pytest.raises(TypeError):
            probe.malloc(42, 8)

    assert refcount_growth(work) < 20
    idle.close()
