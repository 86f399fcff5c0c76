/* binding.h - what the files of the Python binding share, in the order of their sections below.
 *
 *   cpython/internals.c, collector.c   CPython's internals, all of them (cpython/internals.h)
 *   record.c       a region's record, shared by every interpreter; its Region objects, one per GIL;
 *                  the per-GIL types and exceptions
 *   placement.c    the allocator hook, its activation, and the per-thread stack of open blocks
 *   membership.c   which GC list an object is on; the registry of open regions
 *   lifecycle.c    how regions and interpreters end: dissolving, orphans, shutdown
 *   module.c       the Region type, the module's functions, initialization
 *   capi.c         the C API for extension modules (python/region/include/pyregion.h)
 *   collection.c   which collection reclaims a region's garbage, and when
 *   ownership.c    which thread may use a region; acquire, release, adopt
 *   handle.c       region.Handle
 *   audit.c        the pass that names escapes and their paths
 *   crossing.c     what a region takes along to another GIL
 *   proof.c        the isolation engine's fast pass: release, close, r.check
 *   frozen.c       frozen regions: r.freeze(), their read-only types, reading without an owner,
 *                  r.snapshot()
 *   frozen_view.c  region.FrozenView: reading a frozen region under another GIL
 *
 * All of them sit on region-host.h (libregion).  module.c is the top: nothing calls into it but the
 * interpreter, and capi.c for region_of and current.
 *
 * MEMBERSHIP: an object belongs to a region exactly when its memory block lies in a page of the
 * region's heaps (rhost_region_of, O(1): libregion's page lookup) and the region is open (the
 * region's host field is its record).  Which thread made
 * it, and where, does not matter; placement (placement.c) is what puts the objects a block creates
 * into the region's memory.  The GC-tracked members are kept on the region's own GC list, never in
 * the interpreter's generations (membership.c).
 *
 * THREADS AND INTERPRETERS: all of the binding runs with a GIL held, but not always the same one:
 * interpreters with their own GIL (3.12+) run it in parallel with the main interpreter's.  So
 * what is per GIL stays per GIL - the types and exceptions (binding_states), the Region objects
 * (record.c), the per-interpreter state (rpy_interp_attach: freelists, GC holding lists, open-block
 * counts) - and what every GIL shares is locked or atomic: the region records' counts and Region
 * objects, the registry, the orphans under binding_lock; the owner fields, the block count and the
 * region memory bounds atomically.  A region's own state (its heap, GC list, root, statistics) is
 * used by its owner only, and libregion's owner lock orders one owner after the next.
 */
#ifndef REGION_PY_BINDING_H
#define REGION_PY_BINDING_H

#include "cpython/internals.h"
#include "region-host.h"

/* Interpreters with their own GIL, and the main interpreter's GIL (binding_gil). */
#define RPY_MAX_GILS (RPY_MAX_INTERPRETERS + 1)

/* The region as the binding knows it: one RECORD per region, shared by every interpreter (raw
 * memory, no Python object), and a RegionObject per GIL for Python code (binding_proxy).
 *
 * LIFETIME: `refs` counts the proxies, the open blocks (placement's stack) and the short-lived
 * holders (membership_snapshot); all under binding_lock.  When it reaches 0 the region is dissolved
 * (its objects become ordinary objects, lifecycle.c) and the record freed.  Closing dissolves too,
 * earlier: then r is NULL and the record stays for the proxies, which report it closed. */
typedef struct rpy_region {
    region_t *r;               /* NULL once the region was closed or dissolved */
    uint64_t id;
    char *name;                /* UTF-8, raw memory: a str would belong to one interpreter */
    PyObject *root;            /* strong; NULL when unset; an object of the region or shared */
    rpy_gclist_t *members;     /* raw memory: a list head must never move */
    Py_ssize_t blocks_open;    /* `with` blocks open on this region (all entered by the owner thread) */
    void *blocks_stack;        /* placement.c: the stack of the thread they were entered in, or NULL */
    bool collecting;           /* collect_region is running on it (finalizers may be running) */
    /* OWNERSHIP: at most one thread owns the region, and only it may use it (region_check_owner).
     * The owner is libregion's (ownership_token: that thread's region_thread_token(), 0 while nobody
     * owns it), and owner_interp the id of the interpreter the thread used the region in (a thread
     * can run several: a subinterpreter's run_string runs in the calling thread), written by the
     * owner and read by anyone (other GILs too): atomically. */
    int64_t owner_interp;
    /* What the proof of the last release found the region referring to outside it (ownership.c,
     * "Crossing interpreters"): classes_of is the interpreter whose classes its objects refer to, or
     * -1; refers_to_mortal says whether any outside object it refers to is mortal (not immortal),
     * released_by and released_own_gil who released it (-1: nobody yet). */
    int64_t classes_of;
    bool refers_to_mortal;
    int64_t released_by;
    bool released_own_gil;
    char *gil_crossing_report;  /* the IsolationError text for another GIL (raw memory), or NULL */
    const char *gone;          /* why r is NULL: "closed", "dissolved at interpreter shutdown" */
    /* FROZEN (frozen.c): set once r.freeze() has given every mutable object a read-only type and
     * given up ownership; cleared only by close().  Read by any GIL (atomic); frozen_gil is the
     * binding_gil() it was frozen under, the only one that may read it. */
    bool frozen;
    int frozen_gil;
    /* close() of a frozen region sets `closing` under binding_lock when no other GIL holds a Region
     * of it, and from then on no other GIL may start reading it (frozen_view.c, LIFETIME).  Cleared
     * if the close fails.  Sequentially consistent atomics. */
    bool closing;

    /* collection statistics (r.collect, automatic collections) */
    uint64_t collections;
    uint64_t collected;        /* objects freed by collections, all together */
    uint64_t uncollectable;    /* objects kept for a legacy finalizer (in gc.garbage) */
    uint64_t last_pause_ns, total_pause_ns;

    Py_ssize_t refs;
    struct RegionObject *proxies[RPY_MAX_GILS];   /* by binding_gil(); borrowed */
    struct rpy_region *open_next, *open_prev;      /* the open regions (membership.c), binding_lock */
    uint64_t foreach_walk;     /* membership.c's one-by-one walk that last called back for it */
} rpy_region_t;

/* region.Region: one per region and GIL (every interpreter that shares a GIL shares its Region
 * objects: a region id names the same Region there). */
typedef struct RegionObject {
    PyObject_HEAD
    rpy_region_t *rec;         /* strong (a count in rec->refs) */
    PyObject *name;            /* str, of this GIL's interpreters */
    PyObject *weakreflist;
    void *spare_views;         /* frozen_view.c: memory of dead views, for the next ones (a list
                                  linked through their first word); freed with the Region */
    int spare_view_count;
} RegionObject;

/* ---- record.c: records, their proxies, GILs ---- */

/* What the binding's Python side is made of, per GIL (binding_gil): its types and exceptions.  The
 * interpreters that share a GIL share these (and the Region objects); an interpreter with its own GIL
 * has its own, since a Python object touched under two GILs is a refcount data race. */
#define FROZEN_KINDS 4   /* list, dict, set, bytearray, in this order (frozen.c's frozen_kinds) */

typedef struct binding_state {
    PyTypeObject *region_type, *handle_type, *ownership_type;
    PyTypeObject *frozen_types[FROZEN_KINDS];
    PyObject *frozen_mark;     /* the key in a frozen subclass's namespace naming its class */
    PyTypeObject *frozen_view_type, *frozen_view_iter_type;   /* frozen_view.c */
    PyObject *region_error, *isolation_error, *ownership_error, *handle_error, *frozen_error;
    bool counted;              /* in binding_own_gils */
} binding_state_t;

extern binding_state_t binding_states[RPY_MAX_GILS];
/* How many interpreters with their own GIL have the package's state now (atomic). */
extern int binding_own_gils;

/* The GIL the calling interpreter runs under: 0 for the main interpreter's (all of 3.11's
 * interpreters, and the "legacy" ones of 3.12+), 1 + rpy_interp_index() for an interpreter with its
 * own.  An interpreter that is not attached counts as the main one's (it has no state of its own). */
int binding_gil(void);
static inline binding_state_t *binding_state(void) { return &binding_states[binding_gil()]; }

#define Region_Type (binding_state()->region_type)
#define Handle_Type (binding_state()->handle_type)
#define Ownership_Type (binding_state()->ownership_type)
#define RegionError (binding_state()->region_error)
#define IsolationError (binding_state()->isolation_error)
#define OwnershipError (binding_state()->ownership_error)
#define HandleError (binding_state()->handle_error)
#define FrozenError (binding_state()->frozen_error)

/* The lock of what every GIL reads and writes: the records' refs and proxies, the registry of open
 * regions (membership.c), the orphans (lifecycle.c), the allocation counts (placement.c).  Never held
 * while Python code can run or the GIL is waited for. */
void binding_lock(void);
void binding_unlock(void);

/* An interpreter with its own GIL ends: its types and exceptions go with it (nothing for the main
 * interpreter's GIL). */
void binding_state_forget(void);

/* Whether type is one the binding made (Region, Handle, Ownership, the frozen types) for the calling
 * GIL. */
bool binding_owns_type(PyTypeObject *type);

/* "region 'name' (id N)" for messages. */
PyObject *region_describe(rpy_region_t *self);

/* A new record for r (refs 0, owned by the calling thread), or NULL with MemoryError. */
rpy_region_t *record_new(region_t *r, const char *name);
void record_ref(rpy_region_t *rec);
/* Frees a record nobody refers to and no registry lists (a failed creation, or after the last
 * record_unref). */
void record_discard(rpy_region_t *rec);
/* Drops a reference; the last one dissolves the region (record_dissolve) and frees the record. */
void record_unref(rpy_region_t *rec);

/* The Region of rec for the calling GIL (a new reference), made on first use; NULL with an
 * exception. */
PyObject *binding_proxy(rpy_region_t *rec);
/* For Region's deallocator: self stops being a Region of its record; returns the record, whose
 * reference the caller drops (record_unref). */
rpy_region_t *binding_proxy_gone(RegionObject *self);

/* ---- placement.c ---- */

/* The calling interpreter is about to make or acquire a region: the allocator hook and the
 * deallocator wrappers go in (the first time in the process), and this interpreter's freelist guards
 * start (the first time in it); placement.c, ACTIVATION.  0, or -1 with an exception.
 * placement_active() says whether both happened. */
int placement_activate(void);
bool placement_active(void);

/* Opens / closes a `with` block of self in the calling thread. */
int placement_enter(rpy_region_t *self);
int placement_exit(rpy_region_t *self);

/* The region receiving the calling thread's allocations, or NULL (borrowed). */
rpy_region_t *placement_current(void);
/* region.current(): a new reference to its Region, or None (NULL with an exception). */
PyObject *placement_current_proxy(void);

/* region.outside(): the calling thread's allocations go to the ordinary heap until the matching
 * resume, blocks open or not (placement.c, OUTSIDE).  -1 with an exception. */
int placement_suspend(void);
int placement_resume(void);

/* Test support: calls fn() with an equivalent allocator in place of the hook. */
PyObject *placement_with_foreign_allocator(PyObject *fn);

/* Automatic collection: the allocator hook counts object allocations per region and, when a
 * region's count reaches its threshold (0: never), schedules collection_auto() as a pending
 * call (run by the main thread between two bytecodes: a safe point). */
void placement_set_threshold(region_t *r, uint32_t threshold);
uint32_t placement_threshold(region_t *r);
uint32_t placement_allocations(region_t *r);     /* since the last collection */
void placement_reset_allocations(region_t *r);
bool placement_collection_due(region_t *r);
/* A collection of r ran and `survivors` blocks are left in its object heap: restart the count, and
 * move the trigger to max(threshold, survivors). */
void placement_collected(region_t *r, size_t survivors);
void placement_collection_ran(void);     /* collection_auto ran: the next crossing schedules again */

/* The regions of the blocks open in the calling thread that its running interpreter opened, innermost
 * first, each once: how many were stored in out (at most max). */
int placement_open_regions(rpy_region_t **out, int max);

/* The calling interpreter may use regions (its entry: block accounting, and later its freelist
 * guards): RegionError when too many interpreters do.  At the package's import in it. */
int placement_attach(void);
/* The calling interpreter stops (at its end, before its freelists are torn down): its blocks still
 * open in the calling thread exit (placement_end_blocks alone does that), its freelists are put
 * back, its guard stops. */
void placement_end_blocks(void);
void placement_detach(void);

/* ---- membership.c ---- */

/* The open region whose memory holds op, or NULL (borrowed: the caller owns that region, or compares
 * the pointer only). */
rpy_region_t *membership_region_of(PyObject *op);
/* The same, as a new reference (record_unref it), for a caller that reads the record of a region it
 * may not own: another GIL may drop that region's last reference meanwhile. */
rpy_region_t *membership_hold(PyObject *op);
rpy_region_t *membership_hold_block(const void *p);

int membership_register(rpy_region_t *self);
/* Takes self out of the registry (binding_lock held): nobody finds it by id or memory any more. */
void membership_unlist_locked(rpy_region_t *self);
void membership_unregister(rpy_region_t *self);

/* Puts every GC-tracked object where it belongs: objects tracked while blocks were open, and
 * region objects that became tracked after their block, go to their region's list; everything else
 * to the interpreter's youngest generation.  Called before every collection and before anything
 * reads a region's list. */
void membership_sync(void);

/* The first half of membership_sync, what a block's exit needs: the objects tracked while blocks
 * were open, routed.  O(held objects); it does not walk the youngest generation. */
void membership_route_held(void);

/* Moves the objects of open regions in the interpreter's oldest generation back to their regions'
 * lists (after a full collection that had them merged in: collection.c). */
void membership_reclaim_from_oldest(void);

/* New objects are tracked on the calling interpreter's holding list while any of its blocks is open
 * (interp_index: rpy_interp_index()); closing routes what it holds. */
void membership_blocks_opened(int interp_index);
void membership_blocks_closed(void);

/* Unregisters self without handing its members to the interpreter: they are about to be freed with
 * the region's heaps (proof.c, "Bulk teardown"). */
void membership_forget(rpy_region_t *self);

/* Calls fn(rec, arg) for every open region (each held by a reference meanwhile). */
void membership_foreach(void (*fn)(rpy_region_t *rec, void *arg), void *arg);

/* The open region with this id, or NULL (a new reference: record_unref it). */
rpy_region_t *membership_find(uint64_t id);

/* region.region_of(obj): a new reference to the Region obj belongs to, or None (NULL with an
 * exception). */
PyObject *membership_region_proxy(PyObject *obj);

/* ---- lifecycle.c: how regions and interpreters end ---- */

/* The region goes away: its members become ordinary objects, its memory an orphan (or is freed
 * now when nothing lives in it).  `why` is what the proxies report. */
void region_dissolve(rpy_region_t *self, const char *why);

/* Destroys the orphans no object lives in any more: all of them, or (all false) a few, in turns. */
void lifecycle_sweep_orphans(bool all);
unsigned lifecycle_orphans(void);

/* atexit (region/__init__.py): the main interpreter dissolves every region before finalization; an
 * interpreter with its own GIL gives up the regions its threads own. */
void lifecycle_shutdown(void);

/* A subinterpreter's end will give up its regions and its state (once per interpreter): 0, or -1
 * with an exception. */
int lifecycle_watch_interpreter_end(void);

/* ---- capi.c ---- */

/* Adds the capsule region._C_API (python/region/include/pyregion.h) to the module. */
int capi_add(PyObject *module);

/* ---- collection.c ---- */

/* One collection of self's list (the caller owns self): the objects freed, or -1 without an
 * exception when self's own collection is already running (called from one of its finalizers). */
Py_ssize_t collect_region(rpy_region_t *self);

/* A full collection with self merged in (collection.c): the interpreter's gc.collect() result, 0 when
 * self's own collection is already running, or -1 with an exception. */
Py_ssize_t collect_region_full(rpy_region_t *self);

/* The "start" and "stop" gc callbacks of a full collection (generation 2): merge the regions taking
 * part into the oldest generation, and take their survivors back. */
#define RPY_MAX_MERGED 65   /* the most blocks a thread may have open, and one asked for */
void collection_full_starts(void);
void collection_full_ends(void);

/* The pending call of automatic collection (placement.c schedules it). */
int collection_auto(void *unused);


/* ---- ownership.c ---- */

/* 0 if the calling thread owns self, else -1: RegionError when self is closed, OwnershipError
 * (naming `what`, the region and who owns it) when another thread or nobody does. */
int region_check_owner(rpy_region_t *self, const char *what);

/* What release() and freeze() prove before the region goes: nothing outside refers in, nothing inside
 * to a mutable object outside (collecting its garbage first when that is what stands in the way); no
 * block open, no collection running.  `what` names the operation in errors.  0, or -1 with an
 * exception (IsolationError naming every escape).  The caller owns self. */
int ownership_prove(rpy_region_t *self, const char *what, bool *refers_to_classes, bool *refers_to_mortal);

/* The creating thread, libregion's owner of the region it just made, owns self. */
void ownership_init(rpy_region_t *self);
/* The calling thread takes self if nobody owns it (a frozen region's close): whether it did. */
bool ownership_try_take(rpy_region_t *self);
/* Nobody owns self any more (release, freeze, close): waiters of acquire() wake up. */
void ownership_give_up(rpy_region_t *self);
/* The calling thread's interpreter ends while owning self: gives it up, noting first (as release()
 * does) what another GIL's acquire() must know (ownership.c, "Crossing interpreters"), and letting
 * its pages go when the calling thread is the owner. */
void ownership_abandon(rpy_region_t *self);
/* Whether the calling interpreter may not touch self's objects, or what they refer to: a thread of
 * another GIL owns self, or nobody does and it refers to mortal objects of another GIL's interpreter
 * (which that interpreter may be using, or which died with it).  Such a region is left behind when it
 * goes away (region_dissolve). */
bool ownership_stranded(rpy_region_t *self);
/* Whether the calling thread may read self's bookkeeping (its handle table) without owning it: nobody
 * owns it, or its owner runs under the same GIL (which serializes the two). */
bool ownership_readable(rpy_region_t *self);
/* The id of the calling thread's interpreter. */
static inline int64_t binding_current_interp(void) {
    return PyInterpreterState_GetID(PyInterpreterState_Get());
}

/* The owner, read by anyone: libregion's thread token (0 for none, or once self is closed) and the
 * interpreter it used self in (a relaxed atomic: libregion's owner lock orders the hand-over). */
static inline uint64_t ownership_token(rpy_region_t *self) {
    region_t *r = __atomic_load_n(&self->r, __ATOMIC_RELAXED);
    return r ? rhost_owner(r, self->id) : 0;
}
static inline int64_t ownership_interp(rpy_region_t *self) { return __atomic_load_n(&self->owner_interp, __ATOMIC_RELAXED); }

/* Whether the calling thread owns self, which is open (no exception). */
static inline bool ownership_is_caller(rpy_region_t *self) {
    return self->r && ownership_token(self) == region_thread_token() && ownership_interp(self) == binding_current_interp();
}
/* r.acquire() and r.release() for C callers (capi.c): seconds -1 waits forever; 1 acquired, 0 timed
 * out, -1 with an exception. */
int ownership_take(rpy_region_t *self, double seconds);
int ownership_let_go(rpy_region_t *self);
PyObject *ownership_acquire(RegionObject *self, PyObject *args, PyObject *kwargs);
PyObject *ownership_release(RegionObject *self, PyObject *unused);
PyObject *ownership_context(RegionObject *self, PyObject *args, PyObject *kwargs);
PyObject *ownership_owned(RegionObject *self);
PyObject *ownership_adopt(PyObject *module, PyObject *id);
int ownership_type_init(PyObject *module);

/* ---- handle.c ---- */
int handle_type_init(PyObject *module);
PyObject *handle_new(rpy_region_t *self, PyObject *obj);

/* ---- audit.c ---- */

/* r.check(): None, or IsolationError listing the escapes. */
PyObject *audit_check(rpy_region_t *self);

/* The same, counting references to classes (heap types other than the binding's own) as escapes
 * too: what keeps a region in the interpreter that defined those classes.  `why` heads the report. */
PyObject *audit_crossing(rpy_region_t *self, const char *why);

/* The same, counting references to mortal objects as escapes too (rpy_is_immortal): what keeps a
 * region under the GIL of the interpreters whose objects those are. */
PyObject *audit_gil_crossing(rpy_region_t *self, const char *why);


/* The same, reporting only objects referenced from outside (what r.close() cannot free), and None
 * (not an error) when everything that holds on is the interpreter's own state (region/_audit.py,
 * holders_of): r.close() gives those objects back to the ordinary heap. */
PyObject *audit_incoming(rpy_region_t *self);

/* ---- crossing.c ---- */

/* Copies into self (owned by the caller, no block open) every mortal immutable value outside it
 * (float, int, complex, str, bytes) that one of its lists, tuples or dicts refers to, dict keys
 * included, replacing the references: how many were copied, or -1 with an exception. */
Py_ssize_t crossing_copy_values(rpy_region_t *self);

/* A copy in the ordinary heap of an immutable value of a region (float, int, complex, str, bytes, or
 * tuples of them, deeply), for close() to give a value back to an outside holder; objects outside
 * every region come back as they are; NULL with TypeError for anything else. */
PyObject *crossing_copy_out(PyObject *op);

/* ---- proof.c: the isolation engine's fast pass ---- */

/* Frees every object of self at once when that is proven safe (proof.c, "Bulk teardown").  Returns
 * DONE (self->r is then NULL); ISOLATED: nothing outside refers in, but a bulk free is not proven
 * safe (free object by object); ESCAPES: not proven that nothing outside refers in (the audit
 * decides; nothing changed); ERROR with an exception. */
enum { TEARDOWN_ERROR = -1, TEARDOWN_DONE, TEARDOWN_ISOLATED, TEARDOWN_ESCAPES };
int teardown_bulk(rpy_region_t *self);

/* 1 when the region is proven isolated (what r.check() would accept), 0 when not proven (run the
 * audit), -1 with an exception.  One scan of the object pages, no graph.  *refers_to_classes says
 * whether any region object refers to a class of the binding's user (a heap type not the binding's
 * own), which ties the region to the interpreter that defined it; *refers_to_mortal whether any
 * outside object it refers to is mortal, which ties it to its GIL (both upper bounds: true when
 * the scan stopped short). */
int proof_isolated(rpy_region_t *self, bool *refers_to_classes, bool *refers_to_mortal);

/* proof_isolated, calling each(op, arg) for every object the scan finds but those of exact tuple,
 * int, float and plain str (immutable, read in place by the scan: proof.c, SPLIT SCANS), after the
 * scan read op's count: each runs inside the scan (no Python code, nothing allocated in the region;
 * it may take a reference to op, and to objects outside the region), in the calling thread, in no
 * particular order.  each(NULL, arg) starts a new pass: forget the objects of the last one (the scan
 * runs again when a kept type set was out of date).  When the result is 1, each saw every such object
 * of the region. */
int proof_isolated_visiting(rpy_region_t *self, void (*each)(PyObject *op, void *arg), void *arg,
                            bool *refers_to_classes, bool *refers_to_mortal);

/* Every object in self's object heap, found by scanning its blocks (an array in raw memory for the
 * caller to PyMem_RawFree; borrowed pointers).  Shared ones (interned strings) only if asked.  0, or
 * -1 with MemoryError. */
int proof_heap_objects(rpy_region_t *self, bool include_shared, PyObject ***objects, size_t *count);

/* Calls fn(op, arg) for every object in self's object heap, shared ones included, in address order
 * (a fresh type set: every object is found).  fn runs inside the scan of the heap's pages: it must run
 * no Python code and allocate nothing in the region (it may change reference counts); returning
 * false stops the scan.  0 when every object was visited, 1 when fn stopped it, -1 with MemoryError. */
int proof_foreach_object(rpy_region_t *self, bool (*fn)(PyObject *op, void *arg), void *arg);

/* The benchmarks' floor (bench/proof_bench.py): one read of each 64-byte line of the pages of
 * self's object and buffer heaps, the least any pass over the region's memory costs.  Returns the
 * bytes read; *sum keeps the reads from being optimized away. */
size_t proof_stream(rpy_region_t *self, uint64_t *sum);

/* Whether a region object may refer to op, an object outside every region (audit.c's rule). */
bool audit_safe_to_share(PyObject *op);

/* Whether op is a class of the binding's user: a heap type the binding did not make. */
bool audit_is_class(PyObject *op);

/* r.objects(): every object of the region that its list and root lead to. */
PyObject *audit_objects(rpy_region_t *self);

/* ---- frozen.c ---- */

/* The calling GIL's frozen types (binding_state); at the module's set-up.  0 or -1. */
int frozen_types_init(void);

/* r.freeze(), r.frozen. */
PyObject *frozen_freeze(RegionObject *self, PyObject *unused);
PyObject *frozen_get(RegionObject *self, void *closure);
/* r.snapshot(name=None, *, node=None, binding="preferred"): a new frozen region holding a copy of
 * r's graph; r stays as it was (its owner's, or frozen). */
PyObject *frozen_snapshot(RegionObject *self, PyObject *args, PyObject *kwargs);

/* 0 unless self is frozen; then -1 with RegionError: `what` (acquire, release, with, root = ...)
 * needs an owner, or changes the region. */
int frozen_check_mutable(rpy_region_t *self, const char *what);

/* What may read self (root, handles, check, stats, ...): its owner, or when frozen any thread under
 * the GIL it was frozen under (and in the interpreter that froze it, if its objects refer to classes).
 * 0, or -1 with the error. */
int frozen_check_reader(rpy_region_t *self, const char *what);

/* Whether objects of other regions, and objects outside every region, may refer to objects of self:
 * it is frozen, readable under the calling GIL, and its objects are no class's instances (which
 * would tie whatever refers to them to the interpreter of those classes). */
bool frozen_shareable(rpy_region_t *self);

/* adopt(): 0 unless self is frozen and the calling interpreter may not read it (-1 with the error). */
int frozen_check_adoptable(rpy_region_t *self);

/* close() of a frozen region: makes the caller its owner, proves nothing outside refers in, gives
 * every object its own type back.  0 (then close it as any owned region, and on failure call
 * frozen_refreeze_after_failed_close, which freezes it again if it is still proven isolated), or -1
 * with an exception and the region frozen as before. */
int frozen_thaw_for_close(rpy_region_t *self);
void frozen_refreeze_after_failed_close(rpy_region_t *self);

/* Whether self is frozen and the calling GIL is not the one it was frozen under: then r.root is a
 * FrozenView (frozen_view.c), and nothing else of the region may be read. */
bool frozen_read_elsewhere(rpy_region_t *self);

/* ---- frozen_view.c ---- */

/* The calling GIL's FrozenView types (binding_state); at the module's set-up.  0 or -1. */
int frozen_view_types_init(void);

/* Frees the spare views of a Region that is going away. */
void frozen_view_spares_free(RegionObject *self);

/* r.root of a frozen region under another GIL: a FrozenView of it (or a copy of an immutable root,
 * or None); NULL with an exception. */
PyObject *frozen_view_root(RegionObject *self);

#endif /* REGION_PY_BINDING_H */
