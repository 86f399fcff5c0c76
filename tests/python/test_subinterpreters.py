"""Ownership across subinterpreters that share the main interpreter's GIL (3.11 and 3.12's
_xxsubinterpreters, 3.13's _interpreters; tests/python/subinterp.py): a region built in one interpreter is
released, adopted by id and acquired in another, read and changed there, and handed back - the
very same objects, no copy, no pickle.  Also: what may cross (classes may not), the end of an
interpreter that owns a region, and every non-owner access raising in either direction."""
import re
import sys
import textwrap
import threading

import pytest

import region
from conftest import needs_debug_build, refcount_growth, run_python

interpreters = pytest.importorskip("subinterp")
Sub = interpreters.Sub


@pytest.fixture
def sub():
    s = Sub()
    yield s
    s.destroy()


CHECKSUM, checksum, build, ACCESS = interpreters.CHECKSUM, interpreters.checksum, interpreters.build, interpreters.ACCESS


def test_hand_a_graph_to_a_subinterpreter_and_take_it_back(r, sub):
    build(r)
    before = checksum(r.root)
    item_ids = [id(d) for d in r.root["items"]]
    r.release()
    sub.run(CHECKSUM + """
mine = region.adopt(rid)
with mine.ownership(timeout=5):
    root = mine.root
    seen = checksum(root)
    ids = [id(d) for d in root["items"]]
    root["counter"] += 1
    with mine:   # new objects made in the subinterpreter go to the region
        root["items"].append({"k": 1000, "v": [1, 2], "s": "made in the sub"})
        root["items"][0]["v"] = [0, 2]
    del root
""" + sub.send("(seen, ids)"), rid=r.id)
    seen, ids = eval(sub.result())
    assert seen == before
    assert ids == item_ids                       # the very same objects: nothing was copied
    assert r.acquire(timeout=5)
    root = r.root
    assert root["counter"] == 1 and root["items"][-1]["s"] == "made in the sub"
    assert region.region_of(root["items"][-1]) is r and region.region_of(root["items"][0]["v"]) is r
    assert checksum(root) == before + 1 + 1 + (1000 + 3 + len("made in the sub"))
    del root
    assert r.check() is None


def test_adopt_returns_the_same_region_object_in_every_interpreter(r, sub):
    r.release()
    sub.run("mine = region.adopt(rid)\n" + sub.send("(id(mine), mine.id, mine.name, mine.owned)"), rid=r.id)
    assert eval(sub.result()) == (id(r), r.id, r.name, False)


def test_ping_pong_of_10000_transfers_between_two_interpreters(r, sub):
    """The main interpreter and a subinterpreter (run by a second thread) take turns on the region
    10,000 times, checking the whole graph at every step."""
    interpreters.ping_pong(r, sub, rounds=10_000)


@pytest.mark.parametrize("what", ACCESS)
def test_every_access_from_another_interpreter_raises(r, sub, what):
    interpreters.access_refused(r, sub, what)


def test_main_cannot_touch_a_region_the_subinterpreter_owns(r, sub):
    interpreters.main_refused_while_sub_owns(r, sub)
    assert r.acquire(timeout=0) is False
    sub.run("mine.release()")
    assert r.acquire(timeout=5)


def test_timeouts_across_interpreters(r, sub):
    build(r)
    sub.run("""
import time
mine = region.adopt(rid)
start = time.monotonic()
got = mine.acquire(timeout=0.1)
waited = time.monotonic() - start
try:
    with mine.ownership(timeout=0.05):
        pass
except TimeoutError as e:
    timeout_error = str(e)
""" + sub.send("(got, waited, timeout_error)"), rid=r.id)
    got, waited, timeout_error = eval(sub.result())
    assert got is False and waited >= 0.09
    assert "could not acquire region 'test'" in timeout_error


def test_a_wait_without_timeout_for_a_region_the_thread_owns_elsewhere_is_refused(r, sub):
    """The calling thread owns r in the main interpreter, so a wait for it in the subinterpreter (run
    by the same thread) could never end: OwnershipError, where a timed wait says False."""
    build(r)
    sub.run("""
mine = region.adopt(rid)
try:
    mine.acquire()
except region.OwnershipError as e:
    refused = str(e)
""" + sub.send("refused"), rid=r.id)
    assert re.search(r"acquire: the calling thread owns region 'test' \(id \d+\) already, in interpreter 0: "
                     r"release it there first", eval(sub.result()))
    assert r.owned


RELEASE_REFUSED = {
    "incoming": ("kept = mine.root['items'][5]", "incoming"),
    "outgoing": ("outside = []\nmine.root['items'][5]['v'] = outside", "outgoing"),
    "cross": ("other = region.region('other')\nwith other:\n    mine.root['x'] = [1]\n"
              "mine.root['items'][5]['v'] = mine.root.pop('x')", "cross"),
}


@pytest.mark.parametrize("kind", RELEASE_REFUSED)
def test_release_in_a_subinterpreter_is_refused_with_each_kind_of_escape(r, sub, kind):
    build(r)
    r.release()
    setup, expected = RELEASE_REFUSED[kind]
    sub.run(f"""
mine = region.adopt(rid)
mine.acquire()
{setup}
try:
    mine.release()
except region.IsolationError as e:
    result = (str(e), [o.kind for o in e.offenders], mine.owned)
""" + sub.send("result"), rid=r.id)
    message, kinds, still_owned = eval(sub.result())
    assert expected in kinds and still_owned, message
    assert "root['items'][5]" in message


class Point:
    def __init__(self, x):
        self.x = x


def test_a_region_that_refers_to_main_classes_stays_in_main(r, sub):
    with r:
        r.root = [Point(i) for i in range(3)]
    r.release()
    sub.run("""
mine = region.adopt(rid)
try:
    mine.acquire()
except region.IsolationError as e:
    result = (str(e), [o.path for o in e.offenders], mine.owned)
""" + sub.send("result"), rid=r.id)
    message, paths, owned = eval(sub.result())
    assert "cannot be acquired in interpreter" in message and "refer to classes of interpreter 0" in message
    assert "class test_subinterpreters.Point" in message and sorted(paths) == [f"root[{i}].__class__" for i in range(3)]
    assert owned is False
    assert r.acquire(timeout=0)      # still free for the main interpreter
    assert [p.x for p in r.root] == [0, 1, 2]


def test_a_region_that_refers_to_subinterpreter_classes_comes_back_when_it_ends(r, sub):
    build(r)
    r.release()
    sub.run("""
class Q:
    def __del__(self):
        pass
mine = region.adopt(rid)
with mine.ownership():
    with mine:
        q = Q()
        q.v = 5
        mine.root["q"] = q
    del q
""", rid=r.id)
    with pytest.raises(region.IsolationError, match=r"(?s)cannot be acquired in interpreter 0.*root\['q'\]\.__class__ "
                                                    r"refers to class __main__\.Q"):
        r.acquire()
    assert not r.owned
    sub.destroy()                # nobody can use Q in its own interpreter any more
    assert r.acquire(timeout=0)
    q = r.root["q"]
    assert q.v == 5 and type(q).__name__ == "Q"
    del q
    del r.root["q"]              # Q's finalizer runs here, in the main interpreter
    assert r.collect() >= 0 and r.check() is None


def test_an_interpreter_that_ends_owning_a_region_leaves_it_unowned(r, sub):
    build(r)
    before = checksum(r.root)
    r.release()
    sub.run("""
mine = region.adopt(rid)
mine.acquire()
with mine:
    mine.root["from_sub"] = {"made": "in the sub", "n": [1, 2, 3]}
kept = mine.root["items"]          # a module global of the subinterpreter refers into the region
mine.__enter__()                   # a block entered by hand and never exited
""", rid=r.id)
    with pytest.raises(region.OwnershipError, match="owned by a thread of interpreter"):
        r.root
    sub.destroy()
    assert r.acquire(timeout=0)
    assert r.root["from_sub"] == {"made": "in the sub", "n": [1, 2, 3]}
    assert region.region_of(r.root["from_sub"]) is r
    assert checksum(r.root) == before
    assert r.check() is None         # the subinterpreter's reference died with it
    assert r.stats()["blocks_open"] == 0
    with r:
        r.root["after"] = [4]
    r.close()


def test_an_interpreter_that_ends_in_its_owners_thread_lets_the_pages_go(r, sub):
    """The subinterpreter owns r in a worker thread, fills it there and ends in that thread, which
    lives on: its end lets that thread's pages of r go, as release() does (ownership.c,
    ownership_abandon).  So when the next owner frees everything, the worker's thread holds none of
    r's pages: the count is the same before and after that thread ends.  Before, its pages stayed
    with it, counted in r and unused, until it ended (6 pages here), and the blocks freed in them
    waited on their thread-free lists for a thread that would not collect them."""
    r.release()
    ended, done = threading.Event(), threading.Event()
    failures = []

    def worker():
        try:
            sub.run("""
mine = region.adopt(rid)
mine.acquire()
with mine:
    mine.root = [[i, str(i) * 3, {"k": i}] for i in range(50)]
""", rid=r.id)
            sub.destroy()
        except BaseException as e:   # the main thread's assertions say what went wrong
            failures.append(e)
        ended.set()
        done.wait(30)                # a worker thread that goes on living, as a pool's would

    thread = threading.Thread(target=worker)
    thread.start()
    try:
        assert ended.wait(30) and not failures
        assert r.acquire(timeout=5)
        assert len(r.root) == 50 and r.root[-1][2] == {"k": 49}
        r.root = None
        while_it_lives = r.stats()
        assert while_it_lives["blocks"] == 0
    finally:
        done.set()
        thread.join()
    assert r.stats()["pages"] == while_it_lives["pages"]   # its exit had nothing of r left to give back
    assert r.check() is None
    r.close()


def test_a_region_made_in_a_subinterpreter_outlives_it(sub):
    sub.run("""
made = region.region("made in sub")
with made:
    made.root = {"n": list(range(10))}
made.release()
""" + sub.send("made.id"))
    rid = eval(sub.result())
    mine = region.adopt(rid)
    sub.destroy()
    assert mine.acquire(timeout=0)
    assert mine.root == {"n": list(range(10))} and mine.name == "made in sub"
    mine.close()


def test_subinterpreter_collects_its_region(sub):
    sub.run("""
made = region.region("cycles")
with made:
    for i in range(100):
        a = []
        a.append(a)
    del a
    made.root = [1]
collected = made.collect()
""" + sub.send("(collected, made.check())"))
    assert eval(sub.result()) == (100, None)


def test_adopt_of_an_unknown_id_in_a_subinterpreter(sub):
    sub.run("""
try:
    region.adopt(123456789)
except region.RegionError as e:
    result = str(e)
""" + sub.send("result"))
    assert "no open region has this id" in eval(sub.result())


def test_importing_in_a_subinterpreter_first_is_refused():
    result = run_python("""
        import subinterp as interpreters
        sub = interpreters.create()
        try:
            interpreters.run_string(sub, "import region")
        except interpreters.RunFailed as e:
            print(e)
    """)
    assert "must be imported in the main interpreter before a subinterpreter" in result.stdout, result.stderr


def test_allocations_of_a_subinterpreter_run_inside_a_main_block_are_not_placed(r, sub):
    with r:
        sub.run("x = [[i] for i in range(10)]\n" + sub.send("region.region_of(x) is None"))
        r.root = [1]
    assert eval(sub.result()) is True
    assert r.check() is None


@needs_debug_build
def test_transfers_between_interpreters_do_not_leak(r, sub):
    build(r, 20)
    sub.run("mine = region.adopt(rid)\n", rid=r.id)

    def transfer():
        r.release()
        sub.run("mine.acquire()\nmine.root['counter'] += 1\nmine.release()\n")
        r.acquire()

    assert refcount_growth(transfer) < 20


def test_interpreters_that_ended_free_their_place(r):
    """Each interpreter that imports region takes one of 64 places; its end gives it back."""
    build(r, 10)
    r.release()
    for _ in range(80):
        s = Sub()
        s.run("mine = region.adopt(rid)\nwith mine.ownership():\n    mine.root['counter'] += 1\n", rid=r.id)
        s.destroy()
    assert r.acquire(timeout=0) and r.root["counter"] == 80


def test_too_many_interpreters_at_once_are_refused_clearly():
    result = run_python("""
        import region, subinterp as interpreters
        subs = []
        for i in range(70):
            sub = interpreters.create()
            subs.append(sub)
            try:
                interpreters.run_string(sub, "import region")
            except interpreters.RunFailed as e:
                print(i, e)
                break
        for sub in subs:
            interpreters.destroy(sub)
        print("done")
    """)
    assert "63 <class 'region.RegionError'>: cannot use regions in interpreter" in result.stdout, result.stdout + result.stderr
    assert "64 interpreters already do" in result.stdout and "done" in result.stdout


def test_exit_with_a_subinterpreter_that_owns_a_region_is_clean():
    result = run_python("""
        import region, subinterp as interpreters
        r = region.region("left")
        with r:
            r.root = {"a": [1, 2, 3]}
        r.release()
        sub = interpreters.create()
        interpreters.run_string(sub, "import region\\nmine = region.adopt(rid)\\nmine.acquire()\\n"
                                     "x = mine.root\\n", shared={"rid": r.id})
        print("exiting")
    """)
    assert result.returncode == 0 and result.stdout.strip() == "exiting", result.stderr


def test_a_subinterpreter_cannot_exit_a_block_the_main_interpreter_opened(r, sub):
    with r:
        sub.run("""
mine = region.adopt(rid)
try:
    mine.__exit__(None, None, None)
except region.RegionError as e:
    result = str(e)
""" + sub.send("result"), rid=r.id)
        assert r.active
    message = eval(sub.result())
    assert "cannot exit region 'test'" in message and "no block of it is open in this interpreter" in message


@pytest.mark.skipif(sys.version_info < (3, 12), reason="interpreters with their own GIL exist from CPython 3.12")
def test_regions_work_while_an_interpreter_with_its_own_gil_runs_in_parallel():
    """The allocator hook and the freelist wrappers are process-wide, so an own-GIL interpreter that
    does not use regions runs them in parallel with the main interpreter's region work: neither may
    disturb the other (the keys guard is left alone by interpreters that never attached)."""
    sub = interpreters.create_isolated()
    errors = []

    def churn():
        try:
            interpreters.run_string(sub, textwrap.dedent("""
                d = {}
                for i in range(400_000):
                    d[i % 1000] = {"k": (i, str(i)), "l": [i, float(i)]}
                assert len(d) == 1000 and d[999]["k"][0] % 1000 == 999
            """))
        except BaseException as e:  # noqa: BLE001 - reported by the test
            errors.append(e)

    thread = threading.Thread(target=churn)
    thread.start()
    try:
        rounds = 0
        while thread.is_alive() or rounds < 20:
            r = region.region(f"parallel-{rounds}")
            with r:
                r.root = [{"k": i, "s": str(i), "t": (i, [i])} for i in range(2000)]
            placed = region.region_of(r.root[1999]["t"][1]) is r
            assert placed
            assert r.check() is None
            assert sum(d["k"] for d in r.root) == 1999 * 2000 // 2
            r.close()
            rounds += 1
    finally:
        thread.join()
        interpreters.destroy(sub)
    assert not errors, errors


def test_a_block_a_subinterpreter_left_open_is_not_the_main_interpreters(r, sub):
    """A subinterpreter's run_string opens a block of its own region and returns without closing it:
    region.current() in main does not report it, and main's own block still places main's objects
    (issue 14, 6)."""
    with r:
        sub.run("theirs = region.region('theirs')\ntheirs.__enter__()\n"
                + sub.send("region.current() is theirs"))
        assert eval(sub.result()) is True
        assert region.current() is r             # main's innermost block, not the subinterpreter's
        made = [[i] for i in range(10)]
        assert region.region_of(made) is r and all(region.region_of(x) is r for x in made)
        r.root = made
    assert region.current() is None
    made = [1, 2]
    assert region.region_of(made) is None
    sub.run("theirs.__exit__(None, None, None)\n" + sub.send("region.current()"))
    assert sub.result() == "None"
