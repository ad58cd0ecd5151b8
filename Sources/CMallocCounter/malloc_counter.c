// Counts heap allocations for warren-bench (an equivalent of package-benchmark's malloc counters without jemalloc).
// glibc only: the executable defines malloc & co., which the dynamic linker then uses for every library in the
// process (libswiftCore, Foundation, librabbitmq); each forwards to glibc's own implementation (__libc_*).
#include "malloc_counter.h"

#if defined(__GLIBC__)
#include <errno.h>
#include <stddef.h>
#include <stdatomic.h>

extern void *__libc_malloc(size_t);
extern void *__libc_calloc(size_t, size_t);
extern void *__libc_realloc(void *, size_t);
extern void *__libc_memalign(size_t, size_t);
extern void __libc_free(void *);

static _Atomic uint64_t allocations = 0;

static inline void count(void) { atomic_fetch_add_explicit(&allocations, 1, memory_order_relaxed); }

void *malloc(size_t size) { count(); return __libc_malloc(size); }
void *calloc(size_t n, size_t size) { count(); return __libc_calloc(n, size); }
void *realloc(void *pointer, size_t size) { count(); return __libc_realloc(pointer, size); }
void free(void *pointer) { __libc_free(pointer); }
void *memalign(size_t alignment, size_t size) { count(); return __libc_memalign(alignment, size); }
void *aligned_alloc(size_t alignment, size_t size) { count(); return __libc_memalign(alignment, size); }
int posix_memalign(void **out, size_t alignment, size_t size) {
    count();
    void *pointer = __libc_memalign(alignment, size);
    if (pointer == NULL) return ENOMEM;
    *out = pointer;
    return 0;
}

uint64_t warren_malloc_count(void) { return atomic_load_explicit(&allocations, memory_order_relaxed); }
int warren_malloc_counting(void) { return 1; }
#else
uint64_t warren_malloc_count(void) { return 0; }
int warren_malloc_counting(void) { return 0; }
#endif
