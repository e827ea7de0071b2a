/// What `slotstore verify` found.
public struct VerificationReport: Sendable, Codable, Hashable {
    /// One problem, with a stable code for scripts.
    public struct Finding: Sendable, Codable, Hashable, CustomStringConvertible {
        /// A short stable identifier such as `header-checksum` or `journal-dirty`.
        public var code: String
        /// A sentence saying what is wrong and what to do.
        public var message: String
        /// `code: message`.
        public var description: String { "\(code): \(message)" }
    }

    /// The verified path.
    public var path: String
    /// Every problem found; empty when the store is sound.
    public var findings: [Finding]
    /// What was checked, in order, for the report.
    public var checked: [String]
    /// Observations that are not problems, such as a lock whose holder died
    /// with nothing to roll back (the next writer takes it over).
    public var notes: [String] = []
    /// Whether no problem was found.
    public var ok: Bool { findings.isEmpty }
}

extension SlotStore {
    /// Checks a store without writing to it or taking its lock: magic, version,
    /// both header copies and their checksums, sizes against the file, the
    /// stored schema, the field layout, the journal, the lock and each field's
    /// invariants. Reports every finding rather than stopping at the first.
    ///
    /// - Throws: only when there is no file to check (missing, unreadable, not a regular file).
    public static func verify(at path: String) throws(SlotStoreError) -> VerificationReport {
        try verify(at: path, progress: nil)
    }

    /// ``verify(at:)``, reporting its walk of each map (a few MiB of buckets
    /// at a time, so memory stays flat) through `progress`.
    @_spi(Tools)
    public static func verify(at path: String, progress: ((WorkProgress) -> Void)?) throws(SlotStoreError) -> VerificationReport {
        let image = try FileImage.open(path, writable: false)
        defer { image.close() }
        var findings: [VerificationReport.Finding] = []
        var checked: [String] = []
        var notes: [String] = []
        func find(_ code: String, _ message: String) { findings.append(.init(code: code, message: message)) }

        checked.append("header")
        let header: FileHeader
        switch (image.header, image.headerCopy) {
        case (.success(let primary), .success(let copy)):
            header = primary
            if primary != copy { find("header-copy", "the header copy at offset \(FileHeader.copyOffset) differs from the header; `slotstore repair` rewrites it") }
        case (.success(let primary), .failure(let error)):
            header = primary
            find("header-copy", "the header copy at offset \(FileHeader.copyOffset) is unusable (\(error)); `slotstore repair` rewrites it")
        case (.failure(let error), .success(let copy)):
            header = copy
            find(code(of: error), "\(error) (the copy at offset \(FileHeader.copyOffset) is intact)")
        case (.failure(let error), .failure):
            find(code(of: error), "\(error); the header copy is unusable too, so nothing else can be checked")
            return VerificationReport(path: path, findings: findings, checked: checked, notes: notes)
        }
        if header.lockABI != LockRegion.currentABI {
            find("lock-abi", "the lock was made for \(LockRegion.describeABI(header.lockABI)), this tool uses \(LockRegion.describeABI(LockRegion.currentABI))")
        }

        checked.append("schema")
        let schema: Schema
        switch image.schema(for: header) {
        case .success(let decoded): schema = decoded
        case .failure(let error):
            find("schema", error.description)
            return VerificationReport(path: path, findings: findings, checked: checked, notes: notes)
        }

        checked.append("layout")
        let layout: Layout
        do {
            layout = try Layout(header: header, schema: schema, path: path)
        } catch {
            find("layout", error.description)
            return VerificationReport(path: path, findings: findings, checked: checked, notes: notes)
        }
        var end = layout.dataOffset
        for field in layout.fields {
            if field.offset < end || field.offset % 8 != 0 || field.offset + field.size > layout.dataOffset + layout.dataSize {
                find("layout", "field \"\(field.name)\" at offset \(field.offset) (\(field.size) bytes) overlaps another field, is misaligned or lies outside the data region")
            }
            end = field.offset + field.size
        }

        var state = StoreFileState(image: image, header: header, layout: layout)
        state.progress = progress
        state.verb = "checking"
        checked.append("lock")
        let lock = state.lock
        switch lock.state {
        case "needs-recovery":
            // A dead holder with a clean journal and settled fields left nothing
            // half done: the next locker takes the lock over. Only a holder that
            // died mid-write is a problem.
            let interrupted = state.journalUsed != 0
                || layout.fields.contains { $0.hasSequence && state.sequence(of: $0) & 1 == 1 }
                || layout.fields.contains { $0.type.isMap && state.mapScan($0).interrupted }
            if interrupted {
                find("lock-owner-dead", "the lock is held by \(lock.holderName), which died in the middle of a write; the next writer rolls it back, or run `slotstore repair`")
            } else {
                notes.append("the lock is held by \(lock.holderName), which is no longer running, with nothing to roll back; the next writer takes it over (`slotstore repair` does it now)")
            }
        case "stale":
            find("lock-stale", "the lock was left held before a reboot (by \(lock.holderName)); the next first opener resets it, or run `slotstore repair`")
        default: break
        }
        let liveWriter = lock.state == "held"

        checked.append("journal")
        if let damage = state.journalDamage {
            find("journal-damaged", "the undo journal is damaged: \(damage); `slotstore repair` rolls back the intact records and clears it")
        }
        if state.journalUsed != 0 && !liveWriter {
            find("journal-dirty", "the undo journal holds \(counted(state.journalRecords.count, "record")) (\(counted(state.journalUsed, "byte"))) of an interrupted write; `slotstore repair` (or the next writer) rolls it back, or completes it if it is a durable commit whose records are all sealed")
        }

        checked.append("fields")
        for field in layout.fields {
            switch field.type {
            case .scalar(.bool):
                let byte = state.data(field.offset, count: 1).bits(field.offset, width: 1)
                if byte > 1 { find("field-value", "bool field \"\(field.name)\" holds byte \(byte), expected 0 or 1") }
            case .scalar:
                break
            case .array(let element, let count):
                if state.sequence(of: field) & 1 == 1 && !liveWriter {
                    find("field-sequence", "array field \"\(field.name)\" was left mid-write (odd sequence word); the next writer or `slotstore repair` settles it")
                }
                if element == .bool {
                    state.forEachChunk(at: field.payloadOffset, count: count) { offset, bytes in
                        for (at, byte) in bytes.enumerated() where byte > 1 {
                            find("field-value", "bool element \"\(field.name)[\(offset - field.payloadOffset + at)]\" holds a byte other than 0 or 1")
                        }
                    }
                }
            case .string(let capacity), .bytes(let capacity):
                let length = state.storedLength(of: field)
                if length > UInt64(capacity) {
                    find("field-length", "field \"\(field.name)\" records length \(length), over its capacity \(capacity)")
                }
                if state.sequence(of: field) & 1 == 1 && !liveWriter {
                    find("field-sequence", "field \"\(field.name)\" was left mid-write (odd sequence word); the next writer or `slotstore repair` settles it")
                }
                if case .string = field.type, length <= UInt64(capacity), !state.isValidUTF8(at: field.payloadOffset, count: Int(length)) {
                    find("field-value", "string field \"\(field.name)\" holds bytes that are not valid UTF-8")
                }
            case .map:
                let scan = state.mapScan(field)
                if scan.storedCount != UInt64(scan.entryCount) {
                    find("map-count", "map \"\(field.name)\" records \(counted(scan.storedCount, "entry", plural: "entries")) but holds \(scan.entryCount)")
                }
                if scan.storedTombstones != UInt64(scan.tombstones) {
                    find("map-count", "map \"\(field.name)\" records \(counted(scan.storedTombstones, "tombstone")) but holds \(scan.tombstones)")
                }
                if scan.entryCount > scan.geometry.capacity {
                    find("map-count", "map \"\(field.name)\" holds \(counted(scan.entryCount, "entry", plural: "entries")), over its capacity \(scan.geometry.capacity)")
                }
                if !scan.unreachable.isEmpty {
                    find("map-unreachable", "map \"\(field.name)\" has \(scan.unreachable.count) entr\(scan.unreachable.count == 1 ? "y" : "ies") a lookup cannot reach from its hash (buckets \(scan.unreachable.prefix(5).map(String.init).joined(separator: ", ")))")
                }
                if scan.duplicateKeys > 0 {
                    find("map-duplicate", "map \"\(field.name)\" holds \(counted(scan.duplicateKeys, "duplicate key"))")
                }
                if scan.badBucketBytes > 0 {
                    find("map-bucket", "map \"\(field.name)\" has \(counted(scan.badBucketBytes, "bucket")) with bits set that the format keeps zero (meta bits 2-7, state 3, or padding): damage; `slotstore dump` and `load` into a new path keep the entries a lookup finds")
                }
                if scan.badKeyLengths > 0 {
                    find("map-key-length", "map \"\(field.name)\" has \(counted(scan.badKeyLengths, "key")) longer than the key capacity")
                }
                if scan.oddSequences > 0 && !liveWriter {
                    find("field-sequence", "map \"\(field.name)\" has \(counted(scan.oddSequences, "bucket")) left mid-write; the next writer or `slotstore repair` settles them")
                }
                if scan.midMove && !liveWriter {
                    find("field-sequence", "map \"\(field.name)\" was left in the middle of a removal moving entries (its move sequence word is odd); the next writer or `slotstore repair` settles it")
                }
            }
        }
        return VerificationReport(path: path, findings: findings, checked: checked, notes: notes)
    }

    private static func code(of error: SlotStoreError) -> String {
        switch error {
        case .emptyFile: "empty"
        case .truncated: "truncated"
        case .notAStore: "magic"
        case .unsupportedVersion: "version"
        case .headerChecksumMismatch: "header-checksum"
        case .corruptSchema: "schema"
        default: "header"
        }
    }
}
