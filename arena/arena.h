/* arena.h - internal interface of the arena layer: where region memory comes from.
 *
 * The arena layer owns one contiguous reservation of address space, cut into equal arenas.  Each
 * becomes an exclusive mimalloc arena the first time a region needs it and stays one for the life of
 * the process (mimalloc cannot unregister an arena), so arenas are recycled, never returned.  Regions
 * with the same NUMA binding share arenas: each region has heaps of its own in its arena, and a
 * mimalloc page belongs to one heap, so no page holds blocks of two regions.  This layer binds
 * arenas to NUMA nodes and counts where pages are.
 *
 * It knows nothing about regions: it hands out arena indices and counts their users.  Functions
 * return a region_status and, for REGION_EOS, leave errno set; the region layer turns both into
 * messages.
 */
#ifndef REGION_ARENA_H
#define REGION_ARENA_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "mimalloc-private.h"
#include "region.h"

/* At most this many arenas: mimalloc 3.4 has at most 160 per process (MI_MAX_ARENAS), and may take
 * some for its own memory. */
#define RARENA_MAX 150u

/* The reservation, fixed once rarena_init() succeeded.  Read without locks by rarena_index_of():
 * written once before any arena exists, under the init lock, and published by the release store of
 * rarena_reservation.ready. */
typedef struct rarena_reservation {
    char *base;            /* first arena; aligned to RARENA_ALIGN */
    size_t arena_size;     /* multiple of RARENA_ALIGN */
    unsigned arena_count;
    size_t span;           /* arena_size * arena_count */
    unsigned arena_shift;  /* log2(arena_size) when it is a power of two (the default), else 0 */
    bool on_demand;        /* PROT_NONE until mimalloc commits (rarena_commit_policy) */
    int ready;             /* atomic: 1 once the fields above are valid */
} rarena_reservation_t;

extern rarena_reservation_t rarena_reservation;

/* Arena alignment and granularity: a multiple of mimalloc's arena alignment on every version. */
#define RARENA_ALIGN ((size_t)64 << 20)

/* How reserved memory becomes writable: *on_demand true for PROT_NONE until mimalloc commits a 64 KiB
 * piece (mprotect), false for writable from the start (reserve.c's header).  On demand under strict
 * overcommit (/proc/sys/vm/overcommit_memory 2, or unreadable), where a writable mapping is charged
 * whole, or when the environment has REGION_COMMIT=on-demand; REGION_COMMIT=auto, empty or unset
 * decides by the policy.  REGION_EINVAL for another value of REGION_COMMIT. */
region_status rarena_commit_policy(bool *on_demand);

/* Reserves arena_count arenas of arena_size bytes (MAP_NORESERVE; PROT_NONE when on_demand, else
 * writable) and configures the private mimalloc.  Idempotent: later calls return REGION_OK without
 * effect.  Thread-safe. */
region_status rarena_init(size_t arena_size, unsigned arena_count, bool on_demand);

/* True once rarena_init() succeeded. */
bool rarena_ready(void);

/* An arena for one more region with this binding: *index and its mimalloc arena id.  A binding
 * takes an arena of its own - one never used, or one whose regions all ended, rebound - while it has
 * fewer than a quarter of the arenas and each holds a region; after that its regions share
 * them: `preferred` (an arena index, or -1) unless it holds a few live regions more than the least
 * used, else the least used.  REGION_ELIMIT when no arena has or can take this binding; REGION_EBIND
 * or REGION_EOS (errno set) when binding a new arena failed.  Thread-safe. */
region_status rarena_take(int node, region_binding binding, long preferred, unsigned *index, mi_arena_id_t *arena);

/* One region of the arena ended; its committed pages stay for the next user.  Thread-safe. */
void rarena_give(unsigned index);

/* The arena containing p, or -1.  O(1), never dereferences p.  Any thread.  On every free of the
 * Python binding's allocator hook, hence the shift instead of a division where it can. */
static inline long rarena_index_of(const void *p) {
    if (!__atomic_load_n(&rarena_reservation.ready, __ATOMIC_ACQUIRE)) return -1;
    uintptr_t offset = (uintptr_t)p - (uintptr_t)rarena_reservation.base;
    if (offset >= rarena_reservation.span) return -1;
    unsigned shift = rarena_reservation.arena_shift;
    return (long)(shift ? offset >> shift : offset / rarena_reservation.arena_size);
}

static inline char *rarena_base(unsigned index) {
    return rarena_reservation.base + (size_t)index * rarena_reservation.arena_size;
}

/* Gives every free page of every arena back to the OS (mimalloc purge with no delay). */
void rarena_trim(void);

/* ---- NUMA (numa.c) ---- */

/* Configured nodes; 1 when the kernel has no NUMA support. */
int rarena_numa_nodes(void);

/* Whether `node` exists and has memory the process may use. */
bool rarena_node_usable(int node);

/* Applies the binding to [base, base+size).  Pages already present are migrated for STRICT and
 * PREFERRED.  REGION_EBIND (errno set) when the kernel refuses a STRICT binding. */
region_status rarena_bind(char *base, size_t size, int node, region_binding binding);

/* Adds the resident pages of [base, base+size) per node to *out (see region_census_t); the caller
 * zeroes *out before the first range. */
region_status rarena_census(char *base, size_t size, int target, region_census_t *out);

#endif /* REGION_ARENA_H */
