import Foundation
import Glibc

/// What `slotstore inspect` reports: the header, the lock, the journal and
/// every field, read from the file without mapping it or taking the lock.
///
/// Its JSON form (the `--json` output) has the keys `path`, `format`,
/// `schema`, `regions`, `lock`, `journal` and `fields`, as documented in the
/// <doc:Tools> article.
public struct StoreInspection: Sendable, Codable, Hashable {
    /// Format-level facts from the header.
    public struct Format: Sendable, Codable, Hashable {
        /// `major.minor`.
        public var version: String
        /// The page size the regions are aligned to.
        public var pageSize: Int
        /// The file's size in bytes.
        public var fileSize: Int
        /// 1 when created; reserved for tools that rewrite the file's structure (compaction, migration).
        public var generation: UInt64
        /// Creation time, ISO 8601 in UTC.
        public var createdAt: String
        /// Whether every field starts on its own 64-byte cache line.
        public var cacheLineAligned: Bool
    }

    /// The stored schema's identity.
    public struct SchemaSummary: Sendable, Codable, Hashable {
        /// The schema version chosen by its author.
        public var version: Int
        /// FNV-1a-64 of the canonical field list, in hex.
        public var hash: String
        /// The number of fields.
        public var fields: Int
    }

    /// One region of the file.
    public struct Region: Sendable, Codable, Hashable {
        /// `header`, `lock`, `journal`, `schema` or `data`.
        public var name: String
        /// The region's first byte.
        public var offset: Int
        /// The region's size in bytes.
        public var size: Int
    }

    /// The lock's state as the file records it.
    public struct Lock: Sendable, Codable, Hashable {
        /// `free`, `held` (by a running process), `needs-recovery` (its holder
        /// died) or `stale` (left from before a reboot; the next first opener resets it).
        public var state: String
        /// The PID the holder recorded, when the lock is not free: the number
        /// its own PID namespace gives it (see ``holderInAnotherPIDNamespace``).
        public var holderPID: Int32?
        /// Whether that process is running: told by a lock the kernel holds
        /// for it while it lives, so right across PID namespaces too.
        public var holderAlive: Bool
        /// Whether the holder's PID namespace is known to differ from the
        /// inspecting process's (another container sharing the file), so
        /// its PID names another process here, or none.
        public var holderInAnotherPIDNamespace: Bool = false
        /// Locks taken since creation.
        public var acquisitions: UInt64
        /// Interrupted writes rolled back since creation.
        public var recoveries: UInt64
        /// Times a first opener re-initialized the lock.
        public var resets: UInt64
        /// The PID whose interrupted write was last rolled back.
        public var lastRecoveredPID: Int32?
        /// Whether that PID was known to belong to another PID namespace than the inspecting process's.
        public var lastRecoveredInAnotherPIDNamespace: Bool = false
        /// `live`; `retiring` while a compaction in place copies the store
        /// with other processes attached; `retired` once a new file replaced
        /// it (seen only through an old file, never at the path).
        public var retirement: String = "live"
    }

    /// The undo journal's state.
    public struct Journal: Sendable, Codable, Hashable {
        /// `clean` or `dirty`.
        public var state: String
        /// The number of undo records.
        public var records: Int
        /// The bytes they occupy.
        public var bytes: Int
    }

    /// One field: where it lives and, for scalars and short strings, its value.
    public struct FieldInfo: Sendable, Codable, Hashable {
        /// The field's name.
        public var name: String
        /// The field's type, as ``FieldType/description`` spells it.
        public var type: String
        /// The field's first byte in the file.
        public var offset: Int
        /// The bytes reserved for it, with its prefix and padding.
        public var size: Int
        /// Present for scalars, strings up to 64 bytes and bytes up to 32,
        /// unless a write of the field is in progress or was interrupted.
        public var value: FieldValue?
        /// True when the field's sequence word is odd: a write is in progress,
        /// or was interrupted and the journal holds the old value.
        public var midWrite: Bool
        /// For a map field: its occupancy.
        public var map: MapStatistics?
    }

    /// The occupancy of a map field.
    public struct MapStatistics: Sendable, Codable, Hashable {
        /// Live entries.
        public var count: Int
        /// Buckets that removals by earlier builds left as tombstones, not yet
        /// reused (this build's removals leave none: they shift entries back).
        public var tombstones: Int
        /// The most entries the map holds.
        public var capacity: Int
        /// The number of buckets (a power of two, at least capacity × 4/3).
        public var buckets: Int
        /// Used buckets (live entries and tombstones) per bucket: what probes walk through.
        public var loadFactor: Double
        /// The most buckets a lookup of a present key visits.
        public var longestProbe: Int
        /// Buckets a lookup of each present key visits.
        public var probeLengths: ProbeLengths
        /// Buckets a lookup of an absent key visits, over every home bucket
        /// (the used buckets from there to the first empty one, and that one).
        public var missProbeLengths: ProbeLengths
    }

    /// A distribution of probe lengths, in buckets visited (0 for none).
    public struct ProbeLengths: Sendable, Codable, Hashable {
        /// The mean.
        public var mean: Double
        /// The 99th percentile: 99% of the lookups visit at most this many.
        public var p99: Int
        /// The most.
        public var max: Int
    }

    /// The inspected path.
    public var path: String
    /// Header facts.
    public var format: Format
    /// The stored schema's identity.
    public var schema: SchemaSummary
    /// The file's regions in order.
    public var regions: [Region]
    /// The lock.
    public var lock: Lock
    /// The undo journal.
    public var journal: Journal
    /// Every field in file order.
    public var fields: [FieldInfo]
}

extension SlotStore {
    /// Reads a store's header, lock, journal and fields without mapping the
    /// file, taking its lock or writing anything: it works on a store whose
    /// lock is stuck or whose owner is hung.
    public static func inspect(at path: String) throws(SlotStoreError) -> StoreInspection {
        let image = try FileImage.open(path, writable: false)
        defer { image.close() }
        let header = try image.header.get()
        let schema = try image.schema(for: header).get()
        let layout = try Layout(header: header, schema: schema, path: path)
        let state = StoreFileState(image: image, header: header, layout: layout)

        let created = Date(timeIntervalSince1970: Double(header.createdAtNanoseconds) / 1e9)
        let fields = layout.fields.map { field in
            let midWrite = field.hasSequence && state.sequence(of: field) & 1 == 1
            var statistics: StoreInspection.MapStatistics?
            if field.type.isMap {
                let scan = state.mapScan(field)
                statistics = .init(count: scan.entries.count, tombstones: scan.tombstones, capacity: scan.geometry.capacity,
                                   buckets: scan.geometry.bucketCount,
                                   loadFactor: Double(scan.entries.count + scan.tombstones) / Double(scan.geometry.bucketCount),
                                   longestProbe: scan.longestProbe,
                                   probeLengths: scan.probeLengths, missProbeLengths: scan.missProbeLengths)
            }
            return StoreInspection.FieldInfo(name: field.name, type: field.type.description, offset: field.offset,
                                             size: field.size, value: midWrite ? nil : state.shortValue(of: field),
                                             midWrite: midWrite, map: statistics)
        }
        return StoreInspection(
            path: path,
            format: .init(version: header.formatVersion, pageSize: Int(header.pageSize), fileSize: Int(header.fileSize),
                          generation: header.generation, createdAt: ISO8601DateFormatter().string(from: created),
                          cacheLineAligned: header.flags.contains(.cacheLineAligned)),
            schema: .init(version: schema.version, hash: "0x" + String(header.schemaHash, radix: 16), fields: schema.fields.count),
            regions: [
                .init(name: "header", offset: 0, size: layout.lockOffset),
                .init(name: "lock", offset: layout.lockOffset, size: layout.lockSize),
                .init(name: "journal", offset: layout.journalOffset, size: layout.journalSize),
                .init(name: "schema", offset: layout.schemaOffset, size: layout.schemaSize),
                .init(name: "data", offset: layout.dataOffset, size: layout.dataSize),
            ],
            lock: state.lock,
            journal: .init(state: state.journalRecords.isEmpty && state.journalUsed == 0 ? "clean" : "dirty",
                           records: state.journalRecords.count, bytes: state.journalUsed),
            fields: fields)
    }
}

/// The run-time state of a store as read from a `pread` copy: lock, journal, data.
extension StoreInspection.Lock {
    /// "PID 12", "PID 1 in another PID namespace", or "PID ?" when none is recorded.
    var holderName: String {
        holderPID.map { HolderIdentity.name(pid: $0, inAnotherPIDNamespace: holderInAnotherPIDNamespace) } ?? "PID ?"
    }
}

struct StoreFileState {
    let layout: Layout
    let lockBytes: RegionBytes
    let journalBytes: RegionBytes
    let data: RegionBytes
    let journalUsed: Int
    let journalRecords: [UndoJournal.Record]
    let journalDamage: String?
    let hashSeed: UInt64
    /// The lock holder, asked of the kernel through the image's descriptor (see `HolderIdentity`).
    let holder: HolderIdentity

    init(image: FileImage, header: FileHeader, layout: Layout) {
        self.layout = layout
        hashSeed = header.hashSeed
        let lockBytes = RegionBytes(bytes: image.bytes(at: layout.lockOffset, count: LockRegion.bytes), origin: layout.lockOffset)
        self.lockBytes = lockBytes
        holder = HolderIdentity.identify(
            word: lockBytes.u64(layout.lockOffset + LockRegion.holderOffset),
            slotCount: LockRegion.threadSlotCount(lockSize: layout.lockSize),
            slotRecord: { slot in
                let offset = layout.lockOffset + LockRegion.threadSlotsOffset + slot * LockRegion.threadSlotBytes + LockRegion.slotOwnerOffset
                let record = RegionBytes(bytes: image.bytes(at: offset, count: 8), origin: offset)
                return (Int32(truncatingIfNeeded: record.bits(offset, width: 4)), UInt32(truncatingIfNeeded: record.bits(offset + 4, width: 4)))
            },
            // The image's descriptor is its own open file description, so every holder is another one.
            slotHeld: { OpenGate.byteHeldByOthers(image.fd, LockRegion.threadSlotLockBase + $0) })
        journalBytes = RegionBytes(bytes: image.bytes(at: layout.journalOffset, count: layout.journalSize), origin: layout.journalOffset)
        data = RegionBytes(bytes: image.bytes(at: layout.dataOffset, count: layout.dataSize), origin: layout.dataOffset)
        journalUsed = Int(clamping: journalBytes.u64(layout.journalOffset))
        let journal = journalBytes
        let origin = layout.journalOffset
        (journalRecords, journalDamage) = UndoJournal.parse(
            usedBytes: journalUsed, capacity: layout.journalSize,
            dataRange: layout.dataOffset..<(layout.dataOffset + layout.dataSize),
            transaction: journal.u64(origin + UndoJournal.transactionOffset)) { journal.u64(origin + $0) }
    }

    var lockWord: UInt32 { UInt32(truncatingIfNeeded: lockBytes.bits(layout.lockOffset, width: 4)) }
    var holderPID: Int32 { holder.pid }
    var bootID: [UInt8] { lockBytes.slice(layout.lockOffset + LockRegion.bootIDOffset, count: 16) }
    var lockIsHeld: Bool { lockWord & (LockRegion.futexTIDMask | LockRegion.futexOwnerDied) != 0 }
    var lockFromAnotherBoot: Bool { bootID != LockRegion.currentBootID && bootID.contains { $0 != 0 } }

    var lock: StoreInspection.Lock {
        let alive = holder.alive
        let state: String
        if !lockIsHeld { state = "free" }
        else if lockFromAnotherBoot { state = "stale" }
        else if lockWord & LockRegion.futexOwnerDied != 0 || !alive { state = "needs-recovery" }
        else { state = "held" }
        let lastRecovered = Int32(truncatingIfNeeded: lockBytes.bits(layout.lockOffset + LockRegion.lastRecoveredPIDOffset, width: 4))
        let lastRecoveredNamespace = UInt32(truncatingIfNeeded: lockBytes.bits(layout.lockOffset + LockRegion.lastRecoveredPIDNamespaceOffset, width: 4))
        return .init(state: state, holderPID: holder.pid != 0 ? holder.pid : nil, holderAlive: holder.pid != 0 && alive,
                     holderInAnotherPIDNamespace: holder.inAnotherPIDNamespace,
                     acquisitions: lockBytes.u64(layout.lockOffset + LockRegion.acquisitionsOffset),
                     recoveries: lockBytes.u64(layout.lockOffset + LockRegion.recoveriesOffset),
                     resets: lockBytes.u64(layout.lockOffset + LockRegion.resetsOffset),
                     lastRecoveredPID: lastRecovered != 0 ? lastRecovered : nil,
                     lastRecoveredInAnotherPIDNamespace: lastRecovered != 0 && ProcessIdentity.isOtherPIDNamespace(lastRecoveredNamespace),
                     retirement: retirement)
    }

    var retirement: String {
        switch lockBytes.u64(layout.lockOffset + LockRegion.retirementOffset) {
        case Retirement.live: "live"
        case Retirement.retiring: "retiring"
        case Retirement.retired: "retired"
        case let other: "damaged (\(other); the next process to take the lock makes it live)"
        }
    }

    func sequence(of field: FieldLayout) -> UInt64 { data.u64(field.sequenceOffset) }

    /// The stored length of a string or bytes field, unclamped (verify checks it).
    func storedLength(of field: FieldLayout) -> UInt64 { data.u64(field.secondWordOffset) }

    func value(of field: FieldLayout) -> FieldValue {
        switch field.type {
        case .scalar(let type) where field.perProcess != nil:
            return type.value(fromBits: ProcessSlotWords.aggregate(field) { data.u64($0) })
        case .scalar(let type):
            return type.value(fromBits: data.bits(field.offset, width: type.byteWidth))
        case .array(let element, let count):
            return .array((0..<count).map { element.value(fromBits: data.bits(field.payloadOffset + $0 * element.byteWidth, width: element.byteWidth)) })
        case .string(let capacity), .bytes(let capacity):
            let length = Int(min(storedLength(of: field), UInt64(capacity)))
            let bytes = data.slice(field.payloadOffset, count: length)
            if case .string = field.type { return .string(String(decoding: bytes, as: UTF8.self)) }
            return .bytes(bytes)
        case .map(let keyType, let valueType, _):
            let scan = mapScan(field)
            return .map(scan.entries.map { entry in
                var image = slice(entry.valueOffset, count: scan.geometry.valueBytes)
                let value = image.withUnsafeMutableBytes { MapCodec.read(type: valueType, from: MappedAddress($0.baseAddress!)) }
                let key = entry.key.withUnsafeBytes { MapCodec.key(from: $0, type: keyType) }
                return FieldValue.MapEntry(key: key, value: value)
            }.sorted { $0.key.sortsBefore($1.key) })
        }
    }

    private func slice(_ offset: Int, count: Int) -> [UInt8] {
        let bytes = data.slice(offset, count: count)
        return bytes.count == count ? bytes : [UInt8](repeating: 0, count: max(count, 8))
    }

    /// A map's buckets as the file holds them, with what verify and inspect need.
    struct MapScan {
        struct Entry {
            let bucket: Int
            let key: [UInt8]
            let valueOffset: Int
            let probeDistance: Int
        }
        let geometry: MapGeometry
        let storedCount: UInt64
        let storedTombstones: UInt64
        var entries: [Entry] = []
        var tombstones = 0
        var oddSequences: [Int] = []
        /// The move sequence word is odd: a removal was moving entries (or died doing so).
        var midMove = false
        var unreachable: [Int] = []
        var badKeyLengths: [Int] = []
        var duplicateKeys = 0
        var missProbeLengths = StoreInspection.ProbeLengths(mean: 0, p99: 0, max: 0)
        var longestProbe: Int { entries.map(\.probeDistance).max().map { $0 + 1 } ?? 0 }
        /// A bucket or the move sequence word was left mid-write.
        var interrupted: Bool { !oddSequences.isEmpty || midMove }

        var probeLengths: StoreInspection.ProbeLengths {
            MapScan.distribution(entries.map { $0.probeDistance + 1 })
        }

        static func distribution(_ lengths: [Int]) -> StoreInspection.ProbeLengths {
            guard !lengths.isEmpty else { return .init(mean: 0, p99: 0, max: 0) }
            let sorted = lengths.sorted()
            let total = sorted.reduce(0, +)
            // The nearest-rank percentile: the smallest length at least 99% of lookups stay within.
            let rank = (sorted.count * 99 + 99) / 100
            return .init(mean: Double(total) / Double(sorted.count), p99: sorted[rank - 1], max: sorted[sorted.count - 1])
        }
    }

    func mapScan(_ field: FieldLayout) -> MapScan {
        guard case .map(let keyType, let valueType, let capacity) = field.type else {
            return MapScan(geometry: MapGeometry(key: .scalar(.int64), value: .scalar(.int64), capacity: 1), storedCount: 0, storedTombstones: 0)
        }
        let geometry = MapGeometry(key: keyType, value: valueType, capacity: capacity)
        var scan = MapScan(geometry: geometry, storedCount: data.u64(field.offset + MapGeometry.countOffset),
                           storedTombstones: data.u64(field.offset + MapGeometry.tombstonesOffset))
        let epoch = data.u64(field.offset + MapGeometry.epochOffset) & 0xFFFF_FFFF
        let seed = MapTable.seed(store: hashSeed, fieldIndex: field.index)
        let mask = geometry.bucketCount - 1
        var live = [UInt8](repeating: 0, count: geometry.bucketCount)  // 0 empty, 1 full, 2 tombstone
        var seen = Set<[UInt8]>()
        for index in 0..<geometry.bucketCount {
            let offset = field.offset + MapGeometry.headerBytes + index * geometry.bucketBytes
            if data.u64(offset) & 1 == 1 { scan.oddSequences.append(index) }
            let meta = data.u64(offset + 8)
            guard meta >> 32 == epoch else { continue }
            switch meta & 3 {
            case MapTable.full:
                live[index] = 1
                let length = Int((meta >> 8) & 0xFF_FFFF)
                guard length <= geometry.keyCapacity else { scan.badKeyLengths.append(index); continue }
                let key = data.slice(offset + MapGeometry.bucketPrefixBytes, count: length)
                if !seen.insert(key).inserted { scan.duplicateKeys += 1 }
                let home = key.withUnsafeBytes { Int(truncatingIfNeeded: MapTable.hash($0, seed: seed)) & mask }
                scan.entries.append(.init(bucket: index, key: key,
                                          valueOffset: offset + MapGeometry.bucketPrefixBytes + geometry.keyBytes,
                                          probeDistance: (index - home) & mask))
            case MapTable.tombstone:
                live[index] = 2
                scan.tombstones += 1
            default: break
            }
        }
        scan.midMove = data.u64(field.offset + MapGeometry.moveSequenceOffset) & 1 == 1
        // A miss from home bucket b visits every used bucket from b to the
        // first empty one, and that one: counted backwards from an empty bucket.
        if let empty = live.firstIndex(of: 0) {
            var misses = [Int](repeating: 0, count: geometry.bucketCount)
            var visits = 1
            misses[empty] = 1
            var index = (empty - 1) & mask
            while index != empty {
                visits = live[index] == 0 ? 1 : visits + 1
                misses[index] = visits
                index = (index - 1) & mask
            }
            scan.missProbeLengths = MapScan.distribution(misses)
        } else {
            let all = geometry.bucketCount
            scan.missProbeLengths = .init(mean: Double(all), p99: all, max: all)
        }
        // Every entry must be reachable from its home bucket without crossing an empty one.
        for entry in scan.entries where entry.probeDistance > 0 {
            var index = (entry.bucket - entry.probeDistance) & mask
            while index != entry.bucket {
                if live[index] == 0 { scan.unreachable.append(entry.bucket); break }
                index = (index + 1) & mask
            }
        }
        return scan
    }

    /// The value for inspect's listing: scalars, strings up to 64 bytes, bytes up to 32.
    func shortValue(of field: FieldLayout) -> FieldValue? {
        switch field.type {
        case .scalar: return value(of: field)
        case .string: return storedLength(of: field) <= 64 ? value(of: field) : nil
        case .bytes: return storedLength(of: field) <= 32 ? value(of: field) : nil
        case .array, .map: return nil
        }
    }
}
