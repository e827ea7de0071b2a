import Foundation
import Glibc
import Testing
@testable import SlotStore

/// Backward-shift deletion: removals leave no tombstones, entries stay
/// reachable, lock-free readers never miss a present key while entries move,
/// and a writer killed in the middle of a shift is rolled back.
@Suite("Map churn", .timeLimit(.minutes(5)))
struct MapChurnTests {
    let directory = TemporaryDirectory()

    static func schema(capacity: Int) -> Schema {
        Schema(version: 1, fields: [
            .int64("before"),
            .map("sessions", key: .string(capacity: 32), value: .scalar(.int64), capacity: capacity),
        ])
    }

    /// What a lookup walks, read in process: for each bucket, empty, a live
    /// key, or a tombstone; and every live key's home bucket.
    struct Buckets {
        var keys: [String?] = []
        var tombstones = 0
        var unreachable: [String] = []
        var homes: [String: Int] = [:]
    }

    static func buckets(_ map: MapField<String, Int64>) -> Buckets {
        let table = map.table
        let epoch = table.epoch
        var result = Buckets()
        var used = [Bool](repeating: false, count: table.geometry.bucketCount)
        for index in 0..<table.geometry.bucketCount {
            let meta = table.bucket(index).advanced(by: 8).atomic(UInt64.self).pointee.load(ordering: .relaxed)
            guard meta >> 32 == epoch, meta & 3 != MapTable.empty else { result.keys.append(nil); continue }
            used[index] = true
            if meta & 3 == MapTable.tombstone { result.tombstones += 1; result.keys.append(nil); continue }
            let length = Int((meta >> 8) & 0xFF_FFFF)
            let bytes = table.bucket(index).advanced(by: MapGeometry.bucketPrefixBytes).bytes(count: length)
            let key = String(decoding: bytes, as: UTF8.self)
            result.keys.append(key)
            result.homes[key] = bytes.withUnsafeBytes { table.cursor.home(of: $0) }
        }
        for (index, key) in result.keys.enumerated() {
            guard let key, var walk = result.homes[key] else { continue }
            while walk != index {
                if !used[walk] { result.unreachable.append(key); break }
                walk = table.cursor.next(walk)
            }
        }
        return result
    }

    /// Every entry as `key=value`, sorted: a key listed twice shows as a difference, not a trap.
    static func listing(_ map: MapField<String, Int64>) throws -> [String] {
        try map.entries().map { "\($0.key)=\($0.value)" }.sorted()
    }

    static func listing(_ model: [String: Int64]) -> [String] {
        model.map { "\($0.key)=\($0.value)" }.sorted()
    }

    static func home(_ map: MapField<String, Int64>, _ key: String) -> Int {
        Array(key.utf8).withUnsafeBytes { map.table.cursor.home(of: $0) }
    }

    // MARK: Structure

    @Test("100 live keys through 200,000 distinct keys: no tombstones, the load and probe lengths of a fresh map with the same keys")
    func churnLeavesNoDecay() throws {
        let path = directory.file("churn.slots")
        let store = try SlotStore(path: path, schema: Self.schema(capacity: 1000))
        let map = try store.map("sessions", key: String.self, value: Int64.self)
        let live = 100
        let distinct = 200_000
        for index in 0..<distinct {
            try map.set(Int64(index), for: "session-\(index)")
            if index >= live { #expect(try map.remove("session-\(index - live)")) }
        }
        let churned = try #require(try SlotStore.inspect(at: path).fields.first { $0.name == "sessions" }?.map)
        #expect(churned.count == live && churned.tombstones == 0)
        #expect(churned.loadFactor == Double(live) / Double(churned.buckets), "only the live entries use buckets")

        // The same live keys inserted into a fresh map of the same seed: the
        // same used buckets, so a miss walks as far as it does there.
        let freshPath = directory.file("fresh.slots")
        try FileManager.default.copyItem(atPath: path, toPath: freshPath)
        let fresh = try SlotStore(path: freshPath)
        let freshMap = try fresh.map("sessions", key: String.self, value: Int64.self)
        try freshMap.removeAll()
        for index in (distinct - live)..<distinct { try freshMap.set(Int64(index), for: "session-\(index)") }
        let reference = try #require(try SlotStore.inspect(at: freshPath).fields.first { $0.name == "sessions" }?.map)
        // Backward shift leaves the same used buckets as inserting the live keys
        // afresh (positions may differ in a cluster, the cluster lengths do not).
        #expect(churned.missProbeLengths == reference.missProbeLengths)
        #expect(churned.missProbeLengths.max <= 12, "\(churned.missProbeLengths)")
        #expect(churned.probeLengths.max <= 12, "\(churned.probeLengths)")

        #expect(try Self.listing(map) == Self.listing(Dictionary(uniqueKeysWithValues: ((distinct - live)..<distinct).map { ("session-\($0)", Int64($0)) })))
        let report = try SlotStore.verify(at: path)
        #expect(report.ok, "\(report.findings)")
    }

    @Test("random inserts, removes, adds and aborted transactions match a Dictionary at every step, with every entry reachable and no tombstone",
          arguments: [6, 48, 700])
    func matchesDictionaryAtEveryStep(capacity: Int) throws {
        let store = try SlotStore(path: directory.file("model-\(capacity).slots"), schema: Self.schema(capacity: capacity))
        let map = try store.map("sessions", key: String.self, value: Int64.self)
        var model: [String: Int64] = [:]
        var random = SeededRandom(state: UInt64(capacity))
        // A pool a little larger than the capacity, so the map runs nearly
        // full, clusters are long and wrap around the end of the table.
        let keys = (0..<(capacity + capacity / 3 + 2)).map { "k\($0)" }
        struct Abort: Error {}
        for step in 0..<4000 {
            let key = random.pick(keys)
            switch random.below(10) {
            case 0, 1, 2, 3:
                let value = Int64(random.below(1_000_000))
                if model[key] == nil && model.count == capacity {
                    #expect(throws: SlotStoreError.self) { try map.set(value, for: key) }
                } else {
                    try map.set(value, for: key)
                    model[key] = value
                }
            case 4, 5, 6:
                #expect(try map.remove(key) == (model.removeValue(forKey: key) != nil), "step \(step)")
            case 7:
                // Several removals and an insert rolled back together: every move undone.
                let doomed = (0..<3).map { _ in random.pick(keys) }
                #expect(throws: Abort.self) {
                    try store.transaction { tx in
                        for key in doomed { _ = try tx.remove(key, from: map) }
                        if model.count < capacity { try tx.store(-1, for: "aborted", in: map) }
                        throw Abort()
                    }
                }
            case 8:
                if let present = model.keys.sorted().first {
                    let delta = Int64(random.below(100))
                    #expect(try map.add(delta, for: present) == model[present]! + delta)
                    model[present]! += delta
                }
            default:
                #expect(try map.get(key) == model[key], "step \(step)")
            }
            // Every step: each key of the pool as the model says, by both lookups, and the structure sound.
            for key in keys {
                #expect(try map.get(key) == model[key], "step \(step): \(key)")
                #expect(try map.contains(key) == (model[key] != nil), "step \(step): \(key)")
            }
            let buckets = Self.buckets(map)
            #expect(buckets.tombstones == 0 && buckets.unreachable.isEmpty && map.count == model.count,
                    "step \(step): \(buckets.tombstones) tombstones, unreachable \(buckets.unreachable)")
            if buckets.tombstones != 0 || !buckets.unreachable.isEmpty { break }
            if step % 500 == 0 {
                #expect(try Self.listing(map) == Self.listing(model))
            }
        }
        let report = try SlotStore.verify(at: store.path)
        #expect(report.ok, "\(report.findings)")
    }

    @Test("tombstones an earlier build left are still probed past, reused by inserts, and emptied when a removal ends beside them")
    func legacyTombstones() throws {
        let path = directory.file("legacy.slots")
        let store = try SlotStore(path: path, schema: Self.schema(capacity: 48))
        let map = try store.map("sessions", key: String.self, value: Int64.self)
        var model: [String: Int64] = [:]
        for index in 0..<40 { try map.set(Int64(index), for: "k\(index)"); model["k\(index)"] = Int64(index) }
        for index in stride(from: 0, to: 40, by: 2) {
            #expect(try map.table.removeLeavingTombstone("k\(index)"))
            model["k\(index)"] = nil
        }
        #expect(Self.buckets(map).tombstones == 20)
        for index in 0..<40 { #expect(try map.get("k\(index)") == model["k\(index)"]) }
        // Churn through: inserts reuse tombstones, removals shift and reclaim them.
        var random = SeededRandom(state: 7)
        for step in 0..<3000 {
            let key = "k\(random.below(60))"
            if model[key] != nil {
                #expect(try map.remove(key))
                model[key] = nil
            } else if model.count < 48 {
                try map.set(Int64(step), for: key)
                model[key] = Int64(step)
            }
            let buckets = Self.buckets(map)
            #expect(buckets.unreachable.isEmpty, "step \(step): \(buckets.unreachable)")
        }
        #expect(Self.buckets(map).tombstones == 0)
        #expect(try SlotStore.inspect(at: path).fields.first { $0.name == "sessions" }?.map?.tombstones == 0)
        #expect(try Self.listing(map) == Self.listing(model))
        #expect(try SlotStore.verify(at: path).ok)
    }

    @Test("inspect counts tombstones in the load, with three decimals, and shows probe lengths of hits and misses")
    func inspectShowsProbeLengths() throws {
        let path = directory.file("inspect.slots")
        let store = try SlotStore(path: path, schema: Self.schema(capacity: 1500))
        let map = try store.map("sessions", key: String.self, value: Int64.self)
        for index in 0..<10 { try map.set(1, for: "k\(index)") }
        #expect(try map.table.removeLeavingTombstone("k0"))
        let statistics = try #require(try SlotStore.inspect(at: path).fields.first { $0.name == "sessions" }?.map)
        #expect(statistics.buckets == 1765 && statistics.count == 9 && statistics.tombstones == 1)
        #expect(statistics.loadFactor == 10.0 / 1765)
        #expect(statistics.probeLengths.max == statistics.longestProbe && statistics.probeLengths.mean >= 1)
        #expect(statistics.missProbeLengths.mean >= 1 && statistics.missProbeLengths.max >= 2)
        let text = try Tool.run(["inspect", path])
        #expect(text.succeeded)
        #expect(text.stdout.contains("9 entries, 1 tombstone,") && text.stdout.contains("load 0.006 (entries and tombstones)"), "\(text.stdout)")
        #expect(text.stdout.contains("probe length of a hit mean") && text.stdout.contains("of a miss mean"), "\(text.stdout)")
        let json = try Tool.run(["inspect", path, "--json"])
        #expect(json.stdout.contains("\"missProbeLengths\"") && json.stdout.contains("\"p99\""), "\(json.stdout)")
    }

    // MARK: Processes

    @Test("a reader process never misses a present key, nor lists one twice, while a writer process churns other keys around it")
    func readerNeverMissesPresentKey() throws {
        let path = directory.file("race.slots")
        // 128 buckets: 40 present keys, 50 churning ones and 4 the writer
        // removes in aborted transactions fill 73%, so
        // clusters are long and removals keep moving keys back, the churning
        // keys the reader looks up (those between "low" and "high") most.
        let store = try SlotStore(path: path, schema: Schema(version: 1, fields: [
            .int64("low"), .int64("high"),
            .map("sessions", key: .string(capacity: 32), value: .scalar(.int64), capacity: 96),
        ]))
        let map = try store.map("sessions", key: String.self, value: Int64.self)
        let present = 40
        for index in 0..<present { try map.set(Int64(index), for: "p\(index)") }
        // More readers than cores: the scheduler preempts them mid-probe, and
        // while one is paused the writer moves the key it is looking for.
        // Two readers mostly look keys up, one mostly walks the map (entries()).
        let readers = try [64, 64, 2].map { walk in
            try Tool.start(["_worker", "map-read-present", path, "sessions", "\(present)", "0", "\(walk)"])
        }
        let writer = try Tool.start(["_worker", "map-churn", path, "sessions", "40000", "0", "50"])
        let written = writer.wait()
        try map.set(1, for: "stop")
        #expect(written.succeeded, "\(written)")
        for read in readers.map({ $0.wait() }) {
            #expect(read.succeeded, "a reader: \(read.stdout) \(read.stderr)")
            #expect(read.stdout.hasPrefix("done "), "\(read.stdout)")
        }
        for index in 0..<present { #expect(try map.get("p\(index)") == Int64(index)) }
        #expect(map.count == present + 50 + 4 + 1)
        let report = try SlotStore.verify(at: path)
        #expect(report.ok, "\(report.findings)")
    }

    /// A map whose keys `cluster[0...4]` share one home bucket, in order after
    /// it, so removing `cluster[0]` moves the other four back, plus 15 others.
    func clusteredStore(_ name: String) throws -> (store: SlotStore, map: MapField<String, Int64>, cluster: [String], model: [String: Int64]) {
        let store = try SlotStore(path: directory.file(name), schema: Self.schema(capacity: 48))
        let map = try store.map("sessions", key: String.self, value: Int64.self)
        let home = Self.home(map, "x0")
        let cluster = ["x0"] + (1..<100_000).lazy.map { "x\($0)" }.filter { Self.home(map, $0) == home }.prefix(4)
        var model: [String: Int64] = [:]
        for (index, key) in cluster.enumerated() { try map.set(Int64(100 + index), for: key); model[key] = Int64(100 + index) }
        for index in 0..<15 { try map.set(Int64(index), for: "o\(index)"); model["o\(index)"] = Int64(index) }
        return (store, map, Array(cluster), model)
    }

    @Test("a writer SIGKILLed in the middle of a shift (after each move, and before and after the first bucket write) is rolled back: verify clean, every entry as before",
          arguments: ["midShift:kill:1", "midShift:kill:2", "midShift:kill:4", "midWrite:kill", "afterWrite:kill"])
    func killedMidShift(fault: String) throws {
        let (store, map, cluster, model) = try clusteredStore("shift-\(fault.replacingOccurrences(of: ":", with: "-")).slots")
        let result = try Tool.run(["_worker", "map-remove", store.path, "sessions", cluster[0]], environment: ["SLOTSTORE_FAULT": fault])
        #expect(result.killedBySIGKILL, "\(result)")
        #expect(try store.status.lockNeedsRecovery)
        try store.transaction { _ in }  // the next lock holder rolls the shift back
        #expect(try Self.listing(map) == Self.listing(model))
        for (key, value) in model { #expect(try map.get(key) == value) }
        #expect(try map.get("absent") == nil)
        #expect(map.table.moveSequence.word.pointee.load(ordering: .relaxed) & 1 == 0)
        let report = try SlotStore.verify(at: store.path)
        #expect(report.ok, "\(report.findings)")
        // And the removal then goes through, moving the rest of the cluster back.
        #expect(try map.remove(cluster[0]))
        #expect(try map.get(cluster[0]) == nil)
        for key in cluster.dropFirst() { #expect(try map.get(key) == model[key]) }
        #expect(Self.buckets(map).unreachable.isEmpty)
        #expect(try SlotStore.verify(at: store.path).ok)
    }

    @Test("a reader's miss while a writer died mid-shift recovers the writer and answers, instead of spinning")
    func readerAfterWriterDiedMidShift() throws {
        let (store, map, cluster, model) = try clusteredStore("dead-shift.slots")
        let holder = try Tool.Holder(["_worker", "map-remove", store.path, "sessions", cluster[0]],
                                     environment: ["SLOTSTORE_FAULT": "midShift:hold:2"])
        #expect(holder.isHolding)
        holder.kill()
        #expect(map.table.moveSequence.isOdd, "the dead writer left the move sequence word odd")
        #expect(try map.get("absent") == nil)
        #expect(try store.status.recoveries >= 1)
        for (key, value) in model { #expect(try map.get(key) == value) }
        #expect(try SlotStore.verify(at: store.path).ok)
    }

    @Test("a move sequence word left odd with nobody writing (power loss, an earlier build's rollback) is settled by the next reader; verify reports it")
    func staleOddMoveWord() throws {
        let (store, map, _, model) = try clusteredStore("stale-odd.slots")
        let moves = map.table.moveSequence
        moves.beginWrite()
        let report = try SlotStore.verify(at: store.path)
        #expect(report.findings.contains { $0.code == "field-sequence" && $0.message.contains("move sequence word") }, "\(report.findings)")
        #expect(try map.get("absent") == nil)
        #expect(!moves.isOdd)
        for (key, value) in model { #expect(try map.get(key) == value) }
        #expect(try SlotStore.verify(at: store.path).ok)
    }
}
