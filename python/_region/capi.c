/* capi.c - the C API for extension modules (python/region/include/pyregion.h): the table behind the
 * capsule region._C_API.
 *
 * Every call is the Python API's, with its checks and its exceptions: the same owner check
 * (region_check_owner), the same handles, the same acquire and release.  What is new is raw memory in
 * a region's detached heap on request (PyRegion_Malloc), and region.h's memory calls on a package region
 * (PyRegion_Lib), which check the package's owner (the thread, in the interpreter it used the region
 * in: r.owned) and put what they allocate in the detached heap, not where region.h's own calls would.
 *
 * THREADS: every call runs with the GIL of the calling interpreter held (pyregion.h's rule); the
 * Region and Handle types checked are that GIL's (binding.h).
 */
#define PYREGION_NO_IMPORT
#include "binding.h"
#include "pyregion.h"

#include <math.h>

/* ---- The buffers: r's detached heap (region-host.h, DETACHED BUFFERS) ---- */

/* size bytes (zeroed if asked) in r's detached heap, or NULL when mimalloc has none to give. */
static void *buffer_alloc(region_t *r, size_t size, bool zero) {
    mi_heap_t *heap = rhost_detached_heap(r);
    if (!heap) return NULL;
    return zero ? mi_heap_zalloc(heap, size ? size : 1) : mi_heap_malloc(heap, size ? size : 1);
}

static bool is_buffer(region_t *r, const void *p) {
    return r->detached_heap && rheap_owns(r, r->detached_heap, p);
}

/* The record of `region`, a Region of the calling GIL, or NULL with TypeError naming `what`. */
static rpy_region_t *capi_record(PyObject *region, const char *what) {
    if (!region) {
        PyErr_Format(PyExc_TypeError, "%s: region is NULL, not a region.Region", what);
        return NULL;
    }
    if (!PyObject_TypeCheck(region, Region_Type)) {
        PyErr_Format(PyExc_TypeError, "%s: expected a region.Region, not %.100s", what, Py_TYPE(region)->tp_name);
        return NULL;
    }
    return ((RegionObject *)region)->rec;
}

/* The record of an open region the caller owns, or NULL with an exception. */
static rpy_region_t *capi_owned_record(PyObject *region, const char *what) {
    rpy_region_t *rec = capi_record(region, what);
    return rec && region_check_owner(rec, what) == 0 ? rec : NULL;
}

static PyObject *capi_of(PyObject *obj) {
    if (!obj) {
        PyErr_SetString(PyExc_TypeError, "PyRegion_Of: obj is NULL");
        return NULL;
    }
    return membership_region_proxy(obj);
}

static PyObject *capi_current(void) { return placement_current_proxy(); }

static void *capi_malloc(PyObject *region, size_t n) {
    rpy_region_t *rec = capi_owned_record(region, "PyRegion_Malloc");
    if (!rec) return NULL;
    void *p = n <= REGION_MAX_BLOCK_SIZE ? buffer_alloc(rec->r, n, false) : NULL;
    if (!p) {
        PyObject *desc = region_describe(rec);
        if (desc)
            PyErr_Format(PyExc_MemoryError, n > REGION_MAX_BLOCK_SIZE
                         ? "PyRegion_Malloc(%zu bytes) in %U: one block is at most %zu bytes"
                         : "PyRegion_Malloc(%zu bytes) in %U: the region's memory is exhausted (%zu bytes "
                           "at most per block)", n, desc, (size_t)REGION_MAX_BLOCK_SIZE);
        Py_XDECREF(desc);
    }
    return p;
}

/* RegionError for a PyRegion_Free of p, which is not a buffer of rec (or of any region, rec NULL). */
static void capi_not_a_buffer(rpy_region_t *rec, void *p, const char *why) {
    PyObject *desc = rec ? region_describe(rec) : NULL;
    if (rec && !desc) return;
    if (desc) PyErr_Format(RegionError, "PyRegion_Free(%U, %p): %s", desc, p, why);
    else PyErr_Format(RegionError, "PyRegion_Free(NULL, %p): %s", p, why);
    Py_XDECREF(desc);
}

/* Frees p in region, or (region NULL) in whichever region's memory holds it: an open one the caller
 * owns, or the memory a dissolved region left (region_dissolve: its objects became ordinary objects,
 * and a deallocator of one of them gives its buffer back here). */
static void capi_free(PyObject *region, void *p) {
    if (!p) return;
    region_t *in = rhost_region_of(p);
    if (region) {
        rpy_region_t *rec = capi_owned_record(region, "PyRegion_Free");
        if (!rec) return;
        if (in != rec->r || !is_buffer(rec->r, p))
            capi_not_a_buffer(rec, p, in == rec->r ? "it is in the region's memory but not a buffer from "
                              "PyRegion_Malloc (an object, or memory an object owns)" : "it is not in the region's memory");
        else
            rhost_free(rec->r, p);
        return;
    }
    if (!in || !in->id || !is_buffer(in, p)) {
        capi_not_a_buffer(NULL, p, in && in->id ? "it is in a region's memory but not a buffer from PyRegion_Malloc "
                          "(an object, or memory an object owns)" : "it is in no region's memory");
        return;
    }
    rpy_region_t *rec = membership_hold_block(p);
    int owned = rec ? region_check_owner(rec, "PyRegion_Free") : 0;
    if (rec) record_unref(rec);
    if (owned == 0) rhost_free(in, p);
}

static PyObject *capi_new_handle(PyObject *region, PyObject *obj) {
    rpy_region_t *rec = capi_owned_record(region, "PyRegion_NewHandle");
    if (!rec) return NULL;
    if (!obj) {
        PyErr_SetString(PyExc_TypeError, "PyRegion_NewHandle: obj is NULL");
        return NULL;
    }
    return handle_new(rec, obj);
}

static PyObject *capi_resolve(PyObject *handle) {
    if (!handle || !PyObject_TypeCheck(handle, Handle_Type)) {
        PyErr_Format(PyExc_TypeError, "PyRegion_Resolve: expected a region.Handle, not %.100s",
                     handle ? Py_TYPE(handle)->tp_name : "NULL");
        return NULL;
    }
    return PyObject_CallNoArgs(handle);
}

static int capi_acquire(PyObject *region, double timeout) {
    rpy_region_t *rec = capi_record(region, "PyRegion_Acquire");
    if (!rec) return -1;
    if (isnan(timeout)) {
        PyErr_SetString(PyExc_ValueError, "PyRegion_Acquire: timeout is NaN (a negative timeout waits forever)");
        return -1;
    }
    return ownership_take(rec, timeout < 0 || isinf(timeout) ? -1 : timeout);
}

static int capi_release(PyObject *region) {
    rpy_region_t *rec = capi_record(region, "PyRegion_Release");
    return rec ? ownership_let_go(rec) : -1;
}

static region_t *capi_as_region(PyObject *region) {
    rpy_region_t *rec = capi_owned_record(region, "PyRegion_AsRegion");
    return rec ? rec->r : NULL;
}

/* ---- region.h's memory calls on a package region (PyRegion_Lib) ----
 *
 * Statuses and messages are libregion's own (rerror_region), so last_status/last_error read them. */

/* REGION_OK when r is a live region of the package that the calling thread owns (r.owned), else the
 * status recorded.  Any pointer value is safe: r is compared with the region table before any read. */
static region_status lib_check(const region_t *r, const char *what) {
    uintptr_t first = (uintptr_t)regions, at = (uintptr_t)r;
    if (!r || !first || at < first || at >= (uintptr_t)(regions + rregion_records()) || (at - first) % sizeof *r)
        return rerror(REGION_EINVAL, "%s: %p is not a region (use PyRegion_AsRegion)", what, (const void *)r);
    rpy_region_t *rec = rhost_record(r);
    if (!rec || rec->r != r) return rerror(REGION_EDEAD, "%s: the region at %p is closed", what, (const void *)r);
    if (!ownership_is_caller(rec))
        return rerror_region(r, REGION_ENOTOWNER, "%s: the calling thread does not own the region (r.owned "
                             "is False)", what);
    return REGION_OK;
}

static uint64_t lib_id(const region_t *r) { return lib_check(r, "id") == REGION_OK ? r->id : 0; }
static const char *lib_name(const region_t *r) { return lib_check(r, "name") == REGION_OK ? r->name : NULL; }

static void *lib_alloc_checked(region_t *r, size_t size, bool zero, const char *what) {
    if (lib_check(r, what) != REGION_OK) return NULL;
    if (size > REGION_MAX_BLOCK_SIZE) {
        rerror_region(r, REGION_EINVAL, "%s of %zu bytes: one block is at most %zu bytes", what, size,
                      (size_t)REGION_MAX_BLOCK_SIZE);
        return NULL;
    }
    void *p = buffer_alloc(r, size, zero);
    if (!p) rerror_region(r, REGION_EFULL, "%s of %zu bytes: the region's memory is exhausted", what, size);
    return p;
}

static void *lib_alloc(region_t *r, size_t size) { return lib_alloc_checked(r, size, false, "alloc"); }
static void *lib_zalloc(region_t *r, size_t size) { return lib_alloc_checked(r, size, true, "zalloc"); }

static void *lib_calloc(region_t *r, size_t count, size_t size) {
    size_t total;
    if (__builtin_mul_overflow(count, size, &total)) {
        if (lib_check(r, "calloc") == REGION_OK)
            rerror_region(r, REGION_EINVAL, "calloc: %zu * %zu bytes overflows", count, size);
        return NULL;
    }
    return lib_alloc_checked(r, total, true, "calloc");
}

/* REGION_OK when p is one of r's buffers (the caller checked r). */
static region_status lib_check_block(region_t *r, const void *p, const char *what) {
    if (is_buffer(r, p)) return REGION_OK;
    return rerror_region(r, REGION_ENOTREGION, "%s: %p is not a block of this region's buffers (PyRegion_Lib's or "
                         "PyRegion_Malloc's)", what, p);
}

static void *lib_realloc(region_t *r, void *p, size_t size) {
    if (!p) return lib_alloc(r, size);
    if (lib_check(r, "realloc") != REGION_OK || lib_check_block(r, p, "realloc") != REGION_OK) return NULL;
    if (size > REGION_MAX_BLOCK_SIZE) {
        rerror_region(r, REGION_EINVAL, "realloc to %zu bytes: one block is at most %zu bytes", size,
                      (size_t)REGION_MAX_BLOCK_SIZE);
        return NULL;
    }
    void *moved = rhost_realloc(r, p, size);
    if (!moved) rerror_region(r, REGION_EFULL, "realloc to %zu bytes: the region's memory is exhausted", size);
    return moved;
}

static region_status lib_free(region_t *r, void *p) {
    region_status status = lib_check(r, "free");
    if (status != REGION_OK || !p) return status;
    status = lib_check_block(r, p, "free");
    if (status == REGION_OK) rhost_free(r, p);
    return status;
}

static size_t lib_usable_size(region_t *r, const void *p) {
    if (lib_check(r, "usable_size") != REGION_OK || lib_check_block(r, p, "usable_size") != REGION_OK) return 0;
    return mi_usable_size(p);
}

static const PyRegion_LibRegion capi_lib = {
    .version = region_version,
    .strerror = region_strerror,
    .last_status = region_last_status,
    .last_error = region_last_error,
    .id = lib_id,
    .name = lib_name,
    .alloc = lib_alloc,
    .zalloc = lib_zalloc,
    .calloc = lib_calloc,
    .realloc = lib_realloc,
    .free = lib_free,
    .usable_size = lib_usable_size,
};

static const PyRegion_CAPI capi_table = {
    .api_version = PYREGION_API_VERSION,
    .size = sizeof(PyRegion_CAPI),
    .Of = capi_of,
    .Current = capi_current,
    .Malloc = capi_malloc,
    .Free = capi_free,
    .NewHandle = capi_new_handle,
    .Resolve = capi_resolve,
    .Acquire = capi_acquire,
    .Release = capi_release,
    .AsRegion = capi_as_region,
    .lib = &capi_lib,
};

int capi_add(PyObject *module) {
    PyObject *capsule = PyCapsule_New((void *)&capi_table, PYREGION_CAPSULE_NAME, NULL);
    if (!capsule) return -1;
    int rc = PyModule_AddObjectRef(module, "_C_API", capsule);
    Py_DECREF(capsule);
    return rc;
}
