/* collect.c - region objects and the independent collector.
 *
 * An object is a block of the region's object heap: a robject_t header, then the body the user sees.
 * Headers are linked into the region's object list, so a collection walks this region's objects and
 * nothing else: its cost is proportional to the region, whatever lives in other regions.
 *
 * A collection has the phases of CPython's gcmodule.c, named alike:
 *   mark_roots        the root and the extra roots are marked reachable and pushed
 *   propagate         each reachable object's trace reports its pointers; a pointer to an unmarked
 *                     object of THIS region is marked and pushed.  Pointers elsewhere are not
 *                     followed (another region, plain memory, raw blocks of this region).  Handles
 *                     are values, not pointers, so their targets are not reached through them.
 *   move_unreachable  unmarked objects are unlinked onto a garbage list
 *   finalize_garbage  every garbage object's finalizer runs while all garbage is still intact
 *   delete_garbage    handles of garbage become REGION_EFREED and the blocks are freed
 *
 * INVARIANTS
 *   - A header's stamp is the region's object_stamp iff it is on the object list, or on the garbage
 *     list while the region is FINALIZING.  Both lists have their sentinel in the region struct.
 *   - Marks are epochs: an object is marked in this collection iff epoch == r->mark_epoch, so no
 *     pass clears marks.  Objects created during a collection (by finalizers) get the current epoch
 *     and are therefore never garbage of the collection that created them.
 *   - While the region is not IDLE, the user's callbacks run (trace while MARKING, finalize while
 *     FINALIZING) and the collector holds headers on its mark stack or garbage list, so: no object is
 *     freed except by delete_garbage (object_free and destroy return REGION_ESTATE), no collection or
 *     check starts, ownership stays (release and hand-off return REGION_ESTATE).  While MARKING,
 *     nothing may change the set of objects or roots either (object_new, set_root, add_root return
 *     REGION_ESTATE); while FINALIZING a garbage object may not become a root (it is about to be
 *     freed: REGION_ESTATE).
 *
 * THREADS: owner only, like everything that touches the region's contents.
 */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "region-internal.h"

/* ---- Object list ---- */

static const char *const phase_names[] = {
    [RCOLLECT_IDLE] = "idle",
    [RCOLLECT_MARKING] = "marking (a trace callback is running)",
    [RCOLLECT_FINALIZING] = "finalizing (a finalizer is running)",
};

region_status rcollect_check_idle(const region_t *r, const char *what) {
    if (likely(r->phase == RCOLLECT_IDLE)) return REGION_OK;
    return rerror_region(r, REGION_ESTATE, "%s: not allowed during the region's own collection, which is %s",
                         what, phase_names[r->phase]);
}

void robjects_init(region_t *r) {
    r->objects.next = r->objects.prev = &r->objects;
    r->garbage.next = r->garbage.prev = &r->garbage;
    r->object_count = 0;
    r->extra_roots = NULL;
    r->extra_root_count = r->extra_root_capacity = 0;
    r->mark_epoch = 1;
}

void robjects_release(region_t *r) {
    free(r->extra_roots);
    robjects_init(r);
    r->root = NULL;
}

static void list_unlink(robject_t *h) {
    h->prev->next = h->next;
    h->next->prev = h->prev;
}

static void list_push(robject_t *head, robject_t *h) {
    h->next = head->next;
    h->prev = head;
    head->next->prev = h;
    head->next = h;
}

/* Whether a 16-byte-aligned address q lies in r's object heap, with the 32 bytes before it (a
 * header) readable: either in q's own 64 KiB (a page never straddles less), or in a page of the same
 * heap.  Pages are committed whole, so both are mapped memory. */
static bool header_readable(const region_t *r, const void *q) {
    if (((uintptr_t)q & 15) || !rheap_owns(r, r->object_heap, q)) return false;
    const char *h = (const char *)q - sizeof(robject_t);
    return ((uintptr_t)h >> 16) == ((uintptr_t)q >> 16) || rheap_owns(r, r->object_heap, h);
}

/* Whether a list link read from a header may be followed: a sentinel of r, or a header that
 * header_readable accepts the body of. */
static bool link_followable(const region_t *r, const robject_t *link) {
    /* The body's address by integer arithmetic: link may be any value, which pointer arithmetic on it
     * would not allow. */
    return link == &r->objects || link == &r->garbage ||
           header_readable(r, (const void *)((uintptr_t)link + sizeof(robject_t)));
}

RMAY_READ_FREED robject_t *robject_of(const region_t *r, const void *obj) {
    /* Every read is of memory proven mapped first, so any pointer value is safe.  User bytes posing as
     * a header fail the link test, since live headers link only to live headers (or the sentinels);
     * a dead header left by an earlier region in the same memory has another stamp. */
    if (!obj || !header_readable(r, obj)) return NULL;
    robject_t *h = robject_header(obj);
    if (h->stamp != r->object_stamp || !link_followable(r, h->next) || !link_followable(r, h->prev))
        return NULL;
    if (h->next->prev != h || h->prev->next != h) return NULL;
    return h;
}

const region_type_t *region_object_type(const void *obj) {
    region_t *r = rregion_of(obj);
    robject_t *h = r ? robject_of(r, obj) : NULL;
    return h ? h->type : NULL;
}

void *region_object_new(region_t *r, const region_type_t *type, size_t size) {
    if (unlikely(!r || !rowner_is_self(r))) {
        rowner_check(r, "object_new");
        return NULL;
    }
    if (!type) {
        rerror_region(r, REGION_EINVAL, "object_new: type is NULL");
        return NULL;
    }
    if (r->phase == RCOLLECT_MARKING) {   /* finalizers may allocate; trace callbacks may not */
        rcollect_check_idle(r, "object_new");
        return NULL;
    }
    size_t total;
    if (__builtin_add_overflow(size, sizeof(robject_t), &total)) {
        rerror_region(r, REGION_EINVAL, "object_new: size %zu overflows", size);
        return NULL;
    }
    robject_t *h = mi_heap_zalloc(r->object_heap, total);
    if (!h) {
        rerror_region(r, REGION_EFULL, "object_new of %zu bytes (%s): the region's address range is "
                      "exhausted", size, type->name ? type->name : "?");
        return NULL;
    }
    h->type = type;
    h->stamp = r->object_stamp;
    h->epoch = r->mark_epoch;
    list_push(&r->objects, h);
    r->object_count++;
    return robject_body(h);
}

static void object_delete(region_t *r, robject_t *h) {
    void *body = robject_body(h);
    if (r->handles.used) rhandle_retarget(r, body, NULL);
    if (r->root == body) r->root = NULL;
    h->stamp = 0;
    r->object_count--;
    mi_free(h);
}

region_status region_object_free(region_t *r, void *obj) {
    region_status status = rowner_check(r, "object_free");
    if (status == REGION_OK) status = rcollect_check_idle(r, "object_free");
    if (status != REGION_OK) return status;
    robject_t *h = robject_of(r, obj);
    if (!h) return rerror_region(r, REGION_ENOTREGION, "object_free: %p is not an object of this region", obj);
    /* It stops being a root, or a later object at its address would be one.  (A collection never
     * frees a root: roots are marked.) */
    size_t kept = 0;
    for (size_t i = 0; i < r->extra_root_count; i++)
        if (r->extra_roots[i] != obj) r->extra_roots[kept++] = r->extra_roots[i];
    r->extra_root_count = kept;
    list_unlink(h);
    object_delete(r, h);
    return REGION_OK;
}

/* ---- Roots ---- */

/* REGION_OK if obj (not NULL) may become a root of r now: an object of r, no trace callback running,
 * and not garbage of the running collection (see INVARIANTS). */
static region_status root_allowed(region_t *r, void *obj, const char *what) {
    if (r->phase == RCOLLECT_MARKING) return rcollect_check_idle(r, what);
    robject_t *h = robject_of(r, obj);
    if (!h) return rerror_region(r, REGION_ENOTREGION, "%s: %p is not an object of this region", what, obj);
    if (r->phase == RCOLLECT_FINALIZING && h->epoch != r->mark_epoch)
        return rerror_region(r, REGION_ESTATE, "%s: %p (type '%s') is garbage of the running collection "
                             "and is freed when its finalizers are done", what, obj,
                             h->type->name ? h->type->name : "?");
    return REGION_OK;
}

region_status region_set_root(region_t *r, void *obj) {
    region_status status = rowner_check(r, "set_root");
    if (status == REGION_OK && obj) status = root_allowed(r, obj, "set_root");
    if (status == REGION_OK && !obj && r->phase == RCOLLECT_MARKING) status = rcollect_check_idle(r, "set_root");
    if (status != REGION_OK) return status;
    r->root = obj;
    return REGION_OK;
}

void *region_root(region_t *r) {
    return rowner_check(r, "root") == REGION_OK ? r->root : NULL;
}

region_status region_add_root(region_t *r, void *obj) {
    region_status status = rowner_check(r, "add_root");
    if (status == REGION_OK) status = root_allowed(r, obj, "add_root");
    if (status != REGION_OK) return status;
    if (r->extra_root_count == r->extra_root_capacity) {
        size_t capacity = r->extra_root_capacity ? r->extra_root_capacity * 2 : 8;
        void **roots = realloc(r->extra_roots, capacity * sizeof *roots);
        if (!roots) return rerror_region(r, REGION_ENOMEM, "add_root: out of memory");
        r->extra_roots = roots;
        r->extra_root_capacity = capacity;
    }
    r->extra_roots[r->extra_root_count++] = obj;
    return REGION_OK;
}

region_status region_remove_root(region_t *r, void *obj) {
    region_status status = rowner_check(r, "remove_root");
    if (status == REGION_OK && r->phase == RCOLLECT_MARKING) status = rcollect_check_idle(r, "remove_root");
    if (status != REGION_OK) return status;
    for (size_t i = r->extra_root_count; i-- > 0;) {
        if (r->extra_roots[i] != obj) continue;
        r->extra_roots[i] = r->extra_roots[--r->extra_root_count];
        return REGION_OK;
    }
    return rerror_region(r, REGION_EINVAL, "remove_root: %p is not a root of this region", obj);
}

/* ---- Marking ---- */

typedef struct mark_state {
    region_t *r;
    robject_t **stack;
    size_t depth, capacity;
    bool out_of_memory;
    bool check;                   /* REGION_COLLECT_CHECK: look for pointers into other regions */
    const robject_t *current;     /* object being traced */
    bool crossref;                /* first violation found (details recorded with rerror) */
    size_t visited;
} mark_state_t;

static void mark_push(mark_state_t *m, robject_t *h) {
    h->epoch = m->r->mark_epoch;
    m->visited++;
    if (m->depth == m->capacity) {
        size_t capacity = m->capacity ? m->capacity * 2 : 256;
        robject_t **stack = realloc(m->stack, capacity * sizeof *stack);
        if (!stack) { m->out_of_memory = true; return; }
        m->stack = stack;
        m->capacity = capacity;
    }
    m->stack[m->depth++] = h;
}

static void report_crossref(mark_state_t *m, void *ref, region_t *other) {
    if (m->crossref) return;
    m->crossref = true;
    const region_type_t *target_type = region_object_type(ref);
    const char *from = m->current ? (m->current->type->name ? m->current->type->name : "?") : "root";
    rerror_region(m->r, REGION_ECROSSREF, "object %p of type '%s' holds a strong reference to %p "
                  "(%s%s%s) in region '%s' (id %llu); references between regions must be handles",
                  m->current ? robject_body((robject_t *)m->current) : NULL, from, ref,
                  target_type ? "object of type '" : "a raw block",
                  target_type ? (target_type->name ? target_type->name : "?") : "",
                  target_type ? "'" : "", other->name, (unsigned long long)other->id);
}

static void visit_reference(void *ref, void *ctx) {
    mark_state_t *m = ctx;
    region_t *target = rregion_of(ref);
    if (target != m->r) {
        if (target && m->check) report_crossref(m, ref, target);
        return;
    }
    robject_t *h = robject_of(m->r, ref);
    if (h && h->epoch != m->r->mark_epoch) mark_push(m, h);
}

static void mark_roots(mark_state_t *m) {
    region_t *r = m->r;
    robject_t *h = robject_of(r, r->root);
    if (h) mark_push(m, h);
    for (size_t i = 0; i < r->extra_root_count; i++) {
        h = robject_of(r, r->extra_roots[i]);
        if (h && h->epoch != r->mark_epoch) mark_push(m, h);
    }
}

static void propagate(mark_state_t *m) {
    while (m->depth && !m->out_of_memory) {
        robject_t *h = m->stack[--m->depth];
        if (!h->type->trace) continue;
        m->current = h;
        h->type->trace(robject_body(h), visit_reference, m);
    }
}

/* Marks everything reachable; REGION_OK, or the status of what stopped it (nothing freed yet).  The
 * region is MARKING meanwhile: trace callbacks run. */
static region_status mark(region_t *r, bool check, size_t *visited) {
    rassert(r->phase == RCOLLECT_IDLE);
    mark_state_t m = {.r = r, .check = check};
    r->phase = RCOLLECT_MARKING;
    r->mark_epoch++;
    if (r->mark_epoch == 0) r->mark_epoch = 1;   /* 0 is never a live epoch */
    mark_roots(&m);
    propagate(&m);
    r->phase = RCOLLECT_IDLE;
    free(m.stack);
    *visited = m.visited;
    if (m.out_of_memory) return rerror_region(r, REGION_ENOMEM, "collect: out of memory for the mark stack");
    return m.crossref ? REGION_ECROSSREF : REGION_OK;
}

/* ---- Sweeping ---- */

static size_t move_unreachable(region_t *r) {
    size_t n = 0;
    for (robject_t *h = r->objects.next, *next; h != &r->objects; h = next) {
        next = h->next;
        if (h->epoch == r->mark_epoch) continue;
        list_unlink(h);
        list_push(&r->garbage, h);
        n++;
    }
    return n;
}

static size_t finalize_garbage(region_t *r) {
    size_t n = 0;
    robject_t *garbage = &r->garbage;
    for (robject_t *h = garbage->next; h != garbage; h = h->next) {
        rassert(h->stamp == r->object_stamp && h->epoch != r->mark_epoch);   /* still intact garbage */
        if (!h->type->finalize) continue;
        h->type->finalize(robject_body(h));
        n++;
    }
    return n;
}

static void delete_garbage(region_t *r) {
    robject_t *garbage = &r->garbage;
    for (robject_t *h = garbage->next, *next; h != garbage; h = next) {
        next = h->next;
        object_delete(r, h);
    }
    garbage->next = garbage->prev = garbage;
}

static uint64_t now_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (uint64_t)t.tv_sec * 1000000000u + (uint64_t)t.tv_nsec;
}

region_status region_collect(region_t *r, unsigned flags, region_collect_stats_t *out) {
    region_status status = rowner_check(r, "collect");
    if (status == REGION_OK) status = rcollect_check_idle(r, "collect");
    if (status != REGION_OK) return status;
    if (flags & ~REGION_COLLECT_CHECK)
        return rerror_region(r, REGION_EINVAL, "collect: unknown flags 0x%x", flags);
    uint64_t start = now_ns();
    region_collect_stats_t stats = {0};
    status = mark(r, flags & REGION_COLLECT_CHECK, &stats.visited);
    if (status != REGION_OK) return status;

    r->phase = RCOLLECT_FINALIZING;
    stats.freed = move_unreachable(r);
    stats.finalized = finalize_garbage(r);
    delete_garbage(r);
    r->phase = RCOLLECT_IDLE;

    r->collections++;
    r->collected += stats.freed;
    stats.pause_ns = now_ns() - start;
    if (out) *out = stats;
    return REGION_OK;
}

/* ---- Checking: the isolation engine's scan (isolation.c) ----
 *
 * region_check decides with one scan of the object pages, every live object traced once, reachable or
 * not (garbage holds its pointers until a collection frees it): a pointer is a violation when it is
 * outside r and inside another live region's.  Only when the scan finds one does a second
 * scan name the first holder, its type and both regions. */

typedef struct check_scan {
    riso_t *s;
    mark_state_t *naming;   /* the naming scan: report_crossref's state; NULL in the deciding scan */
} check_scan_t;

static void check_reference(void *ref, void *ctx) {
    check_scan_t *c = ctx;
    if (!c->naming) {
        riso_reference(c->s, ref);
        return;
    }
    region_t *target = rregion_of(ref);
    if (target && target != c->s->r) report_crossref(c->naming, ref, target);
}

/* A page whose blocks are all counted in use comes whole (isolation.c, scan_area), and a block freed
 * by a thread other than its page's (an object its region's collection freed after the region moved
 * to another thread) counts as used until mimalloc collects it: such a block is read here, freed,
 * and judged by its stamp, 0 since region_object_free (RMAY_READ_FREED). */
static RMAY_READ_FREED bool check_block(void *block, size_t usable, void *arg) {
    (void)usable;
    check_scan_t *c = arg;
    robject_t *h = block;   /* every block of the object heap is a header and its object */
    if (h->stamp != c->s->r->object_stamp) return true;   /* freed, awaiting mimalloc's collection */
    if (h->type->trace) {
        if (c->naming) c->naming->current = h;
        h->type->trace(robject_body(h), check_reference, c);
    }
    return !c->naming || !c->naming->crossref;
}

/* Whether the scan met a pointer into another live region. */
static bool outside_crosses(riso_t *s) {
    rptrmap_foreach(&s->outside, cell)
        if (rregion_of(cell->key)) return true;   /* outside r's memory: not r */
    return false;
}

region_status region_check(region_t *r) {
    region_status status = rowner_check(r, "check");
    if (status == REGION_OK) status = rcollect_check_idle(r, "check");
    if (status != REGION_OK) return status;
    riso_t s;
    if (riso_begin(&s, r) != REGION_OK) return REGION_ENOMEM;
    check_scan_t c = {&s, NULL};
    r->phase = RCOLLECT_MARKING;   /* trace callbacks run: see INVARIANTS */
    riso_scan(&s, &(riso_visitor_t){NULL, check_block, &c});
    bool crosses = !s.failed && outside_crosses(&s);
    if (crosses || s.failed) {   /* name the first offender (the map may have lost some targets) */
        mark_state_t naming = {.r = r, .check = true};
        c.naming = &naming;
        riso_scan(&s, &(riso_visitor_t){NULL, check_block, &c});
        crosses = naming.crossref;
    }
    r->phase = RCOLLECT_IDLE;
    riso_end(&s);
    return crosses ? REGION_ECROSSREF : REGION_OK;
}
