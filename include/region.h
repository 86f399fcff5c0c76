/* region.h - the public C API of libregion.
 *
 * A region is a set of memory blocks that live and die together.  Each region has mimalloc heaps of
 * its own, in an arena that regions of the same NUMA binding share, so no other region's blocks ever
 * share its pages.  A process can hold as many regions as its memory allows (about 6 KiB each when
 * empty, up to REGION_MAX_LIVE_REGIONS).  A region can be bound to a NUMA node, has at most one owner thread at a time, hands weak
 * handles to its blocks to anyone, collects its own garbage objects without looking at any other
 * region, and is freed in bulk.
 *
 * Link with `pkg-config --cflags --libs region`, or statically with `-l:libregion.a -lnuma -pthread`
 * (region_alloc's out-of-line part is then called directly, not through the PLT).  libregion carries
 * its own private copy of mimalloc; it does not replace the process's malloc, and both forms define
 * only `region_*` symbols.
 *
 * THREAD RULES (apply to every function below unless its comment says otherwise)
 *   - A region is created owned by the thread that creates it.
 *   - Functions that read or change a region's memory (allocate, free, destroy, collect, resolve a
 *     handle, statistics) require the calling thread to own the region.  A non-owner gets
 *     REGION_ENOTOWNER and nothing happens - it is never undefined behaviour.
 *   - region_of(), region_id(), region_name(), region_owned() and the ownership calls may be used
 *     from any thread at any time while the region exists.
 *   - Using a region_t* after region_destroy() returned REGION_OK is a use-after-free, as with free().
 *     Handles and ids are the safe way to refer to regions that may be gone.
 *   - Giving a region up (region_release, region_hand_off) publishes every write its owner made: the
 *     next owner sees them, however it became the owner.
 *
 * BLOCK POINTERS
 *   region_free, region_realloc, region_usable_size and region_handle_new take a pointer that must be
 *   the start of a live block of the region.  A pointer of another region, of malloc, of the stack or
 *   NULL-like garbage is always detected (REGION_ENOTREGION).  An interior pointer of one of the
 *   region's blocks, or a block already freed, is detected only by builds with block checks
 *   (region_block_checks(): debug builds); elsewhere it is undefined behaviour, as with free().
 *   Region objects (region_object_*) are always checked exactly.
 *
 * ERRORS
 *   Fallible calls return a region_status.  Calls that return a pointer return NULL on failure and
 *   record the status; region_last_status() and region_last_error() give the status and a
 *   human-readable message (naming the region and the cause) of the last failing call on the calling
 *   thread.  region_strerror() names any status.
 */
#ifndef REGION_H
#define REGION_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define REGION_VERSION_MAJOR 0
#define REGION_VERSION_MINOR 1
#define REGION_VERSION_PATCH 0

/* The version of the library linked, "MAJOR.MINOR.PATCH": the REGION_VERSION_* it was built with,
 * which a program compiled against another header can compare with its own.  Any thread. */
const char *region_version(void);

/* ------------------------------------------------------------------------------------------------
 * Status codes
 * ---------------------------------------------------------------------------------------------- */

typedef enum region_status {
    REGION_OK = 0,
    REGION_EINVAL,           /* an argument is invalid (NULL region, bad flag, zero count ...) */
    REGION_ENOMEM,           /* the system could not provide memory for the runtime's own bookkeeping */
    REGION_EFULL,            /* the region's reserved address range is exhausted (see region_config) */
    REGION_ELIMIT,           /* too many regions alive at once, or no arena left for a binding */
    REGION_ENOTOWNER,        /* the calling thread does not own the region */
    REGION_EOWNED,           /* the calling thread already owns the region (acquire is not recursive) */
    REGION_EBUSY,            /* try-acquire: another thread owns the region */
    REGION_ETIMEDOUT,        /* timed acquire: the timeout passed before the region became free */
    REGION_ENOTREGION,       /* the pointer is not a block of this region */
    REGION_ENONODE,          /* the NUMA node does not exist or has no memory */
    REGION_EBIND,            /* a strict NUMA binding could not be honoured */
    REGION_EFREED,           /* a handle's target block was freed (or collected) */
    REGION_EDEAD,            /* the region was destroyed (a handle's, an id's, or one waited for) */
    REGION_EBADHANDLE,       /* the value was never a handle made by this process (or is null) */
    REGION_ECROSSREF,        /* a region object holds a strong reference into another region */
    REGION_ESTATE,           /* the call is not allowed now (e.g. configure after the first region,
                                collect from inside a finalizer, destroy inside a collection) */
    REGION_EOS,              /* a system call failed; region_last_error() names it and errno */
    REGION_STATUS_COUNT
} region_status;

/* The name of a status ("REGION_EFULL: region address range exhausted"); never NULL. */
const char *region_strerror(region_status status);

/* The status of the last failing call on this thread (REGION_OK if none failed yet). */
region_status region_last_status(void);

/* A message describing the last failing call on this thread, with the region's name and id and the
 * cause ("region 'cache' (id 3): alloc of 100 bytes: the region's arena of 4096 MiB is exhausted ...").  The string is
 * thread-local and valid until the next failing call on this thread.  Empty string if none. */
const char *region_last_error(void);

/* ------------------------------------------------------------------------------------------------
 * Process-wide configuration
 * ---------------------------------------------------------------------------------------------- */

typedef struct region_config {
    /* Bytes of address space reserved for each arena: the most one region can hold, and what the
     * regions sharing the arena hold together.  Rounded up to a multiple of 64 MiB; at least 64 MiB.
     * Default 4 GiB.  Address space only: memory is resident once touched (see REGION_COMMIT below). */
    size_t arena_size;
    /* How many arenas the process reserves.  Each is a mimalloc arena, and mimalloc allows at most 160
     * per process, some of which it may take for its own memory; the default and the maximum is 150.
     * Regions of one NUMA binding (node and policy) get arenas of their own while that binding holds
     * fewer than a quarter of them, and share those, the least used first, after that. */
    unsigned max_arenas;
} region_config_t;

/* REGION_COMMIT, read from the environment at the first region_create, says how the reserved arenas
 * become writable:
 *   - unset, empty or "auto": writable from the start (MAP_NORESERVE: not charged, resident only once
 *     touched) where the kernel overcommits, so that no page costs an mprotect call; on demand under
 *     strict overcommit (vm.overcommit_memory = 2), which would charge a writable reservation whole;
 *   - "on-demand": PROT_NONE until a region's heap takes a 64 KiB piece (one mprotect call each), so
 *     that address space no region uses stays inaccessible, under any overcommit policy.
 * Any other value makes region_create fail with REGION_EINVAL.  Either way the reservation never takes
 * transparent huge pages (MADV_NOHUGEPAGE), which would make 2 MiB resident around a small region. */

/* Regions alive at once, at most (their records: region ids name them). */
#define REGION_MAX_LIVE_REGIONS 4194304u

/* Sets the configuration.  Only before the first region is created (REGION_ESTATE afterwards);
 * REGION_EINVAL for an arena size over 1 TiB or max_arenas of 0 or above the maximum. */
region_status region_configure(const region_config_t *config);

/* The configuration in force (defaults until region_configure() or the first region). */
void region_get_config(region_config_t *out);

/* How many threads a host's isolation proof of a big region uses (the Python binding's release(),
 * close() and check()): 1, or 2 - the calling thread and libregion's helper thread, which scans some
 * of the region's full pages meanwhile.  A scan is split only when those pages hold
 * 4 MiB or more (docs/design.md, "The isolation proof").  region_check runs a type's trace callback
 * for every object, which only the calling thread may do, so it never splits.  threads: 0 (the
 * default) for 2 when the process may run on two or more CPUs (its affinity mask, read once), else
 * 1; 1 never uses the helper; 2 always does.  Any time, any thread; a scan running meanwhile keeps
 * its choice.  REGION_EINVAL above 2. */
region_status region_set_scan_threads(unsigned threads);

/* The threads a big region's scan would use now: 1 or 2 (what region_set_scan_threads decided). */
unsigned region_scan_threads(void);

/* ------------------------------------------------------------------------------------------------
 * Regions: create, destroy, identify
 * ---------------------------------------------------------------------------------------------- */

typedef struct region region_t;

typedef enum region_binding {
    REGION_BIND_NONE = 0,    /* no NUMA policy: pages land where the kernel puts them */
    REGION_BIND_PREFERRED,   /* prefer the node; fall back to others when it is full */
    REGION_BIND_STRICT       /* only the node: allocation fails rather than land elsewhere */
} region_binding;

typedef struct region_options {
    const char *name;        /* copied; NULL gives "region-<id>"; at most 63 bytes are kept */
    int node;                /* NUMA node, or -1 for none (binding must then be REGION_BIND_NONE) */
    region_binding binding;
} region_options_t;

/* Default options: no name, no node, no binding. */
#define REGION_OPTIONS_DEFAULT { NULL, -1, REGION_BIND_NONE }

/* Creates a region owned by the calling thread.  opts may be NULL (defaults).
 * Errors: REGION_EINVAL (node given without binding or binding without node, bad binding value),
 *         REGION_ENONODE (node does not exist or has no memory), REGION_EBIND (strict binding could
 *         not be applied to a new arena), REGION_ELIMIT (REGION_MAX_LIVE_REGIONS alive, or every arena
 *         serves another binding), REGION_ENOMEM (memory for the region's heaps), REGION_EOS. */
region_status region_create(const region_options_t *opts, region_t **out);

/* Destroys the region and frees every block in it in bulk: O(pages), not O(blocks).  Finalizers of
 * region objects are NOT run (use region_collect with no roots first if they must be).  Every handle
 * into the region becomes REGION_EDEAD in O(1).  The pages stay committed for reuse by later
 * regions until region_trim() (or, unused, for about 10 minutes).  Owner only; REGION_ESTATE inside a
 * collection of this region. */
region_status region_destroy(region_t *r);

/* Gives the committed-but-free pages of every arena back to the operating system now
 * (MADV_DONTNEED): the pages of destroyed regions, and the pages that blocks freed by their owner
 * emptied.  Any thread, whether or not it ever used a region. */
region_status region_trim(void);

/* The region's id: unique for the life of the process (never reused), a plain integer that can be
 * passed anywhere.  Any thread. */
uint64_t region_id(const region_t *r);

/* The region's name.  Any thread; valid while the region exists. */
const char *region_name(const region_t *r);

/* The live region with this id, or NULL (REGION_EDEAD recorded; the message says whether it was
 * destroyed or never existed).  Any thread.  The result is valid only while the region exists: to use
 * it, acquire it. */
region_t *region_from_id(uint64_t id);

/* The region whose memory holds p, or NULL.  O(1): a range test, then mimalloc's page map and the
 * header of p's page.  Safe for any pointer (stack, glibc, freed, garbage): p itself is never read.
 * Any thread. */
region_t *region_of(const void *p);

/* ------------------------------------------------------------------------------------------------
 * Allocation (owner only)
 * ---------------------------------------------------------------------------------------------- */

/* The largest block one allocation may ask for: 2 GiB - 8 MiB, whatever region_config.arena_size is
 * (mimalloc 3.4 places one block in at most about 2 GiB of an arena).  Larger data takes several
 * blocks. */
#define REGION_MAX_BLOCK_SIZE (((size_t)2 << 30) - ((size_t)8 << 20))

/* Allocates size bytes (size 0 gives a unique minimal block), aligned to 16 bytes, or to 8 for a size
 * of 8 bytes or less (like malloc: the alignment of any type that fits).  NULL on failure:
 * REGION_ENOTOWNER, REGION_EFULL (reservation exhausted), REGION_EINVAL (r is NULL, or size over
 * REGION_MAX_BLOCK_SIZE). */
void *region_alloc(region_t *r, size_t size);

/* As region_alloc, zero-filled. */
void *region_zalloc(region_t *r, size_t size);

/* region_alloc is inlined into the caller: the owner check and mimalloc's allocation, with the
 * checked function (the errors, and every allocation of a library built with block checks) out of
 * line.  Same contract, same errors; define REGION_NO_INLINE before including this header to call
 * the library function always (its address is &region_alloc either way).  The names below are the
 * inline path's, not API: they change with the library, which is why the header and the library
 * must be of one version (REGION_VERSION_*). */
struct mi_heap_s;
typedef struct region_inline_view {
    struct mi_heap_s *heap;   /* the raw-block heap, or NULL: take the checked path */
    uint64_t owner;           /* atomic: the owner's region_thread_token(), 0 for none */
} region_inline_view_t;
/* The calling thread's token, or UINT64_MAX before its first ownership call: never an owner. */
extern __thread uint64_t region_inline_token __attribute__((tls_model("initial-exec")));
void *region_inline_malloc(struct mi_heap_s *heap, size_t size);

static inline void *region_alloc_inline(region_t *r, size_t size) {
    const region_inline_view_t *view = (const region_inline_view_t *)r;
    /* The acquire load pairs with the release of whoever owned r before (THREAD RULES). */
    if (__builtin_expect(r != NULL && size <= REGION_MAX_BLOCK_SIZE &&
                         __atomic_load_n(&view->owner, __ATOMIC_ACQUIRE) == region_inline_token && view->heap, 1)) {
        void *p = region_inline_malloc(view->heap, size);
        if (__builtin_expect(p != NULL, 1)) return p;
    }
    return (region_alloc)(r, size);   /* not the owner, full, a NULL region: the error */
}
#ifndef REGION_NO_INLINE
#define region_alloc(r, size) region_alloc_inline((r), (size))
#endif

/* count * size zero-filled bytes; NULL with REGION_EINVAL when the product overflows. */
void *region_calloc(region_t *r, size_t count, size_t size);

/* Resizes a block of r, keeping it in r (never moves it out of the region).  p NULL allocates.
 * NULL on failure with p untouched: REGION_ENOTREGION if p is not a live block of r (BLOCK POINTERS
 * above), plus the region_alloc errors.  Handles to p follow the block if it moves. */
void *region_realloc(region_t *r, void *p, size_t size);

/* Frees a block of r.  NULL is a no-op.  Handles to p become REGION_EFREED.
 * Errors: REGION_ENOTOWNER, REGION_ENOTREGION (p is not a live block of r: BLOCK POINTERS above). */
region_status region_free(region_t *r, void *p);

/* The usable size of a block of r (at least the requested size); 0 if p is not a live block of r
 * (BLOCK POINTERS above), or if the caller does not own r (REGION_ENOTOWNER recorded). */
size_t region_usable_size(region_t *r, const void *p);

/* ------------------------------------------------------------------------------------------------
 * Ownership
 *
 * Owners are threads.  region_acquire* wait until the region has no owner (or was handed to the
 * caller), then make the caller its owner.  Waiters are woken on release.  A thread that exits while
 * owning a region leaves it owned by nobody who can release it: release before exiting.
 * ---------------------------------------------------------------------------------------------- */

/* Blocks until the caller owns r.  REGION_EOWNED if it already does (not recursive); REGION_EDEAD
 * if the region is destroyed while waiting. */
region_status region_acquire(region_t *r);

/* Takes r if it is free (or handed to the caller); REGION_EBUSY otherwise, without waiting. */
region_status region_try_acquire(region_t *r);

/* As region_acquire, giving up after timeout_ns nanoseconds with REGION_ETIMEDOUT. */
region_status region_acquire_timed(region_t *r, uint64_t timeout_ns);

/* Gives up ownership; wakes one waiter.  The caller also gives up the pages it allocated from (to the
 * region, not to the system), so that the blocks a later owner frees there are collected as they are
 * freed rather than left waiting for this thread; a later allocation of the caller's takes pages
 * again.  REGION_ENOTOWNER if the caller is not the owner, REGION_ESTATE from inside the region's own
 * collection (a trace callback or finalizer). */
region_status region_release(region_t *r);

/* Makes the thread with token `to` (from region_thread_token()) the owner, directly: no third thread
 * can take the region in between; the caller gives up its pages as region_release does.  The
 * receiver may use the region at once (it passes every owner check and sees the caller's writes); it
 * confirms with region_acquire(), which then returns REGION_OK at once.  REGION_ENOTOWNER if the
 * caller is not the owner, REGION_EINVAL for token 0, REGION_ESTATE from inside the region's own
 * collection. */
region_status region_hand_off(region_t *r, uint64_t to);

/* 1 if the calling thread owns r, else 0.  Any thread. */
int region_owned(const region_t *r);

/* The calling thread's owner token: nonzero, unique for the life of the process (never reused, unlike
 * pthread_t).  Any thread. */
uint64_t region_thread_token(void);

/* ------------------------------------------------------------------------------------------------
 * Weak handles
 *
 * A handle names a block of a region by (region id, slot, generation).  It is a plain value: copy
 * it, store it anywhere, compare it with memcmp.  It never keeps the region or the block alive.
 * All handles to one block share one table entry; the entry is recycled when the block is freed.
 * ---------------------------------------------------------------------------------------------- */

typedef struct region_handle {
    uint64_t region;        /* region id (0 for the null handle) */
    uint32_t slot;          /* index in the region's handle table */
    uint32_t generation;    /* bumped each time the entry is recycled */
} region_handle_t;

#define REGION_HANDLE_NULL ((region_handle_t){0, 0, 0})

/* Makes (or finds) the handle of block or object p of r.  Owner only.
 * Errors: REGION_ENOTOWNER, REGION_ENOTREGION (p is not a live block or object of r: BLOCK POINTERS
 * above), REGION_ENOMEM. */
region_status region_handle_new(region_t *r, void *p, region_handle_t *out);

/* Resolves a handle to its block.  Any thread may call; only the owner of the handle's region gets
 * the pointer.  Errors, in the order they are checked: REGION_EBADHANDLE (null, generation 0, or a
 * region id no region ever had), REGION_EDEAD (region destroyed), REGION_ENOTOWNER, REGION_EBADHANDLE
 * (a slot and generation the region never handed out: only its owner can tell), REGION_EFREED (block
 * freed). */
region_status region_handle_resolve(region_handle_t h, void **out);

/* ------------------------------------------------------------------------------------------------
 * Objects and independent collection
 *
 * Region objects are blocks with a type that reports their references.  region_collect() marks
 * every object reachable from the region's roots (region_set_root, region_add_root) following only
 * references to objects of the same region, then finalizes and frees the rest.  It touches no other
 * region: its cost is proportional to this region's objects.  Handles are weak: an object reachable
 * only through handles is garbage, and its handles become REGION_EFREED.
 * ---------------------------------------------------------------------------------------------- */

/* Called by a trace function once for each pointer an object holds (NULL and foreign ones included). */
typedef void (*region_visit_fn)(void *ref, void *ctx);

typedef struct region_type {
    const char *name;  /* used in error messages */
    /* Reports every pointer the object holds by calling visit(ref, ctx).  NULL for leaf objects.
     * Must not change the region: while trace callbacks run, region_object_new, region_object_free,
     * the root calls, region_collect, region_check, region_destroy, region_release and
     * region_hand_off of the region return REGION_ESTATE. */
    void (*trace)(const void *obj, region_visit_fn visit, void *ctx);
    /* Called once on a garbage object before any garbage of the same collection is freed, so it may
     * still read other garbage objects.  NULL if none.  It may allocate new objects (and raw blocks)
     * in the region and make them roots; region_object_free, region_collect, region_check,
     * region_destroy, region_release, region_hand_off, and making a garbage object a root return
     * REGION_ESTATE. */
    void (*finalize)(void *obj);
} region_type_t;

/* Allocates a zeroed object of `size` bytes of type `type` (which must outlive the object), aligned
 * to 16 bytes.  NULL on failure with the region_alloc errors, REGION_EINVAL for a NULL type, or
 * REGION_ESTATE from a trace callback. */
void *region_object_new(region_t *r, const region_type_t *type, size_t size);

/* Frees one object now, without its finalizer; it stops being the root or an extra root.  Owner
 * only.  REGION_ENOTREGION if obj is not a live object of r (checked exactly: an interior or freed
 * pointer is refused), REGION_ESTATE during the region's own collection. */
region_status region_object_free(region_t *r, void *obj);

/* The type of a live object of some region, or NULL if obj is not one (an interior pointer, a freed
 * object or a raw block included).  Safe for any pointer value: it reads memory only once it is proven
 * to be mapped.  From a thread that does not own obj's region, only while the owner cannot be
 * freeing obj. */
const region_type_t *region_object_type(const void *obj);

/* Sets (obj) or clears (NULL) the region's root object, its entry point.  Owner only.
 * REGION_ENOTREGION if obj is not an object of r; REGION_ESTATE from a trace callback, or for a garbage
 * object from a finalizer. */
region_status region_set_root(region_t *r, void *obj);

/* The root object, or NULL.  Owner only (NULL with REGION_ENOTOWNER recorded otherwise). */
void *region_root(region_t *r);

/* Extra roots (objects referenced from outside the region, e.g. from the stack), counted: add twice,
 * remove twice.  Owner only.  add: REGION_ENOTREGION as for set_root, REGION_ESTATE from a trace
 * callback or for a garbage object from a finalizer; remove: REGION_EINVAL if obj is not a root,
 * REGION_ESTATE from a trace callback. */
region_status region_add_root(region_t *r, void *obj);
region_status region_remove_root(region_t *r, void *obj);

/* Collection flags. */
#define REGION_COLLECT_CHECK 0x1u  /* fail with REGION_ECROSSREF, freeing nothing, if a reachable
                                      object holds a pointer into another live region */

typedef struct region_collect_stats {
    size_t visited;      /* reachable objects marked */
    size_t freed;        /* garbage objects freed */
    size_t finalized;    /* finalizers run */
    uint64_t pause_ns;   /* time the collection took */
} region_collect_stats_t;

/* Collects r.  Owner only.  out may be NULL.  REGION_ESTATE when called from r's trace callbacks or
 * finalizers. */
region_status region_collect(region_t *r, unsigned flags, region_collect_stats_t *out);

/* Checks r's rule "references between regions are handles": REGION_ECROSSREF, with the object, its
 * type and both regions named in region_last_error(), if a live object - reachable, or garbage not
 * collected yet - holds a pointer into another live region.  One pass over r's object pages, each
 * object traced once (trace callbacks run as in a collection); a second pass names the offender.
 * Frees nothing.  Owner only; REGION_ESTATE during r's own collection; REGION_ENOMEM. */
region_status region_check(region_t *r);

/* ------------------------------------------------------------------------------------------------
 * Statistics and NUMA placement
 * ---------------------------------------------------------------------------------------------- */

typedef struct region_stats {
    uint64_t id;
    size_t bytes_in_use;      /* bytes in live blocks (block sizes, not requested sizes) */
    size_t bytes_committed;   /* bytes of pages that hold blocks (used or free) */
    size_t bytes_reserved;    /* the size of the region's arena: the most it can hold */
    size_t blocks;            /* live blocks (objects included) */
    size_t pages;             /* mimalloc pages holding blocks */
    size_t heaps;             /* mimalloc heaps of the region: 2 (blocks, objects), usable from any thread */
    size_t objects;           /* live region objects */
    size_t handles;           /* handle table entries in use */
    uint64_t collections;     /* region_collect() calls that completed */
    uint64_t collected;       /* objects freed by collections, in total */
    int node;                 /* bound NUMA node or -1 */
    region_binding binding;
} region_stats_t;

/* Fills *out, exactly.  O(pages) while only the creating thread has owned r; once another thread has,
 * O(blocks) (frees by a thread other than the allocating one are folded in by visiting the blocks).
 * Owner only. */
region_status region_stats(region_t *r, region_stats_t *out);

#define REGION_MAX_NODES 64

typedef struct region_census {
    size_t pages_scanned;                  /* OS pages (4 KiB) of the region's mimalloc pages */
    size_t pages_present;                  /* of those, resident in memory */
    size_t pages_on_node[REGION_MAX_NODES];/* resident pages per node */
    size_t pages_on_target;                /* resident pages on the bound node (0 if unbound) */
    size_t pages_unknown;                  /* resident pages whose node the kernel did not report */
} region_census_t;

/* Counts the region's resident pages per NUMA node (mincore + move_pages without moving anything;
 * pages that were never touched are not faulted in).  Owner only. */
region_status region_census(region_t *r, region_census_t *out);

/* Number of configured NUMA nodes on this machine (1 without NUMA support).  Any thread. */
int region_numa_nodes(void);

/* 1 if this build of libregion checks block pointers exactly (see BLOCK POINTERS above: an interior
 * pointer or a freed block gives REGION_ENOTREGION), else 0.  On in debug builds (meson
 * -Dbuildtype=debug), or with meson -Dblock_checks=enabled; each raw block then costs a hash-set entry.
 * Any thread. */
int region_block_checks(void);

#ifdef __cplusplus
}
#endif

#endif /* REGION_H */
