/* fuzz_api.c - libFuzzer target: sequences of public API calls checked against a model of what
 * include/region.h promises.
 *
 * Each input is a program: every op reads its arguments from the input bytes.  The ops create and
 * destroy regions; allocate, free, realloc and measure blocks through valid, interior, freed and
 * foreign pointers; make objects whose trace callbacks and finalizers call back into the API;
 * collect and check; make, forge and resolve handles; and move ownership between the main thread and
 * a helper thread (acquire, try-acquire, release, hand-off).  The model predicts every status and
 * every pointer the library returns; a difference, or anything the sanitizers see, aborts with the
 * op and the library's message.  All regions are destroyed at the end of each input.
 *
 * Build: meson setup build-fuzz with CC=clang-14 and -Db_sanitize=address,undefined (scripts/test.sh
 * does).  Run: build-fuzz/tests/fuzz/fuzz_api -max_total_time=60 (docs/design.md, "Fuzzing").
 */
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sanitizer/common_interface_defs.h>   /* __sanitizer_set_death_callback: the build is ASan's */

#include "region.h"

/* ---- Input ---- */

typedef struct input {
    const uint8_t *data;
    size_t size, at;
} input_t;

static input_t in;

static uint8_t byte(void) { return in.at < in.size ? in.data[in.at++] : 0; }
static unsigned below(unsigned n) { return n ? byte() % n : 0; }
static bool chance(unsigned percent) { return byte() % 100 < percent; }

/* ---- Failing ---- */

static char op_trace[8192];   /* the ops of this input, for the report */

static void trace_op(const char *fmt, ...) {
    size_t used = strlen(op_trace);
    if (used > sizeof op_trace - 200) return;
    va_list args;
    va_start(args, fmt);
    vsnprintf(op_trace + used, sizeof op_trace - used, fmt, args);
    va_end(args);
}

#define expect(cond, ...)                                                                      \
    do {                                                                                       \
        if (!(cond)) {                                                                         \
            fprintf(stderr, "fuzz_api: %s:%d: expected %s\n  ", __FILE__, __LINE__, #cond);    \
            fprintf(stderr, __VA_ARGS__);                                                      \
            fprintf(stderr, "\n  last error: %s\n  ops: %s\n", region_last_error(), op_trace); \
            abort();                                                                           \
        }                                                                                      \
    } while (0)

#define expect_status(got, want)                                                               \
    expect((got) == (want), "status %s, wanted %s", region_strerror(got), region_strerror(want))

/* ---- The model ---- */

enum { NOBODY, MAIN, HELPER };
#define MAX_REGIONS 4
#define MAX_BLOCKS 48
#define MAX_OBJECTS 40
#define MAX_ROOTS 8
#define MAX_HANDLES 64
#define MAX_FREED 16
#define CANARY 0x5eedf00du

/* A fuzzed object: three pointers anywhere, what its callbacks try, and a canary. */
typedef struct fobj {
    void *child[3];
    uint32_t canary;              /* CANARY ^ its own address while alive */
    uint8_t trace_op, finalize_op;
    uint8_t finalized;
} fobj_t;

typedef struct mblock { char *p; size_t size; uint8_t fill; } mblock_t;
typedef struct mobject { fobj_t *o; bool traced; } mobject_t;

typedef struct mregion {
    region_t *r;
    uint64_t id;
    bool alive;
    int owner;                    /* NOBODY, MAIN or HELPER */
    bool handed;                  /* handed to owner, not yet confirmed */
    mblock_t blocks[MAX_BLOCKS];
    int nblocks;
    mobject_t objects[MAX_OBJECTS];
    int nobjects;
    void *root;
    void *extra_roots[MAX_ROOTS];
    int nroots;
} mregion_t;

typedef struct mhandle {
    region_handle_t h;
    int region;                   /* model index */
    uint64_t region_id;
    void *target;                 /* NULL once freed */
} mhandle_t;

static mregion_t regions[MAX_REGIONS];
static mhandle_t handles[MAX_HANDLES];
static int nhandles;
static bool handles_overflowed;   /* a handle was made that the model had no room for */
static void *freed[MAX_FREED];    /* recently freed blocks and objects: stale pointers to try */
static int nfreed;
static uint64_t dead_ids[8];      /* ids of destroyed regions */
static int ndead;
static bool block_checks;
static char foreign[256] __attribute__((aligned(16)));

static const region_type_t node_type, leaf_type;

/* ---- The helper thread: runs one job at a time for the main thread ---- */

typedef void (*job_fn)(void *arg);
static struct {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    job_fn job;
    void *arg;
    bool done;
    pthread_t thread;
} helper = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, NULL, NULL, false, 0};
static uint64_t token_of[3];      /* MAIN and HELPER thread tokens */
static _Thread_local int self_actor;

static void *helper_main(void *unused) {
    (void)unused;
    self_actor = HELPER;
    pthread_mutex_lock(&helper.lock);
    token_of[HELPER] = region_thread_token();
    for (;;) {
        while (!helper.job) pthread_cond_wait(&helper.cond, &helper.lock);
        job_fn job = helper.job;
        pthread_mutex_unlock(&helper.lock);
        job(helper.arg);
        pthread_mutex_lock(&helper.lock);
        helper.job = NULL;
        helper.done = true;
        pthread_cond_broadcast(&helper.cond);
    }
    return NULL;
}

/* Runs job(arg) on actor's thread and waits: the mutex orders it with the main thread, as a real
 * program would order its threads' use of the model. */
static void run_as(int actor, job_fn job, void *arg) {
    if (actor == MAIN) {
        job(arg);
        return;
    }
    pthread_mutex_lock(&helper.lock);
    helper.job = job;
    helper.arg = arg;
    helper.done = false;
    pthread_cond_broadcast(&helper.cond);
    while (!helper.done) pthread_cond_wait(&helper.cond, &helper.lock);
    pthread_mutex_unlock(&helper.lock);
}

/* ---- Model queries ---- */

static mblock_t *block_at(mregion_t *m, const void *p) {
    for (int i = 0; i < m->nblocks; i++)
        if (m->blocks[i].p == p) return &m->blocks[i];
    return NULL;
}

static mobject_t *object_at(mregion_t *m, const void *p) {
    for (int i = 0; i < m->nobjects; i++)
        if (m->objects[i].o == p) return &m->objects[i];
    return NULL;
}

static mregion_t *region_owning_object(const void *p) {
    for (int i = 0; i < MAX_REGIONS; i++)
        if (regions[i].alive && object_at(&regions[i], p)) return &regions[i];
    return NULL;
}

static bool owns(mregion_t *m, int actor) { return m->owner == actor; }

static void remember_freed(void *p) {
    if (nfreed == MAX_FREED) memmove(freed, freed + 1, (MAX_FREED - 1) * sizeof *freed), nfreed--;
    freed[nfreed++] = p;
}

static void handles_lose(const void *target) {
    for (int i = 0; i < nhandles; i++)
        if (handles[i].target == target) handles[i].target = NULL;
}

static void handles_follow(const void *from, void *to) {
    for (int i = 0; i < nhandles; i++)
        if (handles[i].target == from) handles[i].target = to;
}

static void drop_root_refs(mregion_t *m, const void *o) {
    if (m->root == o) m->root = NULL;
    int kept = 0;
    for (int i = 0; i < m->nroots; i++)
        if (m->extra_roots[i] != o) m->extra_roots[kept++] = m->extra_roots[i];
    m->nroots = kept;
}

static void forget_object(mregion_t *m, int index) {
    fobj_t *o = m->objects[index].o;
    handles_lose(o);
    drop_root_refs(m, o);
    remember_freed(o);
    m->objects[index] = m->objects[--m->nobjects];
}

static void forget_block(mregion_t *m, mblock_t *b) {
    handles_lose(b->p);
    remember_freed(b->p);
    *b = m->blocks[--m->nblocks];
}

/* ---- Pointers to try ---- */

typedef enum { P_BLOCK, P_INTERIOR, P_FREED, P_OTHER_BLOCK, P_OBJECT, P_OBJECT_INTERIOR, P_FOREIGN,
               P_NULL, P_WILD, P_KINDS } pointer_kind_t;

static void *pick_pointer(mregion_t *m, pointer_kind_t *kind_out) {
    pointer_kind_t kind = (pointer_kind_t)below(P_KINDS);
    if (!block_checks && (kind == P_INTERIOR || kind == P_FREED)) kind = P_BLOCK;   /* undefined then */
    *kind_out = kind;
    switch (kind) {
    case P_BLOCK:
        return m->nblocks ? m->blocks[below(m->nblocks)].p : NULL;
    case P_INTERIOR: {   /* strictly inside a block of at least 16 bytes */
        if (!m->nblocks) return NULL;
        mblock_t *b = &m->blocks[below(m->nblocks)];
        return b->size >= 16 ? b->p + 8 * (1 + below((unsigned)(b->size / 8 - 1))) : b->p;
    }
    case P_FREED:
        return nfreed ? freed[below(nfreed)] : NULL;
    case P_OTHER_BLOCK:
        for (int i = 0; i < MAX_REGIONS; i++)
            if (regions[i].alive && &regions[i] != m && regions[i].nblocks) return regions[i].blocks[0].p;
        return foreign;
    case P_OBJECT:
        return m->nobjects ? (void *)m->objects[below(m->nobjects)].o : NULL;
    case P_OBJECT_INTERIOR:
        return m->nobjects ? (char *)m->objects[below(m->nobjects)].o + 8 * (1 + below(3)) : NULL;
    case P_FOREIGN:
        return foreign + 16 * below(8);
    case P_WILD:
        return (void *)(uintptr_t)(0x1000 * (1 + byte()));
    default:
        return NULL;
    }
}

/* A pointer to store in an object: anything at all, objects of the same region most often. */
static void *pick_child(mregion_t *m) {
    if (chance(50) && m->nobjects) return m->objects[below(m->nobjects)].o;
    pointer_kind_t kind;
    return pick_pointer(m, &kind);
}

static mregion_t *pick_region(void) {
    int i = (int)below(MAX_REGIONS);
    return regions[i].alive ? &regions[i] : NULL;
}

static int other(int actor) { return actor == MAIN ? HELPER : MAIN; }

/* Usually the owner (so that ops get past the owner check), sometimes the other thread. */
static int pick_actor(mregion_t *m) {
    int owner = m && m->owner != NOBODY ? m->owner : MAIN;
    return chance(80) ? owner : other(owner);
}

/* ---- Ops: each is a job run on the acting thread ---- */

typedef struct op {
    mregion_t *m;
    int actor;
    size_t size;
    void *p;
    pointer_kind_t kind;
    unsigned variant;
} op_t;

static size_t pick_size(void) {
    switch (below(10)) {
    case 0: return 0;
    case 1: return REGION_MAX_BLOCK_SIZE + 1 + below(100);
    case 2: return (size_t)100 << 20;                 /* more than the 64 MiB arena */
    case 3: return 1024 + 1024 * below(64);           /* up to 64 KiB */
    default: return 1 + below(200);
    }
}

/* What an allocation of size bytes in an owned region must give. */
static region_status alloc_expectation(size_t size) {
    if (size > REGION_MAX_BLOCK_SIZE) return REGION_EINVAL;
    if (size >= ((size_t)64 << 20)) return REGION_EFULL;
    return REGION_OK;
}

/* Whether the n bytes at p all equal value: one libc call instead of a loop the coverage
 * instrumentation would make slow (teardown checks every block). */
static bool all_bytes(const char *p, size_t n, uint8_t value) {
    return n == 0 || ((uint8_t)p[0] == value && memcmp(p, p + 1, n - 1) == 0);
}

static void expect_no_overlap(mregion_t *m, const char *p, size_t size, const void *except) {
    for (int i = 0; i < m->nblocks; i++) {
        const mblock_t *b = &m->blocks[i];
        if (b->p == except) continue;
        expect(p + size <= b->p || p >= b->p + b->size, "new block %p+%zu overlaps live block %p+%zu",
               (void *)p, size, (void *)b->p, b->size);
    }
}

static void do_alloc(void *arg) {
    op_t *op = arg;
    mregion_t *m = op->m;
    size_t size = op->size;
    char *p;
    if (op->variant == 0) p = region_alloc(m->r, size);
    else if (op->variant == 1) p = region_zalloc(m->r, size);
    else if (op->variant == 2) p = region_calloc(m->r, 2, size / 2 + 1), size = 2 * (size / 2 + 1);
    else p = region_calloc(m->r, SIZE_MAX / 2, 4), size = SIZE_MAX;   /* overflows */
    region_status want = op->variant == 3 ? REGION_EINVAL   /* the overflow is found first */
                         : !owns(m, self_actor) ? REGION_ENOTOWNER : alloc_expectation(size);
    if (want != REGION_OK) {
        expect(p == NULL, "allocation of %zu bytes gave %p", size, (void *)p);
        expect_status(region_last_status(), want);
        return;
    }
    expect(p != NULL, "allocation of %zu bytes failed", size);
    expect(region_of(p) == m->r, "block %p is not in its region", (void *)p);
    expect((uintptr_t)p % (size <= 8 ? 8 : 16) == 0, "block %p of %zu bytes misaligned", (void *)p, size);
    expect(region_usable_size(m->r, p) >= size, "usable size below %zu", size);
    if (op->variant >= 1) expect(all_bytes(p, size, 0), "zalloc/calloc block not zeroed");
    expect_no_overlap(m, p, size, NULL);
    if (m->nblocks == MAX_BLOCKS) {
        expect_status(region_free(m->r, p), REGION_OK);
        return;
    }
    uint8_t fill = (uint8_t)(1 + m->nblocks);
    memset(p, fill, size);
    m->blocks[m->nblocks++] = (mblock_t){p, size, fill};
}

static void do_free(void *arg) {
    op_t *op = arg;
    mregion_t *m = op->m;
    region_status got = region_free(m->r, op->p);
    mblock_t *b = block_at(m, op->p);
    region_status want = !op->p ? REGION_OK : !owns(m, self_actor) ? REGION_ENOTOWNER
                         : b ? REGION_OK : REGION_ENOTREGION;
    expect_status(got, want);
    if (got == REGION_OK && b) forget_block(m, b);
}

static void do_realloc(void *arg) {
    op_t *op = arg;
    mregion_t *m = op->m;
    mblock_t *b = op->p ? block_at(m, op->p) : NULL;
    char *q = region_realloc(m->r, op->p, op->size);
    region_status want = !owns(m, self_actor) ? REGION_ENOTOWNER
                         : op->size > REGION_MAX_BLOCK_SIZE ? REGION_EINVAL
                         : op->p && !b ? REGION_ENOTREGION : alloc_expectation(op->size);
    if (want != REGION_OK) {
        expect(q == NULL, "realloc gave %p", (void *)q);
        expect_status(region_last_status(), want);
        if (b) expect(all_bytes(b->p, b->size, b->fill), "a failed realloc changed the block");
        return;
    }
    expect(q != NULL && region_of(q) == m->r, "realloc left the region: %p", (void *)q);
    if (!b) {   /* realloc(NULL) allocates */
        if (m->nblocks == MAX_BLOCKS) { expect_status(region_free(m->r, q), REGION_OK); return; }
        expect_no_overlap(m, q, op->size, NULL);
        memset(q, 0x77, op->size);
        m->blocks[m->nblocks++] = (mblock_t){q, op->size, 0x77};
        return;
    }
    size_t kept = b->size < op->size ? b->size : op->size;
    expect(all_bytes(q, kept, b->fill), "realloc lost the block's bytes");
    expect_no_overlap(m, q, op->size, b->p);
    if (q != b->p) {
        handles_follow(b->p, q);
        remember_freed(b->p);
    }
    memset(q, b->fill, op->size);
    b->p = q;
    b->size = op->size;
}

static void do_usable_size(void *arg) {
    op_t *op = arg;
    mregion_t *m = op->m;
    mblock_t *b = block_at(m, op->p);
    size_t got = region_usable_size(m->r, op->p);
    if (owns(m, self_actor) && b) expect(got >= b->size, "usable size %zu below %zu", got, b->size);
    else expect(got == 0, "usable size %zu of a non-block (kind %d) or by a non-owner", got, op->kind);
}

static void do_object_new(void *arg) {
    op_t *op = arg;
    mregion_t *m = op->m;
    bool leaf = op->variant & 1;
    size_t size = sizeof(fobj_t) + 16 * below(4);
    fobj_t *o = region_object_new(m->r, leaf ? &leaf_type : &node_type, size);
    if (!owns(m, self_actor)) {
        expect(o == NULL, "object_new by a non-owner");
        expect_status(region_last_status(), REGION_ENOTOWNER);
        return;
    }
    expect(o != NULL && region_of(o) == m->r && (uintptr_t)o % 16 == 0, "object_new gave %p", (void *)o);
    expect(region_object_type(o) == (leaf ? &leaf_type : &node_type), "object type");
    for (int i = 0; i < 3; i++) expect(o->child[i] == NULL, "object not zeroed");
    if (m->nobjects == MAX_OBJECTS) {
        expect_status(region_object_free(m->r, o), REGION_OK);
        return;
    }
    for (int i = 0; i < 3; i++) o->child[i] = chance(60) ? pick_child(m) : NULL;
    o->canary = CANARY ^ (uint32_t)(uintptr_t)o;
    o->trace_op = chance(15) ? (uint8_t)(1 + below(11)) : 0;
    o->finalize_op = chance(30) ? (uint8_t)(1 + below(11)) : 0;
    m->objects[m->nobjects++] = (mobject_t){o, !leaf};
}

static void do_object_free(void *arg) {
    op_t *op = arg;
    mregion_t *m = op->m;
    region_status got = region_object_free(m->r, op->p);
    mobject_t *mo = object_at(m, op->p);
    region_status want = !owns(m, self_actor) ? REGION_ENOTOWNER : mo ? REGION_OK : REGION_ENOTREGION;
    expect_status(got, want);
    if (got == REGION_OK) forget_object(m, (int)(mo - m->objects));
}

static void do_roots(void *arg) {
    op_t *op = arg;
    mregion_t *m = op->m;
    bool owner = owns(m, self_actor);
    bool object = object_at(m, op->p) != NULL;
    region_status got, want;
    switch (op->variant) {
    case 0:
        got = region_set_root(m->r, op->p);
        want = !owner ? REGION_ENOTOWNER : !op->p || object ? REGION_OK : REGION_ENOTREGION;
        expect_status(got, want);
        if (got == REGION_OK) m->root = op->p;
        break;
    case 1:
        got = region_add_root(m->r, op->p);
        want = !owner ? REGION_ENOTOWNER : object ? REGION_OK : REGION_ENOTREGION;
        expect_status(got, want);
        if (got == REGION_OK && m->nroots < MAX_ROOTS) m->extra_roots[m->nroots++] = op->p;
        else if (got == REGION_OK) expect_status(region_remove_root(m->r, op->p), REGION_OK);
        break;
    default: {
        got = region_remove_root(m->r, op->p);
        int at = -1;
        for (int i = 0; i < m->nroots; i++) if (m->extra_roots[i] == op->p) at = i;
        want = !owner ? REGION_ENOTOWNER : at >= 0 ? REGION_OK : REGION_EINVAL;
        expect_status(got, want);
        if (got == REGION_OK) m->extra_roots[at] = m->extra_roots[--m->nroots];
    }
    }
    if (owner) expect(region_root(m->r) == m->root, "root %p, model %p", region_root(m->r), m->root);
}

/* ---- Collection: the model's prediction ---- */

static bool reachable[MAX_OBJECTS];

static void mark_from(mregion_t *m, const void *p) {
    for (int i = 0; i < m->nobjects; i++) {
        if (m->objects[i].o != p || reachable[i]) continue;
        reachable[i] = true;
        if (m->objects[i].traced)
            for (int c = 0; c < 3; c++) mark_from(m, m->objects[i].o->child[c]);
    }
}

/* Marks what the collector must keep; true if a reachable traced object (or, with garbage_too, any
 * traced object) points into another live region: what REGION_COLLECT_CHECK refuses (reachable
 * objects) and region_check (every live object, garbage included). */
static bool predict(mregion_t *m, bool garbage_too) {
    memset(reachable, 0, sizeof reachable);
    mark_from(m, m->root);
    for (int i = 0; i < m->nroots; i++) mark_from(m, m->extra_roots[i]);
    for (int i = 0; i < m->nobjects; i++) {
        if ((!reachable[i] && !garbage_too) || !m->objects[i].traced) continue;
        for (int c = 0; c < 3; c++) {
            region_t *target = region_of(m->objects[i].o->child[c]);
            if (target && target != m->r) return true;
        }
    }
    return false;
}

/* The region being collected or checked, and what its callbacks found. */
static mregion_t *collecting;
static bool collecting_frees;     /* region_collect (finalizers may run), not region_check */
static int finalizers_ran;
static int callback_surprises;

/* Calls back into the API from a trace callback (finalizing false) or a finalizer; checks the
 * status the header promises for each.  o is the object being traced or finalized. */
static void callback_op(fobj_t *o, unsigned what, bool finalizing) {
    mregion_t *m = collecting;
    region_t *r = m->r;
    region_status got;
    switch (what) {
    case 1: got = region_destroy(r); break;
    case 2: got = region_object_free(r, o); break;
    case 3: got = region_collect(r, 0, NULL); break;
    case 4: got = region_check(r); break;
    case 5: got = region_release(r); break;
    case 6: got = region_hand_off(r, token_of[other(self_actor)]); break;
    case 7: got = region_add_root(r, o); break;
    case 8: got = region_set_root(r, o); break;
    case 9: {   /* a new object: refused while marking; allowed, and live, while finalizing */
        if (finalizing && m->nobjects == MAX_OBJECTS) return;   /* the model has no room for it */
        fobj_t *fresh = region_object_new(r, &leaf_type, sizeof(fobj_t));
        got = fresh ? REGION_OK : region_last_status();
        if (finalizing) {
            expect_status(got, REGION_OK);
            fresh->canary = CANARY ^ (uint32_t)(uintptr_t)fresh;
            m->objects[m->nobjects++] = (mobject_t){fresh, false};
            if (m->nroots < MAX_ROOTS) {   /* and a root, which keeps it past the next collection */
                expect_status(region_add_root(r, fresh), REGION_OK);
                m->extra_roots[m->nroots++] = fresh;
            }
            return;
        }
        break;
    }
    case 10: {   /* raw blocks: allowed in both */
        void *p = region_alloc(r, 24);
        expect(p != NULL, "alloc from a callback failed");
        expect_status(region_free(r, p), REGION_OK);
        return;
    }
    default: {   /* remove_root: refused while marking; while finalizing as usual */
        got = region_remove_root(r, o);
        if (finalizing) {
            bool root = false;
            for (int i = 0; i < m->nroots; i++) root |= m->extra_roots[i] == o;
            expect(!root, "a garbage object is an extra root");
            expect_status(got, REGION_EINVAL);
            return;
        }
        break;
    }
    }
    expect(got == REGION_ESTATE, "callback op %u while %s: %s (wanted REGION_ESTATE)", what,
           finalizing ? "finalizing" : "marking", region_strerror(got));
}

static void trace_node(const void *obj, region_visit_fn visit, void *ctx) {
    fobj_t *o = (fobj_t *)obj;
    expect(o->canary == (CANARY ^ (uint32_t)(uintptr_t)o), "traced a dead object %p", obj);
    if (o->trace_op) {
        unsigned what = o->trace_op;
        o->trace_op = 0;   /* once: a collection may trace it again later */
        callback_op(o, what, false);
    }
    for (int c = 0; c < 3; c++) visit(o->child[c], ctx);
}

static void finalize_node(void *obj) {
    fobj_t *o = obj;
    mregion_t *m = collecting;
    expect(collecting_frees, "finalizer ran outside a collection");
    expect(o->canary == (CANARY ^ (uint32_t)(uintptr_t)o), "finalized a dead object %p", obj);
    expect(!o->finalized, "finalized twice: %p", obj);
    o->finalized = 1;
    finalizers_ran++;
    /* All garbage of this collection is still intact while finalizers run. */
    for (int i = 0; i < m->nobjects; i++)
        if (!reachable[i] && m->objects[i].o->canary != (CANARY ^ (uint32_t)(uintptr_t)m->objects[i].o))
            callback_surprises++;
    if (o->finalize_op) callback_op(o, o->finalize_op, true);
}

static const region_type_t node_type = {"node", trace_node, finalize_node};
static const region_type_t leaf_type = {"leaf", NULL, NULL};

static void do_collect(void *arg) {
    op_t *op = arg;
    mregion_t *m = op->m;
    bool check_only = op->variant == 2;
    unsigned flags = op->variant == 1 ? REGION_COLLECT_CHECK : 0;
    if (!owns(m, self_actor)) {
        expect_status(check_only ? region_check(m->r) : region_collect(m->r, flags, NULL), REGION_ENOTOWNER);
        return;
    }
    /* region_check counts garbage not collected yet (include/region.h); REGION_COLLECT_CHECK only
     * what is reachable. */
    bool crossref = predict(m, check_only);
    int before = m->nobjects;
    collecting = m;
    collecting_frees = !check_only;
    finalizers_ran = callback_surprises = 0;
    region_collect_stats_t stats = {0};
    region_status got = check_only ? region_check(m->r) : region_collect(m->r, flags, &stats);
    collecting = NULL;
    expect(callback_surprises == 0, "a finalizer saw %d dead garbage objects", callback_surprises);
    if (check_only || (flags && crossref)) {
        expect_status(got, crossref ? REGION_ECROSSREF : REGION_OK);
        expect(finalizers_ran == 0, "check or refused collection ran finalizers");
        return;
    }
    expect_status(got, REGION_OK);
    int garbage = 0, with_finalizer = 0;
    for (int i = before - 1; i >= 0; i--) {   /* objects made by finalizers sit at >= before */
        if (reachable[i]) continue;
        garbage++;
        with_finalizer += m->objects[i].traced;
    }
    expect((int)stats.freed == garbage && (int)stats.finalized == with_finalizer && finalizers_ran == with_finalizer,
           "collect freed %zu (model %d), finalized %zu (model %d, ran %d)", stats.freed, garbage,
           stats.finalized, with_finalizer, finalizers_ran);
    /* Forget the garbage, from the top so that indexes below stay valid. */
    bool keep[MAX_OBJECTS];
    for (int i = 0; i < m->nobjects; i++) keep[i] = i >= before || reachable[i];
    for (int i = m->nobjects - 1; i >= 0; i--)
        if (!keep[i]) forget_object(m, i);
    for (int i = 0; i < m->nobjects; i++)
        expect(region_object_type(m->objects[i].o) != NULL, "survivor %p is gone", (void *)m->objects[i].o);
}

/* ---- Handles ---- */

static void do_handle_new(void *arg) {
    op_t *op = arg;
    mregion_t *m = op->m;
    region_handle_t h;
    region_status got = region_handle_new(m->r, op->p, &h);
    bool target = op->p && (block_at(m, op->p) || object_at(m, op->p));
    region_status want = !owns(m, self_actor) ? REGION_ENOTOWNER : target ? REGION_OK : REGION_ENOTREGION;
    expect_status(got, want);
    if (got != REGION_OK) return;
    expect(h.region == m->id, "handle names region %llu, not %llu", (unsigned long long)h.region,
           (unsigned long long)m->id);
    for (int i = 0; i < nhandles; i++) {
        if (handles[i].target != op->p) continue;
        expect(!memcmp(&handles[i].h, &h, sizeof h), "two handles for one block");
        return;   /* one model handle per target, as one table entry per block */
    }
    if (nhandles < MAX_HANDLES) handles[nhandles++] = (mhandle_t){h, (int)(m - regions), m->id, op->p};
    else handles_overflowed = true;
}

/* A handle nobody made, from one that was made (like, or NULL).  Slot and generation are judged only
 * while the region lives (a destroyed region's table is gone: its handles are REGION_EDEAD). */
static region_handle_t forge(const mhandle_t *like, unsigned how) {
    region_handle_t h = like ? like->h : (region_handle_t){256, 0, 1};
    bool live = like && regions[like->region].alive && regions[like->region].id == like->region_id;
    if (how == 3 && !live) how = 0;
    switch (how) {
    case 0: h.region += (uint64_t)(1 + byte()) << 32; break;          /* a generation never reached */
    case 1: h.region &= 0xff; break;                                  /* generation 0 */
    case 2: h.region |= 0xff; break;                                  /* a slot that never exists */
    case 3: h.slot += 1000 + byte(); break;                           /* past the table */
    case 4: h.generation = 0; break;
    default: h = REGION_HANDLE_NULL; break;
    }
    return h;
}

static void do_resolve(void *arg) {
    op_t *op = arg;
    void *out = (void *)1;
    if (op->variant == 1 || !nhandles) {   /* forged */
        const mhandle_t *like = nhandles ? &handles[below(nhandles)] : NULL;
        unsigned how = below(6);
        region_handle_t h = forge(like, how);
        /* A slot past the table is judged from the table, which only the owner may read. */
        bool judged_by_table = h.region == (like ? like->h.region : 0) && how == 3;
        region_status want = judged_by_table && !owns(&regions[like->region], self_actor) ? REGION_ENOTOWNER
                                                                                         : REGION_EBADHANDLE;
        expect_status(region_handle_resolve(h, &out), want);
        expect(out == NULL, "forged handle resolved");
        return;
    }
    mhandle_t *mh = &handles[op->size % nhandles];
    mregion_t *m = &regions[mh->region];
    region_status got = region_handle_resolve(mh->h, &out);
    bool alive = m->alive && m->id == mh->region_id;
    region_status want = !alive ? REGION_EDEAD : !owns(m, self_actor) ? REGION_ENOTOWNER
                         : !mh->target ? REGION_EFREED : REGION_OK;
    expect_status(got, want);
    expect(out == (got == REGION_OK ? mh->target : NULL), "resolved to %p, model %p", out, mh->target);
}

/* ---- Ownership ---- */

static void do_ownership(void *arg) {
    op_t *op = arg;
    mregion_t *m = op->m;
    int me = self_actor, them = other(me);
    region_status got, want;
    switch (op->variant) {
    case 0:   /* acquire: only where it cannot block (else it is a try-acquire) */
    case 1:
        if (op->variant == 0 && (m->owner == NOBODY || m->owner == me)) got = region_acquire(m->r);
        else got = region_try_acquire(m->r);
        want = m->owner == me ? (m->handed ? REGION_OK : REGION_EOWNED)
               : m->owner == NOBODY ? REGION_OK : REGION_EBUSY;
        expect_status(got, want);
        if (got == REGION_OK) m->owner = me, m->handed = false;
        break;
    case 2:
        got = region_release(m->r);
        want = m->owner == me ? REGION_OK : REGION_ENOTOWNER;
        expect_status(got, want);
        if (got == REGION_OK) m->owner = NOBODY, m->handed = false;
        break;
    default:
        got = region_hand_off(m->r, token_of[them]);
        want = m->owner == me ? REGION_OK : REGION_ENOTOWNER;
        expect_status(got, want);
        if (got == REGION_OK) m->owner = them, m->handed = true;
        break;
    }
    expect(region_owned(m->r) == (m->owner == me), "region_owned disagrees with the model");
}

/* ---- Lifecycle, statistics, lookups ---- */

static void do_create(void *arg) {
    op_t *op = arg;
    mregion_t *m = op->m;
    region_options_t o = REGION_OPTIONS_DEFAULT;
    region_status want = REGION_OK;
    if (op->variant == 1) o.node = 0, want = REGION_EINVAL;                          /* node, no binding */
    if (op->variant == 2) o.node = 63, o.binding = REGION_BIND_STRICT, want = REGION_ENONODE;
    if (op->variant == 3) o.binding = (region_binding)7, want = REGION_EINVAL;
    char name[80];
    memset(name, 'n', sizeof name - 1);
    name[below(sizeof name)] = '\0';
    o.name = chance(50) ? name : NULL;
    region_t *r = NULL;
    expect_status(region_create(&o, &r), want);
    if (want != REGION_OK) {
        expect(r == NULL, "failed create gave a region");
        return;
    }
    expect(region_owned(r) && strlen(region_name(r)) <= 63, "new region");
    *m = (mregion_t){.r = r, .id = region_id(r), .alive = true, .owner = self_actor};
}

static void do_destroy(void *arg) {
    op_t *op = arg;
    mregion_t *m = op->m;
    region_status got = region_destroy(m->r);
    expect_status(got, owns(m, self_actor) ? REGION_OK : REGION_ENOTOWNER);
    if (got != REGION_OK) return;   /* its stale pointers stay in `freed`: a later region may reuse them */
    for (int i = 0; i < nhandles; i++) if (handles[i].region_id == m->id) handles[i].target = NULL;
    dead_ids[ndead++ % 8] = m->id;
    m->alive = false;
}

static void do_stats(void *arg) {
    op_t *op = arg;
    mregion_t *m = op->m;
    region_stats_t s;
    region_status got = region_stats(m->r, &s);
    expect_status(got, owns(m, self_actor) ? REGION_OK : REGION_ENOTOWNER);
    if (got != REGION_OK) return;
    size_t targets = 0;
    for (int i = 0; i < nhandles; i++) targets += handles[i].region_id == m->id && handles[i].target;
    expect(s.id == m->id && s.objects == (size_t)m->nobjects && s.blocks == (size_t)(m->nblocks + m->nobjects) &&
           (s.handles == targets || handles_overflowed), "stats: objects %zu/%d blocks %zu/%d handles %zu/%zu", s.objects,
           m->nobjects, s.blocks, m->nblocks + m->nobjects, s.handles, targets);
}

static void do_trim(void *arg) {
    (void)arg;
    expect_status(region_trim(), REGION_OK);
}

/* Lookups any thread may make: region_of, region_object_type, region_from_id. */
static void do_lookups(mregion_t *m) {
    pointer_kind_t kind;
    void *p = pick_pointer(m, &kind);
    mregion_t *holder = region_owning_object(p);
    const region_type_t *t = region_object_type(p);
    if (holder) expect(t == (object_at(holder, p)->traced ? &node_type : &leaf_type), "object type of %p", p);
    else expect(t == NULL, "region_object_type(%p) (kind %d) is %s", p, kind, t ? t->name : "");
    if (kind == P_BLOCK && p) expect(region_of(p) == m->r, "region_of a block");
    if (kind == P_FOREIGN || kind == P_NULL) expect(region_of(p) == NULL, "region_of a foreign pointer");
    expect(region_from_id(m->id) == m->r, "region_from_id of a live region");
    if (ndead) {
        uint64_t id = dead_ids[below(ndead < 8 ? ndead : 8)];
        region_t *r = region_from_id(id);
        expect(r == NULL && region_last_status() == REGION_EDEAD, "region_from_id of a destroyed region");
    }
}

/* ---- One input ---- */

static void run_op(job_fn job, op_t *op, const char *name) {
    trace_op("%s(r%d %s p%d v%u) ", name, op->m ? (int)(op->m - regions) : -1,
             op->actor == MAIN ? "main" : "helper", op->kind, op->variant);
    run_as(op->actor, job, op);
}

static void one_op(void) {
    op_t op = {0};
    unsigned what = below(16);
    op.m = pick_region();
    if (!op.m && what != 0 && what != 14) return;
    op.actor = pick_actor(op.m);
    switch (what) {
    case 0: {
        int free_index = -1;
        for (int i = 0; i < MAX_REGIONS; i++) if (!regions[i].alive) free_index = i;
        if (free_index < 0) return;
        op.m = &regions[free_index];
        op.variant = chance(85) ? 0 : 1 + below(3);
        run_op(do_create, &op, "create");
        break;
    }
    case 1:
        if (!chance(30)) return;   /* destroy less often: regions need time to fill */
        run_op(do_destroy, &op, "destroy");
        break;
    case 2: case 3:
        op.size = pick_size();
        op.variant = chance(90) ? below(3) : 3;
        run_op(do_alloc, &op, "alloc");
        break;
    case 4:
        op.p = pick_pointer(op.m, &op.kind);
        run_op(do_free, &op, "free");
        break;
    case 5:
        op.p = pick_pointer(op.m, &op.kind);
        op.size = pick_size();
        run_op(chance(80) ? do_realloc : do_usable_size, &op, "realloc/usable");
        break;
    case 6: case 7:
        op.variant = byte();
        run_op(do_object_new, &op, "object_new");
        break;
    case 8:
        op.p = chance(70) && op.m->nobjects ? (void *)op.m->objects[below(op.m->nobjects)].o
                                            : pick_pointer(op.m, &op.kind);
        op.variant = below(3);
        run_op(chance(25) ? do_object_free : do_roots, &op, "object_free/roots");
        break;
    case 9:   /* rewire an object: its owner writes it (a non-owner would not touch it) */
        if (op.m->nobjects && op.m->owner != NOBODY) {
            fobj_t *o = op.m->objects[below(op.m->nobjects)].o;
            o->child[below(3)] = pick_child(op.m);
        }
        break;
    case 10:
        op.variant = below(3);
        run_op(do_collect, &op, "collect");
        break;
    case 11:
        op.p = pick_pointer(op.m, &op.kind);
        if (chance(50) && op.m->nobjects) op.p = op.m->objects[below(op.m->nobjects)].o;
        run_op(do_handle_new, &op, "handle_new");
        break;
    case 12:
        op.variant = chance(20);
        op.size = byte();
        run_op(do_resolve, &op, "resolve");
        break;
    case 13:
        op.variant = below(4);
        run_op(do_ownership, &op, "ownership");
        break;
    case 14:
        op.actor = chance(50) ? MAIN : HELPER;
        if (chance(10)) run_op(do_trim, &op, "trim");
        break;
    default:
        if (chance(50)) run_op(do_stats, &op, "stats");
        else do_lookups(op.m);
        break;
    }
}

/* Gives every live region to the main thread and destroys it; checks every block's bytes first. */
static void teardown(void) {
    for (int i = 0; i < MAX_REGIONS; i++) {
        mregion_t *m = &regions[i];
        if (!m->alive) continue;
        op_t op = {.m = m, .variant = 2};
        if (m->owner == HELPER) run_as(HELPER, do_ownership, &op);   /* release */
        if (m->owner == NOBODY || m->handed) expect_status(region_acquire(m->r), REGION_OK);
        m->owner = MAIN, m->handed = false;
        for (int b = 0; b < m->nblocks; b++)
            expect(all_bytes(m->blocks[b].p, m->blocks[b].size, m->blocks[b].fill), "block %p overwritten",
                   (void *)m->blocks[b].p);
        expect_status(region_destroy(m->r), REGION_OK);
        m->alive = false;
    }
    nhandles = nfreed = ndead = 0;
    handles_overflowed = false;
}

/* A sanitizer's report ends the process before `expect` can name the ops: name them then too. */
static void report_ops_at_death(void) { fprintf(stderr, "fuzz_api: ops of the input: %s\n", op_trace); }

static void init_once(void) {
    static bool done;
    if (done) return;
    done = true;
    __sanitizer_set_death_callback(report_ops_at_death);
    region_config_t c = {.arena_size = (size_t)64 << 20, .max_arenas = 16};   /* an arena per region */
    if (region_configure(&c) != REGION_OK) abort();
    block_checks = region_block_checks();
    self_actor = MAIN;
    token_of[MAIN] = region_thread_token();
    pthread_create(&helper.thread, NULL, helper_main, NULL);
    pthread_mutex_lock(&helper.lock);
    while (!token_of[HELPER]) {
        pthread_mutex_unlock(&helper.lock);
        sched_yield();
        pthread_mutex_lock(&helper.lock);
    }
    pthread_mutex_unlock(&helper.lock);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    init_once();
    in = (input_t){data, size, 0};
    op_trace[0] = '\0';
    while (in.at < in.size) one_op();
    teardown();
    return 0;
}
