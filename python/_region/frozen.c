/* frozen.c - frozen regions: r.freeze(), the read-only types a frozen region's objects take, and who
 * may read a region that has no owner.
 *
 * FREEZING.  r.freeze() proves the region isolated as release() does, then gives each mutable object
 * of the region a read-only type of the same layout, as `__class__` assignment would:
 *   - list, dict, set, bytearray objects become FrozenList, FrozenDict, FrozenSet, FrozenByteArray:
 *     subtypes made once per GIL (binding_state, like Region), so isinstance(x, list) stays true and
 *     every read is the base type's own code, while every slot and method that mutates raises
 *     FrozenError (a RegionError and a TypeError) naming the region;
 *   - an instance of a class C becomes an instance of a subclass of C made for C at freeze
 *     (frozen_class), whose __setattr__ and __delattr__ raise, and which refuses its builtin base's
 *     mutators too (a subclass of list, say).  Its __dict__ is made first if it kept its attributes
 *     inline (inside a block, so the dict is the region's), and it is a dict of the region like any
 *     other: it becomes a FrozenDict (CPython allows any dict subclass as an instance's __dict__);
 *   - immutable objects keep their type (a str's hash is still cached by its first read, as ever).
 * Anything else (a function, a class, a generator, a cell ...) makes freeze() refuse with FrozenError
 * naming the object, its type and its path from the root - after one collection, in case it is
 * garbage; nothing has changed then but the materialized __dict__s.  Then the region has no owner
 * (ownership_give_up) and `frozen` is set.  The plan (which object becomes what) is made by a visitor
 * on the proof's own pass ("The plan", below), so the common case costs one scan.
 *
 * READING.  Nobody owns a frozen region and nobody may: acquire(), release(), `with r:` refuse.  Any
 * thread of any interpreter that runs under the GIL it was frozen under reads it (frozen_check_reader):
 * reference counts, cached hashes and the GC header stay real, serialized by that GIL.  Under another
 * GIL (3.12+) only r.root is read, and it is a region.FrozenView (frozen_view.c), never a region
 * object.  Neither an interpreter other than the freezing one nor another GIL reads it when the
 * region's objects refer to classes (the frozen subclasses among them): those belong to the
 * interpreter that made them (ownership.c, "Crossing interpreters").
 *
 * CLOSING.  close() refuses while another GIL holds a Region of the region (its views hold one), and
 * from then on no other GIL may start reading it (`closing`).  Then it takes the region as its owner
 * would, proves nothing outside refers in with the objects still frozen (so a reader cannot change
 * that meanwhile; every holder counts, other regions included), gives each object its type back
 * (thaw), and closes as for any region; if that close still fails, the objects are frozen again and
 * the region released, when it is still proven isolated (else it stays the caller's, unfrozen).
 *
 * SHARING.  Objects of other regions, and of no region, may refer to a frozen region's objects
 * (frozen_shareable; audit.c accepts such references): it has no owner whose changes could race with
 * the holder's reads.  Its close() then refuses until they let go.
 *
 * WHAT IS NOT STOPPED (docs/python.md, "Frozen regions"): C code that mutates through the concrete
 * API (PyList_Append on a list it was given: heapq does), and a base class's method called explicitly
 * on a frozen object (list.append(v, x), object.__setattr__(v, "x", 1)): both bypass the type.
 */
#include "binding.h"

/* The name in a frozen subclass's namespace that marks it and holds its class. */
#define FROZEN_MARK "__region_frozen_from__"

/* ---- Refusing ---- */

/* Raises FrozenError for `what` done to self; returns NULL. */
static PyObject *frozen_raise(PyObject *self, const char *what) {
    PyTypeObject *type = Py_TYPE(self);
    const char *kind = type->tp_base ? type->tp_base->tp_name : type->tp_name;   /* list, or the class */
    rpy_region_t *rec = membership_hold(self);
    PyObject *desc = rec ? region_describe(rec) : NULL;
    if (rec) record_unref(rec);
    if (desc)
        PyErr_Format(FrozenError, "%s: this %s is in %U, which is frozen: read-only (copy.deepcopy() of it "
                     "gives a mutable copy)", what, kind, desc);
    else if (!PyErr_Occurred())
        PyErr_Format(FrozenError, "%s: this %s is frozen: read-only (copy.deepcopy() of it gives a "
                     "mutable copy)", what, kind);
    Py_XDECREF(desc);
    return NULL;
}

static int refuse_ass_subscript(PyObject *self, PyObject *key, PyObject *value) {
    (void)key;
    frozen_raise(self, value ? "item assignment" : "item deletion");
    return -1;
}

static int refuse_ass_item(PyObject *self, Py_ssize_t i, PyObject *value) {
    (void)i;
    frozen_raise(self, value ? "item assignment" : "item deletion");
    return -1;
}

static int refuse_setattro(PyObject *self, PyObject *name, PyObject *value) {
    const char *attribute = PyUnicode_Check(name) ? PyUnicode_AsUTF8(name) : NULL;
    char what[160];
    snprintf(what, sizeof what, "%s attribute '%.100s'", value ? "setting" : "deleting",
             attribute ? attribute : "?");
    PyErr_Clear();
    frozen_raise(self, what);
    return -1;
}

static int refuse_init(PyObject *self, PyObject *args, PyObject *kwargs) {
    (void)args, (void)kwargs;
    frozen_raise(self, "__init__()");
    return -1;
}

#define REFUSE_OPERATOR(function, op)                                                              \
    static PyObject *function(PyObject *self, PyObject *other) {                                   \
        (void)other;                                                                               \
        return frozen_raise(self, "the " op " operator");                                          \
    }
REFUSE_OPERATOR(refuse_iadd, "+=")
REFUSE_OPERATOR(refuse_ior, "|=")
REFUSE_OPERATOR(refuse_iand, "&=")
REFUSE_OPERATOR(refuse_isub, "-=")
REFUSE_OPERATOR(refuse_ixor, "^=")

static PyObject *refuse_irepeat(PyObject *self, Py_ssize_t n) {
    (void)n;
    return frozen_raise(self, "the *= operator");
}

#define REFUSE_METHOD(name)                                                                        \
    static PyObject *refuse_##name(PyObject *self, PyObject *args, PyObject *kwargs) {             \
        (void)args, (void)kwargs;                                                                  \
        return frozen_raise(self, #name "()");                                                     \
    }
#define REFUSED(name) \
    {#name, (PyCFunction)(void (*)(void))refuse_##name, METH_VARARGS | METH_KEYWORDS, "Refused: the object is frozen."}
REFUSE_METHOD(append)
REFUSE_METHOD(extend)
REFUSE_METHOD(insert)
REFUSE_METHOD(pop)
REFUSE_METHOD(remove)
REFUSE_METHOD(clear)
REFUSE_METHOD(sort)
REFUSE_METHOD(reverse)
REFUSE_METHOD(popitem)
REFUSE_METHOD(setdefault)
REFUSE_METHOD(update)
REFUSE_METHOD(add)
REFUSE_METHOD(discard)
REFUSE_METHOD(intersection_update)
REFUSE_METHOD(difference_update)
REFUSE_METHOD(symmetric_difference_update)

/* ---- Copies: pickle, copy and deepcopy make objects of the base type ---- */

static PyObject *reduce_list(PyObject *self, PyObject *protocol) {
    (void)protocol;
    PyObject *items = PyObject_GetIter(self);
    return items ? Py_BuildValue("(O()ON)", (PyObject *)&PyList_Type, Py_None, items) : NULL;
}

static PyObject *reduce_dict(PyObject *self, PyObject *protocol) {
    (void)protocol;
    PyObject *view = PyObject_CallMethod(self, "items", NULL);
    PyObject *items = view ? PyObject_GetIter(view) : NULL;
    Py_XDECREF(view);
    return items ? Py_BuildValue("(O()OON)", (PyObject *)&PyDict_Type, Py_None, Py_None, items) : NULL;
}

static PyObject *reduce_set(PyObject *self, PyObject *protocol) {
    (void)protocol;
    PyObject *items = PySequence_List(self);
    return items ? Py_BuildValue("(O(N))", (PyObject *)&PySet_Type, items) : NULL;
}

static PyObject *reduce_bytearray(PyObject *self, PyObject *protocol) {
    (void)protocol;
    PyObject *bytes = PyBytes_FromStringAndSize(PyByteArray_AS_STRING(self), PyByteArray_GET_SIZE(self));
    return bytes ? Py_BuildValue("(O(N))", (PyObject *)&PyByteArray_Type, bytes) : NULL;
}

#define REDUCE(function) {"__reduce_ex__", (PyCFunction)function, METH_O, "Reduce to the base type (a mutable copy)."}

/* ---- The frozen builtin types ---- */

/* A frozen object goes back to its base type to die: the base's deallocator, and the reference
 * freezing took to the frozen type (frozen_apply) dropped. */
static void frozen_dealloc(PyObject *self) {
    PyTypeObject *type = Py_TYPE(self);
    Py_SET_TYPE(self, type->tp_base);
    type->tp_base->tp_dealloc(self);
    Py_DECREF(type);
}

static int frozen_traverse(PyObject *self, visitproc visit, void *arg) {
    Py_VISIT(Py_TYPE(self));
    return Py_TYPE(self)->tp_base->tp_traverse(self, visit, arg);
}

static int frozen_getbuffer(PyObject *self, Py_buffer *view, int flags) {
    if (flags & PyBUF_WRITABLE) {
        frozen_raise(self, "a writable buffer");
        return -1;
    }
    if (PyByteArray_Type.tp_as_buffer->bf_getbuffer(self, view, flags) < 0) return -1;
    view->readonly = 1;
    return 0;
}

static void frozen_releasebuffer(PyObject *self, Py_buffer *view) {
    PyByteArray_Type.tp_as_buffer->bf_releasebuffer(self, view);
}

static PyMethodDef list_methods[] = {
    REFUSED(append), REFUSED(extend), REFUSED(insert), REFUSED(pop), REFUSED(remove), REFUSED(clear),
    REFUSED(sort), REFUSED(reverse), REDUCE(reduce_list), {NULL, NULL, 0, NULL},
};
static PyMethodDef dict_methods[] = {
    REFUSED(clear), REFUSED(pop), REFUSED(popitem), REFUSED(setdefault), REFUSED(update),
    REDUCE(reduce_dict), {NULL, NULL, 0, NULL},
};
static PyMethodDef set_methods[] = {
    REFUSED(add), REFUSED(discard), REFUSED(remove), REFUSED(pop), REFUSED(clear), REFUSED(update),
    REFUSED(intersection_update), REFUSED(difference_update), REFUSED(symmetric_difference_update),
    REDUCE(reduce_set), {NULL, NULL, 0, NULL},
};
static PyMethodDef bytearray_methods[] = {
    REFUSED(append), REFUSED(extend), REFUSED(insert), REFUSED(pop), REFUSED(remove), REFUSED(clear),
    REFUSED(reverse), REDUCE(reduce_bytearray), {NULL, NULL, 0, NULL},
};

#define FROZEN_COMMON_SLOTS                                                                        \
    {Py_tp_dealloc, frozen_dealloc}, {Py_tp_init, refuse_init}, {Py_tp_setattro, refuse_setattro}, \
    {Py_tp_doc, "A read-only object of a frozen region (r.freeze())."}

static PyType_Slot list_slots[] = {
    FROZEN_COMMON_SLOTS, {Py_tp_traverse, frozen_traverse}, {Py_tp_methods, list_methods},
    {Py_mp_ass_subscript, refuse_ass_subscript}, {Py_sq_ass_item, refuse_ass_item},
    {Py_sq_inplace_concat, refuse_iadd}, {Py_sq_inplace_repeat, refuse_irepeat}, {0, NULL},
};
static PyType_Slot dict_slots[] = {
    FROZEN_COMMON_SLOTS, {Py_tp_traverse, frozen_traverse}, {Py_tp_methods, dict_methods},
    {Py_mp_ass_subscript, refuse_ass_subscript}, {Py_nb_inplace_or, refuse_ior}, {0, NULL},
};
static PyType_Slot set_slots[] = {
    FROZEN_COMMON_SLOTS, {Py_tp_traverse, frozen_traverse}, {Py_tp_methods, set_methods},
    {Py_nb_inplace_or, refuse_ior}, {Py_nb_inplace_and, refuse_iand}, {Py_nb_inplace_subtract, refuse_isub},
    {Py_nb_inplace_xor, refuse_ixor}, {0, NULL},
};
static PyType_Slot bytearray_slots[] = {
    FROZEN_COMMON_SLOTS, {Py_tp_methods, bytearray_methods},
    {Py_mp_ass_subscript, refuse_ass_subscript}, {Py_sq_ass_item, refuse_ass_item},
    {Py_sq_inplace_concat, refuse_iadd}, {Py_sq_inplace_repeat, refuse_irepeat},
    {Py_bf_getbuffer, frozen_getbuffer}, {Py_bf_releasebuffer, frozen_releasebuffer}, {0, NULL},
};

#define FROZEN_FLAGS (Py_TPFLAGS_DEFAULT | Py_TPFLAGS_IMMUTABLETYPE | Py_TPFLAGS_DISALLOW_INSTANTIATION)

static const struct {
    PyTypeObject *base;
    PyType_Spec spec;
} frozen_kinds[FROZEN_KINDS] = {
    {&PyList_Type, {"region.FrozenList", 0, 0, FROZEN_FLAGS | Py_TPFLAGS_HAVE_GC, list_slots}},
    {&PyDict_Type, {"region.FrozenDict", 0, 0, FROZEN_FLAGS | Py_TPFLAGS_HAVE_GC, dict_slots}},
    {&PySet_Type, {"region.FrozenSet", 0, 0, FROZEN_FLAGS | Py_TPFLAGS_HAVE_GC, set_slots}},
    {&PyByteArray_Type, {"region.FrozenByteArray", 0, 0, FROZEN_FLAGS, bytearray_slots}},
};

int frozen_types_init(void) {
    binding_state_t *state = binding_state();
    /* module.c exports frozen_types[] by index under these names. */
    assert(frozen_kinds[0].base == &PyList_Type && frozen_kinds[1].base == &PyDict_Type &&
           frozen_kinds[2].base == &PySet_Type && frozen_kinds[3].base == &PyByteArray_Type);
    if (!(state->frozen_mark = PyUnicode_InternFromString(FROZEN_MARK))) return -1;
    for (int k = 0; k < FROZEN_KINDS; k++) {
        /* PyType_FromSpecWithBases takes the spec as non-const; it does not write it. */
        PyType_Spec spec = frozen_kinds[k].spec;
        state->frozen_types[k] = (PyTypeObject *)PyType_FromSpecWithBases(&spec, (PyObject *)frozen_kinds[k].base);
        if (!state->frozen_types[k]) return -1;
        assert(state->frozen_types[k]->tp_basicsize == frozen_kinds[k].base->tp_basicsize);
        /* No weak reference to a frozen object (a set's): making or dropping one writes the
         * object's list of them.  Sound because freeze() refuses an object that has any
         * (plan_visit), so none is ever unlinked through this offset. */
        state->frozen_types[k]->tp_weaklistoffset = 0;
    }
    return 0;
}

/* The frozen type for an object of exact type `type`, or NULL.  `state` is binding_state(), which
 * the callers that run once per object of a region read once (on 3.12+ it costs a thread-local
 * lookup). */
static PyTypeObject *frozen_builtin_for(binding_state_t *state, PyTypeObject *type) {
    for (int k = 0; k < FROZEN_KINDS; k++)
        if (frozen_kinds[k].base == type) return state->frozen_types[k];
    return NULL;
}

static bool is_frozen_builtin(binding_state_t *state, PyTypeObject *type) {
    for (int k = 0; k < FROZEN_KINDS; k++)
        if (state->frozen_types[k] == type) return true;
    return false;
}

/* ---- Frozen subclasses of classes ---- */

static PyObject *refuse_setattr_method(PyObject *self, PyObject *args) {
    PyObject *name = PyTuple_GET_SIZE(args) ? PyTuple_GET_ITEM(args, 0) : Py_None;
    refuse_setattro(self, name, Py_None);
    return NULL;
}

static PyObject *refuse_delattr_method(PyObject *self, PyObject *args) {
    PyObject *name = PyTuple_GET_SIZE(args) ? PyTuple_GET_ITEM(args, 0) : Py_None;
    refuse_setattro(self, name, NULL);
    return NULL;
}

#define REFUSE_SLOT_METHOD(name, what)                                                             \
    static PyObject *refuse_##name(PyObject *self, PyObject *args) {                               \
        (void)args;                                                                                \
        return frozen_raise(self, what);                                                           \
    }
REFUSE_SLOT_METHOD(setitem, "item assignment")
REFUSE_SLOT_METHOD(delitem, "item deletion")
REFUSE_SLOT_METHOD(inplace, "an in-place operator")

static bool inherits_from_object(PyTypeObject *cls, const char *name) {
    PyObject *key = PyUnicode_InternFromString(name);
    bool same = key && _PyType_Lookup(cls, key) == _PyType_Lookup(&PyBaseObject_Type, key);
    Py_XDECREF(key);
    PyErr_Clear();   /* out of memory here: the general path below */
    return same;
}

/* object.__reduce_ex__(protocol >= 2) of an instance of a class that adds nothing to pickling and is
 * not a list or a dict: what CPython's reduce_newobj gives, (copyreg.__newobj__, (cls,), state, None,
 * None), made here because its check that the object holds nothing but its __dict__ and slots
 * counts a weak list the frozen subclass does not declare (plan_apply).  NULL with no exception where
 * that does not apply. */
static PyObject *reduce_plain_instance(PyObject *self, PyTypeObject *cls, PyObject *protocol) {
    long proto = PyLong_Check(protocol) ? PyLong_AsLong(protocol) : -1;
    if (proto < 2 || PyList_Check(self) || PyDict_Check(self) || !inherits_from_object(cls, "__reduce_ex__") ||
        !inherits_from_object(cls, "__reduce__") || !inherits_from_object(cls, "__getnewargs_ex__") ||
        !inherits_from_object(cls, "__getnewargs__")) {
        PyErr_Clear();
        return NULL;
    }
    PyObject *copyreg = PyImport_ImportModule("copyreg");
    PyObject *newobj = copyreg ? PyObject_GetAttrString(copyreg, "__newobj__") : NULL;
    PyObject *state = newobj ? PyObject_CallMethod(self, "__getstate__", NULL) : NULL;
    PyObject *rv = state ? Py_BuildValue("(O(O)OOO)", newobj, (PyObject *)cls, state, Py_None, Py_None) : NULL;
    Py_XDECREF(copyreg);
    Py_XDECREF(newobj);
    Py_XDECREF(state);
    return rv;
}

/* What the class's own __reduce_ex__ gives, with the frozen subclass replaced by the class itself
 * where copyreg names the class to make (copyreg.__newobj__ and _reconstructor take it first). */
static PyObject *reduce_instance(PyObject *self, PyObject *protocol) {
    PyTypeObject *sub = Py_TYPE(self), *cls = sub->tp_base;
    PyObject *plain = reduce_plain_instance(self, cls, protocol);
    if (plain || PyErr_Occurred()) return plain;
    PyObject *reduce = PyObject_GetAttrString((PyObject *)cls, "__reduce_ex__");
    PyObject *rv = reduce ? PyObject_CallFunctionObjArgs(reduce, self, protocol, NULL) : NULL;
    Py_XDECREF(reduce);
    if (!rv || !PyTuple_Check(rv) || PyTuple_GET_SIZE(rv) < 2) return rv;
    PyObject *args = PyTuple_GET_ITEM(rv, 1);
    if (!PyTuple_Check(args) || PyTuple_GET_SIZE(args) < 1 || PyTuple_GET_ITEM(args, 0) != (PyObject *)sub)
        return rv;
    PyObject *new_args = PyTuple_GetSlice(args, 0, PyTuple_GET_SIZE(args));
    PyObject *new_rv = new_args ? PyTuple_GetSlice(rv, 0, PyTuple_GET_SIZE(rv)) : NULL;
    if (new_rv) {
        Py_SETREF(PyTuple_GET_ITEM(new_args, 0), Py_NewRef((PyObject *)cls));
        Py_SETREF(PyTuple_GET_ITEM(new_rv, 1), new_args);
        new_args = NULL;
    }
    Py_XDECREF(new_args);
    Py_DECREF(rv);
    return new_rv;
}

/* An instance's __class__ is its class, not the frozen subclass: pickle checks that copyreg's
 * __newobj__ makes obj.__class__ (reduce_instance names the class). */
static PyObject *class_get(PyObject *self, void *closure) {
    (void)closure;
    return Py_NewRef((PyObject *)Py_TYPE(self)->tp_base);
}

static PyGetSetDef class_getset = {"__class__", class_get, NULL, "The class the object was frozen from.", NULL};

/* Method descriptors over `object`, so that they take any instance as self. */
static PyMethodDef instance_methods[] = {
    {"__setattr__", (PyCFunction)refuse_setattr_method, METH_VARARGS, "Refused: the object is frozen."},
    {"__delattr__", (PyCFunction)refuse_delattr_method, METH_VARARGS, "Refused: the object is frozen."},
    {"__reduce_ex__", (PyCFunction)reduce_instance, METH_O, "Reduce to the class itself (a mutable copy)."},
    {NULL, NULL, 0, NULL},
};
static PyMethodDef container_methods[] = {   /* for a class derived from list, dict, set, bytearray */
    REFUSED(append), REFUSED(extend), REFUSED(insert), REFUSED(pop), REFUSED(remove), REFUSED(clear),
    REFUSED(sort), REFUSED(reverse), REFUSED(popitem), REFUSED(setdefault), REFUSED(update), REFUSED(add),
    REFUSED(discard), REFUSED(intersection_update), REFUSED(difference_update),
    REFUSED(symmetric_difference_update),
    {"__setitem__", (PyCFunction)refuse_setitem, METH_VARARGS, "Refused: the object is frozen."},
    {"__delitem__", (PyCFunction)refuse_delitem, METH_VARARGS, "Refused: the object is frozen."},
    {"__iadd__", (PyCFunction)refuse_inplace, METH_VARARGS, "Refused: the object is frozen."},
    {"__imul__", (PyCFunction)refuse_inplace, METH_VARARGS, "Refused: the object is frozen."},
    {"__ior__", (PyCFunction)refuse_inplace, METH_VARARGS, "Refused: the object is frozen."},
    {"__iand__", (PyCFunction)refuse_inplace, METH_VARARGS, "Refused: the object is frozen."},
    {"__isub__", (PyCFunction)refuse_inplace, METH_VARARGS, "Refused: the object is frozen."},
    {"__ixor__", (PyCFunction)refuse_inplace, METH_VARARGS, "Refused: the object is frozen."},
    {NULL, NULL, 0, NULL},
};

static int add_descriptors(PyObject *namespace, PyMethodDef *defs, bool only_if_defined_by, PyTypeObject *cls) {
    for (PyMethodDef *def = defs; def->ml_name; def++) {
        if (only_if_defined_by && !PyObject_HasAttrString((PyObject *)cls, def->ml_name)) continue;
        PyObject *descr = PyDescr_NewMethod(&PyBaseObject_Type, def);
        if (!descr || PyDict_SetItemString(namespace, def->ml_name, descr) < 0) {
            Py_XDECREF(descr);
            return -1;
        }
        Py_DECREF(descr);
    }
    return 0;
}

static int add_class_getter(PyObject *namespace) {
    PyObject *descr = PyDescr_NewGetSet(&PyBaseObject_Type, &class_getset);
    int result = descr ? PyDict_SetItemString(namespace, "__class__", descr) : -1;
    Py_XDECREF(descr);
    return result;
}

static bool is_frozen_class(binding_state_t *state, PyTypeObject *type) {
    return (type->tp_flags & Py_TPFLAGS_HEAPTYPE) && type->tp_dict && !is_frozen_builtin(state, type) &&
           PyDict_GetItemWithError(type->tp_dict, state->frozen_mark) != NULL;   /* a str key: cannot fail */
}

/* The name CPython's own messages give sub's objects (its tp_name: "cannot create weak reference
 * to 'Point (frozen in region ...)' object") names the region; __name__ and __qualname__ (what
 * Python code reads: repr(), f"{type(self).__name__}(...)") stay the class's.  The text is kept in
 * sub's namespace, which lives as long as sub: no message is made of a class being collected. */
static int name_in_messages(PyTypeObject *sub, PyTypeObject *cls, PyObject *region_desc) {
    const char *dot = strrchr(cls->tp_name, '.');
    PyObject *text = PyUnicode_FromFormat("%s (frozen in %U)", dot ? dot + 1 : cls->tp_name, region_desc);
    const char *utf8 = text && PyObject_SetAttrString((PyObject *)sub, "__region_frozen_name__", text) == 0
                     ? PyUnicode_AsUTF8(text) : NULL;
    Py_XDECREF(text);
    if (!utf8) return -1;
    sub->tp_name = utf8;
    return 0;
}

/* The frozen subclass of cls (made once per freeze: `made` maps classes to them), a new reference;
 * NULL with the error that kept cls from having one (its __init_subclass__, its metaclass, ...). */
static PyTypeObject *frozen_class(PyTypeObject *cls, PyObject *made, PyObject *region_desc) {
    PyObject *sub = PyDict_GetItemWithError(made, (PyObject *)cls);
    if (sub || PyErr_Occurred()) return (PyTypeObject *)Py_XNewRef(sub);
    PyObject *namespace = PyDict_New();
    PyObject *slots = PyTuple_New(0);
    PyObject *module = PyObject_GetAttrString((PyObject *)cls, "__module__");
    PyObject *qualname = module ? PyObject_GetAttrString((PyObject *)cls, "__qualname__") : NULL;
    if (namespace && slots && qualname && PyDict_SetItemString(namespace, "__slots__", slots) == 0 &&
        PyDict_SetItemString(namespace, "__module__", module) == 0 &&
        PyDict_SetItemString(namespace, "__qualname__", qualname) == 0 &&
        PyDict_SetItem(namespace, binding_state()->frozen_mark, (PyObject *)cls) == 0 &&
        add_class_getter(namespace) == 0 &&
        add_descriptors(namespace, instance_methods, false, cls) == 0 &&
        add_descriptors(namespace, container_methods, true, cls) == 0) {
        PyObject *name = PyObject_GetAttrString((PyObject *)cls, "__name__");
        if (name) sub = PyObject_CallFunction((PyObject *)&PyType_Type, "O(O)O", name, (PyObject *)cls, namespace);
        Py_XDECREF(name);
    }
    if (sub && PyType_Check(sub) && name_in_messages((PyTypeObject *)sub, cls, region_desc) < 0) Py_CLEAR(sub);
    Py_XDECREF(namespace);
    Py_XDECREF(slots);
    Py_XDECREF(module);
    Py_XDECREF(qualname);
    if (sub && (!PyType_Check(sub) || ((PyTypeObject *)sub)->tp_basicsize != cls->tp_basicsize ||
                ((PyTypeObject *)sub)->tp_itemsize != cls->tp_itemsize)) {
        Py_CLEAR(sub);
        PyErr_Format(PyExc_TypeError, "its frozen subclass would not have the layout of %s", cls->tp_name);
    }
    if (sub && PyDict_SetItem(made, (PyObject *)cls, sub) < 0) Py_CLEAR(sub);
    return (PyTypeObject *)sub;
}

/* ---- The plan: what each object becomes ----
 *
 * One scan of the region's object heap (proof_foreach_object) sorts every object; no Python code may
 * run inside it, so it only records: the mutable objects with their frozen types (NULL for instances,
 * whose frozen subclasses are made after the scan, which runs Python code), and the first object it
 * cannot freeze.  Each recorded object is held by a reference until the plan is freed, so the code
 * that runs afterwards (making classes and __dict__s, a finalizer of a collection) cannot free it. */

typedef struct frozen_step {
    PyObject *obj;             /* strong */
    PyTypeObject *to;          /* strong; NULL until an instance's frozen subclass is made */
} frozen_step_t;

typedef struct frozen_plan {
    frozen_step_t *steps;
    size_t count, capacity;
    PyObject *refused;         /* strong: the first object that cannot be frozen, or NULL */
    const char *why;           /* ... and why */
    bool failed;               /* out of memory during the scan */
    bool thawing;              /* the scan of a thaw: record frozen objects, refuse nothing */
    PyObject *subclasses;      /* strong: class -> the frozen subclass this freeze made (plan_complete) */
    binding_state_t *state;    /* binding_state() */
} frozen_plan_t;

static void plan_free(frozen_plan_t *plan) {
    for (size_t i = 0; i < plan->count; i++) {
        Py_DECREF(plan->steps[i].obj);
        Py_XDECREF(plan->steps[i].to);
    }
    PyMem_RawFree(plan->steps);
    Py_CLEAR(plan->refused);
    Py_CLEAR(plan->subclasses);
    *plan = (frozen_plan_t){.thawing = plan->thawing, .state = plan->state};
}

static bool plan_add(frozen_plan_t *plan, PyObject *obj, PyTypeObject *to) {
    if (plan->count == plan->capacity) {
        size_t capacity = plan->capacity ? 2 * plan->capacity : 64;
        frozen_step_t *grown = PyMem_RawRealloc(plan->steps, capacity * sizeof *grown);
        if (!grown) {
            plan->failed = true;
            return false;
        }
        plan->steps = grown;
        plan->capacity = capacity;
    }
    plan->steps[plan->count++] = (frozen_step_t){Py_NewRef(obj), (PyTypeObject *)Py_XNewRef((PyObject *)to)};
    return true;
}

static bool is_immutable(PyTypeObject *t) {
    return t == &PyLong_Type || t == &PyBool_Type || t == &PyFloat_Type || t == &PyComplex_Type ||
           t == &PyUnicode_Type || t == &PyBytes_Type || t == &PyTuple_Type || t == &PyFrozenSet_Type ||
           t == &PyRange_Type || t == &PySlice_Type || t == &PyCode_Type || t == Py_TYPE(Py_None) ||
           t == Py_TYPE(Py_Ellipsis) || t == Py_TYPE(Py_NotImplemented);
}

static bool plan_refuse(frozen_plan_t *plan, PyObject *obj, const char *why) {
    if (!plan->refused) {
        plan->refused = Py_NewRef(obj);
        plan->why = why;
    }
    return false;
}

/* Adds a mutable object to freeze, unless weak references point to it: a frozen object has none,
 * so that none is made or dropped (either writes the object), and its frozen type may refuse them
 * (no weak list offset: frozen_types_init, plan_apply) without stranding one. */
static bool plan_freeze(frozen_plan_t *plan, PyObject *obj, PyTypeObject *to) {
    if (rpy_has_weakrefs(obj))
        return plan_refuse(plan, obj, "which weak references point to: a frozen object can have none "
                           "(making or dropping one writes the object), so drop them first");
    return plan_add(plan, obj, to);
}

/* The scan's visitor (no Python code: see above). */
static bool plan_visit(PyObject *obj, void *arg) {
    frozen_plan_t *plan = arg;
    binding_state_t *state = plan->state;
    PyTypeObject *t = Py_TYPE(obj), *to;
    if (plan->thawing) {
        return is_frozen_builtin(state, t) || is_frozen_class(state, t) ? plan_add(plan, obj, t->tp_base) : true;
    } else if ((to = frozen_builtin_for(state, t))) {
        return plan_freeze(plan, obj, to);
    } else if (is_immutable(t)) {
        return true;   /* a str's cached hash and UTF-8 copy are written by the first read, as ever:
                          under one GIL that write is serialized like a reference count's */
    } else if (is_frozen_builtin(state, t) || is_frozen_class(state, t)) {
        return true;   /* frozen already (a close that failed is freezing again) */
    } else if (PyType_Check(obj)) {
        return plan_refuse(plan, obj, "a class made in the region: its attributes cannot be made read-only");
    } else if ((t->tp_flags & Py_TPFLAGS_HEAPTYPE) && !binding_owns_type(t) && !membership_region_of((PyObject *)t)) {
        return plan_freeze(plan, obj, NULL);
    }
    return plan_refuse(plan, obj, "which freeze() cannot make read-only (it freezes lists, dicts, sets, "
                       "bytearrays and instances of classes, and keeps immutable objects as they are)");
}

/* The visitor riding on freeze()'s isolation proof (proof_isolated_visiting): the same sorting, no
 * scan of its own.  NULL: the proof starts a pass again. */
static void plan_each(PyObject *obj, void *arg) {
    if (obj) (void)plan_visit(obj, arg);
    else plan_free(arg);
}

/* Scans self into plan: 0, or -1 with an exception (out of memory; FrozenError is the caller's, from
 * plan->refused). */
static int plan_scan(rpy_region_t *self, frozen_plan_t *plan, bool thawing) {
    *plan = (frozen_plan_t){.thawing = thawing, .state = binding_state()};
    if (proof_foreach_object(self, plan_visit, plan) < 0 || plan->failed) {
        if (!PyErr_Occurred()) PyErr_NoMemory();
        plan_free(plan);
        return -1;
    }
    return 0;
}

/* Raises FrozenError for an object freeze() cannot make read-only: its type, and its path. */
static void refuse_object(rpy_region_t *self, PyObject *obj, const char *why) {
    PyObject *proxy = binding_proxy(self);
    PyObject *audit = proxy ? PyImport_ImportModule("region._audit") : NULL;
    PyObject *path = audit ? PyObject_CallMethod(audit, "path_to", "OO", proxy, obj) : NULL;
    PyObject *desc = path ? region_describe(self) : NULL;
    if (desc)
        PyErr_Format(FrozenError, "cannot freeze %U: %U is a %.100s, %s", desc, path, Py_TYPE(obj)->tp_name, why);
    Py_XDECREF(proxy);
    Py_XDECREF(audit);
    Py_XDECREF(path);
    Py_XDECREF(desc);
}

/* obj.__class__ = to, through object's own setter, whatever obj's class defines (a frozen subclass
 * defines a getter of its own). */
static int set_class(PyObject *obj, PyTypeObject *to) {
    PyObject *name = PyUnicode_InternFromString("__class__");
    PyObject *class_setter = name ? _PyType_Lookup(&PyBaseObject_Type, name) : NULL;   /* borrowed */
    Py_XDECREF(name);
    if (!class_setter || !Py_TYPE(class_setter)->tp_descr_set) {
        if (!PyErr_Occurred()) PyErr_SetString(PyExc_SystemError, "object has no __class__ setter");
        return -1;
    }
    return Py_TYPE(class_setter)->tp_descr_set(class_setter, obj, (PyObject *)to);
}

/* Completes a freeze's plan: the frozen subclass of each instance's class, and each instance's
 * __dict__ (made in a block of self, so it is the region's: reading a frozen instance's __dict__ must
 * not make one), which is frozen like any dict.  0, or -1 with an exception. */
static int plan_complete(rpy_region_t *self, frozen_plan_t *plan) {
    PyObject *desc = region_describe(self);
    if (!desc || !(plan->subclasses = PyDict_New())) {
        Py_XDECREF(desc);
        return -1;
    }
    int result = 0;
    size_t scanned = plan->count;
    for (size_t i = 0; i < scanned && result == 0; i++) {
        if (plan->steps[i].to) continue;
        if ((plan->steps[i].to = frozen_class(Py_TYPE(plan->steps[i].obj), plan->subclasses, desc))) continue;
        /* FrozenError with the object's path, as for anything else freeze() refuses. */
        PyObject *type, *value, *traceback;
        PyErr_Fetch(&type, &value, &traceback);
        PyObject *cause = value ? PyObject_Str(value) : NULL;
        const char *text = cause ? PyUnicode_AsUTF8(cause) : NULL;
        char why[320];
        snprintf(why, sizeof why, "whose class cannot have the frozen subclass freeze() makes: %.250s",
                 text ? text : "?");
        PyErr_Clear();
        refuse_object(self, plan->steps[i].obj, why);
        Py_XDECREF(cause);
        Py_XDECREF(type);
        Py_XDECREF(value);
        Py_XDECREF(traceback);
        result = -1;
    }
    Py_DECREF(desc);
    if (result < 0 || placement_enter(self) < 0) return -1;
    for (size_t i = 0; i < scanned && result == 0; i++) {
        PyObject *obj = plan->steps[i].obj;
        PyTypeObject *t = Py_TYPE(obj);
        if (is_frozen_builtin(plan->state, plan->steps[i].to)) continue;
        if (t->tp_dictoffset == 0 && !(t->tp_flags & Py_TPFLAGS_MANAGED_DICT)) continue;
        PyObject *dict = PyObject_GenericGetDict(obj, NULL);
        if (!dict) result = -1;
        else if (Py_IS_TYPE(dict, &PyDict_Type) && !plan_add(plan, dict, frozen_builtin_for(plan->state, &PyDict_Type)))
            result = -1;
        Py_XDECREF(dict);
    }
    if (placement_exit(self) < 0) result = -1;
    if (plan->failed && !PyErr_Occurred()) PyErr_NoMemory();
    return result;
}

/* Gives each object of the plan its new type, as `__class__` assignment does: the builtin containers
 * directly (same layout; the static type held no reference, the frozen one gets one), instances
 * through object's __class__ setter, which also detaches what the old class's layout shared (3.12+
 * inline values).  In a block of self, so anything that allocates lands in the region.  0, or -1
 * with an exception (the steps before it are done). */
static int plan_apply(rpy_region_t *self, frozen_plan_t *plan) {
    if (placement_enter(self) < 0) return -1;
    int result = 0;
    for (size_t i = 0; i < plan->count && result == 0; i++) {
        PyObject *obj = plan->steps[i].obj;
        PyTypeObject *from = Py_TYPE(obj), *to = plan->steps[i].to;
        if (from == to) continue;   /* a __dict__ found by the scan and again through its instance */
        if (is_frozen_builtin(plan->state, to)) {            /* freezing a container */
            Py_INCREF(to);
            Py_SET_TYPE(obj, to);
        } else if (is_frozen_builtin(plan->state, from)) {   /* thawing one */
            Py_SET_TYPE(obj, to);
            Py_DECREF(from);
        } else {
            /* The __class__ setter wants the layouts alike, weak list offsets included. */
            if (plan->thawing) from->tp_weaklistoffset = to->tp_weaklistoffset;
            result = set_class(obj, to);
        }
    }
    /* Frozen instances refuse weak references: their frozen subclasses lose the offset once every
     * instance has its subclass (none has a weak reference: plan_freeze), until the thaw. */
    PyObject *cls, *sub;
    Py_ssize_t pos = 0;
    while (result == 0 && plan->subclasses && PyDict_Next(plan->subclasses, &pos, &cls, &sub))
        ((PyTypeObject *)sub)->tp_weaklistoffset = 0;
    if (placement_exit(self) < 0) result = -1;
    return result;
}

/* ---- r.freeze() ---- */

/* The plan of a freeze (the caller owns self, proven isolated): 0, or -1 with an exception.  What
 * cannot be frozen may be garbage: one collection, and a second look, before refusing. */
static int freeze_plan(rpy_region_t *self, frozen_plan_t *plan) {
    if (plan_scan(self, plan, false) < 0) return -1;
    if (plan->refused) {
        plan_free(plan);
        if (collect_region(self) < 0 && PyErr_Occurred()) return -1;
        if (!self->r) return region_check_owner(self, "freeze");   /* a finalizer closed it */
        if (plan_scan(self, plan, false) < 0) return -1;
    }
    if (plan->refused) {
        refuse_object(self, plan->refused, plan->why);
        plan_free(plan);
        return -1;
    }
    if (plan_complete(self, plan) < 0) {
        plan_free(plan);
        return -1;
    }
    return 0;
}

/* Applies a freeze's plan (and frees it): self is frozen and nobody owns it.  0, or -1 with an
 * exception. */
static int freeze_owned(rpy_region_t *self, frozen_plan_t *plan) {
    int result = plan_apply(self, plan);
    plan_free(plan);
    if (result < 0) return -1;
    self->frozen_gil = binding_gil();
    __atomic_store_n(&self->frozen, true, __ATOMIC_RELEASE);
    ownership_give_up(self);
    return 0;
}

PyObject *frozen_freeze(RegionObject *o, PyObject *unused) {
    rpy_region_t *self = o->rec;
    (void)unused;
    if (frozen_check_mutable(self, "freeze") < 0 || region_check_owner(self, "freeze") < 0) return NULL;
    /* The common case costs one scan: the plan is made by the proof's own pass.  Otherwise (not
     * proven at once, something that cannot be frozen, a block open) release()'s whole proof decides,
     * and a scan of its own makes the plan. */
    frozen_plan_t plan = {.state = binding_state()};
    bool refers_to_classes, refers_to_mortal;
    int proven = self->blocks_open || self->collecting ? 0
               : proof_isolated_visiting(self, plan_each, &plan, &refers_to_classes, &refers_to_mortal);
    if (proven == 1 && !plan.refused && !plan.failed) {
        proven = plan_complete(self, &plan);
    } else {
        plan_free(&plan);
        if (proven < 0 || ownership_prove(self, "freeze", &refers_to_classes, &refers_to_mortal) < 0 ||
            freeze_plan(self, &plan) < 0)
            return NULL;
        proven = 0;
    }
    if (proven < 0 || freeze_owned(self, &plan) < 0) {
        plan_free(&plan);
        return NULL;
    }
    /* Instances refer to their classes (now their frozen subclasses), this interpreter's. */
    self->classes_of = refers_to_classes ? binding_current_interp() : -1;
    Py_RETURN_NONE;
}

/* ---- r.snapshot(): single writer, many readers ----
 *
 * The writer keeps its region, owned and mutable; each snapshot is a new region holding a copy of the
 * root's graph, frozen, for any number of readers (docs/design.md, "Frozen regions").  The copy is
 * pickle's: dumped outside any block (pickling may fill caches of classes, copyreg's __slotnames__,
 * which must not be region objects) and loaded in a block of the new region, so it holds only new
 * objects, laid out as a private unpickled copy is. */

/* The snapshot's arguments: Region()'s, with the name defaulting to "<name> snapshot". */
static PyObject *snapshot_arguments(RegionObject *o, PyObject *args, PyObject *kwargs) {
    if (PyTuple_GET_SIZE(args) > 0 || (kwargs && PyDict_GetItemString(kwargs, "name"))) return Py_NewRef(args);
    PyObject *name = o->name == Py_None ? Py_NewRef(Py_None) : PyUnicode_FromFormat("%U snapshot", o->name);
    PyObject *with_name = name ? PyTuple_Pack(1, name) : NULL;
    Py_XDECREF(name);
    return with_name;
}

/* Loads `bytes` into a block of snapshot (region._snapshot_loader: pickle.loads, with the names it
 * looks up copied out of the block) and makes the result its root.  The loader is looked up before:
 * a name made in the block would be the region's, and the type attribute cache keeps the names it is
 * asked for.  0, or -1 with an exception. */
static int snapshot_fill(RegionObject *snapshot, PyObject *bytes) {
    PyObject *package = PyImport_ImportModule("region");
    PyObject *loads = package ? PyObject_CallMethod(package, "_snapshot_loader", NULL) : NULL;
    Py_XDECREF(package);
    if (!loads || placement_enter(snapshot->rec) < 0) {
        Py_XDECREF(loads);
        return -1;
    }
    PyObject *copy = PyObject_CallOneArg(loads, bytes);
    int result = placement_exit(snapshot->rec) < 0 || !copy ? -1 : PyObject_SetAttrString((PyObject *)snapshot, "root", copy);
    Py_XDECREF(copy);
    Py_DECREF(loads);
    return result;
}

/* pickle refused self's graph: RegionError naming the region, caused by pickle's error. */
static void snapshot_refused(rpy_region_t *self) {
    PyObject *type, *cause, *traceback;
    PyErr_Fetch(&type, &cause, &traceback);
    PyErr_NormalizeException(&type, &cause, &traceback);
    if (cause && traceback) PyException_SetTraceback(cause, traceback);
    PyObject *desc = region_describe(self);
    if (desc)
        PyErr_Format(RegionError, "snapshot: the graph of %U cannot be copied: pickle refused it: %S", desc,
                     cause ? cause : Py_None);
    Py_XDECREF(desc);
    if (cause) {
        PyObject *etype, *error, *etraceback;
        PyErr_Fetch(&etype, &error, &etraceback);
        PyErr_NormalizeException(&etype, &error, &etraceback);
        if (error) PyException_SetCause(error, Py_NewRef(cause));   /* steals the new reference */
        PyErr_Restore(etype, error, etraceback);
    }
    Py_XDECREF(type);
    Py_XDECREF(cause);
    Py_XDECREF(traceback);
}

PyObject *frozen_snapshot(RegionObject *o, PyObject *args, PyObject *kwargs) {
    rpy_region_t *self = o->rec;
    if (frozen_check_reader(self, "snapshot") < 0) return NULL;
    if (!self->root) {
        PyObject *desc = region_describe(self);
        if (desc) PyErr_Format(RegionError, "snapshot: %U has no root to copy (set r.root first)", desc);
        Py_XDECREF(desc);
        return NULL;
    }
    /* Outside any block the caller has open: the bytes, and the new Region, are not to be its. */
    if (placement_suspend() < 0) return NULL;
    PyObject *pickle = PyImport_ImportModule("pickle");
    PyObject *root = Py_NewRef(self->root);   /* held: pickling may run code */
    PyObject *bytes = pickle ? PyObject_CallMethod(pickle, "dumps", "Oi", root, -1) : NULL;
    Py_DECREF(root);
    if (!bytes && pickle) snapshot_refused(self);
    PyObject *snapshot_args = bytes ? snapshot_arguments(o, args, kwargs) : NULL;
    PyObject *snapshot = snapshot_args ? PyObject_Call((PyObject *)Py_TYPE(o), snapshot_args, kwargs) : NULL;
    PyObject *frozen = NULL;
    if (snapshot && snapshot_fill((RegionObject *)snapshot, bytes) == 0)
        frozen = frozen_freeze((RegionObject *)snapshot, NULL);
    if (snapshot && !frozen) {   /* nothing half-made is left: close it, keeping the first error */
        PyObject *type, *value, *traceback;
        PyErr_Fetch(&type, &value, &traceback);
        PyObject *closed = PyObject_CallMethod(snapshot, "close", NULL);
        if (!closed) PyErr_WriteUnraisable(snapshot);
        Py_XDECREF(closed);
        PyErr_Restore(type, value, traceback);
        Py_CLEAR(snapshot);
    }
    Py_XDECREF(frozen);
    Py_XDECREF(snapshot_args);
    Py_XDECREF(bytes);
    Py_XDECREF(pickle);
    if (placement_resume() < 0) Py_CLEAR(snapshot);
    return snapshot;
}

/* ---- Who may do what ---- */

int frozen_check_mutable(rpy_region_t *self, const char *what) {
    if (!__atomic_load_n(&self->frozen, __ATOMIC_ACQUIRE) || !self->r) return 0;
    PyObject *desc = region_describe(self);
    if (desc)
        PyErr_Format(RegionError, "%s: %U is frozen: it has no owner, so it cannot be acquired, released "
                     "or entered, and it is read-only; read it from any thread (region.adopt(id) in "
                     "another interpreter) and close() it when done", what, desc);
    Py_XDECREF(desc);
    return -1;
}

bool frozen_read_elsewhere(rpy_region_t *self) {
    /* Not self->r: close() may be writing it (frozen_view_root says why that read is then harmless). */
    return __atomic_load_n(&self->frozen, __ATOMIC_ACQUIRE) && binding_gil() != self->frozen_gil;
}

int frozen_check_reader(rpy_region_t *self, const char *what) {
    if (!__atomic_load_n(&self->frozen, __ATOMIC_ACQUIRE) || !self->r) return region_check_owner(self, what);
    PyObject *desc = NULL;
    int64_t here = binding_current_interp();
    if (binding_gil() != self->frozen_gil && self->classes_of >= 0) {
        desc = region_describe(self);
        PyErr_Format(IsolationError, "%s: %U cannot be read under another GIL than the one it was frozen "
                     "under: its objects are instances of classes of interpreter %lld", what, desc,
                     (long long)self->classes_of);
    } else if (binding_gil() != self->frozen_gil) {
        desc = region_describe(self);
        PyErr_Format(RegionError, "%s: %U was frozen under another GIL than interpreter %lld's: there, "
                     "r.root (a region.FrozenView) is all that may be read (docs/python.md, 'Frozen "
                     "regions')", what, desc, (long long)here);
    } else if (self->classes_of >= 0 && self->classes_of != here &&
               rpy_interp_kind(self->classes_of) != RPY_INTERP_GONE) {
        desc = region_describe(self);
        PyErr_Format(IsolationError, "%s: %U cannot be read in interpreter %lld: its objects are "
                     "instances of classes of interpreter %lld, which froze it", what, desc,
                     (long long)here, (long long)self->classes_of);
    } else {
        return 0;
    }
    Py_XDECREF(desc);
    return -1;
}

bool frozen_shareable(rpy_region_t *self) {
    return self->r && __atomic_load_n(&self->frozen, __ATOMIC_ACQUIRE) && binding_gil() == self->frozen_gil &&
           self->classes_of < 0;
}

int frozen_check_adoptable(rpy_region_t *self) {
    if (!frozen_read_elsewhere(self) || self->classes_of < 0) return 0;
    return frozen_check_reader(self, "adopt");
}

/* ---- close() ----
 *
 * The region is not frozen from the moment the proof has passed, before the thaw: this GIL's other
 * threads then need the owner, the closing thread, to read it, so none takes an object while the GIL
 * switches during the thaw (it may collect, and run finalizers) and changes it once thawed. */

/* Interpreters of other GILs that hold a Region of self (their views hold it too).  When there are
 * none, self is `closing` from here on: no other GIL may start reading it (frozen_view.c). */
static int holders_elsewhere(rpy_region_t *self) {
    int holders = 0;
    binding_lock();
    for (int g = 0; g < RPY_MAX_GILS; g++) holders += g != self->frozen_gil && self->proxies[g];
    if (!holders) __atomic_store_n(&self->closing, true, __ATOMIC_SEQ_CST);
    binding_unlock();
    return holders;
}

/* Gives every frozen object of self its own type back (the caller owns self).  0 or -1. */
static int thaw(rpy_region_t *self) {
    frozen_plan_t plan;
    if (plan_scan(self, &plan, true) < 0) return -1;
    int result = plan_apply(self, &plan);
    plan_free(&plan);
    return result;
}

int frozen_thaw_for_close(rpy_region_t *self) {
    PyObject *desc = NULL;
    if (frozen_check_reader(self, "close") < 0) return -1;
    int holders = holders_elsewhere(self);
    if (holders) {
        desc = region_describe(self);
        PyErr_Format(RegionError, "cannot close %U: %d interpreter(s) with a GIL of their own still hold a "
                     "Region of it, or a view into it (region.FrozenView); they must drop them first", desc,
                     holders);
        Py_XDECREF(desc);
        return -1;
    }
    /* Nobody owns a frozen region: this takes it without waiting. */
    if (!ownership_try_take(self)) {
        __atomic_store_n(&self->closing, false, __ATOMIC_SEQ_CST);
        PyErr_SetString(PyExc_SystemError, "a frozen region has an owner");
        return -1;
    }
    /* Proven with the objects still frozen: no reader can add a reference meanwhile.  Strictly: an
     * ordinary close() gives what only the interpreter's state holds back to the ordinary heap
     * (audit_incoming), but the holder of a frozen object may be another region, which no referrer
     * search sees, so every holder is refused. */
    bool refers_to_classes, refers_to_mortal;
    int proven = proof_isolated(self, &refers_to_classes, &refers_to_mortal);
    if (proven == 0) {
        PyObject *isolated = audit_check(self);
        proven = isolated ? 1 : -1;
        Py_XDECREF(isolated);
    }
    if (proven < 0) {
        __atomic_store_n(&self->closing, false, __ATOMIC_SEQ_CST);
        ownership_give_up(self);
        return -1;
    }
    /* Not frozen from here on, so this GIL's other threads need the owner - the caller - to read
     * it: none can take an object while the GIL switches during the thaw (it may collect, and run
     * finalizers) and change it once thawed. */
    __atomic_store_n(&self->frozen, false, __ATOMIC_RELEASE);
    if (thaw(self) < 0) {
        frozen_refreeze_after_failed_close(self);   /* the objects thawed so far are frozen again */
        return -1;
    }
    return 0;
}

void frozen_refreeze_after_failed_close(rpy_region_t *self) {
    PyObject *type, *value, *traceback;
    PyErr_Fetch(&type, &value, &traceback);
    __atomic_store_n(&self->closing, false, __ATOMIC_SEQ_CST);
    /* The close ran finalizers in the calling thread, which may have changed the thawed objects: only
     * a region still proven isolated is frozen again.  Otherwise it stays the caller's, unfrozen. */
    bool refers_to_classes, refers_to_mortal;
    frozen_plan_t plan;
    int proven = proof_isolated(self, &refers_to_classes, &refers_to_mortal);
    if (proven == 1 && (freeze_plan(self, &plan) < 0 || freeze_owned(self, &plan) < 0)) proven = -1;
    if (proven < 0) PyErr_WriteUnraisable(NULL);   /* beside the close's own error */
    PyErr_Restore(type, value, traceback);
}

/* ---- r.frozen ---- */

PyObject *frozen_get(RegionObject *o, void *closure) {
    (void)closure;
    return PyBool_FromLong(o->rec->r && __atomic_load_n(&o->rec->frozen, __ATOMIC_ACQUIRE));
}
