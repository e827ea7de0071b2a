import Foundation
import Testing
@testable import SlotStore

/// The map epoch that `removeAll` bumps is kept in 32 bits of every bucket's
/// metadata, so it wraps after 2^32 calls; buckets of the epoch it wraps back
/// to must not come back to life.
@Suite("Map epoch wrap")
struct MapEpochWrapTests {
    let directory = TemporaryDirectory()

    @Test("removeAll across the 32-bit epoch wrap keeps removed keys absent and the count at 0")
    func epochWrap() throws {
        let path = directory.file("wrap.slots")
        let store = try SlotStore(path: path, schema: Schema(version: 1, fields: [
            .map("hits", key: .string(capacity: 16), value: .scalar(.int64), capacity: 32),
        ]))
        let hits = try store.map("hits", key: String.self, value: Int64.self)
        // Entries of epoch 0, the epoch the wrap returns to.
        for index in 0..<10 { try hits.set(Int64(index), for: "old-\(index)") }
        try hits.removeAll()
        #expect(try hits.get("old-3") == nil && hits.count == 0)

        // Stand in for 2^32 - 2 more removeAll calls: the epoch word is now the last one.
        let field = try #require(store.core.layout.field(named: "hits"))
        store.core.address(field.offset + MapGeometry.epochOffset).atomic(UInt64.self).pointee
            .store(MapTable.lastEpoch, ordering: .releasing)
        for index in 0..<5 { try hits.set(Int64(100 + index), for: "last-\(index)") }
        _ = try hits.remove("last-0")  // a tombstone of the last epoch too
        #expect(hits.count == 4)

        try hits.removeAll()  // wraps to epoch 0
        #expect(hits.table.epoch == 0, "the epoch wrapped")
        #expect(hits.count == 0)
        for index in 0..<10 { #expect(try hits.get("old-\(index)") == nil, "old-\(index) came back after the wrap") }
        for index in 0..<5 { #expect(try hits.get("last-\(index)") == nil) }
        #expect(try hits.entries().isEmpty)
        #expect(try store.value(of: "hits") == .map([]))
        #expect(try SlotStore.verify(at: path).findings == [])

        // The map works normally in the new epoch, and once more across the next wrap.
        try hits.set(7, for: "old-3")
        #expect(try hits.get("old-3") == 7 && hits.count == 1)
        store.core.address(field.offset + MapGeometry.epochOffset).atomic(UInt64.self).pointee
            .store(MapTable.lastEpoch, ordering: .releasing)
        try hits.removeAll()
        #expect(try hits.get("old-3") == nil && hits.count == 0, "an epoch-0 bucket stays dead across the next wrap too")
        #expect(try hits.entries().isEmpty)
    }
}
