/* reserve.c - the address-space reservation and its slots.
 *
 * One mmap(PROT_NONE, MAP_NORESERVE) reserves slot_count * slot_size bytes, aligned to RARENA_ALIGN.
 * Nothing is committed: mimalloc commits 64 KiB pieces with mprotect as a heap needs them, and purges
 * with MADV_DONTNEED.  Neither replaces the mapping, so an mbind() policy set on a slot survives both
 * (docs/design.md, "NUMA").
 *
 * INVARIANTS
 *   - A slot is registered as an exclusive mimalloc arena at most once (mimalloc 3.4 has no way to
 *     unregister, and a process has at most 160 arenas).  `registered` never goes back.
 *   - A slot is registered only while it is still untouched: mimalloc assumes a new arena's memory
 *     is zero, and a fresh anonymous mapping is.
 *   - A slot is in exactly one of: taken (owned by one region), on the free list (registered, free),
 *     or never used (index >= next_fresh).
 *   - `bound` is false only while the slot's range has the default NUMA policy (rarena_slot_bind
 *     skips mbind on that alone).  Only the slot's taker reads or writes it.
 *
 * THREADS: slot_lock guards the free list and next_fresh.  The reservation fields are written once
 * under init_lock before `ready` is published, then only read.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <sys/mman.h>

#include "arena.h"

rarena_reservation_t rarena_reservation;

typedef struct rarena_slot {
    mi_arena_id_t arena;
    bool registered;
    bool bound;            /* the slot's range has a NUMA policy other than the default (mbind) */
    long next_free;        /* free-list link, -1 at the end */
} rarena_slot_t;

/* How long free pages stay committed before mimalloc purges them by itself (it multiplies the delay
 * by 10 for arenas: 10 minutes).  region_trim() purges them at once. */
#define RARENA_PURGE_DELAY_MS 60000

static pthread_mutex_t init_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_mutex_t slot_lock = PTHREAD_MUTEX_INITIALIZER;
static rarena_slot_t *slots;
static long free_head = -1;
static unsigned next_fresh;

/* ---- mimalloc configuration ---- */

/* Options of the private mimalloc copy.  They affect regions only (see mimalloc-private.h). */
static void configure_mimalloc(void) {
    /* Keep freed pages committed for the next region ("pages kept for reuse"); rarena_trim()
     * purges explicitly.  Not -1 ("never"): mimalloc then does not even remember which pages could
     * be purged, and a forced collect later finds nothing to give back. */
    mi_option_set(mi_option_purge_delay, RARENA_PURGE_DELAY_MS);
    /* Pages are committed whole when mimalloc takes them: region/collect.c reads the 32 bytes before
     * any address of an object page (robject_of), which is safe only then.  0 is the default; it is
     * set here so that a mimalloc with another default cannot change it under us. */
    mi_option_set(mi_option_page_commit_on_demand, 0);
    /* Exhausting a slot is an expected, reported condition (REGION_EFULL), not a message. */
    mi_option_set(mi_option_show_errors, 0);
    mi_option_set(mi_option_max_warnings, 0);
}

/* ---- Reservation ---- */

static char *reserve_aligned(size_t size) {
    size_t padded = size + RARENA_ALIGN;
    char *raw = mmap(NULL, padded, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (raw == MAP_FAILED) return NULL;
    char *aligned = (char *)(((uintptr_t)raw + RARENA_ALIGN - 1) & ~(uintptr_t)(RARENA_ALIGN - 1));
    /* Trim the padding so the reservation is exactly [aligned, aligned + size). */
    if (aligned > raw) munmap(raw, (size_t)(aligned - raw));
    size_t tail = (size_t)((raw + padded) - (aligned + size));
    if (tail) munmap(aligned + size, tail);
    return aligned;
}

region_status rarena_init(size_t slot_size, unsigned slot_count) {
    region_status status = REGION_OK;
    pthread_mutex_lock(&init_lock);
    if (rarena_ready()) goto done;
    slots = calloc(slot_count, sizeof *slots);
    if (!slots) { status = REGION_ENOMEM; goto done; }
    char *base = reserve_aligned(slot_size * slot_count);
    if (!base) { free(slots); slots = NULL; status = REGION_EOS; goto done; }
    configure_mimalloc();
    rarena_reservation.base = base;
    rarena_reservation.slot_size = slot_size;
    rarena_reservation.slot_count = slot_count;
    rarena_reservation.span = slot_size * slot_count;
    rarena_reservation.slot_shift = (slot_size & (slot_size - 1)) == 0 ? (unsigned)__builtin_ctzll(slot_size) : 0;
    __atomic_store_n(&rarena_reservation.ready, 1, __ATOMIC_RELEASE);
done:
    pthread_mutex_unlock(&init_lock);
    return status;
}

bool rarena_ready(void) {
    return __atomic_load_n(&rarena_reservation.ready, __ATOMIC_ACQUIRE) != 0;
}

/* ---- Slots ---- */

static region_status register_slot(unsigned index) {
    rarena_slot_t *slot = &slots[index];
    bool ok = mi_manage_os_memory_ex(rarena_slot_base(index), rarena_reservation.slot_size,
                                     /*is_committed*/ false, /*is_pinned*/ false, /*is_zero*/ true,
                                     /*numa_node*/ -1, /*exclusive*/ true, &slot->arena);
    if (!ok) {
        /* mimalloc's own arena table is full (other arenas in our private copy); the slot stays
         * untouched and usable later only in theory, so treat the pool as exhausted. */
        errno = ENOSPC;
        return REGION_ELIMIT;
    }
    slot->registered = true;
    return REGION_OK;
}

region_status rarena_slot_take(unsigned *index, mi_arena_id_t *arena) {
    region_status status = REGION_OK;
    pthread_mutex_lock(&slot_lock);
    if (free_head >= 0) {
        *index = (unsigned)free_head;
        free_head = slots[free_head].next_free;
    } else if (next_fresh < rarena_reservation.slot_count) {
        status = register_slot(next_fresh);
        if (status == REGION_OK) *index = next_fresh++;
    } else {
        status = REGION_ELIMIT;
    }
    if (status == REGION_OK) *arena = slots[*index].arena;
    pthread_mutex_unlock(&slot_lock);
    return status;
}

void rarena_slot_give(unsigned index) {
    pthread_mutex_lock(&slot_lock);
    slots[index].next_free = free_head;
    free_head = (long)index;
    pthread_mutex_unlock(&slot_lock);
}

region_status rarena_slot_bind(unsigned index, int node, region_binding binding) {
    rarena_slot_t *slot = &slots[index];
    /* A fresh mapping has the default policy, and so has a slot whose last bind was to none. */
    if (binding == REGION_BIND_NONE && !slot->bound) return REGION_OK;
    region_status status = rarena_bind(rarena_slot_base(index), rarena_reservation.slot_size, node, binding);
    /* After a failed bind the range's policy is unknown: count it as bound, so the next region's
     * "none" resets it. */
    slot->bound = !(status == REGION_OK && binding == REGION_BIND_NONE);
    return status;
}

void rarena_trim(void) {
    /* A forced collect purges every scheduled range at once - but only while the delay is positive
     * (mimalloc's mi_arenas_try_purge returns early for delay <= 0), hence 1 and not 0.  The delay is
     * a global option of the private copy; the lock keeps two trims from interleaving.
     * mi_collect works through the calling thread's own mimalloc state, and does nothing at all in a
     * thread that never allocated with our copy (its default theap is not initialized, theap.c's
     * mi_theap_collect_ex): mi_thread_init() first, so that any thread can trim. */
    mi_thread_init();
    pthread_mutex_lock(&slot_lock);
    mi_option_set(mi_option_purge_delay, 1);
    mi_collect(true);
    mi_option_set(mi_option_purge_delay, RARENA_PURGE_DELAY_MS);
    pthread_mutex_unlock(&slot_lock);
}
