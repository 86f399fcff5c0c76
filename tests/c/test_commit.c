/* How the arenas' memory becomes writable (arena/reserve.c, rarena_commit_policy): from the start
 * where the kernel overcommits, else on demand (PROT_NONE until mimalloc commits a 64 KiB piece);
 * REGION_COMMIT=on-demand asks for the latter, a wrong value is a clear error, and the reservation
 * never takes transparent huge pages.  The policy is fixed at a process's first region, so each test
 * runs in a child forked before this process made one. */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "test-util.h"

/* The mapping of /proc/self/smaps holding p: its bounds, permissions and VmFlags. */
typedef struct mapping {
    uintptr_t start, end;
    char perms[8];
    char flags[512];
} mapping_t;

static bool mapping_of(const void *p, mapping_t *out) {
    FILE *f = fopen("/proc/self/smaps", "r");
    if (!f) return false;
    char line[512];
    bool found = false, inside = false;
    while (fgets(line, sizeof line, f)) {
        unsigned long start, end;
        char perms[8];
        if (sscanf(line, "%lx-%lx %7s", &start, &end, perms) == 3 && strchr(line, '-') < strchr(line, ' ')) {
            if (found) break;
            inside = (uintptr_t)p >= start && (uintptr_t)p < end;
            if (inside) {
                *out = (mapping_t){.start = start, .end = end};
                memcpy(out->perms, perms, sizeof perms);
                found = true;
            }
        } else if (inside && strncmp(line, "VmFlags:", 8) == 0) {
            snprintf(out->flags, sizeof out->flags, "%s", line + 8);
        }
    }
    fclose(f);
    return found;
}

static int overcommit_policy(void) {
    int policy = -1;
    FILE *f = fopen("/proc/sys/vm/overcommit_memory", "r");
    if (f) {
        if (fscanf(f, "%d", &policy) != 1) policy = -1;
        fclose(f);
    }
    return policy;
}

enum { WRITABLE, ON_DEMAND };

/* In the child: makes a region with one block under REGION_COMMIT=asked (NULL: unset) and returns 0
 * when the block's mapping is what `expected` says, else the number of the check that failed. */
static int child_checks(const char *asked, int expected) {
    if (asked) setenv("REGION_COMMIT", asked, 1);
    else unsetenv("REGION_COMMIT");
    region_t *r;
    if (region_create(NULL, &r) != REGION_OK) return 1;
    void *p = region_alloc(r, 64);
    if (!p) return 2;
    mapping_t m;
    if (!mapping_of(p, &m)) return 3;
    if (strncmp(m.perms, "rw", 2) != 0) return 4;
    /* MADV_NOHUGEPAGE, where the kernel has transparent huge pages (elsewhere it refuses the advice). */
    if (access("/sys/kernel/mm/transparent_hugepage", F_OK) == 0 && !strstr(m.flags, " nh")) return 5;
    size_t span = m.end - m.start, arena = (size_t)64 << 20;
    /* Writable from the start: one mapping for the whole reservation, arenas of 4 GiB by default.
     * On demand: the committed slices alone, far less than an arena. */
    if (expected == WRITABLE ? span < arena : span >= arena) return 6;
    region_destroy(r);
    return 0;
}

static int in_child(const char *asked, int expected) {
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) _exit(child_checks(asked, expected));
    int status = 0;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status));
    return WEXITSTATUS(status);
}

static void arenas_are_writable_from_the_start_where_the_kernel_overcommits(void **state) {
    (void)state;
    if (overcommit_policy() == 2) skip();   /* strict overcommit: on demand, the next test's case */
    assert_int_equal(in_child(NULL, WRITABLE), 0);
    assert_int_equal(in_child("auto", WRITABLE), 0);
}

static void region_commit_on_demand_keeps_uncommitted_slices_inaccessible(void **state) {
    (void)state;
    assert_int_equal(in_child("on-demand", ON_DEMAND), 0);
}

static void a_wrong_region_commit_is_a_clear_error(void **state) {
    (void)state;
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) {
        setenv("REGION_COMMIT", "lazy", 1);
        region_t *r = NULL;
        int failed = region_create(NULL, &r) != REGION_EINVAL || r != NULL ||
                     !strstr(region_last_error(), "REGION_COMMIT=lazy") ||
                     !strstr(region_last_error(), "on-demand");
        /* Fixed, the next create succeeds: nothing was reserved on the way. */
        unsetenv("REGION_COMMIT");
        if (!failed && region_create(NULL, &r) != REGION_OK) failed = 2;
        _exit(failed);
    }
    int status = 0;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(arenas_are_writable_from_the_start_where_the_kernel_overcommits),
        cmocka_unit_test(region_commit_on_demand_keeps_uncommitted_slices_inaccessible),
        cmocka_unit_test(a_wrong_region_commit_is_a_clear_error),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
