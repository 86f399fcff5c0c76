/* mimalloc-private.h - the one include of mimalloc's header.
 *
 * libregion links its own copy of mimalloc 3.x (cmeel-mimalloc's mimalloc.o) with every symbol that
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

#endif
