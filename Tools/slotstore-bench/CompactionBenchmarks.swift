import Glibc
import SlotStore

/// Compaction rows: how long a compaction in place of a big map takes per
/// entry, and how long a lock-free writer in another process waits during one.
enum CompactionBenchmarks {
    static let compactRow = "compact in place: 1M-entry map (ns per entry)"
    static let waitRow = "compaction: longest lock-free add wait (ns)"

    /// The map (string[32] keys, int64 values, as the map rows) and the words
    /// the writer process and this one talk through.
    static func schema(capacity: Int) -> Schema {
        Schema(version: 1, fields: [
            .int64("ready"), .int64("stop"), .int64("round"), .int64("acknowledged"),
            .int64("counter"), .int64("longest"),
            .map("map", key: .string(capacity: 32), value: .scalar(.int64), capacity: capacity),
        ])
    }

    static let growRow = "map grow: insert 1M keys from capacity 1K (amortized)"

    static func run(_ bench: Bench, _ workspace: Workspace, entries: Int) throws {
        if bench.selects(growRow) { try grow(bench, workspace, entries: entries) }
        if bench.selects(compactRow) { try compactInPlace(bench, workspace, entries: entries) }
        // The target is stated at 2M entries (1M with --quick's smaller maps: 250K).
        if bench.selects(waitRow) { try longestWait(bench, workspace, entries: entries * 2) }
    }

    /// A store whose map holds `entries` keys (the map rows' keys, in their load order).
    private static func filledStore(_ bench: Bench, _ workspace: Workspace, name: String, entries: Int) throws -> (SlotStore, String) {
        let path = workspace.path(name)
        let store = try SlotStore(path: path, schema: schema(capacity: MapBenchmarks.capacity(entries: entries)),
                                  options: OpenOptions(mode: .create))
        bench.progress("filling a map with \(Format.grouped(entries)) keys")
        let map = try store.map("map", key: String.self, value: Int64.self)
        for index in 0..<entries { try map.set(Int64(index), for: MapBenchmarks.key(UInt64(index))) }
        return (store, path)
    }

    /// Inserts `entries` keys into a map that starts at capacity 1K and
    /// grows (doubling at 90%), then the same keys into a map created at its
    /// final capacity: ns per insert of each, and their ratio in the note.
    private static func grow(_ bench: Bench, _ workspace: Workspace, entries: Int) throws {
        let keys = (0..<entries).map { MapBenchmarks.key(UInt64($0)) }
        let repetitions = min(bench.settings.repetitions, 3)
        func fill(capacity: Int, growth: MapGrowth?) throws -> Double {
            let path = workspace.path("grow.slots")
            let store = try SlotStore(path: path, schema: Schema(version: 1, fields: [
                .map("map", key: .string(capacity: 32), value: .scalar(.int64), capacity: capacity, growth: growth),
            ]), options: OpenOptions(mode: .create))
            defer { store.close(); workspace.remove(path) }
            let map = try store.map("map", key: String.self, value: Int64.self)
            let start = monotonicNanoseconds()
            for (index, key) in keys.enumerated() { try map.set(Int64(index), for: key) }
            let elapsed = Double(monotonicNanoseconds() - start) / Double(entries)
            guard map.count == entries else { throw BenchFailure("the grown map holds \(map.count) entries, not \(entries)") }
            return elapsed
        }
        bench.progress("inserting \(Format.grouped(entries)) keys into a map growing from capacity 1K, \(repetitions) times")
        var grown: [Double] = [], presized: [Double] = []
        for _ in 0..<repetitions {
            grown.append(try fill(capacity: 1_024, growth: MapGrowth(maxCapacity: entries * 2)))
            presized.append(try fill(capacity: MapBenchmarks.capacity(entries: entries), growth: nil))
        }
        let ratio = Statistics.median(grown) / Statistics.median(presized)
        bench.record(Row(op: growRow, medium: workspace.shmMedium, samples: grown, opsPerRepetition: entries,
                         note: "\(Format.grouped(entries)) keys; a pre-sized map takes \(Format.fixed(Statistics.median(presized), 0)) ns per insert: \(Format.fixed(ratio, 2))x"))
    }

    private static func compactInPlace(_ bench: Bench, _ workspace: Workspace, entries: Int) throws {
        let (store, path) = try filledStore(bench, workspace, name: "compact.slots", entries: entries)
        defer { store.close(); workspace.remove(path) }
        var samples: [Double] = []
        let repetitions = min(bench.settings.repetitions, 5)
        bench.progress("compacting it in place \(repetitions) times")
        for _ in 0..<repetitions {
            let start = monotonicNanoseconds()
            try SlotStore.compact(at: path)
            samples.append(Double(monotonicNanoseconds() - start) / Double(entries))
        }
        let map = try store.map("map", key: String.self, value: Int64.self)
        guard map.count == entries else { throw BenchFailure("after compacting, the map holds \(map.count) entries, not \(entries)") }
        let size = try SlotStore.inspect(at: path).format.fileSize
        bench.record(Row(op: compactRow, medium: workspace.shmMedium, samples: samples, opsPerRepetition: entries,
                         note: "\(Format.grouped(entries)) entries, a \(Format.grouped(Int(size) >> 20)) MiB file; nobody else attached"))
    }

    /// A second process adds to a counter in a loop, timing each add, while
    /// this one compacts the store in place; the row is the longest single
    /// add of each compaction (median over the repetitions).
    private static func longestWait(_ bench: Bench, _ workspace: Workspace, entries: Int) throws {
        let (store, path) = try filledStore(bench, workspace, name: "compact-wait.slots", entries: entries)
        defer { store.close(); workspace.remove(path) }
        let ready = try store.scalar("ready", as: Int64.self), stop = try store.scalar("stop", as: Int64.self)
        let round = try store.scalar("round", as: Int64.self), acknowledged = try store.scalar("acknowledged", as: Int64.self)
        let counter = try store.scalar("counter", as: Int64.self), longest = try store.scalar("longest", as: Int64.self)
        let child = try Spawn.start(try Spawn.executablePath(), ["--child", "compaction-adder", path, "0", "1"])
        var reaped = false
        defer { if !reaped { stop.store(1); _ = try? Spawn.wait(child.pid, "the adding process") } }
        CPU.pin(0)
        defer { CPU.unpin() }
        try waitFor("the adding process to start", child: child.pid) { ready.load() == 1 }
        var samples: [Double] = []
        var compactionTimes: [Double] = []
        let repetitions = min(bench.settings.repetitions, 5)
        bench.progress("compacting it in place \(repetitions) times while another process adds")
        for repetition in 1...repetitions {
            round.store(Int64(repetition))
            try waitFor("the adding process to start round \(repetition)", child: child.pid) { acknowledged.load() == Int64(repetition) }
            let start = monotonicNanoseconds()
            try SlotStore.compact(at: path)
            compactionTimes.append(Double(monotonicNanoseconds() - start))
            // The add that waited ends soon after; 10,000 more adds show the writer is past it.
            let after = counter.load()
            try waitFor("the adding process to carry on after the compaction", child: child.pid) { counter.load() >= after + 10_000 }
            samples.append(Double(longest.load()))
        }
        stop.store(1)
        try Spawn.wait(child.pid, "the adding process")
        reaped = true
        let medianCompaction = Statistics.median(compactionTimes) / 1e6
        bench.record(Row(op: waitRow, medium: workspace.shmMedium, samples: samples, opsPerRepetition: 1,
                         note: "\(Format.grouped(entries))-entry map; each compaction in place took \(Format.fixed(medianCompaction, 0)) ms (median)"))
    }

    /// Waits, yielding, until `condition` holds; fails if the child died first.
    private static func waitFor(_ what: String, child: pid_t, _ condition: () -> Bool) throws {
        let deadline = monotonicNanoseconds() + 60_000_000_000
        while !condition() {
            var status: Int32 = 0
            if waitpid(child, &status, WNOHANG) == child {
                throw BenchFailure("waiting for \(what): the child exited first (status \(status))")
            }
            guard monotonicNanoseconds() < deadline else { throw BenchFailure("waited 60 s for \(what)") }
            sched_yield()
        }
    }

    /// The child: adds in a loop, timing each add; `longest` holds the longest
    /// add since the parent's current round began.
    static func adder(path: String) throws -> Int32 {
        CPU.pin(1)
        let store = try SlotStore(path: path, options: OpenOptions(mode: .open))
        defer { store.close() }
        let ready = try store.scalar("ready", as: Int64.self), stop = try store.scalar("stop", as: Int64.self)
        let round = try store.scalar("round", as: Int64.self), acknowledged = try store.scalar("acknowledged", as: Int64.self)
        let counter = try store.scalar("counter", as: Int64.self), longest = try store.scalar("longest", as: Int64.self)
        ready.store(1)
        var current: Int64 = 0
        var slowest: UInt64 = 0
        while stop.load() == 0 {
            let seen = round.load()
            if seen != current {
                current = seen
                slowest = 0
                longest.store(0)
                acknowledged.store(seen)
            }
            let start = monotonicNanoseconds()
            counter.add(1)
            let took = monotonicNanoseconds() - start
            if took > slowest {
                slowest = took
                longest.store(Int64(took))
            }
        }
        return 0
    }
}
