/* test-util.h - shared helpers of the cmocka tests. */
#ifndef REGION_TEST_UTIL_H
#define REGION_TEST_UTIL_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "region.h"

/* Asserts a status, printing region_last_error() when it differs. */
#define assert_status(expr, expected)                                                          \
    do {                                                                                       \
        region_status got_ = (expr);                                                           \
        if (got_ != (expected))                                                                \
            fail_msg("%s = %s, expected %s (last error: %s)", #expr, region_strerror(got_),    \
                     region_strerror(expected), region_last_error());                          \
    } while (0)

#define assert_ok(expr) assert_status(expr, REGION_OK)

/* Asserts that region_last_error() contains needle. */
#define assert_error_mentions(needle)                                                          \
    do {                                                                                       \
        if (!strstr(region_last_error(), (needle)))                                            \
            fail_msg("last error \"%s\" does not mention \"%s\"", region_last_error(), (needle)); \
    } while (0)

static inline region_t *new_region(const char *name) {
    region_options_t o = REGION_OPTIONS_DEFAULT;
    o.name = name;
    region_t *r = NULL;
    assert_status(region_create(&o, &r), REGION_OK);
    return r;
}

/* The process's resident memory, in KiB (/proc/self/statm); 0 when it cannot be read. */
#include <stdio.h>
static inline long rss_kib(void) {
    long pages = 0, resident = 0;
    FILE *f = fopen("/proc/self/statm", "r");
    if (f) {
        if (fscanf(f, "%ld %ld", &pages, &resident) != 2) resident = 0;
        fclose(f);
    }
    return resident * 4;
}

/* Runs fn(arg) on a new thread and waits for it. */
#include <pthread.h>
static inline void *run_on_thread(void *(*fn)(void *), void *arg) {
    pthread_t t;
    void *result;
    assert_int_equal(pthread_create(&t, NULL, fn, arg), 0);
    assert_int_equal(pthread_join(t, &result), 0);
    return result;
}

#endif
