/* collection.c - the collection driver: which collection reclaims a region's garbage, and when.
 *
 * A REGION COLLECTION (collect_region, r.collect()) runs CPython's cycle collector on the region's
 * list alone (cpython/collector.c): its cost is proportional to the region, and references leaving the
 * region count as roots.  So it cannot reclaim a cycle that passes through an ordinary object (a
 * region object and an outside object holding each other, a function made in a block and the
 * globals dict of a module that is gone): each side is referenced from the other's side.
 *
 * A FULL COLLECTION does: the interpreter's own full collection, with the region's list merged into
 * its oldest generation first (at the "start" gc callback) and the region's survivors taken back out
 * at "stop".  CPython's collector then sees both sides of every such cycle.  Its cost is a full
 * gc.collect() plus the region.  Which regions take part:
 *   - r.collect(full=True): that region;
 *   - r.close(), before it gives up with IsolationError: that region (the garbage it would report as
 *     escapes is often such a cycle);
 *   - any full collection (gc.collect()) that starts while the thread has blocks open: the regions
 *     of those blocks, so that code which relies on gc.collect() to break its cycles behaves the same
 *     inside a block as outside.
 * Outside blocks, gc.collect() never touches a region (its members are never in a generation).
 *
 * INVARIANTS
 *   - A region is merged only into a collection run by its owner thread, and is marked `collecting`
 *     (with a record reference) until the "stop" callback takes it back: r.close(), r.release() and
 *     r.collect() refuse meanwhile, and the record cannot be dissolved under the merged list.
 *   - Full collections of one interpreter never nest: CPython's own collector refuses a second one
 *     while gc.collecting is set (a finalizer's gc.collect() returns 0, without callbacks), so one
 *     merged set per interpreter suffices (not per thread: static TLS is scarce in a dlopen'd module,
 *     placement.c).
 *
 * AUTOMATIC COLLECTION (placement.c counts allocations) schedules collection_auto as a pending
 * call; it collects the due regions the main thread owns, and the owner of any other collects at the
 * end of its next block (module.c, Region_exit).
 */
#include "binding.h"

#include <time.h>

static uint64_t monotonic_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* ---- The region collection ---- */

/* A collection's scope (rpy_scope_t): the slices of the region's object pages, from the isolation
 * engine's map of them.  Out of memory the map is empty, and the collection frees nothing (every
 * member looks outside). */
typedef struct region_scope {
    rpy_scope_t view;          /* first: refresh gets it */
    region_t *r;
    riso_t slices;
} region_scope_t;

static void scope_refresh(rpy_scope_t *view) {
    region_scope_t *scope = (region_scope_t *)view;
    if (scope->slices.r) riso_end(&scope->slices);
    if (riso_begin_objects(&scope->slices, scope->r) != REGION_OK) scope->slices = (riso_t){.r = scope->r};
    const riso_slices_t *objects = &scope->slices.objects;
    *view = (rpy_scope_t){.base = scope->slices.base, .size = scope->slices.size, .bits = objects->bits,
                          .first = objects->first, .count = objects->count, .refresh = scope_refresh};
}

/* One collection of self's list.  Returns the objects freed, or -1 (without an exception) when the
 * region's own collection is already running: like gc.collect(), a collection requested from one of
 * its finalizers does nothing.  Collections of other regions, and the interpreter's in any thread,
 * may be running (collector.c, OTHER COLLECTIONS). */
Py_ssize_t collect_region(rpy_region_t *self) {
    if (self->collecting) return -1;
    membership_sync();
    uint64_t start = monotonic_ns();
    Py_ssize_t collected, uncollectable;
    self->collecting = true;
    region_scope_t scope = {.r = self->r, .view.refresh = scope_refresh};
    scope_refresh(&scope.view);
    rpy_collect(self->members, &scope.view, &collected, &uncollectable);
    riso_end(&scope.slices);
    self->collecting = false;
    uint64_t pause = monotonic_ns() - start;
    /* A finalizer may have closed the region (r.close() from __del__ returns early: it needs no
     * collection running), so self->r is checked again. */
    if (self->r) {
        /* Survivors counted like allocations: blocks of the object heap (O(pages)). */
        size_t blocks = 0, bytes = 0;
        rhost_heap_usage(self->r, true, &blocks, &bytes);
        placement_collected(self->r, blocks);
    }
    self->collections++;
    self->collected += (uint64_t)collected;
    self->uncollectable += (uint64_t)uncollectable;
    self->last_pause_ns = pause;
    self->total_pause_ns += pause;
    return collected;
}

/* ---- Full collections ---- */

/* Per interpreter (rpy_interp_index): the regions merged into its full collection now running, and
 * the one r.collect(full=True) asks for next.  Each merged one holds a record reference. */
typedef struct full_collection {
    rpy_region_t *requested;
    rpy_region_t *merged[RPY_MAX_MERGED];
    Py_ssize_t tracked_before[RPY_MAX_MERGED];   /* members when merged */
    int count;
    uint64_t start_ns;
} full_collection_t;

static full_collection_t full_collections[RPY_MAX_INTERPRETERS];

/* The calling interpreter's (attached: it imported the package, or it would not run region code). */
static full_collection_t *full_collection(void) { return &full_collections[rpy_interp_index()]; }

static void merge(full_collection_t *full, rpy_region_t *self) {
    for (int i = 0; i < full->count; i++)
        if (full->merged[i] == self) return;
    if (full->count == RPY_MAX_MERGED || !self->r || self->collecting || !ownership_is_caller(self)) return;
    record_ref(self);
    self->collecting = true;
    full->tracked_before[full->count] = rpy_gclist_length(self->members);
    rpy_gclist_merge_into_oldest(self->members);
    full->merged[full->count++] = self;
}

void collection_full_starts(void) {
    full_collection_t *full = full_collection();
    rpy_region_t *open[RPY_MAX_MERGED];
    int n = placement_open_regions(open, RPY_MAX_MERGED);
    if (!full->requested && !n) return;
    full->start_ns = monotonic_ns();
    if (full->requested) merge(full, full->requested);
    full->requested = NULL;
    for (int i = 0; i < n; i++) merge(full, open[i]);
}

void collection_full_ends(void) {
    full_collection_t *full = full_collection();
    if (!full->count) return;
    membership_reclaim_from_oldest();
    uint64_t pause = monotonic_ns() - full->start_ns;
    for (int i = 0; i < full->count; i++) {
        rpy_region_t *self = full->merged[i];
        self->collecting = false;
        self->collections++;
        /* Tracked members that are gone: the collector's own count covers the whole heap. */
        Py_ssize_t after = self->members ? rpy_gclist_length(self->members) : 0;
        if (full->tracked_before[i] > after) self->collected += (uint64_t)(full->tracked_before[i] - after);
        self->last_pause_ns = pause;
        self->total_pause_ns += pause;
        if (self->r) placement_reset_allocations(self->r);
        record_unref(self);
    }
    full->count = 0;
}

Py_ssize_t collect_region_full(rpy_region_t *self) {
    if (self->collecting) return 0;
    full_collection_t *full = full_collection();
    PyObject *gc = PyImport_ImportModule("gc");
    full->requested = self;
    PyObject *result = gc ? PyObject_CallMethod(gc, "collect", NULL) : NULL;
    bool merged = full->requested == NULL;   /* the "start" callback took it */
    full->requested = NULL;
    Py_XDECREF(gc);
    if (!result) return -1;
    Py_ssize_t collected = PyLong_AsSsize_t(result);
    Py_DECREF(result);
    if (!merged && self->r) {   /* no full collection ran (another thread's is under way) */
        Py_ssize_t own = collect_region(self);
        collected = own < 0 ? 0 : own;
    }
    return collected;
}

/* ---- Automatic collection ---- */

/* Only the owner may collect; a region owned by another thread is collected when its owner closes a
 * block (Region_exit). */
static void collect_if_due(rpy_region_t *self, void *unused) {
    (void)unused;
    if (ownership_is_caller(self) && placement_collection_due(self->r)) collect_region(self);
}

int collection_auto(void *unused) {
    (void)unused;
    placement_collection_ran();
    membership_foreach(collect_if_due, NULL);
    return 0;
}
