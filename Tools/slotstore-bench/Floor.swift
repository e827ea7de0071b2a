import Glibc

/// The op names printed by `../shared/bench-floor/floor.c`, spelled exactly.
enum FloorOp {
    static let fetchAdd = "atomic fetch_add int64 seq_cst"
    static let load = "plain aligned 8B load (acquire), throughput"
    static let writeJournal = "mutex write 64B + undo journal"
    static let writeSeqlock = "mutex write 64B + seqlock bump"
    static let seqlockRead = "seqlock read 64B (uncontended)"
    static let seqlockReadContended = "seqlock read 64B, writer proc writing nonstop"
    static let mapInsert = "hashmap insert (mutex), fill empty table to HM_KEYS"
    static let mapGet = "hashmap get hit (seqlock-validated)"
    static let mapPut = "hashmap put update (mutex+journal+seq)"
    static let durablePut = "hashmap put, durable (journal, 3x msync MS_SYNC)"
    static let contendedAdd = "contended 2 procs: atomic fetch_add (aggregate)"
    static let contendedWrite = "contended 2 procs: mutex 64B write (aggregate)"
    static let open = "open+fstat+mmap 1MiB+close+munmap (1 page read)"
    static let msync = "msync(MS_SYNC) of 1 dirty 4KiB page"
}

struct FloorRow {
    let op: String
    let medium: String
    let median: Double
    let minimum: Double
    let maximum: Double
}

/// Runs the C floor (`bench-floor/run`) and keeps its rows per run.
struct Floor {
    let script: String
    private(set) var rows: [FloorRun: [String: FloorRow]] = [:]

    /// `bench-floor/run` next to the repository: looked for as `../shared/bench-floor/run`
    /// from the current folder and each of its parents, then from the executable's folders.
    static func locate() throws(BenchFailure) -> String {
        var starts: [String] = []
        var buffer = [CChar](repeating: 0, count: 4097)
        if getcwd(&buffer, 4096) != nil, let cwd = buffer.withUnsafeBufferPointer({ String(validatingCString: $0.baseAddress!) }) {
            starts.append(cwd)
        }
        if let executable = try? Spawn.executablePath() { starts.append(parent(executable)) }
        var tried: [String] = []
        for start in starts {
            var directory = start
            while true {
                for candidate in [directory + "/../shared/bench-floor/run", directory + "/shared/bench-floor/run"] {
                    if access(candidate, X_OK) == 0 { return candidate }
                    if tried.count < 2 { tried.append(candidate) }
                }
                if directory == "/" || directory.isEmpty { break }
                directory = parent(directory)
            }
        }
        throw BenchFailure("--floor: no executable bench-floor/run found (looked for ../shared/bench-floor/run from \(starts.first ?? "the current folder") and its parents)")
    }

    private static func parent(_ path: String) -> String {
        guard let slash = path.lastIndex(of: "/") else { return "." }
        let result = String(path[..<slash])
        return result.isEmpty ? "/" : result
    }

    init(script: String) { self.script = script }

    /// Up to three runs: the shared-memory sections with the big map (`main`), the map
    /// section with 1K keys (`small`), and msync plus the durable map put on the disk folder (`disk`).
    mutating func run(_ wanted: [FloorRun], settings: Settings, workspace: Workspace, bigEntries: Int, bigBuckets: Int) throws(BenchFailure) {
        let common = [
            "REPS": String(settings.repetitions),
            "TARGET_MS": String(settings.targetNanoseconds / 1_000_000),
            "CONT_OPS": settings.quick ? "500000" : "5000000",
        ]
        let smallBuckets = MapBenchmarks.bucketCount(capacity: MapBenchmarks.capacity(entries: settings.smallMapEntries))
        let runs: [(FloorRun, String, [String], [String: String])] = [
            (.main, settings.shmDirectory, ["atomic", "write", "seqlock", "load", "hashmap", "contention", "open"],
             ["HM_KEYS": String(bigEntries), "HM_SLOTS_LOG2": String(MapBenchmarks.log2(bigBuckets))]),
            (.small, settings.shmDirectory, ["hashmap"],
             ["HM_KEYS": String(settings.smallMapEntries), "HM_SLOTS_LOG2": String(MapBenchmarks.log2(smallBuckets))]),
            (.disk, settings.diskDirectory, ["msync", "hashmap"],
             ["HM_KEYS": String(settings.smallMapEntries), "HM_SLOTS_LOG2": String(MapBenchmarks.log2(smallBuckets))]),
        ]
        for (run, directory, sections, environment) in runs where wanted.contains(run) {
            var env = common
            for (name, value) in environment { env[name] = value }
            let started = monotonicNanoseconds()
            let child = try Spawn.start(script, [directory] + sections, environment: env, stdoutPipe: true)
            let output = Spawn.readAll(child.stdout!)
            try Spawn.wait(child.pid, "the C floor (\(script) \(directory) \(sections.joined(separator: " ")))")
            var parsed: [String: FloorRow] = [:]
            for line in String(decoding: output, as: UTF8.self).split(separator: "\n") {
                let fields = line.split(separator: "\t", omittingEmptySubsequences: false).map(String.init)
                guard fields.count == 5, let median = Double(fields[2]), let minimum = Double(fields[3]),
                      let maximum = Double(fields[4]) else { continue }
                parsed[fields[0]] = FloorRow(op: fields[0], medium: fields[1], median: median, minimum: minimum, maximum: maximum)
            }
            guard !parsed.isEmpty else { throw BenchFailure("the C floor printed no rows for \(directory) \(sections.joined(separator: " "))") }
            rows[run] = parsed
            let seconds = Double(monotonicNanoseconds() - started) / 1e9
            printError("  floor \(run.rawValue) (\(directory): \(sections.joined(separator: " "))): \(parsed.count) rows in \(Format.fixed(seconds, 1)) s")
        }
    }

    func row(_ reference: FloorReference) -> FloorRow? { rows[reference.run]?[reference.op] }
}
