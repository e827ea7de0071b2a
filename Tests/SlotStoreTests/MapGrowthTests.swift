import Foundation
import Glibc
import Testing
@testable import SlotStore

/// Maps that grow by themselves: an insert that crosses the growth threshold
/// (or finds the map full) compacts the store in place with the map at twice
/// the capacity, and every process carries on in the new file.
@Suite("Maps that grow", .serialized, .timeLimit(.minutes(5)))
struct MapGrowthTests {
    let directory = TemporaryDirectory()

    static func schema(capacity: Int = 8, maxCapacity: Int = 100_000, threshold: Double = 0.9) -> Schema {
        Schema(version: 1, fields: [
            .array("progress", of: .int64, count: 4),
            .map("sessions", key: .string(capacity: 16), value: .scalar(.int64), capacity: capacity,
                 growth: MapGrowth(maxCapacity: maxCapacity, threshold: threshold)),
        ])
    }

    @Test("inserts past the first capacity grow the map, keep every entry, and the store verifies clean")
    func growsInOneProcess() throws {
        let path = directory.file("grow.slots")
        let store = try SlotStore(path: path, schema: Self.schema())
        let sessions = try store.map("sessions", key: String.self, value: Int64.self)
        for index in 0..<5_000 { try sessions.set(Int64(index), for: "k\(index)") }
        #expect(sessions.count == 5_000)
        // 8 → 16 → … → 8192: each growth happened when an insert reached 90%.
        #expect(sessions.capacity == 8_192)
        #expect(store.generation == 11, "ten growths, each a compaction in place")
        for index in 0..<5_000 { #expect(try sessions.get("k\(index)") == Int64(index)) }
        #expect(try SlotStore.verify(at: path).findings == [])
        let inspected = try SlotStore.inspect(at: path).fields.first { $0.name == "sessions" }?.map
        #expect(inspected?.growth == MapGrowth(maxCapacity: 100_000) && inspected?.capacity == 8_192)
        let plan = try SlotStore.compact(at: path, dryRun: true)
        #expect(plan.fields.first { $0.name == "sessions" }?.to == "map<string[16], int64>[8192], grows ×2 at 90% up to 100000")
        // A program opens the grown store with the schema it created it with.
        let again = try SlotStore(path: path, schema: Self.schema())
        #expect(try again.map("sessions", key: String.self, value: Int64.self).count == 5_000)
        #expect(again.schema.field(named: "sessions")?.growth == MapGrowth(maxCapacity: 100_000))
    }

    @Test("add inserting new keys grows the map as set does")
    func addGrows() throws {
        let store = try SlotStore(path: directory.file("add.slots"), schema: Self.schema())
        let sessions = try store.map("sessions", key: String.self, value: Int64.self)
        for index in 0..<100 { try sessions.add(Int64(index), for: "a\(index)") }
        #expect(sessions.count == 100 && sessions.capacity == 128)
        #expect(try sessions.get("a99") == 99)
    }

    @Test("at its maximum capacity the map is full: mapFull, nothing changed")
    func fullAtMaximum() throws {
        let store = try SlotStore(path: directory.file("max.slots"), schema: Self.schema(capacity: 4, maxCapacity: 20))
        let sessions = try store.map("sessions", key: String.self, value: Int64.self)
        for index in 0..<20 { try sessions.set(Int64(index), for: "k\(index)") }
        #expect(sessions.capacity == 20, "4 → 8 → 16 → 20: the last growth stops at the maximum")
        #expect(throws: SlotStoreError.mapFull(path: directory.file("max.slots"), field: "sessions", capacity: 20, count: 20)) {
            try sessions.set(99, for: "one-more")
        }
        #expect(sessions.count == 20)
        #expect(try sessions.get("one-more") == nil)
    }

    @Test("a transaction that finds the map full rolls back with mapFull, and the map has grown for the next try")
    func transactionGrowsAfterRollback() throws {
        let store = try SlotStore(path: directory.file("tx.slots"), schema: Self.schema(capacity: 4, threshold: 1))
        let sessions = try store.map("sessions", key: String.self, value: Int64.self)
        func insertSix() throws {
            try store.transaction { transaction in
                for index in 0..<6 { try transaction.store(Int64(index), for: "t\(index)", in: sessions) }
            }
        }
        #expect(throws: SlotStoreError.self) { try insertSix() }
        #expect(sessions.count == 0, "rolled back whole")
        #expect(sessions.capacity == 8)
        try insertSix()
        #expect(sessions.count == 6)
    }

    @Test("whole-map writes by name and creating a store with its values grow the map to what the entries need")
    func wholeMapWritesGrow() throws {
        let entries = (0..<100).map { FieldValue.MapEntry(key: .string("k\($0)"), value: .int(Int64($0))) }
        let path = directory.file("whole.slots")
        let store = try SlotStore(path: path, schema: Self.schema(capacity: 16))
        try store.setValue(.map(entries), for: "sessions")
        let sessions = try store.map("sessions", key: String.self, value: Int64.self)
        #expect(sessions.count == 100)
        #expect(sessions.capacity == 128, "16 → 32 → 64 → 128, as 100 inserts one by one would have grown it")
        #expect(try sessions.get("k99") == 99)

        let created = directory.file("created.slots")
        try SlotStore.create(at: created, schema: Self.schema(capacity: 16), values: ["sessions": .map(entries)])
        let reopened = try SlotStore(path: created, schema: Self.schema(capacity: 16))
        let createdMap = try reopened.map("sessions", key: String.self, value: Int64.self)
        #expect(createdMap.count == 100 && createdMap.capacity == 128)
        // Past the maximum it is still full.
        #expect(throws: SlotStoreError.self) {
            try SlotStore.create(at: directory.file("over.slots"), schema: Self.schema(capacity: 16, maxCapacity: 50),
                                 values: ["sessions": .map(entries)])
        }
    }

    @Test("a first opener removes what a killed growth left beside the store")
    func killedGrowthLeavesNothingForLong() throws {
        let path = directory.file("leftover.slots")
        _ = try SlotStore(path: path, schema: Self.schema(capacity: 64)).close()
        let result = try Tool.run(["_worker", "map-grow", path, "sessions", "1000", "1"],
                                  environment: ["SLOTSTORE_FAULT": "afterBulkCopy:kill"])
        #expect(result.signaled)
        func leftovers() throws -> [String] {
            try FileManager.default.contentsOfDirectory(atPath: directory.path).filter { $0.contains("leftover.slots.compacting") }
        }
        #expect(try !leftovers().isEmpty, "the killed growth's half-built file is there")
        let store = try SlotStore(path: path)
        #expect(try leftovers().isEmpty, "the next first opener removed it")
        #expect(try store.map("sessions", key: String.self, value: Int64.self).count == 58)
    }

    @Test("growth in the schema: JSON round trip, validation, and a changed policy is a schema difference")
    func schemaForm() throws {
        let json = #"{"version":1,"fields":[{"name":"m","type":"map","key":{"type":"string","capacity":8},"value":{"type":"int64"},"capacity":16,"growth":{"maxCapacity":1000}}]}"#
        let schema = try Schema(json: Array(json.utf8))
        #expect(schema.fields[0].growth == MapGrowth(maxCapacity: 1000, threshold: 0.9))
        #expect(try Schema(json: schema.jsonBytes()) == schema)
        #expect(String(decoding: schema.jsonBytes(), as: UTF8.self).contains(#""growth":{"maxCapacity":1000,"threshold":0.9}"#))

        func invalid(_ field: Field) -> Bool {
            do { try Schema(version: 1, fields: [field]).validate(); return false } catch { return true }
        }
        #expect(invalid(.map("m", key: .scalar(.int64), value: .scalar(.int64), capacity: 16, growth: MapGrowth(maxCapacity: 8))))
        #expect(invalid(.map("m", key: .scalar(.int64), value: .scalar(.int64), capacity: 16, growth: MapGrowth(maxCapacity: 64, threshold: 0.2))))
        #expect(invalid(Field("n", .scalar(.int64), growth: MapGrowth(maxCapacity: 64))))
        let misspelled = json.replacingOccurrences(of: #""growth":{"maxCapacity":1000}"#, with: #""growth":{"maxCapacity":1000,"factor":3}"#)
        #expect(throws: SlotStoreError.self, "an unknown growth key is refused, not ignored") { try Schema(json: Array(misspelled.utf8)) }

        let path = directory.file("policy.slots")
        _ = try SlotStore(path: path, schema: Self.schema())
        #expect(throws: SlotStoreError.schemaMismatch(path: path, differences: [
            .growthChanged(name: "sessions", stored: MapGrowth(maxCapacity: 100_000), given: MapGrowth(maxCapacity: 50)),
        ])) {
            _ = try SlotStore(path: path, schema: Self.schema(maxCapacity: 50))
        }
    }

    @Test("three processes inserting at once through many growths lose no entry")
    func growsAcrossProcesses() throws {
        let path = directory.file("processes.slots")
        let store = try SlotStore(path: path, schema: Self.schema(capacity: 16))
        let workers = try (0..<3).map { try Tool.start(["_worker", "map-grow", path, "sessions", "1500", String($0)]) }
        for worker in workers {
            let result = worker.wait()
            #expect(result.status == 0, "worker failed: \(result.stderr)")
            #expect(result.stdout.hasPrefix("done 1500 generation "))
        }
        let sessions = try store.map("sessions", key: String.self, value: Int64.self)
        #expect(sessions.count == 4_500)
        #expect(sessions.capacity == 8_192)
        #expect(store.generation == 10, "16 → 8192 is nine growths: a process that asked for a growth another one had made did nothing")
        for id in 0..<3 {
            for index in 0..<1_500 { #expect(try sessions.get("g\(id)-\(index)") == Int64(index)) }
        }
        #expect(try SlotStore.verify(at: path).findings == [])
    }

    @Test("a process killed while it grows the map (after its copy, after stopping writers, after the rename) loses no committed insert",
          arguments: ["afterBulkCopy", "afterRetiring", "afterRename"])
    func killedWhileGrowing(point: String) throws {
        let path = directory.file("killed-\(point).slots")
        let store = try SlotStore(path: path, schema: Self.schema(capacity: 64))
        let result = try Tool.run(["_worker", "map-grow", path, "sessions", "1000", "1"],
                                  environment: ["SLOTSTORE_FAULT": "\(point):kill"])
        #expect(result.signaled, "the worker died in its first growth: \(result.stderr)")
        // Its inserts up to the one that asked for the growth committed before
        // the growth began, whichever file is at the path now.
        let reopened = try SlotStore(path: path)
        let sessions = try reopened.map("sessions", key: String.self, value: Int64.self)
        let committed = sessions.count
        #expect(committed == 58, "58 of 64 is the 90% threshold: the 58th insert asked for the growth")
        for index in 0..<committed { #expect(try sessions.get("g1-\(index)") == Int64(index)) }
        #expect(reopened.generation == (point == "afterRename" ? 2 : 1))
        #expect(sessions.capacity == (point == "afterRename" ? 128 : 64))
        // The next insert grows it (or it has grown): the store carries on.
        for index in committed..<200 { try sessions.set(Int64(index), for: "g1-\(index)") }
        #expect(sessions.count == 200)
        #expect(try SlotStore.verify(at: path).findings == [])
        _ = store
    }
}
