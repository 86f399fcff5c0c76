/* handle.c - region.Handle: a weak reference to any object of a region.
 *
 * A Handle is libregion's handle {region id, entry, generation} to the object's memory block, plus
 * the object's offset in its block (the GC header comes first).  It holds no reference to the
 * object or the region.  The allocator hook frees every region block through rhost_free_block,
 * which clears the block's handle entry (and bumps its generation), so a Handle dies exactly when its
 * object's memory is freed: an object kept only by a garbage cycle stays reachable through handles
 * until the cycle is collected, as with weakref.  No freelist keeps a region object's memory (the
 * guards in internals.c), so "the block is live" means "the object exists" - but not that it is
 * alive: between its last reference going and its memory being freed, an object is being torn down
 * (its tp_dealloc runs, which may run other objects' __del__, or the trashcan parks it for later) with
 * a reference count of 0.  Such an object is dead to a handle: handing it out again would give Python
 * code an object whose memory is freed as soon as the deallocator returns.  (Inside its own __del__
 * an object has a count of 1 again, and a handle may resurrect it, as `self` can.)
 */
#include "binding.h"

typedef struct HandleObject {
    PyObject_HEAD
    region_handle_t h;
    uint32_t offset;         /* object = block + offset */
    PyObject *type_name;     /* of the target, for repr and messages */
    PyObject *region_name;
} HandleObject;

PyObject *handle_new(rpy_region_t *self, PyObject *obj) {
    rpy_region_t *owner = membership_region_of(obj);
    if (owner != self) {
        PyObject *desc = region_describe(self);
        rpy_region_t *held = owner ? membership_hold(obj) : NULL;   /* another GIL's region, maybe */
        if (held) {
            PyObject *other = region_describe(held);
            record_unref(held);
            PyErr_Format(RegionError, "cannot make a handle in %U to <%.100s object at %p>: it belongs "
                         "to %U (make the handle there)", desc, Py_TYPE(obj)->tp_name, (void *)obj, other);
            Py_XDECREF(other);
        } else {
            PyErr_Format(RegionError, "cannot make a handle in %U to <%.100s object at %p>: it is not "
                         "an object of any region", desc, Py_TYPE(obj)->tp_name, (void *)obj);
        }
        Py_XDECREF(desc);
        return NULL;
    }
    void *block = rpy_block_of(obj);
    region_handle_t h;
    region_status status = rhost_handle_new(self->r, block, &h);
    if (status != REGION_OK) {
        PyErr_Format(status == REGION_ENOMEM ? PyExc_MemoryError : RegionError, "handle: %s",
                     region_last_error());
        return NULL;
    }
    HandleObject *handle = PyObject_GC_New(HandleObject, Handle_Type);
    if (!handle) return NULL;
    handle->h = h;
    handle->offset = (uint32_t)((char *)obj - (char *)block);
    /* Interned: a str made here inside a block would be a region object only the Handle holds. */
    handle->type_name = PyUnicode_InternFromString(Py_TYPE(obj)->tp_name);
    handle->region_name = PyUnicode_InternFromString(self->name);
    if (!handle->type_name || !handle->region_name) {
        Py_DECREF(handle);
        return NULL;
    }
    PyObject_GC_Track(handle);
    return (PyObject *)handle;
}

/* A GC type only so that the audit sees the two strings a Handle holds (it never forms cycles). */
static int Handle_traverse(HandleObject *self, visitproc visit, void *arg) {
    Py_VISIT(self->type_name);
    Py_VISIT(self->region_name);
    Py_VISIT(Py_TYPE(self));
    return 0;
}

static void Handle_dealloc(HandleObject *self) {
    PyTypeObject *type = Py_TYPE(self);
    PyObject_GC_UnTrack(self);
    Py_XDECREF(self->type_name);
    Py_XDECREF(self->region_name);
    PyObject_GC_Del(self);
    Py_DECREF(type);
}

/* The object h names, or NULL: its block was freed, or it is being torn down (a count of 0). */
static PyObject *live_target(HandleObject *self, void *block) {
    PyObject *obj = (PyObject *)((char *)block + self->offset);
    return Py_REFCNT(obj) > 0 ? obj : NULL;
}

/* The handle's region, open, as a new reference (record_unref it), or NULL. */
static rpy_region_t *handle_region(HandleObject *self) {
    return membership_find(self->h.region);
}

static PyObject *Handle_call(HandleObject *self, PyObject *args, PyObject *kwargs) {
    if ((kwargs && PyDict_GET_SIZE(kwargs)) || PyTuple_GET_SIZE(args)) {
        PyErr_SetString(PyExc_TypeError, "Handle() takes no arguments");
        return NULL;
    }
    rpy_region_t *region = handle_region(self);
    if (!region) {
        PyErr_Format(HandleError, "handle to a %U in region %R (id %llu): the region is gone",
                     self->type_name, self->region_name, (unsigned long long)self->h.region);
        return NULL;
    }
    int owned = frozen_check_reader(region, "resolving a handle");   /* OwnershipError */
    void *block;
    region_status status = owned == 0 ? rhost_handle_resolve(self->h, &block) : REGION_OK;
    record_unref(region);
    if (owned < 0) return NULL;
    PyObject *target = status == REGION_OK ? live_target(self, block) : NULL;
    if (!target) {
        const char *why = status == REGION_OK ? "the object is being freed (its reference count is 0)"
                          : status == REGION_EFREED ? "the object was freed" : region_strerror(status);
        PyErr_Format(HandleError, "handle to a %U in region %R (id %llu): %s", self->type_name,
                     self->region_name, (unsigned long long)self->h.region, why);
        return NULL;
    }
    return Py_NewRef(target);
}

static PyObject *Handle_repr(HandleObject *self) {
    rpy_region_t *region = handle_region(self);
    const char *state = !region ? "region gone" : "";
    if (region) {
        void *block;
        state = !ownership_readable(region) ? "region owned under another GIL"
                : rhost_handle_resolve(self->h, &block) == REGION_OK && live_target(self, block) ? "alive"
                : "dead";
        record_unref(region);
    }
    return PyUnicode_FromFormat("<region.Handle to %U in region %R (id %llu), %s>", self->type_name,
                                self->region_name, (unsigned long long)self->h.region, state);
}

static Py_hash_t Handle_hash(HandleObject *self) {
    Py_hash_t x = (Py_hash_t)(self->h.region * 0x9E3779B97F4A7C15ull ^ ((uint64_t)self->h.slot << 32) ^
                              self->h.generation);
    return x == -1 ? -2 : x;
}

static PyObject *Handle_richcompare(HandleObject *self, PyObject *other, int op) {
    if (!PyObject_TypeCheck(other, Handle_Type) || (op != Py_EQ && op != Py_NE)) Py_RETURN_NOTIMPLEMENTED;
    HandleObject *o = (HandleObject *)other;
    bool same = self->h.region == o->h.region && self->h.slot == o->h.slot &&
                self->h.generation == o->h.generation;
    return PyBool_FromLong(op == Py_EQ ? same : !same);
}

static PyObject *Handle_get_alive(HandleObject *self, void *c) {
    (void)c;
    rpy_region_t *region = handle_region(self);
    if (!region) Py_RETURN_FALSE;
    bool readable = ownership_readable(region);
    void *block;
    bool alive = readable && rhost_handle_resolve(self->h, &block) == REGION_OK && live_target(self, block);
    PyObject *desc = readable ? NULL : region_describe(region);
    record_unref(region);
    if (!readable) {   /* its owner may be changing the handle table right now */
        if (desc) PyErr_Format(OwnershipError, "alive: %U is owned by a thread under another GIL, "
                               "whose changes to it cannot be read from here: acquire it first", desc);
        Py_XDECREF(desc);
        return NULL;
    }
    return PyBool_FromLong(alive);
}

static PyObject *Handle_get_region_id(HandleObject *self, void *c) {
    (void)c;
    return PyLong_FromUnsignedLongLong(self->h.region);
}

static PyGetSetDef Handle_getset[] = {
    {"alive", (getter)Handle_get_alive, NULL,
     "Whether the object is still alive and its region still open (ownership is not checked, except that "
     "a region owned under another GIL raises OwnershipError).", NULL},
    {"region_id", (getter)Handle_get_region_id, NULL, "Id of the target's region.", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyType_Slot Handle_slots[] = {
    {Py_tp_doc, "A weak handle to an object of a region: h() returns the object while it is alive and "
                "the caller owns its region, else raises region.HandleError.  Made by Region.handle()."},
    {Py_tp_dealloc, Handle_dealloc},
    {Py_tp_traverse, Handle_traverse},
    {Py_tp_call, Handle_call},
    {Py_tp_repr, Handle_repr},
    {Py_tp_hash, Handle_hash},
    {Py_tp_richcompare, Handle_richcompare},
    {Py_tp_getset, Handle_getset},
    {0, NULL},
};

int handle_type_init(PyObject *module) {
    PyType_Spec spec = {"region.Handle", sizeof(HandleObject), 0, Py_TPFLAGS_DEFAULT | Py_TPFLAGS_DISALLOW_INSTANTIATION | Py_TPFLAGS_HAVE_GC,
                        Handle_slots};
    Handle_Type = (PyTypeObject *)PyType_FromSpec(&spec);
    (void)module;
    return Handle_Type ? 0 : -1;
}
