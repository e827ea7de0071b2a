import Glibc
import Synchronization

/// The engine of a map field: open addressing with linear probing over
/// fixed-size buckets in the mapping (see `MapGeometry` for the layout).
///
/// Lookups take no lock: each bucket has its own seqlock, so a reader copies
/// a key and value and accepts them only if the bucket's sequence word did
/// not move. Writes hold the store's lock and journal the bucket (and the
/// header words) before changing them, like every multi-word write, so a
/// crash mid-insert or mid-remove rolls back to the previous entry.
///
/// Removal is backward-shift deletion: the entries after the removed one in
/// its run move back into the hole when their probe path allows it, and the
/// last hole becomes empty, so removing never leaves a bucket that slows later
/// lookups down (tombstones, which earlier builds left, are still read,
/// reused by inserts and emptied when a removal ends next to them). A move
/// takes an entry from bucket j to an earlier bucket i on its path, which a
/// lock-free reader that already passed i would miss at j; so every removal
/// (and every rollback) holds the map's *move sequence word* odd while it
/// moves entries, and a reader accepts a miss only when that word was even
/// and unchanged around its whole probe. Hits need no such check: every copy
/// of an entry a reader can meet during a move holds its current value.
@usableFromInline
struct MapTable: Sendable {
    static let empty: UInt64 = 0
    static let full: UInt64 = 1
    static let tombstone: UInt64 = 2

    @usableFromInline let core: StoreCore
    let field: FieldLayout
    let geometry: MapGeometry
    /// The lookup state as plain values, built once; the table's addressing forwards to it.
    @usableFromInline let cursor: MapCursor
    var seed: UInt64 { cursor.seed }
    var base: MappedAddress { cursor.base }

    init(core: StoreCore, field: FieldLayout) {
        guard let geometry = field.mapGeometry else {
            preconditionFailure("MapTable over non-map field \(field.name)")
        }
        self.core = core
        self.field = field
        self.geometry = geometry
        self.cursor = MapCursor(engine: Unmanaged.passUnretained(core), fieldIndex: field.index,
                                fieldOffset: field.offset, base: core.address(field.offset), layout: geometry.version,
                                seed: MapHash.mapSeed(store: core.header.hashSeed, fieldIndex: field.index),
                                bucketCount: geometry.bucketCount, bucketBytes: geometry.bucketBytes, entryBytes: geometry.entryBytes,
                                capacity: geometry.capacity,
                                keyBytes: geometry.keyBytes, valueBytes: geometry.valueBytes, keyCapacity: geometry.keyCapacity,
                                valueOffset: geometry.valueOffset,
                                entryWordOffset: geometry.entryWordBytes == 0 ? 0 : geometry.entryWordOffset,
                                evicts: field.cache?.evict ?? false, clockWord: core.clock.word)
    }

    var count: UnsafeMutablePointer<Atomic<UInt64>> { cursor.count }
    var tombstones: UnsafeMutablePointer<Atomic<UInt64>> { cursor.tombstones }
    var moveSequence: SequenceWord { cursor.moveSequence }
    var epochWord: UnsafeMutablePointer<Atomic<UInt64>> { base.advanced(by: MapGeometry.epochOffset).atomic(UInt64.self) }

    @inline(__always)
    func bucket(_ index: Int) -> MappedAddress { cursor.bucket(index) }

    @inline(__always)
    static func meta(state: UInt64, keyLength: Int, epoch: UInt64) -> UInt64 {
        state | UInt64(keyLength) << 8 | (epoch & 0xFFFF_FFFF) << 32
    }

    /// The current epoch (buckets of other epochs are empty).
    @inline(__always)
    var epoch: UInt64 { cursor.epoch }

    /// Whether the bucket's key bytes are `key`'s (the caller compared the
    /// lengths). Keys up to 64 bytes compare in inlined 8-byte words: a
    /// `memcmp` call was a tenth of a small map's lookup.
    @inline(__always)
    static func keyMatches(_ bucket: MappedAddress, _ key: UnsafeRawBufferPointer) -> Bool {
        guard let keyBase = key.baseAddress else { return true }
        let stored = UnsafeRawPointer(bucket.pointer + MapGeometry.bucketPrefixBytes)
        let count = key.count
        guard count <= 64 else { return memcmp(stored, keyBase, count) == 0 }
        var offset = 0
        var difference: UInt64 = 0
        while offset &+ 8 <= count {
            difference |= stored.load(fromByteOffset: offset, as: UInt64.self)
                ^ keyBase.loadUnaligned(fromByteOffset: offset, as: UInt64.self)
            offset &+= 8
        }
        while offset < count {
            difference |= UInt64(stored.load(fromByteOffset: offset, as: UInt8.self) ^ keyBase.load(fromByteOffset: offset, as: UInt8.self))
            offset &+= 1
        }
        return difference == 0
    }

    /// Lends the bytes of `key` with typed throws (Array's own `withUnsafeBytes` rethrows untyped).
    @inlinable
    static func withBytes<R, E: Error>(of key: [UInt8], _ body: (UnsafeRawBufferPointer) throws(E) -> R) throws(E) -> R {
        try key.withUnsafeBytes { bytes in Result { () throws(E) in try body(bytes) } }.get()
    }

    // MARK: Non-generic entry points for the inlinable handle methods

    /// Copies the value area of `key` into `destination` (``MapGeometry/valueBytes``
    /// bytes) while its bucket is stable; false when the key is absent.
    @usableFromInline
    func copyValue(forKey key: UnsafeRawBufferPointer, into destination: UnsafeMutableRawPointer) throws(SlotStoreError) -> Bool {
        try cursor.copyValue(forKey: key, into: destination)
    }

    /// Inserts or replaces `key` with a ready value-area image, in its own transaction.
    @usableFromInline
    func store(valueImage: UnsafeRawBufferPointer, forKey key: UnsafeRawBufferPointer) throws(SlotStoreError) {
        try core.transaction { () throws(SlotStoreError) in
            _ = try set(key) { area in area.copyBytes(from: valueImage.baseAddress!, count: valueImage.count) }
        }
    }

    /// ``MapCursor/addWord(_:width:forKey:)`` inside a transaction that holds the lock.
    func addLocked(bits delta: UInt64, width: Int, forKey key: UnsafeRawBufferPointer) throws(SlotStoreError) -> UInt64 {
        try cursor.addWordLocked(delta, width: width, forKey: key, in: core)
    }

    /// Removes `key` in its own transaction.
    @usableFromInline
    func removeInTransaction(_ key: UnsafeRawBufferPointer) throws(SlotStoreError) -> Bool {
        try core.transaction { () throws(SlotStoreError) in try remove(key) }
    }

    /// The error for a key longer than the key capacity.
    @usableFromInline
    func keyTooLarge(_ size: Int) -> SlotStoreError {
        .valueTooLarge(path: core.path, field: "\(field.name) key", capacity: geometry.keyCapacity, size: size)
    }

    // MARK: Lock-free reads

    /// Finds `key` and calls `read` on its value's address while the bucket is stable.
    func lookup<R>(_ key: UnsafeRawBufferPointer, _ read: (MappedAddress) -> R) throws(SlotStoreError) -> R? {
        try cursor.lookup(key, read)
    }

    /// Calls `body` with each live entry's key bytes and value address, each read
    /// consistently. `locked`: the caller holds the lock, so no writer can be
    /// mid-bucket and an odd word is a stale one to ignore.
    ///
    /// Without the lock, a removal may move an entry from a bucket the walk
    /// has not reached to one it has passed, which would skip it (or, across
    /// the table's wrap, visit it twice). So the walk copies every entry
    /// first, and hands them to `body` only when the move sequence word was
    /// even and unchanged around the whole copy; otherwise it copies again,
    /// and after a few tries takes the lock for one copy.
    func forEach(locked: Bool = false, _ body: (UnsafeRawBufferPointer, MappedAddress) throws -> Void) throws {
        if locked {
            try forEachHoldingLock(liveAt: cursor.entryWordOffset == 0 ? nil : cursor.nowMilliseconds()) { _, key, value in try body(key, value) }
            return
        }
        let stride = 8 + geometry.keyBytes + geometry.entryWordBytes + geometry.valueBytes
        // One moment for the whole walk: an entry expiring during it is either in or out, not both.
        let now = cursor.entryWordOffset == 0 ? 0 : cursor.nowMilliseconds()
        var images: [UInt8] = []
        do {
            var retry = ReadRetry()
            var attempts = 0
            while true {
                let moves = moveSequence
                if let begun = moves.beginRead() {
                    try collect(into: &images, locked: false, liveAt: now)
                    if moves.endRead(begun) { break }
                    attempts += 1
                } else {
                    try retry.wait(core: core, field: field.name, stalled: true, settle: settleStalledMoves)
                    continue
                }
                guard attempts >= 4 else { continue }
                // Removals keep moving entries under the walk: one copy under the lock.
                do {
                    try core.transaction { () throws(SlotStoreError) in
                        do { try collect(into: &images, locked: true, liveAt: now) } catch let error as SlotStoreError { throw error } catch {
                            throw .invalidValue(path: core.path, field: field.name, detail: "\(error)")
                        }
                    }
                } catch .nestedTransaction {
                    // This thread holds the lock already: nothing moves under it.
                    try collect(into: &images, locked: true, liveAt: now)
                }
                break
            }
        }
        try images.withUnsafeMutableBytes { all in
            var offset = 0
            while offset < all.count {
                let length = Int(all.load(fromByteOffset: offset, as: UInt64.self))
                let key = UnsafeRawBufferPointer(start: all.baseAddress! + offset + 8, count: length)
                try body(key, MappedAddress(all.baseAddress! + offset + 8 + geometry.keyBytes + geometry.entryWordBytes))
                offset += stride
            }
        }
    }

    /// Calls `body` with each live entry's bucket index, key bytes and value
    /// address, in bucket order, straight from the mapping: nothing is copied,
    /// so a whole-store operation streams through a map of any size. The
    /// caller holds the lock (or is the only opener): no writer is mid-bucket,
    /// no removal moves entries, and an odd sequence word is a stale one.
    /// `liveAt`: in a map with a cache policy, skip the entries expired at
    /// that time (ms, see ``MapCursor/nowMilliseconds()``); nil: every entry.
    func forEachHoldingLock(liveAt now: UInt64? = nil, _ body: (Int, UnsafeRawBufferPointer, MappedAddress) throws -> Void) rethrows {
        let epoch = self.epoch
        let keyCapacity = geometry.keyCapacity
        let skipsExpired = now != nil && cursor.entryWordOffset != 0
        for index in 0..<geometry.bucketCount {
            let bucket = self.bucket(index)
            let meta = bucket.advanced(by: 8).atomic(UInt64.self).pointee.load(ordering: .relaxed)
            guard meta & 3 == MapTable.full, meta >> 32 == epoch else { continue }
            if skipsExpired && cursor.isExpired(bucket, at: now!) { continue }
            let length = min(Int((meta >> 8) & 0xFF_FFFF), keyCapacity)
            let keyArea = bucket.advanced(by: MapGeometry.bucketPrefixBytes)
            try body(index, UnsafeRawBufferPointer(start: keyArea.pointer, count: length),
                     bucket.advanced(by: geometry.valueOffset))
        }
    }

    /// Appends each live entry as its key length (u64), key area, entry word
    /// (cache maps) and value area to `images` (emptied first), each bucket
    /// copied while stable; in a cache map, not the entries expired at `now`.
    private func collect(into images: inout [UInt8], locked: Bool, liveAt now: UInt64) throws {
        images.removeAll(keepingCapacity: true)
        let epoch = self.epoch
        let stride = 8 + geometry.keyBytes + geometry.entryWordBytes + geometry.valueBytes
        for index in 0..<geometry.bucketCount {
            let bucket = self.bucket(index)
            let sequence = SequenceWord(bucket)
            var retry = ReadRetry()
            while true {
                guard let before = locked ? sequence.current : sequence.beginRead() else {
                    try retry.wait(core: core, field: field.name, stalled: true)
                    continue
                }
                let meta = bucket.advanced(by: 8).atomic(UInt64.self).pointee.load(ordering: .relaxed)
                guard meta & 3 == MapTable.full, meta >> 32 == epoch else { break }
                let length = min(Int((meta >> 8) & 0xFF_FFFF), geometry.keyCapacity)
                let start = images.count
                images.append(contentsOf: repeatElement(0, count: stride))
                images.withUnsafeMutableBytes { all in
                    all.storeBytes(of: UInt64(length), toByteOffset: start, as: UInt64.self)
                    // Key, entry word and value areas in one copy: they are adjacent in the bucket.
                    bucket.advanced(by: MapGeometry.bucketPrefixBytes)
                        .copyBytes(to: all.baseAddress! + start + 8, count: stride - 8)
                }
                guard locked || sequence.endRead(before) else {
                    images.removeLast(stride)
                    try retry.wait(core: core, field: field.name, stalled: sequence.isOdd)
                    continue
                }
                if cursor.entryWordOffset != 0 && MapExpiry.isExpired(images.withUnsafeBytes {
                    $0.load(fromByteOffset: start + 8 + geometry.keyBytes, as: UInt64.self)
                }, at: now) {
                    images.removeLast(stride)
                }
                break
            }
        }
    }

    /// Makes every odd bucket sequence word, and an odd move sequence word,
    /// even. Call with the lock held or no other opener.
    @discardableResult
    func settleOddBuckets() -> Int {
        var settled = 0
        // A first opener walks every bucket: hand each 16 MiB walked back to
        // the page cache, or opening a 2M-entry map to read one counter would
        // keep the whole map resident in the opener.
        let bucketsPerWindow = max(1, (16 << 20) / geometry.bucketBytes)
        let bucketsStart = field.offset + MapGeometry.headerBytes
        var windowStart = 0
        for index in 0..<geometry.bucketCount {
            if SequenceWord(bucket(index)).settle() { settled += 1 }
            if index - windowStart + 1 == bucketsPerWindow {
                core.file.releasePages(from: bucketsStart + windowStart * geometry.bucketBytes,
                                       to: bucketsStart + (index + 1) * geometry.bucketBytes)
                windowStart = index + 1
            }
        }
        if moveSequence.settle() { settled += 1 }
        return settled
    }

    /// For a reader that keeps finding the move sequence word odd: takes the
    /// lock once. That recovers a writer that died mid-removal; and with the
    /// lock held no removal can be moving entries, so a word still odd is
    /// stale (left by a power loss, or by a process of an earlier build that
    /// rolled back such a removal without knowing the word) and is settled.
    func settleStalledMoves() throws(SlotStoreError) {
        do {
            try core.transaction { () throws(SlotStoreError) in _ = moveSequence.settle() }
        } catch .storeRetired {
            // Retired: the lock was taken and released (a dead writer rolled
            // back), and no writer can reach this file any more, so a word
            // still odd is stale: settle it, or a reader would retry it until
            // its timeout instead of finishing its read.
            _ = moveSequence.settle()
        } catch .nestedTransaction {
            _ = moveSequence.settle()  // this thread holds the lock, between writes
        }
    }

    /// Makes the move sequence word of every map in `core` odd, for a
    /// rollback: undoing a removal moves entries back to later buckets, which
    /// a lock-free reader could miss as it could miss a forward one. Pass the
    /// result to ``endRollback(_:)`` once the journal is restored.
    static func beginRollback(in core: StoreCore) -> [SequenceWord] {
        var words: [SequenceWord] = []
        for field in core.layout.fields where field.type.isMap {
            let word = SequenceWord(core.address(field.offset + MapGeometry.moveSequenceOffset))
            word.beginWrite()
            words.append(word)
        }
        return words
    }

    /// Ends ``beginRollback(in:)``: each word advances to a new even value,
    /// so every reader whose probe overlapped the rollback retries a miss.
    static func endRollback(_ words: [SequenceWord]) {
        for word in words { word.endWrite() }
    }

    // MARK: Locked writes (call with the store's lock held)

    /// The bucket holding `key`, and the bucket an insert of it would use.
    func locate(_ key: UnsafeRawBufferPointer) -> (found: Int?, insertAt: Int?) { cursor.locate(key) }

    /// Inserts or replaces; `writeValue` fills the value area. Returns whether it inserted.
    @discardableResult
    func set(_ key: UnsafeRawBufferPointer, _ writeValue: (MappedAddress) -> Void) throws(SlotStoreError) -> Bool {
        try cursor.set(key, in: core, writeValue)
    }

    /// Removes `key` by backward-shift deletion (see ``MapCursor/removeEntry(at:in:)``).
    /// Returns whether it was present.
    func remove(_ key: UnsafeRawBufferPointer) throws(SlotStoreError) -> Bool {
        if cursor.entryWordOffset != 0 { return try cursor.cacheRemove(key, in: core) }
        guard let found = locate(key).found else { return false }
        try cursor.removeEntry(at: found, in: core)
        return true
    }

    /// Removes `key` as earlier builds did, leaving a tombstone, in its own
    /// transaction: for tests of files those builds wrote.
    func removeLeavingTombstone(_ key: String) throws(SlotStoreError) -> Bool {
        try MapTable.withBytes(of: Array(key.utf8)) { bytes throws(SlotStoreError) -> Bool in
            try core.transaction { () throws(SlotStoreError) -> Bool in
                guard let found = locate(bytes).found else { return false }
                try cursor.removeLeavingTombstone(at: found, in: core)
                return true
            }
        }
    }

    /// Empties the map in one journaled header write: every bucket of the old epoch becomes empty.
    func removeAll() throws(SlotStoreError) {
        try cursor.journalHeader(core)
        let epoch = self.epoch
        if _slowPath(epoch == MapTable.lastEpoch) { clearBucketsOfOtherEpochs(than: epoch) }
        count.pointee.store(0, ordering: .relaxed)
        tombstones.pointee.store(0, ordering: .relaxed)
        epochWord.pointee.store((epoch &+ 1) & MapTable.lastEpoch, ordering: .releasing)
        core.fault(.afterWrite)
    }

    /// The largest epoch: bucket metadata keeps 32 bits of it, so the next
    /// `removeAll` wraps to 0, and every epoch comes round again.
    static let lastEpoch: UInt64 = 0xFFFF_FFFF

    /// Before the epoch wraps: empties every bucket left by an earlier epoch,
    /// which the count of epochs would otherwise bring back to life once it
    /// reaches theirs again. Run at each wrap, this leaves only the buckets of
    /// the epoch ending now, which the next wrap clears.
    ///
    /// Not journaled: such a bucket is dead before the bump and after it (and
    /// after a rollback of it), so it may be emptied at any moment; a reader
    /// racing sees it dead either way. The release store of the new epoch
    /// orders these stores before any reader that sees the new epoch.
    @inline(never)
    func clearBucketsOfOtherEpochs(than epoch: UInt64) {
        for index in 0..<geometry.bucketCount {
            let meta = bucket(index).advanced(by: 8).atomic(UInt64.self)
            let value = meta.pointee.load(ordering: .relaxed)
            if value != MapTable.empty && value >> 32 != epoch {
                meta.pointee.store(MapTable.empty, ordering: .relaxed)
            }
        }
    }
}

/// What a lookup needs, as plain values: a map handle keeps one, and its
/// inlined `get` captures only this, not the handle (copying a handle into a
/// closure context costs a retain per reference it holds, about half of a
/// small map's lookup). The engine is unretained: the handle's table holds it.
@usableFromInline
struct MapCursor: @unchecked Sendable {
    let engine: Unmanaged<StoreCore>
    let fieldIndex: Int
    /// The field's offset in the file, for journal records.
    let fieldOffset: Int
    let base: MappedAddress
    /// Which hash and which home function (see ``MapLayoutVersion``).
    let layout: MapLayoutVersion
    let seed: UInt64
    let bucketCount: Int
    /// The distance between buckets.
    let bucketBytes: Int
    /// A bucket's bytes without its padding: what journal records and moves copy.
    let entryBytes: Int
    /// The most entries the map holds.
    let capacity: Int
    let keyBytes: Int
    @usableFromInline let valueBytes: Int
    @usableFromInline let keyCapacity: Int
    /// Where a bucket's value area starts (see ``MapGeometry/valueOffset``).
    let valueOffset: Int
    /// Where a bucket's entry word starts in a map with a cache policy; 0 in
    /// other maps (no bucket has a word there: it is the sequence word).
    @usableFromInline let entryWordOffset: Int
    /// A cache map that evicts when full (``MapCache/evict``).
    let evicts: Bool
    /// A manual clock's milliseconds (see ``CacheClock``); nil: the system's real-time clock.
    let clockWord: UnsafeMutablePointer<Atomic<UInt64>>?

    /// The full table, for the slow paths (a stalled writer, errors).
    var table: MapTable {
        let core = engine.takeUnretainedValue()
        return MapTable(core: core, field: core.layout.fields[fieldIndex])
    }

    @inline(__always)
    var epoch: UInt64 { base.advanced(by: MapGeometry.epochOffset).atomic(UInt64.self).pointee.load(ordering: .acquiring) & 0xFFFF_FFFF }

    @inline(__always)
    func bucket(_ index: Int) -> MappedAddress {
        base.advanced(by: MapGeometry.headerBytes + index * bucketBytes)
    }

    // Addressing, forwarded to the one definition of each layout's hash and home.
    @inline(__always) var addressing: MapAddressing { MapAddressing(layout: layout, bucketCount: bucketCount, seed: seed) }
    @inline(__always) func hash(_ key: UnsafeRawBufferPointer) -> UInt64 { addressing.hash(key) }
    @inline(__always) func home(of key: UnsafeRawBufferPointer) -> Int { addressing.home(of: key) }
    @inline(__always) func next(_ index: Int) -> Int { addressing.next(index) }
    @inline(__always) func previous(_ index: Int) -> Int { addressing.previous(index) }
    @inline(__always) func advanced(_ index: Int, by offset: Int) -> Int { addressing.advanced(index, by: offset) }
    @inline(__always) func distance(from start: Int, to end: Int) -> Int { addressing.distance(from: start, to: end) }

    /// Copies the value area of `key` into `destination` (`valueBytes` bytes)
    /// while its bucket is stable; false when the key is absent.
    @usableFromInline
    func copyValue(forKey key: UnsafeRawBufferPointer, into destination: UnsafeMutableRawPointer) throws(SlotStoreError) -> Bool {
        let count = valueBytes
        return try lookup(key) { area in
            area.copyBytes(to: destination, count: count)
            return true
        } ?? false
    }

    @usableFromInline @inline(never)
    func keyTooLarge(_ size: Int) -> SlotStoreError { table.keyTooLarge(size) }

    /// What ``probeWord(forKey:)`` found.
    @usableFromInline
    enum WordProbe {
        /// The key's value word.
        case found(UInt64)
        /// No such key.
        case absent
        /// A bucket on the path is being written or changed under the probe:
        /// the caller takes the full lookup, which waits, recovers a dead
        /// writer and reports a timeout.
        case contended
    }

    // MARK: Locked writes (with the lock held, except the two word entry points)

    // The cursor holds plain values and borrows the engine, so the handles'
    // inlined writes capture nothing that needs a retain; `MapTable` forwards here.

    @inline(__always)
    var count: UnsafeMutablePointer<Atomic<UInt64>> { base.advanced(by: MapGeometry.countOffset).atomic(UInt64.self) }
    @inline(__always)
    var tombstones: UnsafeMutablePointer<Atomic<UInt64>> { base.advanced(by: MapGeometry.tombstonesOffset).atomic(UInt64.self) }
    /// Odd while a removal or a rollback moves entries between buckets; see ``MapTable``.
    @inline(__always)
    var moveSequence: SequenceWord { SequenceWord(base.advanced(by: MapGeometry.moveSequenceOffset)) }

    @inline(__always)
    func valueArea(_ bucket: MappedAddress) -> MappedAddress { bucket.advanced(by: valueOffset) }

    @inline(__always)
    static func beginWrite(_ bucket: MappedAddress) -> SequenceWord {
        let sequence = SequenceWord(bucket)
        sequence.beginWrite()
        return sequence
    }

    /// The bucket holding `key`, and the bucket an insert of it would use
    /// (the first tombstone on its path, else the empty bucket ending it).
    func locate(_ key: UnsafeRawBufferPointer) -> (found: Int?, insertAt: Int?) {
        let epoch = self.epoch
        let keyLength = key.count
        var index = home(of: key)
        var firstFree: Int?
        for _ in 0..<bucketCount {
            let bucket = self.bucket(index)
            let meta = bucket.advanced(by: 8).atomic(UInt64.self).pointee.load(ordering: .relaxed)
            let state = meta & 3
            if meta >> 32 != epoch || state == MapTable.empty { return (nil, firstFree ?? index) }
            if state == MapTable.tombstone {
                if firstFree == nil { firstFree = index }
            } else if Int((meta >> 8) & 0xFF_FFFF) == keyLength && MapTable.keyMatches(bucket, key) {
                return (index, nil)
            }
            index = next(index)
        }
        return (nil, firstFree)
    }

    func journalHeader(_ core: StoreCore) throws(SlotStoreError) {
        try core.recordUndo(offset: fieldOffset, length: 24, sequenceOffset: 0)
    }

    /// The file offset of bucket `index` (its sequence word).
    @inline(__always)
    func bucketOffset(_ index: Int) -> Int { fieldOffset + MapGeometry.headerBytes + index * bucketBytes }

    func journalBucket(_ index: Int, _ core: StoreCore) throws(SlotStoreError) {
        let offset = bucketOffset(index)
        try core.recordUndo(offset: offset + 8, length: entryBytes - 8, sequenceOffset: offset)
    }

    /// Inserts or replaces; `writeValue` fills the value area. Returns whether it inserted.
    @discardableResult
    func set(_ key: UnsafeRawBufferPointer, in core: StoreCore, _ writeValue: (MappedAddress) -> Void) throws(SlotStoreError) -> Bool {
        if entryWordOffset != 0 {
            return try cacheSet(key, deadline: 0, evictingLive: evicts, in: core, writeValue).inserted
        }
        let (found, insertAt) = locate(key)
        if let found {
            try replace(at: found, in: core, writeValue)
            return false
        }
        try insert(key, at: insertAt, in: core, writeValue)
        return true
    }

    /// Replaces the value of the bucket at `index`. As a transaction's first
    /// change, only the value area is journaled (the key and its metadata do
    /// not change); later in a transaction, the whole bucket, as an insert or
    /// a removal of the same key records it: one record per bucket, which is
    /// what the journal is sized for (see `Layout.journalBytes`).
    /// In a cache map, the entry word (between the key and the value) is
    /// journaled with the value, and replaced by `entryWord` when given.
    func replace(at index: Int, in core: StoreCore, entryWord: UInt64? = nil,
                 _ writeValue: (MappedAddress) -> Void) throws(SlotStoreError) {
        if !core.journal.isDirty {
            let offset = bucketOffset(index)
            try core.recordUndo(offset: offset + MapGeometry.bucketPrefixBytes + keyBytes,
                                length: valueOffset - MapGeometry.bucketPrefixBytes - keyBytes + valueBytes, sequenceOffset: offset)
        } else {
            try journalBucket(index, core)
        }
        let bucket = self.bucket(index)
        let sequence = MapCursor.beginWrite(bucket)
        if let entryWord, entryWordOffset != 0 { storeEntryWord(entryWord, in: bucket) }
        writeValue(valueArea(bucket))
        core.fault(.midWrite)
        sequence.endWrite()
        core.fault(.afterWrite)
    }

    /// Inserts `key` into bucket `target` (from ``locate(_:)``), journaling the header and the bucket.
    /// In a cache map, the bucket's entry word becomes `entryWord` (by default: no deadline, recently used).
    func insert(_ key: UnsafeRawBufferPointer, at target: Int?, in core: StoreCore, entryWord: UInt64 = MapExpiry.usedBit,
                _ writeValue: (MappedAddress) -> Void) throws(SlotStoreError) {
        let live = Int(clamping: count.pointee.load(ordering: .relaxed))
        guard live <= capacity else {
            throw .invalidValue(path: core.path, field: core.layout.fields[fieldIndex].name,
                                detail: "the map records \(live) entries, over its capacity \(capacity): the file is damaged; run `slotstore verify`, then compact or restore it")
        }
        guard live < capacity, let target else {
            core.requestGrowth(field: fieldIndex, capacity: capacity, full: true)
            throw .mapFull(path: core.path, field: core.layout.fields[fieldIndex].name, capacity: capacity, count: live)
        }
        try journalHeader(core)
        try journalBucket(target, core)
        let epoch = self.epoch
        let bucket = self.bucket(target)
        let oldMeta = bucket.advanced(by: 8).atomic(UInt64.self).pointee.load(ordering: .relaxed)
        let reusesTombstone = oldMeta & 3 == MapTable.tombstone && oldMeta >> 32 == epoch
        let sequence = MapCursor.beginWrite(bucket)
        if let source = key.baseAddress { bucket.advanced(by: MapGeometry.bucketPrefixBytes).copyShortBytes(from: source, count: key.count) }
        if entryWordOffset != 0 { storeEntryWord(entryWord, in: bucket) }
        writeValue(valueArea(bucket))
        core.fault(.midWrite)
        bucket.advanced(by: 8).atomic(UInt64.self).pointee.store(
            MapTable.meta(state: MapTable.full, keyLength: key.count, epoch: epoch), ordering: .relaxed)
        sequence.endWrite()
        count.pointee.store(UInt64(live + 1), ordering: .relaxed)
        if reusesTombstone {
            tombstones.pointee.store(tombstones.pointee.load(ordering: .relaxed) &- 1, ordering: .relaxed)
        }
        if _slowPath(live + 1 >= core.growthCounts[fieldIndex]) {
            core.requestGrowth(field: fieldIndex, capacity: capacity, full: false)
        }
        core.fault(.afterWrite)
    }

    // MARK: Removal

    /// Removes the entry in bucket `start` by backward-shift deletion, with the lock held.
    ///
    /// The hole starts at `start`. Walking the run after it up to the first
    /// empty bucket, each entry whose home is not between the hole and itself
    /// (so whose probe path crosses the hole) moves back into the hole, and its
    /// bucket becomes the hole. The last hole becomes empty, then any
    /// tombstones right before it (no probe path crosses them now). Entries
    /// stay on their probe paths and no path crosses an empty bucket, which is
    /// what `verify` checks; and no bucket is left that slows lookups down.
    ///
    /// Every bucket is journaled before it changes, and the move sequence
    /// word is odd from the first change to the last, so lock-free readers
    /// retry a miss that overlapped it. When the journal has no room for
    /// every bucket of the run (a very long run in a large transaction), the
    /// removal leaves a tombstone instead, as earlier builds did: correct,
    /// only slower, and reclaimed by a later insert or removal.
    func removeEntry(at start: Int, in core: StoreCore) throws(SlotStoreError) {
        let epoch = self.epoch
        // The buckets this removal may change: the run from `start` to the
        // first empty bucket, and the tombstones right before `start`.
        var run = 1
        while run < bucketCount && isOccupied(bucket(advanced(start, by: run)), epoch: epoch) { run += 1 }
        var before = 0
        while before < bucketCount - run && isTombstone(bucket(advanced(start, by: bucketCount - before - 1)), epoch: epoch) { before += 1 }
        let recordBytes = UndoJournal.recordHeaderBytes + entryBytes - 8
        let needed = UndoJournal.recordHeaderBytes + 24 + (run + before) * recordBytes
        guard run < bucketCount, needed <= journalRoom(core) else {
            try removeLeavingTombstone(at: start, in: core)
            return
        }

        try journalHeader(core)
        try journalBucket(start, core)
        let moves = moveSequence
        moves.beginWrite()
        var hole = start
        var wroteFirst = false
        var index = next(start)
        while true {
            let source = bucket(index)
            let meta = source.advanced(by: 8).atomic(UInt64.self).pointee.load(ordering: .relaxed)
            let state = meta & 3
            if meta >> 32 != epoch || state == MapTable.empty { break }
            if state == MapTable.full {
                let length = min(Int((meta >> 8) & 0xFF_FFFF), keyCapacity)
                let key = UnsafeRawBufferPointer(start: source.pointer + MapGeometry.bucketPrefixBytes, count: length)
                let home = self.home(of: key)
                // Its path crosses the hole unless its home lies in (hole, index].
                let homeDistance = distance(from: hole, to: home)
                if homeDistance == 0 || homeDistance > distance(from: hole, to: index) {
                    try journalBucket(index, core)
                    let target = bucket(hole)
                    let sequence = MapCursor.beginWrite(target)
                    target.advanced(by: 8).copyBytes(from: UnsafeRawPointer(source.pointer + 8), count: entryBytes - 8)
                    if !wroteFirst { core.fault(.midWrite); wroteFirst = true }
                    sequence.endWrite()
                    core.fault(.midShift)
                    hole = index
                }
            }
            index = next(index)
        }
        emptyBucket(hole)
        if !wroteFirst { core.fault(.midWrite) }
        // Tombstones right before the new empty bucket: no path crosses them any more.
        var reclaimed: UInt64 = 0
        var previous = self.previous(hole)
        while reclaimed < UInt64(bucketCount) && isTombstone(bucket(previous), epoch: epoch) {
            try journalBucket(previous, core)
            emptyBucket(previous)
            reclaimed += 1
            previous = self.previous(previous)
        }
        moves.endWrite()
        count.pointee.store(count.pointee.load(ordering: .relaxed) &- 1, ordering: .relaxed)
        if reclaimed > 0 { tombstones.pointee.store(tombstones.pointee.load(ordering: .relaxed) &- reclaimed, ordering: .relaxed) }
        core.fault(.afterWrite)
    }

    /// The removal of earlier builds: the bucket becomes a tombstone, which
    /// lookups probe past and inserts reuse. Only when a shift does not fit
    /// the journal (and in tests, to make a file as earlier builds left it).
    func removeLeavingTombstone(at index: Int, in core: StoreCore) throws(SlotStoreError) {
        try journalHeader(core)
        try journalBucket(index, core)
        let bucket = self.bucket(index)
        let sequence = MapCursor.beginWrite(bucket)
        bucket.advanced(by: 8).atomic(UInt64.self).pointee.store(
            MapTable.meta(state: MapTable.tombstone, keyLength: 0, epoch: epoch), ordering: .relaxed)
        core.fault(.midWrite)
        sequence.endWrite()
        count.pointee.store(count.pointee.load(ordering: .relaxed) &- 1, ordering: .relaxed)
        tombstones.pointee.store(tombstones.pointee.load(ordering: .relaxed) &+ 1, ordering: .relaxed)
        core.fault(.afterWrite)
    }

    /// Empties `index` (already journaled) under its seqlock.
    @inline(__always)
    private func emptyBucket(_ index: Int) {
        let target = bucket(index)
        let sequence = MapCursor.beginWrite(target)
        target.advanced(by: 8).atomic(UInt64.self).pointee.store(MapTable.empty, ordering: .relaxed)
        sequence.endWrite()
    }

    @inline(__always)
    private func isOccupied(_ bucket: MappedAddress, epoch: UInt64) -> Bool {
        let meta = bucket.advanced(by: 8).atomic(UInt64.self).pointee.load(ordering: .relaxed)
        return meta >> 32 == epoch && meta & 3 != MapTable.empty
    }

    @inline(__always)
    private func isTombstone(_ bucket: MappedAddress, epoch: UInt64) -> Bool {
        let meta = bucket.advanced(by: 8).atomic(UInt64.self).pointee.load(ordering: .relaxed)
        return meta >> 32 == epoch && meta & 3 == MapTable.tombstone
    }

    /// The journal bytes this transaction can still use (unbounded when the
    /// store writes without a journal, as a new file being filled does).
    func journalRoom(_ core: StoreCore) -> Int {
        guard core.journaling else { return .max }
        let used = Int(clamping: core.journal.usedBytes.pointee.load(ordering: .relaxed))
        return core.journal.capacity - UndoJournal.headerBytes - used
    }

    /// Stores `bits` as the value word of `key` (inserting it when absent) in
    /// its own transaction, for maps whose values are one scalar. The engine
    /// is borrowed, not retained: the handle that owns this cursor holds it.
    @usableFromInline
    func storeWord(_ bits: UInt64, forKey key: UnsafeRawBufferPointer) throws(SlotStoreError) {
        if entryWordOffset != 0 { return try cacheStoreWord(bits, forKey: key) }
        _ = try updateWord(forKey: key) { _ in bits }
    }

    /// Adds `delta` to the integer value word of `key` (inserting 0 first),
    /// wrapping at `width` bytes, in its own transaction; returns the new bits.
    @usableFromInline
    func addWord(_ delta: UInt64, width: Int, forKey key: UnsafeRawBufferPointer) throws(SlotStoreError) -> UInt64 {
        if entryWordOffset != 0 { return try cacheAddWord(delta, width: width, forKey: key, initial: 0, deadline: 0).bits }
        return try updateWord(forKey: key) { current in MapCursor.add(delta, to: current, width: width) }
    }

    /// ``addWord(_:width:forKey:)`` inside a transaction that holds the lock.
    func addWordLocked(_ delta: UInt64, width: Int, forKey key: UnsafeRawBufferPointer, in core: StoreCore) throws(SlotStoreError) -> UInt64 {
        if entryWordOffset != 0 {
            return try cacheAddWordLocked(delta, width: width, forKey: key, initial: 0, deadline: 0, in: core).bits
        }
        return try updateWordLocked(forKey: key, in: core) { current in MapCursor.add(delta, to: current, width: width) }
    }

    /// `current + delta`, wrapping at `width` bytes.
    @inline(__always)
    static func add(_ delta: UInt64, to current: UInt64, width: Int) -> UInt64 {
        let mask = width == 8 ? UInt64.max : (UInt64(1) << (8 * UInt64(width))) - 1
        return (current &+ delta) & mask
    }

    /// Locks, replaces the value word of `key` with `next(current)`, commits;
    /// returns the word written. The engine is borrowed: the handle owning
    /// this cursor holds it for the call.
    @inline(__always)
    private func updateWord(forKey key: UnsafeRawBufferPointer, _ next: (UInt64) -> UInt64) throws(SlotStoreError) -> UInt64 {
        try engine._withUnsafeGuaranteedRef { core in
            Result { () throws(SlotStoreError) -> UInt64 in
                try core.transaction { () throws(SlotStoreError) -> UInt64 in try updateWordLocked(forKey: key, in: core, next) }
            }
        }.get()
    }

    /// Replaces the value word of `key` with `next(current)` (current 0 when
    /// absent, then inserted); returns the word written. Call holding the lock.
    @inline(__always)
    private func updateWordLocked(forKey key: UnsafeRawBufferPointer, in core: StoreCore,
                                  _ next: (UInt64) -> UInt64) throws(SlotStoreError) -> UInt64 {
        let (found, insertAt) = locate(key)
        let written: UInt64
        if let found {
            written = next(valueArea(bucket(found)).atomic(UInt64.self).pointee.load(ordering: .relaxed))
            try replace(at: found, in: core) { area in area.atomic(UInt64.self).pointee.store(written, ordering: .relaxed) }
        } else {
            written = next(0)
            try insert(key, at: insertAt, in: core) { area in area.atomic(UInt64.self).pointee.store(written, ordering: .relaxed) }
        }
        return written
    }

    /// The first 8-byte word of `key`'s value, for maps whose values are one
    /// scalar: the lookup of ``lookup(_:_:)`` without a closure, a buffer or an
    /// error path, which cost as much as the probe itself on a small map.
    @usableFromInline
    func probeWord(forKey key: UnsafeRawBufferPointer) -> WordProbe {
        let home = self.home(of: key)
        // Read before any bucket, to tell a miss from an entry moved past the probe.
        let moves = moveSequence
        let movesBegun = moves.word.pointee.load(ordering: .acquiring)
        let epoch = self.epoch
        let keyLength = key.count
        var index = home
        for _ in 0..<bucketCount {
            let bucket = self.bucket(index)
            let sequence = SequenceWord(bucket)
            guard let before = sequence.beginRead() else { return .contended }
            let meta = bucket.advanced(by: 8).atomic(UInt64.self).pointee.load(ordering: .relaxed)
            let state = meta & 3
            if meta >> 32 != epoch || state == MapTable.empty {
                guard sequence.endRead(before), self.epoch == epoch,
                      movesBegun & 1 == 0, moves.endRead(movesBegun) else { return .contended }
                return .absent
            }
            if state == MapTable.full && Int((meta >> 8) & 0xFF_FFFF) == keyLength && MapTable.keyMatches(bucket, key) {
                let word = bucket.advanced(by: valueOffset).atomic(UInt64.self).pointee.load(ordering: .relaxed)
                if entryWordOffset != 0 {
                    // Read inside the bucket's seqlock with the value: the word and the value are one entry's.
                    let entry = bucket.advanced(by: entryWordOffset).atomic(UInt64.self).pointee.load(ordering: .relaxed)
                    guard sequence.endRead(before) else { return .contended }
                    return isLive(entry, in: bucket) ? .found(word) : .absent
                }
                guard sequence.endRead(before) else { return .contended }
                return .found(word)
            }
            guard sequence.endRead(before) else { return .contended }
            index = next(index)
        }
        return self.epoch == epoch && movesBegun & 1 == 0 && moves.endRead(movesBegun) ? .absent : .contended
    }

    /// `includingExpired`: in a cache map, an expired entry still there is
    /// read too (``MapField/getStale(_:)``); otherwise it is a miss.
    func lookup<R>(_ key: UnsafeRawBufferPointer, includingExpired: Bool = false,
                   _ read: (MappedAddress) -> R) throws(SlotStoreError) -> R? {
        let home = self.home(of: key)
        let moves = moveSequence
        var retry = ReadRetry()
        search: while true {
            // A miss counts only if no removal moved entries during the probe
            // (the word even and unchanged); a hit is good either way.
            let movesBegun = moves.word.pointee.load(ordering: .acquiring)
            let epoch = self.epoch
            var index = home
            for _ in 0..<bucketCount {
                let bucket = self.bucket(index)
                let sequence = SequenceWord(bucket)
                while true {
                    guard let before = sequence.beginRead() else {
                        try retry.wait(core: engine.takeUnretainedValue(), field: table.field.name, stalled: true)
                        continue
                    }
                    let meta = bucket.advanced(by: 8).atomic(UInt64.self).pointee.load(ordering: .relaxed)
                    let state = meta & 3
                    let live = meta >> 32 == epoch
                    if !live || state == MapTable.empty {
                        guard sequence.endRead(before) else { continue }
                        // Recheck the epoch: a removeAll during the probe restarts it.
                        if self.epoch != epoch { continue search }
                        guard movesBegun & 1 == 0, moves.endRead(movesBegun) else {
                            try retry.wait(core: engine.takeUnretainedValue(), field: table.field.name, stalled: moves.isOdd,
                                           settle: table.settleStalledMoves)
                            continue search
                        }
                        return nil
                    }
                    if state == MapTable.full && Int((meta >> 8) & 0xFF_FFFF) == key.count && MapTable.keyMatches(bucket, key) {
                        let result = read(bucket.advanced(by: valueOffset))
                        let entry = entryWordOffset == 0 ? 0
                            : bucket.advanced(by: entryWordOffset).atomic(UInt64.self).pointee.load(ordering: .relaxed)
                        guard sequence.endRead(before) else {
                            try retry.wait(core: engine.takeUnretainedValue(), field: table.field.name, stalled: sequence.isOdd)
                            continue
                        }
                        if entryWordOffset != 0 && !isLive(entry, in: bucket) && !includingExpired { return nil }
                        return result
                    }
                    guard sequence.endRead(before) else {
                        try retry.wait(core: engine.takeUnretainedValue(), field: table.field.name, stalled: sequence.isOdd)
                        continue
                    }
                    break
                }
                index = next(index)
            }
            if self.epoch != epoch { continue search }
            guard movesBegun & 1 == 0, moves.endRead(movesBegun) else {
                try retry.wait(core: engine.takeUnretainedValue(), field: table.field.name, stalled: moves.isOdd,
                               settle: table.settleStalledMoves)
                continue search
            }
            return nil
        }
    }

}
