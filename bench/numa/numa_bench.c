/* numa_bench.c - NUMA locality of region memory: a node x node matrix of (CPU on node A, region
 * bound to node B), measuring where the region's pages are, dependent-load latency and triad
 * bandwidth (issue 6).  bench/numa_bench.py runs it, records the machine and writes the report.
 *
 *   bench_numa [--chase-mib N] [--triad-mib N] [--steps N] [--runs N] [--threads N]
 *              [--binding strict|preferred]
 *
 * For every cell (A, B): a region bound to node B is created by a thread pinned to the CPUs of node
 * A, which first-touches all its memory; so A != B also checks that a thread on another node can
 * allocate from a node-bound region (the mimalloc 2.0.9 trap in ../shared/notes).  Then:
 *   census   region_census(): pages present, on the target node, per node, absent (reserved, never
 *            touched) - placement, not speed: on one node and in a qemu guest it is the point.
 *   latency  a pointer chase through one block of --chase-mib MiB: one 64-byte line per hop in a
 *            single random cycle (Sattolo), so every load depends on the previous one and the
 *            prefetchers cannot guess: ns per hop.
 *   triad    a[i] = b[i] + s * c[i] over three arrays of --triad-mib MiB each (STREAM's kernel and
 *            byte count, 24 bytes per element), with 1 thread and with --threads threads (default:
 *            every CPU of node A), each pinned to its own CPU of node A: GB/s.
 * Each measurement is repeated --runs times; the JSON (stdout) carries every sample, the driver
 * takes the median and spread.  Progress goes to stderr.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <numa.h>
#include <pthread.h>
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "region.h"

#define LINE 64

typedef struct options {
    size_t chase_bytes;
    size_t triad_bytes;     /* per array */
    size_t steps;
    int runs;
    int threads;            /* 0: every CPU of the node */
    region_binding binding;
} options_t;

static double now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static _Noreturn void die(const char *what) {
    fprintf(stderr, "bench_numa: %s: %s\n", what, region_last_error());
    exit(1);
}

/* ---- CPUs of a node ------------------------------------------------------------------------- */

typedef struct cpu_list {
    int count;
    int cpu[1024];
} cpu_list_t;

static void cpus_of_node(int node, cpu_list_t *out) {
    out->count = 0;
    if (numa_available() < 0) {   /* no kernel NUMA: every CPU is on node 0 */
        cpu_set_t set;
        sched_getaffinity(0, sizeof set, &set);
        for (int c = 0; c < CPU_SETSIZE && out->count < 1024; c++)
            if (CPU_ISSET(c, &set)) out->cpu[out->count++] = c;
        return;
    }
    struct bitmask *mask = numa_allocate_cpumask();
    if (numa_node_to_cpus(node, mask) == 0)
        for (unsigned c = 0; c < mask->size && out->count < 1024; c++)
            if (numa_bitmask_isbitset(mask, c)) out->cpu[out->count++] = (int)c;
    numa_free_cpumask(mask);
}

static void pin_to(int cpu) {
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    int err = pthread_setaffinity_np(pthread_self(), sizeof set, &set);
    if (err) {
        fprintf(stderr, "bench_numa: cannot pin to CPU %d: %s\n", cpu, strerror(err));
        exit(1);
    }
}

/* ---- latency: dependent loads through a random cycle ------------------------------------------ */

static uint64_t next_random(uint64_t *s) {   /* xorshift64* */
    *s ^= *s >> 12;
    *s ^= *s << 25;
    *s ^= *s >> 27;
    return *s * 2685821657736338717ULL;
}

/* Links every line of buf into one cycle in random order (Sattolo's shuffle gives a single cycle). */
static void link_cycle(char *buf, size_t lines) {
    size_t *order = malloc(lines * sizeof *order);
    if (!order) { fprintf(stderr, "bench_numa: out of memory\n"); exit(1); }
    for (size_t i = 0; i < lines; i++) order[i] = i;
    uint64_t seed = 0x9e3779b97f4a7c15ULL;
    for (size_t i = lines - 1; i > 0; i--) {
        size_t j = next_random(&seed) % i;   /* j < i: Sattolo, not Fisher-Yates */
        size_t t = order[i]; order[i] = order[j]; order[j] = t;
    }
    for (size_t i = 0; i < lines; i++)
        *(void **)(buf + order[i] * LINE) = buf + order[(i + 1) % lines] * LINE;
    free(order);
}

static void *volatile chase_sink;

static double chase_ns(char *start, size_t steps) {
    void **p = (void **)start;
    for (size_t i = 0; i < steps / 8; i++) p = (void **)*p;   /* warm the TLB and caches a little */
    double t0 = now_s();
    for (size_t i = 0; i < steps; i++) p = (void **)*p;
    double t = now_s() - t0;
    chase_sink = p;
    return t * 1e9 / (double)steps;
}

/* ---- bandwidth: STREAM triad, split over pinned threads --------------------------------------- */

typedef struct triad_part {
    double *a, *b, *c;
    size_t begin, end;
    int cpu;
    pthread_barrier_t *start;
    double seconds;
} triad_part_t;

static void triad(triad_part_t *p) {
    const double s = 3.0;
    for (size_t i = p->begin; i < p->end; i++) p->a[i] = p->b[i] + s * p->c[i];
}

static void *triad_thread(void *arg) {
    triad_part_t *p = arg;
    pin_to(p->cpu);
    triad(p);                               /* untimed pass: this thread's TLB entries */
    pthread_barrier_wait(p->start);
    double t0 = now_s();
    triad(p);
    p->seconds = now_s() - t0;
    return NULL;
}

/* GB/s of one triad over n elements with `threads` threads pinned to cpus of `node_cpus`. */
static double triad_gbs(double *a, double *b, double *c, size_t n, int threads, const cpu_list_t *cpus) {
    triad_part_t part[256];
    pthread_t tid[256];
    pthread_barrier_t start;
    pthread_barrier_init(&start, NULL, (unsigned)threads);
    for (int t = 0; t < threads; t++)
        part[t] = (triad_part_t){a, b, c, n * (size_t)t / (size_t)threads, n * (size_t)(t + 1) / (size_t)threads,
                                 cpus->cpu[t % cpus->count], &start, 0};
    for (int t = 0; t < threads; t++)
        if (pthread_create(&tid[t], NULL, triad_thread, &part[t]) != 0) {
            fprintf(stderr, "bench_numa: pthread_create failed\n");
            exit(1);
        }
    double slowest = 0;
    for (int t = 0; t < threads; t++) {
        pthread_join(tid[t], NULL);
        if (part[t].seconds > slowest) slowest = part[t].seconds;
    }
    pthread_barrier_destroy(&start);
    return 3.0 * sizeof(double) * (double)n / slowest / 1e9;
}

/* ---- one cell of the matrix -------------------------------------------------------------------- */

static void print_samples(const char *name, const double *v, int n) {
    printf(", \"%s\": [", name);
    for (int i = 0; i < n; i++) printf("%s%.4f", i ? ", " : "", v[i]);
    printf("]");
}

static void print_census(const region_census_t *c, int nodes) {
    printf(", \"census\": {\"scanned\": %zu, \"present\": %zu, \"on_target\": %zu, \"absent\": %zu, "
           "\"unknown\": %zu, \"per_node\": [",
           c->pages_scanned, c->pages_present, c->pages_on_target, c->pages_scanned - c->pages_present,
           c->pages_unknown);
    for (int n = 0; n < nodes; n++) printf("%s%zu", n ? ", " : "", c->pages_on_node[n]);
    printf("]}");
}

static int cells_printed;

static void measure_cell(const options_t *o, int cpu_node, int mem_node, int nodes) {
    cpu_list_t cpus;
    cpus_of_node(cpu_node, &cpus);
    if (cpus.count == 0) {
        fprintf(stderr, "  node %d has no CPUs: row skipped\n", cpu_node);
        return;
    }
    pin_to(cpus.cpu[0]);
    region_options_t ro = {.name = "numa-bench", .node = mem_node, .binding = o->binding};
    region_t *r;
    if (region_create(&ro, &r) != REGION_OK) {   /* a memoryless node, say: report, go on */
        fprintf(stderr, "  cpu node %d, memory node %d: %s\n", cpu_node, mem_node, region_last_error());
        printf("%s{\"cpu_node\": %d, \"mem_node\": %d, \"error\": \"%s\"}", cells_printed++ ? ",\n  " : "\n  ",
               cpu_node, mem_node, region_strerror(region_last_status()));
        return;
    }

    size_t n = o->triad_bytes / sizeof(double);
    char *chase = region_alloc(r, o->chase_bytes);
    double *a = region_alloc(r, n * sizeof(double));
    double *b = region_alloc(r, n * sizeof(double));
    double *c = region_alloc(r, n * sizeof(double));
    if (!chase || !a || !b || !c) die("region_alloc");
    for (size_t i = 0; i < n; i++) { a[i] = 0; b[i] = 1; c[i] = 2; }   /* first touch, from node A */
    link_cycle(chase, o->chase_bytes / LINE);

    region_census_t census;
    if (region_census(r, &census) != REGION_OK) die("region_census");

    int threads = o->threads ? o->threads : cpus.count;
    if (threads > 256) threads = 256;
    double lat[64], bw1[64], bwn[64];
    for (int run = 0; run < o->runs; run++) {
        lat[run] = chase_ns(chase, o->steps);
        bw1[run] = triad_gbs(a, b, c, n, 1, &cpus);
        bwn[run] = triad_gbs(a, b, c, n, threads, &cpus);
        fprintf(stderr, "  cpu node %d, memory node %d, run %d: %.1f ns/hop, triad %.1f GB/s (1 thread), "
                "%.1f GB/s (%d)\n", cpu_node, mem_node, run + 1, lat[run], bw1[run], bwn[run], threads);
    }
    printf("%s{\"cpu_node\": %d, \"mem_node\": %d, \"cpus\": %d, \"threads\": %d",
           cells_printed++ ? ",\n  " : "\n  ", cpu_node, mem_node, cpus.count, threads);
    print_census(&census, nodes);
    print_samples("latency_ns", lat, o->runs);
    print_samples("triad_gbs_1", bw1, o->runs);
    print_samples("triad_gbs_n", bwn, o->runs);
    printf("}");
    fflush(stdout);
    if (region_destroy(r) != REGION_OK) die("region_destroy");
    region_trim();   /* the next cell's region must not reuse pages placed for this one */
}

/* ---- command line ------------------------------------------------------------------------------ */

static size_t parse_size(const char *flag, const char *v, size_t min, size_t max) {
    char *end;
    errno = 0;
    unsigned long long x = strtoull(v, &end, 10);
    if (errno || *end || x < min || x > max) {
        fprintf(stderr, "bench_numa: %s wants an integer in %zu..%zu, got '%s'\n", flag, min, max, v);
        exit(2);
    }
    return (size_t)x;
}

int main(int argc, char **argv) {
    options_t o = {256u << 20, 64u << 20, 20u * 1000 * 1000, 5, 0, REGION_BIND_STRICT};
    for (int i = 1; i < argc; i++) {
        const char *v = i + 1 < argc ? argv[i + 1] : "";
        if (!strcmp(argv[i], "--chase-mib")) o.chase_bytes = parse_size(argv[i], v, 1, 8192) << 20;
        else if (!strcmp(argv[i], "--triad-mib")) o.triad_bytes = parse_size(argv[i], v, 1, 4096) << 20;
        else if (!strcmp(argv[i], "--steps")) o.steps = parse_size(argv[i], v, 1000, (size_t)1 << 40);
        else if (!strcmp(argv[i], "--runs")) o.runs = (int)parse_size(argv[i], v, 1, 64);
        else if (!strcmp(argv[i], "--threads")) o.threads = (int)parse_size(argv[i], v, 1, 256);
        else if (!strcmp(argv[i], "--binding") && (!strcmp(v, "strict") || !strcmp(v, "preferred")))
            o.binding = !strcmp(v, "strict") ? REGION_BIND_STRICT : REGION_BIND_PREFERRED;
        else {
            fprintf(stderr, "usage: bench_numa [--chase-mib N] [--triad-mib N] [--steps N] [--runs N] "
                            "[--threads N] [--binding strict|preferred]\n");
            return 2;
        }
        i++;
    }
    /* Three triad arrays and the chase block share one region, whose arena holds at most arena_size
     * (default 4 GiB). */
    region_config_t config;
    region_get_config(&config);
    if (o.chase_bytes + 3 * o.triad_bytes + (64u << 20) > config.arena_size) {
        config.arena_size = o.chase_bytes + 3 * o.triad_bytes + (256u << 20);
        if (region_configure(&config) != REGION_OK) die("region_configure");
    }
    int nodes = region_numa_nodes();
    printf("{\"nodes\": %d, \"binding\": \"%s\", \"chase_bytes\": %zu, \"triad_bytes\": %zu, \"steps\": %zu, "
           "\"runs\": %d, \"cells\": [",
           nodes, o.binding == REGION_BIND_STRICT ? "strict" : "preferred", o.chase_bytes, o.triad_bytes,
           o.steps, o.runs);
    for (int cpu_node = 0; cpu_node < nodes; cpu_node++)
        for (int mem_node = 0; mem_node < nodes; mem_node++) measure_cell(&o, cpu_node, mem_node, nodes);
    printf("\n]}\n");
    return 0;
}
