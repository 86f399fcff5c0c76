/* alloc_call_cost.c - where region_alloc's time over raw mi_heap_malloc goes (docs/benchmarks.md).
 *
 * One process allocates 1M blocks of 32 B per variant and round, the variants taking turns:
 *   heap       mi_heap_new() + mi_heap_malloc          (mimalloc's own arenas)
 *   arena      a heap in an exclusive arena of its own  (what a region's slot is)
 *   arena+2nd  the same with a second heap in the arena (a region has two heaps)
 *   theap      the same through mi_theap_malloc         (no per-call heap-to-theap lookup)
 *   region     region_create + region_alloc             (libregion.so, its own private mimalloc)
 * Timing shows the gap; instruction counts show where it is:
 *   experiments/run.sh builds it as $TMPDIR/region-experiments/alloc-call-cost, then
 *   valgrind --tool=callgrind <that binary>; callgrind_annotate callgrind.out.<pid>
 * (the region configuration is kept small so that valgrind can reserve the slots).
 */
#define _GNU_SOURCE
#include <mimalloc.h>
#include <region.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <time.h>

#define BLOCKS 1000000
#define BLOCK_SIZE 32

static double now_ms(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec * 1e3 + (double)t.tv_nsec * 1e-6;
}

/* Allocates BLOCKS blocks from h (through its theap if asked), then destroys h: milliseconds. */
static double fill_heap(mi_heap_t *h, int through_theap) {
    double start = now_ms();
    if (through_theap) {
        mi_theap_t *theap = mi_heap_theap(h);
        for (size_t i = 0; i < BLOCKS; i++) *(void **)mi_theap_malloc(theap, BLOCK_SIZE) = NULL;
    } else {
        for (size_t i = 0; i < BLOCKS; i++) *(void **)mi_heap_malloc(h, BLOCK_SIZE) = NULL;
    }
    double t = now_ms() - start;
    mi_heap_destroy(h);
    return t;
}

static double fill_region(void) {
    region_t *r;
    if (region_create(NULL, &r) != REGION_OK) {
        fprintf(stderr, "region_create: %s\n", region_last_error());
        exit(1);
    }
    double start = now_ms();
    for (size_t i = 0; i < BLOCKS; i++) *(void **)region_alloc(r, BLOCK_SIZE) = NULL;
    double t = now_ms() - start;
    region_destroy(r);
    return t;
}

int main(void) {
    size_t slot = (size_t)4 << 30;
    char *reserved = mmap(NULL, 2 * slot, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    char *base = (char *)(((uintptr_t)reserved + slot - 1) & ~(slot - 1));
    mi_arena_id_t arena;
    mi_option_set(mi_option_purge_delay, 600000);
    if (reserved == MAP_FAILED || !mi_manage_os_memory_ex(base, slot, false, false, true, -1, true, &arena)) {
        fprintf(stderr, "cannot make the exclusive arena\n");
        return 1;
    }
    region_config_t config = {(size_t)1 << 30, 2};   /* small: valgrind cannot reserve 150 x 4 GiB */
    region_configure(&config);
    printf("ms per %d allocations of %d B: heap, arena, arena+2nd, theap, region\n", BLOCKS, BLOCK_SIZE);
    for (int round = 0; round < 8; round++) {
        double heap = fill_heap(mi_heap_new(), 0);
        double own_arena = fill_heap(mi_heap_new_in_arena(arena), 0);
        mi_heap_t *second = mi_heap_new_in_arena(arena);
        double two_heaps = fill_heap(mi_heap_new_in_arena(arena), 0);
        double theap = fill_heap(mi_heap_new_in_arena(arena), 1);
        mi_heap_destroy(second);
        printf("%.2f  %.2f  %.2f  %.2f  %.2f\n", heap, own_arena, two_heaps, theap, fill_region());
    }
    return 0;
}
