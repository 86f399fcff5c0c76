/* isolation.c - the isolation engine's scan: one pass over a region's object pages that sorts every
 * reference its objects hold into "to this region's objects", "to this region's other memory" and
 * "outside", counting each outside target.
 *
 * Its users decide what the counts mean: region_check (collect.c) looks for outside targets that are
 * another region's memory; the Python binding (python/_region/proof.c) compares the references to
 * the region's objects with the sum of their reference counts, and vets each outside target once.
 * Only when that fast verdict is "not proven" do they run the slower pass that names each offender.
 *
 * WHY A SCAN AND NOT A WALK: a walk of the object graph costs a hash lookup per edge (is it new?) and
 * a random read per object; the scan reads the object heap's blocks in address order, page by page
 * (pages whose blocks are all in use in a plain loop, the others through mimalloc's visitor of one
 * page's live blocks), and tests each reference with two integer comparisons and a bit of a small
 * bitmap.  Every object of the heap is visited, reachable or not: garbage counts for the
 * references it holds, as it does for CPython's own collector.
 *
 * OBJECT MEMORY: the 64 KiB slices of r's arena that pages of r's object heap cover (a bitmap made
 * before the scan from the heap's pages); BUFFER MEMORY likewise for r's other heaps.  A mimalloc
 * page belongs to one heap, and a slice to at most one page, so a reference into an object slice is
 * a reference to an object-heap block, and one into the arena but neither map is another region's
 * (the arena is shared) or free memory: outside.
 *
 * THREADS: the region's owner (or its host's) only, with no allocation or free in the object heap
 * while a scan runs, nor between riso_begin and the end of the first scan (ONE WALK OF EACH HEAP).
 * A split scan (SPLIT SCANS, region-internal.h) has the helper thread scan some of the whole pages
 * meanwhile; the calling thread waits for it before it returns.
 */
#include <stdlib.h>

#include "region-internal.h"

/* ONE WALK OF EACH HEAP: riso_begin records the pages of a heap as mimalloc's visitor describes them
 * (its areas), and both the slice bitmaps and the first scan read the record, so a heap's pages are
 * found once (a walk of the heap's page bitmap in its arena and a read of each page's info), not once
 * for the bitmap's span, once for its bits and once for the scan.  A short region's close paid those
 * walks on every heap (bench/requests_bench.py's region worker).  The record is a scan's only while
 * nothing is allocated in or freed to the object heap since riso_begin (THREADS, above); a later scan
 * walks the heap again. */

/* Whether every block of a page is in use (used == capacity), with no block freed by another thread
 * waiting there uncollected (such a block counts as used): the visit block by block that a page with
 * one gets collects it first, so that a page the previous owner let go of (region.c, LETTING GO) and
 * the next owner freed blocks to is read with its free blocks known.  A dead object read as a whole
 * page's block was not an object, and the Python proof's blocks did not balance. */
static inline bool area_is_whole(const mi_heap_area_t *area) {
    return area->used && area->used == area->committed / area->full_block_size && !mi_heap_area_frees_pending(area);
}

/* Records each area (page) of the heaps it visits, and the bytes of the whole ones; failed when out
 * of memory. */
static bool record_area(const mi_heap_t *heap, const mi_heap_area_t *area, void *block, size_t size, void *arg) {
    (void)heap, (void)block, (void)size;
    riso_areas_t *a = arg;
    if (a->count == a->capacity) {
        size_t capacity = a->capacity ? 2 * a->capacity : 32;
        mi_heap_area_t *grown = realloc(a->areas, capacity * sizeof *grown);
        if (!grown) {
            a->failed = true;
            return false;
        }
        a->areas = grown;
        a->capacity = capacity;
    }
    a->areas[a->count++] = *area;
    if (area_is_whole(area)) a->whole_bytes += area->committed;
    return true;
}

/* Appends heap's pages (none for NULL) to a; false when out of memory. */
static bool record_heap(riso_areas_t *a, mi_heap_t *heap) {
    if (heap) mi_heap_visit_blocks(heap, false, record_area, a);
    return !a->failed;
}

static void areas_free(riso_areas_t *a) {
    free(a->areas);
    *a = (riso_areas_t){0};
}

/* The slices [first, last] of a page's memory, as offsets from the arena base. */
static void page_slices(uintptr_t base, const mi_heap_area_t *area, uintptr_t *first, uintptr_t *last) {
    uintptr_t start = (uintptr_t)area->blocks - base;
    *first = start >> RISO_SLICE_SHIFT;
    *last = (start + (area->reserved ? area->reserved : 1) - 1) >> RISO_SLICE_SHIFT;
}

/* The slices the recorded pages cover, in a bitmap as small as their span; false when out of memory. */
static bool map_areas(riso_slices_t *m, uintptr_t base, const riso_areas_t *a) {
    *m = (riso_slices_t){0};
    if (!a->count) return true;
    uintptr_t low = UINTPTR_MAX, high = 0;
    for (size_t i = 0; i < a->count; i++) {
        uintptr_t first, last;
        page_slices(base, &a->areas[i], &first, &last);
        if (first < low) low = first;
        if (last > high) high = last;
    }
    m->first = low;
    m->count = high - low + 1;
    m->bits = calloc((m->count + 63) / 64, sizeof *m->bits);
    if (!m->bits) {
        m->count = 0;
        return false;
    }
    for (size_t i = 0; i < a->count; i++) {
        uintptr_t first, last;
        page_slices(base, &a->areas[i], &first, &last);
        for (uintptr_t bit = first - low; bit <= last - low; bit++) m->bits[bit >> 6] |= (uint64_t)1 << (bit & 63);
    }
    return true;
}

/* riso_begin, and riso_begin_objects when `buffers` is false. */
static region_status begin(riso_t *s, region_t *r, bool buffers) {
    *s = (riso_t){.r = r, .base = (uintptr_t)rarena_base(r->arena_index), .size = rarena_reservation.arena_size};
    mi_heap_collect_frees(r->object_heap);   /* fold the frees pending in the calling thread's pages in */
    bool mapped = record_heap(&s->object_areas, r->object_heap) && map_areas(&s->objects, s->base, &s->object_areas);
    if (mapped && buffers) {
        riso_areas_t others = {0};
        mapped = record_heap(&others, r->heap) && record_heap(&others, r->detached_heap) &&
                 map_areas(&s->buffers, s->base, &others);
        areas_free(&others);
    }
    if (!mapped) {
        riso_end(s);
        return rerror_region(r, REGION_ENOMEM, "isolation scan: out of memory");
    }
    s->areas_current = true;
    return REGION_OK;
}

region_status riso_begin(riso_t *s, region_t *r) { return begin(s, r, true); }

region_status riso_begin_objects(riso_t *s, region_t *r) { return begin(s, r, false); }

size_t riso_block_size(const void *block) {
    return mi_usable_size(block);
}

/* A recent entry's count joins the map, and the entry is free again. */
static void flush_recent(riso_t *s, riso_recent_t *recent) {
    if (!recent->target) return;
    rptrmap_cell_t *cell = rptrmap_put(&s->outside, recent->target);
    if (cell) cell->value += recent->count;
    else s->failed = true;
    *recent = (riso_recent_t){0};
}

void riso_flush(riso_t *s) {
    for (size_t i = 0; i < RISO_RECENT; i++) flush_recent(s, &s->recent[i]);
}

/* A target that is not in its recent entry takes the entry. */
void riso_note_outside(riso_t *s, const void *target) {
    riso_recent_t *recent = &s->recent[((uintptr_t)target >> 4) & (RISO_RECENT - 1)];
    flush_recent(s, recent);
    *recent = (riso_recent_t){target, 1};
}

typedef struct scan_visit {
    riso_t *s;
    const riso_visitor_t *visitor;
    void **partial;          /* the pages with free blocks (mimalloc's mi_page_t, as `reserved1`) */
    size_t partial_count, partial_capacity;
} scan_visit_t;

/* A page whose blocks are all in use (used == capacity; blocks freed by other threads and not yet
 * collected count as used, and a scan must be ready to find such a block dead) goes to visitor->page
 * whole, so its blocks cost no call each; the others are noted, for a visit block by block. */
static bool scan_area(const mi_heap_t *heap, const mi_heap_area_t *area, void *block, size_t size, void *arg) {
    (void)heap, (void)block, (void)size;
    scan_visit_t *v = arg;
    if (area->used == 0) return true;
    rassert(area->full_block_size && area->committed % area->full_block_size == 0);   /* capacity blocks */
    rassert(riso_in_object_memory(v->s, area->blocks));   /* riso_begin mapped every page */
    if (area_is_whole(area)) {
        const riso_visitor_t *visitor = v->visitor;
        if (visitor->page) return visitor->page(area->blocks, area->full_block_size, area->block_size, area->used,
                                                visitor->arg);
        char *each = area->blocks;
        for (size_t i = 0; i < area->used; i++, each += area->full_block_size)
            if (!visitor->block(each, area->block_size, visitor->arg)) return false;
        return true;
    }
    if (v->partial_count == v->partial_capacity) {
        size_t capacity = v->partial_capacity ? 2 * v->partial_capacity : 64;
        void **grown = realloc(v->partial, capacity * sizeof *grown);
        if (!grown) {
            v->s->failed = true;
            return false;
        }
        v->partial = grown;
        v->partial_capacity = capacity;
    }
    v->partial[v->partial_count++] = area->reserved1;
    return true;
}

static bool scan_block(const mi_heap_t *heap, const mi_heap_area_t *area, void *block, size_t size, void *arg) {
    (void)heap, (void)area;
    const riso_visitor_t *visitor = arg;
    return visitor->block(block, size, visitor->arg);
}

#if REGION_EXPENSIVE_CHECKS && !defined(NDEBUG)
/* Whether the object heap's pages are still those riso_begin recorded, with as many blocks in use. */
static bool areas_unchanged(const riso_t *s) {
    riso_areas_t now = {0};
    bool same = record_heap(&now, s->r->object_heap) && now.count == s->object_areas.count;
    for (size_t i = 0; same && i < now.count; i++)
        same = now.areas[i].blocks == s->object_areas.areas[i].blocks && now.areas[i].used == s->object_areas.areas[i].used;
    areas_free(&now);
    return same;
}
#endif

/* The pages riso_begin recorded; false when a visitor stopped or out of memory. */
static bool scan_recorded(scan_visit_t *v) {
    const riso_areas_t *recorded = &v->s->object_areas;
    bool finished = true;
    for (size_t i = 0; finished && i < recorded->count; i++) finished = scan_area(NULL, &recorded->areas[i], NULL, 0, v);
    return finished;
}

/* Visits the pages with free blocks that scan_area noted, and frees the list. */
static bool scan_partial(scan_visit_t *v, bool finished) {
    if (finished) finished = _mi_pages_visit_blocks(v->partial, v->partial_count, scan_block, (void *)v->visitor);
    free(v->partial);
    v->partial = NULL;
    v->partial_count = v->partial_capacity = 0;
    return finished;
}

/* SPLIT SCANS: the recorded areas are dealt to the two halves RISO_SPLIT_CHUNK at a time, to whichever
 * asks next, so that a half that runs slower (its objects cost more to visit, or its CPU is shared)
 * takes fewer: a cut at half the bytes left one half 35 % more work in a 1M-object region
 * (python_bench.py's teardown), and the VM's second vCPU is at times slower than the first. */
#define RISO_SPLIT_CHUNK 8

size_t riso_split_bytes = RISO_SPLIT_BYTES;
uint64_t riso_splits, riso_splits_helped;

typedef struct deal {
    const mi_heap_area_t *areas;
    size_t count;
    size_t next;             /* atomic: the first area not dealt yet */
    bool stop;               /* atomic: a half stopped the scan */
} deal_t;

/* One half: takes chunks until none is left; false when its visitor stopped or the other half did. */
static bool scan_dealt(scan_visit_t *v, deal_t *deal) {
    for (;;) {
        if (__atomic_load_n(&deal->stop, __ATOMIC_RELAXED)) return false;
        size_t first = __atomic_fetch_add(&deal->next, RISO_SPLIT_CHUNK, __ATOMIC_RELAXED);
        if (first >= deal->count) return true;
        size_t end = first + RISO_SPLIT_CHUNK < deal->count ? first + RISO_SPLIT_CHUNK : deal->count;
        for (size_t i = first; i < end; i++) {
            if (!scan_area(NULL, &deal->areas[i], NULL, 0, v)) {
                __atomic_store_n(&deal->stop, true, __ATOMIC_RELAXED);
                return false;
            }
        }
    }
}

/* The helper's half, a job for the helper thread. */
typedef struct scan_half {
    scan_visit_t v;           /* the shard's; its pages with free blocks are the caller's to visit */
    deal_t *deal;
    bool finished;
} scan_half_t;

static void scan_helper_half(void *arg) {
    scan_half_t *half = arg;
    half->finished = scan_dealt(&half->v, half->deal);
}

/* Whether the recorded areas' whole pages hold riso_split_bytes or more, in more than one chunk. */
static bool worth_splitting(const riso_areas_t *a) {
    return a->count > RISO_SPLIT_CHUNK && a->whole_bytes >= __atomic_load_n(&riso_split_bytes, __ATOMIC_RELAXED);
}

/* The shard's counts join the scan's; the shard keeps nothing. */
static void merge_shard(riso_t *s, riso_t *shard) {
    riso_flush(shard);
    s->internal += shard->internal;
    s->stray = s->stray || shard->stray;
    s->failed = s->failed || shard->failed;
    rptrmap_foreach(&shard->outside, cell) {
        rptrmap_cell_t *into = rptrmap_put(&s->outside, cell->key);
        if (into) into->value += cell->value;
        else s->failed = true;
    }
    rptrmap_clear(&shard->outside);
    shard->objects = shard->buffers = (riso_slices_t){0};   /* the scan's */
}

bool riso_will_split(const riso_t *s) { return s->areas_current && worth_splitting(&s->object_areas); }

void riso_shard(riso_t *shard, const riso_t *s) {
    *shard = (riso_t){.r = s->r, .base = s->base, .size = s->size, .objects = s->objects, .buffers = s->buffers};
}

/* The first scan, split: the calling thread and the helper take the recorded areas in chunks (the
 * calling thread all of them when the helper is not to be had), then the calling thread visits both
 * halves' pages with free blocks. */
static bool scan_split(riso_t *s, scan_visit_t *v, riso_split_t *split) {
    rassert(split->visitor.page && split->shard->base == s->base && split->shard->objects.bits == s->objects.bits);
    deal_t deal = {.areas = s->object_areas.areas, .count = s->object_areas.count};
    scan_half_t half = {.v = {split->shard, &split->visitor, NULL, 0, 0}, .deal = &deal, .finished = true};
    bool posted = rhelper_post(scan_helper_half, &half);
    bool finished = scan_dealt(v, &deal);
    if (posted) rhelper_finish();
    split->used = true;
    __atomic_fetch_add(&riso_splits, 1, __ATOMIC_RELAXED);
    if (posted) __atomic_fetch_add(&riso_splits_helped, 1, __ATOMIC_RELAXED);
    finished = finished && half.finished;
    /* The helper's pages with free blocks go to the calling thread's visitor. */
    finished = scan_partial(&(scan_visit_t){s, v->visitor, half.v.partial, half.v.partial_count, 0}, finished);
    merge_shard(s, split->shard);
    return finished;
}

bool riso_scan_split(riso_t *s, const riso_visitor_t *visitor, riso_split_t *split) {
    scan_visit_t v = {s, visitor, NULL, 0, 0};
    bool finished;
    if (split) split->used = false;
    if (s->areas_current) {   /* the first scan: the pages riso_begin recorded (ONE WALK OF EACH HEAP) */
        rassert_expensive(areas_unchanged(s));
        bool splitting = split && riso_will_split(s);
        s->areas_current = false;
        finished = splitting ? scan_split(s, &v, split) : scan_recorded(&v);
    } else {
        finished = mi_heap_visit_blocks(s->r->object_heap, false, scan_area, &v);
    }
    finished = scan_partial(&v, finished);
    riso_flush(s);   /* the map is complete */
    return finished && !s->failed;
}

bool riso_scan(riso_t *s, const riso_visitor_t *visitor) { return riso_scan_split(s, visitor, NULL); }

void riso_end(riso_t *s) {
    free(s->objects.bits);
    free(s->buffers.bits);
    areas_free(&s->object_areas);
    s->areas_current = false;
    rptrmap_clear(&s->outside);
    s->objects = s->buffers = (riso_slices_t){0};
}
