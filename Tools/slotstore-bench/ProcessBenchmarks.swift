import Glibc
import SlotStore

/// Rows with a second process: a string reader while another process writes,
/// and two processes contending. The processes meet through control fields of
/// the store itself (a ready counter and a start word), never through sleeps.
enum ProcessBenchmarks {
    static let schema = Schema(version: 1, fields: [
        .int64("ready"), .int64("go"), .int64("stop"), .int64("child_end"), .int64("child_ops"),
        .int64("counter"), .string("text", capacity: 64),
    ])

    struct Control {
        let ready, go, stop, childEnd, childOps, counter: ScalarField<Int64>
        let text: StringField

        init(_ store: SlotStore) throws(SlotStoreError) {
            ready = try store.scalar("ready")
            go = try store.scalar("go")
            stop = try store.scalar("stop")
            childEnd = try store.scalar("child_end")
            childOps = try store.scalar("child_ops")
            counter = try store.scalar("counter")
            text = try store.string("text")
        }

        func reset() {
            ready.store(0)
            go.store(0)
            stop.store(0)
            childEnd.store(0)
            childOps.store(0)
        }
    }

    static func run(_ bench: Bench, _ workspace: Workspace, baselines: ScalarBenchmarks.Baselines) throws {
        let path = workspace.path("processes.slots")
        let store = try SlotStore(path: path, schema: schema, options: OpenOptions(mode: .create, cacheLineAligned: true))
        defer { store.close(); workspace.remove(path) }
        let control = try Control(store)
        try control.text.store(ScalarBenchmarks.text64[0])
        let executable = try Spawn.executablePath()
        let medium = workspace.shmMedium
        let settings = bench.settings
        let pinned = CPU.online >= 2 ? "processes pinned to CPUs 0 and 1" : "one CPU online: processes time-share"

        // A reader while a writer process writes the same field nonstop.
        if bench.selects("string[64] read(into:) while a writer process writes") {
            control.reset()
            let child = try Spawn.start(executable, ["--child", "string-writer", path, "0", "1"])
            CPU.pin(0)
            defer { CPU.unpin() }
            var childReaped = false
            defer { if !childReaped { control.stop.store(1); _ = try? Spawn.wait(child.pid, "the writer process") } }
            try awaitReady(control, count: 1, children: [child.pid])
            let writerStart = monotonicNanoseconds()
            var samples: [Double] = []
            var buffer = [UInt8](repeating: 0, count: 64)
            var sum = 0
            var reads = 0
            var allocations: UInt64 = 0
            for repetition in -1..<settings.repetitions {
                // Time-bounded repetitions, as the floor's: a stall of the
                // writer can't shrink a repetition to an uncontended one.
                let before = CallCounters.allocations
                let start = monotonicNanoseconds()
                var count = 0
                var elapsed: UInt64 = 0
                repeat {
                    for _ in 0..<256 { sum &+= try control.text.read(into: &buffer) }
                    count += 256
                    elapsed = monotonicNanoseconds() - start
                } while elapsed < settings.targetNanoseconds
                if repetition >= 0 {
                    samples.append(Double(elapsed) / Double(count))
                    reads += count
                    allocations += CallCounters.allocations - before
                }
            }
            consume(UInt64(sum))
            control.stop.store(1)
            let writerSeconds = Double(monotonicNanoseconds() - writerStart) / 1e9
            try Spawn.wait(child.pid, "the writer process")
            childReaped = true
            let writes = control.childOps.load()
            let rate = Format.fixed(Double(writes) / writerSeconds / 1e6, 1)
            bench.record(Row(op: "string[64] read(into:) while a writer process writes", medium: medium, samples: samples,
                             opsPerRepetition: reads / settings.repetitions,
                             allocationsPerOp: Double(allocations) / Double(reads),
                             floor: .same(FloorOp.seqlockReadContended),
                             note: "the writer process made \(Format.grouped(Int(writes))) locked journaled stores (\(rate) M/s), " +
                                "as the floor's writer does; \(pinned)"))
        }

        // Two processes adding to one counter.
        let addsPerProcess = max(20_000, Int(Double(settings.contentionNanoseconds) / (8 * max(baselines.add, 1))))
        let before = control.counter.load()
        let added = try contend(bench, control, executable: executable, path: path, role: "add", perProcess: addsPerProcess,
                    op: "2 processes: int64 add on one counter (aggregate)", medium: medium,
                    floor: .same(FloorOp.contendedAdd), note: pinned) { n in
            for _ in 0..<n { control.counter.add(1) }
        }
        let expected = Int64(2 * addsPerProcess * (settings.repetitions + 1))
        guard !added || control.counter.load() &- before == expected else {
            throw BenchFailure("the contended counter lost adds: expected \(expected), found \(control.counter.load() &- before)")
        }

        // Two processes writing one 64-byte string.
        let writesPerProcess = max(5_000, Int(Double(settings.contentionNanoseconds) / (8 * max(baselines.stringWrite, 1))))
        try contend(bench, control, executable: executable, path: path, role: "string-write", perProcess: writesPerProcess,
                    op: "2 processes: string[64] store 64 B (aggregate)", medium: medium,
                    floor: .same(FloorOp.contendedWrite), note: "lock + journal + seqlock; \(pinned)") { n in
            for index in 0..<n { try control.text.store(ScalarBenchmarks.text64[index & 1]) }
        }
    }

    /// One child per repetition (plus a warm-up), each doing `perProcess`
    /// operations while this process does as many; the row is the time from
    /// the start word to the later of the two ends, over both processes' operations.
    /// Returns false, running nothing, for a row `--only` leaves out.
    @discardableResult
    private static func contend(_ bench: Bench, _ control: Control, executable: String, path: String, role: String,
                                perProcess: Int, op: String, medium: String, floor: FloorReference, note: String,
                                _ body: (Int) throws -> Void) throws -> Bool {
        guard bench.selects(op) else { return false }
        var samples: [Double] = []
        var allocations: UInt64 = 0
        CPU.pin(0)
        defer { CPU.unpin() }
        for repetition in -1..<bench.settings.repetitions {
            control.reset()
            let child = try Spawn.start(executable, ["--child", role, path, String(perProcess), "1"])
            do {
                try awaitReady(control, count: 1, children: [child.pid])
            } catch {
                control.stop.store(1)
                _ = try? Spawn.wait(child.pid, "the \(role) process")
                throw error
            }
            let allocationsBefore = CallCounters.allocations
            let start = monotonicNanoseconds()
            control.go.store(Int64(start))
            try body(perProcess)
            let end = monotonicNanoseconds()
            let allocationsAfter = CallCounters.allocations
            try Spawn.wait(child.pid, "the \(role) process")
            let childEnd = UInt64(control.childEnd.load())
            guard childEnd >= start else { throw BenchFailure("the \(role) process did not report its end time") }
            if repetition >= 0 {
                samples.append(Double(max(end, childEnd) - start) / Double(2 * perProcess))
                allocations += allocationsAfter - allocationsBefore
            }
        }
        bench.record(Row(op: op, medium: medium, samples: samples, opsPerRepetition: 2 * perProcess,
                         allocationsPerOp: Double(allocations) / Double(perProcess * bench.settings.repetitions),
                         floor: floor, note: note))
        return true
    }

    /// Spins until `count` children have announced themselves in `ready`; fails
    /// if one of them exits first or none shows up within 20 seconds.
    static func awaitReady(_ control: Control, count: Int64, children: [pid_t]) throws(BenchFailure) {
        let deadline = monotonicNanoseconds() + 20_000_000_000
        var spins = 0
        while control.ready.load() < count {
            spins += 1
            guard spins & 255 == 0 else { continue }
            for pid in children {
                var status: Int32 = 0
                if waitpid(pid, &status, WNOHANG) == pid {
                    try Spawn.check(status, "a benchmark child process")
                    throw BenchFailure("a benchmark child process exited before it started")
                }
            }
            if monotonicNanoseconds() > deadline { throw BenchFailure("a benchmark child process did not start within 20 s") }
            sched_yield()
        }
    }
}

/// The hidden `--child ROLE PATH COUNT CPU` entry point: the second process of the two-process rows.
enum ChildRole {
    static func main(_ arguments: [String]) -> Int32 {
        guard arguments.count == 4, let count = Int(arguments[2]), let cpu = Int(arguments[3]) else {
            printError("slotstore-bench: --child needs ROLE PATH COUNT CPU")
            return 2
        }
        if arguments[0] == "compaction-adder" {
            do { return try CompactionBenchmarks.adder(path: arguments[1]) } catch {
                printError("slotstore-bench child compaction-adder: \(error)")
                return 2
            }
        }
        do {
            CPU.pin(cpu)
            let store = try SlotStore(path: arguments[1], options: OpenOptions(mode: .open))
            let control = try ProcessBenchmarks.Control(store)
            control.ready.add(1)
            switch arguments[0] {
            case "string-writer":
                var writes: Int64 = 0
                while control.stop.load() == 0 {
                    try control.text.store(ScalarBenchmarks.text64[Int(writes & 1)])
                    writes += 1
                }
                control.childOps.store(writes)
            case "add":
                try awaitStart(control)
                for _ in 0..<count { control.counter.add(1) }
                control.childEnd.store(Int64(monotonicNanoseconds()))
            case "string-write":
                try awaitStart(control)
                for index in 0..<count { try control.text.store(ScalarBenchmarks.text64[index & 1]) }
                control.childEnd.store(Int64(monotonicNanoseconds()))
            default:
                printError("slotstore-bench: unknown child role \(arguments[0])")
                return 2
            }
            store.close()
            return 0
        } catch {
            printError("slotstore-bench child \(arguments[0]): \(error)")
            return 2
        }
    }

    /// Spins on the start word; the parent sets it once this child is ready.
    private static func awaitStart(_ control: ProcessBenchmarks.Control) throws(BenchFailure) {
        var spins = 0
        while control.go.load() == 0 {
            if control.stop.load() != 0 { throw BenchFailure("stopped before the start") }
            spins += 1
            if spins & 1023 == 0 && CPU.online < 2 { sched_yield() }
        }
    }
}
