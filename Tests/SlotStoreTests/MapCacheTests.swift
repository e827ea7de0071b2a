import Foundation
import Glibc
import Testing
@testable import SlotStore

/// Maps with a cache policy: entries with a time to live, invisible once
/// expired, reclaimed as writes pass by, and (with `evict`) eviction by the
/// clock algorithm when full. Every test runs on a manual clock: no sleeps.
@Suite("Maps as caches", .serialized, .timeLimit(.minutes(5)))
struct MapCacheTests {
    let directory = TemporaryDirectory()
    /// 2023-11-14, in ms: any fixed time works with a manual clock.
    static let start: Int64 = 1_700_000_000_000

    static func schema(capacity: Int = 64, evict: Bool = false, growth: MapGrowth? = nil,
                       value: FieldType = .scalar(.int64)) -> Schema {
        Schema(version: 1, fields: [
            .int64("other"),
            .map("cache", key: .string(capacity: 16), value: value, capacity: capacity, growth: growth,
                 cache: MapCache(evict: evict)),
        ])
    }

    func open(_ name: String, _ schema: Schema = MapCacheTests.schema(), clock: CacheClock) throws -> SlotStore {
        var options = OpenOptions()
        options.clock = clock
        return try SlotStore(path: directory.file(name), schema: schema, options: options)
    }

    /// Outside attack: with one hand for both reclamation (8 buckets per
    /// insert) and eviction, the sweep came round to a hot key every ~C/8
    /// inserts: a key read every 250 inserts into a map of 1,000 missed 9% of
    /// its reads, where LRU never misses. With separate hands it stays.
    @Test("a key read every 250 inserts into a full evicting map of capacity 1,000 is never evicted")
    func hotKeySurvivesEviction() throws {
        let clock = CacheClock.manual(startingAt: Self.start)
        let store = try open("hot.slots", Self.schema(capacity: 1000, evict: true), clock: clock)
        let cache = try store.map("cache", key: String.self, value: Int64.self)
        try cache.set(-1, for: "hot")
        var misses = 0
        for index in 0..<30_000 {
            try cache.set(Int64(index), for: "cold\(index)")
            if index % 250 == 249 {
                if try cache.get("hot") == nil {
                    misses += 1
                    try cache.set(-1, for: "hot")
                }
            }
        }
        #expect(cache.count == 1000)
        #expect(misses == 0, "the hot key was evicted \(misses) times in 120 reads")
    }

    /// The LRU touch keeps no per-hit state (no access time, no counter): a
    /// hit sets an entry's recently-used bit only when a sweep cleared it, so
    /// once every entry is marked, 100,000 gets leave the map's bytes as they
    /// were. (That the set bit is not written again, which no byte shows, is
    /// the code's `if entry & usedBit == 0`; the notes give the two-process
    /// measurement.)
    @Test("hits keep no per-hit state: the map's bytes are identical before and after 100,000 hits on marked entries")
    func hitsDoNotWrite() throws {
        let clock = CacheClock.manual(startingAt: Self.start)
        let store = try open("touch.slots", Self.schema(capacity: 64, evict: true), clock: clock)
        let cache = try store.map("cache", key: String.self, value: Int64.self)
        for index in 0..<64 { try cache.set(Int64(index), for: "k\(index)", ttl: .seconds(60)) }
        // One more insert into the full map: the sweep clears bits as it passes, then evicts.
        try cache.set(64, for: "k64", ttl: .seconds(60))
        let field = try #require(store.core.layout.field(named: "cache"))
        func mapBytes() -> [UInt8] { store.core.address(field.offset).bytes(count: field.size) }
        let keys = (0...64).map { "k\($0)" }
        // First round: hits set the bits the sweep cleared (one OR each, at most).
        for key in keys { _ = try cache.get(key) }
        let marked = mapBytes()
        var found = 0
        for round in 0..<100_000 { if try cache.get(keys[round % keys.count]) != nil { found += 1 } }
        #expect(found > 90_000)
        #expect(mapBytes() == marked, "a hit on a marked entry wrote to the map")
    }

    @Test("the manual clock adds up steps below a millisecond")
    func manualClockAccumulates() throws {
        let clock = CacheClock.manual(startingAt: Self.start)
        let store = try open("steps.slots", clock: clock)
        let cache = try store.map("cache", key: String.self, value: Int64.self)
        try cache.set(1, for: "k", ttl: .milliseconds(5))
        for _ in 0..<4_999 { clock.advance(by: .microseconds(1)) }
        #expect(clock.millisecondsSinceEpoch == Self.start + 4)
        #expect(try cache.get("k") == 1)
        clock.advance(by: .nanoseconds(999))
        #expect(try cache.get("k") == 1, "4.999999 ms after")
        clock.advance(by: .nanoseconds(1))
        #expect(try cache.get("k") == nil, "5 ms after")
    }

    @Test("an expired entry is invisible to get, contains, count, iteration, the whole-map value and dump; getStale still reads it")
    func expiryVisibility() throws {
        let clock = CacheClock.manual(startingAt: Self.start)
        let store = try open("visible.slots", clock: clock)
        let cache = try store.map("cache", key: String.self, value: Int64.self)
        try cache.set(1, for: "short", ttl: .seconds(10))
        try cache.set(2, for: "long", ttl: .seconds(100))
        try cache.set(3, for: "forever", ttl: nil)
        try cache.set(4, for: "plain")
        #expect(cache.count == 4 && cache.cachePolicy == MapCache(evict: false))
        clock.advance(by: .milliseconds(9_999))
        #expect(try cache.get("short") == 1, "alive up to its deadline")
        clock.advance(by: .milliseconds(1))
        #expect(try cache.get("short") == nil)
        #expect(try cache.contains("short") == false)
        #expect(cache.count == 3)
        #expect(try cache.entries().map(\.key).sorted() == ["forever", "long", "plain"])
        var walked: [String] = []
        try store.transaction { _ in try cache.forEach { key, _ in walked.append(key) } }
        #expect(walked.sorted() == ["forever", "long", "plain"], "the walk under the lock skips it too")
        guard case .map(let entries) = try store.value(of: "cache") else { Issue.record("not a map"); return }
        #expect(entries.map(\.key).sorted { $0.description < $1.description } == [.string("forever"), .string("long"), .string("plain")])
        #expect(try store.transaction { try $0.load("short", from: cache) } == nil)
        let stale = try cache.getStale("short")
        #expect(stale?.value == 1 && stale?.expired == true)
        #expect(try cache.getStale("long").map { $0.expired } == false)
        #expect(try cache.getStale("never-set") == nil)
        #expect(try cache.remove("short") == false, "removing an expired entry reports it absent")
        #expect(try cache.getStale("short") == nil, "and it is gone")
        clock.advance(by: .seconds(86_400 * 365 * 100))
        #expect(try cache.get("long") == nil && cache.get("forever") == 3 && cache.get("plain") == 4)
        #expect(try SlotStore.verify(at: store.path).findings == [])
    }

    @Test("set replaces the deadline; an expired key set again is a new entry")
    func setReplacesDeadline() throws {
        let clock = CacheClock.manual(startingAt: Self.start)
        let store = try open("replace.slots", clock: clock)
        let cache = try store.map("cache", key: String.self, value: Int64.self)
        #expect(try cache.set(1, for: "k", ttl: .seconds(5)) == MapSetOutcome(inserted: true, evicted: 0))
        #expect(try cache.set(2, for: "k", ttl: .seconds(50)) == MapSetOutcome(inserted: false, evicted: 0))
        clock.advance(by: .seconds(10))
        #expect(try cache.get("k") == 2, "the second set's deadline counts")
        try cache.set(3, for: "k")
        clock.advance(by: .seconds(86_400 * 1000))
        #expect(try cache.get("k") == 3, "a set without ttl clears the deadline")
        try cache.set(4, for: "k", ttl: .seconds(1))
        clock.advance(by: .seconds(1))
        #expect(try cache.set(5, for: "k", ttl: .seconds(1)) == MapSetOutcome(inserted: true, evicted: 0))
        #expect(try cache.get("k") == 5)
    }

    @Test("add with initial and ttl: both apply only when the key is missing or expired; a live entry keeps its deadline")
    func addWithInitial() throws {
        let clock = CacheClock.manual(startingAt: Self.start)
        let store = try open("add.slots", clock: clock)
        let cache = try store.map("cache", key: String.self, value: Int64.self)
        #expect(try cache.add(1, for: "hits", initial: 100, ttl: .seconds(60)) == 101)
        clock.advance(by: .seconds(30))
        #expect(try cache.add(1, for: "hits", initial: 100, ttl: .seconds(60)) == 102, "no reset, no new ttl")
        clock.advance(by: .seconds(30))
        #expect(try cache.get("hits") == nil, "expired at the first ttl: 60 s after the insert")
        #expect(try cache.add(5, for: "hits", initial: 100, ttl: .seconds(10)) == 105, "expired: starts again from initial")
        #expect(try cache.add(1, for: "hits") == 106, "the plain add on a live entry keeps it")
        clock.advance(by: .seconds(10))
        #expect(try cache.add(1, for: "hits") == 1, "the plain add treats an expired entry as missing (0)")
        clock.advance(by: .seconds(86_400 * 1))
        #expect(try cache.get("hits") == 1, "and gives it no deadline")
        #expect(try store.transaction { try $0.add(2, for: "hits", in: cache) } == 3)
    }

    @Test("a time to live that is not positive, too long, or on a map without a cache policy is refused, nothing changed")
    func badTimeToLive() throws {
        let clock = CacheClock.manual(startingAt: Self.start)
        let store = try open("bad.slots", clock: clock)
        let cache = try store.map("cache", key: String.self, value: Int64.self)
        #expect(throws: SlotStoreError.self) { try cache.set(1, for: "k", ttl: .zero) }
        #expect(throws: SlotStoreError.self) { try cache.set(1, for: "k", ttl: .seconds(-1)) }
        do {
            try cache.set(1, for: "k", ttl: .seconds(Int64.max))
            Issue.record("a ttl of Int64.max seconds was accepted")
        } catch {
            #expect(error.description.contains("too long") && error.description.contains(store.path))
        }
        // The largest deadline that fits: 2^63 - 1 ms, whole seconds below it.
        let room = (Int64.max - Self.start) / 1000
        try cache.set(2, for: "far", ttl: .seconds(room))
        #expect(try cache.getStale("far")?.expired == false)
        #expect(try cache.get("k") == nil && cache.count == 1)
        let plain = try SlotStore(path: directory.file("plain.slots"), schema: Schema(version: 1, fields: [
            .map("m", key: .string(capacity: 8), value: .scalar(.int64), capacity: 8),
        ]))
        let map = try plain.map("m", key: String.self, value: Int64.self)
        do {
            try map.set(1, for: "k", ttl: .seconds(1))
            Issue.record("a ttl on a map without a cache policy was accepted")
        } catch {
            #expect(error.description.contains("cache policy"))
        }
        #expect(try map.set(1, for: "k", ttl: nil) == MapSetOutcome(inserted: true, evicted: 0))
        #expect(try map.add(1, for: "n", initial: 10, ttl: nil) == 11 && map.add(1, for: "n", initial: 10, ttl: nil) == 12)
    }

    @Test("removeExpired removes exactly the expired entries and says how many; the header count follows")
    func removeExpired() throws {
        let clock = CacheClock.manual(startingAt: Self.start)
        let store = try open("purge.slots", Self.schema(capacity: 1_000), clock: clock)
        let cache = try store.map("cache", key: String.self, value: Int64.self)
        for index in 0..<600 { try cache.set(Int64(index), for: "k\(index)", ttl: index % 3 == 0 ? .seconds(5) : nil) }
        clock.advance(by: .seconds(5))
        #expect(cache.count == 400)
        let reclaimedByWrites = 600 - Int(cache.table.count.pointee.load(ordering: .relaxed))
        #expect(try cache.removeExpired() == 200 - reclaimedByWrites)
        #expect(cache.table.count.pointee.load(ordering: .relaxed) == 400)
        #expect(try cache.removeExpired() == 0)
        for index in 0..<600 { #expect(try cache.get("k\(index)") == (index % 3 == 0 ? nil : Int64(index))) }
        #expect(try SlotStore.verify(at: store.path).findings == [])
    }

    @Test("writes reclaim expired entries near the clock hand as they pass by")
    func incrementalReclamation() throws {
        let clock = CacheClock.manual(startingAt: Self.start)
        let store = try open("reclaim.slots", Self.schema(capacity: 256), clock: clock)
        let cache = try store.map("cache", key: String.self, value: Int64.self)
        for index in 0..<200 { try cache.set(Int64(index), for: "old\(index)", ttl: .seconds(1)) }
        try cache.set(0, for: "keep")
        clock.advance(by: .seconds(1))
        let stored = { Int(cache.table.count.pointee.load(ordering: .relaxed)) }
        #expect(stored() == 201, "expired entries stay until something reclaims them")
        // A replacement needs no room and reclaims nothing.
        for index in 0..<8 { try cache.set(Int64(index), for: "keep") }
        #expect(stored() == 201)
        // Each insert looks at 8 buckets at the hand (removing at most 8
        // entries): 302 buckets / 8 = 38 inserts sweep the table once.
        for index in 0..<40 { try cache.set(Int64(index), for: "new\(index)") }
        #expect(stored() < 41 + 20, "nearly every expired entry was reclaimed in one sweep: \(stored() - 41) left")
        for index in 0..<40 { try cache.remove("new\(index)") }
        try cache.remove("keep")
        #expect(stored() == 0, "the second sweep took the rest (a cluster that fed more than 8 to one write)")
        #expect(cache.count == 0)
        #expect(try SlotStore.verify(at: store.path).findings == [])
    }

    @Test("a full map without eviction reuses an expired entry's room, and fails with mapFull when none has expired")
    func fullWithoutEviction() throws {
        let clock = CacheClock.manual(startingAt: Self.start)
        let store = try open("full.slots", Self.schema(capacity: 16), clock: clock)
        let cache = try store.map("cache", key: String.self, value: Int64.self)
        for index in 0..<16 { try cache.set(Int64(index), for: "k\(index)", ttl: index == 11 ? .seconds(1) : nil) }
        #expect(throws: SlotStoreError.mapFull(path: store.path, field: "cache", capacity: 16, count: 16)) {
            try cache.set(99, for: "extra")
        }
        clock.advance(by: .seconds(1))
        #expect(try cache.set(99, for: "extra", ttl: nil) == MapSetOutcome(inserted: true, evicted: 0))
        #expect(try cache.get("extra") == 99 && cache.get("k11") == nil && cache.count == 16)
        #expect(throws: SlotStoreError.mapFull(path: store.path, field: "cache", capacity: 16, count: 16)) {
            try cache.set(100, for: "extra2", ttl: .seconds(5))
        }
    }

    @Test("eviction: an expired entry goes first, then by the clock the entries not used since the hand last passed; forcible is reported")
    func evictionOrder() throws {
        let clock = CacheClock.manual(startingAt: Self.start)
        let store = try open("evict.slots", Self.schema(capacity: 8, evict: true), clock: clock)
        let cache = try store.map("cache", key: String.self, value: Int64.self)
        for index in 0..<8 { try cache.set(Int64(index), for: "k\(index)", ttl: index == 5 ? .seconds(1) : nil) }
        clock.advance(by: .seconds(1))
        // Every live entry was just written (its bit set): the sweep clears their
        // bits and takes the expired one, whatever its place.
        var outcome = try cache.set(8, for: "k8", ttl: nil)
        #expect(outcome == MapSetOutcome(inserted: true, evicted: 0) && !outcome.forcible)
        #expect(try cache.get("k5") == nil && cache.count == 8)
        // One eviction never takes an entry used since the hand last passed
        // it while another wasn't: start each round from "nothing used" (the
        // state two sweeps leave), use some entries, and insert.
        var random = SeededRandom(state: 13)
        for round in 0..<40 {
            Self.clearUsedBits(cache)
            let before = Set(try cache.entries().map(\.key))
            let used = Set(before.filter { _ in random.chance(50) }.prefix(7))
            for key in used { #expect(try cache.get(key) != nil) }
            outcome = try cache.set(Int64(round), for: "n\(round)", ttl: nil)
            #expect(outcome == MapSetOutcome(inserted: true, evicted: 1) && outcome.forcible)
            let after = Set(try cache.entries().map(\.key))
            let gone = before.subtracting(after)
            #expect(gone.count == 1 && after.contains("n\(round)") && after.count == 8)
            #expect(gone.isDisjoint(with: used), "round \(round): evicted \(gone), used \(used.sorted())")
        }
        // Every entry used: the sweep clears every bit and still finds a victim (the second sweep).
        for key in try cache.entries().map(\.key) { _ = try cache.get(key) }
        #expect(try cache.set(1, for: "last", ttl: nil) == MapSetOutcome(inserted: true, evicted: 1))
        #expect(try SlotStore.verify(at: store.path).findings == [])
    }

    /// Clears every entry's recently-used bit, as two sweeps of the hand without reads would.
    static func clearUsedBits<Key, Value>(_ map: MapField<Key, Value>) {
        let cursor = map.table.cursor
        for index in 0..<map.table.geometry.bucketCount {
            cursor.entryWord(cursor.bucket(index)).pointee.bitwiseAnd(~MapExpiry.usedBit, ordering: .relaxed)
        }
    }

    @Test("safeSet never evicts a live entry: it reuses an expired one's room or throws mapFull")
    func safeSetNeverEvicts() throws {
        let clock = CacheClock.manual(startingAt: Self.start)
        let store = try open("safe.slots", Self.schema(capacity: 8, evict: true), clock: clock)
        let cache = try store.map("cache", key: String.self, value: Int64.self)
        for index in 0..<8 { try cache.set(Int64(index), for: "k\(index)", ttl: index == 3 ? .seconds(1) : nil) }
        #expect(throws: SlotStoreError.mapFull(path: store.path, field: "cache", capacity: 8, count: 8)) {
            try cache.safeSet(9, for: "new")
        }
        #expect(try cache.entries().count == 8 && cache.get("new") == nil)
        #expect(try cache.safeSet(0, for: "k0") == MapSetOutcome(inserted: false, evicted: 0), "replacing needs no room")
        clock.advance(by: .seconds(1))
        #expect(try cache.safeSet(9, for: "new", ttl: .seconds(10)) == MapSetOutcome(inserted: true, evicted: 0))
        #expect(try cache.get("k3") == nil && cache.get("new") == 9)
        #expect(throws: SlotStoreError.mapFull(path: store.path, field: "cache", capacity: 8, count: 8)) {
            try cache.safeSet(10, for: "newer")
        }
    }

    @Test("a growing map with expiring entries: growth carries the deadlines, expired entries stay invisible")
    func growthWithTimeToLive() throws {
        let clock = CacheClock.manual(startingAt: Self.start)
        let store = try open("grow.slots", Self.schema(capacity: 8, growth: MapGrowth(maxCapacity: 1_024)), clock: clock)
        let cache = try store.map("cache", key: String.self, value: Int64.self)
        for index in 0..<100 { try cache.set(Int64(index), for: "k\(index)", ttl: index % 2 == 0 ? .seconds(10) : .seconds(1000)) }
        #expect(cache.capacity == 128 && cache.count == 100)
        clock.advance(by: .seconds(10))
        #expect(cache.count == 50)
        for index in 0..<100 { #expect(try cache.get("k\(index)") == (index % 2 == 0 ? nil : Int64(index))) }
        clock.advance(by: .seconds(990))
        #expect(cache.count == 0)
        #expect(try SlotStore.verify(at: store.path).findings == [])
    }

    @Test("the system clock's deadline check: past deadlines are past, future ones ahead, also within a tick of now")
    func systemClockCheck() {
        let now = CacheClock.systemMilliseconds()
        #expect(!CacheClock.systemIsBefore(now - 1_000) && !CacheClock.systemIsBefore(now))
        #expect(CacheClock.systemIsBefore(now + 3_600_000) && CacheClock.systemIsBefore(now + 1_000))
        #expect(CacheClock.coarseMilliseconds() <= CacheClock.systemMilliseconds())
        #expect(CacheClock.system.millisecondsSinceEpoch >= Int64(now))
    }

    @Test("growth and eviction together are refused; a cache policy on a non-map too; unknown JSON keys too")
    func schemaValidation() throws {
        #expect(throws: SlotStoreError.self) {
            try Self.schema(evict: true, growth: MapGrowth(maxCapacity: 128)).validate()
        }
        #expect(throws: SlotStoreError.self) {
            try Schema(version: 1, fields: [Field("n", .scalar(.int64), cache: MapCache())]).validate()
        }
        let json = #"{"version":1,"fields":[{"name":"m","type":"map","key":{"type":"int64"},"value":{"type":"int64"},"capacity":8,"cache":{"evict":true}}]}"#
        let schema = try Schema(json: Array(json.utf8))
        #expect(schema.fields[0].cache == MapCache(evict: true))
        #expect(try Schema(json: schema.jsonBytes()) == schema, "round trip")
        let empty = json.replacingOccurrences(of: #"{"evict":true}"#, with: "{}")
        #expect(try Schema(json: Array(empty.utf8)).fields[0].cache == MapCache(evict: false))
        let misspelled = json.replacingOccurrences(of: "evict", with: "evicts")
        do {
            _ = try Schema(json: Array(misspelled.utf8))
            Issue.record("an unknown cache key was accepted")
        } catch {
            #expect(error.description.contains("unknown cache key \"evicts\""))
        }
    }

    // MARK: Tools

    /// The deadline bits of `key`'s entry word, read in process.
    static func deadline(_ map: MapField<String, Int64>, _ key: String) -> UInt64? {
        Array(key.utf8).withUnsafeBytes { bytes in
            map.table.locate(bytes).found.map {
                map.table.cursor.entryWord(map.table.bucket($0)).pointee.load(ordering: .relaxed) & MapExpiry.deadlineMask
            }
        }
    }

    @Test("dump writes each live entry's deadline as expiresAt and leaves expired entries out; load restores the deadlines; inspect shows the policy and the live and expired counts")
    func dumpLoadInspect() throws {
        // Two hours in the past: a one-hour time to live is over by the tools' real-time clock.
        let now = CacheClock.system.millisecondsSinceEpoch
        let clock = CacheClock.manual(startingAt: now - 7_200_000)
        let store = try open("tools.slots", clock: clock)
        let cache = try store.map("cache", key: String.self, value: Int64.self)
        try cache.set(1, for: "old", ttl: .seconds(3_600))
        try cache.set(2, for: "soon", ttl: .seconds(4 * 3_600))
        try cache.set(3, for: "forever", ttl: nil)
        let soon = try #require(Self.deadline(cache, "soon"))
        #expect(soon == UInt64(now - 7_200_000 + 4 * 3_600_000))

        let dumpPath = directory.file("tools.json")
        let dumped = try Tool.run(["dump", store.path, "--output", dumpPath])
        #expect(dumped.succeeded, "\(dumped)")
        let text = try String(contentsOfFile: dumpPath, encoding: .utf8)
        #expect(!text.contains("\"old\""), "an expired entry is not dumped")
        #expect(text.contains("      {\n        \"expiresAt\" : \(soon),\n        \"key\" : \"soon\",\n        \"value\" : 2\n      }"), "\(text)")
        let object = try JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any]
        let entries = (object?["values"] as? [String: Any])?["cache"] as? [[String: Any]]
        #expect(entries?.count == 2)
        #expect(entries?.first { $0["key"] as? String == "forever" }?["expiresAt"] == nil)

        let loaded = directory.file("loaded.slots")
        let load = try Tool.run(["load", loaded, dumpPath])
        #expect(load.succeeded, "\(load)")
        let copy = try SlotStore(path: loaded).map("cache", key: String.self, value: Int64.self)
        #expect(Self.deadline(copy, "soon") == soon && Self.deadline(copy, "forever") == 0)
        #expect(try copy.get("soon") == 2 && copy.get("forever") == 3 && copy.getStale("old") == nil)

        // A dump without expiresAt loads as no deadline; a bad one is refused, naming the line.
        let plain = text.replacingOccurrences(of: "\"expiresAt\" : \(soon),", with: "")
        let plainPath = directory.file("plain.json")
        try plain.write(toFile: plainPath, atomically: true, encoding: .utf8)
        #expect(try Tool.run(["load", directory.file("plain.slots"), plainPath]).succeeded)
        #expect(Self.deadline(try SlotStore(path: directory.file("plain.slots")).map("cache", key: String.self, value: Int64.self), "soon") == 0)
        let bad = text.replacingOccurrences(of: "\"expiresAt\" : \(soon),", with: "\"expiresAt\" : -5,")
        let badPath = directory.file("bad.json")
        try bad.write(toFile: badPath, atomically: true, encoding: .utf8)
        let refused = try Tool.run(["load", directory.file("bad.slots"), badPath])
        #expect(!refused.succeeded && refused.stderr.contains("expiresAt") && refused.stderr.contains("found -5"), "\(refused)")
        #expect(!FileManager.default.fileExists(atPath: directory.file("bad.slots")))

        let inspected = try #require(try SlotStore.inspect(at: store.path).fields.first { $0.name == "cache" }?.map)
        #expect(inspected.cache == MapCache(evict: false) && inspected.live == 2 && inspected.expired == 1 && inspected.count == 3)
        let json = try Tool.run(["inspect", store.path, "--json"])
        let report = try JSONSerialization.jsonObject(with: Data(json.stdout.utf8)) as? [String: Any]
        let field = (report?["fields"] as? [[String: Any]])?.first { $0["name"] as? String == "cache" }?["map"] as? [String: Any]
        #expect(field?["live"] as? Int == 2 && field?["expired"] as? Int == 1)
        #expect((field?["cache"] as? [String: Any])?["evict"] as? Bool == false)
        let plainText = try Tool.run(["inspect", store.path]).stdout
        #expect(plainText.contains("2 live entries, 1 expired (not yet reclaimed)") && plainText.contains("cache: expiring entries"), "\(plainText)")
    }

    @Test("adding a cache policy by migration gives every entry no deadline; removing it drops the expired entries; the policy is a schema difference")
    func migration() throws {
        let path = directory.file("migrate.slots")
        let plainSchema = Schema(version: 1, fields: [
            .int64("other"),
            .map("cache", key: .string(capacity: 16), value: .scalar(.int64), capacity: 64),
        ])
        let plain = try SlotStore(path: path, schema: plainSchema)
        let map = try plain.map("cache", key: String.self, value: Int64.self)
        for index in 0..<20 { try map.set(Int64(index), for: "k\(index)") }
        #expect(plain.core.header.formatMajor == 2 && plain.core.header.formatMinor == 0)
        plain.close()
        #expect(throws: SlotStoreError.schemaMismatch(path: path, differences: [.cacheChanged(name: "cache", stored: nil, given: MapCache(evict: false))])) {
            try SlotStore(path: path, schema: Self.schema())
        }
        var options = OpenOptions(migration: MigrationOptions())
        let now = CacheClock.system.millisecondsSinceEpoch
        options.clock = .manual(startingAt: now - 7_200_000)
        let cached = try SlotStore(path: path, schema: Self.schema(), options: options)
        #expect(cached.core.header.formatMajor == 2 && cached.core.header.formatMinor == 0 && cached.core.layout.mapLayout == .v2)
        let cache = try cached.map("cache", key: String.self, value: Int64.self)
        #expect(cache.count == 20)
        for index in 0..<20 { #expect(Self.deadline(cache, "k\(index)") == 0) }
        // Ten of them expire an hour ago by the real-time clock (the one compaction reads).
        for index in 0..<10 { try cache.set(Int64(index), for: "k\(index)", ttl: .seconds(3_600)) }
        try cache.set(99, for: "later", ttl: .seconds(4 * 3_600))
        let kept = try SlotStore.compact(at: path, dryRun: false)
        #expect(kept.fields.first { $0.name == "cache" }?.to == "map<string[16], int64>[64], cache: expiring entries")
        #expect(Int(try cached.map("cache", key: String.self, value: Int64.self).table.count.pointee.load(ordering: .relaxed)) == 21,
                "compaction keeps a cache map's expired entries, deadlines and all")
        cached.close()
        _ = try SlotStore.compact(at: path, schema: plainSchema)
        let back = try SlotStore(path: path, schema: plainSchema).map("cache", key: String.self, value: Int64.self)
        #expect(try back.entries().map(\.key).sorted() == (["later"] + (10..<20).map { "k\($0)" }).sorted())
        #expect(try SlotStore.verify(at: path).findings == [])
    }
}
