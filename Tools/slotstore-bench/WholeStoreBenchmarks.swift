import Glibc
@_spi(Tools) import SlotStore

/// Whole-store operations on a map of string[32] keys and int64 values
/// (1M entries, 125K with --quick; the row names keep "1M", the progress line
/// says the count): `load` from a dump into a new store, `dump` to a file,
/// `verify` and `inspect`, each through the library calls the `slotstore`
/// commands make, timed whole and reported per map entry. One repetition is
/// a whole operation, so rows have fewer, longer samples than the others.
enum WholeStoreBenchmarks {
    static let rows = ["load", "dump", "verify", "inspect"].map { "\($0): 1M-entry map (ns per entry)" }

    static func run(_ bench: Bench, _ workspace: Workspace, entries: Int) throws {
        guard bench.selectsAny(rows) else { return }
        let medium = workspace.shmMedium
        let repetitions = bench.settings.quick ? 3 : 5
        bench.progress("whole-store rows: a map of \(Format.grouped(entries)) entries, \(repetitions) runs each")

        // The store the dump, verify and inspect rows read, filled once.
        let source = workspace.path("whole-store.slots")
        let dumpPath = workspace.path("whole-store.json")
        defer { workspace.remove(source); workspace.remove(dumpPath) }
        do {
            let store = try SlotStore(path: source, schema: Schema(version: 1, fields: [
                .map("map", key: .string(capacity: 32), value: .scalar(.int64), capacity: MapBenchmarks.capacity(entries: entries)),
            ]), options: OpenOptions(mode: .create))
            defer { store.close() }
            let map = try store.map("map", key: String.self, value: Int64.self)
            for index in 0..<entries { try map.set(Int64(index) * 7919 - 1_000_000, for: MapBenchmarks.key(UInt64(index))) }
            try writeDump(store, to: dumpPath)
        }
        let size = Workspace.fileSize(source) ?? 0
        let shape = "\(Format.grouped(entries)) entries, store \(Format.grouped(size)) B, dump \(Format.grouped(Workspace.fileSize(dumpPath) ?? 0)) B"

        try timed(bench, rows[0], medium: medium, entries: entries, repetitions: repetitions,
                  note: "slotstore load into a new path: parse, insert unjournaled, flush, link; \(shape)") {
            let target = workspace.path("whole-store-loaded.slots")
            workspace.remove(target)
            defer { workspace.remove(target) }
            let started = monotonicNanoseconds()
            _ = try SlotStore.load(dumpAt: dumpPath, into: target, options: OpenOptions())
            return monotonicNanoseconds() - started
        }
        try timed(bench, rows[1], medium: medium, entries: entries, repetitions: repetitions,
                  note: "slotstore dump --output: under the lock, keys sorted, written from the mapping; \(shape)") {
            let store = try SlotStore(path: source, options: OpenOptions(mode: .open))
            defer { store.close() }
            let target = workspace.path("whole-store-dumped.json")
            defer { workspace.remove(target) }
            let started = monotonicNanoseconds()
            try writeDump(store, to: target)
            return monotonicNanoseconds() - started
        }
        try timed(bench, rows[2], medium: medium, entries: entries, repetitions: repetitions,
                  note: "slotstore verify: every check, maps read 4 MiB at a time with pread; \(shape)") {
            let started = monotonicNanoseconds()
            let report = try SlotStore.verify(at: source, progress: nil)
            guard report.ok else { throw BenchFailure("verify found problems in the benchmark's store: \(report.findings)") }
            return monotonicNanoseconds() - started
        }
        try timed(bench, rows[3], medium: medium, entries: entries, repetitions: repetitions,
                  note: "slotstore inspect: occupancy and probe-length distributions; \(shape)") {
            let started = monotonicNanoseconds()
            let report = try SlotStore.inspect(at: source, progress: nil)
            consume(UInt64(report.fields.count))
            return monotonicNanoseconds() - started
        }
    }

    private static func writeDump(_ store: SlotStore, to path: String) throws {
        let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw BenchFailure("cannot write \(path): \(errorText(errno))") }
        defer { close(fd) }
        try store.writeDump(to: fd, outputName: path)
    }

    /// One untimed warm-up run, then `repetitions` timed runs of `body` (which returns its nanoseconds).
    private static func timed(_ bench: Bench, _ op: String, medium: String, entries: Int, repetitions: Int, note: String,
                              _ body: () throws -> UInt64) throws {
        guard bench.selects(op) else { return }
        _ = try body()
        var samples: [Double] = []
        let before = CallCounters.allocations
        for _ in 0..<repetitions { samples.append(Double(try body()) / Double(entries)) }
        let allocations = Double(CallCounters.allocations - before) / Double(entries * repetitions)
        bench.record(Row(op: op, medium: medium, samples: samples, opsPerRepetition: entries,
                         allocationsPerOp: allocations, floor: nil, note: note))
    }
}
