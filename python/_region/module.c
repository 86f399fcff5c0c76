/* module.c - the region._region extension: the Region type, the module's functions and its
 * initialization in each interpreter.  How a region and an interpreter end is lifecycle.c's.
 */
#include "binding.h"

#include <string.h>
#include <time.h>

#include <structmember.h>

/* Object allocations in a region between two automatic collections, by default.  A region
 * collection costs time proportional to the region, so the default is large; r.threshold changes
 * it (0: never). */
#define DEFAULT_THRESHOLD 100000

/* ---- Helpers ---- */

/* Raises `type` with libregion's message for the last failed call. */
static void raise_region_status(PyObject *type, const char *what, region_status status) {
    PyErr_Format(type, "%s: %s (%s)", what, region_last_error(), region_strerror(status));
}

/* Runs a public libregion call, which needs its owner, for the caller, who may read self: its owner
 * (libregion's too), or a reader of a frozen region, which nobody owns, and which the reader then
 * owns for the call (the GIL serializes the readers: none finds it taken). */
#define AS_OWNER(self, call)                                                       \
    ({                                                                             \
        bool _taken = !region_owned((self)->r) && ownership_try_take(self);        \
        region_status _s = region_owned((self)->r) ? (call) : REGION_ENOTOWNER;   \
        if (_taken) ownership_give_up(self);                                       \
        _s;                                                                        \
    })

/* ---- Region: creation and teardown ---- */

static int parse_binding(PyObject *binding, region_binding *out) {
    static const struct { const char *name; region_binding value; } names[] = {
        {"none", REGION_BIND_NONE}, {"preferred", REGION_BIND_PREFERRED}, {"strict", REGION_BIND_STRICT}};
    if (PyUnicode_Check(binding)) {
        for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
            if (PyUnicode_CompareWithASCIIString(binding, names[i].name) == 0) {
                *out = names[i].value;
                return 0;
            }
        }
    }
    PyErr_Format(PyExc_ValueError, "binding must be 'preferred', 'strict' or 'none', not %R", binding);
    return -1;
}

/* Region(name=None, *, node=None, binding=None)'s arguments, as PyArg_ParseTupleAndKeywords with
 * "|O$OO" takes them, read directly when they are well formed (the format parser was 5 % of a short
 * region's life: region.region() passes all three); anything else goes to the parser, for its errors.
 * 0, or -1 with an exception. */
static int region_arguments(PyObject *args, PyObject *kwargs, PyObject **name, PyObject **node, PyObject **binding) {
    static char *keywords[] = {"name", "node", "binding", NULL};
    Py_ssize_t given = PyTuple_GET_SIZE(args);
    bool direct = given <= 1;
    if (given == 1) *name = PyTuple_GET_ITEM(args, 0);
    Py_ssize_t at = 0;
    PyObject *key, *value;
    while (direct && kwargs && PyDict_Next(kwargs, &at, &key, &value)) {
        if (!PyUnicode_Check(key)) direct = false;
        else if (PyUnicode_CompareWithASCIIString(key, "node") == 0) *node = value;
        else if (PyUnicode_CompareWithASCIIString(key, "binding") == 0) *binding = value;
        else direct = false;   /* "name" by keyword, or an unknown keyword */
    }
    if (direct) return 0;
    *name = Py_None, *node = Py_None, *binding = NULL;
    return PyArg_ParseTupleAndKeywords(args, kwargs, "|O$OO:Region", keywords, name, node, binding) ? 0 : -1;
}

static PyObject *Region_new(PyTypeObject *type, PyObject *args, PyObject *kwargs) {
    PyObject *name = Py_None, *node = Py_None, *binding_name = NULL;
    if (region_arguments(args, kwargs, &name, &node, &binding_name) < 0) return NULL;
    if (name != Py_None && !PyUnicode_Check(name)) {
        PyErr_Format(PyExc_TypeError, "region name must be a str or None, not %.100s", Py_TYPE(name)->tp_name);
        return NULL;
    }
    region_options_t options = REGION_OPTIONS_DEFAULT;
    if (node != Py_None) {
        long n = PyLong_AsLong(node);
        if (n == -1 && PyErr_Occurred()) return NULL;
        if (n < 0 || n > INT32_MAX) {
            PyErr_Format(PyExc_ValueError, "node must be a NUMA node number >= 0 or None, not %ld", n);
            return NULL;
        }
        options.node = (int)n;
        options.binding = REGION_BIND_PREFERRED;
        if (binding_name && parse_binding(binding_name, &options.binding) < 0) return NULL;
    } else if (binding_name && binding_name != Py_None) {
        region_binding b;
        if (parse_binding(binding_name, &b) < 0) return NULL;
        if (b == REGION_BIND_STRICT) {
            PyErr_SetString(PyExc_ValueError, "binding='strict' needs a node");
            return NULL;
        }
    }
    if (rpy_interp_index() < 0) {
        /* `import region._region` alone copies the module without attaching the interpreter. */
        PyErr_Format(RegionError, "cannot create a region in interpreter %lld: import the region "
                     "package there first", (long long)binding_current_interp());
        return NULL;
    }
    const char *cname = NULL;
    Py_ssize_t name_length = 0;
    if (name != Py_None && !(cname = PyUnicode_AsUTF8AndSize(name, &name_length))) return NULL;
    if (cname && strlen(cname) != (size_t)name_length) {   /* libregion keeps C strings */
        PyErr_Format(PyExc_ValueError, "region name must not contain a NUL character: %R", name);
        return NULL;
    }
    options.name = cname;
    if (placement_activate() < 0) return NULL;

    lifecycle_sweep_orphans(false);
    region_t *r;
    region_status status = region_create(&options, &r);
    bool short_of_room = status == REGION_ELIMIT || status == REGION_ENOMEM;
    if (short_of_room && lifecycle_orphans()) {
        /* Closed regions whose objects live on (given back, or resurrected) keep their memory and
         * their places in the arenas until those objects die; a full collection may free some. */
        (void)PyGC_Collect();
        lifecycle_sweep_orphans(true);
        status = region_create(&options, &r);
        short_of_room = status == REGION_ELIMIT || status == REGION_ENOMEM;
    }
    unsigned orphans = short_of_room ? lifecycle_orphans() : 0;
    if (status != REGION_OK) {
        if (orphans) {
            PyErr_Format(status == REGION_ENOMEM ? PyExc_MemoryError : RegionError,
                         "cannot create a region: %s; %u closed regions whose objects are "
                         "still alive (given back to the ordinary heap by close(), e.g. strings the "
                         "interpreter interned or cached, or resurrected by a finalizer) keep their places "
                         "until their last object dies (%s)",
                         region_last_error(), orphans, region_strerror(status));
            return NULL;
        }
        raise_region_status(status == REGION_ENOMEM ? PyExc_MemoryError : RegionError,
                            "cannot create a region", status);
        return NULL;
    }
    /* The reservation exists from the first region on and never moves.  Atomic: the freelist
     * wrappers read both in every interpreter, own-GIL ones included (a wrong answer there only frees
     * an object instead of keeping it on a freelist). */
    __atomic_store_n(&rpy_region_memory_base, (uintptr_t)rarena_reservation.base, __ATOMIC_RELAXED);
    __atomic_store_n(&rpy_region_memory_span, rarena_reservation.span, __ATOMIC_RELAXED);

    placement_set_threshold(r, DEFAULT_THRESHOLD);
    placement_reset_allocations(r);
    char default_name[32];
    snprintf(default_name, sizeof default_name, "region-%llu", (unsigned long long)region_id(r));
    rpy_region_t *rec = record_new(r, cname ? cname : default_name);
    if (!rec) goto fail;
    if (membership_register(rec) < 0) {
        record_discard(rec);
        goto fail;
    }
    (void)type;   /* always this GIL's Region type: binding_proxy makes it */
    PyObject *self = binding_proxy(rec);   /* holds the record's first reference */
    if (!self) region_dissolve(rec, "gone");   /* nothing was placed in it yet */
    return self;
fail:
    region_destroy(r);   /* the calling thread made it, and owns it */
    return NULL;
}

/* The root is not visited: the record holds it for every GIL's Region at once, and a collector that
 * counted it from each of them would count the one reference several times. */
static int Region_traverse(RegionObject *self, visitproc visit, void *arg) {
    Py_VISIT(Py_TYPE(self));
    return 0;
}

static void Region_dealloc(RegionObject *self) {
    PyTypeObject *type = Py_TYPE(self);
    PyObject_GC_UnTrack(self);
    if (self->weakreflist) PyObject_ClearWeakRefs((PyObject *)self);
    rpy_region_t *rec = binding_proxy_gone(self);
    if (rec) record_unref(rec);
    Py_CLEAR(self->name);
    frozen_view_spares_free(self);
    type->tp_free(self);
    Py_DECREF(type);
}

/* ---- Region: blocks ---- */

static PyObject *mod_gc_callback(PyObject *module, PyObject *args);
static PyObject *mod_gc_callback_last(PyObject *module, PyObject *args);

/* The package's gc callbacks must stay first and last while a block is open (placement.c, DURING THE
 * INTERPRETER'S COLLECTIONS): libraries imported later add theirs at either end too. */
static void gc_callbacks_bracket(void) {
    rpy_gc_callbacks_bracket((PyCFunction)mod_gc_callback, (PyCFunction)mod_gc_callback_last);
}

static PyObject *Region_enter(RegionObject *o, PyObject *unused) {
    rpy_region_t *self = o->rec;
    (void)unused;
    gc_callbacks_bracket();
    if (frozen_check_mutable(self, "with") < 0 || region_check_owner(self, "with") < 0 ||
        placement_enter(self) < 0)
        return NULL;
    return Py_NewRef(o);
}

static PyObject *Region_exit(RegionObject *o, PyObject *args) {
    rpy_region_t *self = o->rec;
    (void)args;
    if (placement_exit(self) < 0) return NULL;
    /* Automatic collection runs in the main thread (pending calls), which may not own the region;
     * then the owner collects here, at the end of its block. */
    if (!self->blocks_open && ownership_is_caller(self) && placement_collection_due(self->r)
        && collect_region(self) < 0)
        PyErr_Clear();
    Py_RETURN_FALSE;
}

/* ---- Region: attributes ---- */

static PyObject *Region_get_root(RegionObject *o, void *closure) {
    rpy_region_t *self = o->rec;
    (void)closure;
    if (frozen_read_elsewhere(self)) return frozen_view_root(o);
    if (frozen_check_reader(self, "root") < 0) return NULL;
    return Py_NewRef(self->root ? self->root : Py_None);
}

static int Region_set_root(RegionObject *o, PyObject *value, void *closure) {
    rpy_region_t *self = o->rec;
    (void)closure;
    if (frozen_check_mutable(self, "root = ...") < 0 || region_check_owner(self, "root") < 0) return -1;
    if (value && value != Py_None && !rpy_is_shared(value) && membership_region_of(value) != self) {
        rpy_region_t *other = membership_hold(value);
        PyObject *desc = region_describe(self);
        if (other) {
            PyObject *other_desc = region_describe(other);
            record_unref(other);
            PyErr_Format(IsolationError, "%U.root = <%.100s object at %p>: the object belongs to %U; "
                         "a root must be an object of its own region (refer across regions with a handle)",
                         desc, Py_TYPE(value)->tp_name, (void *)value, other_desc);
            Py_XDECREF(other_desc);
        } else {
            PyErr_Format(IsolationError, "%U.root = <%.100s object at %p>: the object is not in the "
                         "region; create it inside `with r:` (or copy it there) first",
                         desc, Py_TYPE(value)->tp_name, (void *)value);
        }
        Py_XDECREF(desc);
        return -1;
    }
    PyObject *old = self->root;
    self->root = value && value != Py_None ? Py_NewRef(value) : NULL;
    Py_XDECREF(old);
    return 0;
}

static PyObject *Region_get_id(RegionObject *o, void *c) { (void)c; return PyLong_FromUnsignedLongLong(o->rec->id); }
static PyObject *Region_get_name(RegionObject *o, void *c) { (void)c; return Py_NewRef(o->name); }

static PyObject *Region_get_node(RegionObject *o, void *c) {
    rpy_region_t *self = o->rec;
    (void)c;
    if (!self->r || self->r->node < 0) Py_RETURN_NONE;
    return PyLong_FromLong(self->r->node);
}

static PyObject *Region_get_owned(RegionObject *o, void *c) {
    (void)c;
    return ownership_owned(o);
}

static PyObject *Region_get_active(RegionObject *o, void *c) {
    rpy_region_t *self = o->rec;
    (void)c;
    return PyBool_FromLong(placement_current() == self);
}

/* ---- Region: statistics ---- */

static const char *binding_name(region_binding b) {
    return b == REGION_BIND_STRICT ? "strict" : b == REGION_BIND_PREFERRED ? "preferred" : "none";
}

static int put(PyObject *dict, const char *key, PyObject *value) {
    if (!value) return -1;
    int rc = PyDict_SetItemString(dict, key, value);
    Py_DECREF(value);
    return rc;
}

static PyObject *Region_stats(RegionObject *o, PyObject *unused) {
    rpy_region_t *self = o->rec;
    (void)unused;
    if (frozen_check_reader(self, "stats") < 0) return NULL;
    membership_sync();
    region_stats_t s;
    region_status status = AS_OWNER(self, region_stats(self->r, &s));
    if (status != REGION_OK) {
        raise_region_status(RegionError, "stats", status);
        return NULL;
    }
    size_t object_blocks = 0, object_bytes = 0;
    rhost_heap_usage(self->r, true, &object_blocks, &object_bytes);
    PyObject *d = PyDict_New();
    if (d && (put(d, "name", Py_NewRef(o->name)) < 0 || put(d, "id", PyLong_FromUnsignedLongLong(s.id)) < 0 ||
              put(d, "node", s.node < 0 ? Py_NewRef(Py_None) : PyLong_FromLong(s.node)) < 0 ||
              put(d, "binding", PyUnicode_FromString(binding_name(s.binding))) < 0 ||
              put(d, "objects", PyLong_FromSize_t(object_blocks)) < 0 ||
              put(d, "tracked", PyLong_FromSsize_t(rpy_gclist_length(self->members))) < 0 ||
              put(d, "bytes", PyLong_FromSize_t(s.bytes_in_use)) < 0 ||
              put(d, "object_bytes", PyLong_FromSize_t(object_bytes)) < 0 ||
              put(d, "blocks", PyLong_FromSize_t(s.blocks)) < 0 ||
              put(d, "pages", PyLong_FromSize_t(s.pages)) < 0 ||
              put(d, "committed", PyLong_FromSize_t(s.bytes_committed)) < 0 ||
              put(d, "reserved", PyLong_FromSize_t(s.bytes_reserved)) < 0 ||
              put(d, "handles", PyLong_FromSize_t(s.handles)) < 0 ||
              put(d, "collections", PyLong_FromUnsignedLongLong(self->collections)) < 0 ||
              put(d, "collected", PyLong_FromUnsignedLongLong(self->collected)) < 0 ||
              put(d, "uncollectable", PyLong_FromUnsignedLongLong(self->uncollectable)) < 0 ||
              put(d, "last_pause", PyFloat_FromDouble((double)self->last_pause_ns / 1e9)) < 0 ||
              put(d, "total_pause", PyFloat_FromDouble((double)self->total_pause_ns / 1e9)) < 0 ||
              put(d, "threshold", PyLong_FromUnsignedLong(placement_threshold(self->r))) < 0 ||
              put(d, "allocations", PyLong_FromUnsignedLong(placement_allocations(self->r))) < 0 ||
              put(d, "blocks_open", PyLong_FromSsize_t(self->blocks_open)) < 0))
        Py_CLEAR(d);
    return d;
}

static PyObject *Region_census(RegionObject *o, PyObject *unused) {
    rpy_region_t *self = o->rec;
    (void)unused;
    if (frozen_check_reader(self, "census") < 0) return NULL;
    region_census_t c;
    region_status status = AS_OWNER(self, region_census(self->r, &c));
    if (status != REGION_OK) {
        raise_region_status(RegionError, "census", status);
        return NULL;
    }
    PyObject *d = PyDict_New(), *per_node = PyDict_New();
    if (d && per_node) {
        for (int i = 0; i < REGION_MAX_NODES; i++) {
            if (!c.pages_on_node[i]) continue;
            PyObject *k = PyLong_FromLong(i), *v = PyLong_FromSize_t(c.pages_on_node[i]);
            int rc = k && v ? PyDict_SetItem(per_node, k, v) : -1;
            Py_XDECREF(k);
            Py_XDECREF(v);
            if (rc < 0) { Py_CLEAR(d); break; }
        }
    }
    if (d && (put(d, "scanned", PyLong_FromSize_t(c.pages_scanned)) < 0 ||
              put(d, "present", PyLong_FromSize_t(c.pages_present)) < 0 ||
              put(d, "absent", PyLong_FromSize_t(c.pages_scanned - c.pages_present)) < 0 ||
              put(d, "on_target", PyLong_FromSize_t(c.pages_on_target)) < 0 ||
              put(d, "unknown", PyLong_FromSize_t(c.pages_unknown)) < 0 ||
              PyDict_SetItemString(d, "nodes", per_node) < 0))
        Py_CLEAR(d);
    Py_XDECREF(per_node);
    return d;
}

static PyObject *Region_repr(RegionObject *o) {
    rpy_region_t *self = o->rec;
    if (!self->r) return PyUnicode_FromFormat("<region.Region %R id=%llu %s>", o->name,
                                              (unsigned long long)self->id, self->gone ? self->gone : "gone");
    if (!ownership_is_caller(self))   /* its heaps may be changing under another GIL: not read */
        return PyUnicode_FromFormat("<region.Region %R id=%llu %s>", o->name, (unsigned long long)self->id,
                                    __atomic_load_n(&self->frozen, __ATOMIC_ACQUIRE) ? "frozen"
                                    : ownership_token(self) ? "owned by another thread" : "released");
    size_t blocks = 0, bytes = 0, obj_blocks = 0, obj_bytes = 0;
    rhost_heap_usage(self->r, false, &blocks, &bytes);
    rhost_heap_usage(self->r, true, &obj_blocks, &obj_bytes);
    PyObject *node = self->r->node < 0 ? PyUnicode_FromString("any")
                                       : PyUnicode_FromFormat("%d (%s)", self->r->node, binding_name(self->r->binding));
    if (!node) return NULL;
    PyObject *repr = PyUnicode_FromFormat("<region.Region %R id=%llu node=%U objects=%zu bytes=%zu>",
                                          o->name, (unsigned long long)self->id, node, obj_blocks,
                                          bytes + obj_bytes);
    Py_DECREF(node);
    return repr;
}

/* ---- Region: collection and teardown ---- */

static PyObject *Region_collect(RegionObject *o, PyObject *args, PyObject *kwargs) {
    rpy_region_t *self = o->rec;
    static char *keywords[] = {"full", NULL};
    int full = 0;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "|$p:collect", keywords, &full)) return NULL;
    if (frozen_check_mutable(self, "collect") < 0 || region_check_owner(self, "collect") < 0) return NULL;
    Py_ssize_t collected = full ? collect_region_full(self) : collect_region(self);
    if (collected < 0 && PyErr_Occurred()) return NULL;
    return PyLong_FromSsize_t(collected < 0 ? 0 : collected);
}

static PyObject *Region_get_threshold(RegionObject *o, void *c) {
    rpy_region_t *self = o->rec;
    (void)c;
    if (frozen_check_reader(self, "threshold") < 0) return NULL;
    return PyLong_FromUnsignedLong(placement_threshold(self->r));
}

static int Region_set_threshold(RegionObject *o, PyObject *value, void *c) {
    rpy_region_t *self = o->rec;
    (void)c;
    if (frozen_check_mutable(self, "threshold = ...") < 0 || region_check_owner(self, "threshold") < 0) return -1;
    if (!value) {
        PyErr_SetString(PyExc_AttributeError, "cannot delete the threshold (set it to 0 to disable)");
        return -1;
    }
    unsigned long n = PyLong_Check(value) ? PyLong_AsUnsignedLong(value) : (unsigned long)-1;
    if (!PyLong_Check(value) || (n == (unsigned long)-1 && PyErr_Occurred()) || n > UINT32_MAX) {
        PyErr_Clear();
        PyErr_Format(PyExc_ValueError, "threshold must be an int from 0 (never collect automatically) "
                     "to %u, not %R", UINT32_MAX, value);
        return -1;
    }
    placement_set_threshold(self->r, (uint32_t)n);
    /* Crossing is detected by equality: a count already past a lowered threshold collects next time
     * the count wraps; reset it so the new threshold counts from now. */
    placement_reset_allocations(self->r);
    return 0;
}

/* close() of a region the caller owns. */
static PyObject *close_owned(rpy_region_t *self) {
    if (self->blocks_open) {
        PyObject *desc = region_describe(self);
        PyErr_Format(RegionError, "cannot close %U: %zd `with` block(s) are open on it", desc, self->blocks_open);
        Py_XDECREF(desc);
        return NULL;
    }
    if (self->collecting) {
        PyObject *desc = region_describe(self);
        PyErr_Format(RegionError, "cannot close %U from one of its own finalizers: its collection is "
                     "running", desc);
        Py_XDECREF(desc);
        return NULL;
    }
    /* Nothing outside may refer into the region: those objects would be freed under their holders.
     * The bulk teardown checks that first, and frees everything at once where it can prove that safe. */
    int teardown = teardown_bulk(self);
    if (teardown == TEARDOWN_ERROR) return NULL;
    if (teardown == TEARDOWN_DONE) {
        ownership_give_up(self);   /* wakes the threads waiting in acquire(): they find it closed */
        Py_RETURN_NONE;
    }
    if (teardown == TEARDOWN_ESCAPES) {
        /* The audit raises IsolationError naming what holds on, unless that is only the interpreter's
         * own state (lazily made caches, standard-library globals, the thread state): those objects
         * outlive the region as ordinary objects (region_dissolve below).  Or it finds nothing: it
         * counts an instance's __dict__ made outside a block as part of its instance, the proof does
         * not.  Before giving up, what holds on may be garbage: a cycle through ordinary objects,
         * which only a full collection with the region taking part reclaims (collection.c). */
        PyObject *isolated = audit_incoming(self);
        if (!isolated && PyErr_ExceptionMatches(IsolationError)) {
            PyErr_Clear();
            if (collect_region_full(self) < 0) return NULL;
            if (!self->r) Py_RETURN_NONE;   /* a finalizer closed it */
            isolated = audit_incoming(self);
        }
        if (!isolated) return NULL;
        Py_DECREF(isolated);
    }
    /* Dropping the root frees everything acyclic by reference counting; the collections free the
     * cycles (finalizers run, weakrefs are cleared).  A finalizer's new garbage takes another round. */
    Py_CLEAR(self->root);
    for (int round = 0; round < 4 && self->r; round++)
        if (collect_region(self) <= 0) break;
    /* What survives (resurrected by a finalizer, or uncollectable) becomes ordinary objects. */
    region_dissolve(self, "closed (freed object by object)");
    Py_RETURN_NONE;
}

static PyObject *Region_close(RegionObject *o, PyObject *unused) {
    rpy_region_t *self = o->rec;
    (void)unused;
    if (!self->r || !__atomic_load_n(&self->frozen, __ATOMIC_ACQUIRE))
        return region_check_owner(self, "close") < 0 ? NULL : close_owned(self);
    if (frozen_thaw_for_close(self) < 0) return NULL;
    PyObject *closed = close_owned(self);
    if (!closed && self->r) frozen_refreeze_after_failed_close(self);
    return closed;
}

static PyObject *Region_get_closed(RegionObject *o, void *c) {
    rpy_region_t *self = o->rec;
    (void)c;
    return PyBool_FromLong(self->r == NULL);
}

/* ---- Region: the rest of its API ---- */

static PyObject *Region_check(RegionObject *o, PyObject *unused) {
    rpy_region_t *self = o->rec;
    (void)unused;
    if (frozen_check_reader(self, "check") < 0) return NULL;
    bool refers_to_classes, refers_to_mortal;
    int proven = proof_isolated(self, &refers_to_classes, &refers_to_mortal);
    if (proven < 0) return NULL;
    if (proven) Py_RETURN_NONE;
    return audit_check(self);   /* decides, and names each escape */
}

static PyObject *Region_objects(RegionObject *o, PyObject *unused) {
    rpy_region_t *self = o->rec;
    (void)unused;
    if (frozen_check_reader(self, "objects") < 0) return NULL;
    return audit_objects(self);
}

static PyObject *Region_handle(RegionObject *o, PyObject *obj) {
    rpy_region_t *self = o->rec;
    if (frozen_check_reader(self, "handle") < 0) return NULL;
    return handle_new(self, obj);
}

static PyObject *Region_contains(RegionObject *o, PyObject *obj) {
    return PyBool_FromLong(membership_region_of(obj) == o->rec);
}

static PyMethodDef Region_methods[] = {
    {"__enter__", (PyCFunction)Region_enter, METH_NOARGS,
     "Open a block: objects this thread creates until the block exits are allocated in the region."},
    {"__exit__", (PyCFunction)Region_exit, METH_VARARGS, "Close the block opened by __enter__."},
    {"collect", (PyCFunction)(void (*)(void))Region_collect, METH_VARARGS | METH_KEYWORDS,
     "collect(*, full=False): collect the region's garbage cycles alone, at a cost proportional to the "
     "region, and return the number of objects freed.  full=True also finds cycles that pass through "
     "ordinary objects: a full gc.collect() with the region taking part (its result is returned)."},
    {"close", (PyCFunction)Region_close, METH_NOARGS,
     "Free every object of the region; IsolationError if anything outside still refers into it."},
    {"freeze", (PyCFunction)frozen_freeze, METH_NOARGS,
     "Prove the region isolated, make every object of it read-only and give up ownership: from then on "
     "any thread reads it with no acquire (FrozenError for an object that cannot be made read-only)."},
    {"snapshot", (PyCFunction)(void (*)(void))frozen_snapshot, METH_VARARGS | METH_KEYWORDS,
     "snapshot(name=None, *, node=None, binding='preferred'): a new frozen region holding a copy of "
     "this region's graph (made by pickle), for readers, while this region stays its owner's to "
     "change: single writer, many readers.  The name defaults to '<name> snapshot'."},
    {"check", (PyCFunction)Region_check, METH_NOARGS,
     "Isolation audit: None if the region is isolated, else raise IsolationError naming every escape."},
    {"objects", (PyCFunction)Region_objects, METH_NOARGS,
     "List of the region's objects (its GC list and what they and the root lead to in the region)."},
    {"handle", (PyCFunction)Region_handle, METH_O, "A weak Handle to an object of this region."},
    {"stats", (PyCFunction)Region_stats, METH_NOARGS, "Statistics of the region, as a dict."},
    {"census", (PyCFunction)Region_census, METH_NOARGS,
     "Page census of the region's memory: pages present, absent, and per NUMA node."},
    {"owns", (PyCFunction)Region_contains, METH_O, "Whether obj is an object of this region."},
    {"acquire", (PyCFunction)(void (*)(void))ownership_acquire, METH_VARARGS | METH_KEYWORDS,
     "acquire(timeout=None) -> bool: wait until no thread owns the region and take it; False on timeout."},
    {"release", (PyCFunction)ownership_release, METH_NOARGS,
     "Give up ownership of the region; IsolationError (and still owned) unless the region is isolated."},
    {"ownership", (PyCFunction)(void (*)(void))ownership_context, METH_VARARGS | METH_KEYWORDS,
     "`with r.ownership(timeout=None):` acquires the region on entry (TimeoutError) and releases it on exit."},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef Region_getset[] = {
    {"root", (getter)Region_get_root, (setter)Region_set_root, "The region's entry object (None if unset).", NULL},
    {"id", (getter)Region_get_id, NULL, "The region's id: an int, never reused in this process.", NULL},
    {"name", (getter)Region_get_name, NULL, "The region's name.", NULL},
    {"node", (getter)Region_get_node, NULL, "The NUMA node the region is bound to, or None.", NULL},
    {"owned", (getter)Region_get_owned, NULL, "Whether the calling thread owns the region.", NULL},
    {"active", (getter)Region_get_active, NULL, "Whether the calling thread's allocations go to this region now.", NULL},
    {"threshold", (getter)Region_get_threshold, (setter)Region_set_threshold,
     "Object allocations in the region that trigger an automatic collection of it (0: never).", NULL},
    {"closed", (getter)Region_get_closed, NULL, "Whether the region was closed (or dissolved at shutdown).", NULL},
    {"frozen", (getter)frozen_get, NULL, "Whether the region is frozen (r.freeze()): read-only, with no owner.", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyMemberDef Region_members[] = {
    {"__weaklistoffset__", T_PYSSIZET, offsetof(RegionObject, weakreflist), READONLY, NULL},
    {NULL, 0, 0, 0, NULL},
};

static PyType_Slot Region_slots[] = {
    {Py_tp_doc, "A region: objects created inside `with r:` live in its own memory and on its own "
                "GC list.  Create with region.region(name=None, *, node=None, binding='preferred')."},
    {Py_tp_new, Region_new},
    {Py_tp_dealloc, Region_dealloc},
    {Py_tp_traverse, Region_traverse},
    {Py_tp_repr, Region_repr},
    {Py_tp_methods, Region_methods},
    {Py_tp_getset, Region_getset},
    {Py_tp_members, Region_members},
    {0, NULL},
};

/* ---- Module functions ---- */

static PyObject *mod_is_shared(PyObject *module, PyObject *obj) {
    (void)module;
    return PyBool_FromLong(rpy_is_shared(obj));
}

static PyObject *mod_region_of(PyObject *module, PyObject *obj) {
    (void)module;
    return membership_region_proxy(obj);
}

static PyObject *mod_current(PyObject *module, PyObject *unused) {
    (void)module, (void)unused;
    return placement_current_proxy();
}

/* gc.callbacks entry: membership is brought up to date before every collection (so the collector
 * never meets a region object), and the freelist switches a full collection resets are re-applied. */
static PyObject *mod_gc_callback(PyObject *module, PyObject *args) {
    (void)module;
    PyObject *phase, *info;
    if (!PyArg_ParseTuple(args, "UO", &phase, &info)) return NULL;
    if (rpy_interp_index() < 0) Py_RETURN_NONE;   /* after this interpreter's end began */
    PyObject *generation = PyDict_Check(info) ? PyDict_GetItemString(info, "generation") : NULL;
    bool full = generation && PyLong_Check(generation) && PyLong_AsLong(generation) == 2;
    gc_callbacks_bracket();   /* for the next collection */
    if (PyUnicode_CompareWithASCIIString(phase, "start") == 0) {
        rpy_note_collector(PyThreadState_Get());   /* before anything here allocates */
        membership_sync();
        if (full) collection_full_starts();
        return Py_NewRef(Py_None);
    }
    if (full) {
        collection_full_ends();
        if (rpy_interp_guarded()) rpy_float_freelist_off();   /* clear_freelists switched it back on */
        lifecycle_sweep_orphans(true);
    }
    Py_RETURN_NONE;
}

/* The last of gc.callbacks: the collection ends, and with it the note of its thread. */
static PyObject *mod_gc_callback_last(PyObject *module, PyObject *args) {
    (void)module, (void)args;
    PyObject *phase;
    if (PyTuple_GET_SIZE(args) == 2 && PyUnicode_Check(phase = PyTuple_GET_ITEM(args, 0))
        && PyUnicode_CompareWithASCIIString(phase, "stop") == 0)
        rpy_note_collector(NULL);
    Py_RETURN_NONE;
}

/* atexit (region/__init__.py): lifecycle_shutdown. */
static PyObject *mod_shutdown(PyObject *module, PyObject *unused) {
    (void)module, (void)unused;
    lifecycle_shutdown();
    Py_RETURN_NONE;
}

/* ---- Types and exceptions, per GIL ---- */

static PyObject *new_exception(PyObject *module, const char *name, PyObject *bases, const char *doc) {
    char qualified[64];
    snprintf(qualified, sizeof qualified, "region.%s", name);
    PyObject *type = PyErr_NewExceptionWithDoc(qualified, doc, bases, NULL);
    (void)module;   /* add_binding_state adds it */
    return type;
}

static int add_exceptions(PyObject *module) {
    RegionError = new_exception(module, "RegionError", PyExc_RuntimeError,
                                "Base class of every error the region package raises.");
    if (!RegionError) return -1;
    IsolationError = new_exception(module, "IsolationError", RegionError,
                                   "A region is not isolated; .offenders lists each escape.");
    OwnershipError = new_exception(module, "OwnershipError", RegionError,
                                   "The calling thread does not own the region it touched.");
    PyObject *bases = PyTuple_Pack(2, RegionError, PyExc_ReferenceError);
    HandleError = bases ? new_exception(module, "HandleError", bases,
                                        "A handle cannot be resolved: its object or its region is "
                                        "gone.") : NULL;
    Py_XDECREF(bases);
    bases = PyTuple_Pack(2, RegionError, PyExc_TypeError);
    FrozenError = bases ? new_exception(module, "FrozenError", bases,
                                        "An object of a frozen region was to be changed, or an object "
                                        "cannot be frozen.") : NULL;
    Py_XDECREF(bases);
    return IsolationError && OwnershipError && HandleError && FrozenError ? 0 : -1;
}

/* The types and exceptions of the calling GIL (binding_gil), made once per GIL. */
static int make_binding_state(PyObject *module) {
    PyType_Spec spec = {"region.Region", sizeof(RegionObject), 0,
                        Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC, Region_slots};
    Region_Type = (PyTypeObject *)PyType_FromSpec(&spec);
    if (!Region_Type || add_exceptions(module) < 0 || handle_type_init(module) < 0 || ownership_type_init(module) < 0 ||
        frozen_types_init() < 0 || frozen_view_types_init() < 0)
        return -1;
    return 0;
}

static int add_binding_state(PyObject *module) {
    binding_state_t *state = binding_state();
    return PyModule_AddObjectRef(module, "Region", (PyObject *)state->region_type) < 0 ||
           PyModule_AddObjectRef(module, "Handle", (PyObject *)state->handle_type) < 0 ||
           PyModule_AddObjectRef(module, "RegionError", state->region_error) < 0 ||
           PyModule_AddObjectRef(module, "IsolationError", state->isolation_error) < 0 ||
           PyModule_AddObjectRef(module, "OwnershipError", state->ownership_error) < 0 ||
           PyModule_AddObjectRef(module, "HandleError", state->handle_error) < 0 ||
           PyModule_AddObjectRef(module, "FrozenError", state->frozen_error) < 0 ||
           PyModule_AddObjectRef(module, "FrozenList", (PyObject *)state->frozen_types[0]) < 0 ||
           PyModule_AddObjectRef(module, "FrozenDict", (PyObject *)state->frozen_types[1]) < 0 ||
           PyModule_AddObjectRef(module, "FrozenSet", (PyObject *)state->frozen_types[2]) < 0 ||
           PyModule_AddObjectRef(module, "FrozenByteArray", (PyObject *)state->frozen_types[3]) < 0 ||
           PyModule_AddObjectRef(module, "FrozenView", (PyObject *)state->frozen_view_type) < 0 ||
           PyModule_AddStringConstant(module, "__version__", region_version()) < 0 ||
           capi_add(module) < 0 ? -1 : 0;
}

static const char import_order_message[] =
    "region must be imported in the main interpreter before a subinterpreter imports it (docs/python.md, "
    "'Subinterpreters')";

/* Whether the main interpreter initialized the module. */
static bool main_module_ready;

/* For the activation tests: whether the hook is in and this interpreter's guards run. */
static PyObject *mod_activated(PyObject *module, PyObject *unused) {
    (void)module, (void)unused;
    return PyBool_FromLong(placement_active());
}

static PyObject *mod_attach(PyObject *module, PyObject *unused) {
    (void)module, (void)unused;
    if (placement_attach() < 0) return NULL;
    if (PyInterpreterState_Get() == PyInterpreterState_Main()) Py_RETURN_NONE;
    if (lifecycle_watch_interpreter_end() < 0) {
        binding_state_forget();
        placement_detach();
        return NULL;
    }
    Py_RETURN_NONE;
}

/* For region/_audit.py: reading attributes without creating an instance's __dict__. */
static PyObject *mod_attribute_name(PyObject *module, PyObject *args) {
    (void)module;
    PyObject *obj, *value;
    if (!PyArg_ParseTuple(args, "OO", &obj, &value)) return NULL;
    PyObject *name = rpy_attribute_name(obj, value);
    return Py_NewRef(name ? name : Py_None);
}

static PyObject *crossing_copy_out_method(PyObject *module, PyObject *obj) {
    (void)module;
    return crossing_copy_out(obj);
}

static PyObject *mod_suspend(PyObject *module, PyObject *unused) {
    (void)module, (void)unused;
    return placement_suspend() < 0 ? NULL : Py_NewRef(Py_None);
}

static PyObject *mod_resume(PyObject *module, PyObject *unused) {
    (void)module, (void)unused;
    return placement_resume() < 0 ? NULL : Py_NewRef(Py_None);
}

/* The calling thread's thread-state dict (the interpreter's own state: _audit.holders_of). */
static PyObject *mod_thread_state_dict(PyObject *module, PyObject *unused) {
    (void)module, (void)unused;
    PyObject *dict = PyThreadState_GetDict();
    return Py_NewRef(dict ? dict : Py_None);
}

static PyObject *mod_instance_dict(PyObject *module, PyObject *obj) {
    (void)module;
    PyObject *dict = rpy_instance_dict(obj);
    return Py_NewRef(dict ? dict : Py_None);
}

typedef struct local_holders {
    PyObject *list;
} local_holders_t;

static void add_local_holder(PyObject *name, PyCodeObject *code, int line, void *arg) {
    local_holders_t *h = arg;
    if (!h->list) return;
    PyObject *item = Py_BuildValue("(OOOi)", name, code->co_qualname, code->co_filename, line);
    if (!item || PyList_Append(h->list, item) < 0) Py_CLEAR(h->list);
    Py_XDECREF(item);
}

/* [(variable, function, file, line)] for the running frames' locals that hold obj. */
static PyObject *mod_local_holders(PyObject *module, PyObject *args) {
    (void)module;
    PyObject *obj, *skip;
    if (!PyArg_ParseTuple(args, "OU", &obj, &skip)) return NULL;
    local_holders_t h = {PyList_New(0)};
    Py_INCREF(skip);
    bool gc_was_enabled = rpy_gc_pause();   /* the frames' values are borrowed while we append */
    if (h.list) rpy_foreach_local_holding(obj, skip, add_local_holder, &h);
    rpy_gc_resume(gc_was_enabled);
    Py_DECREF(skip);
    return h.list;
}

static PyObject *mod_with_foreign_allocator(PyObject *module, PyObject *fn) {
    (void)module;
    return placement_with_foreign_allocator(fn);
}

/* The record of `region` for the test and benchmark support below, which take a Region the caller
 * owns; NULL with TypeError or the owner check's error. */
static rpy_region_t *owned_record(PyObject *region, const char *what) {
    if (!PyObject_TypeCheck(region, Region_Type)) {
        PyErr_Format(PyExc_TypeError, "%s() takes a Region, not %.100s", what, Py_TYPE(region)->tp_name);
        return NULL;
    }
    rpy_region_t *self = ((RegionObject *)region)->rec;
    return region_check_owner(self, what) < 0 ? NULL : self;
}

/* Test support: the verdict of the isolation engine's fast pass (proof_isolated), without the audit
 * that follows it when it cannot prove: True only if it proves r isolated.  The soundness test
 * (test_proof.py) holds it against the audit alone (_audit). */
static PyObject *mod_proven_isolated(PyObject *module, PyObject *region) {
    (void)module;
    rpy_region_t *self = owned_record(region, "_proven_isolated");
    if (!self) return NULL;
    bool refers_to_classes, refers_to_mortal;
    int proven = proof_isolated(self, &refers_to_classes, &refers_to_mortal);
    return proven < 0 ? NULL : PyBool_FromLong(proven);
}

/* Test support: the audit alone (r.check() without the fast pass before it): None, or IsolationError
 * naming the escapes. */
static PyObject *mod_audit(PyObject *module, PyObject *region) {
    (void)module;
    rpy_region_t *self = owned_record(region, "_audit");
    return self ? audit_check(self) : NULL;
}

/* Benchmark support: (bytes, seconds, checksum) of proof_stream over a region the caller owns. */
static PyObject *mod_stream_pass(PyObject *module, PyObject *region) {
    (void)module;
    rpy_region_t *self = owned_record(region, "_stream_pass");
    if (!self) return NULL;
    uint64_t sum;
    struct timespec start, end;
    clock_gettime(CLOCK_MONOTONIC, &start);
    size_t bytes = proof_stream(self, &sum);
    clock_gettime(CLOCK_MONOTONIC, &end);
    double seconds = (double)(end.tv_sec - start.tv_sec) + (double)(end.tv_nsec - start.tv_nsec) * 1e-9;
    return Py_BuildValue("(ndK)", (Py_ssize_t)bytes, seconds, (unsigned long long)sum);
}

/* Test and benchmark support: _scan_threads() is the threads a big region's proof uses now (1 or 2);
 * _scan_threads(n) sets them first (region_set_scan_threads: 0 automatic, 1 or 2). */
static PyObject *mod_scan_threads(PyObject *module, PyObject *const *args, Py_ssize_t nargs) {
    (void)module;
    if (nargs > 1) return PyErr_Format(PyExc_TypeError, "_scan_threads() takes at most 1 argument (%zd given)", nargs);
    if (nargs == 1) {
        long threads = PyLong_AsLong(args[0]);
        if (threads == -1 && PyErr_Occurred()) return NULL;
        if (threads < 0 || region_set_scan_threads((unsigned)threads) != REGION_OK)
            return PyErr_Format(PyExc_ValueError, "_scan_threads(%ld): 0 (automatic), 1 or 2", threads);
    }
    return PyLong_FromUnsignedLong(region_scan_threads());
}

/* Test support: _scan_split() is (split_bytes, splits, splits_helped) of region/isolation.c's SPLIT
 * SCANS; _scan_split(n) sets the bytes of whole pages from which a scan splits first. */
static PyObject *mod_scan_split(PyObject *module, PyObject *const *args, Py_ssize_t nargs) {
    (void)module;
    if (nargs > 1) return PyErr_Format(PyExc_TypeError, "_scan_split() takes at most 1 argument (%zd given)", nargs);
    if (nargs == 1) {
        size_t bytes = PyLong_AsSize_t(args[0]);
        if (bytes == (size_t)-1 && PyErr_Occurred()) return NULL;
        __atomic_store_n(&riso_split_bytes, bytes, __ATOMIC_RELAXED);
    }
    return Py_BuildValue("(nKK)", (Py_ssize_t)__atomic_load_n(&riso_split_bytes, __ATOMIC_RELAXED),
                         (unsigned long long)__atomic_load_n(&riso_splits, __ATOMIC_RELAXED),
                         (unsigned long long)__atomic_load_n(&riso_splits_helped, __ATOMIC_RELAXED));
}

/* Test support: closed regions whose memory still holds objects (lifecycle.c, ORPHAN). */
static PyObject *mod_orphans(PyObject *module, PyObject *unused) {
    (void)module, (void)unused;
    return PyLong_FromUnsignedLong(lifecycle_orphans());
}

static PyMethodDef module_methods[] = {
    {"_stream_pass", mod_stream_pass, METH_O, NULL},
    {"_scan_threads", (PyCFunction)(void (*)(void))mod_scan_threads, METH_FASTCALL, NULL},
    {"_scan_split", (PyCFunction)(void (*)(void))mod_scan_split, METH_FASTCALL, NULL},
    {"_orphans", mod_orphans, METH_NOARGS, NULL},
    {"_proven_isolated", mod_proven_isolated, METH_O, NULL},
    {"_audit", mod_audit, METH_O, NULL},
    {"_local_holders", mod_local_holders, METH_VARARGS, NULL},
    {"_with_foreign_allocator", mod_with_foreign_allocator, METH_O, NULL},
    {"_attribute_name", mod_attribute_name, METH_VARARGS, NULL},
    {"_instance_dict", mod_instance_dict, METH_O, NULL},
    {"region_of", mod_region_of, METH_O, "The Region that owns obj, or None."},
    {"adopt", ownership_adopt, METH_O,
     "adopt(id) -> Region: the open region with this id (r.id), for a thread that did not create it."},
    {"current", mod_current, METH_NOARGS, "The Region receiving this thread's allocations, or None."},
    {"is_shared", mod_is_shared, METH_O,
     "Whether obj is an interpreter-wide immutable singleton that any region may refer to: None, "
     "True, False, Ellipsis, NotImplemented, small ints, interned or one-character strings, the empty "
     "tuple, bytes and str, one-byte bytes, static types."},
    {"_gc_callback", mod_gc_callback, METH_VARARGS, NULL},
    {"_gc_callback_last", mod_gc_callback_last, METH_VARARGS, NULL},
    {"_thread_state_dict", mod_thread_state_dict, METH_NOARGS, NULL},
    {"_suspend", mod_suspend, METH_NOARGS, NULL},
    {"_copy_out", crossing_copy_out_method, METH_O, NULL},
    {"_resume", mod_resume, METH_NOARGS, NULL},
    {"_shutdown", mod_shutdown, METH_NOARGS, NULL},
    {"_attach", mod_attach, METH_NOARGS, NULL},
    {"_activated", mod_activated, METH_NOARGS, NULL},
    {NULL, NULL, 0, NULL},
};

/* MODULE INITIALIZATION is multi-phase, so that every interpreter, one with its own GIL included,
 * runs module_exec for a module object of its own.  The main interpreter makes the types and
 * exceptions of the main GIL (once per process); a subinterpreter that shares the main GIL puts the
 * very same objects in its module (so every interpreter of that GIL shares the Region type, the
 * exceptions and every Region object); an interpreter with its own GIL attaches and makes its own.
 * The main interpreter must come first: it makes what the others share.  Nothing here touches the
 * allocators: the hook goes in when the process first makes or acquires a region (placement.c,
 * ACTIVATION). */
static int module_exec(PyObject *module) {
    bool is_main = PyInterpreterState_Get() == PyInterpreterState_Main();
    if (is_main) {
        if (!binding_states[0].region_type) {
            if (rpy_internals_init() < 0 || make_binding_state(module) < 0) return -1;
            __atomic_store_n(&main_module_ready, true, __ATOMIC_RELEASE);
        }
        return add_binding_state(module);
    }
    if (!__atomic_load_n(&main_module_ready, __ATOMIC_ACQUIRE)) {
        PyErr_SetString(PyExc_ImportError, import_order_message);
        return -1;
    }
    if (!rpy_interp_has_own_gil()) return add_binding_state(module);
    if (rpy_interp_attach() < 0) {   /* from here on binding_gil() is this interpreter's */
        PyErr_Format(PyExc_ImportError, "cannot use regions in interpreter %lld: %d interpreters already do",
                     (long long)binding_current_interp(), RPY_MAX_INTERPRETERS);
        return -1;
    }
    /* Its end must clear its state even if the package's __init__ never gets to _attach(): the
     * entry, and with it this GIL's state slot, goes to the next interpreter. */
    if (lifecycle_watch_interpreter_end() < 0) {
        rpy_interp_detach();
        return -1;
    }
    if (!binding_state()->region_type) {
        if (make_binding_state(module) < 0) {
            binding_state_forget();
            return -1;
        }
        binding_state()->counted = true;
        __atomic_add_fetch(&binding_own_gils, 1, __ATOMIC_RELAXED);
    }
    return add_binding_state(module);
}

static PyModuleDef_Slot module_slots[] = {
    {Py_mod_exec, module_exec},
#if PY_VERSION_HEX >= 0x030C0000
    {Py_mod_multiple_interpreters, Py_MOD_PER_INTERPRETER_GIL_SUPPORTED},
#endif
    {0, NULL},
};

static struct PyModuleDef module_def = {
    PyModuleDef_HEAD_INIT, "region._region", "The C core of the region package.", 0, module_methods,
    module_slots, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__region(void) { return PyModuleDef_Init(&module_def); }
