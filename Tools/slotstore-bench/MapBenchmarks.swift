import Glibc
import SlotStore

/// Map rows: string[32] keys, int64 values, about 77% of the buckets in use,
/// keys and access order generated exactly as the floor's (`common.h`).
enum MapBenchmarks {
    /// The bucket count SlotStore gives a map of `capacity` entries (`MapGeometry`, layout 2):
    /// `ceil(capacity × 20 / 17)`, at least 4, a load of at most 0.85.
    static func bucketCount(capacity: Int) -> Int { max(4, (capacity * 20 + 16) / 17) }

    /// Capacity for `entries` live entries: 10% headroom for the insert rows,
    /// which keeps the bucket count the one `entries` alone would need.
    static func capacity(entries: Int) -> Int { entries + entries / 10 }


    // MARK: Keys (common.h)

    @inline(__always)
    static func splitmix64(_ value: UInt64) -> UInt64 {
        var x = value &+ 0x9E37_79B9_7F4A_7C15
        x = (x ^ (x >> 30)) &* 0xBF58_476D_1CE4_E5B9
        x = (x ^ (x >> 27)) &* 0x94D0_49BB_1331_11EB
        return x ^ (x >> 31)
    }

    /// Key `index`: "key-" and 28 zero-padded decimal digits of splitmix64(index), 32 bytes.
    static func key(_ index: UInt64) -> String {
        String(unsafeUninitializedCapacity: 32) { buffer in
            for (offset, byte) in "key-".utf8.enumerated() { buffer[offset] = byte }
            var value = splitmix64(index)
            for position in stride(from: 31, through: 4, by: -1) {
                buffer[position] = UInt8(ascii: "0") + UInt8(value % 10)
                value /= 10
            }
            return 32
        }
    }

    /// The floor's seeded Fisher-Yates shuffle of 0..<n.
    static func permutation(_ n: Int, seed: UInt64) -> [UInt32] {
        var perm = (0..<n).map { UInt32($0) }
        var state = seed
        var index = n - 1
        while index > 0 {
            state = splitmix64(state)
            let other = Int(state % UInt64(index + 1))
            perm.swapAt(index, other)
            index -= 1
        }
        return perm
    }

    struct Keys {
        /// Access order of the lookups (the floor's seed 2). Created in this
        /// order, so walking it reads key bytes sequentially, as the floor does.
        let probe: [String]
        /// Insertion order (the floor's seed 1), sharing the probe keys' storage.
        let load: [String]
        /// Keys that are not in the map.
        let missing: [String]
        /// A subset of `missing` used by the insert-then-remove row, so its
        /// tombstones stay few.
        let insertRemove: [String]

        init(entries: Int) {
            let probeOrder = MapBenchmarks.permutation(entries, seed: 2)
            let loadOrder = MapBenchmarks.permutation(entries, seed: 1)
            var position = [Int](repeating: 0, count: entries)
            for (index, key) in probeOrder.enumerated() { position[Int(key)] = index }
            let probe = probeOrder.map { MapBenchmarks.key(UInt64($0)) }
            self.probe = probe
            load = loadOrder.map { probe[position[Int($0)]] }
            missing = (0..<entries).map { MapBenchmarks.key(UInt64(entries + $0)) }
            insertRemove = Array(missing.prefix(max(64, entries / 16)))
        }
    }

    static func run(_ bench: Bench, _ workspace: Workspace, entries: Int, label: String, floorRun: FloorRun) throws {
        let fillRow = "map \(label): fill empty map (insert)"
        let rows = ["get hit", "get hit (inline key)", "get miss", "set (replace)", "add (existing key)", "insert then remove (pair)",
                    "get hit (inline key), every entry with a TTL", "set (replace), every entry with a TTL"]
        // Without one selected row, skip the keys and the fill, which take seconds at 1M.
        guard bench.selectsAny([fillRow] + rows.map { "map \(label): \($0)" }) else { return }
        let capacity = capacity(entries: entries)
        let buckets = bucketCount(capacity: capacity)
        let medium = workspace.shmMedium
        bench.progress("generating \(Format.grouped(entries)) keys")
        let keys = Keys(entries: entries)
        let path = workspace.path("map-\(label).slots")
        let store = try SlotStore(path: path, schema: Schema(version: 1, fields: [
            .map("map", key: .string(capacity: 32), value: .scalar(.int64), capacity: capacity),
        ]), options: OpenOptions(mode: .create))
        defer { store.close(); workspace.remove(path) }
        let map = try store.map("map", key: String.self, value: Int64.self)
        let load = "load " + Format.fixed(Double(entries) / Double(buckets), 2)
        let shape = "\(Format.grouped(entries)) entries in \(Format.grouped(buckets)) buckets, \(load)"

        // Fill: the first fill faults the file's pages in and is not timed;
        // removeAll (one journaled header write) empties the map between fills.
        // When --only leaves the fill row out, the other rows still need one fill.
        let timeFill = bench.selects(fillRow)
        var samples: [Double] = []
        var allocations: UInt64 = 0
        for repetition in -1..<(timeFill ? bench.settings.repetitions : 0) {
            try map.removeAll()
            let before = CallCounters.allocations
            let start = monotonicNanoseconds()
            for (index, key) in keys.load.enumerated() { try map.set(Int64(index), for: key) }
            let elapsed = monotonicNanoseconds() - start
            if repetition >= 0 {
                samples.append(Double(elapsed) / Double(entries))
                allocations += CallCounters.allocations - before
            }
        }
        guard map.count == entries else { throw BenchFailure("the \(label) map holds \(map.count) entries after filling, not \(entries)") }
        if timeFill {
            bench.record(Row(op: fillRow, medium: medium, samples: samples, opsPerRepetition: entries,
                             allocationsPerOp: Double(allocations) / Double(entries * bench.settings.repetitions),
                             floor: .same(FloorOp.mapInsert, floorRun), note: "journaled inserts; \(shape)"))
        }

        var cursor = 0
        try bench.measure("map \(label): get hit", medium: medium, floor: .same(FloorOp.mapGet, floorRun), note: shape) { n in
            var sum: Int64 = 0
            var misses = 0
            try keys.probe.withUnsafeBufferPointer { probe in
                for _ in 0..<n {
                    if let value = try map.get(probe[cursor]) { sum &+= value } else { misses += 1 }
                    cursor += 1
                    if cursor == probe.count { cursor = 0 }
                }
            }
            guard misses == 0 else { throw BenchFailure("get missed \(misses) keys that are in the map") }
            consume(UInt64(bitPattern: sum))
        }

        // The same lookups with the keys as InlineKey<32>: the key bytes
        // inline, so a lookup costs no retain/release of a string's storage.
        let inlineRow = "map \(label): get hit (inline key)"
        let ttlGetRow = "map \(label): get hit (inline key), every entry with a TTL"
        let ttlSetRow = "map \(label): set (replace), every entry with a TTL"
        let inlineProbe = bench.selectsAny([inlineRow, ttlGetRow]) ? try keys.probe.map { try InlineKey<32>($0) } : []
        var plainInlineGet: Row?
        if bench.selects(inlineRow) {
            let inlineMap = try store.map("map", key: InlineKey<32>.self, value: Int64.self)
            var inlineCursor = 0
            plainInlineGet = try bench.measure(inlineRow, medium: medium, floor: .same(FloorOp.mapGet, floorRun),
                              note: "keys as InlineKey<32>, in one contiguous array; \(shape)") { n in
                var sum: Int64 = 0
                var misses = 0
                try inlineProbe.withUnsafeBufferPointer { probe in
                    for _ in 0..<n {
                        if let value = try inlineMap.get(probe[inlineCursor]) { sum &+= value } else { misses += 1 }
                        inlineCursor += 1
                        if inlineCursor == probe.count { inlineCursor = 0 }
                    }
                }
                guard misses == 0 else { throw BenchFailure("get missed \(misses) inline keys that are in the map") }
                consume(UInt64(bitPattern: sum))
            }
        }
        if bench.selectsAny([ttlGetRow, ttlSetRow]) {
            try timeToLiveRows(bench, workspace, keys: keys, inlineProbe: inlineProbe, capacity: capacity, shape: shape,
                               getRow: ttlGetRow, setRow: ttlSetRow, plainGet: plainInlineGet, floorRun: floorRun)
        }

        var missCursor = 0
        try bench.measure("map \(label): get miss", medium: medium, note: shape) { n in
            var hits = 0
            try keys.missing.withUnsafeBufferPointer { missing in
                for _ in 0..<n {
                    if try map.get(missing[missCursor]) != nil { hits += 1 }
                    missCursor += 1
                    if missCursor == missing.count { missCursor = 0 }
                }
            }
            guard hits == 0 else { throw BenchFailure("get found \(hits) keys that are not in the map") }
        }

        try bench.measure("map \(label): set (replace)", medium: medium, floor: .same(FloorOp.mapSet, floorRun), note: shape) { n in
            try keys.probe.withUnsafeBufferPointer { probe in
                for index in 0..<n {
                    try map.set(Int64(index), for: probe[cursor])
                    cursor += 1
                    if cursor == probe.count { cursor = 0 }
                }
            }
        }

        try bench.measure("map \(label): add (existing key)", medium: medium, floor: .nearest(FloorOp.mapSet, floorRun),
                          note: "locked read-modify-write; \(shape)") { n in
            var sum: Int64 = 0
            try keys.probe.withUnsafeBufferPointer { probe in
                for _ in 0..<n {
                    sum &+= try map.add(1, for: probe[cursor])
                    cursor += 1
                    if cursor == probe.count { cursor = 0 }
                }
            }
            consume(UInt64(bitPattern: sum))
        }

        var insertCursor = 0
        try bench.measure("map \(label): insert then remove (pair)", medium: medium,
                          note: "\(Format.grouped(keys.insertRemove.count)) distinct new keys in turn; \(shape)") { n in
            var absent = 0
            try keys.insertRemove.withUnsafeBufferPointer { fresh in
                for index in 0..<n {
                    let key = fresh[insertCursor]
                    try map.set(Int64(index), for: key)
                    if !(try map.remove(key)) { absent += 1 }
                    insertCursor += 1
                    if insertCursor == fresh.count { insertCursor = 0 }
                }
            }
            guard absent == 0 else { throw BenchFailure("remove did not find \(absent) keys just inserted") }
        }
        guard map.count == entries else { throw BenchFailure("the \(label) map holds \(map.count) entries at the end, not \(entries)") }
    }
}

extension MapBenchmarks {
    /// The same map with a cache policy (``MapCache``), every entry set with
    /// a one-hour time to live: each hit checks the deadline (the coarse
    /// real-time clock, see ``CacheClock``) and marks the entry used when
    /// its bit is clear; each set writes the entry word and reclaims near the
    /// clock hand. Beside the plain rows, to show what the checks cost.
    static func timeToLiveRows(_ bench: Bench, _ workspace: Workspace, keys: Keys, inlineProbe: [InlineKey<32>], capacity: Int,
                               shape: String, getRow: String, setRow: String, plainGet: Row?, floorRun: FloorRun) throws {
        let medium = workspace.shmMedium
        let path = workspace.path("map-ttl.slots")
        let store = try SlotStore(path: path, schema: Schema(version: 1, fields: [
            .map("map", key: .string(capacity: 32), value: .scalar(.int64), capacity: capacity, cache: MapCache(evict: false)),
        ]), options: OpenOptions(mode: .create))
        defer { store.close(); workspace.remove(path) }
        let map = try store.map("map", key: String.self, value: Int64.self)
        for (index, key) in keys.load.enumerated() { try map.set(Int64(index), for: key, ttl: .seconds(3600)) }
        let inlineMap = try store.map("map", key: InlineKey<32>.self, value: Int64.self)
        var cursor = 0
        let getNote = "cache map, deadlines 1 h ahead; keys as InlineKey<32>; \(shape)"
        if let row = try bench.measure(getRow, medium: medium, floor: .same(FloorOp.mapGet, floorRun), note: getNote, { n in
            var sum: Int64 = 0
            var misses = 0
            try inlineProbe.withUnsafeBufferPointer { probe in
                for _ in 0..<n {
                    if let value = try inlineMap.get(probe[cursor]) { sum &+= value } else { misses += 1 }
                    cursor += 1
                    if cursor == probe.count { cursor = 0 }
                }
            }
            guard misses == 0 else { throw BenchFailure("get missed \(misses) keys that are in the cache map") }
            consume(UInt64(bitPattern: sum))
        }), let plain = plainGet {
            bench.progress("\(getRow): \(Format.fixed(row.median / plain.median, 2))x the get without a cache policy")
        }
        var setCursor = 0
        try bench.measure(setRow, medium: medium, floor: .same(FloorOp.mapSet, floorRun),
                          note: "cache map, each set gives a 1 h deadline; \(shape)") { n in
            try keys.probe.withUnsafeBufferPointer { probe in
                for index in 0..<n {
                    try map.set(Int64(index), for: probe[setCursor], ttl: .seconds(3600))
                    setCursor += 1
                    if setCursor == probe.count { setCursor = 0 }
                }
            }
        }
    }

    static let churnRow = "map churn: get miss after 1M distinct keys through 100 live"
    static let freshRow = "map churn: get miss, fresh map"

    /// Churn: a map of capacity 1,000 (2,048 buckets) that holds 100 live
    /// keys at a time while 1M distinct keys pass through it (insert the
    /// next key, remove the one 100 before), then lookups of absent keys.
    /// Beside it the same 100 keys inserted into a fresh map, with the same
    /// absent keys: a table that decays under churn (tombstones filling
    /// the buckets) makes the first row many times the second.
    static func runChurn(_ bench: Bench, _ workspace: Workspace) throws {
        guard bench.selectsAny([freshRow, churnRow]) else { return }
        let live = 100
        let distinct = 1_000_000
        let capacity = 1_000
        let buckets = bucketCount(capacity: capacity)
        let medium = workspace.shmMedium
        let schema = Schema(version: 1, fields: [
            .map("map", key: .string(capacity: 32), value: .scalar(.int64), capacity: capacity),
        ])
        // Absent keys: never inserted in either map.
        let missing = (0..<4096).map { key(UInt64(2 * distinct + $0)) }
        func measureMisses(_ op: String, _ map: MapField<String, Int64>, note: String) throws {
            var cursor = 0
            try bench.measure(op, medium: medium, note: note) { n in
                var hits = 0
                try missing.withUnsafeBufferPointer { missing in
                    for _ in 0..<n {
                        if try map.get(missing[cursor]) != nil { hits += 1 }
                        cursor += 1
                        if cursor == missing.count { cursor = 0 }
                    }
                }
                guard hits == 0 else { throw BenchFailure("get found \(hits) keys that are not in the map") }
            }
        }

        if bench.selects(freshRow) {
            let path = workspace.path("map-churn-fresh.slots")
            let store = try SlotStore(path: path, schema: schema, options: OpenOptions(mode: .create))
            defer { store.close(); workspace.remove(path) }
            let map = try store.map("map", key: String.self, value: Int64.self)
            // The same live keys the churned map ends with.
            for index in (distinct - live)..<distinct { try map.set(Int64(index), for: key(UInt64(index))) }
            try measureMisses(freshRow, map, note: "\(live) keys inserted into \(Format.grouped(buckets)) empty buckets")
        }

        if bench.selects(churnRow) {
            let path = workspace.path("map-churn.slots")
            let store = try SlotStore(path: path, schema: schema, options: OpenOptions(mode: .create))
            defer { store.close(); workspace.remove(path) }
            let map = try store.map("map", key: String.self, value: Int64.self)
            bench.progress("churning \(Format.grouped(distinct)) distinct keys through \(live) live")
            let start = monotonicNanoseconds()
            for index in 0..<distinct {
                try map.set(Int64(index), for: key(UInt64(index)))
                if index >= live {
                    guard try map.remove(key(UInt64(index - live))) else {
                        throw BenchFailure("churn: key \(index - live) was not in the map")
                    }
                }
            }
            let churnSeconds = Double(monotonicNanoseconds() - start) / 1e9
            guard map.count == live else { throw BenchFailure("the churned map holds \(map.count) entries, not \(live)") }
            let statistics = try SlotStore.inspect(at: path).fields.first?.map
            let shape = statistics.map { "\($0.tombstones) tombstones in \(Format.grouped($0.buckets)) buckets" } ?? "?"
            try measureMisses(churnRow, map, note: "\(shape) after the churn (\(Format.fixed(churnSeconds, 1)) s)")
        }
    }
}

extension MapBenchmarks {
    static let bytesPerEntryRow = "map 1M: bytes per entry at capacity"

    /// Space: a map of `capacity` entries (1M, or the --quick map size) with
    /// 32-byte string keys and int64 values, filled to capacity; its bytes per
    /// entry and their ratio to the payload plus 8 bytes (32 + 8 + 8 = 48).
    /// The map's bytes are the file size beside a store without the map,
    /// through the public API only, so the row stays right whatever the map
    /// format puts where (buckets, headers, journal room for the map).
    static func runBytesPerEntry(_ bench: Bench, _ workspace: Workspace, capacity: Int) throws {
        guard bench.selects(bytesPerEntryRow) else { return }
        let keyCapacity = 32
        let payloadPlusWord = keyCapacity + 8 + 8
        let withoutPath = workspace.path("map-bytes-without.slots")
        let withPath = workspace.path("map-bytes.slots")
        defer { workspace.remove(withoutPath); workspace.remove(withPath) }
        let without = try SlotStore(path: withoutPath, schema: Schema(version: 1, fields: [.int64("other")]),
                                    options: OpenOptions(mode: .create))
        without.close()
        let store = try SlotStore(path: withPath, schema: Schema(version: 1, fields: [
            .int64("other"),
            .map("map", key: .string(capacity: keyCapacity), value: .scalar(.int64), capacity: capacity),
        ]), options: OpenOptions(mode: .create))
        defer { store.close() }
        let map = try store.map("map", key: String.self, value: Int64.self)
        bench.progress("filling a map of capacity \(Format.grouped(capacity)) to capacity")
        for index in 0..<capacity { try map.set(Int64(index), for: key(UInt64(index))) }
        guard map.count == capacity else {
            throw BenchFailure("the map of capacity \(capacity) holds \(map.count) entries after filling it")
        }
        let fileBytes = try SlotStore.inspect(at: withPath).format.fileSize - SlotStore.inspect(at: withoutPath).format.fileSize
        let slotBytes = try SlotStore.inspect(at: withPath).fields.first { $0.name == "map" }?.size
        let perEntry = Double(fileBytes) / Double(capacity)
        let size = capacity == 1_000_000 ? "capacity 1,000,000"
            : "capacity \(Format.grouped(capacity)) (--quick; 1,000,000 without it)"
        bench.record(Row(op: bytesPerEntryRow, medium: workspace.shmMedium, samples: [perEntry], opsPerRepetition: capacity,
                         note: "\(size), string[\(keyCapacity)] keys, int64 values, filled; " +
                             "\(Format.fixed(perEntry / Double(payloadPlusWord), 2))x of key capacity + value + 8 = \(payloadPlusWord) bytes; " +
                             "file \(Format.grouped(fileBytes)) bytes larger than without the map" +
                             (slotBytes.map { ", the map's slot \(Format.grouped($0)) bytes (inspect)" } ?? ""),
                         unit: "bytes/entry"))
    }
}
