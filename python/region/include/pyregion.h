/* pyregion.h - the region package's C API for CPython extension modules.
 *
 * Compile against the installed package: `region.get_include()` is the directory holding this header
 * (and region.h, whose types it uses), the way numpy.get_include() is used.  There is nothing to link:
 * the functions come from the package's extension through the capsule region._C_API, loaded by
 * PyRegion_Import() (the convention of datetime.h and numpy).
 *
 *     #include <pyregion.h>
 *     ...in the module's exec function:  if (PyRegion_Import() < 0) return -1;
 *
 * PyRegion_API is static, one per C file (as datetime.h's PyDateTimeAPI): call PyRegion_Import() in
 * every file that uses the calls below, before any of them.
 *
 * CONTENTS
 *   Versions            PYREGION_API_VERSION, what PyRegion_Import checks
 *   Which region        PyRegion_Of, PyRegion_Current
 *   Raw memory          PyRegion_Malloc, PyRegion_Free
 *   Handles             PyRegion_NewHandle, PyRegion_Resolve
 *   Ownership           PyRegion_Acquire, PyRegion_Release
 *   libregion           PyRegion_AsRegion, PyRegion_Lib (region.h's calls on a package region)
 *
 * RULES (every call below)
 *   - The GIL is held by the caller, as for the rest of the C API.  PyRegion_Acquire releases it while
 *     it waits.
 *   - A `region` argument must be a region.Region: anything else (NULL too) is a TypeError.  A closed
 *     region is a RegionError; a region the calling thread does not own is an OwnershipError - the
 *     exceptions of the Python API, with its messages, so a C caller never crashes on misuse.
 *   - Errors: NULL or -1 with an exception set, as each call says.
 *
 * A BUFFER IN THE OBJECT'S REGION.  Inside `with r:` every PyMem_Malloc/PyObject_Malloc of the thread
 * already lands in r.  PyRegion_Malloc is for the cases a block does not cover: a buffer made or grown
 * later, outside any block, for an object that lives in a region.  Such a buffer is counted in
 * r.stats(), placed on r's NUMA node, may go with r to an interpreter with its own GIL (where r's types
 * allow it: static types; a PyMem_Malloc buffer would be freed into another interpreter's allocator
 * there), and is freed with the region when r.close() ends it.  A deallocator that runs earlier gives
 * it back with PyRegion_Free(NULL, p).
 */
#ifndef PYREGION_H
#define PYREGION_H

#include <Python.h>

#include "region.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- Versions ------------------------------------------------------------------------------------
 *
 * PYREGION_API_VERSION is the version of this header's table.  The package's capsule carries the
 * version it implements; PyRegion_Import() refuses a package older than the header (ImportError naming
 * both), and accepts a newer one: the table only ever grows at its end. */
#define PYREGION_API_VERSION 1
#define PYREGION_CAPSULE_NAME "region._C_API"

/* region.h's calls on a region of the package (PyRegion_AsRegion), with region.h's signatures, statuses
 * and messages (last_status/last_error are the package's copy of libregion's, which these calls set).
 * The one difference: "the calling thread owns r" means it owns the Region in the package's sense
 * (r.owned is True), not that it called region_acquire.  Only the calls that make sense on a region whose
 * objects Python manages are here; region_destroy, the object calls and the ownership calls are not
 * (use r.close() and PyRegion_Acquire/PyRegion_Release). */
typedef struct PyRegion_LibRegion {
    const char *(*version)(void);
    const char *(*strerror)(region_status status);
    region_status (*last_status)(void);
    const char *(*last_error)(void);
    uint64_t (*id)(const region_t *r);
    const char *(*name)(const region_t *r);
    void *(*alloc)(region_t *r, size_t size);
    void *(*zalloc)(region_t *r, size_t size);
    void *(*calloc)(region_t *r, size_t count, size_t size);
    void *(*realloc)(region_t *r, void *p, size_t size);
    region_status (*free)(region_t *r, void *p);
    size_t (*usable_size)(region_t *r, const void *p);
} PyRegion_LibRegion;

/* The capsule's table.  Use the calls below rather than its fields. */
typedef struct PyRegion_CAPI {
    unsigned int api_version;            /* PYREGION_API_VERSION of the package */
    size_t size;                         /* sizeof(PyRegion_CAPI) in the package */
    PyObject *(*Of)(PyObject *obj);
    PyObject *(*Current)(void);
    void *(*Malloc)(PyObject *region, size_t n);
    void (*Free)(PyObject *region, void *p);
    PyObject *(*NewHandle)(PyObject *region, PyObject *obj);
    PyObject *(*Resolve)(PyObject *handle);
    int (*Acquire)(PyObject *region, double timeout);
    int (*Release)(PyObject *region);
    region_t *(*AsRegion)(PyObject *region);
    const PyRegion_LibRegion *lib;
} PyRegion_CAPI;

#ifndef PYREGION_NO_IMPORT
static const PyRegion_CAPI *PyRegion_API = NULL;

/* Loads the capsule (importing the region package): 0, or -1 with ImportError (the package is missing,
 * or older than this header).  Call it again freely: once loaded it costs a test. */
static inline int PyRegion_Import(void) {
    if (PyRegion_API) return 0;
    const PyRegion_CAPI *api = (const PyRegion_CAPI *)PyCapsule_Import(PYREGION_CAPSULE_NAME, 0);
    if (!api) return -1;
    if (api->api_version < PYREGION_API_VERSION || api->size < sizeof(PyRegion_CAPI)) {
        PyErr_Format(PyExc_ImportError, "pyregion.h is API version %d, but the installed region package "
                     "implements version %u: upgrade the region package, or build against its own header "
                     "(region.get_include())", PYREGION_API_VERSION, api->api_version);
        return -1;
    }
    PyRegion_API = api;
    return 0;
}

/* ---- Which region ------------------------------------------------------------------------------ */

/* A new reference to the Region that holds obj, or to None when obj is in no open region (an ordinary
 * object, or one of a closed region given back).  Any object; never fails but for MemoryError (NULL). */
static inline PyObject *PyRegion_Of(PyObject *obj) { return PyRegion_API->Of(obj); }

/* A new reference to the Region of the innermost `with` block open in the calling thread (the region
 * its allocations go to now), or to None.  NULL only with MemoryError. */
static inline PyObject *PyRegion_Current(void) { return PyRegion_API->Current(); }

/* ---- Raw memory -------------------------------------------------------------------------------- */

/* n bytes (at least 1) in the region's own heap, which the calling thread must own: freed with the
 * region when it is closed, if not before by PyRegion_Free.  Aligned as PyMem_Malloc's.  NULL with
 * MemoryError (also: n above region.h's REGION_MAX_BLOCK_SIZE, or the region's memory is exhausted),
 * TypeError, RegionError (closed) or OwnershipError. */
static inline void *PyRegion_Malloc(PyObject *region, size_t n) { return PyRegion_API->Malloc(region, n); }

/* Frees p, a block from PyRegion_Malloc.  region is the Region it was allocated in, or NULL for
 * "whichever region's memory holds p" - what a deallocator needs, since its object's region may have
 * been dissolved meanwhile (its objects became ordinary objects; their memory stays).  p NULL does
 * nothing.  On misuse (p is not in the region's memory, or in no region's; the region is not the
 * caller's) nothing is freed and an exception is set: test PyErr_Occurred().  A block already freed,
 * or an interior pointer, is undefined behaviour, as with free(). */
static inline void PyRegion_Free(PyObject *region, void *p) { PyRegion_API->Free(region, p); }

/* ---- Handles ----------------------------------------------------------------------------------- */

/* r.handle(obj): a new region.Handle, a weak reference to obj, an object of region (owned by the
 * caller).  NULL with RegionError when obj is not in region, or the errors above. */
static inline PyObject *PyRegion_NewHandle(PyObject *region, PyObject *obj) {
    return PyRegion_API->NewHandle(region, obj);
}

/* h(): a new reference to the handle's object.  NULL with TypeError (not a region.Handle), HandleError
 * (the object or its region is gone, or it is being freed) or OwnershipError. */
static inline PyObject *PyRegion_Resolve(PyObject *handle) { return PyRegion_API->Resolve(handle); }

/* ---- Ownership --------------------------------------------------------------------------------- */

/* r.acquire(timeout): waits, with the GIL released, until the calling thread owns region.  timeout in
 * seconds; a negative one waits forever (NaN is a ValueError).  1 acquired, 0 timed out, -1 with an
 * exception: RegionError (closed, or already owned by the caller), IsolationError (the region cannot
 * come to this interpreter), or what a signal handler raised. */
static inline int PyRegion_Acquire(PyObject *region, double timeout) {
    return PyRegion_API->Acquire(region, timeout);
}

/* r.release(): gives region up after proving it isolated.  0, or -1 with an exception: IsolationError
 * naming the escapes (the caller still owns it), RegionError (blocks open), OwnershipError. */
static inline int PyRegion_Release(PyObject *region) { return PyRegion_API->Release(region); }

/* ---- libregion --------------------------------------------------------------------------------- */

/* The libregion region under a Region the calling thread owns, for PyRegion_Lib()'s calls (not for
 * region.h's functions linked from a libregion of your own: that is another copy of the library, which
 * does not know this region).  Valid while the region is open and the caller owns it.  NULL with
 * TypeError, RegionError or OwnershipError. */
static inline region_t *PyRegion_AsRegion(PyObject *region) { return PyRegion_API->AsRegion(region); }

/* The table of region.h's calls for a PyRegion_AsRegion region:  PyRegion_Lib()->alloc(r, 4096). */
static inline const PyRegion_LibRegion *PyRegion_Lib(void) { return PyRegion_API->lib; }

#endif /* PYREGION_NO_IMPORT */

#ifdef __cplusplus
}
#endif

#endif /* PYREGION_H */
