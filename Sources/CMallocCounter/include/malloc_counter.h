#ifndef WARREN_MALLOC_COUNTER_H
#define WARREN_MALLOC_COUNTER_H

#include <stdint.h>

/// Allocations (malloc, calloc, realloc, posix_memalign, aligned_alloc, memalign) made by the whole process since it
/// started, counted by the interposed allocator functions of this target; 0 where they cannot interpose (non-glibc).
uint64_t warren_malloc_count(void);

/// Whether the counting allocator is active in this process.
int warren_malloc_counting(void);

#endif
