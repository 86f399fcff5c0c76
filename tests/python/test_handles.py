"""Handles: weak, for any region object, checked on every use."""
import gc
import sys
import weakref

import pytest

import region


def test_handle_to_list_dict_int_str(r):
    n = 1000
    with r:
        r.root = {"l": [1, 2], "d": {"a": 1}, "i": n * 1000, "s": str(n) * 2}
    for key in ("l", "d", "i", "s"):
        h = r.handle(r.root[key])
        assert h() is r.root[key]
        assert h.alive and h.region_id == r.id


def test_handle_dies_with_its_object(r):
    with r:
        r.root = {"l": [1, 2]}
    h = r.handle(r.root["l"])
    del r.root["l"]
    assert not h.alive
    with pytest.raises(region.HandleError, match="the object was freed"):
        h()


def test_stale_handle_never_resolves_to_a_new_object_at_the_same_address(r):
    with r:
        r.root = [[1]]
    h = r.handle(r.root[0])
    r.root.pop()
    with r:
        r.root.extend([i] for i in range(100))   # likely reuses the freed block
    with pytest.raises(region.HandleError):
        h()


def test_handle_error_is_a_region_error_and_a_reference_error():
    assert issubclass(region.HandleError, region.RegionError)
    assert issubclass(region.HandleError, ReferenceError)


def test_handles_are_hashable_and_comparable(r):
    with r:
        r.root = [[1], [2]]
    a1, a2, b = r.handle(r.root[0]), r.handle(r.root[0]), r.handle(r.root[1])
    assert a1 == a2 and hash(a1) == hash(a2) and a1 != b
    assert len({a1, a2, b}) == 2
    assert a1 != "not a handle"
    assert "list" in repr(a1) and "'test'" in repr(a1) and "alive" in repr(a1)


def test_handle_never_keeps_the_region_alive():
    reg = region.region("short")
    with reg:
        reg.root = [1]
    h = reg.handle(reg.root)
    probe = weakref.ref(reg)
    del reg
    gc.collect()
    assert probe() is None
    assert not h.alive and "region gone" in repr(h)
    with pytest.raises(region.HandleError, match="the region is gone"):
        h()


def test_handle_to_an_object_outside_the_region_is_refused(r):
    with pytest.raises(region.RegionError, match="not an object of any region"):
        r.handle([1])
    other = region.region("other")
    with other:
        theirs = [1]
    with pytest.raises(region.RegionError, match="belongs to region 'other'"):
        r.handle(theirs)
    with pytest.raises(region.RegionError):
        r.handle(None)


def test_handle_cannot_be_made_directly():
    with pytest.raises(TypeError):
        region.Handle()


def test_handle_follows_an_object_that_moves(r):
    with r:
        t = tuple(range(1000, 1003))
        r.root = [t]
    h = r.handle(r.root[0])
    assert h() == (1000, 1001, 1002)
    assert h() is r.root[0]


def test_handle_takes_no_arguments(r):
    with r:
        r.root = [1]
    h = r.handle(r.root)
    with pytest.raises(TypeError):
        h(1)


# ---- Objects being torn down are dead to handles (issue 14, 1) ----

def test_a_handle_never_resolves_an_object_being_deallocated(r):
    """A __del__ that runs while its owner's attributes are cleared must not get the owner back: its
    reference count is 0 and its memory is freed when the deallocator returns (this segfaulted)."""
    got, errors, alive = [], [], []

    class Holder:
        pass

    class Finalized:
        def __del__(self):
            alive.append(h.alive)
            try:
                got.append(h())
            except region.HandleError as e:
                errors.append(str(e))

    with r:
        a = Holder()
        a.fin = Finalized()
        h = r.handle(a)
        r.root = [a]
        del a
    r.root = None                      # Holder's dealloc clears its __dict__: Finalized.__del__ runs
    junk = [Holder() for _ in range(10000)]   # would reuse the freed Holder's memory
    assert got == [] and alive == [False]
    assert len(errors) == 1 and "is being freed" in errors[0] and "Holder" in errors[0]
    assert not h.alive and "dead" in repr(h)
    with pytest.raises(region.HandleError, match="was freed"):
        h()
    del junk


def test_a_handle_never_resolves_an_object_the_trashcan_parked(r):
    """Deep nests are freed through CPython's trashcan, which parks objects with a count of 0 and
    frees them later; a finalizer running meanwhile must not get them back (this crashed)."""
    seen = []

    class Finalized:
        def __del__(self):
            for h in handles:
                try:
                    seen.append(h())
                except region.HandleError:
                    pass

    depth = 200
    with r:
        inner = [Finalized()]
        nest = [inner]
        for _ in range(depth):
            nest = [nest, [0]]
        r.root = [nest]
    handles, level = [], r.root[0]
    while isinstance(level, list) and level:
        handles.append(r.handle(level))
        level = level[0]
    del nest, inner, level
    r.root = None                      # a 200-deep dealloc: the trashcan defers past depth 50
    assert all(sys.getrefcount(o) > 1 for o in seen)
    for o in seen:                     # whatever was handed out is a live object
        assert isinstance(o, list) and len(o) in (1, 2)
    seen.clear()
    assert not any(h.alive for h in handles)
