import Glibc
import Synchronization

/// A seqlock's sequence word in the mapping: even while what it guards is
/// stable, odd while a locked writer changes it.
///
/// This is the one implementation of the protocol; fields, map buckets,
/// rollback and recovery all go through it:
///
/// ```
/// writer (holding the store's lock)      reader (no lock)
/// beginWrite: word = odd                 begun = beginRead()   (nil while odd: retry)
///             release fence              copy the guarded bytes
/// change the guarded bytes               endRead(begun)        (false: retry)
/// endWrite:   word = next even (release)
/// ```
///
/// A writer that dies between `beginWrite` and `endWrite` leaves the word
/// odd; the next lock holder rolls its bytes back and ``settle()``s it.
@usableFromInline
struct SequenceWord {
    @usableFromInline let word: UnsafeMutablePointer<Atomic<UInt64>>

    @inlinable @inline(__always)
    init(_ address: MappedAddress) { word = address.atomic(UInt64.self) }

    /// The value to validate the copy against, or nil while a writer is inside.
    @inlinable @inline(__always)
    func beginRead() -> UInt64? {
        let value = word.pointee.load(ordering: .acquiring)
        return value & 1 == 0 ? value : nil
    }

    /// Whether everything copied since ``beginRead()`` returned `begun` is
    /// consistent: no writer began in between. The acquire fence keeps the
    /// copy's loads before this one.
    @inlinable @inline(__always)
    func endRead(_ begun: UInt64) -> Bool {
        atomicMemoryFence(ordering: .acquiring)
        return word.pointee.load(ordering: .relaxed) == begun
    }

    /// Makes the word odd before a locked write (or a rollback) changes the
    /// guarded bytes. The release fence orders the odd word before those changes.
    @inlinable @inline(__always)
    func beginWrite() {
        let value = word.pointee.load(ordering: .relaxed)
        word.pointee.store(value | 1, ordering: .relaxed)
        atomicMemoryFence(ordering: .releasing)
    }

    /// Ends the write: the next even value, released after the guarded bytes.
    @inlinable @inline(__always)
    func endWrite() {
        let value = word.pointee.load(ordering: .relaxed)
        word.pointee.store((value | 1) &+ 1, ordering: .releasing)
    }

    /// The word as it is, for a reader holding the lock (no writer can be
    /// inside, so an odd value is a dead writer's, already rolled back).
    var current: UInt64 { word.pointee.load(ordering: .acquiring) }

    /// Whether a writer is inside, or died there.
    var isOdd: Bool { word.pointee.load(ordering: .relaxed) & 1 == 1 }

    /// After a dead writer's bytes were restored: makes an odd word even
    /// (never back to an earlier value, so a reader that began before the
    /// writer can't validate). Call holding the lock, or with no other opener.
    /// - Returns: whether it was odd.
    @discardableResult
    func settle() -> Bool {
        let value = word.pointee.load(ordering: .relaxed)
        guard value & 1 == 1 else { return false }
        word.pointee.store(value &+ 1, ordering: .releasing)
        return true
    }
}

/// What a lock-free reader does while it keeps finding a writer in the way:
/// the one retry policy of every seqlock reader.
///
/// It spins briefly, then yields; every 4,096 attempts it takes the lock
/// once if the word stays odd (which rolls back a writer that died mid-write,
/// so a reader never spins forever) and, past the lock timeout of live
/// traffic, throws ``SlotStoreError/readTimeout(path:field:seconds:)``.
struct ReadRetry {
    private var attempts = 0
    private var started: UInt64 = 0

    /// Call after a failed attempt. Spins 64 attempts, then yields between
    /// attempts; every 64 attempts it looks at the clock (started at the
    /// first look). When the word has been odd for over 10 ms (a writer
    /// inside, maybe dead), `settle` runs, by default
    /// ``StoreCore/settleStalledWriter()``, which takes and releases the lock
    /// (recovering a dead writer, waiting at most the lock timeout for a live
    /// one); past the lock timeout the read gives up. Deadlines are by the
    /// clock, not by a count of attempts: on a loaded machine each yield can
    /// take a whole time slice, and 4,096 of them took 10-15 s.
    @inline(never)
    mutating func wait(core: StoreCore, field: String, stalled: @autoclosure () -> Bool,
                       settle: (() throws(SlotStoreError) -> Void)? = nil) throws(SlotStoreError) {
        attempts += 1
        if attempts > 64 { sched_yield() }
        guard attempts & 63 == 0 else { return }
        let now = StoreCore.monotonicNanoseconds()
        if started == 0 {
            started = now
            return
        }
        let elapsed = Double(now - started) / 1e9
        if elapsed > 0.01 && stalled() {
            if let settle { try settle() } else { try core.settleStalledWriter() }
        }
        if elapsed > core.lockTimeout {
            throw .readTimeout(path: core.path, field: field, seconds: core.lockTimeout)
        }
    }
}
