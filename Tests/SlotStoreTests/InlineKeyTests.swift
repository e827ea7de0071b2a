import Foundation
import Glibc
import Testing
@testable import SlotStore

@Suite("InlineKey map keys")
struct InlineKeyTests {
    let directory = TemporaryDirectory()

    static let schema = Schema(version: 1, fields: [
        .map("sessions", key: .string(capacity: 32), value: .scalar(.int64), capacity: 100),
        .map("blobs", key: .bytes(capacity: 16), value: .string(capacity: 16), capacity: 100),
        .map("ids", key: .scalar(.uint64), value: .scalar(.int64), capacity: 8),
    ])

    @Test("set, get, contains, add, remove and transactions through InlineKey on string and bytes keys")
    func roundTrips() throws {
        let store = try SlotStore(path: directory.file("round.slots"), schema: Self.schema)
        let sessions = try store.map("sessions", key: InlineKey<32>.self, value: Int64.self)
        let full = try InlineKey<32>(String(repeating: "k", count: 32))
        let short = try InlineKey<32>("a1b2c3")
        try sessions.set(1, for: full)
        try sessions.set(2, for: short)
        #expect(try sessions.get(full) == 1)
        #expect(try sessions.get(short) == 2)
        #expect(try sessions.get(InlineKey("a1b2c")) == nil, "a prefix is another key")
        #expect(try sessions.contains(short))
        #expect(try sessions.add(5, for: short) == 7)
        #expect(try sessions.add(3, for: InlineKey("new")) == 3)
        #expect(try sessions.remove(full))
        #expect(try !sessions.remove(full))
        #expect(sessions.count == 2)
        try store.transaction { tx in
            #expect(try tx.load(short, from: sessions) == 7)
            try tx.store(9, for: full, in: sessions)
            try tx.add(1, for: full, in: sessions)
            #expect(try tx.remove(InlineKey("new"), from: sessions))
        }
        #expect(try sessions.get(full) == 10)
        #expect(try sessions.get(InlineKey("new")) == nil)

        // Bytes keys that are not UTF-8, and keys that differ only in zeros:
        // the length is part of the key, so these are four different keys.
        let blobs = try store.map("blobs", key: InlineKey<16>.self, value: String.self)
        let keys: [[UInt8]] = [[], [0], [0, 0], [0xFF, 0xFE, 0x00, 0x80]]
        for (index, bytes) in keys.enumerated() { try blobs.set("value \(index)", for: InlineKey(bytes)) }
        for (index, bytes) in keys.enumerated() { #expect(try blobs.get(InlineKey(bytes)) == "value \(index)") }
        #expect(blobs.count == 4)
        #expect(try SlotStore.verify(at: store.path).ok)
    }

    @Test("an InlineKey and a String or [UInt8] of the same bytes are the same map key, both ways")
    func sameKeyAsStringAndBytes() throws {
        let store = try SlotStore(path: directory.file("same.slots"), schema: Self.schema)
        let byString = try store.map("sessions", key: String.self, value: Int64.self)
        let byInline = try store.map("sessions", key: InlineKey<32>.self, value: Int64.self)
        let wider = try store.map("sessions", key: InlineKey<64>.self, value: Int64.self)
        try byString.set(1, for: "set as a String")
        #expect(try byInline.get(InlineKey("set as a String")) == 1)
        #expect(try wider.get(InlineKey("set as a String")) == 1)
        try byInline.set(2, for: InlineKey("set as an InlineKey, é"))
        #expect(try byString.get("set as an InlineKey, é") == 2)
        #expect(try byInline.add(1, for: InlineKey("set as a String")) == 2)
        #expect(try byString.get("set as a String") == 2)
        #expect(byString.count == 2, "no duplicate entries")

        let byBytes = try store.map("blobs", key: [UInt8].self, value: String.self)
        let blobs = try store.map("blobs", key: InlineKey<16>.self, value: String.self)
        try byBytes.set("x", for: [1, 2, 3])
        #expect(try blobs.get(InlineKey([1, 2, 3])) == "x")
        try blobs.set("y", for: InlineKey([0xC3]))
        #expect(try byBytes.get([0xC3]) == "y")
        #expect(byBytes.count == 2)
    }

    @Test("every way of making a key gives the same key, equal and hashing alike")
    func construction() throws {
        let bytes: [UInt8] = Array("héllo".utf8)
        let fromString = try InlineKey<8>("héllo")
        let fromSubstring = try InlineKey<8>("(héllo)".dropFirst().dropLast())
        let fromArray = try InlineKey<8>(bytes)
        let fromBuffer = try bytes.withUnsafeBytes { buffer throws(InlineKeyError) in try InlineKey<8>(buffer) }
        let fromSpan = try InlineKey<8>(bytes.span)
        // Not contiguous: the element-by-element path.
        let fromSequence = try InlineKey<8>(bytes.lazy.map { $0 })
        let all = [fromString, fromSubstring, fromArray, fromBuffer, fromSpan, fromSequence]
        for key in all {
            #expect(key == fromString)
            #expect(key.count == 6)
            #expect(key.withUnsafeBytes { Array($0) } == bytes)
        }
        #expect(Set(all).count == 1)
        #expect(Set([try InlineKey<8>([0]), try InlineKey<8>([0, 0]), try InlineKey<8>([]), try InlineKey<8>([0])]).count == 3)
        #expect(try InlineKey<8>("a") != InlineKey<8>("b"))
        #expect(try InlineKey<4>("") .count == 0)
        #expect(try InlineKey<4>("abcd").count == 4, "exactly the capacity fits")

        #expect(try InlineKey<32>("a1b2c3").description == "\"a1b2c3\"")
        #expect(try InlineKey<32>("say \"hi\"\n\\").description == #""say \"hi\"\n\\""#)
        #expect(try InlineKey<32>([0x00, 0xAB, 0xFF]).description == "0x00abff")
        #expect("\(try InlineKey<32>([0xC3]))" == "0xc3", "invalid UTF-8 prints as hex")
    }

    @Test("a key over the type's capacity throws tooLong with its full size, whatever it was made from")
    func overCapacity() throws {
        let long: [UInt8] = Array(repeating: 7, count: 5)
        #expect(throws: InlineKeyError.tooLong(size: 5, capacity: 4)) { try InlineKey<4>("abcde") }
        #expect(throws: InlineKeyError.tooLong(size: 6, capacity: 4)) { try InlineKey<4>("ééé") }
        #expect(throws: InlineKeyError.tooLong(size: 5, capacity: 4)) { try InlineKey<4>(long) }
        #expect(throws: InlineKeyError.tooLong(size: 5, capacity: 4)) { try InlineKey<4>(long.span) }
        #expect(throws: InlineKeyError.tooLong(size: 5, capacity: 4)) {
            try long.withUnsafeBytes { buffer throws(InlineKeyError) in try InlineKey<4>(buffer) }
        }
        #expect(throws: InlineKeyError.tooLong(size: 9, capacity: 4)) { try InlineKey<4>((0..<9).lazy.map { UInt8($0) }) }
        #expect(InlineKeyError.tooLong(size: 5, capacity: 4).description ==
            "a key of 5 bytes does not fit InlineKey<4>, which holds at most 4 bytes; shorten the key, or use an InlineKey whose capacity is the map's key capacity")
    }

    @Test("a key that fits the type but not the map's key capacity throws valueTooLarge and changes nothing")
    func overKeyCapacity() throws {
        let store = try SlotStore(path: directory.file("over.slots"), schema: Self.schema)
        let sessions = try store.map("sessions", key: InlineKey<64>.self, value: Int64.self)
        let key = try InlineKey<64>(String(repeating: "k", count: 33))
        let error = SlotStoreError.valueTooLarge(path: store.path, field: "sessions key", capacity: 32, size: 33)
        #expect(throws: error) { try sessions.set(1, for: key) }
        #expect(throws: error) { try sessions.get(key) }
        #expect(throws: error) { try sessions.contains(key) }
        #expect(throws: error) { try sessions.add(1, for: key) }
        #expect(throws: error) { try sessions.remove(key) }
        #expect(sessions.count == 0)
    }

    @Test("looking a map up with an InlineKey whose capacity is below the key capacity, or on integer keys, is refused")
    func resolveMismatch() throws {
        let store = try SlotStore(path: directory.file("mismatch.slots"), schema: Self.schema)
        #expect(throws: SlotStoreError.wrongFieldType(
            path: store.path, name: "sessions",
            expected: "map<InlineKey<31> (string or bytes keys of key capacity at most 31), Int64>",
            found: "map<string[32], int64>[100]")) {
            _ = try store.map("sessions", key: InlineKey<31>.self, value: Int64.self)
        }
        #expect(throws: SlotStoreError.self) { _ = try store.map("blobs", key: InlineKey<15>.self, value: String.self) }
        #expect(throws: SlotStoreError.self) { _ = try store.map("ids", key: InlineKey<8>.self, value: Int64.self) }
        _ = try store.map("sessions", key: InlineKey<32>.self, value: Int64.self)
        _ = try store.map("blobs", key: InlineKey<16>.self, value: String.self)
    }

    @Test("forEach and entries give InlineKey keys, equal to the keys set through String")
    func iteration() throws {
        let store = try SlotStore(path: directory.file("iterate.slots"), schema: Self.schema)
        let byString = try store.map("sessions", key: String.self, value: Int64.self)
        var expected: [InlineKey<32>: Int64] = [:]
        for index in 0..<50 {
            let text = "session-\(index)-" + String(repeating: "z", count: index % 17)
            try byString.set(Int64(index), for: text)
            expected[try InlineKey(text)] = Int64(index)
        }
        // A key of exactly the key capacity comes back whole.
        let widest = String(repeating: "w", count: 32)
        try byString.set(-1, for: widest)
        expected[try InlineKey(widest)] = -1
        let sessions = try store.map("sessions", key: InlineKey<32>.self, value: Int64.self)
        var visited: [InlineKey<32>: Int64] = [:]
        try sessions.forEach { key, value in visited[key] = value }
        #expect(visited == expected)
        let entries = try sessions.entries()
        #expect(Dictionary(uniqueKeysWithValues: entries.map { ($0.key, $0.value) }) == expected)
        // Every key read back works as a lookup key.
        for (key, value) in entries { #expect(try sessions.get(key) == value) }
        #expect(Set(try byString.entries().map { try InlineKey<32>($0.key) }) == Set(expected.keys))
    }

    @Test("an InlineKey handle carries on across a compaction in place; a key capacity above the type's is refused after a migration")
    func acrossCompaction() throws {
        let path = directory.file("compact.slots")
        let store = try SlotStore(path: path, schema: Self.schema)
        let sessions = try store.map("sessions", key: InlineKey<32>.self, value: Int64.self)
        for index in 0..<40 { try sessions.set(Int64(index), for: InlineKey("key-\(index)")) }
        for index in 0..<20 { #expect(try sessions.remove(InlineKey("key-\(index)"))) }

        // Another SlotStore object opens it, so this compaction is in place, live.
        try SlotStore.compact(at: path, capacities: ["sessions": 500])
        #expect(try sessions.get(InlineKey("key-25")) == 25, "the old handle follows into the new file")
        #expect(try sessions.get(InlineKey("key-5")) == nil)
        try sessions.set(100, for: InlineKey("after"))
        #expect(sessions.capacity == 500 && sessions.count == 21)
        let keys = Set(try sessions.entries().map(\.key))
        #expect(keys == Set(try (20..<40).map { try InlineKey<32>("key-\($0)") } + [InlineKey("after")]))
        let fresh = try SlotStore(path: path)
        #expect(try fresh.map("sessions", key: String.self, value: Int64.self).get("after") == 100)
        fresh.close()
        store.close()

        // A new key capacity of 48 (offline: a retype is refused while the
        // store is open): an InlineKey<32> handle is refused, since iterating
        // could meet a 48-byte key; a wide enough type works.
        let wider = Schema(version: 2, fields: [
            .map("sessions", key: .string(capacity: 48), value: .scalar(.int64), capacity: 500),
            .map("blobs", key: .bytes(capacity: 16), value: .string(capacity: 16), capacity: 100),
            .map("ids", key: .scalar(.uint64), value: .scalar(.int64), capacity: 8),
        ])
        try SlotStore.compact(at: path, schema: wider)
        let reopened = try SlotStore(path: path)
        #expect(throws: SlotStoreError.self) { _ = try reopened.map("sessions", key: InlineKey<32>.self, value: Int64.self) }
        let wide = try reopened.map("sessions", key: InlineKey<48>.self, value: Int64.self)
        #expect(try wide.get(InlineKey("key-25")) == 25)
        try wide.set(1, for: InlineKey(String(repeating: "w", count: 48)))
        #expect(try SlotStore.verify(at: path).ok)
    }
}
