/* Regions: create, destroy, identity, allocation, statistics, errors. */
#include <stdio.h>
#include <stdlib.h>

#include "test-util.h"

static void create_and_destroy(void **state) {
    (void)state;
    region_t *r = new_region("alpha");
    assert_string_equal(region_name(r), "alpha");
    assert_true(region_id(r) != 0);
    assert_true(region_owned(r));
    assert_ptr_equal(region_from_id(region_id(r)), r);
    uint64_t id = region_id(r);
    assert_ok(region_destroy(r));
    assert_null(region_from_id(id));
    assert_int_equal(region_last_status(), REGION_EDEAD);
}

static void default_name_and_null_options(void **state) {
    (void)state;
    region_t *r;
    assert_ok(region_create(NULL, &r));
    assert_true(strncmp(region_name(r), "region-", 7) == 0);
    assert_ok(region_destroy(r));
}

static void ids_are_never_reused(void **state) {
    (void)state;
    uint64_t seen[50];
    for (int i = 0; i < 50; i++) {
        region_t *r = new_region(NULL);
        seen[i] = region_id(r);
        for (int j = 0; j < i; j++) assert_true(seen[j] != seen[i]);
        assert_ok(region_destroy(r));
    }
}

static void region_of_is_safe_for_any_pointer(void **state) {
    (void)state;
    region_t *a = new_region("a"), *b = new_region("b");
    void *pa = region_alloc(a, 64), *pb = region_alloc(b, 64);
    assert_ptr_equal(region_of(pa), a);
    assert_ptr_equal(region_of(pb), b);
    int on_stack;
    void *heap = malloc(16);
    assert_null(region_of(&on_stack));
    assert_null(region_of(heap));
    assert_null(region_of(NULL));
    assert_null(region_of((void *)0x10));
    assert_null(region_of((void *)UINTPTR_MAX));
    free(heap);
    assert_ok(region_destroy(a));
    assert_null(region_of(pa));   /* the slot is free now */
    assert_ok(region_destroy(b));
}

static void alloc_zalloc_calloc(void **state) {
    (void)state;
    region_t *r = new_region("alloc");
    unsigned char *p = region_alloc(r, 100);
    assert_non_null(p);
    assert_int_equal((uintptr_t)p % 16, 0);
    assert_true(region_usable_size(r, p) >= 100);
    memset(p, 0xAA, 100);
    unsigned char *z = region_zalloc(r, 4096);
    for (int i = 0; i < 4096; i++) assert_int_equal(z[i], 0);
    unsigned char *c = region_calloc(r, 10, 10);
    for (int i = 0; i < 100; i++) assert_int_equal(c[i], 0);
    void *zero = region_alloc(r, 0);
    assert_non_null(zero);
    assert_ptr_equal(region_of(zero), r);
    assert_null(region_calloc(r, SIZE_MAX / 2, 3));
    assert_int_equal(region_last_status(), REGION_EINVAL);
    assert_error_mentions("overflows");
    assert_ok(region_free(r, p));
    assert_ok(region_free(r, NULL));
    assert_ok(region_destroy(r));
}

static void realloc_keeps_block_in_region(void **state) {
    (void)state;
    region_t *r = new_region("realloc");
    char *p = region_alloc(r, 100);
    strcpy(p, "kept");
    for (size_t size = 200; size <= ((size_t)64 << 20); size *= 4) {
        p = region_realloc(r, p, size);
        assert_non_null(p);
        assert_ptr_equal(region_of(p), r);
        assert_string_equal(p, "kept");
    }
    p = region_realloc(r, p, 10);
    assert_ptr_equal(region_of(p), r);
    assert_string_equal(p, "kept");
    char *fresh = region_realloc(r, NULL, 50);
    assert_ptr_equal(region_of(fresh), r);
    assert_ok(region_destroy(r));
}

static void foreign_pointers_are_refused(void **state) {
    (void)state;
    region_t *a = new_region("first"), *b = new_region("second");
    void *pb = region_alloc(b, 32);
    void *heap = malloc(32);
    assert_status(region_free(a, pb), REGION_ENOTREGION);
    assert_error_mentions("belongs to region 'second'");
    assert_status(region_free(a, heap), REGION_ENOTREGION);
    assert_error_mentions("region 'first'");
    assert_null(region_realloc(a, heap, 64));
    assert_int_equal(region_last_status(), REGION_ENOTREGION);
    assert_null(region_realloc(a, pb, 64));
    assert_int_equal(region_usable_size(a, pb), 0);
    free(heap);
    assert_ok(region_destroy(a));
    assert_ok(region_destroy(b));
}

static void null_region_is_einval(void **state) {
    (void)state;
    assert_null(region_alloc(NULL, 8));
    assert_int_equal(region_last_status(), REGION_EINVAL);
    assert_status(region_destroy(NULL), REGION_EINVAL);
    assert_status(region_free(NULL, NULL), REGION_EINVAL);
    assert_status(region_create(NULL, NULL), REGION_EINVAL);
    region_stats_t s;
    assert_status(region_stats(NULL, &s), REGION_EINVAL);
}

static void bad_options(void **state) {
    (void)state;
    region_t *r = (region_t *)1;
    region_options_t o = {.name = "bad", .node = 0, .binding = REGION_BIND_NONE};
    assert_status(region_create(&o, &r), REGION_EINVAL);
    assert_null(r);
    assert_error_mentions("REGION_BIND_NONE");
    o = (region_options_t){.name = "bad", .node = -1, .binding = REGION_BIND_STRICT};
    assert_status(region_create(&o, &r), REGION_EINVAL);
    o = (region_options_t){.name = "bad", .node = 0, .binding = (region_binding)7};
    assert_status(region_create(&o, &r), REGION_EINVAL);
    o = (region_options_t){.name = "bad", .node = region_numa_nodes() + 3, .binding = REGION_BIND_PREFERRED};
    assert_status(region_create(&o, &r), REGION_ENONODE);
    assert_error_mentions("does not exist");
}

static void stats_count_blocks(void **state) {
    (void)state;
    region_t *r = new_region("stats");
    void *blocks[1000];
    for (int i = 0; i < 1000; i++) blocks[i] = region_alloc(r, 64);
    region_stats_t s;
    assert_ok(region_stats(r, &s));
    assert_int_equal(s.blocks, 1000);
    assert_true(s.bytes_in_use >= 64000);
    assert_true(s.bytes_committed >= s.bytes_in_use);
    assert_true(s.pages >= 1);
    assert_int_equal(s.heaps, 2);
    assert_int_equal(s.node, -1);
    assert_int_equal(s.id, region_id(r));
    for (int i = 0; i < 500; i++) assert_ok(region_free(r, blocks[i]));
    assert_ok(region_stats(r, &s));
    assert_int_equal(s.blocks, 500);
    assert_status(region_stats(r, NULL), REGION_EINVAL);
    assert_ok(region_destroy(r));
}

static void destroy_frees_everything_in_bulk(void **state) {
    (void)state;
    /* A recycled slot starts empty: nothing of the previous region is visible in the next one. */
    for (int round = 0; round < 5; round++) {
        region_t *r = new_region("bulk");
        for (int i = 0; i < 200000; i++) assert_non_null(region_alloc(r, 16 + (i % 8) * 8));
        region_stats_t s;
        assert_ok(region_stats(r, &s));
        assert_int_equal(s.blocks, 200000);
        assert_ok(region_destroy(r));
        region_t *next = new_region("after");
        assert_ok(region_stats(next, &s));
        assert_int_equal(s.blocks, 0);
        assert_ok(region_destroy(next));
    }
    assert_ok(region_trim());
}

static void every_status_has_a_name(void **state) {
    (void)state;
    for (int s = 0; s < REGION_STATUS_COUNT; s++) {
        const char *name = region_strerror((region_status)s);
        assert_non_null(name);
        assert_true(strncmp(name, "REGION_", 7) == 0);
    }
    assert_string_equal(region_strerror((region_status)999), "unknown region_status");
}

static void version_is_the_headers(void **state) {
    (void)state;
    char expected[32];
    snprintf(expected, sizeof expected, "%d.%d.%d", REGION_VERSION_MAJOR, REGION_VERSION_MINOR,
             REGION_VERSION_PATCH);
    assert_string_equal(region_version(), expected);
}

static void configure_after_first_region_is_refused(void **state) {
    (void)state;
    region_t *r = new_region("cfg");
    region_config_t c;
    region_get_config(&c);
    assert_int_equal(c.arena_size, (size_t)4 << 30);
    assert_int_equal(c.max_arenas, 150);
    assert_status(region_configure(&c), REGION_ESTATE);
    c.max_arenas = 0;
    assert_status(region_configure(&c), REGION_EINVAL);
    assert_status(region_configure(NULL), REGION_EINVAL);
    assert_ok(region_destroy(r));
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(create_and_destroy),
        cmocka_unit_test(default_name_and_null_options),
        cmocka_unit_test(ids_are_never_reused),
        cmocka_unit_test(region_of_is_safe_for_any_pointer),
        cmocka_unit_test(alloc_zalloc_calloc),
        cmocka_unit_test(realloc_keeps_block_in_region),
        cmocka_unit_test(foreign_pointers_are_refused),
        cmocka_unit_test(null_region_is_einval),
        cmocka_unit_test(bad_options),
        cmocka_unit_test(stats_count_blocks),
        cmocka_unit_test(destroy_frees_everything_in_bulk),
        cmocka_unit_test(every_status_has_a_name),
        cmocka_unit_test(version_is_the_headers),
        cmocka_unit_test(configure_after_first_region_is_refused),
    };
    return cmocka_run_group_tests_name("region", tests, NULL, NULL);
}
