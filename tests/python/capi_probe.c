/* capi_probe.c - _capi_probe: every call of pyregion.h, callable from Python, for test_capi.py.
 *
 * It is built like a third-party extension: it includes pyregion.h only, links nothing of the package
 * and reaches it through the capsule.  Python None stands for a NULL argument, so the tests can pass
 * what a careless C caller would; pointers travel as ints.
 */
#include <pyregion.h>

static PyObject *null_if_none(PyObject *o) { return o == Py_None ? NULL : o; }

static void *as_pointer(PyObject *o) { return o == Py_None ? NULL : PyLong_AsVoidPtr(o); }

/* Loads the capsule anew (the static table is dropped first): what a fresh extension would get. */
static PyObject *probe_import(PyObject *m, PyObject *unused) {
    (void)m, (void)unused;
    PyRegion_API = NULL;
    if (PyRegion_Import() < 0) return NULL;
    Py_RETURN_NONE;
}

/* A copy of the package's capsule claiming API version `version`: an older package, as a header built
 * against a newer one sees it. */
static PyRegion_CAPI older_package;

static PyObject *probe_older_capsule(PyObject *m, PyObject *arg) {
    (void)m;
    const PyRegion_CAPI *real = PyCapsule_Import(PYREGION_CAPSULE_NAME, 0);
    if (!real) return NULL;
    older_package = *real;
    older_package.api_version = (unsigned)PyLong_AsUnsignedLong(arg);
    if (PyErr_Occurred()) return NULL;
    return PyCapsule_New(&older_package, PYREGION_CAPSULE_NAME, NULL);
}

static PyObject *probe_api_version(PyObject *m, PyObject *unused) {
    (void)m, (void)unused;
    return PyLong_FromLong(PYREGION_API_VERSION);
}

static PyObject *probe_of(PyObject *m, PyObject *obj) { (void)m; return PyRegion_Of(null_if_none(obj)); }
static PyObject *probe_current(PyObject *m, PyObject *unused) { (void)m, (void)unused; return PyRegion_Current(); }

static PyObject *probe_malloc(PyObject *m, PyObject *args) {
    (void)m;
    PyObject *region;
    Py_ssize_t n;
    if (!PyArg_ParseTuple(args, "On", &region, &n)) return NULL;
    void *p = PyRegion_Malloc(null_if_none(region), (size_t)n);
    if (!p) return NULL;
    memset(p, 0xAB, (size_t)n);   /* every byte is writable */
    return PyLong_FromVoidPtr(p);
}

static PyObject *probe_free(PyObject *m, PyObject *args) {
    (void)m;
    PyObject *region, *p;
    if (!PyArg_ParseTuple(args, "OO", &region, &p)) return NULL;
    void *block = as_pointer(p);
    if (PyErr_Occurred()) return NULL;
    PyRegion_Free(null_if_none(region), block);
    if (PyErr_Occurred()) return NULL;
    Py_RETURN_NONE;
}

static PyObject *probe_new_handle(PyObject *m, PyObject *args) {
    (void)m;
    PyObject *region, *obj;
    if (!PyArg_ParseTuple(args, "OO", &region, &obj)) return NULL;
    return PyRegion_NewHandle(null_if_none(region), null_if_none(obj));
}

static PyObject *probe_resolve(PyObject *m, PyObject *h) { (void)m; return PyRegion_Resolve(null_if_none(h)); }

static PyObject *probe_acquire(PyObject *m, PyObject *args) {
    (void)m;
    PyObject *region;
    double timeout;
    if (!PyArg_ParseTuple(args, "Od", &region, &timeout)) return NULL;
    int got = PyRegion_Acquire(null_if_none(region), timeout);
    return got < 0 ? NULL : PyLong_FromLong(got);
}

static PyObject *probe_release(PyObject *m, PyObject *region) {
    (void)m;
    return PyRegion_Release(null_if_none(region)) < 0 ? NULL : Py_NewRef(Py_None);
}

static PyObject *probe_as_region(PyObject *m, PyObject *region) {
    (void)m;
    region_t *r = PyRegion_AsRegion(null_if_none(region));
    return r ? PyLong_FromVoidPtr(r) : NULL;
}

/* ---- PyRegion_Lib(): results as (value, the status of the call) ---- */

/* region_last_status() is the last FAILING call's: a call that succeeded reports REGION_OK. */
static PyObject *lib_result(PyObject *value, int failed) {
    if (!value) return NULL;
    return Py_BuildValue("(Ns)", value, PyRegion_Lib()->strerror(failed ? PyRegion_Lib()->last_status() : REGION_OK));
}

static PyObject *probe_lib_alloc(PyObject *m, PyObject *args) {
    (void)m;
    PyObject *r;
    Py_ssize_t n;
    int zero;
    if (!PyArg_ParseTuple(args, "Onp", &r, &n, &zero)) return NULL;
    region_t *region = as_pointer(r);
    void *p = zero ? PyRegion_Lib()->calloc(region, (size_t)n, 1) : PyRegion_Lib()->alloc(region, (size_t)n);
    if (p && zero)
        for (Py_ssize_t i = 0; i < n; i++)
            if (((char *)p)[i]) return PyErr_Format(PyExc_AssertionError, "calloc: byte %zd is not 0", i);
    if (p) memset(p, 0xCD, (size_t)n);
    return lib_result(p ? PyLong_FromVoidPtr(p) : Py_NewRef(Py_None), !p);
}

static PyObject *probe_lib_realloc(PyObject *m, PyObject *args) {
    (void)m;
    PyObject *r, *p;
    Py_ssize_t n;
    if (!PyArg_ParseTuple(args, "OOn", &r, &p, &n)) return NULL;
    void *moved = PyRegion_Lib()->realloc(as_pointer(r), as_pointer(p), (size_t)n);
    return lib_result(moved ? PyLong_FromVoidPtr(moved) : Py_NewRef(Py_None), !moved);
}

static PyObject *probe_lib_free(PyObject *m, PyObject *args) {
    (void)m;
    PyObject *r, *p;
    if (!PyArg_ParseTuple(args, "OO", &r, &p)) return NULL;
    region_status status = PyRegion_Lib()->free(as_pointer(r), as_pointer(p));
    return Py_BuildValue("(ss)", PyRegion_Lib()->strerror(status), PyRegion_Lib()->last_error());
}

static PyObject *probe_lib_usable_size(PyObject *m, PyObject *args) {
    (void)m;
    PyObject *r, *p;
    if (!PyArg_ParseTuple(args, "OO", &r, &p)) return NULL;
    size_t size = PyRegion_Lib()->usable_size(as_pointer(r), as_pointer(p));
    return lib_result(PyLong_FromSize_t(size), size == 0);
}

static PyObject *probe_lib_describe(PyObject *m, PyObject *r) {
    (void)m;
    region_t *region = as_pointer(r);
    const char *name = PyRegion_Lib()->name(region);
    uint64_t id = PyRegion_Lib()->id(region);
    return lib_result(Py_BuildValue("(zK)", name, (unsigned long long)id), !name || !id);
}

static PyObject *probe_lib_last_error(PyObject *m, PyObject *unused) {
    (void)m, (void)unused;
    return PyUnicode_FromString(PyRegion_Lib()->last_error());
}

static PyObject *probe_lib_version(PyObject *m, PyObject *unused) {
    (void)m, (void)unused;
    return PyUnicode_FromString(PyRegion_Lib()->version());
}

static PyMethodDef probe_methods[] = {
    {"import_api", probe_import, METH_NOARGS, NULL},
    {"older_capsule", probe_older_capsule, METH_O, NULL},
    {"api_version", probe_api_version, METH_NOARGS, NULL},
    {"of", probe_of, METH_O, NULL},
    {"current", probe_current, METH_NOARGS, NULL},
    {"malloc", probe_malloc, METH_VARARGS, NULL},
    {"free", probe_free, METH_VARARGS, NULL},
    {"new_handle", probe_new_handle, METH_VARARGS, NULL},
    {"resolve", probe_resolve, METH_O, NULL},
    {"acquire", probe_acquire, METH_VARARGS, NULL},
    {"release", probe_release, METH_O, NULL},
    {"as_region", probe_as_region, METH_O, NULL},
    {"lib_alloc", probe_lib_alloc, METH_VARARGS, NULL},
    {"lib_realloc", probe_lib_realloc, METH_VARARGS, NULL},
    {"lib_free", probe_lib_free, METH_VARARGS, NULL},
    {"lib_usable_size", probe_lib_usable_size, METH_VARARGS, NULL},
    {"lib_describe", probe_lib_describe, METH_O, NULL},
    {"lib_last_error", probe_lib_last_error, METH_NOARGS, NULL},
    {"lib_version", probe_lib_version, METH_NOARGS, NULL},
    {NULL, NULL, 0, NULL},
};

static int probe_exec(PyObject *module) {
    (void)module;
    return PyRegion_Import();
}

static PyModuleDef_Slot probe_slots[] = {
    {Py_mod_exec, probe_exec},
#if PY_VERSION_HEX >= 0x030C0000
    {Py_mod_multiple_interpreters, Py_MOD_PER_INTERPRETER_GIL_SUPPORTED},
#endif
    {0, NULL},
};

static struct PyModuleDef probe_def = {PyModuleDef_HEAD_INIT, "_capi_probe", NULL, 0, probe_methods, probe_slots,
                                       NULL, NULL, NULL};

PyMODINIT_FUNC PyInit__capi_probe(void) { return PyModuleDef_Init(&probe_def); }
