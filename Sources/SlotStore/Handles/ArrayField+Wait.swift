extension ArrayField {
    /// Blocks the calling thread until the array differs from `old` in any
    /// element, or until `timeout` passes, and returns a snapshot then.
    ///
    /// The snapshot equals `old` when the timeout passed first. A lock-free
    /// element store or add, a whole-array store, or a transaction by any
    /// process wakes the wait within microseconds; see
    /// ``ScalarField/wait(untilChangedFrom:timeout:)`` for what "differs"
    /// means and for writers of older builds.
    ///
    /// ```swift
    /// var buckets = try latency.snapshot()
    /// buckets = try latency.wait(untilChangedFrom: buckets, timeout: .seconds(1))
    /// ```
    ///
    /// - Parameters:
    ///   - old: The elements you know; an array of another count is
    ///     different from every snapshot.
    ///   - timeout: The longest to wait; `.zero` only checks.
    /// - Returns: The first snapshot seen that differs from `old`, or `old`.
    /// - Throws: ``SlotStoreError/storeClosed(path:)`` when the store is
    ///   closed, or what ``snapshot()`` throws.
    public func wait(untilChangedFrom old: [Value], timeout: Duration) throws(SlotStoreError) -> [Value] {
        try waitForChange(from: old, timeout: timeout, cancellation: nil) ?? old
    }

    /// The array's snapshots as they change: a snapshot when iteration
    /// starts, then each snapshot that differs from the one before it.
    ///
    /// Coalesced, on a thread of its own while it waits, and ended by
    /// cancelling the task, like ``ScalarField/changes()``.
    public func changes() -> some AsyncSequence<[Value], SlotStoreError> & Sendable {
        let field = self
        return ChangeSequence<[Value]>(
            read: { () throws(SlotStoreError) in try StoreCore.readCounted(field.reference) { () throws(SlotStoreError) in try field.snapshot() } },
            wait: { old, cancellation, timeout throws(SlotStoreError) in
                try field.waitForChange(from: old, timeout: timeout, cancellation: cancellation)
            },
            same: ArrayField.same)
    }

    @Sendable
    static func same(_ left: [Value], _ right: [Value]) -> Bool {
        left.count == right.count && zip(left, right).allSatisfy { $0._slotBits == $1._slotBits }
    }

    func waitForChange(from old: [Value], timeout: Duration, cancellation: WaitCancellation?) throws(SlotStoreError) -> [Value]? {
        let target = WaitTarget(session: reference.session, core: reference.core, field: reference.layout)
        // One buffer for every check (sized by the first read): a wake costs a copy, not an allocation.
        var now: [Value] = []
        return try StoreCore.waitForChange(target, timeout: timeout, cancellation: cancellation) { () throws(SlotStoreError) -> [Value]? in
            try read(into: &now)
            return ArrayField.same(now, old) ? nil : now
        }
    }
}
