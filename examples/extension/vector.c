/* vector.c - vector.Vector: a dense vector of doubles whose buffer lives in its object's region.
 *
 * Made inside `with r:`, the object is an object of r (the package's allocator hook puts it there),
 * and its buffer is put in r too with PyRegion_Malloc - also when the vector grows later, outside any
 * block.  So r.close() frees both, and another thread that does not own r gets OwnershipError instead
 * of touching memory it may not.  Made outside every region, a Vector is an ordinary object with a
 * PyMem_Malloc buffer.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <pyregion.h>

typedef struct {
    PyObject_HEAD
    Py_ssize_t n;
    double *data;
    int in_region;           /* data came from PyRegion_Malloc */
} Vector;

static Py_ssize_t live_buffers;   /* made and not yet freed, for the tests */

/* A buffer of n doubles for self: in the region self lives in, or the ordinary heap.  NULL with an
 * exception (MemoryError, or OwnershipError: the calling thread does not own self's region). */
static double *buffer_for(Vector *self, Py_ssize_t n, int *in_region) {
    if ((size_t)n > PY_SSIZE_T_MAX / sizeof(double)) return (double *)PyErr_NoMemory();
    PyObject *region = PyRegion_Of((PyObject *)self);
    if (!region) return NULL;
    double *data;
    *in_region = region != Py_None;
    if (*in_region)
        data = PyRegion_Malloc(region, (size_t)n * sizeof(double));
    else if (!(data = PyMem_Malloc((size_t)n * sizeof(double) + !n)))
        PyErr_NoMemory();
    Py_DECREF(region);
    if (data) live_buffers++;
    return data;
}

static void buffer_free(double *data, int in_region) {
    if (!data) return;
    live_buffers--;
    if (!in_region) {
        PyMem_Free(data);
        return;
    }
    /* NULL: the region the buffer is in - the object's region may have been dissolved since. */
    PyRegion_Free(NULL, data);
    if (PyErr_Occurred()) PyErr_WriteUnraisable(NULL);
}

static PyObject *Vector_new(PyTypeObject *type, PyObject *args, PyObject *kwargs) {
    static char *keywords[] = {"n", "fill", NULL};
    Py_ssize_t n;
    double fill = 0.0;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "n|d:Vector", keywords, &n, &fill)) return NULL;
    if (n < 0) return PyErr_Format(PyExc_ValueError, "Vector(n): n must be >= 0, not %zd", n);
    Vector *self = (Vector *)type->tp_alloc(type, 0);
    if (!self) return NULL;
    self->data = buffer_for(self, n, &self->in_region);
    if (!self->data) {
        Py_DECREF(self);
        return NULL;
    }
    self->n = n;
    for (Py_ssize_t i = 0; i < n; i++) self->data[i] = fill;
    return (PyObject *)self;
}

static void Vector_dealloc(Vector *self) {
    PyTypeObject *type = Py_TYPE(self);
    /* A deallocator may run while an exception is set: keep it apart from buffer_free's. */
#if PY_VERSION_HEX >= 0x030C0000
    PyObject *pending = PyErr_GetRaisedException();
    buffer_free(self->data, self->in_region);
    PyErr_SetRaisedException(pending);
#else
    PyObject *pending_type, *pending, *pending_traceback;
    PyErr_Fetch(&pending_type, &pending, &pending_traceback);
    buffer_free(self->data, self->in_region);
    PyErr_Restore(pending_type, pending, pending_traceback);
#endif
    type->tp_free(self);
    Py_DECREF(type);
}

/* v.resize(n): a new buffer, in the region v lives in (wherever the caller is), keeping the values. */
static PyObject *Vector_resize(Vector *self, PyObject *arg) {
    Py_ssize_t n = PyLong_AsSsize_t(arg);
    if (n == -1 && PyErr_Occurred()) return NULL;
    if (n < 0) return PyErr_Format(PyExc_ValueError, "resize(n): n must be >= 0, not %zd", n);
    int in_region;
    double *data = buffer_for(self, n, &in_region);
    if (!data) return NULL;
    for (Py_ssize_t i = 0; i < n; i++) data[i] = i < self->n ? self->data[i] : 0.0;
    buffer_free(self->data, self->in_region);
    self->data = data;
    self->in_region = in_region;
    self->n = n;
    Py_RETURN_NONE;
}

static PyObject *Vector_sum(Vector *self, PyObject *unused) {
    (void)unused;
    double total = 0.0;
    for (Py_ssize_t i = 0; i < self->n; i++) total += self->data[i];
    return PyFloat_FromDouble(total);
}

static Py_ssize_t Vector_length(Vector *self) { return self->n; }

static PyObject *Vector_item(Vector *self, Py_ssize_t i) {
    if (i < 0 || i >= self->n) return PyErr_Format(PyExc_IndexError, "Vector index %zd out of range", i);
    return PyFloat_FromDouble(self->data[i]);
}

static int Vector_ass_item(Vector *self, Py_ssize_t i, PyObject *value) {
    if (i < 0 || i >= self->n) {
        PyErr_Format(PyExc_IndexError, "Vector index %zd out of range", i);
        return -1;
    }
    if (!value) {
        PyErr_SetString(PyExc_TypeError, "Vector items cannot be deleted");
        return -1;
    }
    double d = PyFloat_AsDouble(value);
    if (d == -1.0 && PyErr_Occurred()) return -1;
    self->data[i] = d;
    return 0;
}

static PyObject *Vector_get_in_region(Vector *self, void *closure) {
    (void)closure;
    return PyBool_FromLong(self->in_region);
}

static PyMethodDef Vector_methods[] = {
    {"resize", (PyCFunction)Vector_resize, METH_O, "resize(n): n items, in the vector's region if it has one."},
    {"sum", (PyCFunction)Vector_sum, METH_NOARGS, "The sum of the items."},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef Vector_getset[] = {
    {"in_region", (getter)Vector_get_in_region, NULL, "Whether the buffer is region memory.", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyType_Slot Vector_slots[] = {
    {Py_tp_doc, "Vector(n, fill=0.0): n doubles; made in a region, its buffer is region memory too."},
    {Py_tp_new, Vector_new},
    {Py_tp_dealloc, Vector_dealloc},
    {Py_tp_methods, Vector_methods},
    {Py_tp_getset, Vector_getset},
    {Py_sq_length, Vector_length},
    {Py_sq_item, Vector_item},
    {Py_sq_ass_item, Vector_ass_item},
    {0, NULL},
};

static PyType_Spec Vector_spec = {"vector.Vector", sizeof(Vector), 0, Py_TPFLAGS_DEFAULT, Vector_slots};

static PyObject *live_buffers_get(PyObject *module, PyObject *unused) {
    (void)module, (void)unused;
    return PyLong_FromSsize_t(live_buffers);
}

static PyMethodDef module_methods[] = {
    {"live_buffers", live_buffers_get, METH_NOARGS, "Buffers made and not yet freed by a deallocator."},
    {NULL, NULL, 0, NULL},
};

static int module_exec(PyObject *module) {
    if (PyRegion_Import() < 0) return -1;
    PyObject *type = PyType_FromSpec(&Vector_spec);
    if (!type) return -1;
    int rc = PyModule_AddObjectRef(module, "Vector", type);
    Py_DECREF(type);
    return rc;
}

static PyModuleDef_Slot module_slots[] = {{Py_mod_exec, module_exec}, {0, NULL}};

static struct PyModuleDef module_def = {PyModuleDef_HEAD_INIT, "vector", "An example extension of the region package.",
                                        0, module_methods, module_slots, NULL, NULL, NULL};

PyMODINIT_FUNC PyInit_vector(void) { return PyModuleDef_Init(&module_def); }
