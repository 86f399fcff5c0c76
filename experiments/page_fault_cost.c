/* What the first write to a fresh 4 KiB page costs on this machine: the kernel's anonymous page
 * fault, which every OS page a new region touches pays once (docs/benchmarks.md, "A region per
 * request": a request's region touches about 17 of them, where the ordinary heap's request touches
 * about 4).  Also the same pages made resident ahead by madvise(MADV_POPULATE_WRITE), four per
 * 64 KiB slice as a region's first pages would be: the fault without the trap, the rest (allocating,
 * zeroing and charging the page) unchanged.
 *
 *   cc -O2 -o /tmp/page_fault_cost experiments/page_fault_cost.c && /tmp/page_fault_cost
 *
 * Three rounds of 512 MiB each, huge pages off for the mapping (a region's memory is 4 KiB pages).
 */
#define _GNU_SOURCE
#include <stdio.h>
#include <sys/mman.h>
#include <time.h>

#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23   /* Linux 5.14 */
#endif

#define SPAN ((size_t)512 << 20)
#define OS_PAGE 4096
#define SLICE 65536
#define PAGES_PER_SLICE 4

static double seconds(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static char *fresh_span(void) {
    char *p = mmap(NULL, SPAN, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (p == MAP_FAILED) return NULL;
    madvise(p, SPAN, MADV_NOHUGEPAGE);
    return p;
}

int main(void) {
    for (int round = 0; round < 3; round++) {
        char *p = fresh_span();
        if (!p) return perror("mmap"), 1;
        double t = seconds();
        for (size_t i = 0; i < SPAN; i += OS_PAGE) p[i] = 1;
        double touch = (seconds() - t) / (SPAN / OS_PAGE);
        munmap(p, SPAN);

        if (!(p = fresh_span())) return perror("mmap"), 1;
        int failed = 0;
        t = seconds();
        for (size_t i = 0; i < SPAN; i += SLICE)
            failed |= madvise(p + i, PAGES_PER_SLICE * OS_PAGE, MADV_POPULATE_WRITE);
        double populate = (seconds() - t) / (SPAN / SLICE * PAGES_PER_SLICE);
        t = seconds();
        for (size_t i = 0; i < SPAN; i += SLICE)
            for (size_t j = 0; j < PAGES_PER_SLICE * OS_PAGE; j += OS_PAGE) p[i + j] = 1;
        double after = (seconds() - t) / (SPAN / SLICE * PAGES_PER_SLICE);
        munmap(p, SPAN);
        if (failed) printf("round %d: MADV_POPULATE_WRITE refused (kernel before 5.14?)\n", round + 1);
        printf("round %d: first write %.3f us a page; populated ahead %.3f us a page, then written %.3f us\n",
               round + 1, touch * 1e6, populate * 1e6, after * 1e6);
    }
    return 0;
}
