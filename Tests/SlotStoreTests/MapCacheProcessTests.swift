import Foundation
import Glibc
import Testing
@testable import SlotStore

/// Cache maps written by real processes at once: expiry on a clock they all
/// read (a manual one, given to the workers by their hidden `--clock-ms`),
/// eviction racing between them, and a writer SIGKILLed in the middle of an
/// eviction, rolled back whole by the next holder of the lock.
@Suite("Maps as caches across processes", .serialized, .timeLimit(.minutes(5)))
struct MapCacheProcessTests {
    let directory = TemporaryDirectory()
    static let start: Int64 = 1_700_000_000_000
    static let capacity = 64
    static let ttl: Int64 = 60_000

    static let schema = Schema(version: 1, fields: [
        .map("cache", key: .string(capacity: 16), value: .scalar(.int64), capacity: capacity, cache: MapCache(evict: true)),
    ])

    /// Every entry as key → value, each checked to be what its writer stored (c<ID>-<i> holds i).
    static func checkedEntries(_ map: MapField<String, Int64>) throws -> [String: Int64] {
        var result: [String: Int64] = [:]
        for (key, value) in try map.entries() {
            #expect(result[key] == nil, "\(key) listed twice")
            #expect(key.split(separator: "-").last.map { Int64($0) } == value, "\(key) holds \(value)")
            result[key] = value
        }
        return result
    }

    @Test("three processes fill an evicting map with and without time to live; one SIGKILLed right after evicting leaves it verify-clean, full, its write rolled back")
    func processesEvictAndOneIsKilled() throws {
        let path = directory.file("shared.slots")
        let clock = CacheClock.manual(startingAt: Self.start)
        var options = OpenOptions()
        options.clock = clock
        let store = try SlotStore(path: path, schema: Self.schema, options: options)
        let map = try store.map("cache", key: String.self, value: Int64.self)

        let writers = try (0..<3).map { id in
            try Tool.start(["_worker", "cache-set", path, "cache", "300", "\(id)", "\(Self.ttl)", "--clock-ms", "\(Self.start)"])
        }
        var evicted = 0
        for writer in writers {
            let result = writer.wait()
            #expect(result.succeeded, "\(result)")
            #expect(result.stdout.hasSuffix("done 300\n"))
            evicted += result.stdout.split(separator: "\n").filter { $0.hasSuffix("evicted 1") }.count
        }
        // 900 inserts of distinct keys into 64 places: every insert past the 64th evicted a live entry.
        #expect(evicted == 900 - Self.capacity)
        #expect(try Self.checkedEntries(map).count == Self.capacity && map.count == Self.capacity)
        #expect(try SlotStore.verify(at: path).findings == [])

        // Killed at its third eviction: the victim is out, the new entry not in yet.
        let before = try Self.checkedEntries(map)
        let killed = try Tool.run(["_worker", "cache-set", path, "cache", "300", "9", "\(Self.ttl)", "--clock-ms", "\(Self.start)"],
                                  environment: ["SLOTSTORE_FAULT": "afterEviction:kill:3"])
        #expect(killed.killedBySIGKILL, "\(killed)")
        let acknowledged = killed.stdout.split(separator: "\n").filter { $0.hasPrefix("set ") }
        #expect(acknowledged.count == 2, "two sets evicted and returned before the third was killed: \(killed.stdout)")
        #expect(try store.status.lockNeedsRecovery)
        try store.transaction { _ in }  // the next lock holder rolls the eviction back
        let after = try Self.checkedEntries(map)
        #expect(after.count == Self.capacity, "the victim is back: the map is full")
        #expect(after["c9-2"] == nil, "the killed set never happened")
        #expect(after["c9-0"] == 0 && after["c9-1"] == 1, "the acknowledged sets stay")
        #expect(Set(before.keys).subtracting(after.keys).count == 2, "exactly the two acknowledged evictions")
        let report = try SlotStore.verify(at: path)
        #expect(report.ok, "\(report.findings)")

        // The workers' deadlines are on the same clock: 60 s later the even-numbered entries have expired.
        let live = after.filter { $0.value % 2 == 1 }.count
        clock.advance(by: .milliseconds(Self.ttl))
        #expect(map.count == live)
        #expect(try map.entries().allSatisfy { $0.value % 2 == 1 })
        #expect(try map.removeExpired() == Self.capacity - live)
        #expect(Int(map.table.count.pointee.load(ordering: .relaxed)) == live)
        #expect(try SlotStore.verify(at: path).findings == [])
    }

    @Test("a replacement with a new deadline SIGKILLed mid-write is rolled back with the old deadline: the entry word is journaled with the value")
    func killedMidReplacement() throws {
        let path = directory.file("replace.slots")
        let clock = CacheClock.manual(startingAt: Self.start)
        var options = OpenOptions()
        options.clock = clock
        let store = try SlotStore(path: path, schema: Self.schema, options: options)
        let map = try store.map("cache", key: String.self, value: Int64.self)
        try map.set(5, for: "c9-0", ttl: nil)
        // The worker sets c9-0 to 0 with a 60 s time to live, and dies with the word and the value written.
        let killed = try Tool.run(["_worker", "cache-set", path, "cache", "1", "9", "\(Self.ttl)", "--clock-ms", "\(Self.start)"],
                                  environment: ["SLOTSTORE_FAULT": "midWrite:kill"])
        #expect(killed.killedBySIGKILL, "\(killed)")
        try store.transaction { _ in }
        #expect(try map.get("c9-0") == 5)
        clock.advance(by: .milliseconds(Self.ttl))
        #expect(try map.get("c9-0") == 5, "the old entry never expires: its word was rolled back too")
        #expect(try SlotStore.verify(at: path).findings == [])
    }
}
