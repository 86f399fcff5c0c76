"""Formatting of isolation-audit results: paths from the root and who holds what.

The C side (python/_region/audit.c) finds the escapes and the chain of objects that first led to each
one; this module turns a chain into a path like ``root['users'][3].friends`` and, for objects
referenced from outside, looks for the holders: module globals, local variables of running frames, and
containers the interpreter tracks.
"""

import gc
import sys

from . import _region
from ._region import IsolationError

MAX_EDGES = 16            # longer paths keep the first and the last edges
MAX_HOLDERS = 3
MAX_REPORTED = 50         # escapes a report describes (audit.c's limit too)


class Escape:
    """One escape found by Region.check().

    kind:   "incoming" (a region object referenced from outside), "outgoing" (a region object refers
            to a mutable object outside every region), "cross" (it refers to an object of another
            region) or "mortal" (it refers to an immutable but mortal object outside every region,
            which cannot go to an interpreter with another GIL: only immortal ones can).
    obj:    the region object (incoming) or the outside object it refers to (the others).
    type:   the type name of obj.
    path:   how obj is reached from the region's root, e.g. "root['users'][3].friends".
    holders: for incoming escapes, descriptions of what holds obj from outside (where found).
    count:  for incoming escapes, how many references come from outside.
    interpreter_state: for incoming escapes, whether every holder found is the interpreter's own
            state (see holders_of) - then r.close() gives obj back to the ordinary heap instead of
            refusing.
    """

    __slots__ = ("kind", "obj", "type", "path", "holders", "count", "interpreter_state")

    def __init__(self, kind, obj, path, holders=(), count=0, interpreter_state=False):
        self.kind = kind
        self.obj = obj
        self.type = type(obj).__name__
        self.path = path
        self.holders = tuple(holders)
        self.count = count
        self.interpreter_state = interpreter_state

    def describe(self):
        if self.kind == "incoming":
            refs = "1 reference" if self.count == 1 else f"{self.count} references"
            held = "; ".join(self.holders) if self.holders else \
                "holder not found (a C extension, a running frame's stack, or another region)"
            return f"{self.path} ({self.type}) is referenced from outside the region ({refs}): held by {held}"
        if self.kind == "cross":
            owner = sys.modules["region"].region_of(self.obj)
            where = f"region {owner.name!r} (id {owner.id})" if owner is not None else "another region"
            return (f"{self.path} refers to a {self.type} of {where}: regions may refer to each other "
                    f"only through handles (Region.handle)")
        if self.kind == "mortal":
            return (f"{self.path} refers to a {self.type} outside every region that is not immortal, "
                    f"so its reference count cannot be shared with another GIL: make it inside "
                    f"`with r:` (release copies only the numbers, strs and bytes that lists, tuples "
                    f"and dicts refer to)")
        if isinstance(self.obj, type):
            return (f"{self.path} refers to class {self.obj.__module__}.{self.obj.__qualname__}, which "
                    f"belongs to the interpreter whose module defined it")
        return (f"{self.path} refers to a {self.type} outside every region (mutable, so not safe to "
                f"share): move it into the region or refer to it through a handle")

    def __repr__(self):
        return f"<region.Escape {self.kind}: {self.describe()}>"


def _edge(parent, child):
    """How parent refers to child, as a path suffix."""
    if isinstance(parent, dict):
        for key, value in parent.items():
            if value is child:
                return f"[{key!r}]"
        for key in parent:
            if key is child:
                return f".keys() ∋ {key!r}"
    elif isinstance(parent, (list, tuple)):
        for i, value in enumerate(parent):
            if value is child:
                return f"[{i}]"
    elif isinstance(parent, (set, frozenset)):
        return f" ∋ <{type(child).__name__}>"
    # Never parent.__dict__: reading it would create the dict of an instance that keeps its
    # attributes inline (and create it outside the region).
    if _region._instance_dict(parent) is child:
        return ".__dict__"
    name = _region._attribute_name(parent, child)
    if name is not None:
        return f".{name}"
    for cls in type(parent).__mro__:
        slots = cls.__dict__.get("__slots__", ())
        for name in (slots,) if isinstance(slots, str) else slots:
            try:
                if object.__getattribute__(parent, name) is child:
                    return f".{name}"
            except (AttributeError, TypeError):
                pass
    if child is type(parent):
        return ".__class__"
    return f" → <{type(child).__name__}>"


def _start(region, obj):
    if obj is region.root:
        return "root"
    return f"<{type(obj).__name__} at {id(obj):#x}, not reachable from root>"


def path_of(region, chain):
    """Renders [start, ..., obj] as a path from the start (normally the root)."""
    edges = [_edge(a, b) for a, b in zip(chain, chain[1:])]
    # An instance's materialized __dict__ reads better as attribute access.
    joined = []
    for e in edges:
        if joined and joined[-1] == ".__dict__" and e.startswith("['") and e.endswith("']"):
            joined[-1] = "." + e[2:-2]
        else:
            joined.append(e)
    if len(joined) > MAX_EDGES:
        joined = joined[:4] + ["…"] + joined[-(MAX_EDGES - 4):]
    return _start(region, chain[0]) + "".join(joined)


def path_to(region, obj):
    """The path from the region's root to obj, one of its objects, through the region's objects
    (breadth first: a shortest one); obj's own description when the root does not lead to it."""
    import gc
    root = region.root
    if root is not None and root is not obj:
        parents = {id(root): None}
        queue = [root]
        for parent in queue:
            for child in gc.get_referents(parent):
                if id(child) in parents or not region.owns(child):
                    continue
                parents[id(child)] = parent
                if child is obj:
                    chain = [obj]
                    while parents[id(chain[-1])] is not None:
                        chain.append(parents[id(chain[-1])])
                    return path_of(region, chain[::-1])
                queue.append(child)
    return path_of(region, [obj])


def _referrers(targets):
    """gc.get_referrers(*targets) without the call's own argument tuple among them (the tuple passed
    as it is, so that it can be told apart)."""
    targets = tuple(targets)
    return [ref for ref in gc.get_referrers(*targets) if ref is not targets]


def _module_of(namespace):
    for name, module in list(sys.modules.items()):
        if getattr(module, "__dict__", None) is namespace:
            return name
    return None


def _in_stdlib(module):
    if not isinstance(module, str):
        return False
    top = module.partition(".")[0]
    return top in sys.stdlib_module_names or top in STATE_PACKAGES


def holders_of(obj, ignore):
    """What holds obj: descriptions of the holders found among locals of running frames, module
    globals and tracked containers."""
    found = []
    for name, function, filename, line in _region._local_holders(obj, __file__)[:MAX_HOLDERS]:
        found.append(f"local variable {name!r} of {function}() ({filename}:{line})")
    thread_state = _region._thread_state_dict()
    for ref in _referrers((obj,)):
        if len(found) >= MAX_HOLDERS:
            break
        if id(ref) in ignore or type(ref).__name__ in ("frame", "cell"):
            continue
        if isinstance(ref, dict):
            module = _module_of(ref)
            if module is not None:
                for name, value in ref.items():
                    if value is obj:
                        found.append(f"global {name!r} of module {module!r}")
                continue
            if ref is thread_state:
                found.append(f"the thread state's dict (as <...>{_edge(ref, obj)})")
                continue
        found.append(f"a {type(ref).__name__} outside the region (as <...>{_edge(ref, obj)})")
    return found


# ---- Dicts CPython made lazily for outside objects (what r.close() copies out) ----

LAZY_ATTRIBUTES = ("__dict__", "__annotations__")


IMMUTABLE_VALUES = (str, bytes, int, float, complex, tuple)


def _value_of_the_region(obj, region, depth=0):
    """An immutable value close() can copy out: str, bytes, int, float, complex, or a tuple of them."""
    if type(obj) not in IMMUTABLE_VALUES:
        return False
    return type(obj) is not tuple or depth < 32 and all(
        not region.owns(x) or _value_of_the_region(x, region, depth + 1) for x in obj)


def repatriate(objs, counts, region, ignore):
    """What close() can give back by copying: among objs, held by exactly one outside holder,
      - the dicts CPython made for an outside object the first time something asked for them (a
        function's __dict__ or __annotations__ - functools.wraps reads both -, an instance's __dict__)
        that hold nothing of the region: the owner gets a copy in the ordinary heap;
      - immutable values (region._copy_out's types) that a dict outside holds as a value (a module's
        __version__ computed on first access, say): the dict gets an equal copy.
    Only where the audit counted one reference from outside (counts: the audit's, per obj) and that
    is the holder found: nobody else outside can see the identity change, as for the copies release()
    makes (crossing.c).  The ids of those replaced (they then die with the region)."""
    candidates = {id(o): o for o, count in zip(objs, counts) if count == 1 and (
                  (type(o) is dict and not any(region.owns(x) for item in o.items() for x in item))
                  or _value_of_the_region(o, region))}
    if not candidates:
        return set()
    owners = {}
    for ref in _referrers(candidates.values()):
        if id(ref) in ignore or ref is candidates or region.owns(ref):
            continue
        for child in gc.get_referents(ref):
            if id(child) in candidates:
                owners.setdefault(id(child), []).append(ref)
    done = set()
    from . import outside   # the copies must not land in a region whose block is open here
    for key, refs in owners.items():
        if len(refs) == 1 and _give_back(refs[0], candidates[key], outside):
            done.add(key)
    return done


def _give_back(owner, obj, outside):
    if isinstance(owner, dict):
        if type(obj) is dict:
            return False                            # a dict's dict: no lazy attribute
        keys = [k for k, v in owner.items() if v is obj]
        for k in keys:
            owner[k] = _region._copy_out(obj)
        return bool(keys)
    if type(obj) is not dict:
        return False
    for name in LAZY_ATTRIBUTES:
        try:
            if object.__getattribute__(owner, name) is obj:
                with outside():
                    setattr(owner, name, dict(obj))
                return True
        except (AttributeError, TypeError):
            continue
    return False


# ---- The interpreter's own state (what r.close() gives back) ----

STATE_DEPTH = 4   # holders of holders followed up to this far before deciding "user code holds it"


def _state_verdict(holder, thread_state, module_dicts):
    """True: holder is the interpreter's own state; False: user code's; None: look at its holders."""
    kind = type(holder).__name__
    if kind in ("frame", "cell", "function", "coroutine", "generator", "async_generator"):
        return False                  # running or runnable code holds it
    if holder is thread_state or kind == "_abc_data":
        return True                   # the thread state; the caches of abc.ABCMeta
    if isinstance(holder, dict) and id(holder) in module_dicts:
        return _in_stdlib(module_dicts[id(holder)])
    if isinstance(holder, type):
        return _in_stdlib(holder.__module__)
    if type(holder).__module__ != "builtins":
        return _in_stdlib(type(holder).__module__) or None   # an instance: a stdlib class's, or look up
    return None                       # a container: whoever holds it decides


# Caches the standard library keeps in other objects' namespaces: the warnings module's memo in every
# module that warned, copyreg's slot names on every class copied or pickled.
STATE_KEYS = frozenset({"__warningregistry__", "__slotnames__"})

# Packages whose objects count as the interpreter's own state besides the standard library
# (region.pytest_plugin adds pytest's: it keeps reports of subtests made during a test).
STATE_PACKAGES = set()


def _only_state_keys(namespace, obj):
    return all(key in STATE_KEYS for key, value in namespace.items() if value is obj)


def interpreter_state(objs, region, ignore):
    """Which of objs (outside-referenced region objects) are held only by the interpreter's own
    state: what CPython and its standard library make lazily and keep for the process - C statics (no
    holder found: 3.11's keyword tuples of print(), interned strings, contextvars), the thread state's
    dict (asyncio's running loop, reprlib's guard, threading.local), abc's caches, and anything held,
    through at most STATE_DEPTH containers, only by standard-library modules and classes (logging's
    registry of loggers, asyncio's event loop policy).  Locals of running frames, modules and classes
    of user code, and holders still undecided at the depth limit count as user code's.  A set of ids."""
    # Interned strings are the interpreter's (its interned table holds them): no walk needed.
    interned = {id(o) for o in objs if type(o) is str and _region.is_shared(o)}
    thread_state = _region._thread_state_dict()
    module_dicts = {id(getattr(m, "__dict__", None)): name for name, m in list(sys.modules.items())}
    verdict = dict.fromkeys(interned, True)         # id(node) -> True / False (None: pending)
    holders = {}                                    # id(node) -> ids of its holders outside the region
    frontier = {id(o): o for o in objs if id(o) not in interned}
    for depth in range(STATE_DEPTH + 1):
        if not frontier:
            break
        for o in frontier.values():
            holders[id(o)] = set()
            if _region._local_holders(o, __file__):
                verdict[id(o)] = False
        nodes, frontier = frontier, {}
        for ref in _referrers(nodes.values()):
            if id(ref) in ignore or id(ref) in nodes or region.owns(ref) or ref is nodes:
                continue
            namespace = isinstance(ref, dict)
            for child in gc.get_referents(ref):
                if id(child) not in nodes:
                    continue
                if namespace and _only_state_keys(ref, child):
                    continue                        # a standard-library cache kept in a namespace
                holders[id(child)].add(id(ref))
            if id(ref) in verdict or id(ref) in frontier:
                continue
            v = _state_verdict(ref, thread_state, module_dicts)
            if v is None and depth == STATE_DEPTH:
                v = False                           # undecided at the limit: count it as user code's
            if v is None:
                frontier[id(ref)] = ref
            else:
                verdict[id(ref)] = v
        del nodes
    # A node is state when none of its holders is user code's, recursively (no holder: a C static).
    def is_state(key, seen):
        if verdict.get(key) is not None:
            return verdict[key]
        if key in seen:
            return True                             # a cycle among containers: its other holders decide
        seen.add(key)
        return all(is_state(h, seen) for h in holders.get(key, ()))
    return {id(o) for o in objs if is_state(id(o), set())}


def report(region, raw, total, objects, garbage, why=None, closing=False):
    """The IsolationError for the escapes the audit found (raw: (kind, chain, target, count)).

    closing: the audit of r.close(), which gives objects held only by the interpreter's own state back
    to the ordinary heap (Escape.interpreter_state): None when that is all there is.

    Returned, not raised: the caller raises it, so its traceback holds no frame of this module (a
    frame here would keep every offender alive through a reference cycle)."""
    ignore = {id(raw)}
    for item in raw:
        ignore.add(id(item))
        ignore.add(id(item[1]))
    incoming = [chain[-1] for kind, chain, _, _ in raw if kind == "incoming"]
    ignore.add(id(incoming))
    state = interpreter_state(incoming, region, ignore) if incoming else set()
    if closing:
        counts = [count for kind, _, _, count in raw if kind == "incoming"]
        state |= repatriate(incoming, counts, region, ignore)
    del incoming
    given_back = 0
    if closing:   # only what close() refuses for is described (finding holders costs a heap walk each)
        given_back = sum(1 for kind, chain, _, _ in raw if kind == "incoming" and id(chain[-1]) in state)
        if given_back == total:
            return None
        raw = [item for item in raw if item[0] != "incoming" or id(item[1][-1]) not in state]
        total -= given_back
    escapes = []
    for kind, chain, target, count in raw[:MAX_REPORTED]:
        if kind == "incoming":
            obj = chain[-1]
            escapes.append(Escape(kind, obj, path_of(region, chain), holders_of(obj, ignore), count,
                                  id(obj) in state))
        else:
            path = path_of(region, chain + [target])
            escapes.append(Escape(kind, target, path))
    noun = "escape" if total == 1 else "escapes"
    verdict = why or "is not isolated"
    lines = [f"region {region.name!r} (id {region.id}) {verdict}: {total} {noun} "
             f"(audited {objects} objects, {garbage} of them unreachable garbage)"]
    lines += [f"  - {e.describe()}" for e in escapes]
    if total > len(escapes):
        lines.append(f"  ... and {total - len(escapes)} more")
    if given_back:
        lines.append(f"  ({given_back} more are held only by the interpreter's own state, which close() "
                     f"would give back to the ordinary heap)")
    error = IsolationError("\n".join(lines))
    error.offenders = escapes
    error.region = region
    return error
