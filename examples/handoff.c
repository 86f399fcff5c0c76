/* The whole C API in a few lines: create a region, allocate, make and resolve a handle, hand the
 * region to another thread, destroy it there.  Build: cc handoff.c $(pkg-config --cflags --libs region) */
#include <pthread.h>
#include <region.h>
#include <stdio.h>

static region_handle_t handle;

static void *worker(void *arg) {
    region_t *r = arg;
    region_acquire(r);                                   /* wait until it is ours */
    void *p;
    if (region_handle_resolve(handle, &p) != REGION_OK) return (void *)region_last_error();
    printf("worker resolved the handle: %s\n", (char *)p);
    return region_destroy(r) == REGION_OK ? NULL : (void *)region_last_error();
}

int main(void) {
    region_t *r;
    if (region_create(NULL, &r) != REGION_OK) { puts(region_last_error()); return 1; }
    char *text = region_alloc(r, 32);
    snprintf(text, 32, "hello from region %llu", (unsigned long long)region_id(r));
    region_handle_new(r, text, &handle);
    pthread_t t;
    pthread_create(&t, NULL, worker, r);
    region_release(r);                                   /* hand the region over */
    void *error;
    pthread_join(t, &error);
    void *p;
    printf("after destroy, resolve says: %s\n", region_strerror(region_handle_resolve(handle, &p)));
    return error ? (puts(error), 1) : 0;
}
