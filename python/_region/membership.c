/* membership.c - which GC list each object is on.
 *
 * A region's GC-tracked objects live on its own list (rpy_region_t.members), which the interpreter's
 * collector never scans (internals.c, "GC lists"), so gc.collect() does not traverse them.
 *
 * How objects get there.  CPython tracks every new GC object on interp->gc.generation0.  While any
 * block of an interpreter is open (in any of its threads) that pointer is redirected to the
 * interpreter's HOLDING list below, so nothing tracked during a block lands in a generation.
 * A block's exit routes each held object by its memory (membership_route_held): to its region's
 * list, or to the youngest generation (objects other threads made, or objects made outside regions
 * that became tracked during the block).  Region objects that become tracked after their block (a
 * dict is created untracked and tracked when it first holds a container) land in the youngest
 * generation; membership_sync() moves them too, and it runs before every collection (from a gc
 * callback) and before anything reads a region's list (the proof, the audit, a region's collection,
 * r.objects()), so neither the collector nor a reader of the lists ever misses one.  It reads only
 * what entered the generation since its previous run (internals.c, "Arrivals"), and a block's exit
 * does not walk the generation at all: what it could find there is found by the next sync.
 *
 * When a Region goes away its members are merged into the oldest generation of the interpreter
 * running then: they become ordinary objects, collected by that interpreter from then on.
 *
 * INTERPRETERS: the registry is the process's (a region id means the same region everywhere; it is
 * written under binding_lock and read atomically, by every GIL); the holding lists and the
 * generations are per interpreter, and sync routes the calling interpreter's.
 */
#include "binding.h"

/* The open regions: each one's record is r->host (rhost_set_record), found from any block's memory
 * through libregion's page map, and on the list `open_regions` for the walks by id and of all.
 * Borrowed: cleared by membership_unregister before the record is freed.  Written under
 * binding_lock, the host field read with atomic loads: every GIL looks its objects up there. */
static rpy_region_t *open_regions;
static rpy_gclist_t holding[RPY_MAX_INTERPRETERS];   /* by rpy_interp_index */
static bool holding_ready[RPY_MAX_INTERPRETERS];

rpy_region_t *membership_region_of(PyObject *op) {
    region_t *r = rhost_region_of(op);
    return r ? rhost_record(r) : NULL;
}

rpy_region_t *membership_hold_block(const void *p) {
    region_t *r = rhost_region_of(p);
    if (!r) return NULL;
    binding_lock();
    rpy_region_t *rec = rhost_record(r);
    if (rec) rec->refs++;
    binding_unlock();
    return rec;
}

rpy_region_t *membership_hold(PyObject *op) { return membership_hold_block(op); }

int membership_register(rpy_region_t *self) {
    self->members = PyMem_RawMalloc(sizeof(rpy_gclist_t));
    if (!self->members) {
        PyErr_NoMemory();
        return -1;
    }
    rpy_gclist_init(self->members);
    binding_lock();
    assert(rhost_record(self->r) == NULL);   /* a new region: create zeroed its host fields */
    rhost_set_record(self->r, self);
    self->open_prev = NULL;
    self->open_next = open_regions;
    if (open_regions) open_regions->open_prev = self;
    open_regions = self;
    binding_unlock();
    return 0;
}

void membership_unlist_locked(rpy_region_t *self) {
    if (!self->r || rhost_record(self->r) != self) return;
    rhost_set_record(self->r, NULL);
    if (self->open_prev) self->open_prev->open_next = self->open_next;
    else open_regions = self->open_next;
    if (self->open_next) self->open_next->open_prev = self->open_prev;
    self->open_next = self->open_prev = NULL;
}

static void unlist(rpy_region_t *self) {
    binding_lock();
    membership_unlist_locked(self);
    binding_unlock();
}

void membership_unregister(rpy_region_t *self) {
    if (!self->members) return;
    membership_sync();
    rpy_gclist_merge_into_oldest(self->members);
    PyMem_RawFree(self->members);
    self->members = NULL;
    unlist(self);
}

void membership_forget(rpy_region_t *self) {
    if (!self->members) return;
    PyMem_RawFree(self->members);   /* its nodes are region memory, freed with the heaps */
    self->members = NULL;
    unlist(self);
}

/* An object's memory block may start before it (GC header); any address inside the block is in the
 * same mimalloc page, so the object pointer itself tells the region. */
static rpy_gclist_t *route_by_memory(PyObject *op, void *arg) {
    (void)arg;
    rpy_region_t *owner = membership_region_of(op);
    return owner ? owner->members : NULL;
}

void membership_route_held(void) {
    int index = rpy_interp_index();
    if (index >= 0 && holding_ready[index]) rpy_gclist_route(&holding[index], route_by_memory, NULL);
}

void membership_sync(void) {
    membership_route_held();
    rpy_generation0_route_arrivals(route_by_memory, NULL);
}

void membership_reclaim_from_oldest(void) { rpy_generation_route(-1, route_by_memory, NULL); }

void membership_blocks_opened(int interp_index) {
    if (!holding_ready[interp_index]) {
        rpy_gclist_init(&holding[interp_index]);
        holding_ready[interp_index] = true;
    }
    rpy_tracking_redirect(&holding[interp_index]);
}

void membership_blocks_closed(void) {
    rpy_tracking_redirect(NULL);
    membership_route_held();
}

/* Out of memory for membership_foreach's array: one record at a time, each marked with this walk's
 * number so that it is called once (new records join at the head, so the search restarts there). */
static void foreach_one_by_one(void (*fn)(rpy_region_t *rec, void *arg), void *arg) {
    static uint64_t walks;   /* under binding_lock */
    binding_lock();
    uint64_t walk = ++walks;
    binding_unlock();
    for (;;) {
        binding_lock();
        rpy_region_t *rec = open_regions;
        while (rec && rec->foreach_walk == walk) rec = rec->open_next;
        if (rec) {
            rec->foreach_walk = walk;
            rec->refs++;
        }
        binding_unlock();
        if (!rec) return;
        fn(rec, arg);
        record_unref(rec);
    }
}

void membership_foreach(void (*fn)(rpy_region_t *rec, void *arg), void *arg) {
    size_t n = 0, count = 0;
    binding_lock();
    for (rpy_region_t *rec = open_regions; rec; rec = rec->open_next) count++;
    rpy_region_t **open = count ? PyMem_RawMalloc(count * sizeof *open) : NULL;   /* raw: no hook, no GIL */
    for (rpy_region_t *rec = open_regions; rec && open; rec = rec->open_next) {
        rec->refs++;
        open[n++] = rec;
    }
    binding_unlock();
    if (count && !open) {
        foreach_one_by_one(fn, arg);
        return;
    }
    for (size_t i = 0; i < n; i++) fn(open[i], arg);
    for (size_t i = 0; i < n; i++) record_unref(open[i]);
    PyMem_RawFree(open);
}

rpy_region_t *membership_find(uint64_t id) {
    /* A record of libregion's, read without region_from_id's error for a dead id */
    region_t *r = rregion_id_was_made(id) ? &regions[id & REGION_ID_INDEX_MASK] : NULL;
    rpy_region_t *found = NULL;
    binding_lock();
    if (r) found = rhost_record(r);
    if (found && found->id == id) found->refs++;
    else found = NULL;
    binding_unlock();
    return found;
}

PyObject *membership_region_proxy(PyObject *obj) {
    rpy_region_t *owner = membership_hold(obj);   /* another GIL may be dropping it */
    if (!owner) return Py_NewRef(Py_None);
    PyObject *proxy = binding_proxy(owner);
    record_unref(owner);
    return proxy;
}
