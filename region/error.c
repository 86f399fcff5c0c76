/* error.c - status names and the per-thread "last error" message.
 *
 * Every failing call records its status and a message naming the region and the cause.  The message
 * lives in a thread-local buffer so concurrent failures on different threads never mix.
 */
#include <stdarg.h>
#include <stdio.h>

#include "region-internal.h"

static _Thread_local region_status last_status;
static _Thread_local char last_message[512];

static const char *const status_names[REGION_STATUS_COUNT] = {
    [REGION_OK] = "REGION_OK: success",
    [REGION_EINVAL] = "REGION_EINVAL: invalid argument",
    [REGION_ENOMEM] = "REGION_ENOMEM: out of memory for the runtime's bookkeeping",
    [REGION_EFULL] = "REGION_EFULL: the region's address range is exhausted",
    [REGION_ELIMIT] = "REGION_ELIMIT: too many regions alive, or no arena for the binding",
    [REGION_ENOTOWNER] = "REGION_ENOTOWNER: the calling thread does not own the region",
    [REGION_EOWNED] = "REGION_EOWNED: the calling thread already owns the region",
    [REGION_EBUSY] = "REGION_EBUSY: the region is owned by another thread",
    [REGION_ETIMEDOUT] = "REGION_ETIMEDOUT: timed out waiting for the region",
    [REGION_ENOTREGION] = "REGION_ENOTREGION: the pointer is not a block of the region",
    [REGION_ENONODE] = "REGION_ENONODE: no such NUMA node",
    [REGION_EBIND] = "REGION_EBIND: strict NUMA binding failed",
    [REGION_EFREED] = "REGION_EFREED: the handle's target was freed",
    [REGION_EDEAD] = "REGION_EDEAD: the region was destroyed",
    [REGION_EBADHANDLE] = "REGION_EBADHANDLE: not a handle",
    [REGION_ECROSSREF] = "REGION_ECROSSREF: strong reference into another region",
    [REGION_ESTATE] = "REGION_ESTATE: not allowed in the current state",
    [REGION_EOS] = "REGION_EOS: a system call failed",
};

const char *region_strerror(region_status status) {
    if ((unsigned)status >= REGION_STATUS_COUNT) return "unknown region_status";
    return status_names[status];
}

region_status region_last_status(void) { return last_status; }

const char *region_last_error(void) { return last_message; }

static region_status record(region_status status, const char *prefix, const char *fmt, va_list ap) {
    last_status = status;
    int n = snprintf(last_message, sizeof last_message, "%s", prefix);
    if (n < 0 || (size_t)n >= sizeof last_message) return status;
    vsnprintf(last_message + n, sizeof last_message - (size_t)n, fmt, ap);
    return status;
}

region_status rerror(region_status status, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    record(status, "", fmt, ap);
    va_end(ap);
    return status;
}

region_status rerror_region(const region_t *r, region_status status, const char *fmt, ...) {
    char prefix[REGION_NAME_MAX + 48];
    snprintf(prefix, sizeof prefix, "region '%s' (id %llu): ", r->name,
             (unsigned long long)__atomic_load_n(&r->id, __ATOMIC_RELAXED));
    va_list ap;
    va_start(ap, fmt);
    record(status, prefix, fmt, ap);
    va_end(ap);
    return status;
}
