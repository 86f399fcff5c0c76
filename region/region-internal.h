/* region-internal.h - what the files of the region layer share.
 *
 * A region is a record (below) plus mimalloc heaps of its own in one exclusive arena of the arena
 * layer, which regions of the same NUMA binding share (mimalloc 3.x heaps can be used from any
 * thread, so the heaps follow the owner; docs/design.md).  Each heap points back to its region
 * (mi_heap_set_data, mimalloc patch 0009), so the region of any block is found through mimalloc's
 * page map: arena range test, page, heap, region (rregion_of).
 *
 * REGION RECORDS ARE NEVER FREED.  regions[] is one reservation of REGION_MAX_RECORDS records,
 * made writable (and touched) as they are first handed out, so only records below rregion_records()
 * may be read; a destroyed region's record goes on a free list and is
 * reused by a later region under a new id.  So any thread may read a record through a stale pointer
 * or a handle without faulting, and decide from `id` whether it is still the region it meant.  This
 * is what makes handle resolution and region_from_id() safe from any thread.
 *
 * IDS: id = (generation << REGION_ID_INDEX_BITS) | index, where generation counts the regions the
 * record has held (1 for its first).  An id is never reused; id & mask gives the record in O(1);
 * id == 0 means "no region in this record".  Because each record counts its own generations, any
 * value can be judged exactly: an id whose generation the record has not reached yet was never made
 * (REGION_EBADHANDLE), an older one was destroyed (REGION_EDEAD).
 *
 * OWNERSHIP: `owner` is the owning thread's token (0 = none).  Only the owner changes the heaps, the
 * object list, the roots and the handle table, so those need no lock: acquire/release go through
 * owner_lock, whose mutex gives the happens-before edge from one owner's writes to the next owner's
 * reads.  `owner` itself is atomic so region_owned() can read it from any thread without the lock.
 */
#ifndef REGION_INTERNAL_H
#define REGION_INTERNAL_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "arena.h"
#include "region.h"

#define REGION_ID_INDEX_BITS 22
#define REGION_ID_INDEX_MASK ((1u << REGION_ID_INDEX_BITS) - 1)
/* Records, live or free: 4,194,304.  The reservation is address space; a record becomes memory when
 * it is first handed out. */
#define REGION_MAX_RECORDS (1u << REGION_ID_INDEX_BITS)
_Static_assert(REGION_MAX_RECORDS == REGION_MAX_LIVE_REGIONS, "include/region.h names the limit");
#define REGION_NAME_MAX 64

#define likely(x) __builtin_expect(!!(x), 1)
#define unlikely(x) __builtin_expect(!!(x), 0)

/* Invariant checks, in every build but a release build (NDEBUG), like mimalloc's mi_assert_internal.
 * Each states what the code right after it relies on. */
#ifdef NDEBUG
#define rassert(cond) ((void)0)
#else
#include <assert.h>
#define rassert(cond) assert(cond)
#endif

/* For the few functions that read memory proven mapped but perhaps freed, and judge what they read
 * (robject_of: a header is believed only with its region's stamp and live links; region_check's
 * check_block: a block freed by another thread, still counted in use, has stamp 0; the Python
 * binding's rpy_object_in_block: a type is believed only if the filter knows it).  Sanitizer builds
 * compile mimalloc with MI_TRACK_ASAN, which poisons every free block, so that any other read of a
 * freed region block is reported (meson.build); these reads are not instrumented. */
#define RMAY_READ_FREED __attribute__((no_sanitize("address")))

/* Whether [p, p + len) holds a poisoned byte: in a sanitizer build, a free region block (above).
 * False in other builds, where a free block of a live page is ordinary committed memory. */
#if defined(__SANITIZE_ADDRESS__)
#define RHAS_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define RHAS_ASAN 1
#endif
#endif
#ifdef RHAS_ASAN
#include <sanitizer/asan_interface.h>
#define RPOISONED(p, len) (__asan_region_is_poisoned((void *)(p), (len)) != NULL)
#else
#define RPOISONED(p, len) false
#endif

/* Invariant checks that cost a pass over a region's pages, like mimalloc's mi_assert_expensive: only
 * in debug builds (meson.build, REGION_EXPENSIVE_CHECKS), where the sanitizer and debug-interpreter
 * suites run, not in the debugoptimized build the benchmarks measure. */
#ifndef REGION_EXPENSIVE_CHECKS
#define REGION_EXPENSIVE_CHECKS 0
#endif
#if REGION_EXPENSIVE_CHECKS
#define rassert_expensive(cond) rassert(cond)
#else
#define rassert_expensive(cond) ((void)0)
#endif

/* REGION_BLOCK_CHECKS (meson option block_checks; on in debug builds): every raw block is entered in
 * a set of the region's live blocks, so region_free, region_realloc, region_usable_size and
 * region_handle_new can tell a block start from an interior pointer and a live block from a freed
 * one.  Release builds cannot afford a lookup per free: there such a pointer is undefined behaviour,
 * as with free() (include/region.h says so). */
#ifndef REGION_BLOCK_CHECKS
#define REGION_BLOCK_CHECKS 0
#endif

/* ---- Objects (collect.c) ---- */

/* Placed before every region object.  32 bytes keeps the object 16-byte aligned. */
typedef struct robject {
    struct robject *next, *prev;     /* the region's object list (circular, with a sentinel) */
    const region_type_t *type;
    uint32_t stamp;                  /* the region's object_stamp while live, 0 once freed */
    uint32_t epoch;                  /* == region's mark_epoch when marked in the current collection */
} robject_t;

/* A region's object_stamp: distinct for each of the first 2^31 regions of the process (`serial`
 * counts them), so the headers a destroyed region left in memory that a later region reuses (its
 * arena is shared) never pass for objects of the later one (destroy frees in bulk without clearing
 * them).  Odd, so never 0. */
#define ROBJECT_MAGIC 0x6a624f52u    /* "RObj" */
static inline uint32_t robject_stamp_of(uint64_t serial) {
    return ROBJECT_MAGIC ^ ((uint32_t)serial << 1 | 1u);
}

static inline void *robject_body(robject_t *h) { return h + 1; }
static inline robject_t *robject_header(const void *obj) { return (robject_t *)obj - 1; }

/* ---- Handles (handle.c) ---- */

typedef struct rhandle_entry {
    void *target;          /* NULL while the entry is free */
    uint32_t generation;   /* incremented when the entry is recycled */
    uint32_t next_free;    /* free-list link (index + 1; 0 ends the list) */
} rhandle_entry_t;

typedef struct rhandle_table {
    rhandle_entry_t *entries;
    uint32_t capacity, used, free_head;
    uint32_t *index;       /* open addressing: target -> entry index + 1 (0 empty, UINT32_MAX deleted) */
    uint32_t index_capacity;   /* power of two, or 0 before the first handle */
    uint32_t index_filled;     /* live + deleted index cells */
} rhandle_table_t;

/* ---- Pointer maps (ptrmap.c) ---- */

#define RPTRMAP_DELETED ((const void *)1)   /* a tombstone; never a key: keys are aligned pointers */

typedef struct rptrmap_cell {
    const void *key;       /* NULL: empty; RPTRMAP_DELETED: a tombstone */
    uint64_t value;
} rptrmap_cell_t;

typedef struct rptrmap {
    rptrmap_cell_t *cells; /* open addressing */
    size_t capacity;       /* power of two, or 0 before the first key */
    size_t filled;         /* live + deleted cells */
    size_t live;           /* keys in the map */
} rptrmap_t;

/* ---- The region ---- */

/* Where a collection of the region is (collect.c).  Trace callbacks run while MARKING, finalizers
 * while FINALIZING; what each phase forbids is listed in collect.c, INVARIANTS. */
typedef enum rcollect_phase {
    RCOLLECT_IDLE = 0,
    RCOLLECT_MARKING,      /* region_collect is marking, or region_check scanning: trace callbacks run */
    RCOLLECT_FINALIZING    /* region_collect is finalizing and freeing its garbage */
} rcollect_phase_t;

struct region {
    /* First, as region_inline_view_t (include/region.h) lays them out: the inline allocation path
     * reads them in the caller. */
    mi_heap_t *inline_heap;          /* `heap` while the region exists, NULL otherwise and in builds
                                        with block checks (every raw block is entered in live_blocks) */
    uint64_t owner;                  /* atomic; thread token, 0 = none (ownership, owner.c) */

    uint64_t id;                     /* atomic; 0 while the record is free */
    uint64_t generation;             /* atomic; regions this record has held (IDS above) */
    unsigned index;                  /* in regions[] */
    unsigned next_free;              /* the record free list's link, index + 1 (0 ends it) */
    char name[REGION_NAME_MAX];
    int node;
    region_binding binding;
    mi_heap_t *heap;                 /* raw blocks (region_alloc) */
    mi_heap_t *object_heap;          /* region objects, header included; same arena */
    mi_heap_t *detached_heap;        /* a host's buffers that no object owns (region-host.h, DETACHED
                                        BUFFERS); same arena; made on first use, NULL until then */
    unsigned arena_index;            /* the arena layer's arena holding the heaps */
    mi_arena_id_t arena;             /* its mimalloc id: where detached_heap is made */

    /* A host's own (region-host.h, HOST FIELDS); zero at create */
    void *host;                      /* atomic; the host's record of the region */
    uint32_t host_counts[3];
    uint32_t young_blocks;           /* atomic; the host's first blocks, counted up to RHOST_YOUNG_BLOCKS
                                        (region-host.h, YOUNG REGIONS) */
    uint32_t young_buffers;          /* atomic; of those, the small buffers, up to RHOST_SMALL_BUFFERS */

    /* ownership (owner.c; `owner` is above) */
    bool handed;                     /* owner was set by region_hand_off and not yet confirmed */
    uint64_t creator;                /* the thread that created the region */
    bool owned_by_others;            /* another thread has owned it: statistics must fold frees
                                        mimalloc defers (region.c, "Statistics") */
    unsigned waiters;
    pthread_mutex_t owner_lock;
    pthread_cond_t owner_cond;

    /* objects and collection (collect.c) */
    robject_t objects;               /* sentinel of the object list */
    robject_t garbage;               /* sentinel of the garbage list while FINALIZING, else empty */
    uint32_t object_stamp;           /* robject_stamp_of(generation) */
    size_t object_count;
    void *root;
    void **extra_roots;              /* counted: a root added twice appears twice */
    size_t extra_root_count, extra_root_capacity;
    uint32_t mark_epoch;
    rcollect_phase_t phase;
    uint64_t collections, collected;

    rhandle_table_t handles;
#if REGION_BLOCK_CHECKS
    rptrmap_t live_blocks;           /* raw blocks (r->heap) allocated and not yet freed */
#endif
};

_Static_assert(offsetof(struct region, inline_heap) == offsetof(region_inline_view_t, heap) &&
               offsetof(struct region, owner) == offsetof(region_inline_view_t, owner),
               "the inline allocation path reads struct region through region_inline_view_t");

/* REGION_MAX_RECORDS records; see "REGION RECORDS ARE NEVER FREED" above.  NULL until the first
 * region_create. */
extern struct region *regions;

/* Records handed out so far: regions[0 .. rregion_records()) have been initialized.  Any thread. */
unsigned rregion_records(void);

/* ---- error.c ---- */

/* Records status and a printf-style message for region_last_error(); returns status. */
region_status rerror(region_status status, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* rerror() prefixed with the region's name and id. */
region_status rerror_region(const region_t *r, region_status status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* ---- owner.c ---- */

/* The calling thread's token is region_inline_token (include/region.h), UINT64_MAX until its first
 * use: a value no owner field holds, so the inline allocation path needs no test of its own for a
 * thread without a token.  initial-exec: a global-dynamic TLS read in a shared library costs a
 * __tls_get_addr call on every ownership check, that is on every allocation (mimalloc uses the same
 * model for its own thread state). */
#define ROWNER_NO_TOKEN UINT64_MAX
uint64_t rowner_assign(void);

/* The calling thread's token (assigned on first use).  Inline: it is on the allocation fast path. */
static inline uint64_t rowner_self(void) {
    uint64_t token = region_inline_token;
    return likely(token != ROWNER_NO_TOKEN) ? token : rowner_assign();
}

/* An acquire load: it pairs with the release store of region_hand_off() and region_release(), so a
 * thread that sees itself as the owner also sees every write the previous owner made before it let go
 * (a handed-off receiver may use the region before it confirms with region_acquire).  On x86 and
 * ARMv8 it costs what a relaxed load does. */
static inline bool rowner_is_self(const region_t *r) {
    return __atomic_load_n(&r->owner, __ATOMIC_ACQUIRE) == rowner_self();
}

/* REGION_OK if the caller owns r, else records REGION_ENOTOWNER (or REGION_EINVAL for NULL) with a
 * message naming `what` was attempted. */
region_status rowner_check(const region_t *r, const char *what);

void rowner_init(region_t *r, uint64_t owner);

/* Wakes every waiter of a region being destroyed; they return REGION_EDEAD. */
void rowner_wake_all(region_t *r);

/* REGION_OK if r's collection is IDLE, else records REGION_ESTATE naming `what` and the phase. */
region_status rcollect_check_idle(const region_t *r, const char *what);

/* ---- region.c ---- */

/* Whether the arena keeps heap, emptied, for a next region (region.c, "Heaps"). */
bool rheap_kept(unsigned arena_index, const mi_heap_t *heap);

/* The calling thread, r's owner, is letting go of r (release, hand-off): its pages of r's heaps are
 * abandoned, so that the blocks later owners free there are collected as they are freed (region.c,
 * LETTING GO). */
void rregion_let_go_pages(region_t *r);

/* Whether id was ever a region's id: its record exists and has reached id's generation (IDS above). */
bool rregion_id_was_made(uint64_t id);

/* The region whose heaps hold p's page, live or not (NULL when p is in no page of a region's heap):
 * the arena range test, then mimalloc's page map.  Any thread; reads no byte of p's page but the
 * page's header, which mimalloc keeps while the page map names it. */
static inline region_t *rregion_of_page(const void *p) {
    return rarena_index_of(p) < 0 ? NULL : (region_t *)mi_heap_data_of(p);
}

/* The live region holding p (region_of without the public wrapper). */
static inline region_t *rregion_of(const void *p) {
    region_t *r = rregion_of_page(p);
    return r && __atomic_load_n(&r->id, __ATOMIC_ACQUIRE) ? r : NULL;
}

/* Whether p lies in a page of `heap`, one of r's heaps.  The range check comes first: it is what makes
 * the page-map lookup, and any read near p afterwards, safe for any pointer value. */
static inline bool rheap_owns(const region_t *r, const mi_heap_t *heap, const void *p) {
    rassert(heap && (heap == r->heap || heap == r->object_heap || heap == r->detached_heap));
    (void)r;   /* only the invariant check reads it */
    return rarena_index_of(p) >= 0 && mi_heap_of(p) == heap;
}

/* ---- handle.c ---- */

/* The block at target was freed or moved to moved_to (NULL = freed): update its handle entry. */
void rhandle_retarget(region_t *r, void *target, void *moved_to);
void rhandle_table_free(rhandle_table_t *t);

/* ---- ptrmap.c ---- */

/* Room for `more` new keys, so that that many rptrmap_put calls cannot fail; false: out of memory. */
bool rptrmap_reserve(rptrmap_t *m, size_t more);
/* The cell of key, added with value 0 if it was not there; NULL when out of memory (nothing added). */
rptrmap_cell_t *rptrmap_put(rptrmap_t *m, const void *key);
/* The cell holding key, or the empty cell ending its probe (m has cells). */
static inline rptrmap_cell_t *rptrmap_find(const rptrmap_t *m, const void *key) {
    size_t mask = m->capacity - 1;
    uint64_t x = ((uint64_t)(uintptr_t)key >> 3) * 0x9E3779B97F4A7C15ull;
    for (size_t i = (size_t)(x >> 32) & mask;; i = (i + 1) & mask)
        if (m->cells[i].key == key || m->cells[i].key == NULL) return &m->cells[i];
}

/* The cell of key, or NULL.  Inline: the isolation scan asks once per block. */
static inline rptrmap_cell_t *rptrmap_get(const rptrmap_t *m, const void *key) {
    if (!m->capacity || !key) return NULL;
    rptrmap_cell_t *cell = rptrmap_find(m, key);
    return cell->key == key ? cell : NULL;
}
bool rptrmap_remove(rptrmap_t *m, const void *key);   /* false: key was not there */
void rptrmap_clear(rptrmap_t *m);                      /* frees the cells */

/* Each live cell of m, in table order.  An empty map has no table (cells NULL), and NULL + 0 is
 * undefined in C (UBSan's pointer-overflow check), hence the test of cell first. */
#define rptrmap_foreach(m, cell) \
    for (rptrmap_cell_t *cell = (m)->cells; cell && cell < (m)->cells + (m)->capacity; cell++) \
        if (cell->key != NULL && cell->key != RPTRMAP_DELETED)

/* Whether p is the start of a live raw block of r: with REGION_BLOCK_CHECKS exactly, else only that
 * p lies in a page of r's block heap (alloc.c). */
bool rblock_is_live(const region_t *r, const void *p);

/* ---- The isolation engine's scan (isolation.c) ---- */

#define RISO_RECENT 64   /* outside targets kept in front of the map: the same few recur (classes, keys) */
#define RISO_SLICE_SHIFT 16   /* mimalloc 3's arena slice: pages start and end on 64 KiB boundaries */
#define RISO_SLICE_SIZE ((uintptr_t)1 << RISO_SLICE_SHIFT)

typedef struct riso_recent {
    const void *target;
    uint64_t count;
} riso_recent_t;

/* Which 64 KiB slices of an arena pages of some heaps cover: bit i is slice `first` + i. */
typedef struct riso_slices {
    uint64_t *bits;
    uintptr_t first;
    size_t count;
} riso_slices_t;

static inline bool riso_slices_have(const riso_slices_t *m, uintptr_t offset) {
    uintptr_t bit = (offset >> RISO_SLICE_SHIFT) - m->first;   /* wraps to a huge value below first */
    return bit < m->count && (m->bits[bit >> 6] >> (bit & 63) & 1);
}

/* Pages of a heap as mimalloc's visitor describes them (isolation.c, ONE WALK OF EACH HEAP). */
typedef struct riso_areas {
    mi_heap_area_t *areas;
    size_t count, capacity;
    size_t whole_bytes;        /* committed bytes of the pages whose blocks are all in use */
    bool failed;               /* out of memory: the record is short */
} riso_areas_t;

typedef struct riso {
    region_t *r;
    uintptr_t base;            /* r's arena: [base, base + size) */
    size_t size;
    riso_slices_t objects;     /* the slices of r's object heap */
    riso_slices_t buffers;     /* the slices of r's other heaps (raw blocks, detached buffers) */
    riso_areas_t object_areas; /* the object heap's pages at riso_begin */
    bool areas_current;        /* object_areas are the heap's pages still: the next scan reads them */
    uint64_t internal;         /* references to r's object memory */
    bool stray;                /* a reference into r's memory but not its object memory (a raw block),
                                  or to where no object can be (under 4 KiB, unaligned) */
    bool failed;               /* out of memory: the outside counts are short */
    rptrmap_t outside;         /* outside target -> references to it (complete after riso_scan) */
    riso_recent_t recent[RISO_RECENT];
} riso_t;

/* Prepares a scan of r's object heap (the bitmaps of its heaps' pages); REGION_ENOMEM recorded. */
region_status riso_begin(riso_t *s, region_t *r);

/* The object bitmap alone, for a caller that asks only riso_in_object_memory (the Python binding's
 * collector: python/_region/collection.c); no scan may follow, since every reference into r's
 * buffers would count as outside. */
region_status riso_begin_objects(riso_t *s, region_t *r);

void riso_note_outside(riso_t *s, const void *target);   /* the slow path of riso_reference */

/* Makes s->outside complete again after riso_reference calls made since the last scan ended (a scan
 * leaves it complete). */
void riso_flush(riso_t *s);

/* Whether p lies in r's object memory (a page of its object heap). */
static inline bool riso_in_object_memory(const riso_t *s, const void *p) {
    uintptr_t offset = (uintptr_t)p - s->base;
    return offset < s->size && riso_slices_have(&s->objects, offset);
}

/* Whether p lies in r's other memory (a page of its raw or detached heap). */
static inline bool riso_in_buffer_memory(const riso_t *s, const void *p) {
    uintptr_t offset = (uintptr_t)p - s->base;
    return offset < s->size && riso_slices_have(&s->buffers, offset);
}

/* Whether [p, p + len) lies in r's memory, object or other, every byte of it: so in pages of its
 * heaps, which are committed whole while they live (arena/reserve.c).  A read there cannot fault,
 * whatever p is (the isolation scan's test of a pointer it found in bytes that may only pose as an
 * object's: python/_region/proof.c).  In a sanitizer build, not where a free block lies (poisoned):
 * a genuine object's tables are live blocks, and bytes posing as one then wait to be read as bytes. */
static inline bool riso_readable(const riso_t *s, const void *p, size_t len) {
    uintptr_t offset = (uintptr_t)p - s->base;
    if (len == 0) return true;
    if (offset >= s->size || len > s->size - offset) return false;
    for (uintptr_t at = offset & ~(RISO_SLICE_SIZE - 1); at < offset + len; at += RISO_SLICE_SIZE)
        if (!riso_slices_have(&s->objects, at) && !riso_slices_have(&s->buffers, at)) return false;
    return !RPOISONED(p, len);
}

size_t riso_block_size(const void *block);   /* the usable size of a live block of object memory */

/* A size to test a live block of object memory with, for a test that reads at most `reach` bytes of
 * it and may take the block for bigger than it is but never for smaller (the lenient test of a block
 * an object owns, proof.c): "any size" (SIZE_MAX / 2) when those bytes lie in the block's 64 KiB
 * slice, which is committed while the block lives (pages are committed whole: arena/reserve.c), else
 * the block's own size, since the slice after the last page in use may be uncommitted (PROT_NONE, when
 * the arenas are committed on demand: arena/reserve.c). */
static inline size_t riso_probe_size(const void *block, size_t reach) {
    if (((uintptr_t)block & (RISO_SLICE_SIZE - 1)) + reach <= RISO_SLICE_SIZE) return SIZE_MAX / 2;
    return riso_block_size(block);
}

/* Sorts one reference an object holds (NULL is none).  Inline: it runs once per reference. */
static inline void riso_reference(riso_t *s, const void *target) {
    uintptr_t offset = (uintptr_t)target - s->base;
    if (offset < s->size && riso_slices_have(&s->objects, offset)) {
        s->internal++;
    } else if (offset < s->size && riso_slices_have(&s->buffers, offset)) {
        s->stray = true;
    } else if (unlikely((uintptr_t)target - 1 < 4095 || ((uintptr_t)target & 7))) {
        s->stray = true;   /* no object lies there: a word of bytes posing as an object's */
    } else if (target) {   /* outside r: elsewhere, or another region's memory in the same arena */
        riso_recent_t *recent = &s->recent[((uintptr_t)target >> 4) & (RISO_RECENT - 1)];
        if (likely(recent->target == target)) recent->count++;
        else riso_note_outside(s, target);
    }
}

/* What a scan calls: page(first, stride, usable, count, arg) for a page whose `count` blocks (of
 * `usable` bytes, `stride` apart from `first`) are all allocated, block(block, usable, arg) for each
 * live block of the other pages (and of those too when page is NULL: a caller whose per-block step
 * is not worth inlining into a loop of its own).  Either returning false stops the scan.  Both report references with
 * riso_reference, and must not allocate in or free to the object heap.  A block of a whole page
 * may have been freed by another thread since (mimalloc counts it until its page is collected): page
 * must tell a dead block from a live one. */
typedef struct riso_visitor {
    bool (*page)(char *first, size_t stride, size_t usable, size_t count, void *arg);
    bool (*block)(void *block, size_t usable, void *arg);
    void *arg;
} riso_visitor_t;

/* Visits every block of r's object heap, in address order within each page; false when a visitor
 * call stopped it, or when out of memory (s->failed). */
bool riso_scan(riso_t *s, const riso_visitor_t *visitor);

/* SPLIT SCANS (isolation.c): the first scan of a heap whose whole pages hold RISO_SPLIT_BYTES or more
 * may run in two halves at once: the calling thread with the scan's visitor, and the helper thread
 * (helper.c) with a visitor and a riso_t of its own (the shard: the scan's slice maps, counts of its
 * own), each taking the recorded pages a few at a time; riso_scan_split adds the shard's counts into
 * the scan's when both are done.  The shard's visitor needs `page` only (whole pages are all it
 * gets), and it runs on the helper thread: it may only read memory and write its own state (helper.c,
 * WHAT A JOB MAY DO).  The calling thread visits every page with free blocks. */
#define RISO_SPLIT_BYTES ((size_t)4 << 20)

typedef struct riso_split {
    riso_t *shard;             /* riso_shard() of the scan, before it; needs no riso_end */
    riso_visitor_t visitor;    /* the helper's half's: page only */
    bool used;                 /* out: the scan was split, so the visitor's counts are part of it */
} riso_split_t;

void riso_shard(riso_t *shard, const riso_t *s);

/* Whether s's next scan would be split (its first, and the heap big enough): a caller that has a
 * shard to set up for it can skip that for the many small scans. */
bool riso_will_split(const riso_t *s);

/* The bytes of whole pages from which a scan splits (RISO_SPLIT_BYTES; tests lower it, so that
 * small regions split too), and how many scans split so far, and of those how many halves the
 * helper ran (the rest ran in the calling thread): atomic. */
extern size_t riso_split_bytes;
extern uint64_t riso_splits, riso_splits_helped;

/* riso_scan, split when the heap is big enough (split->used says whether it was).  Whether the helper
 * took part or the calling thread took every page (the helper busy or not allowed:
 * region_set_scan_threads) changes nothing but the time. */
bool riso_scan_split(riso_t *s, const riso_visitor_t *visitor, riso_split_t *split);

void riso_end(riso_t *s);   /* frees what the scan holds */

/* ---- The helper thread (helper.c) ---- */

/* Runs job(arg) on the helper thread and returns true, or returns false at once when the helper is
 * busy, not allowed (region_set_scan_threads) or cannot start: the caller then runs it itself.  After
 * true, the caller must call rhelper_finish() before it reads what the job wrote. */
bool rhelper_post(void (*job)(void *arg), void *arg);
void rhelper_finish(void);   /* waits for the job posted */

/* ---- collect.c ---- */

/* The header of obj if obj is a live object of r (or garbage of its running collection), else NULL.
 * Safe and exact for any pointer value: it reads memory only after proving it lies in r's object
 * heap, and a header counts only if the list it claims to be on links back to it. */
robject_t *robject_of(const region_t *r, const void *obj);

void robjects_init(region_t *r);
void robjects_release(region_t *r);   /* frees the bookkeeping (not the objects: destroy does) */

#endif /* REGION_INTERNAL_H */
