import CSlotStore
import Glibc
import Synchronization

/// How a write reaches a process that waits for a change, without costing a
/// write anything while nobody waits.
///
/// Three words of the lock region (see FileFormat.md):
///
/// ```
/// offset  size  field
///     56     8  locked changes: +1 at each commit that changed data and each
///               rollback, written under the lock (the mutex's own cache
///               line, which a committer owns already)
///    168    16  waiter map: bit (i mod 128) set while a waiter of field i may
///               sleep; every bit while a store-wide waiter may sleep
///    184     4  wake sequence: the futex word waiters sleep on; +1 per wake
/// ```
///
/// The protocol (an eventcount with one-shot registrations):
///
/// ```
/// writer (lock-free)                   waiter
/// the atomic write                     s = sequence
/// compiler barrier                     map |= bit
/// if map & bit != 0 {                  membarrier(GLOBAL_EXPEDITED)
///     map &= ~bit                      if the value differs: return it
///     sequence += 1                    futex_wait(sequence, s, slice)
///     futex_wake(sequence, all)        repeat (re-registering only if the
/// }                                            sequence moved)
/// ```
///
/// *Nobody waiting costs one load.* A writer reads the map word of its field
/// (on the retirement word's cache line, which it has just read) and tests
/// one bit.
///
/// *The store-load race.* A lock-free writer stores its value and then loads
/// the map; a waiter sets its bit and then loads the value. Without a full
/// fence on one side, a CPU may perform the writer's load before its store
/// becomes visible, and both miss each other. As for compaction (see
/// `Retirement`), the rare side pays: the waiter's `membarrier` makes every
/// running thread of every registered process pass a full barrier, so either
/// the writer's load comes after the waiter's bit (and it wakes), or the
/// writer's store is visible to the waiter's check. Every process registers
/// for expedited barriers when it opens a store (``prepareProcess()``).
///
/// *A waiter killed at any point costs nothing.* A registration is one-shot:
/// the first writer to see the bit clears it, and every waiter re-registers
/// after each wake. A dead waiter's bit costs exactly one wake (a system
/// call that finds nobody) and is gone. A sleeping waiter holds no lock and
/// no count.
///
/// *A lost or spurious wake can't make a waiter miss a change.* The wake only
/// ends a sleep; the waiter then compares the value (or a version) itself,
/// and no waiter sleeps longer than ``recheckNanoseconds`` between checks,
/// which covers writers that never wake: processes of earlier builds, and a
/// process whose expedited-barrier registration failed (its lock-free stores
/// can then slip through the race above, rarely).
///
/// Why the clear comes before the sequence moves: a waiter reads the
/// sequence before it sets its bit. If a writer clears the bit after that
/// read, the writer's sequence increment makes the waiter's `futex_wait`
/// return at once; if the waiter read the sequence after the increment, its
/// bit is set after the clear and stays set.
@usableFromInline
enum ChangeNotification {
    static let lockedChangesOffset = 56
    static let waiterMapOffset = 168
    static let wakeSequenceOffset = 184

    /// Whether the mutex leaves room for the locked-change counter in its
    /// 64-byte slot (glibc's is 40 bytes on x86_64, 48 on arm64).
    static let lockedChangesFit = MemoryLayout<pthread_mutex_t>.size <= lockedChangesOffset

    /// How long a waiter sleeps at most before it checks the value again
    /// without a wake: 100 ms, or `SLOTSTORE_WAIT_RECHECK_MS` (for tests,
    /// which set it high to prove that a wake, not the re-check, ended a wait).
    static let recheckNanoseconds: Int64 = {
        if let raw = getenv("SLOTSTORE_WAIT_RECHECK_MS"), let milliseconds = Int64(String(cString: raw)), milliseconds > 0 {
            return milliseconds * 1_000_000
        }
        return 100_000_000
    }()

    // MARK: The writer's side (inlined into every lock-free write)

    /// The map word holding field `field`'s bit, found from the retirement
    /// word (offset 128) that every handle's gate already holds, so a handle
    /// stores nothing more. Literal offsets: an inlined static `let` would
    /// cost a lazy-initialization check.
    @inlinable @inline(__always)
    static func waiterWord(_ retirement: MappedAddress, field: Int) -> UnsafeMutablePointer<Atomic<UInt64>> {
        retirement.advanced(by: 40 &+ ((field &>> 6) & 1) &<< 3).atomic(UInt64.self)
    }

    @inlinable @inline(__always)
    static func waiterBit(field: Int) -> UInt64 { 1 &<< UInt64(truncatingIfNeeded: field & 63) }

    /// Wakes every waiter of the store after a write of field `field` whose
    /// bit was set. Out of line: only reached while someone waits.
    @usableFromInline @inline(never)
    static func wake(_ retirement: MappedAddress, field: Int) {
        waiterWord(retirement, field: field).pointee.bitwiseAnd(~waiterBit(field: field), ordering: .sequentiallyConsistent)
        wakeAll(sequence: retirement.advanced(by: wakeSequenceOffset - LockRegion.retirementOffset))
    }

    /// Moves the wake sequence on and wakes every sleeper on it.
    static func wakeAll(sequence: MappedAddress) {
        let word = sequence.atomic(UInt32.self)
        word.pointee.wrappingAdd(1, ordering: .sequentiallyConsistent)
        _ = slotstore_futex_wake_all(UnsafeMutableRawPointer(word).assumingMemoryBound(to: UInt32.self))
    }

    // MARK: Every process

    private static let preparedGeneration = Atomic<UInt64>(.max)

    /// Registers this process for expedited memory barriers (see the type's
    /// comment), once per process and again in a forked child, whose
    /// registration the kernel does not copy. Called at every open; only the
    /// first in a process makes the system call.
    static func prepareProcess() {
        let generation = slotstore_fork_generation()
        guard preparedGeneration.load(ordering: .relaxed) != generation else { return }
        _ = slotstore_membarrier_register_global_expedited()
        preparedGeneration.store(generation, ordering: .relaxed)
    }

    /// Which barrier a waiter issues after registering: the expedited global
    /// one (about a microsecond), else the plain global one (an RCU grace
    /// period, milliseconds, but it reaches unregistered processes too), else
    /// none, and the re-check interval bounds what a missed race costs.
    private static let barrierKind = Atomic<Int>(0)  // 0 expedited, 1 global, 2 none

    static func fullBarrierEverywhere() {
        switch barrierKind.load(ordering: .relaxed) {
        case 0:
            if slotstore_membarrier_global_expedited() == 0 { return }
            barrierKind.store(1, ordering: .relaxed)
            fullBarrierEverywhere()
        case 1:
            if slotstore_membarrier_global() == 0 { return }
            barrierKind.store(2, ordering: .relaxed)
        default:
            atomicMemoryFence(ordering: .sequentiallyConsistent)
        }
    }
}

extension LockFreeGate {
    /// Ends a lock-free write of field number `field` (see ``leave(_:)``) and
    /// wakes the store's waiters if one may be waiting for that field.
    ///
    /// Costs one relaxed load and a test while nobody waits. The compiler
    /// barrier keeps the load after the write; the waiter's `membarrier`
    /// does the rest (see ``ChangeNotification``).
    @inlinable @inline(__always)
    func leave(_ marker: UnsafeMutablePointer<Atomic<UInt64>>, notifying field: Int) {
        slotstore_compiler_barrier()
        let waiting = ChangeNotification.waiterWord(retirement, field: field).pointee.load(ordering: .relaxed)
        marker.pointee.store(0, ordering: .releasing)
        if _slowPath(waiting & ChangeNotification.waiterBit(field: field) != 0) {
            ChangeNotification.wake(retirement, field: field)
        }
    }
}

extension StoreCore {
    var wakeSequence: UnsafeMutablePointer<Atomic<UInt32>> {
        lock.base.advanced(by: ChangeNotification.wakeSequenceOffset).atomic(UInt32.self)
    }

    var lockedChanges: UnsafeMutablePointer<Atomic<UInt64>> {
        lock.base.advanced(by: ChangeNotification.lockedChangesOffset).atomic(UInt64.self)
    }

    func waiterMapWord(_ index: Int) -> UnsafeMutablePointer<Atomic<UInt64>> {
        lock.base.advanced(by: ChangeNotification.waiterMapOffset + index * 8).atomic(UInt64.self)
    }

    /// After a lock-free write made outside the inlined fast path (the slow
    /// path of a handle): wakes the waiters of field `field` if any may wait.
    func notifyAfterLockFreeWrite(field: Int) {
        slotstore_compiler_barrier()
        let word = ChangeNotification.waiterWord(gate.retirement, field: field).pointee.load(ordering: .relaxed)
        if _slowPath(word & ChangeNotification.waiterBit(field: field) != 0) {
            ChangeNotification.wake(gate.retirement, field: field)
        }
    }

    /// Counts a change made under the lock (a commit that wrote, or a
    /// rollback); call holding the lock. A plain increment: only lock holders write it.
    @inline(__always)
    func countLockedChange() {
        guard ChangeNotification.lockedChangesFit else { return }
        let count = lockedChanges.pointee.load(ordering: .relaxed)
        lockedChanges.pointee.store(count &+ 1, ordering: .releasing)
    }

    /// After a lock release (and a rollback): wakes
    /// every waiter if any may wait. Which fields a transaction touched is
    /// not known here, so every bit is cleared and every sleeper woken; each
    /// re-checks its own value and re-registers.
    @inline(__always)
    func notifyAfterLockedChange() {
        slotstore_compiler_barrier()
        if _slowPath(waiterMapWord(0).pointee.load(ordering: .relaxed) | waiterMapWord(1).pointee.load(ordering: .relaxed) != 0) {
            wakeEveryWaiter()
        }
    }

    @inline(never)
    func wakeEveryWaiter() {
        waiterMapWord(0).pointee.store(0, ordering: .sequentiallyConsistent)
        waiterMapWord(1).pointee.store(0, ordering: .sequentiallyConsistent)
        ChangeNotification.wakeAll(sequence: lock.base.advanced(by: ChangeNotification.wakeSequenceOffset))
    }
}
