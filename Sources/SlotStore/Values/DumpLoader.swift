import Glibc

/// What ``SlotStore/load(dumpAt:into:fileMode:options:progress:)`` did.
@_spi(Tools)
public struct DumpLoadReport: Sendable {
    /// Whether a new store was created at the path.
    public let created: Bool
    /// The number of fields the dump gave values for.
    public let fields: Int
}

extension SlotStore {
    /// Loads the dump at `dumpPath` into the store at `path`, reading it as
    /// it goes (never the whole file in memory).
    ///
    /// Where no store exists, one is created from the dump's schema under a
    /// hidden name beside `path`, filled without journaling (nobody else can
    /// have it open) as entries are parsed, flushed, and linked into place
    /// only when complete: a refused or killed load leaves nothing at `path`.
    /// Into an existing store, the values are first checked against its
    /// schema in one pass over the dump, then written in a second, in one
    /// journaled transaction: all or nothing.
    ///
    /// - Throws: ``DumpReadError`` for a dump that cannot be read or is not a
    ///   valid dump (naming the dump, the line and column, what was expected
    ///   and found), also for a value the store refuses (then naming the store
    ///   and field too); ``SlotStoreError`` for the store itself.
    @_spi(Tools)
    public static func load(dumpAt dumpPath: String, into path: String, options: OpenOptions,
                            progress: ((WorkProgress) -> Void)? = nil) throws -> DumpLoadReport {
        let fd = try DumpLoader.openDump(dumpPath)
        defer { Glibc.close(fd) }
        let loader = DumpLoader(source: JSONSource(fd: fd, path: dumpPath), storePath: path, progress: progress)
        if case .success(nil) = Syscall.kind(at: path) {
            return try loader.loadIntoNewStore(options: options)
        }
        return try loader.loadIntoExistingStore(options: options)
    }
}

/// The dump's top-level object read member by member, and its `values`
/// streamed into a store.
final class DumpLoader {
    private var reader: JSONValueReader
    private let dumpPath: String
    private let storePath: String
    /// The hidden file a new store is built in (named in the engine's errors).
    private var temporaryPath: String?
    private let progress: ((WorkProgress) -> Void)?

    private var seen = Set<[UInt8]>()
    private var format: String?
    private var formatVersion: Int?
    private(set) var schema: Schema?
    /// Where `values` begins when it was met before the schema (or must be read twice).
    private var valuesMark: JSONSource.Mark?
    /// Its text, for a dump that cannot be re-read (a pipe).
    private var valuesText: [UInt8]?
    private var fieldCount = 0

    private var keyBytes: [UInt8] = []
    private var valueBytes: [UInt8] = []

    init(source: JSONSource, storePath: String, progress: ((WorkProgress) -> Void)?) {
        reader = JSONValueReader(source: source)
        dumpPath = source.path
        self.storePath = storePath
        self.progress = progress
        keyBytes.reserveCapacity(64)
        valueBytes.reserveCapacity(64)
    }

    static func openDump(_ path: String) throws -> Int32 {
        let fd = Glibc.open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else {
            let code = errno
            let reason = switch code {
            case ENOENT: "no such file"
            case EACCES: "permission denied"
            default: String(cString: strerror(code))
            }
            throw DumpReadError(path: path, line: nil, column: nil, message: "cannot read the dump: \(reason)")
        }
        var status = stat()
        if fstat(fd, &status) == 0 && status.st_mode & S_IFMT == S_IFDIR {
            Glibc.close(fd)
            throw DumpReadError(path: path, line: nil, column: nil, message: "cannot read the dump: it is a directory")
        }
        return fd
    }

    private var source: JSONSource { reader.source }

    // MARK: Into a new store

    func loadIntoNewStore(options: OpenOptions) throws -> DumpLoadReport {
        let step = "loading \(dumpPath)"
        let total = fileSize()
        source.onRefill = { [progress] offset in progress?(WorkProgress(step: step, completed: min(offset, total), total: total)) }
        progress?(WorkProgress(step: step, completed: 0, total: total))
        try startObject()
        let atValues = try readMembers(stopAtValues: true)
        if !atValues { try finishObject() }
        guard let schema else { throw missing("schema") }
        try SlotStore.checkNothingAt(storePath)
        let temporary = TemporaryFiles.path(for: storePath, kind: "loading")
        temporaryPath = temporary
        do {
            try SlotStore.build(at: storePath, through: temporary, schema: schema, options: options) { core in
                if atValues {
                    try readValues(core: core, write: true, existing: false)
                    if try reader.next(UInt8(ascii: "}"), in: "the dump's top-level object") {
                        _ = try readMembers(stopAtValues: false)
                    }
                    try finishObject()
                } else {
                    try rereadValues { try readValues(core: core, write: true, existing: false) }
                }
                try checkMembers()
                progress?(WorkProgress(step: step, completed: total, total: total))
                if total > 1 << 20 { progress?(WorkProgress(step: "flushing \(storePath)", completed: 0, total: 1)) }
            }
        } catch let error as SlotStoreError {
            throw error.replacingPath(temporary, with: storePath)
        }
        if total > 1 << 20 { progress?(WorkProgress(step: "flushing \(storePath)", completed: 1, total: 1)) }
        return DumpLoadReport(created: true, fields: fieldCount)
    }

    // MARK: Into an existing store

    func loadIntoExistingStore(options: OpenOptions) throws -> DumpLoadReport {
        let total = fileSize()
        var step = "checking \(dumpPath)"
        source.onRefill = { [progress] offset in progress?(WorkProgress(step: step, completed: min(offset, total), total: total)) }
        progress?(WorkProgress(step: step, completed: 0, total: total))
        try startObject()
        _ = try readMembers(stopAtValues: false)
        try finishObject()
        try checkMembers()
        let store = try SlotStore(path: storePath, options: options)
        defer { store.close() }
        // Everything checked before anything is written: a refused value
        // leaves the file untouched (not even a journal record).
        try rereadValues { try readValues(core: store.core, write: false, existing: true) }
        progress?(WorkProgress(step: step, completed: total, total: total))
        step = "loading \(dumpPath)"
        progress?(WorkProgress(step: step, completed: 0, total: total))
        try store.lockedTransactionThrowing { core in
            try rereadValues { try readValues(core: core, write: true, existing: true) }
        }
        progress?(WorkProgress(step: step, completed: total, total: total))
        return DumpLoadReport(created: false, fields: fieldCount)
    }

    private func fileSize() -> Int {
        var status = stat()
        guard stat(dumpPath, &status) == 0, status.st_mode & S_IFMT == S_IFREG else { return 0 }
        return Int(status.st_size)
    }

    // MARK: The top-level object

    private func startObject() throws(DumpReadError) {
        // A UTF-8 byte order mark is allowed, as Foundation's decoder allows it.
        if try source.peek() == 0xEF {
            var bom: [UInt8] = []
            for _ in 0..<3 {
                let byte = try source.peek()
                if source.atEnd { break }
                bom.append(byte)
                source.advance()
            }
            guard bom == [0xEF, 0xBB, 0xBF] else { throw source.error("the file starts with bytes that are not UTF-8 JSON") }
        }
        try source.skipWhitespace()
        guard try source.peek() == UInt8(ascii: "{"), !source.atEnd else {
            throw source.error("expected a slotstore dump, a JSON object starting with '{', found \(source.describeNext())")
        }
        source.advance()
    }

    /// Reads members up to the end of the object, or (with `stopAtValues`)
    /// up to the value of `values` once the schema is known. Returns whether
    /// it stopped there.
    private func readMembers(stopAtValues: Bool) throws -> Bool {
        if seen.isEmpty, try reader.isEmpty(UInt8(ascii: "}")) { return false }
        repeat {
            try source.skipWhitespace()
            let name = try reader.memberName()
            try source.skipWhitespace()
            let valueStart = source.location
            guard seen.insert(name).inserted else {
                // Foundation's decoder keeps the first of two same-named members.
                try reader.skipValue()
                continue
            }
            switch String(decoding: name, as: UTF8.self) {
            case "format":
                guard try source.peek() == UInt8(ascii: "\"") else {
                    throw source.error("expected a string for \"format\", found \(source.describeNext())")
                }
                try reader.string(into: &reader.scratch)
                let found = String(decoding: reader.scratch, as: UTF8.self)
                guard found == StoreDump.formatName else {
                    throw source.error("expected format \"\(StoreDump.formatName)\", found \"\(found)\"", at: valueStart)
                }
                format = found
            case "formatVersion":
                guard case .int(let version) = try reader.number(), let small = Int(exactly: version) else {
                    throw source.error("expected a whole number for \"formatVersion\"", at: valueStart)
                }
                guard small <= StoreDump.currentVersion else {
                    throw source.error("dump format version \(small) is newer than this tool's \(StoreDump.currentVersion); use a newer slotstore", at: valueStart)
                }
                formatVersion = small
            case "schema":
                let location = source.location
                source.startRecording()
                try reader.skipValue()
                let text = source.stopRecording()
                do {
                    schema = try Schema(json: text, source: "the dump's schema")
                } catch {
                    throw DumpReadError(path: dumpPath, line: location.line, column: location.column,
                                        message: "the schema here is not usable: \(error)")
                }
            case "values":
                if stopAtValues && schema != nil { return true }
                if source.seekable {
                    valuesMark = source.mark
                    try reader.skipValue()
                } else {
                    // A pipe can't be read twice: keep this member's text.
                    let mark = source.mark
                    source.startRecording()
                    try reader.skipValue()
                    valuesText = source.stopRecording()
                    valuesMark = mark
                }
            default:
                // Members the dump format doesn't have are ignored, as they always were.
                try reader.skipValue()
            }
        } while try reader.next(UInt8(ascii: "}"), in: "the dump's top-level object")
        return false
    }

    /// After the top-level object: only whitespace may follow.
    private func finishObject() throws {
        try source.skipWhitespace()
        guard source.atEnd else {
            throw source.error("expected the end of the file after the dump's closing '}', found \(source.describeNext())")
        }
    }

    /// Every required member must have been there.
    private func checkMembers() throws {
        if format == nil { throw missing("format") }
        if formatVersion == nil { throw missing("formatVersion") }
        if schema == nil { throw missing("schema") }
        if !seen.contains(Array("values".utf8)) { throw missing("values") }
    }

    private func missing(_ member: String) -> DumpReadError {
        DumpReadError(path: dumpPath, line: nil, column: nil,
                      message: "not a slotstore dump: its top-level object has no \"\(member)\" member (a dump has \"format\", \"formatVersion\", \"schema\" and \"values\")")
    }

    /// Runs `body` with the reader at the start of `values` again.
    private func rereadValues(_ body: () throws -> Void) throws {
        guard let mark = valuesMark else { throw missing("values") }
        if let valuesText {
            let saved = reader
            reader = JSONValueReader(source: JSONSource(bytes: valuesText, path: dumpPath,
                                                        origin: (mark.offset, mark.line, mark.lineStart)))
            defer { reader = saved }
            try body()
        } else {
            source.rewind(to: mark)
            try body()
        }
    }

    // MARK: Values

    /// Reads the `values` object into `core`'s fields: converted and checked
    /// against the store's schema, and written when `write`.
    private func readValues(core: StoreCore, write: Bool, existing: Bool) throws {
        try source.skipWhitespace()
        guard try source.peek() == UInt8(ascii: "{"), !source.atEnd else {
            throw source.error("expected an object of field values for \"values\", found \(source.describeNext())")
        }
        source.advance()
        fieldCount = 0
        guard try !reader.isEmpty(UInt8(ascii: "}")) else { return }
        var fields = Set<[UInt8]>()
        repeat {
            try source.skipWhitespace()
            let nameStart = source.location
            let nameBytes = try reader.memberName()
            try source.skipWhitespace()
            guard fields.insert(nameBytes).inserted else {
                try reader.skipValue()  // the first of two wins
                continue
            }
            fieldCount += 1
            let name = String(decoding: nameBytes, as: UTF8.self)
            guard let field = core.layout.field(named: name) else {
                throw wrap(SlotStoreError.unknownField(path: core.path, name: name, available: core.layout.fields.map(\.name)), at: nameStart)
            }
            if case .map = field.type {
                try readMap(MapTable(core: core, field: field), write: write, existing: existing)
            } else {
                let start = source.location
                let value = try reader.fieldValue()
                do {
                    let converted = try value.converted(to: field.type, field: name, path: core.path)
                    if write { try core.writeValue(converted, to: field) }
                } catch {
                    throw wrap(error, at: start)
                }
            }
        } while try reader.next(UInt8(ascii: "}"), in: "\"values\"")
    }

    /// A value converted for a bucket: one scalar's bits, bytes kept in
    /// `valueArena` (start, count), or any value.
    private enum Prepared {
        case bits(UInt64)
        case bytes(Int, Int)
        case value(FieldValue)
    }

    /// An entry read but not yet inserted: its key is `keyArena[keyStart..<keyStart + keyLength]`.
    private struct PendingEntry {
        let keyStart: Int
        let keyLength: Int
        let value: Prepared
        let place: JSONSource.Location
        /// A cache map entry's deadline (its "expiresAt", ms; 0: none).
        var deadline: UInt64 = 0
    }

    /// Entries are inserted in batches of this many: their home buckets are
    /// touched together first, so the cache misses of a large map's random
    /// inserts overlap instead of coming one after another.
    static let insertBatch = 32

    private var keyArena: [UInt8] = []
    private var valueArena: [UInt8] = []
    private var pending: [PendingEntry] = []
    /// Keeps the touching loads of ``insertPending(_:core:valueType:name:keyType:)`` from being dropped.
    private var touched: UInt64 = 0

    /// A map's entries, inserted as they are read.
    private func readMap(_ table: MapTable, write: Bool, existing: Bool) throws {
        guard case .map(let keyType, let valueType, let capacity) = table.field.type else { return }
        let core = table.core
        let name = table.field.name
        let valueStart = source.location
        guard try source.peek() == UInt8(ascii: "["), !source.atEnd else {
            let value = try reader.fieldValue()
            throw wrap(SlotStoreError.invalidValue(path: core.path, field: name, detail: "expected a map ([{\"key\": …, \"value\": …}, …]), found \(value)"), at: valueStart)
        }
        source.advance()
        if write && existing { try table.removeAll() }
        guard try !reader.isEmpty(UInt8(ascii: "]")) else { return }
        let cursor = table.cursor
        // Held locally: reaching them through `self` costs a retain and release per use.
        let reader = self.reader
        let source = reader.source
        let fastValue = FastValue(valueType)
        let keyCapacity = table.geometry.keyCapacity
        let textKeys: Bool = switch keyType { case .string, .bytes: true; default: false }
        var count = 0
        keyArena.removeAll(keepingCapacity: true)
        valueArena.removeAll(keepingCapacity: true)
        pending.removeAll(keepingCapacity: true)
        repeat {
            try source.skipWhitespace()
            let entryStart = source.location
            guard try source.peek() == UInt8(ascii: "{"), !source.atEnd else {
                throw source.error("expected a map entry {\"key\": …, \"value\": …} in map \"\(name)\", found \(source.describeNext())")
            }
            source.advance()
            var haveKey = false
            var deadline: UInt64 = 0
            var prepared: Prepared?
            var late: (FieldValue, JSONSource.Location)?
            if try !reader.isEmpty(UInt8(ascii: "}")) {
                repeat {
                    try source.skipWhitespace()
                    let member = try reader.memberKind()
                    try source.skipWhitespace()
                    let start = source.location
                    if !haveKey && member == .key {
                        haveKey = true
                        if textKeys, try source.peek() == 0x22 {
                            // A string is its own bytes for string and bytes keys (the special doubles' texts included).
                            try reader.string(into: &keyBytes)
                            if keyBytes.count > keyCapacity {
                                throw wrap(SlotStoreError.valueTooLarge(path: core.path, field: "\(name) key", capacity: keyCapacity, size: keyBytes.count), at: start)
                            }
                        } else {
                            let raw = try reader.fieldValue()
                            do {
                                keyBytes = MapCodec.keyBytes(try raw.converted(to: keyType, field: name, path: core.path), type: keyType)
                            } catch {
                                throw wrap(Result { try raw.converted(to: keyType, field: "\(name) key", path: core.path) }.error ?? error, at: start)
                            }
                        }
                    } else if prepared == nil && late == nil && member == .value {
                        if haveKey {
                            prepared = try prepareValue(valueType, fast: fastValue, map: name, keyType: keyType, core: core, at: start)
                        } else {
                            late = (try reader.fieldValue(), start)
                        }
                    } else if member == .expiresAt && table.geometry.entryWordBytes != 0 {
                        deadline = try readDeadline(map: name, path: core.path, at: start)
                    } else {
                        // An "expiresAt" for a map without a cache policy is ignored: its entries never expire.
                        try reader.skipValue()
                    }
                } while try reader.next(UInt8(ascii: "}"), in: "a map entry")
            }
            guard haveKey, prepared != nil || late != nil else {
                throw source.error("a map entry of \"\(name)\" needs both \"key\" and \"value\"; this one lacks \"\(haveKey ? "value" : "key")\"", at: entryStart)
            }
            if let (value, start) = late {
                do {
                    prepared = .value(try value.converted(to: valueType, field: "\(name)[\(keyDescription(keyType))]", path: core.path))
                } catch { throw wrap(error, at: start) }
            }
            count += 1
            if count > capacity {
                // Count the rest, so the error says how many the dump has.
                while try reader.next(UInt8(ascii: "]"), in: "map \"\(name)\"") {
                    try reader.skipValue()
                    count += 1
                }
                throw wrap(SlotStoreError.mapFull(path: core.path, field: name, capacity: capacity, count: count), at: valueStart)
            }
            guard write else { continue }
            pending.append(PendingEntry(keyStart: keyArena.count, keyLength: keyBytes.count, value: prepared!, place: entryStart,
                                        deadline: deadline))
            keyArena.append(contentsOf: keyBytes)
            if pending.count == DumpLoader.insertBatch { try insertPending(cursor, core: core, valueType: valueType, name: name, keyType: keyType) }
        } while try reader.next(UInt8(ascii: "]"), in: "map \"\(name)\"")
        if !pending.isEmpty { try insertPending(cursor, core: core, valueType: valueType, name: name, keyType: keyType) }
    }

    /// A cache map entry's "expiresAt": milliseconds since the Unix epoch,
    /// from 0 (no deadline) to 2^63 - 1.
    private func readDeadline(map name: String, path: String, at start: JSONSource.Location) throws -> UInt64 {
        let raw = try reader.fieldValue()
        switch raw {
        case .int(let value) where value >= 0: return UInt64(value)
        case .uint(let value) where value <= MapExpiry.deadlineMask: return value
        default:
            throw wrap(SlotStoreError.invalidValue(path: path, field: name, detail: "expected \"expiresAt\" to be a deadline in milliseconds since 1970 (an integer from 0, no deadline, to \(MapExpiry.deadlineMask)), found \(raw)"), at: start)
        }
    }

    /// Inserts the batch read so far: touches every home bucket first (the
    /// loads are independent, so their misses overlap), then inserts in order.
    private func insertPending(_ cursor: MapCursor, core: StoreCore, valueType: FieldType, name: String, keyType: FieldType) throws {
        var touch: UInt64 = 0
        keyArena.withUnsafeBytes { keys in
            for entry in pending {
                let key = UnsafeRawBufferPointer(rebasing: keys[entry.keyStart..<(entry.keyStart + entry.keyLength)])
                let home = cursor.home(of: key)
                touch &+= cursor.bucket(home).advanced(by: 8).atomic(UInt64.self).pointee.load(ordering: .relaxed)
            }
        }
        touched &+= touch
        let failed: PendingEntry? = try keyArena.withUnsafeBytes { keys in
            try valueArena.withUnsafeBytes { values in
                for entry in pending {
                    let key = UnsafeRawBufferPointer(rebasing: keys[entry.keyStart..<(entry.keyStart + entry.keyLength)])
                    let (found, insertAt) = cursor.locate(key)
                    if found != nil { return entry }
                    let entryWord = entry.deadline | MapExpiry.usedBit
                    switch entry.value {
                    case .bits(let bits):
                        try cursor.insert(key, at: insertAt, in: core, entryWord: entryWord) { area in area.storeBits(bits, width: 8) }
                    case .bytes(let start, let count):
                        try cursor.insert(key, at: insertAt, in: core, entryWord: entryWord) { area in
                            area.atomic(UInt64.self).pointee.store(UInt64(count), ordering: .relaxed)
                            if count > 0 { area.advanced(by: 8).copyBytes(from: values.baseAddress! + start, count: count) }
                        }
                    case .value(let converted):
                        try cursor.insert(key, at: insertAt, in: core, entryWord: entryWord) { area in MapCodec.write(converted, type: valueType, to: area) }
                    }
                }
                return nil
            }
        }
        if let failed {
            keyBytes = Array(keyArena[failed.keyStart..<(failed.keyStart + failed.keyLength)])
            throw wrap(SlotStoreError.invalidValue(path: core.path, field: name, detail: "the key \(keyDescription(keyType)) appears twice"), at: failed.place)
        }
        pending.removeAll(keepingCapacity: true)
        keyArena.removeAll(keepingCapacity: true)
        valueArena.removeAll(keepingCapacity: true)
    }

    private func keyDescription(_ keyType: FieldType) -> String {
        keyBytes.withUnsafeBytes { MapCodec.key(from: $0, type: keyType).description }
    }

    /// Reads an entry's value (the key already read) and converts it for the bucket.
    /// What an entry's value needs, worked out once per map (matching on a
    /// `FieldType`, an indirect enum, per entry costs a retain and release).
    private enum FastValue {
        case scalar(ScalarType)
        case text(capacity: Int)
        case other

        init(_ type: FieldType) {
            switch type {
            case .scalar(let scalar): self = .scalar(scalar)
            case .string(let capacity), .bytes(let capacity): self = .text(capacity: capacity)
            default: self = .other
            }
        }
    }

    /// Reads an entry's value (the key already read) and converts it for the bucket.
    private func prepareValue(_ type: FieldType, fast: FastValue, map name: String, keyType: FieldType, core: StoreCore,
                              at start: JSONSource.Location) throws -> Prepared {
        let reader = self.reader
        if case .text(let capacity) = fast, try reader.source.peek() == 0x22 {
            try reader.string(into: &valueBytes)
            if valueBytes.count > capacity {
                throw wrap(SlotStoreError.valueTooLarge(path: core.path, field: "\(name)[\(keyDescription(keyType))]", capacity: capacity, size: valueBytes.count), at: start)
            }
            let start = valueArena.count
            valueArena.append(contentsOf: valueBytes)
            return .bytes(start, valueBytes.count)
        }
        let raw = try reader.fieldValue()
        let converted: FieldValue
        do {
            converted = try raw.converted(to: type, field: name, path: core.path)
        } catch {
            // Named as before, "map[key]", which costs a key description: only for the error.
            throw wrap(Result { try raw.converted(to: type, field: "\(name)[\(keyDescription(keyType))]", path: core.path) }.error ?? error, at: start)
        }
        if case .scalar(let scalar) = fast { return .bits(scalar.bits(of: converted)) }
        return .value(converted)
    }

    /// A store's refusal of a value, placed in the dump; the engine's
    /// hidden file named as the path the caller gave.
    private func wrap(_ error: any Error, at place: JSONSource.Location) -> any Error {
        guard var storeError = error as? SlotStoreError else { return error }
        if let temporaryPath { storeError = storeError.replacingPath(temporaryPath, with: storePath) }
        return DumpReadError(path: dumpPath, line: place.line, column: place.column, message: "\(storeError)")
    }
}

extension SlotStore {
    /// ``lockedTransaction(_:)`` for a body that throws other errors too (a dump's).
    func lockedTransactionThrowing(_ body: (StoreCore) throws -> Void) throws {
        let core = try session.lockLive()
        try core.finishTransaction { try body(core) }
    }
}

extension Result {
    /// The failure, if any.
    var error: Failure? {
        if case .failure(let failure) = self { return failure }
        return nil
    }
}
