/* teardown.c - closing a region in bulk: every object freed at once with the region's heaps
 * (mi_heap_destroy, O(pages)), instead of one deallocation per object.
 *
 * That is only sound when it is PROVEN that
 *   (1) nothing outside the region refers to a region object: after subtracting the references
 *       region objects hold to each other (and the Region's to its root), every count is 0;
 *   (2) nothing outside uses a block of the region's heaps: the live blocks of its object and
 *       buffer heaps (rhost_owned_blocks; the C API's detached buffers live until freed or their
 *       region ends, region-host.h) are exactly the objects found plus the blocks they own
 *       (rpy_bulk_releasable lists them), so no block is left for anyone else (a global dict's key
 *       table made in a block, say);
 *   (3) no object needs its deallocator for anything but releasing references and memory: every
 *       object's type is one rpy_bulk_releasable knows, with no finalizer, no weakref to it, no
 *       interned string (the interned table points to those).
 * Any failed condition restores every count and returns 0: r.close() then frees object by object.
 *
 * Then: the Region is unregistered (handles and region_of stop finding it), the region's heaps are
 * destroyed, and only after that the references the objects held to outside objects are released,
 * so whatever code those releases run (an outside object's finalizer) can no longer reach region
 * memory.  Counts are changed by direct writes, never Py_DECREF, with automatic collection paused:
 * no Python code runs between the subtraction and the decision.
 */
#include "binding.h"

typedef struct teardown {
    rpy_region_t *self;
    uintptr_t base;              /* the region's slot: [base, base + size) */
    size_t size;
    PyObject **objects;
    size_t count;
    size_t owned_blocks;
    bool owned_outside;          /* an owned block is not region memory: not provable */
    PyObject **outside;          /* references to release after the heaps are gone */
    size_t outside_count, outside_capacity;
    bool failed;                 /* out of memory noting outside references */
} teardown_t;

static bool in_region(teardown_t *t, const void *p) { return (uintptr_t)p - t->base < t->size; }

/* One pass does both: subtract the references to region objects, and note the ones to outside
 * objects (released after the heaps are gone, if the proof holds). */
static int visit_subtract(PyObject *child, void *arg) {
    teardown_t *t = arg;
    if (!child) return 0;
    if (in_region(t, child)) {
        child->ob_refcnt--;
        return 0;
    }
    if (t->outside_count == t->outside_capacity) {
        size_t capacity = t->outside_capacity ? t->outside_capacity * 2 : 1024;
        PyObject **outside = PyMem_RawRealloc(t->outside, capacity * sizeof *outside);
        if (!outside) {
            t->failed = true;   /* the pass still subtracts, so that restoring stays exact */
            return 0;
        }
        t->outside = outside;
        t->outside_capacity = capacity;
    }
    t->outside[t->outside_count++] = child;
    return 0;
}

static int visit_restore(PyObject *child, void *arg) {
    teardown_t *t = arg;
    if (child && in_region(t, child)) child->ob_refcnt++;
    return 0;
}

static void count_owned(void *block, void *arg) {
    teardown_t *t = arg;
    t->owned_blocks++;
    if (!in_region(t, block)) t->owned_outside = true;
}

static void visit_all(teardown_t *t, visitproc visit) {
    for (size_t i = 0; i < t->count; i++) rpy_visit_references(t->objects[i], visit, t);
    if (t->self->root) visit(t->self->root, t);   /* the Region's own reference */
}

/* Conditions (3) and (2): known types, and every live block accounted for. */
static bool releasable(teardown_t *t) {
    for (size_t i = 0; i < t->count; i++)
        if (!rpy_bulk_releasable(t->objects[i], count_owned, t)) return false;
    return !t->owned_outside && rhost_owned_blocks(t->self->r) == t->count + t->owned_blocks;
}

/* Condition (1), on counts already reduced by the internal references.  Frame objects of running
 * frames are execution state, not references from outside (audit.c treats them the same way). */
static bool unreferenced(teardown_t *t) {
    for (size_t i = 0; i < t->count; i++)
        if (Py_REFCNT(t->objects[i]) != 0 && !rpy_is_running_frame_object(t->objects[i])) return false;
    return true;
}

static void commit(teardown_t *t, Py_ssize_t dropped) {
    rpy_region_t *self = t->self;
    rpy_references_dropped(dropped);
    self->root = NULL;                      /* its reference is among those dropped */
    region_t *r = self->r;
    membership_forget(self);                /* the members die with the heaps: no list may keep them */
    region_acquire(r);
    region_destroy(r);                      /* mi_heap_destroy: every block at once */
    self->r = NULL;
    self->gone = "closed (freed in bulk)";
    for (size_t i = 0; i < t->outside_count; i++) Py_DECREF(t->outside[i]);
}

/* Both proofs start alike: every GC object on its list, collection paused (no Python code may run
 * between counting and deciding), the region's objects found by walking its heap.  0, or -1 when
 * the walk ran out of memory. */
static int proof_begin(teardown_t *t, rpy_region_t *self, bool *gc_was_enabled) {
    *t = (teardown_t){.self = self, .base = (uintptr_t)rarena_slot_base(self->r->slot),
                      .size = rarena_reservation.slot_size};
    membership_sync();
    *gc_was_enabled = rpy_gc_pause();
    return audit_heap_objects(self, true, &t->objects, &t->count);
}

static void proof_end(teardown_t *t, bool gc_was_enabled) {
    rpy_gc_resume(gc_was_enabled);
    PyMem_RawFree(t->objects);
    PyMem_RawFree(t->outside);
}

int teardown_bulk(rpy_region_t *self) {
    teardown_t t;
    bool gc_was_enabled;
    int result;
    if (proof_begin(&t, self, &gc_was_enabled) < 0) {
        result = TEARDOWN_ERROR;
    } else {
        bool bulk = rpy_bulk_teardown_possible() && releasable(&t);
        Py_ssize_t dropped = 0;   /* the references the objects hold: all internal if the proof holds */
        for (size_t i = 0; i < t.count; i++) dropped += Py_REFCNT(t.objects[i]) + rpy_hidden_references(t.objects[i]);
        visit_all(&t, visit_subtract);
        bool isolated = unreferenced(&t);
        if (isolated && bulk && !t.failed) {
            commit(&t, dropped);
            result = TEARDOWN_DONE;
        } else {
            visit_all(&t, visit_restore);
            result = !isolated ? TEARDOWN_ESCAPES : t.failed ? TEARDOWN_ERROR : TEARDOWN_ISOLATED;
        }
    }
    proof_end(&t, gc_was_enabled);
    if (result == TEARDOWN_ERROR && !PyErr_Occurred()) PyErr_NoMemory();
    return result;
}

/* release(): condition (1), and every outside object the region's objects refer to is safe to share
 * (audit_safe_to_share).  Nothing is freed; every count is restored.  This is the audit's verdict at
 * the cost of the bulk proof (one heap walk and one traversal per object, no paths kept): 1 when it
 * proves the region isolated; 0 when it cannot (an escape, or what only the audit can tell apart:
 * garbage referring out, an instance's __dict__ made outside a block), and then the caller runs the
 * audit, which decides and names the escapes; -1 with an exception. */
int teardown_proven_isolated(rpy_region_t *self, bool *refers_to_classes, bool *refers_to_mortal) {
    teardown_t t;
    bool gc_was_enabled;
    int result = -1;
    *refers_to_classes = *refers_to_mortal = true;   /* unless the walk below proves otherwise */
    if (proof_begin(&t, self, &gc_was_enabled) == 0) {
        visit_all(&t, visit_subtract);
        bool isolated = unreferenced(&t) && !t.failed;
        visit_all(&t, visit_restore);
        for (size_t i = 0; isolated && i < t.outside_count; i++) isolated = audit_safe_to_share(t.outside[i]);
        /* Every reference out was noted (unless out of memory), garbage's too: an upper bound. */
        if (!t.failed) {
            *refers_to_classes = *refers_to_mortal = false;
            for (size_t i = 0; i < t.outside_count; i++) {
                *refers_to_classes = *refers_to_classes || audit_is_class(t.outside[i]);
                *refers_to_mortal = *refers_to_mortal || !rpy_is_immortal(t.outside[i]);
            }
        }
        result = isolated;
    }
    proof_end(&t, gc_was_enabled);
    return result;
}
