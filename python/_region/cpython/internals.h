/* internals.h - the binding's only window on CPython's internal structures.
 *
 * Everything that depends on how a particular CPython version lays out its interpreter state (the GC
 * generation lists, the freelists, the object pre-header, dict key tables, the shared singletons) is
 * in internals.c, which alone is compiled with Py_BUILD_CORE_MODULE.  The rest of the binding sees
 * only the functions below.  docs/python.md lists what each of them relies on in 3.11, 3.12 and 3.13.
 *
 * THREADS: every function here must be called with the GIL held, and acts on the calling thread's
 * interpreter.  Interpreters with GILs of their own (3.12+) call them in parallel, so what one
 * interpreter's call changes is that interpreter's (its collector, its freelists, its keys freelist
 * and the calling thread's view of it), and what is process-wide is atomic: the interpreter table
 * (claimed by compare-and-swap), rpy_attach_generation, rpy_blocks_open and the region memory bounds.
 */
#ifndef REGION_PY_INTERNALS_H
#define REGION_PY_INTERNALS_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdbool.h>
#include <stdint.h>

/* A GC list head with the layout of PyGC_Head ({_gc_next, _gc_prev}), usable as one.  A list head
 * must never move or be freed while the list has members. */
typedef struct rpy_gclist {
    uintptr_t next, prev;
} rpy_gclist_t;

/* Fails with ImportError when the running interpreter is not one this file was written for. */
int rpy_internals_init(void);

/* ---- GC lists ---- */

void rpy_gclist_init(rpy_gclist_t *list);
Py_ssize_t rpy_gclist_length(const rpy_gclist_t *list);

/* Calls fn(op, arg) for each member in list order; stops early when fn returns nonzero (and returns
 * that).  fn must not add, move or remove members. */
int rpy_gclist_foreach(rpy_gclist_t *list, int (*fn)(PyObject *op, void *arg), void *arg);

/* Moves every member of `from` to the list route(op, arg) returns, or to the interpreter's youngest
 * generation when it returns NULL. */
void rpy_gclist_route(rpy_gclist_t *from, rpy_gclist_t *(*route)(PyObject *op, void *arg), void *arg);

/* Moves the members of one of the interpreter's generations (0 the youngest, -1 the oldest) for which
 * route(op, arg) returns a list to that list; the others stay. */
void rpy_generation_route(int generation, rpy_gclist_t *(*route)(PyObject *op, void *arg), void *arg);

/* rpy_generation_route(0, ...) for the objects tracked in the youngest generation since the previous
 * call in this interpreter, found without walking the rest (internals.c, "Arrivals"): the whole
 * generation only after a collection, gc.freeze(), or in an interpreter that is not attached. */
void rpy_generation0_route_arrivals(rpy_gclist_t *(*route)(PyObject *op, void *arg), void *arg);

/* Appends every member of `from` to the interpreter's oldest generation. */
void rpy_gclist_merge_into_oldest(rpy_gclist_t *from);

/* New GC-tracked objects go to `list` instead of the youngest generation (NULL: back to normal). */
void rpy_tracking_redirect(rpy_gclist_t *list);

/* The memory a region collection calls its region's: the 64 KiB slices of [base, base + size) that
 * `bits` marks (bit i: slice `first` + i).  refresh(scope) makes it anew: code that ran (a finalizer)
 * may have given the region new pages. */
typedef struct rpy_scope {
    uintptr_t base;
    size_t size;
    const uint64_t *bits;
    uintptr_t first;
    size_t count;
    void (*refresh)(struct rpy_scope *scope);
} rpy_scope_t;

static inline bool rpy_scope_has(const rpy_scope_t *scope, const void *p) {
    uintptr_t offset = (uintptr_t)p - scope->base;
    uintptr_t bit = (offset >> 16) - scope->first;   /* wraps to a huge value below first */
    return offset < scope->size && bit < scope->count && (scope->bits[bit >> 6] >> (bit & 63) & 1);
}

/* Collects the cycles of `list` alone, the way the interpreter collects a generation (collector.c):
 * *collected is the number of unreachable objects freed, *uncollectable those kept for a legacy
 * finalizer (appended to gc.garbage).  The list's members are the objects in `scope`.
 * Runs finalizers and weakref callbacks (arbitrary code).  Safe while other collections run (the
 * interpreter's in any thread, other lists'), never while one of the same list does: the caller
 * refuses that. */
void rpy_collect(rpy_gclist_t *list, rpy_scope_t *scope, Py_ssize_t *collected, Py_ssize_t *uncollectable);

/* The interpreter's youngest generation. */
rpy_gclist_t *rpy_generation0(void);

/* Switches automatic collection off (returns whether it was on) and back.  In 3.11 any container
 * allocation may run a collection, and with it finalizers (arbitrary code), synchronously: code that
 * holds borrowed pointers across allocations pauses it. */
bool rpy_gc_pause(void);
void rpy_gc_resume(bool was_enabled);

/* Whether tracemalloc is tracing (its hooks then sit on top of whatever allocator it found). */
bool rpy_tracemalloc_tracing(void);

/* ---- Objects ---- */

/* Where op's memory block starts: before the GC header and the managed-dict pointers, if any. */
void *rpy_block_of(PyObject *op);

/* Whether op is one of the interpreter-wide immutable singletons every interpreter uses: None, True,
 * False, Ellipsis, NotImplemented, the small ints, interned strings, the empty tuple, bytes and str,
 * the one-character latin-1 strings and bytes, and statically allocated types. */
bool rpy_is_shared(PyObject *op);

/* Whether op is immortal (3.12+: its count is never changed, so any interpreter may refer to it
 * whatever GIL it holds); always false on 3.11, which has no immortal objects. */
bool rpy_is_immortal(PyObject *op);

/* 3.13, in the main interpreter: makes op immortal if it is a mortal interned str (what 3.13 makes of
 * the str constants of code, which 3.12 interns immortal) and says whether it now is.  Sound only
 * for strs of the main interpreter, whose interned strings live until the process ends (its
 * finalization comes after every other interpreter's).  False everywhere else. */
bool rpy_immortalize_interned(PyObject *op);

/* The object's existing __dict__, or NULL; never creates one (reading obj.__dict__ from Python would
 * materialize an instance's inline attribute storage as a new dict). */
PyObject *rpy_instance_dict(PyObject *obj);

/* The name under which obj's attribute storage (dict or inline values) holds value, or NULL. */
PyObject *rpy_attribute_name(PyObject *obj, PyObject *value);

/* What rpy_object_in_block asks of a would-be type field: whether it points to a type of the
 * interpreter.  The cheap answers are kept here and given without a call - the types accepted
 * lately, in a small direct-mapped cache (a page's blocks are of one size, and one size is often
 * shared by several types: a 2-tuple, a list and a short str are 56 bytes each in 3.11, and a dict
 * and a str of a few letters 64), the pointer refused last (buffers of one kind repeat their words),
 * "no" for what cannot be a type's address (small or unaligned values: the counts of a buffer's
 * header), and "no" for memory the caller knows holds no type (a region where no class was made: a
 * GC object's header, read as a type field, points to the previous object there); is_type(type,
 * arg) gives the rest.  A type once accepted stays a type while the filter is used: no Python code
 * runs during a scan.
 *
 * A caller whose set of types may lack some made since (proof.c, a kept set) asks the filter to
 * watch: rpy_object_in_block then notes the blocks where it refused a would-be header that looks like
 * an object's of an unknown type - a count from 1 to 2^32, then an aligned address that is no type of
 * the set, outside the memory known to hold none.  Such an object's block would be probed further in,
 * where its own fields, which the program may have written, are read as a header: the caller looks
 * at the blocks noted (rpy_block_is_key_table tells the commonest that are no object) and takes a full
 * set before it trusts what the probe found there. */
#define RPY_TYPE_FILTER_WAYS 16
#define RPY_TYPE_FILTER_WATCHED 8
typedef struct rpy_type_filter {
    bool (*is_type)(PyTypeObject *type, void *arg);
    void *arg;
    PyTypeObject *accepted[RPY_TYPE_FILTER_WAYS], *refused;   /* accepted: by rpy_type_filter_way */
    uintptr_t typeless, typeless_size;   /* [typeless, + size): memory known to hold no type */
    bool watch_unknown;
    /* the blocks noted, in order; `watched` counts past the array's end too */
    void *watched_blocks[RPY_TYPE_FILTER_WATCHED];
    size_t watched;
} rpy_type_filter_t;

/* Whether a block (of `size` bytes) reads as a dict's key table: a count of 1 or more, then sizes that
 * agree with each other (its index width, its kind, its entries within its slots).  A table of 256
 * slots or more has an aligned second word, and passes the watch's test above. */
bool rpy_block_is_key_table(const void *block, size_t size);

/* How far into its block an object starts: _PyType_PreHeaderSize, from public flags - the GC header
 * (PyGC_Head: two pointers in 3.11-3.13, which internals.c asserts), then the managed dict pointers
 * (3.11: Py_TPFLAGS_MANAGED_DICT; 3.12+: and the managed weakref, Py_TPFLAGS_PREHEADER).  Here, not
 * in internals.c, so that the isolation scan inlines it: it runs up to three times per block. */
static inline size_t rpy_preheader_size(PyTypeObject *tp) {
#ifdef Py_TPFLAGS_PREHEADER
    unsigned long managed = Py_TPFLAGS_PREHEADER;
#else
    unsigned long managed = Py_TPFLAGS_MANAGED_DICT;
#endif
    return ((tp->tp_flags & Py_TPFLAGS_HAVE_GC) ? 2 * sizeof(void *) : 0) +
           ((tp->tp_flags & managed) ? 2 * sizeof(PyObject *) : 0);
}

/* A type's slot in rpy_type_filter_t.accepted: types are objects of 400 bytes or more, so the bits
 * above the eighth differ between neighbours. */
static inline size_t rpy_type_filter_way(const PyTypeObject *type) {
    uintptr_t bits = (uintptr_t)type >> 8;
    return (bits ^ (bits >> 4)) % RPY_TYPE_FILTER_WAYS;
}

/* Notes `block` when the header at `header`, which rpy_object_in_block did not take, looks like an
 * object's of a type missing from the filter's set (out of line: the probe's loop stays small).  It
 * reads what the probe read, which may be a free block (RPY_MAY_READ_FREED, below). */
void rpy_type_filter_watch(rpy_type_filter_t *filter, void *block, const PyObject *header);

static inline bool rpy_type_filter_passes(rpy_type_filter_t *filter, PyTypeObject *type) {
    if ((uintptr_t)type < 4096 || ((uintptr_t)type & 7) || type == filter->refused) return false;
    PyTypeObject **way = &filter->accepted[rpy_type_filter_way(type)];
    if (type == *way) return true;
    if ((uintptr_t)type - filter->typeless < filter->typeless_size) return false;
    if (!filter->is_type(type, filter->arg)) {
        filter->refused = type;
        return false;
    }
    *way = type;
    return true;
}

/* Not instrumented by AddressSanitizer, which the sanitizer builds have report every read of a free
 * region block (region-internal.h, RMAY_READ_FREED): for reads that may be of one by design. */
#define RPY_MAY_READ_FREED __attribute__((no_sanitize("address")))

/* How far rpy_object_in_block reads into a block at most: an object header 32 bytes in. */
#define RPY_OBJECT_PROBE_REACH (4 * sizeof(void *) + sizeof(PyObject))

/* The object whose memory block starts at `block` (size usable bytes), if the block holds one whose
 * type passes the filter; NULL otherwise (a buffer, e.g. a dict's key table).  Reads only the first
 * min(size, RPY_OBJECT_PROBE_REACH) bytes of the block; dereferences a type pointer only after the
 * filter accepted it.  A caller may pass a size past the block's end (proof.c, count_owned: a probe
 * as lenient as the scan, into mapped memory), so the reads may be of a free neighbour's bytes. */
static inline RPY_MAY_READ_FREED PyObject *rpy_object_in_block(void *block, size_t size, rpy_type_filter_t *filter) {
    /* An object starts 0 bytes into its block (no GC header), 16 (GC), or 32 (GC and managed dict).
     * Tried in that order, so that what is read as a type field before the right one is a header word
     * (a GC header's link), never a user's bytes. */
    for (size_t pre = 0; pre <= 4 * sizeof(void *); pre += 2 * sizeof(void *)) {
        if (pre + sizeof(PyObject) > size) break;
        PyObject *candidate = (PyObject *)((char *)block + pre);
        PyTypeObject *tp = candidate->ob_type;
        if (!rpy_type_filter_passes(filter, tp) || rpy_preheader_size(tp) != pre) {
            /* Cheap tests first: a GC object's header read one step early holds its links there. */
            if (__builtin_expect(filter->watch_unknown, 0) && !((uintptr_t)tp & 7) &&
                (size_t)(candidate->ob_refcnt - 1) < ((size_t)1 << 32))
                rpy_type_filter_watch(filter, block, candidate);
            continue;
        }
        /* A freed object's count is 0, and mimalloc's free-list link (a pointer) overwrites the first
         * word of a free block: neither passes. */
        if (candidate->ob_refcnt <= 0 || candidate->ob_refcnt > ((Py_ssize_t)1 << 32)) continue;
        /* str's tp_basicsize is that of the legacy layout; compact strings are smaller. */
        size_t minimum = tp == &PyUnicode_Type ? sizeof(PyASCIIObject) : (size_t)tp->tp_basicsize;
        if (minimum > size - pre) continue;
        return candidate;
    }
    return NULL;
}

/* Calls fn(name, code, line, arg) for every local variable (or cell) of every running frame of every
 * thread whose value is obj, reading the frames directly (frame.f_locals would create a dict that
 * keeps the values alive).  Frames of code from skip_filename are skipped. */
void rpy_foreach_local_holding(PyObject *obj, PyObject *skip_filename,
                               void (*fn)(PyObject *name, PyCodeObject *code, int line, void *arg), void *arg);

/* Calls fn(type, arg) for every type in the interpreter (object and all its subclasses, walked
 * through tp_subclasses without allocating). */
void rpy_foreach_type(void (*fn)(PyTypeObject *type, void *arg), void *arg);

/* How many types any interpreter has freed since rpy_freelists_install (which wraps type's
 * deallocator to count them; internals.c, "Type deaths").  A set of types taken while this stays
 * the same holds no freed type, though types made since may be missing from it. */
uint64_t rpy_types_freed(void);

/* Whether op is the frame object of a frame that is still running (or suspended in a generator):
 * execution state the interpreter holds, not data anything else refers to. */
bool rpy_is_running_frame_object(PyObject *op);

/* ---- Bulk teardown (python/_region/proof.c) ---- */

/* Calls owned(block, arg) for every memory block op owns besides its own that its builtin base and
 * instance layout tell of (a list's items, a dict's key table, a set's table, an instance's separate
 * attribute values, a bytearray's bytes, a str's cached UTF-8 or wchar_t copy), each a block op
 * alone owns.  Returns false when that layout is not known (a legacy str, a split or shared dict
 * table, 3.13 inline values shared with a __dict__); blocks a C subclass allocates besides are never
 * reported, so a caller that needs every block counts them against the heap's.  *releasable says
 * whether op's deallocator does nothing but release its references and free those blocks, and
 * nothing else can reach op or run code for it: int, float, complex, bytes, tuple, range, slice,
 * list, dict, a str neither interned nor caching a copy, a set or frozenset no weakref points to, a
 * bytearray with no exports, and instances of classes whose whole MRO is Python classes over object
 * with no __del__ and no weakref to them.  What a bulk teardown relies on (proof.c). */
bool rpy_owned_blocks(PyObject *op, void (*owned)(void *block, void *arg), void *arg, bool *releasable);

/* PROGRAM-WRITTEN BYTES: the blocks an object keeps bytes in that the program chose - a bytearray's
 * buffer; a str's data when it is a block of its own (a str subclass's, a legacy str's) and its
 * cached UTF-8 and wchar_t copies - each passed to fn.  CPython allocates them with PyObject_Malloc,
 * so they lie in a region's object memory beside the objects, and their bytes can pass for an object's
 * header (a copy of one, or one written with struct.pack and id()).  The isolation scan reads a block
 * as an object only once it knows no such block holds it (proof.c, "Blocks that only look like
 * objects").  op is any block that rpy_object_in_block took for an object, so possibly such bytes
 * itself: reads only op's own fields, and only those that `room` (the bytes of its block from op on)
 * holds; a block too small for its type's fields names none. */
void rpy_user_bytes_blocks(PyObject *op, size_t room, void (*fn)(void *block, void *arg), void *arg);

/* rpy_owned_blocks' answer for the commonest str, without the call: a compact ASCII str with no
 * wchar_t copy (3.11) and not interned owns no block and is releasable. */
static inline bool rpy_str_is_plain(PyObject *op) {
    if (!PyUnicode_IS_COMPACT_ASCII(op) || PyUnicode_CHECK_INTERNED(op)) return false;
#if PY_VERSION_HEX < 0x030C0000
    return ((PyASCIIObject *)op)->wstr == NULL;
#else
    return true;
#endif
}

/* Whether a weak reference points to op (not a class: their lists are kept elsewhere on 3.12+). */
bool rpy_has_weakrefs(PyObject *op);

/* Calls visit(child, arg) for every reference op holds: tp_traverse (which visits the class of an
 * instance), plus the str keys dict_traverse skips and the ints of a range (not a GC type). */
void rpy_visit_references(PyObject *op, visitproc visit, void *arg);

/* An exact dict's references laid out for a loop that reads them in place (the isolation engine's
 * fast path, proof.c): `count` entries of `stride` bytes from `entries`, each with its key pointer
 * `key_at` bytes in (-1: the table is split and its keys are the class's, not the dict's) and its
 * value pointer `value_at` bytes in; or, for a split table, `values`, count of them.  A deleted
 * entry's pointers are NULL.  Exactly the references the dict owns, each once: what tp_traverse
 * visits plus the str keys it skips. */
typedef struct rpy_dict_view {
    const char *entries;
    size_t stride;
    Py_ssize_t count;
    int key_at, value_at;
    PyObject *const *values;
    /* The blocks the dict owns (rpy_owned_blocks asks here too, so the scan asks once): its key
     * table when the dict alone owns one (else NULL), and whether that is all it owns (not split,
     * keys not shared). */
    void *owned_keys;
    bool blocks_known;
} rpy_dict_view_t;
void rpy_dict_view(PyObject *dict, rpy_dict_view_t *view);

/* Where a dict's key table keeps what rpy_dict_view reads of it, for a caller that must check it may
 * read there before it does (the dict may be bytes posing as one: proof.c) and runs once per dict:
 * read inline, no call.  The table of entries starts (1 << log2_index_bytes) bytes past `indices`
 * and holds `nentries` entries, of unicode_entry bytes when `kind` is not `general_kind`, else of
 * entry bytes.  `empty` is the table every empty dict shares (static: nothing to check). */
typedef struct rpy_key_table_layout {
    const void *empty;
    size_t header, nentries, log2_index_bytes, kind, indices;
    size_t unicode_entry, entry;
    uint8_t general_kind;
} rpy_key_table_layout_t;

extern rpy_key_table_layout_t rpy_key_table_layout;   /* `empty` is set by rpy_internals_init */

/* Whether every key of the dict is a str, so that a str is looked up by CPython's unicode lookup,
 * which compares without taking a reference (frozen_view.c). */
bool rpy_dict_has_str_keys(PyObject *dict);

/* The set's next entry from *position on: its key (borrowed) and hash; false at the end.  Reads only:
 * no reference is taken (frozen_view.c reads other GILs' sets with it). */
bool rpy_set_next(PyObject *set, Py_ssize_t *position, PyObject **key, Py_hash_t *hash);

/* Debug builds count every reference in _Py_RefTotal; a bulk teardown drops n references without
 * a Py_DECREF each, and says so here.  Returns false when the build tracks every object in a list
 * (Py_TRACE_REFS), where a bulk teardown is impossible. */
bool rpy_references_dropped(Py_ssize_t n);

/* n GC objects were freed in bulk, without PyObject_GC_Del: does what their n calls would have done to
 * the collector's count of allocations (decrement it while positive), so that objects a region made
 * and freed trigger no more collections of the interpreter than the same objects made and freed
 * outside. */
void rpy_gc_objects_freed(size_t n);

/* References a bulk teardown of op drops besides op's own count: a dict's own key table counts
 * its dk_refcnt in _Py_RefTotal too (dictkeys_incref/decref under Py_REF_DEBUG). */
Py_ssize_t rpy_hidden_references(PyObject *op);
extern const bool rpy_hidden_references_counted;   /* false: rpy_hidden_references is always 0 */
bool rpy_bulk_teardown_possible(void);

/* Replaces the key that PyDict_Next left before *pos (pos as it returned it) with `key`, an equal
 * object of the same hash, keeping the order: false (nothing done) for a split table, whose keys its
 * class shares.  The table's version is reset, as for any change of its keys. */
bool rpy_dict_replace_key(PyObject *dict, Py_ssize_t pos, PyObject *key);

/* A new int equal to op (an exact int). */
PyObject *rpy_long_copy(PyObject *op);

/* Whether tp_traverse of this dict skips keys it owns (combined str-keyed tables do; a split
 * table's keys belong to its class's shared table, not to the dict). */
bool rpy_dict_traverse_skips_keys(PyObject *dict);

/* ---- Freelists ---- */

/* Installs the freelist guards (once per process; internals.c, "Freelists"): the tuple, list, dict,
 * slice, context and async-generator deallocators are wrapped so that no region object stays on a
 * freelist, and none at all while a block is open.  (The float freelist is each interpreter's to
 * switch off: rpy_interp_guard.) */
int rpy_freelists_install(void);

/* Switches the float freelist off again (a full collection switches it back on). */
void rpy_float_freelist_off(void);

/* Puts the calling interpreter's freelists aside when its first block opens, and back when its last
 * one closes (nothing happens in an interpreter that is not attached). */
void rpy_freelists_stash(void);
void rpy_freelists_unstash(void);

/* Set by the binding: how many blocks are open in all threads of all interpreters, and where region
 * memory is.  The deallocator wrappers read both. */
extern int rpy_blocks_open;
extern uintptr_t rpy_region_memory_base;   /* region memory: [base, base + span) */
extern size_t rpy_region_memory_span;

/* The dict-keys freelist guard (each attached interpreter): keeps that freelist full of spare tables
 * from `alloc`, the allocator of the calling thread's current context, so that the table the next
 * dict pops is where that dict is.  rpy_keys_freelist_refill() is cheap to skip: the hook calls it
 * only when rpy_keys_freelist_intact() says the calling thread's view of its interpreter's freelist
 * (internals.c, "The dict-keys freelist guard") is out of date or the freelist changed. */
#define RPY_KEYS_FREELIST_FULL 80
typedef struct rpy_keys_view {
    PyInterpreterState *interp;   /* the interpreter the view is of */
    unsigned generation;          /* rpy_attach_generation when it was taken */
    int *count;                   /* its freelist's count, top entry, and the spare put there last */
    void **top;
    void **spare_on_top;
} rpy_keys_view_t;
extern __thread rpy_keys_view_t rpy_keys_view __attribute__((tls_model("initial-exec")));
extern unsigned rpy_attach_generation;   /* bumped by every attach and detach */

static inline bool rpy_keys_freelist_intact(PyInterpreterState *interp) {
    const rpy_keys_view_t *v = &rpy_keys_view;
    return interp == v->interp && v->generation == __atomic_load_n(&rpy_attach_generation, __ATOMIC_RELAXED) &&
           *v->count == RPY_KEYS_FREELIST_FULL && *v->top == *v->spare_on_top;
}
void rpy_keys_freelist_bind(void *(*alloc)(size_t size), void (*release)(void *table));
void rpy_keys_freelist_refill(void);

/* Which spare tables a context change replaces (the loop runs over every spare at each block entry
 * and exit, so a spare outside region memory costs a range test and no call): a table in region
 * memory, [regions, regions + regions_size), that is not the current context's region's (region_of
 * tells, `here` is the context's region) is wrong wherever it is; the top one (the next pop takes it)
 * is wrong unless it is the current context's memory - `here` NULL: the context is ordinary memory,
 * which any table outside region memory is. */
typedef struct rpy_spare_rule {
    uintptr_t regions, regions_size;
    const void *here;
    const void *(*region_of)(const void *table);
} rpy_spare_rule_t;

/* Replaces every spare table the rule calls wrong with one from the current context. */
void rpy_keys_freelist_replace(const rpy_spare_rule_t *rule);

/* ---- Interpreters ---- */

/* The calling thread's interpreter (NULL when it holds no thread state): the allocator hook asks on
 * every call.  3.11 keeps the running thread state in _PyRuntime (pycore_runtime.h:37), written by
 * the thread that takes the GIL, so the GIL holder reads its own value in two loads; 3.12 and 3.13
 * keep it in a thread-local of libpython, read through an exported function (3.13:
 * pycore_pystate.h:125-141). */
#if PY_VERSION_HEX < 0x030C0000
extern const volatile uintptr_t *rpy_tstate_current;
static inline PyThreadState *rpy_current_tstate(void) { return (PyThreadState *)*rpy_tstate_current; }
#elif PY_VERSION_HEX < 0x030D0000
static inline PyThreadState *rpy_current_tstate(void) { return _PyThreadState_UncheckedGet(); }
#else
static inline PyThreadState *rpy_current_tstate(void) { return PyThreadState_GetUnchecked(); }
#endif
static inline PyInterpreterState *rpy_current_interp(void) {
    PyThreadState *tstate = rpy_current_tstate();
    return tstate ? tstate->interp : NULL;
}

/* The calling interpreter's collection runs in `collector` (the package's first gc callback, at
 * "start"), or none is known to run anywhere (NULL: its last one, at "stop"). */
void rpy_note_collector(PyThreadState *collector);

/* Moves the gc callbacks whose C functions are `first` and `last` to the front and the back of the
 * calling interpreter's gc.callbacks: other libraries (hypothesis among them) insert theirs at the
 * front or append them, and what they run must fall between the package's two notes. */
void rpy_gc_callbacks_bracket(PyCFunction first, PyCFunction last);

/* Puts the callbacks `first` (builtin functions) at the front and `last` at the back of the calling
 * interpreter's gc.callbacks, each unless it is there already: 0, or -1 with an exception.  No Python
 * code runs between a check and its insert, so threads of one interpreter that race here register
 * each callback once. */
int rpy_gc_callbacks_register(PyObject *first, PyObject *last);

/* Whether the calling thread may be running interp's collection now: gc.collecting is set, and the
 * collector is this thread or not known yet (the interpreter builds the callbacks' arguments before
 * the first callback runs; a collection without callbacks, at finalization, notes nothing).  Then
 * the allocator hook places nothing (placement.c), whatever block is open - the collector's callbacks
 * and the finalizers of ordinary garbage run wherever a collection starts and make process-wide
 * state.  A collection another thread was noted to run does not count. */
bool rpy_collecting_here_noted(PyInterpreterState *interp);
extern const size_t rpy_gc_collecting_offset;   /* offsetof(PyInterpreterState, gc.collecting) */
static inline bool rpy_collecting_here(PyInterpreterState *interp) {
    /* The flag first, read in place: the allocator hook asks on every allocation inside a block. */
    return *(const int *)((const char *)interp + rpy_gc_collecting_offset) && rpy_collecting_here_noted(interp);
}

/* Interpreters that use regions attach first: each gets its own freelist stash, keys freelist guard
 * and float freelist switch.  rpy_interp_attach() returns the calling interpreter's index (0 ..
 * RPY_MAX_INTERPRETERS - 1; the same one again if attached), or -1 when every entry is taken.
 * rpy_interp_detach() ends it (at the interpreter's end; freelists put aside are put back).
 * rpy_interp_index() is the calling interpreter's index, -1 when it is not attached. */
#define RPY_MAX_INTERPRETERS 64

/* Whether the calling thread's interpreter runs under a GIL other than the main interpreter's (3.12+;
 * false on 3.11). */
bool rpy_interp_has_own_gil(void);

/* The interpreter with this id: gone (no live interpreter has it), under the main interpreter's GIL,
 * or under a GIL of its own. */
typedef enum { RPY_INTERP_GONE, RPY_INTERP_MAIN_GIL, RPY_INTERP_OWN_GIL } rpy_interp_kind_t;
rpy_interp_kind_t rpy_interp_kind(int64_t id);
int rpy_interp_attach(void);
void rpy_interp_detach(void);
/* The calling (attached) interpreter starts its freelist guards - the float freelist off, the keys
 * freelist kept full - once, when it first uses a region: 0, or -1 when it is not attached.
 * rpy_interp_guarded() says whether they run. */
int rpy_interp_guard(void);
bool rpy_interp_guarded(void);
int rpy_interp_index(void);

#endif /* REGION_PY_INTERNALS_H */
