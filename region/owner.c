/* owner.c - the region-ownership lock.
 *
 * A region has at most one owner, identified by a thread token: a per-thread number drawn once from a
 * process-wide counter, so unlike pthread_t it is never reused by a later thread.  The owner field is
 * written only under owner_lock and read anywhere atomically; waiters sleep on owner_cond.  Giving the
 * region up (release, hand-off) is a release store and the owner check an acquire load, so whoever
 * owns the region next sees everything its previous owner wrote, lock or no lock.
 *
 * INVARIANTS
 *   - owner != 0 exactly while some thread owns the region (or has been handed it: `handed`).
 *   - A thread waiting in acquire remembers the region's id; if the id changes while it waits, the
 *     region was destroyed and it returns REGION_EDEAD (the struct itself is never freed).
 *   - Release signals one waiter; hand-off, destroy and a host's disown broadcast, because the waiter
 *     that matters may not be the one a signal would pick.
 */
#include <errno.h>
#include <time.h>

#include "region-internal.h"

static uint64_t next_token = 1;
__thread uint64_t region_inline_token __attribute__((tls_model("initial-exec"))) = ROWNER_NO_TOKEN;

uint64_t rowner_assign(void) {
    region_inline_token = __atomic_fetch_add(&next_token, 1, __ATOMIC_RELAXED);
    rassert(region_inline_token != ROWNER_NO_TOKEN);
    return region_inline_token;
}

uint64_t region_thread_token(void) { return rowner_self(); }

void rowner_init(region_t *r, uint64_t owner) {
    __atomic_store_n(&r->owner, owner, __ATOMIC_RELAXED);
    r->handed = false;
    r->creator = owner;
    r->owned_by_others = false;
}

/* With owner_lock held: `token` becomes the owner. */
static void owner_set_locked(region_t *r, uint64_t token, bool handed, int memory_order) {
    if (token != r->creator) r->owned_by_others = true;
    r->handed = handed;
    __atomic_store_n(&r->owner, token, memory_order);
}

/* r has no owner from here on (a release store: the next owner sees every write of this one); wakes
 * one waiter, or all of them. */
static void owner_clear(region_t *r, bool wake_all) {
    pthread_mutex_lock(&r->owner_lock);
    __atomic_store_n(&r->owner, 0, __ATOMIC_RELEASE);
    r->handed = false;
    if (r->waiters) {
        if (wake_all) pthread_cond_broadcast(&r->owner_cond);
        else pthread_cond_signal(&r->owner_cond);
    }
    pthread_mutex_unlock(&r->owner_lock);
}

region_status rowner_check(const region_t *r, const char *what) {
    if (unlikely(!r)) return rerror(REGION_EINVAL, "%s: region is NULL", what);
    if (likely(rowner_is_self(r))) return REGION_OK;
    uint64_t owner = __atomic_load_n(&r->owner, __ATOMIC_RELAXED);
    if (owner == 0)
        return rerror_region(r, REGION_ENOTOWNER, "%s: the region has no owner; acquire it first", what);
    return rerror_region(r, REGION_ENOTOWNER, "%s: owned by thread token %llu, not the caller (%llu)",
                         what, (unsigned long long)owner, (unsigned long long)rowner_self());
}

int region_owned(const region_t *r) { return r && rowner_is_self(r); }

/* ---- Acquire ---- */

/* Waits (deadline NULL = forever, or an absolute CLOCK_REALTIME time) with the lock held. */
static region_status acquire_locked(region_t *r, uint64_t id, const struct timespec *deadline, bool wait) {
    uint64_t self = rowner_self();
    if (r->owner == self) {
        if (r->handed) { r->handed = false; return REGION_OK; }
        return rerror_region(r, REGION_EOWNED, "acquire: the calling thread already owns the region");
    }
    if (r->owner != 0 && !wait)
        return rerror_region(r, REGION_EBUSY, "try-acquire: owned by thread token %llu",
                             (unsigned long long)r->owner);
    r->waiters++;
    region_status status = REGION_OK;
    while (r->owner != 0 && r->owner != self && r->id == id) {
        int rc = deadline ? pthread_cond_timedwait(&r->owner_cond, &r->owner_lock, deadline)
                          : pthread_cond_wait(&r->owner_cond, &r->owner_lock);
        if (rc == ETIMEDOUT && r->owner != 0 && r->owner != self && r->id == id) {
            status = rerror_region(r, REGION_ETIMEDOUT, "acquire: still owned by thread token %llu "
                                   "when the timeout passed", (unsigned long long)r->owner);
            break;
        }
    }
    r->waiters--;
    if (status != REGION_OK) return status;
    if (r->id != id) return rerror(REGION_EDEAD, "acquire: region id %llu was destroyed while waiting",
                                   (unsigned long long)id);
    owner_set_locked(r, self, false, __ATOMIC_RELAXED);   /* the lock orders it for this thread */
    return REGION_OK;
}

/* expected_id 0: whatever region r is now. */
static region_status acquire(region_t *r, uint64_t expected_id, const struct timespec *deadline, bool wait) {
    if (!r) return rerror(REGION_EINVAL, "acquire: region is NULL");
    pthread_mutex_lock(&r->owner_lock);
    uint64_t id = r->id;
    region_status status = id && (!expected_id || id == expected_id)
                         ? acquire_locked(r, id, deadline, wait)
                         : rerror(REGION_EDEAD, "acquire: the region was destroyed");
    pthread_mutex_unlock(&r->owner_lock);
    return status;
}

static struct timespec deadline_after(uint64_t timeout_ns) {
    struct timespec deadline;
    clock_gettime(CLOCK_REALTIME, &deadline);
    uint64_t ns = (uint64_t)deadline.tv_nsec + timeout_ns % 1000000000u;
    deadline.tv_sec += (time_t)(timeout_ns / 1000000000u + ns / 1000000000u);
    deadline.tv_nsec = (long)(ns % 1000000000u);
    return deadline;
}

region_status region_acquire(region_t *r) { return acquire(r, 0, NULL, true); }

region_status region_try_acquire(region_t *r) { return acquire(r, 0, NULL, false); }

region_status region_acquire_timed(region_t *r, uint64_t timeout_ns) {
    struct timespec deadline = deadline_after(timeout_ns);
    return acquire(r, 0, &deadline, true);
}

/* ---- Hosts (region-host.h, HOST OWNERSHIP) ---- */

region_status rhost_acquire(region_t *r, uint64_t id, uint64_t timeout_ns) {
    if (id == 0) return rerror(REGION_EINVAL, "acquire: region id 0 names no region");
    if (timeout_ns == 0) return acquire(r, id, NULL, false);
    struct timespec deadline = deadline_after(timeout_ns);
    return acquire(r, id, &deadline, true);
}

uint64_t rhost_owner(const region_t *r, uint64_t id) {
    /* Read between two reads of the id, which no region reuses: an owner read while r was destroyed
     * and made again could be the next region's, and then the ids differ. */
    if (__atomic_load_n(&r->id, __ATOMIC_ACQUIRE) != id) return 0;
    uint64_t owner = __atomic_load_n(&r->owner, __ATOMIC_ACQUIRE);
    return __atomic_load_n(&r->id, __ATOMIC_ACQUIRE) == id ? owner : 0;
}

void rhost_disown(region_t *r) { owner_clear(r, true); }

/* ---- Release and hand-off ---- */

/* Neither may happen during the region's own collection (from a trace callback or a finalizer): the
 * collector still owns the objects it is freeing. */

region_status region_release(region_t *r) {
    region_status status = rowner_check(r, "release");
    if (status == REGION_OK) status = rcollect_check_idle(r, "release");
    if (status != REGION_OK) return status;
    rregion_let_go_pages(r);
    owner_clear(r, false);
    return REGION_OK;
}

region_status region_hand_off(region_t *r, uint64_t to) {
    region_status status = rowner_check(r, "hand-off");
    if (status == REGION_OK) status = rcollect_check_idle(r, "hand-off");
    if (status != REGION_OK) return status;
    if (to == 0) return rerror_region(r, REGION_EINVAL, "hand-off: thread token 0 names no thread");
    if (to == rowner_self()) return REGION_OK;
    rregion_let_go_pages(r);
    pthread_mutex_lock(&r->owner_lock);
    /* Release: the receiver may start using the region as soon as its owner check (an acquire load,
     * rowner_is_self) sees this store, before it confirms with region_acquire. */
    owner_set_locked(r, to, true, __ATOMIC_RELEASE);
    if (r->waiters) pthread_cond_broadcast(&r->owner_cond);
    pthread_mutex_unlock(&r->owner_lock);
    return REGION_OK;
}

void rowner_wake_all(region_t *r) {
    /* Called with owner_lock held by destroy, after the id was cleared. */
    if (r->waiters) pthread_cond_broadcast(&r->owner_cond);
}
