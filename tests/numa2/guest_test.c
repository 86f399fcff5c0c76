/* guest_test.c - NUMA placement on two nodes, run inside a 2-node qemu guest by tests/numa2/run.sh
 * (this machine has one node, so tests/c/test_numa.c can only check node 0 and a missing node).
 *
 * A static executable with no test framework: the guest's initramfs holds nothing but busybox and
 * this.  Each check prints "ok" or "FAIL <what>"; the last line is "guest: N checks, M failed", and
 * run.sh requires M == 0.  Speed means nothing here (qemu emulates the CPU; -numa gives topology only).
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <numaif.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "region.h"

#define BLOCKS 200000
#define BLOCK_SIZE 64

static int checks, failures;

static void check(int ok, const char *what, const char *detail) {
    checks++;
    if (ok) {
        printf("ok   %s\n", what);
    } else {
        failures++;
        printf("FAIL %s (%s)\n", what, detail ? detail : "");
    }
    fflush(stdout);
}

static void pin_to_node(int node) {
    /* The guest is booted with one CPU per node: CPU n is node n. */
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(node, &set);
    if (pthread_setaffinity_np(pthread_self(), sizeof set, &set) != 0) {
        printf("FAIL cannot pin to CPU %d\n", node);
        exit(1);
    }
}

static region_t *bound(int node, region_binding binding) {
    region_options_t o = {.name = "guest", .node = node, .binding = binding};
    region_t *r = NULL;
    if (region_create(&o, &r) != REGION_OK) {
        printf("FAIL region_create(node %d): %s\n", node, region_last_error());
        exit(1);
    }
    return r;
}

/* Allocates BLOCKS small blocks and writes each: returns how many allocations succeeded. */
static int fill(region_t *r) {
    int got = 0;
    for (int i = 0; i < BLOCKS; i++) {
        char *p = region_alloc(r, BLOCK_SIZE);
        if (!p) continue;
        memset(p, i, BLOCK_SIZE);
        got++;
    }
    return got;
}

/* All resident pages of r on `node`, and enough of them to hold what fill() wrote. */
static int all_pages_on(region_t *r, int node, char *detail, size_t len) {
    region_census_t c;
    if (region_census(r, &c) != REGION_OK) {
        snprintf(detail, len, "census: %s", region_last_error());
        return 0;
    }
    snprintf(detail, len, "present %zu, node0 %zu, node1 %zu, on target %zu, unknown %zu", c.pages_present,
             c.pages_on_node[0], c.pages_on_node[1], c.pages_on_target, c.pages_unknown);
    printf("     census: %s\n", detail);
    return c.pages_present >= (size_t)BLOCKS * BLOCK_SIZE / 4096 && c.pages_on_node[node] == c.pages_present;
}

static void two_nodes_are_online(void) {
    char detail[64];
    snprintf(detail, sizeof detail, "region_numa_nodes() = %d", region_numa_nodes());
    check(region_numa_nodes() == 2, "the guest has two NUMA nodes", detail);
}

/* Strict and preferred binding to each node, with the allocating thread on each node in turn: the
 * pairs where they differ are the mimalloc 2.0.9 trap (a node-tagged arena gives NULL to a thread on
 * another node), which libregion avoids by placing pages with mbind on untagged arenas. */
static void binding_places_every_page(region_binding binding, const char *name) {
    for (int cpu = 0; cpu < 2; cpu++) {
        pin_to_node(cpu);
        for (int node = 0; node < 2; node++) {
            region_t *r = bound(node, binding);
            char what[128], detail[160];
            int got = fill(r);
            snprintf(what, sizeof what, "%s binding to node %d, thread on node %d: %d/%d allocations", name, node,
                     cpu, got, BLOCKS);
            snprintf(detail, sizeof detail, "%s", region_last_error());
            check(got == BLOCKS, what, detail);
            snprintf(what, sizeof what, "%s binding to node %d, thread on node %d: 100 %% of pages on node %d", name,
                     node, cpu, node);
            check(all_pages_on(r, node, detail, sizeof detail), what, detail);
            region_destroy(r);
            region_trim();
        }
    }
}

static void bad_nodes_fail_cleanly(void) {
    region_t *r = (region_t *)1;
    region_options_t o = {.name = "nowhere", .node = 2, .binding = REGION_BIND_STRICT};
    check(region_create(&o, &r) == REGION_ENONODE && r == NULL, "strict binding to node 2 fails with ENONODE",
          region_last_error());
    o.binding = REGION_BIND_PREFERRED;
    check(region_create(&o, &r) == REGION_ENONODE, "preferred binding to node 2 fails with ENONODE",
          region_last_error());
    o.node = REGION_MAX_NODES;
    check(region_create(&o, &r) == REGION_ENONODE, "node REGION_MAX_NODES fails with ENONODE", region_last_error());
    o.node = 1;
    o.binding = REGION_BIND_NONE;
    check(region_create(&o, &r) == REGION_EINVAL, "a node without a binding fails with EINVAL", region_last_error());
}

/* A region bound to node 1 made on node 0, handed to a thread on node 1, filled there, handed back. */
typedef struct handoff {
    region_t *r;
    int got;
} handoff_t;

static void *fill_on_node1(void *arg) {
    handoff_t *h = arg;
    pin_to_node(1);
    if (region_acquire(h->r) != REGION_OK) return NULL;
    h->got = fill(h->r);
    region_release(h->r);
    return NULL;
}

static void handed_over_region_keeps_its_node(void) {
    pin_to_node(0);
    handoff_t h = {bound(1, REGION_BIND_STRICT), 0};
    check(fill(h.r) == BLOCKS, "node-1 region filled by a thread on node 0", region_last_error());
    region_release(h.r);
    pthread_t t;
    pthread_create(&t, NULL, fill_on_node1, &h);
    pthread_join(t, NULL);
    check(h.got == BLOCKS, "the same region acquired and filled by a thread on node 1", region_last_error());
    check(region_acquire(h.r) == REGION_OK, "taken back by the thread on node 0", region_last_error());
    char detail[160];
    check(all_pages_on(h.r, 1, detail, sizeof detail), "every page of the handed-over region on node 1", detail);
    region_destroy(h.r);
    region_trim();
}

/* A recycled slot moves the pages left from its previous region to the new region's node. */
static void recycled_slot_follows_the_new_binding(void) {
    pin_to_node(0);
    region_t *r = bound(0, REGION_BIND_STRICT);
    fill(r);
    region_destroy(r);   /* no trim: the pages stay committed in the slot */
    r = bound(1, REGION_BIND_STRICT);
    fill(r);
    char detail[160];
    check(all_pages_on(r, 1, detail, sizeof detail), "a slot reused from a node-0 region has every page on node 1",
          detail);
    region_destroy(r);
    region_trim();
}

int main(void) {
    two_nodes_are_online();
    if (region_numa_nodes() == 2) {
        binding_places_every_page(REGION_BIND_STRICT, "strict");
        binding_places_every_page(REGION_BIND_PREFERRED, "preferred");
        bad_nodes_fail_cleanly();
        handed_over_region_keeps_its_node();
        recycled_slot_follows_the_new_binding();
    }
    printf("guest: %d checks, %d failed\n", checks, failures);
    return failures != 0;
}
