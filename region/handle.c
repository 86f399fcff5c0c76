/* handle.c - weak handles: (region id, entry, generation) values that name a block.
 *
 * Each region has a table of entries, one per block that has handles, and an index from block
 * address to entry.  A handle is valid while its region id is still the region's id (destroying a
 * region clears the id: every handle dies in O(1)) and its generation equals the entry's (freeing
 * the block recycles the entry and bumps the generation).
 *
 * INVARIANTS
 *   - entries[i].target != NULL  <=>  the index maps target to i + 1.
 *   - A free entry's generation is never handed out again without being incremented first.
 *   - The index (live cells + tombstones) is at most 3/4 full, one cell more only after a rebuild
 *     failed for lack of memory: a probe always reaches an empty cell.  Rebuilds size the index by
 *     the live entries alone, so churn never grows it without bound.
 *   - Only the owner changes the table; resolve reads it only after proving the caller is the owner,
 *     so the table needs no lock (region-internal.h, OWNERSHIP).
 */
#include <stdlib.h>

#include "region-host.h"

#define INDEX_DELETED UINT32_MAX

static uint32_t hash_pointer(const void *p, uint32_t mask) {
    uint64_t x = (uint64_t)(uintptr_t)p >> 4;
    x *= 0x9E3779B97F4A7C15ull;
    return (uint32_t)(x >> 32) & mask;
}

/* ---- Index: target -> entry ---- */

/* The cell holding target's entry, or the empty cell where it would go. */
static uint32_t *index_find(rhandle_table_t *t, const void *target, bool for_insert) {
    uint32_t mask = t->index_capacity - 1;
    uint32_t *tombstone = NULL;
    for (uint32_t i = hash_pointer(target, mask);; i = (i + 1) & mask) {
        uint32_t *cell = &t->index[i];
        if (*cell == 0) return for_insert && tombstone ? tombstone : cell;
        if (*cell == INDEX_DELETED) { if (!tombstone) tombstone = cell; continue; }
        if (t->entries[*cell - 1].target == target) return cell;
    }
}

static bool index_rebuild(rhandle_table_t *t) {
    uint32_t old_capacity = t->index_capacity;
    uint32_t *old = t->index;
    /* Sized by the live entries alone: a rebuild drops every tombstone, so churn (handles made and
     * their blocks freed, over and over) rehashes at the same size instead of growing forever. */
    uint32_t capacity = 64;
    while ((t->used + 1) * 2 >= capacity) capacity *= 2;
    uint32_t *index = calloc(capacity, sizeof *index);
    if (!index) return false;
    t->index = index;
    t->index_capacity = capacity;
    t->index_filled = 0;
    for (uint32_t i = 0; i < old_capacity; i++) {
        if (old[i] == 0 || old[i] == INDEX_DELETED) continue;
        *index_find(t, t->entries[old[i] - 1].target, true) = old[i];
        t->index_filled++;
    }
    free(old);
    return true;
}

/* ---- Entries ---- */

static bool entries_reserve(rhandle_table_t *t) {
    if (t->free_head || t->capacity > t->used) return true;
    uint32_t capacity = t->capacity ? t->capacity * 2 : 16;
    rhandle_entry_t *entries = realloc(t->entries, capacity * sizeof *entries);
    if (!entries) return false;
    for (uint32_t i = t->capacity; i < capacity; i++)
        entries[i] = (rhandle_entry_t){.target = NULL, .generation = 1, .next_free = 0};
    t->entries = entries;
    t->capacity = capacity;
    return true;
}

/* Fresh entries are taken in order; recycled ones come from the free list first. */
static uint32_t entry_take(rhandle_table_t *t) {
    if (t->free_head) {
        uint32_t i = t->free_head - 1;
        t->free_head = t->entries[i].next_free;
        return i;
    }
    /* No free-listed entry: the first never-used one is at index `used` (all below are in use). */
    return t->used;
}

/* Enters block p of r in the table (or finds its entry) and fills *out. */
static region_status handle_insert(region_t *r, void *p, region_handle_t *out) {
    rhandle_table_t *t = &r->handles;
    if ((t->index_filled + 1) * 4 > t->index_capacity * 3 && !index_rebuild(t))
        return rerror_region(r, REGION_ENOMEM, "handle: out of memory growing the handle index");
    uint32_t *cell = index_find(t, p, true);
    if (*cell == 0 || *cell == INDEX_DELETED) {
        if (!entries_reserve(t))
            return rerror_region(r, REGION_ENOMEM, "handle: out of memory growing the handle table");
        uint32_t i = entry_take(t);
        t->entries[i].target = p;
        if (*cell == 0) t->index_filled++;
        *cell = i + 1;
        t->used++;
    }
    rhandle_entry_t *e = &t->entries[*cell - 1];
    *out = (region_handle_t){.region = r->id, .slot = *cell - 1, .generation = e->generation};
    return REGION_OK;
}

region_status region_handle_new(region_t *r, void *p, region_handle_t *out) {
    region_status status = rowner_check(r, "handle");
    if (status != REGION_OK) return status;
    if (!out) return rerror_region(r, REGION_EINVAL, "handle: out is NULL");
    if (!p || !(rblock_is_live(r, p) || robject_of(r, p)))
        return rerror_region(r, REGION_ENOTREGION, "handle: %p is not a live block or object of this "
                             "region", p);
    return handle_insert(r, p, out);
}

region_status rhost_handle_new(region_t *r, void *p, region_handle_t *out) {
    if (!out) return rerror_region(r, REGION_EINVAL, "handle: out is NULL");
    if (!p || !(rheap_owns(r, r->heap, p) || rheap_owns(r, r->object_heap, p)))
        return rerror_region(r, REGION_ENOTREGION, "handle: %p is not a block of this region", p);
    return handle_insert(r, p, out);
}

void rhandle_retarget(region_t *r, void *target, void *moved_to) {
    rhandle_table_t *t = &r->handles;
    if (!t->index_capacity) return;
    uint32_t *cell = index_find(t, target, false);
    if (*cell == 0) return;
    uint32_t i = *cell - 1;
    if (moved_to) {
        *cell = INDEX_DELETED;
        t->entries[i].target = moved_to;
        /* The index is at most 3/4 full, so an empty cell is left for the new target.  Then rebuild
         * if this pushed it past 3/4 (a failed rebuild leaves the index valid, just fuller). */
        uint32_t *slot = index_find(t, moved_to, true);
        if (*slot == 0) t->index_filled++;
        *slot = i + 1;
        if (t->index_filled * 4 > t->index_capacity * 3) index_rebuild(t);
        return;
    }
    *cell = INDEX_DELETED;
    t->entries[i].target = NULL;
    t->entries[i].generation++;
    t->entries[i].next_free = t->free_head;
    t->free_head = i + 1;
    t->used--;
}

void rhandle_table_free(rhandle_table_t *t) {
    free(t->entries);
    free(t->index);
    *t = (rhandle_table_t){0};
}

/* REGION_OK if h could be a handle at all: its region id was made (region.c), and generation 0 is
 * never handed out. */
static region_status handle_validate(region_handle_t h) {
    if (h.generation == 0 || !rregion_id_was_made(h.region))
        return rerror(REGION_EBADHANDLE, "resolve: {region %llu, slot %u, generation %u} is not a handle "
                      "(no such region id was ever made, or generation 0)", (unsigned long long)h.region,
                      h.slot, h.generation);
    return REGION_OK;
}

region_status region_handle_resolve(region_handle_t h, void **out) {
    if (out) *out = NULL;
    region_status status = handle_validate(h);
    if (status != REGION_OK) return status;
    region_t *r = &regions[h.region & REGION_ID_INDEX_MASK];
    if (__atomic_load_n(&r->id, __ATOMIC_ACQUIRE) != h.region)
        return rerror(REGION_EDEAD, "resolve: the handle's region (id %llu) was destroyed",
                      (unsigned long long)h.region);
    status = rowner_check(r, "resolve");
    if (status != REGION_OK) return status;
    /* The caller owns the record's region now, so it cannot be destroyed under us; rhost_handle_resolve
     * re-checks that it is still the handle's region (destroyed and re-created in between). */
    return rhost_handle_resolve(h, out);
}

region_status rhost_handle_resolve(region_handle_t h, void **out) {
    if (out) *out = NULL;
    region_status status = handle_validate(h);
    if (status != REGION_OK) return status;
    region_t *r = &regions[h.region & REGION_ID_INDEX_MASK];
    if (__atomic_load_n(&r->id, __ATOMIC_ACQUIRE) != h.region)
        return rerror(REGION_EDEAD, "resolve: the handle's region (id %llu) was destroyed",
                      (unsigned long long)h.region);
    rhandle_table_t *t = &r->handles;
    /* An entry's generation is bumped when its block is freed, so a handle of the entry's current
     * generation while it has no target, or of a later one, was never handed out. */
    rhandle_entry_t *e = h.slot < t->capacity ? &t->entries[h.slot] : NULL;
    if (!e || h.generation > e->generation || (h.generation == e->generation && !e->target))
        return rerror_region(r, REGION_EBADHANDLE, "resolve: slot %u generation %u was never handed out",
                             h.slot, h.generation);
    if (e->generation != h.generation)
        return rerror_region(r, REGION_EFREED, "resolve: the handle's block (slot %u) was freed", h.slot);
    if (!out) return rerror_region(r, REGION_EINVAL, "resolve: out is NULL");
    *out = e->target;
    return REGION_OK;
}
