/// Where one field lives in the file. Pure offset math, no pointers.
///
/// Scalars take an 8-byte slot. Arrays, strings and bytes start with two
/// 8-byte words and then their payload:
///
/// ```
/// array:         [sequence u64][element writes u64][count × element, padded to 8]
/// string, bytes: [sequence u64][length u64]        [capacity bytes, padded to 8]
/// ```
///
/// The sequence word is a seqlock: odd while a locked write is in progress.
/// With cache-line alignment every field starts on a 64-byte boundary and its
/// slot is rounded up to 64 bytes.
struct FieldLayout: Sendable, Hashable {
    let index: Int
    let name: String
    let type: FieldType
    /// Absolute file offset of the field's first byte.
    let offset: Int
    /// Bytes reserved for the field, including padding.
    let size: Int

    /// Whether the field starts with a sequence word (arrays, strings, bytes).
    /// Stored, like the capacity: `FieldType` is an indirect enum, and a
    /// switch on it at every locked write is a dependent load and a jump.
    let hasSequence: Bool
    /// Capacity of the payload in bytes.
    let payloadCapacity: Int
    /// For a per-process scalar, its aggregate (see ``PerProcessLayout``).
    let perProcess: PerProcessAggregate?
    /// A per-process field's process slots (0 for `mostRecent` and every other field).
    let processSlots: Int
    /// A map field's buckets, in the file's map layout (nil for other fields).
    let mapGeometry: MapGeometry?
    /// A map's cache policy: its buckets then carry an entry word (see ``MapGeometry``).
    let cache: MapCache?

    static let prefixBytes = 16

    init(index: Int, name: String, type: FieldType, offset: Int, size: Int,
         perProcess: PerProcessAggregate? = nil, processSlots: Int = 0, mapLayout: MapLayoutVersion = .v2,
         cache: MapCache? = nil) {
        self.index = index
        self.name = name
        self.type = type
        self.offset = offset
        self.size = size
        self.perProcess = perProcess
        self.processSlots = processSlots
        self.cache = cache
        if case .map(let key, let value, let capacity) = type {
            mapGeometry = MapGeometry(key: key, value: value, capacity: capacity, version: mapLayout,
                                      entryWordBytes: MapGeometry.entryWordBytes(for: cache))
        } else {
            mapGeometry = nil
        }
        switch type {
        case .scalar(let scalar):
            hasSequence = false
            payloadCapacity = scalar.byteWidth
        case .array(let element, let count):
            hasSequence = true
            payloadCapacity = element.byteWidth * count
        case .string(let capacity), .bytes(let capacity):
            hasSequence = true
            payloadCapacity = capacity
        case .map:
            hasSequence = false
            payloadCapacity = 0
        }
    }

    /// Offset of the sequence word (arrays, strings, bytes).
    var sequenceOffset: Int { offset }
    /// Offset of the second prefix word: element writes (arrays) or length (strings, bytes).
    var secondWordOffset: Int { offset + 8 }
    /// Offset of the value: the scalar itself, or the payload after the prefix.
    var payloadOffset: Int { hasSequence ? offset + FieldLayout.prefixBytes : offset }

    static func slotSize(of type: FieldType, mapLayout: MapLayoutVersion, cache: MapCache? = nil) -> Int {
        switch type {
        case .scalar: 8
        case .array(let element, let count): prefixBytes + roundUp(element.byteWidth * count, to: 8)
        case .string(let capacity), .bytes(let capacity): prefixBytes + roundUp(capacity, to: 8)
        case .map(let key, let value, let capacity):
            MapGeometry(key: key, value: value, capacity: capacity, version: mapLayout,
                        entryWordBytes: MapGeometry.entryWordBytes(for: cache)).totalBytes
        }
    }

    /// The bytes a value of `type` takes inside a map bucket: its slot without the seqlock prefix.
    static func valueBytes(of type: FieldType) -> Int {
        switch type {
        case .scalar: 8
        case .array(let element, let count): roundUp(element.byteWidth * count, to: 8)
        case .string(let capacity), .bytes(let capacity): 8 + roundUp(capacity, to: 8)
        case .map: 0
        }
    }
}

/// Which bucket layout and hash a map field uses: layout 1 in files of
/// format 1.x, layout 2 from format 2.0. The engine reads both (a 1.x file
/// keeps working in place); a compaction or migration writes layout 2.
enum MapLayoutVersion: Int, Sendable, Hashable {
    /// Power-of-two bucket counts at a load of at most 3/4, unpadded buckets,
    /// the chained hash, homes by mask.
    case v1 = 1
    /// Bucket counts for a load of at most 0.85, buckets padded so none
    /// straddles a cache line, the two-lane hash, homes by multiply-shift.
    case v2 = 2

    /// The layout of maps in a file of format `major`.
    static func forFormat(major: UInt16) -> MapLayoutVersion { major >= 2 ? .v2 : .v1 }
}

/// The shape of a map field's slot:
///
/// ```
/// header (64 bytes)  count u64, tombstones u64, epoch u64, move sequence u64,
///                    clock hand u64 (maps with a cache policy; else zero)
/// buckets            bucketCount × bucket (layout 2: from a 64-byte boundary)
/// bucket             sequence u64, meta u64, key, [entry word u64,] value, padding
/// meta               bits 0-1 state (0 empty, 1 full, 2 tombstone),
///                    bits 8-31 key length, bits 32-63 epoch
/// key                capacity rounded up to 8 (8 for integer keys)
/// entry word         only in maps with a cache policy (``MapCache``, layout 2):
///                    bit 63 recently used, bits 0-62 deadline in ms since
///                    the Unix epoch (CLOCK_REALTIME), 0 = never expires
/// value              the value's slot without a seqlock prefix:
///                    scalar 8; string/bytes length u64 + capacity; array elements
/// ```
///
/// A bucket whose epoch differs from the header's is empty, which makes
/// `removeAll` one journaled header write.
///
/// Layout 1: `bucketCount` is a power of two holding `capacity` entries at a
/// load factor of at most 3/4, buckets are not padded, and a key's home
/// bucket is its hash masked. Layout 2: `bucketCount` is `ceil(capacity ×
/// 20 / 17)` (at least 4), a load of at most 0.85; a bucket of up to 64 bytes
/// is padded to a power of two and a larger one to a multiple of 64 when that
/// adds at most a quarter (else to 8), so with the buckets starting on a
/// cache line, a bucket of up to 64 bytes never straddles two; a key's home
/// is `(hash × bucketCount) >> 64`, which spreads any count evenly and keeps
/// homes in hash order (a copy into a bigger map then writes front to back).
struct MapGeometry: Sendable, Hashable {
    static let headerBytes = 64
    static let countOffset = 0
    static let tombstonesOffset = 8
    static let epochOffset = 16
    /// The move sequence word (reserved zero bytes in files of earlier builds): odd while a
    /// removal or a rollback moves entries between buckets.
    static let moveSequenceOffset = 24
    /// A cache map's clock hand (reserved zero bytes in other maps): the
    /// bucket where eviction and incremental reclamation of expired entries
    /// go on; a hint, read modulo the bucket count, not journaled.
    static let clockHandOffset = 32
    /// A cache map's reclamation hand: where inserts look for expired entries
    /// to remove. Its own word, not the clock hand's: moved 8 buckets per
    /// insert, it would bring the eviction sweep round to a hot entry every
    /// ~capacity/8 inserts instead of every ~capacity evictions (outside
    /// attack: a key read every 200 inserts in a map of 1,000 was evicted 4%
    /// of the time, where LRU never would).
    static let reclaimHandOffset = 40
    static let bucketPrefixBytes = 16

    let key: FieldType
    let value: FieldType
    let capacity: Int
    let version: MapLayoutVersion
    let keyBytes: Int
    let valueBytes: Int
    /// 8 for a map with a cache policy (its entry word), else 0.
    let entryWordBytes: Int
    /// The bytes of a bucket that hold something: prefix, key, entry word and value.
    /// Journal records and moves copy these, not the padding.
    let entryBytes: Int
    /// The distance between buckets: `entryBytes` plus the padding.
    let bucketBytes: Int
    let bucketCount: Int

    /// Where the entry word starts in a bucket (meaningful when ``entryWordBytes`` is 8).
    var entryWordOffset: Int { MapGeometry.bucketPrefixBytes + keyBytes }
    /// Where the value area starts in a bucket: after the key and the entry word.
    var valueOffset: Int { MapGeometry.bucketPrefixBytes + keyBytes + entryWordBytes }

    static func entryWordBytes(for cache: MapCache?) -> Int { cache == nil ? 0 : 8 }

    /// The geometry of a placed map field (a stand-in for any other field).
    init(field: FieldLayout) {
        self = field.mapGeometry ?? MapGeometry(key: .scalar(.int64), value: .scalar(.int64), capacity: 1, version: .v2)
    }

    init(key: FieldType, value: FieldType, capacity: Int, version: MapLayoutVersion, entryWordBytes: Int = 0) {
        self.key = key
        self.value = value
        self.capacity = capacity
        self.version = version
        self.entryWordBytes = entryWordBytes
        switch key {
        case .string(let keyCapacity), .bytes(let keyCapacity): keyBytes = roundUp(max(keyCapacity, 1), to: 8)
        default: keyBytes = 8
        }
        valueBytes = FieldLayout.valueBytes(of: value)
        entryBytes = MapGeometry.bucketPrefixBytes + keyBytes + entryWordBytes + valueBytes
        switch version {
        case .v1:
            bucketBytes = entryBytes
            var buckets = 8
            while buckets * 3 < capacity * 4 { buckets <<= 1 }
            bucketCount = buckets
        case .v2:
            bucketBytes = MapGeometry.paddedBucketBytes(entryBytes)
            bucketCount = max(4, (capacity * 20 + 16) / 17)
        }
    }

    /// Layout 2's bucket stride for `entryBytes` (a multiple of 8, at least 32).
    static func paddedBucketBytes(_ entryBytes: Int) -> Int {
        if entryBytes <= 64 {
            var stride = 32
            while stride < entryBytes { stride <<= 1 }
            return stride
        }
        let lines = roundUp(entryBytes, to: 64)
        return (lines - entryBytes) * 4 <= entryBytes ? lines : entryBytes
    }

    var totalBytes: Int { MapGeometry.headerBytes + bucketCount * bucketBytes }

    /// The key capacity in bytes (8 for integer keys).
    var keyCapacity: Int {
        switch key {
        case .string(let keyCapacity), .bytes(let keyCapacity): keyCapacity
        default: 8
        }
    }
}

/// The regions of a store file and the fields inside its data region.
///
/// ```
/// page 0        header (256 bytes) ... header copy at 2048
/// lock region   robust mutex, holder PID, counters,
///               retirement, thread slots                    (16 KiB or 1 page)
/// journal       undo records of the write in progress       (≥ 64 KiB)
/// schema        the schema as JSON                          (pages)
/// data          the fields                                  (pages)
/// ```
struct Layout: Sendable {
    let pageSize: Int
    let lockOffset: Int
    let lockSize: Int
    let journalOffset: Int
    let journalSize: Int
    let schemaOffset: Int
    let schemaSize: Int
    let dataOffset: Int
    let dataSize: Int
    let fields: [FieldLayout]
    /// The map layout of the file (from its format major version).
    let mapLayout: MapLayoutVersion
    private let indexByName: [String: Int]

    var fileSize: Int { dataOffset + dataSize }

    func field(named name: String) -> FieldLayout? { indexByName[name].map { fields[$0] } }

    static let minimumJournalBytes = 64 * 1024
    static let lockRegionBytes = 16 * 1024

    /// The field slots of `schema` placed from `dataOffset`, and the bytes they need.
    /// `processSlots`: how many processes a per-process field has room for
    /// (one per thread slot of the lock region, so one per possible attachment).
    static func placeFields(_ schema: Schema, dataOffset: Int, cacheLineAligned: Bool, processSlots: Int,
                            mapLayout: MapLayoutVersion) -> (fields: [FieldLayout], bytes: Int) {
        var cursor = dataOffset
        var placed: [FieldLayout] = []
        placed.reserveCapacity(schema.fields.count)
        for (index, field) in schema.fields.enumerated() {
            if let aggregate = field.perProcess {
                // Always on cache lines: each process's slot is a line of its
                // own, so processes adding at once don't bounce one line.
                let slots = aggregate.hasSlots ? processSlots : 0
                cursor = roundUp(cursor, to: 64)
                let size = PerProcessLayout.bytes(processSlots: slots)
                placed.append(FieldLayout(index: index, name: field.name, type: field.type, offset: cursor, size: size,
                                          perProcess: aggregate, processSlots: slots))
                cursor += size
                continue
            }
            var size = FieldLayout.slotSize(of: field.type, mapLayout: mapLayout, cache: field.cache)
            if cacheLineAligned {
                cursor = roundUp(cursor, to: 64)
                size = roundUp(size, to: 64)
            } else if field.type.isMap && mapLayout == .v2 {
                // Layout 2's buckets start on a cache line (the header is 64
                // bytes), so a bucket of up to 64 bytes never straddles two.
                cursor = roundUp(cursor, to: 64)
            }
            placed.append(FieldLayout(index: index, name: field.name, type: field.type, offset: cursor, size: size,
                                      mapLayout: mapLayout, cache: field.cache))
            cursor += size
        }
        return (placed, cursor - dataOffset)
    }

    /// The journal holds a before-image of every field at once, so any
    /// transaction that writes each field once, even all of them (as
    /// `slotstore load` does), fits. Beyond it, `UndoJournal` reports
    /// `transactionTooLarge` and nothing is written.
    /// A map field reserves room for its header and up to 1 MiB of buckets,
    /// so transactions touching many entries fit, without doubling the file
    /// for a large map.
    static func journalBytes(for schema: Schema, pageSize: Int) -> Int {
        roundUp(max(minimumJournalBytes, UndoJournal.headerBytes + journalRecordBytes(for: schema)), to: pageSize)
    }

    /// The record bytes (without seals) of a transaction that writes every
    /// field once: what the journal is sized for.
    static func journalRecordBytes(for schema: Schema) -> Int {
        schema.fields.reduce(0) { total, field in
            if case .map(let key, let value, let capacity) = field.type {
                // Every bucket once (with its record header) up to 1 MiB, so a
                // small map can be rewritten whole in one transaction.
                let geometry = MapGeometry(key: key, value: value, capacity: capacity, version: .v2,
                                           entryWordBytes: MapGeometry.entryWordBytes(for: field.cache))
                let whole = geometry.totalBytes + geometry.bucketCount * UndoJournal.recordHeaderBytes
                return total + min(whole, 1 << 20) + 64 * UndoJournal.recordHeaderBytes
            }
            if field.perProcess != nil {
                // A write of the aggregate journals the base words; folding a
                // gone process's slot journals them and the slot's first words.
                return total + 2 * UndoJournal.recordHeaderBytes + PerProcessLayout.headerJournalBytes + PerProcessLayout.slotJournalBytes
            }
            return total + UndoJournal.recordHeaderBytes + FieldLayout.slotSize(of: field.type, mapLayout: .v2, cache: field.cache)
        }
    }

    /// The layout of a new store.
    /// `mapLayout`: the layout of the file's maps, by default the one the
    /// schema's format needs (a map's growth keeps a 1.x file's layout 1).
    init(schema: Schema, schemaBytes: Int, pageSize: Int, cacheLineAligned: Bool, mapLayout: MapLayoutVersion? = nil) {
        self.pageSize = pageSize
        lockOffset = pageSize
        // 252 thread slots (see LockRegion); stores made by earlier builds have one page, 60 slots.
        lockSize = roundUp(Layout.lockRegionBytes, to: pageSize)
        journalOffset = lockOffset + lockSize
        journalSize = Layout.journalBytes(for: schema, pageSize: pageSize)
        schemaOffset = journalOffset + journalSize
        schemaSize = roundUp(max(schemaBytes, 1), to: pageSize)
        dataOffset = schemaOffset + schemaSize
        self.mapLayout = mapLayout ?? MapLayoutVersion.forFormat(major: FileHeader.version(for: schema).major)
        let placed = Layout.placeFields(schema, dataOffset: dataOffset, cacheLineAligned: cacheLineAligned,
                                        processSlots: LockRegion.threadSlotCount(lockSize: lockSize), mapLayout: self.mapLayout)
        dataSize = roundUp(max(placed.bytes, 1), to: pageSize)
        fields = placed.fields
        indexByName = Dictionary(uniqueKeysWithValues: placed.fields.map { ($0.name, $0.index) })
    }

    /// The layout of an existing store, from its validated header and schema.
    init(header: FileHeader, schema: Schema, path: String) throws(SlotStoreError) {
        pageSize = Int(header.pageSize)
        lockOffset = Int(header.lockOffset)
        lockSize = Int(header.lockSize)
        journalOffset = Int(header.journalOffset)
        journalSize = Int(header.journalSize)
        schemaOffset = Int(header.schemaOffset)
        schemaSize = Int(header.schemaSize)
        dataOffset = Int(header.dataOffset)
        dataSize = Int(header.dataSize)
        mapLayout = MapLayoutVersion.forFormat(major: header.formatMajor)
        let placed = Layout.placeFields(schema, dataOffset: dataOffset,
                                        cacheLineAligned: header.flags.contains(.cacheLineAligned),
                                        processSlots: LockRegion.threadSlotCount(lockSize: lockSize), mapLayout: mapLayout)
        guard placed.bytes <= dataSize else {
            throw .corruptHeader(path: path, detail: "the schema's fields need \(placed.bytes) data bytes but the data region holds \(dataSize)")
        }
        guard lockSize >= LockRegion.bytes else {
            throw .corruptHeader(path: path, detail: "the lock region holds \(lockSize) bytes, fewer than the \(LockRegion.bytes) it needs")
        }
        guard journalSize >= UndoJournal.headerBytes + UndoJournal.recordHeaderBytes + 8 else {
            throw .corruptHeader(path: path, detail: "the journal region holds \(journalSize) bytes, too few for one record")
        }
        fields = placed.fields
        indexByName = Dictionary(uniqueKeysWithValues: placed.fields.map { ($0.name, $0.index) })
    }
}
