/// A handle to a map field: a hash map of at most `capacity` entries in the file.
///
/// ```swift
/// let hits = try store.map("hits", key: String.self, value: Int64.self)
/// try hits.add(1, for: "/index.html")      // inserts 0 first when missing
/// let count = try hits.get("/index.html")  // lock-free, never torn
/// ```
///
/// Lookups take no lock and never see a torn entry. Inserts, replacements
/// and removals take the store's lock and are journaled, so a process killed
/// in the middle of one leaves the map as it was before it. Removal moves the
/// entries after the removed one back (backward-shift deletion), so churn
/// through many keys never slows lookups down; a lookup racing such a move
/// probes again rather than miss a key that is there.
public struct MapField<Key: SlotMapKey, Value: SlotMapValue>: Sendable, FieldHandle {
    @usableFromInline let session: StoreSession?
    @usableFromInline let gate: LockFreeGate
    @usableFromInline let table: MapTable
    /// The lookup state as plain values, which is all `get` captures.
    @usableFromInline var cursor: MapCursor { table.cursor }
    @usableFromInline let valueType: FieldType
    @usableFromInline let valueAreaBytes: Int
    @usableFromInline let keyCapacity: Int
    /// This handle in the live file, once it has followed a compaction.
    @usableFromInline let followed: FollowCache<MapField>

    @usableFromInline
    init(reference: FieldReference) {
        let table = MapTable(core: reference.core, field: reference.layout)
        self.session = reference.session
        self.gate = table.core.gate
        self.table = table
        self.valueType = table.geometry.value
        self.valueAreaBytes = table.geometry.valueBytes
        self.keyCapacity = table.geometry.keyCapacity
        self.followed = FollowCache()
    }

    /// This handle in the live file: the cached copy while its file is live,
    /// else rebuilt there (see ``FieldHandle/rebound()``) and cached.
    @usableFromInline
    func live() throws(SlotStoreError) -> MapField {
        if let cached = followed.latest(), !cached.gate.isRetired, cached.table.core.isAttachedHere { return cached }
        let rebuilt = try rebound()
        followed.publish(rebuilt)
        return rebuilt
    }

    /// The store, file and field this handle was resolved in (see ``FieldReference``);
    /// built on demand, as the table already holds the file and field.
    @usableFromInline var reference: FieldReference { FieldReference(session: session, core: table.core, layout: table.field) }

    /// The field's name.
    public var name: String { table.field.name }
    /// The most entries the map holds.
    public var capacity: Int {
        if gate.isRetired, let live = try? live() { return live.capacity }
        return table.geometry.capacity
    }
    /// The number of entries now. In a map with a cache policy
    /// (``MapCache``), the live ones: this walks every bucket (the header
    /// counts expired entries too until they are reclaimed), so it costs
    /// time in proportion to the capacity.
    public var count: Int {
        if gate.isRetired, let live = try? live() { return live.count }
        if table.cursor.entryWordOffset != 0 { return table.cursor.liveCount() }
        return Int(clamping: table.count.pointee.load(ordering: .acquiring))
    }

    private var core: StoreCore { table.core }

    // The retired paths stay out of line: an inlinable method that calls
    // itself is not inlined, and these run once per handle per compaction.

    @usableFromInline @inline(never)
    func getRetired(_ key: Key) throws(SlotStoreError) -> Value? { try live().get(key) }

    @usableFromInline @inline(never)
    func containsRetired(_ key: Key) throws(SlotStoreError) -> Bool { try live().contains(key) }

    @usableFromInline @inline(never)
    func setRetired(_ value: Value, for key: Key) throws(SlotStoreError) { try live().set(value, for: key) }

    @usableFromInline @inline(never)
    func removeRetired(_ key: Key) throws(SlotStoreError) -> Bool { try live().remove(key) }

    /// Lends the key's bytes, refusing a key longer than the key capacity.
    func withKey<R>(_ key: Key, _ body: (UnsafeRawBufferPointer) throws(SlotStoreError) -> R) throws(SlotStoreError) -> R {
        try key._withKeyBytes { bytes throws(SlotStoreError) in
            guard bytes.count <= table.geometry.keyCapacity else {
                throw .valueTooLarge(path: core.path, field: "\(name) key", capacity: table.geometry.keyCapacity, size: bytes.count)
            }
            return try body(bytes)
        }
    }

    @inlinable
    func checkValue(_ value: Value) throws(SlotStoreError) {
        if let size = value._excessSize(for: valueType) { throw valueError(size) }
    }

    @usableFromInline
    func valueError(_ size: Int) -> SlotStoreError {
        if case .array(_, let count) = valueType {
            return .invalidValue(path: core.path, field: name, detail: "expected exactly \(counted(count, "element")), found \(size)")
        }
        var capacity = 0
        if case .string(let limit) = valueType { capacity = limit }
        if case .bytes(let limit) = valueType { capacity = limit }
        return .valueTooLarge(path: core.path, field: "\(name) value", capacity: capacity, size: size)
    }

    // get, contains, set, remove and add are inlinable so a client specializes
    // them for its key and value types; each makes one non-generic call into
    // the engine with the key's bytes and a value image on the stack.

    /// The value for `key`, or nil when the map has no such key.
    @inlinable
    public func get(_ key: Key) throws(SlotStoreError) -> Value? {
        if _slowPath(gate.isRetired) { return try getRetired(key) }
        // Plain values only in the closures: capturing `self` copies the handle.
        let cursor = self.cursor
        if Value._isWord {
            // One scalar: a probe that cannot fail; anything unusual (a key
            // too long, a bucket being written) takes the full path below.
            let probe = key._withKeyBytes { keyBytes -> MapCursor.WordProbe in
                keyBytes.count <= cursor.keyCapacity ? cursor.probeWord(forKey: keyBytes) : .contended
            }
            switch probe {
            case .found(let bits): return Value._fromWord(bits)
            case .absent: return nil
            case .contended: return try getThroughBuffer(key)
            }
        }
        return try getThroughBuffer(key)
    }

    /// ``get(_:)`` for any value: copies the value area into a buffer while its bucket is stable.
    @inlinable
    func getThroughBuffer(_ key: Key) throws(SlotStoreError) -> Value? {
        let cursor = self.cursor
        let valueType = self.valueType
        return try key._withKeyBytes { keyBytes throws(SlotStoreError) -> Value? in
            guard keyBytes.count <= cursor.keyCapacity else { throw cursor.keyTooLarge(keyBytes.count) }
            return try withUnsafeTemporaryAllocation(byteCount: cursor.valueBytes, alignment: 8) { area in
                Result { () throws(SlotStoreError) -> Value? in
                    guard try cursor.copyValue(forKey: keyBytes, into: area.baseAddress!) else { return nil }
                    return Value._read(from: SlotMapValueArea(area.baseAddress!), type: valueType)
                }
            }.get()
        }
    }

    /// Whether the map has `key`.
    @inlinable
    public func contains(_ key: Key) throws(SlotStoreError) -> Bool {
        if _slowPath(gate.isRetired) { return try containsRetired(key) }
        let cursor = self.cursor
        return try key._withKeyBytes { keyBytes throws(SlotStoreError) -> Bool in
            guard keyBytes.count <= cursor.keyCapacity else { throw cursor.keyTooLarge(keyBytes.count) }
            return try withUnsafeTemporaryAllocation(byteCount: cursor.valueBytes, alignment: 8) { area in
                Result { () throws(SlotStoreError) -> Bool in try cursor.copyValue(forKey: keyBytes, into: area.baseAddress!) }
            }.get()
        }
    }

    /// Inserts `value` for `key`, or replaces the value already there.
    ///
    /// - Throws: ``SlotStoreError/mapFull(path:field:capacity:count:)`` when
    ///   inserting into a full map; the map is then unchanged.
    @inlinable
    public func set(_ value: Value, for key: Key) throws(SlotStoreError) {
        do {
            if Value._isWord {
                // One scalar (always fits): no value image, only plain values captured.
                let cursor = self.cursor
                let bits = value._word
                try key._withKeyBytes { keyBytes throws(SlotStoreError) in
                    guard keyBytes.count <= cursor.keyCapacity else { throw cursor.keyTooLarge(keyBytes.count) }
                    try cursor.storeWord(bits, forKey: keyBytes)
                }
            } else {
                try checkValue(value)
                try setLockingLive(value, for: key)
            }
        } catch {
            try followAfter(error)
            try setRetired(value, for: key)
        }
    }

    /// For an insert that failed with `error`: returns when the handle should
    /// try again in the live file (the file was retired: compacted in place,
    /// or grown by this very insert, which found the map full and grew it as
    /// it released the lock); throws otherwise, a failed growth's own error
    /// rather than `mapFull` when that is why there is no room.
    @usableFromInline @inline(never)
    func followAfter(_ error: SlotStoreError) throws(SlotStoreError) {
        switch error {
        case .storeRetired:
            return
        case .mapFull:
            if gate.isRetired { return }
            // Growing failed (no room for the bigger file, a lock timeout):
            // that error says what to do, where mapFull would not.
            if let failure = core.growthFailure(field: table.field.index) { throw failure }
            throw error
        default:
            throw error
        }
    }

    @inlinable
    func setLockingLive(_ value: Value, for key: Key) throws(SlotStoreError) {
        try key._withKeyBytes { keyBytes throws(SlotStoreError) in
            guard keyBytes.count <= keyCapacity else { throw table.keyTooLarge(keyBytes.count) }
            try withUnsafeTemporaryAllocation(byteCount: valueAreaBytes, alignment: 8) { area in
                area.initializeMemory(as: UInt8.self, repeating: 0)
                value._write(to: SlotMapValueArea(area.baseAddress!), type: valueType)
                return Result { () throws(SlotStoreError) in
                    try table.store(valueImage: UnsafeRawBufferPointer(area), forKey: keyBytes)
                }
            }.get()
        }
    }

    /// Removes `key`; returns whether it was there.
    @inlinable @discardableResult
    public func remove(_ key: Key) throws(SlotStoreError) -> Bool {
        do {
            return try key._withKeyBytes { keyBytes throws(SlotStoreError) -> Bool in
                guard keyBytes.count <= keyCapacity else { throw table.keyTooLarge(keyBytes.count) }
                return try table.removeInTransaction(keyBytes)
            }
        } catch .storeRetired {
            return try removeRetired(key)
        }
    }

    /// Removes every entry, in one journaled step.
    public func removeAll() throws(SlotStoreError) {
        do {
            try core.transaction { () throws(SlotStoreError) in try table.removeAll() }
        } catch .storeRetired {
            try live().removeAll()
        }
    }

    /// Calls `body` for every entry; each entry is read consistently, and every
    /// entry present all through the walk is visited exactly once. Without
    /// the lock the walk is not one snapshot: an entry removed and another
    /// inserted while it runs may both be visited. Iterate inside a
    /// transaction for one moment's contents. The entries are copied before
    /// `body` runs (a removal moving entries meanwhile makes the walk copy
    /// again, and under the lock after a few tries), so `body` may write the map.
    public func forEach(_ body: (Key, Value) throws -> Void) throws {
        if gate.isRetired { return try live().forEach(body) }
        var visited = false
        do {
            try table.forEach { key, value in
                visited = true
                try body(Key(_keyBytes: key), Value._read(from: SlotMapValueArea(value.pointer), type: valueType))
            }
        } catch SlotStoreError.storeRetired where !visited {
            // The walk fell back to the lock and found the file compacted in
            // place (or the map grown) meanwhile: walk the new file instead.
            try live().forEach(body)
        }
    }

    /// Every entry, in bucket order.
    public func entries() throws -> [(key: Key, value: Value)] {
        var result: [(key: Key, value: Value)] = []
        try forEach { result.append(($0, $1)) }
        return result
    }

    func getLocked(_ key: Key) throws(SlotStoreError) -> Value? {
        try withKey(key) { bytes throws(SlotStoreError) in
            guard let index = table.locate(bytes).found else { return nil }
            if table.cursor.entryWordOffset != 0, table.cursor.isExpired(table.bucket(index), at: table.cursor.nowMilliseconds()) { return nil }
            return Value._read(from: SlotMapValueArea(table.bucket(index).pointer + table.geometry.valueOffset), type: valueType)
        }
    }

    func setLocked(_ value: Value, for key: Key) throws(SlotStoreError) {
        try checkValue(value)
        try withKey(key) { bytes throws(SlotStoreError) in
            _ = try table.set(bytes) { value._write(to: SlotMapValueArea($0.pointer), type: valueType) }
        }
    }

    func removeLocked(_ key: Key) throws(SlotStoreError) -> Bool {
        try withKey(key) { bytes throws(SlotStoreError) in try table.remove(bytes) }
    }
}

extension MapField where Value: SlotInteger {
    @usableFromInline @inline(never)
    func addRetired(_ delta: Value, for key: Key) throws(SlotStoreError) -> Value { try live().add(delta, for: key) }

    /// Adds `delta` (wrapping) to the value for `key`, inserting `0` first when
    /// the key is missing, and returns the new value. Atomic: it holds the lock.
    @inlinable @discardableResult
    public func add(_ delta: Value, for key: Key) throws(SlotStoreError) -> Value {
        let cursor = self.cursor
        do {
            return try key._withKeyBytes { keyBytes throws(SlotStoreError) -> Value in
                guard keyBytes.count <= cursor.keyCapacity else { throw cursor.keyTooLarge(keyBytes.count) }
                return Value(_slotBits: try cursor.addWord(delta._slotBits, width: Value.scalarType.byteWidth, forKey: keyBytes))
            }
        } catch {
            try followAfter(error)
            return try addRetired(delta, for: key)
        }
    }

    func addLocked(_ delta: Value, for key: Key) throws(SlotStoreError) -> Value {
        try withKey(key) { bytes throws(SlotStoreError) in
            Value(_slotBits: try table.addLocked(bits: delta._slotBits, width: Value.scalarType.byteWidth, forKey: bytes))
        }
    }
}

extension SlotStore {
    /// The handle of map field `name`, whose key and value types must match `Key` and `Value`.
    public func map<Key: SlotMapKey, Value: SlotMapValue>(_ name: String, key: Key.Type = Key.self,
                                                          value: Value.Type = Value.self) throws(SlotStoreError) -> MapField<Key, Value> {
        let core = try session.live(after: session.current)
        let field = try core.field(named: name)
        guard case .map(let keyType, let valueType, _) = field.type, Key._isCompatibleKey(with: keyType),
              Value._isCompatible(with: valueType) else {
            throw .wrongFieldType(path: path, name: name, expected: "map<\(Key._keyDescription), \(Value.self)>", found: field.type.description)
        }
        return MapField(reference: FieldReference(session: session, core: core, layout: field))
    }
}

extension Transaction {
    /// The value for `key` in a map, read under the transaction's lock.
    public func load<Key, Value>(_ key: Key, from map: MapField<Key, Value>) throws(SlotStoreError) -> Value? {
        try map.bound(to: core, in: session).getLocked(key)
    }

    /// Inserts or replaces `key`'s value in a map, as part of the transaction.
    public func store<Key, Value>(_ value: Value, for key: Key, in map: MapField<Key, Value>) throws(SlotStoreError) {
        try map.bound(to: core, in: session).setLocked(value, for: key)
    }

    /// Removes `key` from a map, as part of the transaction; returns whether it was there.
    @discardableResult
    public func remove<Key, Value>(_ key: Key, from map: MapField<Key, Value>) throws(SlotStoreError) -> Bool {
        try map.bound(to: core, in: session).removeLocked(key)
    }

    /// Adds `delta` to `key`'s integer value in a map (inserting 0 first), as part of the transaction.
    @discardableResult
    public func add<Key, Value: SlotInteger>(_ delta: Value, for key: Key, in map: MapField<Key, Value>) throws(SlotStoreError) -> Value {
        try map.bound(to: core, in: session).addLocked(delta, for: key)
    }
}
