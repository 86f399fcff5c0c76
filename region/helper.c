/* helper.c - libregion's helper thread: scans part of a big region's pages while the calling thread
 * scans the rest (isolation.c, SPLIT SCANS).
 *
 * One thread per process, started by the first job and kept, so that a scan pays a wake-up (about
 * 16 µs on this VM: proof_bench.py's hand-off row) and not a thread's start.  It runs one job at a
 * time.  A caller that finds it busy (a split
 * scan in another thread, or another interpreter), that is not allowed it (region_set_scan_threads,
 * or the process may run on one CPU only), or that cannot start it runs the job itself: no result
 * depends on the helper, only the time.
 *
 * WHAT A JOB MAY DO: read memory (a lookup such as mimalloc's mi_usable_size included) and write its
 * own state, in libc memory if it needs more.  No host call, no allocation or free in a region, no
 * lock the caller may hold: the caller waits in rhelper_finish meanwhile, holding whatever it holds
 * (the Python binding: the GIL), so a job that waited for any of it would deadlock.  All signals are
 * blocked in the helper, so that a host's handlers keep running in the host's own threads.
 *
 * FORK: the child of fork() has no helper thread, whatever the parent's was doing; a pthread_atfork
 * handler makes the child's state "not started, idle", and its first split scan starts its own.
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <sched.h>
#include <signal.h>

#include "region-internal.h"

static pthread_mutex_t helper_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t job_posted = PTHREAD_COND_INITIALIZER;
static pthread_cond_t job_finished = PTHREAD_COND_INITIALIZER;

/* Under helper_lock.  claimed: a caller posted a job and has not yet returned from rhelper_finish;
 * posted: the job is waiting for the helper; finished: the helper ran it. */
static struct {
    bool started, claimed, posted, finished;
    void (*job)(void *arg);
    void *arg;
} helper;

/* region_set_scan_threads: 0 (automatic), 1 or 2; read without the lock (any value is usable). */
static unsigned scan_threads;

static void *helper_main(void *unused) {
    (void)unused;
    pthread_mutex_lock(&helper_lock);
    for (;;) {
        while (!helper.posted) pthread_cond_wait(&job_posted, &helper_lock);
        helper.posted = false;
        void (*job)(void *) = helper.job;
        void *arg = helper.arg;
        pthread_mutex_unlock(&helper_lock);
        job(arg);
        pthread_mutex_lock(&helper_lock);
        helper.finished = true;
        pthread_cond_signal(&job_finished);
    }
    return NULL;
}

static void forget_helper_in_child(void) {
    pthread_mutex_init(&helper_lock, NULL);
    pthread_cond_init(&job_posted, NULL);
    pthread_cond_init(&job_finished, NULL);
    helper.started = helper.claimed = helper.posted = helper.finished = false;
}

static void register_fork_handler(void) { pthread_atfork(NULL, NULL, forget_helper_in_child); }

/* Whether the process may run on two CPUs at once: the affinity mask, not the machine's count (a
 * container or taskset may allow one).  Asked once: a mask changed later is not seen. */
static bool two_cpus_allowed(void) {
    static int allowed = -1;   /* -1: not asked yet; a race asks twice and gets one answer */
    int known = __atomic_load_n(&allowed, __ATOMIC_RELAXED);
    if (known < 0) {
        cpu_set_t set;
        known = sched_getaffinity(0, sizeof set, &set) == 0 && CPU_COUNT(&set) >= 2;
        __atomic_store_n(&allowed, known, __ATOMIC_RELAXED);
    }
    return known;
}

static bool helper_wanted(void) {
    unsigned threads = __atomic_load_n(&scan_threads, __ATOMIC_RELAXED);
    return threads == 2 || (threads == 0 && two_cpus_allowed());
}

/* Starts the thread, with every signal blocked (it inherits the mask); under helper_lock. */
static bool start_helper(void) {
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    pthread_once(&once, register_fork_handler);
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    pthread_attr_t attr;
    pthread_t thread;
    bool started = pthread_attr_init(&attr) == 0;
    if (started) {
        pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
        pthread_attr_setstacksize(&attr, (size_t)256 << 10);   /* a job's frames are few and small */
        started = pthread_create(&thread, &attr, helper_main, NULL) == 0;
        pthread_attr_destroy(&attr);
    }
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    return started;
}

bool rhelper_post(void (*job)(void *arg), void *arg) {
    if (!helper_wanted()) return false;
    pthread_mutex_lock(&helper_lock);
    bool taken = !helper.claimed && (helper.started || (helper.started = start_helper()));
    if (taken) {
        helper.claimed = helper.posted = true;
        helper.finished = false;
        helper.job = job;
        helper.arg = arg;
        pthread_cond_signal(&job_posted);
    }
    pthread_mutex_unlock(&helper_lock);
    return taken;
}

void rhelper_finish(void) {
    pthread_mutex_lock(&helper_lock);
    rassert(helper.claimed);   /* only the caller whose rhelper_post returned true */
    while (!helper.finished) pthread_cond_wait(&job_finished, &helper_lock);
    helper.claimed = false;
    pthread_mutex_unlock(&helper_lock);
}

region_status region_set_scan_threads(unsigned threads) {
    if (threads > 2) return rerror(REGION_EINVAL, "set_scan_threads: %u threads; 0 (automatic), 1 or 2", threads);
    __atomic_store_n(&scan_threads, threads, __ATOMIC_RELAXED);
    return REGION_OK;
}

unsigned region_scan_threads(void) {
    return helper_wanted() ? 2 : 1;
}
