#define _GNU_SOURCE
#include "CSlotStore.h"

#include <errno.h>
#include <pthread.h>
#include <time.h>
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

int slotstore_mutex_lock_for(void *mutex, int64_t nanoseconds) {
    struct timespec deadline;
    clock_gettime(CLOCK_MONOTONIC, &deadline);
    if (nanoseconds < 0) nanoseconds = 0;
    deadline.tv_sec += (time_t)(nanoseconds / 1000000000);
    deadline.tv_nsec += (long)(nanoseconds % 1000000000);
    if (deadline.tv_nsec >= 1000000000) { deadline.tv_sec += 1; deadline.tv_nsec -= 1000000000; }
    return pthread_mutex_clocklock((pthread_mutex_t *)mutex, CLOCK_MONOTONIC, &deadline);
}
