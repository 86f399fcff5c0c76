/* region.c - region lifecycle: configuration, create, destroy, lookup, statistics, placement.
 *
 * Creating a region takes a record (region-internal.h, REGION RECORDS), an arena of its binding from
 * the arena layer, and two mimalloc heaps in that arena (heaps a destroyed region of the arena left,
 * or new ones: "Heaps" below).  Destroying it clears the id so every handle and waiter sees the
 * region is gone, frees every block in bulk (mimalloc frees whole pages, O(pages)), keeping the
 * emptied heaps for the arena's next region where it can, and gives the record and its place in the
 * arena back, the pages still committed.
 *
 * THREADS: config_lock guards the configuration, record_lock the record free list, spare_lock the
 * kept heaps.  A region's own fields are changed only by its owner (region-internal.h), except id,
 * generation and owner, which are changed under owner_lock and read atomically by anyone.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "region-host.h"

struct region *regions;

static pthread_mutex_t config_lock = PTHREAD_MUTEX_INITIALIZER;
static region_config_t config = {.arena_size = (size_t)4 << 30, .max_arenas = RARENA_MAX};

/* ---- Version and configuration ---- */
/* meson.build passes its project version; the header must say the same (one place: meson.build). */
_Static_assert(REGION_VERSION_MAJOR == REGION_PROJECT_VERSION_MAJOR &&
                   REGION_VERSION_MINOR == REGION_PROJECT_VERSION_MINOR &&
                   REGION_VERSION_PATCH == REGION_PROJECT_VERSION_PATCH,
               "include/region.h's REGION_VERSION_* differ from meson.build's project version");

const char *region_version(void) { return REGION_PROJECT_VERSION; }


region_status region_configure(const region_config_t *c) {
    if (!c) return rerror(REGION_EINVAL, "configure: config is NULL");
    if (c->arena_size == 0 || c->arena_size > ((size_t)1 << 40))
        return rerror(REGION_EINVAL, "configure: arena_size %zu is not in 1 .. 1 TiB", c->arena_size);
    if (c->max_arenas == 0 || c->max_arenas > RARENA_MAX)
        return rerror(REGION_EINVAL, "configure: max_arenas %u is not in 1 .. %u", c->max_arenas, RARENA_MAX);
    pthread_mutex_lock(&config_lock);
    region_status status = REGION_OK;
    if (rarena_ready()) {
        status = rerror(REGION_ESTATE, "configure: regions already exist; configure before the first");
    } else {
        config.arena_size = (c->arena_size + RARENA_ALIGN - 1) & ~(RARENA_ALIGN - 1);
        config.max_arenas = c->max_arenas;
    }
    pthread_mutex_unlock(&config_lock);
    return status;
}

void region_get_config(region_config_t *out) {
    pthread_mutex_lock(&config_lock);
    *out = config;
    pthread_mutex_unlock(&config_lock);
}

/* ---- Create ---- */

static region_status check_options(const region_options_t *o) {
    if (o->binding != REGION_BIND_NONE && o->binding != REGION_BIND_PREFERRED &&
        o->binding != REGION_BIND_STRICT)
        return rerror(REGION_EINVAL, "create: binding %d is not a region_binding", (int)o->binding);
    if (o->binding == REGION_BIND_NONE && o->node != -1)
        return rerror(REGION_EINVAL, "create: node %d given with REGION_BIND_NONE; choose "
                      "REGION_BIND_PREFERRED or REGION_BIND_STRICT", o->node);
    if (o->binding != REGION_BIND_NONE && o->node < 0)
        return rerror(REGION_EINVAL, "create: a NUMA binding needs a node (got %d)", o->node);
    if (o->binding != REGION_BIND_NONE && !rarena_node_usable(o->node))
        return rerror(REGION_ENONODE, "create: NUMA node %d does not exist or has no memory "
                      "(this machine has %d node(s))", o->node, rarena_numa_nodes());
    return REGION_OK;
}

/* The arenas, and the reservation of the records (address space: a record's memory is touched when
 * it is first handed out).  Both are made writable as the arenas' commit policy says (arena/reserve.c):
 * from the start, or piecemeal under strict overcommit, where a writable mapping of the records is
 * charged whole (1.9 GB). */
static bool records_on_demand;     /* PROT_NONE beyond records_writable (config_lock, then fixed) */

static region_status ensure_arena(void) {
    if (rarena_ready()) return REGION_OK;
    bool on_demand = true;
    if (rarena_commit_policy(&on_demand) != REGION_OK)
        return rerror(REGION_EINVAL, "create: the environment's REGION_COMMIT=%s is neither \"auto\" nor "
                      "\"on-demand\"", getenv("REGION_COMMIT"));
    pthread_mutex_lock(&config_lock);
    region_status status = REGION_OK;
    if (!regions) {
        int prot = on_demand ? PROT_NONE : PROT_READ | PROT_WRITE;
        void *records = mmap(NULL, (size_t)REGION_MAX_RECORDS * sizeof *regions, prot,
                             MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
        if (records == MAP_FAILED) {
            status = REGION_EOS;
        } else {
            records_on_demand = on_demand;
            __atomic_store_n(&regions, (struct region *)records, __ATOMIC_RELEASE);
        }
    }
    if (status == REGION_OK) status = rarena_init(config.arena_size, config.max_arenas, on_demand);
    pthread_mutex_unlock(&config_lock);
    if (status == REGION_EOS)
        return rerror(status, "create: reserving %u arenas of %zu MiB and %u region records failed: %s",
                      config.max_arenas, config.arena_size >> 20, REGION_MAX_RECORDS, strerror(errno));
    if (status != REGION_OK) return rerror(status, "create: out of memory initialising the runtime");
    return REGION_OK;
}

/* ---- Records ---- */

static pthread_mutex_t record_lock = PTHREAD_MUTEX_INITIALIZER;
static unsigned records_made;      /* atomic for readers; written under record_lock */
static size_t records_writable;    /* bytes of regions[] made writable so far (record_lock) */
static unsigned record_free_head;  /* index + 1; 0: the free list is empty */

unsigned rregion_records(void) { return __atomic_load_n(&records_made, __ATOMIC_ACQUIRE); }

/* Makes the record at index writable, with the rest of a 64 KiB step (record_lock held); records are
 * writable already unless they are made so on demand (ensure_arena).  Readers read only records below
 * rregion_records(), which are. */
static bool record_writable(unsigned index) {
    size_t end = ((size_t)index + 1) * sizeof *regions;
    if (end <= records_writable || !records_on_demand) return true;
    size_t step = (size_t)64 << 10, upto = (end + step - 1) & ~(step - 1);
    size_t total = (size_t)REGION_MAX_RECORDS * sizeof *regions;
    if (upto > total) upto = total;
    if (mprotect((char *)regions + records_writable, upto - records_writable, PROT_READ | PROT_WRITE) != 0)
        return false;
    records_writable = upto;
    return true;
}

/* A free record, the most recently freed first (its memory is warm); NULL (status in *status) when
 * all REGION_MAX_RECORDS are live (REGION_ELIMIT) or a new one cannot be made writable (REGION_ENOMEM). */
static region_t *take_record(region_status *status) {
    region_t *r = NULL;
    *status = REGION_OK;
    pthread_mutex_lock(&record_lock);
    if (record_free_head) {
        r = &regions[record_free_head - 1];
        record_free_head = r->next_free;
    } else if (records_made == REGION_MAX_RECORDS) {
        *status = REGION_ELIMIT;
    } else if (!record_writable(records_made)) {
        *status = REGION_ENOMEM;
    } else {
        r = &regions[records_made];
        r->index = records_made;
        pthread_mutex_init(&r->owner_lock, NULL);
        pthread_cond_init(&r->owner_cond, NULL);
        __atomic_store_n(&records_made, records_made + 1, __ATOMIC_RELEASE);
    }
    pthread_mutex_unlock(&record_lock);
    return r;
}

static void give_record(region_t *r) {
    pthread_mutex_lock(&record_lock);
    r->next_free = record_free_head;
    record_free_head = r->index + 1;
    pthread_mutex_unlock(&record_lock);
}

static uint64_t serial;   /* regions ever created; atomic (robject_stamp_of) */

static void init_struct(region_t *r, const region_options_t *o, uint64_t id) {
    r->node = o->node;
    r->binding = o->binding;
    if (o->name) snprintf(r->name, sizeof r->name, "%s", o->name);
    else snprintf(r->name, sizeof r->name, "region-%llu", (unsigned long long)id);
    r->collections = r->collected = 0;
    r->phase = RCOLLECT_IDLE;
    r->object_stamp = robject_stamp_of(__atomic_add_fetch(&serial, 1, __ATOMIC_RELAXED));
    r->root = NULL;
    __atomic_store_n(&r->host, NULL, __ATOMIC_RELAXED);   /* read atomically: rhost_record */
    memset(r->host_counts, 0, sizeof r->host_counts);
    __atomic_store_n(&r->young_blocks, 0, __ATOMIC_RELAXED);
    __atomic_store_n(&r->young_buffers, 0, __ATOMIC_RELAXED);
    memset(&r->handles, 0, sizeof r->handles);
    robjects_init(r);
}

/* ---- Heaps ----
 *
 * Destroying a region frees every block of its heaps at once.  When only the destroying thread has
 * allocated from a heap since it was last emptied, mimalloc (patch 0004, mi_heap_reset) empties it
 * and keeps it - the heap, its page info in the arena, the thread's theap and, emptied, one of its
 * pages per size of small blocks (patch 0007) - and the arena keeps it for that thread's next region
 * there: no heap to free and make again, no page to take from the arena and give back for each size a
 * short region allocates.  A kept heap is warm only for the thread that emptied it (its theap and
 * pages are that thread's; another thread would make a theap of its own, and the next reset would
 * find two and refuse), so it goes only to a region made by that thread, and the arena where a thread
 * last left heaps is the one it asks the arena layer for (rarena_take's `preferred`).  An arena keeps
 * SPARES_PER_ARENA heaps of each kind; when it is full the oldest is destroyed to make room, so that
 * heaps kept for threads that have ended give way.  A heap mimalloc cannot reset is destroyed, and a
 * later region makes a new one.  An arena's heaps allocate only in it, so whichever region takes them
 * allocates where its binding says; a kept page is the arena's memory, placed by the arena's NUMA
 * policy, which mbind moves with the rest of the arena when another binding takes it
 * (arena/numa.c).  A heap points back to its region (mi_heap_set_data), and to nothing while kept. */

enum { HEAP_RAW, HEAP_OBJECT, HEAP_DETACHED, HEAP_KINDS };
#define SPARES_PER_ARENA 16

typedef struct spare_heap {
    mi_heap_t *heap;
    uint64_t thread;           /* the token of the thread that emptied it (its theap is kept) */
} spare_heap_t;

typedef struct spare_heaps {
    spare_heap_t kept[HEAP_KINDS][SPARES_PER_ARENA];   /* oldest first */
    unsigned count[HEAP_KINDS];
} spare_heaps_t;

static pthread_mutex_t spare_lock = PTHREAD_MUTEX_INITIALIZER;
static spare_heaps_t spares[RARENA_MAX];   /* by arena index */

/* The arena where the calling thread last left a region's heaps, or -1 (initial-exec, as the owner
 * token: see region_inline_token). */
static __thread long kept_arena __attribute__((tls_model("initial-exec"))) = -1;

/* A heap of kind for region r in its arena: one the calling thread left there, or a new one (NULL:
 * out of memory). */
static mi_heap_t *take_heap(region_t *r, int kind) {
    mi_heap_t *heap = NULL;
    uint64_t self = rowner_self();
    spare_heaps_t *arena = &spares[r->arena_index];
    pthread_mutex_lock(&spare_lock);
    for (unsigned i = arena->count[kind]; i-- > 0;) {
        if (arena->kept[kind][i].thread != self) continue;
        heap = arena->kept[kind][i].heap;
        memmove(&arena->kept[kind][i], &arena->kept[kind][i + 1], (--arena->count[kind] - i) * sizeof(spare_heap_t));
        break;
    }
    pthread_mutex_unlock(&spare_lock);
    if (!heap) heap = mi_heap_new_in_arena(r->arena);
    if (heap) mi_heap_set_data(heap, r);
    return heap;
}

bool rheap_kept(unsigned arena_index, const mi_heap_t *heap) {
    spare_heaps_t *arena = &spares[arena_index];
    bool kept = false;
    pthread_mutex_lock(&spare_lock);
    for (int kind = 0; kind < HEAP_KINDS; kind++)
        for (unsigned i = 0; i < arena->count[kind]; i++) kept = kept || arena->kept[kind][i].heap == heap;
    pthread_mutex_unlock(&spare_lock);
    return kept;
}

/* Frees every block of heap (NULL: none), of kind, keeping it empty in its arena for the calling
 * thread's next region when mimalloc can. */
static void retire_heap(unsigned arena_index, mi_heap_t *heap, int kind) {
    if (!heap) return;
    mi_heap_set_data(heap, NULL);
    if (!mi_heap_reset(heap)) {
        mi_heap_destroy(heap);
        return;
    }
    mi_heap_t *evicted = NULL;
    spare_heaps_t *arena = &spares[arena_index];
    pthread_mutex_lock(&spare_lock);
    if (arena->count[kind] == SPARES_PER_ARENA) {
        evicted = arena->kept[kind][0].heap;
        memmove(&arena->kept[kind][0], &arena->kept[kind][1], (SPARES_PER_ARENA - 1) * sizeof(spare_heap_t));
        arena->count[kind]--;
    }
    arena->kept[kind][arena->count[kind]++] = (spare_heap_t){heap, rowner_self()};
    pthread_mutex_unlock(&spare_lock);
    kept_arena = (long)arena_index;
    if (evicted) mi_heap_destroy(evicted);
}

/* LETTING GO: a page is its thread's (that thread's theap of the heap holds it), and the blocks other
 * threads free to it wait on its thread-free list, still counted in use, until that thread collects
 * them - which an owner that let go never does, since it allocates in the region no more.  So an owner
 * that lets go abandons its pages (mimalloc patch 0019), as its thread's exit would: the free that
 * meets an abandoned page collects it, all but the last block freed, which mimalloc leaves pending and
 * the page reports (the isolation scan then reads it block by block: isolation.c, area_is_whole).  The
 * isolation proof of the Python binding needs them exact (python/_region/proof.c: every block in use
 * must be an object or a block an object owns), and a next owner that freed objects of the previous
 * owner's pages left blocks in use that were neither, so its proofs failed and each check, release
 * and close fell back to the audit.  Full pages are abandoned already (mimalloc gives up a page that
 * fills); this is the pages the thread still allocates from, one or a few per size. */
void rregion_let_go_pages(region_t *r) {
    rassert(rowner_is_self(r));
    mi_heap_abandon_pages(r->heap);
    mi_heap_abandon_pages(r->object_heap);
    if (r->detached_heap) mi_heap_abandon_pages(r->detached_heap);
}

region_status region_create(const region_options_t *opts, region_t **out) {
    region_options_t defaults = REGION_OPTIONS_DEFAULT;
    const region_options_t *o = opts ? opts : &defaults;
    if (!out) return rerror(REGION_EINVAL, "create: out is NULL");
    *out = NULL;
    region_status status = check_options(o);
    if (status == REGION_OK) status = ensure_arena();
    if (status != REGION_OK) return status;

    region_t *r = take_record(&status);
    if (status == REGION_ENOMEM)
        return rerror(status, "create%s%s: out of memory for a region record (mprotect: %s)",
                      o->name ? " " : "", o->name ? o->name : "", strerror(errno));
    if (!r)
        return rerror(status, "create%s%s: all %u region records are in use; destroy a region first",
                      o->name ? " " : "", o->name ? o->name : "", REGION_MAX_RECORDS);
    status = rarena_take(o->node, o->binding, kept_arena, &r->arena_index, &r->arena);
    if (status != REGION_OK) {
        int err = errno;
        give_record(r);
        if (status == REGION_ELIMIT)
            return rerror(status, "create%s%s: every one of the %u arenas serves regions of another NUMA "
                          "binding (the limit is region_config.max_arenas, at most %u)",
                          o->name ? " " : "", o->name ? o->name : "", rarena_reservation.arena_count, RARENA_MAX);
        return rerror(status, "create%s%s: binding an arena to NUMA node %d (mbind) failed: %s",
                      o->name ? " " : "", o->name ? o->name : "", o->node, strerror(err));
    }
    mi_heap_t *heap = take_heap(r, HEAP_RAW);
    mi_heap_t *object_heap = heap ? take_heap(r, HEAP_OBJECT) : NULL;
    if (!object_heap) {
        retire_heap(r->arena_index, heap, HEAP_RAW);
        rarena_give(r->arena_index);
        give_record(r);
        return rerror(REGION_ENOMEM, "create: mimalloc could not make a heap");
    }
    pthread_mutex_lock(&r->owner_lock);
    /* The record is ours (take_record), so nobody else bumps its generation. */
    uint64_t generation = r->generation + 1;
    uint64_t id = (generation << REGION_ID_INDEX_BITS) | r->index;
    __atomic_store_n(&r->generation, generation, __ATOMIC_RELEASE);
    init_struct(r, o, id);
    r->heap = heap;
    r->inline_heap = REGION_BLOCK_CHECKS ? NULL : heap;
    r->object_heap = object_heap;
    r->detached_heap = NULL;
    rowner_init(r, rowner_self());
    __atomic_store_n(&r->id, id, __ATOMIC_RELEASE);
    pthread_mutex_unlock(&r->owner_lock);
    *out = r;
    return REGION_OK;
}

/* ---- Destroy ---- */

region_status region_destroy(region_t *r) {
    region_status status = rowner_check(r, "destroy");
    if (status == REGION_OK) status = rcollect_check_idle(r, "destroy");
    if (status != REGION_OK) return status;
    /* region_of finds a block's region through its heap (region-internal.h, rregion_of_page) */
    rassert(mi_heap_get_data(r->heap) == r && mi_heap_get_data(r->object_heap) == r);
    rassert(!r->detached_heap || mi_heap_get_data(r->detached_heap) == r);
    /* Clear the id first: from here on handles report REGION_EDEAD and waiters give up. */
    pthread_mutex_lock(&r->owner_lock);
    __atomic_store_n(&r->id, 0, __ATOMIC_RELEASE);
    __atomic_store_n(&r->owner, 0, __ATOMIC_RELAXED);
    rowner_wake_all(r);
    pthread_mutex_unlock(&r->owner_lock);

    retire_heap(r->arena_index, r->heap, HEAP_RAW);
    retire_heap(r->arena_index, r->object_heap, HEAP_OBJECT);
    retire_heap(r->arena_index, r->detached_heap, HEAP_DETACHED);
    r->heap = r->inline_heap = r->object_heap = r->detached_heap = NULL;
    robjects_release(r);
    rhandle_table_free(&r->handles);
#if REGION_BLOCK_CHECKS
    rptrmap_clear(&r->live_blocks);
#endif
    rarena_give(r->arena_index);
    give_record(r);
    return REGION_OK;
}

region_status region_trim(void) {
    if (rarena_ready()) rarena_trim();
    return REGION_OK;
}

/* ---- Identity and lookup ---- */

uint64_t region_id(const region_t *r) { return r ? __atomic_load_n(&r->id, __ATOMIC_ACQUIRE) : 0; }

const char *region_name(const region_t *r) { return r ? r->name : ""; }

bool rregion_id_was_made(uint64_t id) {
    unsigned index = (unsigned)(id & REGION_ID_INDEX_MASK);
    uint64_t generation = id >> REGION_ID_INDEX_BITS;
    return index < rregion_records() && generation != 0 &&
           generation <= __atomic_load_n(&regions[index].generation, __ATOMIC_ACQUIRE);
}

region_t *region_from_id(uint64_t id) {
    unsigned index = (unsigned)(id & REGION_ID_INDEX_MASK);
    if (rregion_id_was_made(id) && __atomic_load_n(&regions[index].id, __ATOMIC_ACQUIRE) == id)
        return &regions[index];
    rerror(REGION_EDEAD, "region id %llu: no such region (%s)", (unsigned long long)id,
           rregion_id_was_made(id) ? "destroyed" : "never created");
    return NULL;
}

region_t *region_of(const void *p) { return rregion_of(p); }

int region_numa_nodes(void) { return rarena_numa_nodes(); }

/* ---- Statistics ----
 *
 * mimalloc 3.4 keeps a page's count of used blocks in the thread-local heap ("theap") of the thread
 * that allocated from it, and a free from any other thread only queues the block on the page: the
 * count drops when that page is next collected.  mi_heap_collect collects the calling thread's theap
 * alone, so once another thread has owned the region (owned_by_others), pages of earlier owners may
 * hold queued frees.  Then the sum visits the blocks, which collects every page first (theap.c,
 * _mi_theap_area_visit_blocks): exact, at O(blocks) instead of O(pages).  No other thread touches the
 * pages meanwhile: only the owner uses the region. */

typedef struct stats_sum {
    size_t in_use, committed, blocks, pages;
    bool counting_blocks;   /* blocks and in_use come from the block visits, not the area counts */
} stats_sum_t;

static bool sum_area(const mi_heap_t *heap, const mi_heap_area_t *area, void *block, size_t size,
                     void *arg) {
    (void)heap, (void)size;
    stats_sum_t *sum = arg;
    if (block) {   /* only when counting blocks */
        sum->in_use += area->full_block_size;
        sum->blocks++;
        return true;
    }
    sum->committed += area->committed;
    sum->pages++;
    if (!sum->counting_blocks) {
        sum->in_use += area->used * area->full_block_size;
        sum->blocks += area->used;
    }
    return true;
}

/* Adds the pages of heap, one of r's, to *sum. */
static void sum_heap(region_t *r, mi_heap_t *heap, stats_sum_t *sum) {
    mi_heap_collect_frees(heap);   /* fold the frees pending in the calling thread's pages in */
    sum->counting_blocks = r->owned_by_others;
    mi_heap_visit_blocks(heap, sum->counting_blocks, sum_area, sum);
}

static stats_sum_t sum_heaps(region_t *r) {
    stats_sum_t sum = {0};
    sum_heap(r, r->heap, &sum);
    sum_heap(r, r->object_heap, &sum);
    if (r->detached_heap) sum_heap(r, r->detached_heap, &sum);
    return sum;
}

size_t rhost_owned_blocks(region_t *r) {
    stats_sum_t sum = {0};
    sum_heap(r, r->heap, &sum);
    sum_heap(r, r->object_heap, &sum);
    return sum.blocks;
}

__thread rhost_theaps_t rhost_theaps __attribute__((tls_model("initial-exec")));

void *rhost_alloc_through_heap(region_t *r, bool object, size_t size, bool zero) {
    mi_heap_t *heap = object ? r->object_heap : r->heap;
    void *p = zero ? mi_heap_zalloc(heap, size) : mi_heap_malloc(heap, size);
    if (!p) return NULL;   /* perhaps no theap could be made: nothing to keep */
    rhost_theaps_t *kept = &rhost_theaps;
    uint64_t generation = __atomic_load_n(&r->generation, __ATOMIC_RELAXED);
    if (kept->r != r || kept->generation != generation) *kept = (rhost_theaps_t){r, generation, {NULL, NULL}};
    kept->theap[object] = mi_heap_theap(heap);   /* the theap that just allocated: mimalloc's cached one */
    return p;
}

mi_heap_t *rhost_detached_heap(region_t *r) {
    rassert(r->id != 0);   /* a live region: a destroyed one's heaps went back to its arena */
    if (!r->detached_heap) r->detached_heap = take_heap(r, HEAP_DETACHED);
    return r->detached_heap;
}

void rhost_heap_usage(region_t *r, bool object, size_t *blocks, size_t *bytes) {
    stats_sum_t sum = {0};
    sum_heap(r, object ? r->object_heap : r->heap, &sum);
    *blocks = sum.blocks;
    *bytes = sum.in_use;
}

region_status region_stats(region_t *r, region_stats_t *out) {
    region_status status = rowner_check(r, "stats");
    if (status != REGION_OK) return status;
    if (!out) return rerror_region(r, REGION_EINVAL, "stats: out is NULL");
    stats_sum_t sum = sum_heaps(r);
    *out = (region_stats_t){
        .id = r->id,
        .bytes_in_use = sum.in_use,
        .bytes_committed = sum.committed,
        .bytes_reserved = rarena_reservation.arena_size,
        .blocks = sum.blocks,
        .pages = sum.pages,
        .heaps = 2,
        .objects = r->object_count,
        .handles = r->handles.used,
        .collections = r->collections,
        .collected = r->collected,
        .node = r->node,
        .binding = r->binding,
    };
    return REGION_OK;
}

typedef struct census {
    region_census_t *out;
    int target;
    uintptr_t os_page;
    region_status status;
} census_t;

/* Counts a page's memory, [blocks, blocks + reserved) rounded out to OS pages: all the page holds,
 * since a kept page (region.c, "Heaps") may be resident beyond what its blocks now reach; what was
 * never touched mincore leaves out. */
static bool census_page(const mi_heap_t *heap, const mi_heap_area_t *area, void *block, size_t size, void *arg) {
    (void)heap, (void)block, (void)size;
    census_t *c = arg;
    uintptr_t page = c->os_page;
    uintptr_t start = (uintptr_t)area->blocks & ~(page - 1);
    uintptr_t end = ((uintptr_t)area->blocks + area->reserved + page - 1) & ~(page - 1);
    c->status = rarena_census((char *)start, end - start, c->target, c->out);
    return c->status == REGION_OK;
}

region_status region_census(region_t *r, region_census_t *out) {
    region_status status = rowner_check(r, "census");
    if (status != REGION_OK) return status;
    if (!out) return rerror_region(r, REGION_EINVAL, "census: out is NULL");
    *out = (region_census_t){0};
    census_t census = {out, r->node, (uintptr_t)sysconf(_SC_PAGESIZE), REGION_OK};
    mi_heap_t *heaps[] = {r->heap, r->object_heap, r->detached_heap};
    for (size_t i = 0; i < sizeof heaps / sizeof *heaps && census.status == REGION_OK; i++)
        if (heaps[i]) mi_heap_visit_blocks(heaps[i], false, census_page, &census);
    status = census.status;
    if (status == REGION_EOS) return rerror_region(r, status, "census: mincore failed: %s", strerror(errno));
    if (status != REGION_OK) return rerror_region(r, status, "census: out of memory");
    return REGION_OK;
}
