import Foundation
import Glibc
import Testing
@testable import SlotStore

/// Thousands of damaged files, derived deterministically (seeded) from valid
/// stores: bit flips, truncations, extensions, and overwritten header, schema,
/// lock, journal, field and map bytes, some with their checksums fixed up so
/// the damage reaches the deeper checks. Each is verified, opened (and read),
/// repaired and verified again, without a crash, and verify must agree with open.
@Suite("Mutation fuzzing", .timeLimit(.minutes(5)))
struct MutationFuzzTests {
    static let cases = 4000
    static let seed: UInt64 = 0x5107_5709_E5EE_D001

    static let schema = Schema(version: 3, fields: [
        .int64("requests"), .double("load"), .bool("enabled"), .int8("small"), .uint32("mask"),
        .int64("alice"), .int64("bob"),
        .array("latency", of: .double, count: 8), .array("flags", of: .bool, count: 5), .array("buckets", of: .int64, count: 16),
        .string("motd", capacity: 40), .bytes("blob", capacity: 24),
        .map("hits", key: .string(capacity: 12), value: .scalar(.int64), capacity: 20),
        .map("names", key: .scalar(.int64), value: .string(capacity: 16), capacity: 6),
    ])

    /// Findings that mean the file cannot be opened: the header (both copies
    /// are reported through the one in use), its regions against the file
    /// size, the lock ABI, the stored schema and the field layout. Open checks
    /// exactly these and nothing else, so it must fail exactly when verify
    /// reports one of them. Every other finding (header copy, lock, journal,
    /// field and map contents) is damage that open tolerates: it resets the
    /// lock, rolls back what the journal holds and clamps what readers see.
    static let structural: Set<String> = ["empty", "truncated", "magic", "version", "header-checksum", "header",
                                          "lock-abi", "schema", "layout"]
    /// What a repair that neither refused nor threw must have mended.
    static let mendedByRepair: Set<String> = structural.subtracting(["lock-abi"])
        .union(["header-copy", "lock-owner-dead", "lock-stale", "journal-dirty", "journal-damaged", "field-sequence"])


    /// A valid store's bytes and what they mean.
    struct Base {
        let name: String
        let bytes: [UInt8]
        let header: FileHeader
        let layout: Layout
        let schemaBytes: [UInt8]
    }

    let directory = TemporaryDirectory(on: FileManager.default.isWritableFile(atPath: "/dev/shm") ? "/dev/shm" : NSTemporaryDirectory())

    // MARK: Bases

    /// Creates a filled store. The hash seed is fixed before any map entry is
    /// placed, so the buckets (and so every mutation) are the same each run.
    func makeStore(_ name: String, aligned: Bool = false) throws -> String {
        let path = directory.file(name)
        do {
            let store = try SlotStore(path: path, schema: Self.schema, options: OpenOptions(mode: .create, cacheLineAligned: aligned))
            store.close()
        }
        waitUntilNoOpener(path)
        var bytes = fileBytes(path)
        for offset in [0, FileHeader.copyOffset] {
            var header = Array(bytes[offset..<(offset + FileHeader.size)])
            header.setLittleEndian(UInt64(0x0123_4567_89AB_CDEF), at: 144)
            header.setLittleEndian(Int64(1_700_000_000_000_000_000), at: 136)
            header.setLittleEndian(CRC32C.checksum(header[0..<FileHeader.checksumOffset]), at: FileHeader.checksumOffset)
            bytes.replaceSubrange(offset..<(offset + FileHeader.size), with: header)
        }
        writeFileBytes(path, bytes)
        let store = try SlotStore(path: path, schema: Self.schema)
        try store.scalar("requests", as: Int64.self).store(123_456)
        try store.scalar("load", as: Double.self).store(0.75)
        try store.scalar("enabled", as: Bool.self).store(true)
        try store.scalar("small", as: Int8.self).store(-5)
        try store.scalar("mask", as: UInt32.self).store(0xDEAD_BEEF)
        try store.scalar("alice", as: Int64.self).store(100)
        try store.array("latency", of: Double.self).store((0..<8).map { Double($0) / 3 })
        try store.array("flags", of: Bool.self).store([true, false, true, true, false])
        try store.array("buckets", of: Int64.self).store((0..<16).map { Int64($0 * $0) })
        try store.string("motd").store("hello, mutated world ✓")
        try store.bytes("blob").store([0, 1, 2, 3, 250, 251, 252, 253, 254, 255])
        let hits = try store.map("hits", key: String.self, value: Int64.self)
        for index in 0..<16 { try hits.set(Int64(index * 10), for: "/page/\(index)") }
        for index in stride(from: 0, to: 16, by: 3) { try hits.remove("/page/\(index)") }
        let names = try store.map("names", key: Int64.self, value: String.self)
        for index in 0..<5 { try names.set("name-\(index)", for: Int64(index * 7)) }
        try names.remove(14)
        store.close()
        waitUntilNoOpener(path)
        return path
    }

    func base(_ name: String, _ path: String) throws -> Base {
        let bytes = fileBytes(path)
        let header = try FileHeader.decode(Array(bytes.prefix(FileHeader.size)), path: path)
        let schemaBytes = Array(bytes[Int(header.schemaOffset)..<(Int(header.schemaOffset) + Int(header.schemaLength))])
        let schema = try Schema(json: schemaBytes)
        return Base(name: name, bytes: bytes, header: header, layout: try Layout(header: header, schema: schema, path: path),
                    schemaBytes: schemaBytes)
    }

    /// Clean stores, and stores left by a writer SIGKILLed in the middle of a
    /// locked write (dirty journal, odd sequence words, a dead lock owner).
    func bases() throws -> [Base] {
        var result: [Base] = []
        result.append(try base("clean", makeStore("clean.slots")))
        result.append(try base("aligned", makeStore("aligned.slots", aligned: true)))
        let crashes: [(String, [String], String)] = [
            ("string-mid-write", ["_worker", "set-string", "PATH", "motd", "a new value that is killed half way"], "midWrite:kill"),
            ("map-mid-write", ["_worker", "map-set", "PATH", "hits", "/new", "99"], "midWrite:kill"),
            ("transfer-after-write", ["_worker", "transfer-once", "PATH", "alice", "bob", "40"], "afterWrite:kill:2"),
        ]
        for (name, arguments, fault) in crashes {
            let path = try makeStore(name + ".slots")
            let result2 = try Tool.run(arguments.map { $0 == "PATH" ? path : $0 }, environment: ["SLOTSTORE_FAULT": fault])
            #expect(result2.killedBySIGKILL, "\(name): \(result2)")
            waitUntilNoOpener(path)
            result.append(try base(name, path))
        }
        return result
    }

    // MARK: Mutations

    enum Mutation: CaseIterable {
        case bitFlips, truncate, extend, headerBytes, headerField, schemaBytes, schemaText, journal, lock, map, field, zeroPage
    }

    /// Header fields as (offset, width).
    static let headerFields: [(Int, Int)] = [
        (8, 4), (12, 2), (14, 2), (16, 4), (20, 4), (24, 4), (28, 4), (32, 8), (40, 8), (48, 8), (56, 8), (64, 8),
        (72, 8), (80, 8), (88, 4), (92, 4), (96, 8), (104, 8), (112, 8), (120, 8), (128, 8), (136, 8), (144, 8),
    ]

    static func rechecksum(_ bytes: inout [UInt8], headerAt offset: Int) {
        guard bytes.count >= offset + FileHeader.size else { return }
        let checksum = CRC32C.checksum(bytes[offset..<(offset + FileHeader.checksumOffset)])
        bytes.setLittleEndian(checksum, at: offset + FileHeader.checksumOffset)
    }

    static func write<T: FixedWidthInteger>(_ value: T, at offset: Int, in bytes: inout [UInt8]) {
        guard offset >= 0, offset + MemoryLayout<T>.size <= bytes.count else { return }
        bytes.setLittleEndian(value, at: offset)
    }

    static func randomBytes(_ count: Int, _ random: inout SeededRandom) -> [UInt8] {
        (0..<count).map { _ in UInt8(truncatingIfNeeded: random.next()) }
    }

    /// A value for a word: small, boundary or random.
    static func interesting(_ current: UInt64, page: UInt64, _ random: inout SeededRandom) -> UInt64 {
        switch random.below(10) {
        case 0: return 0
        case 1: return 1
        case 2: return UInt64.max
        case 3: return current &+ 1
        case 4: return current &- 1
        case 5: return current &+ page
        case 6: return current &- page
        case 7: return current &* 2
        case 8: return UInt64(1) << UInt64(random.below(64))
        default: return random.next()
        }
    }

    /// A PID that is not running now.
    static let deadPID: Int32 = {
        var pid: Int32 = 4_000_000
        while kill(pid, 0) == 0 || errno != ESRCH { pid -= 1 }
        return pid
    }()

    /// Applies one mutation and says what it did.
    static func mutate(_ bytes: inout [UInt8], _ mutation: Mutation, base: Base, _ random: inout SeededRandom) -> String {
        let header = base.header
        let layout = base.layout
        let page = Int(header.pageSize)
        func region() -> Range<Int> {
            switch random.below(7) {
            case 0: return 0..<FileHeader.size
            case 1: return FileHeader.copyOffset..<(FileHeader.copyOffset + FileHeader.size)
            case 2: return layout.lockOffset..<(layout.lockOffset + LockRegion.bytes)
            case 3: return layout.journalOffset..<(layout.journalOffset + 512)
            case 4: return layout.schemaOffset..<(layout.schemaOffset + base.schemaBytes.count)
            case 5: return layout.dataOffset..<(layout.dataOffset + (layout.fields.last.map { $0.offset + $0.size - layout.dataOffset } ?? 8))
            default: return 0..<bytes.count
            }
        }
        switch mutation {
        case .bitFlips:
            let count = 1 + random.below(8)
            var flipped: [String] = []
            for _ in 0..<count {
                let range = region().clamped(to: 0..<bytes.count)
                guard !range.isEmpty else { continue }
                let offset = range.lowerBound + random.below(range.count)
                let bit = random.below(8)
                bytes[offset] ^= UInt8(1 << bit)
                flipped.append("\(offset).\(bit)")
            }
            return "flip bits \(flipped.joined(separator: " "))"
        case .truncate:
            let length = random.pick([0, 1 + random.below(255), FileHeader.size + random.below(FileHeader.copyOffset),
                                      bytes.count - 1, bytes.count - page, random.below(bytes.count),
                                      layout.dataOffset + random.below(max(1, bytes.count - layout.dataOffset))])
            let kept = max(0, min(bytes.count, length))
            bytes.removeSubrange(kept...)
            return "truncate to \(kept)"
        case .extend:
            let count = random.pick([1, 8, page, 1 + random.below(3 * page)])
            bytes += random.chance(50) ? [UInt8](repeating: 0, count: count) : randomBytes(count, &random)
            return "extend by \(count)"
        case .headerBytes:
            let targets = random.pick([[0], [FileHeader.copyOffset], [0, FileHeader.copyOffset]])
            let offset = random.below(FileHeader.size)
            let replacement = randomBytes(1 + random.below(16), &random)
            let fix = random.chance(60)
            for target in targets {
                for (index, byte) in replacement.enumerated() where target + offset + index < min(bytes.count, target + FileHeader.size) {
                    bytes[target + offset + index] = byte
                }
                if fix { rechecksum(&bytes, headerAt: target) }
            }
            return "overwrite header\(targets.count == 2 ? "s" : targets[0] == 0 ? "" : " copy") at +\(offset) (\(replacement.count) bytes)\(fix ? ", checksum fixed" : "")"
        case .headerField:
            let (offset, width) = random.pick(headerFields)
            let current: UInt64 = switch width {
            case 2: UInt64(bytes.littleEndian(UInt16.self, at: offset))
            case 4: UInt64(bytes.littleEndian(UInt32.self, at: offset))
            default: bytes.littleEndian(UInt64.self, at: offset)
            }
            let value = interesting(current, page: UInt64(page), &random)
            let targets = random.pick([[0], [0, FileHeader.copyOffset], [0, FileHeader.copyOffset], [FileHeader.copyOffset]])
            let fix = random.chance(90)
            for target in targets {
                switch width {
                case 2: write(UInt16(truncatingIfNeeded: value), at: target + offset, in: &bytes)
                case 4: write(UInt32(truncatingIfNeeded: value), at: target + offset, in: &bytes)
                default: write(value, at: target + offset, in: &bytes)
                }
                if fix { rechecksum(&bytes, headerAt: target) }
            }
            return "header field +\(offset) = \(value) in \(targets)\(fix ? ", checksum fixed" : "")"
        case .schemaBytes:
            let offset = layout.schemaOffset + random.below(base.schemaBytes.count)
            let replacement = randomBytes(1 + random.below(8), &random)
            for (index, byte) in replacement.enumerated() where offset + index < bytes.count { bytes[offset + index] = byte }
            let fix = random.chance(50)
            if fix {
                let checksum = CRC32C.checksum(bytes[layout.schemaOffset..<(layout.schemaOffset + base.schemaBytes.count)])
                for target in [0, FileHeader.copyOffset] {
                    write(checksum, at: target + 92, in: &bytes)
                    rechecksum(&bytes, headerAt: target)
                }
            }
            return "overwrite schema at +\(offset - layout.schemaOffset)\(fix ? ", checksum fixed" : "")"
        case .schemaText:
            var text = base.schemaBytes
            var what = ""
            switch random.below(5) {
            case 0:
                // Another number somewhere (a capacity, a count, the version).
                let digits = text.indices.filter { text[$0] >= 0x30 && text[$0] <= 0x39 }
                let at = random.pick(digits)
                let number = random.pick(["0", "1", "7", "64", "4096", "100000", "9999999999", "-1"])
                text.replaceSubrange(at...at, with: Array(number.utf8))
                what = "digit at \(at) -> \(number)"
            case 1:
                let names = ["int64", "double", "bool", "int8", "uint32", "string", "bytes", "map", "array", "float"]
                let from = random.pick(names), to = random.pick(names)
                if let range = String(decoding: text, as: UTF8.self).range(of: "\"\(from)\"") {
                    let string = String(decoding: text, as: UTF8.self).replacingCharacters(in: range, with: "\"\(to)\"")
                    text = Array(string.utf8)
                }
                what = "type \(from) -> \(to)"
            case 2:
                let start = random.below(text.count)
                let count = 1 + random.below(min(24, text.count - start))
                text.removeSubrange(start..<(start + count))
                what = "delete \(count) at \(start)"
            case 3:
                let string = String(decoding: text, as: UTF8.self)
                let replaced = random.chance(50) ? string.replacingOccurrences(of: "\"motd\"", with: "\"hits\"")
                    : string.replacingOccurrences(of: "\"capacity\":20", with: "\"capacity\":2000000")
                text = Array(replaced.utf8)
                what = "rename or grow a field"
            default:
                let at = random.below(text.count)
                text.insert(random.pick(Array("{}[],:\"0a\\ ".utf8)), at: at)
                what = "insert a byte at \(at)"
            }
            guard text.count <= layout.schemaSize else { return "schema text too long, unchanged" }
            bytes.replaceSubrange(layout.schemaOffset..<(layout.schemaOffset + layout.schemaSize),
                                  with: text + [UInt8](repeating: 0, count: layout.schemaSize - text.count))
            let parsed = try? Schema(json: text)
            let rehash = parsed != nil && random.chance(80)
            for target in random.chance(85) ? [0, FileHeader.copyOffset] : [0] {
                write(UInt32(text.count), at: target + 88, in: &bytes)
                write(CRC32C.checksum(text), at: target + 92, in: &bytes)
                if rehash, let parsed {
                    write(UInt64(truncatingIfNeeded: parsed.version), at: target + 112, in: &bytes)
                    write(parsed.fieldsHash, at: target + 120, in: &bytes)
                }
                rechecksum(&bytes, headerAt: target)
            }
            return "schema text: \(what)\(parsed == nil ? " (invalid JSON schema)" : rehash ? " (hash fixed)" : "")"
        case .journal:
            let journal = layout.journalOffset
            var cursor = UndoJournal.headerBytes
            var records: [String] = []
            for _ in 0..<(1 + random.below(4)) {
                let field = random.pick(layout.fields)
                let offset: Int = switch random.below(4) {
                case 0: field.offset
                case 1: field.payloadOffset & ~7
                case 2: layout.dataOffset + 8 * random.below(max(1, layout.dataSize / 8))
                default: Int(truncatingIfNeeded: random.next() % UInt64(bytes.count + 64))
                }
                let length = random.chance(90) ? 8 * (1 + random.below(min(32, max(1, field.size / 8)))) : random.below(1 << 20)
                let sequence = random.pick([0, field.sequenceOffset, field.offset + MapGeometry.headerBytes, random.below(bytes.count)])
                guard journal + cursor + UndoJournal.recordHeaderBytes + min(length, 4096) <= journal + layout.journalSize else { break }
                write(UInt64(offset), at: journal + cursor, in: &bytes)
                write(UInt64(length), at: journal + cursor + 8, in: &bytes)
                write(UInt64(sequence), at: journal + cursor + 16, in: &bytes)
                let image = min(length, 4096)
                for index in 0..<image where journal + cursor + 32 + index < bytes.count {
                    bytes[journal + cursor + 32 + index] = random.chance(50) ? 0 : UInt8(truncatingIfNeeded: random.next())
                }
                cursor += UndoJournal.recordHeaderBytes + image
                records.append("\(offset)+\(length)/seq \(sequence)")
            }
            let used = random.chance(85) ? UInt64(cursor - UndoJournal.headerBytes) : interesting(UInt64(cursor), page: UInt64(page), &random)
            write(used, at: journal, in: &bytes)
            write(random.chance(50) ? deadPID : Int32(truncatingIfNeeded: random.next()), at: journal + 8, in: &bytes)
            if random.chance(50) { plantLock(&bytes, layout, pid: deadPID, ownerDied: random.chance(50)) }
            return "journal used \(used): \(records.joined(separator: ", "))"
        case .lock:
            switch random.below(4) {
            case 0:
                let offset = random.below(LockRegion.bytes)
                let replacement = randomBytes(1 + random.below(16), &random)
                for (index, byte) in replacement.enumerated() where offset + index < LockRegion.bytes {
                    bytes[layout.lockOffset + offset + index] = byte
                }
                return "overwrite lock region at +\(offset) (\(replacement.count) bytes)"
            case 1:
                plantLock(&bytes, layout, pid: deadPID, ownerDied: random.chance(50))
                return "lock held by dead PID \(deadPID)"
            case 2:
                plantLock(&bytes, layout, pid: 1, ownerDied: false)
                return "lock held by live PID 1"
            default:
                for index in 0..<16 { bytes[layout.lockOffset + LockRegion.bootIDOffset + index] = UInt8(truncatingIfNeeded: random.next()) }
                if random.chance(50) { plantLock(&bytes, layout, pid: 1, ownerDied: false) }
                return "another boot ID"
            }
        case .map:
            let maps = layout.fields.filter(\.type.isMap)
            let field = random.pick(maps)
            guard let geometry = field.mapGeometry else { return "no map" }
            if random.chance(30) {
                let word = random.pick([MapGeometry.countOffset, MapGeometry.tombstonesOffset, MapGeometry.epochOffset])
                let current = bytes.littleEndian(UInt64.self, at: field.offset + word)
                let new = interesting(current, page: 1, &random)
                write(new, at: field.offset + word, in: &bytes)
                return "map \(field.name) header word +\(word) = \(new)"
            }
            let bucket = random.below(geometry.bucketCount)
            let start = field.offset + MapGeometry.headerBytes + bucket * geometry.bucketBytes
            switch random.below(5) {
            case 0:
                write(bytes.littleEndian(UInt64.self, at: start) | 1, at: start, in: &bytes)
                return "map \(field.name) bucket \(bucket) sequence odd"
            case 1:
                let epoch = random.chance(70) ? bytes.littleEndian(UInt64.self, at: field.offset + MapGeometry.epochOffset) : random.next()
                let meta = UInt64(random.below(4)) | UInt64(random.pick([0, 1, 5, geometry.keyCapacity, geometry.keyCapacity + 1, random.below(1 << 24)])) << 8
                    | (epoch & 0xFFFF_FFFF) << 32
                write(meta, at: start + 8, in: &bytes)
                return "map \(field.name) bucket \(bucket) meta \(String(meta, radix: 16))"
            case 2:
                let count = 1 + random.below(geometry.keyBytes)
                for index in 0..<count { bytes[start + MapGeometry.bucketPrefixBytes + index] = UInt8(truncatingIfNeeded: random.next()) }
                return "map \(field.name) bucket \(bucket) key bytes"
            case 3:
                let valueStart = start + MapGeometry.bucketPrefixBytes + geometry.keyBytes
                write(interesting(bytes.littleEndian(UInt64.self, at: valueStart), page: 4096, &random), at: valueStart, in: &bytes)
                return "map \(field.name) bucket \(bucket) value word"
            default:
                for index in 0..<geometry.bucketBytes { bytes[start + index] = UInt8(truncatingIfNeeded: random.next()) }
                return "map \(field.name) bucket \(bucket) random"
            }
        case .field:
            let field = random.pick(layout.fields.filter { !$0.type.isMap })
            if !field.hasSequence || random.chance(30) {
                let offset = field.payloadOffset + random.below(max(1, field.payloadCapacity))
                bytes[offset] = UInt8(truncatingIfNeeded: random.next())
                return "field \(field.name) payload byte +\(offset - field.payloadOffset)"
            }
            if random.chance(50) {
                write(bytes.littleEndian(UInt64.self, at: field.sequenceOffset) | 1, at: field.sequenceOffset, in: &bytes)
                return "field \(field.name) sequence odd"
            }
            let new = interesting(bytes.littleEndian(UInt64.self, at: field.secondWordOffset), page: 64, &random)
            write(new, at: field.secondWordOffset, in: &bytes)
            return "field \(field.name) second word = \(new)"
        case .zeroPage:
            let start = page * random.below(max(1, bytes.count / page))
            let end = min(bytes.count, start + page)
            for index in start..<end { bytes[index] = random.chance(80) ? 0 : 0xFF }
            return "blank page at \(start)"
        }
    }

    /// The mutex word and holder of a lock left held by `pid`.
    static func plantLock(_ bytes: inout [UInt8], _ layout: Layout, pid: Int32, ownerDied: Bool) {
        let word = UInt32(bitPattern: pid) | (ownerDied ? LockRegion.futexOwnerDied : 0)
        write(word, at: layout.lockOffset, in: &bytes)
        write(UInt32(1), at: layout.lockOffset + 4, in: &bytes)
        write(pid, at: layout.lockOffset + 8, in: &bytes)
        write(pid, at: layout.lockOffset + LockRegion.holderOffset, in: &bytes)
    }

    // MARK: The checks

    struct Outcome {
        var failures: [String] = []
        var opened = 0
        var refusedOpen: [String: Int] = [:]
        var repairs: [String: Int] = [:]
    }

    static func errorName(_ error: SlotStoreError) -> String {
        Mirror(reflecting: error).children.first?.label ?? "\(error)"
    }

    /// Reads every field of an open store and makes one locked write, to
    /// reach the read and write paths over damaged contents.
    static func exercise(_ store: SlotStore) {
        for field in store.schema.fields {
            _ = try? store.value(of: field.name)
            if case .map = field.type {
                if let map = try? store.map(field.name, key: String.self, value: Int64.self) {
                    _ = try? map.get("/page/1")
                    _ = try? map.set(1, for: "/fuzz")
                    _ = try? map.remove("/page/4")
                }
                if let map = try? store.map(field.name, key: Int64.self, value: String.self) {
                    _ = try? map.get(7)
                    _ = try? map.set("x", for: 99)
                }
            }
        }
        _ = try? store.string("motd").store("written after damage")
    }

    static func check(path: String, original: [UInt8], label: String, into outcome: inout Outcome) {
        func fail(_ text: String) { outcome.failures.append("\(label): \(text)") }
        func codes(_ report: VerificationReport) -> [String] { report.findings.map(\.code) }
        let options = OpenOptions(mode: .open, lockTimeout: .milliseconds(200))

        // 1. Verify, then open: they must agree on whether the file is usable.
        let before: VerificationReport
        do { before = try SlotStore.verify(at: path) } catch {
            fail("verify threw \(error)")
            return
        }
        let blocking = before.findings.filter { structural.contains($0.code) }
        do {
            let store = try SlotStore(path: path, options: options)
            outcome.opened += 1
            if !blocking.isEmpty { fail("open succeeded but verify reports \(blocking)") }
            exercise(store)
            store.close()
        } catch {
            outcome.refusedOpen[errorName(error), default: 0] += 1
            if blocking.isEmpty { fail("open failed with \(error) but verify reports only \(codes(before))") }
            if fileBytes(path) != original { fail("the refused open changed the file") }
        }

        // 2. Repair; what it did not refuse must be mended, and a second repair has nothing to do.
        let othersOpen: Bool = {
            let fd = open(path, O_RDONLY | O_CLOEXEC)
            defer { close(fd) }
            if case .success(true) = OpenGate.othersHaveOpen(fd) { return true }
            return false
        }()
        let repair: RepairReport
        do {
            repair = try SlotStore.repair(at: path)
        } catch {
            // Repair throws only when there is no file to look at; damage is a refusal.
            fail("repair threw \(error)")
            return
        }
        outcome.repairs[repair.refused == nil ? "repaired" : "refused", default: 0] += 1
        let after: VerificationReport
        do { after = try SlotStore.verify(at: path) } catch {
            fail("verify threw \(error) after repair")
            return
        }
        if let refused = repair.refused {
            if before.findings.allSatisfy({ !structural.contains($0.code) }) && !othersOpen {
                fail("repair refused (\(refused)) a file that opens (verify: \(codes(before)))")
            }
        } else if !othersOpen {
            let left = after.findings.filter { mendedByRepair.contains($0.code) }
            if !left.isEmpty { fail("after repair (\(repair.actions)) verify still reports \(left)") }
            do {
                let again = try SlotStore.repair(at: path)
                if !again.actions.isEmpty || again.refused != nil {
                    fail("a second repair still acts: \(again.actions) \(again.refused ?? "")")
                }
            } catch {
                fail("a second repair threw \(error)")
            }
        }

        // 3. The repaired file: open and verify agree again.
        let blockingAfter = after.findings.filter { structural.contains($0.code) }
        do {
            let store = try SlotStore(path: path, options: options)
            if !blockingAfter.isEmpty { fail("after repair, open succeeded but verify reports \(blockingAfter)") }
            exercise(store)
            store.close()
        } catch {
            if blockingAfter.isEmpty { fail("after repair, open failed with \(error) but verify reports only \(codes(after))") }
        }
    }

    @Test("damaged files: verify, open, repair never crash, and verify agrees with open")
    func mutatedStores() throws {
        let bases = try bases()
        var random = SeededRandom(state: Self.seed)
        var outcome = Outcome()
        var kinds: [String: Int] = [:]
        for index in 0..<Self.cases {
            let base = bases[index % bases.count]
            var bytes = base.bytes
            var applied: [String] = []
            let count = random.pick([1, 1, 1, 2, 2, 3])
            // Size changes last, so the others find every offset in the file.
            let mutations = (0..<count).map { _ in random.pick(Mutation.allCases) }
                .sorted { [.truncate, .extend].contains($1) && ![.truncate, .extend].contains($0) }
            for mutation in mutations {
                kinds["\(mutation)", default: 0] += 1
                applied.append(Self.mutate(&bytes, mutation, base: base, &random))
            }
            let path = directory.file("case-\(index).slots")
            writeFileBytes(path, bytes)
            Self.check(path: path, original: bytes, label: "case \(index) (\(base.name): \(applied.joined(separator: "; ")))", into: &outcome)
            unlink(path)
        }
        for failure in outcome.failures.prefix(25) { Issue.record(Comment(rawValue: failure)) }
        #expect(outcome.failures.isEmpty, "\(outcome.failures.count) of \(Self.cases) damaged files broke a rule")
        #expect(outcome.opened > Self.cases / 10, "enough damaged files still open to reach the deeper paths: \(outcome.opened)")
        print("mutation fuzzing: \(Self.cases) files, \(outcome.opened) opened; refused: \(outcome.refusedOpen.sorted { $0.key < $1.key }); "
              + "repair: \(outcome.repairs.sorted { $0.key < $1.key }); mutations: \(kinds.sorted { $0.key < $1.key })")
    }
}
