/* ptrmap.c - the one pointer-keyed hash table of the runtime: pointer -> 64-bit value.
 *
 * Its users: the set of a region's live raw blocks in builds with REGION_BLOCK_CHECKS (alloc.c:
 * mimalloc cannot say whether a pointer is the start of a live block, so debug builds keep the
 * answer themselves and turn an interior pointer or a double free into REGION_ENOTREGION); the
 * isolation engine's count of references to each outside object (isolation.c); the Python binding's
 * audit (its object -> node index) and its set of the interpreter's types.
 *
 * Open addressing with linear probing; keys are never NULL or RPTRMAP_DELETED (every key is a
 * pointer to an object or block, at least 8-byte aligned).
 *
 * INVARIANTS
 *   - Live cells plus tombstones fill at most 3/4 of the table, so a probe always ends at an empty
 *     cell.  Growing rehashes by the live cells alone, so churn never grows the table without bound.
 *   - A key is in at most one cell.
 *
 * THREADS: none of its own; each user's table is used by one thread at a time.
 */
#include <stdlib.h>

#include "region-internal.h"

static bool rehash(rptrmap_t *m, size_t more) {
    size_t capacity = 64;
    while ((m->live + more) * 2 >= capacity) capacity *= 2;
    rptrmap_cell_t *old = m->cells;
    size_t old_capacity = m->capacity;
    m->cells = calloc(capacity, sizeof *m->cells);
    if (!m->cells) {
        m->cells = old;
        return false;
    }
    m->capacity = capacity;
    m->filled = 0;
    for (size_t i = 0; i < old_capacity; i++) {
        if (old[i].key == NULL || old[i].key == RPTRMAP_DELETED) continue;
        *rptrmap_find(m, old[i].key) = old[i];
        m->filled++;
    }
    free(old);
    return true;
}

bool rptrmap_reserve(rptrmap_t *m, size_t more) {
    return (m->filled + more) * 4 <= m->capacity * 3 || rehash(m, more);
}

rptrmap_cell_t *rptrmap_put(rptrmap_t *m, const void *key) {
    rassert(key != NULL && key != RPTRMAP_DELETED);
    if (!rptrmap_reserve(m, 1)) return NULL;
    rptrmap_cell_t *cell = rptrmap_find(m, key);
    if (cell->key == NULL) {
        *cell = (rptrmap_cell_t){key, 0};
        m->filled++;
        m->live++;
    }
    return cell;
}

bool rptrmap_remove(rptrmap_t *m, const void *key) {
    rptrmap_cell_t *cell = rptrmap_get(m, key);
    if (!cell) return false;
    cell->key = RPTRMAP_DELETED;   /* filled stays: a tombstone still lengthens probes */
    m->live--;
    return true;
}

void rptrmap_clear(rptrmap_t *m) {
    free(m->cells);
    *m = (rptrmap_t){0};
}
