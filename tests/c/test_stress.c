/* A million regions, made and destroyed (issue 17): resident memory stays flat once the arenas are
 * warm, ids are never reused, and a stale id or handle of the first region still gets its error.
 *
 * A window of WINDOW regions is alive at any time, so that many records and arenas - each arena
 * keeping emptied heaps for its next regions (region/region.c, "Heaps") - take turns.  Each region gets raw blocks of
 * mixed sizes, a realloc, a free, a handle and C objects.  REGION_STRESS_REGIONS sets how many
 * regions (default 1,000,000). */
#include <stdio.h>
#include <stdlib.h>

#include "test-util.h"

#define WINDOW 64
#define WARM 10000   /* regions after which resident memory must stay within 10 % */

/* Under AddressSanitizer freed memory waits in a quarantine (256 MiB by default), so resident memory
 * says nothing about ours there; its LeakSanitizer checks for leaks at exit instead. */
#if defined(__SANITIZE_ADDRESS__)
#define RSS_SAYS_ANYTHING 0
#else
#define RSS_SAYS_ANYTHING 1
#endif

static void trace_pair(const void *obj, region_visit_fn visit, void *ctx) {
    void *const *pair = obj;
    visit(pair[0], ctx);
    visit(pair[1], ctx);
}

static const region_type_t pair_type = {.name = "pair", .trace = trace_pair};

static void use(region_t *r, unsigned i) {
    static const size_t sizes[] = {8, 24, 64, 200, 1000, 4000};
    void *last = NULL;
    for (unsigned k = 0; k < 12; k++) {
        last = region_alloc(r, sizes[(i + k) % 6]);
        assert_non_null(last);
        memset(last, (int)k, 8);
    }
    last = region_realloc(r, last, 9000);
    assert_non_null(last);
    assert_ok(region_free(r, region_alloc(r, 32)));
    region_handle_t h;
    assert_ok(region_handle_new(r, last, &h));
    void **pair = region_object_new(r, &pair_type, 2 * sizeof(void *));
    assert_non_null(pair);
    pair[0] = region_object_new(r, &pair_type, 2 * sizeof(void *));
    assert_non_null(pair[0]);
    assert_ok(region_set_root(r, pair));
}

static void a_million_regions_hold_memory_flat(void **state) {
    (void)state;
    const char *env = getenv("REGION_STRESS_REGIONS");
    unsigned total = env ? (unsigned)strtoul(env, NULL, 10) : 1000000u;
    assert_true(total > WARM);
    region_t *window[WINDOW] = {0};
    uint64_t first_id = 0;
    region_handle_t first_handle = {0};
    long warm_rss = 0;
    for (unsigned i = 0; i < total; i++) {
        region_t **slot = &window[i % WINDOW];
        if (*slot) assert_ok(region_destroy(*slot));
        *slot = new_region("stress");
        use(*slot, i);
        if (i == 0) {
            first_id = region_id(*slot);
            assert_ok(region_handle_new(*slot, region_alloc(*slot, 16), &first_handle));
        }
        if (i + 1 == WARM) {
            region_trim();
            warm_rss = rss_kib();
        }
    }
    for (unsigned k = 0; k < WINDOW; k++) assert_ok(region_destroy(window[k]));
    region_trim();
    long end_rss = rss_kib();
    printf("resident: %ld KiB after %u regions, %ld KiB after %u\n", warm_rss, WARM, end_rss, total);
    if (RSS_SAYS_ANYTHING) assert_true(end_rss <= warm_rss + warm_rss / 10);

    /* The first region's id and handle still say it was destroyed: never another region. */
    assert_null(region_from_id(first_id));
    assert_int_equal(region_last_status(), REGION_EDEAD);
    void *target = (void *)1;
    assert_status(region_handle_resolve(first_handle, &target), REGION_EDEAD);
    assert_null(target);
}

/* Many regions alive at once (REGION_STRESS_LIVE, default 20,000; bench/limits.c makes 100,000),
 * sharing arenas: each block is found in its own region, each region by its id, and destroying them
 * gives the memory back to the arenas for the next ones. */
static void thousands_of_regions_alive_at_once(void **state) {
    (void)state;
    const char *env = getenv("REGION_STRESS_LIVE");
    unsigned live = env ? (unsigned)strtoul(env, NULL, 10) : 20000u;
    region_t **rs = malloc(live * sizeof *rs);
    void **blocks = malloc(live * sizeof *blocks);
    assert_non_null(rs);
    assert_non_null(blocks);
    for (int round = 0; round < 2; round++) {
        for (unsigned i = 0; i < live; i++) {
            rs[i] = new_region("live");
            blocks[i] = region_alloc(rs[i], 16 + i % 512);
            assert_non_null(blocks[i]);
            memset(blocks[i], (int)i, 16);
        }
        for (unsigned i = 0; i < live; i++) {
            assert_ptr_equal(region_of(blocks[i]), rs[i]);
            assert_ptr_equal(region_from_id(region_id(rs[i])), rs[i]);
            assert_int_equal(((unsigned char *)blocks[i])[15], (unsigned char)i);
        }
        for (unsigned i = 0; i < live; i++) assert_ok(region_destroy(rs[i]));
        for (unsigned i = 0; i < live; i += live / 100) assert_null(region_of(blocks[i]));
    }
    free(rs);
    free(blocks);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(thousands_of_regions_alive_at_once),
        cmocka_unit_test(a_million_regions_hold_memory_flat),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
