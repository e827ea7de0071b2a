/// Reading and writing one entry of a map field by name, with ``FieldValue``
/// keys and values: what `slotstore get`, `set`, `add` and `remove` do with
/// `PATH 'map[key]'`.
///
/// ```swift
/// try store.setValue(.int(3), for: "hits", key: .string("/index.html"))
/// let hits = try store.value(of: "hits", key: .string("/index.html"))   // .int(3)
/// try store.add(.int(1), to: "hits", key: .string("/about"))            // .int(1), inserted
/// try store.removeValue(of: "hits", key: .string("/about"))             // true
/// ```
///
/// Keys and values are checked against the map's stored types as
/// ``FieldValue/converted(to:field:path:)`` checks them: an integer key out of
/// its type's range, a string or bytes key over the key capacity, or a value
/// that does not fit throws, and nothing is written. A ``MapField`` handle is
/// faster (no conversion, no lookup of the field by name); these are for tools
/// and callers that learn the types from the stored schema.
extension SlotStore {
    /// The value for `key` in map field `name`, or nil when the map has no
    /// such key. Read lock-free and never torn, as ``MapField/get(_:)`` reads.
    ///
    /// - Parameters:
    ///   - name: The map field's name.
    ///   - key: The key, convertible to the map's key type (`.string` for
    ///     string keys, `.bytes` for bytes keys, `.int`/`.uint` for integer keys).
    /// - Throws: ``SlotStoreError/unknownField(path:name:available:)``;
    ///   ``SlotStoreError/invalidValue(path:field:detail:)`` when the field is
    ///   not a map or the key is of the wrong kind or out of range;
    ///   ``SlotStoreError/valueTooLarge(path:field:capacity:size:)`` for a key
    ///   over the key capacity; ``SlotStoreError/readTimeout(path:field:seconds:)``.
    public func value(of name: String, key: FieldValue) throws(SlotStoreError) -> FieldValue? {
        let entry = try liveCore().mapEntry(name, key: key)
        return try MapTable.withBytes(of: entry.keyBytes) { keyBytes throws(SlotStoreError) -> FieldValue? in
            // A torn copy is discarded by the bucket's seqlock; the length read is clamped, so it stays in bounds.
            try entry.table.lookup(keyBytes) { area in MapCodec.read(type: entry.valueType, from: area) }
        }
    }

    /// Inserts `value` for `key` in map field `name`, or replaces the value
    /// already there, in one journaled transaction.
    ///
    /// A map with a ``MapGrowth`` policy that is full grows (a compaction in
    /// place, as the lock is released) and the insert is made in the grown
    /// file, as ``MapField/set(_:for:)`` does.
    ///
    /// - Throws: the errors of ``value(of:key:)``; ``SlotStoreError/invalidValue(path:field:detail:)``
    ///   or ``SlotStoreError/valueTooLarge(path:field:capacity:size:)`` for a
    ///   value that does not fit the map's value type;
    ///   ``SlotStoreError/mapFull(path:field:capacity:count:)`` when inserting
    ///   into a full map that cannot grow (the error of a failed growth when
    ///   that is why). The map is unchanged when it throws.
    public func setValue(_ value: FieldValue, for name: String, key: FieldValue) throws(SlotStoreError) {
        _ = try setValue(value, for: name, key: key, ttl: nil)
    }

    /// ``setValue(_:for:key:)`` with a time to live, in a map with a cache
    /// policy (``MapCache``), as ``MapField/set(_:for:ttl:)``: the entry
    /// expires `ttl` after now (nil: never), and in a full map that evicts,
    /// the outcome says whether a live entry made room.
    ///
    /// - Throws: the errors of ``setValue(_:for:key:)``, and
    ///   ``SlotStoreError/invalidValue(path:field:detail:)`` for a `ttl` on a
    ///   map without a cache policy or one that is not positive or too long.
    @discardableResult
    public func setValue(_ value: FieldValue, for name: String, key: FieldValue, ttl: Duration?) throws(SlotStoreError) -> MapSetOutcome {
        try insertingMapEntry(name) { core throws(SlotStoreError) -> MapSetOutcome in
            let entry = try core.mapEntry(name, key: key)
            let converted = try value.converted(to: entry.valueType, field: entry.label, path: path)
            return try MapTable.withBytes(of: entry.keyBytes) { keyBytes throws(SlotStoreError) -> MapSetOutcome in
                let cursor = entry.table.cursor
                guard cursor.entryWordOffset != 0 else {
                    if let ttl {
                        throw MapExpiry.noCachePolicy(ttl, path: path, field: name)
                    }
                    let inserted = try entry.table.set(keyBytes) { MapCodec.write(converted, type: entry.valueType, to: $0) }
                    return MapSetOutcome(inserted: inserted, evicted: 0)
                }
                let deadline = try cursor.deadline(after: ttl, path: path, field: name)
                return try cursor.cacheSet(keyBytes, deadline: deadline, evictingLive: cursor.evicts, in: core) {
                    MapCodec.write(converted, type: entry.valueType, to: $0)
                }
            }
        }
    }

    /// Removes `key` from map field `name`; returns whether it was there.
    ///
    /// - Throws: the errors of ``value(of:key:)`` except the read timeout, and
    ///   the lock's errors.
    @discardableResult
    public func removeValue(of name: String, key: FieldValue) throws(SlotStoreError) -> Bool {
        try lockedTransaction { core throws(SlotStoreError) -> Bool in
            let entry = try core.mapEntry(name, key: key)
            return try MapTable.withBytes(of: entry.keyBytes) { keyBytes throws(SlotStoreError) -> Bool in
                try entry.table.remove(keyBytes)
            }
        }
    }

    /// Adds `delta` to the value for `key` in a map of integer or
    /// floating-point values, inserting 0 first when the key is missing, and
    /// returns the new value. Atomic: it holds the store's lock.
    ///
    /// Unlike ``MapField/add(_:for:)``, which wraps, an integer result outside
    /// the value type's range is an error and the map is unchanged, as with
    /// ``add(_:to:)``. A full map with a ``MapGrowth`` policy grows for a new key.
    ///
    /// - Throws: the errors of ``setValue(_:for:key:)``, and
    ///   ``SlotStoreError/invalidValue(path:field:detail:)`` when the map's
    ///   values are not numbers or the result is out of range.
    @discardableResult
    public func add(_ delta: FieldValue, to name: String, key: FieldValue) throws(SlotStoreError) -> FieldValue {
        try insertingMapEntry(name) { core throws(SlotStoreError) -> FieldValue in
            let entry = try core.mapEntry(name, key: key)
            guard case .scalar(let type) = entry.valueType, type != .bool else {
                throw .invalidValue(path: path, field: name, detail: "add needs a map of integer or floating-point values, and \(name) is \(entry.field.type)")
            }
            let step = try delta.converted(to: .scalar(type.isFloatingPoint ? .double : .int64), field: entry.label, path: path)
            return try MapTable.withBytes(of: entry.keyBytes) { keyBytes throws(SlotStoreError) -> FieldValue in
                let current = entry.table.locate(keyBytes).found.map {
                    MapCodec.read(type: entry.valueType, from: entry.table.cursor.valueArea(entry.table.bucket($0)))
                } ?? (type.isFloatingPoint ? .double(0) : .int(0))
                let sum: FieldValue
                switch (current, step) {
                case (.double(let value), .double(let step)): sum = .double(value + step)
                case (.int(let value), .int(let step)): sum = try FieldValue.exactly(Int128(value) + Int128(step), label: entry.label, path: path)
                case (.uint(let value), .int(let step)): sum = try FieldValue.exactly(Int128(value) + Int128(step), label: entry.label, path: path)
                default: throw .invalidValue(path: path, field: entry.label, detail: "cannot add \(delta) to \(current)")
                }
                let next = try sum.converted(to: entry.valueType, field: entry.label, path: path)
                _ = try entry.table.set(keyBytes) { MapCodec.write(next, type: entry.valueType, to: $0) }
                return next
            }
        }
    }

    /// Runs `body` in a transaction; when it finds the map full and the
    /// map grew as the lock was released (its ``MapGrowth`` policy: the
    /// engine asks for the growth while it holds the lock, and it runs in
    /// `releaseLock`), runs it again in the grown file. The loop ends: each
    /// retry follows a growth, and growth stops at the policy's maximum.
    private func insertingMapEntry<R>(_ name: String, _ body: (StoreCore) throws(SlotStoreError) -> R) throws(SlotStoreError) -> R {
        while true {
            var used: StoreCore?
            do {
                return try lockedTransaction { core throws(SlotStoreError) -> R in
                    used = core
                    return try body(core)
                }
            } catch {
                guard case .mapFull = error, let used else { throw error }
                if used.gate.isRetired { continue }
                // The growth failed (no room for the bigger file, a lock
                // timeout): its error says what to do, where mapFull would not.
                if let index = used.layout.field(named: name)?.index, let failure = used.growthFailure(field: index) { throw failure }
                throw error
            }
        }
    }
}

/// One map entry's field, table, types and key bytes, resolved by name in an engine.
private struct MapEntryAccess {
    let field: FieldLayout
    let table: MapTable
    let valueType: FieldType
    let keyBytes: [UInt8]
    /// The entry as errors name it: `hits["/a"]`.
    let label: String
}

extension StoreCore {
    /// Resolves map field `name` and converts `key` to its key type's bytes.
    fileprivate func mapEntry(_ name: String, key: FieldValue) throws(SlotStoreError) -> MapEntryAccess {
        let field = try field(named: name)
        guard case .map(let keyType, let valueType, _) = field.type else {
            throw .invalidValue(path: path, field: name, detail: "a key needs a map field, and \(name) is \(field.type)")
        }
        let converted = try key.converted(to: keyType, field: "\(name) key", path: path)
        return MapEntryAccess(field: field, table: MapTable(core: self, field: field), valueType: valueType,
                              keyBytes: MapCodec.keyBytes(converted, type: keyType), label: "\(name)[\(converted)]")
    }
}

extension FieldValue {
    /// `sum` as `.int` or `.uint`, or an error when no 64-bit integer holds it.
    fileprivate static func exactly(_ sum: Int128, label: String, path: String) throws(SlotStoreError) -> FieldValue {
        if let value = Int64(exactly: sum) { return .int(value) }
        if let value = UInt64(exactly: sum) { return .uint(value) }
        throw .invalidValue(path: path, field: label, detail: "\(sum) is outside the range of a 64-bit integer")
    }
}
