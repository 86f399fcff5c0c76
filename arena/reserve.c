/* reserve.c - the address-space reservation and its arenas.
 *
 * One mmap(MAP_NORESERVE) reserves arena_count * arena_size bytes, aligned to RARENA_ALIGN, in one of
 * two ways (rarena_commit_policy):
 *   - WRITABLE FROM THE START (the default where the kernel overcommits: a MAP_NORESERVE mapping is
 *     not charged, and memory is resident only once touched).  The arenas are registered committed,
 *     so mimalloc never calls mprotect: a fresh region took a 64 KiB slice at a time, one mprotect
 *     each, about 8 per region of bench/requests_bench.py (84,134 for its first 10,000 regions).
 *   - ON DEMAND (under strict overcommit, vm.overcommit_memory = 2, which charges a writable mapping
 *     whole, or with REGION_COMMIT=on-demand): PROT_NONE, and mimalloc commits 64 KiB pieces with
 *     mprotect as a heap needs them.
 * Either way mimalloc purges with MADV_DONTNEED (no PROT_NONE again: a release build of mimalloc), and
 * neither replaces the mapping, so an mbind() policy set on an arena survives both (docs/design.md,
 * "NUMA").  The reservation is MADV_NOHUGEPAGE: with transparent huge pages "always", a first touch
 * would make the 2 MiB around it resident, the slices of 30-odd small regions.
 *
 * WHICH ARENA A REGION GETS: each arena serves one binding (node and policy) at a time, set when a
 * binding takes it.
 *   - While each arena of the binding holds a region and the binding holds fewer than
 *     share_threshold() arenas (a quarter of them, so that one binding cannot take them all
 *     from the others), it takes one more: never used first, else one with no live region, rebound.
 *     So the first regions get an arena each.
 *   - Otherwise the region shares: it goes to the arena its caller prefers - the region layer's
 *     choice: the one where the calling thread last left a region's heaps, warm and kept for it
 *     (region/region.c, "Heaps") - unless that arena holds more than RARENA_SLACK live regions more
 *     than the least used one; then to the least used.  Regions sharing an arena share its size, which bounds what they hold together.
 *
 * INVARIANTS
 *   - An arena is registered with mimalloc at most once (mimalloc 3.4 has no way to unregister, and
 *     a process has at most 160 arenas).  `registered` never goes back.
 *   - An arena is registered only while it is still untouched: mimalloc assumes a new arena's memory
 *     is zero, and a fresh anonymous mapping is.
 *   - An arena's binding changes only while it has no live region (`regions` == 0): its live regions
 *     rely on the placement they were made with.
 *   - `bound` is false only while the arena's range has the default NUMA policy (a binding to none
 *     skips mbind on that alone).
 *
 * THREADS: arena_lock guards every arena's fields and next_fresh.  The reservation fields are written
 * once under init_lock before `ready` is published, then only read.
 */
#define _GNU_SOURCE
#include <assert.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "arena.h"

rarena_reservation_t rarena_reservation;

typedef struct rarena_arena {
    mi_arena_id_t id;
    bool registered;
    bool bound;            /* the range has a NUMA policy other than the default (mbind) */
    int node;              /* the binding it serves (-1 with REGION_BIND_NONE) */
    region_binding binding;
    unsigned regions;      /* live regions in it */
} rarena_arena_t;

/* How long free pages stay committed before mimalloc purges them by itself (it multiplies the delay
 * by 10 for arenas: 10 minutes).  region_trim() purges them at once. */
#define RARENA_PURGE_DELAY_MS 60000

static pthread_mutex_t init_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_mutex_t arena_lock = PTHREAD_MUTEX_INITIALIZER;
static rarena_arena_t *arenas;
static unsigned next_fresh;   /* arenas [next_fresh, arena_count) were never used */
static bool mimalloc_full;    /* mimalloc refused to register an arena: no fresh one can be used */
/* How many more live regions than the least used arena of its binding the caller's preferred arena
 * may hold and still be the next region's: a region per request closes one and makes the next, and
 * only the arena the closed one left keeps its heaps and pages (region/region.c, "Heaps"). */
#define RARENA_SLACK(least) (4 + (least) / 8)

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
    /* mimalloc's own arenas (outside the reservation) hold each region's heap structs and page
     * bitmaps, sparsely (a region's theaps are in its arena).  Committed eagerly, mimalloc also
     * madvises them for transparent huge pages, and a first touch then makes 2 MiB resident: 35 KiB
     * a region there instead of 20 (bench/requests_bench.py's regions, from /proc/self/smaps), a
     * Python region holding a small list 65.9 KiB instead of 50.1 (docs/design.md, "What a region
     * costs"). */
    mi_option_set(mi_option_arena_eager_commit, 0);
    /* Exhausting an arena is an expected, reported condition (REGION_EFULL), not a message. */
    mi_option_set(mi_option_show_errors, 0);
    mi_option_set(mi_option_max_warnings, 0);
}

/* ---- Reservation ---- */

region_status rarena_commit_policy(bool *on_demand) {
    const char *asked = getenv("REGION_COMMIT");
    if (asked && *asked && strcmp(asked, "auto") != 0) {
        if (strcmp(asked, "on-demand") != 0) return REGION_EINVAL;
        *on_demand = true;
        return REGION_OK;
    }
    /* 2 is OVERCOMMIT_NEVER; unreadable (no procfs): on demand, which is right under any policy. */
    int policy = 2;
    FILE *f = fopen("/proc/sys/vm/overcommit_memory", "r");
    if (f) {
        if (fscanf(f, "%d", &policy) != 1) policy = 2;
        fclose(f);
    }
    *on_demand = policy == 2;
    return REGION_OK;
}

static char *reserve_aligned(size_t size, bool on_demand) {
    size_t padded = size + RARENA_ALIGN;
    int prot = on_demand ? PROT_NONE : PROT_READ | PROT_WRITE;
    char *raw = mmap(NULL, padded, prot, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (raw == MAP_FAILED) return NULL;
    char *aligned = (char *)(((uintptr_t)raw + RARENA_ALIGN - 1) & ~(uintptr_t)(RARENA_ALIGN - 1));
    /* Trim the padding so the reservation is exactly [aligned, aligned + size). */
    if (aligned > raw) munmap(raw, (size_t)(aligned - raw));
    size_t tail = (size_t)((raw + padded) - (aligned + size));
    if (tail) munmap(aligned + size, tail);
    /* Advice only: a kernel without transparent huge pages refuses it (EINVAL), and has none to avoid. */
    (void)madvise(aligned, size, MADV_NOHUGEPAGE);
    return aligned;
}

region_status rarena_init(size_t arena_size, unsigned arena_count, bool on_demand) {
    region_status status = REGION_OK;
    pthread_mutex_lock(&init_lock);
    if (rarena_ready()) goto done;
    arenas = calloc(arena_count, sizeof *arenas);
    if (!arenas) { status = REGION_ENOMEM; goto done; }
    char *base = reserve_aligned(arena_size * arena_count, on_demand);
    if (!base) { free(arenas); arenas = NULL; status = REGION_EOS; goto done; }
    configure_mimalloc();
    rarena_reservation.base = base;
    rarena_reservation.arena_size = arena_size;
    rarena_reservation.arena_count = arena_count;
    rarena_reservation.on_demand = on_demand;
    rarena_reservation.span = arena_size * arena_count;
    rarena_reservation.arena_shift = (arena_size & (arena_size - 1)) == 0 ? (unsigned)__builtin_ctzll(arena_size) : 0;
    __atomic_store_n(&rarena_reservation.ready, 1, __ATOMIC_RELEASE);
done:
    pthread_mutex_unlock(&init_lock);
    return status;
}

bool rarena_ready(void) {
    return __atomic_load_n(&rarena_reservation.ready, __ATOMIC_ACQUIRE) != 0;
}

/* ---- Arenas ---- */

/* How many arenas one binding may hold before its regions share them. */
static unsigned share_threshold(void) {
    unsigned quarter = rarena_reservation.arena_count / 4;
    return quarter ? quarter : 1;
}

static region_status register_arena(unsigned index) {
    rarena_arena_t *a = &arenas[index];
    bool ok = mi_manage_os_memory_ex(rarena_base(index), rarena_reservation.arena_size,
                                     /*is_committed*/ !rarena_reservation.on_demand, /*is_pinned*/ false,
                                     /*is_zero*/ true,
                                     /*numa_node*/ -1, /*exclusive*/ true, &a->id);
    if (!ok) {
        /* mimalloc's own arena table is full (other arenas in our private copy); the arena stays
         * untouched and usable later only in theory, so only registered arenas are used from now. */
        errno = ENOSPC;
        mimalloc_full = true;
        return REGION_ELIMIT;
    }
    a->registered = true;
    return REGION_OK;
}

static bool serves(const rarena_arena_t *a, int node, region_binding binding) {
    return a->registered && a->binding == binding && a->node == node;
}

/* Makes arena `index` (unused: never, or no live region) serve the binding. */
static region_status adopt(unsigned index, int node, region_binding binding) {
    rarena_arena_t *a = &arenas[index];
    assert(a->regions == 0);
    if (!a->registered) {
        region_status status = register_arena(index);
        if (status != REGION_OK) return status;
    }
    /* A fresh mapping has the default policy, and so has an arena whose last binding was to none. */
    if (binding != REGION_BIND_NONE || a->bound) {
        region_status status = rarena_bind(rarena_base(index), rarena_reservation.arena_size, node, binding);
        /* After a failed bind the range's policy is unknown: count it as bound, so that a later
         * binding to none resets it, and as serving no binding. */
        a->bound = !(status == REGION_OK && binding == REGION_BIND_NONE);
        if (status != REGION_OK) {
            a->binding = REGION_BIND_NONE, a->node = INT32_MIN;
            return status;
        }
    }
    a->node = node, a->binding = binding;
    return REGION_OK;
}

/* An arena no region uses that the binding can take, or -1: one never used first (no pages to move),
 * else one whose regions all ended. */
static long unused_arena(void) {
    if (next_fresh < rarena_reservation.arena_count && !mimalloc_full) return next_fresh;
    for (unsigned i = 0; i < next_fresh; i++)
        if (arenas[i].regions == 0) return i;
    return -1;
}

region_status rarena_take(int node, region_binding binding, long preferred, unsigned *index, mi_arena_id_t *id) {
    region_status status = REGION_OK;
    pthread_mutex_lock(&arena_lock);
    long best = -1;
    unsigned held = 0;
    for (unsigned i = 0; i < next_fresh; i++) {
        if (!serves(&arenas[i], node, binding)) continue;
        held++;
        if (best < 0 || arenas[i].regions < arenas[best].regions) best = i;
    }
    /* The caller's arena, unless it holds more than its share (WHICH ARENA, above) */
    if (best >= 0 && preferred >= 0 && (unsigned)preferred < next_fresh &&
        serves(&arenas[preferred], node, binding) &&
        arenas[preferred].regions <= arenas[best].regions + RARENA_SLACK(arenas[best].regions))
        best = preferred;
    if ((best < 0 || arenas[best].regions > 0) && held < share_threshold()) {
        long unused = unused_arena();
        if (unused >= 0) {
            status = adopt((unsigned)unused, node, binding);
            if (status == REGION_OK) {
                if ((unsigned)unused == next_fresh) next_fresh++;
                best = unused;
            } else if (best >= 0) {
                status = REGION_OK;   /* no room for another arena, or it could not be bound: share */
            }
        }
    }
    if (status == REGION_OK && best < 0) status = REGION_ELIMIT;
    if (status == REGION_OK) {
        arenas[best].regions++;
        *index = (unsigned)best;
        *id = arenas[best].id;
    }
    pthread_mutex_unlock(&arena_lock);
    return status;
}

void rarena_give(unsigned index) {
    pthread_mutex_lock(&arena_lock);
    assert(arenas[index].regions > 0);
    arenas[index].regions--;
    pthread_mutex_unlock(&arena_lock);
}

void rarena_trim(void) {
    /* A forced collect purges every scheduled range at once - but only while the delay is positive
     * (mimalloc's mi_arenas_try_purge returns early for delay <= 0), hence 1 and not 0.  The delay is
     * a global option of the private copy; the lock keeps two trims from interleaving.
     * mi_collect works through the calling thread's own mimalloc state, and does nothing at all in a
     * thread that never allocated with our copy (its default theap is not initialized, theap.c's
     * mi_theap_collect_ex): mi_thread_init() first, so that any thread can trim. */
    mi_thread_init();
    pthread_mutex_lock(&arena_lock);
    mi_option_set(mi_option_purge_delay, 1);
    mi_collect(true);
    mi_option_set(mi_option_purge_delay, RARENA_PURGE_DELAY_MS);
    pthread_mutex_unlock(&arena_lock);
}
