import Glibc

/// The row names printed by the repository's C floor (`Tools/bench-floor/floor.c`), spelled exactly.
enum FloorOp {
    static let fetchAdd = "atomic add int64 (fetch_add)"
    static let load = "atomic load int64 (acquire), independent loads"
    static let lockUnlock = "robust process-shared mutex lock + unlock"
    static let write64 = "locked write 64 B + undo journal + seqlock"
    static let write512 = "locked write 512 B + undo journal + seqlock"
    static let writePair = "locked write of two int64 fields + undo journal"
    static let seqlockRead = "seqlock read 64 B"
    static let seqlockRead512 = "seqlock read 512 B"
    static let seqlockReadContended = "seqlock read 64 B while a writer process writes"
    static let mapInsert = "map fill empty table (locked journaled inserts)"
    static let mapGet = "map get hit (per-bucket seqlock)"
    static let mapSet = "map set existing key (lock + journal + seqlock)"
    static let contendedAdd = "2 processes: atomic add on one counter (aggregate)"
    static let contendedWrite = "2 processes: locked write 64 B + journal + seqlock (aggregate)"
    static let open = "open + fstat + mmap 1 MiB + read a page + munmap + close"
    static let msync = "msync(MS_SYNC) of one dirty 4 KiB page"
    static let durableWrite = "durable int64 write: undo journal + 3 msync(MS_SYNC)"
}

struct FloorRow {
    let op: String
    let medium: String
    let median: Double
    let minimum: Double
    let maximum: Double
}

/// The repository's C floor (`Tools/bench-floor/floor.c`), compiled with the system C
/// compiler into a temporary folder and run once per store size and medium.
struct Floor {
    /// The floor's source file.
    let source: String
    /// The compiled floor.
    let binary: String
    private(set) var rows: [FloorRun: [String: FloorRow]] = [:]

    /// Finds the source, checks for a C compiler and builds the floor into a folder the workspace removes.
    static func build(workspace: Workspace) throws(BenchFailure) -> Floor {
        let source = try locateSource()
        let compiler = try locateCompiler()
        let folder = try workspace.temporaryDirectory()
        let binary = folder + "/floor"
        let started = monotonicNanoseconds()
        let child = try Spawn.start(compiler, ["-O2", "-Wall", "-o", binary, source, "-lpthread"])
        try Spawn.wait(child.pid, "building the C floor (\(compiler) -O2 -o \(binary) \(source) -lpthread)")
        printError("  floor built with \(compiler) in \(Format.fixed(Double(monotonicNanoseconds() - started) / 1e9, 1)) s")
        return Floor(source: source, binary: binary)
    }

    /// `Tools/bench-floor/floor.c` of the repository this bench belongs to: looked for
    /// from the executable's folder (`.build/release` sits inside the package) and the
    /// current folder and each of their parents, then next to this file's source as built.
    static func locateSource(sourceFile: String = #filePath) throws(BenchFailure) -> String {
        var starts: [String] = []
        if let executable = try? Spawn.executablePath() { starts.append(parent(executable)) }
        if let cwd = currentDirectory() { starts.append(cwd) }
        for start in starts {
            var directory = start
            while true {
                let candidate = (directory == "/" ? "" : directory) + "/Tools/bench-floor/floor.c"
                if access(candidate, R_OK) == 0 { return candidate }
                if directory == "/" || directory.isEmpty { break }
                directory = parent(directory)
            }
        }
        let besideSource = parent(parent(sourceFile)) + "/bench-floor/floor.c"
        if access(besideSource, R_OK) == 0 { return besideSource }
        throw BenchFailure("--floor: Tools/bench-floor/floor.c not found (looked in the folders above the executable, " +
                           "above \(starts.last ?? "the current folder"), and at \(besideSource)); " +
                           "run the bench from a checkout of the SlotStore repository")
    }

    /// The C compiler: `$CC` if set, else `cc`, found on `PATH`.
    static func locateCompiler() throws(BenchFailure) -> String {
        let name = getenv("CC").flatMap { String(validatingCString: $0) }.flatMap { $0.isEmpty ? nil : $0 } ?? "cc"
        if name.contains("/") {
            if access(name, X_OK) == 0 { return name }
            throw BenchFailure("--floor needs a C compiler to build Tools/bench-floor/floor.c, and CC=\(name) is not an executable file; " +
                               "set CC to one, or install one (Debian/Ubuntu: apt-get install gcc)")
        }
        let path = getenv("PATH").flatMap { String(validatingCString: $0) } ?? "/usr/local/bin:/usr/bin:/bin"
        for directory in path.split(separator: ":", omittingEmptySubsequences: true) {
            let candidate = directory + "/" + name
            if access(candidate, X_OK) == 0 { return candidate }
        }
        throw BenchFailure("--floor needs a C compiler to build Tools/bench-floor/floor.c, and `\(name)` is not on PATH (\(path)); " +
                           "install one (Debian/Ubuntu: apt-get install gcc) or set CC to a compiler")
    }

    private static func currentDirectory() -> String? {
        var buffer = [CChar](repeating: 0, count: 4097)
        guard getcwd(&buffer, 4096) != nil else { return nil }
        return buffer.withUnsafeBufferPointer { String(validatingCString: $0.baseAddress!) }
    }

    private static func parent(_ path: String) -> String {
        guard let slash = path.lastIndex(of: "/") else { return "." }
        let result = String(path[..<slash])
        return result.isEmpty ? "/" : result
    }

    /// Up to three runs: the shared-memory sections with the big map (`main`), the map
    /// section with 1K keys (`small`), and msync plus the durable write on the disk folder (`disk`).
    mutating func run(_ wanted: [FloorRun], settings: Settings, workspace: Workspace, bigEntries: Int, bigBuckets: Int) throws(BenchFailure) {
        let common = [
            "REPS": String(settings.repetitions),
            "TARGET_MS": String(settings.targetNanoseconds / 1_000_000),
            "CONTENTION_MS": String(settings.contentionNanoseconds / 1_000_000),
        ]
        let smallBuckets = MapBenchmarks.bucketCount(capacity: MapBenchmarks.capacity(entries: settings.smallMapEntries))
        let small = ["MAP_KEYS": String(settings.smallMapEntries), "MAP_BUCKETS": String(smallBuckets)]
        let runs: [(FloorRun, String, String, [String], [String: String])] = [
            (.main, workspace.shm, workspace.shmMedium, ["atomic", "mutex", "write", "seqlock", "map", "contention", "open"],
             ["MAP_KEYS": String(bigEntries), "MAP_BUCKETS": String(bigBuckets)]),
            (.small, workspace.shm, workspace.shmMedium, ["map"], small),
            (.disk, workspace.disk, workspace.diskMedium, ["msync"], small),
        ]
        for (run, directory, medium, sections, environment) in runs where wanted.contains(run) {
            var env = common
            for (name, value) in environment { env[name] = value }
            let started = monotonicNanoseconds()
            let what = "the C floor (\(binary) \(directory) \(medium) \(sections.joined(separator: " ")))"
            let child = try Spawn.start(binary, [directory, medium] + sections, environment: env, stdoutPipe: true)
            let output = Spawn.readAll(child.stdout!)
            try Spawn.wait(child.pid, what)
            var parsed: [String: FloorRow] = [:]
            for line in String(decoding: output, as: UTF8.self).split(separator: "\n") {
                let fields = line.split(separator: "\t", omittingEmptySubsequences: false).map(String.init)
                guard fields.count == 5, let median = Double(fields[2]), let minimum = Double(fields[3]),
                      let maximum = Double(fields[4]) else { continue }
                parsed[fields[0]] = FloorRow(op: fields[0], medium: fields[1], median: median, minimum: minimum, maximum: maximum)
            }
            guard !parsed.isEmpty else { throw BenchFailure("\(what) printed no rows") }
            rows[run] = parsed
            let seconds = Double(monotonicNanoseconds() - started) / 1e9
            printError("  floor \(run.rawValue) (\(directory): \(sections.joined(separator: " "))): \(parsed.count) rows in \(Format.fixed(seconds, 1)) s")
        }
    }

    func row(_ reference: FloorReference) -> FloorRow? { rows[reference.run]?[reference.op] }
}
