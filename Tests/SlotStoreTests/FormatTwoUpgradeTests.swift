import Foundation
import Testing
@testable import SlotStore

/// Format 2.0 changed the map layout. `Fixtures/format-1.2.slots` was made by
/// the last 1.2 build (commit 5179cbb, `slotstore create/compact/set/add`):
/// a per-process sum (42), a string, a map `sessions` of 135 string keys
/// (`session-i` → 7i, every i < 150 but those ending in 3) and a growable map
/// `ids` grown to capacity 64, holding 40 uint32 keys (1000i + 1 → "id-i").
@Suite("Format 2.0: 1.x files open and upgrade", .timeLimit(.minutes(3)))
struct FormatTwoUpgradeTests {
    let directory = TemporaryDirectory()

    static let sessionKeys = (0..<150).filter { $0 % 10 != 3 }

    func fixtureCopy(_ name: String) throws -> String {
        let fixture = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Fixtures/format-1.2.slots")
        let path = directory.file(name)
        try FileManager.default.copyItem(atPath: fixture.path, toPath: path)
        return path
    }

    /// Every entry of the fixture, read through handles.
    func expectFixtureContent(_ store: SlotStore, removed: Set<Int> = [], sourceLocation: SourceLocation = #_sourceLocation) throws {
        #expect(try store.value(of: "requests") == .int(42), sourceLocation: sourceLocation)
        #expect(try store.value(of: "motd") == .string("written by format 1.2"), sourceLocation: sourceLocation)
        let sessions = try store.map("sessions", key: String.self, value: Int64.self)
        for index in Self.sessionKeys where !removed.contains(index) {
            #expect(try sessions.get("session-\(index)") == Int64(index * 7), "session-\(index)", sourceLocation: sourceLocation)
        }
        #expect(try sessions.get("session-3") == nil, sourceLocation: sourceLocation)
        let ids = try store.map("ids", key: UInt32.self, value: String.self)
        for index in 0..<40 {
            #expect(try ids.get(UInt32(index * 1000 + 1)) == "id-\(index)", sourceLocation: sourceLocation)
        }
        #expect(ids.count == 40, sourceLocation: sourceLocation)
    }

    @Test("a 1.2 file with maps opens in place and keeps layout 1: reads, inserts, removals and verify work, and it stays 1.2")
    func opensInPlace() throws {
        let path = try fixtureCopy("in-place.slots")
        let store = try SlotStore(path: path)
        #expect(store.core.header.formatMajor == 1 && store.core.header.formatMinor == 2)
        #expect(store.core.layout.mapLayout == .v1)
        try expectFixtureContent(store)
        let sessions = try store.map("sessions", key: String.self, value: Int64.self)
        // Removals shift entries back along layout 1's probe paths; inserts find them.
        for index in Self.sessionKeys where index % 4 == 0 { #expect(try sessions.remove("session-\(index)")) }
        for index in 0..<60 { try sessions.set(-Int64(index), for: "new-\(index)") }
        for index in 0..<60 { #expect(try sessions.get("new-\(index)") == -Int64(index)) }
        try expectFixtureContent(store, removed: Set(Self.sessionKeys.filter { $0 % 4 == 0 }))
        store.close()
        waitUntilNoOpener(path)
        #expect(try SlotStore.verify(at: path).ok)
        let header = try FileHeader.decode(Array(fileBytes(path).prefix(FileHeader.size)), path: path)
        #expect(header.formatMajor == 1 && header.formatMinor == 2, "opening and writing never changes the format")
    }

    @Test("slotstore compact rewrites a 1.2 file as 2.0 with every entry, and the dump is the same before and after")
    func compactUpgrades() throws {
        let path = try fixtureCopy("compact.slots")
        let before = try Tool.run(["dump", path])
        #expect(before.succeeded, "\(before.stderr)")
        let compact = try Tool.run(["compact", path])
        #expect(compact.succeeded && compact.stdout.contains("1.2") && compact.stdout.contains("2.0"), "\(compact.stdout)\(compact.stderr)")
        let after = try Tool.run(["dump", path])
        #expect(after.stdout == before.stdout)
        let store = try SlotStore(path: path)
        #expect(store.core.header.formatMajor == 2 && store.core.header.formatMinor == 0 && store.core.layout.mapLayout == .v2)
        let geometry = try #require(store.core.layout.field(named: "sessions")?.mapGeometry)
        #expect(geometry.bucketCount == 236 && geometry.bucketBytes == 64)
        #expect(try #require(store.core.layout.field(named: "sessions")).offset % 64 == 0)
        try expectFixtureContent(store)
        store.close()
        waitUntilNoOpener(path)
        #expect(try SlotStore.verify(at: path).ok)
    }

    @Test("migration at open writes 2.0; a map's own growth keeps 1.2 and layout 1, so 1.x builds sharing the store can follow it")
    func migrationAndGrowthUpgrade() throws {
        let migratedPath = try fixtureCopy("migrate.slots")
        let stored = try SlotStore(path: migratedPath)
        var schema = stored.schema
        stored.close()
        waitUntilNoOpener(migratedPath)
        schema.version += 1
        schema.fields.append(.int64("extra"))
        let migrated = try SlotStore(path: migratedPath, schema: schema, options: OpenOptions(migration: MigrationOptions()))
        #expect(migrated.core.header.formatMajor == 2 && migrated.core.layout.mapLayout == .v2)
        try expectFixtureContent(migrated)
        migrated.close()

        // ids grows ×2 at 90% of 64: a compaction nobody asked for, which
        // keeps the file's format (an older build may share it).
        let grownPath = try fixtureCopy("grow.slots")
        let store = try SlotStore(path: grownPath)
        let ids = try store.map("ids", key: UInt32.self, value: String.self)
        for index in 40..<100 { try ids.set("id-\(index)", for: UInt32(index * 1000 + 1)) }
        #expect(store.generation > 2)
        let current = try SlotStore(path: grownPath)
        #expect(current.core.header.formatMajor == 1 && current.core.header.formatMinor == 2)
        #expect(current.core.layout.mapLayout == .v1)
        #expect(try #require(current.core.layout.field(named: "ids")?.mapGeometry).capacity == 128)
        let grown = try current.map("ids", key: UInt32.self, value: String.self)
        for index in 0..<100 { #expect(try grown.get(UInt32(index * 1000 + 1)) == "id-\(index)") }
        #expect(try SlotStore.verify(at: grownPath).ok)
    }

    /// Outside attack: one damaged word (the map's epoch) made `compact`
    /// copy an empty map and exit 0, and `verify` of the result said ok.
    @Test("compaction refuses a map whose count word disagrees with its buckets, and leaves the file as it was")
    func compactionRefusesDamagedMap() throws {
        let path = try fixtureCopy("damaged.slots")
        let sessions = try #require(try SlotStore(path: path).core.layout.field(named: "sessions"))
        waitUntilNoOpener(path)
        var bytes = fileBytes(path)
        bytes.setLittleEndian(UInt64(7), at: sessions.offset + MapGeometry.epochOffset)
        writeFileBytes(path, bytes)
        // What opening may change (lock region, journal, process slots) aside:
        // the same file (no rename over it) with the same map bytes.
        func identity() -> (UInt64, [UInt8]) {
            var info = stat()
            stat(path, &info)
            return (UInt64(info.st_ino), Array(fileBytes(path)[sessions.offset..<(sessions.offset + sessions.size)]))
        }
        let before = identity()
        let compact = try Tool.run(["compact", path])
        #expect(compact.status == 2, "\(compact)")
        #expect(compact.stderr.contains("map \"sessions\" records 135 entries but its buckets hold 0"), "\(compact.stderr)")
        let after = identity()
        #expect(after.0 == before.0 && after.1 == before.1, "nothing renamed over the damaged store")
        #expect(try SlotStore.verify(at: path).ok == false)
    }

    /// Outside attack: about one open in two compactions threw `storeRetired`
    /// (the process slot of a per-process field is claimed under the lock,
    /// which the file retired between the open's checks and the claim).
    @Test("opening while compactions in place run never throws storeRetired (a per-process field claims its slot under the lock)")
    func openDuringCompactions() throws {
        let path = try fixtureCopy("race.slots")
        // Another process compacts in place, one compaction after another, until told to stop.
        let compactor = try Tool.start(["_worker", "compact-loop", path, "200"])
        var opens = 0
        var failures: [String] = []
        while opens < 20_000 {
            do {
                let store = try SlotStore(path: path)
                _ = try store.value(of: "requests")
                store.close()
            } catch {
                failures.append("\(error)")
            }
            opens += 1
            if !failures.isEmpty || !compactor.process.isRunning { break }
        }
        let result = compactor.wait()
        #expect(failures.isEmpty, "\(failures.prefix(3)) after \(opens) opens")
        #expect(opens >= 10, "only \(opens) opens overlapped the compactions")
        #expect(result.status == 0, "\(result)")
    }

    @Test("a 2.x minor newer than this build's is refused, naming the versions it reads, and nothing is written")
    func newerMinorOfTwoRefused() throws {
        let path = directory.file("two.slots")
        let store = try SlotStore(path: path, schema: Schema(version: 1, fields: [
            .map("m", key: .scalar(.int64), value: .scalar(.int64), capacity: 8),
        ]))
        var header = store.core.header
        #expect(header.formatMajor == 2 && header.formatMinor == 0)
        store.close()
        waitUntilNoOpener(path)
        header.formatMinor = 1
        patchFile(path, at: 0, header.encoded())
        let before = fileBytes(path)
        #expect(throws: SlotStoreError.unsupportedVersion(path: path, found: "2.1", supported: "1.0 to 1.2, 2.0")) {
            try SlotStore(path: path)
        }
        #expect(fileBytes(path) == before)
    }

    @Test("a store without maps is still written as 1.1 (or 1.2 with per-process fields), so older builds keep opening it")
    func storesWithoutMapsKeepTheirVersion() throws {
        let plain = try SlotStore(path: directory.file("plain.slots"), schema: Schema(version: 1, fields: [.int64("a")]))
        #expect(plain.core.header.formatMajor == 1 && plain.core.header.formatMinor == 1)
        var field = Field.int64("b")
        field.perProcess = .sum
        let perProcess = try SlotStore(path: directory.file("pp.slots"), schema: Schema(version: 1, fields: [field]))
        #expect(perProcess.core.header.formatMajor == 1 && perProcess.core.header.formatMinor == 2)
    }
}
