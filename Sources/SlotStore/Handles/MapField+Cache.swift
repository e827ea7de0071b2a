/// What an insert or replacement in a map did (see ``MapField/set(_:for:ttl:)``).
public struct MapSetOutcome: Sendable, Hashable {
    /// Whether the key was new (or expired); false when a live entry's value was replaced.
    public var inserted: Bool
    /// The live entries evicted to make room (0 or 1): only in a full map
    /// whose cache policy evicts (``MapCache/evict``), and never by
    /// ``MapField/safeSet(_:for:ttl:)``.
    public var evicted: Int

    /// Whether a live entry was evicted to make room, as nginx's `forcible`.
    public var forcible: Bool { evicted > 0 }

    /// Creates an outcome.
    public init(inserted: Bool, evicted: Int) {
        self.inserted = inserted
        self.evicted = evicted
    }
}

/// Cache semantics of a map with a cache policy (``MapCache``): entries with
/// a time to live, reads of expired entries, their removal, and eviction.
///
/// An entry is expired once the store's clock (``OpenOptions/clock``,
/// `CLOCK_REALTIME` by default) reaches its deadline. Expired entries are
/// invisible to ``get(_:)``, ``contains(_:)``, ``count``, ``forEach(_:)``,
/// ``entries()``, `dump` and `get` of the whole map; ``getStale(_:)`` still
/// reads one until its room is taken back (by the next locked writes near
/// the map's clock hand, ``removeExpired()``, or an insert into a full map).
extension MapField {
    /// The map's cache policy, nil for a map whose entries never expire.
    public var cachePolicy: MapCache? { table.field.cache }

    /// Inserts `value` for `key`, or replaces the value already there, with
    /// a time to live: the entry expires `ttl` after now (rounded up to whole
    /// milliseconds); nil: it never expires. Replacing an entry replaces its
    /// deadline too.
    ///
    /// In a full map whose policy evicts, an expired entry or else the least
    /// recently used one (by the clock approximation, see ``MapCache``) makes
    /// room, and the outcome's ``MapSetOutcome/evicted`` says whether a live
    /// one went; in one that doesn't, an expired entry's room is reused, and
    /// without one the insert fails (or the map grows) as in any map.
    ///
    /// - Throws: ``SlotStoreError/invalidValue(path:field:detail:)`` for a
    ///   `ttl` on a map without a cache policy, or one that is not positive or
    ///   too long; ``SlotStoreError/mapFull(path:field:capacity:count:)`` as above.
    @inlinable @discardableResult
    public func set(_ value: Value, for key: Key, ttl: Duration?) throws(SlotStoreError) -> MapSetOutcome {
        do {
            if Value._isWord && !gate.isRetired && cursor.entryWordOffset != 0 {
                // One scalar in a cache map: one non-generic call with the key's bytes and the word.
                let cursor = self.cursor
                let bits = value._word
                return try key._withKeyBytes { keyBytes throws(SlotStoreError) -> MapSetOutcome in
                    guard keyBytes.count <= cursor.keyCapacity else { throw cursor.keyTooLarge(keyBytes.count) }
                    return try cursor.cacheStoreWord(bits, forKey: keyBytes, ttl: ttl, evictingLive: true)
                }
            }
            return try setWithPolicy(value, for: key, ttl: ttl, evictingLive: true)
        } catch {
            try followAfter(error)
            return try live().set(value, for: key, ttl: ttl)
        }
    }

    /// ``set(_:for:ttl:)`` that never evicts a live entry: in a full map it
    /// reuses an expired entry's room, and without one fails with
    /// ``SlotStoreError/mapFull(path:field:capacity:count:)`` (nginx's `safe_set`).
    @discardableResult
    public func safeSet(_ value: Value, for key: Key, ttl: Duration? = nil) throws(SlotStoreError) -> MapSetOutcome {
        do {
            return try setWithPolicy(value, for: key, ttl: ttl, evictingLive: false)
        } catch {
            try followAfter(error)
            return try live().safeSet(value, for: key, ttl: ttl)
        }
    }

    /// The value for `key` even when it has expired but is still in the map,
    /// with whether it has; nil when the map has no such entry at all.
    public func getStale(_ key: Key) throws(SlotStoreError) -> (value: Value, expired: Bool)? {
        if _slowPath(gate.isRetired) { return try live().getStale(key) }
        let cursor = self.cursor
        let valueType = self.valueType
        let hasEntryWord = cursor.entryWordOffset != 0
        return try withKey(key) { bytes throws(SlotStoreError) in
            // The entry word (8 bytes before the value area) and the value, copied in one stable read.
            try withUnsafeTemporaryAllocation(byteCount: cursor.valueBytes + 8, alignment: 8) { area in
                Result { () throws(SlotStoreError) -> (value: Value, expired: Bool)? in
                    let copy = area.baseAddress!
                    let found = try cursor.lookup(bytes, includingExpired: true) { value -> Bool in
                        copy.storeBytes(of: hasEntryWord ? value.advanced(by: -8).atomic(UInt64.self).pointee.load(ordering: .relaxed) : 0,
                                        as: UInt64.self)
                        value.copyBytes(to: copy + 8, count: cursor.valueBytes)
                        return true
                    }
                    guard found == true else { return nil }
                    let expired = MapExpiry.isExpired(copy.load(as: UInt64.self), at: cursor.nowMilliseconds())
                    return (Value._read(from: SlotMapValueArea(copy + 8), type: valueType), expired)
                }
            }.get()
        }
    }

    /// Removes every entry that has expired; returns how many. Runs in
    /// transactions of at most half the journal each, so other writers may
    /// go between them; lock-free reads go on throughout.
    @discardableResult
    public func removeExpired() throws(SlotStoreError) -> Int {
        if _slowPath(gate.isRetired) { return try live().removeExpired() }
        guard cursor.entryWordOffset != 0 else { return 0 }
        do {
            return try cursor.removeExpired()
        } catch .storeRetired {
            return try live().removeExpired()
        }
    }

    @usableFromInline
    func setWithPolicy(_ value: Value, for key: Key, ttl: Duration?, evictingLive: Bool) throws(SlotStoreError) -> MapSetOutcome {
        if _slowPath(gate.isRetired) { throw .storeRetired(path: table.core.path) }
        try checkValue(value)
        let cursor = self.cursor
        let valueType = self.valueType
        let core = table.core
        return try withKey(key) { bytes throws(SlotStoreError) in
            try core.transaction { () throws(SlotStoreError) -> MapSetOutcome in
                guard cursor.entryWordOffset != 0 else {
                    if let ttl { throw noCachePolicy(ttl) }
                    let inserted = try cursor.set(bytes, in: core) { value._write(to: SlotMapValueArea($0.pointer), type: valueType) }
                    return MapSetOutcome(inserted: inserted, evicted: 0)
                }
                let deadline = try cursor.deadline(after: ttl, path: core.path, field: name)
                return try cursor.cacheSet(bytes, deadline: deadline, evictingLive: evictingLive && cursor.evicts, in: core) {
                    value._write(to: SlotMapValueArea($0.pointer), type: valueType)
                }
            }
        }
    }

    func noCachePolicy(_ ttl: Duration) -> SlotStoreError {
        MapExpiry.noCachePolicy(ttl, path: table.core.path, field: name)
    }
}

extension MapField where Value: SlotInteger {
    /// Adds `delta` (wrapping) to the value for `key` and returns the new
    /// value; a missing or expired key starts from `initial` and gets `ttl`
    /// (nil: never expires), like nginx's `incr(key, value, init, init_ttl)`.
    /// A live entry keeps its deadline. Atomic: it holds the lock.
    @discardableResult
    public func add(_ delta: Value, for key: Key, initial: Value, ttl: Duration?) throws(SlotStoreError) -> Value {
        do {
            return try addWithInitial(delta, for: key, initial: initial, ttl: ttl)
        } catch {
            try followAfter(error)
            return try live().add(delta, for: key, initial: initial, ttl: ttl)
        }
    }

    func addWithInitial(_ delta: Value, for key: Key, initial: Value, ttl: Duration?) throws(SlotStoreError) -> Value {
        if _slowPath(gate.isRetired) { throw .storeRetired(path: table.core.path) }
        let cursor = self.cursor
        let core = table.core
        let width = Value.scalarType.byteWidth
        return try withKey(key) { bytes throws(SlotStoreError) in
            try core.transaction { () throws(SlotStoreError) -> Value in
                guard cursor.entryWordOffset != 0 else {
                    if let ttl { throw noCachePolicy(ttl) }
                    if cursor.locate(bytes).found != nil {
                        return Value(_slotBits: try cursor.addWordLocked(delta._slotBits, width: width, forKey: bytes, in: core))
                    }
                    let written = MapCursor.add(delta._slotBits, to: initial._slotBits, width: width)
                    try cursor.set(bytes, in: core) { $0.atomic(UInt64.self).pointee.store(written, ordering: .relaxed) }
                    return Value(_slotBits: written)
                }
                let deadline = try cursor.deadline(after: ttl, path: core.path, field: name)
                return Value(_slotBits: try cursor.cacheAddWordLocked(delta._slotBits, width: width, forKey: bytes,
                                                                     initial: initial._slotBits, deadline: deadline, in: core).bits)
            }
        }
    }
}
