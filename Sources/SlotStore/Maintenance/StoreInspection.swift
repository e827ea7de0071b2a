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
        /// Entries in the map's buckets: in a map with a cache policy, the
        /// expired ones not yet reclaimed too (see ``live`` and ``expired``).
        public var count: Int
        /// Buckets that removals by earlier builds left as tombstones, not yet
        /// reused (this build's removals leave none: they shift entries back).
        public var tombstones: Int
        /// The most entries the map holds.
        public var capacity: Int
        /// The number of buckets: `ceil(capacity × 20 / 17)`, at least 4, in a
        /// format 2.0 store; in a 1.x store's map (layout 1), a power of two,
        /// at least capacity × 4/3.
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
        /// How the map grows by itself; nil for a map of fixed capacity.
        public var growth: MapGrowth?
        /// The map's cache policy; nil for a map whose entries never expire.
        public var cache: MapCache?
        /// With a cache policy: the entries not expired at the inspecting
        /// process's real-time clock (nil without a policy: all are live).
        public var live: Int?
        /// With a cache policy: the entries expired (invisible to reads) but
        /// not yet reclaimed, at the inspecting process's real-time clock.
        public var expired: Int?
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

    /// A process that has the store open, as its attachment and thread slots
    /// in the lock region record it.
    public struct AttachedProcess: Sendable, Codable, Hashable {
        /// The PID the process recorded: the number its own PID namespace gives it.
        public var pid: Int32
        /// Whether its PID namespace is known to differ from the inspecting
        /// process's (another container sharing the file): the PID then names
        /// another process here, or none.
        public var inAnotherPIDNamespace: Bool
        /// The lock region's slots it holds: one per open of the store (its
        /// attachment slot), and one per thread that has written lock-free.
        public var slots: Int
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
    /// The processes that have the store open (other than through the
    /// inspecting descriptor), by PID. A slot counts while the kernel holds
    /// its byte lock for a live open file description, so a process that
    /// died is never listed, in whatever PID namespace it ran.
    public var attached: [AttachedProcess] = []
}

extension SlotStore {
    /// Reads a store's header, lock, journal and fields without mapping the
    /// file, taking its lock or writing anything: it works on a store whose
    /// lock is stuck or whose owner is hung.
    public static func inspect(at path: String) throws(SlotStoreError) -> StoreInspection {
        try inspect(at: path, progress: nil)
    }

    /// ``inspect(at:)``, reporting its walk of each map (a few MiB of buckets
    /// at a time, so memory stays flat) through `progress`.
    @_spi(Tools)
    public static func inspect(at path: String, progress: ((WorkProgress) -> Void)?) throws(SlotStoreError) -> StoreInspection {
        let image = try FileImage.open(path, writable: false)
        defer { image.close() }
        let header = try image.header.get()
        let schema = try image.schema(for: header).get()
        let layout = try Layout(header: header, schema: schema, path: path)
        var state = StoreFileState(image: image, header: header, layout: layout)
        state.progress = progress

        let created = Date(timeIntervalSince1970: Double(header.createdAtNanoseconds) / 1e9)
        let fields = layout.fields.map { field in
            let midWrite = field.hasSequence && state.sequence(of: field) & 1 == 1
            var statistics: StoreInspection.MapStatistics?
            if field.type.isMap {
                let scan = state.mapScan(field)
                statistics = .init(count: scan.entryCount, tombstones: scan.tombstones, capacity: scan.geometry.capacity,
                                   buckets: scan.geometry.bucketCount,
                                   loadFactor: Double(scan.entryCount + scan.tombstones) / Double(scan.geometry.bucketCount),
                                   longestProbe: scan.longestProbe,
                                   probeLengths: scan.probeLengths, missProbeLengths: scan.missProbeLengths,
                                   growth: schema.field(named: field.name)?.growth, cache: field.cache,
                                   live: field.cache == nil ? nil : scan.entryCount - scan.expiredCount,
                                   expired: field.cache == nil ? nil : scan.expiredCount)
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
            fields: fields, attached: state.attachedProcesses)
    }

    /// The lock as ``inspect(at:)`` reports it, read without the fields: what
    /// `slotstore` polls while a command waits for the lock, to name the holder.
    /// `openedExclusively` is true while another process holds the store
    /// exclusively (a first opener resetting it, or a compaction in place
    /// with nobody else attached), which makes openers wait.
    @_spi(Tools)
    public static func lockState(at path: String) throws(SlotStoreError) -> (lock: StoreInspection.Lock, openedExclusively: Bool) {
        let image = try FileImage.open(path, writable: false)
        defer { image.close() }
        let header = try image.header.get()
        let layout = try Layout(header: header, schema: image.schema(for: header).get(), path: path)
        let state = StoreFileState(image: image, header: header, layout: layout)
        return (state.lock, OpenGate.heldExclusivelyByOthers(image.fd))
    }
}

/// The run-time state of a store as read from a `pread` copy: lock, journal, data.
extension StoreInspection.Lock {
    /// "PID 12", "PID 1 in another PID namespace", or "PID ?" when none is recorded.
    var holderName: String {
        holderPID.map { HolderIdentity.name(pid: $0, inAnotherPIDNamespace: holderInAnotherPIDNamespace) } ?? "PID ?"
    }
}

/// The run-time state of a store as read with `pread`: the lock and journal
/// regions (small) copied whole, the data region read on demand, a field or
/// a few MiB of buckets at a time, so memory stays flat whatever the store's size.
struct StoreFileState {
    let image: FileImage
    let layout: Layout
    let lockBytes: RegionBytes
    let journalBytes: RegionBytes
    let journalUsed: Int
    let journalRecords: [UndoJournal.Record]
    let journalDamage: String?
    let hashSeed: UInt64
    /// The lock holder, asked of the kernel through the image's descriptor (see `HolderIdentity`).
    let holder: HolderIdentity
    /// Called as each map scan starts, goes (every 64 Ki buckets) and ends.
    var progress: ((WorkProgress) -> Void)?
    /// "checking" (verify) or "reading" (inspect), for the progress steps.
    var verb = "reading"
    /// Map scans already done: verify asks for a map's twice (the lock check and the field check).
    private let scans = ScanCache()

    /// How many bytes of buckets one `pread` brings in.
    static let chunkBytes = 4 << 20

    init(image: FileImage, header: FileHeader, layout: Layout) {
        self.image = image
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

    /// The live owners of the lock region's slots, grouped by process.
    var attachedProcesses: [StoreInspection.AttachedProcess] {
        var slots: [StoreInspection.AttachedProcess] = []
        for slot in 0..<LockRegion.threadSlotCount(lockSize: layout.lockSize)
        where OpenGate.byteHeldByOthers(image.fd, LockRegion.threadSlotLockBase + slot) {
            let offset = layout.lockOffset + LockRegion.threadSlotsOffset + slot * LockRegion.threadSlotBytes + LockRegion.slotOwnerOffset
            let record = RegionBytes(bytes: image.bytes(at: offset, count: 8), origin: offset)
            let pid = Int32(truncatingIfNeeded: record.bits(offset, width: 4))
            guard pid != 0 else { continue }  // being claimed: its owner is not written yet
            let otherNamespace = ProcessIdentity.isOtherPIDNamespace(UInt32(truncatingIfNeeded: record.bits(offset + 4, width: 4)))
            if let index = slots.firstIndex(where: { $0.pid == pid && $0.inAnotherPIDNamespace == otherNamespace }) {
                slots[index].slots += 1
            } else {
                slots.append(.init(pid: pid, inAnotherPIDNamespace: otherNamespace, slots: 1))
            }
        }
        return slots.sorted { ($0.inAnotherPIDNamespace ? 1 : 0, $0.pid) < ($1.inAnotherPIDNamespace ? 1 : 0, $1.pid) }
    }

    var retirement: String {
        switch lockBytes.u64(layout.lockOffset + LockRegion.retirementOffset) {
        case Retirement.live: "live"
        case Retirement.retiring: "retiring"
        case Retirement.retired: "retired"
        case let other: "damaged (\(other); the next process to take the lock makes it live)"
        }
    }

    // MARK: Data, read on demand

    /// `count` bytes of the data region at file offset `offset` (zeros past the file's end).
    func data(_ offset: Int, count: Int) -> RegionBytes {
        var bytes = image.bytes(at: offset, count: count)
        if bytes.count < count { bytes += [UInt8](repeating: 0, count: count - bytes.count) }
        return RegionBytes(bytes: bytes, origin: offset)
    }

    /// The little-endian word at file offset `offset`.
    func u64(_ offset: Int) -> UInt64 { data(offset, count: 8).u64(offset) }

    func sequence(of field: FieldLayout) -> UInt64 { u64(field.sequenceOffset) }

    /// The stored length of a string or bytes field, unclamped (verify checks it).
    func storedLength(of field: FieldLayout) -> UInt64 { u64(field.secondWordOffset) }

    /// Calls `body` with the bytes at `offset..<offset + count`, a few MiB at a
    /// time (zeros past the file's end), and the file offset of each piece.
    func forEachChunk(at offset: Int, count: Int, unit: Int = 1, _ body: (Int, UnsafeRawBufferPointer) -> Void) {
        guard count > 0 else { return }
        let step = max(unit, StoreFileState.chunkBytes / unit * unit)
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: min(step, count), alignment: 16)
        defer { buffer.deallocate() }
        var done = 0
        while done < count {
            let piece = min(step, count - done)
            var filled = 0
            while filled < piece {
                let n = pread(image.fd, buffer.baseAddress! + filled, piece - filled, off_t(offset + done + filled))
                if n < 0 && errno == EINTR { continue }
                guard n > 0 else { break }
                filled += n
            }
            if filled < piece { (buffer.baseAddress! + filled).initializeMemory(as: UInt8.self, repeating: 0, count: piece - filled) }
            body(offset + done, UnsafeRawBufferPointer(rebasing: buffer[0..<piece]))
            done += piece
        }
    }

    /// A scalar's, or a string's or bytes' value when short; nil for the rest.
    func value(of field: FieldLayout) -> FieldValue {
        switch field.type {
        case .scalar(let type) where field.perProcess != nil:
            return type.value(fromBits: ProcessSlotWords.aggregate(field) { u64($0) })
        case .scalar(let type):
            return type.value(fromBits: data(field.offset, count: 8).bits(field.offset, width: type.byteWidth))
        case .array(let element, let count):
            let payload = data(field.payloadOffset, count: count * element.byteWidth)
            return .array((0..<count).map { element.value(fromBits: payload.bits(field.payloadOffset + $0 * element.byteWidth, width: element.byteWidth)) })
        case .string(let capacity), .bytes(let capacity):
            let length = Int(min(storedLength(of: field), UInt64(capacity)))
            let bytes = data(field.payloadOffset, count: length).bytes
            if case .string = field.type { return .string(String(decoding: bytes, as: UTF8.self)) }
            return .bytes(bytes)
        case .map:
            return .map([])
        }
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

    // MARK: Maps

    /// A map's buckets as the file holds them, with what verify and inspect need.
    struct MapScan {
        let geometry: MapGeometry
        let storedCount: UInt64
        let storedTombstones: UInt64
        /// Live entries with a key length within the key capacity.
        var entryCount = 0
        /// Of those, in a map with a cache policy, the ones expired at the
        /// real-time clock when the scan ran.
        var expiredCount = 0
        var tombstones = 0
        /// Buckets whose sequence word is odd (left mid-write).
        var oddSequences = 0
        /// The move sequence word is odd: a removal was moving entries (or died doing so).
        var midMove = false
        /// Buckets (ascending) of entries a lookup cannot reach from their home bucket.
        var unreachable: [Int] = []
        /// Live buckets whose key length is over the key capacity.
        var badKeyLengths = 0
        /// Buckets of the current epoch whose meta word has bits the format
        /// keeps zero (2-7) or the unused state 3, and, in layout 2, buckets
        /// whose padding is not zero: bytes no writer writes, so damage.
        var badBucketBytes = 0
        /// Entries whose key another entry holds too (the extra copies).
        var duplicateKeys = 0
        var probeLengths = StoreInspection.ProbeLengths(mean: 0, p99: 0, max: 0)
        var missProbeLengths = StoreInspection.ProbeLengths(mean: 0, p99: 0, max: 0)
        var longestProbe: Int { probeLengths.max }
        /// A bucket or the move sequence word was left mid-write.
        var interrupted: Bool { oddSequences > 0 || midMove }
    }

    /// Counts of lengths, for a distribution without a length per bucket.
    struct LengthHistogram {
        var counts: [Int] = []
        var total = 0
        var sum = 0

        mutating func add(_ length: Int, times: Int = 1) {
            if length >= counts.count { counts += [Int](repeating: 0, count: max(length + 1 - counts.count, counts.count)) }
            counts[length] += times
            total += times
            sum += length * times
        }

        /// Mean, nearest-rank 99th percentile and maximum, as a sorted list of every length gives them.
        var distribution: StoreInspection.ProbeLengths {
            guard total > 0 else { return .init(mean: 0, p99: 0, max: 0) }
            let rank = (total * 99 + 99) / 100
            var seen = 0
            var p99 = 0
            for (length, count) in counts.enumerated() where count > 0 {
                seen += count
                if seen >= rank { p99 = length; break }
            }
            let maximum = counts.lastIndex { $0 > 0 } ?? 0
            return .init(mean: Double(sum) / Double(total), p99: p99, max: maximum)
        }
    }

    /// Verify's and inspect's view of a map, in one pass over its buckets a
    /// few MiB at a time (cached for the state's lifetime).
    ///
    /// The walk starts after an empty bucket, so each run of used buckets
    /// (entries and tombstones) is seen whole: an entry is reachable when its
    /// home bucket lies in its run, a miss from a bucket of a run of length L
    /// visits the rest of the run and the empty bucket after it, and two
    /// reachable copies of a key share their home, so share a run: duplicates
    /// are found within runs (and, for the rare unreachable entry, by a second
    /// pass over the keys with its hash). Memory is the longest run's keys.
    func mapScan(_ field: FieldLayout) -> MapScan {
        if let cached = scans.scans[field.index] { return cached }
        let scan = scanMap(field)
        scans.scans[field.index] = scan
        return scan
    }

    private func scanMap(_ field: FieldLayout) -> MapScan {
        guard let geometry = field.mapGeometry else {
            return MapScan(geometry: MapGeometry(key: .scalar(.int64), value: .scalar(.int64), capacity: 1, version: .v2),
                           storedCount: 0, storedTombstones: 0)
        }
        let header = data(field.offset, count: MapGeometry.headerBytes)
        var scan = MapScan(geometry: geometry, storedCount: header.u64(field.offset + MapGeometry.countOffset),
                           storedTombstones: header.u64(field.offset + MapGeometry.tombstonesOffset))
        scan.midMove = header.u64(field.offset + MapGeometry.moveSequenceOffset) & 1 == 1
        let epoch = header.u64(field.offset + MapGeometry.epochOffset) & 0xFFFF_FFFF
        let addressing = MapAddressing(geometry: geometry, storeSeed: hashSeed, fieldIndex: field.index)
        let buckets = geometry.bucketCount
        let bucketBytes = geometry.bucketBytes
        let keyCapacity = geometry.keyCapacity
        let bucketsStart = field.offset + MapGeometry.headerBytes
        let step = "\(verb) map \(field.name)"
        let entryWordOffset = geometry.entryWordBytes == 0 ? nil : geometry.entryWordOffset
        let now = CacheClock.systemMilliseconds()

        /// 0 empty, 1 full, 2 tombstone.
        @inline(__always) func state(_ bucket: UnsafeRawPointer) -> Int {
            let meta = bucket.loadUnaligned(fromByteOffset: 8, as: UInt64.self)
            guard meta >> 32 == epoch else { return 0 }
            switch meta & 3 {
            case MapTable.full: return 1
            case MapTable.tombstone: return 2
            default: return 0
            }
        }

        // An empty bucket to start after; none at all only in a damaged file.
        var firstEmpty: Int?
        var index = 0
        while firstEmpty == nil && index < buckets {
            let count = min(buckets - index, max(1, StoreFileState.chunkBytes / bucketBytes))
            forEachChunk(at: bucketsStart + index * bucketBytes, count: count * bucketBytes, unit: bucketBytes) { offset, bytes in
                guard firstEmpty == nil else { return }
                let first = (offset - bucketsStart) / bucketBytes
                for at in 0..<(bytes.count / bucketBytes) where state(bytes.baseAddress! + at * bucketBytes) == 0 {
                    firstEmpty = first + at
                    return
                }
            }
            index += count
        }

        var hits = LengthHistogram()
        var misses = LengthHistogram()
        var runLength = 0
        // The run's reachable entries: (hash, key offset in runKeys, key length).
        var runEntries: [(hash: UInt64, at: Int, length: Int)] = []
        var runKeys: [UInt8] = []
        var unreachable: [(bucket: Int, hash: UInt64, key: [UInt8])] = []
        var visited = 0
        progress?(WorkProgress(step: step, completed: 0, total: buckets))

        func endRun() {
            // Misses from the run's buckets visit the rest of the run and the empty bucket.
            if runLength > 0 {
                for length in 2...(runLength + 1) { misses.add(length) }
            }
            if runEntries.count > 1 { scan.duplicateKeys += StoreFileState.duplicates(in: &runEntries, keys: runKeys) }
            runEntries.removeAll(keepingCapacity: true)
            runKeys.removeAll(keepingCapacity: true)
            runLength = 0
        }

        let paddingWords = (geometry.bucketBytes - geometry.entryBytes) / 8
        func visit(_ bucket: Int, _ bytes: UnsafeRawPointer) {
            if bytes.loadUnaligned(as: UInt64.self) & 1 == 1 { scan.oddSequences += 1 }
            let rawMeta = bytes.loadUnaligned(fromByteOffset: 8, as: UInt64.self)
            var padding: UInt64 = 0
            for word in 0..<paddingWords { padding |= bytes.loadUnaligned(fromByteOffset: geometry.entryBytes + 8 * word, as: UInt64.self) }
            if (rawMeta >> 32 == epoch && (rawMeta & 0xFC != 0 || rawMeta & 3 == 3)) || padding != 0 { scan.badBucketBytes += 1 }
            switch state(bytes) {
            case 0:
                endRun()
                misses.add(1)
            case 2:
                runLength += 1
                scan.tombstones += 1
            default:
                runLength += 1
                let meta = bytes.loadUnaligned(fromByteOffset: 8, as: UInt64.self)
                let length = Int((meta >> 8) & 0xFF_FFFF)
                guard length <= keyCapacity else {
                    scan.badKeyLengths += 1
                    return
                }
                let key = UnsafeRawBufferPointer(start: bytes + MapGeometry.bucketPrefixBytes, count: length)
                let hash = addressing.hash(key)
                let distance = addressing.distance(from: addressing.home(ofHash: hash), to: bucket)
                scan.entryCount += 1
                if let entryWordOffset, MapExpiry.isExpired(bytes.loadUnaligned(fromByteOffset: entryWordOffset, as: UInt64.self), at: now) {
                    scan.expiredCount += 1
                }
                hits.add(distance + 1)
                if firstEmpty == nil || distance < runLength {
                    runEntries.append((hash, runKeys.count, length))
                    runKeys.append(contentsOf: key)
                } else {
                    unreachable.append((bucket, hash, Array(key)))
                }
            }
            visited += 1
            if visited & 0xFFFF == 0 { progress?(WorkProgress(step: step, completed: visited, total: buckets)) }
        }

        // Every bucket once: from after the empty one round to it (or, with none, from 0).
        let start = firstEmpty.map { addressing.next($0) } ?? 0
        for (from, to) in start == 0 ? [(0, buckets)] : [(start, buckets), (0, start)] {
            forEachChunk(at: bucketsStart + from * bucketBytes, count: (to - from) * bucketBytes, unit: bucketBytes) { offset, bytes in
                let first = (offset - bucketsStart) / bucketBytes
                for at in 0..<(bytes.count / bucketBytes) { visit(first + at, bytes.baseAddress! + at * bucketBytes) }
            }
        }
        endRun()
        if firstEmpty == nil {
            // Every bucket used: a miss visits them all.
            misses = LengthHistogram()
            misses.add(buckets, times: buckets)
        }
        scan.probeLengths = hits.distribution
        scan.missProbeLengths = misses.distribution
        if !unreachable.isEmpty {
            scan.unreachable = unreachable.map(\.bucket).sorted()
            scan.duplicateKeys += duplicatesOfUnreachable(unreachable, field: field, geometry: geometry, addressing: addressing, epoch: epoch)
        }
        progress?(WorkProgress(step: step, completed: buckets, total: buckets))
        return scan
    }

    /// The extra copies among a run's reachable keys: sorted by hash, keys of one hash compared.
    static func duplicates(in entries: inout [(hash: UInt64, at: Int, length: Int)], keys: [UInt8]) -> Int {
        entries.sort { $0.hash < $1.hash }
        var extra = 0
        var groupStart = 0
        keys.withUnsafeBytes { all in
            func key(_ entry: (hash: UInt64, at: Int, length: Int)) -> UnsafeRawBufferPointer {
                UnsafeRawBufferPointer(rebasing: all[entry.at..<(entry.at + entry.length)])
            }
            for index in 1...entries.count {
                guard index == entries.count || entries[index].hash != entries[groupStart].hash else { continue }
                if index - groupStart > 1 {
                    var distinct: [UnsafeRawBufferPointer] = []
                    for member in groupStart..<index {
                        let bytes = key(entries[member])
                        if distinct.contains(where: { $0.elementsEqual(bytes) }) { extra += 1 } else { distinct.append(bytes) }
                    }
                }
                groupStart = index
            }
        }
        return extra
    }

    /// The extra copies a key has beyond those counted within runs, for keys
    /// with an unreachable copy: a second pass collects every entry whose
    /// hash one of them has. A key with r reachable and u unreachable copies
    /// has r + u - 1 extra copies, of which the runs counted max(r - 1, 0).
    private func duplicatesOfUnreachable(_ unreachable: [(bucket: Int, hash: UInt64, key: [UInt8])], field: FieldLayout,
                                         geometry: MapGeometry, addressing: MapAddressing, epoch: UInt64) -> Int {
        let hashes = Set(unreachable.map(\.hash))
        let unreachableBuckets = Set(unreachable.map(\.bucket))
        var copies: [[UInt8]: (reachable: Int, unreachable: Int)] = [:]
        let bucketBytes = geometry.bucketBytes
        let bucketsStart = field.offset + MapGeometry.headerBytes
        forEachChunk(at: bucketsStart, count: geometry.bucketCount * bucketBytes, unit: bucketBytes) { offset, bytes in
            let first = (offset - bucketsStart) / bucketBytes
            for at in 0..<(bytes.count / bucketBytes) {
                let bucket = bytes.baseAddress! + at * bucketBytes
                let meta = bucket.loadUnaligned(fromByteOffset: 8, as: UInt64.self)
                guard meta >> 32 == epoch, meta & 3 == MapTable.full else { continue }
                let length = Int((meta >> 8) & 0xFF_FFFF)
                guard length <= geometry.keyCapacity else { continue }
                let key = UnsafeRawBufferPointer(start: bucket + MapGeometry.bucketPrefixBytes, count: length)
                guard hashes.contains(addressing.hash(key)) else { continue }
                var counts = copies[Array(key), default: (0, 0)]
                if unreachableBuckets.contains(first + at) { counts.unreachable += 1 } else { counts.reachable += 1 }
                copies[Array(key)] = counts
            }
        }
        return copies.values.reduce(0) { total, counts in
            guard counts.unreachable > 0 else { return total }
            return total + counts.reachable + counts.unreachable - 1 - max(counts.reachable - 1, 0)
        }
    }
}

/// The map scans a ``StoreFileState`` has done (a class, so the state stays a value).
final class ScanCache {
    var scans: [Int: StoreFileState.MapScan] = [:]
}

extension StoreFileState {
    /// Whether the bytes at `offset..<offset + count` are valid UTF-8, read a
    /// few MiB at a time (a string field may hold up to 1 GiB).
    func isValidUTF8(at offset: Int, count: Int) -> Bool {
        var decoder = UTF8()
        var pending: [UInt8] = []
        var valid = true
        forEachChunk(at: offset, count: count) { _, bytes in
            guard valid else { return }
            // A sequence cut by the chunk's end is finished with the next chunk's bytes.
            var cut = bytes.count
            var back = 0
            while back < 3 && back < bytes.count && bytes[bytes.count - 1 - back] & 0xC0 == 0x80 { back += 1 }
            if back < bytes.count && bytes[bytes.count - 1 - back] >= 0xC0 { cut = bytes.count - 1 - back }
            var joined = pending
            joined.append(contentsOf: bytes[0..<cut])
            pending = Array(bytes[cut...])
            var iterator = joined.makeIterator()
            loop: while true {
                switch decoder.decode(&iterator) {
                case .scalarValue: continue
                case .emptyInput: break loop
                case .error: valid = false; break loop
                }
            }
        }
        guard valid, !pending.isEmpty else { return valid }
        var iterator = pending.makeIterator()
        while true {
            switch decoder.decode(&iterator) {
            case .scalarValue: continue
            case .emptyInput: return true
            case .error: return false
            }
        }
    }
}
