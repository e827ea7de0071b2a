import Foundation
import Glibc
import Testing
@testable import SlotStore

@Suite("Maps")
struct MapTests {
    let directory = TemporaryDirectory()

    static let schema = Schema(version: 1, fields: [
        .int64("before"),
        .map("sessions", key: .string(capacity: 32), value: .scalar(.int64), capacity: 1000),
        .map("names", key: .scalar(.uint32), value: .string(capacity: 24), capacity: 64),
        .map("blobs", key: .bytes(capacity: 8), value: .array(of: .int16, count: 3), capacity: 16),
        .int64("after"),
    ])

    @Test("a map behaves like a Dictionary over seeded random operations", arguments: [1, 2, 3, 4, 5] as [UInt64])
    func matchesDictionaryModel(seed: UInt64) throws {
        let store = try SlotStore(path: directory.file("model-\(seed).slots"), schema: Self.schema)
        let map = try store.map("sessions", key: String.self, value: Int64.self)
        var model: [String: Int64] = [:]
        var random = SeededRandom(state: seed)
        // Few distinct keys, so inserts, replaces, removes and tombstone reuse all happen often.
        let keys = (0..<300).map { "key-\($0)-" + String(repeating: "x", count: $0 % 20) }
        for step in 0..<5000 {
            let key = keys[Int(random.next() % UInt64(keys.count))]
            switch random.next() % 10 {
            case 0, 1, 2:
                let value = Int64(bitPattern: random.next())
                try map.set(value, for: key)
                model[key] = value
            case 3, 4:
                #expect(try map.remove(key) == (model.removeValue(forKey: key) != nil), "step \(step)")
            case 5, 6:
                let delta = Int64(random.next() % 1000) - 500
                let expected = (model[key] ?? 0) &+ delta
                #expect(try map.add(delta, for: key) == expected, "step \(step)")
                model[key] = expected
            case 7:
                #expect(try map.contains(key) == (model[key] != nil), "step \(step)")
            default:
                #expect(try map.get(key) == model[key], "step \(step)")
            }
            if step % 1000 == 999 {
                #expect(map.count == model.count)
                let entries = try map.entries()
                #expect(Dictionary(uniqueKeysWithValues: entries.map { ($0.key, $0.value) }) == model)
            }
        }
        #expect(try SlotStore.verify(at: store.path).ok)
        try map.removeAll()
        #expect(map.count == 0)
        #expect(try map.get(keys[0]) == nil)
        #expect(try map.entries().isEmpty)
        try map.set(7, for: keys[0])
        #expect(try map.get(keys[0]) == 7)
        #expect(try SlotStore.verify(at: store.path).ok)
    }

    @Test("integer keys with string values, and bytes keys with array values")
    func otherKeyAndValueTypes() throws {
        let store = try SlotStore(path: directory.file("types.slots"), schema: Self.schema)
        let names = try store.map("names", key: UInt32.self, value: String.self)
        try names.set("zero", for: 0)
        try names.set("max", for: .max)
        #expect(try names.get(.max) == "max")
        #expect(try names.get(0) == "zero")
        #expect(try names.get(5) == nil)
        #expect(throws: SlotStoreError.valueTooLarge(path: store.path, field: "names value", capacity: 24, size: 25)) {
            try names.set(String(repeating: "a", count: 25), for: 1)
        }
        let blobs = try store.map("blobs", key: [UInt8].self, value: [Int16].self)
        try blobs.set([1, -2, 3], for: [0, 1])
        #expect(try blobs.get([0, 1]) == [1, -2, 3])
        #expect(throws: SlotStoreError.self) { try blobs.set([1], for: [9]) }
        #expect(throws: SlotStoreError.valueTooLarge(path: store.path, field: "blobs key", capacity: 8, size: 9)) {
            try blobs.set([1, 2, 3], for: Array(repeating: 1, count: 9))
        }
        #expect(throws: SlotStoreError.self) { _ = try store.map("names", key: String.self, value: String.self) }
        // Neighbouring fields are untouched by map writes.
        #expect(try store.scalar("before", as: Int64.self).load() == 0)
        #expect(try store.scalar("after", as: Int64.self).load() == 0)
    }

    @Test("inserting into a full map throws, naming field, capacity and count, and changes nothing")
    func full() throws {
        let store = try SlotStore(path: directory.file("full.slots"), schema: Self.schema)
        let blobs = try store.map("blobs", key: [UInt8].self, value: [Int16].self)
        for index in 0..<16 { try blobs.set([Int16(index), 0, 0], for: [UInt8(index)]) }
        #expect(throws: SlotStoreError.mapFull(path: store.path, field: "blobs", capacity: 16, count: 16)) {
            try blobs.set([0, 0, 0], for: [99])
        }
        try blobs.set([5, 5, 5], for: [3])  // replacing still works
        #expect(blobs.count == 16)
        #expect(try blobs.remove([3]))
        try blobs.set([0, 0, 0], for: [99])
        #expect(try blobs.get([99]) == [0, 0, 0])
    }

    @Test("one-word values of every width: set, add wrapping at the width, get, and a full map refusing an insert")
    func wordValues() throws {
        let store = try SlotStore(path: directory.file("words.slots"), schema: Schema(version: 1, fields: [
            .map("bytes", key: .string(capacity: 16), value: .scalar(.uint8), capacity: 4),
            .map("small", key: .scalar(.int64), value: .scalar(.int8), capacity: 4),
            .map("flags", key: .string(capacity: 16), value: .scalar(.bool), capacity: 4),
            .map("ratios", key: .scalar(.uint16), value: .scalar(.double), capacity: 4),
        ]))
        let bytes = try store.map("bytes", key: String.self, value: UInt8.self)
        #expect(try bytes.add(250, for: "a") == 250)  // inserted as 0 + 250
        #expect(try bytes.add(10, for: "a") == 4)  // wraps at 8 bits
        #expect(try bytes.get("a") == 4)
        try bytes.set(255, for: "b")
        #expect(try bytes.get("b") == 255)
        let small = try store.map("small", key: Int64.self, value: Int8.self)
        try small.set(-128, for: -1)
        #expect(try small.add(-1, for: -1) == 127)
        #expect(try small.get(-1) == 127)
        #expect(try small.get(0) == nil)
        let flags = try store.map("flags", key: String.self, value: Bool.self)
        try flags.set(true, for: "on")
        try flags.set(false, for: "off")
        #expect(try flags.get("on") == true)
        #expect(try flags.get("off") == false)
        let ratios = try store.map("ratios", key: UInt16.self, value: Double.self)
        for key: UInt16 in 0..<4 { try ratios.set(Double(key) / 3, for: key) }
        #expect(throws: SlotStoreError.mapFull(path: store.path, field: "ratios", capacity: 4, count: 4)) {
            try ratios.set(9, for: 9)
        }
        try ratios.set(-0.5, for: 2)  // replacing still works
        #expect(try (0..<4).map { try ratios.get($0) } == [0, 1.0 / 3, -0.5, 1])
        #expect(try ratios.get(9) == nil)
        #expect(ratios.count == 4)
        #expect(try store.status.journalDirty == false)
        #expect(try SlotStore.verify(at: store.path).ok)
    }

    /// Found in review: once a replacement journaled only the value area, a
    /// transaction inserting and then replacing each key recorded both, and
    /// overflowed a journal sized for one record per bucket.
    @Test("a transaction inserting and then replacing every key of a large-valued map fits the journal")
    func insertThenReplaceFits() throws {
        let store = try SlotStore(path: directory.file("twice.slots"), schema: Schema(version: 1, fields: [
            .map("notes", key: .scalar(.int64), value: .string(capacity: 500), capacity: 96),
        ]))
        let notes = try store.map("notes", key: Int64.self, value: String.self)
        try store.transaction { tx in
            for key in 0..<Int64(96) {
                try tx.store("first \(key)", for: key, in: notes)
                try tx.store(String(repeating: "x", count: 400) + "\(key)", for: key, in: notes)
            }
        }
        #expect(notes.count == 96)
        for key in 0..<Int64(96) { #expect(try notes.get(key) == String(repeating: "x", count: 400) + "\(key)") }
        // And a rolled-back one restores every entry and count exactly.
        struct Stop: Error {}
        #expect(throws: Stop.self) {
            try store.transaction { tx in
                for key in 0..<Int64(96) {
                    try tx.store("changed", for: key, in: notes)
                    try tx.store("changed again", for: key, in: notes)
                    if key % 3 == 0 { try tx.remove(key, from: notes) }
                }
                throw Stop()
            }
        }
        #expect(notes.count == 96)
        for key in 0..<Int64(96) { #expect(try notes.get(key) == String(repeating: "x", count: 400) + "\(key)") }
        // Replacing and then removing every key fits too.
        try store.transaction { tx in
            for key in 0..<Int64(96) {
                try tx.store("last", for: key, in: notes)
                try tx.remove(key, from: notes)
            }
        }
        #expect(notes.count == 0)
        #expect(try SlotStore.verify(at: store.path).ok)
    }

    /// Bucket positions in every existing file depend on this function: values
    /// computed by the first implementation, so a faster rewrite can't move them.
    @Test("the map hash is part of the file format: fixed keys and seeds keep their values")
    func hashIsStable() {
        let keys: [[UInt8]] = [[], Array("a".utf8), Array("key-0000000000000000000000000042".utf8),
                               Array("héllo wörld, 21 bytes".utf8), [0, 1, 2, 3, 4, 5, 6, 7], Array(repeating: 0xFF, count: 70)]
        let expected: [UInt64: [UInt64]] = [
            0: [0x2b58_40ee_88a2_b24c, 0xc230_7118_8501_5ecd, 0xb0fd_ee11_5c43_9a84,
                0x51ce_fa12_d0f0_7b7e, 0xb3b9_1284_ee12_51a9, 0x26c3_11fa_5f4b_63f3],
            0x1234_5678_9ABC_DEF0: [0xe358_acaf_3b12_4761, 0x3d38_e347_cc9a_709f, 0x4e6d_0668_8306_3f25,
                                    0x9ffe_fe09_3236_1ab7, 0xf4e6_f9dd_1c3e_df1b, 0x2d88_64c9_7b8f_2064],
        ]
        for (seed, values) in expected {
            for (key, value) in zip(keys, values) {
                #expect(key.withUnsafeBytes { MapHash.chained($0, seed: seed) } == value, "key \(key), seed \(seed)")
            }
        }
    }

    /// Layout 2's hash (format 2.0): the vectors of FileFormat.md, computed
    /// from the spec by a separate Python implementation, not by this code.
    @Test("the layout-2 hash matches the specification's test vectors")
    func laneHashVectors() {
        let keys: [[UInt8]] = [[], Array("a".utf8), Array("key-0000000000000000000000000042".utf8),
                               Array("héllo wörld, 21 bytes".utf8), [0, 1, 2, 3, 4, 5, 6, 7], Array(repeating: 0xFF, count: 70)]
        let expected: [UInt64: [UInt64]] = [
            0: [0xC8B8_B3AE_53BA_F669, 0xBC13_7453_2B5B_999D, 0xDDB6_E25F_914E_59FF,
                0xC9A9_70D5_924B_914B, 0x4F3F_C64C_1AFA_2916, 0x0BF7_DF02_DDBC_9464],
            0x1234_5678_9ABC_DEF0: [0x839F_3EB7_3B97_B671, 0x18E9_23D8_C36D_3FD7, 0x7170_289A_6ABD_8632,
                                    0x2424_FA3B_6323_85EF, 0x55A5_A6F3_045D_8B93, 0x08F0_C757_ABCD_4EBB],
        ]
        for (seed, values) in expected {
            for (key, value) in zip(keys, values) {
                #expect(key.withUnsafeBytes { MapHash.lanes($0, seed: seed) } == value, "key \(key), seed \(seed)")
            }
        }
        #expect(MapHash.mapSeed(store: 0, fieldIndex: 0) == 0xCA81_3BF4_C7AB_F0A9)
        #expect(MapHash.mapSeed(store: 0x1234_5678_9ABC_DEF0, fieldIndex: 3) == 0x42D6_CB1F_5922_4119)
        let geometry = MapGeometry(key: .string(capacity: 32), value: .scalar(.int64), capacity: 1_000_000, version: .v2)
        #expect(geometry.bucketCount == 1_176_471 && geometry.bucketBytes == 64)
        let addressing = MapAddressing(geometry: geometry, storeSeed: 0, fieldIndex: 0)
        Array("key-0000000000000000000000000042".utf8).withUnsafeBytes { key in
            #expect(addressing.hash(key) == 0x8D4F_7FA5_C56B_F25E)
            #expect(addressing.home(of: key) == 649_405)
        }
    }

    @Test("layout-2 geometry: padding to cache lines and 85% load, as FileFormat.md's example says")
    func layoutTwoGeometry() {
        let example = MapGeometry(key: .string(capacity: 32), value: .scalar(.int64), capacity: 100_000, version: .v2)
        #expect(example.entryBytes == 56 && example.bucketBytes == 64 && example.bucketCount == 117_648)
        #expect(example.totalBytes == 7_529_536)
        let old = MapGeometry(key: .string(capacity: 32), value: .scalar(.int64), capacity: 100_000, version: .v1)
        #expect(old.bucketBytes == 56 && old.bucketCount == 262_144 && old.totalBytes == 14_680_128)
        #expect(MapGeometry.paddedBucketBytes(32) == 32 && MapGeometry.paddedBucketBytes(40) == 64)
        #expect(MapGeometry.paddedBucketBytes(72) == 72, "128 would add more than a quarter")
        #expect(MapGeometry.paddedBucketBytes(120) == 128 && MapGeometry.paddedBucketBytes(200) == 200)
        for capacity in [1, 2, 3, 7, 100, 1000, 65_537] {
            let geometry = MapGeometry(key: .scalar(.int64), value: .scalar(.int64), capacity: capacity, version: .v2)
            #expect(geometry.bucketCount > capacity && geometry.bucketCount * 17 >= capacity * 20, "capacity \(capacity)")
        }
    }

    @Test("a transaction over map entries and scalars is all or nothing")
    func transactions() throws {
        struct Refused: Error {}
        let store = try SlotStore(path: directory.file("tx.slots"), schema: Self.schema)
        let sessions = try store.map("sessions", key: String.self, value: Int64.self)
        try sessions.set(10, for: "a")
        #expect(throws: Refused.self) {
            try store.transaction { tx in
                try tx.add(5, for: "a", in: sessions)
                try tx.store(1, for: "b", in: sessions)
                try tx.remove("a", from: sessions)
                throw Refused()
            }
        }
        #expect(try sessions.get("a") == 10)
        #expect(try sessions.get("b") == nil)
        #expect(sessions.count == 1)
        try store.transaction { tx in
            try tx.add(5, for: "a", in: sessions)
            try tx.store(1, for: "b", in: sessions)
        }
        #expect(try sessions.get("a") == 15 && sessions.get("b") == 1)
        #expect(try SlotStore.verify(at: store.path).ok)
    }

    @Test("maps dump and load through FieldValue in key order")
    func dynamicValues() throws {
        let store = try SlotStore(path: directory.file("dyn.slots"), schema: Self.schema)
        let sessions = try store.map("sessions", key: String.self, value: Int64.self)
        try sessions.set(2, for: "b")
        try sessions.set(1, for: "a")
        let value = try store.value(of: "sessions")
        #expect(value == .map([.init(key: .string("a"), value: .int(1)), .init(key: .string("b"), value: .int(2))]))
        let copy = try SlotStore(path: directory.file("dyn-copy.slots"), schema: Self.schema)
        try copy.setValues(try store.values())
        #expect(try copy.values() == store.values())
        #expect(throws: SlotStoreError.self) {
            try copy.setValue(.map([.init(key: .string("a"), value: .int(1)), .init(key: .string("a"), value: .int(2))]), for: "sessions")
        }
        let inspection = try SlotStore.inspect(at: store.path)
        let statistics = try #require(inspection.fields.first { $0.name == "sessions" }?.map)
        #expect(statistics.count == 2 && statistics.capacity == 1000 && statistics.buckets == 1177)
        #expect(statistics.longestProbe >= 1)
    }

    /// Linear probing at a load α visits (1 + 1/(1 − α)) / 2 buckets per hit
    /// on average: 3.8 at layout 2's full load of 0.85.
    @Test("get and set stay O(1) at 85% load: a full 1,000-entry map finds every key within a short probe")
    func probeLengths() throws {
        let store = try SlotStore(path: directory.file("probe.slots"), schema: Self.schema)
        let sessions = try store.map("sessions", key: String.self, value: Int64.self)
        for index in 0..<1000 { try sessions.set(Int64(index), for: "session-\(index)") }
        for index in 0..<1000 { #expect(try sessions.get("session-\(index)") == Int64(index)) }
        let statistics = try #require(SlotStore.inspect(at: store.path).fields.first { $0.name == "sessions" }?.map)
        #expect(statistics.count == 1000)
        #expect(statistics.probeLengths.mean < 6, "mean probe \(statistics.probeLengths.mean)")
        #expect(statistics.longestProbe < 200, "longest probe \(statistics.longestProbe)")
        #expect(try SlotStore.verify(at: store.path).ok)
    }

    @Test("verify finds a map whose count or reachability was damaged")
    func verifyCatchesDamage() throws {
        let path = directory.file("damaged.slots")
        let store = try SlotStore(path: path, schema: Self.schema)
        let sessions = try store.map("sessions", key: String.self, value: Int64.self)
        for index in 0..<50 { try sessions.set(1, for: "k\(index)") }
        let field = try #require(store.core.layout.field(named: "sessions"))
        store.close()
        var count = [UInt8](repeating: 0, count: 8)
        count.setLittleEndian(UInt64(49), at: 0)
        patchFile(path, at: field.offset + MapGeometry.countOffset, count)
        let report = try SlotStore.verify(at: path)
        #expect(report.findings.contains { $0.code == "map-count" })
    }
}

@Suite("Maps across processes", .timeLimit(.minutes(5)))
struct MapProcessTests {
    let directory = TemporaryDirectory()

    @Test("3 processes inserting, removing and incrementing end with exact contents")
    func concurrentWork() throws {
        let path = directory.file("shared-map.slots")
        let store = try SlotStore(path: path, schema: MapTests.schema)
        let sessions = try store.map("sessions", key: String.self, value: Int64.self)
        let workers = try (0..<3).map { try Tool.start(["_worker", "map-work", path, "sessions", "300", "\($0)"]) }
        // Lock-free readers meanwhile: a present shared counter is never torn or negative.
        while workers.contains(where: { $0.process.isRunning }) {
            for key in 0..<10 { if let value = try sessions.get("k\(key)") { #expect(value > 0 && value <= 90) } }
        }
        for result in workers.map({ $0.wait() }) { #expect(result.succeeded, "\(result.stderr)") }
        var expected: [String: Int64] = [:]
        for key in 0..<10 { expected["k\(key)"] = 90 }
        for id in 0..<3 { for index in stride(from: 0, to: 300, by: 2) { expected["w\(id)-\(index)"] = Int64(index) } }
        let actual = Dictionary(uniqueKeysWithValues: try sessions.entries().map { ($0.key, $0.value) })
        #expect(actual == expected)
        #expect(sessions.count == expected.count)
        #expect(try SlotStore.verify(at: path).ok)
    }

    enum Operation: String, CaseIterable, Sendable { case insert, replace, remove }

    @Test("a writer SIGKILLed mid-insert, mid-replace or mid-remove leaves a map verify accepts, with the old or new entry",
          arguments: Operation.allCases, FaultPoint.writePoints)
    func killed(operation: Operation, point: FaultPoint) throws {
        let path = directory.file("crash-\(operation)-\(point).slots")
        let store = try SlotStore(path: path, schema: MapTests.schema)
        let sessions = try store.map("sessions", key: String.self, value: Int64.self)
        for index in 0..<20 { try sessions.set(Int64(index), for: "old-\(index)") }
        try sessions.remove("old-3")  // a tombstone an insert may reuse
        let arguments: [String] = switch operation {
        case .insert: ["_worker", "map-set", path, "sessions", "new-key", "77"]
        case .replace: ["_worker", "map-set", path, "sessions", "old-5", "77"]
        case .remove: ["_worker", "map-remove", path, "sessions", "old-7"]
        }
        let result = try Tool.run(arguments, environment: ["SLOTSTORE_FAULT": "\(point.rawValue):kill"])
        #expect(result.killedBySIGKILL, "\(result)")
        try store.transaction { _ in }  // the next lock holder recovers
        let committed = point == .beforeUnlock
        switch operation {
        case .insert:
            #expect(try sessions.get("new-key") == (committed ? 77 : nil))
            #expect(sessions.count == (committed ? 20 : 19))
        case .replace:
            #expect(try sessions.get("old-5") == (committed ? 77 : 5))
        case .remove:
            #expect(try sessions.get("old-7") == (committed ? nil : 7))
            #expect(sessions.count == (committed ? 18 : 19))
        }
        for index in 0..<20 where ![3, 5, 7].contains(index) { #expect(try sessions.get("old-\(index)") == Int64(index)) }
        let report = try SlotStore.verify(at: path)
        #expect(report.ok, "\(report.findings)")
    }
}

@Suite("Maps: large and damaged")
struct MapEdgeTests {
    let directory = TemporaryDirectory()

    @Test("a map of 20,000 entries dumps and loads into a new store, and a full 3,072-entry map is rewritten in one transaction")
    func largeMaps() throws {
        let schema = Schema(version: 1, fields: [.map("big", key: .scalar(.int64), value: .scalar(.int64), capacity: 20_000)])
        let source = try SlotStore(path: directory.file("big.slots"), schema: schema)
        let big = try source.map("big", key: Int64.self, value: Int64.self)
        try source.transaction { tx in
            for key in 0..<Int64(1000) { try tx.store(key * 2, for: key, in: big) }
        }
        let entries = (0..<Int64(20_000)).map { FieldValue.MapEntry(key: .int($0), value: .int($0 &* 3)) }
        let copyPath = directory.file("big-copy.slots")
        try SlotStore.create(at: copyPath, schema: schema, values: ["big": .map(entries)])
        let copy = try SlotStore(path: copyPath)
        #expect(try copy.map("big", key: Int64.self, value: Int64.self).get(19_999) == 59_997)
        #expect(try copy.map("big", key: Int64.self, value: Int64.self).count == 20_000)
        #expect(try SlotStore.verify(at: copyPath).ok)
        #expect(throws: SlotStoreError.alreadyExists(path: copyPath)) {
            try SlotStore.create(at: copyPath, schema: schema, values: [:])
        }

        let small = Schema(version: 1, fields: [.map("m", key: .scalar(.int64), value: .scalar(.int64), capacity: 3072)])
        let store = try SlotStore(path: directory.file("small.slots"), schema: small)
        try store.setValue(.map((0..<Int64(3072)).map { .init(key: .int($0), value: .int(1)) }), for: "m")
        #expect(try store.map("m", key: Int64.self, value: Int64.self).count == 3072)
    }

    @Test("map buckets left odd with a clean journal are settled at the next first open, and lookups don't hang")
    func oddBuckets() throws {
        let path = directory.file("odd.slots")
        let store = try SlotStore(path: path, schema: MapTests.schema)
        let sessions = try store.map("sessions", key: String.self, value: Int64.self)
        for index in 0..<10 { try sessions.set(Int64(index), for: "k\(index)") }
        let field = try #require(store.core.layout.field(named: "sessions"))
        let table = MapTable(core: store.core, field: field)
        // Make every bucket word odd, as a power loss could leave one.
        for index in 0..<table.geometry.bucketCount {
            let word = table.bucket(index).atomic(UInt64.self)
            word.pointee.store(word.pointee.load(ordering: .relaxed) | 1, ordering: .relaxed)
        }
        store.close()
        waitUntilNoOpener(path)
        #expect(try SlotStore.verify(at: path).findings.contains { $0.code == "field-sequence" })
        let plan = try SlotStore.repair(at: path, dryRun: true)
        #expect(plan.actions.contains { $0.contains("sessions") }, "\(plan.actions)")
        let reopened = try SlotStore(path: path, options: OpenOptions(lockTimeout: .seconds(2)))
        #expect(try reopened.map("sessions", key: String.self, value: Int64.self).get("k3") == 3)
        #expect(try SlotStore.verify(at: path).ok)
    }
}
