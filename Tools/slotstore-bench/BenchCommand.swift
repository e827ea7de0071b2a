import Glibc
import SlotStore

enum BenchCommand {
    static let usage = """
        usage: slotstore-bench [bench] [--json] [--quick] [--dir DIR] [--floor] [--only PATTERN]...

          --quick   short repetitions and a 125K-entry map instead of 1M (finishes in under a minute)
          --json    print the results as JSON instead of a table (progress still goes to stderr)
          --dir DIR disk-backed folder for the sync() and durable-commit rows (default /var/tmp)
          --floor   also build and run the repository's C floor (Tools/bench-floor/floor.c, with
                    the system C compiler `cc`, or $CC) in this invocation, and print each row
                    beside the floor row doing the same (or the nearest) work, with the ratio
          --only PATTERN
                    run only the rows whose name matches PATTERN: a case-insensitive substring
                    ("map 1K", "string[64] store"), or a glob when it has * or ? ("int64 *",
                    "map 1M: get*"). Repeat it to run rows matching any of the patterns. The
                    rows a pattern skips cost nothing (their setup is skipped too); --floor
                    still runs the whole floor.

        Build with -c release. Every row: median ns/op over 7 timed repetitions (5 with --quick),
        min and max, and heap allocations per operation; a value row (such as bytes per entry)
        prints its one measured value in the median column and its unit in the notes.
        """

    static func run(_ arguments: [String]) -> Int32 {
        var settings = Settings()
        var remaining = arguments[...]
        if remaining.first == "bench" { remaining = remaining.dropFirst() }
        while let argument = remaining.popFirst() {
            switch argument {
            case "--json": settings.json = true
            case "--quick": settings.quick = true
            case "--floor": settings.floor = true
            case "--dir":
                guard let value = remaining.popFirst(), !value.isEmpty else { return fail("--dir needs a folder") }
                settings.diskDirectory = value
            case "--only":
                guard let value = remaining.popFirst(), !value.isEmpty else {
                    return fail("--only needs a pattern, such as --only 'map 1M' or --only 'int64 *'")
                }
                settings.only.append(value)
            case "-h", "--help":
                print(usage)
                return 0
            default:
                if argument.hasPrefix("--dir=") {
                    settings.diskDirectory = String(argument.dropFirst(6))
                } else if argument.hasPrefix("--only="), argument.count > 7 {
                    settings.only.append(String(argument.dropFirst(7)))
                } else {
                    return fail("unknown argument \(argument) (try --help)")
                }
            }
        }

        let workspace: Workspace
        do {
            workspace = try Workspace(settings: settings)
        } catch {
            return fail(error.message)
        }
        defer { workspace.cleanUp() }

        do {
            try execute(settings, workspace)
            return 0
        } catch let error as BenchFailure {
            return fail(error.message)
        } catch {
            return fail("\(error)")
        }
    }

    private static func execute(_ settings: Settings, _ workspace: Workspace) throws {
        let machine = Machine.current()
        var floor: Floor?
        let bigEntries = settings.bigMapEntries
        let bigBuckets = MapBenchmarks.bucketCount(capacity: MapBenchmarks.capacity(entries: bigEntries))
        // The floor's shared-memory runs go first; its disk run goes right before
        // the SlotStore disk rows, since a shared disk's speed drifts within seconds.
        if settings.floor {
            var located = try Floor.build(workspace: workspace)
            note("running the C floor: \(located.source)")
            try located.run([.main, .small], settings: settings, workspace: workspace, bigEntries: bigEntries, bigBuckets: bigBuckets)
            floor = located
        }

        CallCounters.install()
        var allocationNote: String?
        if !CallCounters.allocationsWork || !CallCounters.msyncWorks {
            allocationNote = "not working (\(CallCounters.problem ?? "unknown")): allocation and flush columns are n/a"
        } else {
            allocationNote = "\(CallCounters.patchedSlots) relocation slots redirected; self-check passed"
        }
        let bench = Bench(settings: settings, countAllocations: CallCounters.allocationsWork)

        let started = monotonicNanoseconds()
        note("SlotStore rows\(settings.quick ? " (--quick)" : "")")
        let baselines = try ScalarBenchmarks.run(bench, workspace)
        try WaitBenchmarks.run(bench, workspace)
        try ProcessBenchmarks.run(bench, workspace, baselines: baselines)
        try MapBenchmarks.run(bench, workspace, entries: bigEntries, label: bigEntries >= 1_000_000
                              ? "\(bigEntries / 1_000_000)M" : "\(bigEntries / 1000)K", floorRun: .main)
        try MapBenchmarks.run(bench, workspace, entries: settings.smallMapEntries, label: "1K", floorRun: .small)
        try MapBenchmarks.runChurn(bench, workspace)
        try MapBenchmarks.runBytesPerEntry(bench, workspace, capacity: bigEntries)
        try CompactionBenchmarks.run(bench, workspace, entries: bigEntries)
        try WholeStoreBenchmarks.run(bench, workspace, entries: bigEntries)
        try SystemBenchmarks.openClose(bench, workspace)
        if var located = floor {
            note("running the C floor on \(settings.diskDirectory)")
            try located.run([.disk], settings: settings, workspace: workspace, bigEntries: bigEntries, bigBuckets: bigBuckets)
            floor = located
            note("SlotStore disk rows")
        }
        try SystemBenchmarks.runDisk(bench, workspace)
        if bench.rows.isEmpty {
            throw BenchFailure("--only \(settings.only.joined(separator: " --only ")) matched no row; the rows are:\n  " +
                               bench.skipped.joined(separator: "\n  "))
        }
        note("SlotStore rows done in \(Format.fixed(Double(monotonicNanoseconds() - started) / 1e9, 1)) s")

        if let floor { bench.attachFloor { floor.row($0)?.median } }
        var rows = bench.rows
        // Without a working counter the flush notes would claim zero flushes.
        if !CallCounters.msyncWorks { for index in rows.indices { rows[index].flushesPerOp = nil } }

        let text = settings.json
            ? Report.json(rows, settings: settings, machine: machine, floor: floor, workspace: workspace, allocationNote: allocationNote)
            : Report.table(rows, settings: settings, machine: machine, floor: floor, workspace: workspace, allocationNote: allocationNote)
        writeAll(text, to: STDOUT_FILENO)
    }

    static func note(_ message: String) {
        printError(message)
    }

    static func fail(_ message: String) -> Int32 {
        printError("slotstore-bench: \(message)")
        return 2
    }
}
