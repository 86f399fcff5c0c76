/* proof.c - the isolation engine's fast pass for Python objects: is a region isolated, and may its
 * objects be freed at once?  One scan of the region's object pages (region/isolation.c) decides it;
 * the audit (audit.c), which walks the object graph and names every escape with its path, runs only
 * when this pass cannot prove isolation.  release(), close(), r.check() and the C API all decide
 * here first.  docs/design.md, "The isolation proof", has the cost model.
 *
 * THE PROOF.  Every object X of the region has
 *     refcnt(X) = internal(X) + external(X),   internal(X), external(X) >= 0,
 * where internal(X) counts the references region objects (and the Region, to its root) hold to X,
 * as their tp_traverse reports them.  Summed over the region:
 *     sum refcnt - sum internal = sum external,
 * and a sum of non-negative terms is 0 exactly when every term is.  So the region is referenced
 * from nowhere outside iff the sum of its objects' counts equals the number of references its
 * objects hold to its own objects - two counters, no per-object bookkeeping, no write to any object.
 * What that relies on, each checked by the scan (else "not proven", and the audit decides):
 *   - every live block of the object heap is either an object whose type the interpreter knows
 *     (rpy_object_in_block) or a block an object owns (rpy_owned_blocks: a key table, a str's UTF-8
 *     copy), counted block for block (proof_unreferenced), so no object of another type escapes
 *     the sum; an owned block that even looks like an object stops the proof (count_owned), so the
 *     count of buffers cannot hide one; and a block of program-written bytes is never scanned as the
 *     object its bytes may pose as (BLOCKS THAT ONLY LOOK LIKE OBJECTS);
 *   - a reference into the region's other memory (its buffer pages, not its object pages: an object in
 *     a buffer block), or to where no object can be, is never counted: the scan refuses it
 *     (riso_t.stray);
 *   - tp_traverse visits each reference an object OWNS, once: CPython's cycle collector relies on the
 *     same contract (gcmodule.c subtract_refs would drive a count below zero otherwise, which debug
 *     builds assert), and the engine visits the str keys dict_traverse skips itself, and a split
 *     dict's values but not the keys its class owns (rpy_dict_view);
 *   - no running frame's frame object is in the region (its count includes the interpreter's
 *     execution state, which no traversal reports; the audit knows how to discount it);
 *   - no immortal object (3.12+) is in the region: rpy_object_in_block does not take a count of 2^32
 *     or more for an object's, so such a block is left over and the blocks do not balance.
 * References to objects outside the region are counted per target (riso_t.outside) and each target
 * is vetted once: it must be safe to share (audit_safe_to_share), and it says whether the region
 * refers to classes or to mortal objects (ownership.c, "Crossing interpreters").
 *
 * NO PYTHON CODE RUNS from the first count to the decision: collection is paused, and tp_traverse,
 * the type walk and the block visits run none.  Everything the pass keeps is raw memory.
 */
#include "binding.h"

/* ---- The interpreter's types ---- */

/* The set of every type of the interpreter (rpy_foreach_type), which tells an object's block from a
 * buffer: a block holds an object only if its type field points to one of these.
 *
 * Walking the type tree costs more than scanning a small region, so each interpreter keeps its set
 * between proofs.  A kept set is sound to use while no type has been freed since it was taken
 * (rpy_types_freed): then every pointer in it is a live type, safe to read.  Types made since are
 * missing from it, and their objects would pass for buffers the region cannot account for; so a
 * proof that finds such blocks with a kept set takes a new set and scans again (proof_run), and the
 * audit, which must find every object, always takes a new one.  Before the scan reads further than
 * its walk, though (BLOCKS THAT ONLY LOOK LIKE OBJECTS): an object of an unknown type is probed
 * further into its block, where its own fields, which the program may have written, can pose as an
 * object's header, and one of a new str subclass owns program-written bytes the walk leaves
 * unclaimed.  So a kept set's filter watches for headers of unknown types (rpy_type_filter_t), and a
 * walk that saw one takes a new set and walks again before anything it found is scanned further
 * (proof_run). */
typedef struct type_cache {
    int64_t interp;            /* the id of the interpreter it is of (ids are never reused); -1: none */
    uint64_t types_freed;      /* rpy_types_freed() when it was taken */
    rptrmap_t map;
    PyTypeObject **in_regions; /* the types that live in region memory (classes made in a block) */
    size_t in_regions_count, in_regions_capacity;
    bool failed;               /* out of memory while taking it */
} type_cache_t;

static type_cache_t type_caches[RPY_MAX_INTERPRETERS];   /* by rpy_interp_index, under its GIL */

typedef struct type_set {
    type_cache_t *cache;       /* the interpreter's, or `own` when it is not attached */
    type_cache_t own;
    bool fresh;                /* taken for this proof */
    uintptr_t base;            /* the region's arena, [base, base + size) ... */
    size_t size;
    size_t in_region;          /* ... and how many types live there */
} type_set_t;

static void type_cache_add(PyTypeObject *type, void *arg) {
    type_cache_t *cache = arg;
    if (cache->failed) return;
    if (!rptrmap_put(&cache->map, type)) cache->failed = true;
    if ((uintptr_t)type - (uintptr_t)rarena_reservation.base >= rarena_reservation.span) return;
    if (cache->in_regions_count == cache->in_regions_capacity) {
        size_t capacity = cache->in_regions_capacity ? 2 * cache->in_regions_capacity : 16;
        PyTypeObject **grown = PyMem_RawRealloc(cache->in_regions, capacity * sizeof *grown);
        if (!grown) {
            cache->failed = true;
            return;
        }
        cache->in_regions = grown;
        cache->in_regions_capacity = capacity;
    }
    cache->in_regions[cache->in_regions_count++] = type;
}

static void type_cache_clear(type_cache_t *cache) {
    rptrmap_clear(&cache->map);
    PyMem_RawFree(cache->in_regions);
    *cache = (type_cache_t){.interp = -1};
}

/* The set for a proof of region r: the interpreter's kept one unless `fresh` is asked for or it is
 * out of date.  0, or -1 with MemoryError. */
static int type_set_take(type_set_t *set, region_t *r, bool fresh) {
    int index = rpy_interp_index();
    *set = (type_set_t){.base = (uintptr_t)rarena_base(r->arena_index), .size = rarena_reservation.arena_size};
    set->cache = index >= 0 ? &type_caches[index] : &set->own;
    type_cache_t *cache = set->cache;
    int64_t interp = binding_current_interp();
    uint64_t freed = rpy_types_freed();
    if (fresh || index < 0 || cache->interp != interp || cache->types_freed != freed || !cache->map.live) {
        type_cache_clear(cache);
        /* a bare interpreter has about 550 types */
        cache->failed = !rptrmap_reserve(&cache->map, 1024);
        if (!cache->failed) rpy_foreach_type(type_cache_add, cache);
        if (cache->failed) {
            type_cache_clear(cache);
            PyErr_NoMemory();
            return -1;
        }
        cache->interp = index >= 0 ? interp : -1;
        cache->types_freed = freed;
        set->fresh = true;
    }
    for (size_t i = 0; i < cache->in_regions_count; i++)
        set->in_region += (uintptr_t)cache->in_regions[i] - set->base < set->size;
    return 0;
}

static void type_set_release(type_set_t *set) {
    if (set->cache == &set->own) type_cache_clear(&set->own);
}

/* ---- The scan ---- */

/* A growable list of objects, in libc memory once it outgrows the caller's array it may start in
 * (a short region's close then allocates none). */
typedef struct object_list {
    PyObject **items;
    size_t count, capacity;
    bool in_callers_array;
} object_list_t;

#define OBJECT_LIST_START 256

static void object_list_free(object_list_t *list) {
    if (!list->in_callers_array) free(list->items);
    *list = (object_list_t){0};
}

typedef struct proof {
    rpy_region_t *self;
    riso_t scan;
    type_set_t types;
    rpy_type_filter_t filter;    /* known_type over `types` */
    uint64_t counts;             /* the sum of the objects' reference counts */
    size_t objects;
    size_t gc_objects;           /* those of them the collector counts (PyType_IS_GC) */
    size_t other_blocks;         /* object-heap blocks that hold no object */
    size_t owned_in_objects;     /* blocks the objects own, in object memory / in its other memory */
    size_t owned_in_buffers;
    bool owned_outside;          /* an owned block outside the region's memory */
    bool unproven;               /* something the proof cannot account for (see above) */
    bool stale;                  /* the walk met a type the kept set lacks: walk again with a new one */
    bool all_releasable;         /* every object's blocks known, and releasable ("Bulk teardown") */
    Py_ssize_t hidden;           /* rpy_hidden_references, summed */
    /* the vetting of the outside targets (only of a proof that stands: BLOCKS THAT ONLY LOOK LIKE
     * OBJECTS) */
    bool vetted;
    bool outside_safe;
    bool refers_to_classes, refers_to_mortal;
    /* proof_isolated_visiting's visitor, or NULL */
    void (*each)(PyObject *op, void *arg);
    void *each_arg;
    /* BLOCKS THAT ONLY LOOK LIKE OBJECTS (below): the candidates whose scan waits for the end of the
     * page walk, and the blocks of program-written bytes found by then (block -> 0; libc memory: the
     * helper's half fills its own). */
    object_list_t later;
    rptrmap_t claimed;
    /* The objects the walk scanned whose visit by `each` waits for its end (show_to_each), and for
     * the helper's half of a split scan (SPLIT SCANS below), the proof it is part of. */
    object_list_t visit;
    struct proof *first;
} proof_t;

/* The filter's slow answer (rpy_type_filter_t has the fast ones). */
static bool known_type(PyTypeObject *type, void *arg) {
    return rptrmap_get(&((type_set_t *)arg)->cache->map, type) != NULL;
}

/* The filter over a type set: a region where no class was made holds no type. */
static rpy_type_filter_t type_filter(type_set_t *set) {
    return (rpy_type_filter_t){.is_type = known_type, .arg = set, .typeless = set->base,
                               .typeless_size = set->in_region ? 0 : set->size, .watch_unknown = !set->fresh};
}

static int visit_reference(PyObject *child, void *arg) {
    riso_reference(&((proof_t *)arg)->scan, child);
    return 0;
}

/* Whether a block of object memory looks like an object to a test at least as lenient as the scan's
 * (any size, where reading the header words cannot run past committed memory: riso_probe_size).  The
 * filter's watch (rpy_type_filter_t) is off meanwhile: such a probe reads past the block, into
 * whatever lies next to it. */
static bool looks_like_an_object(proof_t *p, void *block) {
    bool watching = p->filter.watch_unknown;
    p->filter.watch_unknown = false;
    bool looks = rpy_object_in_block(block, riso_probe_size(block, RPY_OBJECT_PROBE_REACH), &p->filter) != NULL;
    p->filter.watch_unknown = watching;
    return looks;
}

/* A block an object owns.  One in object memory must be one of the blocks the scan finds holding no
 * object: so it must not look like an object even to the lenient test above. */
static inline void count_owned(void *block, void *arg) {
    proof_t *p = arg;
    if (riso_in_object_memory(&p->scan, block)) {
        p->owned_in_objects++;
        if (looks_like_an_object(p, block)) p->unproven = true;
    } else if (riso_in_buffer_memory(&p->scan, block)) {
        p->owned_in_buffers++;
    } else {
        p->owned_outside = true;
    }
}

/* The references op holds, sorted: the common containers read in place, the rest through
 * rpy_visit_references (tp_traverse). */
static inline __attribute__((always_inline)) void scan_references(proof_t *p, PyObject *op) {
    PyTypeObject *t = Py_TYPE(op);
    if (t == &PyTuple_Type || t == &PyList_Type) {
        PyObject **items = t == &PyTuple_Type ? ((PyTupleObject *)op)->ob_item : ((PyListObject *)op)->ob_item;
        for (Py_ssize_t i = 0, n = Py_SIZE(op); i < n; i++) riso_reference(&p->scan, items[i]);
        if (t == &PyList_Type && items) count_owned(items, p);   /* rpy_owned_blocks' answer, no call */
    } else if (t == &PyDict_Type) {
        rpy_dict_view_t view;
        rpy_dict_view(op, &view);
        if (view.owned_keys) count_owned(view.owned_keys, p);    /* rpy_owned_blocks' answer, no call */
        if (!view.blocks_known) p->all_releasable = false;
        if (view.values) {
            for (Py_ssize_t i = 0; i < view.count; i++) riso_reference(&p->scan, view.values[i]);
        } else {
            const char *entry = view.entries;
            for (Py_ssize_t i = 0; i < view.count; i++, entry += view.stride) {
                riso_reference(&p->scan, *(PyObject *const *)(entry + view.key_at));
                riso_reference(&p->scan, *(PyObject *const *)(entry + view.value_at));
            }
        }
    } else if (t != &PyUnicode_Type && t != &PyLong_Type && t != &PyFloat_Type && t != &PyBytes_Type) {
        if (rpy_is_running_frame_object(op)) p->unproven = true;
        else rpy_visit_references(op, visit_reference, p);
    }
}

/* The types whose objects the scan reads in place and proof_isolated_visiting's `each` does not see
 * (immutable: freeze() leaves them as they are). */
static inline bool read_in_place_and_immutable(PyObject *op) {
    PyTypeObject *t = Py_TYPE(op);
    return t == &PyTuple_Type || t == &PyLong_Type || t == &PyFloat_Type ||
           (t == &PyUnicode_Type && rpy_str_is_plain(op));
}

/* An object's part of the sums: its count, its references, the blocks it owns. */
static inline __attribute__((always_inline)) bool scan_object(proof_t *p, PyObject *op) {
    p->counts += (uint64_t)Py_REFCNT(op);
    p->objects++;
    scan_references(p, op);
    PyTypeObject *t = Py_TYPE(op);
    p->gc_objects += PyType_IS_GC(t);
    /* The blocks lists and dicts own were counted with their references; tuples, ints, floats and
     * plain strs own none: rpy_owned_blocks for the rest. */
    if (t != &PyList_Type && t != &PyDict_Type && t != &PyTuple_Type && t != &PyLong_Type &&
        t != &PyFloat_Type && !(t == &PyUnicode_Type && rpy_str_is_plain(op))) {
        bool releasable;
        if (!rpy_owned_blocks(op, count_owned, p, &releasable) || !releasable) p->all_releasable = false;
    }
    if (rpy_hidden_references_counted) p->hidden += rpy_hidden_references(op);
    return !p->unproven;
}

/* BLOCKS THAT ONLY LOOK LIKE OBJECTS: rpy_object_in_block takes a block for an object by its first
 * words, and a block of program-written bytes in object memory (rpy_user_bytes_blocks: a bytearray's
 * buffer, a str's separate data or cached copies) can hold those words: a copy of an object's header,
 * or one packed with struct and id().  Scanned as that object, its "pointers" would be followed (a
 * list's items, tp_traverse) and the process could crash.  So the page walk scans at once only what
 * cannot fault whatever its words say (scan_now): an int, a float, a str that owns no block (their
 * scan reads their own block), and the containers the scan reads in place when all it reads of them
 * lies in the region's memory (riso_readable).  It notes the blocks of program-written bytes that the
 * str and bytearray candidates name, and keeps every other candidate for after the walk (proof_t.later),
 * when all of those blocks are known: a candidate inside one of them is bytes, not an object, and is
 * never read further (scan_later).  Bytes posing as what the walk scanned at once were summed, their
 * "references" sorted by value, nothing followed; and their block, probed after the walk, looks like
 * an object (bytes_posed_as_objects), so the proof gives up to the audit, which enumerates the
 * objects by the same rule (proof_foreach_object).  A candidate that names such blocks may itself be
 * bytes posing as a str: its blocks are noted all the same, which can only keep genuine objects out
 * of the scan, and the blocks then do not balance.  Either way no outside target is read
 * (vet_outside) unless the proof stands: bytes' "references" are never dereferenced.  Key tables
 * are the one other kind of block in object memory, and their words are the interpreter's: its
 * second holds the table's sizes in its low bytes (unaligned for the tables of under 256 slots) and
 * the interpreter's version counter above them, so it equals a type's address only by an accident of
 * the allocator.  What this does not cover: bytes an extension keeps in PyObject_Malloc memory behind
 * a type the engine does not know (pyexpat's parser buffers); docs/design.md, "Bytes that look like
 * objects". */

/* Whether what the scan reads of a dict's key table (rpy_dict_view) lies in the region's memory,
 * aligned, each field read only once that is known: an exact dict, not split. */
static inline bool dict_tables_in_region(proof_t *p, PyObject *op) {
    const rpy_key_table_layout_t *layout = &rpy_key_table_layout;
    const char *keys = (const char *)((PyDictObject *)op)->ma_keys;
    if (((PyDictObject *)op)->ma_values) return false;
    if ((const void *)keys == layout->empty) return true;
    if (((uintptr_t)keys & 7) || !riso_readable(&p->scan, keys, layout->header)) return false;
    Py_ssize_t n = *(const Py_ssize_t *)(keys + layout->nentries);
    uint8_t log2_index_bytes = *(const uint8_t *)(keys + layout->log2_index_bytes);
    bool general = *(const uint8_t *)(keys + layout->kind) == layout->general_kind;
    size_t entry = general ? layout->entry : layout->unicode_entry;
    /* A table's indices take 8 bytes or more, so its entries are aligned as its header is. */
    if (n < 0 || (size_t)n > SIZE_MAX / entry || log2_index_bytes < 3 || log2_index_bytes >= 8 * sizeof(size_t) - 8)
        return false;
    uintptr_t entries = (uintptr_t)keys + layout->indices + ((uintptr_t)1 << log2_index_bytes);
    return riso_readable(&p->scan, (const void *)entries, (size_t)n * entry);
}

/* Whether op's scan may run during the walk: a tuple's items lie within its block (`room`: its block's
 * bytes from op on), a list's item array and a dict's key table in the region's memory, aligned as
 * the allocator aligns them.  Others (a list whose array was grown outside any block, a split dict,
 * every other type) wait. */
static inline __attribute__((always_inline)) bool scan_now(proof_t *p, PyObject *op, size_t room) {
    PyTypeObject *t = Py_TYPE(op);
    if (t == &PyList_Type) {
        Py_ssize_t n = Py_SIZE(op);
        PyObject **items = ((PyListObject *)op)->ob_item;
        return n >= 0 && n <= ((PyListObject *)op)->allocated && !((uintptr_t)items & 7) &&
               riso_readable(&p->scan, items, (size_t)n * sizeof(PyObject *));
    }
    if (t == &PyDict_Type) return dict_tables_in_region(p, op);
    if (t == &PyTuple_Type) {
        Py_ssize_t n = Py_SIZE(op);
        return n >= 0 && (size_t)n <= (room - offsetof(PyTupleObject, ob_item)) / sizeof(PyObject *);
    }
    return t == &PyLong_Type || t == &PyFloat_Type || (t == &PyUnicode_Type && rpy_str_is_plain(op));
}

/* Appends op to a list of objects to scan after the page walk. */
static bool note_for_later(proof_t *p, object_list_t *list, PyObject *op) {
    if (unlikely(list->count == list->capacity)) {
        size_t capacity = list->capacity ? 2 * list->capacity : OBJECT_LIST_START;
        PyObject **grown = list->in_callers_array ? malloc(capacity * sizeof *grown)
                                                  : realloc(list->items, capacity * sizeof *grown);
        if (!grown) {
            p->scan.failed = true;   /* the scan reports out of memory */
            return false;
        }
        if (list->in_callers_array) memcpy(grown, list->items, list->count * sizeof *grown);
        *list = (object_list_t){grown, list->count, capacity, false};
    }
    list->items[list->count++] = op;
    return true;
}

static void claim_block(void *block, void *arg) {
    proof_t *p = arg;
    if (riso_in_object_memory(&p->scan, block) && !rptrmap_put(&p->claimed, block)) p->scan.failed = true;
}

/* Whether a block, or the block a candidate lies in, is one of program-written bytes (claim_block). */
static inline bool block_claimed(const proof_t *p, const void *block) {
    return p->claimed.live && rptrmap_get(&p->claimed, block);
}

static inline bool in_claimed_block(const proof_t *p, PyObject *op) {
    return block_claimed(p, (char *)op - rpy_preheader_size(Py_TYPE(op)));
}

/* Inlined into the page loops: it runs once per block.  second: p is the helper's half, on the helper
 * thread (SPLIT SCANS), whose p->each is NULL (`each` is the calling thread's: p->first->each). */
static inline __attribute__((always_inline)) bool scan_one(proof_t *p, void *block, size_t size, bool second) {
    PyObject *op = rpy_object_in_block(block, size, &p->filter);
    if (!op) {   /* a buffer (accounted for below), or an object of a type the interpreter lacks */
        p->other_blocks++;
        return true;
    }
    size_t room = size - (size_t)((char *)op - (char *)block);
    if (scan_now(p, op, room)) {
        if (!scan_object(p, op)) return false;
        bool visiting = second ? p->first->each : p->each;
        return !visiting || read_in_place_and_immutable(op) || note_for_later(p, &p->visit, op);
    }
    rpy_user_bytes_blocks(op, room, claim_block, p);
    return note_for_later(p, &p->later, op);
}

#define LATER_AHEAD 16

/* The scan of the objects kept for after the walk, but for those inside blocks of program-written
 * bytes: false when it stopped (not proven). */
static bool scan_later(proof_t *p, const object_list_t *list) {
    for (size_t i = 0; i < list->count; i++) {
        PyObject *op = list->items[i];
        /* A big region's objects left the cache since the walk read them: ask for the ones ahead. */
        if (i + LATER_AHEAD < list->count) __builtin_prefetch(list->items[i + LATER_AHEAD]);
        if (in_claimed_block(p, op)) {
            p->other_blocks++;   /* bytes, which their owner counted as its block */
            continue;
        }
        if (!scan_object(p, op)) return false;
        /* After op's count was read: each may take a reference. */
        if (p->each && !read_in_place_and_immutable(op)) p->each(op, p->each_arg);
    }
    return true;
}

/* The objects the walk scanned at once, shown to `each` now that the blocks of program-written bytes
 * are known: bytes posing as an object are never shown (each may write to what it sees). */
static void show_to_each(proof_t *p, const object_list_t *visit) {
    for (size_t i = 0; i < visit->count; i++) {
        PyObject *op = visit->items[i];
        if (!in_claimed_block(p, op)) p->each(op, p->each_arg);
    }
}

/* SPLIT SCANS: a big region's whole pages are read by two threads at once, the calling thread and
 * libregion's helper thread (region-internal.h), which holds no GIL and must call nothing of the
 * interpreter's.  Both halves follow the page walk's rule above, whose scans call nothing of it; then
 * the calling thread, with the GIL it held throughout, scans what both kept for later (proof_scan)
 * once the blocks of program-written bytes that both halves noted are known, and shows `each` (the
 * visitor riding on the proof: freeze()'s plan) what both scanned.  Nothing changes the heap
 * meanwhile: that thread waits for the helper, holding the GIL, and collection is paused.  The sums
 * are over objects, so the halves' are added (proof_merge). */

static bool scan_block(void *block, size_t size, void *arg) { return scan_one(arg, block, size, false); }

/* The reads of a block's header stall on memory, and the work between them keeps the hardware
 * prefetcher from running far enough ahead: ask for the line PREFETCH_AHEAD bytes on. */
#define PREFETCH_AHEAD 1024

static inline __attribute__((always_inline)) bool scan_whole_page(proof_t *p, char *first, size_t stride,
                                                                  size_t usable, size_t count, bool second) {
    char *end = first + count * stride;
    for (; first < end; first += stride) {
        __builtin_prefetch(first + PREFETCH_AHEAD);
        if (!scan_one(p, first, usable, second)) return false;
    }
    return true;
}

static bool scan_page(char *first, size_t stride, size_t usable, size_t count, void *arg) {
    return scan_whole_page(arg, first, stride, usable, count, false);
}

static bool scan_page_second(char *first, size_t stride, size_t usable, size_t count, void *arg) {
    return scan_whole_page(arg, first, stride, usable, count, true);
}

/* Adds a block the helper's filter noted to the calling thread's (an overflow is noted as one). */
static void note_watched(proof_t *p, void *block) {
    rpy_type_filter_t *f = &p->filter;
    if (f->watched < RPY_TYPE_FILTER_WATCHED) f->watched_blocks[f->watched] = block;
    if (f->watched <= RPY_TYPE_FILTER_WATCHED) f->watched++;
}

/* Whether the walk met what may be an object of a type the kept set lacks (rpy_type_filter_t): a
 * block it noted that is neither a dict's key table nor a block of program-written bytes (claimed),
 * or more of them than it keeps. */
static bool walk_met_unknown_type(proof_t *p) {
    const rpy_type_filter_t *f = &p->filter;
    if (f->watched > RPY_TYPE_FILTER_WATCHED) return true;
    for (size_t i = 0; i < f->watched; i++) {
        void *block = f->watched_blocks[i];
        if (!block_claimed(p, block) && !rpy_block_is_key_table(block, riso_block_size(block))) return true;
    }
    return false;
}

/* The helper's sums join the calling thread's (its scan's counts joined already: riso_scan_split),
 * and the blocks of program-written bytes it noted join those the calling thread did. */
static void proof_merge(proof_t *p, const proof_t *second) {
    p->counts += second->counts;
    p->objects += second->objects;
    p->gc_objects += second->gc_objects;
    p->other_blocks += second->other_blocks;
    p->owned_in_objects += second->owned_in_objects;
    p->owned_in_buffers += second->owned_in_buffers;
    p->owned_outside = p->owned_outside || second->owned_outside;
    p->unproven = p->unproven || second->unproven;
    p->all_releasable = p->all_releasable && second->all_releasable;
    p->hidden += second->hidden;
    for (size_t i = 0; i < second->filter.watched && i < RPY_TYPE_FILTER_WATCHED; i++)
        note_watched(p, second->filter.watched_blocks[i]);
    if (second->filter.watched > RPY_TYPE_FILTER_WATCHED) p->filter.watched = RPY_TYPE_FILTER_WATCHED + 1;
    rptrmap_foreach(&second->claimed, cell)
        if (!rptrmap_put(&p->claimed, cell->key)) p->scan.failed = true;
}

/* Bytes posing as an object that the walk scanned at once were summed as one: the proof cannot stand
 * (BLOCKS THAT ONLY LOOK LIKE OBJECTS).  Their owner's own rule says so only when it reports the block
 * (rpy_owned_blocks does not for a str subclass's data): each block of program-written bytes is
 * probed here, as leniently as count_owned does. */
static void bytes_posed_as_objects(proof_t *p) {
    rptrmap_foreach(&p->claimed, cell)
        if (looks_like_an_object(p, (void *)cell->key)) p->unproven = true;
}

/* One scan of the region, split when it is big (SPLIT SCANS), then the objects kept for after the
 * page walk (BLOCKS THAT ONLY LOOK LIKE OBJECTS), unless the walk saw a header of a type the kept set
 * lacks (the caller takes a new one: proof_run).  The helper's proof is set up only for a split: it
 * is over a KiB to clear, on the close of every short region. */
static void proof_scan(proof_t *p) {
    riso_visitor_t visitor = {scan_page, scan_block, p};
    PyObject *start[OBJECT_LIST_START];
    p->later = (object_list_t){start, 0, OBJECT_LIST_START, true};
    if (!riso_will_split(&p->scan)) {
        if (riso_scan(&p->scan, &visitor) && !(p->stale = walk_met_unknown_type(p)) &&
            scan_later(p, &p->later) && p->each)
            show_to_each(p, &p->visit);
    } else {
        proof_t second = {.self = p->self, .all_releasable = true, .filter = type_filter(&p->types),
                          .first = p};
        riso_shard(&second.scan, &p->scan);
        riso_split_t split = {.shard = &second.scan, .visitor = {scan_page_second, NULL, &second}};
        bool walked = riso_scan_split(&p->scan, &visitor, &split);
        if (split.used) proof_merge(p, &second);
        if (walked && !p->scan.failed && !(p->stale = walk_met_unknown_type(p)) &&
            scan_later(p, &p->later) && scan_later(p, &second.later) && p->each) {
            show_to_each(p, &p->visit);
            show_to_each(p, &second.visit);
        }
        object_list_free(&second.later);
        object_list_free(&second.visit);
        rptrmap_clear(&second.claimed);
    }
    object_list_free(&p->later);
    object_list_free(&p->visit);
    bytes_posed_as_objects(p);
    rptrmap_clear(&p->claimed);
}

/* Vets each outside target once. */
static void vet_outside(proof_t *p) {
    p->vetted = true;
    p->outside_safe = true;
    p->refers_to_classes = p->refers_to_mortal = false;
    rptrmap_foreach(&p->scan.outside, cell) {
        PyObject *target = (PyObject *)cell->key;
        p->outside_safe = p->outside_safe && audit_safe_to_share(target);
        p->refers_to_classes = p->refers_to_classes || audit_is_class(target);
        p->refers_to_mortal = p->refers_to_mortal || !rpy_is_immortal(target);
    }
}

/* Runs the scan: 0 (the verdict in proof_isolated), or -1 with an exception.  Collection is paused
 * until proof_end. */
static int proof_run(proof_t *p, rpy_region_t *self, bool *gc_was_enabled) {
    void (*each)(PyObject *, void *) = p->each;
    void *each_arg = p->each_arg;
    membership_sync();
    *gc_was_enabled = rpy_gc_pause();
    for (bool fresh = false;; fresh = true) {
        *p = (proof_t){.self = self, .all_releasable = true, .each = each, .each_arg = each_arg};
        if (each) each(NULL, each_arg);   /* a new pass: forget the last one's visits */
        if (type_set_take(&p->types, self->r, fresh) < 0) return -1;
        p->filter = type_filter(&p->types);
        if (riso_begin(&p->scan, self->r) != REGION_OK) {
            PyErr_NoMemory();
            return -1;
        }
        proof_scan(p);
        if (p->scan.failed) {
            PyErr_NoMemory();
            return -1;
        }
        /* A header of a type the kept set lacks (proof_scan stopped after the walk), or blocks no
         * object accounts for, found with a kept set: objects of a type made since?  A new set. */
        if (!p->stale && (p->types.fresh || p->unproven || p->other_blocks == p->owned_in_objects)) break;
        riso_end(&p->scan);
        type_set_release(&p->types);
    }
    if (self->root) riso_reference(&p->scan, self->root);   /* the Region's own reference */
    riso_flush(&p->scan);   /* the references scan_later and the root's sorted since the walk */
    /* A scan that stopped short has not seen every target; one whose blocks do not balance may have
     * sorted bytes' words among them. */
    if (!p->unproven && !p->scan.stray && p->other_blocks == p->owned_in_objects) vet_outside(p);
    return 0;
}

/* Nothing outside refers into the region: every block of object memory is an object or a block an
 * object owns (so no object of an unknown type escaped the sum), and the sum balances. */
static bool proof_unreferenced(const proof_t *p) {
    return !p->unproven && !p->scan.stray && p->other_blocks == p->owned_in_objects &&
           p->counts == p->scan.internal;
}

static void proof_end(proof_t *p, bool gc_was_enabled) {
    riso_end(&p->scan);
    type_set_release(&p->types);
    rpy_gc_resume(gc_was_enabled);
}

int proof_isolated(rpy_region_t *self, bool *refers_to_classes, bool *refers_to_mortal) {
    return proof_isolated_visiting(self, NULL, NULL, refers_to_classes, refers_to_mortal);
}

int proof_isolated_visiting(rpy_region_t *self, void (*each)(PyObject *op, void *arg), void *arg,
                            bool *refers_to_classes, bool *refers_to_mortal) {
    proof_t p = {.each = each, .each_arg = arg};
    bool gc_was_enabled;
    int result = -1;
    *refers_to_classes = *refers_to_mortal = true;   /* unless the scan proves otherwise */
    if (proof_run(&p, self, &gc_was_enabled) == 0) {
        if (p.vetted) {   /* every reference out was counted, garbage's too: an upper bound */
            *refers_to_classes = p.refers_to_classes;
            *refers_to_mortal = p.refers_to_mortal;
        }
        result = proof_unreferenced(&p) && p.outside_safe;
    }
    proof_end(&p, gc_was_enabled);
    return result;
}

/* ---- Bulk teardown ----
 *
 * Closing a region in bulk frees every object at once with the region's heaps (region_destroy: every
 * page of its heaps, O(pages)) instead of one deallocation per object.  That is only sound when the scan proves
 *   (1) nothing outside the region refers to a region object (proof_unreferenced);
 *   (2) nothing outside uses a block of the region's heaps: every block of the object heap is an
 *       object the scan accepted or a block one of them owns (proof_unreferenced), and the buffer
 *       heap's live blocks are exactly those the objects own (rpy_owned_blocks lists them; the C
 *       API's detached buffers live in a heap of their own until freed or their region ends,
 *       region-host.h), so no block is left for anyone else (a global dict's key table made in a
 *       block, say);
 *   (3) no object needs its deallocator for anything but releasing references and memory: every
 *       object is one rpy_owned_blocks calls releasable - a type it knows, with no finalizer, no
 *       weakref to it, not an interned string (the interned table points to those).
 * Otherwise r.close() frees object by object.  The commit unregisters the Region (handles and
 * region_of stop finding it), destroys the heaps, and only after that releases the references the
 * objects held to outside objects, so whatever code those releases run can no longer reach region
 * memory. */

/* Condition (2): every block of the buffer heap is one the objects own (those of the object heap are
 * the objects and the blocks they own: proof_unreferenced). */
static bool blocks_accounted(proof_t *p) {
    size_t buffers, bytes;
    rhost_heap_usage(p->self->r, false, &buffers, &bytes);
    return !p->owned_outside && buffers == p->owned_in_buffers;
}

/* The objects are gone with their heaps: release the references they held to outside objects.  Any
 * code that runs now (an outside object's finalizer) can no longer reach region memory. */
static void release_outside(proof_t *p) {
    rptrmap_foreach(&p->scan.outside, cell) {
        PyObject *target = (PyObject *)cell->key;
        for (uint64_t i = 0; i < cell->value; i++) Py_DECREF(target);
    }
}

int teardown_bulk(rpy_region_t *self) {
    proof_t p = {0};
    bool gc_was_enabled;
    int result = TEARDOWN_ERROR;
    if (proof_run(&p, self, &gc_was_enabled) == 0) {
        if (!proof_unreferenced(&p)) {
            result = TEARDOWN_ESCAPES;
        } else if (!rpy_bulk_teardown_possible() || !p.all_releasable || !blocks_accounted(&p)) {
            result = TEARDOWN_ISOLATED;
        } else {
            /* Every reference the objects hold is dropped: their counts, and those debug builds count
             * besides (a dict's key table). */
            rpy_references_dropped((Py_ssize_t)p.counts + p.hidden);
            self->root = NULL;                      /* its reference is among those dropped */
            region_t *r = self->r;
            membership_forget(self);                /* the members die with the heaps: no list may keep them */
            region_destroy(r);                      /* every block at once (its owner is the caller) */
            self->r = NULL;
            self->gone = "closed (freed in bulk)";
            rpy_gc_objects_freed(p.gc_objects);     /* as p.gc_objects PyObject_GC_Del calls would */
            release_outside(&p);
            result = TEARDOWN_DONE;
        }
    }
    proof_end(&p, gc_was_enabled);
    return result;
}

/* ---- The objects of the heap, for the audit ---- */

/* Every candidate of the heap, then fn on each one that no block of program-written bytes holds
 * (BLOCKS THAT ONLY LOOK LIKE OBJECTS), so that fn never sees bytes posing as an object. */
typedef struct foreach {
    proof_t *p;
    object_list_t candidates;
} foreach_t;

static bool foreach_block(void *block, size_t size, void *arg) {
    foreach_t *f = arg;
    PyObject *obj = rpy_object_in_block(block, size, &f->p->filter);
    if (!obj) return true;
    rpy_user_bytes_blocks(obj, size - (size_t)((char *)obj - (char *)block), claim_block, f->p);
    return note_for_later(f->p, &f->candidates, obj);
}

int proof_foreach_object(rpy_region_t *self, bool (*fn)(PyObject *op, void *arg), void *arg) {
    proof_t p = {.self = self};   /* for its filter, its scan's maps and its claimed blocks */
    foreach_t f = {.p = &p};
    if (type_set_take(&p.types, self->r, true) < 0) return -1;   /* every object: a fresh set */
    p.filter = type_filter(&p.types);
    region_status status = riso_begin(&p.scan, self->r);
    if (status == REGION_OK && !riso_scan(&p.scan, &(riso_visitor_t){NULL, foreach_block, &f}))
        status = REGION_ENOMEM;
    bool stopped = false;
    for (size_t i = 0; status == REGION_OK && !stopped && i < f.candidates.count; i++) {
        PyObject *obj = f.candidates.items[i];
        if (in_claimed_block(&p, obj)) continue;
        stopped = !fn(obj, arg);
    }
    object_list_free(&f.candidates);
    rptrmap_clear(&p.claimed);
    riso_end(&p.scan);
    type_set_release(&p.types);
    if (status != REGION_OK) {
        PyErr_NoMemory();
        return -1;
    }
    return stopped ? 1 : 0;
}

typedef struct heap_objects {
    bool include_shared;
    PyObject **found;
    size_t count, capacity;
    bool failed;
} heap_objects_t;

static bool collect_object(PyObject *obj, void *arg) {
    heap_objects_t *h = arg;
    if (!h->include_shared && rpy_is_shared(obj)) return true;
    if (h->count == h->capacity) {
        size_t capacity = h->capacity ? h->capacity * 2 : 64;
        PyObject **found = PyMem_RawRealloc(h->found, capacity * sizeof *found);
        if (!found) {
            h->failed = true;
            return false;
        }
        h->found = found;
        h->capacity = capacity;
    }
    h->found[h->count++] = obj;
    return true;
}

int proof_heap_objects(rpy_region_t *self, bool include_shared, PyObject ***objects, size_t *count) {
    heap_objects_t h = {.include_shared = include_shared};
    int status = proof_foreach_object(self, collect_object, &h);
    if (status < 0 || h.failed) {
        PyMem_RawFree(h.found);
        if (status >= 0) PyErr_NoMemory();
        return -1;
    }
    *objects = h.found;
    *count = h.count;
    return 0;
}

/* ---- The floor: one streaming read of the same memory ---- */

typedef struct stream {
    uint64_t sum;
    size_t bytes;
} stream_t;

static bool stream_page(const mi_heap_t *heap, const mi_heap_area_t *area, void *block, size_t size, void *arg) {
    (void)heap, (void)block, (void)size;
    stream_t *st = arg;
    const uint64_t *word = area->blocks, *end = (const uint64_t *)((const char *)area->blocks + area->committed);
    for (; word < end; word += 8) st->sum += *word;   /* one word of each 64-byte line */
    st->bytes += area->committed;
    return true;
}

size_t proof_stream(rpy_region_t *self, uint64_t *sum) {
    stream_t st = {0};
    mi_heap_visit_blocks(self->r->object_heap, false, stream_page, &st);
    mi_heap_visit_blocks(self->r->heap, false, stream_page, &st);
    *sum = st.sum;
    return st.bytes;
}
