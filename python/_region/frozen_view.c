/* frozen_view.c - reading a frozen region under another GIL (3.12+ interpreters with their own GIL):
 * region.FrozenView.
 *
 * WHY VIEWS.  Code under another GIL may not hold a region object itself: every reference it took or
 * dropped would write the object's count in parallel with the freezing GIL's threads, and every
 * method it looked up would go through the freezing GIL's types (whose version tags and caches are
 * per interpreter).  So under another GIL, r.root is a FrozenView: an object of that GIL that points
 * at a container of the region without a reference, and answers reads by reading the region's memory
 * from C.  What a read returns is never a region object: a container is a new view, an immutable
 * value is a copy made under the reader's GIL (a str, an int, a float, bytes; None, True and False
 * are the process's own), anything else is refused.
 *
 * WHAT A READ TOUCHES.  Only fields the freezing GIL never writes after freeze(): the object's type
 * pointer, a container's items and size, a dict's key table and a str's or int's digits; never a
 * reference count.  Lookups compare through the builtin types' C code only (keys of the reader must
 * be str, int, float, bytes, bool, None or tuples of them; a class's __eq__ would be handed a region
 * object): a dict of str keys looked up with a str goes through CPython's own unicode lookup, which
 * takes no reference; any other lookup is a scan of the entries (O(n)).
 *
 * LIFETIME.  A view holds a reference to its GIL's Region object, which the close() of a frozen
 * region counts (frozen_thaw_for_close refuses while another GIL holds one), and close() sets
 * `closing` under binding_lock before it looks, which stops a Region adopted in the meantime from
 * making a view: so no view outlives the memory it reads.
 */
#include "binding.h"

#include <stddef.h>

typedef struct FrozenViewObject {
    PyObject_HEAD
    RegionObject *region;      /* strong: a Region of this GIL, which close() counts */
    PyObject *target;          /* a container of the region: borrowed, never counted */
} FrozenViewObject;

typedef struct FrozenViewIterObject {
    PyObject_HEAD
    FrozenViewObject *view;    /* strong */
    Py_ssize_t position;
} FrozenViewIterObject;

#define FrozenView_Type (binding_state()->frozen_view_type)
#define FrozenViewIter_Type (binding_state()->frozen_view_iter_type)

/* ---- What a read returns ---- */

static bool is_dict(PyObject *op) { return PyDict_Check(op); }
static bool is_sequence(PyObject *op) { return PyList_Check(op) || PyTuple_Check(op); }
static bool is_set(PyObject *op) { return PyAnySet_Check(op); }

/* A read that returns a container makes a view, and most die at once (v[key][1]): their memory is
 * kept on their Region for the next ones (at most SPARE_VIEWS), instead of a trip through the
 * allocator and its hook each.  Only the Region's GIL touches its spares. */
#define SPARE_VIEWS 64

typedef struct spare_view {
    struct spare_view *next;
} spare_view_t;

void frozen_view_spares_free(RegionObject *self) {
    while (self->spare_views) {
        spare_view_t *spare = self->spare_views;
        self->spare_views = spare->next;
        PyObject_Free(spare);
    }
    self->spare_view_count = 0;
}

/* Views are not GC types: what they refer to (their Region) never refers back, and a read that makes
 * one per value read would otherwise count towards the reader's collections. */
static PyObject *new_view(RegionObject *region, PyTypeObject *type, PyObject *target) {
    FrozenViewObject *view;
    spare_view_t *spare = region->spare_views;
    if (spare) {
        region->spare_views = spare->next;
        region->spare_view_count--;
        view = (FrozenViewObject *)PyObject_Init((PyObject *)spare, type);
    } else {
        view = PyObject_New(FrozenViewObject, type);
    }
    if (!view) return NULL;
    view->region = (RegionObject *)Py_NewRef(region);
    view->target = target;
    return (PyObject *)view;
}

/* What reading x (an object of the region) gives the reader: a view (of `type`, the calling GIL's
 * FrozenView type, which a view passes on as its own type: binding_state() is a thread-local lookup
 * on 3.12+), a copy, or a singleton. */
static PyObject *read_value(RegionObject *region, PyTypeObject *type, PyObject *x) {
    if (x == Py_None || x == Py_True || x == Py_False || x == Py_Ellipsis) return Py_NewRef(x);   /* immortal */
    PyTypeObject *t = Py_TYPE(x);
    if (t == &PyUnicode_Type)
        return PyUnicode_FromKindAndData(PyUnicode_KIND(x), PyUnicode_DATA(x), PyUnicode_GET_LENGTH(x));
    if (t == &PyLong_Type) return rpy_long_copy(x);
    if (t == &PyFloat_Type) return PyFloat_FromDouble(PyFloat_AS_DOUBLE(x));
    if (t == &PyComplex_Type) return PyComplex_FromCComplex(((PyComplexObject *)x)->cval);
    if (t == &PyBytes_Type) return PyBytes_FromStringAndSize(PyBytes_AS_STRING(x), PyBytes_GET_SIZE(x));
    if (PyByteArray_Check(x)) return PyBytes_FromStringAndSize(PyByteArray_AS_STRING(x), PyByteArray_GET_SIZE(x));
    if (is_dict(x) || is_sequence(x) || is_set(x)) return new_view(region, type, x);
    PyErr_Format(FrozenError, "a %.100s of frozen region %R cannot be read under another GIL: only "
                 "containers (dict, list, tuple, set, frozenset) and immutable values are", t->tp_name,
                 region->name);
    return NULL;
}

/* A full copy of x under the reader's GIL: dicts, lists, tuples and sets of copies. */
static PyObject *materialize(RegionObject *region, PyObject *x, int depth);

static PyObject *materialize_items(RegionObject *region, PyObject *x, int depth) {
    if (is_dict(x)) {
        PyObject *copy = PyDict_New(), *key, *value;
        Py_ssize_t pos = 0;
        while (copy && PyDict_Next(x, &pos, &key, &value)) {   /* borrowed: no count written */
            PyObject *k = materialize(region, key, depth + 1), *v = k ? materialize(region, value, depth + 1) : NULL;
            if (!v || PyDict_SetItem(copy, k, v) < 0) Py_CLEAR(copy);
            Py_XDECREF(k);
            Py_XDECREF(v);
        }
        return copy;
    }
    if (is_sequence(x)) {
        Py_ssize_t n = PySequence_Fast_GET_SIZE(x);
        PyObject *copy = PyTuple_Check(x) ? PyTuple_New(n) : PyList_New(n);
        PyObject **items = PySequence_Fast_ITEMS(x);
        for (Py_ssize_t i = 0; copy && i < n; i++) {
            PyObject *item = materialize(region, items[i], depth + 1);
            if (!item) Py_CLEAR(copy);
            else if (PyTuple_Check(copy)) PyTuple_SET_ITEM(copy, i, item);
            else PyList_SET_ITEM(copy, i, item);
        }
        return copy;
    }
    PyObject *copy = PySet_New(NULL), *key;
    Py_ssize_t pos = 0;
    Py_hash_t hash;
    while (copy && rpy_set_next(x, &pos, &key, &hash)) {
        PyObject *k = materialize(region, key, depth + 1);
        if (!k || PySet_Add(copy, k) < 0) Py_CLEAR(copy);
        Py_XDECREF(k);
    }
    if (copy && PyFrozenSet_Check(x)) Py_SETREF(copy, PyFrozenSet_New(copy));
    return copy;
}

static PyObject *materialize(RegionObject *region, PyObject *x, int depth) {
    if (!is_dict(x) && !is_sequence(x) && !is_set(x)) return read_value(region, NULL, x);   /* no view */
    if (depth > 200) {
        PyErr_SetString(PyExc_RecursionError, "a frozen region's containers nest too deep to copy");
        return NULL;
    }
    return materialize_items(region, x, depth);
}

/* ---- Keys the reader may look up ---- */

/* Whether key's comparisons with region objects run builtin C code only. */
static bool plain_key(PyObject *key, int depth) {
    PyTypeObject *t = Py_TYPE(key);
    if (t == &PyUnicode_Type || t == &PyLong_Type || t == &PyFloat_Type || t == &PyBytes_Type ||
        t == &PyBool_Type || key == Py_None || t == &PyComplex_Type)
        return true;
    if (t != &PyTuple_Type || depth > 50) return false;
    for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(key); i++)
        if (!plain_key(PyTuple_GET_ITEM(key, i), depth + 1)) return false;
    return true;
}

static int check_key(FrozenViewObject *self, PyObject *key) {
    if (plain_key(key, 0)) return 0;
    PyErr_Format(PyExc_TypeError, "a frozen region read under another GIL is looked up with str, int, "
                 "float, bytes, bool, None or tuples of them, not %.100s (region %R)", Py_TYPE(key)->tp_name,
                 self->region->name);
    return -1;
}

/* 1 and *found (borrowed) when key is in the dict, 0 when not, -1 with an exception. */
static int dict_find(FrozenViewObject *self, PyObject *key, PyObject **found) {
    if (check_key(self, key) < 0) return -1;
    PyObject *dict = self->target;
    if (PyUnicode_CheckExact(key) && rpy_dict_has_str_keys(dict)) {
        *found = PyDict_GetItemWithError(dict, key);   /* unicode lookup: no reference taken */
        return *found ? 1 : PyErr_Occurred() ? -1 : 0;
    }
    PyObject *k, *v;
    Py_ssize_t pos = 0;
    while (PyDict_Next(dict, &pos, &k, &v)) {   /* borrowed: no count written */
        int equal = k == key ? 1 : PyObject_RichCompareBool(k, key, Py_EQ);
        if (equal < 0) return -1;
        if (equal) {
            *found = v;
            return 1;
        }
    }
    return 0;
}

/* ---- The view's protocols ---- */

static Py_ssize_t view_length(FrozenViewObject *self) {
    PyObject *x = self->target;
    return is_dict(x) ? PyDict_GET_SIZE(x) : is_set(x) ? PySet_GET_SIZE(x) : Py_SIZE(x);
}

static PyObject *view_subscript(FrozenViewObject *self, PyObject *key) {
    PyObject *x = self->target;
    if (is_dict(x)) {
        PyObject *found;
        int status = dict_find(self, key, &found);
        if (status == 0) PyErr_SetObject(PyExc_KeyError, key);
        return status == 1 ? read_value(self->region, Py_TYPE(self), found) : NULL;
    }
    if (!is_sequence(x)) {
        PyErr_SetString(PyExc_TypeError, "a frozen set is not subscriptable");
        return NULL;
    }
    PyObject **items = PySequence_Fast_ITEMS(x);
    Py_ssize_t n = PySequence_Fast_GET_SIZE(x);
    if (PySlice_Check(key)) {
        Py_ssize_t start, stop, step;
        if (PySlice_Unpack(key, &start, &stop, &step) < 0) return NULL;
        Py_ssize_t count = PySlice_AdjustIndices(n, &start, &stop, step);
        PyObject *list = PyList_New(count);
        for (Py_ssize_t i = 0, at = start; list && i < count; i++, at += step) {
            PyObject *item = read_value(self->region, Py_TYPE(self), items[at]);
            if (!item) Py_CLEAR(list);
            else PyList_SET_ITEM(list, i, item);
        }
        return list;
    }
    Py_ssize_t i = PyNumber_AsSsize_t(key, PyExc_IndexError);
    if (i == -1 && PyErr_Occurred()) return NULL;
    if (i < 0) i += n;
    if (i < 0 || i >= n) {
        PyErr_SetString(PyExc_IndexError, "index out of range");
        return NULL;
    }
    return read_value(self->region, Py_TYPE(self), items[i]);
}

static int view_contains(FrozenViewObject *self, PyObject *key) {
    PyObject *x = self->target, *found;
    if (is_dict(x)) return dict_find(self, key, &found);
    if (check_key(self, key) < 0) return -1;
    if (is_sequence(x)) {
        PyObject **items = PySequence_Fast_ITEMS(x);
        for (Py_ssize_t i = 0, n = PySequence_Fast_GET_SIZE(x); i < n; i++) {
            int equal = items[i] == key ? 1 : PyObject_RichCompareBool(items[i], key, Py_EQ);
            if (equal) return equal;
        }
        return 0;
    }
    Py_hash_t hash = PyObject_Hash(key), h;
    if (hash == -1) return -1;
    Py_ssize_t pos = 0;
    while (rpy_set_next(x, &pos, &found, &h)) {
        if (h != hash) continue;
        int equal = found == key ? 1 : PyObject_RichCompareBool(found, key, Py_EQ);
        if (equal) return equal;
    }
    return 0;
}

static int view_refuse_assignment(FrozenViewObject *self, PyObject *key, PyObject *value) {
    (void)key;
    PyErr_Format(FrozenError, "%s: this view reads frozen region %R, which is read-only",
                 value ? "item assignment" : "item deletion", self->region->name);
    return -1;
}

/* The n-th entry (keys for a dict) from *position on, borrowed; NULL at the end. */
static PyObject *view_next_entry(PyObject *x, Py_ssize_t *position, PyObject **value) {
    PyObject *key;
    Py_hash_t hash;
    if (is_dict(x)) return PyDict_Next(x, position, &key, value) ? key : NULL;
    if (is_set(x)) return rpy_set_next(x, position, &key, &hash) ? key : NULL;
    if (*position >= PySequence_Fast_GET_SIZE(x)) return NULL;
    return PySequence_Fast_ITEMS(x)[(*position)++];
}

/* keys(), values(), items(): lists under the reader's GIL. */
static PyObject *view_list(FrozenViewObject *self, int which) {
    if (!is_dict(self->target)) {
        PyErr_SetString(PyExc_AttributeError, "keys(), values() and items() are a dict's");
        return NULL;
    }
    PyObject *list = PyList_New(0), *key, *value;
    Py_ssize_t pos = 0;
    while (list && PyDict_Next(self->target, &pos, &key, &value)) {
        PyObject *k = which != 1 ? read_value(self->region, Py_TYPE(self), key) : NULL;
        PyObject *v = which != 0 ? read_value(self->region, Py_TYPE(self), value) : NULL;
        PyObject *entry = which == 0 ? Py_XNewRef(k) : which == 1 ? Py_XNewRef(v)
                        : (k && v) ? PyTuple_Pack(2, k, v) : NULL;
        if (!entry || PyList_Append(list, entry) < 0) Py_CLEAR(list);
        Py_XDECREF(entry);
        Py_XDECREF(k);
        Py_XDECREF(v);
    }
    return list;
}

static PyObject *view_keys(FrozenViewObject *self, PyObject *unused) { (void)unused; return view_list(self, 0); }
static PyObject *view_values(FrozenViewObject *self, PyObject *unused) { (void)unused; return view_list(self, 1); }
static PyObject *view_items(FrozenViewObject *self, PyObject *unused) { (void)unused; return view_list(self, 2); }

static PyObject *view_get(FrozenViewObject *self, PyObject *const *args, Py_ssize_t nargs) {
    if (!is_dict(self->target) || nargs < 1 || nargs > 2) {
        PyErr_SetString(PyExc_TypeError, "get(key, default=None) is a dict's");
        return NULL;
    }
    PyObject *found;
    int status = dict_find(self, args[0], &found);
    if (status < 0) return NULL;
    return status ? read_value(self->region, Py_TYPE(self), found) : Py_NewRef(nargs == 2 ? args[1] : Py_None);
}

static PyObject *view_copy(FrozenViewObject *self, PyObject *unused) {
    (void)unused;
    return materialize(self->region, self->target, 0);
}

static PyObject *view_deepcopy(FrozenViewObject *self, PyObject *memo) {
    (void)memo;
    return materialize(self->region, self->target, 0);
}

static PyObject *view_reduce(FrozenViewObject *self, PyObject *unused) {
    (void)unused;
    PyObject *copy = materialize(self->region, self->target, 0);
    return copy ? Py_BuildValue("(O(N))", (PyObject *)Py_TYPE(copy), copy) : NULL;
}

static PyObject *view_richcompare(FrozenViewObject *self, PyObject *other, int op) {
    if (op != Py_EQ && op != Py_NE) Py_RETURN_NOTIMPLEMENTED;
    PyObject *copy = materialize(self->region, self->target, 0);
    PyObject *theirs = copy && PyObject_TypeCheck(other, FrozenView_Type)
                     ? materialize(self->region, ((FrozenViewObject *)other)->target, 0) : Py_XNewRef(other);
    PyObject *result = theirs ? PyObject_RichCompare(copy, theirs, op) : NULL;
    Py_XDECREF(copy);
    Py_XDECREF(theirs);
    return result;
}

/* A view of a tuple or a frozenset hashes as the object it reads (the hash of its copy, which is
 * equal to it: the same hash); the mutable ones are unhashable, as theirs are. */
static Py_hash_t view_hash(FrozenViewObject *self) {
    PyObject *x = self->target;
    if (!PyTuple_Check(x) && !PyFrozenSet_Check(x)) {
        PyErr_Format(PyExc_TypeError, "unhashable type: a region.FrozenView of a %s",
                     is_dict(x) ? "dict" : PyList_Check(x) ? "list" : "set");
        return -1;
    }
    PyObject *copy = materialize(self->region, x, 0);
    Py_hash_t hash = copy ? PyObject_Hash(copy) : -1;
    Py_XDECREF(copy);
    return hash;
}

static PyObject *view_repr(FrozenViewObject *self) {
    PyObject *x = self->target;
    const char *kind = is_dict(x) ? "dict" : PyList_Check(x) ? "list" : PyTuple_Check(x) ? "tuple"
                     : PyFrozenSet_Check(x) ? "frozenset" : "set";
    return PyUnicode_FromFormat("<region.FrozenView of a %s of %zd in frozen region %R>", kind,
                                view_length(self), self->region->name);
}

static PyObject *view_iter(FrozenViewObject *self) {
    FrozenViewIterObject *it = PyObject_New(FrozenViewIterObject, FrozenViewIter_Type);
    if (!it) return NULL;
    it->view = (FrozenViewObject *)Py_NewRef(self);
    it->position = 0;
    return (PyObject *)it;
}

static void view_dealloc(FrozenViewObject *self) {
    PyTypeObject *type = Py_TYPE(self);
    RegionObject *region = self->region;   /* never the target: it is the region's, and never counted */
    if (region->spare_view_count < SPARE_VIEWS) {
        spare_view_t *spare = (spare_view_t *)self;
        spare->next = region->spare_views;
        region->spare_views = spare;
        region->spare_view_count++;
    } else {
        PyObject_Free(self);
    }
    Py_DECREF(region);   /* after: its deallocator frees the spares, this one included */
    Py_DECREF(type);
}

#define VIEW_REFUSED(method)                                                                       \
    static PyObject *view_refuse_##method(FrozenViewObject *self, PyObject *args, PyObject *kwargs) { \
        (void)args, (void)kwargs;                                                                  \
        PyErr_Format(FrozenError, #method "(): this view reads frozen region %R, which is read-only", \
                     self->region->name);                                                          \
        return NULL;                                                                               \
    }
#define VIEW_REFUSING(method) \
    {#method, (PyCFunction)(void (*)(void))view_refuse_##method, METH_VARARGS | METH_KEYWORDS, "Refused: read-only."}
VIEW_REFUSED(append)
VIEW_REFUSED(extend)
VIEW_REFUSED(insert)
VIEW_REFUSED(pop)
VIEW_REFUSED(remove)
VIEW_REFUSED(clear)
VIEW_REFUSED(sort)
VIEW_REFUSED(reverse)
VIEW_REFUSED(update)
VIEW_REFUSED(setdefault)
VIEW_REFUSED(popitem)
VIEW_REFUSED(add)
VIEW_REFUSED(discard)

static PyMethodDef view_methods[] = {
    {"keys", (PyCFunction)view_keys, METH_NOARGS, "A list of the keys (copies), for a dict."},
    {"values", (PyCFunction)view_values, METH_NOARGS, "A list of the values (copies or views), for a dict."},
    {"items", (PyCFunction)view_items, METH_NOARGS, "A list of (key, value) pairs, for a dict."},
    {"get", (PyCFunction)(void (*)(void))view_get, METH_FASTCALL, "get(key, default=None), for a dict."},
    {"copy", (PyCFunction)view_copy, METH_NOARGS, "An ordinary deep copy under this GIL."},
    {"__copy__", (PyCFunction)view_copy, METH_NOARGS, "An ordinary deep copy under this GIL."},
    {"__deepcopy__", (PyCFunction)view_deepcopy, METH_O, "An ordinary deep copy under this GIL."},
    {"__reduce__", (PyCFunction)view_reduce, METH_NOARGS, "Pickles as the ordinary copy."},
    VIEW_REFUSING(append), VIEW_REFUSING(extend), VIEW_REFUSING(insert), VIEW_REFUSING(pop),
    VIEW_REFUSING(remove), VIEW_REFUSING(clear), VIEW_REFUSING(sort), VIEW_REFUSING(reverse),
    VIEW_REFUSING(update), VIEW_REFUSING(setdefault), VIEW_REFUSING(popitem), VIEW_REFUSING(add),
    VIEW_REFUSING(discard),
    {NULL, NULL, 0, NULL},
};

static PyType_Slot view_slots[] = {
    {Py_tp_doc, "A read of a frozen region under another GIL than the one it was frozen under: a "
                "container of the region, read in place (docs/python.md, 'Frozen regions')."},
    {Py_tp_dealloc, view_dealloc},
    {Py_tp_repr, view_repr},
    {Py_tp_iter, view_iter},
    {Py_tp_richcompare, view_richcompare},
    {Py_tp_hash, view_hash},
    {Py_tp_methods, view_methods},
    {Py_mp_length, view_length},
    {Py_mp_subscript, view_subscript},
    {Py_mp_ass_subscript, view_refuse_assignment},
    {Py_sq_length, view_length},
    {Py_sq_contains, view_contains},
    {0, NULL},
};

static PyObject *iter_next(FrozenViewIterObject *it) {
    PyObject *value = NULL;
    PyObject *entry = view_next_entry(it->view->target, &it->position, &value);
    return entry ? read_value(it->view->region, Py_TYPE(it->view), entry) : NULL;
}

static void iter_dealloc(FrozenViewIterObject *it) {
    PyTypeObject *type = Py_TYPE(it);
    Py_DECREF(it->view);
    PyObject_Free(it);
    Py_DECREF(type);
}

static PyType_Slot iter_slots[] = {
    {Py_tp_dealloc, iter_dealloc},
    {Py_tp_iter, PyObject_SelfIter},
    {Py_tp_iternext, iter_next},
    {0, NULL},
};

#define VIEW_FLAGS (Py_TPFLAGS_DEFAULT | Py_TPFLAGS_IMMUTABLETYPE | Py_TPFLAGS_DISALLOW_INSTANTIATION)

int frozen_view_types_init(void) {
    PyType_Spec view_spec = {"region.FrozenView", sizeof(FrozenViewObject), 0, VIEW_FLAGS, view_slots};
    PyType_Spec iter_spec = {"region.FrozenViewIterator", sizeof(FrozenViewIterObject), 0, VIEW_FLAGS, iter_slots};
    FrozenView_Type = (PyTypeObject *)PyType_FromSpec(&view_spec);
    FrozenViewIter_Type = FrozenView_Type ? (PyTypeObject *)PyType_FromSpec(&iter_spec) : NULL;
    return FrozenViewIter_Type ? 0 : -1;
}

/* ---- r.root under another GIL ---- */

PyObject *frozen_view_root(RegionObject *o) {
    /* o is a Region of this GIL, so a close() that has not yet looked will refuse; one that looked
     * before o was made set `closing` first, under the lock that published o: either way the region
     * cannot be freed under the view made here. */
    rpy_region_t *self = o->rec;
    if (__atomic_load_n(&self->closing, __ATOMIC_SEQ_CST) || !self->r) {
        PyObject *desc = region_describe(self);
        if (desc) PyErr_Format(RegionError, "root: %U is being closed", desc);
        Py_XDECREF(desc);
        return NULL;
    }
    if (!self->root) Py_RETURN_NONE;
    return read_value(o, FrozenView_Type, self->root);
}
