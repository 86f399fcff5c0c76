/* The runtime's pointer map (region/ptrmap.c), tested through its internal header: this test is
 * compiled with libregion's sources, since the library exports only region_*. */
#include <stdlib.h>

#include "test-util.h"
#include "region-internal.h"

static void *key(size_t i) { return (void *)(uintptr_t)(16 * (i + 1)); }

static void put_get_remove_and_tombstones(void **state) {
    (void)state;
    rptrmap_t m = {0};
    enum { N = 5000 };
    assert_null(rptrmap_get(&m, key(0)));          /* an empty map has no cells yet */
    for (size_t i = 0; i < N; i++) {
        rptrmap_cell_t *cell = rptrmap_put(&m, key(i));
        assert_non_null(cell);
        assert_int_equal(cell->value, 0);          /* new keys start at 0 */
        cell->value = i + 1;
    }
    assert_int_equal(m.live, N);
    assert_int_equal(rptrmap_put(&m, key(7))->value, 8);   /* put finds an existing key */
    assert_int_equal(m.live, N);
    for (size_t i = 0; i < N; i += 2) assert_true(rptrmap_remove(&m, key(i)));
    assert_false(rptrmap_remove(&m, key(0)));      /* already gone */
    assert_int_equal(m.live, N / 2);
    for (size_t i = 0; i < N; i++) {
        rptrmap_cell_t *cell = rptrmap_get(&m, key(i));
        if (i % 2) assert_int_equal(cell->value, i + 1);
        else assert_null(cell);
    }
    size_t seen = 0, sum = 0;
    rptrmap_foreach(&m, cell) {
        seen++;
        sum += cell->value;
    }
    assert_int_equal(seen, N / 2);
    assert_int_equal(sum, (size_t)N / 2 * (N / 2 + 1));   /* the values 2, 4, ..., N */
    /* Churn re-adds and removes without growing the table past what the live keys need. */
    size_t capacity = m.capacity;
    for (int round = 0; round < 50; round++) {
        for (size_t i = 0; i < N; i += 2) assert_non_null(rptrmap_put(&m, key(N + i)));
        for (size_t i = 0; i < N; i += 2) assert_true(rptrmap_remove(&m, key(N + i)));
    }
    assert_true(m.capacity <= 2 * capacity);
    assert_true(rptrmap_reserve(&m, 100));
    size_t filled = m.filled;
    for (size_t i = 0; i < 100; i++) assert_non_null(rptrmap_put(&m, key(3 * N + i)));
    assert_int_equal(m.filled, filled + 100);      /* reserved room: no rehash in between */
    rptrmap_clear(&m);
    assert_int_equal(m.live, 0);
    assert_null(rptrmap_get(&m, key(1)));
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(put_get_remove_and_tombstones),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
