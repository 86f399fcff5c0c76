/* NUMA binding and page census on whatever nodes this machine has (one node here: node 0 works, a
 * missing node errors, the census finds 100 % of touched pages on node 0).  The two-node checks run in
 * a qemu guest (bench/numa, issue 6). */
#define _GNU_SOURCE
#include <numaif.h>
#include <stdlib.h>
#include <unistd.h>

#include "test-util.h"

static region_t *bound_region(const char *name, int node, region_binding binding) {
    region_options_t o = {.name = name, .node = node, .binding = binding};
    region_t *r = NULL;
    assert_status(region_create(&o, &r), REGION_OK);
    return r;
}

static void touch(region_t *r, size_t bytes) {
    for (size_t done = 0; done < bytes; done += 4096) {
        char *p = region_alloc(r, 4000);
        assert_non_null(p);
        memset(p, 1, 4000);
    }
}

static void census_of(region_t *r, region_census_t *c, size_t min_present) {
    assert_ok(region_census(r, c));
    assert_true(c->pages_present >= min_present);
    assert_true(c->pages_scanned >= c->pages_present);
}

static void strict_binding_puts_every_page_on_the_node(void **state) {
    (void)state;
    for (int node = 0; node < region_numa_nodes(); node++) {
        region_t *r = bound_region("strict", node, REGION_BIND_STRICT);
        touch(r, 8 << 20);
        region_census_t c;
        census_of(r, &c, (8 << 20) / 4096);
        assert_int_equal(c.pages_on_target, c.pages_present);   /* 100 % */
        assert_int_equal(c.pages_on_node[node], c.pages_present);
        assert_int_equal(c.pages_unknown, 0);
        region_stats_t s;
        assert_ok(region_stats(r, &s));
        assert_int_equal(s.node, node);
        assert_int_equal(s.binding, REGION_BIND_STRICT);
        /* The policy is on the arena's mapping and survives mimalloc's commits. */
        int mode = -1;
        unsigned long mask[4] = {0};
        assert_int_equal(get_mempolicy(&mode, mask, 256, region_alloc(r, 64), MPOL_F_ADDR), 0);
        assert_int_equal(mode, MPOL_BIND);
        assert_true(mask[0] & (1UL << node));
        assert_ok(region_destroy(r));
    }
}

static void preferred_binding_is_honoured(void **state) {
    (void)state;
    region_t *r = bound_region("preferred", 0, REGION_BIND_PREFERRED);
    touch(r, 4 << 20);
    region_census_t c;
    census_of(r, &c, (4 << 20) / 4096);
    assert_int_equal(c.pages_on_target, c.pages_present);
    int mode = -1;
    assert_int_equal(get_mempolicy(&mode, NULL, 0, region_alloc(r, 64), MPOL_F_ADDR), 0);
    assert_int_equal(mode, MPOL_PREFERRED);
    assert_ok(region_destroy(r));
}

static void an_unbound_region_after_a_strict_one_has_no_policy(void **state) {
    (void)state;
    region_t *r = bound_region("first", 0, REGION_BIND_STRICT);
    touch(r, 1 << 20);
    assert_ok(region_destroy(r));
    r = new_region("unbound");   /* an arena of its own binding: never the strict one's */
    int mode = -1;
    assert_int_equal(get_mempolicy(&mode, NULL, 0, region_alloc(r, 64), MPOL_F_ADDR), 0);
    assert_int_equal(mode, MPOL_DEFAULT);
    assert_ok(region_destroy(r));
}

static void missing_nodes_fail_cleanly(void **state) {
    (void)state;
    region_t *r = (region_t *)1;
    region_options_t o = {.name = "nowhere", .node = region_numa_nodes(), .binding = REGION_BIND_STRICT};
    assert_status(region_create(&o, &r), REGION_ENONODE);
    assert_null(r);
    assert_error_mentions("NUMA node");
    o.node = REGION_MAX_NODES + 5;
    assert_status(region_create(&o, &r), REGION_ENONODE);
    o.node = 1000000;
    o.binding = REGION_BIND_PREFERRED;
    assert_status(region_create(&o, &r), REGION_ENONODE);
    /* Nothing leaked: regions are still made afterwards. */
    region_t *ok = new_region("after");
    assert_ok(region_destroy(ok));
}

static void census_does_not_fault_pages_in(void **state) {
    (void)state;
    assert_ok(region_trim());   /* arenas keep pages: start from trimmed ones */
    region_t *r = new_region("untouched");
    region_census_t before, after;
    assert_ok(region_census(r, &before));
    assert_ok(region_census(r, &after));
    assert_int_equal(before.pages_present, after.pages_present);
    assert_true(after.pages_present < 128);         /* only mimalloc's arena metadata */
    assert_int_equal(after.pages_on_target, 0);      /* unbound: no target */
    assert_status(region_census(r, NULL), REGION_EINVAL);
    assert_ok(region_destroy(r));
}

static void trim_returns_pages(void **state) {
    (void)state;
    region_t *r = new_region("trim");
    touch(r, 64 << 20);
    region_census_t c;
    assert_ok(region_census(r, &c));
    assert_true(c.pages_present >= (64 << 20) / 4096);
    long touched = rss_kib();
    assert_ok(region_destroy(r));
    long kept = rss_kib();   /* destroyed: its pages stay committed for the arena's next regions */
    assert_true(kept > touched - (16 << 10));
    assert_ok(region_trim());
    long trimmed = rss_kib();
    if (trimmed > kept - (48 << 10)) fail_msg("trim left %ld of %ld KiB resident", trimmed, kept);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(strict_binding_puts_every_page_on_the_node),
        cmocka_unit_test(preferred_binding_is_honoured),
        cmocka_unit_test(an_unbound_region_after_a_strict_one_has_no_policy),
        cmocka_unit_test(missing_nodes_fail_cleanly),
        cmocka_unit_test(census_does_not_fault_pages_in),
        cmocka_unit_test(trim_returns_pages),
    };
    return cmocka_run_group_tests_name("numa", tests, NULL, NULL);
}
