/* region-host.h - what a host runtime built on libregion (the Python binding, python/) uses on its
 * hot paths.
 *
 * HOST OWNERSHIP: a host's owners are libregion's: a region is owned by a thread (its
 * region_thread_token()), and the host adds what it knows beside - the Python binding, which
 * interpreter the thread used it in - and blocks in its own way (with its interpreter lock released,
 * waking for signals: rhost_acquire with a timeout, in slices).  Its owner calls the public API as
 * any owner does.  What the host needs besides: waiting for one region and not for whatever region
 * the struct holds next (rhost_acquire), reading the owner from threads that may race with the
 * region's end (rhost_owner), and letting go on behalf of an owner that cannot (rhost_disown).
 *
 * The allocator hook of a host (the Python binding's) runs in any thread: frees come from wherever
 * the last reference dies.  The entry points below skip the public API's owner check; each states
 * what the host guarantees in its place.  A host compiles libregion's sources into itself.
 *
 * HOST HEAPS: a host puts object-like blocks (Python objects) in r->object_heap and the buffers its
 * objects own in r->heap, so that "could this block be an object" is a page-map lookup; buffers no
 * object owns go to r->detached_heap (DETACHED BUFFERS below).  A region used by a host is never
 * given C objects (region_object_new), so the object heap holds only the host's blocks.  A host's
 * allocations go through the calling thread's theaps kept per thread (HOST THEAPS below), and a young
 * region's first blocks take power-of-two sizes, its first small buffers one size (YOUNG REGIONS
 * below).
 */
#ifndef REGION_HOST_H
#define REGION_HOST_H

#include "region-internal.h"

/* Makes the calling thread the owner of r while r is still the region `id` (region_id): REGION_OK,
 * REGION_EDEAD when r was destroyed (or is another region now), REGION_EOWNED when the calling thread
 * owns it already, REGION_EBUSY when timeout_ns is 0 and another thread owns it, REGION_ETIMEDOUT
 * when the wait of timeout_ns passed.  Thread-safe; the caller must not hold locks the owner needs. */
region_status rhost_acquire(region_t *r, uint64_t id, uint64_t timeout_ns);

/* The owner's thread token of region `id`, 0 when it has none or r is no longer that region.  Any
 * thread; lock-free. */
uint64_t rhost_owner(const region_t *r, uint64_t id);

/* r has no owner from now on, whoever owned it, and its waiters wake.  For a host letting go on its
 * owner's behalf (a region closed or frozen by its owner, one whose owner's interpreter ended); the
 * host guarantees that no thread still uses r as its owner. */
void rhost_disown(region_t *r);

/* The region whose heap holds p's page, whether or not it is still live (id may be 0 only if the
 * host destroyed it with blocks still allocated, which a host must never do); NULL when p is in no
 * region's page.  O(1): a range test, then mimalloc's page map (rregion_of_page). */
static inline region_t *rhost_region_of(const void *p) { return rregion_of_page(p); }

/* HOST FIELDS: r->host (the host's record of the region, stored and read atomically: any thread may
 * look a block's region up) and r->host_counts (the owner's counters) are the host's alone; create
 * zeroes them. */
static inline void *rhost_record(const region_t *r) { return __atomic_load_n(&r->host, __ATOMIC_ACQUIRE); }
static inline void rhost_set_record(region_t *r, void *record) { __atomic_store_n(&r->host, record, __ATOMIC_RELEASE); }

/* HOST THEAPS: a heap allocates through the calling thread's part of it, its theap, which mimalloc
 * finds through ONE cached entry per thread; moving that entry to another heap's theap costs two
 * atomic reference count updates (init.c, _mi_theap_cached_set).  A host's block allocates objects
 * and buffers alternately, in two heaps: a move at nearly every allocation, 2-3 % of
 * bench/requests_bench.py's region worker in perf (_mi_theap_cached_set and its increfs and decrefs).
 * So rhost_alloc and rhost_calloc allocate through theaps kept here, per thread: those of the region
 * it allocated in last.  The entry names the region by record and generation, which changes when the
 * record takes its next region (region_create); a region's heaps live as long as it, and a thread's
 * theap of a live heap as long as the thread (a reset keeps the resetting thread's; mimalloc frees
 * theaps only with their thread or their heap).  So an entry that matches a live region holds live
 * theaps of that region's heaps, and a host never allocates in a region it destroyed.  A theap is
 * filled in only after an allocation through the heap succeeded: mimalloc's stand-in for a theap it
 * could not make (out of memory) is never kept. */
typedef struct rhost_theaps {
    const region_t *r;
    uint64_t generation;
    mi_theap_t *theap[2];   /* the calling thread's of r->heap and r->object_heap; NULL: not yet known */
} rhost_theaps_t;

/* initial-exec, as region_inline_token: read on every allocation of a host's block. */
extern __thread rhost_theaps_t rhost_theaps __attribute__((tls_model("initial-exec")));

/* rhost_alloc or rhost_calloc (zero) when the calling thread's theap of the heap is not in
 * rhost_theaps: through the heap, then kept (region.c). */
void *rhost_alloc_through_heap(region_t *r, bool object, size_t size, bool zero);

/* The calling thread's theap of r's object (or buffer) heap if kept, else NULL. */
static inline mi_theap_t *rhost_kept_theap(const region_t *r, bool object) {
    const rhost_theaps_t *kept = &rhost_theaps;
    if (likely(kept->r == r && kept->generation == __atomic_load_n(&r->generation, __ATOMIC_RELAXED)))
        return kept->theap[object];
    return NULL;
}

/* YOUNG REGIONS: a mimalloc page holds blocks of one size class (bin), so a region takes at least one
 * OS page for each bin it allocates in, in each of its heaps.  A request's region in
 * bench/requests_bench.py makes about 630 blocks in 10 bins of objects and 6 of buffers: 16 OS pages
 * for 14 KiB of blocks.  So the first RHOST_YOUNG_BLOCKS blocks a host makes in a region are rounded
 * up to a power of two (up to RHOST_YOUNG_MAX bytes), 7 bins in all: that response then takes 4 bins
 * of objects and 5 of buffers.  Of those 5, four held a few small buffers each (35 in all, 16 to 192
 * bytes: list item arrays mostly), a page each for under 3 KiB, so a young region's first
 * RHOST_SMALL_BUFFERS buffers of up to RHOST_SMALL_BUFFER bytes all take that one size: 2 bins of
 * buffers (the cap bounds what it wastes at 15 KiB a region; later small buffers are rounded as
 * above).  A big region rounds only its first blocks, and a block's size class changes nothing else
 * (the scan walks a page by its own block size).  The counts are relaxed: a block another thread
 * makes at the same moment (mimalloc allows it) may go uncounted, which only rounds one more. */
#define RHOST_YOUNG_BLOCKS 1024
#define RHOST_YOUNG_MAX 1024
#define RHOST_SMALL_BUFFER 256
#define RHOST_SMALL_BUFFERS 64

/* The size to ask mimalloc for: size, or while r is young its power of two (at least 16), or for
 * one of its first small buffers RHOST_SMALL_BUFFER.  `count`: a new block (not a realloc). */
static inline size_t rhost_block_size(region_t *r, bool object, size_t size, bool count) {
    uint32_t young = __atomic_load_n(&r->young_blocks, __ATOMIC_RELAXED);
    if (likely(young >= RHOST_YOUNG_BLOCKS) || size > RHOST_YOUNG_MAX) return size ? size : 1;
    if (count) __atomic_store_n(&r->young_blocks, young + 1, __ATOMIC_RELAXED);
    if (!object && size <= RHOST_SMALL_BUFFER) {
        uint32_t small = __atomic_load_n(&r->young_buffers, __ATOMIC_RELAXED);
        if (small < RHOST_SMALL_BUFFERS) {
            if (count) __atomic_store_n(&r->young_buffers, small + 1, __ATOMIC_RELAXED);
            return RHOST_SMALL_BUFFER;
        }
    }
    return size <= 16 ? 16 : (size_t)1 << (64 - __builtin_clzll((unsigned long long)size - 1));
}

/* A block of `size` bytes (zeroed if asked) in r's object or buffer heap: rhost_alloc's and
 * rhost_calloc's common part. */
static inline void *rhost_allocate(region_t *r, bool object, size_t size, bool zero) {
    rassert(__atomic_load_n(&r->id, __ATOMIC_RELAXED) != 0);   /* HOST THEAPS: never a destroyed region */
    mi_theap_t *theap = rhost_kept_theap(r, object);
    size = rhost_block_size(r, object, size, true);
    if (likely(theap != NULL)) return zero ? mi_theap_zalloc(theap, size) : mi_theap_malloc(theap, size);
    return rhost_alloc_through_heap(r, object, size, zero);
}

/* Allocation in r's object or buffer heap.  The host guarantees that no other thread is inside
 * rhost_alloc/realloc/free for r at the same time unless mimalloc 3 allows it (it does: heaps are
 * thread-safe for allocation from any thread), and that r is live. */
static inline void *rhost_alloc(region_t *r, bool object, size_t size) {
    return rhost_allocate(r, object, size, false);
}

static inline void *rhost_calloc(region_t *r, bool object, size_t count, size_t size) {
    size_t total;
    if (__builtin_mul_overflow(count ? count : 1, size ? size : 1, &total)) return NULL;
    return rhost_allocate(r, object, total, true);
}

/* p is a block of region r (rhost_region_of(p) == r).  The block stays in its own heap (and so in
 * its region) when it moves; handles follow it.  The host serializes calls that touch r's handle
 * table (the Python binding: the GIL). */
static inline void *rhost_realloc(region_t *r, void *p, size_t size) {
    mi_heap_t *heap = mi_heap_of(p);
    void *moved = mi_heap_realloc(heap, p, rhost_block_size(r, heap == r->object_heap, size, false));
    if (moved && moved != p && r->handles.used) rhandle_retarget(r, p, moved);
    return moved;
}

/* p is a block of region r.  Any thread may free (mimalloc 3 takes cross-thread frees); the handle
 * table update needs the same serialization as rhost_realloc. */
static inline void rhost_free(region_t *r, void *p) {
    if (r->handles.used) rhandle_retarget(r, p, NULL);
    mi_free(p);
}

/* Whether p lies in the arenas: then it can only be a block of some region's heap (the arenas hold
 * nothing else a host could free). */
static inline bool rhost_in_arenas(const void *p) { return rarena_index_of(p) >= 0; }

/* Frees p, a block in the arenas (rhost_in_arenas), and returns its region: rhost_free for a block
 * whose region the host does not know, with the one page-map lookup the free makes anyway
 * (mimalloc patch 0012, mi_free_data).  The handle table is updated after the free: the host's
 * serialization (as for rhost_free) keeps anyone from reusing the block before. */
static inline region_t *rhost_free_block(void *p) {
    region_t *r = (region_t *)mi_free_data(p);
    rassert(r != NULL);   /* a heap keeps its region's pointer while it holds blocks (region.c) */
    if (r && r->handles.used) rhandle_retarget(r, p, NULL);
    return r;
}

/* DETACHED BUFFERS: blocks a host hands to code of its own users (the Python binding's C API, capi.c),
 * owned by no object, live until freed or until r is destroyed.  They have a heap of their own, so
 * that a host can tell them from the blocks its objects own (rheap_owns(r, r->detached_heap, p)) and
 * count them apart (rhost_owned_blocks leaves them out).  The heap is made on first use by r's
 * user (the host serializes that as it serializes allocation): NULL when mimalloc cannot make one. */
mi_heap_t *rhost_detached_heap(region_t *r);

/* Handles without the thread-ownership check: the host checks its own owner first.  Same statuses
 * as region_handle_new / region_handle_resolve otherwise. */
region_status rhost_handle_new(region_t *r, void *block, region_handle_t *out);
region_status rhost_handle_resolve(region_handle_t h, void **out);

/* Live blocks in r's object and buffer heaps - every block but the detached buffers - as
 * region_stats counts them (region.c, "Statistics"): exact, and O(blocks) once a thread other than
 * the creator has owned r.  Frees made by threads that did not own r (the Python binding lets any
 * thread free) may still be counted until their page is collected: a count is never too low. */
size_t rhost_owned_blocks(region_t *r);

/* Scanning r's object heap block by block: the isolation engine (region-internal.h, riso_scan). */

/* Live blocks and bytes in use in r's object heap (object) or buffer heap, counted as
 * rhost_owned_blocks counts. */
void rhost_heap_usage(region_t *r, bool object, size_t *blocks, size_t *bytes);

#endif /* REGION_HOST_H */
