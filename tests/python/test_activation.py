"""A process pays for regions only where it uses them: importing the package changes no allocator,
no freelist and no gc callback; the allocator hook and the deallocator wrappers go in when the
process makes or acquires its first region, and each interpreter's gc callbacks and freelist guards
when it first does (python/_region/placement.c, ACTIVATION)."""
import pytest

import region
from conftest import run_python

# PyMem_GetAllocator(PYMEM_DOMAIN_OBJ) read through ctypes: the function CPython calls for every
# object allocation.
READ_ALLOCATOR = """
import ctypes
class Allocator(ctypes.Structure):
    _fields_ = [("ctx", ctypes.c_void_p), ("malloc", ctypes.c_void_p), ("calloc", ctypes.c_void_p),
                ("realloc", ctypes.c_void_p), ("free", ctypes.c_void_p)]
def obj_allocator():
    a = Allocator()
    ctypes.pythonapi.PyMem_GetAllocator(2, ctypes.byref(a))   # PYMEM_DOMAIN_OBJ
    return (a.malloc, a.free)
"""


def test_importing_the_package_changes_no_allocator():
    result = run_python(READ_ALLOCATOR + """
import gc
before = obj_allocator()
import region
from region import _region
assert obj_allocator() == before, "the import replaced the object allocator"
assert gc.callbacks == [], gc.callbacks
assert not _region._activated()
r = region.region("first")
assert _region._activated()
assert obj_allocator() != before, "the first region left the allocator alone"
assert gc.callbacks == [_region._gc_callback, _region._gc_callback_last], gc.callbacks
with r:
    r.root = [(1, 2.5)]
assert region.region_of(r.root) is r
r.close()
print("ok")
""")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"


def test_threads_racing_to_make_the_first_region():
    """Eight threads make the process's first regions at once, while the main thread allocates:
    the hook and the wrappers go in once (placement_activate's lock), every region places its
    objects, and the gc callbacks are registered once."""
    result = run_python("""
import gc, threading
import region
from region import _region
start = threading.Barrier(9)
made = []
def build(i):
    start.wait()
    r = region.region(f"racer {i}")
    with r:
        r.root = [{"k": (j, str(j))} for j in range(5000)]
    made.append(region.region_of(r.root[-1]["k"]) is r and r.check() is None)
    r.close()
threads = [threading.Thread(target=build, args=(i,)) for i in range(8)]
for t in threads:
    t.start()
start.wait()
rows = [[i] * 3 for i in range(50000)]
for t in threads:
    t.join()
assert made == [True] * 8, made
assert _region._activated()
assert gc.callbacks == [_region._gc_callback, _region._gc_callback_last], gc.callbacks
print("ok")
""")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"


subinterp = pytest.importorskip("subinterp")


def test_an_interpreter_that_only_imports_keeps_its_freelists(r):
    """The main interpreter uses regions (r); a subinterpreter that imported the package is not
    guarded until it acquires a region - its first use, through the acquire path - and then is."""
    sub = subinterp.Sub()
    try:
        sub.run("import gc\nfrom region import _region\n" + sub.send("(_region._activated(), len(gc.callbacks))"))
        assert sub.result() == "(False, 0)"
        with r:
            r.root = [1, 2, 3]
        r.release()
        sub.run("""
mine = region.adopt(rid)
with mine.ownership(timeout=5):
    total = sum(mine.root)
""" + sub.send("(total, _region._activated(), len(gc.callbacks))"), rid=r.id)
        assert sub.result() == "(6, True, 2)"
        assert r.acquire(timeout=5)
    finally:
        sub.destroy()
