import Dispatch
import Glibc
import SlotStore

/// `slotstore _wait-worker ROLE PATH ...`: the waiting processes of the tests
/// of ``ScalarField/wait(untilChangedFrom:timeout:)`` and the `changes()`
/// sequences. Each prints one line saying what it saw.
enum WaitWorkerCommand: Command {
    static let name = "_wait-worker"
    static let abstract = "a waiting process for the tests of waiting for a change"
    static let hidden = true
    static let usage = """
    usage: slotstore _wait-worker ROLE PATH ...
      scalar PATH FIELD OLD TIMEOUT-MS     wait until int64 FIELD differs from OLD: prints "changed V" or "unchanged V"
      string PATH FIELD OLD TIMEOUT-MS     the same for a string field
      bytes PATH FIELD OLD TIMEOUT-MS      the same for a bytes field (OLD as UTF-8)
      array PATH FIELD TIMEOUT-MS          snapshot an int64 array, wait until it differs: "changed a,b,..."
      map PATH FIELD KEY OLD TIMEOUT-MS    wait until KEY's int64 value differs from OLD ("-": absent):
                                           "changed V" ("changed -": removed) or "unchanged"
      store PATH TIMEOUT-MS                take a change mark, wait until anything changes: "changed" or "unchanged"
      loop PATH FIELD                      wait for int64 FIELD to change, forever (to be killed)
      pong PATH ROUNDS                     ROUNDS times: wait until int64 "ping" differs from the last value
                                           seen (timeout 20 s each), then store it in "pong"; prints
                                           "answered N" or "missed at V"
      changes PATH FIELD LAST              iterate int64 FIELD's changes() until a value >= LAST: "values a b ..."
      cancel PATH FIELD STOP               iterate FIELD's changes() in a task; when int64 STOP becomes
                                           non-zero, cancel it: "ended after N us"
    """

    static func run(_ arguments: inout Arguments) throws -> Int32 {
        let role = try arguments.positional("role")
        let path = try arguments.positional("store path")
        let store = try SlotStore(path: path, options: OpenOptions(mode: .open))
        defer { store.close() }
        switch role {
        case "scalar":
            let field = try store.scalar(try arguments.positional("field"), as: Int64.self)
            let old = try integer(arguments.positional("old"))
            let timeout = try milliseconds(arguments.positional("timeout"))
            try arguments.finish()
            let seen = try field.wait(untilChangedFrom: old, timeout: timeout)
            Output.out(seen == old ? "unchanged \(seen)" : "changed \(seen)")
        case "string":
            let field = try store.string(try arguments.positional("field"))
            let old = try arguments.positional("old")
            let timeout = try milliseconds(arguments.positional("timeout"))
            try arguments.finish()
            let seen = try field.wait(untilChangedFrom: old, timeout: timeout)
            Output.out(seen == old ? "unchanged \(seen)" : "changed \(seen)")
        case "bytes":
            let field = try store.bytes(try arguments.positional("field"))
            let old = Array(try arguments.positional("old").utf8)
            let timeout = try milliseconds(arguments.positional("timeout"))
            try arguments.finish()
            let seen = try field.wait(untilChangedFrom: old, timeout: timeout)
            Output.out((seen == old ? "unchanged " : "changed ") + String(decoding: seen, as: UTF8.self))
        case "array":
            let field = try store.array(try arguments.positional("field"), of: Int64.self)
            let timeout = try milliseconds(arguments.positional("timeout"))
            try arguments.finish()
            let old = try field.snapshot()
            let seen = try field.wait(untilChangedFrom: old, timeout: timeout)
            Output.out((seen == old ? "unchanged " : "changed ") + seen.map(String.init).joined(separator: ","))
        case "map":
            let map = try store.map(try arguments.positional("field"), key: String.self, value: Int64.self)
            let key = try arguments.positional("key")
            let oldText = try arguments.positional("old")
            let old: Int64? = oldText == "-" ? nil : try integer(oldText)
            let timeout = try milliseconds(arguments.positional("timeout"))
            try arguments.finish()
            let seen = try map.wait(for: key, untilChangedFrom: old, timeout: timeout)
            Output.out(seen == old ? "unchanged" : "changed \(seen.map(String.init) ?? "-")")
        case "store":
            let timeout = try milliseconds(arguments.positional("timeout"))
            try arguments.finish()
            let mark = try store.changeMark()
            Output.out(try store.wait(untilChangedFrom: mark, timeout: timeout) == mark ? "unchanged" : "changed")
        case "loop":
            let field = try store.scalar(try arguments.positional("field"), as: Int64.self)
            try arguments.finish()
            var value = field.load()
            while true { value = try field.wait(untilChangedFrom: value, timeout: .seconds(3600)) }
        case "pong":
            let rounds = try WorkerCommand.number(arguments.positional("rounds"))
            try arguments.finish()
            let ping = try store.scalar("ping", as: Int64.self)
            let pong = try store.scalar("pong", as: Int64.self)
            var last = ping.load()
            for _ in 0..<rounds {
                let seen = try ping.wait(untilChangedFrom: last, timeout: .seconds(20))
                if seen == last {
                    Output.out("missed at \(last)")
                    return ExitStatus.problem
                }
                last = seen
                pong.store(seen)
            }
            Output.out("answered \(rounds)")
        case "changes":
            let field = try store.scalar(try arguments.positional("field"), as: Int64.self)
            let last = try integer(arguments.positional("last"))
            try arguments.finish()
            let values = try blockOn { () async throws(SlotStoreError) -> [Int64] in
                var values: [Int64] = []
                for try await value in field.changes() {
                    values.append(value)
                    if value >= last { break }
                }
                return values
            }
            Output.out("values " + values.map(String.init).joined(separator: " "))
        case "cancel":
            let field = try store.scalar(try arguments.positional("field"), as: Int64.self)
            let stop = try store.scalar(try arguments.positional("stop"), as: Int64.self)
            try arguments.finish()
            let ended = DispatchSemaphore(value: 0)
            let task = Task {
                var count = 0
                for try await _ in field.changes() { count += 1 }
                ended.signal()
                return count
            }
            _ = try stop.wait(untilChangedFrom: 0, timeout: .seconds(60))
            let start = monotonicMicroseconds()
            task.cancel()
            ended.wait()
            Output.out("ended after \(monotonicMicroseconds() - start) us")
        default:
            throw UsageError("unknown wait-worker role \"\(role)\"")
        }
        return ExitStatus.success
    }

    static func integer(_ text: String) throws(UsageError) -> Int64 {
        guard let value = Int64(text) else { throw UsageError("expected an integer, found \"\(text)\"") }
        return value
    }

    static func milliseconds(_ text: String) throws(UsageError) -> Duration {
        .milliseconds(try WorkerCommand.number(text))
    }

    static func monotonicMicroseconds() -> Int64 {
        var now = timespec()
        clock_gettime(CLOCK_MONOTONIC, &now)
        return Int64(now.tv_sec) * 1_000_000 + Int64(now.tv_nsec) / 1000
    }

    /// Runs `body` as a task and blocks this (main, non-async) thread until it returns.
    static func blockOn<T: Sendable>(_ body: @escaping @Sendable () async throws(SlotStoreError) -> T) throws(SlotStoreError) -> T {
        let box = ResultBox<T>()
        let done = DispatchSemaphore(value: 0)
        Task {
            do throws(SlotStoreError) {
                box.result = .success(try await body())
            } catch {
                box.result = .failure(error)
            }
            done.signal()
        }
        done.wait()
        return try box.result!.get()
    }
}

/// Where a task leaves its result for a thread blocked on a semaphore (which orders the accesses).
private final class ResultBox<T>: @unchecked Sendable {
    var result: Result<T, SlotStoreError>?
}
