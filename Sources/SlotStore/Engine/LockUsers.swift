import CSlotStore
import Glibc
import Synchronization

/// Which threads of this process are between `acquireLock` and `releaseLock`
/// of one engine (waiting for the lock, or holding it), so that `close()`
/// never unmaps under them: the kernel recovers a robust mutex through the
/// memory it lives in, so unmapping a held or awaited lock would leave it
/// stuck for every process.
///
/// Each thread has a flag of its own, on its own cache line in process
/// memory, found through a thread-local cache. Entering is a plain store, a
/// compiler barrier and a load; leaving is a release store: no
/// read-modify-write of a word the threads share, on the hot path of every
/// locked write. `close()`, which is rare, pays instead:
///
/// ```
/// thread                              close()
/// flag = 1                            closing = true
/// compiler barrier                    membarrier(PRIVATE_EXPEDITED)
/// if closing { flag = 0; refuse }     for each thread's flag:
/// ... lock, write, unlock ...             wait while it is 1
/// flag = 0 (release)                  unmap
/// ```
///
/// `membarrier` makes every running thread of the process pass a full
/// barrier, so the pair behaves as if both sides had a full fence: either
/// the thread sees `closing` and backs out, or `close()` sees its flag and
/// waits. Where `membarrier` is unavailable (an old kernel, a seccomp filter
/// in a container), the thread side uses a full fence instead, decided once
/// per engine.
final class LockUsers: @unchecked Sendable {
    /// The engine's process-unique number: the key in the thread-local cache.
    private let store: UInt64
    /// Read once: a static would cost a lazy-initialization check per lock.
    private let asymmetric: Bool
    private let closing = Atomic<Bool>(false)
    /// Every thread's flag, by thread; a flag lives as long as this object.
    private let flags = LockedState<[UInt: UnsafeMutablePointer<Atomic<UInt64>>]>([:])

    /// Whether this process may use the asymmetric barrier (registered once).
    private static let membarrierRegistered: Bool = slotstore_membarrier_register_private() == 0

    init(store: UInt64) {
        self.store = store
        self.asymmetric = LockUsers.membarrierRegistered
    }

    /// Marks the calling thread as a lock user; false (and not marked) once `close()` has begun.
    @inline(__always)
    func enter() -> Bool {
        let flag = self.flag()
        flag.pointee.store(1, ordering: .relaxed)
        if _fastPath(asymmetric) { slotstore_compiler_barrier() } else { atomicMemoryFence(ordering: .sequentiallyConsistent) }
        guard _fastPath(!closing.load(ordering: .relaxed)) else {
            flag.pointee.store(0, ordering: .releasing)
            return false
        }
        return true
    }

    /// Ends what ``enter()`` began (release: `close()` that sees the flag clear sees the unlock).
    @inline(__always)
    func leave() {
        flag().pointee.store(0, ordering: .releasing)
    }

    /// Refuses new lock users, then waits until none of this process's threads is one.
    func close() {
        closing.store(true, ordering: .sequentiallyConsistent)
        // The calling thread is no lock user (close() inside a transaction is
        // refused before this). A thread that registers after this read does
        // so under the same mutex, so it sees `closing`: with no other thread
        // registered, there is nobody to wait for and no barrier to pay.
        let me = UInt(pthread_self())
        let others = flags.withLock { flags in flags.compactMap { $0.key == me ? nil : $0.value } }
        guard !others.isEmpty else { return }
        if asymmetric && slotstore_membarrier_private() != 0 {
            // Not registered in this process (a forked child, if the kernel
            // didn't carry the registration over): register and try again.
            _ = slotstore_membarrier_register_private()
            _ = slotstore_membarrier_private()
        }
        for flag in others {
            while flag.pointee.load(ordering: .acquiring) != 0 { sched_yield() }
        }
    }

    /// The calling thread's flag: cached in its TLS, or registered on first use.
    @inline(__always)
    private func flag() -> UnsafeMutablePointer<Atomic<UInt64>> {
        if let raw = slotstore_lock_user_flag(store) { return raw.assumingMemoryBound(to: Atomic<UInt64>.self) }
        return registerCallingThread()
    }

    /// Finds or makes the calling thread's flag and caches it. The same flag
    /// every time for a thread, so a cache entry evicted by another store
    /// between `enter()` and `leave()` is found again.
    @inline(never)
    private func registerCallingThread() -> UnsafeMutablePointer<Atomic<UInt64>> {
        let thread = UInt(pthread_self())
        let flag = flags.withLock { flags in
            if let flag = flags[thread] { return flag }
            // A cache line of its own: threads never share one.
            let raw = UnsafeMutableRawPointer.allocate(byteCount: 64, alignment: 64)
            let flag = raw.bindMemory(to: Atomic<UInt64>.self, capacity: 1)
            flag.initialize(to: Atomic(0))
            flags[thread] = flag
            return flag
        }
        slotstore_set_lock_user_flag(store, UnsafeMutableRawPointer(flag))
        return flag
    }

    deinit {
        flags.withLock { flags in
            for flag in flags.values {
                flag.deinitialize(count: 1)
                UnsafeMutableRawPointer(flag).deallocate()
            }
        }
    }
}
