#define _GNU_SOURCE
#include "CSlotStore.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <signal.h>
#include <sys/prctl.h>
#include <unistd.h>
#include <linux/futex.h>
#include <linux/membarrier.h>
#include <sys/syscall.h>
#include <unistd.h>

_Thread_local slotstore_tls_entry slotstore_tls_entries[SLOTSTORE_TLS_ENTRIES];
_Thread_local slotstore_tls_entry slotstore_lock_user_entries[SLOTSTORE_TLS_ENTRIES];

int slotstore_gettid(void) {
    return (int)syscall(SYS_gettid);
}

int slotstore_membarrier_register_private(void) {
    long supported = syscall(__NR_membarrier, MEMBARRIER_CMD_QUERY, 0, 0);
    if (supported < 0) return -errno;
    if (!(supported & MEMBARRIER_CMD_PRIVATE_EXPEDITED)) return -ENOSYS;
    if (syscall(__NR_membarrier, MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED, 0, 0) != 0) return -errno;
    return 0;
}

int slotstore_membarrier_private(void) {
    if (syscall(__NR_membarrier, MEMBARRIER_CMD_PRIVATE_EXPEDITED, 0, 0) != 0) return -errno;
    return 0;
}

int slotstore_membarrier_global(void) {
    long supported = syscall(__NR_membarrier, MEMBARRIER_CMD_QUERY, 0, 0);
    if (supported < 0) return -errno;
    if (!(supported & MEMBARRIER_CMD_GLOBAL)) return -ENOSYS;
    if (syscall(__NR_membarrier, MEMBARRIER_CMD_GLOBAL, 0, 0) != 0) return -errno;
    return 0;
}

int slotstore_membarrier_register_global_expedited(void) {
    if (syscall(__NR_membarrier, MEMBARRIER_CMD_REGISTER_GLOBAL_EXPEDITED, 0, 0) != 0) return -errno;
    return 0;
}

int slotstore_membarrier_global_expedited(void) {
    if (syscall(__NR_membarrier, MEMBARRIER_CMD_GLOBAL_EXPEDITED, 0, 0) != 0) return -errno;
    return 0;
}

int slotstore_futex_wait(uint32_t *word, uint32_t expected, int64_t nanoseconds) {
    if (nanoseconds < 0) nanoseconds = 0;
    struct timespec timeout = { (time_t)(nanoseconds / 1000000000), (long)(nanoseconds % 1000000000) };
    if (syscall(SYS_futex, word, FUTEX_WAIT, expected, &timeout, NULL, 0) != 0) return -errno;
    return 0;
}

int slotstore_futex_wake_all(uint32_t *word) {
    long woken = syscall(SYS_futex, word, FUTEX_WAKE, INT32_MAX, NULL, NULL, 0);
    return woken < 0 ? -errno : (int)woken;
}

int slotstore_mutex_lock_for(void *mutex, int64_t nanoseconds) {
    struct timespec deadline;
    clock_gettime(CLOCK_MONOTONIC, &deadline);
    if (nanoseconds < 0) nanoseconds = 0;
    deadline.tv_sec += (time_t)(nanoseconds / 1000000000);
    deadline.tv_nsec += (long)(nanoseconds % 1000000000);
    if (deadline.tv_nsec >= 1000000000) { deadline.tv_sec += 1; deadline.tv_nsec -= 1000000000; }
    return pthread_mutex_clocklock((pthread_mutex_t *)mutex, CLOCK_MONOTONIC, &deadline);
}

// MARK: fork() after open (see CSlotStore.h)

uint64_t slotstore_fork_generation_value = 0;

/// A registered descriptor: `state` is fd + 1 once the entry is complete,
/// -1 while a thread fills it in, 0 when empty.
typedef struct {
    int state;
    int writable;
    void *base;
    uint64_t length;
} slotstore_fd_entry;

/// Entries in blocks that are only ever added (never freed), so the child
/// handler can walk them without a lock whatever another thread of the
/// parent was doing at fork().
#define SLOTSTORE_FD_BLOCK_ENTRIES 128
typedef struct slotstore_fd_block {
    slotstore_fd_entry entries[SLOTSTORE_FD_BLOCK_ENTRIES];
    struct slotstore_fd_block *next;
} slotstore_fd_block;

static slotstore_fd_block slotstore_fd_first_block;
static pthread_once_t slotstore_fork_handler_once = PTHREAD_ONCE_INIT;

/// "/proc/self/fd/N" without snprintf, which is not async-signal-safe.
static void slotstore_fd_path(char path[32], int fd) {
    static const char prefix[] = "/proc/self/fd/";
    char digits[12];
    int count = 0;
    do { digits[count++] = (char)('0' + fd % 10); fd /= 10; } while (fd > 0 && count < 11);
    int at = 0;
    for (; prefix[at]; at++) path[at] = prefix[at];
    while (count > 0) path[at++] = digits[--count];
    path[at] = 0;
}

/// Runs in the child only, before fork() returns there: open, mmap, close
/// and plain stores (system calls that take no library lock, as a handler
/// after fork of a multithreaded process must).
static void slotstore_fork_child(void) {
    for (slotstore_fd_block *block = &slotstore_fd_first_block; block;
         block = __atomic_load_n(&block->next, __ATOMIC_ACQUIRE)) {
        for (int index = 0; index < SLOTSTORE_FD_BLOCK_ENTRIES; index++) {
            slotstore_fd_entry *entry = &block->entries[index];
            int state = __atomic_load_n(&entry->state, __ATOMIC_ACQUIRE);
            if (state <= 0) continue;
            int fd = state - 1;
            if (entry->base) {
                // The same pages through an open file description of the
                // child's own; if that fails, the mapping keeps the parent's.
                char path[32];
                slotstore_fd_path(path, fd);
                int fresh = open(path, (entry->writable ? O_RDWR : O_RDONLY) | O_CLOEXEC);
                if (fresh >= 0) {
                    mmap(entry->base, (size_t)entry->length, PROT_READ | (entry->writable ? PROT_WRITE : 0),
                         MAP_SHARED | MAP_FIXED, fresh, 0);
                    close(fresh);
                }
            }
            close(fd);
            // Emptied too: a grandchild must not close whatever file this
            // child later opens under the same number.
            __atomic_store_n(&entry->state, 0, __ATOMIC_RELEASE);
        }
    }
    memset(slotstore_tls_entries, 0, sizeof slotstore_tls_entries);
    __atomic_add_fetch(&slotstore_fork_generation_value, 1, __ATOMIC_RELEASE);
}

static void slotstore_install_fork_handler(void) {
    pthread_atfork(NULL, NULL, slotstore_fork_child);
}

int slotstore_fork_register_descriptor(int fd, void *base, uint64_t length, int writable) {
    pthread_once(&slotstore_fork_handler_once, slotstore_install_fork_handler);
    slotstore_fd_block *block = &slotstore_fd_first_block;
    while (block) {
        for (int index = 0; index < SLOTSTORE_FD_BLOCK_ENTRIES; index++) {
            slotstore_fd_entry *entry = &block->entries[index];
            int expected = 0;
            if (__atomic_compare_exchange_n(&entry->state, &expected, -1, 0, __ATOMIC_ACQUIRE, __ATOMIC_RELAXED)) {
                entry->writable = writable;
                entry->base = base;
                entry->length = length;
                __atomic_store_n(&entry->state, fd + 1, __ATOMIC_RELEASE);
                return 1;
            }
        }
        slotstore_fd_block *next = __atomic_load_n(&block->next, __ATOMIC_ACQUIRE);
        if (!next) {
            slotstore_fd_block *fresh = calloc(1, sizeof *fresh);
            if (!fresh) return 0;
            slotstore_fd_block *expected = NULL;
            if (__atomic_compare_exchange_n(&block->next, &expected, fresh, 0, __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE)) {
                next = fresh;
            } else {
                free(fresh);
                next = expected;
            }
        }
        block = next;
    }
    return 0;
}

void slotstore_fork_unregister_descriptor(int fd) {
    for (slotstore_fd_block *block = &slotstore_fd_first_block; block;
         block = __atomic_load_n(&block->next, __ATOMIC_ACQUIRE)) {
        for (int index = 0; index < SLOTSTORE_FD_BLOCK_ENTRIES; index++) {
            int expected = fd + 1;
            if (__atomic_compare_exchange_n(&block->entries[index].state, &expected, 0, 0,
                                            __ATOMIC_ACQ_REL, __ATOMIC_RELAXED)) return;
        }
    }
}

int slotstore_die_with_parent(void) {
    if (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0) return -errno;
    if (getppid() == 1) raise(SIGKILL);
    return 0;
}
