/* alloc.c - the region-per-phase pattern against other allocators (issue 6): allocate many small
 * blocks, then free them all.  One binary per allocator (ALLOCATOR_* below), because Debian's
 * libmimalloc and libjemalloc export malloc and would silently replace glibc's in a shared binary.
 *
 *   bench_alloc_<name> [--blocks N] [--size BYTES] [--threads T] [--rounds R]
 *
 * Each thread runs `rounds` rounds of: make a context (a region, a heap, a pool, ...), allocate
 * N blocks of `size` bytes (touching the first word, so a block is really used), free everything.
 * Round 1 is COLD (the process's first touch of that memory: page faults dominate on these VMs),
 * the others WARM.  Prints one JSON object: per round the allocation and free times of the slowest
 * thread, and the peak RSS.
 *
 * How "free everything" is done is each allocator's natural way: one destroy call for the region,
 * mi_heap, APR pool and talloc context; one free per block for mi_malloc, glibc and jemalloc (they
 * have no bulk free).  ALLOCATOR_region_each frees region blocks one by one too, for the
 * bulk-versus-per-block ratio.  The region binaries link libregion.a, as the mimalloc ones link
 * mimalloc, except ALLOCATOR_region_shared, the same code calling libregion.so.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#if defined(ALLOCATOR_region) || defined(ALLOCATOR_region_each) || defined(ALLOCATOR_region_shared)
#include "region.h"
#ifdef ALLOCATOR_region_shared
#define NAME "region_shared"
#else
#define NAME "region"
#endif
typedef region_t *context_t;
static context_t ctx_new(void) {
    region_t *r;
    if (region_create(NULL, &r) != REGION_OK) {
        fprintf(stderr, "region_create: %s\n", region_last_error());
        exit(1);
    }
    return r;
}
static void *ctx_alloc(context_t c, size_t n) { return region_alloc(c, n); }
#ifdef ALLOCATOR_region_each
#undef NAME
#define NAME "region_each"
#define PER_BLOCK_FREE 1
static void block_free(context_t c, void *p) { region_free(c, p); }
#endif
static void ctx_destroy(context_t c) { region_destroy(c); }

#elif defined(ALLOCATOR_mi_heap)
#include <mimalloc.h>
#define NAME "mi_heap"
typedef mi_heap_t *context_t;
static context_t ctx_new(void) { return mi_heap_new(); }
static void *ctx_alloc(context_t c, size_t n) { return mi_heap_malloc(c, n); }
static void ctx_destroy(context_t c) { mi_heap_destroy(c); }

#elif defined(ALLOCATOR_mi_malloc)
#include <mimalloc.h>
#define NAME "mi_malloc"
#define PER_BLOCK_FREE 1
typedef void *context_t;
static context_t ctx_new(void) { return NULL; }
static void *ctx_alloc(context_t c, size_t n) { (void)c; return mi_malloc(n); }
static void block_free(context_t c, void *p) { (void)c; mi_free(p); }
static void ctx_destroy(context_t c) { (void)c; }

#elif defined(ALLOCATOR_glibc) || defined(ALLOCATOR_jemalloc)
/* jemalloc's binary links Debian's libjemalloc, which provides malloc and free themselves. */
#ifdef ALLOCATOR_glibc
#define NAME "glibc"
#else
#define NAME "jemalloc"
#endif
#define PER_BLOCK_FREE 1
typedef void *context_t;
static context_t ctx_new(void) { return NULL; }
static void *ctx_alloc(context_t c, size_t n) { (void)c; return malloc(n); }
static void block_free(context_t c, void *p) { (void)c; free(p); }
static void ctx_destroy(context_t c) { (void)c; }

#elif defined(ALLOCATOR_apr)
#include <apr_pools.h>
#define NAME "apr_pool"
typedef apr_pool_t *context_t;
static context_t ctx_new(void) {
    apr_pool_t *p;
    if (apr_pool_create(&p, NULL) != APR_SUCCESS) exit(1);
    return p;
}
static void *ctx_alloc(context_t c, size_t n) { return apr_palloc(c, n); }
static void ctx_destroy(context_t c) { apr_pool_destroy(c); }

#elif defined(ALLOCATOR_talloc)
#include <talloc.h>
#define NAME "talloc"
typedef void *context_t;
static context_t ctx_new(void) { return talloc_new(NULL); }
static void *ctx_alloc(context_t c, size_t n) { return talloc_size(c, n); }
static void ctx_destroy(context_t c) { talloc_free(c); }

#else
#error "define one ALLOCATOR_<name>"
#endif

#ifndef PER_BLOCK_FREE
#define PER_BLOCK_FREE 0
static void block_free(context_t c, void *p) { (void)c, (void)p; }
#endif

static double now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

typedef struct job {
    size_t blocks, size;
    int rounds;
    double *alloc_s, *free_s;   /* per round */
    pthread_barrier_t *barrier;
} job_t;

static void *run(void *arg) {
    job_t *j = arg;
    void **blocks = malloc(j->blocks * sizeof *blocks);   /* the bookkeeping is the same for all */
    if (!blocks) exit(1);
    for (int round = 0; round < j->rounds; round++) {
        pthread_barrier_wait(j->barrier);
        double t0 = now_s();
        context_t c = ctx_new();
        for (size_t i = 0; i < j->blocks; i++) {
            void *p = ctx_alloc(c, j->size);
            if (!p) {
                fprintf(stderr, NAME ": allocation %zu failed\n", i);
                exit(1);
            }
            *(uintptr_t *)p = i;   /* use the block */
            blocks[i] = p;
        }
        double t1 = now_s();
        if (PER_BLOCK_FREE)
            for (size_t i = 0; i < j->blocks; i++) block_free(c, blocks[i]);
        ctx_destroy(c);
        double t2 = now_s();
        j->alloc_s[round] = t1 - t0;
        j->free_s[round] = t2 - t1;
    }
    free(blocks);
    return NULL;
}

int main(int argc, char **argv) {
    size_t blocks = 1000000, size = 32;
    int threads = 1, rounds = 5;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--blocks")) blocks = strtoull(argv[i + 1], NULL, 10);
        else if (!strcmp(argv[i], "--size")) size = strtoull(argv[i + 1], NULL, 10);
        else if (!strcmp(argv[i], "--threads")) threads = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--rounds")) rounds = atoi(argv[i + 1]);
        else {
            fprintf(stderr, "usage: %s [--blocks N] [--size BYTES] [--threads T] [--rounds R]\n", argv[0]);
            return 2;
        }
    }
    if (threads < 1 || threads > 64 || rounds < 2 || size < sizeof(uintptr_t) || blocks == 0) {
        fprintf(stderr, NAME ": need 1..64 threads, 2+ rounds, size >= %zu, blocks > 0\n", sizeof(uintptr_t));
        return 2;
    }
#ifdef ALLOCATOR_apr
    apr_pool_initialize();
#endif
    pthread_barrier_t barrier;
    pthread_barrier_init(&barrier, NULL, (unsigned)threads);
    job_t *jobs = calloc((size_t)threads, sizeof *jobs);
    pthread_t *tids = calloc((size_t)threads, sizeof *tids);
    for (int t = 0; t < threads; t++) {
        jobs[t] = (job_t){blocks, size, rounds, calloc((size_t)rounds, sizeof(double)),
                          calloc((size_t)rounds, sizeof(double)), &barrier};
        pthread_create(&tids[t], NULL, run, &jobs[t]);
    }
    for (int t = 0; t < threads; t++) pthread_join(tids[t], NULL);
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    printf("{\"allocator\": \"%s\", \"blocks\": %zu, \"size\": %zu, \"threads\": %d, \"peak_rss_kib\": %ld, "
           "\"rounds\": [", NAME, blocks, size, threads, ru.ru_maxrss);
    for (int round = 0; round < rounds; round++) {
        double alloc = 0, fre = 0;   /* the slowest thread sets the pace */
        for (int t = 0; t < threads; t++) {
            if (jobs[t].alloc_s[round] > alloc) alloc = jobs[t].alloc_s[round];
            if (jobs[t].free_s[round] > fre) fre = jobs[t].free_s[round];
        }
        printf("%s{\"alloc_s\": %.9f, \"free_s\": %.9f}", round ? ", " : "", alloc, fre);
    }
    printf("]}\n");
    return 0;
}
