/* gclist.h - the GC-list primitives of CPython 3.11's Modules/gcmodule.c, which are static there.
 *
 * Copied from CPython v3.11.2 (Modules/gcmodule.c:60-345), Copyright (c) 2001-2023 Python Software
 * Foundation, under the PSF License Agreement v2 (see python/_region/cpython/LICENSE.PSF).  Shared
 * by internals.c (routing objects between lists) and collector.c (collecting a region's list).
 * 3.13's Python/gc.c (v3.13.5) has the same primitives, asserts aside, and 3.12 and 3.13 keep the
 * PyGC_Head layout and flag bits (pycore_gc.h).
 */
#ifndef REGION_PY_GCLIST_H
#define REGION_PY_GCLIST_H

#ifndef Py_BUILD_CORE_MODULE
#define Py_BUILD_CORE_MODULE 1
#endif
#include <Python.h>
#include <internal/pycore_gc.h>
#include <internal/pycore_object.h>

#define GC_NEXT _PyGCHead_NEXT
#define GC_PREV _PyGCHead_PREV

/* During a collection: the low bit of _gc_next marks "in the unreachable list" (gcmodule.c:60-69),
 * and _gc_prev holds gc_refs above two flag bits. */
#define NEXT_MASK_UNREACHABLE (1)
#define PREV_MASK_COLLECTING _PyGC_PREV_MASK_COLLECTING

#define AS_GC(o) ((PyGC_Head *)(((char *)(o)) - sizeof(PyGC_Head)))
#define FROM_GC(g) ((PyObject *)(((char *)(g)) + sizeof(PyGC_Head)))

static inline int gc_is_collecting(PyGC_Head *g) { return (g->_gc_prev & PREV_MASK_COLLECTING) != 0; }

static inline void gc_clear_collecting(PyGC_Head *g) { g->_gc_prev &= ~PREV_MASK_COLLECTING; }

static inline Py_ssize_t gc_get_refs(PyGC_Head *g) { return (Py_ssize_t)(g->_gc_prev >> _PyGC_PREV_SHIFT); }

static inline void gc_set_refs(PyGC_Head *g, Py_ssize_t refs) {
    g->_gc_prev = (g->_gc_prev & ~_PyGC_PREV_MASK) | ((uintptr_t)(refs) << _PyGC_PREV_SHIFT);
}

static inline void gc_reset_refs(PyGC_Head *g, Py_ssize_t refs) {
    g->_gc_prev = (g->_gc_prev & _PyGC_PREV_MASK_FINALIZED) | PREV_MASK_COLLECTING |
                  ((uintptr_t)(refs) << _PyGC_PREV_SHIFT);
}

static inline void gc_decref(PyGC_Head *g) {
    _PyObject_ASSERT_WITH_MSG(FROM_GC(g), gc_get_refs(g) > 0, "refcount is too small");
    g->_gc_prev -= 1 << _PyGC_PREV_SHIFT;
}

static inline void gc_list_init(PyGC_Head *list) {
    list->_gc_prev = (uintptr_t)list;
    list->_gc_next = (uintptr_t)list;
}

static inline int gc_list_is_empty(PyGC_Head *list) { return list->_gc_next == (uintptr_t)list; }

static inline void gc_list_append(PyGC_Head *node, PyGC_Head *list) {
    PyGC_Head *last = (PyGC_Head *)list->_gc_prev;
    _PyGCHead_SET_PREV(node, last);
    _PyGCHead_SET_NEXT(last, node);
    _PyGCHead_SET_NEXT(node, list);
    list->_gc_prev = (uintptr_t)node;
}

/* Unlinks node from whatever list holds it, leaving it linked nowhere (not "untracked"). */
static inline void gc_list_unlink(PyGC_Head *node) {
    PyGC_Head *prev = GC_PREV(node), *next = GC_NEXT(node);
    _PyGCHead_SET_NEXT(prev, next);
    _PyGCHead_SET_PREV(next, prev);
}

static inline void gc_list_move(PyGC_Head *node, PyGC_Head *list) {
    gc_list_unlink(node);
    PyGC_Head *to_prev = (PyGC_Head *)list->_gc_prev;
    _PyGCHead_SET_PREV(node, to_prev);
    _PyGCHead_SET_NEXT(to_prev, node);
    list->_gc_prev = (uintptr_t)node;
    _PyGCHead_SET_NEXT(node, list);
}

static inline void gc_list_merge(PyGC_Head *from, PyGC_Head *to) {
    if (!gc_list_is_empty(from)) {
        PyGC_Head *to_tail = GC_PREV(to), *from_head = GC_NEXT(from), *from_tail = GC_PREV(from);
        _PyGCHead_SET_NEXT(to_tail, from_head);
        _PyGCHead_SET_PREV(from_head, to_tail);
        _PyGCHead_SET_NEXT(from_tail, to);
        _PyGCHead_SET_PREV(to, from_tail);
    }
    gc_list_init(from);
}

static inline Py_ssize_t gc_list_size(PyGC_Head *list) {
    Py_ssize_t n = 0;
    for (PyGC_Head *gc = GC_NEXT(list); gc != list; gc = GC_NEXT(gc)) n++;
    return n;
}

static inline void gc_list_clear_collecting(PyGC_Head *collectable) {
    for (PyGC_Head *gc = GC_NEXT(collectable); gc != collectable; gc = GC_NEXT(gc)) gc_clear_collecting(gc);
}

#endif /* REGION_PY_GCLIST_H */
