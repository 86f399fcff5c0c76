/* crossing.c - what a region takes along to another GIL: the mortal immutable values it refers to
 * are copied into it first.
 *
 * Across GILs only immortal objects outside a region may stay referred to (ownership.c, "Crossing
 * interpreters").  The ones a program meets all the time are values of the code it ran - a float or
 * big-int constant, a str literal that is not interned, a str key a 3.13 subinterpreter interned -
 * stored into a region object.  They are immutable, so an equal copy in the region serves just as
 * well: release() makes one for each such value that a list, a tuple or a dict of the region refers
 * to (dict keys keep their place: rpy_dict_replace_key), in a block of the region, before its proof
 * decides what is left.  Identity is what changes: `x is CONSTANT` no longer holds for the copy.
 * Anything else mortal outside (a class, an instance's attribute values, a frozenset) still keeps
 * the region under its GIL, with the audit's report.
 *
 * The copying runs in the releasing interpreter, the owner's: the originals are its objects, and
 * dropping the region's references to them (Py_SETREF) runs only their deallocators (no Python code:
 * these types have no finalizers).
 */
#include "binding.h"

static bool is_copyable(PyObject *op) {
    if (!op || rpy_is_immortal(op) || membership_region_of(op)) return false;
    PyTypeObject *t = Py_TYPE(op);
    return t == &PyFloat_Type || t == &PyLong_Type || t == &PyUnicode_Type || t == &PyBytes_Type ||
           t == &PyComplex_Type;
}

/* An equal new object (allocated in the open block, so in the region); NULL with an exception. */
static PyObject *copy_of(PyObject *op) {
    PyTypeObject *t = Py_TYPE(op);
    PyObject *copy = NULL;
    if (t == &PyFloat_Type) copy = PyFloat_FromDouble(PyFloat_AS_DOUBLE(op));
    else if (t == &PyComplex_Type) copy = PyComplex_FromCComplex(((PyComplexObject *)op)->cval);
    else if (t == &PyLong_Type) copy = rpy_long_copy(op);
    else if (t == &PyBytes_Type) copy = PyBytes_FromStringAndSize(PyBytes_AS_STRING(op), PyBytes_GET_SIZE(op));
    else copy = PyUnicode_FromKindAndData(PyUnicode_KIND(op), PyUnicode_DATA(op), PyUnicode_GET_LENGTH(op));
    /* A dict finds a str key by its cached hash: the copy's must be there before it replaces one. */
    if (copy && PyObject_Hash(copy) == -1) Py_CLEAR(copy);
    return copy;
}

/* Replaces *slot (a reference op holds) with a copy: 1 copied, 0 not copyable, -1 error. */
static int copy_into(PyObject **slot) {
    if (!is_copyable(*slot)) return 0;
    PyObject *copy = copy_of(*slot);
    if (!copy) return -1;
    Py_SETREF(*slot, copy);
    return 1;
}

static Py_ssize_t copy_in_dict(PyObject *dict) {
    Py_ssize_t copied = 0, pos = 0;
    PyObject *key, *value;
    while (PyDict_Next(dict, &pos, &key, &value)) {
        if (is_copyable(value)) {
            PyObject *copy = copy_of(value);
            /* The key is there: setting it replaces the value in place (no resize, order kept). */
            if (!copy || PyDict_SetItem(dict, key, copy) < 0) {
                Py_XDECREF(copy);
                return -1;
            }
            Py_DECREF(copy);
            copied++;
        }
        if (is_copyable(key)) {
            PyObject *copy = copy_of(key);
            if (!copy) return -1;
            copied += rpy_dict_replace_key(dict, pos, copy);
            Py_DECREF(copy);
        }
    }
    return copied;
}

static Py_ssize_t copy_in(PyObject *op) {
    Py_ssize_t copied = 0;
    if (PyList_CheckExact(op) || PyTuple_CheckExact(op)) {
        PyObject **items = PyList_CheckExact(op) ? ((PyListObject *)op)->ob_item : ((PyTupleObject *)op)->ob_item;
        for (Py_ssize_t i = 0; i < Py_SIZE(op); i++) {
            int rc = copy_into(&items[i]);
            if (rc < 0) return -1;
            copied += rc;
        }
    } else if (PyDict_CheckExact(op)) {
        copied = copy_in_dict(op);
    }
    return copied;
}

/* The deep copy of a region's immutable value made outside every region (placement suspended): a
 * float, int, complex, str or bytes, or a tuple of such (an empty or shared one is returned as is).
 * NULL with TypeError for anything else. */
static PyObject *copy_out_value(PyObject *op, int depth) {
    if (rpy_is_shared(op) || !membership_region_of(op)) return Py_NewRef(op);
    if (PyTuple_CheckExact(op) && depth < 32) {
        Py_ssize_t n = PyTuple_GET_SIZE(op);
        PyObject *copy = PyTuple_New(n);
        for (Py_ssize_t i = 0; copy && i < n; i++) {
            PyObject *item = copy_out_value(PyTuple_GET_ITEM(op, i), depth + 1);
            if (!item) Py_CLEAR(copy);
            else PyTuple_SET_ITEM(copy, i, item);
        }
        return copy;
    }
    PyTypeObject *t = Py_TYPE(op);
    if (t == &PyFloat_Type || t == &PyLong_Type || t == &PyUnicode_Type || t == &PyBytes_Type ||
        t == &PyComplex_Type)
        return copy_of(op);
    PyErr_Format(PyExc_TypeError, "copy_out: a %.100s is not an immutable value", t->tp_name);
    return NULL;
}

PyObject *crossing_copy_out(PyObject *op) {
    if (placement_suspend() < 0) return NULL;
    PyObject *copy = copy_out_value(op, 0);
    if (placement_resume() < 0) Py_CLEAR(copy);
    return copy;
}

Py_ssize_t crossing_copy_values(rpy_region_t *self) {
    PyObject **objects;
    size_t count;
    /* The walk's pointers are borrowed: no collection may run (and free one) while they are used. */
    bool gc_was_enabled = rpy_gc_pause();
    if (proof_heap_objects(self, false, &objects, &count) < 0) {
        rpy_gc_resume(gc_was_enabled);
        return -1;
    }
    Py_ssize_t copied = 0;
    if (placement_enter(self) == 0) {   /* the copies are made in the region */
        for (size_t i = 0; i < count && copied >= 0; i++) {
            Py_ssize_t n = copy_in(objects[i]);
            copied = n < 0 ? -1 : copied + n;
        }
        if (placement_exit(self) < 0 && copied >= 0) copied = -1;
    } else {
        copied = -1;
    }
    PyMem_RawFree(objects);
    rpy_gc_resume(gc_was_enabled);
    return copied;
}
