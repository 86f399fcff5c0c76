/* Ownership: every non-owner operation refused, acquire/try/timed/release/hand-off, waiters, ping-pong,
 * cross-thread frees, and a thread that exits after allocating in a live region. */
#include <sched.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#include "test-util.h"

/* ---- Non-owners get REGION_ENOTOWNER for everything that touches the region ---- */

static void *try_everything_as_stranger(void *arg) {
    region_t *r = arg;
    region_stats_t s;
    region_census_t c;
    region_handle_t h;
    assert_false(region_owned(r));
    assert_null(region_alloc(r, 8));
    assert_int_equal(region_last_status(), REGION_ENOTOWNER);
    assert_error_mentions("owned by thread token");
    assert_null(region_zalloc(r, 8));
    assert_null(region_calloc(r, 1, 8));
    assert_null(region_realloc(r, region_root(r), 8));
    assert_status(region_free(r, (void *)r), REGION_ENOTOWNER);
    assert_status(region_destroy(r), REGION_ENOTOWNER);
    assert_status(region_collect(r, 0, NULL), REGION_ENOTOWNER);
    assert_status(region_check(r), REGION_ENOTOWNER);
    assert_status(region_stats(r, &s), REGION_ENOTOWNER);
    assert_status(region_census(r, &c), REGION_ENOTOWNER);
    assert_status(region_handle_new(r, (void *)r, &h), REGION_ENOTOWNER);
    assert_status(region_release(r), REGION_ENOTOWNER);
    assert_status(region_hand_off(r, 1), REGION_ENOTOWNER);
    assert_status(region_set_root(r, NULL), REGION_ENOTOWNER);
    assert_status(region_try_acquire(r), REGION_EBUSY);
    assert_status(region_acquire_timed(r, 20 * 1000 * 1000), REGION_ETIMEDOUT);
    assert_error_mentions("timeout");
    return NULL;
}

static void non_owner_is_refused(void **state) {
    (void)state;
    region_t *r = new_region("guarded");
    void *p = region_alloc(r, 16);
    run_on_thread(try_everything_as_stranger, r);
    assert_ptr_equal(region_of(p), r);   /* intact */
    assert_ok(region_release(r));
    assert_status(region_release(r), REGION_ENOTOWNER);
    assert_error_mentions("has no owner");
    assert_null(region_alloc(r, 8));
    assert_int_equal(region_last_status(), REGION_ENOTOWNER);
    assert_ok(region_acquire(r));
    assert_status(region_acquire(r), REGION_EOWNED);
    assert_ok(region_destroy(r));
}

/* The inline allocation path (include/region.h) compares the caller's token with the owner field:
 * a thread that never made an ownership call has no token yet, and an unowned region's field is 0,
 * so the two must never compare equal.  The checked function, called through its address, agrees. */
static void *first_call_is_an_allocation(void *arg) {
    region_t *r = arg;
    assert_null(region_alloc(r, 8));
    assert_int_equal(region_last_status(), REGION_ENOTOWNER);
    assert_error_mentions("has no owner");
    void *(*checked)(region_t *, size_t) = &region_alloc;
    assert_null(checked(r, 8));
    assert_int_equal(region_last_status(), REGION_ENOTOWNER);
    return NULL;
}

static void inline_path_refuses_a_thread_without_a_token(void **state) {
    (void)state;
    region_t *r = new_region("unowned");
    assert_ok(region_release(r));
    run_on_thread(first_call_is_an_allocation, r);
    assert_ok(region_acquire(r));
    void *(*checked)(region_t *, size_t) = &region_alloc;
    void *p = checked(r, 24);
    assert_ptr_equal(region_of(p), r);
    assert_ok(region_destroy(r));
    assert_null(region_alloc(NULL, 8));
    assert_int_equal(region_last_status(), REGION_EINVAL);
}

/* ---- Waiting ---- */

typedef struct waiter {
    region_t *r;
    volatile int acquired;
    region_status status;
} waiter_t;

static void *wait_for_region(void *arg) {
    waiter_t *w = arg;
    w->status = region_acquire(w->r);
    w->acquired = 1;
    if (w->status == REGION_OK) {
        void *p = region_alloc(w->r, 32);
        assert_non_null(p);
        assert_ok(region_release(w->r));
    }
    return NULL;
}

static void waiter_wakes_on_release(void **state) {
    (void)state;
    region_t *r = new_region("wait");
    waiter_t w = {.r = r};
    pthread_t t;
    pthread_create(&t, NULL, wait_for_region, &w);
    usleep(20000);
    assert_false(w.acquired);
    assert_ok(region_release(r));
    pthread_join(t, NULL);
    assert_ok(w.status);
    assert_ok(region_try_acquire(r));
    assert_ok(region_destroy(r));
}

static void destroy_wakes_waiters_with_edead(void **state) {
    (void)state;
    region_t *r = new_region("doomed");
    waiter_t w = {.r = r};
    pthread_t t;
    pthread_create(&t, NULL, wait_for_region, &w);
    usleep(20000);
    assert_ok(region_destroy(r));
    pthread_join(t, NULL);
    assert_int_equal(w.status, REGION_EDEAD);
    assert_status(region_acquire(r), REGION_EDEAD);
}

static void timed_acquire_succeeds_when_free(void **state) {
    (void)state;
    region_t *r = new_region("timed");
    assert_ok(region_release(r));
    assert_ok(region_acquire_timed(r, 1000));
    assert_ok(region_destroy(r));
}

/* ---- Hand-off ---- */

typedef struct receiver {
    region_t *r;
    uint64_t token;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    int ready;
    void *block;
    pthread_barrier_t checked;   /* the giver has tried to cut in */
} receiver_t;

static void *receive(void *arg) {
    receiver_t *x = arg;
    pthread_mutex_lock(&x->lock);
    x->token = region_thread_token();
    x->ready = 1;
    pthread_cond_signal(&x->cond);
    pthread_mutex_unlock(&x->lock);
    assert_ok(region_acquire(x->r));           /* returns once handed to us */
    assert_true(region_owned(x->r));
    pthread_barrier_wait(&x->checked);
    assert_string_equal((char *)x->block, "handed");
    assert_ok(region_free(x->r, x->block));    /* a block allocated on the other thread */
    assert_ok(region_destroy(x->r));           /* destroyed on a thread that did not create it */
    return NULL;
}

static void hand_off_goes_to_the_named_thread(void **state) {
    (void)state;
    receiver_t x = {.r = new_region("handoff"), .lock = PTHREAD_MUTEX_INITIALIZER,
                    .cond = PTHREAD_COND_INITIALIZER};
    x.block = region_alloc(x.r, 16);
    strcpy(x.block, "handed");
    pthread_barrier_init(&x.checked, NULL, 2);
    pthread_t t;
    pthread_create(&t, NULL, receive, &x);
    pthread_mutex_lock(&x.lock);
    while (!x.ready) pthread_cond_wait(&x.cond, &x.lock);
    pthread_mutex_unlock(&x.lock);
    assert_status(region_hand_off(x.r, 0), REGION_EINVAL);
    assert_ok(region_hand_off(x.r, x.token));
    assert_false(region_owned(x.r));
    assert_status(region_try_acquire(x.r), REGION_EBUSY);   /* nobody can cut in */
    pthread_barrier_wait(&x.checked);
    pthread_join(t, NULL);
    pthread_barrier_destroy(&x.checked);
}

/* ---- A receiver that uses a handed-off region before confirming ---- */

typedef struct early_receiver {
    region_t *r;
    uint64_t token;          /* atomic: published by the receiver */
    region_handle_t h;       /* written by the giver before the hand-off */
    char *block;
} early_receiver_t;

static void *use_before_confirming(void *arg) {
    early_receiver_t *x = arg;
    __atomic_store_n(&x->token, region_thread_token(), __ATOMIC_RELEASE);
    while (!region_owned(x->r)) sched_yield();   /* no lock: only the owner check orders the reads */
    void *out;
    assert_ok(region_handle_resolve(x->h, &out));   /* reads the table the giver grew */
    assert_ptr_equal(out, x->block);
    assert_string_equal(x->block, "written before the hand-off");
    assert_ok(region_acquire(x->r));                /* the confirmation, afterwards */
    assert_ok(region_destroy(x->r));
    return NULL;
}

/* ThreadSanitizer reports a race here unless the hand-off publishes the giver's writes to a receiver
 * that sees itself as the owner (include/region.h, THREAD RULES). */
static void hand_off_publishes_writes_to_a_receiver_that_has_not_confirmed(void **state) {
    (void)state;
    for (int round = 0; round < 20; round++) {
        early_receiver_t x = {.r = new_region("early")};
        pthread_t t;
        pthread_create(&t, NULL, use_before_confirming, &x);
        x.block = region_alloc(x.r, 64);
        for (int i = 0; i < 100; i++) {   /* grows the handle table: fresh memory the receiver reads */
            region_handle_t other;
            assert_ok(region_handle_new(x.r, region_alloc(x.r, 8), &other));
        }
        strcpy(x.block, "written before the hand-off");
        assert_ok(region_handle_new(x.r, x.block, &x.h));
        uint64_t to;
        while (!(to = __atomic_load_n(&x.token, __ATOMIC_ACQUIRE))) sched_yield();
        assert_ok(region_hand_off(x.r, to));
        pthread_join(t, NULL);
    }
}

/* ---- Statistics after a hand-over ---- */

typedef struct frees_elsewhere {
    region_t *r;
    void *blocks[200];
    void *objects[100];
} frees_elsewhere_t;

static void *free_half_and_count(void *arg) {
    frees_elsewhere_t *x = arg;
    assert_ok(region_acquire(x->r));
    for (int i = 0; i < 200; i += 2) assert_ok(region_free(x->r, x->blocks[i]));
    for (int i = 0; i < 100; i += 2) assert_ok(region_object_free(x->r, x->objects[i]));
    region_stats_t s;
    assert_ok(region_stats(x->r, &s));   /* mimalloc queued those frees on the creator's pages */
    assert_int_equal(s.objects, 50);
    assert_int_equal(s.blocks, 150);
    assert_ok(region_destroy(x->r));
    return NULL;
}

static void stats_count_frees_made_by_the_next_owner(void **state) {
    (void)state;
    frees_elsewhere_t x = {.r = new_region("stats-after-hand-over")};
    static const region_type_t leaf = {"leaf", NULL, NULL};
    for (int i = 0; i < 200; i++) x.blocks[i] = region_alloc(x.r, 40);
    for (int i = 0; i < 100; i++) x.objects[i] = region_object_new(x.r, &leaf, 24);
    assert_ok(region_release(x.r));
    run_on_thread(free_half_and_count, &x);
}

/* ---- Ping-pong with a checksum ---- */

#define PING_PONG_ROUNDS 10000

typedef struct ping_pong {
    region_t *r;
    uint64_t *sum;        /* lives in the region */
    uint64_t **blocks;    /* lives in the region: one block per round */
    int parity;
} ping_pong_t;

static void *play(void *arg) {
    ping_pong_t *g = arg;
    for (int round = g->parity; round < PING_PONG_ROUNDS; round += 2) {
        /* Take the region once the other thread has played the previous round. */
        for (;;) {
            assert_ok(region_acquire(g->r));
            if (round == 0 || g->blocks[round - 1] != NULL) break;
            assert_ok(region_release(g->r));
            sched_yield();
        }
        /* Check the whole graph built so far, then add to it. */
        uint64_t expected = 0;
        for (int i = 0; i < round; i++) expected += *g->blocks[i];
        assert_true(expected == *g->sum);
        uint64_t *b = region_alloc(g->r, sizeof *b);
        *b = (uint64_t)round * 7 + 1;
        *g->sum += *b;
        if (round >= 1) {   /* free a block the other thread allocated, and re-make it here */
            uint64_t value = *g->blocks[round - 1];
            assert_ok(region_free(g->r, g->blocks[round - 1]));
            g->blocks[round - 1] = region_alloc(g->r, sizeof(uint64_t));
            *g->blocks[round - 1] = value;
        }
        g->blocks[round] = b;
        assert_ok(region_release(g->r));
    }
    return NULL;
}

static void ping_pong_between_two_threads(void **state) {
    (void)state;
    region_t *r = new_region("ping-pong");
    ping_pong_t even = {.r = r, .parity = 0}, odd;
    even.sum = region_zalloc(r, sizeof *even.sum);
    even.blocks = region_zalloc(r, PING_PONG_ROUNDS * sizeof *even.blocks);
    odd = even;
    odd.parity = 1;
    assert_ok(region_release(r));
    pthread_t a, b;
    pthread_create(&a, NULL, play, &even);
    pthread_create(&b, NULL, play, &odd);
    pthread_join(a, NULL);
    pthread_join(b, NULL);
    assert_ok(region_acquire(r));
    uint64_t expected = 0;
    for (int i = 0; i < PING_PONG_ROUNDS; i++) expected += (uint64_t)i * 7 + 1;
    assert_true(*even.sum == expected);
    assert_ok(region_destroy(r));
}

/* ---- A thread that allocated in a region exits while the region lives ---- */

typedef struct exiting {
    region_t *r;
    void **blocks;
} exiting_t;

static void *allocate_then_exit(void *arg) {
    exiting_t *e = arg;
    assert_ok(region_acquire(e->r));
    for (int i = 0; i < 50000; i++) {
        e->blocks[i] = region_alloc(e->r, 48);
        memset(e->blocks[i], i & 0xff, 48);
    }
    assert_ok(region_release(e->r));
    return NULL;   /* the thread ends: mimalloc abandons its per-thread state for the heap */
}

static void thread_exit_keeps_region_blocks(void **state) {
    (void)state;
    exiting_t e = {.r = new_region("survivor"), .blocks = malloc(50000 * sizeof(void *))};
    assert_ok(region_release(e.r));
    for (int t = 0; t < 4; t++) run_on_thread(allocate_then_exit, &e);
    assert_ok(region_acquire(e.r));
    for (int i = 0; i < 50000; i++) {
        unsigned char *b = e.blocks[i];
        assert_ptr_equal(region_of(b), e.r);
        assert_int_equal(b[0], i & 0xff);
        assert_int_equal(b[47], i & 0xff);
    }
    region_stats_t s;
    assert_ok(region_stats(e.r, &s));
    assert_true(s.blocks >= 50000);
    /* Ordinary allocations never land in region memory, before or after the thread exits. */
    for (int i = 0; i < 10000; i++) {
        void *p = malloc(64);
        assert_null(region_of(p));
        free(p);
    }
    for (int i = 0; i < 50000; i++) assert_ok(region_free(e.r, e.blocks[i]));
    assert_ok(region_destroy(e.r));
    free(e.blocks);
}

/* ---- Pages abandoned by exiting threads, in many size classes ----
 *
 * A thread that ends abandons its pages of the region's heap; the first abandoned page of a heap in
 * an arena makes that heap's abandoned-page bitmaps (thirdparty/mimalloc patch 0001: they are no
 * longer made with the heap).  Later owners allocate from the same size classes (mimalloc may reclaim
 * the abandoned pages), statistics visit them, and destroy frees them with the bitmaps. */

#define ABANDON_SIZES 6
#define ABANDON_ROUNDS 3
static const size_t abandon_sizes[ABANDON_SIZES] = {16, 48, 200, 1000, 5000, 20000};
static const int abandon_counts[ABANDON_SIZES] = {777, 555, 333, 111, 37, 9};   /* pages left part-full */

typedef struct abandoning {
    region_t *r;
    unsigned char *blocks[ABANDON_ROUNDS * 2][ABANDON_SIZES][777];
    int round;
} abandoning_t;

static void fill_round(abandoning_t *a, int round) {
    for (int s = 0; s < ABANDON_SIZES; s++)
        for (int i = 0; i < abandon_counts[s]; i++) {
            unsigned char *b = region_alloc(a->r, abandon_sizes[s]);
            assert_non_null(b);
            memset(b, (round * 31 + s * 7 + i) & 0xff, abandon_sizes[s]);
            a->blocks[round][s][i] = b;
        }
}

static void *fill_then_exit(void *arg) {
    abandoning_t *a = arg;
    assert_ok(region_acquire(a->r));
    fill_round(a, a->round);
    assert_ok(region_release(a->r));
    return NULL;
}

static void abandoned_pages_are_kept_reused_and_freed(void **state) {
    (void)state;
    abandoning_t *a = calloc(1, sizeof *a);
    a->r = new_region("abandoning");
    assert_ok(region_release(a->r));
    for (a->round = 0; a->round < ABANDON_ROUNDS; a->round++) run_on_thread(fill_then_exit, a);
    assert_ok(region_acquire(a->r));
    for (int round = ABANDON_ROUNDS; round < 2 * ABANDON_ROUNDS; round++) fill_round(a, round);
    size_t expected = 0;
    for (int round = 0; round < 2 * ABANDON_ROUNDS; round++)
        for (int s = 0; s < ABANDON_SIZES; s++)
            for (int i = 0; i < abandon_counts[s]; i++, expected++) {
                unsigned char *b = a->blocks[round][s][i];
                assert_ptr_equal(region_of(b), a->r);
                assert_int_equal(b[0], (round * 31 + s * 7 + i) & 0xff);
                assert_int_equal(b[abandon_sizes[s] - 1], (round * 31 + s * 7 + i) & 0xff);
            }
    region_stats_t st;
    assert_ok(region_stats(a->r, &st));
    assert_int_equal(st.blocks, expected);
    /* Free every other block, so that pages of both kinds hold holes when destroy frees them. */
    for (int round = 0; round < 2 * ABANDON_ROUNDS; round++)
        for (int s = 0; s < ABANDON_SIZES; s++)
            for (int i = 0; i < abandon_counts[s]; i += 2) {
                assert_ok(region_free(a->r, a->blocks[round][s][i]));
                expected--;
            }
    assert_ok(region_stats(a->r, &st));
    assert_int_equal(st.blocks, expected);
    assert_ok(region_destroy(a->r));
    free(a);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(non_owner_is_refused),
        cmocka_unit_test(inline_path_refuses_a_thread_without_a_token),
        cmocka_unit_test(waiter_wakes_on_release),
        cmocka_unit_test(destroy_wakes_waiters_with_edead),
        cmocka_unit_test(timed_acquire_succeeds_when_free),
        cmocka_unit_test(hand_off_goes_to_the_named_thread),
        cmocka_unit_test(hand_off_publishes_writes_to_a_receiver_that_has_not_confirmed),
        cmocka_unit_test(stats_count_frees_made_by_the_next_owner),
        cmocka_unit_test(ping_pong_between_two_threads),
        cmocka_unit_test(thread_exit_keeps_region_blocks),
        cmocka_unit_test(abandoned_pages_are_kept_reused_and_freed),
    };
    return cmocka_run_group_tests_name("owner", tests, NULL, NULL);
}
