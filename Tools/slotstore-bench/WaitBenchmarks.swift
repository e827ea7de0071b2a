import Glibc
import SlotStore

/// Rows of waiting for a change: what a waiter costs writers, and how fast a
/// wake reaches a waiter in another process. The child is this executable
/// (`--wait-child ROLE PATH`), started per row and stopped through the store.
enum WaitBenchmarks {
    static let schema = Schema(version: 1, fields: [
        .int64("counter"), .int64("other"), .int64("ping"), .int64("woke"), .int64("ready"), .int64("stop"),
    ])

    static func run(_ bench: Bench, _ workspace: Workspace) throws {
        let attached = "int64 add with a waiter attached"
        let onField = "int64 add with a waiter on the field"
        let latency = "wait: wake latency across processes"
        let checkOnly = "wait: a wait that only checks (register + membarrier + load)"
        guard bench.selectsAny([attached, onField, latency, checkOnly]) else { return }
        let path = workspace.path("wait.slots")
        let store = try SlotStore(path: path, schema: schema, options: OpenOptions(mode: .create, cacheLineAligned: true))
        defer { store.close(); workspace.remove(path) }
        let counter = try store.scalar("counter", as: Int64.self)
        let ready = try store.scalar("ready", as: Int64.self)
        let stop = try store.scalar("stop", as: Int64.self)
        let executable = try Spawn.executablePath()
        let medium = workspace.shmMedium

        /// Runs `body` while a child process waits in `role`; stops and reaps it after.
        func withChild(_ role: String, _ body: () throws -> Void) throws {
            ready.store(0)
            stop.store(0)
            let child = try Spawn.start(executable, ["--wait-child", role, path])
            var reaped = false
            defer {
                if !reaped {
                    stop.store(1)
                    _ = try? Spawn.wait(child.pid, "the waiting process")
                }
            }
            let deadline = monotonicNanoseconds() + 20_000_000_000
            while ready.load() == 0 {
                guard monotonicNanoseconds() < deadline else { throw BenchFailure("the waiting process did not start within 20 s") }
                sched_yield()
            }
            // Asleep in its wait by now, in all likelihood; the rows below don't depend on it.
            usleep(20_000)
            try body()
            stop.store(1)
            try Spawn.wait(child.pid, "the waiting process")
            reaped = true
        }

        if bench.selects(attached) {
            try withChild("other") {
                try bench.measure(attached, medium: medium, floor: .same(FloorOp.fetchAdd),
                                  note: "another process waits for a change of another field of the store; compare with \"int64 add\"") { n in
                    var sum: Int64 = 0
                    for _ in 0..<n { sum &+= counter.add(1) }
                    consume(UInt64(bitPattern: sum))
                }
            }
        }
        if bench.selects(onField) {
            try withChild("counter") {
                try bench.measure(onField, medium: medium, floor: .same(FloorOp.fetchAdd),
                                  note: "another process waits for this counter in a loop: an add pays a wake (a system call) once per round of the waiter") { n in
                    var sum: Int64 = 0
                    for _ in 0..<n { sum &+= counter.add(1) }
                    consume(UInt64(bitPattern: sum))
                }
            }
        }
        if bench.selects(checkOnly) {
            try bench.measure(checkOnly, medium: medium,
                              note: "wait(untilChangedFrom: current, timeout: .zero): sets the waiter bit, membarrier(GLOBAL_EXPEDITED), loads") { n in
                var sum: Int64 = 0
                for _ in 0..<n { sum &+= try counter.wait(untilChangedFrom: sum, timeout: .zero) }
                consume(UInt64(bitPattern: sum))
            }
        }
        if bench.selects(latency) {
            let ping = try store.scalar("ping", as: Int64.self)
            let woke = try store.scalar("woke", as: Int64.self)
            CPU.pin(0)
            defer { CPU.unpin() }
            try withChild("pong") {
                let pings = bench.settings.quick ? 100 : 400
                var samples: [Double] = []
                var all: [Double] = []
                for repetition in -1..<bench.settings.repetitions {
                    var latencies: [Double] = []
                    for _ in 0..<pings {
                        // Time for the child to go back to sleep in the kernel.
                        usleep(300)
                        let sent = Int64(monotonicNanoseconds())
                        woke.store(0)
                        ping.store(sent)
                        let deadline = UInt64(sent) + 5_000_000_000
                        var seen = woke.load()
                        while seen == 0 {
                            guard monotonicNanoseconds() < deadline else { throw BenchFailure("the waiting process did not wake within 5 s") }
                            seen = woke.load()
                        }
                        latencies.append(Double(seen - sent))
                    }
                    if repetition >= 0 {
                        samples.append(Statistics.median(latencies))
                        all += latencies
                    }
                }
                all.sort()
                let p99 = all.isEmpty ? Double.nan : all[min(all.count - 1, all.count * 99 / 100)]
                bench.record(Row(op: latency, medium: medium, samples: samples, opsPerRepetition: pings,
                                 note: "from a plain store in this process to the waiter's return in another (each sample a median of \(pings) pings, " +
                                    "the waiter asleep in the kernel before each); p99 \(Format.fixed(p99 / 1000, 1)) us; " +
                                    (CPU.online >= 2 ? "processes pinned to CPUs 0 and 1" : "one CPU online: processes time-share")))
            }
        }
    }
}

/// The hidden `--wait-child ROLE PATH` entry point: the waiting process of the rows above.
enum WaitChild {
    static func main(_ arguments: [String]) -> Int32 {
        guard arguments.count == 2 else {
            printError("slotstore-bench: --wait-child needs ROLE PATH")
            return 2
        }
        do {
            let store = try SlotStore(path: arguments[1], options: OpenOptions(mode: .open))
            defer { store.close() }
            let stop = try store.scalar("stop", as: Int64.self)
            let ready = try store.scalar("ready", as: Int64.self)
            switch arguments[0] {
            case "other", "counter":
                // Waits on a field in a loop until "stop" (checked at least every 200 ms).
                let field = try store.scalar(arguments[0], as: Int64.self)
                var value = field.load()
                ready.store(1)
                while stop.load() == 0 {
                    value = try field.wait(untilChangedFrom: value, timeout: .milliseconds(200))
                }
            case "pong":
                CPU.pin(1)
                let ping = try store.scalar("ping", as: Int64.self)
                let woke = try store.scalar("woke", as: Int64.self)
                var last = ping.load()
                ready.store(1)
                while stop.load() == 0 {
                    let seen = try ping.wait(untilChangedFrom: last, timeout: .milliseconds(200))
                    if seen != last {
                        woke.store(Int64(monotonicNanoseconds()))
                        last = seen
                    }
                }
            default:
                printError("slotstore-bench: unknown wait child role \(arguments[0])")
                return 2
            }
            return 0
        } catch {
            printError("slotstore-bench wait child \(arguments[0]): \(error)")
            return 2
        }
    }
}
