import Foundation
import Glibc
import SlotStore

/// `slotstore gauges-demo`: per-process fields shown live. Workers count
/// requests in flight around simulated requests, some are SIGKILLed in the
/// middle of one, and the liveSum gauge comes back to exactly the requests
/// really in flight, while a plain shared gauge leaks one per kill and the
/// sum counter keeps every completed request.
enum GaugesDemoCommand: Command {
    static let name = "gauges-demo"
    static let abstract = "show per-process gauges staying exact while workers are killed mid-request"
    static let usage = """
    usage: slotstore gauges-demo [--workers N] [--kills N] [--dir DIR] [--keep]
      --workers N   worker processes serving simulated requests (default 6)
      --kills N     how many of them are SIGKILLed mid-request (default 3, fewer than --workers)
      --dir DIR     where to create the store (default: a new folder under $TMPDIR or /tmp)
      --keep        keep the store file afterwards, to inspect it
    """

    static let schema = Schema(version: 1, fields: [
        .int64("inflight", perProcess: .liveSum),
        .int64("requests_total", perProcess: .sum),
        .int64("started_total", perProcess: .sum),
        .int64("inflight_shared"),  // what a service without per-process fields would keep
        .int64("park"), .int64("parked"), .int64("stop"),
    ])

    static func run(_ arguments: inout Arguments) throws -> Int32 {
        let workers = try arguments.integerOption("--workers", default: 6, in: 2...64)
        let kills = try arguments.integerOption("--kills", default: 3, in: 1...(workers - 1))
        let directoryOption = try arguments.option("--dir")
        let keep = arguments.flag("--keep")
        try arguments.finish()
        let directory = try directoryOption ?? makeTemporaryDirectory()
        let path = directory + "/gauges.slots"
        defer {
            if !keep {
                try? SlotStore.remove(at: path)
                if directoryOption == nil { rmdir(directory) }
            }
        }
        let store = try SlotStore(path: path, schema: schema, options: OpenOptions(mode: .create))
        let parked = try store.scalar("parked", as: Int64.self)
        say("SlotStore gauges demo")
        say("  store   \(path)")
        say("  plan    \(workers) workers: \"inflight\" +1 (liveSum), a simulated request, \"requests_total\" +1 (sum),")
        say("          \"inflight\" -1; \"inflight_shared\", a plain int64, counts the same way; \(kills) workers are killed mid-request")
        say("")

        var running = try (0..<workers).map { _ in try spawn(path) }
        usleep(300_000)  // let them serve for a moment
        for _ in 0..<kills {
            let victim = running.removeFirst()
            kill(victim.processIdentifier, SIGKILL)
            victim.waitUntilExit()
            say("● killed worker PID \(victim.processIdentifier) with SIGKILL while it serves (nearly always inside a request)")
        }
        say("  right after the kills  inflight \(try value(store, "inflight")) (the dead workers' +1s still count: only the next opener folds them)")

        // Park every live worker inside a request: exactly that many are in flight.
        try store.scalar("park", as: Int64.self).store(1)
        while parked.load() < Int64(running.count) { usleep(1_000) }
        let observer = try SlotStore(path: path)  // an open: it drops the gone workers' contributions
        let inflight = try value(observer, "inflight")
        let shared = try value(observer, "inflight_shared")
        let exact = inflight == Int64(running.count)
        say("\(exact ? "✓" : "✗") all \(running.count) live workers parked inside a request: inflight \(inflight) (liveSum), inflight_shared \(shared) (plain int64, leaked \(shared - inflight))")

        try store.scalar("park", as: Int64.self).store(0)
        try store.scalar("stop", as: Int64.self).store(1)
        for worker in running { worker.waitUntilExit() }
        observer.close()
        let final = try SlotStore(path: path)
        let (finalInflight, finalShared) = (try value(final, "inflight"), try value(final, "inflight_shared"))
        let (completed, started) = (try value(final, "requests_total"), try value(final, "started_total"))
        let drained = finalInflight == 0
        let counted = completed == started - finalShared && finalShared >= 0
        say("\(drained ? "✓" : "✗") every worker stopped: inflight \(finalInflight) (liveSum); inflight_shared \(finalShared): the leak of the killed workers")
        say("\(counted ? "✓" : "✗") requests_total \(completed) (sum) = started \(started) − \(finalShared) killed mid-request: no completed request lost with its worker")
        final.close()
        store.close()
        return exact && drained && counted ? ExitStatus.success : ExitStatus.problem
    }

    private static func value(_ store: SlotStore, _ name: String) throws -> Int64 {
        guard case .int(let number) = try store.value(of: name) else { return 0 }
        return number
    }

    private static func spawn(_ path: String) throws -> Process {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath()
        process.arguments = ["_perprocess", "serve", path]
        try process.run()
        return process
    }

    private static func say(_ line: String) { Output.out(line) }

    private static func makeTemporaryDirectory() throws -> String {
        let base = ProcessInfo.processInfo.environment["TMPDIR"] ?? "/tmp"
        var template = Array((base + "/slotstore-gauges-XXXXXX").utf8CString)
        guard template.withUnsafeMutableBufferPointer({ mkdtemp($0.baseAddress!) }) != nil else {
            throw SlotStoreError.systemCallFailed(path: base, call: "mkdtemp", errno: errno)
        }
        return String(decoding: template.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }
}
