import Synchronization

/// Expiry and eviction in maps with a cache policy (``MapCache``).
///
/// Each bucket of such a map has an *entry word* between its key and its
/// value: bit 63 is the recently-used (clock) bit, bits 0-62 the deadline in
/// milliseconds since the Unix epoch (0: never expires). An entry whose
/// deadline is at or before the clock's time is *expired*: still in its
/// bucket (``MapField/getStale(_:)`` can read it), invisible to every other
/// read, and its room is taken back by incremental reclamation, by
/// ``MapField/removeExpired()``, or by an insert into the full map.
///
/// Readers stay lock-free. The hit path loads the entry word inside the
/// bucket's seqlock read, with the value, so the two are one entry's; the
/// deadline costs one compare (and a clock read only for entries that have
/// a deadline). A reader sets the recently-used bit only when it finds it
/// clear, with one atomic OR, so a hot entry's line is written once per
/// sweep of the clock hand, not at every hit.
///
/// The bits are hints, neither journaled nor sealed: a reader's OR racing a
/// locked write of the same bucket either lands before it (and the write
/// replaces the word) or after it (setting bit 63 of the new word; the OR
/// never touches the deadline bits), a rollback restores the word without
/// the bit, and a bit set on an empty bucket is overwritten by the insert
/// that fills it. A lost or stray bit only changes which entry an eviction
/// picks, never what a read returns.
///
/// Locked writes on a cache map first reclaim up to ``reclaimWindow``
/// expired entries among the ``reclaimWindow`` buckets at the map's clock
/// hand (header offset 32), moving the hand on. An insert into a full map
/// then makes room (``MapCursor/makeRoom(at:evictingLive:in:)``): any
/// expired entry; in an evicting map, else a live one by the clock algorithm.
enum MapExpiry {
    /// The recently-used (clock) bit of an entry word.
    static let usedBit: UInt64 = 1 << 63
    /// The deadline bits of an entry word.
    static let deadlineMask: UInt64 = usedBit - 1
    /// Buckets a locked write looks at from the clock hand for expired entries (and most it removes).
    static let reclaimWindow = 8

    /// The error for a time to live given for a map without a cache policy.
    static func noCachePolicy(_ ttl: Duration, path: String, field: String) -> SlotStoreError {
        .invalidValue(path: path, field: field,
                      detail: "a time to live (\(ttl)) needs a map with a cache policy, and this one has none; declare it with \"cache\": {} (MapCache) and migrate the store")
    }

    @inline(__always)
    static func isExpired(_ entry: UInt64, at now: UInt64) -> Bool {
        let deadline = entry & deadlineMask
        return deadline != 0 && deadline <= now
    }

    /// The deadline of an entry written at `now` (ms) that lives for `ttl`:
    /// 0 for nil (never expires); whole milliseconds, rounded up, so an
    /// entry never expires before its time to live has passed.
    static func deadline(after ttl: Duration?, now: UInt64, path: String, field: String) throws(SlotStoreError) -> UInt64 {
        guard let ttl else { return 0 }
        let (seconds, attoseconds) = ttl.components
        guard seconds > 0 || (seconds == 0 && attoseconds > 0) else {
            throw .invalidValue(path: path, field: field, detail: "a time to live must be positive, found \(ttl); pass nil for an entry that never expires")
        }
        let whole = seconds.multipliedReportingOverflow(by: 1000)
        let part = UInt64((attoseconds + 999_999_999_999_999) / 1_000_000_000_000_000)
        guard !whole.overflow, UInt64(whole.partialValue) <= deadlineMask - part,
              UInt64(whole.partialValue) + part <= deadlineMask - now else {
            throw .invalidValue(path: path, field: field, detail: "a time to live of \(ttl) is too long: deadlines are 63-bit milliseconds since 1970 (about 292 million years); pass nil for an entry that never expires")
        }
        return now + UInt64(whole.partialValue) + part
    }
}

/// The clock's time for one locked write: read coarsely, and precisely
/// only when an entry's deadline falls within a tick of the coarse reading
/// (see ``CacheClock/systemIsBefore(_:)``), so a write that meets no entry
/// near its deadline costs no `CLOCK_REALTIME` read.
struct ExpiryMoment {
    private let coarse: UInt64
    private let lag: UInt64
    private var precise: UInt64?

    init(_ cursor: MapCursor) {
        if let clockWord = cursor.clockWord {
            coarse = clockWord.pointee.load(ordering: .relaxed)
            lag = 0
            precise = coarse
        } else {
            coarse = CacheClock.coarseMilliseconds()
            lag = CacheClock.coarseLagMilliseconds
        }
    }

    /// Whether an entry with this entry word has expired.
    @inline(__always)
    mutating func isExpired(_ entry: UInt64) -> Bool {
        let deadline = entry & MapExpiry.deadlineMask
        guard deadline != 0, deadline <= coarse &+ lag else { return false }
        if deadline <= coarse { return true }
        if precise == nil { precise = CacheClock.systemMilliseconds() }
        return deadline <= precise!
    }
}

/// What an insert into a full cache map did to make room.
enum RoomMade {
    /// Nothing could go: the insert fails with `mapFull` (or the map grows).
    case none
    /// An expired entry was removed.
    case expired
    /// A live entry was evicted.
    case live
}

extension MapCursor {
    // MARK: Clock and entry words

    /// The clock's time in milliseconds since the Unix epoch (see ``CacheClock``).
    @inline(__always)
    /// The deadline (ms) of an entry written now that lives for `ttl`; 0 for
    /// nil, without reading a clock. With the system clock, "now" is the
    /// coarse clock plus its resolution: never behind `CLOCK_REALTIME`, so an
    /// entry never expires before its time to live has passed, and at most
    /// a tick late; a precise read cost as much as the rest of a write here.
    func deadline(after ttl: Duration?, path: String, field: String) throws(SlotStoreError) -> UInt64 {
        guard let ttl else { return 0 }
        let now = clockWord.map { $0.pointee.load(ordering: .relaxed) }
            ?? CacheClock.coarseMilliseconds() &+ CacheClock.coarseResolutionMilliseconds
        return try MapExpiry.deadline(after: ttl, now: now, path: path, field: field)
    }

    func nowMilliseconds() -> UInt64 {
        if let clockWord { return clockWord.pointee.load(ordering: .relaxed) }
        return CacheClock.systemMilliseconds()
    }

    /// Whether the clock has not reached `deadline` yet: for the system
    /// clock, mostly by its coarse reading (see ``CacheClock/systemIsBefore(_:)``),
    /// which keeps a lock-free hit's deadline check cheap.
    @inline(__always)
    func isBefore(_ deadline: UInt64) -> Bool {
        if let clockWord { return clockWord.pointee.load(ordering: .relaxed) < deadline }
        return CacheClock.systemIsBefore(deadline)
    }

    /// Where eviction and reclamation go on (a bucket index, read modulo the count).
    var clockHand: UnsafeMutablePointer<Atomic<UInt64>> { base.advanced(by: MapGeometry.clockHandOffset).atomic(UInt64.self) }
    var reclaimHand: UnsafeMutablePointer<Atomic<UInt64>> { base.advanced(by: MapGeometry.reclaimHandOffset).atomic(UInt64.self) }

    @inline(__always)
    func entryWord(_ bucket: MappedAddress) -> UnsafeMutablePointer<Atomic<UInt64>> {
        bucket.advanced(by: entryWordOffset).atomic(UInt64.self)
    }

    /// Stores a bucket's entry word; call inside the bucket's seqlock write.
    @inline(__always)
    func storeEntryWord(_ word: UInt64, in bucket: MappedAddress) {
        entryWord(bucket).pointee.store(word, ordering: .relaxed)
    }

    /// Whether the entry in `bucket` is expired at `now`; call holding the lock (or on a stable copy).
    @inline(__always)
    func isExpired(_ bucket: MappedAddress, at now: UInt64) -> Bool {
        MapExpiry.isExpired(entryWord(bucket).pointee.load(ordering: .relaxed), at: now)
    }

    /// Whether the entry in `bucket` is expired at `moment`; call holding the lock.
    @inline(__always)
    func isExpired(_ bucket: MappedAddress, at moment: inout ExpiryMoment) -> Bool {
        moment.isExpired(entryWord(bucket).pointee.load(ordering: .relaxed))
    }

    /// For a hit whose entry word `entry` a reader read inside the bucket's
    /// seqlock: whether it is live, and if so marks it recently used when its
    /// bit is clear (one atomic OR per sweep of the hand, not per hit).
    @inline(__always)
    func isLive(_ entry: UInt64, in bucket: MappedAddress) -> Bool {
        let deadline = entry & MapExpiry.deadlineMask
        if deadline != 0 && !isBefore(deadline) { return false }
        if entry & MapExpiry.usedBit == 0 { entryWord(bucket).pointee.bitwiseOr(MapExpiry.usedBit, ordering: .relaxed) }
        return true
    }

    @inline(__always)
    private func holdsEntry(_ bucket: MappedAddress, epoch: UInt64) -> Bool {
        let meta = bucket.advanced(by: 8).atomic(UInt64.self).pointee.load(ordering: .relaxed)
        return meta & 3 == MapTable.full && meta >> 32 == epoch
    }

    // MARK: Locked writes (call holding the lock)

    /// Inserts or replaces `key` with `deadline` (0: never expires), making
    /// room in a full map: an expired entry, or with `evictingLive` a live
    /// one. Replacing an expired entry counts as inserting.
    func cacheSet(_ key: UnsafeRawBufferPointer, deadline: UInt64, evictingLive: Bool, in core: StoreCore,
                  _ writeValue: (MappedAddress) -> Void) throws(SlotStoreError) -> MapSetOutcome {
        var moment = ExpiryMoment(self)
        var (found, insertAt) = locate(key)
        if let found {
            let wasLive = !isExpired(bucket(found), at: &moment)
            try replace(at: found, in: core, entryWord: deadline | MapExpiry.usedBit, writeValue)
            return MapSetOutcome(inserted: !wasLive, evicted: 0)
        }
        // Reclaim as inserts pass by (a replacement needs no room, as in
        // nginx's shared dict); a removal there may move where the key goes.
        if try reclaimNearHand(at: &moment, in: core) { insertAt = locate(key).insertAt }
        let (target, evicted) = try room(for: key, insertAt: insertAt, at: &moment, evictingLive: evictingLive, in: core)
        try insert(key, at: target, in: core, entryWord: deadline | MapExpiry.usedBit, writeValue)
        return MapSetOutcome(inserted: true, evicted: evicted)
    }

    /// Adds `delta` to the integer value of `key` (wrapping at `width`
    /// bytes), keeping a live entry's deadline; a missing or expired key
    /// starts from `initial` with `deadline`. Returns the bits written.
    func cacheAddWordLocked(_ delta: UInt64, width: Int, forKey key: UnsafeRawBufferPointer, initial: UInt64, deadline: UInt64,
                            in core: StoreCore) throws(SlotStoreError) -> (bits: UInt64, outcome: MapSetOutcome) {
        var moment = ExpiryMoment(self)
        var (found, insertAt) = locate(key)
        if let found {
            let bucket = self.bucket(found)
            let entry = entryWord(bucket).pointee.load(ordering: .relaxed)
            let live = !moment.isExpired(entry)
            let current = live ? valueArea(bucket).atomic(UInt64.self).pointee.load(ordering: .relaxed) : initial
            let written = MapCursor.add(delta, to: current, width: width)
            try replace(at: found, in: core, entryWord: live ? entry | MapExpiry.usedBit : deadline | MapExpiry.usedBit) { area in
                area.atomic(UInt64.self).pointee.store(written, ordering: .relaxed)
            }
            return (written, MapSetOutcome(inserted: !live, evicted: 0))
        }
        let written = MapCursor.add(delta, to: initial, width: width)
        if try reclaimNearHand(at: &moment, in: core) { insertAt = locate(key).insertAt }
        let (target, evicted) = try room(for: key, insertAt: insertAt, at: &moment, evictingLive: evicts, in: core)
        try insert(key, at: target, in: core, entryWord: deadline | MapExpiry.usedBit) { area in
            area.atomic(UInt64.self).pointee.store(written, ordering: .relaxed)
        }
        return (written, MapSetOutcome(inserted: true, evicted: evicted))
    }

    /// Removes `key`; returns whether it was there and live (an expired
    /// entry is removed too, but was not visible).
    func cacheRemove(_ key: UnsafeRawBufferPointer, in core: StoreCore) throws(SlotStoreError) -> Bool {
        var moment = ExpiryMoment(self)
        try reclaimNearHand(at: &moment, in: core)
        guard let found = locate(key).found else { return false }
        let live = !isExpired(bucket(found), at: &moment)
        try removeEntry(at: found, in: core)
        return live
    }

    /// For an insert of `key` (not in the map) at `insertAt`: when the map is
    /// full, makes room and returns the new place, and how many live entries went.
    private func room(for key: UnsafeRawBufferPointer, insertAt: Int?, at moment: inout ExpiryMoment, evictingLive: Bool,
                      in core: StoreCore) throws(SlotStoreError) -> (Int?, Int) {
        guard count.pointee.load(ordering: .relaxed) >= UInt64(capacity) else { return (insertAt, 0) }
        switch try makeRoom(at: &moment, evictingLive: evictingLive, in: core) {
        case .none: return (insertAt, 0)  // the insert throws mapFull, or asks for a growth
        case .expired: return (locate(key).insertAt, 0)
        case .live: return (locate(key).insertAt, 1)
        }
    }

    /// Removes one entry of a full map, from the clock hand on.
    ///
    /// Without `evictingLive`: the first expired entry, looking at every
    /// bucket once (an insert that then fails has looked at the whole map).
    /// With it, the clock algorithm: the first entry that is expired or whose
    /// recently-used bit is clear goes; a set bit is cleared on the way
    /// (relaxed atomic AND, not journaled: a hint, see ``MapExpiry``), so
    /// within two sweeps every entry not used again meanwhile is a
    /// candidate. If readers set bits again as fast as the sweep clears them,
    /// the entry at the hand after two sweeps goes. The hand stays at the
    /// victim's bucket (where the backward shift puts the next entry).
    func makeRoom(at moment: inout ExpiryMoment, evictingLive: Bool, in core: StoreCore) throws(SlotStoreError) -> RoomMade {
        let epoch = self.epoch
        var index = Int(truncatingIfNeeded: clockHand.pointee.load(ordering: .relaxed) % UInt64(bucketCount))
        func evict(_ made: RoomMade) throws(SlotStoreError) -> RoomMade {
            try removeEntry(at: index, in: core)
            clockHand.pointee.store(UInt64(index), ordering: .relaxed)
            core.fault(.afterEviction)
            return made
        }
        if !evictingLive {
            for _ in 0..<bucketCount {
                let bucket = self.bucket(index)
                if holdsEntry(bucket, epoch: epoch) && isExpired(bucket, at: &moment) { return try evict(.expired) }
                index = next(index)
            }
            return .none
        }
        for _ in 0..<(2 * bucketCount) {
            let bucket = self.bucket(index)
            if holdsEntry(bucket, epoch: epoch) {
                let word = entryWord(bucket)
                let entry = word.pointee.load(ordering: .relaxed)
                if moment.isExpired(entry) { return try evict(.expired) }
                if entry & MapExpiry.usedBit == 0 { return try evict(.live) }
                word.pointee.bitwiseAnd(~MapExpiry.usedBit, ordering: .relaxed)
            }
            index = next(index)
        }
        for _ in 0..<bucketCount {
            if holdsEntry(bucket(index), epoch: epoch) { return try evict(.live) }
            index = next(index)
        }
        return .none
    }

    /// Incremental reclamation: removes the expired entries among the
    /// ``MapExpiry/reclaimWindow`` buckets at the reclamation hand (its own
    /// word: see ``MapGeometry/reclaimHandOffset``) and moves that hand past them. Skipped while the transaction has used half the
    /// journal, so a large transaction's own writes keep their room.
    /// Returns whether it removed any.
    @discardableResult
    func reclaimNearHand(at moment: inout ExpiryMoment, in core: StoreCore) throws(SlotStoreError) -> Bool {
        guard journalRoom(core) >= core.journal.capacity / 2 else { return false }
        let epoch = self.epoch
        var index = Int(truncatingIfNeeded: reclaimHand.pointee.load(ordering: .relaxed) % UInt64(bucketCount))
        var examined = 0
        var removed = 0
        while examined < MapExpiry.reclaimWindow && examined < bucketCount {
            let bucket = self.bucket(index)
            if removed < MapExpiry.reclaimWindow && holdsEntry(bucket, epoch: epoch) && isExpired(bucket, at: &moment) {
                try removeEntry(at: index, in: core)
                removed += 1
                continue  // the backward shift may have moved the next entry here
            }
            index = next(index)
            examined += 1
        }
        reclaimHand.pointee.store(UInt64(index), ordering: .relaxed)
        return removed > 0
    }

    // MARK: Own transactions

    /// ``cacheSet(_:deadline:evictingLive:in:_:)`` of one scalar word, no deadline, in its own transaction.
    func cacheStoreWord(_ bits: UInt64, forKey key: UnsafeRawBufferPointer) throws(SlotStoreError) {
        try engine._withUnsafeGuaranteedRef { core in
            Result { () throws(SlotStoreError) in
                try core.transaction { () throws(SlotStoreError) in
                    _ = try cacheSet(key, deadline: 0, evictingLive: evicts, in: core) { area in
                        area.atomic(UInt64.self).pointee.store(bits, ordering: .relaxed)
                    }
                }
            }
        }.get()
    }

    /// Stores `bits` as the value word of `key` with `ttl` (nil: no
    /// deadline) in its own transaction, in a map with a cache policy: the
    /// non-generic call a handle's inlined `set(_:for:ttl:)` makes for a
    /// one-word value, so no generic code runs (its metadata lookups were a
    /// tenth of a write). `evictingLive` false: `safeSet`.
    @usableFromInline
    func cacheStoreWord(_ bits: UInt64, forKey key: UnsafeRawBufferPointer, ttl: Duration?,
                        evictingLive: Bool) throws(SlotStoreError) -> MapSetOutcome {
        try engine._withUnsafeGuaranteedRef { core in
            Result { () throws(SlotStoreError) -> MapSetOutcome in
                let deadline = ttl == nil ? 0 : try deadline(after: ttl, path: core.path, field: core.layout.fields[fieldIndex].name)
                return try core.transaction { () throws(SlotStoreError) -> MapSetOutcome in
                    try cacheSet(key, deadline: deadline, evictingLive: evictingLive && evicts, in: core) { area in
                        area.atomic(UInt64.self).pointee.store(bits, ordering: .relaxed)
                    }
                }
            }
        }.get()
    }

    /// ``cacheAddWordLocked(_:width:forKey:initial:deadline:in:)`` in its own transaction.
    func cacheAddWord(_ delta: UInt64, width: Int, forKey key: UnsafeRawBufferPointer, initial: UInt64,
                      deadline: UInt64) throws(SlotStoreError) -> (bits: UInt64, outcome: MapSetOutcome) {
        try engine._withUnsafeGuaranteedRef { core in
            Result { () throws(SlotStoreError) -> (bits: UInt64, outcome: MapSetOutcome) in
                try core.transaction { () throws(SlotStoreError) in
                    try cacheAddWordLocked(delta, width: width, forKey: key, initial: initial, deadline: deadline, in: core)
                }
            }
        }.get()
    }

    /// Removes every entry expired at the clock's time now, in transactions
    /// of at most half the journal each (other writers may go between
    /// them); returns how many.
    func removeExpired() throws(SlotStoreError) -> Int {
        let core = engine.takeUnretainedValue()
        let now = nowMilliseconds()
        var removed = 0
        var index = 0
        while index < bucketCount {
            removed += try core.transaction { () throws(SlotStoreError) -> Int in
                let epoch = self.epoch
                var here = 0
                while index < bucketCount && journalRoom(core) >= core.journal.capacity / 2 {
                    let bucket = self.bucket(index)
                    if holdsEntry(bucket, epoch: epoch) && isExpired(bucket, at: now) {
                        try removeEntry(at: index, in: core)
                        here += 1
                        continue  // the entry shifted back into this bucket is looked at next
                    }
                    index += 1
                }
                return here
            }
        }
        return removed
    }

    // MARK: Counting

    /// The entries live at the clock's time now, by a walk of every bucket
    /// (a cache map's header counts expired entries too). Without the lock;
    /// a walk that a removal's moves overlapped is done again, and after a
    /// few tries under the lock.
    func liveCount() -> Int {
        let now = nowMilliseconds()
        let moves = moveSequence
        for _ in 0..<4 {
            guard let begun = moves.beginRead() else { continue }
            let counted = countLive(at: now)
            if moves.endRead(begun) { return counted }
        }
        let core = engine.takeUnretainedValue()
        if let counted = try? core.transaction({ () throws(SlotStoreError) -> Int in countLive(at: now) }) { return counted }
        return countLive(at: now)
    }

    /// Live and expired entries at `now`, bucket by bucket (each bucket's
    /// meta and entry word read as they are: a count, not a snapshot).
    func countEntries(at now: UInt64) -> (live: Int, expired: Int) {
        let epoch = self.epoch
        var live = 0
        var expired = 0
        for index in 0..<bucketCount {
            let bucket = self.bucket(index)
            guard holdsEntry(bucket, epoch: epoch) else { continue }
            if isExpired(bucket, at: now) { expired += 1 } else { live += 1 }
        }
        return (live, expired)
    }

    private func countLive(at now: UInt64) -> Int { countEntries(at: now).live }
}
