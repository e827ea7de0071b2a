// The two things Swift can't reach: thread-local storage (for each thread's
// in-flight marker in a store's thread-slot table) and the membarrier system
// call. Kept tiny; everything else lives in Swift.
#ifndef CSLOTSTORE_H
#define CSLOTSTORE_H

#include <stdint.h>

#define SLOTSTORE_TLS_ENTRIES 16

/// One cached thread slot: the store's process-unique number and the address
/// of this thread's in-flight word in that store's mapping.
typedef struct {
    uint64_t store;
    void *marker;
} slotstore_tls_entry;

extern _Thread_local slotstore_tls_entry slotstore_tls_entries[SLOTSTORE_TLS_ENTRIES];

/// This thread's in-flight word for store number `store`, or NULL if the
/// thread has none cached (claim one through the slow path).
static inline void *slotstore_thread_marker(uint64_t store) {
    slotstore_tls_entry *entry = &slotstore_tls_entries[store % SLOTSTORE_TLS_ENTRIES];
    return entry->store == store ? entry->marker : (void *)0;
}

static inline void slotstore_set_thread_marker(uint64_t store, void *marker) {
    slotstore_tls_entry *entry = &slotstore_tls_entries[store % SLOTSTORE_TLS_ENTRIES];
    entry->store = store;
    entry->marker = marker;
}

/// Each thread's "inside acquireLock…releaseLock" flag per store, cached the
/// same way: the store's process-unique number and the address of the flag
/// (process memory, one cache line per thread). `close()` reads every
/// thread's flag instead of the threads counting themselves on a shared word.
extern _Thread_local slotstore_tls_entry slotstore_lock_user_entries[SLOTSTORE_TLS_ENTRIES];

static inline void *slotstore_lock_user_flag(uint64_t store) {
    slotstore_tls_entry *entry = &slotstore_lock_user_entries[store % SLOTSTORE_TLS_ENTRIES];
    return entry->store == store ? entry->marker : (void *)0;
}

static inline void slotstore_set_lock_user_flag(uint64_t store, void *flag) {
    slotstore_tls_entry *entry = &slotstore_lock_user_entries[store % SLOTSTORE_TLS_ENTRIES];
    entry->store = store;
    entry->marker = flag;
}

/// A compiler-only barrier: with membarrier on the other side, this is all a
/// lock-free writer needs between marking itself in flight and checking
/// whether the store is being retired.
static inline void slotstore_compiler_barrier(void) {
    __asm__ __volatile__("" ::: "memory");
}

/// A spin-wait hint (x86 `pause`, arm64 `yield`): lets the sibling hardware
/// thread run and saves power while waiting a few hundred nanoseconds for a lock.
static inline void slotstore_cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield");
#endif
}

/// membarrier(MEMBARRIER_CMD_GLOBAL): every running thread of every process
/// passes a full memory barrier before it returns. 0, or -errno
/// (-ENOSYS when the kernel or a seccomp filter doesn't offer it).
int slotstore_membarrier_global(void);

/// Registers this process for membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED):
/// 0, or -errno (-ENOSYS when the kernel or a seccomp filter doesn't offer it).
int slotstore_membarrier_register_private(void);

/// membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED): every running thread of this
/// process passes a full memory barrier before it returns. Register first.
int slotstore_membarrier_private(void);

/// The calling thread's kernel TID (what a robust mutex records as its owner).
int slotstore_gettid(void);

/// `pthread_mutex_clocklock` on CLOCK_MONOTONIC for at most `nanoseconds`:
/// 0, EOWNERDEAD, ETIMEDOUT, ENOTRECOVERABLE or another error number. The
/// monotonic clock, so a wall-clock step can't stretch or cut a lock wait.
int slotstore_mutex_lock_for(void *mutex, int64_t nanoseconds);

#endif
