"""Regions for CPython: objects created inside ``with r:`` live in the region's own memory and on its
own GC list, the interpreter's collector never walks them, and ``r.check()`` names every reference
that escapes the region.

    import region

    r = region.region("cache")
    with r:
        r.root = {"users": [{"name": f"u{i}"} for i in range(1000)]}
    r.check()                     # None: nothing outside refers into r, r refers to nothing mutable outside
    h = r.handle(r.root["users"][3])
    h()                           # the dict, while it lives

See docs/python.md for the semantics (what "in a region" means, escapes, handles, the hard cases)
and the limitations.
"""

import atexit as _atexit

from . import _region
from ._region import (
    FrozenByteArray,
    FrozenDict,
    FrozenError,
    FrozenList,
    FrozenSet,
    FrozenView,
    Handle,
    HandleError,
    IsolationError,
    OwnershipError,
    Region,
    RegionError,
    adopt,
    current,
    is_shared,
    region_of,
)
from ._region import _C_API   # the capsule of pyregion.h (PyRegion_Import)
from ._audit import Escape

__all__ = [
    "Escape",
    "FrozenByteArray",
    "FrozenDict",
    "FrozenError",
    "FrozenList",
    "FrozenSet",
    "FrozenView",
    "Handle",
    "HandleError",
    "IsolationError",
    "OwnershipError",
    "Region",
    "RegionError",
    "adopt",
    "current",
    "get_include",
    "is_shared",
    "outside",
    "region",
    "region_of",
]

__version__ = _region.__version__   # meson.build's project version, the one place it is written


def get_include():
    """The directory holding pyregion.h (and the region.h it includes), the C API for extension
    modules: add it to the include path of an extension that uses regions (docs/python.md, "Extension
    modules")."""
    import os

    return os.path.join(os.path.dirname(__file__), "include")


class outside:
    """``with region.outside():`` inside a block, this thread allocates in the ordinary heap again
    until the ``with`` ends - for state that must outlive the region (a cache, a registration).
    Imports always run this way: a module lives for the process, and must not pin the region of the
    block that happened to import it first."""

    __slots__ = ()

    def __enter__(self):
        _region._suspend()
        return self

    def __exit__(self, *exc_info):
        _region._resume()
        return False


def region(name=None, *, node=None, binding="preferred"):
    """Create a region.

    name: shown in reprs and error messages (default "region-<id>").
    node: the NUMA node to put the region's memory on (None: wherever the kernel puts it).
    binding: "preferred" (the node if it has memory, else elsewhere) or "strict" (that node or
    MemoryError); only with a node.
    """
    return Region(name, node=node, binding=binding)


_snapshot_unpickler = None


def _snapshot_loader():
    """What r.snapshot() (python/_region/frozen.c) calls outside any block to get the function it runs
    in a block of the snapshot: pickle.loads, except that the module and class names the stream holds,
    made in the block, are copied out before they are looked up - CPython 3.11's type attribute cache
    keeps the names it is asked for, and would hold region objects."""
    global _snapshot_unpickler
    if _snapshot_unpickler is None:
        import io
        import pickle

        class SnapshotUnpickler(pickle.Unpickler):
            def find_class(self, module, name):
                return super().find_class(_region._copy_out(module), _region._copy_out(name))

        _snapshot_unpickler = lambda data: SnapshotUnpickler(io.BytesIO(data)).load()  # noqa: E731
    return _snapshot_unpickler


# This interpreter may use regions: its entry, and (in a subinterpreter) the hook that gives up its
# regions when it ends.  The allocator hook, the gc callbacks and the freelist guards wait for its
# first region (placement.c, ACTIVATION): importing the package alone changes no allocator.
_region._attach()


# Imports run outside every region (outside, above).  The import system looks these functions of
# importlib._bootstrap up by name each time: _find_and_load loads a module that is not in sys.modules
# yet (the IMPORT_NAME opcode through PyImport_ImportModuleLevelObject, importlib.import_module),
# _find_spec and _exec are what importlib.reload() runs.
def _install_import_hooks():
    import importlib._bootstrap as bootstrap

    current, suspend, resume = _region.current, _region._suspend, _region._resume

    def outside_regions(function):
        if getattr(function, "__region_hook__", False):
            return function

        def hooked(name, *args, **kwargs):
            if current() is None:
                return function(name, *args, **kwargs)
            suspend()
            try:
                # The caller may have made the name in the region ("encodings." + name): the module
                # would keep it as its __name__.
                return function(_region._copy_out(name) if isinstance(name, str) else name, *args, **kwargs)
            finally:
                resume()

        hooked.__region_hook__ = True
        hooked.__wrapped__ = function
        return hooked

    for name in ("_find_and_load", "_find_spec", "_exec"):
        setattr(bootstrap, name, outside_regions(getattr(bootstrap, name)))


_install_import_hooks()
# At exit, regions give their objects back to the interpreter before finalization.
_atexit.register(_region._shutdown)
