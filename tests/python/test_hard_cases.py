"""The hard cases of docs/python.md: generators and coroutines, tracemalloc, shutdown, debug views."""
import asyncio
import gc
import sys
import tracemalloc

import pytest

import region
from conftest import needs_debug_build, refcount_growth, run_python


def test_generator_suspended_inside_a_block_keeps_it_open_for_its_consumer(r):
    """Decided: a block is the entering thread's dynamic extent (like decimal.localcontext)."""

    def producer():
        with r:
            yield [1000]          # suspends with r's block open
            yield [2000]

    gen = producer()
    first = next(gen)
    assert region.current() is r  # the consumer now runs inside r's block
    made_by_consumer = [3000]
    assert region.region_of(made_by_consumer) is r
    second = next(gen)
    gen.close()                   # GeneratorExit runs the block's __exit__
    assert region.current() is None
    assert region.region_of(first) is r and region.region_of(second) is r
    # What the consumer made in the meantime is r's and held from outside: check() reports it.
    with pytest.raises(region.IsolationError, match="made_by_consumer"):
        r.check()


def test_generator_exits_its_block_below_blocks_its_consumer_opened(r):
    other = region.region("other")

    def producer():
        with r:
            yield

    gen = producer()
    next(gen)
    with other:
        gen.close()               # exits r's block, which is below other's on this thread's stack
        assert region.current() is other
        x = []
    assert region.current() is None and region.region_of(x) is other


def test_generator_abandoned_inside_a_block_closes_it_when_collected(r):
    def producer():
        with r:
            yield

    gen = producer()
    next(gen)
    del gen                       # generator finalization throws GeneratorExit into the block
    assert region.current() is None


def test_coroutine_awaiting_inside_a_block(r):
    async def work():
        with r:
            await asyncio.sleep(0)
            return [1000]

    result = asyncio.run(work())
    assert region.region_of(result) is r and region.current() is None


def test_tracemalloc_started_after_import(r):
    tracemalloc.start()
    try:
        with r:
            data = [[i] for i in range(1000)]
        snapshot = tracemalloc.take_snapshot()
        assert snapshot.statistics("filename")
    finally:
        tracemalloc.stop()        # gives the hook back
    with r:
        more = [[i] for i in range(1000)]
    del data
    assert all(region.region_of(x) is r for x in more)
    assert region.current() is None


def test_tracemalloc_started_before_the_first_region_is_relayered():
    result = run_python("""
        import tracemalloc, warnings
        tracemalloc.start(5)
        import region             # changes no allocator (test_activation.py)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            r = region.region()
        assert any("tracemalloc was tracing" in str(w.message) for w in caught), caught
        assert tracemalloc.is_tracing() and tracemalloc.get_traceback_limit() == 5
        with r:
            data = [[i] for i in range(10000)]
        tracemalloc.stop()        # must not remove region's hook
        del data                  # region blocks freed after tracemalloc stopped
        with r:
            more = [[i] for i in range(100)]
        assert region.region_of(more) is r
        print("ok")
    """)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"


def test_hook_replaced_by_someone_else_is_refused(r):
    # Another PyMem_SetAllocator call put a different allocator in front (the test swaps in an
    # equivalent one, so the process survives): entering a block is refused with a clear error.
    def enter():
        with r:
            pass

    with pytest.raises(region.RegionError, match="allocator hook was removed"):
        region._region._with_foreign_allocator(enter)
    with r:                       # hook back in place: fine again
        x = [1000]
    assert region.region_of(x) is r


def test_shutdown_with_live_regions_is_clean():
    result = run_python("""
        import region, threading
        class Noisy:
            def __init__(self): self.me = self
            def __del__(self): print("finalized", flush=True)
        regions = []
        for i in range(5):
            r = region.region(f"live{i}")
            with r:
                r.root = {"cycle": Noisy(), "data": [[j] for j in range(1000)]}
            regions.append(r)
        keep = regions[0].root
        print("exiting", flush=True)
    """)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    assert result.stdout.startswith("exiting")
    assert result.stdout.count("finalized") == 5    # dissolved at exit, so finalization collects them


def test_gc_get_objects_misses_region_objects_but_objects_lists_them(r):
    with r:
        r.root = [[i] for i in range(100)]
    gc_ids = {id(o) for o in gc.get_objects()}
    assert not any(id(x) in gc_ids for x in r.root)
    assert gc.get_referrers(r.root[0]) == []          # the holder is a region object
    ids = {id(o) for o in r.objects()}
    assert all(id(x) in ids for x in r.root) and id(r.root) in ids


@needs_debug_build
def test_refcounts_stay_flat_under_a_debug_interpreter():
    def region_work():
        r = region.region("leakcheck")
        with r:
            r.root = {"users": [{"id": i, "tags": [str(i)]} for i in range(200)], "t": tuple(range(50))}
        h = r.handle(r.root["users"][3])
        assert h()["id"] == 3
        r.check()
        try:
            with r:
                r.root["users"][0]["bad"] = region  # a module: outgoing escape
            r.check()
        except region.IsolationError:
            pass
        r.objects()
        r.stats()
        del r

    growth = refcount_growth(region_work)
    assert growth < 20, f"total refcount grew by {growth} over 20 runs"


def test_a_trace_function_allocates_inside_the_blocks_it_traces(r):
    """A limitation (docs/python.md): sys.settrace functions run inside the blocks they trace, so
    what they keep from there is an escape like any other."""
    seen = []

    def tracer(frame, event, arg):
        if event == "line" and frame.f_code.co_name == "traced":
            seen.append((frame.f_code.co_name, frame.f_lineno))
        return tracer

    def traced():
        with r:
            r.root = [1]
            return len(r.root)

    sys.settrace(tracer)
    try:
        traced()
    finally:
        sys.settrace(None)
    assert any(region.region_of(t) is r for t in seen)
    with pytest.raises(region.IsolationError, match="held by a list outside the region"):
        r.close()
    seen.clear()
    r.close()
