/* arena.h - internal interface of the arena layer: where region memory comes from.
 *
 * The arena layer owns one contiguous reservation of address space, cut into equal slots.  Each slot
 * becomes an exclusive mimalloc arena the first time it is handed out and stays one for the life of
 * the process (mimalloc cannot unregister an arena), so slots are recycled, never returned.  It also
 * binds slots to NUMA nodes and counts where their pages are.
 *
 * It knows nothing about regions: it hands out slot indices.  Functions return a region_status and,
 * for REGION_EOS, leave errno set; the region layer turns both into messages.
 */
#ifndef REGION_ARENA_H
#define REGION_ARENA_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "mimalloc-private.h"
#include "region.h"

/* The reservation, fixed once rarena_init() succeeded.  Read without locks by rarena_slot_of():
 * written once before any slot exists, under the init lock, and published by the release store of
 * rarena_reservation.ready. */
typedef struct rarena_reservation {
    char *base;            /* first slot; aligned to RARENA_ALIGN */
    size_t slot_size;      /* multiple of RARENA_ALIGN */
    unsigned slot_count;
    size_t span;           /* slot_size * slot_count */
    unsigned slot_shift;   /* log2(slot_size) when it is a power of two (the default), else 0 */
    int ready;             /* atomic: 1 once the fields above are valid */
} rarena_reservation_t;

extern rarena_reservation_t rarena_reservation;

/* Slot alignment and granularity: a multiple of mimalloc's arena alignment on every version. */
#define RARENA_ALIGN ((size_t)64 << 20)

/* Reserves slot_count slots of slot_size bytes (PROT_NONE, nothing committed) and configures the
 * private mimalloc.  Idempotent: later calls return REGION_OK without effect.  Thread-safe. */
region_status rarena_init(size_t slot_size, unsigned slot_count);

/* True once rarena_init() succeeded. */
bool rarena_ready(void);

/* Takes a free slot: *index and its mimalloc arena id.  A slot used before is handed out again
 * before a fresh one (its arena is already registered).  REGION_ELIMIT when all are taken.
 * Thread-safe. */
region_status rarena_slot_take(unsigned *index, mi_arena_id_t *arena);

/* Returns a slot taken with rarena_slot_take; its committed pages stay for the next user. */
void rarena_slot_give(unsigned index);

/* Applies a region's binding to the slot it took (rarena_bind over the whole slot).  A slot keeps its
 * policy between regions, so the common case - no binding, on a slot that had none - costs no
 * system call.  Only the slot's taker may call it.  Statuses as rarena_bind. */
region_status rarena_slot_bind(unsigned index, int node, region_binding binding);

/* The slot containing p, or -1.  O(1), never dereferences p.  Any thread.  On every free of the
 * Python binding's allocator hook, hence the shift instead of a division where it can. */
static inline long rarena_slot_of(const void *p) {
    if (!__atomic_load_n(&rarena_reservation.ready, __ATOMIC_ACQUIRE)) return -1;
    uintptr_t offset = (uintptr_t)p - (uintptr_t)rarena_reservation.base;
    if (offset >= rarena_reservation.span) return -1;
    unsigned shift = rarena_reservation.slot_shift;
    return (long)(shift ? offset >> shift : offset / rarena_reservation.slot_size);
}

static inline char *rarena_slot_base(unsigned index) {
    return rarena_reservation.base + (size_t)index * rarena_reservation.slot_size;
}

/* Gives every free page of every slot back to the OS (mimalloc purge with no delay). */
void rarena_trim(void);

/* ---- NUMA (numa.c) ---- */

/* Configured nodes; 1 when the kernel has no NUMA support. */
int rarena_numa_nodes(void);

/* Whether `node` exists and has memory the process may use. */
bool rarena_node_usable(int node);

/* Applies the binding to [base, base+size).  Pages already present are migrated for STRICT and
 * PREFERRED.  REGION_EBIND (errno set) when the kernel refuses a STRICT binding. */
region_status rarena_bind(char *base, size_t size, int node, region_binding binding);

/* Counts resident pages of [base, base+size) per node; see region_census_t. */
region_status rarena_census(char *base, size_t size, int target, region_census_t *out);

#endif /* REGION_ARENA_H */
