"""r.collect(), automatic collection, statistics and r.close()."""
import gc
import sys
import threading
import time
import weakref

import pytest

import region
from conftest import needs_debug_build, refcount_growth, run_python

RESURRECTED = []
EVENTS = []


class Node:
    def __init__(self, name=""):
        self.name = name
        self.other = None


class Finalized(Node):
    def __del__(self):
        EVENTS.append(("del", self.name))


class Resurrecting(Node):
    def __del__(self):
        EVENTS.append(("del", self.name))
        RESURRECTED.append(self)


class Allocating(Node):
    def __del__(self):
        EVENTS.append(("alloc", [{"made": i} for i in range(100)]))


class CallsGcCollect(Node):
    def __del__(self):
        EVENTS.append(("gc.collect", gc.collect()))


class CallsRegionCollect(Node):
    region = None

    def __del__(self):
        EVENTS.append(("r.collect", self.region.collect()))


@pytest.fixture(autouse=True)
def clean():
    EVENTS.clear()
    RESURRECTED.clear()
    yield
    EVENTS.clear()
    RESURRECTED.clear()


def cycles(r, cls=Node, n=100, **attrs):
    """n two-object cycles made in r, referenced by nothing; returns weakrefs to one side of each
    (made after the block: a weakref made inside would be a region object held from outside)."""
    with r:
        made = []
        for i in range(n):
            a, b = cls(f"a{i}"), cls(f"b{i}")
            for k, v in attrs.items():
                setattr(a, k, v)
            a.other, b.other = b, a
            made.append(a)
        del a, b, i
    probes = [weakref.ref(a) for a in made]
    del made
    return probes


def test_collect_frees_cycles_that_gc_collect_ignores(r):
    probes = cycles(r, n=500)
    assert gc.collect() == 0 or all(p() is not None for p in probes)
    assert all(p() is not None for p in probes)
    assert r.collect() == 1000
    assert all(p() is None for p in probes)
    assert r.collect() == 0


def test_self_reference_and_long_cycles(r):
    with r:
        s = Node()
        s.other = s
        ring = [Node(str(i)) for i in range(1000)]
        for x, y in zip(ring, ring[1:] + ring[:1]):
            x.other = y
        probe_s, probe_ring = weakref.ref(s), weakref.ref(ring[0])
        del s, ring, x, y
    assert r.collect() == 1001
    assert probe_s() is None and probe_ring() is None


def test_objects_referenced_from_outside_survive(r):
    probes = cycles(r, n=10)
    keep = probes[3]()          # an outside reference: a root for the region's collection
    with r:
        r.root = [Node("rooted")]
        r.root[0].other = r.root
    assert r.collect() == 18
    assert keep.other.other is keep and r.root[0].name == "rooted"
    assert probes[3]() is keep and probes[4]() is None


def test_references_leaving_the_region_are_not_followed(r):
    outside = Node("outside")
    outside.other = outside     # an ordinary cycle, outside the region
    probe_outside = weakref.ref(outside)
    probes = cycles(r, n=5, link=outside)
    del outside
    assert r.collect() == 10
    assert probe_outside() is not None   # the region's collection never frees outside objects
    gc.collect()
    assert probe_outside() is None


def test_finalizers_run_once_and_before_clearing(r):
    cycles(r, cls=Finalized, n=3)
    assert r.collect() == 6
    assert sorted(EVENTS) == sorted(("del", f"{s}{i}") for s in "ab" for i in range(3))


def test_finalizer_that_resurrects(r):
    cycles(r, cls=Resurrecting, n=2)
    assert r.collect() == 0                      # everything came back
    assert len(RESURRECTED) == 4 and len(EVENTS) == 4
    RESURRECTED.clear()
    EVENTS.clear()
    assert r.collect() == 4                      # garbage again: freed, and __del__ does not run twice
    assert EVENTS == []


def test_finalizer_that_allocates(r):
    cycles(r, cls=Allocating, n=5)
    assert r.collect() == 10
    assert len(EVENTS) == 10 and all(len(e[1]) == 100 for e in EVENTS)


def test_finalizer_calling_gc_collect_cannot_disturb_the_collection(r):
    # The global collection really runs inside the region's (it collects the outside cycle), and
    # neither disturbs the other (python/_region/cpython/collector.c, OTHER COLLECTIONS).
    probes = cycles(r, cls=CallsGcCollect, n=5)
    outside = Node("outside")
    outside.me = outside
    outside_probe = weakref.ref(outside)
    del outside
    assert r.collect() == 10
    results = [e[1] for e in EVENTS if e[0] == "gc.collect"]
    assert len(results) == 10 and results[0] >= 1 and outside_probe() is None
    assert all(p() is None for p in probes)


def test_finalizer_calling_region_collect_is_a_no_op(r):
    CallsRegionCollect.region = r
    cycles(r, cls=CallsRegionCollect, n=3)
    assert r.collect() == 6
    assert EVENTS == [("r.collect", 0)] * 6


def test_region_garbage_with_a_finalizer_that_calls_into_a_global_collection():
    # A global collection whose finalizer collects a region: the region collection runs inside it.
    r = region.region("inner")
    cycles(r, n=3)

    class GlobalGarbage:
        def __del__(self):
            EVENTS.append(("inner", r.collect()))

    g = GlobalGarbage()
    g.me = g
    del g
    gc.collect()
    assert EVENTS == [("inner", 6)]
    assert r.collect() == 0


def test_weakref_callbacks_run_and_weakrefs_are_cleared(r):
    seen = []
    with r:
        a = Node("a")
        a.other = a
    w = weakref.ref(a, lambda ref: seen.append(ref() is None))
    del a
    assert r.collect() == 1
    assert seen == [True] and w() is None


def test_handles_to_collected_objects_die(r):
    with r:
        a = Node("a")
        a.other = a
        r.root = []
    h = r.handle(a)
    with r:
        a.handle_to_self = h     # a cycle "through" a handle: handles hold no reference
    del a
    assert h.alive
    assert r.collect() >= 1     # the object, and its __dict__ if CPython made one for the new attribute
    with pytest.raises(region.HandleError, match="freed"):
        h()


def test_many_regions_collected_in_turn():
    regions = [region.region(f"turn{i}") for i in range(20)]
    probes = [cycles(reg, n=10 + i) for i, reg in enumerate(regions)]
    for i, reg in enumerate(regions):
        assert reg.collect() == 2 * (10 + i)
        assert all(p() is None for p in probes[i])
        assert all(p() is not None for later in probes[i + 1:] for p in later)


def test_collection_statistics(r):
    cycles(r, n=50)
    r.collect()
    r.collect()
    s = r.stats()
    assert s["collections"] == 2 and s["collected"] == 100 and s["uncollectable"] == 0
    assert 0 < s["last_pause"] <= s["total_pause"] < 10


def test_automatic_collection_by_the_regions_own_allocations(r):
    r.threshold = 2000
    assert r.threshold == 2000
    probes = []
    with r:
        for i in range(5000):                # each round allocates in r: the threshold is crossed
            a = Node()
            a.other = a
            probes.append(weakref.ref(a))
            del a
    for _ in range(3):
        sum(range(10))                       # bytecode boundaries: the pending collection runs
    s = r.stats()
    assert s["collections"] >= 1 and s["collected"] > 0
    assert sum(p() is None for p in probes) >= 1000


def test_other_regions_do_not_trigger_a_collection(r):
    r.threshold = 10000
    cycles(r, n=10)                          # a few dozen allocations, below the threshold
    other = region.region("busy")
    with other:
        junk = [Node() for _ in range(20000)]
    del junk
    sum(range(10))
    assert r.stats()["collections"] == 0


def test_threshold_zero_disables_automatic_collection(r):
    r.threshold = 0
    cycles(r, n=5000)
    sum(range(10))
    assert r.stats()["collections"] == 0
    assert r.collect() == 10000


def test_bad_thresholds(r):
    for bad in (-1, 2 ** 40, "10", 1.5, None):
        with pytest.raises(ValueError, match="threshold must be"):
            r.threshold = bad
    with pytest.raises(AttributeError):
        del r.threshold


def test_close_frees_everything():
    r = region.region("closing")
    with r:
        r.root = {"users": [{"id": i, "friends": []} for i in range(1000)]}
        r.root["users"][0]["friends"].append(r.root["users"][1])
        r.root["self"] = r.root
    probes = cycles(r, cls=Finalized, n=3)
    h = r.handle(r.root["users"][5])
    assert r.close() is None
    assert r.closed and all(p() is None for p in probes)
    assert len([e for e in EVENTS if e[0] == "del"]) == 6
    with pytest.raises(region.HandleError, match="the region is gone"):
        h()
    for misuse in (lambda: r.__enter__(), lambda: r.root, lambda: r.collect(), lambda: r.check(),
                   lambda: r.stats(), lambda: r.close(), lambda: r.handle(1)):
        with pytest.raises(region.RegionError, match="is closed"):
            misuse()
    assert "closed" in repr(r) or "dissolved" in repr(r)


def test_close_with_escapes_is_refused_and_changes_nothing(r):
    with r:
        r.root = {"users": [[i] for i in range(10)]}
    held = r.root["users"][4]
    with pytest.raises(region.IsolationError, match=r"root\['users'\]\[4\]") as info:
        r.close()
    assert not r.closed and info.value.offenders[0].obj is held
    del held, info
    gc.collect()
    assert r.root["users"][4] == [4]
    r.close()
    assert r.closed


def test_close_with_an_open_block_is_refused(r):
    errors = []
    r.__enter__()
    try:
        r.close()
    except region.RegionError as e:
        errors.append(e)             # the exception was made in the block: a region object
    r.__exit__(None, None, None)
    assert "block" in str(errors[0])
    errors.clear()
    r.close()


def test_close_lets_resurrected_objects_live_on_as_ordinary_objects():
    r = region.region("resurrect")
    with r:
        r.root = [Resurrecting("x")]
        r.root[0].other = r.root
    r.close()
    assert len(RESURRECTED) == 1 and RESURRECTED[0].name == "x"
    assert region.region_of(RESURRECTED[0]) is None     # no longer a region object
    RESURRECTED.clear()
    gc.collect()


def test_closed_region_is_freed_when_dropped():
    r = region.region("dropme")
    with r:
        r.root = [Node() for _ in range(100)]
    r.close()
    probe = weakref.ref(r)
    del r
    assert probe() is None


@needs_debug_build
def test_refcounts_flat_across_collect_and_close():
    def work():
        r = region.region("leak")
        cycles(r, cls=Finalized, n=20)
        with r:
            r.root = {"d": [{"i": i} for i in range(100)]}
        r.collect()
        EVENTS.clear()           # the finalizers logged their names: region strs held from outside
        r.close()

    assert refcount_growth(work) < 20


class Plain:
    def __init__(self, i):
        self.i = i
        self.items = [i]


def test_close_frees_in_bulk_when_it_can_prove_it_safe():
    r = region.region("bulk")
    n = 50
    with r:
        r.root = {"users": [{"id": i * 1000, "name": f"u{i}", "t": (i * 1000, "x" * n), "s": {i * 1000},
                             "p": Plain(i * 1000), "b": bytearray(b"ab" * n), "f": i / 3} for i in range(500)]}
        r.root["users"].append(r.root)            # a cycle: freed with the rest
    r.close()
    assert "freed in bulk" in repr(r)


def test_close_falls_back_to_one_by_one_for_finalizers_and_weakrefs():
    for make in (lambda: Finalized("x"), lambda: weakref.ref(Plain(1)) and Plain(2)):
        r = region.region("careful")
        with r:
            r.root = [make()]
        probe = weakref.ref(r.root[0])                # a weakref to a region object
        r.close()
        assert "object by object" in repr(r) and probe() is None


def test_close_falls_back_when_an_outside_dict_uses_region_memory():
    r = region.region("lent")
    table = {}
    with r:
        r.root = [Plain(1)]
        for i in range(200):
            table[i] = None      # the dict grows in the block: its new key table is region memory
    r.close()                    # so a bulk free is not provable: object by object, table untouched
    assert "object by object" in repr(r)
    assert list(table) == list(range(200))
    table[500] = 1               # still fine: the table's memory was never freed
    del table


@needs_debug_build
def test_bulk_close_keeps_reference_counts_exact():
    def work():
        r = region.region("bulkleak")
        with r:
            r.root = {"d": [{"i": i * 1000, "s": str(i) * 3, "p": Plain(i)} for i in range(300)]}
        r.close()
        assert "bulk" in repr(r)

    assert abs(refcount_growth(work)) < 20   # dropping too much would show as shrinking


def test_automatic_collections_space_out_as_the_region_grows(r):
    # A fixed threshold would collect the whole region every 1000 allocations (about 80 times
    # here); the trigger grows with what survives, so building stays linear.
    r.threshold = 1000
    with r:
        r.root = []
        for i in range(40_000):
            r.root.append([i * 1000])
            if i % 1000 == 0:
                sum(range(3))                # give the pending collection a bytecode boundary
    collections = r.stats()["collections"]
    assert 1 <= collections <= 15, collections


# ---- Collections in other threads (issue 14, 2) ----

class Yielding(Node):
    """A finalizer that lets the GIL go: another thread's code runs in the middle of the collection."""
    def __del__(self):
        time.sleep(0)


def test_collect_release_and_close_work_while_another_thread_collects():
    """Another thread's gc.collect() is paused in a finalizer (GIL released) while this thread
    collects, releases and closes regions: none of them fails or miscounts (before: r.collect()
    returned 0 and release()/close() raised 'while a collection is running')."""
    stop = threading.Event()
    global_collections = [0]

    def churn():
        while not stop.is_set():
            for _ in range(20):
                y = Yielding("global")
                y.me = y
            del y
            gc.collect()
            global_collections[0] += 1

    t = threading.Thread(target=churn)
    t.start()
    try:
        deadline = time.monotonic() + 2.0
        rounds = 0
        while time.monotonic() < deadline or rounds < 20:
            r = region.region("busy")
            with r:
                for _ in range(10):
                    a, b = Yielding("a"), Yielding("b")
                    a.other, b.other = b, a
                del a, b
                r.root = [[i] for i in range(50)]
            assert r.collect() == 20
            r.release()
            assert r.acquire(timeout=5)
            r.close()
            assert r.closed
            rounds += 1
    finally:
        stop.set()
        t.join()
    assert global_collections[0] > 0


def test_an_outside_weakref_whose_callback_ran_stays_outside(r):
    """The weakref-callback pass borrows outside weakrefs; a survivor goes back to the interpreter's
    lists, never onto the region's (it was moved there before)."""
    with r:
        a = Node("a")
        a.me = a
    seen = []
    w = weakref.ref(a, lambda ref: seen.append(ref is w))
    del a
    tracked = r.stats()["tracked"]
    freed = r.collect()                # the Node, and its __dict__ if it has a dict object
    assert freed in (1, 2) and seen == [True]
    assert r.stats()["tracked"] == tracked - freed
    assert not any(o is w for o in r.objects())
    assert gc.is_tracked(w) and any(o is w for o in gc.get_objects())


# ---- Cycles through ordinary objects, gc.collect() in a block, untracking (issue 14, 3 and 4) ----

class Outside:
    pass


def _cross_boundary_cycles(r, n):
    """n garbage cycles, each a region object and an ordinary object holding each other; weakrefs to
    the ordinary sides."""
    probes = []
    for i in range(n):
        o = Outside()
        with r:
            inside = Node(i)
        inside.partner, o.partner = o, inside
        probes.append(weakref.ref(o))
    return probes


def test_a_cycle_through_an_ordinary_object_needs_a_full_collection(r):
    """Neither gc.collect() nor r.collect() can see both sides; r.collect(full=True) can (it leaked:
    20,000 such cycles were 25 MB for good)."""
    probes = _cross_boundary_cycles(r, 200)
    gc.collect()
    assert r.collect() == 0 and all(p() is not None for p in probes)
    tracked = r.stats()["tracked"]
    assert r.collect(full=True) >= 400
    assert all(p() is None for p in probes)
    assert r.stats()["tracked"] == tracked - 200
    assert r.stats()["collections"] >= 2


def test_close_reclaims_cycles_through_ordinary_objects_instead_of_reporting_them(r):
    _cross_boundary_cycles(r, 50)
    with r:
        r.root = {"kept": [1, 2, 3]}
    r.close()                                   # was: IsolationError naming 50 escapes
    assert r.closed


def test_a_function_made_in_a_block_with_outside_globals_is_reclaimed(r):
    """A function made in a block refers to its globals; globals made outside refer to it: a cycle
    through an ordinary dict once the module is gone."""
    namespace = {}
    with r:
        exec("def f():\n    return 1\n", namespace)
    assert region.region_of(namespace["f"]) is r and region.region_of(namespace) is None
    probe = weakref.ref(namespace["f"])
    del namespace
    gc.collect()
    assert probe() is not None                  # gc.collect() outside blocks never sees region objects
    r.close()                                   # nothing user-held refers in: the cycle is given back
    gc.collect()                                # as ordinary objects, which the interpreter collects
    assert probe() is None


def test_gc_collect_in_a_block_collects_the_blocks_garbage(r):
    """Code that relies on gc.collect() to break its cycles behaves inside a block as outside."""
    with r:
        a, b = Node("a"), Node("b")
        a.other, b.other = b, a
        probe = weakref.ref(a)
        del a, b
        assert gc.collect() >= 2
        assert probe() is None
        after = [Node("after")]                 # the block still places, the region took part and came back
        r.root = after
    assert region.region_of(after) is r and region.region_of(after[0]) is r
    assert r.stats()["collections"] == 1 and r.stats()["tracked"] >= 2
    del probe, after
    assert r.check() is None


def test_gc_collect_outside_blocks_leaves_regions_alone(r):
    with r:
        a = Node("a")
        a.me = a
        probe = weakref.ref(a)
        del a
    gc.collect()
    assert probe() is not None                  # r's garbage waits for r's own collection
    assert r.collect() >= 1 and probe() is None


def test_region_collections_untrack_tuples_and_dicts_as_cpython_does(r):
    def made():
        return (1, 2.0, "three"), {"a": 1, "b": (2, 3)}, (1, [2])

    outside = made()
    gc.collect()
    with r:
        inside = made()
    r.collect()
    assert [gc.is_tracked(x) for x in inside] == [gc.is_tracked(x) for x in outside] == [False, False, True]


# ---- What CPython itself keeps does not pin a region (issue 14, 5) ----

def test_print_in_a_block_does_not_pin_the_region():
    """The first keyword call of print() makes a keyword-names tuple a C static keeps (3.11): close()
    gives it back to the ordinary heap instead of refusing."""
    result = run_python("""
        import region
        r = region.region("printing")
        with r:
            print("x", end="\\n", sep=" ", flush=False)
            r.root = [1, 2, 3]
        try:
            r.check()
        except region.IsolationError as e:     # check() is strict: it names what close() gives back
            print("strict", len(e.offenders), all(o.interpreter_state for o in e.offenders))
        else:
            print("strict", 0, True)          # 3.12+ make keyword tuples at compile time
        r.close()
        print("closed", r.closed)
    """)
    out = result.stdout.split()
    assert result.returncode == 0 and out[0] == "x" and out[3:] == ["True", "closed", "True"], result.stdout + result.stderr
    assert out[2] == ("1" if sys.version_info < (3, 12) else "0"), result.stdout


def test_asyncio_run_in_a_block_does_not_pin_the_region():
    result = run_python("""
        import asyncio, region
        async def main():
            await asyncio.sleep(0)
            return [i for i in range(10)]
        r = region.region("async")
        with r:
            r.root = asyncio.run(main())
        assert r.root == list(range(10))
        r.close()
        again = region.region("async again")
        with again:
            again.root = asyncio.run(main())
        again.close()
        print("closed", r.closed, again.closed)
    """)
    assert result.returncode == 0 and result.stdout.split() == ["closed", "True", "True"], result.stderr


def test_close_still_refuses_what_user_code_holds_and_counts_the_rest(r):
    with r:
        r.root = {"a": 1}
        kept = [1, 2]
        print("pins a keyword tuple once per process", end="\n", flush=False)
    with pytest.raises(region.IsolationError) as raised:
        r.close()
    message = str(raised.value)
    assert "local variable 'kept'" in message
    assert len(raised.value.offenders) == 1
    del kept, raised                           # the error's offenders hold the list too
    r.close()
    assert r.closed


@pytest.mark.parametrize("end", ["first", "last"])
def test_a_gc_callback_added_later_still_places_nothing_in_a_block(r, end):
    """hypothesis inserts a gc callback at the front of gc.callbacks after region is imported (others
    append theirs); what it allocates during a collection started inside a block, and the arguments
    the interpreter builds for it, must stay outside the region."""
    kept = []

    def callback(phase, info):
        kept.extend(([phase], phase, info))   # a list: never a shared singleton

    elsewhere = threading.Thread(target=gc.collect)   # the last collection noted is another thread's
    elsewhere.start()
    elsewhere.join()
    if end == "first":
        gc.callbacks.insert(0, callback)
    else:
        gc.callbacks.append(callback)
    try:
        with r:
            gc.collect()
            r.root = [1]
    finally:
        gc.callbacks.remove(callback)
    assert len(kept) == 6
    assert [k for k in kept if region.region_of(k) is not None] == []
    assert r.check() is None


def test_a_region_freed_in_bulk_gives_back_the_collectors_count():
    """The interpreter's collector counts GC objects made minus those freed; a region's objects freed
    in bulk by close() are subtracted as PyObject_GC_Del would, so that a region per request triggers
    no more collections than the same objects made and freed outside (bench/requests_bench.py)."""
    def made_and_freed_in_a_region():
        r = region.region()
        with r:
            r.root = [[i] for i in range(500)]   # 501 GC objects
        r.close()

    def made_and_freed_outside():
        root = [[i] for i in range(500)]
        del root

    gc.collect()
    gc.disable()
    try:
        for work in (made_and_freed_outside, made_and_freed_in_a_region):
            work()                                  # warm: the first region activates the binding
            before = gc.get_count()[0]
            work()
            assert gc.get_count()[0] - before <= 2, work.__name__
    finally:
        gc.enable()
