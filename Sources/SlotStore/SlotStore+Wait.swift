/// A fingerprint of everything a store holds, to wait for "anything changed".
///
/// Get one with ``SlotStore/changeMark()``; two marks differ when some write
/// happened between them (or a compaction in place replaced the file). It
/// reads one word per field, not the values of strings or maps: a
/// locked write counts itself, a lock-free one changes its scalar or its
/// array's element-write counter.
public struct ChangeMark: Sendable, Hashable {
    /// The file's generation, then the locked-change counter, then one or
    /// two words per field (see ``SlotStore/changeMark()``).
    let words: [UInt64]
}

extension SlotStore {
    /// A fingerprint of the store's contents now, for ``wait(untilChangedFrom:timeout:)``.
    ///
    /// Cheap (one load per field, no value copied), so take one whenever you
    /// have read what you need. Two marks are equal when nothing was written
    /// between them, with two exceptions that make a store-wide wait return
    /// early or late, never wrongly: a scalar changed and changed back
    /// between two marks is no change, and a transaction that wrote only
    /// values it found counts as a change. Map writes by processes of
    /// builds without change notification are not seen.
    ///
    /// - Throws: ``SlotStoreError/storeClosed(path:)`` after ``close()``, or
    ///   the error of following an in-place compaction.
    public func changeMark() throws(SlotStoreError) -> ChangeMark {
        ChangeMark(core: try session.live(after: session.current))
    }

    /// Blocks the calling thread until anything in the store changes from
    /// `mark`, or until `timeout` passes, and returns the mark then.
    ///
    /// The result equals `mark` when the timeout passed first. Every write
    /// wakes a store-wide waiter, so while one waits, each lock-free write
    /// pays a wake (a system call) once per round of the waiter: use a
    /// field's own `wait(untilChangedFrom:timeout:)` where you can.
    ///
    /// ```swift
    /// var mark = try store.changeMark()
    /// while running {
    ///     redraw(store)
    ///     mark = try store.wait(untilChangedFrom: mark, timeout: .seconds(1))
    /// }
    /// ```
    ///
    /// - Parameters:
    ///   - mark: A mark from ``changeMark()`` (or from an earlier wait).
    ///   - timeout: The longest to wait; `.zero` only checks.
    /// - Returns: The first mark seen that differs from `mark`, or `mark`.
    /// - Throws: ``SlotStoreError/storeClosed(path:)`` when the store is
    ///   closed, or the error of following an in-place compaction.
    public func wait(untilChangedFrom mark: ChangeMark, timeout: Duration) throws(SlotStoreError) -> ChangeMark {
        try waitForChange(from: mark, timeout: timeout, cancellation: nil) ?? mark
    }

    /// The store's marks as it changes: a mark when iteration starts, then
    /// one each time anything changed since the one before.
    ///
    /// ```swift
    /// for try await _ in store.changes() {
    ///     redraw(store)
    /// }
    /// ```
    ///
    /// Coalesced, on a thread of its own while it waits, and ended by
    /// cancelling the task, like ``ScalarField/changes()``.
    public func changes() -> some AsyncSequence<ChangeMark, SlotStoreError> & Sendable {
        let store = self
        return ChangeSequence<ChangeMark>(
            read: { () throws(SlotStoreError) in try store.changeMark() },
            wait: { old, cancellation, timeout throws(SlotStoreError) in
                try store.waitForChange(from: old, timeout: timeout, cancellation: cancellation)
            },
            same: { $0 == $1 })
    }

    func waitForChange(from mark: ChangeMark, timeout: Duration, cancellation: WaitCancellation?) throws(SlotStoreError) -> ChangeMark? {
        let target = WaitTarget(session: session, core: try session.live(after: session.current), field: nil)
        return try StoreCore.waitForChange(target, timeout: timeout, cancellation: cancellation) { () throws(SlotStoreError) -> ChangeMark? in
            let now = try changeMark()
            return now == mark ? nil : now
        }
    }
}

extension ChangeMark {
    /// Reads `core`'s words: what every write changes (see ``SlotStore/changeMark()``).
    init(core: StoreCore) {
        var words: [UInt64] = [core.header.generation, core.lockedChanges.pointee.load(ordering: .acquiring)]
        words.reserveCapacity(2 + 2 * core.layout.fields.count)
        for field in core.layout.fields {
            switch field.type {
            case .scalar:
                words.append(core.address(field.payloadOffset).atomic(UInt64.self).pointee.load(ordering: .acquiring))
            case .array:
                words.append(core.address(field.sequenceOffset).atomic(UInt64.self).pointee.load(ordering: .acquiring))
                words.append(core.address(field.secondWordOffset).atomic(UInt64.self).pointee.load(ordering: .acquiring))
            case .string, .bytes:
                // Locked writes, counted above; the sequence word catches older builds' too.
                words.append(core.address(field.sequenceOffset).atomic(UInt64.self).pointee.load(ordering: .acquiring))
            default:
                break  // maps: locked writes only, counted above
            }
        }
        self.words = words
    }
}
