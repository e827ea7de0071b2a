extension ScalarField {
    /// Blocks the calling thread until the value differs from `old`, or
    /// until `timeout` passes, and returns the value then.
    ///
    /// The value equals `old` when the timeout passed first, so a loop reads
    /// as plainly as a poll, without polling:
    ///
    /// ```swift
    /// var generation = configGeneration.load()
    /// while running {
    ///     let seen = try configGeneration.wait(untilChangedFrom: generation, timeout: .seconds(5))
    ///     if seen != generation { reloadConfig(); generation = seen }
    /// }
    /// ```
    ///
    /// A write by any process (a lock-free store or add, a transaction,
    /// another process rolling back a dead writer's transaction) wakes the
    /// wait within microseconds; the wait sleeps in the kernel meanwhile and
    /// costs writers nothing beyond one load. "Differs" means a different bit
    /// pattern (`0.0` and `-0.0` differ, a NaN equals itself), and the check
    /// is of values: a value changed and changed back before the waiter ran
    /// is not a change. Writers of builds without change notification don't
    /// wake waiters; their changes are seen within 100 ms.
    ///
    /// - Parameters:
    ///   - old: The value you know.
    ///   - timeout: The longest to wait; `.zero` only checks.
    /// - Returns: The first value seen that differs from `old`, or `old`.
    /// - Throws: ``SlotStoreError/storeClosed(path:)`` when the store is
    ///   closed (before or during the wait), or the error of following an
    ///   in-place compaction to a file without this field.
    public func wait(untilChangedFrom old: Value, timeout: Duration) throws(SlotStoreError) -> Value {
        try waitForChange(from: old, timeout: timeout, cancellation: nil) ?? old
    }

    /// The field's values as they change: the value when iteration starts,
    /// then each value that differs from the one before it.
    ///
    /// ```swift
    /// for try await limit in try store.scalar("rate_limit", as: Int64.self).changes() {
    ///     limiter.setLimit(limit)
    /// }
    /// ```
    ///
    /// Values are coalesced: a consumer slower than the writers sees the
    /// latest value, not every one in between. While it waits, the sequence
    /// sleeps on a thread of its own (never on Swift's cooperative pool), and
    /// cancelling the task ends the iteration (`next()` returns nil) within
    /// microseconds. See ``wait(untilChangedFrom:timeout:)`` for what wakes it.
    public func changes() -> some AsyncSequence<Value, SlotStoreError> & Sendable {
        let field = self
        return ChangeSequence<Value>(
            read: { () throws(SlotStoreError) in try StoreCore.readCounted(field.reference) { field.load() } },
            wait: { old, cancellation, timeout throws(SlotStoreError) in
                try field.waitForChange(from: old, timeout: timeout, cancellation: cancellation)
            },
            same: { $0._slotBits == $1._slotBits })
    }

    func waitForChange(from old: Value, timeout: Duration, cancellation: WaitCancellation?) throws(SlotStoreError) -> Value? {
        let target = WaitTarget(session: reference.session, core: reference.core, field: reference.layout)
        return try StoreCore.waitForChange(target, timeout: timeout, cancellation: cancellation) { () throws(SlotStoreError) -> Value? in
            let now = load()
            return now._slotBits == old._slotBits ? nil : now
        }
    }
}
