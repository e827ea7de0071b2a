extension StringField {
    /// Blocks the calling thread until the value differs from `old`, or
    /// until `timeout` passes, and returns the value then.
    ///
    /// The value equals `old` when the timeout passed first. Any process's
    /// store of the field, a transaction, or a rollback of a dead writer's
    /// write wakes the wait within microseconds; see
    /// ``ScalarField/wait(untilChangedFrom:timeout:)`` for writers of older builds.
    /// "Differs" compares UTF-8 bytes, so a change between two canonically
    /// equivalent spellings (which Swift's `==` calls equal) is a change.
    ///
    /// ```swift
    /// var motd = try motdField.load()
    /// motd = try motdField.wait(untilChangedFrom: motd, timeout: .seconds(30))
    /// ```
    ///
    /// - Parameters:
    ///   - old: The value you know.
    ///   - timeout: The longest to wait; `.zero` only checks.
    /// - Returns: The first value seen that differs from `old`, or `old`.
    /// - Throws: ``SlotStoreError/storeClosed(path:)`` when the store is
    ///   closed, or what ``load()`` throws.
    public func wait(untilChangedFrom old: String, timeout: Duration) throws(SlotStoreError) -> String {
        try waitForChange(from: old, timeout: timeout, cancellation: nil) ?? old
    }

    /// The field's values as they change: the value when iteration starts,
    /// then each value that differs from the one before it.
    ///
    /// ```swift
    /// for try await motd in try store.string("motd").changes() {
    ///     banner.text = motd
    /// }
    /// ```
    ///
    /// Coalesced, on a thread of its own while it waits, and ended by
    /// cancelling the task, like ``ScalarField/changes()``.
    public func changes() -> some AsyncSequence<String, SlotStoreError> & Sendable {
        let field = self
        return ChangeSequence<String>(
            read: { () throws(SlotStoreError) in try StoreCore.readCounted(field.field.reference) { () throws(SlotStoreError) in try field.load() } },
            wait: { old, cancellation, timeout throws(SlotStoreError) in
                try field.waitForChange(from: old, timeout: timeout, cancellation: cancellation)
            },
            same: { $0.utf8.elementsEqual($1.utf8) })
    }

    func waitForChange(from old: String, timeout: Duration, cancellation: WaitCancellation?) throws(SlotStoreError) -> String? {
        let reference = field.reference
        let target = WaitTarget(session: reference.session, core: reference.core, field: reference.layout)
        return try StoreCore.waitForChange(target, timeout: timeout, cancellation: cancellation) { () throws(SlotStoreError) -> String? in
            let now = try load()
            return now.utf8.elementsEqual(old.utf8) ? nil : now
        }
    }
}

extension BytesField {
    /// Blocks the calling thread until the value differs from `old`, or
    /// until `timeout` passes, and returns the value then (equal to `old`
    /// when the timeout passed first).
    ///
    /// Woken like ``StringField/wait(untilChangedFrom:timeout:)``.
    ///
    /// - Parameters:
    ///   - old: The bytes you know.
    ///   - timeout: The longest to wait; `.zero` only checks.
    /// - Returns: The first value seen that differs from `old`, or `old`.
    /// - Throws: ``SlotStoreError/storeClosed(path:)`` when the store is
    ///   closed, or what ``load()`` throws.
    public func wait(untilChangedFrom old: [UInt8], timeout: Duration) throws(SlotStoreError) -> [UInt8] {
        try waitForChange(from: old, timeout: timeout, cancellation: nil) ?? old
    }

    /// The field's values as they change: the value when iteration starts,
    /// then each value that differs from the one before it.
    ///
    /// Coalesced, on a thread of its own while it waits, and ended by
    /// cancelling the task, like ``ScalarField/changes()``.
    public func changes() -> some AsyncSequence<[UInt8], SlotStoreError> & Sendable {
        let field = self
        return ChangeSequence<[UInt8]>(
            read: { () throws(SlotStoreError) in try StoreCore.readCounted(field.field.reference) { () throws(SlotStoreError) in try field.load() } },
            wait: { old, cancellation, timeout throws(SlotStoreError) in
                try field.waitForChange(from: old, timeout: timeout, cancellation: cancellation)
            },
            same: { $0 == $1 })
    }

    func waitForChange(from old: [UInt8], timeout: Duration, cancellation: WaitCancellation?) throws(SlotStoreError) -> [UInt8]? {
        let reference = field.reference
        let target = WaitTarget(session: reference.session, core: reference.core, field: reference.layout)
        var now: [UInt8] = []
        return try StoreCore.waitForChange(target, timeout: timeout, cancellation: cancellation) { () throws(SlotStoreError) -> [UInt8]? in
            let length = try read(into: &now)
            return now[0..<length].elementsEqual(old) ? nil : Array(now[0..<length])
        }
    }
}
