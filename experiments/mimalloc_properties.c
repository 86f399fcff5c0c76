/* Experiments behind the choice of mimalloc (docs/design.md, "Choosing the mimalloc").
 *
 * Each property the region runtime relies on is tested in a forked child so that a crash or a hang
 * is reported as a result instead of ending the run.  The same source builds against Debian's
 * mimalloc 2.0.9 (-DMI_V2) and against mimalloc 3.x from PyPI's cmeel-mimalloc; run.sh does both.
 *
 *   P1 containment   a heap in an exclusive arena allocates only inside it, and NULL once it is full
 *   P2 hand-off      thread B allocates from a heap thread A created (under a lock), while A keeps
 *                    using its own default heap
 *   P3 remote free   blocks freed by another thread are reusable and the heap stays consistent
 *   P4 far destroy   thread B destroys the heap thread A created, while A keeps allocating elsewhere
 *   P5 thread exit   the creating thread exits; its blocks stay intact, stay in the heap, and no
 *                    ordinary allocation is ever served from the region's arena afterwards
 *   P6 lookup        pointer -> heap lookup
 *   P7 arena count   how many exclusive arenas one process can register
 *   P8 heap reuse    thread A allocates in H1, B destroys H1 and creates H2 (often at H1's address),
 *                    A allocates in H2: A must get H2's memory, not a stale per-thread cache of H1
 */
#define _GNU_SOURCE
#include <mimalloc.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>
#include <fcntl.h>

#define ARENA_SIZE ((size_t)1 << 30)
#define ALIGN ((size_t)64 << 20)

static char *arena_base;
static mi_arena_id_t arena_id;

static char *reserve(size_t size) {
    char *p = mmap(NULL, size + ALIGN, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (p == MAP_FAILED) return NULL;
    char *aligned = (char *)(((uintptr_t)p + ALIGN - 1) & ~(ALIGN - 1));
    return aligned;
}

static int in_arena(const void *p) {
    return (const char *)p >= arena_base && (const char *)p < arena_base + ARENA_SIZE;
}

static int setup_arena(size_t size) {
    arena_base = reserve(size);
    if (!arena_base) return 0;
    return mi_manage_os_memory_ex(arena_base, size, false, false, true, -1, true, &arena_id);
}

/* ---- P1 ---- */
static int p1_containment(void) {
    if (!setup_arena((size_t)64 << 20)) { printf("register failed "); return 1; }
    mi_heap_t *h = mi_heap_new_in_arena(arena_id);
    long n = 0, outside = 0;
    for (;;) {
        void *p = mi_heap_malloc(h, 48);
        if (!p) break;
        if ((char *)p < arena_base || (char *)p >= arena_base + ((size_t)64 << 20)) outside++;
        n++;
    }
    printf("%ld blocks, %ld outside, then NULL ", n, outside);
    return outside != 0;
}

/* ---- P2 ---- */
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static mi_heap_t *shared_heap;
static volatile int stop;

static void *b_allocates(void *arg) {
    (void)arg;
    for (int round = 0; round < 2000; round++) {
        pthread_mutex_lock(&lock);
        void *ps[200];
        for (int i = 0; i < 200; i++) {
            ps[i] = mi_heap_malloc(shared_heap, 16 + (i % 8) * 16);
            if (!ps[i] || !in_arena(ps[i])) { printf("bad block "); exit(3); }
            memset(ps[i], 0xAB, 16);
        }
        for (int i = 0; i < 200; i += 2) mi_free(ps[i]);
        pthread_mutex_unlock(&lock);
    }
    return NULL;
}

static void *a_churns(void *arg) {
    (void)arg;
    while (!stop) {
        void *p = mi_malloc(64 + (rand() % 512));
        mi_free(p);
    }
    return NULL;
}

static int p2_handoff(void) {
    setup_arena(ARENA_SIZE);
    shared_heap = mi_heap_new_in_arena(arena_id);
    void *first = mi_heap_malloc(shared_heap, 32);
    (void)first;
    pthread_t a, b;
    pthread_create(&a, NULL, a_churns, NULL);
    pthread_create(&b, NULL, b_allocates, NULL);
    pthread_join(b, NULL);
    stop = 1;
    pthread_join(a, NULL);
    printf("400k allocations by B, all inside ");
    return 0;
}

/* ---- P3 ---- */
static void *free_all(void *arg) {
    void **ps = arg;
    for (int i = 0; i < 100000; i++) mi_free(ps[i]);
    return NULL;
}

static int p3_remote_free(void) {
    setup_arena(ARENA_SIZE);
    mi_heap_t *h = mi_heap_new_in_arena(arena_id);
    void **ps = malloc(sizeof(void *) * 100000);
    for (int i = 0; i < 100000; i++) ps[i] = mi_heap_malloc(h, 64);
    pthread_t t;
    pthread_create(&t, NULL, free_all, ps);
    pthread_join(t, NULL);
    mi_heap_collect(h, false);
    long reused = 0;
    for (int i = 0; i < 100000; i++) {
        void *p = mi_heap_malloc(h, 64);
        if (!in_arena(p)) { printf("outside "); return 1; }
        reused += (char *)p < arena_base + (8 << 20);
    }
    printf("%ld of 100000 re-allocations in the first 8 MiB (reused) ", reused);
    return 0;
}

/* ---- P4 ---- */
static void *b_destroys(void *arg) {
    (void)arg;
    mi_heap_destroy(shared_heap);
    return NULL;
}

static int p4_far_destroy(void) {
    setup_arena(ARENA_SIZE);
    for (int round = 0; round < 200; round++) {
        shared_heap = mi_heap_new_in_arena(arena_id);
        for (int i = 0; i < 5000; i++)
            if (!mi_heap_malloc(shared_heap, 16 + (i % 16) * 8)) return 1;
        stop = 0;
        pthread_t a, b;
        pthread_create(&a, NULL, a_churns, NULL);
        pthread_create(&b, NULL, b_destroys, NULL);
        pthread_join(b, NULL);
        stop = 1;
        pthread_join(a, NULL);
    }
    printf("200 destroys from another thread during churn ");
    return 0;
}

/* ---- P5 ---- */
static void **exit_blocks;
static void *alloc_and_exit(void *arg) {
    (void)arg;
    exit_blocks = malloc(sizeof(void *) * 50000);
    for (int i = 0; i < 50000; i++) {
        exit_blocks[i] = mi_heap_malloc(shared_heap, 64);
        memset(exit_blocks[i], i & 0xff, 64);
    }
    return NULL;
}

static int p5_thread_exit(void) {
    setup_arena(ARENA_SIZE);
    pthread_t t;
    /* The heap is created on the main thread but only ever used by t (v3 style); with 2.0.9 the heap
     * has to be created on t itself to be usable at all, so create it there. */
#ifdef MI_V2
    pthread_create(&t, NULL, (void *(*)(void *))mi_heap_new_in_arena, (void *)(intptr_t)arena_id);
    void *heap;
    pthread_join(t, &heap);
    shared_heap = heap;
#else
    shared_heap = mi_heap_new_in_arena(arena_id);
#endif
    pthread_create(&t, NULL, alloc_and_exit, NULL);
    pthread_join(t, NULL);
    long intact = 0;
    for (int i = 0; i < 50000; i++) {
        unsigned char *b = exit_blocks[i];
        intact += b[0] == (i & 0xff) && b[63] == (i & 0xff);
    }
    printf("%ld/50000 intact; ", intact);
#ifndef MI_V2
    long mine = 0;
    for (int i = 0; i < 50000; i++) mine += mi_heap_of(exit_blocks[i]) == shared_heap;
    printf("%ld still in the heap; ", mine);
    void *p = mi_heap_malloc(shared_heap, 64);
    printf("main allocates from it: %s; ", p && in_arena(p) ? "inside" : "FAILED");
#endif
    mi_collect(true);
    long leaked = 0;
    for (int i = 0; i < 20000; i++) leaked += in_arena(mi_malloc(64));
    printf("%ld/20000 default-heap blocks inside the region after mi_collect(true) ", leaked);
    return leaked != 0;
}

/* ---- P6 ---- */
static int p6_lookup(void) {
#ifdef MI_V2
    printf("no mi_heap_of in 2.0.9: own range check needed ");
    return 0;
#else
    setup_arena(ARENA_SIZE);
    mi_heap_t *h = mi_heap_new_in_arena(arena_id);
    void *p = mi_heap_malloc(h, 100);
    int ok = mi_heap_of(p) == h && mi_heap_of(malloc(10)) != h;
    printf("mi_heap_of: %s ", ok ? "correct" : "WRONG");
    return !ok;
#endif
}

/* ---- P7 ---- */
static int p7_arena_count(void) {
    int n = 0;
    for (; n < 1000; n++) {
        char *b = reserve((size_t)64 << 20);
        mi_arena_id_t id;
        if (!mi_manage_os_memory_ex(b, (size_t)64 << 20, false, false, true, -1, true, &id)) break;
    }
    printf("%d exclusive arenas registered before refusal ", n);
    return 0;
}

/* ---- P8 ---- */
static void *destroy_and_recreate(void *arg) {
    (void)arg;
    mi_heap_destroy(shared_heap);
    shared_heap = mi_heap_new_in_arena(arena_id);
    return NULL;
}

static int p8_heap_reuse(void) {
#ifdef MI_V2
    printf("not applicable: a 2.0.9 heap cannot be used by a second thread at all ");
    return 0;
#else
    setup_arena(ARENA_SIZE);
    int same_address = 0, wrong = 0;
    pthread_t b;
    shared_heap = mi_heap_new_in_arena(arena_id);
    for (int round = 0; round < 1000; round++) {
        mi_heap_t *old = shared_heap;
        if (!mi_heap_malloc(shared_heap, 40)) wrong++;   /* this thread now caches old's theap */
        pthread_create(&b, NULL, destroy_and_recreate, NULL);
        pthread_join(b, NULL);
        same_address += shared_heap == old;
        void *block = mi_heap_malloc(shared_heap, 40);
        wrong += !block || !in_arena(block) || mi_heap_of(block) != shared_heap;
    }
    printf("1000 rounds, new heap at the old address %d times, %d wrong blocks ", same_address, wrong);
    return wrong != 0;
#endif
}

/* Runs fn in `reps` forked children and tallies how each ended: races show up as a share of runs. */
static void run(const char *name, int (*fn)(void), int reps) {
    int ok = 0, failed = 0, crashed = 0, hung = 0;
    for (int r = 0; r < reps; r++) {
        fflush(stdout);
        pid_t pid = fork();
        if (pid == 0) {
            alarm(30);
            if (r > 0) { int devnull = open("/dev/null", O_WRONLY); dup2(devnull, 1); }
            int bad = fn();
            printf("\n");
            fflush(stdout);
            _exit(bad ? 1 : 0);
        }
        int status;
        waitpid(pid, &status, 0);
        if (WIFSIGNALED(status) && WTERMSIG(status) == SIGALRM) hung++;
        else if (WIFSIGNALED(status)) crashed++;
        else if (WEXITSTATUS(status)) failed++;
        else ok++;
        if (r == 0 && WIFSIGNALED(status)) printf("\n");
    }
    printf("%-14s runs %d: ok %d, failed %d, crashed %d, hung %d\n", name, reps, ok, failed, crashed, hung);
}

int main(void) {
    mi_option_set(mi_option_show_errors, 0);
    printf("mimalloc version %d\n", mi_version());
    run("P1 containment", p1_containment, 1);
    run("P2 hand-off", p2_handoff, 8);
    run("P3 remote free", p3_remote_free, 1);
    run("P4 far destroy", p4_far_destroy, 8);
    run("P5 thread exit", p5_thread_exit, 3);
    run("P6 lookup", p6_lookup, 1);
    run("P7 arenas", p7_arena_count, 1);
    run("P8 heap reuse", p8_heap_reuse, 1);
    return 0;
}
