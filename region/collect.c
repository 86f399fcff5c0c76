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
 *   - A header is on the object list iff its magic is ROBJECT_MAGIC.
 *   - Marks are epochs: an object is marked in this collection iff epoch == r->mark_epoch, so no
 *     pass clears marks.  Objects created during a collection (by finalizers) get the current epoch
 *     and are therefore never garbage of the collection that created them.
 *   - While r->collecting, no object is freed except by delete_garbage (object_free and destroy
 *     return REGION_ESTATE), so the garbage list never holds a dangling header.
 *
 * THREADS: owner only, like everything that touches the region's contents.
 */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "region-internal.h"

/* ---- Object list ---- */

void robjects_init(region_t *r) {
    r->objects.next = r->objects.prev = &r->objects;
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

robject_t *robject_of(const region_t *r, const void *obj) {
    /* Only once obj is known to lie in a page of r's object heap is obj - sizeof(header) committed
     * memory, safe to read whatever obj is. */
    if (!obj || !rheap_owns(r, r->object_heap, obj)) return NULL;
    robject_t *h = robject_header(obj);
    if (h->magic != ROBJECT_MAGIC || h->next->prev != h || h->prev->next != h) return NULL;
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
    h->magic = ROBJECT_MAGIC;
    h->epoch = r->mark_epoch;
    list_push(&r->objects, h);
    r->object_count++;
    return robject_body(h);
}

static void object_delete(region_t *r, robject_t *h) {
    void *body = robject_body(h);
    if (r->handles.used) rhandle_retarget(r, body, NULL);
    if (r->root == body) r->root = NULL;
    h->magic = 0;
    r->object_count--;
    mi_free(h);
}

region_status region_object_free(region_t *r, void *obj) {
    region_status status = rowner_check(r, "object_free");
    if (status != REGION_OK) return status;
    if (r->collecting)
        return rerror_region(r, REGION_ESTATE, "object_free: not allowed during the region's collection");
    robject_t *h = robject_of(r, obj);
    if (!h) return rerror_region(r, REGION_ENOTREGION, "object_free: %p is not an object of this region", obj);
    list_unlink(h);
    object_delete(r, h);
    return REGION_OK;
}

/* ---- Roots ---- */

region_status region_set_root(region_t *r, void *obj) {
    region_status status = rowner_check(r, "set_root");
    if (status != REGION_OK) return status;
    if (obj && !robject_of(r, obj))
        return rerror_region(r, REGION_ENOTREGION, "set_root: %p is not an object of this region", obj);
    r->root = obj;
    return REGION_OK;
}

void *region_root(region_t *r) {
    return rowner_check(r, "root") == REGION_OK ? r->root : NULL;
}

region_status region_add_root(region_t *r, void *obj) {
    region_status status = rowner_check(r, "add_root");
    if (status != REGION_OK) return status;
    if (!robject_of(r, obj))
        return rerror_region(r, REGION_ENOTREGION, "add_root: %p is not an object of this region", obj);
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

/* Marks everything reachable; REGION_OK, or the status of what stopped it (nothing freed yet). */
static region_status mark(region_t *r, bool check, size_t *visited) {
    mark_state_t m = {.r = r, .check = check};
    r->mark_epoch++;
    if (r->mark_epoch == 0) r->mark_epoch = 1;   /* 0 is never a live epoch */
    mark_roots(&m);
    propagate(&m);
    free(m.stack);
    *visited = m.visited;
    if (m.out_of_memory) return rerror_region(r, REGION_ENOMEM, "collect: out of memory for the mark stack");
    return m.crossref ? REGION_ECROSSREF : REGION_OK;
}

/* ---- Sweeping ---- */

static size_t move_unreachable(region_t *r, robject_t *garbage) {
    size_t n = 0;
    for (robject_t *h = r->objects.next, *next; h != &r->objects; h = next) {
        next = h->next;
        if (h->epoch == r->mark_epoch) continue;
        list_unlink(h);
        list_push(garbage, h);
        n++;
    }
    return n;
}

static size_t finalize_garbage(robject_t *garbage) {
    size_t n = 0;
    for (robject_t *h = garbage->next; h != garbage; h = h->next) {
        if (!h->type->finalize) continue;
        h->type->finalize(robject_body(h));
        n++;
    }
    return n;
}

static void delete_garbage(region_t *r, robject_t *garbage) {
    for (robject_t *h = garbage->next, *next; h != garbage; h = next) {
        next = h->next;
        object_delete(r, h);
    }
}

static uint64_t now_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (uint64_t)t.tv_sec * 1000000000u + (uint64_t)t.tv_nsec;
}

region_status region_collect(region_t *r, unsigned flags, region_collect_stats_t *out) {
    region_status status = rowner_check(r, "collect");
    if (status != REGION_OK) return status;
    if (flags & ~REGION_COLLECT_CHECK)
        return rerror_region(r, REGION_EINVAL, "collect: unknown flags 0x%x", flags);
    if (r->collecting)
        return rerror_region(r, REGION_ESTATE, "collect: already collecting (called from a finalizer)");
    uint64_t start = now_ns();
    region_collect_stats_t stats = {0};
    status = mark(r, flags & REGION_COLLECT_CHECK, &stats.visited);
    if (status != REGION_OK) return status;

    robject_t garbage = {.next = &garbage, .prev = &garbage};
    r->collecting = true;
    stats.freed = move_unreachable(r, &garbage);
    stats.finalized = finalize_garbage(&garbage);
    delete_garbage(r, &garbage);
    r->collecting = false;

    r->collections++;
    r->collected += stats.freed;
    stats.pause_ns = now_ns() - start;
    if (out) *out = stats;
    return REGION_OK;
}

region_status region_check(region_t *r) {
    region_status status = rowner_check(r, "check");
    if (status != REGION_OK) return status;
    if (r->collecting)
        return rerror_region(r, REGION_ESTATE, "check: not allowed during the region's collection");
    size_t visited;
    return mark(r, true, &visited);
}
