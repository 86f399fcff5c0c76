/* alloc.c - allocation in a region.
 *
 * Every block comes from the region's own mimalloc heap, which allocates only inside the region's
 * exclusive arena (shared with regions of the same binding, each on pages of its own): a block can
 * never come from elsewhere, and a full arena gives NULL, which we report as REGION_EFULL.  realloc always goes through the region's heap (mi_heap_realloc), never
 * mi_realloc, which would move a growing block into the thread's default heap.
 *
 * "p is a block of r" is checked as: p lies in the arenas and mimalloc's page map says r's heap owns
 * it.  Both checks are safe for any pointer value.  Whether p is the START of a LIVE block mimalloc
 * cannot say; builds with REGION_BLOCK_CHECKS keep a set of live blocks for that (a pointer map,
 * ptrmap.c), and release builds take the caller's word, as free() does.
 *
 * SIZES: one block is at most REGION_MAX_BLOCK_SIZE (include/region.h).  mimalloc 3.4 cannot place a
 * single block in more than about 2 GiB of an arena, whatever the arena's size (measured: 2,143,158,592
 * bytes succeed in arenas of 3 to 64 GiB, 2,144,207,104 fail), so a larger request is an invalid
 * argument, not a full region.  The check shares the fast path's one unlikely branch.
 *
 * THREADS: owner only (checked); the heap itself is usable from whichever thread owns the region.
 *
 * THE INLINE PATH (include/region.h, region_alloc_inline) runs in the caller: r non-NULL, size within
 * REGION_MAX_BLOCK_SIZE, the caller's token equal to the owner field, and an inline_heap (NULL in
 * builds with block checks, which must enter each block in the live set) - then mimalloc allocates
 * straight from the heap.  Anything else, and a full region, comes here, where the same tests run
 * again and give the error.
 */
#include <string.h>

#include "region-internal.h"

static void *alloc_failed(region_t *r, size_t size, const char *what) {
    if (!r) {
        rerror(REGION_EINVAL, "%s: region is NULL", what);
    } else if (!rowner_is_self(r)) {
        rowner_check(r, what);
    } else if (size > REGION_MAX_BLOCK_SIZE) {
        rerror_region(r, REGION_EINVAL, "%s of %zu bytes: one block is at most %zu bytes "
                      "(REGION_MAX_BLOCK_SIZE, mimalloc's limit, whatever the arena size); allocate "
                      "larger data in pieces", what, size, (size_t)REGION_MAX_BLOCK_SIZE);
    } else {
        rerror_region(r, REGION_EFULL, "%s of %zu bytes: the region's arena of %zu MiB is exhausted, by "
                      "this region and the others of its binding that share it (raise "
                      "region_config.arena_size)", what, size, rarena_reservation.arena_size >> 20);
    }
    return NULL;
}

/* The first unlikely branch of every allocation: a bad region, a non-owner or an oversized block. */
static inline bool alloc_refused(const region_t *r, size_t size) {
    return !r || size > REGION_MAX_BLOCK_SIZE || !rowner_is_self(r);
}

/* p was just allocated in r: enters it in the live set (REGION_BLOCK_CHECKS), or gives it back and
 * fails with REGION_ENOMEM when the set cannot grow. */
static inline void *block_added(region_t *r, void *p, const char *what) {
#if REGION_BLOCK_CHECKS
    if (!rptrmap_put(&r->live_blocks, p)) {
        mi_free(p);
        rerror_region(r, REGION_ENOMEM, "%s: out of memory for the set of live blocks (block checks)", what);
        return NULL;
    }
#else
    (void)r, (void)what;
#endif
    return p;
}

/* The checked path: include/region.h inlines region_alloc_inline into callers, which calls this for
 * everything but an owner's successful allocation (the name in parentheses: not the macro). */
void *(region_alloc)(region_t *r, size_t size) {
    if (unlikely(alloc_refused(r, size))) return alloc_failed(r, size, "alloc");
    void *p = mi_heap_malloc(r->heap, size);
    return likely(p != NULL) ? block_added(r, p, "alloc") : alloc_failed(r, size, "alloc");
}

/* The inline path's allocation: exported under the region_ prefix, as mimalloc's names are not. */
void *region_inline_malloc(mi_heap_t *heap, size_t size) { return mi_heap_malloc(heap, size); }

void *region_zalloc(region_t *r, size_t size) {
    if (unlikely(alloc_refused(r, size))) return alloc_failed(r, size, "zalloc");
    void *p = mi_heap_zalloc(r->heap, size);
    return likely(p != NULL) ? block_added(r, p, "zalloc") : alloc_failed(r, size, "zalloc");
}

void *region_calloc(region_t *r, size_t count, size_t size) {
    size_t total;
    if (__builtin_mul_overflow(count, size, &total)) {
        if (r) rerror_region(r, REGION_EINVAL, "calloc: %zu * %zu bytes overflows", count, size);
        else rerror(REGION_EINVAL, "calloc: region is NULL");
        return NULL;
    }
    if (unlikely(alloc_refused(r, total))) return alloc_failed(r, total, "calloc");
    void *p = mi_heap_zalloc(r->heap, total);
    return likely(p != NULL) ? block_added(r, p, "calloc") : alloc_failed(r, total, "calloc");
}

bool rblock_is_live(const region_t *r, const void *p) {
#if REGION_BLOCK_CHECKS
    return rptrmap_get(&r->live_blocks, p) != NULL;
#else
    return rheap_owns(r, r->heap, p);
#endif
}

/* Records REGION_ENOTREGION for a p that is not a live block of r, saying what it is instead. */
static region_status not_a_block(region_t *r, const void *p, const char *what) {
    if (rheap_owns(r, r->heap, p))   /* only with REGION_BLOCK_CHECKS can we get here with this */
        return rerror_region(r, REGION_ENOTREGION, "%s: %p is in this region's memory but is not the "
                             "start of a live block (an interior pointer, or a block freed already)",
                             what, p);
    region_t *other = rregion_of(p);
    if (other && other != r)
        return rerror_region(r, REGION_ENOTREGION, "%s: %p belongs to region '%s', not this one",
                             what, p, other->name);
    return rerror_region(r, REGION_ENOTREGION, "%s: %p is not a block of this region", what, p);
}

void *region_realloc(region_t *r, void *p, size_t size) {
    if (!p) return region_alloc(r, size);
    if (unlikely(alloc_refused(r, size))) return alloc_failed(r, size, "realloc");
    if (!rblock_is_live(r, p)) {
        not_a_block(r, p, "realloc");
        return NULL;
    }
#if REGION_BLOCK_CHECKS
    /* Room first: once mimalloc moved the block, entering its new address must not fail. */
    if (!rptrmap_reserve(&r->live_blocks, 1)) {
        rerror_region(r, REGION_ENOMEM, "realloc: out of memory for the set of live blocks (block checks)");
        return NULL;
    }
#endif
    void *moved = mi_heap_realloc(r->heap, p, size);
    if (!moved) return alloc_failed(r, size, "realloc");
    if (moved != p) {
#if REGION_BLOCK_CHECKS
        rptrmap_remove(&r->live_blocks, p);
        rptrmap_cell_t *added = rptrmap_put(&r->live_blocks, moved);
        rassert(added && added->value == 0);   /* reserved above; mimalloc never hands out a live block twice */
        (void)added;
#endif
        if (r->handles.used) rhandle_retarget(r, p, moved);
    }
    return moved;
}

region_status region_free(region_t *r, void *p) {
    if (!p) return r ? REGION_OK : rerror(REGION_EINVAL, "free: region is NULL");
    region_status status = rowner_check(r, "free");
    if (status != REGION_OK) return status;
    if (!rblock_is_live(r, p)) return not_a_block(r, p, "free");
#if REGION_BLOCK_CHECKS
    rptrmap_remove(&r->live_blocks, p);
#endif
    if (r->handles.used) rhandle_retarget(r, p, NULL);
    mi_free(p);
    return REGION_OK;
}

size_t region_usable_size(region_t *r, const void *p) {
    if (!p || rowner_check(r, "usable_size") != REGION_OK || !rblock_is_live(r, p)) return 0;
    return mi_usable_size(p);
}

int region_block_checks(void) { return REGION_BLOCK_CHECKS; }
