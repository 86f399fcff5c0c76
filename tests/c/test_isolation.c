/* The isolation scan split between two threads (region/isolation.c and region-internal.h, SPLIT
 * SCANS; the helper thread, region/helper.c): a split scan counts what a whole one counts, whether the
 * helper takes part or not, stops when either side stops, and leaves every page to its caller when the
 * helper is busy or not allowed.  White-box: compiled with libregion's sources.  In the 'threads' suite, so the
 * ThreadSanitizer build runs the helper's hand-offs. */
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include "test-util.h"
#include "region-host.h"

/* A region of BLOCKS blocks in its object heap, each a "node": word 0 points to another node, or
 * (every OUT_EVERY-th) to one of the outside targets; word 1 is STOP for a node a visitor stops at. */
#define BLOCKS 150000
#define OUT_EVERY 10
#define STOP ((uintptr_t)0x5709)
static uint64_t outside_targets[3];

typedef struct node_region {
    region_t *r;
    uintptr_t **nodes;
} node_region_t;

static node_region_t make_nodes(void) {
    node_region_t n = {.r = new_region("nodes"), .nodes = malloc(BLOCKS * sizeof(uintptr_t *))};
    assert_non_null(n.nodes);
    for (size_t i = 0; i < BLOCKS; i++) {
        n.nodes[i] = rhost_alloc(n.r, true, i % 3 ? 48 : 128);   /* two size classes: two sets of pages */
        assert_non_null(n.nodes[i]);
    }
    for (size_t i = 0; i < BLOCKS; i++) {
        n.nodes[i][0] = i % OUT_EVERY ? (uintptr_t)n.nodes[(i * 7919) % BLOCKS] : (uintptr_t)&outside_targets[i % 3];
        n.nodes[i][1] = 0;
    }
    return n;
}

static void drop_nodes(node_region_t *n) {
    assert_ok(region_destroy(n->r));
    free(n->nodes);
}

/* A visitor's own count, and the riso_t it reports to. */
typedef struct tally {
    riso_t *s;
    size_t blocks;
} tally_t;

static bool visit_node(void *block, size_t usable, void *arg) {
    (void)usable;
    tally_t *t = arg;
    const uintptr_t *node = block;
    if (node[1] == STOP) return false;
    t->blocks++;
    riso_reference(t->s, (const void *)node[0]);
    return true;
}

static bool visit_page(char *first, size_t stride, size_t usable, size_t count, void *arg) {
    for (size_t i = 0; i < count; i++, first += stride)
        if (!visit_node(first, usable, arg)) return false;
    return true;
}

/* What a scan found: blocks visited, references in, and each outside target's count. */
typedef struct found {
    bool finished, split;
    size_t blocks;
    uint64_t internal, outside[3], other_outside;
} found_t;

static found_t scan(region_t *r, bool split) {
    riso_t s, shard;
    found_t f = {0};
    assert_ok(riso_begin(&s, r));
    tally_t first = {&s, 0}, second = {&shard, 0};
    riso_shard(&shard, &s);
    riso_split_t halves = {.shard = &shard, .visitor = {visit_page, NULL, &second}};
    f.finished = riso_scan_split(&s, &(riso_visitor_t){visit_page, visit_node, &first}, split ? &halves : NULL);
    f.split = split && halves.used;
    f.blocks = first.blocks + (f.split ? second.blocks : 0);
    f.internal = s.internal;
    rptrmap_foreach(&s.outside, cell) {
        bool ours = false;
        for (int k = 0; k < 3; k++)
            if (cell->key == &outside_targets[k]) f.outside[k] += cell->value, ours = true;
        if (!ours) f.other_outside += cell->value;
    }
    riso_end(&s);
    return f;
}

static void a_split_scan_counts_what_a_whole_one_counts(void **state) {
    (void)state;
    node_region_t n = make_nodes();
    found_t whole = scan(n.r, false);
    assert_true(whole.finished);
    assert_false(whole.split);
    assert_int_equal(whole.blocks, BLOCKS);
    assert_int_equal(whole.internal, BLOCKS - BLOCKS / OUT_EVERY);
    assert_int_equal(whole.outside[0] + whole.outside[1] + whole.outside[2], BLOCKS / OUT_EVERY);
    assert_int_equal(whole.other_outside, 0);
    for (unsigned threads = 1; threads <= 2; threads++) {
        assert_ok(region_set_scan_threads(threads));
        assert_int_equal(region_scan_threads(), threads);
        uint64_t splits = riso_splits, helped = riso_splits_helped;
        found_t halves = scan(n.r, true);
        assert_true(halves.finished);
        assert_true(halves.split);   /* 150,000 blocks: over RISO_SPLIT_BYTES of whole pages */
        assert_int_equal(riso_splits, splits + 1);
        assert_int_equal(riso_splits_helped, helped + (threads == 2));
        assert_int_equal(halves.blocks, whole.blocks);
        assert_int_equal(halves.internal, whole.internal);
        for (int k = 0; k < 3; k++) assert_int_equal(halves.outside[k], whole.outside[k]);
        assert_int_equal(halves.other_outside, 0);
    }
    assert_ok(region_set_scan_threads(0));
    drop_nodes(&n);
}

static void a_small_heap_is_scanned_whole(void **state) {
    (void)state;
    region_t *r = new_region("small");
    uintptr_t *node = rhost_alloc(r, true, 48);
    node[0] = (uintptr_t)node;
    node[1] = 0;
    found_t f = scan(r, true);
    assert_true(f.finished);
    assert_false(f.split);
    assert_int_equal(f.blocks, 1);
    assert_int_equal(f.internal, 1);
    assert_ok(region_destroy(r));
}

/* A stop at the first node made, or at the last: pages far apart, whichever half each lands in. */
static void a_stop_in_either_half_stops_the_scan(void **state) {
    (void)state;
    node_region_t n = make_nodes();
    size_t stops[] = {0, BLOCKS - 1};
    for (unsigned threads = 1; threads <= 2; threads++) {
        assert_ok(region_set_scan_threads(threads));
        for (size_t k = 0; k < 2; k++) {
            n.nodes[stops[k]][1] = STOP;
            found_t f = scan(n.r, true);
            assert_false(f.finished);
            assert_true(f.split);
            assert_true(f.blocks < BLOCKS);
            n.nodes[stops[k]][1] = 0;
        }
    }
    assert_ok(region_set_scan_threads(0));
    drop_nodes(&n);
}

/* A job that holds the helper until released. */
static int held;
static void hold_helper(void *arg) {
    (void)arg;
    while (__atomic_load_n(&held, __ATOMIC_ACQUIRE)) usleep(100);
}

static void a_busy_helper_leaves_the_half_to_the_caller(void **state) {
    (void)state;
    node_region_t n = make_nodes();
    assert_ok(region_set_scan_threads(2));
    __atomic_store_n(&held, 1, __ATOMIC_RELEASE);
    assert_true(rhelper_post(hold_helper, NULL));
    assert_false(rhelper_post(hold_helper, NULL));   /* one job at a time */
    uint64_t helped = riso_splits_helped;
    found_t f = scan(n.r, true);
    assert_true(f.finished && f.split);
    assert_int_equal(f.blocks, BLOCKS);
    assert_int_equal(riso_splits_helped, helped);   /* the caller ran both halves */
    __atomic_store_n(&held, 0, __ATOMIC_RELEASE);
    rhelper_finish();
    f = scan(n.r, true);
    assert_int_equal(riso_splits_helped, helped + 1);   /* free again */
    assert_ok(region_set_scan_threads(0));
    drop_nodes(&n);
}

static void scan_threads_are_checked(void **state) {
    (void)state;
    assert_status(region_set_scan_threads(3), REGION_EINVAL);
    assert_error_mentions("0 (automatic), 1 or 2");
    assert_ok(region_set_scan_threads(1));
    assert_int_equal(region_scan_threads(), 1);
    assert_ok(region_set_scan_threads(0));
    unsigned automatic = region_scan_threads();
    assert_true(automatic == 1 || automatic == 2);
}

/* The child of fork() has no helper thread: its first split scan starts its own.  Not under
 * ThreadSanitizer, which does not support threads started after a multithreaded fork. */
static void a_forked_child_starts_its_own_helper(void **state) {
    (void)state;
#if defined(__SANITIZE_THREAD__)
    skip();
#else
    node_region_t n = make_nodes();
    assert_ok(region_set_scan_threads(2));
    found_t before = scan(n.r, true);   /* the parent's helper is started */
    pid_t child = fork();
    assert_true(child >= 0);
    if (child == 0) {
        uint64_t helped = riso_splits_helped;
        found_t f = scan(n.r, true);
        _exit(f.finished && f.split && f.blocks == before.blocks && riso_splits_helped == helped + 1 ? 0 : 1);
    }
    int status;
    assert_int_equal(waitpid(child, &status, 0), child);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
    assert_ok(region_set_scan_threads(0));
    drop_nodes(&n);
#endif
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(a_split_scan_counts_what_a_whole_one_counts),
        cmocka_unit_test(a_small_heap_is_scanned_whole),
        cmocka_unit_test(a_stop_in_either_half_stops_the_scan),
        cmocka_unit_test(a_busy_helper_leaves_the_half_to_the_caller),
        cmocka_unit_test(scan_threads_are_checked),
        cmocka_unit_test(a_forked_child_starts_its_own_helper),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
