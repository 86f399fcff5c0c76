/* collector.c - collecting one region's GC list: CPython 3.11's cycle collector, run on a list of
 * its own.
 *
 * The phases are those of gc_collect_main (Modules/gcmodule.c:1178-1348) with the region's list as
 * the generation being collected and as the "old generation" survivors go back to:
 *
 *   deduce_unreachable        gc_refs = refcount, minus references from other members; members with
 *                             gc_refs > 0 are referenced from outside the region (roots), and
 *                             everything they reach is live.  Only members carry the COLLECTING flag,
 *                             so references leaving the region are never followed and references
 *                             into it from outside count as roots, as for an older generation.
 *   legacy finalizers (tp_del) and what they reach are not collected: gc.garbage, like CPython.
 *   handle_weakrefs           weakrefs to garbage are cleared and their callbacks run, before any
 *                             finalizer can see a half-destroyed object.
 *   finalize_garbage          tp_finalize (__del__) once per object (the FINALIZED bit).
 *   handle_resurrected        what finalizers made reachable again survives.
 *   delete_garbage            tp_clear breaks the cycles; refcounting frees the rest.
 *
 * OTHER COLLECTIONS.  A region collection runs whatever else is collecting: the interpreter's own
 * collection in another thread (paused while a finalizer there let the GIL go) or in this one (a
 * finalizer of it calling r.collect()), or another region's.  Two rules keep them apart:
 *   - Members carry the COLLECTING flag only while no Python code can run (deduce_unreachable and the
 *     first pass of handle_weakrefs); the flags are cleared before weakref callbacks, finalizers and
 *     tp_clear run.  The interpreter's collector and other regions' touch only COLLECTING objects
 *     (visit_decref, visit_reachable, visit_move), so a collection that starts inside one of ours
 *     (from a finalizer, or in another thread meanwhile) never touches our members.
 *   - Our visits touch only objects in this region's memory (in_scope: the slices of its pages, an address test and a bit),
 *     so the COLLECTING objects of a collection paused elsewhere are never ours to count or move.
 * So gc.collecting is neither set nor checked here; only a second collection of the SAME region (from
 * one of its finalizers) is refused (collection.c, collect_region).
 *
 * The functions between the markers are copied from CPython v3.11.2 Modules/gcmodule.c,
 * Copyright (c) 2001-2023 Python Software Foundation, PSF License Agreement v2
 * (python/_region/cpython/LICENSE.PSF); the debug validation calls were removed, and the lines
 * marked "region:" changed as the rules above say.  The same code runs on 3.12 and 3.13: the macros
 * below cover what their versions of it changed.
 */
#define Py_BUILD_CORE_MODULE 1
#include <pyconfig.h>
/* gcmodule.c's asserts run in CPython's debug builds only (its release builds define NDEBUG, and
 * _PyObject_ASSERT evaluates its condition - a call of _PyObject_IsFreed per reference visited -
 * unless NDEBUG is set): the copy below keeps that, so a region's collection costs what the
 * interpreter's own does, and checks what it checks. */
#if !defined(Py_DEBUG) && !defined(NDEBUG)
#define NDEBUG
#endif
#include "internals.h"
#include "gclist.h"

#include <internal/pycore_pyerrors.h>
#include <internal/pycore_pystate.h>
#include <internal/pycore_interp.h>

/* What 3.13's Python/gc.c (v3.13.5) changed in the copied functions, besides asserts and stats: the
 * FINALIZED bit is read through the object, unraisable errors are reported by a public call, and the
 * weakref list is found by its offset alone (static types are never region members).
 * Its update_refs also moves immortal objects to the permanent generation; no region object is
 * immortal in a default build (3.13 immortalizes only static and interned objects), and one would be
 * a root with a huge count here, which is safe. */
#if PY_VERSION_HEX >= 0x030C0000 && PY_VERSION_HEX < 0x030D0000
/* 3.12 (v3.12.1 headers): 3.11's names, and the weakref list found by offset as in 3.13. */
#  define GC_FINALIZED(gc) _PyGCHead_FINALIZED(gc)
#  define GC_SET_FINALIZED(gc) _PyGCHead_SET_FINALIZED(gc)
#  define WEAKREFS_LISTPTR(op) _PyObject_GET_WEAKREFS_LISTPTR_FROM_OFFSET(op)
#  define WRITE_UNRAISABLE(what, type) _PyErr_WriteUnraisableMsg((what), (type))
#elif PY_VERSION_HEX >= 0x030D0000
#  define GC_FINALIZED(gc) _PyGC_FINALIZED(FROM_GC(gc))
#  define WEAKREFS_LISTPTR(op) _PyObject_GET_WEAKREFS_LISTPTR_FROM_OFFSET(op)   /* never a static type */
#  define GC_SET_FINALIZED(gc) _PyGC_SET_FINALIZED(FROM_GC(gc))
#  define WRITE_UNRAISABLE(what, type) \
    PyErr_FormatUnraisable("Exception ignored %s %s", (what), (type) ? ((PyTypeObject *)(type))->tp_name : "")
#else
#  define GC_FINALIZED(gc) _PyGCHead_FINALIZED(gc)
#  define WEAKREFS_LISTPTR(op) ((PyWeakReference **)_PyObject_GET_WEAKREFS_LISTPTR(op))
#  define GC_SET_FINALIZED(gc) _PyGCHead_SET_FINALIZED(gc)
#  define WRITE_UNRAISABLE(what, type) _PyErr_WriteUnraisableMsg((what), (type))
#endif

/* The memory of the region being collected: set before each stretch of the collection that visits
 * references (no Python code runs inside one, so a collection nested in a finalizer cannot change it
 * under a visit). */
static const rpy_scope_t *scope;

static inline bool in_scope(const void *op) { return rpy_scope_has(scope, op); }

/* COLLECTING, and ours: what the copied visits below act on. */
static inline int gc_is_collecting_here(PyObject *op, PyGC_Head *gc) { return gc_is_collecting(gc) && in_scope(op); }

/* Where a weakref that survived its callback goes: back to the region if it is a member, else to the
 * interpreter's youngest generation (it was an outside object the callback pass borrowed). */
static PyGC_Head *survivor_list(PyObject *op, PyGC_Head *region_list) {
    return in_scope(op) ? region_list : (PyGC_Head *)rpy_generation0();
}

/* ---- from CPython v3.11.2 Modules/gcmodule.c ---- */

static void
update_refs(PyGC_Head *containers)
{
    PyGC_Head *gc = GC_NEXT(containers);
    for (; gc != containers; gc = GC_NEXT(gc)) {
        gc_reset_refs(gc, Py_REFCNT(FROM_GC(gc)));
        /* Python's cyclic gc should never see an incoming refcount
         * of 0:  if something decref'ed to 0, it should have been
         * deallocated immediately at that time.
         * Possible cause (if the assert triggers):  a tp_dealloc
         * routine left a gc-aware object tracked during its teardown
         * phase, and did something-- or allowed something to happen --
         * that called back into Python.  gc can trigger then, and may
         * see the still-tracked dying object.  Before this assert
         * was added, such mistakes went on to allow gc to try to
         * delete the object again.  In a debug build, that caused
         * a mysterious segfault, when _Py_ForgetReference tried
         * to remove the object from the doubly-linked list of all
         * objects a second time.  In a release build, an actual
         * double deallocation occurred, which leads to corruption
         * of the allocator's internal bookkeeping pointers.  That's
         * so serious that maybe this should be a release-build
         * check instead of an assert?
         */
        _PyObject_ASSERT(FROM_GC(gc), gc_get_refs(gc) != 0);
    }
}

static int
visit_decref(PyObject *op, void *parent)
{
    (void)parent;   /* region: read only by the assert, which NDEBUG builds leave out */
    _PyObject_ASSERT(_PyObject_CAST(parent), !_PyObject_IsFreed(op));

    if (_PyObject_IS_GC(op)) {
        PyGC_Head *gc = AS_GC(op);
        /* We're only interested in gc_refs for objects in the
         * generation being collected, which can be recognized
         * because only they have positive gc_refs.
         */
        if (gc_is_collecting_here(op, gc)) {   /* region: ours only */
            gc_decref(gc);
        }
    }
    return 0;
}

static void
subtract_refs(PyGC_Head *containers)
{
    traverseproc traverse;
    PyGC_Head *gc = GC_NEXT(containers);
    for (; gc != containers; gc = GC_NEXT(gc)) {
        PyObject *op = FROM_GC(gc);
        traverse = Py_TYPE(op)->tp_traverse;
        (void) traverse(op,
                        (visitproc)visit_decref,
                        op);
    }
}

static int
visit_reachable(PyObject *op, PyGC_Head *reachable)
{
    if (!_PyObject_IS_GC(op)) {
        return 0;
    }

    PyGC_Head *gc = AS_GC(op);
    const Py_ssize_t gc_refs = gc_get_refs(gc);

    // Ignore objects in other generation.
    // This also skips objects "to the left" of the current position in
    // move_unreachable's scan of the 'young' list - they've already been
    // traversed, and no longer have the PREV_MASK_COLLECTING flag.
    if (! gc_is_collecting_here(op, gc)) {   /* region: ours only */
        return 0;
    }
    // It would be a logic error elsewhere if the collecting flag were set on
    // an untracked object.
    assert(gc->_gc_next != 0);

    if (gc->_gc_next & NEXT_MASK_UNREACHABLE) {
        /* This had gc_refs = 0 when move_unreachable got
         * to it, but turns out it's reachable after all.
         * Move it back to move_unreachable's 'young' list,
         * and move_unreachable will eventually get to it
         * again.
         */
        // Manually unlink gc from unreachable list because the list functions
        // don't work right in the presence of NEXT_MASK_UNREACHABLE flags.
        PyGC_Head *prev = GC_PREV(gc);
        PyGC_Head *next = (PyGC_Head*)(gc->_gc_next & ~NEXT_MASK_UNREACHABLE);
        _PyObject_ASSERT(FROM_GC(prev),
                         prev->_gc_next & NEXT_MASK_UNREACHABLE);
        _PyObject_ASSERT(FROM_GC(next),
                         next->_gc_next & NEXT_MASK_UNREACHABLE);
        prev->_gc_next = gc->_gc_next;  // copy NEXT_MASK_UNREACHABLE
        _PyGCHead_SET_PREV(next, prev);

        gc_list_append(gc, reachable);
        gc_set_refs(gc, 1);
    }
    else if (gc_refs == 0) {
        /* This is in move_unreachable's 'young' list, but
         * the traversal hasn't yet gotten to it.  All
         * we need to do is tell move_unreachable that it's
         * reachable.
         */
        gc_set_refs(gc, 1);
    }
    /* Else there's nothing to do.
     * If gc_refs > 0, it must be in move_unreachable's 'young'
     * list, and move_unreachable will eventually get to it.
     */
    else {
        _PyObject_ASSERT_WITH_MSG(op, gc_refs > 0, "refcount is too small");
    }
    return 0;
}

static void
move_unreachable(PyGC_Head *young, PyGC_Head *unreachable)
{
    // previous elem in the young list, used for restore gc_prev.
    PyGC_Head *prev = young;
    PyGC_Head *gc = GC_NEXT(young);

    /* Invariants:  all objects "to the left" of us in young are reachable
     * (directly or indirectly) from outside the young list as it was at entry.
     *
     * All other objects from the original young "to the left" of us are in
     * unreachable now, and have NEXT_MASK_UNREACHABLE.  All objects to the
     * left of us in 'young' now have been scanned, and no objects here
     * or to the right have been scanned yet.
     */

    while (gc != young) {
        if (gc_get_refs(gc)) {
            /* gc is definitely reachable from outside the
             * original 'young'.  Mark it as such, and traverse
             * its pointers to find any other objects that may
             * be directly reachable from it.  Note that the
             * call to tp_traverse may append objects to young,
             * so we have to wait until it returns to determine
             * the next object to visit.
             */
            PyObject *op = FROM_GC(gc);
            traverseproc traverse = Py_TYPE(op)->tp_traverse;
            _PyObject_ASSERT_WITH_MSG(op, gc_get_refs(gc) > 0,
                                      "refcount is too small");
            // NOTE: visit_reachable may change gc->_gc_next when
            // young->_gc_prev == gc.  Don't do gc = GC_NEXT(gc) before!
            (void) traverse(op,
                    (visitproc)visit_reachable,
                    (void *)young);
            // relink gc_prev to prev element.
            _PyGCHead_SET_PREV(gc, prev);
            // gc is not COLLECTING state after here.
            gc_clear_collecting(gc);
            prev = gc;
        }
        else {
            /* This *may* be unreachable.  To make progress,
             * assume it is.  gc isn't directly reachable from
             * any object we've already traversed, but may be
             * reachable from an object we haven't gotten to yet.
             * visit_reachable will eventually move gc back into
             * young if that's so, and we'll see it again.
             */
            // Move gc to unreachable.
            // No need to gc->next->prev = prev because it is single linked.
            prev->_gc_next = gc->_gc_next;

            // We can't use gc_list_append() here because we use
            // NEXT_MASK_UNREACHABLE here.
            PyGC_Head *last = GC_PREV(unreachable);
            // NOTE: Since all objects in unreachable set has
            // NEXT_MASK_UNREACHABLE flag, we set it unconditionally.
            // But this may pollute the unreachable list head's 'next' pointer
            // too. That's semantically senseless but expedient here - the
            // damage is repaired when this function ends.
            last->_gc_next = (NEXT_MASK_UNREACHABLE | (uintptr_t)gc);
            _PyGCHead_SET_PREV(gc, last);
            gc->_gc_next = (NEXT_MASK_UNREACHABLE | (uintptr_t)unreachable);
            unreachable->_gc_prev = (uintptr_t)gc;
        }
        gc = (PyGC_Head*)prev->_gc_next;
    }
    // young->_gc_prev must be last element remained in the list.
    young->_gc_prev = (uintptr_t)prev;
    // don't let the pollution of the list head's next pointer leak
    unreachable->_gc_next &= ~NEXT_MASK_UNREACHABLE;
}

static int
has_legacy_finalizer(PyObject *op)
{
    return Py_TYPE(op)->tp_del != NULL;
}

static void
move_legacy_finalizers(PyGC_Head *unreachable, PyGC_Head *finalizers)
{
    PyGC_Head *gc, *next;
    assert((unreachable->_gc_next & NEXT_MASK_UNREACHABLE) == 0);

    /* March over unreachable.  Move objects with finalizers into
     * `finalizers`.
     */
    for (gc = GC_NEXT(unreachable); gc != unreachable; gc = next) {
        PyObject *op = FROM_GC(gc);

        _PyObject_ASSERT(op, gc->_gc_next & NEXT_MASK_UNREACHABLE);
        gc->_gc_next &= ~NEXT_MASK_UNREACHABLE;
        next = (PyGC_Head*)gc->_gc_next;

        if (has_legacy_finalizer(op)) {
            gc_clear_collecting(gc);
            gc_list_move(gc, finalizers);
        }
    }
}

static inline void
clear_unreachable_mask(PyGC_Head *unreachable)
{
    /* Check that the list head does not have the unreachable bit set */
    assert(((uintptr_t)unreachable & NEXT_MASK_UNREACHABLE) == 0);

    PyGC_Head *gc, *next;
    assert((unreachable->_gc_next & NEXT_MASK_UNREACHABLE) == 0);
    for (gc = GC_NEXT(unreachable); gc != unreachable; gc = next) {
        _PyObject_ASSERT((PyObject*)FROM_GC(gc), gc->_gc_next & NEXT_MASK_UNREACHABLE);
        gc->_gc_next &= ~NEXT_MASK_UNREACHABLE;
        next = (PyGC_Head*)gc->_gc_next;
    }
}

static int
visit_move(PyObject *op, PyGC_Head *tolist)
{
    if (_PyObject_IS_GC(op)) {
        PyGC_Head *gc = AS_GC(op);
        if (gc_is_collecting_here(op, gc)) {   /* region: ours only */
            gc_list_move(gc, tolist);
            gc_clear_collecting(gc);
        }
    }
    return 0;
}

static void
move_legacy_finalizer_reachable(PyGC_Head *finalizers)
{
    traverseproc traverse;
    PyGC_Head *gc = GC_NEXT(finalizers);
    for (; gc != finalizers; gc = GC_NEXT(gc)) {
        /* Note that the finalizers list may grow during this. */
        traverse = Py_TYPE(FROM_GC(gc))->tp_traverse;
        (void) traverse(FROM_GC(gc),
                        (visitproc)visit_move,
                        (void *)finalizers);
    }
}

static int
handle_weakrefs(PyGC_Head *unreachable, PyGC_Head *old)
{
    PyGC_Head *gc;
    PyObject *op;               /* generally FROM_GC(gc) */
    PyWeakReference *wr;        /* generally a cast of op */
    PyGC_Head wrcb_to_call;     /* weakrefs with callbacks to call */
    PyGC_Head *next;
    int num_freed = 0;

    gc_list_init(&wrcb_to_call);

    /* Clear all weakrefs to the objects in unreachable.  If such a weakref
     * also has a callback, move it into `wrcb_to_call` if the callback
     * needs to be invoked.  Note that we cannot invoke any callbacks until
     * all weakrefs to unreachable objects are cleared, lest the callback
     * resurrect an unreachable object via a still-active weakref.  We
     * make another pass over wrcb_to_call, invoking callbacks, after this
     * pass completes.
     */
    for (gc = GC_NEXT(unreachable); gc != unreachable; gc = next) {
        PyWeakReference **wrlist;

        op = FROM_GC(gc);
        next = GC_NEXT(gc);

        if (PyWeakref_Check(op)) {
            /* A weakref inside the unreachable set must be cleared.  If we
             * allow its callback to execute inside delete_garbage(), it
             * could expose objects that have tp_clear already called on
             * them.  Or, it could resurrect unreachable objects.  One way
             * this can happen is if some container objects do not implement
             * tp_traverse.  Then, wr_object can be outside the unreachable
             * set but can be deallocated as a result of breaking the
             * reference cycle.  If we don't clear the weakref, the callback
             * will run and potentially cause a crash.  See bpo-38006 for
             * one example.
             */
            _PyWeakref_ClearRef((PyWeakReference *)op);
        }

        if (! _PyType_SUPPORTS_WEAKREFS(Py_TYPE(op)))
            continue;

        /* It supports weakrefs.  Does it have any? */
        wrlist = WEAKREFS_LISTPTR(op);

        /* `op` may have some weakrefs.  March over the list, clear
         * all the weakrefs, and move the weakrefs with callbacks
         * that must be called into wrcb_to_call.
         */
        for (wr = *wrlist; wr != NULL; wr = *wrlist) {
            PyGC_Head *wrasgc;                  /* AS_GC(wr) */

            /* _PyWeakref_ClearRef clears the weakref but leaves
             * the callback pointer intact.  Obscure:  it also
             * changes *wrlist.
             */
            _PyObject_ASSERT((PyObject *)wr, wr->wr_object == op);
            _PyWeakref_ClearRef(wr);
            _PyObject_ASSERT((PyObject *)wr, wr->wr_object == Py_None);
            if (wr->wr_callback == NULL) {
                /* no callback */
                continue;
            }

            /* Headache time.  `op` is going away, and is weakly referenced by
             * `wr`, which has a callback.  Should the callback be invoked?  If wr
             * is also trash, no:
             *
             * 1. There's no need to call it.  The object and the weakref are
             *    both going away, so it's legitimate to pretend the weakref is
             *    going away first.  The user has to ensure a weakref outlives its
             *    referent if they want a guarantee that the wr callback will get
             *    invoked.
             *
             * 2. It may be catastrophic to call it.  If the callback is also in
             *    cyclic trash (CT), then although the CT is unreachable from
             *    outside the current generation, CT may be reachable from the
             *    callback.  Then the callback could resurrect insane objects.
             *
             * Since the callback is never needed and may be unsafe in this case,
             * wr is simply left in the unreachable set.  Note that because we
             * already called _PyWeakref_ClearRef(wr), its callback will never
             * trigger.
             *
             * OTOH, if wr isn't part of CT, we should invoke the callback:  the
             * weakref outlived the trash.  Note that since wr isn't CT in this
             * case, its callback can't be CT either -- wr acted as an external
             * root to this generation, and therefore its callback did too.  So
             * nothing in CT is reachable from the callback either, so it's hard
             * to imagine how calling it later could create a problem for us.  wr
             * is moved to wrcb_to_call in this case.
             */
            if (gc_is_collecting(AS_GC(wr))) {
                /* it should already have been cleared above */
                assert(wr->wr_object == Py_None);
                continue;
            }

            /* Create a new reference so that wr can't go away
             * before we can process it again.
             */
            Py_INCREF(wr);

            /* Move wr to wrcb_to_call, for the next pass. */
            wrasgc = AS_GC(wr);
            assert(wrasgc != next); /* wrasgc is reachable, but
                                       next isn't, so they can't
                                       be the same */
            gc_list_move(wrasgc, &wrcb_to_call);
        }
    }

    /* region: the callbacks below run Python code, which may start another collection: from here
     * on, no member carries COLLECTING (the rules at the top of this file). */
    gc_list_clear_collecting(unreachable);

    /* Invoke the callbacks we decided to honor.  It's safe to invoke them
     * because they can't reference unreachable objects.
     */
    while (! gc_list_is_empty(&wrcb_to_call)) {
        PyObject *temp;
        PyObject *callback;

        gc = (PyGC_Head*)wrcb_to_call._gc_next;
        op = FROM_GC(gc);
        _PyObject_ASSERT(op, PyWeakref_Check(op));
        wr = (PyWeakReference *)op;
        callback = wr->wr_callback;
        _PyObject_ASSERT(op, callback != NULL);

        /* copy-paste of weakrefobject.c's handle_callback() */
        temp = PyObject_CallOneArg(callback, (PyObject *)wr);
        if (temp == NULL)
            PyErr_WriteUnraisable(callback);
        else
            Py_DECREF(temp);

        /* Give up the reference we created in the first pass.  When
         * op's refcount hits 0 (which it may or may not do right now),
         * op's tp_dealloc will decref op->wr_callback too.  Note
         * that the refcount probably will hit 0 now, and because this
         * weakref was reachable to begin with, gc didn't already
         * add it to its count of freed objects.  Example:  a reachable
         * weak value dict maps some key to this reachable weakref.
         * The callback removes this key->weakref mapping from the
         * dict, leaving no other references to the weakref (excepting
         * ours).
         */
        Py_DECREF(op);
        if (wrcb_to_call._gc_next == (uintptr_t)gc) {
            /* object is still alive -- move it */
            gc_list_move(gc, survivor_list(op, old));   /* region: outside ones go back outside */
        }
        else {
            ++num_freed;
        }
    }

    return num_freed;
}

static void
finalize_garbage(PyThreadState *tstate, PyGC_Head *collectable)
{
    (void)tstate;   /* region: read only by an assert, which NDEBUG builds leave out */
    destructor finalize;
    PyGC_Head seen;

    /* While we're going through the loop, `finalize(op)` may cause op, or
     * other objects, to be reclaimed via refcounts falling to zero.  So
     * there's little we can rely on about the structure of the input
     * `collectable` list across iterations.  For safety, we always take the
     * first object in that list and move it to a temporary `seen` list.
     * If objects vanish from the `collectable` and `seen` lists we don't
     * care.
     */
    gc_list_init(&seen);

    while (!gc_list_is_empty(collectable)) {
        PyGC_Head *gc = GC_NEXT(collectable);
        PyObject *op = FROM_GC(gc);
        gc_list_move(gc, &seen);
        if (!GC_FINALIZED(gc) &&
                (finalize = Py_TYPE(op)->tp_finalize) != NULL) {
            GC_SET_FINALIZED(gc);
            Py_INCREF(op);
            finalize(op);
            assert(!_PyErr_Occurred(tstate));
            Py_DECREF(op);
        }
    }
    gc_list_merge(&seen, collectable);
}

static inline void
deduce_unreachable(PyGC_Head *base, PyGC_Head *unreachable) {
    /* Using ob_refcnt and gc_refs, calculate which objects in the
     * container set are reachable from outside the set (i.e., have a
     * refcount greater than 0 when all the references within the
     * set are taken into account).
     */
    update_refs(base);  // gc_prev is used for gc_refs
    subtract_refs(base);

    /* Leave everything reachable from outside base in base, and move
     * everything else (in base) to unreachable.
     *
     * NOTE:  This used to move the reachable objects into a reachable
     * set instead.  But most things usually turn out to be reachable,
     * so it's more efficient to move the unreachable things.  It "sounds slick"
     * to move the unreachable objects, until you think about it - the reason it
     * pays isn't actually obvious.
     *
     * Suppose we create objects A, B, C in that order.  They appear in the young
     * generation in the same order.  If B points to A, and C to B, and C is
     * reachable from outside, then the adjusted refcounts will be 0, 0, and 1
     * respectively.
     *
     * When move_unreachable finds A, A is moved to the unreachable list.  The
     * same for B when it's first encountered.  Then C is traversed, B is moved
     * _back_ to the reachable list.  B is eventually traversed, and then A is
     * moved back to the reachable list.
     *
     * So instead of not moving at all, the reachable objects B and A are moved
     * twice each.  Why is this a win?  A straightforward algorithm to move the
     * reachable objects instead would move A, B, and C once each.
     *
     * The key is that this dance leaves the objects in order C, B, A - it's
     * reversed from the original order.  On all _subsequent_ scans, none of
     * them will move.  Since most objects aren't in cycles, this can save an
     * unbounded number of moves across an unbounded number of later collections.
     * It can cost more only the first time the chain is scanned.
     *
     * Drawback:  move_unreachable is also used to find out what's still trash
     * after finalizers may resurrect objects.  In _that_ case most unreachable
     * objects will remain unreachable, so it would be more efficient to move
     * the reachable objects instead.  But this is a one-time cost, probably not
     * worth complicating the code to speed just a little.
     */
    gc_list_init(unreachable);
    move_unreachable(base, unreachable);  // gc_prev is pointer again
}

static inline void
handle_resurrected_objects(PyGC_Head *unreachable, PyGC_Head* still_unreachable,
                           PyGC_Head *old_generation)
{
    // Remove the PREV_MASK_COLLECTING from unreachable
    // to prepare it for a new call to 'deduce_unreachable'
    gc_list_clear_collecting(unreachable);

    // After the call to deduce_unreachable, the 'still_unreachable' set will
    // have the PREV_MARK_COLLECTING set, but the objects are going to be
    // removed so we can skip the expense of clearing the flag.
    PyGC_Head* resurrected = unreachable;
    deduce_unreachable(resurrected, still_unreachable);
    clear_unreachable_mask(still_unreachable);

    // Move the resurrected objects to the old generation for future collection.
    gc_list_merge(resurrected, old_generation);
}

/* ---- end of the code from gcmodule.c ---- */

/* What gcmodule.c's untrack_tuples and untrack_dicts do after a full collection (_PyTuple_MaybeUntrack,
 * _PyDict_MaybeUntrack), through public calls (3.13 exports neither): a tuple or dict that holds
 * nothing that may be tracked can never be part of a cycle, and leaves the list, so that gc.is_tracked
 * answers for region objects as for ordinary ones.  Dicts are re-tracked by CPython when they get a
 * container, and sync routes them back (membership.c). */
static inline bool may_be_tracked(PyObject *op) {   /* NULL: an empty slot */
    return op && _PyObject_IS_GC(op) && (!PyTuple_CheckExact(op) || _PyObject_GC_IS_TRACKED(op));
}

/* Whether a dict holds anything that may be tracked (dictobject.c _PyDict_MaybeUntrack's test),
 * reading its entries in place. */
static bool dict_holds_container(PyObject *op) {
    rpy_dict_view_t view;
    rpy_dict_view(op, &view);
    if (view.values) {
        for (Py_ssize_t i = 0; i < view.count; i++)
            if (may_be_tracked(view.values[i])) return true;
        return false;
    }
    const char *entry = view.entries;
    for (Py_ssize_t i = 0; i < view.count; i++, entry += view.stride)
        if (may_be_tracked(*(PyObject *const *)(entry + view.value_at)) ||
            may_be_tracked(*(PyObject *const *)(entry + view.key_at)))
            return true;
    return false;
}

static void untrack_atomic_containers(PyGC_Head *head) {
    for (PyGC_Head *gc = GC_NEXT(head), *next; gc != head; gc = next) {
        PyObject *op = FROM_GC(gc);
        next = GC_NEXT(gc);
        if (PyTuple_CheckExact(op)) {
            Py_ssize_t n = PyTuple_GET_SIZE(op), i = 0;
            while (i < n && PyTuple_GET_ITEM(op, i) && !may_be_tracked(PyTuple_GET_ITEM(op, i))) i++;
            if (i == n) PyObject_GC_UnTrack(op);
        } else if (PyDict_CheckExact(op) && !dict_holds_container(op)) {
            PyObject_GC_UnTrack(op);
        }
    }
}

/* gcmodule.c's delete_garbage without the DEBUG_SAVEALL branch: `old` is the region's list.  The
 * flags deduce_unreachable left go first: tp_clear runs Python code. */
static void delete_garbage(PyThreadState *tstate, PyGC_Head *collectable, PyGC_Head *old) {
    gc_list_clear_collecting(collectable);
    while (!gc_list_is_empty(collectable)) {
        PyGC_Head *gc = GC_NEXT(collectable);
        PyObject *op = FROM_GC(gc);
        _PyObject_ASSERT_WITH_MSG(op, Py_REFCNT(op) > 0, "refcount is too small");
        inquiry clear = Py_TYPE(op)->tp_clear;
        if (clear) {
            Py_INCREF(op);
            (void)clear(op);
            if (_PyErr_Occurred(tstate)) WRITE_UNRAISABLE("in tp_clear of", (PyObject *)Py_TYPE(op));
            Py_DECREF(op);
        }
        if (GC_NEXT(collectable) == gc) {   /* still alive: back to the region, it may die later */
            gc_clear_collecting(gc);
            gc_list_move(gc, old);
        }
    }
}

/* gcmodule.c's handle_legacy_finalizers: uncollectable objects go to gc.garbage and stay. */
static void handle_legacy_finalizers(PyThreadState *tstate, struct _gc_runtime_state *gcstate,
                                     PyGC_Head *finalizers, PyGC_Head *old) {
    for (PyGC_Head *gc = GC_NEXT(finalizers); gc != finalizers; gc = GC_NEXT(gc)) {
        PyObject *op = FROM_GC(gc);
        if (has_legacy_finalizer(op) && gcstate->garbage && PyList_Append(gcstate->garbage, op) < 0) {
            _PyErr_Clear(tstate);
            break;
        }
    }
    gc_list_merge(finalizers, old);
}

void rpy_collect(rpy_gclist_t *list, rpy_scope_t *region_scope, Py_ssize_t *collected,
                 Py_ssize_t *uncollectable) {
    PyThreadState *tstate = _PyThreadState_GET();
    struct _gc_runtime_state *gcstate = &tstate->interp->gc;
    PyGC_Head *young = (PyGC_Head *)list, unreachable, finalizers, final_unreachable;
    /* The caller holds no exception: a finalizer's would be reported, not returned. */
    PyObject *saved_type, *saved_value, *saved_tb;
    PyErr_Fetch(&saved_type, &saved_value, &saved_tb);

    /* No Python code runs from here to the weakref callbacks. */
    scope = region_scope;
    deduce_unreachable(young, &unreachable);
    untrack_atomic_containers(young);                    /* the survivors, as a full collection does */
    gc_list_init(&finalizers);
    move_legacy_finalizers(&unreachable, &finalizers);   /* unreachable is a normal list again */
    move_legacy_finalizer_reachable(&finalizers);
    handle_weakrefs(&unreachable, young);                 /* callbacks run (flags cleared first) */
    finalize_garbage(tstate, &unreachable);
    region_scope->refresh(region_scope);   /* a finalizer may have allocated in the region */
    scope = region_scope;                  /* ... and collected elsewhere */
    handle_resurrected_objects(&unreachable, &final_unreachable, young);
    *collected = gc_list_size(&final_unreachable);
    delete_garbage(tstate, &final_unreachable, young);
    *uncollectable = gc_list_size(&finalizers);
    handle_legacy_finalizers(tstate, gcstate, &finalizers, young);

    if (_PyErr_Occurred(tstate)) WRITE_UNRAISABLE("in region garbage collection", NULL);
    PyErr_Restore(saved_type, saved_value, saved_tb);
}
