import CSlotStore
import Glibc
import Synchronization

/// How lock-free writers and an in-place compaction keep out of each other's way.
///
/// Compaction in place copies a store while other processes keep using it.
/// Holding the lock stops locked writers, but not lock-free ones (scalar and
/// element stores are single atomic instructions on the mapping), so each
/// thread that writes lock-free has a slot in the lock region with an
/// in-flight word:
///
/// ```
/// writer                              compactor (holding the lock)
/// inFlight = 1                        retirement = retiring
/// compiler barrier                    membarrier(GLOBAL)
/// if retirement == live {             for every slot:
///     the atomic write                    wait while inFlight == 1
/// }                                           and the slot's owner is alive
/// inFlight = 0                        copy, rename, retirement = retired
/// ```
///
/// `membarrier` makes every running thread pass a full barrier, so either the
/// writer saw `retiring` (and goes the slow way: under the lock, then to the
/// successor) or the compactor sees its in-flight word and waits for the
/// write to land before copying. The writer pays two plain stores to a cache
/// line of its own and one load: no fence, no read-modify-write.
///
/// A writer without a slot (all taken) or that sees `retiring` writes under
/// the lock, which the compactor holds from `retiring` to `retired`.
@usableFromInline
enum Retirement {
    @usableFromInline static let live: UInt64 = 0
    static let retiring: UInt64 = 1
    @usableFromInline static let retired: UInt64 = 2
}

/// The part of a store's engine that inlined handle code touches on every
/// lock-free operation: the retirement word and the thread-slot cache key.
@usableFromInline
struct LockFreeGate: @unchecked Sendable {
    @usableFromInline let retirement: MappedAddress
    /// Process-unique and never reused, so a thread's cached slot of a closed
    /// store can never be taken for another store's.
    @usableFromInline let store: UInt64

    /// Whether the store was compacted in place and a successor replaced it.
    @inlinable @inline(__always)
    var isRetired: Bool { retirement.atomic(UInt64.self).pointee.load(ordering: .relaxed) == Retirement.retired }

    /// Marks this thread in flight and returns its marker, or nil when the
    /// caller must take the slow path (no slot cached yet, or the store is
    /// being retired).
    @inlinable @inline(__always)
    func enter() -> UnsafeMutablePointer<Atomic<UInt64>>? {
        guard let raw = slotstore_thread_marker(store) else { return nil }
        let marker = raw.assumingMemoryBound(to: Atomic<UInt64>.self)
        return LockFreeGate.enter(marker, retirement: retirement)
    }

    @inlinable @inline(__always)
    static func enter(_ marker: UnsafeMutablePointer<Atomic<UInt64>>, retirement: MappedAddress) -> UnsafeMutablePointer<Atomic<UInt64>>? {
        marker.pointee.store(1, ordering: .relaxed)
        slotstore_compiler_barrier()
        if _fastPath(retirement.atomic(UInt64.self).pointee.load(ordering: .relaxed) == Retirement.live) { return marker }
        marker.pointee.store(0, ordering: .releasing)
        return nil
    }

    /// Ends the write begun by ``enter()``: release, so the compactor that sees
    /// the word clear also sees the write.
    @inlinable @inline(__always)
    func leave(_ marker: UnsafeMutablePointer<Atomic<UInt64>>) {
        marker.pointee.store(0, ordering: .releasing)
    }
}

/// This process's thread slots in one store.
struct ThreadSlots {
    /// Slot by thread; -1 when the table was full for that thread.
    var byThread: [UInt: Int] = [:]
    var held: Set<Int> = []
}

extension StoreCore {
    var retirementState: UInt64 { lock.retirement.pointee.load(ordering: .acquiring) }

    /// Claims a thread slot for the calling thread (or finds the one it has),
    /// caches it in the thread's TLS, and enters it. Nil when every slot is
    /// taken or the store is being retired: write under the lock instead.
    @usableFromInline @inline(never)
    func enterClaimingThreadSlot() -> UnsafeMutablePointer<Atomic<UInt64>>? {
        // A forked child's cached slots are its parent's: it writes through its own engine.
        guard isAttachedHere else { return nil }
        let thread = UInt(pthread_self())
        let slot: Int = threadSlots.withLock { slots in
            if let slot = slots.byThread[thread] { return slot }
            // A retired file's descriptor may be closed (see `retireDescriptor`), under this mutex.
            guard file.descriptorIsOpen, !gate.isRetired else { return -1 }
            let count = LockRegion.threadSlotCount(lockSize: layout.lockSize)
            for candidate in 0..<count where !slots.held.contains(candidate) {
                guard lock.claimSlot(candidate, fd: file.fd, pid: pid) else { continue }
                slots.held.insert(candidate)
                slots.byThread[thread] = candidate
                return candidate
            }
            slots.byThread[thread] = -1
            return -1
        }
        guard slot >= 0 else { return nil }
        let marker = lock.inFlight(slot)
        slotstore_set_thread_marker(gate.store, UnsafeMutableRawPointer(marker))
        return LockFreeGate.enter(marker, retirement: gate.retirement)
    }

    /// Starts an in-place compaction: stops lock-free writers and waits for the
    /// ones in flight. Call holding the lock. On error the store is live again.
    /// `barrierRequired`: false when no other process had the store open a
    /// moment ago, so a kernel without membarrier(2) (or a sandbox that
    /// forbids it) need not stop a compaction that has nobody to fence.
    func beginRetirement(timeout: Double, barrierRequired: Bool = true) throws(SlotStoreError) {
        lock.retirement.pointee.store(Retirement.retiring, ordering: .sequentiallyConsistent)
        let barrier = slotstore_membarrier_global()
        guard barrier == 0 || !barrierRequired else {
            lock.retirement.pointee.store(Retirement.live, ordering: .releasing)
            throw .storeInUse(path: path, operation: "compaction in place (other processes have the store open, and stopping their lock-free writes needs membarrier(2), which failed with errno \(-barrier))")
        }
        let started = StoreCore.monotonicNanoseconds()
        for slot in 0..<LockRegion.threadSlotCount(lockSize: layout.lockSize) {
            let inFlight = lock.inFlight(slot)
            while inFlight.pointee.load(ordering: .acquiring) != 0 {
                // A slot nobody holds is a dead thread's: its write never completes.
                if !OpenGate.byteHeldByOthers(file.fd, LockRegion.threadSlotLockBase + slot) { break }
                if Double(StoreCore.monotonicNanoseconds() - started) / 1e9 > timeout {
                    lock.retirement.pointee.store(Retirement.live, ordering: .releasing)
                    let (owner, namespace) = lock.slotRecord(slot)
                    let process = HolderIdentity.name(pid: owner, inAnotherPIDNamespace: ProcessIdentity.isOtherPIDNamespace(namespace))
                    throw .storeInUse(path: path, operation: "compaction in place (a thread of \(process) stayed inside a lock-free write for \(timeout) s; is it stopped?)")
                }
                sched_yield()
            }
        }
    }

    /// Ends an in-place compaction once the successor is at the path: every
    /// later operation through this file goes to the successor.
    func finishRetirement(successor: (device: UInt64, inode: UInt64), generation: UInt64) {
        lock.successorGeneration.pointee.store(generation, ordering: .relaxed)
        lock.successorDevice.pointee.store(successor.device, ordering: .relaxed)
        lock.successorInode.pointee.store(successor.inode, ordering: .relaxed)
        lock.retirementTime.pointee.store(StoreCore.nowNanoseconds(), ordering: .relaxed)
        lock.retirement.pointee.store(Retirement.retired, ordering: .releasing)
        wakeEveryWaiter()  // so they follow to the successor now, not at their next re-check
    }

    /// Undoes ``beginRetirement(timeout:)`` after a failed copy.
    func abandonRetirement() {
        lock.retirement.pointee.store(Retirement.live, ordering: .releasing)
    }

    /// After a compactor died holding the lock: retired if its new file made it
    /// to the path (the rename is the commit point), live again if not.
    func resolveInterruptedRetirement() {
        guard lock.retirement.pointee.load(ordering: .acquiring) == Retirement.retiring else { return }
        lock.retirement.pointee.store(isStillAtPath() ? Retirement.live : Retirement.retired, ordering: .releasing)
    }

    /// The device and inode of the open file, taken at open (the descriptor
    /// of a retired file is closed, and its number may be reused).
    var fileIdentity: (device: UInt64, inode: UInt64)? { identity }

    /// Closes the descriptor of a file this process has followed away from,
    /// keeping the mapping that older handles still read.
    func retireDescriptor() {
        threadSlots.withLock { _ in file.closeDescriptor() }
    }
}
