"""The smoke test of an installed package (tests/python/pip_install.sh after `pip install .`,
scripts/wheels.sh after installing a wheel): run with the installed interpreter, from outside the
source tree.  --no-compiler: also assert that no C compiler is on PATH (the wheel needs none)."""
import gc
import importlib.metadata
import os
import shutil
import sys

if "--no-compiler" in sys.argv:
    assert not any(shutil.which(cc) for cc in ("cc", "gcc", "clang")), "a compiler is on PATH"

import region  # noqa: E402 - after the PATH check, which must not depend on it

r = region.region("installed")
with r:
    r.root = {"users": [{"id": i} for i in range(10000)]}
assert all(region.region_of(u) is r for u in r.root["users"])
assert r.check() is None
assert not any(region.region_of(o) is r for o in gc.get_objects())
assert r.handle(r.root["users"][3])()["id"] == 3
r.close()
assert os.path.isfile(os.path.join(region.get_include(), "pyregion.h")), "the C API header is missing"
assert importlib.metadata.version("region") == region.__version__, "the wheel and the package disagree"
print(f"installed: ok ({os.path.dirname(region.__file__)}, version {region.__version__})")
