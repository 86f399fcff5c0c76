/*----------------------------------------------------------------------------
Copyright (c) 2018-2025, Microsoft Research, Daan Leijen
This is free software; you can redistribute it and/or modify it under the
terms of the MIT license. A copy of the license can be found in the file
"LICENSE" at the root of this distribution.
-----------------------------------------------------------------------------*/

#include "mimalloc.h"
#include "mimalloc/internal.h"
#include "mimalloc/prim.h"  // _mi_theap_default


/* -----------------------------------------------------------
  Heap's
----------------------------------------------------------- */

mi_theap_t* mi_heap_theap(mi_heap_t* heap) {
  return _mi_heap_theap(heap);
}

void mi_heap_set_numa_affinity(mi_heap_t* heap, int numa_node) {
  if (heap==NULL) { heap = mi_heap_main(); }
  heap->numa_node = (numa_node < 0 ? -1 : numa_node % _mi_os_numa_node_count());
}

void mi_heap_stats_merge_to_subproc(mi_heap_t* heap) {
  if (heap==NULL) { heap = mi_heap_main(); }
  #if MI_STAT_HEAPS   // region patch (0014): else a heap counts nothing
  _mi_stats_merge_into(&heap->subproc->stats, &heap->stats);
  #endif
}

void mi_heap_stats_merge_to_main(mi_heap_t* heap) {
  if (heap==NULL) return;
  #if MI_STAT_HEAPS
  _mi_stats_merge_into(&mi_heap_main()->stats, &heap->stats);
  #endif
}

static mi_decl_noinline mi_theap_t* mi_heap_init_theap(const mi_heap_t* const_heap)
{
  mi_heap_t* heap = (mi_heap_t*)const_heap;
  mi_assert_internal(heap!=NULL);

  if (_mi_is_heap_main(heap)) {
    // this can be called if the (main) thread is not yet initialized (as no allocation happened)
    // but `theap_main_init_get()` will call `mi_thread_init()`
    mi_theap_t* const theap = _mi_theap_main_safe();
    mi_assert_internal(theap!=NULL && _mi_is_heap_main(_mi_theap_heap(theap)));
    return theap;
  }

  // otherwise initialize the theap for this heap
  // get the thread local
  mi_assert_internal(heap->theap != 0);
  if (heap->theap==0) {  // paranoia
    _mi_error_message(EFAULT, "no thread-local reserved for heap (%p)\n", heap);
    return NULL;
  }
  mi_theap_t* theap = (mi_theap_t*)_mi_thread_local_get(heap->theap);

  // create a fresh theap?
  if (theap==NULL) {
    // set first an invalid value to ensure the thread local storage is allocated
    if (!_mi_thread_local_set(heap->theap, (mi_theap_t*)1)) {
      _mi_error_message(EFAULT, "unable to allocate memory for thread local storage\n");
      return NULL;
    }    
    // then allocate the theap
    theap = _mi_theap_create(heap, _mi_theap_default_safe()->tld);
    _mi_thread_local_set(heap->theap, theap);  // Cannot fail now as it was set before. Always set so the local is valid or NULL (and not 1)
    if (theap==NULL) {
      _mi_error_message(EFAULT, "unable to allocate memory for a thread local heap\n");
      return NULL;
    }    
  }
  return theap;
}


// get the theap for a heap without initializing (and return NULL in that case)
mi_theap_t* _mi_heap_theap_get_peek(const mi_heap_t* heap) {
  if (heap==NULL || _mi_is_heap_main(heap)) {
    return _mi_theap_main_safe(); 
  }
  else {
    return (mi_theap_t*)_mi_thread_local_get(heap->theap);
  }
}

// get (and possibly create) the theap belonging to a heap
mi_theap_t* _mi_heap_theap_get_or_init(const mi_heap_t* heap)
{
  mi_theap_t* theap = _mi_heap_theap_peek(heap);
  if mi_unlikely(theap==NULL) {
    theap = mi_heap_init_theap(heap);
    if (theap==NULL) { return (mi_theap_t*)&_mi_theap_empty_wrong; }  // this will return NULL from page.c:_mi_malloc_generic
  }
  _mi_theap_cached_set(theap);
  return theap;
}


mi_heap_t* mi_heap_new_in_arena(mi_arena_id_t exclusive_arena_id) {
  // always allocate heap data in the (subprocess) main heap
  mi_heap_t* const heap_main = mi_heap_main();
  // todo: allocate heap data in the exclusive arena ?
  mi_heap_t* const heap = (mi_heap_t*)mi_heap_zalloc( heap_main, sizeof(mi_heap_t) );
  if (heap==NULL) return NULL;

  // reserve a thread local slot for this heap (see also issue #1230)
  const mi_thread_local_t theap_slot = _mi_thread_local_create();
  if (theap_slot == 0) {
    _mi_error_message(EFAULT, "unable to dynamically create a thread local for a heap\n");
    mi_free(heap);
    return NULL;
  }

  // init fields
  heap->theap = theap_slot;
  heap->subproc = heap_main->subproc;
  heap->heap_seq = mi_atomic_increment_relaxed(&heap_main->subproc->heap_total_count);
  heap->exclusive_arena = _mi_arena_from_id(exclusive_arena_id);
  heap->numa_node = -1; // no initial affinity
  #if MI_STAT_HEAPS   // region patch (0015): else a heap has no statistics (types.h)
  mi_stats_header_init(&heap->stats);
  #endif
  mi_lock_init(&heap->theaps_lock);
  mi_lock_init(&heap->os_abandoned_pages_lock);
  mi_lock_init(&heap->arena_pages_lock);

  // push onto the subproc heaps
  mi_lock(&heap->subproc->heaps_lock) {
    mi_heap_t* head = heap->subproc->heaps;
    heap->prev = NULL;
    heap->next = head;
    if (head!=NULL) { head->prev = heap;  }
    heap->subproc->heaps = heap;
  }
  mi_atomic_increment_relaxed(&heap_main->subproc->heap_count);
  mi_subproc_stat_increase(heap_main->subproc, heaps, 1);
  return heap;
}

mi_heap_t* mi_heap_new(void) {
  return mi_heap_new_in_arena(0);
}

// free all theaps belonging to this heap (without deleting their pages as we do this arena wise for efficiency)
static void mi_heap_free_theaps(mi_heap_t* heap) {
  // This can run concurrently with a thread that terminates (see `init.c:mi_thread_theaps_done`), 
  // and we need to ensure we free theaps atomically.
  // We do this in a loop where we release the theaps_lock at every potential re-iteration to unblock 
  // potential concurrent thread termination which tries to remove the theap from our theaps list.
  bool all_freed;
  do {
    all_freed = true;
    mi_theap_t* theap = NULL;
    mi_lock(&heap->theaps_lock) { 
      theap = heap->theaps; 
      while(theap != NULL) {
        mi_theap_t* next = theap->hnext;
        if (!_mi_theap_free(theap, false /* dont re-acquire the heap->theaps_lock */, true /* acquire the tld->theaps_lock though */ )) {
          all_freed = false;
        }
        theap = next;
      }      
    }
    if (!all_freed) { 
      mi_heap_stat_counter_increase(heap,heaps_delete_wait,1); 
      _mi_prim_thread_yield();
    }
    else { 
      mi_assert_internal(heap->theaps==NULL); 
    }               
  }
  while(!all_freed);
}

// free the heap resources (assuming the pages are already moved/destroyed, and all theaps have been freed)
static void mi_heap_free(mi_heap_t* heap) {
  mi_assert_internal(heap!=NULL && !_mi_is_heap_main(heap));

  // free all arena pages infos
  mi_lock(&heap->arena_pages_lock) {
    for (size_t i = 0; i < MI_MAX_ARENAS; i++) {
      mi_arena_pages_t* arena_pages = mi_atomic_load_ptr_relaxed(mi_arena_pages_t, &heap->arena_pages[i]);
      if (arena_pages!=NULL) {
        mi_atomic_store_ptr_relaxed(mi_arena_pages_t, &heap->arena_pages[i], NULL);
        _mi_arena_pages_free(arena_pages);  // region patch: with its abandoned bitmaps, if any
      }
    }
  }

  // remove the heap from the subproc
  mi_heap_stats_merge_to_main(heap);
  mi_atomic_decrement_relaxed(&heap->subproc->heap_count);
  mi_subproc_stat_decrease(heap->subproc, heaps, 1);
  mi_lock(&heap->subproc->heaps_lock) {
    if (heap->next!=NULL) { heap->next->prev = heap->prev; }
    if (heap->prev!=NULL) { heap->prev->next = heap->next; }
                     else { heap->subproc->heaps = heap->next; }
  }

  _mi_thread_local_free(heap->theap);
  mi_lock_done(&heap->theaps_lock);
  mi_lock_done(&heap->os_abandoned_pages_lock);
  mi_lock_done(&heap->arena_pages_lock);
  mi_free(heap);
}

void mi_heap_delete(mi_heap_t* heap) {
  if (heap==NULL) return;
  if (_mi_is_heap_main(heap)) {
    _mi_warning_message("cannot delete the main heap\n");
    return;
  }
  mi_heap_free_theaps(heap);
  _mi_heap_move_pages(heap, mi_heap_main());
  mi_heap_free(heap);
}

void _mi_heap_force_destroy(mi_heap_t* heap) {
  if (heap==NULL) return;
  mi_heap_free_theaps(heap);
  _mi_heap_destroy_pages(heap);
  if (!_mi_is_heap_main(heap)) { mi_heap_free(heap); }  // todo: release locks of the main heap?
}

void mi_heap_destroy(mi_heap_t* heap) {
  if (heap==NULL) return;
  if (_mi_is_heap_main(heap)) {
    _mi_warning_message("cannot destroy the main heap\n");
    return;
  }
  _mi_heap_force_destroy(heap);
}

// region patch (0007): mi_heap_reset keeps, of the caller's theap, one page per size bin of small
// blocks, emptied, for the heap's next use: a short-lived region of the slot would otherwise take a
// fresh page from the arena for each size it allocates and give it back at its destroy, the largest
// part of its life left (a claim in the arena's bitmaps, the page map, the page info, and back).  One
// page per bin bounds what a reset heap keeps committed: a region that grew to many pages gives the
// others back.  Kept pages are marked by a retire count no retired page has (MI_RESET_KEEP), so that
// the page visit of _mi_heap_destroy_pages passes them by.
//
// region patch (0013): only for a size that had that one page.  A heap that took several pages of a
// size also abandoned full ones, and its page kept is the last it took: the arena's search for a
// page looks first in the chunk (32 MiB of slices) that holds pages of its size class, so the next
// region filled the kept page's chunk, untouched memory, before the slices just freed below it.
static void mi_heap_reset_consider_kept(mi_page_t* page, mi_page_t** kept, bool* several) {
  const size_t bsize = mi_page_block_size(page);
  if (bsize > MI_SMALL_MAX_OBJ_SIZE || page->memid.memkind != MI_MEM_ARENA || mi_page_is_abandoned(page)) return;
  const size_t bin = _mi_bin(bsize);
  if (bin >= MI_BIN_FULL) return;
  if (kept[bin] != NULL) several[bin] = true;
  else kept[bin] = page;
}

// region patch (0016): the walk of the bins' queues stops once it has met each of their pages (the
// queues keep counts), then the full queue is walked; returns one past the last bin that held a page.
static size_t mi_heap_reset_choose_kept(mi_theap_t* own, mi_page_t** kept) {
  bool several[MI_BIN_FULL] = { false };
  size_t left = own->page_count - own->pages[MI_BIN_FULL].count;
  size_t bins_used = 0;
  for (size_t bin = 0; bin < MI_BIN_FULL && left > 0; bin++) {
    for (mi_page_t* page = own->pages[bin].first; page != NULL; page = page->next) {
      left--;
      bins_used = bin + 1;
      mi_heap_reset_consider_kept(page, kept, several);
    }
  }
  for (mi_page_t* page = own->pages[MI_BIN_FULL].first; page != NULL; page = page->next) {
    mi_heap_reset_consider_kept(page, kept, several);
  }
  for (size_t bin = 0; bin < MI_BIN_FULL; bin++) {
    if (several[bin]) kept[bin] = NULL;
    else if (kept[bin] != NULL) kept[bin]->retire_expire = MI_RESET_KEEP;
  }
  return bins_used;
}

// region patch (0004): frees every block of `heap` at once, as mi_heap_destroy does, but keeps the
// heap, its page info and the calling thread's theap, so that the heap can serve again at once (a
// new region in the same arena): no heap or theap to free and make, no statistics to merge.  Done
// only when no thread but the caller has a theap of the heap: another thread's theap could be
// ending concurrently (init.c, mi_thread_theaps_done), and its thread-local slot would keep pointing
// at it.  Pages of threads that ended are abandoned, and destroyed arena-wise with the caller's.
// Returns false, having done nothing, otherwise; the caller then destroys the heap.  As for
// mi_heap_destroy, nothing may allocate in or free to the heap meanwhile.
bool mi_heap_reset(mi_heap_t* heap) {
  if (heap==NULL || _mi_is_heap_main(heap)) return false;
  mi_theap_t* const own = _mi_heap_theap_get_peek(heap);   // the calling thread's, or NULL
  if (own == (mi_theap_t*)1) return false;                  // being made (mi_heap_init_theap): not ours to reset
  bool only_own = false;
  mi_lock(&heap->theaps_lock) {
    only_own = (heap->theaps == own && (own == NULL || own->hnext == NULL));
  }
  if (!only_own) return false;
  mi_page_t* kept[MI_BIN_FULL] = { NULL };   // region patch (0007): by bin
  const size_t bins_used = (own != NULL ? mi_heap_reset_choose_kept(own, kept) : 0);
  _mi_heap_destroy_pages(heap);   // every page but the kept ones, the caller's theap's included (they are detached from it)
  if (own != NULL) {
    // the theap's queues still name the freed pages: back to an empty theap's.  region patch (0016):
    // only the queues of the bins that held pages, the full queue, and the direct entries of those
    // bins' sizes; the rest are an empty theap's already (a bin's sizes' entries name its queue's
    // first page, and its queue is empty), and rewriting them all wrote about 54 cold cache lines a reset
    _mi_memcpy_aligned(&own->pages, &_mi_theap_empty.pages, bins_used * sizeof(mi_page_queue_t));
    own->pages[MI_BIN_FULL] = _mi_theap_empty.pages[MI_BIN_FULL];
    size_t direct = 0;
    if (bins_used > 0 && _mi_theap_empty.pages[bins_used - 1].block_size <= MI_SMALL_SIZE_MAX) {
      direct = _mi_wsize_from_size(_mi_theap_empty.pages[bins_used - 1].block_size) + 1;
    }
    else if (bins_used > 0) {
      direct = MI_PAGES_DIRECT;
    }
    mi_assert_internal(direct <= MI_PAGES_DIRECT);
    _mi_memcpy_aligned(&own->pages_free_direct, &_mi_theap_empty.pages_free_direct, direct * sizeof(mi_page_t*));
    own->page_count = 0;
    own->page_retired_min = _mi_theap_empty.page_retired_min;
    own->page_retired_max = _mi_theap_empty.page_retired_max;
    own->pages_full_size = 0;
    for (size_t bin = 0; bin < MI_BIN_FULL; bin++) {
      if (kept[bin] != NULL) _mi_theap_keep_empty_page(own, kept[bin]);
    }
  }
  return true;
}

// region patch: one pointer of the embedder's per heap, so that mi_heap_of(p) leads to the embedder's
// own record of the heap (libregion: its region) in two loads.  Atomic: read from any thread.
void mi_heap_set_data(mi_heap_t* heap, void* data) {
  mi_atomic_store_ptr_release(void, &heap->data, data);
}

void* mi_heap_get_data(const mi_heap_t* heap) {
  return mi_atomic_load_ptr_acquire(void, &((mi_heap_t*)heap)->data);
}

// region patch: mi_heap_get_data(mi_heap_of(p)) in one call, for a lookup on every free
void* mi_heap_data_of(const void* p) {
  mi_page_t* page = _mi_safe_ptr_page(p);
  if (page==NULL) return NULL;
  mi_heap_t* heap = mi_page_heap(page);
  return (heap==NULL ? NULL : mi_atomic_load_ptr_acquire(void, &heap->data));
}

mi_heap_t* mi_heap_of(const void* p) {
  mi_page_t* page = _mi_safe_ptr_page(p);
  if (page==NULL) return NULL;
  return mi_page_heap(page);
}

bool mi_any_heap_contains(const void* p) {
  return (mi_heap_of(p)!=NULL);
}

bool mi_heap_contains(const mi_heap_t* heap, const void* p) {
  if (heap==NULL) { heap = mi_heap_main(); }
  return (heap==mi_heap_of(p));
}

// deprecated
bool mi_check_owned(const void* p) {
  return mi_any_heap_contains(p);
}

// unsafe heap utilization function for DragonFly (see issue #1258)
// If the page of pointer `p` belongs to `heap` (or `heap==NULL`) and has less than `perc_threshold` used blocks in its used area return `true`.
// This function is unsafe in general as it assumes we are the only thread accessing the page of `p`.
bool mi_unsafe_heap_page_is_under_utilized(mi_heap_t* heap, void* p, size_t perc_threshold) mi_attr_noexcept {
  if (p==NULL) return false;
  const mi_page_t* const page = _mi_safe_ptr_page(p);   // Get the page containing this pointer
  if (page==NULL || page->used==page->capacity || page->capacity < page->reserved) return false;
  // If the page is the head of the queue, it is currently being used for 
  // allocations; we skip it to avoid immediate thrashing.
  if (page->prev == NULL)  return false;

  // match heap?
  const mi_heap_t* const page_heap = mi_page_heap(page);
  if (page_heap==NULL) return false;
  if (heap!=NULL && page_heap!=heap) return false;
    
  // check utilization
  if (page->capacity==0)   return false;
  if (perc_threshold>=100) return true;
  return (perc_threshold >= ((100UL*page->used) / page->capacity));
}
