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


def _module_of(namespace):
    for name, module in list(sys.modules.items()):
        if getattr(module, "__dict__", None) is namespace:
            return name
    return None


def _in_stdlib(module):
    return module.partition(".")[0] in sys.stdlib_module_names


def holders_of(obj, ignore):
    """What holds obj: (description, whether it is the interpreter's own state) for each holder found
    among locals of running frames, module globals and tracked containers.  The interpreter's own
    state is what CPython and its standard library make lazily and keep for the process: globals of
    standard-library modules and the thread state's dict (asyncio's running loop, reprlib's guard,
    threading.local)."""
    found = []
    for name, function, filename, line in _region._local_holders(obj, __file__)[:MAX_HOLDERS]:
        found.append((f"local variable {name!r} of {function}() ({filename}:{line})", False))
    thread_state = _region._thread_state_dict()
    for ref in gc.get_referrers(obj):
        if len(found) >= MAX_HOLDERS:
            break
        if id(ref) in ignore or type(ref).__name__ in ("frame", "cell"):
            continue
        if isinstance(ref, dict):
            module = _module_of(ref)
            if module is not None:
                for name, value in ref.items():
                    if value is obj:
                        found.append((f"global {name!r} of module {module!r}", _in_stdlib(module)))
                continue
            if ref is thread_state:
                found.append((f"the thread state's dict (as <...>{_edge(ref, obj)})", True))
                continue
        found.append((f"a {type(ref).__name__} outside the region (as <...>{_edge(ref, obj)})", False))
    return found


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
    escapes = []
    for kind, chain, target, count in raw:
        if kind == "incoming":
            obj = chain[-1]
            holders = holders_of(obj, ignore)
            escapes.append(Escape(kind, obj, path_of(region, chain), [h for h, _ in holders], count,
                                  all(state for _, state in holders)))
        else:
            path = path_of(region, chain + [target])
            escapes.append(Escape(kind, target, path))
    given_back = 0
    if closing:
        kept = [e for e in escapes if not e.interpreter_state]
        given_back = len(escapes) - len(kept)
        if not kept and total == len(escapes):
            return None
        escapes, total = kept, total - given_back
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
