/* limits.c - the runtime's limits and fixed costs, measured (docs/design.md, "Limits").
 *
 *   live regions      100,000 regions alive at once (20,000 with --quick), each holding one block:
 *                     the time to make each, and the resident memory each costs empty and with its
 *                     block (heap structs, page info, theap, first page; the arenas are shared)
 *   create+destroy    time for an empty region's whole life
 *   fixed memory      the same memory figures for 100 regions in arenas whose earlier regions left
 *                     their emptied heaps for the next ones (region.c, "Heaps")
 *   region_of         cost of a pointer -> region lookup
 *   alloc ratio       region_alloc vs raw mi_heap_malloc in the same mimalloc, 1M x 48 B then bulk destroy
 *
 * Every timing is repeated; the table gives the median and the min..max spread.  Ratios are taken
 * within one run, side by side.  Usage: bench_limits [--quick] [--json FILE]
 */
#define _GNU_SOURCE
#include <mimalloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

#include "region.h"

/* How this binary links the runtime (bench/meson.build builds it both ways). */
#ifdef REGION_BENCH_STATIC
#define LINKED "libregion.a"
#else
#define LINKED "libregion.so"
#endif

static double now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

typedef struct summary { double median, min, max; } summary_t;

static summary_t summarize(double *v, int n) {
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    return (summary_t){v[n / 2], v[0], v[n - 1]};
}

static long rss_kib(void) {
    FILE *f = fopen("/proc/self/statm", "r");
    long pages = 0, resident = 0;
    if (f) {
        if (fscanf(f, "%ld %ld", &pages, &resident) != 2) resident = 0;
        fclose(f);
    }
    return resident * 4;
}

static void die(const char *what) {
    fprintf(stderr, "bench_limits: %s: %s\n", what, region_last_error());
    exit(1);
}

/* ---- live regions ---- */

typedef struct fixed_kib {
    double empty, one_block;   /* per region: made, then after its first 16-byte block */
    double create_us;          /* per region, made while the others live */
} fixed_kib_t;

/* count regions made and kept alive, then a 16-byte block in each, then all destroyed. */
static fixed_kib_t live_regions(int count) {
    region_t **rs = malloc((size_t)count * sizeof *rs);
    if (!rs) die("malloc");
    region_trim();
    long before = rss_kib();
    double start = now_s();
    for (int i = 0; i < count; i++)
        if (region_create(NULL, &rs[i]) != REGION_OK) die("create");
    double made_s = now_s() - start;
    long made = rss_kib();
    for (int i = 0; i < count; i++)
        if (!region_alloc(rs[i], 16)) die("alloc");
    long after = rss_kib();
    for (int i = 0; i < count; i++)
        if (region_destroy(rs[i]) != REGION_OK) die("destroy");
    free(rs);
    region_trim();
    return (fixed_kib_t){(double)(made - before) / count, (double)(after - before) / count, made_s / count * 1e6};
}

/* ---- create + destroy ---- */

static summary_t create_destroy_us(int reps) {
    double t[64];
    for (int i = 0; i < reps; i++) {
        double start = now_s();
        for (int k = 0; k < 100; k++) {
            region_t *r;
            if (region_create(NULL, &r) != REGION_OK) die("create");
            if (!region_alloc(r, 16)) die("alloc");
            region_destroy(r);
        }
        t[i] = (now_s() - start) / 100 * 1e6;
    }
    return summarize(t, reps);
}

/* ---- lookup ---- */

static summary_t lookup_ns(int reps) {
    region_t *r;
    if (region_create(NULL, &r) != REGION_OK) die("create");
    enum { N = 1 << 16 };
    void **ptrs = malloc(N * sizeof *ptrs);
    for (int i = 0; i < N; i++) ptrs[i] = i % 2 ? region_alloc(r, 32) : malloc(32);
    double t[64];
    volatile size_t hits = 0;
    for (int rep = 0; rep < reps; rep++) {
        double start = now_s();
        size_t h = 0;
        for (int k = 0; k < 100; k++)
            for (int i = 0; i < N; i++) h += region_of(ptrs[i]) == r;
        hits = h;
        t[rep] = (now_s() - start) / (100.0 * N) * 1e9;
    }
    (void)hits;
    for (int i = 0; i < N; i += 2) free(ptrs[i]);
    free(ptrs);
    region_destroy(r);
    return summarize(t, reps);
}

/* ---- allocation vs raw mimalloc ---- */

static double region_run(size_t n) {
    region_t *r;
    if (region_create(NULL, &r) != REGION_OK) die("create");
    double start = now_s();
    for (size_t i = 0; i < n; i++)
        if (!region_alloc(r, 48)) die("alloc");
    region_destroy(r);
    return now_s() - start;
}

static double raw_run(size_t n, mi_arena_id_t arena) {
    mi_heap_t *h = mi_heap_new_in_arena(arena);
    double start = now_s();
    for (size_t i = 0; i < n; i++)
        if (!mi_heap_malloc(h, 48)) die("mi_heap_malloc");
    mi_heap_destroy(h);
    return now_s() - start;
}

static summary_t alloc_ratio(int reps, size_t n) {
    /* The raw baseline gets an exclusive arena of its own, as the first regions do. */
    size_t size = (size_t)4 << 30, align = (size_t)64 << 20;
    char *p = mmap(NULL, size + align, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    char *base = (char *)(((uintptr_t)p + align - 1) & ~(align - 1));
    mi_arena_id_t arena;
    if (!mi_manage_os_memory_ex(base, size, false, false, true, -1, true, &arena)) die("raw arena");
    region_run(n), raw_run(n, arena);   /* warm: pages committed on both sides */
    double ratio[64];
    for (int i = 0; i < reps; i++) {
        double a = i % 2 ? region_run(n) : raw_run(n, arena);
        double b = i % 2 ? raw_run(n, arena) : region_run(n);
        ratio[i] = i % 2 ? a / b : b / a;
    }
    return summarize(ratio, reps);
}

int main(int argc, char **argv) {
    int quick = 0;
    const char *json = NULL;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--quick")) quick = 1;
        else if (!strcmp(argv[i], "--json") && i + 1 < argc) json = argv[++i];
        else { fprintf(stderr, "usage: %s [--quick] [--json FILE]\n", argv[0]); return 2; }
    }
    int reps = quick ? 5 : 21;
    size_t n = quick ? 200000 : 1000000;

    /* The process's first region pays for the runtime (the reservation, mimalloc's own state): made
     * and kept aside, so that the live regions measure regions and nothing else. */
    int live = quick ? 20000 : 100000;
    region_t *first;
    if (region_create(NULL, &first) != REGION_OK || !region_alloc(first, 16)) die("first region");
    fixed_kib_t fixed = live_regions(live);
    region_destroy(first);
    fixed_kib_t fixed_reused = live_regions(100);   /* the arenas keep emptied heaps now */
    summary_t life = create_destroy_us(reps);
    summary_t lookup = lookup_ns(reps);
    summary_t ratio = alloc_ratio(reps, n);

    printf("| measure | median | spread (min..max) |\n|---|---|---|\n");
    printf("| regions alive at once, each holding one block (all made; no limit but memory) | %d | - |\n", live);
    printf("| making each of them, the others alive | %.2f us | - |\n", fixed.create_us);
    printf("| resident memory of each: empty / holding one block | %.1f / %.1f KiB | - |\n", fixed.empty,
           fixed.one_block);
    printf("| the same for 100 regions in arenas that kept their earlier regions' heaps | %.1f / %.1f KiB | - |\n",
           fixed_reused.empty, fixed_reused.one_block);
    printf("| empty region create + 1 alloc + destroy | %.2f us | %.2f..%.2f us |\n", life.median, life.min, life.max);
    printf("| region_of(p) lookup | %.2f ns | %.2f..%.2f ns |\n", lookup.median, lookup.min, lookup.max);
    printf("| region_alloc (%s) / mi_heap_malloc, %zu x 48 B + destroy | %.3fx | %.3f..%.3fx |\n", LINKED, n,
           ratio.median, ratio.min, ratio.max);
    if (json) {
        FILE *f = fopen(json, "w");
        if (!f) { perror(json); return 1; }
        fprintf(f, "{\"live_regions\": %d, \"live_create_us\": %.3f, \"create_destroy_us\": [%.3f, %.3f, %.3f], "
                   "\"fixed_kib\": [%.1f, %.1f], \"fixed_kib_reused\": [%.1f, %.1f], \"lookup_ns\": [%.3f, %.3f, %.3f], "
                   "\"alloc_ratio\": [%.4f, %.4f, %.4f], \"reps\": %d, \"blocks\": %zu}\n",
                live, fixed.create_us, life.median, life.min, life.max, fixed.empty, fixed.one_block, fixed_reused.empty,
                fixed_reused.one_block, lookup.median, lookup.min, lookup.max,
                ratio.median, ratio.min, ratio.max, reps, n);
        fclose(f);
    }
    return 0;
}
