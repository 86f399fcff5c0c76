/* numa.c - binding arenas to NUMA nodes and counting where their pages are.
 *
 * Placement is done by us, with mbind() on an arena's address range, never by mimalloc: a mimalloc
 * arena tagged with a node returns NULL to threads running on another node (mimalloc-2.0.9 notes,
 * section 3), so every arena is registered with numa_node = -1.  The policy set here survives
 * mimalloc's commit (mprotect) and purge (MADV_DONTNEED), which keep the mapping.
 *
 * A census uses mincore() to find resident pages, then move_pages() with nodes == NULL, which only
 * reports each page's node: untouched pages are never faulted in by counting them.
 *
 * THREADS: all functions are safe from any thread; they touch no shared state of ours.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <numa.h>
#include <numaif.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

#include "arena.h"

#define CENSUS_BATCH 4096

static bool kernel_has_numa(void) {
    return numa_available() >= 0;
}

int rarena_numa_nodes(void) {
    return kernel_has_numa() ? numa_num_configured_nodes() : 1;
}

bool rarena_node_usable(int node) {
    if (node < 0 || node >= REGION_MAX_NODES) return false;
    if (!kernel_has_numa()) return node == 0;
    if (node > numa_max_node()) return false;
    struct bitmask *allowed = numa_get_mems_allowed();
    bool usable = allowed && numa_bitmask_isbitset(allowed, (unsigned)node);
    if (allowed) numa_bitmask_free(allowed);
    return usable;
}

region_status rarena_bind(char *base, size_t size, int node, region_binding binding) {
    unsigned long mask[REGION_MAX_NODES / (8 * sizeof(unsigned long))] = {0};
    int mode = MPOL_DEFAULT;
    unsigned flags = 0;
    unsigned long *nodemask = NULL;
    if (binding != REGION_BIND_NONE) {
        mask[node / (8 * sizeof(unsigned long))] |= 1UL << (node % (8 * sizeof(unsigned long)));
        nodemask = mask;
        /* MOVE: a rebound arena may hold pages placed under its previous binding. */
        mode = binding == REGION_BIND_STRICT ? MPOL_BIND : MPOL_PREFERRED;
        flags = MPOL_MF_MOVE | (binding == REGION_BIND_STRICT ? MPOL_MF_STRICT : 0);
    }
    if (mbind(base, size, mode, nodemask, nodemask ? REGION_MAX_NODES + 1 : 0, flags) == 0)
        return REGION_OK;
    /* Without kernel NUMA support every page is on node 0, which is all a binding to node 0 asks. */
    if (errno == ENOSYS && (binding == REGION_BIND_NONE || node == 0)) return REGION_OK;
    return binding == REGION_BIND_STRICT ? REGION_EBIND : REGION_EOS;
}

static void census_batch(void **pages, int *status, size_t n, int target, region_census_t *out) {
    if (move_pages(0, n, pages, NULL, status, 0) != 0) {
        /* Without kernel NUMA support there is one node, 0; otherwise the kernel would not say. */
        bool single = errno == ENOSYS && !kernel_has_numa();
        *(single ? &out->pages_on_node[0] : &out->pages_unknown) += n;
        if (single && target == 0) out->pages_on_target += n;
        return;
    }
    for (size_t i = 0; i < n; i++) {
        int node = status[i];
        if (node >= 0 && node < REGION_MAX_NODES) {
            out->pages_on_node[node]++;
            if (node == target) out->pages_on_target++;
        } else {
            out->pages_unknown++;   /* -ENOENT: raced with a purge; -EFAULT etc. */
        }
    }
}

region_status rarena_census(char *base, size_t size, int target, region_census_t *out) {
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    size_t count = size / page;
    unsigned char *resident = malloc(count);
    void **pages = malloc(CENSUS_BATCH * sizeof *pages);
    int *status = malloc(CENSUS_BATCH * sizeof *status);
    region_status result = REGION_OK;
    if (!resident || !pages || !status) { result = REGION_ENOMEM; goto done; }
    if (mincore(base, size, resident) != 0) { result = REGION_EOS; goto done; }
    out->pages_scanned += count;
    size_t n = 0;
    for (size_t i = 0; i < count; i++) {
        if (!(resident[i] & 1)) continue;
        out->pages_present++;
        pages[n++] = base + i * page;
        if (n == CENSUS_BATCH) { census_batch(pages, status, n, target, out); n = 0; }
    }
    if (n) census_batch(pages, status, n, target, out);
done:
    free(resident);
    free(pages);
    free(status);
    return result;
}
