"""The Python API against a model (hypothesis' stateful testing): regions, blocks, objects, handles,
two threads taking and giving ownership, collect, check, release, close, adopt.

Each step is one call the model predicts exactly: what it returns, or which exception it raises.
Short in the test suite; the long run (10^6 steps) is

    REGION_STATEFUL_EXAMPLES=40000 REGION_STATEFUL_STEPS=50 \\
        PYTHONPATH=build/python:tests/python .venv/bin/python -m pytest -q -s tests/python/test_stateful.py

(docs/python.md, "Testing", gives the figures of the last long run).
"""
import os
import queue
import threading

import pytest
from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

import region

MAX_REGIONS = 4
EXAMPLES = int(os.environ.get("REGION_STATEFUL_EXAMPLES", "40"))
STEPS = int(os.environ.get("REGION_STATEFUL_STEPS", "40"))
RAN = {"sequences": 0, "steps": 0}   # what the run did: printed with -s at the end (the long run's figures)


class Helper:
    """A second thread that runs one call at a time for the test (the model's 'helper')."""

    def __init__(self):
        self.jobs, self.results = queue.Queue(), queue.Queue()
        self.thread = threading.Thread(target=self._loop, daemon=True)
        self.thread.start()

    def _loop(self):
        while True:
            job = self.jobs.get()
            if job is None:
                return
            try:
                self.results.put((True, job()))
            except BaseException as e:       # handed back to the test thread, which checks it
                self.results.put((False, e))

    def run(self, job):
        self.jobs.put(job)
        ok, value = self.results.get()
        if not ok:
            raise value
        return value

    def stop(self):
        self.jobs.put(None)
        self.thread.join()


class Node:
    pass


class RegionModel:
    """What the test knows of one region."""

    def __init__(self, r):
        self.r = r
        self.owner = "main"          # "main", "helper" or None
        self.closed = False
        self.root_items = 0          # len(r.root), a list of dicts made in the region
        self.leak = None             # an object of the region the test holds from outside
        self.handles = []            # (handle, index into the root) for objects of the root


class RegionMachine(RuleBasedStateMachine):
    @initialize()
    def start(self):
        self.helper = Helper()
        self.models = []
        RAN["sequences"] += 1

    def teardown(self):
        for m in self.models:
            if m.closed:
                continue
            m.leak = None
            if m.owner == "helper":
                self.helper.run(m.r.release)
            if m.owner != "main":
                assert m.r.acquire(timeout=5)
            m.r.close()
        self.helper.stop()
        self.models.clear()

    # ---- helpers ----

    def _call(self, actor, fn):
        return fn() if actor == "main" else self.helper.run(fn)

    def _expect_owner(self, m, actor, fn):
        """Runs fn as actor; the model says whether ownership lets it through."""
        if m.closed:
            with pytest.raises(region.RegionError):
                self._call(actor, fn)
            return None
        if m.owner != actor:
            with pytest.raises(region.OwnershipError):
                self._call(actor, fn)
            return None
        return self._call(actor, fn)

    def _open(self):
        return [m for m in self.models if not m.closed]

    def _proving(self, m, actor, fn):
        """Runs one of the calls that prove isolation first (check, release, close) as actor:
        OwnershipError for a non-owner, IsolationError naming the object the test keeps from
        outside while it keeps one (False); else the call runs (True, and its result)."""
        if m.owner != actor:
            self._expect_owner(m, actor, fn)
            return False, None
        if m.leak is not None:
            with pytest.raises(region.IsolationError) as raised:
                self._call(actor, fn)
            assert any(o.obj is m.leak for o in raised.value.offenders)
            del raised
            assert self._call(actor, lambda: m.r.owned) and not m.r.closed   # nothing changed
            return False, None
        return True, self._call(actor, fn)

    # ---- rules ----

    @precondition(lambda self: len(self._open()) < MAX_REGIONS)
    @rule()
    def create(self):
        r = region.region(f"model-{len(self.models)}")
        with r:
            r.root = []
        self.models.append(RegionModel(r))

    @precondition(lambda self: self.models)
    @rule(i=st.integers(0, MAX_REGIONS * 4), actor=st.sampled_from(["main", "helper"]),
          n=st.integers(1, 20), cycles=st.integers(0, 5))
    def fill(self, i, actor, n, cycles):
        """A block adds n dicts to the root and leaves `cycles` garbage cycles behind."""
        m = self.models[i % len(self.models)]

        def work():
            with m.r:
                m.r.root.extend({"i": k, "tags": [k, str(k)]} for k in range(n))
                for _ in range(cycles):
                    a, b = Node(), Node()
                    a.other, b.other = b, a

        if self._expect_owner(m, actor, lambda: m.r.root) is None:
            return
        self._call(actor, work)
        m.root_items += n

    @precondition(lambda self: self._open())
    @rule(i=st.integers(0, MAX_REGIONS * 4), actor=st.sampled_from(["main", "helper"]))
    def collect(self, i, actor):
        m = self._open()[i % len(self._open())]
        freed = self._expect_owner(m, actor, m.r.collect)
        if freed is not None:
            assert freed >= 0
            assert len(self._call(actor, lambda: m.r.root)) == m.root_items   # nothing reachable freed

    @precondition(lambda self: self._open())
    @rule(i=st.integers(0, MAX_REGIONS * 4), actor=st.sampled_from(["main", "helper"]),
          k=st.integers(0, 100))
    def make_handle(self, i, actor, k):
        m = self._open()[i % len(self._open())]
        if m.root_items == 0:
            return
        index = k % m.root_items
        h = self._expect_owner(m, actor, lambda: m.r.handle(m.r.root[index]))
        if h is not None:
            m.handles.append((h, index))

    @precondition(lambda self: any(m.handles for m in self.models))
    @rule(i=st.integers(0, 1000), actor=st.sampled_from(["main", "helper"]))
    def resolve(self, i, actor):
        owners = [m for m in self.models if m.handles]
        m = owners[i % len(owners)]
        h, index = m.handles[i % len(m.handles)]
        if m.closed:
            with pytest.raises(region.HandleError):
                self._call(actor, h)
            assert not h.alive
            return
        obj = self._expect_owner(m, actor, h)
        if obj is not None:
            assert obj is self._call(actor, lambda: m.r.root[index])

    @precondition(lambda self: self._open())
    @rule(i=st.integers(0, MAX_REGIONS * 4))
    def leak_and_forget(self, i):
        """The test keeps an object of the region from outside (an escape), or lets it go."""
        m = self._open()[i % len(self._open())]
        if m.leak is not None:
            m.leak = None
        elif m.owner == "main" and m.root_items:
            m.leak = m.r.root[0]

    @precondition(lambda self: self._open())
    @rule(i=st.integers(0, MAX_REGIONS * 4), actor=st.sampled_from(["main", "helper"]))
    def check(self, i, actor):
        m = self._open()[i % len(self._open())]
        ran, result = self._proving(m, actor, m.r.check)
        assert not ran or result is None

    @precondition(lambda self: self._open())
    @rule(i=st.integers(0, MAX_REGIONS * 4), actor=st.sampled_from(["main", "helper"]))
    def release(self, i, actor):
        m = self._open()[i % len(self._open())]
        if self._proving(m, actor, m.r.release)[0]:
            m.owner = None

    @precondition(lambda self: any(m.owner is None and not m.closed for m in self.models))
    @rule(i=st.integers(0, MAX_REGIONS * 4), actor=st.sampled_from(["main", "helper"]))
    def acquire(self, i, actor):
        free = [m for m in self.models if m.owner is None and not m.closed]
        m = free[i % len(free)]
        assert self._call(actor, lambda: region.adopt(m.r.id) is m.r)
        assert self._call(actor, lambda: m.r.acquire(timeout=0)) is True
        m.owner = actor

    @precondition(lambda self: any(m.owner is not None and not m.closed for m in self.models))
    @rule(i=st.integers(0, MAX_REGIONS * 4), actor=st.sampled_from(["main", "helper"]))
    def acquire_busy(self, i, actor):
        owned = [m for m in self.models if m.owner is not None and not m.closed]
        m = owned[i % len(owned)]
        if m.owner == actor:
            with pytest.raises(region.RegionError):      # not recursive
                self._call(actor, lambda: m.r.acquire(timeout=0))
        else:
            assert self._call(actor, lambda: m.r.acquire(timeout=0)) is False

    @precondition(lambda self: self._open())
    @rule(i=st.integers(0, MAX_REGIONS * 4), actor=st.sampled_from(["main", "helper"]))
    def close(self, i, actor):
        m = self._open()[i % len(self._open())]
        if self._proving(m, actor, m.r.close)[0]:
            m.closed = True
            assert m.r.closed
            with pytest.raises(region.RegionError):
                region.adopt(m.r.id)

    @invariant()
    def owners_are_what_the_model_says(self):
        RAN["steps"] += 1
        for m in getattr(self, "models", []):
            if not m.closed:
                assert m.r.owned == (m.owner == "main")
                assert self.helper.run(lambda: m.r.owned) == (m.owner == "helper")


# No explain phase: it reruns a failure under sys.settrace, and a trace function runs inside the
# blocks it traces and keeps what it makes there (docs/python.md, Limitations), which would change
# what the rerun's regions hold.
RegionMachine.TestCase.settings = settings(max_examples=EXAMPLES, stateful_step_count=STEPS,
                                           deadline=None, phases=[p for p in Phase if p != Phase.explain],
                                           suppress_health_check=list(HealthCheck))
test_the_api_against_its_model = RegionMachine.TestCase


def teardown_module():
    print(f"\nstateful: {RAN['sequences']} sequences, {RAN['steps']} checks of the model after a step")
