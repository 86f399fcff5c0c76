/* placement.c - where new objects go: the allocator hook and the per-thread stack of open blocks.
 *
 * THE HOOK wraps the allocator it finds for the OBJ and MEM domains (never RAW: it runs without the
 * GIL and pymalloc's own bookkeeping uses it).  malloc/calloc go to the current region of the
 * calling thread, if any, else to the previous allocator.  free and realloc are decided by the
 * POINTER, never by the current region: a region block goes back to its own mimalloc heap (and a
 * realloc keeps it there), anything else to the previous allocator.  This must hold for every block
 * ever handed out, so the hook is installed once and never removed (CPython offers no way to remove
 * it safely either: blocks of both kinds stay live).  OBJ-domain blocks go to the region's object
 * heap, MEM-domain blocks to its buffer heap (region-host.h, "HOST HEAPS").
 *
 * TRACEMALLOC keeps the allocator it found when it started and puts it back when it stops.  Started
 * after the hook, it wraps the hook and gives it back: fine.  Started before, its stop() would put
 * back the allocator from before the hook and drop the hook, after which region blocks would be freed
 * by pymalloc (an abort in glibc).  So installing the hook while tracemalloc traces first stops
 * tracemalloc, installs the hook, and starts tracemalloc again with the same frame limit (with a
 * RuntimeWarning: the traces so far are lost).  Each block entry checks that the hook is still in
 * place, directly or under tracemalloc.
 *
 * BLOCKS are the dynamic extent of a `with` on the thread that entered it, like decimal.localcontext:
 * whatever that thread runs until the block exits allocates in the region, including the caller of a
 * generator that suspended inside a block (docs/python.md, "The hard cases, decided").  Each thread
 * has a stack; entering pushes, exiting removes the block's own entry (not necessarily the top: a
 * generator resumed later may exit its block while its caller's blocks are open above it).  A block
 * belongs to the interpreter that opened it: when the thread runs another interpreter (a
 * subinterpreter's run_string runs in the calling thread), that one's allocations are not placed.
 *
 * A BLOCK ENDS WHERE ITS `with` ENDS, in whichever thread that is: a generator suspended inside a block
 * and finished by another thread exits the block from there, and the entry leaves the stack of the
 * thread that entered it (found through the record, rpy_region_t.blocks_stack).  A thread that ends
 * while a block of it is still open (such a generator, not yet finished) leaves the block DETACHED: it
 * places nothing any more, and its exit, from any thread, finds it on the detached list.  The stacks
 * change under binding_lock: another thread's stack is changed only by a thread holding the same GIL
 * (the block's interpreter runs), but that thread may be running another interpreter meanwhile.
 *
 * DURING THE INTERPRETER'S COLLECTIONS nothing is placed in the thread that runs them: gc callbacks
 * and the finalizers of ordinary garbage run wherever a collection happens to start (an allocation
 * inside a block), and what they make is theirs (hypothesis's gc callback keeps timestamps in module
 * globals), not the block's; nor are the callbacks' arguments, built before the first callback runs.
 * From gc.collecting set until the package's first gc callback notes the collecting thread
 * (rpy_note_collector), no thread places anything (only the collector runs then); from that note
 * until its last callback clears it at "stop", the noted thread places nothing.  Both are put back at
 * the ends of gc.callbacks at every block entry and every collection (rpy_gc_callbacks_bracket), since
 * other libraries add theirs at either end too.
 *
 * OUTSIDE: region.outside() pushes a NULL entry, a suspension: until it is popped, the thread's
 * allocations in its interpreter go to the ordinary heap although blocks are open below it.  The
 * package runs every import in one (region/__init__.py): a module is process-lifetime state, which
 * must not pin the region of the block that happened to import it first.
 */
#include "binding.h"

#define MAX_DEPTH 64

/* The allocators the hook found, per domain.  Written once, before the hook is installed. */
static PyMemAllocatorEx obj_prev, mem_prev;

/* The region receiving this thread's allocations: the top of its stack (NULL when empty).  Read on
 * every allocation of the process: initial-exec, so the read is one thread-pointer-relative load
 * rather than a __tls_get_addr call (the extension is dlopen'd, which makes global-dynamic the
 * default).  One initial-exec variable puts the module's whole TLS segment in the static TLS surplus
 * glibc keeps for dlopen'd modules, which is small and shared with the interpreter's own: 1,688 bytes
 * (the block stack inline, libregion's error message, mimalloc's thread pointers) imported under
 * CPython 3.11 and failed under 3.13 ("cannot allocate memory in static TLS block").  So thread-locals
 * stay few and small: the block stack is allocated, and only its pointer is thread-local. */
static __thread region_t *current __attribute__((tls_model("initial-exec")));
static __thread PyInterpreterState *current_interp __attribute__((tls_model("initial-exec")));
typedef struct block_stack {
    rpy_region_t *entries[MAX_DEPTH];   /* each holds a reference (record_ref); NULL: a suspension */
    PyInterpreterState *interps[MAX_DEPTH];
    int depth;
    /* The owning thread's current/current_interp, for a thread that ends one of its blocks. */
    region_t **current;
    PyInterpreterState **current_interp;
    /* The thread state whose dict watch_thread_end last put its capsule in, by ids that are never
     * reused (an interpreter's, and the thread state's within it): a new thread state, even at the
     * same address, is watched anew. */
    int64_t watched_interp;
    uint64_t watched_thread;
} block_stack_t;
/* The calling thread's stack, allocated at its first block (NULL before), freed when it ends. */
static __thread block_stack_t *stack __attribute__((tls_model("initial-exec")));
static const block_stack_t no_blocks;

static inline const block_stack_t *stack_or_empty(void) { return stack ? stack : &no_blocks; }

/* Blocks whose thread ended before they exited (each holds its reference; no current pointers);
 * under binding_lock. */
static block_stack_t detached;

/* Blocks open per attached interpreter (rpy_interp_index), all threads. */
static int interp_blocks[RPY_MAX_INTERPRETERS];

/* Object allocations per region since its last collection; the threshold the user set (0: never
 * collect automatically); and the count that triggers the next automatic collection: libregion's
 * host counters of the region (region-host.h, HOST FIELDS), zero at its creation.  The trigger is
 * the threshold, or as many as survived the last collection when that is more: a collection walks
 * the whole region (there are no generations inside a region), so letting the region double between
 * collections keeps the collection work linear in what a program allocates, where a fixed threshold
 * would make building a large region quadratic.  A region's counts are read and written by its owner
 * only (the one thread that allocates there); collection_scheduled by any thread, atomically. */
enum { ALLOCATIONS, THRESHOLD, TRIGGER };
static bool collection_scheduled;

static inline __attribute__((always_inline)) void count_allocation(region_t *r) {
    uint32_t *counts = r->host_counts;
    bool unscheduled = false;
    /* Threads of different GILs may cross a trigger at once: one of them schedules. */
    if (unlikely(++counts[ALLOCATIONS] == counts[TRIGGER]) &&
        __atomic_compare_exchange_n(&collection_scheduled, &unscheduled, true, false, __ATOMIC_RELAXED,
                                    __ATOMIC_RELAXED)) {
        /* Py_AddPendingCall fails only when its queue is full; the next trigger crossing retries. */
        if (Py_AddPendingCall(collection_auto, NULL) != 0)
            __atomic_store_n(&collection_scheduled, false, __ATOMIC_RELAXED);
    }
}

void placement_set_threshold(region_t *r, uint32_t threshold) {
    r->host_counts[THRESHOLD] = r->host_counts[TRIGGER] = threshold;
}

uint32_t placement_threshold(region_t *r) { return r->host_counts[THRESHOLD]; }
uint32_t placement_allocations(region_t *r) { return r->host_counts[ALLOCATIONS]; }
bool placement_collection_due(region_t *r) {
    return r->host_counts[TRIGGER] && r->host_counts[ALLOCATIONS] >= r->host_counts[TRIGGER];
}

void placement_reset_allocations(region_t *r) { r->host_counts[ALLOCATIONS] = 0; }

void placement_collected(region_t *r, size_t survivors) {
    uint32_t *counts = r->host_counts;
    counts[ALLOCATIONS] = 0;
    if (counts[THRESHOLD] && survivors > counts[THRESHOLD])
        counts[TRIGGER] = survivors > UINT32_MAX ? UINT32_MAX : (uint32_t)survivors;
    else
        counts[TRIGGER] = counts[THRESHOLD];
}

void placement_collection_ran(void) { __atomic_store_n(&collection_scheduled, false, __ATOMIC_RELAXED); }

/* ---- The hook ---- */

static inline __attribute__((always_inline)) void keys_guard(PyInterpreterState *interp) {
    if (unlikely(!rpy_keys_freelist_intact(interp))) rpy_keys_freelist_refill();
}

/* The innermost entry in s that `interp` pushed (a subinterpreter's run_string may leave blocks of
 * its own above the caller's): its block, or NULL for none or a suspension. */
static rpy_region_t *innermost_entry_of(const block_stack_t *s, PyInterpreterState *interp) {
    for (int i = s->depth - 1; i >= 0; i--)
        if (s->interps[i] == interp) return s->entries[i];
    return NULL;
}

/* The innermost block in s that `interp` opened, suspensions skipped, or NULL. */
static rpy_region_t *innermost_block_of(const block_stack_t *s, PyInterpreterState *interp) {
    for (int i = s->depth - 1; i >= 0; i--)
        if (s->interps[i] == interp && s->entries[i]) return s->entries[i];
    return NULL;
}

static region_t *receiving_below_the_top(PyInterpreterState *interp) {
    rpy_region_t *block = innermost_entry_of(stack_or_empty(), interp);
    return block ? block->r : NULL;
}

/* The region receiving the calling thread's allocations now: that of its innermost block the running
 * interpreter opened.  Usually the top one; another interpreter's block on top is the rare case. */
static inline region_t *receiving(PyInterpreterState *interp) {
    region_t *r = __atomic_load_n(&current, __ATOMIC_RELAXED);   /* another thread may end our block */
    if (likely(!r || interp == current_interp)) return r;
    return receiving_below_the_top(interp);
}

/* What malloc and calloc do first: keep the keys freelist guarded, and find the region the new block
 * goes to (counting an object allocation there), or NULL for the previous allocator.  With no block
 * open in the calling thread that is the keys check and one test of a thread-local. */
static inline __attribute__((always_inline)) region_t *placing(bool object) {
    PyInterpreterState *interp = rpy_current_interp();
    keys_guard(interp);
    region_t *r = receiving(interp);
    if (likely(!r)) return NULL;
    if (unlikely(rpy_collecting_here(interp))) return NULL;   /* the collector's doings: outside */
    if (object) count_allocation(r);
    return r;
}

/* One set of functions per domain, none reading its ctx: the hook may be installed while threads of
 * interpreters with GILs of their own allocate (placement_activate), and such a thread can read the
 * new function with the old ctx.  Either pair, old or new, is then right. */
#define HOOK_FUNCTIONS(domain, prev, object)                                                     \
    static void *domain##_malloc(void *ctx, size_t size) {                                        \
        (void)ctx;                                                                                \
        region_t *r = placing(object);                                                            \
        return r ? rhost_alloc(r, object, size) : prev.malloc(prev.ctx, size);                   \
    }                                                                                             \
    static void *domain##_calloc(void *ctx, size_t count, size_t size) {                          \
        (void)ctx;                                                                                \
        region_t *r = placing(object);                                                            \
        return r ? rhost_calloc(r, object, count, size) : prev.calloc(prev.ctx, count, size);    \
    }                                                                                             \
    static void *domain##_realloc(void *ctx, void *p, size_t size) {                              \
        if (!p) return domain##_malloc(ctx, size);                                                \
        region_t *owner = rhost_region_of(p);                                                     \
        return owner ? rhost_realloc(owner, p, size) : prev.realloc(prev.ctx, p, size);          \
    }                                                                                             \
    /* No keys_guard() on free: CPython empties the keys freelist with a loop of frees              \
     * (_PyDict_ClearFreeList), which a refill on free would never let finish. */                 \
    static void domain##_free(void *ctx, void *p) {                                               \
        (void)ctx;                                                                                \
        if (!p) return;                                                                           \
        if (rhost_in_arenas(p)) rhost_free_block(p);                                              \
        else prev.free(prev.ctx, p);                                                              \
    }

HOOK_FUNCTIONS(obj, obj_prev, true)
HOOK_FUNCTIONS(mem, mem_prev, false)

/* The keys-freelist guard's allocator: the current context of the calling thread. */
static void *spare_alloc(size_t size) {
    region_t *r = receiving(rpy_current_interp());
    return r ? rhost_alloc(r, true, size) : obj_prev.malloc(obj_prev.ctx, size);
}

static void spare_free(void *table) { obj_free(NULL, table); }

/* ---- Installing ---- */

static bool hook_installed(void) {
    PyMemAllocatorEx now;
    PyMem_GetAllocator(PYMEM_DOMAIN_OBJ, &now);
    if (now.malloc == obj_malloc) return true;
    /* tracemalloc, started after us (we restart it otherwise), wraps the hook. */
    return rpy_tracemalloc_tracing();
}

static PyObject *call_tracemalloc(const char *function, PyObject *arg) {
    PyObject *module = PyImport_ImportModule("tracemalloc");
    if (!module) return NULL;
    PyObject *result = arg ? PyObject_CallMethod(module, function, "O", arg)
                           : PyObject_CallMethod(module, function, NULL);
    Py_DECREF(module);
    return result;
}

static void install_hook(void) {
    PyMem_GetAllocator(PYMEM_DOMAIN_OBJ, &obj_prev);
    PyMem_GetAllocator(PYMEM_DOMAIN_MEM, &mem_prev);
    PyMemAllocatorEx obj = {NULL, obj_malloc, obj_calloc, obj_realloc, obj_free};
    PyMemAllocatorEx mem = {NULL, mem_malloc, mem_calloc, mem_realloc, mem_free};
    PyMem_SetAllocator(PYMEM_DOMAIN_OBJ, &obj);
    PyMem_SetAllocator(PYMEM_DOMAIN_MEM, &mem);
}

/* ACTIVATION: nothing of the above is in place until the process makes or acquires its first region
 * (placement_activate), so that a process that imports the package and never uses it allocates,
 * frees and collects exactly as it would without it.  Then, once: the deallocators are wrapped and
 * the hook goes in (tracemalloc, if it traces, is restarted on top of it).  And in each interpreter,
 * when it first uses a region: the package's gc callbacks join gc.callbacks and its freelist guards
 * start (rpy_interp_guard).  Until then no region exists, so no block was ever handed out by
 * anything but the allocators the hook finds. */
static pthread_mutex_t activation_lock = PTHREAD_MUTEX_INITIALIZER;
static bool activated;   /* atomic: the hook and the wrappers are in */

/* Under activation_lock (and the calling interpreter's GIL). */
static int activate_process(void) {
    if (rpy_freelists_install() < 0) return -1;   /* the one step that can fail: first */
    PyObject *limit = NULL;
    if (rpy_tracemalloc_tracing()) {
        limit = call_tracemalloc("get_traceback_limit", NULL);
        PyObject *stopped = limit ? call_tracemalloc("stop", NULL) : NULL;
        if (!stopped) {
            Py_XDECREF(limit);
            return -1;
        }
        Py_DECREF(stopped);
    }
    install_hook();
    rpy_keys_freelist_bind(spare_alloc, spare_free);
    __atomic_store_n(&activated, true, __ATOMIC_RELEASE);
    if (!limit) return 0;
    PyObject *started = call_tracemalloc("start", limit);
    Py_DECREF(limit);
    if (!started) return -1;
    Py_DECREF(started);
    return PyErr_WarnEx(PyExc_RuntimeWarning,
                        "region: tracemalloc was tracing when the first region was made; it was restarted on "
                        "top of region's allocator hook, and the traces recorded so far are lost", 1);
}

/* The interpreter's first region: the module's two gc callbacks (module.c, mod_gc_callback and
 * mod_gc_callback_last) join gc.callbacks, first and last.  Before every collection, region objects
 * that became GC-tracked outside their block move to their region's list, so the collector never
 * walks them; and from gc.collecting set to the last callback's "stop", the collecting thread places
 * nothing (DURING THE INTERPRETER'S COLLECTIONS, above).  Before its first region no region object
 * can be in the interpreter's generations, so until then its collections pay nothing for regions.
 * Threads racing here register each callback once (rpy_gc_callbacks_register). */
static int register_gc_callbacks(void) {
    PyObject *name = PyUnicode_FromString("region._region");
    PyObject *module = name ? PyImport_GetModule(name) : NULL;
    Py_XDECREF(name);
    if (!module) {
        if (!PyErr_Occurred())
            PyErr_SetString(PyExc_ImportError, "region: region._region is not imported in this interpreter");
        return -1;
    }
    PyObject *first = PyObject_GetAttrString(module, "_gc_callback");
    PyObject *last = first ? PyObject_GetAttrString(module, "_gc_callback_last") : NULL;
    int rc = last ? rpy_gc_callbacks_register(first, last) : -1;
    Py_XDECREF(first);
    Py_XDECREF(last);
    Py_DECREF(module);
    return rc;
}

int placement_activate(void) {
    if (!__atomic_load_n(&activated, __ATOMIC_ACQUIRE)) {
        /* Taken with the GIL released: activate_process calls Python (tracemalloc), which may let
         * another thread of this interpreter run and come here too. */
        Py_BEGIN_ALLOW_THREADS
        pthread_mutex_lock(&activation_lock);
        Py_END_ALLOW_THREADS
        int rc = __atomic_load_n(&activated, __ATOMIC_ACQUIRE) ? 0 : activate_process();
        pthread_mutex_unlock(&activation_lock);
        if (rc < 0) return -1;
    }
    if (rpy_interp_guarded()) return 0;
    if (rpy_interp_index() < 0) {
        PyErr_Format(RegionError, "cannot use regions in interpreter %lld: import the region package there first",
                     (long long)binding_current_interp());
        return -1;
    }
    if (register_gc_callbacks() < 0) return -1;
    return rpy_interp_guard();
}

bool placement_active(void) { return __atomic_load_n(&activated, __ATOMIC_ACQUIRE) && rpy_interp_guarded(); }

int placement_attach(void) {
    if (rpy_interp_attach() >= 0) return 0;
    PyErr_Format(RegionError, "cannot use regions in interpreter %lld: %d interpreters already do",
                 (long long)binding_current_interp(), RPY_MAX_INTERPRETERS);
    return -1;
}

/* For the test of the "hook removed" refusal: runs fn() while the OBJ domain holds another
 * allocator (one that behaves exactly like the hook, so nothing breaks), then restores the hook. */
static void *alias_malloc(void *ctx, size_t size) { return obj_malloc(ctx, size); }

PyObject *placement_with_foreign_allocator(PyObject *fn) {
    PyMemAllocatorEx hook, alias;
    PyMem_GetAllocator(PYMEM_DOMAIN_OBJ, &hook);
    if (hook.malloc != obj_malloc) {
        PyErr_SetString(RegionError, "the hook is not the OBJ allocator now");
        return NULL;
    }
    alias = hook;
    alias.malloc = alias_malloc;
    PyMem_SetAllocator(PYMEM_DOMAIN_OBJ, &alias);
    PyObject *result = PyObject_CallNoArgs(fn);
    PyMem_SetAllocator(PYMEM_DOMAIN_OBJ, &hook);
    return result;
}


/* ---- Blocks ---- */

int placement_open_regions(rpy_region_t **out, int max) {
    PyInterpreterState *interp = rpy_current_interp();
    int n = 0;
    const block_stack_t *s = stack_or_empty();
    for (int i = s->depth - 1; i >= 0 && n < max; i--) {
        if (s->interps[i] != interp || !s->entries[i]) continue;
        bool seen = false;
        for (int k = 0; k < n; k++) seen |= out[k] == s->entries[i];
        if (!seen) out[n++] = s->entries[i];
    }
    return n;
}

rpy_region_t *placement_current(void) { return innermost_entry_of(stack_or_empty(), rpy_current_interp()); }

PyObject *placement_current_proxy(void) {
    rpy_region_t *top = placement_current();
    return top ? binding_proxy(top) : Py_NewRef(Py_None);
}

/* Points s's thread at its top block (binding_lock held, or s is the calling thread's own stack). */
static void set_current_of(block_stack_t *s) {
    rpy_region_t *top = s->depth ? s->entries[s->depth - 1] : NULL;
    __atomic_store_n(s->current, top ? top->r : NULL, __ATOMIC_RELAXED);
    __atomic_store_n(s->current_interp, top ? s->interps[s->depth - 1] : NULL, __ATOMIC_RELAXED);
}

static void remove_entry(block_stack_t *s, int i) {
    for (; i < s->depth - 1; i++) {
        s->entries[i] = s->entries[i + 1];
        s->interps[i] = s->interps[i + 1];
    }
    s->depth--;
}

/* The entry of self's block opened by interp in s (the innermost), or -1. */
static int find_entry(const block_stack_t *s, rpy_region_t *self, PyInterpreterState *interp) {
    int i = s->depth - 1;
    while (i >= 0 && (s->entries[i] != self || s->interps[i] != interp)) i--;
    return i;
}

/* Takes the entry of self's block opened by interp out of wherever it is (binding_lock held): the
 * calling thread's stack, the stack of the thread that entered it, or the detached list.  false if
 * there is none. */
static bool take_block_entry(rpy_region_t *self, PyInterpreterState *interp) {
    block_stack_t *s = stack;
    int i = s ? find_entry(s, self, interp) : -1;
    if (i < 0 && self->blocks_stack && self->blocks_stack != stack) {
        s = self->blocks_stack;
        i = find_entry(s, self, interp);
    }
    if (i >= 0) {
        remove_entry(s, i);
        set_current_of(s);
        return true;
    }
    i = find_entry(&detached, self, interp);
    if (i < 0) return false;
    remove_entry(&detached, i);
    return true;
}

/* Moves the entries of interp (NULL: all) out of s to the detached list (binding_lock held). */
static void detach_blocks(block_stack_t *s, PyInterpreterState *interp) {
    for (int i = s->depth - 1; i >= 0; i--) {
        if (interp && s->interps[i] != interp) continue;
        rpy_region_t *self = s->entries[i];
        if (!self) {   /* a suspension: nothing to keep */
            remove_entry(s, i);
            continue;
        }
        if (detached.depth < MAX_DEPTH) {
            detached.entries[detached.depth] = self;
            detached.interps[detached.depth++] = s->interps[i];
        }   /* else its reference and count are leaked: the region stays open, never unsafe */
        if (self->blocks_stack == s) self->blocks_stack = NULL;
        remove_entry(s, i);
    }
}

/* The calling thread's Python thread state of `interp` is being cleared (the thread ends, or the
 * interpreter does): its blocks of that interpreter that are still open become detached. */
static void thread_state_cleared(PyObject *capsule) {
    block_stack_t *s = PyCapsule_GetPointer(capsule, "region.blocks");
    PyInterpreterState *interp = PyCapsule_GetContext(capsule);
    if (s != stack) return;   /* cleared from another thread (an interpreter's end): left as it is */
    binding_lock();
    detach_blocks(s, interp);
    set_current_of(s);
    binding_unlock();
}

/* The thread's stack goes with the thread: whatever is still in it (a thread state never cleared)
 * is detached first.  No GIL here: everything touched is under binding_lock, and raw memory. */
static void stack_freed(void *s) {
    binding_lock();
    detach_blocks(s, NULL);
    binding_unlock();
    free(s);
}

static pthread_key_t stack_key;
static pthread_once_t stack_key_once = PTHREAD_ONCE_INIT;
static bool stack_key_made;

static void make_stack_key(void) { stack_key_made = pthread_key_create(&stack_key, stack_freed) == 0; }

/* The calling thread's stack, made at its first block; NULL when out of memory. */
static block_stack_t *own_stack(void) {
    if (likely(stack != NULL)) return stack;
    pthread_once(&stack_key_once, make_stack_key);
    block_stack_t *s = calloc(1, sizeof *s);
    if (!s || !stack_key_made || pthread_setspecific(stack_key, s) != 0) {
        free(s);
        return NULL;
    }
    s->current = &current;
    s->current_interp = &current_interp;
    s->watched_interp = -1;   /* no interpreter's id */
    return stack = s;
}

/* The first block this thread enters in an interpreter puts a capsule in its thread-state dict, whose
 * destructor runs when the thread state is cleared (with the GIL, in the thread, as it ends).  Made
 * before the block is pushed: it must not be region memory. */
static int watch_thread_end(void) {
    PyThreadState *tstate = PyThreadState_Get();
    int64_t interp = binding_current_interp();
    uint64_t thread = PyThreadState_GetID(tstate);
    if (stack->watched_interp == interp && stack->watched_thread == thread) return 0;
    PyObject *dict = PyThreadState_GetDict();
    if (!dict) return 0;   /* no thread state dict: nothing to watch with (never in practice) */
    PyObject *key = PyUnicode_InternFromString("region.blocks");
    int has = key ? PyDict_Contains(dict, key) : -1;
    int rc = has;
    if (has == 0) {
        PyObject *capsule = PyCapsule_New(stack, "region.blocks", thread_state_cleared);
        rc = capsule && PyCapsule_SetContext(capsule, rpy_current_interp()) == 0 ? PyDict_SetItem(dict, key, capsule) : -1;
        Py_XDECREF(capsule);
    }
    Py_XDECREF(key);
    if (rc < 0) return -1;
    stack->watched_interp = interp;
    stack->watched_thread = thread;
    return 0;
}

/* After a context change: a spare keys table that is region memory must not stay where another
 * context could pop it; the top one (the next to be popped) must be the current context's memory.
 * Ordinary spares below the top may stay in a region context (at worst a placement miss when several
 * pops happen without an allocation between them), which keeps a block entry at one replacement.
 * The rule (rpy_spare_rule_t): region memory is the arenas' range, and whose it is the page map's. */
static const void *region_of_spare(const void *table) { return rhost_region_of(table); }

static void replace_wrong_spares(void) {
    region_t *here = receiving(rpy_current_interp());
    rpy_keys_freelist_replace(&(rpy_spare_rule_t){
        .regions = (uintptr_t)rarena_reservation.base, .regions_size = rarena_reservation.span,
        .here = here, .region_of = region_of_spare});
}

int placement_suspend(void) {
    block_stack_t *s = own_stack();
    if (!s) {
        PyErr_NoMemory();
        return -1;
    }
    if (s->depth == MAX_DEPTH) {
        PyErr_Format(RegionError, "cannot suspend placement: %d blocks are already open in this thread",
                     MAX_DEPTH);
        return -1;
    }
    binding_lock();
    s->interps[s->depth] = rpy_current_interp();
    s->entries[s->depth++] = NULL;
    set_current_of(s);
    binding_unlock();
    replace_wrong_spares();
    return 0;
}

int placement_resume(void) {
    PyInterpreterState *interp = rpy_current_interp();
    block_stack_t *s = stack;
    binding_lock();
    int i = s ? find_entry(s, NULL, interp) : -1;
    if (i >= 0) {
        remove_entry(s, i);
        set_current_of(s);
    }
    binding_unlock();
    if (i < 0) {
        PyErr_SetString(RegionError, "cannot resume placement: region.outside() is not in effect in this "
                        "thread and interpreter");
        return -1;
    }
    replace_wrong_spares();
    return 0;
}

int placement_enter(rpy_region_t *self) {
    /* Only an owner opens a block, and becoming one (creating, ownership_take) activated this
     * interpreter: checked here, not redone on every block. */
    assert(placement_active());
    if (!hook_installed()) {
        PyObject *what = region_describe(self);
        PyErr_Format(RegionError, "cannot enter %U: region's allocator hook was removed by a later "
                     "PyMem_SetAllocator call, so new objects would not be placed and region memory "
                     "could be freed by the wrong allocator", what);
        Py_XDECREF(what);
        return -1;
    }
    block_stack_t *s = own_stack();
    if (!s) {
        PyErr_NoMemory();
        return -1;
    }
    if (s->depth == MAX_DEPTH) {
        PyObject *what = region_describe(self);
        PyErr_Format(RegionError, "cannot enter %U: %d blocks are already open in this thread",
                     what, MAX_DEPTH);
        Py_XDECREF(what);
        return -1;
    }
    int index = rpy_interp_index();
    if (index < 0) {
        PyObject *what = region_describe(self);
        PyErr_Format(RegionError, "cannot enter %U: interpreter %lld did not import the region package",
                     what, (long long)binding_current_interp());
        Py_XDECREF(what);
        return -1;
    }
    if (!innermost_block_of(s, rpy_current_interp()) && watch_thread_end() < 0) return -1;
    record_ref(self);
    binding_lock();
    s->interps[s->depth] = rpy_current_interp();
    s->entries[s->depth++] = self;
    self->blocks_stack = s;   /* every block of a region is in its owner's stack */
    set_current_of(s);
    binding_unlock();
    self->blocks_open++;
    __atomic_add_fetch(&rpy_blocks_open, 1, __ATOMIC_RELAXED);   /* read by other interpreters' deallocators */
    if (interp_blocks[index]++ == 0) {
        rpy_freelists_stash();   /* from here on, no freelist hands ordinary memory to a new object */
        membership_blocks_opened(index);
    }
    replace_wrong_spares();
    return 0;
}

int placement_exit(rpy_region_t *self) {
    PyInterpreterState *interp = rpy_current_interp();
    binding_lock();
    bool found = take_block_entry(self, interp);
    if (found && --self->blocks_open == 0) self->blocks_stack = NULL;
    binding_unlock();
    if (!found) {
        PyObject *what = region_describe(self);
        PyErr_Format(RegionError, "cannot exit %U: no block of it is open in this interpreter (a block "
                     "exits in the interpreter that entered it)", what);
        Py_XDECREF(what);
        return -1;
    }
    int index = rpy_interp_index();   /* the block's interpreter is running: it exits where it was entered */
    __atomic_sub_fetch(&rpy_blocks_open, 1, __ATOMIC_RELAXED);
    replace_wrong_spares();
    if (index >= 0 && --interp_blocks[index] == 0) {
        membership_blocks_closed();
        rpy_freelists_unstash();
    } else {
        membership_route_held();
    }
    record_unref(self);
    return 0;
}

/* ---- An interpreter's end ---- */

void placement_end_blocks(void) {
    /* Blocks of this interpreter still open in the calling thread (entered by hand and never exited),
     * or detached (their thread state was cleared first), end with it: their entries would name an
     * interpreter that no longer exists. */
    PyInterpreterState *interp = rpy_current_interp();
    for (;;) {
        binding_lock();
        rpy_region_t *self = innermost_block_of(stack_or_empty(), interp);
        if (!self) self = innermost_block_of(&detached, interp);
        binding_unlock();
        if (!self) break;
        if (placement_exit(self) < 0) {   /* cannot happen: the entry was just seen */
            PyErr_Clear();
            break;
        }
    }
    binding_lock();   /* and its suspensions (region.outside() never exited) */
    for (int i; stack && (i = find_entry(stack, NULL, interp)) >= 0;) remove_entry(stack, i);
    if (stack) set_current_of(stack);
    binding_unlock();
}

void placement_detach(void) {
    placement_end_blocks();
    rpy_interp_detach();
}
