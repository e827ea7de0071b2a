import Foundation
import Testing
@testable import SlotStore

/// Handles looked up before a compaction in place, used after it: they report
/// the live file's capacity, and a transaction given one whose field a later
/// compaction changed or dropped throws the reason instead of trapping.
@Suite("Stale handles", .serialized, .timeLimit(.minutes(5)))
struct StaleHandleTests {
    let directory = TemporaryDirectory()

    @Test("a string or bytes handle reports the capacity another process's compaction grew, and read(into:) a buffer that size works")
    func capacityFollowsGrowth() throws {
        let path = directory.file("grow.slots")
        let store = try SlotStore(path: path, schema: Schema(version: 1, fields: [
            .string("note", capacity: 32), .bytes("blob", capacity: 16),
        ]))
        let note = try store.string("note")
        let blob = try store.bytes("blob")
        #expect(note.capacity == 32 && blob.capacity == 16)

        // Another process compacts in place (this one has the store open), then writes values only the new file fits.
        let compacted = try Tool.run(["compact", path, "--capacity", "note=256", "--capacity", "blob=64"])
        #expect(compacted.succeeded, "\(compacted.stderr)")
        let text = String(repeating: "n", count: 200)
        let written = try Tool.run(["set", path, "note", text])
        #expect(written.succeeded, "\(written.stderr)")
        // Another store object in this process writes the bytes.
        try SlotStore(path: path).bytes("blob").store([UInt8](repeating: 7, count: 50))

        #expect(note.capacity == 256, "the live file's capacity, not the one at lookup")
        #expect(blob.capacity == 64)
        // The documented pattern: a buffer of `capacity` bytes.
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: note.capacity, alignment: 8)
        defer { buffer.deallocate() }
        let length = try note.read(into: buffer)
        #expect(length == 200 && String(decoding: buffer[0..<length], as: UTF8.self) == text)
        let bytes = UnsafeMutableRawBufferPointer.allocate(byteCount: blob.capacity, alignment: 8)
        defer { bytes.deallocate() }
        #expect(try blob.read(into: bytes) == 50 && bytes[0..<50].allSatisfy { $0 == 7 })
        #expect(try note.load() == text)
    }

    static let schema = Schema(version: 1, fields: [
        .int64("hits"), .int64("other"), .array("slots", of: .int64, count: 4), .string("note", capacity: 32),
        .bytes("blob", capacity: 16), .map("sessions", key: .string(capacity: 16), value: .scalar(.int64), capacity: 16),
    ])

    /// A store whose handles were looked up, then a live compaction, then one
    /// (with nobody on the new file, so allowed) that changes or drops every
    /// field but `other`.
    struct Stale {
        let path: String
        let store: SlotStore
        let hits: ScalarField<Int64>
        let other: ScalarField<Int64>
        let slots: ArrayField<Int64>
        let note: StringField
        let blob: BytesField
        let sessions: MapField<String, Int64>
    }

    func staleStore(_ name: String) throws -> Stale {
        let path = directory.file(name)
        let store = try SlotStore(path: path, schema: Self.schema)
        let stale = Stale(path: path, store: store, hits: try store.scalar("hits"), other: try store.scalar("other"),
                          slots: try store.array("slots"), note: try store.string("note"), blob: try store.bytes("blob"),
                          sessions: try store.map("sessions"))
        stale.hits.store(5)
        stale.other.store(1)
        try SlotStore.compact(at: path)
        let changed = Schema(version: 2, fields: [
            .double("hits"), .int64("other"), .array("slots", of: .int64, count: 8), .string("note", capacity: 16),
            .map("sessions", key: .string(capacity: 16), value: .scalar(.int32), capacity: 16),
        ])
        try SlotStore.compact(at: path, schema: changed,
                              migration: MigrationOptions(allowNarrowing: true, allowRetyping: true, allowDropping: true))
        return stale
    }

    /// The error names the path, the field, the type the handle expected and the one found, and says to look it up again.
    func expectWrongType(_ error: (any Error)?, _ path: String, _ name: String, expected: String, found: String,
                         sourceLocation: SourceLocation = #_sourceLocation) {
        guard case .wrongFieldType(let errorPath, let errorName, let errorExpected, let errorFound)? = error as? SlotStoreError else {
            Issue.record("expected wrongFieldType for \(name), got \(String(describing: error))", sourceLocation: sourceLocation)
            return
        }
        #expect(errorPath == path && errorName == name && errorFound == found, sourceLocation: sourceLocation)
        #expect(errorExpected.hasPrefix(expected) && errorExpected.contains("look the handle up again"), sourceLocation: sourceLocation)
    }

    func caught(_ body: () throws -> Void) -> (any Error)? {
        do { try body(); return nil } catch { return error }
    }

    @Test("each handle type's transaction writes throw wrongFieldType or unknownField for a field a later compaction changed or dropped")
    func transactionWritesThrow() throws {
        let stale = try staleStore("writes.slots")
        let path = stale.path
        let store = stale.store
        expectWrongType(caught { try store.transaction { tx in try tx.store(Int64(1), to: stale.hits) } }, path, "hits", expected: "int64", found: "double")
        expectWrongType(caught { try store.transaction { tx in _ = try tx.add(1, to: stale.hits) } }, path, "hits", expected: "int64", found: "double")
        expectWrongType(caught { try store.transaction { tx in try tx.store([1, 2, 3, 4], to: stale.slots) } }, path, "slots",
                        expected: "array<int64>[4]", found: "array<int64>[8]")
        expectWrongType(caught { try store.transaction { tx in try tx.store(9, at: 0, of: stale.slots) } }, path, "slots",
                        expected: "array<int64>[4]", found: "array<int64>[8]")
        expectWrongType(caught { try store.transaction { tx in try tx.store("x", to: stale.note) } }, path, "note",
                        expected: "string[32]", found: "string[16]")
        let mapType = "map<string[16], int64>[16]"
        let newMapType = "map<string[16], int32>[16]"
        expectWrongType(caught { try store.transaction { tx in try tx.store(1, for: "a", in: stale.sessions) } }, path, "sessions",
                        expected: mapType, found: newMapType)
        expectWrongType(caught { try store.transaction { tx in _ = try tx.load("a", from: stale.sessions) } }, path, "sessions",
                        expected: mapType, found: newMapType)
        expectWrongType(caught { try store.transaction { tx in _ = try tx.remove("a", from: stale.sessions) } }, path, "sessions",
                        expected: mapType, found: newMapType)
        expectWrongType(caught { try store.transaction { tx in _ = try tx.add(1, for: "a", in: stale.sessions) } }, path, "sessions",
                        expected: mapType, found: newMapType)

        let dropped = caught { try store.transaction { tx in try tx.store([1], to: stale.blob) } }
        guard case .unknownField(let errorPath, "blob", let available)? = dropped as? SlotStoreError else {
            Issue.record("expected unknownField for blob, got \(String(describing: dropped))")
            return
        }
        #expect(errorPath == path && available == ["hits", "other", "slots", "note", "sessions"])
        #expect("\(dropped!)".contains("look it up again"))

        // Nothing was written, and the store still works through fresh handles.
        try store.transaction { tx in try tx.add(1, to: stale.other) }
        #expect(try store.value(of: "other") == .int(2))
        #expect(try store.value(of: "hits") == .double(5))
        #expect(try SlotStore.verify(at: path).findings == [])
    }

    @Test("a transaction that loads a stale handle of each type throws the reason when its body returns and rolls back its writes")
    func transactionLoadsDeferTheError() throws {
        let stale = try staleStore("loads.slots")
        let path = stale.path
        let store = stale.store
        var seen: [Int64] = []
        let scalar = caught {
            try store.transaction { tx in
                try tx.store(100, to: stale.other)
                seen.append(tx.load(stale.hits))  // can't throw: the old file's value
            }
        }
        expectWrongType(scalar, path, "hits", expected: "int64", found: "double")
        #expect(seen == [5], "the load returned the value in the handle's old file")
        #expect(try store.value(of: "other") == .int(1), "the transaction's write was rolled back")

        expectWrongType(caught { try store.transaction { tx in _ = tx.load(stale.slots); try tx.store(100, to: stale.other) } },
                        path, "slots", expected: "array<int64>[4]", found: "array<int64>[8]")
        expectWrongType(caught { try store.transaction { tx in _ = tx.load(stale.note); try tx.store(100, to: stale.other) } },
                        path, "note", expected: "string[32]", found: "string[16]")
        let dropped = caught { try store.transaction { tx in _ = tx.load(stale.blob); try tx.store(100, to: stale.other) } }
        guard case .unknownField(path, "blob", _)? = dropped as? SlotStoreError else {
            Issue.record("expected unknownField for blob, got \(String(describing: dropped))")
            return
        }
        #expect(try store.value(of: "other") == .int(1))

        // The first reason is the one thrown; a clean transaction afterwards commits.
        let first = caught { try store.transaction { tx in _ = tx.load(stale.note); _ = tx.load(stale.hits) } }
        expectWrongType(first, path, "note", expected: "string[32]", found: "string[16]")
        try store.transaction { tx in try tx.store(tx.load(stale.other) + 1, to: stale.other) }
        #expect(try store.value(of: "other") == .int(2))
    }

    @Test("a handle from another SlotStore object in a transaction throws instead of trapping")
    func handleOfAnotherStore() throws {
        let first = try SlotStore(path: directory.file("a.slots"), schema: Self.schema)
        let second = try SlotStore(path: directory.file("b.slots"), schema: Self.schema)
        let foreign = try second.scalar("hits", as: Int64.self)
        let error = caught { try first.transaction { tx in try tx.store(1, to: foreign) } }
        guard case .invalidValue(_, "hits", let detail)? = error as? SlotStoreError else {
            Issue.record("expected invalidValue, got \(String(describing: error))")
            return
        }
        #expect(detail.contains("another SlotStore object"))
        #expect(throws: SlotStoreError.self) { try first.transaction { tx in _ = tx.load(foreign) } }
        #expect(try first.value(of: "hits") == .int(0) && foreign.load() == 0)
    }
}
