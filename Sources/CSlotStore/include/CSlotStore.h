// The two things Swift can't reach: thread-local storage (for each thread's
// in-flight marker in a store's thread-slot table) and the membarrier system
// call. Kept tiny; everything else lives in Swift.
#ifndef CSLOTSTORE_H
#define CSLOTSTORE_H

#include <stdint.h>

#define SLOTSTORE_TLS_ENTRIES 16

/// One entry of a direct-mapped per-thread cache: a store's process-unique
/// number and an address that belongs to this thread for that store.
typedef struct {
    uint64_t store;
    void *marker;
} slotstore_tls_entry;

/// The cached address for `store` in `cache`, or NULL (take the slow path).
static inline void *slotstore_tls_find(slotstore_tls_entry *cache, uint64_t store) {
    slotstore_tls_entry *entry = &cache[store % SLOTSTORE_TLS_ENTRIES];
    return entry->store == store ? entry->marker : (void *)0;
}

static inline void slotstore_tls_put(slotstore_tls_entry *cache, uint64_t store, void *address) {
    slotstore_tls_entry *entry = &cache[store % SLOTSTORE_TLS_ENTRIES];
    entry->store = store;
    entry->marker = address;
}

/// Each thread's in-flight word in each store's thread-slot table.
extern _Thread_local slotstore_tls_entry slotstore_tls_entries[SLOTSTORE_TLS_ENTRIES];

/// This thread's in-flight word for store number `store`, or NULL if the
/// thread has none cached (claim one through the slow path).
static inline void *slotstore_thread_marker(uint64_t store) { return slotstore_tls_find(slotstore_tls_entries, store); }
static inline void slotstore_set_thread_marker(uint64_t store, void *marker) { slotstore_tls_put(slotstore_tls_entries, store, marker); }

/// Each thread's "inside acquireLock…releaseLock" flag per store (process
/// memory, one cache line per thread). `close()` reads every thread's flag
/// instead of the threads counting themselves on a shared word.
extern _Thread_local slotstore_tls_entry slotstore_lock_user_entries[SLOTSTORE_TLS_ENTRIES];

static inline void *slotstore_lock_user_flag(uint64_t store) { return slotstore_tls_find(slotstore_lock_user_entries, store); }
static inline void slotstore_set_lock_user_flag(uint64_t store, void *flag) { slotstore_tls_put(slotstore_lock_user_entries, store, flag); }

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
// MARK: Waiting for a change (see ChangeNotification.swift)

/// FUTEX_WAIT on the 32-bit `word` while it holds `expected`, for at most
/// `nanoseconds` (CLOCK_MONOTONIC, relative). Shared, not FUTEX_PRIVATE: the
/// kernel keys a shared futex in a MAP_SHARED file mapping by the file page,
/// so a waker in another process, or in another PID namespace, mapping the
/// same file reaches it. 0 when woken (possibly spuriously), or -errno:
/// -EAGAIN when the word no longer held `expected`, -ETIMEDOUT, -EINTR.
int slotstore_futex_wait(uint32_t *word, uint32_t expected, int64_t nanoseconds);

/// FUTEX_WAKE (shared) of every waiter on `word`: how many woke, or -errno.
int slotstore_futex_wake_all(uint32_t *word);

/// Registers this process for membarrier(MEMBARRIER_CMD_GLOBAL_EXPEDITED),
/// so that another process's expedited barrier reaches its threads: 0, or
/// -errno. Per process (a fork() child starts unregistered); costs one RCU
/// grace period (milliseconds) the first time in a multithreaded process.
int slotstore_membarrier_register_global_expedited(void);

/// membarrier(MEMBARRIER_CMD_GLOBAL_EXPEDITED): every running thread of every
/// registered process passes a full memory barrier before it returns (about
/// a microsecond, by interprocessor interrupts). 0, or -errno.
int slotstore_membarrier_global_expedited(void);

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

// fork() after open. A child shares its parent's open file descriptions, and
// so the OFD locks that say "this process has the store open" and "this
// thread slot is taken": a child that merely inherits a store's descriptor
// (or its mapping, which references the same open file description) would
// keep a dead parent's locks alive, and a child that used the parent's store
// would act under the parent's identity. A pthread_atfork child handler
// (installed by the first registration) moves every registered mapping onto
// a fresh open file description of the same file (so the child's handles
// keep reading and writing the same pages, without the parent's locks),
// closes every registered descriptor, clears the calling thread's cached
// thread slots and bumps the fork generation, which the engine compares on
// every locked call to re-open the store in the child.

/// The process-wide fork generation: 0 in the process that started, and one
/// more in each child than in its parent (only a child's handler changes it).
extern uint64_t slotstore_fork_generation_value;

static inline uint64_t slotstore_fork_generation(void) {
    return __atomic_load_n(&slotstore_fork_generation_value, __ATOMIC_RELAXED);
}

/// Registers a store descriptor, and the shared mapping of `length` bytes of
/// it at `base` (NULL if none), to be detached in a forked child (and installs
/// the handler). 1 when registered, 0 when no memory for the table was left.
int slotstore_fork_register_descriptor(int fd, void *base, uint64_t length, int writable);

/// Withdraws `fd` before the parent unmaps or closes it, so a child forked
/// later can't remap a reservation or close an unrelated file that reused the number.
void slotstore_fork_unregister_descriptor(int fd);

// MARK: Waiting for a change (see ChangeNotification.swift)

/// FUTEX_WAIT on the 32-bit `word` while it holds `expected`, for at most
/// `nanoseconds` (CLOCK_MONOTONIC, relative). Shared, not FUTEX_PRIVATE: the
/// kernel keys a shared futex in a MAP_SHARED file mapping by the file page,
/// so a waker in another process, or in another PID namespace, mapping the
/// same file reaches it. 0 when woken (possibly spuriously), or -errno:
/// -EAGAIN when the word no longer held `expected`, -ETIMEDOUT, -EINTR.
int slotstore_futex_wait(uint32_t *word, uint32_t expected, int64_t nanoseconds);

/// FUTEX_WAKE (shared) of every waiter on `word`: how many woke, or -errno.
int slotstore_futex_wake_all(uint32_t *word);

/// Registers this process for membarrier(MEMBARRIER_CMD_GLOBAL_EXPEDITED),
/// so that another process's expedited barrier reaches its threads: 0, or
/// -errno. Per process (a fork() child starts unregistered); costs one RCU
/// grace period (milliseconds) the first time in a multithreaded process.
int slotstore_membarrier_register_global_expedited(void);

/// membarrier(MEMBARRIER_CMD_GLOBAL_EXPEDITED): every running thread of every
/// registered process passes a full memory barrier before it returns (about
/// a microsecond, by interprocessor interrupts). 0, or -errno.
int slotstore_membarrier_global_expedited(void);

/// Asks the kernel to SIGKILL the calling process when its parent dies
/// (PR_SET_PDEATHSIG), and dies at once if the parent is already gone
/// (reparented to init): for worker processes a tool starts, which must not
/// outlive it holding a store's lock. 0, or -errno.
int slotstore_die_with_parent(void);

#endif
