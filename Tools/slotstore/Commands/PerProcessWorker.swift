import Foundation
import Glibc
import SlotStore

/// `slotstore _perprocess ROLE PATH ...`: the processes the per-process field
/// tests and the gauges demo start, on a store of ``schema``.
enum PerProcessWorkerCommand: Command {
    static let name = "_perprocess"
    static let abstract = "a per-process field worker for the gauges demo and the tests"
    static let hidden = true
    static let usage = """
    usage: slotstore _perprocess ROLE PATH ...   (a store of PerProcessWorkerCommand.schema)
      hold PATH INFLIGHT REQUESTS PEAK LOW LAST
                              add INFLIGHT to "inflight" (liveSum) and REQUESTS to "requests" (sum),
                              store PEAK in "peak" (max), LOW in "low" (min), LAST in "last"
                              (mostRecent); print "SLOTSTORE-HOLDING slot S"; at a line on standard
                              input (idle until then, without touching the store) add -1 to "inflight"
                              and print "after generation G contribution C"; exit at the next line or
                              the end of input
      requests PATH COUNT     COUNT simulated requests: "inflight" +1, "requests" +1, "inflight" -1
      serve PATH              the gauges demo's worker (a store of GaugesDemoCommand.schema)
      fork PATH               add 1 to "inflight" and "requests"; fork; the child adds 5 to both
                              through the same handles and prints "child slot S contribution C";
                              the parent waits for it and prints "parent slot S contribution C"
    """

    /// The schema every role expects.
    static let schemaJSON = """
    {"version":1,"fields":[{"name":"inflight","type":"int64","perProcess":"liveSum"},\
    {"name":"requests","type":"int64","perProcess":"sum"},{"name":"peak","type":"double","perProcess":"max"},\
    {"name":"low","type":"int64","perProcess":"min"},{"name":"last","type":"int64","perProcess":"mostRecent"},\
    {"name":"go","type":"int64"}]}
    """

    static func run(_ arguments: inout Arguments) throws -> Int32 {
        let role = try arguments.positional("role")
        let path = try arguments.positional("store path")
        let store = try SlotStore(path: path)
        if role == "serve" { return try serve(store) }
        let inflight = try store.perProcess("inflight", as: Int64.self)
        let requests = try store.perProcess("requests", as: Int64.self)
        switch role {
        case "hold":
            inflight.add(Int64(try number(arguments.positional("inflight"))))
            requests.add(Int64(try number(arguments.positional("requests"))))
            try store.perProcess("peak", as: Double.self).store(Double(try arguments.positional("peak")) ?? 0)
            try store.perProcess("low", as: Int64.self).store(Int64(try number(arguments.positional("low"))))
            try store.perProcess("last", as: Int64.self).store(Int64(try number(arguments.positional("last"))))
            Output.out("SLOTSTORE-HOLDING slot \(store.processSlot.map(String.init) ?? "none")")
            // Idle until told, touching nothing: a process that doesn't follow a
            // compaction until its next operation, as an idle worker.
            _ = readLine()
            inflight.add(-1)
            Output.out("after generation \(store.generation) contribution \(inflight.contribution)")
            _ = readLine()
        case "requests":
            let count = try number(arguments.positional("count"))
            for _ in 0..<count {
                inflight.add(1)
                requests.add(1)
                inflight.add(-1)
            }
            Output.out("done \(count)")
        case "fork":
            inflight.add(1)
            requests.add(1)
            let child = fork()
            if child == 0 {
                inflight.add(5)
                requests.add(5)
                Output.out("child slot \(store.processSlot.map(String.init) ?? "none") contribution \(inflight.contribution)")
                exit(0)
            }
            var status: Int32 = 0
            waitpid(child, &status, 0)
            Output.out("parent slot \(store.processSlot.map(String.init) ?? "none") contribution \(inflight.contribution)")
        default:
            throw UsageError("unknown role \(role)")
        }
        return ExitStatus.success
    }

    /// The gauges demo's worker (see `GaugesDemoCommand.schema`): simulated
    /// requests of 0.1 to 1 ms until "stop"; while "park" is set, it stays
    /// inside a request once it has counted itself in "parked".
    private static func serve(_ store: SlotStore) throws -> Int32 {
        let inflight = try store.perProcess("inflight", as: Int64.self)
        let completed = try store.perProcess("requests_total", as: Int64.self)
        let started = try store.perProcess("started_total", as: Int64.self)
        let shared = try store.scalar("inflight_shared", as: Int64.self)
        let (park, parked, stop) = (try store.scalar("park", as: Int64.self), try store.scalar("parked", as: Int64.self),
                                    try store.scalar("stop", as: Int64.self))
        var random = SystemRandomNumberGenerator()
        while stop.load() == 0 {
            inflight.add(1)
            shared.add(1)
            started.add(1)
            if park.load() != 0 {
                parked.add(1)
                while park.load() != 0 { usleep(1_000) }
                parked.add(-1)
            } else {
                usleep(UInt32.random(in: 100...1_000, using: &random))
            }
            completed.add(1)
            shared.add(-1)
            inflight.add(-1)
        }
        return ExitStatus.success
    }

    private static func number(_ text: String) throws -> Int {
        guard let value = Int(text) else { throw UsageError("expected a number, found \(text)") }
        return value
    }
}
