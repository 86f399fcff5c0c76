"""Placement: what a block creates is allocated in the region; nothing else is."""
import contextlib
import gc
import threading

import pytest

import region


class Plain:
    def __init__(self, i):
        self.i = i


class Slotted:
    __slots__ = ("a", "b")

    def __init__(self, a):
        self.a, self.b = a, [a]


def make_builtins(n):
    """n objects of each builtin type, all freshly allocated (no constants, no small ints)."""
    out = []
    for i in range(1000, 1000 + n):
        out += [i * 7, float(i) * 1.5, complex(i, 1), str(i) * 3, str(i).encode() * 2, (i, i + 1),
                (i,), [i], {"k": i}, dict(a=i), {i, i + 1}, frozenset((i, -i)), bytearray(b"x%d" % i),
                Plain(i), Slotted(i), range(i, i + 2), slice(i, i + 1)]
    return out


def fill_freelists():
    """Leaves every freelist as full as a running program does."""
    junk = [(x, x) for x in range(3000)] + [[x] for x in range(200)] + [{"a": x} for x in range(200)]
    junk += [float(x) for x in range(300)] + [slice(x, x + 1) for x in range(3)]
    del junk


def test_every_new_builtin_object_lands_in_the_region(r):
    fill_freelists()
    with r:
        objs = make_builtins(300)
    misses = [o for o in objs if region.region_of(o) is not r]
    assert misses == [], f"{len(misses)} of {len(objs)} not in the region, e.g. {misses[:5]}"
    assert len(objs) == 300 * 17


def test_objects_made_after_the_block_never_reuse_region_memory(r):
    with r:
        objs = make_builtins(200)
    del objs            # region objects die: their memory must not go onto a freelist
    fill_freelists()
    fresh = make_builtins(200)
    assert [o for o in fresh if region.region_of(o) is not None] == []


def test_objects_made_before_the_block_stay_outside(r):
    before = make_builtins(10)
    with r:
        pass
    assert all(region.region_of(o) is None for o in before)


def test_buffers_grown_in_a_block_follow_their_object(r):
    outside = []
    with r:
        inside = []
        for i in range(10000):
            inside.append(i)
            outside.append(i)       # realloc of an ordinary buffer stays ordinary (by pointer)
    assert region.region_of(inside) is r and region.region_of(outside) is None
    outside.extend(range(10000))   # the hook reallocates it outside the region: still works
    inside.extend(range(10000))    # a region buffer grows inside its region after the block too
    assert sum(inside) == sum(outside)


def test_blocks_nest_and_reenter(r):
    other = region.region("other")
    with r:
        a = []
        with other:
            b = []
            with r:
                c = []
            d = []
        e = []
    assert [region.region_of(x) for x in (a, b, c, d, e)] == [r, other, r, other, r]
    assert region.current() is None and not r.active


def test_block_is_per_thread(r):
    made = {}

    def worker():
        made["other"] = [[i] for i in range(1000)]

    with r:
        t = threading.Thread(target=worker)
        t.start()
        t.join()
        mine = [[i] for i in range(1000)]
    assert all(region.region_of(x) is r for x in mine)
    assert all(region.region_of(x) is None for x in made["other"])
    assert region.region_of(made["other"]) is None


def test_threads_share_a_region_by_taking_turns(r):
    with r:
        r.root = []
    r.release()

    def worker():
        with r.ownership(timeout=10):
            with r:
                r.root.append([{"t": i} for i in range(500)])

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert r.acquire(timeout=5)
    assert len(r.root) == 4
    assert all(region.region_of(d) is r for lst in r.root for d in lst)


def test_exception_inside_block_closes_it(r):
    with pytest.raises(KeyError):
        with r:
            kept = [1000, 2000]
            raise KeyError("boom")
    assert region.current() is None
    assert region.region_of(kept) is r
    assert region.region_of([]) is None


def test_semantics_unchanged_inside_a_block(r):
    import json

    def workload():
        doc = json.dumps({"users": [{"id": i, "tags": ["a", "b"], "score": i / 3} for i in range(200)]})
        data = json.loads(doc)
        data["users"].sort(key=lambda u: -u["score"])
        gen = (u["id"] for u in data["users"] if u["id"] % 3)
        return doc, data, sum(gen), sorted({u["id"] % 7 for u in data["users"]}), repr(Slotted(5).b)

    expected = workload()
    with r:
        got = workload()
    assert got == expected
    assert region.region_of(got[1]) is r


def test_block_depth_limit_is_a_clear_error(r):
    opened = 0
    with pytest.raises(region.RegionError, match="blocks are already open"):
        try:
            while True:
                r.__enter__()
                opened += 1
        finally:
            for _ in range(opened):
                r.__exit__(None, None, None)
    assert opened == 64 and region.current() is None


def test_exit_without_enter_is_an_error(r):
    with pytest.raises(region.RegionError, match="no block of it is open in this interpreter"):
        r.__exit__(None, None, None)


def test_freelists_put_aside_during_blocks_come_back_intact(r):
    # Ordinary code fills the freelists, blocks open and close around churn and full collections;
    # afterwards ordinary objects still come from ordinary memory and nothing is corrupted.
    for round_ in range(50):
        fill_freelists()
        with r:
            inside = make_builtins(5)
            if round_ % 10 == 0:
                gc.collect()          # clears the (empty) freelists while the real ones are put aside
            junk = [(i, i) for i in range(100)] + [[i] for i in range(100)]
            del junk
        assert all(region.region_of(o) is r for o in inside)
        outside = make_builtins(5)
        assert all(region.region_of(o) is None for o in outside)
    gc.collect()



NESTS = {"tuple": lambda inner: (inner,), "list": lambda inner: [inner], "dict": lambda inner: {"k": inner}}


@pytest.mark.parametrize("kind", sorted(NESTS))
@pytest.mark.parametrize("where", ["ordinary heap", "region"])
def test_deep_nests_of_the_wrapped_types_are_freed_through_the_trashcan(r, kind, where):
    """The deallocator wrappers of tuple, list and dict run CPython's trashcan themselves (with its test
    read inline: cpython/internals.c): a nest far deeper than the C stack could take as one chain of
    deallocator calls is freed without a crash, whether its objects are ordinary or a region's."""
    wrap = NESTS[kind]
    nest = None
    with (r if where == "region" else contextlib.nullcontext()):
        for _ in range(300_000):
            nest = wrap(nest)
        if where == "region":
            assert region.region_of(nest) is r
    del nest                           # one decref frees 300,000 objects, each from its container's dealloc
    gc.collect()


# ---- A block ends where its `with` ends (issue 14, 6) ----

def _suspended_in_a_block(r):
    def gen():
        with r:
            yield [0]
            yield [1]
    g = gen()
    assert next(g) == [0]
    return g


def test_a_generator_finished_on_another_thread_ends_its_block(r):
    """The block opened in this thread, exited in another: it no longer places this thread's objects
    (it did, silently, for good)."""
    g = _suspended_in_a_block(r)
    assert region.current() is r
    done = []
    t = threading.Thread(target=lambda: done.append(list(g)))
    t.start()
    t.join()
    assert done == [[[1]]]
    assert region.current() is None
    assert region.region_of([1, 2]) is None
    assert r.stats()["blocks_open"] == 0


def test_a_block_whose_thread_ended_detaches_and_exits_later(r):
    """A thread starts the generator (the block opens there) and ends; the block places nothing more,
    and finishing the generator here exits it without an error."""
    r.release()
    holder = []

    def start():
        r.acquire()
        holder.append(_suspended_in_a_block(r))

    t = threading.Thread(target=start)
    t.start()
    t.join()
    g = holder.pop()
    assert region.current() is None and region.region_of([1]) is None
    with pytest.raises(region.OwnershipError):   # the ended thread still owns r (it never released)
        r.stats()
    assert list(g) == [[1]]                      # the detached block exits here, no RegionError


# ---- region.outside() and imports (issue 14, 5) ----

def test_outside_allocates_in_the_ordinary_heap_inside_a_block(r):
    with r:
        inside = [1, 2]
        with region.outside():
            assert region.current() is None and not r.active
            kept = {"cache": [3, 4]}
        again = [5]
        r.root = [inside, again]
    assert region.region_of(inside) is r and region.region_of(again) is r
    assert region.region_of(kept) is None and region.region_of(kept["cache"]) is None
    with region.outside():                       # without a block: nothing to suspend, no harm
        assert region.region_of([0]) is None
    with pytest.raises(region.RegionError, match="region.outside\\(\\) is not in effect"):
        region._region._resume()


def test_a_module_imported_first_inside_a_block_lives_outside(r, tmp_path, monkeypatch):
    """A module is process-lifetime state: imported (or reloaded) in a block it must not pin the
    region (before: every object of the module was a region object held by sys.modules)."""
    (tmp_path / "made_in_block.py").write_text("TABLE = {str(i): [i] for i in range(100)}\n"
                                               "def lookup(key):\n    return TABLE[key]\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    import importlib
    with r:
        module = importlib.import_module("made_in_block")
        value = module.lookup("7")
        importlib.reload(module)
        r.root = [value]
    assert region.region_of(module) is None and region.region_of(module.TABLE) is None
    assert region.region_of(module.lookup) is None and region.region_of(module.__name__) is None
    assert region.region_of(value) is None        # an object of the module, not a copy
    r.close()
    assert module.lookup("7") == [7]
