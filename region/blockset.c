/* blockset.c - the set of a region's live raw blocks, kept by builds with REGION_BLOCK_CHECKS.
 *
 * mimalloc cannot say whether a pointer is the start of a live block (region-internal.h,
 * REGION_BLOCK_CHECKS), so debug builds keep the answer themselves: an open-addressing hash set of
 * block addresses, added on allocation and removed on free.  It turns an interior pointer or a double
 * free into REGION_ENOTREGION instead of a corrupted heap.
 *
 * INVARIANTS
 *   - Live cells plus tombstones fill at most 3/4 of the table, so a probe always ends at an empty
 *     cell.  Growing rehashes by the live cells alone, so churn never grows the table without bound.
 *   - A pointer is in at most one cell.
 *
 * THREADS: the region's owner only, like the heap the set mirrors.
 */
#include <stdlib.h>

#include "region-internal.h"

#if REGION_BLOCK_CHECKS

static size_t cell_of(const void *p, size_t mask) {
    uint64_t x = (uint64_t)(uintptr_t)p >> 3;
    x *= 0x9E3779B97F4A7C15ull;
    return (size_t)(x >> 32) & mask;
}

/* The cell holding p, or the empty cell ending its probe. */
static void **find(const rblockset_t *s, const void *p) {
    size_t mask = s->capacity - 1;
    for (size_t i = cell_of(p, mask);; i = (i + 1) & mask)
        if (s->cells[i] == p || s->cells[i] == NULL) return &s->cells[i];
}

static bool rehash(rblockset_t *s) {
    size_t capacity = 64;
    while ((s->live + 1) * 2 >= capacity) capacity *= 2;
    void **old = s->cells;
    size_t old_capacity = s->capacity;
    s->cells = calloc(capacity, sizeof *s->cells);
    if (!s->cells) {
        s->cells = old;
        return false;
    }
    s->capacity = capacity;
    s->filled = 0;
    for (size_t i = 0; i < old_capacity; i++) {
        if (old[i] == NULL || old[i] == RBLOCKSET_DELETED) continue;
        *find(s, old[i]) = old[i];
        s->filled++;
    }
    free(old);
    return true;
}

bool rblockset_reserve(rblockset_t *s) {
    return (s->filled + 1) * 4 <= s->capacity * 3 || rehash(s);
}

bool rblockset_add(rblockset_t *s, void *p) {
    rassert(p != NULL && p != RBLOCKSET_DELETED);
    if (!rblockset_reserve(s)) return false;
    void **cell = find(s, p);
    rassert(*cell == NULL);   /* mimalloc never hands out a live block twice */
    *cell = p;
    s->filled++;
    s->live++;
    return true;
}

bool rblockset_remove(rblockset_t *s, const void *p) {
    if (!s->capacity) return false;
    void **cell = find(s, p);
    if (*cell != p) return false;
    *cell = RBLOCKSET_DELETED;   /* filled stays: a tombstone still lengthens probes */
    s->live--;
    return true;
}

bool rblockset_contains(const rblockset_t *s, const void *p) {
    return s->capacity && p && *find(s, p) == p;
}

void rblockset_clear(rblockset_t *s) {
    free(s->cells);
    *s = (rblockset_t){0};
}

#endif
