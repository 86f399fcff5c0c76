/* record.c - a region's record, shared by every interpreter, and its Region objects, one per GIL.
 *
 * WHY TWO: interpreters with their own GIL (3.12+) run in parallel, so a Python object that two of
 * them touch has its reference count updated by two threads at once.  A region handed from one to
 * another must therefore be reached through an object of each: the record (raw memory: the region,
 * its list head, its owner, its root) is shared, and each GIL has its own Region object
 * over it, of its own Region type.  Interpreters that share a GIL (all of 3.11's; the "legacy" ones
 * of 3.12 and 3.13) share one Region object per region, so there a region id names the same object
 * in every interpreter.
 *
 * LOCKING: the records' refs and proxies change under binding_lock (a plain mutex: the GILs do not
 * order each other).  A proxy is created without the lock held (allocating may run a collection) and
 * published under it; whoever publishes second uses the first one.
 */
#include "binding.h"

#include <pthread.h>
#include <string.h>

binding_state_t binding_states[RPY_MAX_GILS];
int binding_own_gils;

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;

void binding_lock(void) { pthread_mutex_lock(&lock); }
void binding_unlock(void) { pthread_mutex_unlock(&lock); }

int binding_gil(void) {
    if (!rpy_interp_has_own_gil()) return 0;
    int index = rpy_interp_index();
    return index < 0 ? 0 : 1 + index;
}

/* An interpreter with its own GIL ends: its types and exceptions go with it. */
void binding_state_forget(void) {
    int gil = binding_gil();
    if (gil == 0) return;
    binding_state_t *state = &binding_states[gil];
    if (state->counted) __atomic_sub_fetch(&binding_own_gils, 1, __ATOMIC_RELAXED);
    state->counted = false;
    Py_CLEAR(state->region_type);
    Py_CLEAR(state->handle_type);
    Py_CLEAR(state->ownership_type);
    Py_CLEAR(state->region_error);
    Py_CLEAR(state->isolation_error);
    Py_CLEAR(state->ownership_error);
    Py_CLEAR(state->handle_error);
    Py_CLEAR(state->frozen_error);
    Py_CLEAR(state->frozen_mark);
    Py_CLEAR(state->frozen_view_type);
    Py_CLEAR(state->frozen_view_iter_type);
    for (int k = 0; k < FROZEN_KINDS; k++) Py_CLEAR(state->frozen_types[k]);
}

bool binding_owns_type(PyTypeObject *type) {
    binding_state_t *state = binding_state();
    for (int k = 0; k < FROZEN_KINDS; k++)
        if (type == state->frozen_types[k]) return true;
    return type == state->region_type || type == state->handle_type || type == state->ownership_type ||
           type == state->frozen_view_type || type == state->frozen_view_iter_type;
}

PyObject *region_describe(rpy_region_t *self) {
    PyObject *name = PyUnicode_FromString(self->name);
    PyObject *description = name ? PyUnicode_FromFormat("region %R (id %llu)", name, (unsigned long long)self->id) : NULL;
    Py_XDECREF(name);
    return description;
}

rpy_region_t *record_new(region_t *r, const char *name) {
    rpy_region_t *rec = PyMem_RawCalloc(1, sizeof *rec);
    size_t length = strlen(name);
    char *copy = rec ? PyMem_RawMalloc(length + 1) : NULL;
    if (!copy) {
        PyMem_RawFree(rec);
        PyErr_NoMemory();
        return NULL;
    }
    memcpy(copy, name, length + 1);
    rec->r = r;
    rec->id = region_id(r);
    rec->name = copy;
    rec->released_by = -1;
    ownership_init(rec);   /* the creating thread owns the region */
    return rec;
}

void record_discard(rpy_region_t *rec) {
    PyMem_RawFree(rec->gil_crossing_report);
    PyMem_RawFree(rec->name);
    PyMem_RawFree(rec);
}

void record_ref(rpy_region_t *rec) {
    binding_lock();
    rec->refs++;
    binding_unlock();
}

void record_unref(rpy_region_t *rec) {
    binding_lock();
    bool last = --rec->refs == 0;
    if (last) membership_unlist_locked(rec);   /* under the same lock: membership_find cannot revive it */
    binding_unlock();
    if (!last) return;
    region_dissolve(rec, "gone");   /* clears the root too, unless the region is left behind */
    record_discard(rec);
}

PyObject *binding_proxy(rpy_region_t *rec) {
    int gil = binding_gil();
    binding_lock();
    RegionObject *self = rec->proxies[gil];
    if (self) Py_INCREF(self);
    binding_unlock();
    if (self) return (PyObject *)self;

    PyTypeObject *type = Region_Type;
    self = (RegionObject *)type->tp_alloc(type, 0);
    if (!self) return NULL;
    self->name = PyUnicode_FromString(rec->name);
    if (!self->name) {
        Py_DECREF(self);
        return NULL;
    }
    binding_lock();
    RegionObject *first = rec->proxies[gil];
    if (first) {
        Py_INCREF(first);
    } else {
        rec->proxies[gil] = self;
        rec->refs++;
        self->rec = rec;
    }
    binding_unlock();
    if (first) {
        Py_DECREF(self);
        return (PyObject *)first;
    }
    return (PyObject *)self;
}

/* For Region_dealloc: self stops being rec's Region.  Returns rec, whose reference the caller drops. */
rpy_region_t *binding_proxy_gone(RegionObject *self) {
    rpy_region_t *rec = self->rec;
    if (!rec) return NULL;
    binding_lock();
    for (int i = 0; i < RPY_MAX_GILS; i++)
        if (rec->proxies[i] == self) rec->proxies[i] = NULL;
    binding_unlock();
    self->rec = NULL;
    return rec;
}
