/* Limits: a small configuration (4 regions of 64 MiB) makes both limits reachable in a test.
 * Exhausting a region gives REGION_EFULL, never memory from outside it; too many regions gives
 * REGION_ELIMIT; both leave everything else working. */
#include <stdlib.h>

#include "test-util.h"

static int configure_small(void **state) {
    (void)state;
    region_config_t c = {.slot_size = 64 << 20, .max_regions = 4};
    assert_ok(region_configure(&c));
    region_get_config(&c);
    assert_int_equal(c.slot_size, 64 << 20);
    return 0;
}

static void slot_size_is_rounded_and_validated(void **state) {
    (void)state;
    region_config_t c = {.slot_size = (size_t)2 << 40, .max_regions = 4};
    assert_status(region_configure(&c), REGION_EINVAL);
    c = (region_config_t){.slot_size = 64 << 20, .max_regions = 151};
    assert_status(region_configure(&c), REGION_EINVAL);
    assert_error_mentions("max_regions");
}

static void full_region_fails_cleanly(void **state) {
    (void)state;
    region_t *r = new_region("small");
    size_t n = 0;
    for (;;) {
        void *p = region_alloc(r, 4000);
        if (!p) break;
        assert_ptr_equal(region_of(p), r);   /* never memory from outside the slot */
        n++;
    }
    assert_int_equal(region_last_status(), REGION_EFULL);
    assert_error_mentions("region 'small'");
    assert_error_mentions("exhausted");
    assert_true(n > 10000);
    assert_null(region_alloc(r, 100 << 20));   /* bigger than the slot */
    assert_int_equal(region_last_status(), REGION_EFULL);
    assert_null(region_object_new(r, &(region_type_t){"big", NULL, NULL}, 100 << 20));
    assert_int_equal(region_last_status(), REGION_EFULL);
    /* Other regions are unaffected. */
    region_t *other = new_region("other");
    assert_non_null(region_alloc(other, 1000));
    assert_ok(region_destroy(other));
    assert_ok(region_destroy(r));
    /* And the slot is usable again after the destroy. */
    r = new_region("reused");
    assert_non_null(region_alloc(r, 1 << 20));
    assert_ok(region_destroy(r));
}

static void too_many_regions_fail_cleanly(void **state) {
    (void)state;
    region_t *rs[4];
    for (int i = 0; i < 4; i++) rs[i] = new_region("many");
    region_t *extra = (region_t *)1;
    region_options_t o = {.name = "fifth", .node = -1, .binding = REGION_BIND_NONE};
    assert_status(region_create(&o, &extra), REGION_ELIMIT);
    assert_null(extra);
    assert_error_mentions("fifth");
    assert_error_mentions("all 4 region slots are in use");
    assert_ok(region_destroy(rs[2]));
    assert_ok(region_create(&o, &extra));
    assert_ok(region_destroy(extra));
    for (int i = 0; i < 4; i++)
        if (i != 2) assert_ok(region_destroy(rs[i]));
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
        cmocka_unit_test(slot_size_is_rounded_and_validated),
        cmocka_unit_test(full_region_fails_cleanly),
        cmocka_unit_test(too_many_regions_fail_cleanly),
        cmocka_unit_test(create_destroy_cycles_hold_memory_flat),
    };
    return cmocka_run_group_tests_name("limits", tests, configure_small, NULL);
}
