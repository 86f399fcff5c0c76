"""r.check(): every escape is reported, precisely; shared immutable objects are not escapes."""
import gc

import pytest

import region

OUTSIDE = []          # a mutable module global


class User:
    def __init__(self, name):
        self.name = name
        self.friends = []


class Slotted:
    __slots__ = ("peer",)


def build(r, n=5):
    with r:
        r.root = {"users": [User(f"user{i}") for i in range(n)], "config": {"depth": 3}}


def only_escape(r):
    with pytest.raises(region.IsolationError) as info:
        r.check()
    assert len(info.value.offenders) == 1, str(info.value)
    return info.value, info.value.offenders[0]


def test_isolated_region_passes(r):
    build(r)
    assert r.check() is None


def test_empty_region_passes(r):
    assert r.check() is None


def test_shared_immutables_are_not_escapes(r):
    n = 3
    with r:
        r.root = [None, True, False, 7, -5, 256, "interned", "", "é", (), b"", b"x", 2 ** 70, 1.5,
                  Ellipsis, NotImplemented, int, len.__class__, (1, "a", (2.5,)), frozenset({1})]
        r.root.append(str(n))   # a region object, referenced only by the root list
    assert r.check() is None


def test_incoming_from_a_global_names_path_type_and_holder(r):
    global HELD
    build(r)
    HELD = r.root["users"][3].friends
    try:
        error, escape = only_escape(r)
        assert escape.kind == "incoming" and escape.obj is HELD and escape.type == "list"
        assert escape.path == "root['users'][3].friends"
        assert escape.count == 1
        assert any("global 'HELD'" in h and "test_audit" in h for h in escape.holders)
        assert "root['users'][3].friends (list) is referenced from outside the region" in str(error)
        assert "region 'test'" in str(error)
        del error, escape
    finally:
        del HELD
    gc.collect()   # pytest's ExceptionInfo and the traceback form a cycle that holds the offenders
    assert r.check() is None


def test_incoming_from_a_local_variable(r):
    build(r)
    mine = r.root["config"]
    error, escape = only_escape(r)
    assert escape.path == "root['config']"
    assert any("local variable 'mine'" in h for h in escape.holders)
    del mine


def test_incoming_from_an_outside_container(r):
    build(r)
    holder = {"keep": r.root["users"][0]}
    error, escape = only_escape(r)
    assert escape.path == "root['users'][0]" and escape.type == "User"
    assert any("dict outside the region" in h and "['keep']" in h for h in escape.holders)
    holder.clear()


def test_object_made_in_a_block_but_only_held_outside(r):
    with r:
        r.root = []
        stray = [1, 2, 3]
    error, escape = only_escape(r)
    assert escape.obj is stray and "not reachable from root" in escape.path


def test_outgoing_reference_to_a_mutable_outside_object(r):
    build(r)
    r.root["users"][1].friends.append(OUTSIDE)
    error, escape = only_escape(r)
    assert escape.kind == "outgoing" and escape.obj is OUTSIDE
    assert escape.path == "root['users'][1].friends[0]"
    assert "refers to a list outside every region" in str(error)
    r.root["users"][1].friends.clear()
    assert r.check() is None


def test_outgoing_through_an_outside_tuple(r):
    build(r)
    r.root["t"] = (1, OUTSIDE)     # the tuple is outside and holds a mutable object
    error, escape = only_escape(r)
    assert escape.kind == "outgoing" and escape.type == "tuple" and escape.path == "root['t']"


def test_cross_region_reference(r):
    other = region.region("other")
    with other:
        other.root = {"theirs": [1]}
    build(r)
    r.root["users"][2].friends.append(other.root["theirs"])
    error, escape = only_escape(r)
    assert escape.kind == "cross" and escape.obj is other.root["theirs"]
    assert "region 'other'" in str(error) and "handle" in str(error)


def test_handles_across_regions_are_not_escapes(r):
    other = region.region("other")
    with other:
        other.root = {"theirs": [1]}
    build(r)
    with r:
        r.root["link"] = other.handle(other.root["theirs"])
    # The Handle object itself was made inside r's block, so it is r's; it holds no reference.
    assert r.check() is None and other.check() is None


def test_slots_and_keys_in_paths(r):
    with r:
        s = Slotted()
        s.peer = [1]
        r.root = {("k", 1): s}
        key = str(len(r.root)) * 3
        r.root[key] = 1
    held = s.peer
    del s, key
    error, escape = only_escape(r)
    assert escape.path == "root[('k', 1)].peer"
    del held


def test_many_escapes_are_summarized(r):
    with r:
        r.root = [[i] for i in range(100)]
    held = list(r.root)
    with pytest.raises(region.IsolationError) as info:
        r.check()
    assert "100 escapes" in str(info.value) and "... and 50 more" in str(info.value)
    assert len(info.value.offenders) == 50
    del held


def test_root_must_be_an_object_of_the_region(r):
    with pytest.raises(region.IsolationError, match="not in the region"):
        r.root = [1, 2]
    other = region.region("other")
    with other:
        theirs = [1]
    with pytest.raises(region.IsolationError, match="belongs to region 'other'"):
        r.root = theirs
    r.root = None
    assert r.root is None


def test_reading_attributes_outside_a_block_changes_nothing(r):
    build(r)
    user = r.root["users"][2]
    vars(user)                        # materializes the instance's __dict__, outside the region
    user.extra = [1]                  # and the list is made outside too: that one is an escape
    del user
    error, escape = only_escape(r)
    assert escape.kind == "outgoing" and escape.path == "root['users'][2].extra"


def test_global_containers_growing_in_a_block(r):
    table = {}
    lst = []
    with r:
        for i in range(1000):
            table[f"k{i}"] = i * 1000
            lst.append(i * 1000)
    del i
    assert sum(table.values()) == sum(lst)
    # The values were created in the block: region objects held from outside.
    with pytest.raises(region.IsolationError):
        r.check()
    table.clear()
    lst.clear()
    assert r.check() is None


def test_garbage_is_counted_not_reported(r):
    with r:
        r.root = []
        a, b = [], []
        a.append(b), b.append(a)     # a garbage cycle once the names are gone
        a.append(OUTSIDE)           # held by garbage only: not reported
        kept = [1]
    del a, b
    error, escape = only_escape(r)
    assert escape.obj is kept
    assert "2 of them unreachable garbage" in str(error)
    del kept, error, escape
    gc.collect()
    assert r.check() is None


def test_ranges_and_strings_made_in_a_block(r):
    n = 1000
    with r:
        r.root = [range(n, n * 2, n // 100)]      # the range's ints are region objects it holds
        loose = "x" * n                          # a str only a global-like name holds
    error, escape = only_escape(r)
    assert escape.obj is loose and escape.type == "str"
    del loose, error, escape
    gc.collect()
    assert r.check() is None
