/* internals.c - CPython internals, in one place (see internals.h).
 *
 * Written for CPython 3.11, 3.12 and 3.13.  Line references without a version are to the CPython
 * v3.11.2 sources (Debian's python3.11 = upstream v3.11.2; the structures used here are identical in
 * 3.11.7: the internal headers differ only in two added prototypes); "3.13:" references are to
 * v3.13.5 (Debian trixie's python3.13), checked against the v3.13.0 headers this file is compiled
 * with.  No 3.12 source is available from this project's package registries: the 3.12 branches
 * follow the v3.12.1 internal headers (and, for inline values, a 3.12 dictobject.c read for
 * reference) - docs/python.md, "Versions".
 * Where the versions differ, the difference is confined to the VERSIONS section below or to an
 * #if RPY_312 / RPY_313 next to the code that needs it.
 */
#define Py_BUILD_CORE_MODULE 1
#include "internals.h"
#include "gclist.h"

#include <string.h>

#include <internal/pycore_context.h>
#include <internal/pycore_dict.h>
#include <internal/pycore_frame.h>
#include <internal/pycore_gc.h>
#include <internal/pycore_genobject.h>
#include <internal/pycore_interp.h>
#include <internal/pycore_long.h>
#include <internal/pycore_object.h>
#include <internal/pycore_pymem.h>
#include <internal/pycore_pystate.h>
#include <internal/pycore_runtime.h>
#include <internal/pycore_tuple.h>

/* ---- VERSIONS ----
 *
 * Where each version keeps the per-interpreter freelists: 3.11 and 3.12 in separate structs of the
 * interpreter (pycore_interp.h:160-172), 3.13 in interp->object_state.freelists (pycore_freelist.h).
 * The push and pop rules the guards rely on are the same in all three (3.13: tupleobject.c:1127-1185,
 * floatobject.c:133-155,248-265, listobject.c, dictobject.c, sliceobject.c, context.c, genobject.c). */
#if PY_VERSION_HEX >= 0x030B0000 && PY_VERSION_HEX < 0x030D0000 && !defined(Py_GIL_DISABLED)
/* 3.12 keeps 3.11's freelist structs (v3.12.1 pycore_interp.h:189-203). */
#  define RPY_312 (PY_VERSION_HEX >= 0x030C0000)
#  define RPY_313 0
#  if RPY_312 && defined(Py_REF_DEBUG)
#    error "python/_region/cpython/internals.c does not support debug builds of CPython 3.12 (docs/python.md, 'Versions')"
#  endif
#  define TUPLE_HEADS(i) ((i)->tuple.free_list)
#  define TUPLE_COUNTS(i) ((i)->tuple.numfree)
#  define LIST_ITEMS(i) ((i)->list.free_list)
#  define LIST_COUNT(i) ((i)->list.numfree)
#  define DICT_ITEMS(i) ((i)->dict_state.free_list)
#  define DICT_COUNT(i) ((i)->dict_state.numfree)
#  define KEYS_ITEMS(i) ((i)->dict_state.keys_free_list)
#  define KEYS_COUNT(i) ((i)->dict_state.keys_numfree)
#  define FLOAT_HEAD(i) ((i)->float_state.free_list)
#  define FLOAT_COUNT(i) ((i)->float_state.numfree)
#  define SLICE_CACHE(i) ((i)->slice_cache)
#  define CONTEXT_HEAD(i) ((i)->context.freelist)
#  define CONTEXT_COUNT(i) ((i)->context.numfree)
#  define ASEND_ITEMS(i) ((i)->async_gen.asend_freelist)
#  define ASEND_COUNT(i) ((i)->async_gen.asend_numfree)
#  define VALUE_ITEMS(i) ((i)->async_gen.value_freelist)
#  define VALUE_COUNT(i) ((i)->async_gen.value_numfree)
#elif PY_VERSION_HEX >= 0x030D0000 && PY_VERSION_HEX < 0x030E0000 && !defined(Py_GIL_DISABLED)
#  define RPY_312 0
#  define RPY_313 1
#  include <internal/pycore_freelist.h>
#  include <internal/pycore_setobject.h>
#  include <internal/pycore_typeobject.h>
#  include <internal/pycore_unicodeobject.h>
#  ifndef WITH_FREELISTS
#    error "python/_region/cpython/internals.c expects CPython 3.13 built with freelists (the default)"
#  endif
#  ifdef Py_REF_DEBUG
#    error "python/_region/cpython/internals.c does not support debug builds of CPython 3.13 (docs/python.md, 'Versions')"
#  endif
#  define FREELISTS(i) ((i)->object_state.freelists)
#  define TUPLE_HEADS(i) (FREELISTS(i).tuples.items)
#  define TUPLE_COUNTS(i) (FREELISTS(i).tuples.numfree)
#  define LIST_ITEMS(i) (FREELISTS(i).lists.items)
#  define LIST_COUNT(i) (FREELISTS(i).lists.numfree)
#  define DICT_ITEMS(i) (FREELISTS(i).dicts.items)
#  define DICT_COUNT(i) (FREELISTS(i).dicts.numfree)
#  define KEYS_ITEMS(i) (FREELISTS(i).dictkeys.items)
#  define KEYS_COUNT(i) (FREELISTS(i).dictkeys.numfree)
#  define FLOAT_HEAD(i) (FREELISTS(i).floats.items)
#  define FLOAT_COUNT(i) (FREELISTS(i).floats.numfree)
#  define SLICE_CACHE(i) (FREELISTS(i).slices.slice_cache)
#  define CONTEXT_HEAD(i) (FREELISTS(i).contexts.items)
#  define CONTEXT_COUNT(i) (FREELISTS(i).contexts.numfree)
#  define ASEND_ITEMS(i) (FREELISTS(i).async_gen_asends.items)
#  define ASEND_COUNT(i) (FREELISTS(i).async_gen_asends.numfree)
#  define VALUE_ITEMS(i) (FREELISTS(i).async_gens.items)
#  define VALUE_COUNT(i) (FREELISTS(i).async_gens.numfree)
#else
#  error "python/_region/cpython/internals.c is written for CPython 3.11, 3.12 and 3.13 with the GIL (docs/python.md, 'Versions')"
#endif

_Static_assert(sizeof(rpy_gclist_t) == sizeof(PyGC_Head), "rpy_gclist_t must be laid out as PyGC_Head");

static int learn_subtype_dealloc(void);

int rpy_internals_init(void) {
    /* The headers we compiled against must describe the interpreter we run in: same minor version,
     * and the same debug-ness (Py_DEBUG changes nothing we use, but a mismatched build would). */
    if ((Py_Version >> 16) != (PY_VERSION_HEX >> 16)) {
        PyErr_Format(PyExc_ImportError, "region was built for CPython %d.%d but runs on %s",
                     PY_MAJOR_VERSION, PY_MINOR_VERSION, Py_GetVersion());
        return -1;
    }
    return learn_subtype_dealloc();
}

/* ---- GC lists ----
 *
 * PyGC_Head {_gc_next, _gc_prev} precedes every GC object (pycore_gc.h:11-22).  Outside a collection
 * _gc_next is a plain pointer and the low two bits of _gc_prev are flags (FINALIZED must be kept;
 * COLLECTING is only set during a collection).  A list is circular through a head.  Untracking is an
 * unlink from whatever list holds the object (pycore_object.h:157-175), so any list CPython does not
 * scan is private to its owner: gc.freeze()'s permanent generation is the precedent. */

#define GEN_HEAD(gcstate, n) (&(gcstate)->generations[n].head)

static PyGC_Head *as_head(rpy_gclist_t *list) { return (PyGC_Head *)list; }

static struct _gc_runtime_state *gcstate(void) { return &_PyInterpreterState_GET()->gc; }

void rpy_gclist_init(rpy_gclist_t *list) { gc_list_init(as_head(list)); }


Py_ssize_t rpy_gclist_length(const rpy_gclist_t *list) {
    Py_ssize_t n = 0;
    for (uintptr_t g = list->next; g != (uintptr_t)list; g = ((PyGC_Head *)g)->_gc_next) n++;
    return n;
}

int rpy_gclist_foreach(rpy_gclist_t *list, int (*fn)(PyObject *op, void *arg), void *arg) {
    PyGC_Head *head = as_head(list);
    for (PyGC_Head *g = _PyGCHead_NEXT(head); g != head; g = _PyGCHead_NEXT(g)) {
        int rc = fn(FROM_GC(g), arg);
        if (rc) return rc;
    }
    return 0;
}

void rpy_gclist_route(rpy_gclist_t *from, rpy_gclist_t *(*route)(PyObject *op, void *arg), void *arg) {
    PyGC_Head *head = as_head(from), *young = GEN_HEAD(gcstate(), 0);
    while (_PyGCHead_NEXT(head) != head) {
        PyGC_Head *g = _PyGCHead_NEXT(head);
        rpy_gclist_t *to = route(FROM_GC(g), arg);
        gc_list_move(g, to ? as_head(to) : young);
    }
}

void rpy_generation_route(int generation, rpy_gclist_t *(*route)(PyObject *op, void *arg), void *arg) {
    PyGC_Head *young = GEN_HEAD(gcstate(), generation < 0 ? NUM_GENERATIONS - 1 : generation);
    for (PyGC_Head *g = _PyGCHead_NEXT(young), *next; g != young; g = next) {
        next = _PyGCHead_NEXT(g);
        rpy_gclist_t *to = route(FROM_GC(g), arg);
        if (to) gc_list_move(g, as_head(to));
    }
}

/* ---- Arrivals in the youngest generation ----
 *
 * membership_sync must find each region object that became tracked after its block, which CPython
 * put in the youngest generation.  Walking the whole generation costs its length at every proof, and
 * a program keeps hundreds of objects there between collections (1.4 us of a 6 us region life,
 * bench/python_bench.py's worker).  But objects enter the youngest generation only at its tail:
 * _PyObject_GC_TRACK appends to *generation0, and so do the binding's routes (gc_list_move and
 * gc_list_merge append); a collection, gc.freeze() and untracking only take objects out.  So after a
 * walk, a marker put at the tail divides the generation: what follows it arrived since, and what
 * precedes it was walked.  The marker is an empty list in static storage, one per attached
 * interpreter, holding one reference of ours that nothing releases, so the collector keeps it and
 * moves it like any survivor.  The walk from the marker is only sound while the marker is still in
 * the youngest generation; it is not after a collection (the survivors go to an older one: the
 * interpreter's count of collections changed) or gc.freeze() (to the permanent generation: the walk
 * from the marker meets that generation's head, or an older one's, before the youngest's).  Either
 * way the whole youngest generation is walked, as before, and the marker put back at its tail.  An
 * interpreter's end unlinks its marker (rpy_interp_detach), so that the next interpreter given the
 * index makes a new one while nothing of the old one's lists can reach it. */

typedef struct arrivals_marker {
    PyGC_Head gc;
    PyListObject list;
} arrivals_marker_t;

typedef struct arrivals {
    arrivals_marker_t marker;
    int64_t interp;              /* the id of the interpreter whose lists hold it, while it is tracked */
    Py_ssize_t collections;      /* that interpreter's collections when it was put there */
} arrivals_t;

static arrivals_t arrivals[RPY_MAX_INTERPRETERS];   /* by rpy_interp_index, under its GIL */

static Py_ssize_t collections_so_far(struct _gc_runtime_state *gc) {
    Py_ssize_t n = 0;
    for (int i = 0; i < NUM_GENERATIONS; i++) n += gc->generation_stats[i].collections;
    return n;
}

static bool is_older_generation_head(struct _gc_runtime_state *gc, PyGC_Head *g) {
    return g == GEN_HEAD(gc, 1) || g == GEN_HEAD(gc, 2) || g == &gc->permanent_generation.head;
}

/* Routes the members of the youngest generation from `first` to its end (the marker excepted);
 * false if the walk met another generation's head first (`first` was not in the youngest). */
static bool route_young_from(struct _gc_runtime_state *gc, PyGC_Head *first, PyGC_Head *marker,
                             rpy_gclist_t *(*route)(PyObject *op, void *arg), void *arg) {
    PyGC_Head *young = GEN_HEAD(gc, 0);
    for (PyGC_Head *g = first, *next; g != young; g = next) {
        if (is_older_generation_head(gc, g)) return false;
        next = _PyGCHead_NEXT(g);
        if (g == marker) continue;
        rpy_gclist_t *to = route(FROM_GC(g), arg);
        if (to) gc_list_move(g, as_head(to));
    }
    return true;
}

#if REGION_BLOCK_CHECKS
/* Whether the youngest generation holds no object `route` would move: the walk missed none. */
static bool young_holds_none(struct _gc_runtime_state *gc, rpy_gclist_t *(*route)(PyObject *op, void *arg),
                             void *arg) {
    PyGC_Head *young = GEN_HEAD(gc, 0);
    for (PyGC_Head *g = _PyGCHead_NEXT(young); g != young; g = _PyGCHead_NEXT(g))
        if (route(FROM_GC(g), arg)) return false;
    return true;
}
#endif

void rpy_generation0_route_arrivals(rpy_gclist_t *(*route)(PyObject *op, void *arg), void *arg) {
    int index = rpy_interp_index();
    if (index < 0) {
        rpy_generation_route(0, route, arg);
        return;
    }
    struct _gc_runtime_state *gc = gcstate();
    PyGC_Head *young = GEN_HEAD(gc, 0);
    arrivals_t *a = &arrivals[index];
    PyGC_Head *marker = &a->marker.gc;
    int64_t interp = PyInterpreterState_GetID(_PyInterpreterState_GET());
    Py_ssize_t collections = collections_so_far(gc);
    bool placed = a->interp == interp && _PyObject_GC_IS_TRACKED((PyObject *)&a->marker.list);
    if (!(placed && a->collections == collections && route_young_from(gc, _PyGCHead_NEXT(marker), marker, route, arg)))
        route_young_from(gc, _PyGCHead_NEXT(young), marker, route, arg);   /* the whole generation */
#if REGION_BLOCK_CHECKS
    assert(young_holds_none(gc, route, arg));
#endif
    if (placed) {
        gc_list_move(marker, young);
    } else {   /* a new marker: an empty list with one reference, never released */
        a->marker = (arrivals_marker_t){0};
        PyObject *list = (PyObject *)&a->marker.list;
        Py_SET_TYPE(list, &PyList_Type);
        Py_SET_REFCNT(list, 1);
        gc_list_append(marker, young);
        a->interp = interp;
    }
    a->collections = collections;
}

/* The calling interpreter's marker leaves its lists (it is ending). */
static void arrivals_forget(int index) {
    arrivals_t *a = &arrivals[index];
    PyObject *list = (PyObject *)&a->marker.list;
    if (a->interp != PyInterpreterState_GetID(_PyInterpreterState_GET()) || !_PyObject_GC_IS_TRACKED(list)) return;
    gc_list_unlink(&a->marker.gc);
    a->marker.gc._gc_next = 0;   /* untracked */
}

void rpy_gclist_merge_into_oldest(rpy_gclist_t *from) {
    gc_list_merge(as_head(from), GEN_HEAD(gcstate(), NUM_GENERATIONS - 1));
}

/* interp->gc.generation0 is read in exactly one place: _PyObject_GC_TRACK (pycore_object.h:139),
 * which appends every newly tracked object to *generation0.  The collector itself uses
 * generations[] (GEN_HEAD), never this pointer (gcmodule.c:152 only initializes it). */
void rpy_tracking_redirect(rpy_gclist_t *list) {
    struct _gc_runtime_state *gc = gcstate();
    gc->generation0 = list ? as_head(list) : GEN_HEAD(gc, 0);
}

rpy_gclist_t *rpy_generation0(void) { return (rpy_gclist_t *)GEN_HEAD(gcstate(), 0); }



bool rpy_gc_pause(void) {
    struct _gc_runtime_state *gc = gcstate();
    bool was_enabled = gc->enabled != 0;
    gc->enabled = 0;
    return was_enabled;
}

void rpy_gc_resume(bool was_enabled) { gcstate()->enabled = was_enabled; }

#if RPY_312 || RPY_313
bool rpy_tracemalloc_tracing(void) { return _PyRuntime.tracemalloc.config.tracing != 0; }
#else
bool rpy_tracemalloc_tracing(void) { return _Py_tracemalloc_config.tracing != 0; }
#endif

/* ---- Objects ---- */

void *rpy_block_of(PyObject *op) {
    assert(rpy_preheader_size(Py_TYPE(op)) == _PyType_PreHeaderSize(Py_TYPE(op)));
    return (char *)op - _PyType_PreHeaderSize(Py_TYPE(op));
}

bool rpy_is_immortal(PyObject *op) {
#if RPY_312 || RPY_313
    return _Py_IsImmortal(op);
#else
    (void)op;
    return false;
#endif
}

bool rpy_immortalize_interned(PyObject *op) {
#if RPY_313
    PyInterpreterState *interp = _PyInterpreterState_GET();
    if (interp != _PyRuntime.interpreters.main || !PyUnicode_CheckExact(op) ||
        PyUnicode_CHECK_INTERNED(op) != SSTATE_INTERNED_MORTAL)
        return false;
    PyObject *s = Py_NewRef(op);
    _PyUnicode_InternImmortal(interp, &s);   /* ref-neutral: the interned one, immortal now */
    bool same = s == op;
    Py_DECREF(s);
    return same && _Py_IsImmortal(op);
#else
    (void)op;
    return false;
#endif
}

bool rpy_is_shared(PyObject *op) {
    if (op == Py_None || op == Py_True || op == Py_False || op == Py_Ellipsis || op == Py_NotImplemented)
        return true;
    PyTypeObject *type = Py_TYPE(op);
    if (type == &PyLong_Type) {
        /* The small ints are one static array in _PyRuntime (pycore_global_objects.h:28-35). */
        const PyLongObject *small = _PyLong_SMALL_INTS;
        return (const PyLongObject *)op >= small &&
               (const PyLongObject *)op < small + _PY_NSMALLNEGINTS + _PY_NSMALLPOSINTS;
    }
    if (type == &PyUnicode_Type) {
        if (PyUnicode_CHECK_INTERNED(op)) return true;
        /* "" and the latin-1 one-character strings are _PyRuntime singletons. */
        if (PyUnicode_GET_LENGTH(op) == 0) return op == &_Py_STR(empty);
        if (PyUnicode_GET_LENGTH(op) == 1 && PyUnicode_KIND(op) == PyUnicode_1BYTE_KIND) {
            Py_UCS1 ch = PyUnicode_1BYTE_DATA(op)[0];
            return ch < 128 ? op == (PyObject *)&_Py_SINGLETON(strings).ascii[ch]
                            : op == (PyObject *)&_Py_SINGLETON(strings).latin1[ch - 128];
        }
        return false;
    }
    if (type == &PyBytes_Type) {
        if (PyBytes_GET_SIZE(op) == 0) return op == (PyObject *)&_Py_SINGLETON(bytes_empty);
        if (PyBytes_GET_SIZE(op) == 1)
            return op == (PyObject *)&_Py_SINGLETON(bytes_characters)[(unsigned char)PyBytes_AS_STRING(op)[0]];
        return false;
    }
    if (type == &PyTuple_Type) return PyTuple_GET_SIZE(op) == 0 && op == (PyObject *)&_Py_SINGLETON(tuple_empty);
    if (PyType_Check(op)) return !(((PyTypeObject *)op)->tp_flags & Py_TPFLAGS_HEAPTYPE);
    return false;
}

/* _PyObject_DictPointer (object.c:1062; 3.13: _PyObject_ComputedDictPointer), which is not exported:
 * where obj's __dict__ pointer is, or NULL when it has none (3.12: inline values, no dict yet). */
static PyObject **dict_pointer(PyObject *obj) {
    PyTypeObject *tp = Py_TYPE(obj);
#if RPY_313
    if (tp->tp_flags & Py_TPFLAGS_MANAGED_DICT) return (PyObject **)&_PyObject_ManagedDictPointer(obj)->dict;
#elif RPY_312
    /* 3.12: the managed slot holds either the dict or tagged inline values (pycore_object.h:365-405). */
    if (tp->tp_flags & Py_TPFLAGS_MANAGED_DICT) {
        PyDictOrValues *dorv = _PyObject_DictOrValuesPointer(obj);
        return _PyDictOrValues_IsValues(*dorv) ? NULL : &dorv->dict;
    }
#else
    if (tp->tp_flags & Py_TPFLAGS_MANAGED_DICT) return _PyObject_ManagedDictPointer(obj);
#endif
    Py_ssize_t offset = tp->tp_dictoffset;
    if (offset == 0) return NULL;
    if (offset < 0) {
        Py_ssize_t size = Py_SIZE(obj);
        offset += (Py_ssize_t)_PyObject_VAR_SIZE(tp, size < 0 ? -size : size);
    }
    return (PyObject **)((char *)obj + offset);
}

PyObject *rpy_instance_dict(PyObject *obj) {
    PyObject **ptr = dict_pointer(obj);
    return ptr ? *ptr : NULL;
}

PyObject *rpy_attribute_name(PyObject *obj, PyObject *value) {
    PyObject *dict = rpy_instance_dict(obj);
    if (dict && PyDict_Check(dict)) {
        Py_ssize_t pos = 0;
        PyObject *key, *item;
        while (PyDict_Next(dict, &pos, &key, &item))
            if (item == value) return key;
        return NULL;
    }
    PyTypeObject *tp = Py_TYPE(obj);
#if RPY_313
    /* Inline values (no dict materialized): the keys are the class's shared table, the values an
     * array right after the object header (3.13: pycore_object.h:735-741). */
    if (!(tp->tp_flags & Py_TPFLAGS_INLINE_VALUES)) return NULL;
    PyDictValues *values = _PyObject_InlineValues(obj);
    if (!values->valid) return NULL;
#elif RPY_312
    if (!(tp->tp_flags & Py_TPFLAGS_MANAGED_DICT)) return NULL;
    PyDictOrValues dorv = *_PyObject_DictOrValuesPointer(obj);
    if (!_PyDictOrValues_IsValues(dorv)) return NULL;
    PyDictValues *values = _PyDictOrValues_GetValues(dorv);
#else
    if (!(tp->tp_flags & Py_TPFLAGS_MANAGED_DICT)) return NULL;
    /* Inline values (3.11 "managed dict" not yet materialized): the keys are the class's shared
     * table, the values an array before the object (pycore_object.h:253-262). */
    PyDictValues *values = *_PyObject_ValuesPointer(obj);
#endif
    PyDictKeysObject *keys = ((PyHeapTypeObject *)tp)->ht_cached_keys;
    if (!values || !keys) return NULL;
    for (Py_ssize_t i = 0; i < keys->dk_nentries; i++)
        if (values->values[i] == value) return DK_UNICODE_ENTRIES(keys)[i].me_key;
    return NULL;
}

/* rpy_preheader_size (internals.h) reads the pre-header from public flags; this is the layout it
 * assumes. */
_Static_assert(sizeof(PyGC_Head) == 2 * sizeof(void *), "PyGC_Head is two pointers in 3.11-3.13");

/* 3.11 frames: tstate->cframe->current_frame, linked by `previous`; each holds f_code and its
 * localsplus (locals, then cells and free variables) (pycore_frame.h:47-67).  3.13: the thread's
 * tstate->current_frame, and f_executable, which is a code object except in the C-stack entry
 * frames (pycore_frame.h). */
#if RPY_313
#  define THREAD_TOP_FRAME(t) ((t)->current_frame)
#  define FRAME_CODE(f) (PyCode_Check((f)->f_executable) ? (PyCodeObject *)(f)->f_executable : NULL)
#else
#  define THREAD_TOP_FRAME(t) ((t)->cframe ? (t)->cframe->current_frame : NULL)
#  define FRAME_CODE(f) ((f)->f_code)
#endif
void rpy_foreach_local_holding(PyObject *obj, PyObject *skip_filename,
                               void (*fn)(PyObject *name, PyCodeObject *code, int line, void *arg), void *arg) {
    PyInterpreterState *interp = _PyInterpreterState_GET();
    for (PyThreadState *t = PyInterpreterState_ThreadHead(interp); t; t = PyThreadState_Next(t)) {
        for (_PyInterpreterFrame *f = THREAD_TOP_FRAME(t); f; f = f->previous) {
            if (_PyFrame_IsIncomplete(f)) continue;
            PyCodeObject *code = FRAME_CODE(f);
            /* By value: 3.13 does not intern co_filename, so identity with an interned copy fails. */
            if (!code || (skip_filename && (code->co_filename == skip_filename ||
                                            PyUnicode_Compare(code->co_filename, skip_filename) == 0)))
                continue;
            for (int i = 0; i < code->co_nlocalsplus; i++) {
                PyObject *value = f->localsplus[i];
                if (value && value != obj && PyCell_Check(value) && (_PyLocals_GetKind(code->co_localspluskinds, i) & (CO_FAST_CELL | CO_FAST_FREE)))
                    value = PyCell_GET(value);
                if (value == obj) {
                    int line = PyCode_Addr2Line(code, _PyInterpreterFrame_LASTI(f) * (int)sizeof(_Py_CODEUNIT));
                    fn(PyTuple_GET_ITEM(code->co_localsplusnames, i), code, line, arg);
                }
            }
        }
    }
}

/* A type's subclasses: NULL or a dict {id: weakref to subclass} (typeobject.c add_subclass).
 * 3.12 and 3.13 keep that dict of a static builtin type in the interpreter, at the index its
 * tp_subclasses holds (3.13: typeobject.c:120-200, managed_static_type_state_get). */
static PyObject *subclasses_of(PyTypeObject *type) {
#if RPY_312
    if (type->tp_flags & _Py_TPFLAGS_STATIC_BUILTIN) {   /* v3.12.1 pycore_typeobject.h:43-68 */
        size_t index = (size_t)type->tp_subclasses - 1;
        PyInterpreterState *interp = _PyInterpreterState_GET();
        if (index < _Py_MAX_STATIC_BUILTIN_TYPES && interp->types.builtins[index].type == type)
            return interp->types.builtins[index].tp_subclasses;
        return NULL;
    }
#elif RPY_313
    if (type->tp_flags & _Py_TPFLAGS_STATIC_BUILTIN) {
        size_t index = (size_t)type->tp_subclasses - 1;
        PyInterpreterState *interp = _PyInterpreterState_GET();
        if (index < _Py_MAX_MANAGED_STATIC_BUILTIN_TYPES && interp->types.builtins.initialized[index].type == type)
            return interp->types.builtins.initialized[index].tp_subclasses;
        if (index < _Py_MAX_MANAGED_STATIC_EXT_TYPES && interp->types.for_extensions.initialized[index].type == type)
            return interp->types.for_extensions.initialized[index].tp_subclasses;
        return NULL;
    }
#endif
    return type->tp_subclasses;
}

/* The live subclass a weakref of a subclasses dict refers to, or NULL.  A borrowed read of the
 * referent: PyWeakref_GetRef would take a reference, and the walks must not run code (a last decref
 * could). */
static PyTypeObject *subclass_of_ref(PyObject *ref) {
    PyObject *sub = ((PyWeakReference *)ref)->wr_object;
    return sub != Py_None && Py_REFCNT(sub) > 0 && PyType_Check(sub) ? (PyTypeObject *)sub : NULL;
}

static void foreach_subtype(PyTypeObject *type, void (*fn)(PyTypeObject *, void *), void *arg, int depth) {
    fn(type, arg);
    PyObject *subclasses = subclasses_of(type);
    if (!subclasses || !PyDict_Check(subclasses) || depth > 256) return;
    Py_ssize_t pos = 0;
    PyObject *key, *ref;
    while (PyDict_Next(subclasses, &pos, &key, &ref)) {
        PyTypeObject *sub = subclass_of_ref(ref);
        if (sub) foreach_subtype(sub, fn, arg, depth + 1);
    }
}

void rpy_foreach_type(void (*fn)(PyTypeObject *type, void *arg), void *arg) {
    foreach_subtype(&PyBaseObject_Type, fn, arg, 0);
}

bool rpy_is_running_frame_object(PyObject *op) {
    /* A frame object's data lives in its _PyInterpreterFrame, owned by the thread's stack or a
     * generator while it runs, and copied into the frame object when it ends (pycore_frame.h:41-45). */
    return PyFrame_Check(op) && ((PyFrameObject *)op)->f_frame->owner != FRAME_OWNED_BY_FRAME_OBJECT;
}

/* ---- Bulk teardown ---- */

static destructor subtype_dealloc_fn;   /* typeobject.c's subtype_dealloc, static there */
static PyDictKeysObject *empty_keys;    /* dictobject.c's Py_EMPTY_KEYS, static there */

/* Any class statement's type has subtype_dealloc: make one to learn the pointer. */
static int learn_subtype_dealloc(void) {
    PyObject *namespace = PyDict_New();
    PyObject *probe = namespace ? PyObject_CallFunction((PyObject *)&PyType_Type, "s()O", "probe", namespace) : NULL;
    Py_XDECREF(namespace);
    if (!probe) return -1;
    subtype_dealloc_fn = ((PyTypeObject *)probe)->tp_dealloc;
    Py_DECREF(probe);
    PyObject *empty = PyDict_New();   /* PyDict_New shares the one empty key table */
    if (!empty) return -1;
    empty_keys = ((PyDictObject *)empty)->ma_keys;
    rpy_key_table_layout.empty = empty_keys;
    Py_DECREF(empty);
    return 0;
}

static bool plain_class(PyTypeObject *type) {
    PyObject *mro = type->tp_mro;
    if (!mro || !PyTuple_Check(mro)) return false;
    for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(mro); i++) {
        PyTypeObject *t = (PyTypeObject *)PyTuple_GET_ITEM(mro, i);
        if (t == &PyBaseObject_Type) continue;
        if (!(t->tp_flags & Py_TPFLAGS_HEAPTYPE) || t->tp_dealloc != subtype_dealloc_fn || t->tp_finalize ||
            t->tp_del)
            return false;
    }
    return true;
}

static bool no_weakrefs(PyObject *op) {
    PyTypeObject *t = Py_TYPE(op);
#if RPY_312 || RPY_313
    /* 3.12+ classes keep the weakref list in the pre-header: a negative offset (MANAGED_WEAKREF). */
    if (t->tp_weaklistoffset == 0) return true;
#else
    if (t->tp_weaklistoffset <= 0) return true;
#endif
    return *(PyObject **)((char *)op + t->tp_weaklistoffset) == NULL;
}

bool rpy_has_weakrefs(PyObject *op) {
    return !no_weakrefs(op);
}

/* A str's blocks besides its own: the UTF-8 copy a non-ASCII str caches, and (3.11) the wchar_t
 * copy, each unless it is the str's own data (unicodeobject.c _PyUnicode_HAS_UTF8_MEMORY and
 * _PyUnicode_HAS_WSTR_MEMORY).  Whether it has any. */
static bool str_cached_copies(PyObject *op, void (*owned)(void *block, void *arg), void *arg) {
    bool any = false;
    void *data = PyUnicode_DATA(op);
    if (!PyUnicode_IS_ASCII(op)) {
        char *utf8 = _PyCompactUnicodeObject_CAST(op)->utf8;
        if (utf8 && utf8 != data) {
            owned(utf8, arg);
            any = true;
        }
    }
#if !(RPY_312 || RPY_313)
    wchar_t *wstr = _PyASCIIObject_CAST(op)->wstr;
    if (wstr && (void *)wstr != data) {
        owned(wstr, arg);
        any = true;
    }
#endif
    return any;
}

RPY_MAY_READ_FREED void rpy_type_filter_watch(rpy_type_filter_t *filter, void *block, const PyObject *header) {
    uintptr_t type = (uintptr_t)header->ob_type;
    if (type < 4096 || (type & 7) || type - filter->typeless < filter->typeless_size ||
        header->ob_refcnt <= 0 || header->ob_refcnt > ((Py_ssize_t)1 << 32) ||
        filter->is_type((PyTypeObject *)type, filter->arg))
        return;
    size_t n = filter->watched;
    if (n > 0 && n <= RPY_TYPE_FILTER_WATCHED && filter->watched_blocks[n - 1] == block)
        return;   /* the block's next probe */
    if (n < RPY_TYPE_FILTER_WATCHED) filter->watched_blocks[n] = block;
    filter->watched = n + 1;
}

#define KEY_TABLE_LOG_MINSIZE 3   /* dictobject.c's PyDict_LOG_MINSIZE, private there (3.11-3.13) */

bool rpy_block_is_key_table(const void *block, size_t size) {
    const PyDictKeysObject *keys = block;
    if (size < sizeof(PyDictKeysObject) || keys->dk_refcnt < 1) return false;
    unsigned log2_size = keys->dk_log2_size, log2_index_bytes = keys->dk_log2_index_bytes;
    if (log2_size < KEY_TABLE_LOG_MINSIZE || log2_size > 40 || log2_index_bytes < log2_size ||
        log2_index_bytes > log2_size + 3 || keys->dk_kind > DICT_KEYS_SPLIT)
        return false;
    return keys->dk_usable >= 0 && keys->dk_nentries >= 0 &&
           keys->dk_usable + keys->dk_nentries <= ((Py_ssize_t)1 << log2_size);
}

/* The str fields are read directly, not through the PyUnicode_* macros: in debug builds those
 * assert what a genuine str satisfies (3.11: that it is ready), and op may be bytes posing as one. */
void rpy_user_bytes_blocks(PyObject *op, size_t room, void (*fn)(void *block, void *arg), void *arg) {
    if (PyByteArray_Check(op)) {
        void *bytes = ((PyByteArrayObject *)op)->ob_bytes;
        if (room >= sizeof(PyByteArrayObject) && bytes) fn(bytes, arg);
        return;
    }
    if (!PyUnicode_Check(op) || room < sizeof(PyASCIIObject)) return;
    PyASCIIObject *str = (PyASCIIObject *)op;
    bool compact = str->state.compact, ascii = str->state.ascii;
    size_t fields = !compact ? sizeof(PyUnicodeObject)
                  : ascii    ? sizeof(PyASCIIObject) : sizeof(PyCompactUnicodeObject);
    if (room < fields) return;
    void *data = !compact ? ((PyUnicodeObject *)op)->data.any
               : ascii    ? (void *)(str + 1) : (void *)((PyCompactUnicodeObject *)op + 1);
    if (!compact && data) fn(data, arg);
    char *utf8 = ascii ? NULL : ((PyCompactUnicodeObject *)op)->utf8;
    if (utf8 && (void *)utf8 != data) fn(utf8, arg);
#if !(RPY_312 || RPY_313)
    if (str->wstr && (void *)str->wstr != data) fn(str->wstr, arg);
#endif
}

/* The blocks an object's builtin base (str, list, dict, set, bytearray) owns; whether they are all
 * known (a legacy str's data, a split dict's values and a shared key table are not reported). */
static bool base_blocks(PyObject *op, void (*owned)(void *block, void *arg), void *arg, bool *cached) {
    *cached = false;
    if (PyUnicode_Check(op)) {
        if (!PyUnicode_IS_COMPACT(op)) return false;
        *cached = str_cached_copies(op, owned, arg);
    } else if (PyList_Check(op)) {
        if (((PyListObject *)op)->ob_item) owned(((PyListObject *)op)->ob_item, arg);
    } else if (PyDict_Check(op)) {
        rpy_dict_view_t view;   /* the one statement of what a dict owns */
        rpy_dict_view(op, &view);
        if (view.owned_keys) owned(view.owned_keys, arg);
        if (!view.blocks_known) return false;   /* split, or keys shared with another dict */
    } else if (PyAnySet_Check(op)) {
        PySetObject *so = (PySetObject *)op;
        if (so->table != so->smalltable) owned(so->table, arg);
    } else if (PyByteArray_Check(op)) {
        if (((PyByteArrayObject *)op)->ob_bytes) owned(((PyByteArrayObject *)op)->ob_bytes, arg);
    }
    return true;
}

/* An instance's attribute values when they are a block of their own (3.11, 3.12); whether the
 * layout is known (3.13: a materialized __dict__ shares the inline values, which subtype_dealloc
 * detaches first (dictobject.c _PyObject_ClearManagedDict), so such objects take that path). */
static bool instance_blocks(PyObject *op, void (*owned)(void *block, void *arg), void *arg) {
    PyTypeObject *t = Py_TYPE(op);
    if (!(t->tp_flags & Py_TPFLAGS_MANAGED_DICT)) return true;
#if RPY_313
    (void)owned, (void)arg;
    return _PyObject_ManagedDictPointer(op)->dict == NULL;
#elif RPY_312
    /* Inline values, tagged in the managed slot: allocated as in 3.11 (new_values, the same in a 3.12
     * dictobject.c read for reference); a materialized dict owns them instead. */
    PyDictOrValues dorv = *_PyObject_DictOrValuesPointer(op);
    if (_PyDictOrValues_IsValues(dorv)) {
        PyDictValues *values = _PyDictOrValues_GetValues(dorv);
        owned((uint8_t *)values - ((uint8_t *)values)[-1], arg);
    }
    return true;
#else
    /* Inline values: one PyMem block whose last prefix byte gives the prefix size (dictobject.c:692-705
     * new_values). */
    PyDictValues *values = *_PyObject_ValuesPointer(op);
    if (values) owned((uint8_t *)values - ((uint8_t *)values)[-1], arg);
    return true;
#endif
}

bool rpy_owned_blocks(PyObject *op, void (*owned)(void *block, void *arg), void *arg, bool *releasable) {
    PyTypeObject *t = Py_TYPE(op);
    if (t == &PyTuple_Type || t == &PyLong_Type || t == &PyFloat_Type || t == &PyBytes_Type) {
        *releasable = true;   /* the commonest blockless types first: this runs once per object */
        return true;
    }
    bool cached;
    bool known = base_blocks(op, owned, arg, &cached) && instance_blocks(op, owned, arg);
    *releasable = false;
    if (!known) return false;
    if (t == &PyLong_Type || t == &PyFloat_Type || t == &PyComplex_Type || t == &PyBytes_Type ||
        t == &PyTuple_Type || t == &PyRange_Type || t == &PySlice_Type || t == &PyList_Type || t == &PyDict_Type) {
        *releasable = true;
    } else if (t == &PyUnicode_Type) {
        /* unicode_dealloc frees the cached copies, and an interned str is in the interned table:
         * leave both to the ordinary path. */
        *releasable = !cached && !PyUnicode_CHECK_INTERNED(op);
    } else if (t == &PySet_Type || t == &PyFrozenSet_Type) {
        *releasable = no_weakrefs(op);
    } else if (t == &PyByteArray_Type) {
        *releasable = ((PyByteArrayObject *)op)->ob_exports == 0;
    } else if ((t->tp_flags & Py_TPFLAGS_HEAPTYPE) && plain_class(t)) {
        *releasable = no_weakrefs(op);
    }
    return true;
}

/* rangeobject.c's rangeobject, private there: a range holds four ints but is not a GC type, so it
 * has no tp_traverse to tell. */
typedef struct {
    PyObject_HEAD
    PyObject *start, *stop, *step, *length;
} range_layout;

void rpy_visit_references(PyObject *op, visitproc visit, void *arg) {
    PyTypeObject *t = Py_TYPE(op);
    if (PyType_IS_GC(t) && t->tp_traverse) t->tp_traverse(op, visit, arg);   /* subtype_traverse visits the class */
    if (t == &PyRange_Type) {
        range_layout *range = (range_layout *)op;
        visit(range->start, arg);
        visit(range->stop, arg);
        visit(range->step, arg);
        visit(range->length, arg);
    }
    if (PyDict_Check(op) && rpy_dict_traverse_skips_keys(op)) {
        Py_ssize_t pos = 0;
        PyObject *key, *value;
        while (PyDict_Next(op, &pos, &key, &value)) visit(key, arg);
    }
#if RPY_313
    /* A __dict__ made while the object's inline values are still valid shares them ("embedded"):
     * then subtype_traverse visits the values and not the dict, and dict_traverse skips embedded
     * values (3.13 dictobject.c PyObject_VisitManagedDict, dict_traverse).  The object still holds
     * the dict's only reference: visit it, or the dict looks held from outside. */
    if ((t->tp_flags & Py_TPFLAGS_INLINE_VALUES) && _PyObject_InlineValues(op)->valid) {
        PyDictObject *dict = _PyObject_ManagedDictPointer(op)->dict;
        if (dict) visit((PyObject *)dict, arg);
    }
#endif
}

/* PyObject_GC_Del: "if (gcstate->generations[0].count > 0) gcstate->generations[0].count--"
 * (gcmodule.c on 3.11 and 3.12, gc.c on 3.13); _PyObject_GC_Link counted each at its allocation.
 * The calling interpreter's count: a region made under one interpreter and closed under another
 * gives it back to the second, as PyObject_GC_Del would. */
void rpy_gc_objects_freed(size_t n) {
    struct _gc_runtime_state *gc = gcstate();
    int count = gc->generations[0].count;
    gc->generations[0].count = (size_t)count > n ? count - (int)n : 0;
}

bool rpy_references_dropped(Py_ssize_t n) {
#ifdef Py_REF_DEBUG
    _Py_RefTotal -= n;
#else
    (void)n;
#endif
    return true;
}

#ifdef Py_REF_DEBUG
const bool rpy_hidden_references_counted = true;
#else
const bool rpy_hidden_references_counted = false;
#endif

Py_ssize_t rpy_hidden_references(PyObject *op) {
#ifdef Py_REF_DEBUG
    if (Py_IS_TYPE(op, &PyDict_Type)) {
        PyDictObject *d = (PyDictObject *)op;
        if (!d->ma_values && d->ma_keys != empty_keys) return d->ma_keys->dk_refcnt;
    }
#else
    (void)op;
#endif
    return 0;
}

bool rpy_bulk_teardown_possible(void) {
#ifdef Py_TRACE_REFS
    return false;   /* every object is on the refchain list, which a bulk free would corrupt */
#else
    return !rpy_tracemalloc_tracing();   /* tracemalloc would keep traces of blocks never freed */
#endif
}

bool rpy_dict_replace_key(PyObject *dict, Py_ssize_t pos, PyObject *key) {
    PyDictObject *mp = (PyDictObject *)dict;
    if (mp->ma_values || pos < 1 || pos > mp->ma_keys->dk_nentries) return false;   /* split table */
    PyDictKeysObject *keys = mp->ma_keys;
    PyObject **slot = DK_IS_UNICODE(keys) ? &DK_UNICODE_ENTRIES(keys)[pos - 1].me_key
                                          : &DK_ENTRIES(keys)[pos - 1].me_key;
    if (!*slot) return false;
    Py_SETREF(*slot, Py_NewRef(key));
    keys->dk_version = 0;
    return true;
}

PyObject *rpy_long_copy(PyObject *op) { return _PyLong_Copy((PyLongObject *)op); }

bool rpy_dict_traverse_skips_keys(PyObject *dict) {
    /* dict_traverse visits keys only for DICT_KEYS_GENERAL tables (dictobject.c:3532-3561). */
    PyDictObject *mp = (PyDictObject *)dict;
    return !mp->ma_values && mp->ma_keys->dk_kind != DICT_KEYS_GENERAL;
}

bool rpy_set_next(PyObject *set, Py_ssize_t *position, PyObject **key, Py_hash_t *hash) {
    return _PySet_NextEntry(set, position, key, hash) != 0;   /* 3.13: internal, still exported */
}

bool rpy_dict_has_str_keys(PyObject *dict) {
    return DK_IS_UNICODE(((PyDictObject *)dict)->ma_keys);
}

rpy_key_table_layout_t rpy_key_table_layout = {
    .header = sizeof(PyDictKeysObject),
    .nentries = offsetof(PyDictKeysObject, dk_nentries),
    .log2_index_bytes = offsetof(PyDictKeysObject, dk_log2_index_bytes),
    .kind = offsetof(PyDictKeysObject, dk_kind),
    .indices = offsetof(PyDictKeysObject, dk_indices),
    .unicode_entry = sizeof(PyDictUnicodeEntry),
    .entry = sizeof(PyDictKeyEntry),
    .general_kind = DICT_KEYS_GENERAL,
};

void rpy_dict_view(PyObject *dict, rpy_dict_view_t *view) {
    PyDictObject *mp = (PyDictObject *)dict;
    PyDictKeysObject *keys = mp->ma_keys;
    *view = (rpy_dict_view_t){.count = keys->dk_nentries};
    view->blocks_known = !mp->ma_values && (keys == empty_keys || keys->dk_refcnt == 1);
    if (view->blocks_known && keys != empty_keys) view->owned_keys = keys;
    if (mp->ma_values) {   /* split: the values array, indexed like the class's shared keys */
        view->values = mp->ma_values->values;
        view->key_at = view->value_at = -1;
#if RPY_313
        /* Values embedded in an object (a __dict__ made while they were inline) are the object's:
         * its tp_traverse reports them, dict_traverse does not, and neither may the view. */
        if (mp->ma_values->embedded) view->count = 0;
#endif
    } else if (DK_IS_UNICODE(keys)) {
        view->entries = (const char *)DK_UNICODE_ENTRIES(keys);
        view->stride = sizeof(PyDictUnicodeEntry);
        view->key_at = offsetof(PyDictUnicodeEntry, me_key);
        view->value_at = offsetof(PyDictUnicodeEntry, me_value);
    } else {
        view->entries = (const char *)DK_ENTRIES(keys);
        view->stride = sizeof(PyDictKeyEntry);
        view->key_at = offsetof(PyDictKeyEntry, me_key);
        view->value_at = offsetof(PyDictKeyEntry, me_value);
    }
}

/* ---- Freelists ----
 *
 * A freelist hands an object's memory to the next object of its type without asking the allocator,
 * so it would give region memory to objects outside the region (after a block) and ordinary memory to
 * objects made in a block.  All are per interpreter (pycore_interp.h:160-172).  Two rules:
 *
 *   1. No region object ever stays on a freelist.
 *   2. While any block is open, every freelist is empty, so every new object is allocated.
 *
 * - float: ceval's fast paths free floats with _PyFloat_ExactDealloc directly (ceval.c:1967-2048),
 *   bypassing tp_dealloc, so no wrapper sees them.  The list is switched off for good: the pop tests
 *   the head, the push tests numfree < MAX (floatobject.c:136-150,260-262), so head = NULL and numfree
 *   = MAX stop both.  A full collection resets it (clear_freelists, gcmodule.c:1035-1044); the
 *   binding's gc callback calls rpy_float_freelist_off() after each one.
 * - tuple, list, dict, slice, context, async-generator asend / wrapped value: freed only through
 *   tp_dealloc, whose slots (static types: process-wide) are wrapped.  After the original
 *   deallocator, an object left on top of its freelist is taken off again and freed when a block is
 *   open anywhere or the object is region memory (rule 1, and rule 2 during blocks).  When the first
 *   block opens, the lists are put aside (rpy_freelists_stash: O(1), only heads and counts move) and
 *   when the last one closes they are put back, so ordinary code keeps its freelists.
 * - dict keys tables: pushed by free_keys_object and by dictresize (dictobject.c:1538-1556) outside
 *   any deallocator, so no wrapper can catch every push.  Instead the freelist is kept FULL (80) of
 *   spare tables the binding allocated: a push is then refused and the table freed; a pop (only by
 *   new_keys_object, right before the new dict is allocated) takes a spare, and the allocator hook
 *   refills it at its next allocation in the context of the caller, so the next dict's table is where
 *   that dict is.  See "The dict-keys freelist guard" below for the one window it leaves.
 *
 * The wrapped deallocators keep CPython's trashcan: Py_TRASHCAN_BEGIN only acts when tp_dealloc is
 * the function that names it (_PyTrash_cond, object.c:2310), which stops being true for tuple, list
 * and dict once the slot holds the wrapper, so the wrapper runs the trashcan itself.  The trashcan
 * deposits only untracked objects, hence the untrack first (tupledealloc, list_dealloc and
 * dict_dealloc do the same). */

int rpy_blocks_open;                      /* set by the binding: blocks open in any thread */
uintptr_t rpy_region_memory_base;        /* the reservation all regions live in (0 before the first) */
size_t rpy_region_memory_span;

static destructor orig_tuple_dealloc, orig_list_dealloc, orig_dict_dealloc, orig_slice_dealloc,
    orig_context_dealloc, orig_asend_dealloc, orig_wrapped_dealloc;

/* On every deallocation of the wrapped types: two loads and a compare, no call. */
static inline bool must_not_stay(PyObject *op) {
    /* Atomic: an interpreter with its own GIL runs these wrappers in parallel with the binding. */
    return __atomic_load_n(&rpy_blocks_open, __ATOMIC_RELAXED) ||
           (uintptr_t)op - __atomic_load_n(&rpy_region_memory_base, __ATOMIC_RELAXED) <
               __atomic_load_n(&rpy_region_memory_span, __ATOMIC_RELAXED);
}

/* The wrappers' trashcan and untrack, with what CPython's macros and functions call inline.  Every
 * tuple, list and dict deallocation of the process runs them once the binding is active, and before
 * they were four calls into libpython each (PyObject_GC_UnTrack, _PyTrash_cond, PyThreadState_Get,
 * then _PyTrash_begin) where the deallocator alone makes none of them.
 * - untrack: PyObject_GC_UnTrack is exactly this test and unlink (3.11-3.13: gcmodule.c / gc.c).
 * - 3.11 and 3.12: Py_TRASHCAN_BEGIN(op, dealloc) is Py_TRASHCAN_BEGIN_CONDITION(op, _PyTrash_cond(op,
 *   dealloc)), and _PyTrash_cond is `Py_TYPE(op)->tp_dealloc == dealloc` (Objects/object.c); the
 *   condition's thread state is the caller's, which a deallocator always has.  _PyTrash_begin and
 *   _PyTrash_end, which keep the nesting count, are still called, only when the condition holds.
 * - 3.13's macros are inline already (cpython/object.h): used as they are. */
static inline void untrack(PyObject *op) {
    if (_PyObject_GC_IS_TRACKED(op)) _PyObject_GC_UNTRACK(op);
}

#if RPY_313
#define TRASHCAN_BEGIN(op, dealloc) Py_TRASHCAN_BEGIN(op, dealloc)
#define TRASHCAN_END Py_TRASHCAN_END
#else
#define TRASHCAN_BEGIN(op, dealloc)                                                               \
    do {                                                                                          \
        PyThreadState *trash_tstate_ = NULL;                                                      \
        if (Py_TYPE(op)->tp_dealloc == (destructor)(dealloc)) {                                   \
            trash_tstate_ = rpy_current_tstate();                                                 \
            if (_PyTrash_begin(trash_tstate_, (op))) break;                                       \
        }
#define TRASHCAN_END                                                                              \
        if (trash_tstate_) _PyTrash_end(trash_tstate_);                                           \
    } while (0);
#endif

/* For the freelists that are arrays with a count: takes op back off the top and frees it. */
static void array_freelist_pop(PyObject *op, void *array, int *count) {
    PyObject **entries = array;
    if (*count > 0 && entries[*count - 1] == op && must_not_stay(op)) {
        (*count)--;
        PyObject_GC_Del(op);
    }
}

static void tuple_dealloc_guarded(PyObject *op) {
    Py_ssize_t size = Py_SIZE(op);
    if (size == 0) {   /* the empty tuple singleton: nothing of ours to do */
        orig_tuple_dealloc(op);
        return;
    }
    untrack(op);
    TRASHCAN_BEGIN(op, tuple_dealloc_guarded)
    orig_tuple_dealloc(op);
    PyInterpreterState *interp = _PyInterpreterState_GET();
    Py_ssize_t index = size - 1;   /* tupleobject.c:1217 */
    if (index < PyTuple_NFREELISTS && TUPLE_HEADS(interp)[index] == (PyTupleObject *)op && must_not_stay(op)) {
        TUPLE_HEADS(interp)[index] = (PyTupleObject *)((PyTupleObject *)op)->ob_item[0];
        TUPLE_COUNTS(interp)[index]--;
        PyObject_GC_Del(op);
    }
    TRASHCAN_END
}

static void list_dealloc_guarded(PyObject *op) {
    untrack(op);
    TRASHCAN_BEGIN(op, list_dealloc_guarded)
    orig_list_dealloc(op);
    PyInterpreterState *interp = _PyInterpreterState_GET();
    array_freelist_pop(op, LIST_ITEMS(interp), &LIST_COUNT(interp));
    TRASHCAN_END
}

static void dict_dealloc_guarded(PyObject *op) {
    untrack(op);
    TRASHCAN_BEGIN(op, dict_dealloc_guarded)
    orig_dict_dealloc(op);
    PyInterpreterState *interp = _PyInterpreterState_GET();
    array_freelist_pop(op, DICT_ITEMS(interp), &DICT_COUNT(interp));
    TRASHCAN_END
}

static void slice_dealloc_guarded(PyObject *op) {
    orig_slice_dealloc(op);
    PyInterpreterState *interp = _PyInterpreterState_GET();
    if (SLICE_CACHE(interp) == (PySliceObject *)op && must_not_stay(op)) {
        SLICE_CACHE(interp) = NULL;
        PyObject_GC_Del(op);
    }
}

static void context_dealloc_guarded(PyObject *op) {
    orig_context_dealloc(op);
    PyInterpreterState *interp = _PyInterpreterState_GET();
    if (CONTEXT_COUNT(interp) > 0 && CONTEXT_HEAD(interp) == (PyContext *)op && must_not_stay(op)) {
        CONTEXT_HEAD(interp) = (PyContext *)((PyContext *)op)->ctx_weakreflist;
        CONTEXT_COUNT(interp)--;
        PyObject_GC_Del(op);
    }
}

static void asend_dealloc_guarded(PyObject *op) {
    orig_asend_dealloc(op);
    PyInterpreterState *interp = _PyInterpreterState_GET();
    array_freelist_pop(op, ASEND_ITEMS(interp), &ASEND_COUNT(interp));
}

static void wrapped_dealloc_guarded(PyObject *op) {
    orig_wrapped_dealloc(op);
    PyInterpreterState *interp = _PyInterpreterState_GET();
    array_freelist_pop(op, VALUE_ITEMS(interp), &VALUE_COUNT(interp));
}

static void wrap(PyTypeObject *type, destructor *orig, destructor guarded) {
    *orig = type->tp_dealloc;
    type->tp_dealloc = guarded;
}

void rpy_float_freelist_off(void) {
    PyInterpreterState *interp = _PyInterpreterState_GET();
    if (FLOAT_COUNT(interp) < 0) return;   /* finalized */
    while (FLOAT_HEAD(interp)) {
        PyFloatObject *op = FLOAT_HEAD(interp);
        FLOAT_HEAD(interp) = (PyFloatObject *)Py_TYPE(op);
        PyObject_Free(op);
    }
    FLOAT_COUNT(interp) = PyFloat_MAXFREELIST;
}

#if RPY_313
/* The static type `name` among object's direct subclasses, or NULL: 3.13 does not export
 * _PyAsyncGenWrappedValue_Type, but registers it there (3.13: object.c:2356, static_types). */
static PyTypeObject *static_type_named(const char *name) {
    PyObject *subclasses = subclasses_of(&PyBaseObject_Type);
    if (!subclasses || !PyDict_Check(subclasses)) return NULL;
    Py_ssize_t pos = 0;
    PyObject *key, *ref;
    while (PyDict_Next(subclasses, &pos, &key, &ref)) {
        PyTypeObject *sub = subclass_of_ref(ref);
        if (sub && !(sub->tp_flags & Py_TPFLAGS_HEAPTYPE) && strcmp(sub->tp_name, name) == 0) return sub;
    }
    return NULL;
}
#endif

/* ---- Type deaths ----
 *
 * Every type that is freed goes through PyType_Type's tp_dealloc (type_dealloc): a class's metaclass
 * is type or a subclass of it, whose subtype_dealloc calls type's tp_dealloc as its base's, reading
 * the slot when it runs.  Static types are never freed. */
static destructor orig_type_dealloc;
static uint64_t types_freed;

static void type_dealloc_counted(PyObject *op) {
    __atomic_fetch_add(&types_freed, 1, __ATOMIC_RELAXED);
    orig_type_dealloc(op);
}

uint64_t rpy_types_freed(void) { return __atomic_load_n(&types_freed, __ATOMIC_RELAXED); }

/* Region objects already on a freelist when the binding starts cannot exist (no region existed), so
 * installing only has to wrap the deallocators (each interpreter switches its float list off when it
 * starts using regions: rpy_interp_guard). */
int rpy_freelists_install(void) {
    static bool wrapped;
    if (!wrapped) {
        wrap(&PyType_Type, &orig_type_dealloc, type_dealloc_counted);   /* not a freelist: see above */
#if RPY_313
        PyTypeObject *wrapped_value_type = static_type_named("async_generator_wrapped_value");
        if (!wrapped_value_type) {
            PyErr_SetString(PyExc_ImportError, "region: CPython's async_generator_wrapped_value type was not found "
                                               "among object's subclasses");
            return -1;
        }
#else
        PyTypeObject *wrapped_value_type = &_PyAsyncGenWrappedValue_Type;
#endif
        wrap(&PyTuple_Type, &orig_tuple_dealloc, tuple_dealloc_guarded);
        wrap(&PyList_Type, &orig_list_dealloc, list_dealloc_guarded);
        wrap(&PyDict_Type, &orig_dict_dealloc, dict_dealloc_guarded);
        wrap(&PySlice_Type, &orig_slice_dealloc, slice_dealloc_guarded);
        wrap(&PyContext_Type, &orig_context_dealloc, context_dealloc_guarded);
        wrap(&_PyAsyncGenASend_Type, &orig_asend_dealloc, asend_dealloc_guarded);
        wrap(wrapped_value_type, &orig_wrapped_dealloc, wrapped_dealloc_guarded);
        wrapped = true;
    }
    return 0;
}

/* The freelists one interpreter put aside while its blocks are open.  The array lists are copied
 * out: a push during a block writes entry 0 (and the wrapper then pops it), so entries left in place
 * would be overwritten. */
typedef struct freelist_stash {
    bool stashed;
    PyTupleObject *tuple_heads[PyTuple_NFREELISTS];
    int tuple_counts[PyTuple_NFREELISTS];
    PyListObject *lists[PyList_MAXFREELIST];
    PyDictObject *dicts[PyDict_MAXFREELIST];
    struct PyAsyncGenASend *asends[_PyAsyncGen_MAXFREELIST];
    struct _PyAsyncGenWrappedValue *values[_PyAsyncGen_MAXFREELIST];
    int list_count, dict_count, asend_count, value_count, context_count;
    PyContext *context_head;
    PySliceObject *slice;
} freelist_stash_t;

#define STASH_ARRAY(dst, dst_count, src, src_count)                  \
    do {                                                             \
        dst_count = (src_count) > 0 ? (src_count) : 0;               \
        memcpy(dst, src, (size_t)dst_count * sizeof(dst)[0]);        \
        if ((src_count) > 0) (src_count) = 0;                        \
    } while (0)

/* Back only into an empty list: a full collection while blocks were open cleared the (empty)
 * lists and left counts of 0, or -1 at finalization, which must stay. */
#define UNSTASH_ARRAY(dst, dst_count, src, src_count)                \
    do {                                                             \
        if ((dst_count) == 0) {                                      \
            memcpy(dst, src, (size_t)(src_count) * sizeof(src)[0]);  \
            (dst_count) = (src_count);                               \
        }                                                            \
    } while (0)

/* ---- Interpreters ----
 *
 * The binding keeps per-interpreter state for every interpreter that attached (the package's import
 * in it): the freelists it put aside and the spare on top of its keys freelist.  An interpreter is
 * found by its state pointer and its id together (ids are never reused; a pointer can be, after
 * the interpreter is destroyed, but detaching at its end clears the entry first).  Attaching and
 * detaching are at the end of the file, after the keys guard they start and stop. */

#if !RPY_312 && !RPY_313
const volatile uintptr_t *rpy_tstate_current = (const volatile uintptr_t *)&_PyRuntime.gilstate.tstate_current;
#endif

typedef struct interp_entry {
    PyInterpreterState *interp;   /* NULL: a free entry */
    int64_t id;
    freelist_stash_t stash;
    void *spare_on_top;          /* what the keys guard put on top of its keys freelist last */
    bool guarded;                /* its freelist guards run (rpy_interp_guard); under its GIL */
    PyThreadState *collector;    /* runs the interpreter's collection now (rpy_note_collector); compared only */
} interp_entry_t;

static interp_entry_t interps[RPY_MAX_INTERPRETERS];

/* THREADS: entries change only with the GIL of the attached interpreters held, but an interpreter
 * with its own GIL (3.12+, one that does not use regions: it cannot import the package) reaches
 * entry_of() from its allocator hook calls in parallel (rpy_keys_freelist_refill).  So `interp` is
 * published last with a release store, read with an acquire load, and cleared atomically. */
static interp_entry_t *entry_of(PyInterpreterState *interp) {
    if (!interp) return NULL;
    for (int i = 0; i < RPY_MAX_INTERPRETERS; i++)
        if (__atomic_load_n(&interps[i].interp, __ATOMIC_ACQUIRE) == interp && interps[i].id == interp->id)
            return &interps[i];
    return NULL;
}

static freelist_stash_t *stash_of(PyInterpreterState *interp) {
    interp_entry_t *e = entry_of(interp);
    return e ? &e->stash : NULL;
}


void rpy_freelists_stash(void) {
    PyInterpreterState *interp = _PyInterpreterState_GET();
    freelist_stash_t *stash = stash_of(interp);
    if (!stash || stash->stashed) return;
    for (int i = 0; i < PyTuple_NFREELISTS; i++) {
        stash->tuple_heads[i] = TUPLE_HEADS(interp)[i];
        stash->tuple_counts[i] = TUPLE_COUNTS(interp)[i];
        TUPLE_HEADS(interp)[i] = NULL;
        TUPLE_COUNTS(interp)[i] = 0;
    }
    STASH_ARRAY(stash->lists, stash->list_count, LIST_ITEMS(interp), LIST_COUNT(interp));
    STASH_ARRAY(stash->dicts, stash->dict_count, DICT_ITEMS(interp), DICT_COUNT(interp));
    STASH_ARRAY(stash->asends, stash->asend_count, ASEND_ITEMS(interp), ASEND_COUNT(interp));
    STASH_ARRAY(stash->values, stash->value_count, VALUE_ITEMS(interp), VALUE_COUNT(interp));
    stash->context_head = CONTEXT_HEAD(interp);
    stash->context_count = CONTEXT_COUNT(interp);
    CONTEXT_HEAD(interp) = NULL;
    CONTEXT_COUNT(interp) = 0;
    stash->slice = SLICE_CACHE(interp);
    SLICE_CACHE(interp) = NULL;
    stash->stashed = true;
}

void rpy_freelists_unstash(void) {
    PyInterpreterState *interp = _PyInterpreterState_GET();
    freelist_stash_t *stash = stash_of(interp);
    if (!stash || !stash->stashed) return;
    stash->stashed = false;
    for (int i = 0; i < PyTuple_NFREELISTS; i++) {
        if (TUPLE_COUNTS(interp)[i] != 0 || TUPLE_HEADS(interp)[i]) continue;
        TUPLE_HEADS(interp)[i] = stash->tuple_heads[i];
        TUPLE_COUNTS(interp)[i] = stash->tuple_counts[i];
    }
    UNSTASH_ARRAY(LIST_ITEMS(interp), LIST_COUNT(interp), stash->lists, stash->list_count);
    UNSTASH_ARRAY(DICT_ITEMS(interp), DICT_COUNT(interp), stash->dicts, stash->dict_count);
    UNSTASH_ARRAY(ASEND_ITEMS(interp), ASEND_COUNT(interp), stash->asends, stash->asend_count);
    UNSTASH_ARRAY(VALUE_ITEMS(interp), VALUE_COUNT(interp), stash->values, stash->value_count);
    if (CONTEXT_COUNT(interp) == 0 && !CONTEXT_HEAD(interp)) {
        CONTEXT_HEAD(interp) = stash->context_head;
        CONTEXT_COUNT(interp) = stash->context_count;
    }
    if (!SLICE_CACHE(interp)) SLICE_CACHE(interp) = stash->slice;
}

/* ---- The dict-keys freelist guard ----
 *
 * Each attached interpreter has its own keys freelist (KEYS_ITEMS), kept full of spares, and the
 * spare the guard last put on top of it (interp_entry_t.spare_on_top).  Each THREAD has a view of
 * the freelist of the interpreter it ran last (rpy_keys_view: pointers to its count, its top entry
 * and that spare), which the allocator hook checks on every allocation; when the thread runs
 * another interpreter, or an interpreter attached or detached since (rpy_attach_generation),
 * rpy_keys_freelist_refill() first points the view at the running interpreter's.  The freelist and
 * its spare change only under that interpreter's GIL, so every thread that runs it sees one state,
 * and interpreters with GILs of their own never touch each other's.  An interpreter that is not
 * attached is not guarded: the view then points at a constant "full, nothing changed" state. */

/* Size of a table new_keys_object(PyDict_LOG_MINSIZE, unicode=true) makes (dictobject.c:594-653):
 * 8 slots, 1-byte indices, USABLE_FRACTION(8) = 5 unicode entries. */
#define MIN_KEYS_SIZE (sizeof(PyDictKeysObject) + 8 + 5 * sizeof(PyDictUnicodeEntry))
_Static_assert(RPY_KEYS_FREELIST_FULL == PyDict_MAXFREELIST, "the keys freelist holds PyDict_MAXFREELIST");

static int guard_off_count = RPY_KEYS_FREELIST_FULL;   /* what an unguarded interpreter shows */
static void *guard_off_top;                            /* == guard_off_spare: nothing changed */
static void *guard_off_spare;

__thread rpy_keys_view_t rpy_keys_view __attribute__((tls_model("initial-exec"))) = {
    .count = &guard_off_count, .top = &guard_off_top, .spare_on_top = &guard_off_spare};
unsigned rpy_attach_generation = 1;   /* a new thread's view (generation 0) is rebound first */

static void *(*spare_alloc)(size_t size);
static void (*spare_free)(void *table);

void rpy_keys_freelist_bind(void *(*alloc)(size_t size), void (*release)(void *table)) {
    spare_alloc = alloc;
    spare_free = release;
}

/* The interpreter this thread's view is of, when it is guarded (attached, freelists not finalized). */
static PyInterpreterState *view_guarded(void) {
    rpy_keys_view_t *v = &rpy_keys_view;
    return v->count != &guard_off_count ? v->interp : NULL;
}

/* Points the calling thread's view at its interpreter's freelist. */
static void keys_view_bind(void) {
    rpy_keys_view_t *v = &rpy_keys_view;
    PyInterpreterState *now = rpy_current_interp();
    unsigned generation = __atomic_load_n(&rpy_attach_generation, __ATOMIC_ACQUIRE);
    if (now == v->interp && generation == v->generation) return;
    interp_entry_t *e = entry_of(now);
    v->interp = now;
    v->generation = generation;
    /* A negative count means the interpreter finalized its freelists: leave them alone. */
    if (e && e->guarded && KEYS_COUNT(now) >= 0) {
        v->count = &KEYS_COUNT(now);
        v->top = (void **)&KEYS_ITEMS(now)[RPY_KEYS_FREELIST_FULL - 1];
        v->spare_on_top = &e->spare_on_top;
    } else {
        v->count = &guard_off_count;
        v->top = &guard_off_top;
        v->spare_on_top = &guard_off_spare;
    }
}

/* A table on top that the guard did not put there was pushed by CPython after a pop left room:
 * free it (nothing else refers to a freelisted table).  Then fill every empty place. */
static void keys_freelist_refill_self(void) {
    PyInterpreterState *d = view_guarded();
    if (!spare_alloc || !d || KEYS_COUNT(d) < 0) return;
    void **spare_on_top = rpy_keys_view.spare_on_top;
    if (KEYS_COUNT(d) == RPY_KEYS_FREELIST_FULL && KEYS_ITEMS(d)[RPY_KEYS_FREELIST_FULL - 1] != *spare_on_top) {
        void *pushed = KEYS_ITEMS(d)[RPY_KEYS_FREELIST_FULL - 1];
        KEYS_COUNT(d)--;
        spare_free(pushed);
    }
    while (KEYS_COUNT(d) < RPY_KEYS_FREELIST_FULL) {
        void *spare = spare_alloc(MIN_KEYS_SIZE);
        if (!spare) return;   /* out of memory: the guard tries again at the next call */
        KEYS_ITEMS(d)[KEYS_COUNT(d)++] = spare;
    }
    *spare_on_top = KEYS_ITEMS(d)[RPY_KEYS_FREELIST_FULL - 1];
}

void rpy_keys_freelist_refill(void) {
    keys_view_bind();
    keys_freelist_refill_self();
}

static inline bool spare_is_wrong(const rpy_spare_rule_t *rule, const void *table, bool on_top) {
    if ((uintptr_t)table - rule->regions < rule->regions_size) return rule->region_of(table) != rule->here;
    return on_top && rule->here != NULL;
}

void rpy_keys_freelist_replace(const rpy_spare_rule_t *rule) {
    rpy_keys_freelist_refill();
    PyInterpreterState *d = view_guarded();
    if (!spare_alloc || !d || KEYS_COUNT(d) < 0) return;
    for (int i = 0; i < KEYS_COUNT(d); i++) {
        if (!spare_is_wrong(rule, KEYS_ITEMS(d)[i], i == RPY_KEYS_FREELIST_FULL - 1)) continue;
        void *spare = spare_alloc(MIN_KEYS_SIZE);
        if (!spare) return;
        spare_free(KEYS_ITEMS(d)[i]);
        KEYS_ITEMS(d)[i] = spare;
    }
    *rpy_keys_view.spare_on_top = KEYS_ITEMS(d)[RPY_KEYS_FREELIST_FULL - 1];
}

/* ---- Interpreters: lookup, attaching, detaching ---- */

/* Whether interp runs under a GIL other than the main interpreter's: interp->ceval.own_gil (3.12+,
 * pycore_ceval_state.h), which the main interpreter has set too. */
static bool has_own_gil(PyInterpreterState *interp) {
#if RPY_312 || RPY_313
    return interp && interp != _PyRuntime.interpreters.main && interp->ceval.own_gil;
#else
    (void)interp;
    return false;
#endif
}

bool rpy_interp_has_own_gil(void) { return has_own_gil(_PyInterpreterState_GET()); }

rpy_interp_kind_t rpy_interp_kind(int64_t id) {
    for (PyInterpreterState *i = PyInterpreterState_Head(); i; i = PyInterpreterState_Next(i))
        if (PyInterpreterState_GetID(i) == id) return has_own_gil(i) ? RPY_INTERP_OWN_GIL : RPY_INTERP_MAIN_GIL;
    return RPY_INTERP_GONE;
}

static Py_ssize_t gc_callback_index(PyObject **items, Py_ssize_t n, PyCFunction callback) {
    for (Py_ssize_t i = 0; i < n; i++)
        if (PyCFunction_Check(items[i]) && PyCFunction_GET_FUNCTION(items[i]) == callback) return i;
    return -1;
}

/* Rotated in place: nothing is allocated (a block may be open).  A collection iterating the list
 * meanwhile may call one entry twice or skip one; the package's callbacks tolerate both (a second
 * "start" notes the same thread, a missed "stop" leaves gc.collecting to end the note's effect). */
void rpy_gc_callbacks_bracket(PyCFunction first, PyCFunction last) {
    PyObject *list = gcstate()->callbacks;
    if (!list || !PyList_Check(list)) return;
    PyObject **items = ((PyListObject *)list)->ob_item;
    Py_ssize_t n = PyList_GET_SIZE(list);
    Py_ssize_t i = gc_callback_index(items, n, first);
    if (i > 0) {
        PyObject *ours = items[i];
        memmove(items + 1, items, (size_t)i * sizeof *items);
        items[0] = ours;
    }
    i = gc_callback_index(items, n, last);
    if (i >= 0 && i < n - 1) {
        PyObject *ours = items[i];
        memmove(items + i, items + i + 1, (size_t)(n - 1 - i) * sizeof *items);
        items[n - 1] = ours;
    }
}

int rpy_gc_callbacks_register(PyObject *first, PyObject *last) {
    PyObject *list = gcstate()->callbacks;
    if (!list || !PyList_Check(list) || !PyCFunction_Check(first) || !PyCFunction_Check(last)) {
        PyErr_SetString(PyExc_RuntimeError, "region: gc.callbacks is not a list, or a callback is not a builtin function");
        return -1;
    }
    if (gc_callback_index(((PyListObject *)list)->ob_item, PyList_GET_SIZE(list), PyCFunction_GET_FUNCTION(first)) < 0 &&
        PyList_Insert(list, 0, first) < 0)
        return -1;
    if (gc_callback_index(((PyListObject *)list)->ob_item, PyList_GET_SIZE(list), PyCFunction_GET_FUNCTION(last)) < 0 &&
        PyList_Append(list, last) < 0)
        return -1;
    return 0;
}

void rpy_note_collector(PyThreadState *collector) {
    interp_entry_t *e = entry_of(_PyInterpreterState_GET());
    if (e) e->collector = collector;
}

const size_t rpy_gc_collecting_offset = offsetof(PyInterpreterState, gc.collecting);
_Static_assert(sizeof(((PyInterpreterState *)0)->gc.collecting) == sizeof(int), "gc.collecting is an int");

bool rpy_collecting_here_noted(PyInterpreterState *interp) {
    assert(interp->gc.collecting);
    interp_entry_t *e = entry_of(interp);
    return !e || !e->collector || e->collector == rpy_current_tstate();
}

int rpy_interp_index(void) {
    interp_entry_t *e = entry_of(_PyInterpreterState_GET());
    return e ? (int)(e - interps) : -1;
}

/* An entry being filled in: no interpreter has this address. */
#define CLAIMED ((PyInterpreterState *)1)

int rpy_interp_attach(void) {
    PyInterpreterState *interp = _PyInterpreterState_GET();
    interp_entry_t *e = entry_of(interp);
    for (int i = 0; i < RPY_MAX_INTERPRETERS && !e; i++) {
        /* Interpreters with GILs of their own may attach at the same moment: an entry is claimed
         * with a compare-and-swap, filled in, then published. */
        PyInterpreterState *expected = NULL;
        if (!__atomic_compare_exchange_n(&interps[i].interp, &expected, CLAIMED, false, __ATOMIC_ACQ_REL,
                                         __ATOMIC_RELAXED))
            continue;
        e = &interps[i];
        e->id = interp->id;
        memset(&e->stash, 0, sizeof e->stash);
        e->spare_on_top = NULL;
        e->guarded = false;
        __atomic_store_n(&e->interp, interp, __ATOMIC_RELEASE);
        __atomic_add_fetch(&rpy_attach_generation, 1, __ATOMIC_RELEASE);
    }
    return e ? (int)(e - interps) : -1;
}

/* The guards start only when the interpreter first uses a region (placement_activate): one that
 * merely imported the package keeps its float freelist and an unguarded keys freelist, and pays
 * nothing.  No region object can be freed in an interpreter before it creates or acquires a region,
 * which is what starts them. */
int rpy_interp_guard(void) {
    interp_entry_t *e = entry_of(_PyInterpreterState_GET());
    if (!e) return -1;
    if (!e->guarded) {
        e->guarded = true;
        __atomic_add_fetch(&rpy_attach_generation, 1, __ATOMIC_RELEASE);   /* views bind again */
        rpy_float_freelist_off();
        rpy_keys_freelist_refill();   /* points this thread's view at this interpreter and fills its freelist */
    }
    return 0;
}

bool rpy_interp_guarded(void) {
    interp_entry_t *e = entry_of(_PyInterpreterState_GET());
    return e && e->guarded;
}

void rpy_interp_detach(void) {
    PyInterpreterState *interp = _PyInterpreterState_GET();
    interp_entry_t *e = entry_of(interp);
    if (!e) return;
    rpy_freelists_unstash();   /* its own finalization frees what it kept */
    arrivals_forget((int)(e - interps));
    __atomic_store_n(&e->interp, NULL, __ATOMIC_RELEASE);
    __atomic_add_fetch(&rpy_attach_generation, 1, __ATOMIC_RELEASE);   /* every view is bound again */
}
