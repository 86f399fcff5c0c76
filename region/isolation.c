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
 * while a scan runs.
 */
#include <stdlib.h>

#include "region-internal.h"

typedef struct slices_build {
    riso_slices_t *map;
    uintptr_t base;            /* the arena's */
} slices_build_t;

/* The slices [first, last] of a page's memory, as offsets from the arena base. */
static void page_slices(uintptr_t base, const mi_heap_area_t *area, uintptr_t *first, uintptr_t *last) {
    uintptr_t start = (uintptr_t)area->blocks - base;
    *first = start >> RISO_SLICE_SHIFT;
    *last = (start + (area->reserved ? area->reserved : 1) - 1) >> RISO_SLICE_SHIFT;
}

/* First round: the span of slices the pages cover, so the bitmap is as small as they are. */
static bool span_page(const mi_heap_t *heap, const mi_heap_area_t *area, void *block, size_t size, void *arg) {
    (void)heap, (void)block, (void)size;
    slices_build_t *b = arg;
    riso_slices_t *m = b->map;
    uintptr_t first, last;
    page_slices(b->base, area, &first, &last);
    if (!m->count || first < m->first) {
        m->count += m->count ? m->first - first : 0;
        m->first = first;
    }
    if (last - m->first + 1 > m->count) m->count = last - m->first + 1;
    return true;
}

/* Second round: each page's slices in the bitmap. */
static bool mark_page(const mi_heap_t *heap, const mi_heap_area_t *area, void *block, size_t size, void *arg) {
    (void)heap, (void)block, (void)size;
    slices_build_t *b = arg;
    riso_slices_t *m = b->map;
    uintptr_t first, last;
    page_slices(b->base, area, &first, &last);
    for (uintptr_t i = first - m->first; i <= last - m->first; i++) {
        rassert(i < m->count);   /* span_page saw the same pages: no page is made while scanning */
        m->bits[i >> 6] |= (uint64_t)1 << (i & 63);
    }
    return true;
}

/* The slices of up to two heaps (NULL: none) of the arena at base; false when out of memory. */
static bool map_heaps(riso_slices_t *m, uintptr_t base, mi_heap_t *a, mi_heap_t *b) {
    slices_build_t build = {m, base};
    *m = (riso_slices_t){0};
    if (a) mi_heap_visit_blocks(a, false, span_page, &build);
    if (b) mi_heap_visit_blocks(b, false, span_page, &build);
    if (!m->count) return true;
    m->bits = calloc((m->count + 63) / 64, sizeof *m->bits);
    if (!m->bits) {
        m->count = 0;
        return false;
    }
    if (a) mi_heap_visit_blocks(a, false, mark_page, &build);
    if (b) mi_heap_visit_blocks(b, false, mark_page, &build);
    return true;
}

/* riso_begin, and riso_begin_objects when `buffers` is false. */
static region_status begin(riso_t *s, region_t *r, bool buffers) {
    *s = (riso_t){.r = r, .base = (uintptr_t)rarena_base(r->arena_index), .size = rarena_reservation.arena_size};
    mi_heap_collect_frees(r->object_heap);   /* fold the frees pending in the calling thread's pages in */
    if (!map_heaps(&s->objects, s->base, r->object_heap, NULL) ||
        (buffers && !map_heaps(&s->buffers, s->base, r->heap, r->detached_heap))) {
        riso_end(s);
        return rerror_region(r, REGION_ENOMEM, "isolation scan: out of memory");
    }
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
    if (area->used == area->committed / area->full_block_size) {
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

bool riso_scan(riso_t *s, const riso_visitor_t *visitor) {
    scan_visit_t v = {s, visitor, NULL, 0, 0};
    bool finished = mi_heap_visit_blocks(s->r->object_heap, false, scan_area, &v);
    if (finished) finished = _mi_pages_visit_blocks(v.partial, v.partial_count, scan_block, (void *)visitor);
    free(v.partial);
    for (size_t i = 0; i < RISO_RECENT; i++) flush_recent(s, &s->recent[i]);   /* the map is complete */
    return finished && !s->failed;
}

void riso_end(riso_t *s) {
    free(s->objects.bits);
    free(s->buffers.bits);
    rptrmap_clear(&s->outside);
    s->objects = s->buffers = (riso_slices_t){0};
}
