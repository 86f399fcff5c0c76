"""The example extension, as its users see it: run with pytest where region and vector are installed
(tests/python/pip_install.sh builds both in a fresh virtual environment)."""
import threading

import pytest

import region
import vector


def buffer_bytes(r):
    s = r.stats()
    return s["bytes"] - s["object_bytes"]


def test_outside_every_region_it_is_an_ordinary_object():
    v = vector.Vector(1000, 2.0)
    assert region.region_of(v) is None and not v.in_region
    assert len(v) == 1000 and v.sum() == 2000.0


def test_made_in_a_region_its_buffer_is_region_memory_and_close_frees_both():
    before = vector.live_buffers()
    r = region.region("vectors")
    empty = buffer_bytes(r)
    with r:
        r.root = [vector.Vector(1 << 20, 1.0) for _ in range(4)]   # 4 x 8 MiB
    assert all(region.region_of(v) is r and v.in_region for v in r.root)
    assert buffer_bytes(r) >= empty + 4 * (8 << 20)
    assert vector.live_buffers() == before + 4
    assert r.check() is None
    r.close()
    assert vector.live_buffers() == before


def test_growing_later_outside_the_block_stays_in_the_region():
    r = region.region("grows")
    with r:
        v = vector.Vector(10, 1.0)
    grown = buffer_bytes(r)
    v.resize(1 << 20)                       # no block open: the buffer still goes to v's region
    assert v.in_region and buffer_bytes(r) >= grown + (8 << 20) - 80
    assert v[9] == 1.0 and v[10] == 0.0 and len(v) == 1 << 20
    del v
    r.close()


def test_a_thread_that_does_not_own_the_region_gets_an_error_not_a_crash():
    r = region.region("owned")
    with r:
        v = vector.Vector(10)
    errors = []

    def grow():
        try:
            v.resize(100)
        except region.OwnershipError as e:
            errors.append(str(e))

    t = threading.Thread(target=grow)
    t.start()
    t.join()
    assert len(errors) == 1 and "PyRegion_Malloc: region 'owned'" in errors[0] and len(v) == 10
    del v
    r.close()


def test_dissolved_region_keeps_the_vector_usable():
    r = region.region("dropped")
    with r:
        v = vector.Vector(1000, 3.0)
    del r                                   # the region is dissolved: v lives on as an ordinary object
    assert region.region_of(v) is None and v.sum() == 3000.0
    before = vector.live_buffers()
    del v                                   # its deallocator frees the buffer in the old region's memory
    assert vector.live_buffers() == before - 1


def test_misuse_of_the_type():
    with pytest.raises(ValueError, match="n must be >= 0"):
        vector.Vector(-1)
    with pytest.raises(IndexError):
        vector.Vector(3)[3]
