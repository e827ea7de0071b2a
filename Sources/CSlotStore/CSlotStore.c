#include "CSlotStore.h"

#include <errno.h>
#include <linux/membarrier.h>
#include <sys/syscall.h>
#include <unistd.h>

_Thread_local slotstore_tls_entry slotstore_tls_entries[SLOTSTORE_TLS_ENTRIES];

int slotstore_gettid(void) {
    return (int)syscall(SYS_gettid);
}

int slotstore_membarrier_global(void) {
    long supported = syscall(__NR_membarrier, MEMBARRIER_CMD_QUERY, 0, 0);
    if (supported < 0) return -errno;
    if (!(supported & MEMBARRIER_CMD_GLOBAL)) return -ENOSYS;
    if (syscall(__NR_membarrier, MEMBARRIER_CMD_GLOBAL, 0, 0) != 0) return -errno;
    return 0;
}
