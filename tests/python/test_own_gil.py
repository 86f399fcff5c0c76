"""Regions in interpreters with a GIL of their own (CPython 3.12+): such an interpreter imports the
package with its own Region type and exceptions, adopts a region by id as a Region object of its
own, and takes turns with the main interpreter on the same objects - in parallel, under two GILs.
Only immortal objects outside the region may go with it from one GIL to another: a reference to a
mortal one (a float constant, a class) keeps the region under its GIL (IsolationError naming the
path).  docs/python.md, "Interpreters with their own GIL"."""
import sys
import threading

import pytest

import region
from conftest import run_python

interpreters = pytest.importorskip("subinterp")

pytestmark = pytest.mark.skipif(sys.version_info < (3, 12),
                                reason="interpreters with their own GIL exist from CPython 3.12")


@pytest.fixture
def sub():
    s = interpreters.Sub(isolated=True)
    yield s
    s.destroy()


CHECKSUM, checksum, build, ACCESS = interpreters.CHECKSUM, interpreters.checksum, interpreters.build, interpreters.ACCESS

# Run in a subinterpreter: adopt the region `rid` and try to acquire it; `refused` is the message.
TRY_ACQUIRE = """
mine = region.adopt(rid)
try:
    mine.acquire()
except region.IsolationError as e:
    refused = str(e)
"""


def test_the_package_has_its_own_types_and_exceptions_there(sub):
    sub.run("""
mine = region.region("made there")
with mine:
    mine.root = [str(i) for i in range(10)]
try:
    region.adopt(10**12)
except region.RegionError as e:
    error = type(e).__name__
""" + sub.send("(id(region.Region), id(region.RegionError), id(region.OwnershipError), error, "
               "region.region_of(mine.root) is mine, mine.check())"))
    region_type, region_error, ownership_error, error, placed, check = eval(sub.result())
    assert region_type != id(region.Region)
    assert region_error != id(region.RegionError) and ownership_error != id(region.OwnershipError)
    assert error == "RegionError" and placed and check is None


def test_hand_a_graph_to_an_interpreter_with_its_own_gil_and_take_it_back(r, sub):
    build(r)
    before = checksum(r.root)
    ids = [id(d) for d in r.root["items"]]
    r.release()
    sub.run(CHECKSUM + """
mine = region.adopt(rid)
assert mine.acquire(timeout=5)
seen = (checksum(mine.root), [id(d) for d in mine.root["items"]], mine.owned)
with mine:
    mine.root["items"].append({"k": int("1000"), "v": [1, 2], "s": "made" + str(1)})
    mine.root["counter"] += 7
mine.release()
""" + sub.send("seen"), rid=r.id)
    sum_there, ids_there, owned_there = eval(sub.result())
    assert sum_there == before and ids_there == ids and owned_there   # the same objects, no copy
    assert r.acquire(timeout=5)
    assert checksum(r.root) == before + 1000 + 3 + 5 + 7
    assert region.region_of(r.root["items"][-1]) is r
    assert r.check() is None


def test_each_gil_has_its_own_region_object_for_a_region(r, sub):
    r.release()
    sub.run("a = region.adopt(rid)\n" + sub.send("(id(a), a is region.adopt(rid), a.id, a.name, a.owned)"),
            rid=r.id)
    other, same_there, rid, name, owned = eval(sub.result())
    assert other != id(r) and same_there
    assert (rid, name, owned) == (r.id, r.name, False)
    assert region.adopt(r.id) is r


def test_ping_pong_of_10000_transfers_across_two_gils(r, sub):
    """The main interpreter and an interpreter with its own GIL (run by a second thread, in parallel)
    take turns on the region 10,000 times, checking the whole graph at every step."""
    interpreters.ping_pong(r, sub, rounds=10_000)


def test_constants_of_the_code_go_along_as_equal_copies(r, sub):
    with r:
        r.root = {"price": 1.5, "label": "not interned!", "big": 10**20, "raw": b"bytes", "row": [2.5, "a b"]}
    r.release()   # copies the mortal constants into the region: another GIL may take it now
    sub.run("""
mine = region.adopt(rid)
assert mine.acquire(timeout=5)
root = mine.root
seen = repr((root["price"], root["label"], root["big"], root["raw"], root["row"],
             all(region.region_of(v) is mine for v in (root["price"], root["label"], root["big"], root["raw"],
                                                        root["row"][0], root["row"][1]))))
del root
mine.release()
""" + sub.send("seen"), rid=r.id)
    assert eval(eval(sub.result())) == (1.5, "not interned!", 10**20, b"bytes", [2.5, "a b"], True)


def test_what_cannot_be_copied_keeps_the_region_under_its_gil(r, sub):
    with r:
        r.root = {"tags": frozenset(["x-y", "z w"])}   # a frozenset's members are not copied
    r.release()
    sub.run(TRY_ACQUIRE + sub.send("(refused, mine.owned)"), rid=r.id)
    refused, owned = eval(sub.result())
    assert not owned
    assert "cannot be acquired in interpreter" in refused and "runs under another GIL" in refused
    assert "refers to a str outside every region that is not immortal" in refused
    assert r.acquire(timeout=0)                              # it stayed free for its own GIL
    with r:
        r.root["tags"] = frozenset("".join(["x", "-y"]) for _ in range(1))   # members made in the block
    r.release()
    sub.run("assert mine.acquire(timeout=5)\ntags = repr(sorted(mine.root['tags']))\nmine.release()\n"
            + sub.send("tags"))
    assert eval(sub.result()) == "['x-y']"


def test_what_the_other_gil_stores_comes_back_as_copies(r, sub):
    build(r, 10)
    r.release()
    sub.run("""
mine = region.adopt(rid)
mine.acquire()
mine.root["late"] = 12345.5     # outside a block: a constant of the subinterpreter's code
mine.root["items"][0]["note"] = "sub's literal"
mine.release()                  # copied into the region, keys too (3.13 interns them mortal)
""", rid=r.id)
    assert r.acquire(timeout=5)
    assert r.root["late"] == 12345.5 and r.root["items"][0]["note"] == "sub's literal"
    assert list(r.root) == ["items", "counter", "late"]                  # the keys kept their order
    key = next(k for k in r.root if k == "late")
    assert region.region_of(r.root["late"]) is r
    assert region.region_of(key) is r or region.is_shared(key)
    del key
    assert r.check() is None


def test_a_class_of_an_interpreter_with_its_own_gil_stays_there(r, sub):
    r.release()
    sub.run("""
class Point:
    def __init__(self, x): self.x = x
mine = region.adopt(rid)
mine.acquire()
with mine:
    mine.root = [Point(i) for i in range(3)]
mine.release()
""", rid=r.id)
    with pytest.raises(region.IsolationError, match=r"root\[0\]\.__class__ refers to class __main__\.Point"):
        r.acquire()


@pytest.mark.parametrize("what", ACCESS)
def test_every_access_from_another_gil_raises(r, sub, what):
    interpreters.access_refused(r, sub, what)


def test_a_handle_resolved_under_another_gil_raises(r, sub):
    build(r)
    h = r.handle(r.root["items"][3])
    r.release()
    sub.run("""
mine = region.adopt(rid)
mine.acquire()
h = mine.handle(mine.root["items"][4])
mine.release()
""", rid=r.id)
    with pytest.raises(region.OwnershipError):
        h()
    sub.run("mine.acquire()\n" + sub.send("(h()['k'], h.alive)"))
    assert eval(sub.result()) == (4, True)


def test_main_cannot_touch_a_region_the_other_gil_owns(r, sub):
    interpreters.main_refused_while_sub_owns(r, sub)
    assert r.acquire(timeout=0.05) is False
    assert "owned by another thread" in repr(r)
    sub.run("mine.release()")
    assert r.acquire(timeout=5)


def test_an_interpreter_with_its_own_gil_that_ends_owning_a_region_leaves_it_unowned(r, sub):
    build(r)
    before = checksum(r.root)
    r.release()
    sub.run("""
mine = region.adopt(rid)
mine.acquire()
with mine:
    mine.root["".join(["from", "_sub"])] = [i * 1000 for i in range(300, 303)]   # a key made here
mine.__enter__()                   # a block entered by hand and never exited
""", rid=r.id)
    sub.destroy()
    assert r.acquire(timeout=0)
    assert r.root["from_sub"] == [300000, 301000, 302000]
    assert checksum(r.root) == before
    assert r.check() is None
    assert r.stats()["blocks_open"] == 0
    r.close()


def test_a_region_left_with_a_mortal_reference_by_an_ended_interpreter_stays_refused(r, sub):
    r.release()
    sub.run("""
mine = region.adopt(rid)
mine.acquire()
with mine:
    mine.root = {"n": [1, 2]}
mine.root["n"].append(frozenset(["sub-made"]))   # the subinterpreter's, outside the region, not copied
""", rid=r.id)
    sub.destroy()                         # its end records what crosses, while it can still look
    with pytest.raises(region.IsolationError, match=r"root\['n'\]\[2\] refers to a frozenset"):
        r.acquire()


def test_regions_in_parallel_under_three_gils():
    """Two interpreters with their own GIL and the main interpreter build, check and close regions at
    the same time: the allocator hook, the keys guard and the binding's shared state under load."""
    subs = [interpreters.Sub(isolated=True) for _ in range(2)]
    errors = []
    work = """
for n in range(rounds):
    mine = region.region(f"parallel-{n}")
    with mine:
        mine.root = [{"k": i, "s": str(i), "t": (i, [i, float(i)])} for i in range(1000)]
    assert region.region_of(mine.root[999]["t"][1]) is mine
    assert mine.check() is None
    assert sum(d["k"] for d in mine.root) == 999 * 1000 // 2
    mine.close()
"""

    def run(s):
        try:
            s.run(work, rounds=150)
        except BaseException as e:  # noqa: BLE001 - reported by the test
            errors.append(repr(e))

    threads = [threading.Thread(target=run, args=(s,)) for s in subs]
    for t in threads:
        t.start()
    try:
        exec(work, {"region": region, "rounds": 150})
    finally:
        for t in threads:
            t.join()
        for s in subs:
            s.destroy()
    assert errors == []


def test_alive_of_a_handle_to_a_region_owned_under_another_gil_raises(r, sub):
    build(r)
    h = r.handle(r.root["items"][3])
    assert h.alive
    r.release()
    sub.run("mine = region.adopt(rid)\nassert mine.acquire(timeout=5)\n", rid=r.id)
    with pytest.raises(region.OwnershipError, match="owned by a thread under another GIL"):
        h.alive
    assert "region owned under another GIL" in repr(h)
    sub.run("mine.release()")
    assert h.alive                          # nobody owns it: its handle table stands still


def test_a_region_released_before_any_other_gil_used_regions_is_refused_without_a_report(r):
    with r:
        r.root = {"price": 1.5}
    r.release()                             # no interpreter with its own GIL yet: no audit, no report
    s = interpreters.Sub(isolated=True)
    try:
        s.run(TRY_ACQUIRE + s.send("refused"), rid=r.id)
        refused = eval(s.result())
    finally:
        s.destroy()
    assert "its report is missing" in refused and "release it again to record one" in refused
    assert r.acquire(timeout=0)


def test_too_many_interpreters_with_their_own_gil_are_refused_clearly():
    result = run_python("""
        import region, subinterp as interpreters
        subs = []
        for i in range(70):
            sub = interpreters.create_isolated()
            subs.append(sub)
            try:
                interpreters.run_string(sub, "import region")
            except interpreters.RunFailed as e:
                print(i, e)
                break
        for sub in subs:
            interpreters.destroy(sub)
        r = region.region("after")      # the main interpreter is unharmed
        with r:
            r.root = [1.5]
        print("done", r.check())
    """)
    assert "63 <class 'ImportError'>: cannot use regions in interpreter" in result.stdout, result.stdout + result.stderr
    assert "64 interpreters already do" in result.stdout and "done None" in result.stdout


def test_the_first_region_of_the_process_made_under_another_gil_while_main_allocates():
    """The allocator hook goes in when the process makes its first region (placement.c, ACTIVATION):
    here in an interpreter with its own GIL, while a thread of the main interpreter allocates and
    frees under the other GIL.  The hook's functions never read their ctx, so a thread that reads
    the new function with the old ctx (PyMem_SetAllocator writes them one by one) still calls the
    right allocator."""
    result = run_python("""
        import threading
        import region, subinterp
        from region import _region
        assert not _region._activated()
        stop = threading.Event()
        def churn():
            while not stop.is_set():
                rows = [{"k": (i, str(i)), "v": [i] * 3} for i in range(2000)]
                del rows
        thread = threading.Thread(target=churn)
        thread.start()
        sub = subinterp.Sub(isolated=True)
        sub.run('''
        mine = region.region("first of the process")
        with mine:
            mine.root = [{"k": (i, str(i)), "v": [i] * 3} for i in range(50000)]
        ok = region.region_of(mine.root[-1]["v"]) is mine and mine.check() is None
        mine.close()
        ''' + sub.send("ok"))
        placed = sub.result()
        stop.set()
        thread.join()
        assert placed == "True", placed
        assert not _region._activated()   # the hook is in; this interpreter's guards wait for its first region
        r = region.region()
        assert _region._activated()
        sub.destroy()
        print("ok")
    """)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"


# Builds, proves and closes a region of 4 MiB and more `rounds` times (run in either interpreter).
BIG_REGIONS = """
for _ in range(rounds):
    big = region.region("big")
    with big:
        big.root = [{"k": j, "s": str(j)} for j in range(60_000)]
    assert big.check() is None
    big.close()
    assert big.closed
"""


def test_big_regions_are_proven_under_two_gils_at_once(sub):
    """Both interpreters check and close regions big enough to split their scans at the same time, in
    parallel: one scan has libregion's helper thread, one finding it busy takes every page itself
    (region/helper.c).  Every check and close succeeds, and each one split."""
    from region import _region
    errors = []
    _region._scan_threads(2)
    splits = _region._scan_split()[1]

    def run_sub():
        try:
            sub.run(BIG_REGIONS, rounds=8)
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(repr(e))

    thread = threading.Thread(target=run_sub)
    thread.start()
    try:
        exec(BIG_REGIONS, {"region": region, "rounds": 8})
    finally:
        thread.join()
        _region._scan_threads(0)
    assert not errors, errors
    assert _region._scan_split()[1] >= splits + 2 * 2 * 8   # a check and a close a round, in each
