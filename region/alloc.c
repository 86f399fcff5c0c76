/* alloc.c - allocation in a region.
 *
 * Every block comes from the region's own mimalloc heap, which allocates only inside the region's
 * exclusive arena: a block can never come from outside the slot, and a full slot gives NULL, which
 * we report as REGION_EFULL.  realloc always goes through the region's heap (mi_heap_realloc), never
 * mi_realloc, which would move a growing block into the thread's default heap.
 *
 * "p is a block of r" is checked as: p lies in r's slot and mimalloc's page map says r's heap owns
 * it.  Both checks are safe for any pointer value.
 *
 * THREADS: owner only (checked); the heap itself is usable from whichever thread owns the region.
 */
#include <string.h>

#include "region-internal.h"

static void *alloc_failed(region_t *r, size_t size, const char *what) {
    if (!r) {
        rerror(REGION_EINVAL, "%s: region is NULL", what);
    } else if (!rowner_is_self(r)) {
        rowner_check(r, what);
    } else {
        rerror_region(r, REGION_EFULL, "%s of %zu bytes: the region's %zu MiB address range is "
                      "exhausted (raise region_config.slot_size)", what, size,
                      rarena_reservation.slot_size >> 20);
    }
    return NULL;
}

void *region_alloc(region_t *r, size_t size) {
    if (unlikely(!r || !rowner_is_self(r))) return alloc_failed(r, size, "alloc");
    void *p = mi_heap_malloc(r->heap, size);
    return likely(p != NULL) ? p : alloc_failed(r, size, "alloc");
}

void *region_zalloc(region_t *r, size_t size) {
    if (unlikely(!r || !rowner_is_self(r))) return alloc_failed(r, size, "zalloc");
    void *p = mi_heap_zalloc(r->heap, size);
    return likely(p != NULL) ? p : alloc_failed(r, size, "zalloc");
}

void *region_calloc(region_t *r, size_t count, size_t size) {
    size_t total;
    if (__builtin_mul_overflow(count, size, &total)) {
        if (r) rerror_region(r, REGION_EINVAL, "calloc: %zu * %zu bytes overflows", count, size);
        else rerror(REGION_EINVAL, "calloc: region is NULL");
        return NULL;
    }
    if (unlikely(!r || !rowner_is_self(r))) return alloc_failed(r, total, "calloc");
    void *p = mi_heap_zalloc(r->heap, total);
    return likely(p != NULL) ? p : alloc_failed(r, total, "calloc");
}

static bool block_of(const region_t *r, const void *p) {
    return rheap_owns(r, r->heap, p);
}

void *region_realloc(region_t *r, void *p, size_t size) {
    if (!p) return region_alloc(r, size);
    if (unlikely(!r || !rowner_is_self(r))) return alloc_failed(r, size, "realloc");
    if (!block_of(r, p)) {
        rerror_region(r, REGION_ENOTREGION, "realloc: %p is not a block of this region", p);
        return NULL;
    }
    void *moved = mi_heap_realloc(r->heap, p, size);
    if (!moved) return alloc_failed(r, size, "realloc");
    if (moved != p && r->handles.used) rhandle_retarget(r, p, moved);
    return moved;
}

region_status region_free(region_t *r, void *p) {
    if (!p) return r ? REGION_OK : rerror(REGION_EINVAL, "free: region is NULL");
    region_status status = rowner_check(r, "free");
    if (status != REGION_OK) return status;
    if (!block_of(r, p)) {
        region_t *other = rregion_of(p);
        if (other)
            return rerror_region(r, REGION_ENOTREGION, "free: %p belongs to region '%s', not this one",
                                 p, other->name);
        return rerror_region(r, REGION_ENOTREGION, "free: %p is not a block of this region", p);
    }
    if (r->handles.used) rhandle_retarget(r, p, NULL);
    mi_free(p);
    return REGION_OK;
}

size_t region_usable_size(region_t *r, const void *p) {
    if (!r || !p || !block_of(r, p)) return 0;
    return mi_usable_size(p);
}
