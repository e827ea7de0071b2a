import Foundation
import Glibc
import Testing
@testable import SlotStore

@Suite("Compaction and migration", .timeLimit(.minutes(5)))
struct CompactionTests {
    let directory = TemporaryDirectory()

    static let v1 = Schema(version: 1, fields: [
        .int32("hits"), .float("ratio"), .string("motd", capacity: 16), .bool("legacy"),
        .map("sessions", key: .string(capacity: 16), value: .scalar(.int64), capacity: 100),
    ])

    func makeStore(_ name: String) throws -> SlotStore {
        let store = try SlotStore(path: directory.file(name), schema: Self.v1)
        try store.scalar("hits", as: Int32.self).store(-7)
        try store.scalar("ratio", as: Float.self).store(0.5)
        try store.string("motd").store("hello")
        try store.scalar("legacy", as: Bool.self).store(true)
        let sessions = try store.map("sessions", key: String.self, value: Int64.self)
        for index in 0..<60 { try sessions.set(Int64(index), for: "s\(index)") }
        for index in stride(from: 0, to: 60, by: 3) { try sessions.remove("s\(index)") }
        return store
    }

    @Test("compaction drops tombstones and grows a map's capacity, keeping every entry")
    func rehashAndGrow() throws {
        let store = try makeStore("grow.slots")
        let path = store.path
        // Removals shift entries back and leave no tombstones; these 20, as earlier builds left them, compaction drops.
        #expect(try SlotStore.inspect(at: path).fields.first { $0.name == "sessions" }?.map?.tombstones == 0)
        let sessions = try store.map("sessions", key: String.self, value: Int64.self)
        for index in 0..<20 { try sessions.set(1, for: "legacy-\(index)") }
        for index in 0..<20 { #expect(try sessions.table.removeLeavingTombstone("legacy-\(index)")) }
        let expected = try store.values()
        #expect(try SlotStore.inspect(at: path).fields.first { $0.name == "sessions" }?.map?.tombstones == 20)
        store.close()
        waitUntilNoOpener(path)
        let plan = try SlotStore.compact(at: path, capacities: ["sessions": 1000])
        #expect(plan.fields.first { $0.name == "sessions" }?.fate == "grow")
        let after = try SlotStore.inspect(at: path)
        let statistics = try #require(after.fields.first { $0.name == "sessions" }?.map)
        #expect(statistics.tombstones == 0 && statistics.count == 40 && statistics.capacity == 1000)
        #expect(after.format.generation == 2)
        let reopened = try SlotStore(path: path)
        var values = try reopened.values()
        #expect(values.removeValue(forKey: "sessions") != nil)
        var original = expected
        original.removeValue(forKey: "sessions")
        #expect(values == original)
        #expect(try reopened.value(of: "sessions") == expected["sessions"])
        #expect(try SlotStore.verify(at: path).ok)
    }

    @Test("migration: add, widen and grow apply; narrowing, retyping and dropping need their flag")
    func migrationRules() throws {
        let store = try makeStore("migrate.slots")
        let path = store.path
        store.close()
        waitUntilNoOpener(path)
        let before = bytesOutsideLock(path)
        var v2 = Self.v1
        v2.version = 2
        v2.fields[0] = .int64("hits")                       // widen
        v2.fields[1] = .double("ratio")                     // widen
        v2.fields[2] = .string("motd", capacity: 64)        // grow
        v2.fields.remove(at: 3)                             // drop: needs the flag
        v2.fields.append(.array("added", of: .uint16, count: 4))  // new
        #expect {
            try SlotStore.compact(at: path, schema: v2)
        } throws: { error in
            guard case .migrationRefused(_, let reasons) = error as? SlotStoreError else { return false }
            return reasons.count == 1 && reasons[0].contains("legacy")
        }
        #expect(bytesOutsideLock(path) == before, "a refused migration changes nothing")
        let plan = try SlotStore.compact(at: path, schema: v2, migration: MigrationOptions(allowDropping: true))
        #expect(Dictionary(uniqueKeysWithValues: plan.fields.map { ($0.name, $0.fate) })
                == ["hits": "widen", "ratio": "widen", "motd": "grow", "legacy": "drop", "added": "new", "sessions": "rehash"])
        let migrated = try SlotStore(path: path, schema: v2)
        #expect(try migrated.scalar("hits", as: Int64.self).load() == -7)
        #expect(try migrated.scalar("ratio", as: Double.self).load() == 0.5)
        #expect(try migrated.string("motd").load() == "hello")
        #expect(try migrated.array("added", of: UInt16.self).snapshot() == [0, 0, 0, 0])
        #expect(try migrated.map("sessions", key: String.self, value: Int64.self).count == 40)
        migrated.close()
        waitUntilNoOpener(path)

        // Narrowing: refused without the flag; with it, values must still fit.
        var v3 = v2
        v3.version = 3
        v3.fields[0] = .int8("hits")
        #expect(throws: SlotStoreError.self) { try SlotStore.compact(at: path, schema: v3) }
        let narrowed = try SlotStore.compact(at: path, schema: v3, migration: MigrationOptions(allowNarrowing: true))
        #expect(narrowed.fields.first { $0.name == "hits" }?.fate == "narrow")
        waitUntilNoOpener(path)
        let small = try SlotStore(path: path)
        try small.scalar("hits", as: Int8.self).store(100)
        small.close()
        waitUntilNoOpener(path)
        // A value that would not fit stops the migration with nothing changed.
        var v4 = v3
        v4.fields[0] = .int8("hits")
        v4.fields[2] = .string("motd", capacity: 2)

        #expect(throws: SlotStoreError.self) {
            try SlotStore.compact(at: path, schema: v4, migration: MigrationOptions(allowNarrowing: true))
        }
        #expect(try SlotStore(path: path).string("motd").load() == "hello")
    }

    @Test("a service migrates its own store at open with the migration option")
    func migrateAtOpen() throws {
        let store = try makeStore("open.slots")
        let path = store.path
        store.close()
        waitUntilNoOpener(path)
        var v2 = Self.v1
        v2.version = 2
        v2.fields.append(.int64("extra"))
        #expect(throws: SlotStoreError.self) { _ = try SlotStore(path: path, schema: v2) }
        let migrated = try SlotStore(path: path, schema: v2, options: OpenOptions(migration: MigrationOptions()))
        #expect(migrated.schema == v2)
        #expect(try migrated.scalar("hits", as: Int32.self).load() == -7)
        #expect(try migrated.scalar("extra", as: Int64.self).load() == 0)
    }

    @Test("while another process has the store open, compaction in place refuses to drop, retype or shrink a field; --output works")
    func inUse() throws {
        let store = try makeStore("busy.slots")
        let path = store.path
        let holder = try Tool.Holder(["_worker", "hold-lock", path])
        defer { holder.kill() }
        let before = bytesOutsideLock(path)
        let v2 = Schema(version: 2, fields: Self.v1.fields.filter { $0.name != "legacy" })
        let shrunk = Schema(version: 2, fields: Self.v1.fields.map { $0.name == "motd" ? .string("motd", capacity: 8) : $0 })
        for (schema, migration) in [(v2, MigrationOptions(allowDropping: true)), (shrunk, MigrationOptions(allowNarrowing: true))] {
            let error = #expect(throws: SlotStoreError.self) { try SlotStore.compact(at: path, schema: schema, migration: migration) }
            guard case .storeInUse(path, let operation)? = error else {
                Issue.record("expected storeInUse, got \(String(describing: error))")
                continue
            }
            #expect(operation.contains(schema == v2 ? "\"legacy\"" : "\"motd\""), "the refusal names the field: \(operation)")
        }
        #expect(bytesOutsideLock(path) == before, "a refused compaction changes nothing")
        store.close()
        holder.kill()
        let copy = directory.file("busy-copy.slots")
        let other = try SlotStore(path: path)  // another opener: a copy to a new path is fine
        try SlotStore.compact(at: path, output: copy)
        #expect(try SlotStore(path: copy).values() == other.values())
    }

    @Test("slotstore compact killed mid-copy leaves the source intact and verifiable; a rerun succeeds")
    func killedMidCompaction() throws {
        let store = try makeStore("killed.slots")
        let path = store.path
        let expected = try store.values()
        store.close()
        waitUntilNoOpener(path)
        let killed = try Tool.run(["compact", path, "--capacity", "sessions=500"], environment: ["SLOTSTORE_FAULT": "afterWrite:kill:3"])
        #expect(killed.killedBySIGKILL, "\(killed)")
        #expect(try SlotStore.verify(at: path).ok)
        #expect(try SlotStore(path: path).values() == expected)
        waitUntilNoOpener(path)
        let rerun = try Tool.run(["compact", path, "--capacity", "sessions=500", "--json"])
        #expect(rerun.succeeded, "\(rerun.stderr)")
        let plan = try JSONSerialization.jsonObject(with: Data(rerun.stdout.utf8)) as? [String: Any]
        #expect(plan?["bytesAfter"] as? Int ?? 0 > 0)
        #expect(try SlotStore(path: path).values() == expected)
        let leftovers = try FileManager.default.contentsOfDirectory(atPath: directory.path).filter { $0.contains("compacting") }
        #expect(leftovers.isEmpty, "\(leftovers)")
    }

    /// A file's bytes with the lock page blanked (every first opener resets and counts there), hashed
    /// so a failed comparison prints two numbers, not a megabyte.
    func bytesOutsideLock(_ path: String) -> Int {
        var bytes = fileBytes(path)
        if let header = try? FileHeader.decode(Array(bytes.prefix(FileHeader.size)), path: path) {
            let start = Int(header.lockOffset), end = min(bytes.count, start + Int(header.lockSize))
            if start < end { bytes.replaceSubrange(start..<end, with: repeatElement(0, count: end - start)) }
        }
        return bytes.hashValue
    }
}

@Suite("Migration values")
struct MigrationValueTests {
    let directory = TemporaryDirectory()

    func store(_ name: String, _ fields: [Field], _ set: (SlotStore) throws -> Void) throws -> String {
        let path = directory.file(name)
        let store = try SlotStore(path: path, schema: Schema(version: 1, fields: fields))
        try set(store)
        store.close()
        waitUntilNoOpener(path)
        return path
    }

    @Test("narrowing refuses a value that would round, accepts one that fits exactly")
    func exactNarrowing() throws {
        let inexact = try store("inexact.slots", [.double("x")]) { try $0.scalar("x", as: Double.self).store(0.1) }
        let narrow = MigrationOptions(allowNarrowing: true)
        #expect(throws: SlotStoreError.self) {
            try SlotStore.compact(at: inexact, schema: Schema(version: 2, fields: [.float("x")]), migration: narrow)
        }
        let exact = try store("exact.slots", [.double("x"), .int64("big")]) {
            try $0.scalar("x", as: Double.self).store(0.5)
            try $0.scalar("big", as: Int64.self).store(1 << 60 + 1)
        }
        #expect(throws: SlotStoreError.self) {  // 2^60+1 is not a double
            try SlotStore.compact(at: exact, schema: Schema(version: 2, fields: [.float("x"), .double("big")]), migration: narrow)
        }
        try SlotStore.compact(at: exact, schema: Schema(version: 2, fields: [.float("x"), .int64("big")]), migration: narrow)
        #expect(try SlotStore(path: exact).scalar("x", as: Float.self).load() == 0.5)
    }

    @Test("retyping goes through text or 0/1; arrays grow with zeros and shrink only over zeros")
    func retypeAndArrays() throws {
        let path = try store("retype.slots", [.int64("n"), .bool("flag"), .array("a", of: .int32, count: 4)]) {
            try $0.scalar("n", as: Int64.self).store(-42)
            try $0.scalar("flag", as: Bool.self).store(true)
            try $0.array("a", of: Int32.self).store([1, 2, 0, 0])
        }
        let retype = MigrationOptions(allowNarrowing: true, allowRetyping: true)
        try SlotStore.compact(at: path, schema: Schema(version: 2, fields: [
            .string("n", capacity: 8), .int8("flag"), .array("a", of: .int64, count: 6),
        ]), migration: retype)
        waitUntilNoOpener(path)
        let retyped = try SlotStore(path: path)
        #expect(try retyped.string("n").load() == "-42")
        #expect(try retyped.scalar("flag", as: Int8.self).load() == 1)
        #expect(try retyped.array("a", of: Int64.self).snapshot() == [1, 2, 0, 0, 0, 0])
        retyped.close()
        waitUntilNoOpener(path)
        try SlotStore.compact(at: path, schema: Schema(version: 3, fields: [
            .int32("n"), .bool("flag"), .array("a", of: .int64, count: 2),
        ]), migration: retype)
        waitUntilNoOpener(path)
        let back = try SlotStore(path: path)
        #expect(try back.scalar("n", as: Int32.self).load() == -42)
        #expect(try back.scalar("flag", as: Bool.self).load())
        #expect(try back.array("a", of: Int64.self).snapshot() == [1, 2])
        back.close()
        waitUntilNoOpener(path)
        #expect(throws: SlotStoreError.self) {  // would drop the 2
            try SlotStore.compact(at: path, schema: Schema(version: 4, fields: [
                .int32("n"), .bool("flag"), .array("a", of: .int64, count: 1),
            ]), migration: retype)
        }
    }
}

@Suite("Format upgrade")
struct FormatUpgradeTests {
    let directory = TemporaryDirectory()

    /// `Fixtures/format-1.0.slots`: a store in format 1.0 (before maps and the
    /// hash seed): made with the 1.0 layout, header minor version 0, no hash
    /// seed, and a clean lock region. Opening writes its lock region, so each
    /// test works on a copy.
    func fixtureCopy() throws -> String {
        let fixture = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Fixtures/format-1.0.slots")
        let path = directory.file("old.slots")
        try FileManager.default.copyItem(atPath: fixture.path, toPath: path)
        return path
    }

    @Test("a format 1.0 store opens as it is, and compaction upgrades it to the current format with every value")
    func upgrade() throws {
        let path = try fixtureCopy()
        #expect(try SlotStore.inspect(at: path).format.version == "1.0")
        let old = try SlotStore(path: path)
        let values = try old.values()
        #expect(values["requests"] == .int(123_456_789))
        #expect(values["motd"] == .string("written by format 1.0"))
        #expect(values["latency"] == .array([.double(1.5), .double(2.5), .double(3.5), .double(4.5)]))
        #expect(values["blob"] == .bytes([0xDE, 0xAD, 0xBE, 0xEF]))
        old.close()
        waitUntilNoOpener(path)

        let plan = try SlotStore.compact(at: path)
        // No per-process field: the newest format that has no such field, 1.1.
        #expect(plan.formatBefore == "1.0" && plan.formatAfter == "1.1")
        let upgraded = try SlotStore(path: path)
        #expect(upgraded.core.header.formatMinor == 1)
        #expect(upgraded.core.header.generation == 2)
        #expect(upgraded.core.header.hashSeed != 0)
        #expect(try upgraded.values() == values)
        #expect(try SlotStore.verify(at: path).ok)
    }

    @Test("a format 1.0 store migrates at open to a schema with a map")
    func migrateToMaps() throws {
        let path = try fixtureCopy()
        var schema = try SlotStore(path: path).schema
        waitUntilNoOpener(path)
        schema.version = 4
        schema.fields.append(.map("hits", key: .string(capacity: 16), value: .scalar(.int64), capacity: 100))
        let store = try SlotStore(path: path, schema: schema, options: OpenOptions(migration: MigrationOptions()))
        let hits = try store.map("hits", key: String.self, value: Int64.self)
        try hits.add(3, for: "/")
        #expect(try hits.get("/") == 3)
        #expect(try store.value(of: "requests") == .int(123_456_789))
    }
}
