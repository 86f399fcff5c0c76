/* ownership.c - which thread may use a region, and handing a region from one thread to another:
 * r.acquire(timeout), r.release(), `with r.ownership(timeout):`, r.owned, region.adopt(id).
 *
 * THE RULE: a region is owned by at most one thread, and only that thread may use it (`with r:`,
 * r.root, handles, collect, close, ...; region_check_owner() guards each entry point).  Creating a
 * region makes the creating thread its owner.  release() gives it up - only when the region is
 * isolated (audit_check: nothing outside refers in, nothing inside refers to a mutable object
 * outside), so the thread that lets go keeps no way into the graph it handed over, and the graph no
 * way to anything the next owner cannot use.  acquire() waits for the region to be free and takes
 * it.  No object is copied or moved: the next owner reads the very same memory.
 *
 * THE OWNER is libregion's (region-host.h, HOST OWNERSHIP): the thread whose region_thread_token()
 * the region's owner field holds (never reused, unlike thread idents), plus owner_interp, the
 * interpreter the thread used it in, which only the binding knows.  A waiting acquire() sleeps in
 * libregion's wait with the GIL released, in slices, so that signal handlers run between them as
 * threading.Lock's do.  What lets go on the owner's behalf (close, freeze, an interpreter's end)
 * disowns the region (rhost_disown), which wakes the waiters: they find it closed, or take it.
 *
 * INTERPRETERS: the owner is a thread in an interpreter.  adopt(id) finds the region's record
 * anywhere and returns the calling GIL's Region object for it (binding.h), and the same lock hands the
 * region from a thread of one interpreter to a thread of another, under the same GIL or another.
 * What may cross is decided under "Crossing interpreters".
 *
 * THREADS: every function here runs with a GIL held, except the wait inside ownership_wait().
 * owner_interp is written by the owner and read by anyone (atomic); the fields the release proof
 * leaves for the next owner are ordered by libregion's owner lock.
 */
#include "binding.h"

#include <math.h>
#include <string.h>
#include <time.h>

/* Called by the thread libregion has just made the owner: the interpreter it uses the region in. */
static void set_owner_interp(rpy_region_t *self) {
    __atomic_store_n(&self->owner_interp, binding_current_interp(), __ATOMIC_RELAXED);
}

int region_check_owner(rpy_region_t *self, const char *what) {
    PyObject *desc = NULL;
    int64_t interp = binding_current_interp();
    if (!self->r) {
        desc = region_describe(self);
        PyErr_Format(RegionError, "%s: %U is %s", what, desc, self->gone ? self->gone : "gone");
    } else if (ownership_token(self) == 0) {
        desc = region_describe(self);
        PyErr_Format(OwnershipError, "%s: %U is owned by no thread (it was released): acquire it "
                     "first with r.acquire() or `with r.ownership():`", what, desc);
    } else if (ownership_interp(self) != interp) {
        desc = region_describe(self);
        PyErr_Format(OwnershipError, "%s: %U is owned by a thread of interpreter %lld, not by the calling "
                     "interpreter %lld: wait for its release with r.acquire()", what, desc,
                     (long long)ownership_interp(self), (long long)interp);
    } else if (ownership_token(self) != region_thread_token()) {
        desc = region_describe(self);
        PyErr_Format(OwnershipError, "%s: %U is owned by another thread (owner token %llu; the calling "
                     "thread's is %llu): wait for its release with r.acquire()", what, desc,
                     (unsigned long long)ownership_token(self), (unsigned long long)region_thread_token());
    } else {
        return 0;
    }
    Py_XDECREF(desc);
    return -1;
}

void ownership_init(rpy_region_t *self) {
    assert(region_owned(self->r));   /* region_create made the creating thread the owner */
    set_owner_interp(self);
    self->classes_of = -1;   /* made here: nothing to cross yet */
}

bool ownership_try_take(rpy_region_t *self) {
    if (!self->r || rhost_acquire(self->r, self->id, 0) != REGION_OK) return false;
    set_owner_interp(self);
    return true;
}

void ownership_give_up(rpy_region_t *self) {
    if (self->r && ownership_token(self)) rhost_disown(self->r);
}

/* ---- acquire ---- */

static double monotonic_seconds(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

/* timeout (None: wait forever) as seconds, -1 for forever. */
static int timeout_seconds(PyObject *timeout, double *seconds) {
    if (timeout == Py_None) {
        *seconds = -1;
        return 0;
    }
    double t = PyFloat_AsDouble(timeout);
    if (t == -1 && PyErr_Occurred()) {
        PyErr_Format(PyExc_TypeError, "timeout must be a number of seconds or None, not %.100s",
                     Py_TYPE(timeout)->tp_name);
        return -1;
    }
    if (!(t >= 0) || isinf(t)) {
        PyErr_Format(PyExc_ValueError, "timeout must be >= 0 seconds (or None to wait forever), not %R", timeout);
        return -1;
    }
    *seconds = t;
    return 0;
}

/* The one optional argument `timeout` of acquire() and ownership(), as seconds (-1: forever). */
static int parse_timeout(PyObject *args, PyObject *kwargs, const char *format, double *seconds) {
    static char *keywords[] = {"timeout", NULL};
    PyObject *timeout = Py_None;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, format, keywords, &timeout)) return -1;
    return timeout_seconds(timeout, seconds);
}

/* How long one slice of a wait lasts: signal handlers run between slices (libregion's wait is a
 * condition variable, which a signal does not interrupt), so this is how late Ctrl-C can be. */
#define WAIT_SLICE_SECONDS 0.02

/* One attempt to take r, the region `id`, waiting up to `seconds` with the GIL released. */
static region_status take_within(region_t *r, uint64_t id, double seconds) {
    if (seconds <= 0) return rhost_acquire(r, id, 0);
    region_status status;
    Py_BEGIN_ALLOW_THREADS
    status = rhost_acquire(r, id, (uint64_t)(seconds * 1e9) + 1);
    Py_END_ALLOW_THREADS
    return status;
}

/* Makes the calling thread libregion's owner of self's region: 1 taken, 0 timed out (or seconds 0 and
 * busy), -1 with an exception (a signal handler raised, or a wait with no timeout for a region the
 * calling thread owns already in another interpreter, which would never end).  Closed while waiting:
 * 1 with self->r NULL (the caller tells).  The waits release the GIL. */
static int ownership_wait(rpy_region_t *self, double seconds) {
    region_t *r = self->r;
    uint64_t id = self->id;
    double deadline = seconds > 0 ? monotonic_seconds() + seconds : 0;
    for (double slice = 0;; slice = WAIT_SLICE_SECONDS) {
        if (seconds >= 0) {
            double left = seconds == 0 ? 0 : deadline - monotonic_seconds();
            if (slice > 0 && left <= 0) return 0;
            if (slice > left) slice = left;
        }
        if (!self->r) return 1;   /* closed, between two slices */
        region_status status = take_within(r, id, slice);
        if (status == REGION_OK || status == REGION_EDEAD) return 1;
        if (status == REGION_EOWNED && seconds > 0 && slice > 0) {
            /* This thread owns it in another interpreter, which cannot run meanwhile: the wait ends
             * at the timeout, False as any timed wait's.  Libregion does not wait for its own owner,
             * so the slice is slept here. */
            Py_BEGIN_ALLOW_THREADS
            struct timespec nap = {0, (long)(slice * 1e9)};
            nanosleep(&nap, NULL);
            Py_END_ALLOW_THREADS
        } else if (status == REGION_EOWNED && seconds < 0) {   /* a wait that would never end */
            PyObject *desc = region_describe(self);
            if (desc)
                PyErr_Format(OwnershipError, "acquire: the calling thread owns %U already, in interpreter "
                             "%lld: release it there first", desc, (long long)ownership_interp(self));
            Py_XDECREF(desc);
            return -1;
        }
        if (seconds == 0) return 0;   /* not free, and no wait wanted */
        if (PyErr_CheckSignals() < 0) return -1;
    }
}

/* ---- Crossing interpreters ----
 *
 * What a region's objects may refer to outside it is the audit's rule (audit.c): shared singletons,
 * immutable scalars, code objects, types, tuples of those.  In 3.11 every interpreter shares one GIL
 * and one object allocator, so such references are as safe in any interpreter as in the one that made
 * the objects: refcount updates are serialized, and the region's references keep the objects alive
 * whichever interpreter ends first.  The exception is a CLASS defined in Python (a heap type):
 * it belongs to the interpreter whose module defined it (its methods run with that module's globals,
 * and that interpreter's end clears them), and the other interpreters have classes of their own, so an
 * instance would not be an instance of anything they know.  So the release proof notes whether the
 * region refers to classes (classes_of), and another interpreter cannot acquire the region while the
 * interpreter whose classes they are is alive: IsolationError, naming each path to such a class.  Once
 * that interpreter is gone nobody else can use those classes either, and the region may go anywhere.
 *
 * ACROSS GILS (3.12+: interpreters with GILs of their own run in parallel) the rule is stricter: a
 * reference the region holds to a mortal object of the releasing interpreter would have its count
 * updated under two GILs at once (and the object freed by an allocator not its own), so only
 * IMMORTAL outside objects may go with it (None, small ints, interned and code-constant strings,
 * static types: rpy_is_immortal).  The release proof notes whether the region refers to any mortal
 * outside object; when it does, and interpreters of more than one GIL use regions, release() copies
 * the mortal immutable values its lists, tuples and dicts refer to into the region (crossing.c) and,
 * if anything mortal is left, runs the audit with that rule in the releasing interpreter - the only
 * one that may read those objects - and keeps its report (text: no Python object can cross).  An
 * acquire() under another GIL is then refused with that report; under the releasing interpreter's GIL
 * it goes on as before.  Objects the new owner stores in the region may refer to its own mortal
 * objects again: every release decides anew. */

/* Whether interpreters of more than one GIL may use regions now (any attached with its own GIL). */
static bool several_gils(void) {
    return rpy_interp_has_own_gil() || __atomic_load_n(&binding_own_gils, __ATOMIC_RELAXED) > 0;
}

/* Records what another GIL's acquire() must know of self, which the calling thread is giving up: who
 * gives it up, and whether (with the report why) it refers to mortal objects.  refers_to_mortal is
 * the proof's upper bound; the audit decides.  -1 with an exception (not an IsolationError). */
static int note_gil_crossing(rpy_region_t *self, bool refers_to_mortal) {
    PyMem_RawFree(self->gil_crossing_report);
    self->gil_crossing_report = NULL;
    self->released_by = binding_current_interp();
    self->released_own_gil = rpy_interp_has_own_gil();
    self->refers_to_mortal = refers_to_mortal;
    if (!refers_to_mortal || !several_gils()) return 0;
    Py_ssize_t copied = crossing_copy_values(self);   /* constants of the code, in equal copies */
    if (copied < 0) return -1;
    if (copied > 0) {
        bool refers_to_classes;
        if (proof_isolated(self, &refers_to_classes, &self->refers_to_mortal) < 0) return -1;
        if (!self->refers_to_mortal) return 0;
    }
    PyObject *none = audit_gil_crossing(self, "cannot go to an interpreter with another GIL");
    if (none) {   /* only garbage referred to them */
        Py_DECREF(none);
        self->refers_to_mortal = false;
        return 0;
    }
    if (!PyErr_ExceptionMatches(IsolationError)) return -1;
    PyObject *type, *value, *traceback;
    PyErr_Fetch(&type, &value, &traceback);
    PyObject *text = value ? PyObject_Str(value) : NULL;
    const char *utf8 = text ? PyUnicode_AsUTF8(text) : NULL;
    if (utf8) {
        size_t n = strlen(utf8) + 1;
        self->gil_crossing_report = PyMem_RawMalloc(n);
        if (self->gil_crossing_report) memcpy(self->gil_crossing_report, utf8, n);
    }
    PyErr_Clear();
    Py_XDECREF(text);
    Py_XDECREF(type);
    Py_XDECREF(value);
    Py_XDECREF(traceback);
    return 0;   /* without a report (out of memory) the refusal says less, but still refuses */
}

/* Whether the calling interpreter runs under another GIL than the one that gave self up. */
static bool crosses_gil(rpy_region_t *self) {
    int64_t here = binding_current_interp();
    return self->released_by >= 0 && self->released_by != here &&
           (self->released_own_gil || rpy_interp_has_own_gil());
}

/* Whether interpreter `owner` runs under another GIL than the calling thread's interpreter. */
static bool other_gil(int64_t owner) {
    return owner != binding_current_interp() && (rpy_interp_has_own_gil() || rpy_interp_kind(owner) == RPY_INTERP_OWN_GIL);
}

bool ownership_readable(rpy_region_t *self) {
    return !ownership_token(self) || !other_gil(ownership_interp(self));
}

bool ownership_stranded(rpy_region_t *self) {
    if (ownership_token(self)) return other_gil(ownership_interp(self));
    return self->refers_to_mortal && crosses_gil(self);
}

void ownership_abandon(rpy_region_t *self) {
    bool refers_to_classes, refers_to_mortal;
    if (proof_isolated(self, &refers_to_classes, &refers_to_mortal) < 0) {
        PyErr_Clear();
        refers_to_mortal = true;
    }
    if (note_gil_crossing(self, refers_to_mortal) < 0) PyErr_Clear();
    /* As release() does (region.c, LETTING GO), when the owner is the calling thread: its pages would
     * otherwise stay with a thread that may live on, running other interpreters, and collect the next
     * owner's frees never.  A region another thread of the ending interpreter owned keeps them: only
     * a page's own thread may abandon it (that thread's exit will). */
    if (ownership_is_caller(self)) rregion_let_go_pages(self->r);
    ownership_give_up(self);
}

/* Called by a new owner: true (with IsolationError) when its interpreter may not take the region. */
static bool crossing_refused(rpy_region_t *self) {
    int64_t here = ownership_interp(self);
    if (self->refers_to_mortal && crosses_gil(self)) {
        PyObject *desc = region_describe(self);
        PyErr_Format(IsolationError, "acquire: %U cannot be acquired in interpreter %lld, which runs under "
                     "another GIL than interpreter %lld, which released it: only immortal objects may "
                     "be shared across GILs.\n%s", desc, (long long)here, (long long)self->released_by,
                     self->gil_crossing_report ? self->gil_crossing_report
                     : "(its report is missing: no interpreter with its own GIL used regions when it was "
                       "released; release it again to record one)");
        Py_XDECREF(desc);
        return true;
    }
    if (self->classes_of < 0 || self->classes_of == here || rpy_interp_kind(self->classes_of) == RPY_INTERP_GONE)
        return false;
    char why[160];
    snprintf(why, sizeof why, "cannot be acquired in interpreter %lld: its objects refer to classes "
             "of interpreter %lld", (long long)here, (long long)self->classes_of);
    PyObject *none = audit_crossing(self, why);
    if (!none) return true;
    Py_DECREF(none);   /* only garbage referred to them: the region is free to go */
    self->classes_of = -1;
    return false;
}

int ownership_take(rpy_region_t *self, double seconds) {
    if (frozen_check_mutable(self, "acquire") < 0) return -1;
    if (ownership_is_caller(self)) {
        PyObject *desc = region_describe(self);
        PyErr_Format(RegionError, "acquire: the calling thread already owns %U (ownership is not "
                     "recursive)", desc);
        Py_XDECREF(desc);
        return -1;
    }
    if (!self->r) return region_check_owner(self, "acquire");
    if (placement_activate() < 0) return -1;   /* before any of its objects can be freed here */
    region_t *r = self->r;
    int got = ownership_wait(self, seconds);
    if (got <= 0) return got;
    if (!self->r) {   /* closed while this thread waited: it may have taken what the close left */
        if (region_owned(r)) rhost_disown(r);   /* for the next waiter, and the orphans' sweep */
        return region_check_owner(self, "acquire");
    }
    set_owner_interp(self);
    if (crossing_refused(self)) {
        ownership_give_up(self);   /* it stays free for the interpreter it belongs to */
        return -1;
    }
    return 1;
}

PyObject *ownership_acquire(RegionObject *o, PyObject *args, PyObject *kwargs) {
    rpy_region_t *self = o->rec;
    double seconds;
    if (parse_timeout(args, kwargs, "|O:acquire", &seconds) < 0) return NULL;
    int got = ownership_take(self, seconds);
    return got < 0 ? NULL : PyBool_FromLong(got);
}

/* ---- release ---- */

int ownership_prove(rpy_region_t *self, const char *what, bool *refers_to_classes, bool *refers_to_mortal) {
    PyObject *desc = NULL;
    if (self->blocks_open) {
        desc = region_describe(self);
        PyErr_Format(RegionError, "cannot %s %U: %zd `with` block(s) are open on it", what, desc,
                     self->blocks_open);
    } else if (self->collecting) {
        desc = region_describe(self);
        PyErr_Format(RegionError, "cannot %s %U from one of its own finalizers: its collection is "
                     "running", what, desc);
    }
    if (desc) {
        Py_DECREF(desc);
        return -1;
    }
    /* The next owner may be another thread: nothing here may keep a way into the region, and the
     * region no way out to anything but shared immutable objects. */
    int proven = proof_isolated(self, refers_to_classes, refers_to_mortal);
    if (proven == 0 && collect_region(self) > 0) {
        /* The proof counts garbage's references too (a dead closure refers to its module's globals).
         * A collection frees cycles at a fraction of the audit's cost, and runs their finalizers
         * here, in the interpreter that made them, before the region goes elsewhere. */
        if (!self->r) return region_check_owner(self, what);   /* a finalizer closed it */
        proven = proof_isolated(self, refers_to_classes, refers_to_mortal);
    }
    if (proven < 0) return -1;
    if (!proven) {   /* the audit decides, and names the escapes if there are any */
        PyObject *isolated = audit_check(self);
        if (!isolated) return -1;
        Py_DECREF(isolated);
    }
    return 0;
}

int ownership_let_go(rpy_region_t *self) {
    if (frozen_check_mutable(self, "release") < 0 || region_check_owner(self, "release") < 0) return -1;
    bool refers_to_classes, refers_to_mortal;
    if (ownership_prove(self, "release", &refers_to_classes, &refers_to_mortal) < 0) return -1;
    if (note_gil_crossing(self, refers_to_mortal) < 0) return -1;
    self->classes_of = refers_to_classes ? binding_current_interp() : -1;
    rregion_let_go_pages(self->r);   /* the next owner's frees are collected as they happen */
    ownership_give_up(self);
    return 0;
}

PyObject *ownership_release(RegionObject *o, PyObject *unused) {
    rpy_region_t *self = o->rec;
    (void)unused;
    return ownership_let_go(self) < 0 ? NULL : Py_NewRef(Py_None);
}

PyObject *ownership_owned(RegionObject *o) {
    return PyBool_FromLong(ownership_is_caller(o->rec));
}

/* ---- `with r.ownership(timeout):` ---- */

typedef struct {
    PyObject_HEAD
    RegionObject *region;      /* strong */
    double seconds;
} OwnershipObject;

PyObject *ownership_context(RegionObject *self, PyObject *args, PyObject *kwargs) {
    double seconds;
    if (parse_timeout(args, kwargs, "|O:ownership", &seconds) < 0) return NULL;
    OwnershipObject *o = PyObject_New(OwnershipObject, Ownership_Type);
    if (!o) return NULL;
    o->region = (RegionObject *)Py_NewRef(self);
    o->seconds = seconds;
    return (PyObject *)o;
}

static PyObject *Ownership_enter(OwnershipObject *self, PyObject *unused) {
    (void)unused;
    int got = ownership_take(self->region->rec, self->seconds);
    if (got < 0) return NULL;
    if (got == 0) {
        PyObject *desc = region_describe(self->region->rec), *seconds = PyFloat_FromDouble(self->seconds);
        if (desc && seconds)
            PyErr_Format(PyExc_TimeoutError, "could not acquire %U within %R s: another thread owns it", desc,
                         seconds);
        Py_XDECREF(desc);
        Py_XDECREF(seconds);
        return NULL;
    }
    return Py_NewRef(self->region);
}

static PyObject *Ownership_exit(OwnershipObject *self, PyObject *args) {
    (void)args;
    /* Released even when the body raised, which is what a lock's `with` does; if the release itself
     * fails (the region is not isolated) that error replaces the body's and the thread still owns it. */
    if (!self->region->rec->r) Py_RETURN_FALSE;   /* closed in the block: nothing left to release */
    return ownership_let_go(self->region->rec) < 0 ? NULL : Py_NewRef(Py_False);
}

static void Ownership_dealloc(OwnershipObject *self) {
    PyTypeObject *type = Py_TYPE(self);
    Py_DECREF(self->region);
    PyObject_Free(self);
    Py_DECREF(type);
}

static PyMethodDef Ownership_methods[] = {
    {"__enter__", (PyCFunction)Ownership_enter, METH_NOARGS, "Acquire the region (TimeoutError if the wait times out)."},
    {"__exit__", (PyCFunction)Ownership_exit, METH_VARARGS, "Release the region (IsolationError if it is not isolated)."},
    {NULL, NULL, 0, NULL},
};

static PyType_Slot Ownership_slots[] = {
    {Py_tp_doc, "`with r.ownership(timeout=None):` acquires r on entry and releases it on exit."},
    {Py_tp_dealloc, Ownership_dealloc},
    {Py_tp_methods, Ownership_methods},
    {0, NULL},
};

static PyType_Spec Ownership_spec = {"region.Ownership", sizeof(OwnershipObject), 0,
                                     Py_TPFLAGS_DEFAULT | Py_TPFLAGS_IMMUTABLETYPE, Ownership_slots};

int ownership_type_init(PyObject *module) {
    (void)module;
    Ownership_Type = (PyTypeObject *)PyType_FromSpec(&Ownership_spec);
    return Ownership_Type ? 0 : -1;
}

/* ---- region.adopt(id) ---- */

PyObject *ownership_adopt(PyObject *module, PyObject *arg) {
    (void)module;
    if (!PyLong_Check(arg) || PyBool_Check(arg)) {   /* True is an int, but never meant as id 1 */
        PyErr_Format(PyExc_TypeError, "adopt() takes a region id (an int, r.id), not %.100s", Py_TYPE(arg)->tp_name);
        return NULL;
    }
    unsigned long long id = PyLong_AsUnsignedLongLong(arg);
    if (id == (unsigned long long)-1 && PyErr_Occurred()) {
        PyErr_Clear();
        PyErr_Format(PyExc_ValueError, "adopt(): %R is not a region id (ids are ints >= 1)", arg);
        return NULL;
    }
    rpy_region_t *rec = membership_find(id);
    PyObject *found = rec && frozen_check_adoptable(rec) == 0 ? binding_proxy(rec) : NULL;
    if (rec) {
        record_unref(rec);
        return found;
    }
    PyErr_Format(RegionError, "adopt(%llu): no open region has this id (closed, or never created "
                 "in this process)", id);
    return NULL;
}
