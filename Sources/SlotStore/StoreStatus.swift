import Glibc

/// The state of a store's lock and journal, read without taking the lock.
public struct StoreStatus: Sendable, Hashable {
    /// The PID recorded by the current lock holder, or nil when the lock is
    /// free. It is the number the holder's own PID namespace gives it: see
    /// ``lockHolderInAnotherPIDNamespace``.
    public var lockHolderPID: Int32?
    /// Whether the recorded holder is still running (false when the lock is
    /// free). Told by a lock the kernel holds for the holder while it lives,
    /// so it is right for a holder in another PID namespace too.
    public var lockHolderAlive: Bool
    /// Whether the holder's PID namespace is known to differ from this
    /// process's (another container sharing the file): its PID then names
    /// another process here, or none.
    public var lockHolderInAnotherPIDNamespace: Bool = false
    /// Whether the mutex word says a holder died and the next locker must recover.
    public var lockNeedsRecovery: Bool
    /// Locks taken since the store was created.
    public var lockAcquisitions: UInt64
    /// Interrupted writes rolled back: after a holder died, or found at a first open.
    public var recoveries: UInt64
    /// Times a first opener re-initialized the lock because no process had the store open.
    public var lockResets: UInt64
    /// The PID whose interrupted write was last rolled back, if any.
    public var lastRecoveredPID: Int32?
    /// Whether that PID was known to belong to another PID namespace than this process's.
    public var lastRecoveredInAnotherPIDNamespace: Bool = false
    /// Whether the undo journal holds records of a write in progress (or of a dead writer).
    public var journalDirty: Bool
    /// The number of journal records.
    public var journalRecords: Int
    /// The bytes the journal records occupy.
    public var journalBytes: Int
}

extension SlotStore {
    /// The lock and journal state, read without taking the lock.
    ///
    /// - Throws: ``SlotStoreError/storeClosed(path:)`` after ``close()``.
    public var status: StoreStatus {
        get throws(SlotStoreError) {
            try session.ensureOpen()
            return core.status
        }
    }
}

extension StoreCore {
    var status: StoreStatus {
        let word = lock.lockWord
        let holder = lockHolder
        let locked = word & LockRegion.futexTIDMask != 0 || word & LockRegion.futexOwnerDied != 0
        let journalRecords = journal.records().records
        let lastRecovered = lock.lastRecoveredPID.pointee.load(ordering: .relaxed)
        let holderPID: Int32? = holder.pid != 0 ? holder.pid : nil
        return StoreStatus(
            lockHolderPID: holderPID,
            lockHolderAlive: holder.alive,
            lockHolderInAnotherPIDNamespace: holder.inAnotherPIDNamespace,
            lockNeedsRecovery: word & LockRegion.futexOwnerDied != 0 || (locked && holderPID != nil && !holder.alive),
            lockAcquisitions: lock.acquisitions.pointee.load(ordering: .relaxed),
            recoveries: lock.recoveries.pointee.load(ordering: .relaxed),
            lockResets: lock.resets.pointee.load(ordering: .relaxed),
            lastRecoveredPID: lastRecovered != 0 ? lastRecovered : nil,
            lastRecoveredInAnotherPIDNamespace: lastRecovered != 0
                && ProcessIdentity.isOtherPIDNamespace(lock.lastRecoveredPIDNamespace.pointee.load(ordering: .relaxed)),
            journalDirty: journal.isDirty,
            journalRecords: journalRecords.count,
            journalBytes: Int(journal.usedBytes.pointee.load(ordering: .relaxed)))
    }
}
