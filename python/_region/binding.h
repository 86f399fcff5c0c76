/* binding.h - what the files of the Python binding share.
 *
 * Layers: placement.c (the allocator hook and the per-thread stack of open blocks) and membership.c
 * (which GC list an object is on) sit on internals.c (CPython internals) and region-host.h (libregion).
 * module.c (the Region type and the module), handle.c (Handle) and audit.c (r.check) sit on those.
 *
 * MEMBERSHIP: an object belongs to a region exactly when its memory block lies in the region's slot
 * (rhost_slot_region, O(1)) and the region is open (registry[slot] is its Region).  Which thread made
 * it, and where, does not matter; placement (placement.c) is what puts the objects a block creates
 * into the region's memory.  The GC-tracked members are kept on the region's own GC list, never in
 * the interpreter's generations (membership.c).
 *
 * THREADS AND INTERPRETERS: all of the binding runs with the GIL held.  Every interpreter that can
 * import the package shares one GIL (3.11 has no other kind; 3.12 and 3.13 refuse the single-phase
 * module in an interpreter with its own), so the statics here have exactly one user at a time,
 * whichever interpreter it runs.  Own-GIL interpreters only run the allocator hook and the wrapped
 * deallocators, and touch no state of the binding there but atomics (internals.h, THREADS).
 * The module is initialized once, in the main interpreter; a subinterpreter's import gets a copy of
 * its dict (CPython's rule for single-phase modules), so every interpreter shares the Region type, the
 * exceptions and every Region object: a region id names the same Region everywhere.  What is per
 * interpreter (GC generations, freelists) is kept per attached interpreter (rpy_interp_attach).
 */
#ifndef REGION_PY_BINDING_H
#define REGION_PY_BINDING_H

#include "cpython/internals.h"
#include "region-host.h"

typedef struct RegionObject {
    PyObject_HEAD
    region_t *r;               /* NULL once the Region was dissolved (interpreter shutdown) */
    uint64_t id;
    PyObject *name;            /* str */
    PyObject *root;            /* strong; NULL when unset */
    rpy_gclist_t *members;     /* raw memory: a list head must never move */
    Py_ssize_t blocks_open;    /* `with` blocks open on this region (all in the owner thread) */
    /* OWNERSHIP: at most one thread owns the region, and only it may use it (region_check_owner).
     * `ownership` is held exactly while some thread owns the region; owner_token is that thread's
     * region_thread_token() (never reused, unlike thread idents), 0 while nobody owns it, and
     * owner_interp the id of the interpreter it used the region in (a thread can run several: a
     * subinterpreter's run_string runs in the calling thread).  A waiting acquire() blocks on the lock
     * with the GIL released; release() and close() unlock it. */
    PyThread_type_lock ownership;
    uint64_t owner_token;
    int64_t owner_interp;
    /* The interpreter whose classes the region's objects refer to (instances of its Python classes),
     * or -1: found by the proof of the last release.  Another interpreter may not acquire the region
     * while that one lives (ownership.c, "Crossing interpreters"). */
    int64_t classes_of;
    PyObject *weakreflist;
    const char *gone;          /* why r is NULL: "closed", "dissolved at interpreter shutdown" */

    /* collection statistics (r.collect, automatic collections) */
    uint64_t collections;
    uint64_t collected;        /* objects freed by collections, all together */
    uint64_t uncollectable;    /* objects kept for a legacy finalizer (in gc.garbage) */
    uint64_t last_pause_ns, total_pause_ns;
} RegionObject;

extern PyTypeObject *Region_Type;
extern PyTypeObject *Handle_Type;
extern PyTypeObject *Ownership_Type;
extern PyObject *RegionError, *IsolationError, *OwnershipError, *HandleError;

/* ---- placement.c ---- */

/* Installs the allocator hook and the freelist guards (once per process). */
int placement_install(void);

/* Opens / closes a `with` block of self in the calling thread. */
int placement_enter(RegionObject *self);
int placement_exit(RegionObject *self);

/* The Region receiving the calling thread's allocations, or NULL (borrowed). */
RegionObject *placement_current(void);

/* Test support: calls fn() with an equivalent allocator in place of the hook. */
PyObject *placement_with_foreign_allocator(PyObject *fn);

/* Automatic collection: the allocator hook counts object allocations per region and, when a
 * region's count reaches its threshold (0: never), schedules module_auto_collect() as a pending
 * call (run by the main thread between two bytecodes: a safe point). */
void placement_set_threshold(region_t *r, uint32_t threshold);
uint32_t placement_threshold(region_t *r);
uint32_t placement_allocations(region_t *r);     /* since the last collection */
void placement_reset_allocations(region_t *r);
bool placement_collection_due(region_t *r);
/* A collection of r ran and `survivors` blocks are left in its object heap: restart the count, and
 * move the trigger to max(threshold, survivors). */
void placement_collected(region_t *r, size_t survivors);
void placement_collection_ran(void);     /* module_auto_collect ran: the next crossing schedules again */
int module_auto_collect(void *unused);

/* The calling interpreter starts using regions (freelist guards, block accounting): RegionError when
 * too many interpreters do.  placement_install() attaches the first one. */
int placement_attach(void);
/* The calling interpreter stops (at its end, before its freelists are torn down): its blocks still
 * open in the calling thread exit, its freelists are put back, its guard stops. */
void placement_detach(void);

/* ---- membership.c ---- */

/* The open Region whose memory holds op, or NULL (borrowed). */
RegionObject *membership_region_of(PyObject *op);
RegionObject *membership_region_of_block(const void *p);

int membership_register(RegionObject *self);
void membership_unregister(RegionObject *self);

/* Puts every GC-tracked object where it belongs: objects tracked while blocks were open, and
 * region objects that became tracked after their block, go to their region's list; everything else
 * to the interpreter's youngest generation.  Called when a block closes, before every collection,
 * and before anything reads a region's list. */
void membership_sync(void);

/* New objects are tracked on the calling interpreter's holding list while any of its blocks is open
 * (interp_index: rpy_interp_index()); closing routes what it holds. */
void membership_blocks_opened(int interp_index);
void membership_blocks_closed(void);

/* Unregisters self without handing its members to the interpreter: they are about to be freed with
 * the region's heaps (teardown.c). */
void membership_forget(RegionObject *self);

/* Every open Region (new references), for shutdown. */
PyObject *membership_all(void);

/* ---- module.c ---- */

/* 0 if the calling thread owns self, else -1: RegionError when self is closed, OwnershipError
 * (naming `what`, the region and who owns it) when another thread or nobody does. */
int region_check_owner(RegionObject *self, const char *what);

/* One collection of self's list (the caller owns self): the objects freed, or -1 without an
 * exception when a collection is already running. */
Py_ssize_t collect_region(RegionObject *self);

/* "region 'name' (id N)" for messages. */
PyObject *region_describe(RegionObject *self);

/* ---- ownership.c ---- */

/* The creating thread becomes the owner; -1 with MemoryError. */
int ownership_init(RegionObject *self);
void ownership_free(RegionObject *self);
/* Nobody owns self any more (close, dissolve): waiters of acquire() wake up. */
void ownership_give_up(RegionObject *self);
/* The id of the calling thread's interpreter. */
static inline int64_t binding_current_interp(void) {
    return PyInterpreterState_GetID(PyInterpreterState_Get());
}

/* Whether the calling thread owns self, which is open (no exception). */
static inline bool ownership_is_caller(RegionObject *self) {
    return self->r && self->owner_token == region_thread_token() && self->owner_interp == binding_current_interp();
}
PyObject *ownership_acquire(RegionObject *self, PyObject *args, PyObject *kwargs);
PyObject *ownership_release(RegionObject *self, PyObject *unused);
PyObject *ownership_context(RegionObject *self, PyObject *args, PyObject *kwargs);
PyObject *ownership_owned(RegionObject *self);
PyObject *ownership_adopt(PyObject *module, PyObject *id);
int ownership_type_init(PyObject *module);

/* ---- handle.c ---- */
int handle_type_init(PyObject *module);
PyObject *handle_new(RegionObject *self, PyObject *obj);

/* ---- audit.c ---- */

/* r.check(): None, or IsolationError listing the escapes. */
PyObject *audit_check(RegionObject *self);

/* The same, counting references to classes (heap types other than the binding's own) as escapes
 * too: what keeps a region in the interpreter that defined those classes.  `why` heads the report. */
PyObject *audit_crossing(RegionObject *self, const char *why);

/* Whether type is one the binding made (Region, Handle, Ownership): shared by every interpreter. */
bool binding_owns_type(PyTypeObject *type);

/* The same, reporting only objects referenced from outside (what r.close() cannot free). */
PyObject *audit_incoming(RegionObject *self);

/* Every object in self's object heap, found by walking its blocks (an array in raw memory for the
 * caller to PyMem_RawFree; borrowed pointers).  Shared ones (interned strings) only if asked. */
int audit_heap_objects(RegionObject *self, bool include_shared, PyObject ***objects, size_t *count);

/* ---- teardown.c ---- */

/* Frees every object of self at once when that is proven safe (teardown.c).  Returns DONE (self->r
 * is then NULL); ISOLATED: nothing outside refers in, but a bulk free is not proven safe (free object
 * by object); ESCAPES: something outside refers in (nothing changed); ERROR with an exception. */
enum { TEARDOWN_ERROR = -1, TEARDOWN_DONE, TEARDOWN_ISOLATED, TEARDOWN_ESCAPES };
int teardown_bulk(RegionObject *self);

/* 1 when the region is proven isolated (what r.check() would accept), 0 when not proven (run the
 * audit), -1 with an exception.  Cheaper than the audit: no paths are kept.  *refers_to_classes
 * says whether any region object refers to a class of the binding's user (a heap type not the
 * binding's own), which ties the region to the interpreter that defined it. */
int teardown_proven_isolated(RegionObject *self, bool *refers_to_classes);

/* Whether a region object may refer to op, an object outside every region (audit.c's rule). */
bool audit_safe_to_share(PyObject *op);

/* Whether op is a class of the binding's user: a heap type the binding did not make. */
bool audit_is_class(PyObject *op);

/* r.objects(): every object of the region that its list and root lead to. */
PyObject *audit_objects(RegionObject *self);

#endif /* REGION_PY_BINDING_H */
