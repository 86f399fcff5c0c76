/* Host ownership (region/region-host.h, HOST OWNERSHIP): the owner a host such as the Python binding
 * uses is libregion's own, with three entry points besides the public API - rhost_acquire (one
 * region, by id, with a timeout), rhost_owner (the owner, read from any thread) and rhost_disown
 * (letting go on the owner's behalf).  And the host's allocation: through the theaps it keeps per
 * thread (HOST THEAPS), in power-of-two sizes while a region is young (YOUNG REGIONS).  White-box:
 * compiled with libregion's sources, like a host. */
#include <pthread.h>
#include <string.h>
#include <time.h>

#include "test-util.h"
#include "region-host.h"

static void *owner_of(void *arg) {
    region_t *r = arg;
    static uint64_t seen;
    seen = rhost_owner(r, region_id(r));
    return &seen;
}

static void the_owner_is_read_from_any_thread_and_by_id(void **state) {
    (void)state;
    region_t *r = new_region("host owner");
    uint64_t id = region_id(r);
    assert_int_equal(rhost_owner(r, id), region_thread_token());
    assert_int_equal(*(uint64_t *)run_on_thread(owner_of, r), region_thread_token());
    assert_int_equal(rhost_owner(r, id + 1), 0);          /* another region's id: none */
    assert_ok(region_release(r));
    assert_int_equal(rhost_owner(r, id), 0);
    assert_ok(rhost_acquire(r, id, 0));
    assert_status(rhost_acquire(r, id, 0), REGION_EOWNED);
    assert_ok(region_destroy(r));
    assert_int_equal(rhost_owner(r, id), 0);              /* destroyed: no owner, whatever the slot holds */
}

static void *try_take(void *arg) {
    region_t *r = arg;
    static region_status status;
    status = rhost_acquire(r, region_id(r), 0);
    return &status;
}

static void *take_timed(void *arg) {
    region_t *r = arg;
    static region_status status;
    status = rhost_acquire(r, region_id(r), 20 * 1000 * 1000);
    return &status;
}

static void a_busy_region_is_refused_or_waited_for(void **state) {
    (void)state;
    region_t *r = new_region("busy");
    assert_int_equal(*(region_status *)run_on_thread(try_take, r), REGION_EBUSY);
    assert_int_equal(*(region_status *)run_on_thread(take_timed, r), REGION_ETIMEDOUT);
    assert_status(rhost_acquire(r, 0, 0), REGION_EINVAL);
    assert_ok(region_destroy(r));
}

typedef struct {
    region_t *r;
    uint64_t id;
    region_status status;
    uint64_t owner_after;
} waiter_t;

static void *wait_long(void *arg) {
    waiter_t *w = arg;
    w->status = rhost_acquire(w->r, w->id, 10ull * 1000 * 1000 * 1000);
    w->owner_after = rhost_owner(w->r, w->id);
    if (w->status == REGION_OK) rhost_disown(w->r);
    return NULL;
}

static void wait_until_waiting(region_t *r) {
    for (int i = 0; i < 2000; i++) {
        pthread_mutex_lock(&r->owner_lock);
        unsigned waiters = r->waiters;
        pthread_mutex_unlock(&r->owner_lock);
        if (waiters) return;
        struct timespec ms = {0, 1000 * 1000};
        nanosleep(&ms, NULL);
    }
    fail_msg("the waiter never waited");
}

static void disown_hands_the_region_to_a_waiter(void **state) {
    (void)state;
    region_t *r = new_region("disowned");
    waiter_t w = {.r = r, .id = region_id(r)};
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, wait_long, &w), 0);
    wait_until_waiting(r);
    rhost_disown(r);                                      /* as a host does for an owner that cannot */
    pthread_join(t, NULL);
    assert_ok(w.status);
    assert_int_not_equal(w.owner_after, 0);
    assert_int_not_equal(w.owner_after, region_thread_token());
    assert_int_equal(rhost_owner(r, w.id), 0);            /* the waiter disowned it as it ended */
    assert_ok(rhost_acquire(r, w.id, 0));
    assert_ok(region_destroy(r));
}

static void a_waiter_for_a_destroyed_region_gets_edead(void **state) {
    (void)state;
    region_t *r = new_region("gone");
    waiter_t w = {.r = r, .id = region_id(r)};
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, wait_long, &w), 0);
    wait_until_waiting(r);
    assert_ok(region_destroy(r));
    pthread_join(t, NULL);
    assert_status(w.status, REGION_EDEAD);
    region_t *next = new_region("next in the slot");      /* may reuse the struct: the old id stays dead */
    assert_status(rhost_acquire(r, w.id, 0), REGION_EDEAD);
    assert_int_equal(rhost_owner(r, w.id), 0);
    assert_ok(region_destroy(next));
}

/* ---- HOST THEAPS ---- */

/* n blocks in r's object or buffer heap, by rhost_alloc or (zeroed) rhost_calloc; each in its heap. */
static void allocate_in(region_t *r, bool object, bool zeroed, void **blocks, size_t n) {
    for (size_t i = 0; i < n; i++) {
        size_t size = 16 + 8 * (i % 12);
        blocks[i] = zeroed ? rhost_calloc(r, object, 1, size) : rhost_alloc(r, object, size);
        assert_non_null(blocks[i]);
        assert_ptr_equal(mi_heap_of(blocks[i]), object ? r->object_heap : r->heap);
        assert_ptr_equal(rhost_region_of(blocks[i]), r);
        if (zeroed)
            for (size_t k = 0; k < size; k++) assert_int_equal(((unsigned char *)blocks[i])[k], 0);
        memset(blocks[i], 0xab, size);   /* a recycled block must come zeroed from calloc all the same */
    }
}

static void free_all(void **blocks, size_t n) {
    for (size_t i = 0; i < n; i++) assert_non_null(rhost_free_block(blocks[i]));
}

static void host_allocations_land_in_their_heap_in_any_order(void **state) {
    (void)state;
    region_t *a = new_region("host a"), *b = new_region("host b");
    void *blocks[8][40];
    for (int round = 0; round < 2; round++) {   /* the second round reuses the blocks the first freed */
        for (int k = 0; k < 8; k++)   /* region, heap and call change from one batch to the next */
            allocate_in(k & 4 ? b : a, k & 1, k & 2, blocks[k], 40);
        for (int k = 0; k < 8; k++) free_all(blocks[k], 40);
    }
    assert_ok(region_destroy(a));
    assert_ok(region_destroy(b));
}

static void a_reused_record_starts_with_no_kept_theap(void **state) {
    (void)state;
    region_t *r = new_region("first in the record");
    assert_non_null(rhost_alloc(r, true, 32));
    assert_non_null(rhost_kept_theap(r, true));
    assert_ok(region_destroy(r));
    region_t *next = new_region("next in the record");
    assert_ptr_equal(next, r);   /* records are reused last in, first out */
    /* The kept entry names the record, but the generation moved on: not this region's theaps. */
    assert_null(rhost_kept_theap(next, true));
    assert_null(rhost_kept_theap(next, false));
    void *q = rhost_alloc(next, true, 32);
    assert_ptr_equal(mi_heap_of(q), next->object_heap);
    assert_non_null(rhost_kept_theap(next, true));
    assert_null(rhost_kept_theap(next, false));   /* the buffer heap's only after its own allocation */
    assert_ok(region_destroy(next));
}

typedef struct {
    region_t *r;
    void *blocks[2][40];
} handed_t;

static void *take_and_allocate(void *arg) {
    handed_t *h = arg;
    assert_ok(region_acquire(h->r));
    allocate_in(h->r, true, false, h->blocks[0], 40);
    allocate_in(h->r, false, true, h->blocks[1], 40);
    assert_ok(region_release(h->r));
    return NULL;
}

static void each_thread_allocates_through_its_own_theaps(void **state) {
    (void)state;
    handed_t h = {.r = new_region("handed")};
    void *mine[2][40];
    allocate_in(h.r, true, false, mine[0], 40);   /* this thread's theaps are kept */
    assert_ok(region_release(h.r));
    run_on_thread(take_and_allocate, &h);       /* another thread's, in its own entry */
    assert_ok(region_acquire(h.r));
    allocate_in(h.r, false, false, mine[1], 40);
    allocate_in(h.r, true, true, mine[0], 40);  /* this thread's entry again */
    free_all(h.blocks[0], 40);
    free_all(h.blocks[1], 40);
    assert_ok(region_destroy(h.r));
}

static void a_young_region_rounds_its_first_blocks_to_powers_of_two(void **state) {
    (void)state;
    region_t *r = new_region("young");
    void *first = rhost_alloc(r, true, 40);
    assert_int_equal(mi_usable_size(first), 64);
    assert_int_equal(mi_usable_size(rhost_alloc(r, true, 0)), 16);
    assert_int_equal(mi_usable_size(rhost_alloc(r, true, 200)), 256);
    assert_true(mi_usable_size(rhost_alloc(r, false, RHOST_YOUNG_MAX + 1)) < 2 * RHOST_YOUNG_MAX);   /* not rounded */
    assert_int_equal(mi_usable_size(rhost_alloc(r, false, 300)), 512);
    /* the first small buffers share one size, and grow in place within it */
    assert_int_equal(mi_usable_size(rhost_calloc(r, false, 3, 8)), RHOST_SMALL_BUFFER);
    void *small = rhost_alloc(r, false, 8);
    assert_int_equal(mi_usable_size(small), RHOST_SMALL_BUFFER);
    assert_ptr_equal(rhost_realloc(r, small, RHOST_SMALL_BUFFER), small);
    while (__atomic_load_n(&r->young_buffers, __ATOMIC_RELAXED) < RHOST_SMALL_BUFFERS)
        assert_int_equal(mi_usable_size(rhost_alloc(r, false, 16)), RHOST_SMALL_BUFFER);
    assert_int_equal(mi_usable_size(rhost_alloc(r, false, 24)), 32);   /* past the cap: powers of two */
    void *grown = rhost_realloc(r, rhost_alloc(r, false, 8), 100);
    assert_int_equal(mi_usable_size(grown), 128);
    while (__atomic_load_n(&r->young_blocks, __ATOMIC_RELAXED) < RHOST_YOUNG_BLOCKS) assert_non_null(rhost_alloc(r, true, 8));
    assert_true(mi_usable_size(rhost_alloc(r, true, 40)) < 64);   /* grown up: mimalloc's own bin */
    assert_true(mi_usable_size(rhost_alloc(r, false, 40)) < 64);
    assert_true(mi_usable_size(rhost_realloc(r, grown, 300)) < 512);
    assert_ok(region_destroy(r));
    region_t *next = new_region("young again");   /* the record's next region starts young */
    assert_int_equal(mi_usable_size(rhost_alloc(next, true, 40)), 64);
    assert_int_equal(mi_usable_size(rhost_alloc(next, false, 24)), RHOST_SMALL_BUFFER);
    assert_ok(region_destroy(next));
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(the_owner_is_read_from_any_thread_and_by_id),
        cmocka_unit_test(a_busy_region_is_refused_or_waited_for),
        cmocka_unit_test(disown_hands_the_region_to_a_waiter),
        cmocka_unit_test(a_waiter_for_a_destroyed_region_gets_edead),
        cmocka_unit_test(host_allocations_land_in_their_heap_in_any_order),
        cmocka_unit_test(a_reused_record_starts_with_no_kept_theap),
        cmocka_unit_test(each_thread_allocates_through_its_own_theaps),
        cmocka_unit_test(a_young_region_rounds_its_first_blocks_to_powers_of_two),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
