/* lifecycle.c - how regions and interpreters end: a region dissolved (closed, or its last Region
 * object gone) or left behind, the memory it leaves (orphans), the interpreter's shutdown, and a
 * subinterpreter's end.
 *
 * LIFETIME OF THE MEMORY: a region's record (record.c) owns a libregion region (its heaps).  When
 * the region goes away its objects become ordinary objects (membership.c) but still live in the
 * region's memory, so the libregion region must outlive them: it becomes an ORPHAN,
 * destroyed by lifecycle_sweep_orphans() once its heaps hold no live block.  A region is never
 * destroyed with a live block in it (the allocator hook frees region blocks by pointer; a destroyed
 * region's blocks would be freed twice).
 */
#include "binding.h"

/* Under binding_lock. */
static region_t **orphans;
static unsigned orphan_count, orphan_capacity;

/* Room for one more orphan; false when out of memory (binding_lock held). */
static bool orphans_reserve(void) {
    if (orphan_count < orphan_capacity) return true;
    unsigned capacity = orphan_capacity ? 2 * orphan_capacity : 16;
    region_t **grown = PyMem_RawRealloc(orphans, capacity * sizeof *grown);
    if (!grown) return false;
    orphans = grown;
    orphan_capacity = capacity;
    return true;
}

unsigned lifecycle_orphans(void) {
    binding_lock();
    unsigned n = orphan_count;
    binding_unlock();
    return n;
}

/* Destroys the orphans whose memory holds nothing but C API buffers (capi.c; region-host.h, DETACHED
 * BUFFERS): no object is left to use those, and they go with their region, as pyregion.h promises.
 * Each look costs a visit of the orphan's pages, and a process may hold thousands of orphans (an
 * interned string keeps its region's memory for good), so a sweep that is not `all` looks at
 * SWEEP_SOME of them, taking turns (sweep_next), to keep making a region O(1). */
#define SWEEP_SOME 4
static unsigned sweep_next;   /* under binding_lock */

void lifecycle_sweep_orphans(bool all) {
    binding_lock();
    unsigned looks = all ? orphan_count : (orphan_count < SWEEP_SOME ? orphan_count : SWEEP_SOME);
    for (; looks > 0 && orphan_count > 0; looks--) {
        if (sweep_next >= orphan_count) sweep_next = 0;
        region_t *r = orphans[sweep_next];
        /* Disowned when it was closed; a waiter of acquire() that took it since gives it back at
         * once, and it is swept next time (waiting here would hold binding_lock, which it needs). */
        if (rhost_owned_blocks(r) == 0 && region_try_acquire(r) == REGION_OK) {
            region_destroy(r);
            orphans[sweep_next] = orphans[--orphan_count];   /* the last one takes its turn now */
        } else {
            sweep_next++;
        }
    }
    binding_unlock();
}

/* ---- Dissolving ---- */

/* A region this interpreter may not touch (ownership_stranded) goes away untouched: unregistered,
 * its objects and its memory left as they are until the process exits, since freeing them would
 * change counts, or free memory, of another GIL's objects. */
static void leave_behind(rpy_region_t *self) {
    self->gone = "left behind: it is owned under another GIL, or refers to mortal objects of one "
                 "(its memory stays allocated until the process exits)";
    membership_forget(self);   /* its members' list links are region memory, never read again */
    self->root = NULL;         /* a reference deliberately kept: the root is never freed */
    self->r = NULL;            /* and neither is its memory */
}

void region_dissolve(rpy_region_t *self, const char *why) {
    if (!self->r) return;
    if (ownership_stranded(self)) {
        leave_behind(self);
        return;
    }
    self->gone = why;
    membership_unregister(self);
    region_t *r = self->r;
    __atomic_store_n(&self->r, NULL, __ATOMIC_RELAXED);
    rhost_disown(r);   /* wakes the threads waiting in acquire(): they find it gone */
    Py_CLEAR(self->root);      /* an ordinary object now, for the interpreter to collect */
    binding_lock();
    /* Out of memory: the region stays, never destroyed, rather than be freed under its objects. */
    if (orphans_reserve()) orphans[orphan_count++] = r;
    binding_unlock();
    lifecycle_sweep_orphans(false);
}

/* ---- The interpreter's shutdown ---- */

static void give_up_if_owned_here(rpy_region_t *self, void *unused) {
    (void)unused;
    if (ownership_token(self) && ownership_interp(self) == binding_current_interp()) ownership_abandon(self);
}

/* A region a thread of an interpreter with its own GIL owns may be in use right now: it stays as it
 * is (its memory is the process's until the exit). */
static void dissolve_at_shutdown(rpy_region_t *self, void *unused) {
    (void)unused;
    if (ownership_token(self) && rpy_interp_kind(ownership_interp(self)) == RPY_INTERP_OWN_GIL) return;
    region_dissolve(self, "dissolved at interpreter shutdown");
}

/* atexit of the main interpreter: before finalization, every Region gives its objects back to the
 * interpreter, whose final collections then see them, and the freelist guard stops (finalization
 * empties the freelists).  A subinterpreter's end is interpreter_ended() below; one with its own
 * GIL gives up its regions here already, while its modules are alive: what another GIL must know
 * of them is found by the audit (ownership_abandon), whose report is made by region._audit. */
void lifecycle_shutdown(void) {
    if (PyInterpreterState_Get() != PyInterpreterState_Main()) {
        if (rpy_interp_has_own_gil()) {
            placement_end_blocks();
            membership_sync();
            membership_foreach(give_up_if_owned_here, NULL);
        }
        return;
    }
    membership_foreach(dissolve_at_shutdown, NULL);
    placement_detach();
}

/* ---- Subinterpreters ----
 *
 * A subinterpreter attaches when the package is imported in it (region/__init__.py calls _attach).
 * Its END is when CPython clears its interpreter dict (PyInterpreterState_GetDict), where _attach
 * leaves a capsule: that happens after its modules were cleared (pystate.c:411-416, 3.11.2), so the
 * references its code held into regions are gone by then, except those in garbage cycles, which its
 * last collection frees right after (pystate.c:432).  At that point:
 *   - its blocks still open in the finalizing thread exit, its freelists are put back (placement);
 *   - region objects it tracked after their block go to their region's list (membership_sync);
 *   - every region a thread of it owns becomes unowned: another interpreter may acquire it.  Its
 *     objects stay whole; what they refer to of the ended interpreter (its classes) stays allocated,
 *     kept alive by the references, as CPython leaves every object that outlives its interpreter.
 * Regions are not dissolved when a subinterpreter ends: they belong to no interpreter. */

static void interpreter_ended(PyObject *capsule) {
    (void)capsule;
    if (rpy_interp_index() < 0) return;
    placement_end_blocks();
    membership_sync();
    membership_foreach(give_up_if_owned_here, NULL);   /* still attached: its exceptions exist */
    binding_state_forget();
    placement_detach();
}

/* Leaves the capsule whose destruction is interpreter_ended() in the calling subinterpreter's dict
 * (once): 0, or -1 with an exception. */
int lifecycle_watch_interpreter_end(void) {
    PyObject *dict = PyInterpreterState_GetDict(PyInterpreterState_Get());
    if (!dict) {
        PyErr_SetString(PyExc_ImportError, "region: no interpreter dict to register the end of the interpreter in");
        return -1;
    }
    if (PyDict_GetItemString(dict, "region.interpreter")) return 0;   /* attached before */
    PyObject *capsule = PyCapsule_New((void *)&interpreter_ended, "region.interpreter", interpreter_ended);
    int rc = capsule ? PyDict_SetItemString(dict, "region.interpreter", capsule) : -1;
    Py_XDECREF(capsule);
    return rc;
}
