/* Limits: a small configuration (2 arenas of 64 MiB) makes every limit reachable in a test.
 * Exhausting an arena gives REGION_EFULL, never memory from outside it, to every region sharing it;
 * a binding with no arena left gives REGION_ELIMIT; both leave everything else working.  With 2
 * arenas, each binding holds at most one (a quarter of the arenas, at least one: arena/reserve.c): regions of one binding share it. */
#include <stdlib.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "test-util.h"

/* The NUMA policy of the page at p (get_mempolicy with MPOL_F_ADDR, without libnuma). */
static int policy_at(void *p) {
    int mode = -1;
    unsigned long mask[4] = {0};
    if (syscall(SYS_get_mempolicy, &mode, mask, 256, p, 2 /* MPOL_F_ADDR */) != 0) return -1;
    return mode;
}
enum { POLICY_DEFAULT = 0, POLICY_PREFERRED = 1, POLICY_BIND = 2 };

static int configure_small(void **state) {
    (void)state;
    region_config_t c = {.arena_size = 64 << 20, .max_arenas = 2};
    assert_ok(region_configure(&c));
    region_get_config(&c);
    assert_int_equal(c.arena_size, 64 << 20);
    return 0;
}

static region_t *new_bound_region(const char *name, region_binding binding) {
    region_options_t o = {.name = name, .node = 0, .binding = binding};
    region_t *r = NULL;
    assert_ok(region_create(&o, &r));
    return r;
}

static void arena_size_is_rounded_and_validated(void **state) {
    (void)state;
    region_config_t c = {.arena_size = (size_t)2 << 40, .max_arenas = 2};
    assert_status(region_configure(&c), REGION_EINVAL);
    c = (region_config_t){.arena_size = 64 << 20, .max_arenas = 151};
    assert_status(region_configure(&c), REGION_EINVAL);
    assert_error_mentions("max_arenas");
}

static void full_arena_fails_cleanly(void **state) {
    (void)state;
#if REGION_MIMALLOC_DEBUG
    skip();   /* mimalloc's debug build aborts where it cannot make a theap (EFAULT), which the full arena is */
#endif
    region_t *r = new_region("small");
    size_t n = 0;
    for (;;) {
        void *p = region_alloc(r, 4000);
        if (!p) break;
        assert_ptr_equal(region_of(p), r);   /* never memory from outside the region */
        n++;
    }
    assert_int_equal(region_last_status(), REGION_EFULL);
    assert_error_mentions("region 'small'");
    assert_error_mentions("exhausted");
    assert_true(n > 10000);
    assert_null(region_alloc(r, 100 << 20));   /* bigger than the arena */
    assert_int_equal(region_last_status(), REGION_EFULL);
    assert_null(region_object_new(r, &(region_type_t){"big", NULL, NULL}, 100 << 20));
    assert_int_equal(region_last_status(), REGION_EFULL);
    /* A region of the same binding shares the full arena, and says so ... */
    region_t *sharing = new_region("sharing");
    assert_null(region_alloc(sharing, 100000));
    assert_int_equal(region_last_status(), REGION_EFULL);
    assert_error_mentions("share it");
    /* ... one of another binding has an arena of its own, unaffected. */
    region_t *other = new_bound_region("other", REGION_BIND_PREFERRED);
    void *p = region_alloc(other, 100000);
    assert_non_null(p);
    assert_ptr_equal(region_of(p), other);
    assert_ok(region_destroy(other));
    assert_ok(region_destroy(sharing));
    assert_ok(region_destroy(r));
    /* And the arena is usable again after the destroy. */
    r = new_region("reused");
    assert_non_null(region_alloc(r, 1 << 20));
    assert_ok(region_destroy(r));
}

static void a_binding_without_an_arena_fails_cleanly(void **state) {
    (void)state;
    region_t *plain = new_region("plain");
    region_t *preferred = new_bound_region("preferred", REGION_BIND_PREFERRED);
    region_t *extra = (region_t *)1;
    region_options_t o = {.name = "strict", .node = 0, .binding = REGION_BIND_STRICT};
    assert_status(region_create(&o, &extra), REGION_ELIMIT);
    assert_null(extra);
    assert_error_mentions("strict");
    assert_error_mentions("every one of the 2 arenas serves regions of another NUMA binding");
    void *q = region_alloc(preferred, 1 << 20);
    assert_non_null(q);
    memset(q, 1, 1 << 20);
    assert_int_equal(policy_at(q), POLICY_PREFERRED);
    /* An arena whose regions all ended takes another binding, and its policy. */
    assert_ok(region_destroy(preferred));
    assert_ok(region_create(&o, &extra));
    void *p = region_alloc(extra, 1000);
    assert_non_null(p);
    assert_ptr_equal(region_of(p), extra);
    assert_int_equal(policy_at(p), POLICY_BIND);
    assert_ok(region_destroy(extra));
    assert_ok(region_destroy(plain));
}

static void many_regions_share_an_arena(void **state) {
    (void)state;
    enum { N = 400 };   /* each takes at least a 64 KiB page of the 64 MiB arena: 400 of them fit */
    region_t **rs = calloc(N, sizeof *rs);
    void **blocks = calloc(N, sizeof *blocks);
    assert_non_null(rs);
    assert_non_null(blocks);
    for (int i = 0; i < N; i++) {
        rs[i] = new_region("many");
        blocks[i] = region_alloc(rs[i], 16 + (size_t)i % 100);
        assert_non_null(blocks[i]);
    }
    for (int i = 0; i < N; i++) {
        assert_ptr_equal(region_of(blocks[i]), rs[i]);
        assert_ptr_equal(region_from_id(region_id(rs[i])), rs[i]);
    }
    uint64_t first = region_id(rs[0]);
    for (int i = 0; i < N; i++) assert_ok(region_destroy(rs[i]));
    assert_null(region_from_id(first));   /* a closed region's id never finds another */
    assert_int_equal(region_last_status(), REGION_EDEAD);
    free(rs);
    free(blocks);
}

static void create_destroy_cycles_hold_memory_flat(void **state) {
    (void)state;
    for (int round = 0; round < 300; round++) {
        region_t *r = new_region("cycle");
        for (int i = 0; i < 1000; i++) assert_non_null(region_alloc(r, 64));
        region_handle_t h;
        assert_ok(region_handle_new(r, region_alloc(r, 8), &h));
        assert_ok(region_destroy(r));
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(arena_size_is_rounded_and_validated),
        cmocka_unit_test(full_arena_fails_cleanly),
        cmocka_unit_test(a_binding_without_an_arena_fails_cleanly),
        cmocka_unit_test(many_regions_share_an_arena),
        cmocka_unit_test(create_destroy_cycles_hold_memory_flat),
    };
    return cmocka_run_group_tests_name("limits", tests, configure_small, NULL);
}
