/* Independent collection of region objects: cycles, roots, handles as weak references, finalizers,
 * the cross-region check, and isolation from other regions. */
#include <stdlib.h>

#include "test-util.h"

typedef struct node {
    struct node *left, *right;
    void *foreign;              /* may point anywhere: other regions, malloc, raw region blocks */
    region_handle_t weak;
    int value;
} node_t;

static void trace_node(const void *obj, region_visit_fn visit, void *ctx) {
    const node_t *n = obj;
    visit(n->left, ctx);
    visit(n->right, ctx);
    visit(n->foreign, ctx);
}

static int finalized;
static long long finalized_values_sum;
static region_t *finalizer_region;
static region_status finalizer_collect_status;
static node_t *finalizer_allocated;

static void finalize_node(void *obj) {
    node_t *n = obj;
    finalized++;
    finalized_values_sum += n->value;
    /* All garbage of the collection is still intact while finalizers run (ASan would catch a read
     * of a freed neighbour here). */
    if (n->left) finalized_values_sum += n->left->value;
}

static const region_type_t node_type = {"node", trace_node, finalize_node};
static const region_type_t leaf_type = {"leaf", NULL, NULL};

static node_t *new_node(region_t *r, int value) {
    node_t *n = region_object_new(r, &node_type, sizeof *n);
    assert_non_null(n);
    n->value = value;
    return n;
}

static size_t live_objects(region_t *r) {
    region_stats_t s;
    assert_ok(region_stats(r, &s));
    return s.objects;
}

static void objects_are_zeroed_and_typed(void **state) {
    (void)state;
    region_t *r = new_region("typed");
    node_t *n = new_node(r, 0);
    assert_null(n->left);
    assert_ptr_equal(region_object_type(n), &node_type);
    void *raw = region_alloc(r, 64);
    assert_null(region_object_type(raw));
    int local;
    assert_null(region_object_type(&local));
    assert_null(region_object_type(NULL));
    assert_null(region_object_new(r, NULL, 8));
    assert_int_equal(region_last_status(), REGION_EINVAL);
    /* An object is not a raw block: region_free refuses it, region_object_free takes it. */
    assert_status(region_free(r, n), REGION_ENOTREGION);
    assert_status(region_object_free(r, raw), REGION_ENOTREGION);
    assert_ok(region_object_free(r, n));
    assert_null(region_object_type(n));
    assert_ok(region_destroy(r));
}

static void cycles_are_collected_roots_survive(void **state) {
    (void)state;
    region_t *r = new_region("cycles");
    node_t *root = new_node(r, 1);
    assert_ok(region_set_root(r, root));
    root->left = new_node(r, 2);
    root->left->left = root;                     /* reachable cycle */
    for (int i = 0; i < 100; i++) {              /* 100 unreachable 2-cycles and self-loops */
        node_t *a = new_node(r, 10), *b = new_node(r, 10);
        a->left = b;
        b->left = a;
        node_t *self = new_node(r, 10);
        self->right = self;
    }
    assert_int_equal(live_objects(r), 302);
    finalized = 0;
    region_collect_stats_t st;
    assert_ok(region_collect(r, 0, &st));
    assert_int_equal(st.visited, 2);
    assert_int_equal(st.freed, 300);
    assert_int_equal(st.finalized, 300);
    assert_int_equal(finalized, 300);
    assert_int_equal(live_objects(r), 2);
    assert_int_equal(root->left->value, 2);
    assert_ok(region_collect(r, 0, &st));
    assert_int_equal(st.freed, 0);               /* finalizers ran once */
    assert_int_equal(finalized, 300);
    region_stats_t s;
    assert_ok(region_stats(r, &s));
    assert_int_equal(s.collections, 2);
    assert_int_equal(s.collected, 300);
    assert_ok(region_destroy(r));
}

static void extra_roots_are_counted(void **state) {
    (void)state;
    region_t *r = new_region("roots");
    node_t *pinned = new_node(r, 5);
    assert_ok(region_add_root(r, pinned));
    assert_ok(region_add_root(r, pinned));
    assert_ok(region_remove_root(r, pinned));
    assert_ok(region_collect(r, 0, NULL));
    assert_int_equal(live_objects(r), 1);
    assert_ok(region_remove_root(r, pinned));
    assert_status(region_remove_root(r, pinned), REGION_EINVAL);
    assert_ok(region_collect(r, 0, NULL));
    assert_int_equal(live_objects(r), 0);
    int local;
    assert_status(region_add_root(r, &local), REGION_ENOTREGION);
    assert_status(region_set_root(r, region_alloc(r, 8)), REGION_ENOTREGION);
    assert_ok(region_set_root(r, NULL));
    assert_ok(region_destroy(r));
}

static void handles_are_weak(void **state) {
    (void)state;
    region_t *r = new_region("weak");
    node_t *root = new_node(r, 1);
    assert_ok(region_set_root(r, root));
    node_t *only_via_handle = new_node(r, 2);
    node_t *strong = new_node(r, 3);
    root->right = strong;
    assert_ok(region_handle_new(r, only_via_handle, &root->weak));
    region_handle_t to_strong;
    assert_ok(region_handle_new(r, strong, &to_strong));
    region_collect_stats_t st;
    assert_ok(region_collect(r, 0, &st));
    assert_int_equal(st.freed, 1);
    void *out;
    assert_status(region_handle_resolve(root->weak, &out), REGION_EFREED);
    assert_ok(region_handle_resolve(to_strong, &out));
    assert_ptr_equal(out, strong);
    assert_ok(region_destroy(r));
}

static void finalizer_that_collects(void *obj) {
    (void)obj;
    finalizer_collect_status = region_collect(finalizer_region, 0, NULL);
    finalizer_allocated = region_object_new(finalizer_region, &node_type, sizeof(node_t));
}

static const region_type_t reentrant_type = {"reentrant", NULL, finalizer_that_collects};

static void finalizer_cannot_reenter_but_may_allocate(void **state) {
    (void)state;
    region_t *r = new_region("reenter");
    finalizer_region = r;
    assert_non_null(region_object_new(r, &reentrant_type, 16));
    region_collect_stats_t st;
    assert_ok(region_collect(r, 0, &st));
    assert_int_equal(st.freed, 1);
    assert_int_equal(finalizer_collect_status, REGION_ESTATE);
    assert_non_null(finalizer_allocated);
    assert_ptr_equal(region_object_type(finalizer_allocated), &node_type);  /* survived */
    assert_int_equal(live_objects(r), 1);
    assert_ok(region_collect(r, 0, &st));   /* now it is ordinary garbage */
    assert_int_equal(live_objects(r), 0);
    assert_ok(region_destroy(r));
}

static void cross_region_reference_is_reported(void **state) {
    (void)state;
    region_t *a = new_region("home"), *b = new_region("away");
    node_t *root = new_node(a, 1);
    assert_ok(region_set_root(a, root));
    node_t *garbage = new_node(a, 9);
    (void)garbage;
    root->left = new_node(a, 2);
    root->left->foreign = new_node(b, 3);        /* strong reference into another region */
    assert_status(region_check(a), REGION_ECROSSREF);
    assert_error_mentions("type 'node'");
    assert_error_mentions("region 'away'");
    assert_error_mentions("region 'home'");
    /* A checked collection refuses and frees nothing; an unchecked one ignores the pointer. */
    assert_status(region_collect(a, REGION_COLLECT_CHECK, NULL), REGION_ECROSSREF);
    assert_int_equal(live_objects(a), 3);
    root->left->foreign = region_alloc(b, 8);      /* a raw block of b: also a violation */
    assert_status(region_check(a), REGION_ECROSSREF);
    assert_error_mentions("a raw block");
    assert_ok(region_collect(a, 0, NULL));
    assert_int_equal(live_objects(a), 2);
    assert_int_equal(live_objects(b), 1);        /* b untouched */
    root->left->foreign = malloc(8);             /* plain memory is not another region */
    assert_ok(region_check(a));
    free(root->left->foreign);
    root->left->foreign = NULL;
    assert_status(region_collect(a, 0x80, NULL), REGION_EINVAL);
    assert_ok(region_destroy(a));
    assert_ok(region_destroy(b));
}

/* region_check scans every live object, page by page: one violation among 20,000 objects (full pages
 * and pages with freed holes) is found wherever it is, in garbage too, and is gone once its holder is. */
static void check_finds_a_violation_anywhere(void **state) {
    (void)state;
    region_t *a = new_region("many"), *b = new_region("other");
    enum { COUNT = 20000 };
    node_t **nodes = malloc(COUNT * sizeof *nodes);
    assert_non_null(nodes);
    for (int i = 0; i < COUNT; i++) {
        nodes[i] = new_node(a, i);
        if (i) nodes[i]->left = nodes[i - 1];
        nodes[i]->foreign = region_alloc(a, 8);   /* a raw block of its own region: allowed */
    }
    assert_ok(region_set_root(a, nodes[COUNT - 1]));
    node_t *away = new_node(b, -1);
    assert_ok(region_check(a));
    int places[] = {0, 1, 4097, COUNT / 2, COUNT - 1};
    for (size_t k = 0; k < sizeof places / sizeof places[0]; k++) {
        void *kept = nodes[places[k]]->foreign;
        nodes[places[k]]->foreign = away;
        assert_status(region_check(a), REGION_ECROSSREF);
        assert_error_mentions("region 'other'");
        nodes[places[k]]->foreign = kept;
        assert_ok(region_check(a));
    }
    for (int i = 1; i < COUNT; i += 3) nodes[i]->right = NULL;   /* holes in every page below */
    for (int i = COUNT / 2 + 1; i < COUNT; i += 7) {
        nodes[i + 1 < COUNT ? i + 1 : i]->left = NULL;
        assert_ok(region_object_free(a, nodes[i]));
        nodes[i] = NULL;
    }
    node_t *garbage = new_node(a, 7);                 /* unreachable, not collected yet */
    garbage->foreign = away;
    assert_status(region_check(a), REGION_ECROSSREF);
    assert_ok(region_object_free(a, garbage));
    assert_ok(region_check(a));
    free(nodes);
    assert_ok(region_destroy(a));
    assert_ok(region_destroy(b));
}

/* The scan walks the free lists of the pages with free blocks several at a time (mimalloc patch
 * 0011): objects of twelve sizes, a fifth of them freed so that every page has holes, and a violation
 * planted in each size's first and last live object in turn is found; the live ones are all seen. */
static void check_finds_a_violation_in_any_page_with_holes(void **state) {
    (void)state;
    region_t *a = new_region("holes"), *b = new_region("elsewhere");
    enum { SIZES = 12, EACH = 3000 };
    node_t **live = malloc(SIZES * EACH * sizeof *live);
    assert_non_null(live);
    size_t count = 0;
    node_t *prev = NULL;
    for (int size = 0; size < SIZES; size++) {
        for (int i = 0; i < EACH; i++) {
            node_t *n = region_object_new(a, &node_type, sizeof(node_t) + 16 * (size_t)size);
            assert_non_null(n);
            n->value = size;
            if (i % 5 == 0) {
                assert_ok(region_object_free(a, n));
                continue;
            }
            n->left = prev;
            live[count++] = prev = n;
        }
    }
    assert_ok(region_set_root(a, prev));
    assert_int_equal(live_objects(a), count);
    node_t *away = new_node(b, -1);
    assert_ok(region_check(a));
    for (int size = 0; size < SIZES; size++) {
        size_t first = (size_t)size * (EACH - EACH / 5), places[] = {first, first + EACH - EACH / 5 - 1};
        for (int k = 0; k < 2; k++) {
            node_t *n = live[places[k]];
            assert_int_equal(n->value, size);
            n->foreign = away;
            assert_status(region_check(a), REGION_ECROSSREF);
            n->foreign = NULL;
            assert_ok(region_check(a));
        }
    }
    assert_ok(region_collect(a, 0, NULL));   /* all reachable from the root: nothing goes */
    assert_int_equal(live_objects(a), count);
    live[count / 2]->left = NULL;             /* the first half is garbage now */
    assert_ok(region_collect(a, 0, NULL));
    assert_int_equal(live_objects(a), count - count / 2);
    free(live);
    assert_ok(region_destroy(a));
    assert_ok(region_destroy(b));
}

/* Objects allocated by one thread, then freed by the region's collection in another it was handed to:
 * mimalloc counts those blocks in use until the allocating thread's theap collects them, so their
 * page, every block handed out in place (mimalloc patch 0018), comes to region_check's scan whole,
 * freed blocks included.  The check must take them for freed (their stamp), and read them without a
 * report: the API fuzzer's first finding of that kind (ASan, use-after-poison in check_block). */
typedef struct handed {
    region_t *r;
    region_status acquired, collected, checked, released;
    size_t freed;
} handed_t;

static void *collect_and_check_there(void *arg) {
    handed_t *h = arg;
    h->acquired = region_acquire(h->r);
    region_collect_stats_t st = {0};
    h->collected = region_collect(h->r, 0, &st);
    h->freed = st.freed;
    h->checked = region_check(h->r);
    h->released = region_release(h->r);
    return NULL;
}

static void check_after_a_collection_in_another_thread(void **state) {
    (void)state;
    region_t *r = new_region("handed");
    node_t *root = new_node(r, 1), *prev = root;
    assert_ok(region_set_root(r, root));
    for (int i = 0; i < 200; i++) {   /* every other node garbage, in the same pages as the live ones */
        node_t *n = new_node(r, i);
        if (i % 2 == 0) {
            prev->left = n;
            prev = n;
        }
    }
    assert_ok(region_check(r));
    assert_ok(region_release(r));
    handed_t h = {.r = r};
    run_on_thread(collect_and_check_there, &h);
    assert_ok(h.acquired);
    assert_ok(h.collected);
    assert_int_equal(h.freed, 100);
    assert_ok(h.checked);
    assert_ok(h.released);
    assert_ok(region_acquire(r));
    assert_int_equal(live_objects(r), 101);
    assert_ok(region_check(r));
    assert_ok(region_destroy(r));
}

static void collection_touches_only_its_region(void **state) {
    (void)state;
    region_t *small = new_region("small"), *big = new_region("big");
    for (int i = 0; i < 100000; i++) new_node(big, i);   /* all garbage, but in another region */
    for (int i = 0; i < 10; i++) new_node(small, i);
    region_collect_stats_t st;
    assert_ok(region_collect(small, 0, &st));
    assert_int_equal(st.freed, 10);
    assert_int_equal(live_objects(big), 100000);
    assert_ok(region_destroy(big));                       /* bulk: no finalizers run */
    assert_ok(region_destroy(small));
}

static void leaves_and_deep_chains(void **state) {
    (void)state;
    region_t *r = new_region("deep");
    node_t *root = new_node(r, 0);
    assert_ok(region_set_root(r, root));
    node_t *tail = root;
    for (int i = 0; i < 200000; i++) {             /* deep enough to need the explicit stack */
        tail->left = new_node(r, i);
        tail = tail->left;
    }
    tail->foreign = region_object_new(r, &leaf_type, 8);
    region_collect_stats_t st;
    assert_ok(region_collect(r, 0, &st));
    assert_int_equal(st.visited, 200002);   /* root + chain + leaf */
    assert_int_equal(st.freed, 0);
    root->left = NULL;
    finalized = 0;
    assert_ok(region_collect(r, 0, &st));
    assert_int_equal(st.freed, 200001);
    assert_int_equal(finalized, 200000);
    assert_ok(region_destroy(r));
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(objects_are_zeroed_and_typed),
        cmocka_unit_test(cycles_are_collected_roots_survive),
        cmocka_unit_test(extra_roots_are_counted),
        cmocka_unit_test(handles_are_weak),
        cmocka_unit_test(finalizer_cannot_reenter_but_may_allocate),
        cmocka_unit_test(cross_region_reference_is_reported),
        cmocka_unit_test(check_finds_a_violation_anywhere),
        cmocka_unit_test(check_finds_a_violation_in_any_page_with_holes),
        cmocka_unit_test(check_after_a_collection_in_another_thread),
        cmocka_unit_test(collection_touches_only_its_region),
        cmocka_unit_test(leaves_and_deep_chains),
    };
    return cmocka_run_group_tests_name("collect", tests, NULL, NULL);
}
