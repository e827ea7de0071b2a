import Glibc

extension MapField {
    /// Blocks the calling thread until the value for `key` differs from
    /// `old` (nil: absent), or until `timeout` passes, and returns it then.
    ///
    /// The result equals `old` when the timeout passed first. Any process's
    /// insert, replacement or removal of the key (or a transaction, or a
    /// `removeAll()`) wakes the wait within microseconds; see
    /// ``ScalarField/wait(untilChangedFrom:timeout:)`` for writers of older
    /// builds. Values are compared as stored, bit for bit.
    ///
    /// ```swift
    /// // Wait until a worker publishes its address, at most 10 s.
    /// let address = try peers.wait(for: "worker-3", untilChangedFrom: nil, timeout: .seconds(10))
    /// ```
    ///
    /// - Parameters:
    ///   - key: The key to watch.
    ///   - old: The value you know, or nil for "absent".
    ///   - timeout: The longest to wait; `.zero` only checks.
    /// - Returns: The first value (or nil, removed) seen that differs from `old`, or `old`.
    /// - Throws: ``SlotStoreError/storeClosed(path:)`` when the store is
    ///   closed, or what ``get(_:)`` throws (such as a key longer than the key capacity).
    public func wait(for key: Key, untilChangedFrom old: Value?, timeout: Duration) throws(SlotStoreError) -> Value? {
        try waitForChange(of: key, from: old, timeout: timeout, cancellation: nil) ?? old
    }

    /// The values of `key` as they change (nil while it is absent): the value
    /// when iteration starts, then each value that differs from the one before it.
    ///
    /// ```swift
    /// for try await route in try store.map("routes", key: String.self, value: String.self).changes(for: "/api") {
    ///     router.point("/api", to: route)
    /// }
    /// ```
    ///
    /// Coalesced, on a thread of its own while it waits, and ended by
    /// cancelling the task, like ``ScalarField/changes()``.
    public func changes(for key: Key) -> some AsyncSequence<Value?, SlotStoreError> & Sendable {
        let map = self
        return ChangeSequence<Value?>(
            read: { () throws(SlotStoreError) in try StoreCore.readCounted(map.reference) { () throws(SlotStoreError) in try map.get(key) } },
            wait: { old, cancellation, timeout throws(SlotStoreError) in
                // `.some(nil)`: the key was removed; nil: no change (timeout or cancellation).
                try map.waitForChange(of: key, from: old, timeout: timeout, cancellation: cancellation)
            },
            same: { map.same($0, $1) })
    }

    /// Whether two values are stored as the same bytes (nil: absent).
    func same(_ left: Value?, _ right: Value?) -> Bool {
        switch (left, right) {
        case (nil, nil): return true
        case (let left?, let right?):
            return withUnsafeTemporaryAllocation(byteCount: 2 * valueAreaBytes, alignment: 8) { area in
                area.initializeMemory(as: UInt8.self, repeating: 0)
                let base = area.baseAddress!
                left._write(to: SlotMapValueArea(base), type: valueType)
                right._write(to: SlotMapValueArea(base + valueAreaBytes), type: valueType)
                return memcmp(base, base + valueAreaBytes, valueAreaBytes) == 0
            }
        default: return false
        }
    }

    /// The changed value as `.some(value)` (`.some(nil)`: removed), or nil for no change.
    func waitForChange(of key: Key, from old: Value?, timeout: Duration,
                       cancellation: WaitCancellation?) throws(SlotStoreError) -> Value?? {
        let reference = self.reference
        let target = WaitTarget(session: reference.session, core: reference.core, field: reference.layout)
        return try StoreCore.waitForChange(target, timeout: timeout, cancellation: cancellation) { () throws(SlotStoreError) -> Value?? in
            let now = try get(key)
            return same(now, old) ? nil : .some(now)
        }
    }
}
