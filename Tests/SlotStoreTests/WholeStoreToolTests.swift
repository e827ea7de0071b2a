import Foundation
import Glibc
import Testing
@testable @_spi(Tools) import SlotStore

/// The whole-store tools that stream: dump writes the text the old encoder
/// wrote, load reads everything the old decoder read and says where a dump
/// is wrong, verify and inspect read maps in chunks with the numbers the old
/// whole-image scan gave, and every one shows progress unless --quiet.
@Suite("whole-store tools, streaming", .timeLimit(.minutes(5)))
struct WholeStoreToolTests {
    let directory = TemporaryDirectory()

    /// The dump as it was written before streaming: the values materialized,
    /// then Foundation's encoder with the tool's options.
    struct OldDumpFile: Encodable {
        var format = "slotstore-dump"
        var formatVersion = 1
        var schema: Schema
        var values: [String: FieldValue]
    }

    static func oldDump(_ store: SlotStore) throws -> [UInt8] {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        let data = try encoder.encode(OldDumpFile(schema: store.schema, values: try store.values()))
        return Array(data) + [0x0A]
    }

    /// The streaming dump through the library, with `batch` entries sorted at a time.
    static func streamedDump(_ store: SlotStore, in directory: TemporaryDirectory, batch: Int = StoreDump.sortBatchEntries) throws -> [UInt8] {
        let path = directory.file("streamed-\(UInt32.random(in: 0...UInt32.max)).json")
        let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0o600)
        try #require(fd >= 0)
        defer { close(fd) }
        try store.writeDump(to: fd, outputName: path, progress: nil, batchEntries: batch)
        return fileBytes(path)
    }

    static let awkward = ["", "plain", "quote \" backslash \\ slash /", "\n\r\t\u{8}\u{C}\u{0}\u{1}\u{1F}\u{7F}",
                          "é ✓ 😀 \u{2028}\u{2029} 中文", "nan", "inf", "-inf", "-0", "{\"base64\":\"AA==\"}", "key-0001"]

    static let everyType = Schema(version: 7, fields: [
        .int64("i64"), .int8("i8"), .uint64("u64"), .uint16("u16"), .double("d"),
        .float("f"), .bool("flag"), .string("s", capacity: 64), .bytes("b", capacity: 16),
        .array("reals", of: .double, count: 8), .array("tiny", of: .int8, count: 3), .array("bits", of: .bool, count: 2),
        .map("strings", key: .string(capacity: 48), value: .string(capacity: 64), capacity: 64),
        .map("signed", key: .scalar(.int32), value: .array(of: .double, count: 2), capacity: 64),
        .map("unsigned", key: .scalar(.uint64), value: .scalar(.double), capacity: 16),
        .map("blobs", key: .bytes(capacity: 8), value: .bytes(capacity: 8), capacity: 16),
        .map("empty", key: .string(capacity: 8), value: .scalar(.int64), capacity: 4),
        .map("big", key: .string(capacity: 40), value: .scalar(.int64), capacity: 24_000),
    ])

    /// A store holding every type, awkward strings, special doubles, empty
    /// maps, and a 20,000-entry map whose keys share a prefix and differ in length.
    func everyTypeStore() throws -> SlotStore {
        let store = try SlotStore(path: directory.file("every-type.slots"), schema: Self.everyType)
        try store.setValues([
            "i64": .int(.min), "i8": .int(-128), "u64": .uint(.max), "u16": .uint(65535), "d": .double(-0.0),
            "f": .double(0.1), "flag": .bool(true), "s": .string(Self.awkward[2] + Self.awkward[3]), "b": .bytes([0, 255, 127, 128, 1]),
            "reals": .array([.double(.nan), .double(.infinity), .double(-.infinity), .double(-0.0), .double(1e300),
                             .double(.leastNonzeroMagnitude), .double(0.1), .double(123456789012345680)]),
            "tiny": .array([.int(-1), .int(0), .int(127)]), "bits": .array([.bool(false), .bool(true)]),
            "strings": .map(Self.awkward.enumerated().map { .init(key: .string($1), value: .string(Self.awkward[($0 + 3) % Self.awkward.count])) }),
            "signed": .map([-5, 3, Int64(Int32.min), Int64(Int32.max), 0].map { .init(key: .int($0), value: .array([.double(Double($0) / 3), .double(.nan)])) }),
            "unsigned": .map([0, 1, UInt64.max, 1 << 63].map { .init(key: .uint($0), value: .double(Double($0) * 1.5)) }),
            "blobs": .map([[], [0], [0, 0], [255], [1, 2, 3, 4, 5, 6, 7, 8]].map { .init(key: .bytes($0), value: .bytes($0.reversed())) }),
        ])
        let big = try store.map("big", key: String.self, value: Int64.self)
        for index in 0..<20_000 {
            // Shared prefix "entry-", lengths 7 to 26, some keys prefixes of others.
            let key = "entry-" + String(index * 7919 % 100_003) + String(repeating: "x", count: index % 5)
            try big.set(Int64(index) - 10_000, for: key)
        }
        return store
    }

    @Test("dump streams exactly the old encoder's bytes: every type, awkward strings, special doubles, empty maps, a 20K map (also sorted in ranges)")
    func dumpMatchesOldEncoder() throws {
        let store = try everyTypeStore()
        defer { store.close() }
        let expected = try Self.oldDump(store)
        let streamed = try Self.streamedDump(store, in: directory)
        let same = streamed == expected
        #expect(same, "first difference at byte \(zip(streamed, expected).enumerated().first { $1.0 != $1.1 }?.offset ?? min(streamed.count, expected.count))")
        // A map larger than the sort batch is sorted one range of keys at a time.
        let ranged = try Self.streamedDump(store, in: directory, batch: 1_000) == expected
        #expect(ranged, "sorted 1,000 entries at a time")
        let single = try Self.streamedDump(store, in: directory, batch: 1) == expected
        #expect(single, "sorted one entry at a time")
        // The tool prints the same, to standard output and to --output.
        let path = store.path
        let tool = try Tool.run(["dump", path])
        let printed = Array(tool.stdout.utf8) == expected
        #expect(tool.succeeded && printed, "\(tool.stderr)")
        let output = directory.file("out.json")
        #expect(try Tool.run(["dump", path, "--output", output, "--quiet"]).succeeded)
        let written = fileBytes(output) == expected
        #expect(written, "--output")
        // What the old dump loads into is what the streamed one loads into.
        let copy = directory.file("copy.slots")
        let loaded = try Tool.run(["load", copy, output])
        #expect(loaded.succeeded, "\(loaded.stderr)")
        let reloaded = Array(try Tool.run(["dump", copy]).stdout.utf8) == expected
        #expect(reloaded, "dump of the loaded copy")
    }

    /// A dump to a pipe whose reader stalls must not keep the store's lock:
    /// it spools under the lock and copies out after releasing it.
    @Test("dump to a stalled pipe releases the lock before it writes; the output is the snapshot")
    func dumpToStalledPipe() throws {
        let path = directory.file("pipe.slots")
        let store = try SlotStore(path: path, schema: Schema(version: 1, fields: [
            .string("note", capacity: 16),
            .map("m", key: .string(capacity: 16), value: .scalar(.int64), capacity: 80_000),
        ]), options: OpenOptions(lockTimeout: .milliseconds(300)))
        let map = try store.map("m", key: String.self, value: Int64.self)
        for index in 0..<60_000 { try map.set(Int64(index), for: "key-\(index)") }  // a dump of ~2 MB: over the dump's 1 MiB buffer and a pipe's 64 KiB
        let snapshot = directory.file("snapshot.json")
        #expect(try Tool.run(["dump", path, "--output", snapshot]).status == 0)
        var info = stat()
        #expect(stat(snapshot, &info) == 0 && info.st_mode & 0o777 == 0o600, "a dump gets the store's permissions, not the umask's")

        let process = Tool.process(["dump", path, "--quiet"], environment: [:])
        let pipe = Pipe()
        process.standardOutput = pipe
        try process.run()
        // Readable once the dump writes to the pipe; it then blocks on the full pipe, nobody reading.
        var ready = pollfd(fd: pipe.fileHandleForReading.fileDescriptor, events: Int16(POLLIN), revents: 0)
        #expect(poll(&ready, 1, 30_000) == 1)
        try store.string("note").store("after")  // a locked write: lockTimeout if the dump still held the lock
        let output = pipe.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        #expect(process.terminationStatus == 0)
        #expect(Array(output) == fileBytes(snapshot), "the dump is the snapshot taken before the write")
    }

    @Test("dump of a map with a damaged (non-UTF-8) string key sorts and repairs it as the old encoder did")
    func dumpOfInvalidKey() throws {
        let store = try SlotStore(path: directory.file("bad-key.slots"), schema: Schema(version: 1, fields: [
            .map("m", key: .string(capacity: 8), value: .scalar(.int64), capacity: 8),
        ]))
        defer { store.close() }
        let map = try store.map("m", key: String.self, value: Int64.self)
        for key in ["a", "b", "\u{FFFD}"] { try map.set(1, for: key) }
        // Turn key "b" into the bytes 0xFF: invalid UTF-8, shown as U+FFFD.
        map.table.forEachHoldingLock { _, key, _ in
            if key.count == 1 && key[0] == UInt8(ascii: "b") { UnsafeMutableRawPointer(mutating: key.baseAddress!).storeBytes(of: 0xFF, as: UInt8.self) }
        }
        let same = try Self.streamedDump(store, in: directory) == (try Self.oldDump(store))
        #expect(same)
    }

    // MARK: Load

    /// The small schema's JSON on one line, so dumps' line numbers are easy to tell.
    static var smallSchemaJSON: String { String(decoding: try! JSONEncoder().encode(small), as: UTF8.self) }

    func dumpText(values: String, schemaFirst: Bool = true) -> String {
        let schema = Self.smallSchemaJSON
        return schemaFirst
            ? #"{"format":"slotstore-dump","formatVersion":1,"schema":\#(schema),"values":\#(values)}"#
            : #"{"values":\#(values),"formatVersion":1,"schema":\#(schema),"format":"slotstore-dump"}"#
    }

    static let small = Schema(version: 1, fields: [
        .int64("n"), .double("d"), .bytes("b", capacity: 4), .string("s", capacity: 16),
        .map("m", key: .string(capacity: 8), value: .scalar(.int64), capacity: 8),
        .map("im", key: .scalar(.int16), value: .string(capacity: 8), capacity: 8),
    ])

    @Test("load accepts what the old loader accepted: any whitespace and member order, unknown and repeated members (first wins), a trailing comma, a BOM, entries with value first, numbers like 1.0 and 1e2, from a file or a pipe")
    func loadAcceptsVariants() throws {
        let values = #"{"n": 1e2, "d": 1.0, "b": {"base64": "AQI="}, "s": "a\u00e9\n", "m": [{"value": 5, "key": "x"}, {"key": "y", "value": -7.0, "note": [1, {"deep": null}]},], "im": [{"key": -3, "value": "v"}], "n": 999}"#
        let expected: [String: FieldValue] = [
            "n": .int(100), "d": .double(1), "b": .bytes([1, 2]), "s": .string("aé\n"),
            "m": .map([.init(key: .string("x"), value: .int(5)), .init(key: .string("y"), value: .int(-7))]),
            "im": .map([.init(key: .int(-3), value: .string("v"))]),
        ]
        let variants: [(String, String)] = [
            ("compact", dumpText(values: values)),
            ("values first", dumpText(values: values, schemaFirst: false)),
            ("spread out", dumpText(values: values).replacingOccurrences(of: ",", with: " \r\n\t,\n ").replacingOccurrences(of: ":", with: "\n:\t")),
            ("BOM, unknown and repeated members", "\u{FEFF}" + dumpText(values: values).dropLast() + #","extra":{"a":[1,2]},"format":"ignored","values":{},}"# + "\n\n"),
        ]
        for (name, text) in variants {
            let dump = directory.file("variant-\(name).json")
            writeFileBytes(dump, Array(text.utf8))
            let path = directory.file("variant-\(name).slots")
            let result = try Tool.run(["load", path, dump])
            #expect(result.succeeded, "\(name): \(result.stderr)")
            let store = try SlotStore(path: path, options: OpenOptions(mode: .open))
            for (field, value) in expected { #expect(try store.value(of: field) == value, "\(name): \(field)") }
            store.close()
        }
        // A pipe can't be re-read: values before the schema are kept in memory.
        let fifo = directory.file("dump.fifo")
        #expect(mkfifo(fifo, 0o600) == 0)
        let bytes = Array(dumpText(values: values, schemaFirst: false).utf8)
        let writer = Thread {
            let fd = open(fifo, O_WRONLY)
            _ = bytes.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
            close(fd)
        }
        writer.start()
        let piped = directory.file("piped.slots")
        let result = try Tool.run(["load", piped, fifo])
        #expect(result.succeeded, "\(result.stderr)")
        let store = try SlotStore(path: piped, options: OpenOptions(mode: .open))
        #expect(try store.value(of: "m") == expected["m"])
        store.close()
    }

    struct BadDump: Sendable, CustomTestStringConvertible {
        let text: String
        /// What stderr must contain: the line, column and words of the error.
        let expected: [String]
        var testDescription: String { expected.joined(separator: " ") }
    }

    static let badDumps: [BadDump] = [
        BadDump(text: "{\"format\":\"slotstore-dump\",\n  \"formatVersion\": 1,\n  \"schema\": SCHEMA,\n  \"values\": {\"n\": 1,\n \"m\": [{\"key\": \"a\", \"value\": 1} {\"key\": \"b\"}]}}",
                expected: ["line 5, column 33", "expected ',' or ']'", "found an object"]),
        BadDump(text: "{\"format\":\"slotstore-dump\",\"formatVersion\":1,\"schema\":SCHEMA,\"values\":{\n\"m\": [{\"key\": \"toolongkey\", \"value\": 1}]}}",
                expected: ["line 2, column 15", "m key", "8"]),
        BadDump(text: "{\"format\":\"slotstore-dump\",\"formatVersion\":1,\"schema\":SCHEMA,\"values\":{\n\"m\": [{\"key\": \"a\", \"value\": 1},\n  {\"key\": \"a\", \"value\": 2}]}}",
                expected: ["line 3, column 3", "appears twice"]),
        BadDump(text: "{\"format\":\"slotstore-dump\",\"formatVersion\":1,\"schema\":SCHEMA,\"values\":{\"n\": 1,\n   \"s\": \"unterminated}}",
                expected: ["line 2, column", "not closed before the end of the file"]),
        BadDump(text: "{\"format\":\"slotstore-dump\",\"formatVersion\":1,\"schema\":SCHEMA,\"values\":{\"n\": 01}}",
                expected: ["line 1", "may not start with 0"]),
        BadDump(text: "{\"format\":\"slotstore-dump\",\"formatVersion\":1,\"schema\":SCHEMA,\"values\":{\"im\": [{\"key\": 70000, \"value\": \"v\"}]}}",
                expected: ["line 1", "70000 is outside the range of int16"]),
        BadDump(text: "{\"format\":\"slotstore-dump\",\"formatVersion\":1,\"schema\":SCHEMA,\"values\":{\"m\": [{\"key\": \"a\"}]}}",
                expected: ["line 1", "needs both \"key\" and \"value\"", "lacks \"value\""]),
        BadDump(text: "{\"format\":\"slotstore-dump\",\"formatVersion\":1,\"schema\":SCHEMA,\"values\":{\"n\": 1}} trailing",
                expected: ["line 1", "expected the end of the file", "found 'trailing'"]),
        BadDump(text: "{\"format\":\"slotstore-dump\",\"formatVersion\":1,\"values\":{\"n\": 1}}",
                expected: ["no \"schema\" member"]),
        BadDump(text: "{\"format\":\"slotstore-dump\",\"formatVersion\":1,\"schema\":SCHEMA,\"values\":{\"s\": \"\\ud800\"}}",
                expected: ["line 1", "surrogate"]),
    ]

    @Test("a bad dump is refused with one line naming the dump, line and column, what was expected and found; nothing is left behind",
          arguments: badDumps)
    func loadRefusesBadDump(_ bad: BadDump) throws {
        let schema = Self.smallSchemaJSON
        let dump = directory.file("bad.json")
        writeFileBytes(dump, Array(bad.text.replacingOccurrences(of: "SCHEMA", with: schema).utf8))
        let path = directory.file("refused.slots")
        let result = try Tool.run(["load", path, dump])
        #expect(!result.signaled && result.status == 2, "\(result)")
        let lines = result.stderr.split(separator: "\n")
        #expect(lines.count == 1, "\(result.stderr)")
        #expect(result.stderr.contains(dump), "\(result.stderr)")
        for words in bad.expected { #expect(result.stderr.contains(words), "\(words) not in: \(result.stderr)") }
        #expect(!FileManager.default.fileExists(atPath: path))
        #expect(try FileManager.default.contentsOfDirectory(atPath: directory.path).filter { $0.hasPrefix(".") }.isEmpty)
    }

    @Test("a load SIGKILLed mid-way leaves nothing at the path (only a hidden file, removed by the next load), and the next load completes")
    func loadKilledMidway() throws {
        let store = try everyTypeStore()
        let dump = directory.file("every.json")
        writeFileBytes(dump, try Self.streamedDump(store, in: directory))
        store.close()
        let path = directory.file("killed.slots")
        let killed = try Tool.run(["load", path, dump], environment: ["SLOTSTORE_FAULT": "afterWrite:kill:5000"])
        #expect(killed.killedBySIGKILL, "\(killed)")
        #expect(!FileManager.default.fileExists(atPath: path))
        let leftovers = { try FileManager.default.contentsOfDirectory(atPath: self.directory.path).filter { $0.contains(".killed.slots.loading-") } }
        #expect(try leftovers().count == 1)
        let loaded = try Tool.run(["load", path, dump])
        #expect(loaded.succeeded, "\(loaded.stderr)")
        #expect(try leftovers().isEmpty)
        #expect(fileBytes(try Tool.run(["dump", path, "--output", directory.file("again.json")]).succeeded ? directory.file("again.json") : dump)
                == fileBytes(dump))
        #expect(try Tool.run(["verify", path]).succeeded)
    }

    // MARK: Verify and inspect

    /// The old whole-image scan of a map, kept as the reference: every number
    /// verify and inspect print must come out the same from the chunked walk.
    struct ReferenceScan: Equatable {
        var entries = 0, tombstones = 0, odd = 0, duplicates = 0, badLengths = 0
        var unreachable: [Int] = []
        var hits = StoreInspection.ProbeLengths(mean: 0, p99: 0, max: 0)
        var misses = StoreInspection.ProbeLengths(mean: 0, p99: 0, max: 0)
    }

    static func distribution(_ lengths: [Int]) -> StoreInspection.ProbeLengths {
        guard !lengths.isEmpty else { return .init(mean: 0, p99: 0, max: 0) }
        let sorted = lengths.sorted()
        let rank = (sorted.count * 99 + 99) / 100
        return .init(mean: Double(sorted.reduce(0, +)) / Double(sorted.count), p99: sorted[rank - 1], max: sorted[sorted.count - 1])
    }

    static func referenceScan(file: [UInt8], field: FieldLayout, hashSeed: UInt64) -> ReferenceScan {
        guard let geometry = field.mapGeometry else { return ReferenceScan() }
        func u64(_ at: Int) -> UInt64 { file.littleEndian(UInt64.self, at: at) }
        var scan = ReferenceScan()
        let epoch = u64(field.offset + MapGeometry.epochOffset) & 0xFFFF_FFFF
        let seed = MapHash.mapSeed(store: hashSeed, fieldIndex: field.index)
        let buckets = geometry.bucketCount
        // Written out again rather than through MapAddressing: a reference.
        func home(_ key: [UInt8]) -> Int {
            key.withUnsafeBytes { bytes in
                geometry.version == .v2
                    ? Int(MapHash.lanes(bytes, seed: seed).multipliedFullWidth(by: UInt64(buckets)).high)
                    : Int(truncatingIfNeeded: MapHash.chained(bytes, seed: seed)) & (buckets - 1)
            }
        }
        var live = [UInt8](repeating: 0, count: geometry.bucketCount)
        var seen = Set<[UInt8]>()
        var entries: [(bucket: Int, distance: Int)] = []
        for index in 0..<geometry.bucketCount {
            let offset = field.offset + MapGeometry.headerBytes + index * geometry.bucketBytes
            if u64(offset) & 1 == 1 { scan.odd += 1 }
            let meta = u64(offset + 8)
            guard meta >> 32 == epoch else { continue }
            if meta & 3 == MapTable.full {
                live[index] = 1
                let length = Int((meta >> 8) & 0xFF_FFFF)
                guard length <= geometry.keyCapacity else { scan.badLengths += 1; continue }
                let key = Array(file[(offset + MapGeometry.bucketPrefixBytes)..<(offset + MapGeometry.bucketPrefixBytes + length)])
                if !seen.insert(key).inserted { scan.duplicates += 1 }
                entries.append((index, (index - home(key) + buckets) % buckets))
            } else if meta & 3 == MapTable.tombstone {
                live[index] = 2
                scan.tombstones += 1
            }
        }
        scan.entries = entries.count
        scan.hits = distribution(entries.map { $0.distance + 1 })
        if let empty = live.firstIndex(of: 0) {
            var misses = [Int](repeating: 0, count: geometry.bucketCount)
            var visits = 1
            misses[empty] = 1
            var index = (empty - 1 + buckets) % buckets
            while index != empty {
                visits = live[index] == 0 ? 1 : visits + 1
                misses[index] = visits
                index = (index - 1 + buckets) % buckets
            }
            scan.misses = distribution(misses)
        }
        for entry in entries where entry.distance > 0 {
            var index = (entry.bucket - entry.distance + buckets) % buckets
            while index != entry.bucket {
                if live[index] == 0 { scan.unreachable.append(entry.bucket); break }
                index = (index + 1) % buckets
            }
        }
        return scan
    }

    @Test("verify and inspect walk a map in chunks and give the old whole-image numbers: a 30K map with tombstones, then damaged (moved, duplicated and over-long keys)")
    func chunkedScanMatchesReference() throws {
        let path = directory.file("scan.slots")
        let schema = Schema(version: 1, fields: [.map("m", key: .string(capacity: 16), value: .scalar(.int64), capacity: 40_000)])
        let store = try SlotStore(path: path, schema: schema)
        let map = try store.map("m", key: String.self, value: Int64.self)
        for index in 0..<30_000 { try map.set(Int64(index), for: "k\(index)") }
        for index in stride(from: 0, to: 30_000, by: 7) { _ = try map.table.removeLeavingTombstone("k\(index)") }
        let field = try #require(store.core.layout.field(named: "m"))
        let seed = store.core.header.hashSeed
        store.close()

        func check(_ label: String, findings expectedCodes: Set<String>) throws {
            let reference = Self.referenceScan(file: fileBytes(path), field: field, hashSeed: seed)
            let image = try FileImage.open(path, writable: false)
            defer { image.close() }
            let header = try image.header.get()
            let scan = StoreFileState(image: image, header: header, layout: try Layout(header: header, schema: schema, path: path)).mapScan(field)
            #expect(scan.entryCount == reference.entries && scan.tombstones == reference.tombstones, "\(label)")
            #expect(scan.oddSequences == reference.odd && scan.duplicateKeys == reference.duplicates, "\(label): duplicates \(scan.duplicateKeys) vs \(reference.duplicates)")
            #expect(scan.badKeyLengths == reference.badLengths && scan.unreachable == reference.unreachable.sorted(), "\(label): \(scan.unreachable) vs \(reference.unreachable)")
            #expect(scan.probeLengths == reference.hits && scan.missProbeLengths == reference.misses, "\(label): \(scan.probeLengths) \(scan.missProbeLengths) vs \(reference.hits) \(reference.misses)")
            let inspection = try SlotStore.inspect(at: path)
            #expect(inspection.fields[0].map?.probeLengths == reference.hits && inspection.fields[0].map?.count == reference.entries)
            let codes = Set(try SlotStore.verify(at: path).findings.map(\.code))
            #expect(codes == expectedCodes, "\(label): \(codes)")
        }
        try check("sound", findings: [])

        // Damage: copy the first entry of a long run into an empty bucket far
        // from home (unreachable and a duplicate), and give one key a length over 16.
        var bytes = fileBytes(path)
        let geometry = MapGeometry(key: .string(capacity: 16), value: .scalar(.int64), capacity: 40_000, version: .v2)
        let epoch = bytes.littleEndian(UInt64.self, at: field.offset + MapGeometry.epochOffset) & 0xFFFF_FFFF
        func bucketOffset(_ index: Int) -> Int { field.offset + MapGeometry.headerBytes + index * geometry.bucketBytes }
        func state(_ index: Int) -> UInt64 {
            let meta = bytes.littleEndian(UInt64.self, at: bucketOffset(index) + 8)
            return meta >> 32 == epoch ? meta & 3 : 0
        }
        let full = try #require((0..<geometry.bucketCount).first { state($0) == MapTable.full })
        let emptyFar = try #require((geometry.bucketCount / 2..<geometry.bucketCount).first { state($0) == 0 && state($0 - 1) == 0 })
        bytes.replaceSubrange(bucketOffset(emptyFar)..<(bucketOffset(emptyFar) + geometry.bucketBytes),
                              with: bytes[bucketOffset(full)..<(bucketOffset(full) + geometry.bucketBytes)])
        let another = try #require((geometry.bucketCount / 4..<geometry.bucketCount).first { state($0) == MapTable.full && $0 != emptyFar })
        var meta = bytes.littleEndian(UInt64.self, at: bucketOffset(another) + 8)
        meta = (meta & ~(0xFF_FFFF << 8)) | (200 << 8)
        bytes.setLittleEndian(meta, at: bucketOffset(another) + 8)
        bytes.setLittleEndian(UInt64(3), at: bucketOffset(another + 1))  // an odd sequence word
        writeFileBytes(path, bytes)
        // One entry more (the copy) and one fewer (the over-long key): the count still matches.
        try check("damaged", findings: ["map-unreachable", "map-duplicate", "map-key-length", "field-sequence"])

        // Bytes no writer writes: a meta bit the format keeps zero, and padding (40-byte entries in 64-byte buckets).
        let third = try #require((0..<geometry.bucketCount).first { state($0) == MapTable.full && ![emptyFar, another].contains($0) })
        bytes.setLittleEndian(bytes.littleEndian(UInt64.self, at: bucketOffset(third) + 8) | 0x4, at: bucketOffset(third) + 8)
        writeFileBytes(path, bytes)
        try check("meta bit", findings: ["map-unreachable", "map-duplicate", "map-key-length", "field-sequence", "map-bucket"])
        bytes.setLittleEndian(bytes.littleEndian(UInt64.self, at: bucketOffset(third) + 8) & ~0x4, at: bucketOffset(third) + 8)
        bytes.setLittleEndian(UInt64(0x55), at: bucketOffset(emptyFar - 1) + geometry.entryBytes)
        writeFileBytes(path, bytes)
        try check("padding", findings: ["map-unreachable", "map-duplicate", "map-key-length", "field-sequence", "map-bucket"])
    }

    @Test("progress: one line per step on a non-terminal once an operation runs long enough, none with --quiet")
    func progressLines() throws {
        let store = try everyTypeStore()
        let path = store.path
        let buckets = try #require(store.core.layout.field(named: "big")?.mapGeometry?.bucketCount).formatted()
        store.close()
        let environment = ["SLOTSTORE_PROGRESS_DELAY": "0"]
        let dump = try Tool.run(["dump", path, "--output", directory.file("p.json")], environment: environment)
        #expect(dump.succeeded && dump.stderr.contains("slotstore: dumping map big: 20,000 of 20,000 ("), "\(dump.stderr)")
        let verify = try Tool.run(["verify", path], environment: environment)
        #expect(verify.stderr.contains("slotstore: checking map big: \(buckets) of \(buckets) ("), "\(verify.stderr)")
        let inspect = try Tool.run(["inspect", path], environment: environment)
        #expect(inspect.stderr.contains("slotstore: reading map big: \(buckets) of \(buckets) ("), "\(inspect.stderr)")
        let load = try Tool.run(["load", directory.file("p.slots"), directory.file("p.json")], environment: environment)
        #expect(load.succeeded && load.stderr.contains("slotstore: loading \(directory.file("p.json")): "), "\(load.stderr)")
        for command in [["dump", path], ["verify", path], ["inspect", path], ["load", directory.file("q.slots"), directory.file("p.json")],
                        ["compact", path, "--output", directory.file("c.slots")]] {
            let quiet = try Tool.run(command + ["--quiet"], environment: environment)
            #expect(quiet.succeeded && quiet.stderr.isEmpty, "\(command): \(quiet.stderr)")
            let help = try Tool.run([command[0], "--help"])
            #expect(help.stdout.contains("--quiet"), "\(command[0]) --help")
        }
        // Without the override, a quick operation shows nothing.
        #expect(try Tool.run(["verify", path]).stderr.isEmpty)
    }
}
