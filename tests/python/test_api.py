"""The Region object, the module functions, the exceptions, and every misuse."""
import pytest

import region
from conftest import run_python


def test_exception_hierarchy():
    assert issubclass(region.RegionError, RuntimeError)
    for exc in (region.IsolationError, region.OwnershipError, region.HandleError):
        assert issubclass(exc, region.RegionError)
    assert region.RegionError.__module__ == "region"


def test_region_defaults_and_repr():
    r = region.region()
    assert r.name.startswith("region-") and r.node is None and r.root is None
    assert r.owned and not r.active
    text = repr(r)
    assert r.name in text and "node=any" in text and "bytes=" in text


def test_named_region_on_node_0():
    r = region.region("cache", node=0)
    assert r.node == 0 and "node=0 (preferred)" in repr(r)
    with r:
        r.root = [[i] for i in range(1000)]
    census = r.census()
    assert census["present"] > 0 and census["nodes"].get(0, 0) == census["present"]


def test_stats_keys(r):
    import gc
    gc.disable()   # an automatic full collection in the block would take r along (collections == 1)
    try:
        with r:
            r.root = {"a": [[i] for i in range(1000)]}
    finally:
        gc.enable()
    s = r.stats()
    for key in ("objects", "bytes", "pages", "node", "collections", "tracked", "handles", "name", "id"):
        assert key in s
    assert s["objects"] >= 1002 and s["bytes"] > 0 and s["pages"] > 0 and s["tracked"] >= 1000
    assert s["collections"] == 0 and s["node"] is None


def test_ids_are_unique_ints():
    a, b = region.region(), region.region()
    assert isinstance(a.id, int) and a.id != b.id


def test_bad_arguments():
    with pytest.raises(TypeError):
        region.region(5)
    with pytest.raises(ValueError, match="NUMA node"):
        region.region(node=-1)
    with pytest.raises(ValueError, match="binding must be"):
        region.region(node=0, binding="loose")
    with pytest.raises(ValueError, match="needs a node"):
        region.region(binding="strict")
    with pytest.raises(TypeError):
        region.region("x", 0)        # node is keyword-only


def test_missing_node_is_a_clear_error():
    with pytest.raises(region.RegionError, match="node 999"):
        region.region(node=999)


def test_a_wrong_region_commit_is_a_clear_error():
    """REGION_COMMIT (include/region.h) is read at the process's first region: a wrong value is an
    error naming it, and once it is fixed the next region is made."""
    result = run_python("""
        import os, region
        try:
            region.region()
        except region.RegionError as e:
            print(e)
        del os.environ["REGION_COMMIT"]
        region.region().close()
        print("made")
    """, env={"REGION_COMMIT": "lazy"})
    assert result.returncode == 0, result.stderr
    assert "REGION_COMMIT=lazy" in result.stdout and "on-demand" in result.stdout
    assert result.stdout.splitlines()[-1] == "made"


def test_current_and_active(r):
    assert region.current() is None
    with r as entered:
        assert entered is r and region.current() is r and r.active
    assert region.current() is None


def test_owns(r):
    with r:
        x = [1]
    assert r.owns(x) and not r.owns([1])


def test_weakref_to_region(r):
    import weakref

    assert weakref.ref(r)() is r


def test_region_objects_survive_a_dropped_region():
    r = region.region()
    with r:
        data = {"k": [1, 2, 3]}
    del r
    assert data == {"k": [1, 2, 3]}
    data["k"].append(4)
    assert region.region_of(data) is None


def test_region_type_reads_its_arguments_as_its_signature_says():
    """Region() reads well-formed arguments directly and leaves the rest to CPython's parser (module.c,
    region_arguments): both paths give the same regions and the same errors."""
    assert region.Region("a", node=None, binding="preferred").name == "a"
    assert region.Region(name="b").name == "b"                  # by keyword: the parser's path
    assert region.Region().name.startswith("region-")
    with pytest.raises(TypeError, match="at most 1 positional argument"):
        region.Region("a", "b")
    with pytest.raises(TypeError, match="'colour'"):
        region.Region(colour="red")
    with pytest.raises(TypeError, match="must be a str or None, not int"):
        region.Region(1, binding="none")
    with pytest.raises(ValueError, match="binding must be"):
        region.Region(binding="loose")


def test_a_name_with_a_nul_character_is_refused():
    with pytest.raises(ValueError, match="must not contain a NUL character"):
        region.region("a\0b")
    assert region.region("a b").name == "a b"


@pytest.mark.parametrize("not_an_id", [True, False, 1.0, "1", None])
def test_adopt_takes_ints_only(not_an_id):
    with pytest.raises(TypeError, match="adopt\\(\\) takes a region id"):
        region.adopt(not_an_id)


def test_thousands_of_live_regions_each_keep_their_own_objects():
    """Regions share arenas (docs/design.md, "Many regions"): 5,000 open at once, each holding its own
    objects, each object found in its own region, and every one closed."""
    live = []
    for i in range(5000):
        r = region.region(f"many-{i}")
        with r:
            r.root = [i, {"i": i}]
        live.append(r)
    for i, r in enumerate(live):
        assert region.region_of(r.root) is r and region.region_of(r.root[1]) is r
        assert r.root == [i, {"i": i}]
    assert len({r.id for r in live}) == len(live)
    for r in live:
        r.close()
    with pytest.raises(region.RegionError, match="closed"):
        live[0].root
