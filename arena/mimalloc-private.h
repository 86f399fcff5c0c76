/* mimalloc-private.h - the one include of mimalloc's header.
 *
 * libregion links its own copy of mimalloc 3.4 (thirdparty/mimalloc, patched) with every symbol that
 * is not mi_* made local, and exports only region_* (libregion.map).  So the copy never replaces the
 * process's malloc, never clashes with another mimalloc in the process (Debian's libmimalloc, the one
 * inside CPython 3.13), and its options and arenas are ours alone.  See docs/design.md.
 */
#ifndef REGION_MIMALLOC_PRIVATE_H
#define REGION_MIMALLOC_PRIVATE_H

#include <mimalloc.h>

#if !defined(MI_MALLOC_VERSION) || MI_MALLOC_VERSION < 30000
#error "libregion needs mimalloc 3.x (first-class heaps usable from any thread); see docs/design.md"
#endif

/* One internal function of the vendored mimalloc (patch 0011, src/theap.c), kept global by the
 * objcopy in meson.build: the live blocks of `count` pages, given the pages that mi_heap_visit_blocks
 * passes as its areas' `reserved1`, their free lists walked in lockstep.  The public visitor can only
 * visit every block of every page, and the isolation scan (region/isolation.c) takes whole pages in a
 * loop of its own: it asks mimalloc block by block only for the pages that have free blocks.  Pinned
 * to the 3.4 line. */
#if MI_MALLOC_VERSION < 30400 || MI_MALLOC_VERSION >= 30500
#error "_mi_pages_visit_blocks is a patch of mimalloc 3.4 (thirdparty/mimalloc/patches/0011-*)"
#endif
bool _mi_pages_visit_blocks(void **pages, size_t count, mi_block_visit_fun *visitor, void *arg);

#endif
