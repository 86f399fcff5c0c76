"""Membership: region objects are on the region's own GC list; the interpreter's collector never sees them."""
import gc
import threading
import weakref

import pytest

import region


class Node:
    def __init__(self):
        self.other = None


def gc_ids():
    return {id(o) for o in gc.get_objects()}


def test_region_objects_are_not_in_the_interpreter_generations(r):
    with r:
        data = [[i] for i in range(1000)] + [Node() for _ in range(100)]
    gc.collect()
    ids = gc_ids()
    assert not any(id(x) in ids for x in data)
    assert all(gc.is_tracked(x) for x in data)


def test_gc_collect_ignores_region_garbage(r):
    with r:
        a, b = Node(), Node()
        a.other, b.other = b, a              # a cycle inside the region
    probe = weakref.ref(a)                   # outside: a weakref made in the block would be an escape
    del a, b
    assert gc.collect() == 0 or probe() is not None
    assert probe() is not None               # only the region's own collection may free it
    assert r.check() is None                 # garbage is not an escape


def test_late_tracked_dicts_join_the_region_list(r):
    with r:
        d = {"a": 1}                         # created untracked
    assert not gc.is_tracked(d)
    d["x"] = []                              # becomes tracked outside the block
    assert gc.is_tracked(d)
    gc.collect()
    assert id(d) not in gc_ids()
    assert any(o is d for o in r.objects())


def test_objects_of_other_threads_stay_in_the_generations(r):
    made = []
    started, release = threading.Event(), threading.Event()

    def worker():
        started.set()
        release.wait()
        made.extend([[i] for i in range(2000)])

    t = threading.Thread(target=worker)
    t.start()
    started.wait()
    with r:
        release.set()
        t.join()
    gc.collect()
    ids = gc_ids()
    assert all(id(x) in ids for x in made)


def test_objects_lists_untracked_and_non_gc_objects(r):
    n = 50                                   # not constants: the compiler folds those into the code
    with r:
        r.root = {"t": tuple(range(1000, 1002)), "s": "x" * n, "n": 10 ** n + 1, "l": [1.5 * n]}
    objs = r.objects()
    ids = {id(o) for o in objs}
    root = r.root
    for key in ("t", "s", "n", "l"):
        assert id(root[key]) in ids
    assert all(r.owns(o) for o in objs)


def test_region_of_for_shared_and_outside_objects(r):
    with r:
        made = [None, True, 5, "a", ()]       # shared singletons: never region objects
    assert region.region_of(made) is r
    assert [region.region_of(x) for x in made] == [None] * 5
    assert region.region_of(object()) is None


def test_dropped_region_hands_objects_to_the_interpreter():
    reg = region.region("dropped")
    with reg:
        data = [Node() for _ in range(100)]
        data[0].other = data                 # a cycle through the list
    probe = weakref.ref(data[0])
    del reg
    assert region.region_of(data) is None
    assert id(data) in gc_ids()              # now an ordinary tracked object
    del data
    gc.collect()
    assert probe() is None                   # the interpreter collects it


def test_many_regions_created_and_dropped_reuse_their_records():
    for i in range(400):
        reg = region.region(f"r{i}")
        with reg:
            reg.root = [[j] for j in range(20)]
        del reg
    gc.collect()


def test_closed_regions_whose_given_back_objects_die_are_destroyed_a_few_at_a_time():
    """close() gives back what a standard-library module holds, and the region's memory stays (an
    orphan) until those objects die; then each new region destroys a few such orphans (lifecycle.c,
    SWEEP_SOME: making a region stays O(1) with thousands of them), and a full collection all."""
    import json
    from region import _region
    names = [f"_region_test_orphan_{i}" for i in range(60)]   # made outside: interned names live on
    for name in names:
        setattr(json, name, None)   # the module's dict grows here, not in a block (its keys would stay)
    before = _region._orphans()
    for name in names:
        reg = region.region()
        with reg:
            setattr(json, name, [1, 2])                       # a stdlib module's global: given back
            reg.root = [3]
        reg.close()
    assert _region._orphans() == before + len(names)
    for name in names:
        delattr(json, name)                                   # the given-back lists die
    for _ in range(5):
        region.region().close()
    left = _region._orphans()
    assert before + len(names) - 5 * 4 <= left < before + len(names)
    gc.collect()
    assert _region._orphans() <= before


@pytest.mark.parametrize("between", ["nothing", "a collection of the youngest generation", "a full collection",
                                     "gc.freeze()", "gc.freeze() and gc.unfreeze()"])
def test_objects_tracked_after_a_proof_are_found_by_the_next(between):
    """A sync of the lists (before every proof, and r.objects()) walks only what entered the youngest
    generation since the previous one (internals.c, "Arrivals"): dicts of a region that become tracked
    after it, whatever the collector did in between, must still leave the generation for the region's
    list, as before the region is freed in bulk."""
    r = region.region("late")
    with r:
        r.root = ([{"k": i} for i in range(50)], [[i] for i in range(50)])   # the dicts are untracked
    dicts, lists = r.root
    r.objects()                                 # a sync: the youngest generation walked, its end marked
    try:
        if between == "a collection of the youngest generation":
            gc.collect(0)
        elif between == "a full collection":
            gc.collect()
        elif between.startswith("gc.freeze()"):
            gc.freeze()
            if "unfreeze" in between:
                gc.unfreeze()
        for d, inner in zip(dicts, lists):
            d["x"] = inner                      # tracked now, outside any block: into the youngest generation
        assert all(gc.is_tracked(d) for d in dicts)
        assert {id(d) for d in dicts} <= gc_ids()
        del d, inner
        members = {id(o) for o in r.objects()}  # the next sync moves them to the region's list
        assert not {id(d) for d in dicts} & gc_ids()
        assert {id(d) for d in dicts} <= members
        del dicts, lists
        r.close()
    finally:
        gc.unfreeze()
