/* audit.c - the isolation audit (r.check) and the region's object graph (r.objects).
 *
 * THE GRAPH of a region is every object of the region that its root and its GC list lead to through
 * tp_traverse, staying inside the region.  Untracked containers (dicts and tuples that CPython never
 * tracked or untracked) and non-GC objects (ints, strs, floats) are found this way too: no list holds
 * them.  Dicts with str keys do not visit their keys in tp_traverse; the audit visits them itself.
 *
 * ESCAPES, for each object X of the graph:
 *   incoming  X is referenced from outside the region: its reference count exceeds the references
 *             the graph holds (plus one for the root).  Handles hold none, so they never count.
 *   outgoing  X refers to an object outside every region that is not safe to share: anything but the
 *             shared singletons, immutable scalars (int, float, complex, str, bytes, bool, range),
 *             types, code objects, and tuples/frozensets of those.
 *   cross     X refers to an object of another region (only handles may point across), unless that
 *             region is frozen and shareable here (frozen_shareable: read-only, no owner to race).
 * Objects not reachable from the root and referenced by nothing outside are garbage waiting for a
 * collection: they count for the references they hold, but are not reported.
 *
 * No Python code runs between counting and comparing (tp_traverse runs none), so the counts are
 * consistent.  All bookkeeping is in raw memory, outside any region, and holds no references.
 */
#include "binding.h"

#define MAX_REPORTED 50        /* offenders reported in detail */
#define IMMUTABLE_DEPTH 32     /* nesting followed when deciding that an outside tuple is immutable */

typedef struct node {
    PyObject *obj;
    int64_t parent;            /* index of the node that first led here, -1 for a start */
    uint64_t internal;         /* references from objects of the graph */
    bool live;                 /* reachable from the root or from outside */
} node_t;

typedef enum { ESCAPE_INCOMING, ESCAPE_OUTGOING, ESCAPE_CROSS, ESCAPE_MORTAL } escape_kind;

typedef struct escape {
    escape_kind kind;
    int64_t node;              /* the region object concerned (incoming) or the holder */
    PyObject *target;          /* outgoing/cross: the outside object */
    Py_ssize_t count;          /* incoming: references from outside */
} escape_t;

typedef struct graph {
    rpy_region_t *region;
    node_t *nodes;
    int64_t count, capacity;
    rptrmap_t index;           /* object -> node index + 1 */
    escape_t *escapes;
    int64_t escape_count, escape_capacity;
    int64_t current;           /* node being traversed */
    int64_t *work;             /* graph_mark_live's work list */
    int64_t work_count;
    bool marking_live;         /* second pass: mark instead of count */
    bool classes_escape;       /* references to classes are outgoing escapes (audit_crossing) */
    bool mortal_escape;        /* so are references to mortal objects (audit_gil_crossing) */
    bool failed;               /* out of memory */
} graph_t;

/* ---- Node table ---- */

/* The node of obj, added (with `parent`) when new; -1 when out of memory. */
static int64_t node_of(graph_t *g, PyObject *obj, int64_t parent, bool *added) {
    *added = false;
    rptrmap_cell_t *cell = rptrmap_put(&g->index, obj);
    if (!cell) return -1;
    if (cell->value) return (int64_t)cell->value - 1;
    if (g->count == g->capacity) {
        int64_t capacity = g->capacity ? g->capacity * 2 : 1024;
        node_t *nodes = PyMem_RawRealloc(g->nodes, (size_t)capacity * sizeof *nodes);
        if (!nodes) {
            rptrmap_remove(&g->index, obj);
            return -1;
        }
        g->nodes = nodes;
        g->capacity = capacity;
    }
    g->nodes[g->count] = (node_t){.obj = obj, .parent = parent};
    cell->value = (uint64_t)++g->count;
    *added = true;
    return g->count - 1;
}

static int64_t node_find(const graph_t *g, PyObject *obj) {
    rptrmap_cell_t *cell = rptrmap_get(&g->index, obj);
    return cell ? (int64_t)cell->value - 1 : -1;
}

static void escape_add(graph_t *g, escape_kind kind, int64_t node, PyObject *target, Py_ssize_t count) {
    if (g->escape_count == g->escape_capacity) {
        int64_t capacity = g->escape_capacity ? g->escape_capacity * 2 : 16;
        escape_t *escapes = PyMem_RawRealloc(g->escapes, (size_t)capacity * sizeof *escapes);
        if (!escapes) {
            g->failed = true;
            return;
        }
        g->escapes = escapes;
        g->escape_capacity = capacity;
    }
    g->escapes[g->escape_count++] = (escape_t){kind, node, target, count};
}

static void graph_free(graph_t *g) {
    PyMem_RawFree(g->nodes);
    rptrmap_clear(&g->index);
    PyMem_RawFree(g->escapes);
    PyMem_RawFree(g->work);
}

/* ---- What may be referred to from a region ---- */

static bool safe_to_share(PyObject *op, int depth) {
    rpy_region_t *owner = membership_region_of(op);
    if (owner) return frozen_shareable(owner);
    if (rpy_is_shared(op)) return true;
    PyTypeObject *t = Py_TYPE(op);
    if (t == &PyLong_Type || t == &PyFloat_Type || t == &PyComplex_Type || t == &PyUnicode_Type ||
        t == &PyBytes_Type || t == &PyBool_Type || t == &PyRange_Type || t == &PyCode_Type || PyType_Check(op))
        return true;
    if ((t == &PyTuple_Type || t == &PyFrozenSet_Type) && depth < IMMUTABLE_DEPTH) {
        PyObject *iter = PyObject_GetIter(op);   /* tuple and frozenset iteration runs no Python code */
        if (!iter) {
            PyErr_Clear();
            return false;
        }
        bool all = true;
        PyObject *item;
        while (all && (item = PyIter_Next(iter))) {
            all = safe_to_share(item, depth + 1);
            Py_DECREF(item);
        }
        Py_DECREF(iter);
        return all;
    }
    return false;
}

bool audit_safe_to_share(PyObject *op) {
    return safe_to_share(op, 0);
}

bool audit_is_class(PyObject *op) {
    return PyType_Check(op) && (((PyTypeObject *)op)->tp_flags & Py_TPFLAGS_HEAPTYPE) &&
           !binding_owns_type((PyTypeObject *)op);
}

/* ---- Traversal ---- */

static int visit_count(PyObject *child, void *arg) {
    graph_t *g = arg;
    if (!child || g->failed) return 0;
    rpy_region_t *owner = membership_region_of(child);
    if (owner == g->region) {
        bool added;
        int64_t i = node_of(g, child, g->current, &added);
        if (i < 0) g->failed = true;
        else g->nodes[i].internal++;
    } else if (owner && !frozen_shareable(owner)) {
        escape_add(g, ESCAPE_CROSS, g->current, child, 0);
    } else if (owner) {   /* an object of a frozen region: shared, but mortal */
        if (g->mortal_escape) escape_add(g, ESCAPE_MORTAL, g->current, child, 0);
    } else if (PyDict_CheckExact(child) && child == rpy_instance_dict(g->nodes[g->current].obj)) {
        /* A region object's own __dict__, materialized outside a block: its attribute storage,
         * part of the object (counted like a region object, so other holders show up). */
        bool added;
        int64_t i = node_of(g, child, g->current, &added);
        if (i < 0) g->failed = true;
        else g->nodes[i].internal++;
    } else if (!safe_to_share(child, 0) || (g->classes_escape && audit_is_class(child))) {
        escape_add(g, ESCAPE_OUTGOING, g->current, child, 0);
    } else if (g->mortal_escape && !rpy_is_immortal(child) && !rpy_immortalize_interned(child)) {
        escape_add(g, ESCAPE_MORTAL, g->current, child, 0);
    }
    return 0;
}

static int visit_mark(PyObject *child, void *arg) {
    graph_t *g = arg;
    if (!child) return 0;
    int64_t i = node_find(g, child);
    if (i >= 0 && !g->nodes[i].live) {
        g->nodes[i].live = true;
        g->work[g->work_count++] = i;   /* each node enters the work list once: capacity count */
    }
    return 0;
}
static void traverse(graph_t *g, int64_t i) {
    g->current = i;
    rpy_visit_references(g->nodes[i].obj, g->marking_live ? visit_mark : visit_count, g);
}

static int add_member(PyObject *op, void *arg) {
    graph_t *g = arg;
    bool added;
    if (node_of(g, op, -1, &added) < 0) g->failed = true;
    return g->failed ? -1 : 0;
}

/* ---- Objects only held from outside ----
 *
 * Objects of the region that nothing in the graph leads to and no GC list holds (ints, strs, untracked
 * tuples made in a block and kept only by outside containers) are found by walking the region's object
 * heap: every block that holds an object (rpy_object_in_block, checked against the interpreter's types)
 * and is not in the graph joins it as a start. */

/* Adds the objects only held from outside as starts; 0, or -1 when out of memory. */
static int graph_add_unreached(graph_t *g) {
    PyObject **found;
    size_t count;
    if (proof_heap_objects(g->region, false, &found, &count) < 0) {
        PyErr_Clear();   /* graph_build reports the failure as MemoryError */
        return -1;
    }
    bool failed = false;
    for (size_t i = 0; i < count && !failed; i++) {
        bool added;
        if (node_find(g, found[i]) < 0 && node_of(g, found[i], -1, &added) < 0) failed = true;
    }
    PyMem_RawFree(found);
    return failed ? -1 : 0;
}

/* Builds the graph: the root first (so paths start there), then every member of the GC list. */
static int graph_build(graph_t *g, rpy_region_t *self, bool classes_escape, bool mortal_escape) {
    *g = (graph_t){.region = self, .classes_escape = classes_escape, .mortal_escape = mortal_escape};
    membership_sync();
    PyObject *root = self->root;
    bool added;
    if (root && membership_region_of(root) == self && node_of(g, root, -1, &added) < 0) g->failed = true;
    int64_t done = 0;
    for (int pass = 0; pass < 3 && !g->failed; pass++) {
        if (pass == 1) rpy_gclist_foreach(self->members, add_member, g);
        if (pass == 2 && graph_add_unreached(g) < 0) g->failed = true;
        for (; done < g->count && !g->failed; done++) traverse(g, done);
    }
    if (g->failed) {
        graph_free(g);
        PyErr_NoMemory();
        return -1;
    }
    return 0;
}

/* Marks the live nodes: the root, the nodes referenced from outside, and everything they lead to. */
static int graph_mark_live(graph_t *g) {
    g->work = PyMem_RawMalloc((size_t)(g->count ? g->count : 1) * sizeof *g->work);
    if (!g->work) {
        PyErr_NoMemory();
        return -1;
    }
    PyObject *root = g->region->root;
    for (int64_t i = 0; i < g->count; i++) {
        node_t *n = &g->nodes[i];
        if (n->obj == root || (uint64_t)Py_REFCNT(n->obj) > n->internal) {
            n->live = true;
            g->work[g->work_count++] = i;
        }
    }
    g->marking_live = true;
    while (g->work_count) traverse(g, g->work[--g->work_count]);
    return 0;
}

/* ---- Results ---- */

/* [start, ..., node's object]: the objects that first led from a start to the node. */
static PyObject *chain_of(graph_t *g, int64_t i) {
    Py_ssize_t length = 0;
    for (int64_t j = i; j >= 0; j = g->nodes[j].parent) length++;
    PyObject *chain = PyList_New(length);
    if (!chain) return NULL;
    for (int64_t j = i; j >= 0; j = g->nodes[j].parent)
        PyList_SET_ITEM(chain, --length, Py_NewRef(g->nodes[j].obj));
    return chain;
}

static const char *kind_names[] = {"incoming", "outgoing", "cross", "mortal"};

/* (kind, chain, target, count) for each reported escape, incoming ones first.  incoming_only (the
 * audit of r.close()): every incoming escape, however many, since close() decides on each one
 * (region/_audit.py, report) and lists at most MAX_REPORTED of those it refuses for. */
static PyObject *escapes_to_list(graph_t *g, Py_ssize_t *total, bool incoming_only) {
    PyObject *raw = PyList_New(0);
    *total = 0;
    for (int64_t i = 0; raw && i < g->count; i++) {
        node_t *n = &g->nodes[i];
        uint64_t expected = n->internal + (n->obj == g->region->root);
        if ((uint64_t)Py_REFCNT(n->obj) <= expected || rpy_is_running_frame_object(n->obj)) continue;
        if ((*total)++ >= MAX_REPORTED && !incoming_only) continue;
        Py_ssize_t outside = Py_REFCNT(n->obj) - (Py_ssize_t)expected;   /* before the chain adds one */
        PyObject *chain = chain_of(g, i);
        PyObject *item = chain ? Py_BuildValue("(sNOn)", kind_names[ESCAPE_INCOMING], chain, Py_None,
                                               outside) : NULL;
        if (!item || PyList_Append(raw, item) < 0) Py_CLEAR(raw);
        Py_XDECREF(item);
    }
    for (int64_t e = 0; raw && !incoming_only && e < g->escape_count; e++) {
        escape_t *x = &g->escapes[e];
        if (!g->nodes[x->node].live) continue;   /* held by garbage: the next collection frees it */
        if ((*total)++ >= MAX_REPORTED) continue;
        PyObject *chain = chain_of(g, x->node);
        PyObject *item = chain ? Py_BuildValue("(sNOn)", kind_names[x->kind], chain, x->target, (Py_ssize_t)0) : NULL;
        if (!item || PyList_Append(raw, item) < 0) Py_CLEAR(raw);
        Py_XDECREF(item);
    }
    return raw;
}

static int64_t garbage_count(graph_t *g) {
    int64_t n = 0;
    for (int64_t i = 0; i < g->count; i++) n += !g->nodes[i].live;
    return n;
}

/* The graph holds borrowed pointers: no collection (and so no finalizer) may run while it exists. */
static PyObject *audit(rpy_region_t *self, bool incoming_only, bool classes_escape, bool mortal_escape,
                       const char *why, bool closing) {
    graph_t g;
    bool gc_was_enabled = rpy_gc_pause();
    PyObject *raw = NULL;
    Py_ssize_t total = 0;
    int64_t objects = 0, garbage = 0;
    if (graph_build(&g, self, classes_escape, mortal_escape) == 0) {
        /* Liveness only matters for deciding whether an outgoing or cross reference is held by
         * garbage; without any, the (common) isolated case skips the second traversal. */
        if (incoming_only) g.escape_count = 0;
        bool marked = g.escape_count == 0 || graph_mark_live(&g) == 0;
        if (g.escape_count == 0)
            for (int64_t i = 0; i < g.count; i++) g.nodes[i].live = true;
        if (marked) {
            raw = escapes_to_list(&g, &total, incoming_only);
            if (raw && total && g.escape_count == 0) {   /* the report counts the garbage: mark now */
                for (int64_t i = 0; i < g.count; i++) g.nodes[i].live = false;
                if (graph_mark_live(&g) < 0) Py_CLEAR(raw);
            }
            objects = g.count;
            garbage = garbage_count(&g);
        }
        graph_free(&g);
    }
    rpy_gc_resume(gc_was_enabled);
    if (!raw) return NULL;
    if (total == 0) {
        Py_DECREF(raw);
        Py_RETURN_NONE;
    }
    /* Formatting the report (paths, who holds what) is Python: region/_audit.py. */
    PyObject *audit = PyImport_ImportModule("region._audit");
    PyObject *proxy = audit ? binding_proxy(self) : NULL;
    PyObject *error = proxy ? PyObject_CallMethod(audit, "report", "OOnLLzO", proxy, raw, total,
                                                  (long long)objects, (long long)garbage, why,
                                                  closing ? Py_True : Py_False) : NULL;
    Py_XDECREF(proxy);
    Py_XDECREF(audit);
    Py_DECREF(raw);
    if (error == Py_None) return error;   /* closing, and only the interpreter's own state holds on */
    if (error) {
        PyErr_SetObject((PyObject *)Py_TYPE(error), error);
        Py_DECREF(error);
    }
    return NULL;
}

PyObject *audit_check(rpy_region_t *self) { return audit(self, false, false, false, NULL, false); }

PyObject *audit_incoming(rpy_region_t *self) { return audit(self, true, false, false, NULL, true); }

PyObject *audit_crossing(rpy_region_t *self, const char *why) { return audit(self, false, true, false, why, false); }

PyObject *audit_gil_crossing(rpy_region_t *self, const char *why) { return audit(self, false, true, true, why, false); }

PyObject *audit_objects(rpy_region_t *self) {
    graph_t g;
    bool gc_was_enabled = rpy_gc_pause();
    PyObject *list = NULL;
    if (graph_build(&g, self, false, false) == 0) {
        list = PyList_New(g.count);
        for (int64_t i = 0; list && i < g.count; i++) PyList_SET_ITEM(list, i, Py_NewRef(g.nodes[i].obj));
        graph_free(&g);
    }
    rpy_gc_resume(gc_was_enabled);
    return list;
}
