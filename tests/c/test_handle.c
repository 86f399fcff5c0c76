/* Weak handles: creation, resolution, every distinct error, invalidation on free/realloc/destroy. */
#include <stdlib.h>

#include "test-util.h"

static void make_and_resolve(void **state) {
    (void)state;
    region_t *r = new_region("handles");
    int *p = region_alloc(r, sizeof *p);
    *p = 42;
    region_handle_t h, again;
    assert_ok(region_handle_new(r, p, &h));
    assert_true(h.region == region_id(r));
    assert_ok(region_handle_new(r, p, &again));
    assert_memory_equal(&h, &again, sizeof h);   /* one entry per block */
    void *out;
    assert_ok(region_handle_resolve(h, &out));
    assert_ptr_equal(out, p);
    assert_status(region_handle_resolve(h, NULL), REGION_EINVAL);
    assert_ok(region_destroy(r));
}

static void freed_target_gives_efreed(void **state) {
    (void)state;
    region_t *r = new_region("freed");
    void *p = region_alloc(r, 32);
    region_handle_t h;
    assert_ok(region_handle_new(r, p, &h));
    assert_ok(region_free(r, p));
    void *out = (void *)1;
    assert_status(region_handle_resolve(h, &out), REGION_EFREED);
    assert_null(out);
    assert_error_mentions("was freed");
    /* The entry is recycled for a new block, and the old handle stays dead. */
    void *q = region_alloc(r, 32);
    region_handle_t h2;
    assert_ok(region_handle_new(r, q, &h2));
    assert_int_equal(h2.slot, h.slot);
    assert_true(h2.generation != h.generation);
    assert_status(region_handle_resolve(h, &out), REGION_EFREED);
    assert_ok(region_handle_resolve(h2, &out));
    assert_ptr_equal(out, q);
    assert_ok(region_destroy(r));
}

static void destroyed_region_gives_edead(void **state) {
    (void)state;
    region_t *r = new_region("gone");
    region_handle_t h;
    assert_ok(region_handle_new(r, region_alloc(r, 8), &h));
    assert_ok(region_destroy(r));
    void *out;
    assert_status(region_handle_resolve(h, &out), REGION_EDEAD);
    /* Even when a new region takes the same slot. */
    region_t *next = new_region("same-slot");
    assert_true((region_id(next) & 0xff) == (h.region & 0xff));
    assert_status(region_handle_resolve(h, &out), REGION_EDEAD);
    assert_ok(region_destroy(next));
}

static void *resolve_elsewhere(void *arg) {
    region_handle_t *h = arg;
    void *out;
    assert_status(region_handle_resolve(*h, &out), REGION_ENOTOWNER);
    return NULL;
}

static void non_owner_gives_enotowner(void **state) {
    (void)state;
    region_t *r = new_region("owned");
    region_handle_t h;
    assert_ok(region_handle_new(r, region_alloc(r, 8), &h));
    run_on_thread(resolve_elsewhere, &h);
    assert_ok(region_destroy(r));
}

static void garbage_values_give_ebadhandle(void **state) {
    (void)state;
    region_t *r = new_region("bad");
    region_handle_t h;
    assert_ok(region_handle_new(r, region_alloc(r, 8), &h));
    void *out;
    assert_status(region_handle_resolve(REGION_HANDLE_NULL, &out), REGION_EBADHANDLE);
    region_handle_t forged = h;
    forged.slot = 100000;
    assert_status(region_handle_resolve(forged, &out), REGION_EBADHANDLE);
    forged = h;
    forged.generation = h.generation + 5;
    assert_status(region_handle_resolve(forged, &out), REGION_EBADHANDLE);
    forged = h;
    forged.region = (h.region & ~(uint64_t)0xff) | 0xfe;   /* slot beyond the table */
    assert_status(region_handle_resolve(forged, &out), REGION_EBADHANDLE);
    assert_ok(region_destroy(r));
}

static void foreign_pointer_cannot_get_a_handle(void **state) {
    (void)state;
    region_t *a = new_region("a"), *b = new_region("b");
    region_handle_t h;
    int local;
    assert_status(region_handle_new(a, &local, &h), REGION_ENOTREGION);
    assert_status(region_handle_new(a, region_alloc(b, 8), &h), REGION_ENOTREGION);
    assert_status(region_handle_new(a, NULL, &h), REGION_ENOTREGION);
    assert_status(region_handle_new(a, region_alloc(a, 8), NULL), REGION_EINVAL);
    assert_ok(region_destroy(a));
    assert_ok(region_destroy(b));
}

static void handle_follows_realloc(void **state) {
    (void)state;
    region_t *r = new_region("moving");
    char *p = region_alloc(r, 16);
    strcpy(p, "moves");
    region_handle_t h;
    assert_ok(region_handle_new(r, p, &h));
    char *q = region_realloc(r, p, 1 << 20);
    assert_true(q != p);
    void *out;
    assert_ok(region_handle_resolve(h, &out));
    assert_ptr_equal(out, q);
    assert_string_equal((char *)out, "moves");
    assert_ok(region_destroy(r));
}

static void handles_follow_many_reallocs(void **state) {
    (void)state;
    /* Each move leaves a tombstone in the index: thousands of moves must neither lose a handle nor
     * fill the index (a full open-addressing index would never find an empty cell). */
    region_t *r = new_region("realloc-churn");
    enum { N = 64 };
    void *blocks[N];
    region_handle_t hs[N];
    for (int i = 0; i < N; i++) {
        blocks[i] = region_alloc(r, 16);
        assert_ok(region_handle_new(r, blocks[i], &hs[i]));
    }
    for (int round = 0; round < 200; round++)
        for (int i = 0; i < N; i++) {
            blocks[i] = region_realloc(r, blocks[i], round % 2 ? 16 : 4096);
            assert_non_null(blocks[i]);
        }
    for (int i = 0; i < N; i++) {
        void *out;
        assert_ok(region_handle_resolve(hs[i], &out));
        assert_ptr_equal(out, blocks[i]);
    }
    assert_ok(region_destroy(r));
}

static void many_handles(void **state) {
    (void)state;
    region_t *r = new_region("many");
    enum { N = 20000 };
    void **blocks = malloc(N * sizeof *blocks);
    region_handle_t *hs = malloc(N * sizeof *hs);
    for (int i = 0; i < N; i++) {
        blocks[i] = region_alloc(r, 24);
        assert_ok(region_handle_new(r, blocks[i], &hs[i]));
    }
    for (int i = 0; i < N; i += 2) assert_ok(region_free(r, blocks[i]));
    for (int i = 0; i < N; i++) {
        void *out;
        assert_status(region_handle_resolve(hs[i], &out), i % 2 ? REGION_OK : REGION_EFREED);
        if (i % 2) assert_ptr_equal(out, blocks[i]);
    }
    region_stats_t s;
    assert_ok(region_stats(r, &s));
    assert_int_equal(s.handles, N / 2);
    /* Recycle the freed entries many times over: the index must not fill with tombstones. */
    for (int round = 0; round < 20; round++) {
        for (int i = 0; i < N; i += 2) {
            blocks[i] = region_alloc(r, 24);
            assert_ok(region_handle_new(r, blocks[i], &hs[i]));
        }
        for (int i = 0; i < N; i += 2) assert_ok(region_free(r, blocks[i]));
    }
    assert_ok(region_stats(r, &s));
    assert_int_equal(s.handles, N / 2);
    for (int i = 1; i < N; i += 2) {   /* the survivors still resolve after all the rebuilds */
        void *out;
        assert_ok(region_handle_resolve(hs[i], &out));
        assert_ptr_equal(out, blocks[i]);
    }
    assert_ok(region_destroy(r));
    free(blocks);
    free(hs);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(make_and_resolve),
        cmocka_unit_test(freed_target_gives_efreed),
        cmocka_unit_test(destroyed_region_gives_edead),
        cmocka_unit_test(non_owner_gives_enotowner),
        cmocka_unit_test(garbage_values_give_ebadhandle),
        cmocka_unit_test(foreign_pointer_cannot_get_a_handle),
        cmocka_unit_test(handle_follows_realloc),
        cmocka_unit_test(handles_follow_many_reallocs),
        cmocka_unit_test(many_handles),
    };
    return cmocka_run_group_tests_name("handle", tests, NULL, NULL);
}
