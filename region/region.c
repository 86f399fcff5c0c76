/* region.c - region lifecycle: configuration, create, destroy, lookup, statistics, placement.
 *
 * Creating a region takes a slot from the arena layer, binds it to the requested NUMA node and takes
 * two mimalloc heaps in the slot's exclusive arena (those the slot's last region left, or new ones:
 * "Heaps" below).  Destroying it clears the id so every handle and waiter sees the region is gone,
 * frees every block in bulk (mimalloc frees whole pages, O(pages)), keeping the emptied heaps for the
 * slot's next region where it can, and gives the slot back with its pages still committed.
 *
 * THREADS: config_lock guards the configuration.  A region's own fields are changed only by its owner
 * (region-internal.h), except id, generation and owner, which are changed under owner_lock and read
 * atomically by anyone.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "region-host.h"

struct region regions[REGION_MAX_SLOTS];

static pthread_mutex_t config_lock = PTHREAD_MUTEX_INITIALIZER;
static region_config_t config = {.slot_size = (size_t)4 << 30, .max_regions = REGION_MAX_SLOTS};

/* ---- Version and configuration ---- */
/* meson.build passes its project version; the header must say the same (one place: meson.build). */
_Static_assert(REGION_VERSION_MAJOR == REGION_PROJECT_VERSION_MAJOR &&
                   REGION_VERSION_MINOR == REGION_PROJECT_VERSION_MINOR &&
                   REGION_VERSION_PATCH == REGION_PROJECT_VERSION_PATCH,
               "include/region.h's REGION_VERSION_* differ from meson.build's project version");

const char *region_version(void) { return REGION_PROJECT_VERSION; }


region_status region_configure(const region_config_t *c) {
    if (!c) return rerror(REGION_EINVAL, "configure: config is NULL");
    if (c->slot_size == 0 || c->slot_size > ((size_t)1 << 40))
        return rerror(REGION_EINVAL, "configure: slot_size %zu is not in 1 .. 1 TiB", c->slot_size);
    if (c->max_regions == 0 || c->max_regions > REGION_MAX_SLOTS)
        return rerror(REGION_EINVAL, "configure: max_regions %u is not in 1 .. %u", c->max_regions,
                      REGION_MAX_SLOTS);
    pthread_mutex_lock(&config_lock);
    region_status status = REGION_OK;
    if (rarena_ready()) {
        status = rerror(REGION_ESTATE, "configure: regions already exist; configure before the first");
    } else {
        config.slot_size = (c->slot_size + RARENA_ALIGN - 1) & ~(RARENA_ALIGN - 1);
        config.max_regions = c->max_regions;
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

static region_status ensure_arena(void) {
    if (rarena_ready()) return REGION_OK;
    pthread_mutex_lock(&config_lock);
    region_status status = rarena_init(config.slot_size, config.max_regions);
    pthread_mutex_unlock(&config_lock);
    if (status == REGION_EOS)
        return rerror(status, "create: reserving %u slots of %zu MiB failed: %s", config.max_regions,
                      config.slot_size >> 20, strerror(errno));
    if (status != REGION_OK) return rerror(status, "create: out of memory initialising the runtime");
    return REGION_OK;
}

static void init_struct(region_t *r, unsigned slot, const region_options_t *o, uint64_t id) {
    r->slot = slot;
    r->node = o->node;
    r->binding = o->binding;
    if (o->name) snprintf(r->name, sizeof r->name, "%s", o->name);
    else snprintf(r->name, sizeof r->name, "region-%llu", (unsigned long long)id);
    r->collections = r->collected = 0;
    r->phase = RCOLLECT_IDLE;
    r->object_stamp = robject_stamp_of(id >> REGION_ID_SLOT_BITS);
    r->root = NULL;
    memset(&r->handles, 0, sizeof r->handles);
    robjects_init(r);
}

/* ---- Heaps ----
 *
 * Destroying a region frees every block of its heaps at once.  When only the destroying thread has
 * allocated from a heap since it was last emptied, mimalloc (patch 0004, mi_heap_reset) empties it
 * and keeps it - the heap, its page info in the slot's arena, the thread's theap and, emptied, one of
 * its pages per size of small blocks (patch 0007) - and the slot's next region takes it: no heap to
 * free and make again, no page to take from the arena and give back for each size a short region
 * allocates.  Otherwise the heap is destroyed and the next region makes a new one.  A slot's heaps
 * are of the slot's arena, so whichever region takes them allocates where it must; a kept page is the
 * slot's memory, placed by the slot's NUMA policy, which mbind moves with the rest of the slot when a
 * region of another binding takes it (arena/numa.c). */

/* A heap for the region taking this slot: the one its last region left, or a new one (NULL: out of
 * memory). */
static mi_heap_t *take_heap(mi_heap_t **spare, mi_arena_id_t arena) {
    mi_heap_t *heap = *spare;
    *spare = NULL;
    return heap ? heap : mi_heap_new_in_arena(arena);
}

/* Frees every block of heap (NULL: none), keeping it empty in *spare when mimalloc can. */
static void retire_heap(mi_heap_t *heap, mi_heap_t **spare) {
    if (!heap) return;
    rassert(*spare == NULL);
    if (mi_heap_reset(heap)) *spare = heap;
    else mi_heap_destroy(heap);
}

static pthread_once_t locks_once = PTHREAD_ONCE_INIT;

static void init_locks(void) {
    for (unsigned i = 0; i < REGION_MAX_SLOTS; i++) {
        pthread_mutex_init(&regions[i].owner_lock, NULL);
        pthread_cond_init(&regions[i].owner_cond, NULL);
    }
}

region_status region_create(const region_options_t *opts, region_t **out) {
    region_options_t defaults = REGION_OPTIONS_DEFAULT;
    const region_options_t *o = opts ? opts : &defaults;
    if (!out) return rerror(REGION_EINVAL, "create: out is NULL");
    *out = NULL;
    region_status status = check_options(o);
    if (status == REGION_OK) status = ensure_arena();
    if (status != REGION_OK) return status;
    pthread_once(&locks_once, init_locks);

    unsigned slot;
    mi_arena_id_t arena;
    status = rarena_slot_take(&slot, &arena);
    if (status != REGION_OK)
        return rerror(status, "create%s%s: all %u region slots are in use; destroy a region first "
                      "(the limit is region_config.max_regions, at most %u)",
                      o->name ? " " : "", o->name ? o->name : "", rarena_reservation.slot_count,
                      REGION_MAX_SLOTS);
    region_t *r = &regions[slot];
    status = rarena_slot_bind(slot, o->node, o->binding);
    if (status != REGION_OK) {
        int err = errno;
        rarena_slot_give(slot);
        return rerror(status, "create%s%s: binding to NUMA node %d (mbind) failed: %s",
                      o->name ? " " : "", o->name ? o->name : "", o->node, strerror(err));
    }
    mi_heap_t *heap = take_heap(&r->spare_heap, arena);
    mi_heap_t *object_heap = heap ? take_heap(&r->spare_object_heap, arena) : NULL;
    if (!object_heap) {
        retire_heap(heap, &r->spare_heap);
        rarena_slot_give(slot);
        return rerror(REGION_ENOMEM, "create: mimalloc could not make a heap");
    }
    pthread_mutex_lock(&r->owner_lock);
    /* The slot is ours (rarena_slot_take), so nobody else bumps its generation. */
    uint64_t generation = r->generation + 1;
    uint64_t id = (generation << REGION_ID_SLOT_BITS) | slot;
    __atomic_store_n(&r->generation, generation, __ATOMIC_RELEASE);
    init_struct(r, slot, o, id);
    r->heap = heap;
    r->inline_heap = REGION_BLOCK_CHECKS ? NULL : heap;
    r->object_heap = object_heap;
    r->detached_heap = NULL;
    r->arena = arena;
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
    /* Clear the id first: from here on handles report REGION_EDEAD and waiters give up. */
    pthread_mutex_lock(&r->owner_lock);
    __atomic_store_n(&r->id, 0, __ATOMIC_RELEASE);
    __atomic_store_n(&r->owner, 0, __ATOMIC_RELAXED);
    rowner_wake_all(r);
    pthread_mutex_unlock(&r->owner_lock);

    retire_heap(r->heap, &r->spare_heap);
    retire_heap(r->object_heap, &r->spare_object_heap);
    retire_heap(r->detached_heap, &r->spare_detached_heap);
    r->heap = r->inline_heap = r->object_heap = r->detached_heap = NULL;
    robjects_release(r);
    rhandle_table_free(&r->handles);
#if REGION_BLOCK_CHECKS
    rptrmap_clear(&r->live_blocks);
#endif
    rarena_slot_give(r->slot);
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
    unsigned slot = (unsigned)(id & REGION_ID_SLOT_MASK);
    uint64_t generation = id >> REGION_ID_SLOT_BITS;
    return slot < REGION_MAX_SLOTS && generation != 0 &&
           generation <= __atomic_load_n(&regions[slot].generation, __ATOMIC_ACQUIRE);
}

region_t *region_from_id(uint64_t id) {
    unsigned slot = (unsigned)(id & REGION_ID_SLOT_MASK);
    if (rregion_id_was_made(id) && __atomic_load_n(&regions[slot].id, __ATOMIC_ACQUIRE) == id)
        return &regions[slot];
    rerror(REGION_EDEAD, "region id %llu: no such region (%s)", (unsigned long long)id,
           rregion_id_was_made(id) ? "destroyed" : "never created");
    return NULL;
}

region_t *rregion_of(const void *p) {
    long slot = rarena_slot_of(p);
    if (slot < 0 || __atomic_load_n(&regions[slot].id, __ATOMIC_ACQUIRE) == 0) return NULL;
    return &regions[slot];
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

mi_heap_t *rhost_detached_heap(region_t *r) {
    rassert(r->id != 0);   /* a live region: a destroyed one's arena may belong to the next */
    if (!r->detached_heap) r->detached_heap = take_heap(&r->spare_detached_heap, r->arena);
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
        .bytes_reserved = rarena_reservation.slot_size,
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

region_status region_census(region_t *r, region_census_t *out) {
    region_status status = rowner_check(r, "census");
    if (status != REGION_OK) return status;
    if (!out) return rerror_region(r, REGION_EINVAL, "census: out is NULL");
    status = rarena_census(rarena_slot_base(r->slot), rarena_reservation.slot_size, r->node, out);
    if (status == REGION_EOS) return rerror_region(r, status, "census: mincore failed: %s", strerror(errno));
    if (status != REGION_OK) return rerror_region(r, status, "census: out of memory");
    return REGION_OK;
}
