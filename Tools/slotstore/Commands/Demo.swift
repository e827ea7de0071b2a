import Foundation
import Glibc
import SlotStore

/// `slotstore demo`: the main job, shown live. Worker processes share
/// counters and a string; one is SIGKILLed while it holds the lock in the
/// middle of a write; the store is compacted in place (its string given more
/// room) while the others write; they carry on and the final counts are exact.
enum DemoCommand: Command {
    static let name = "demo"
    static let abstract = "show processes sharing a store while one is killed holding the lock"
    static let usage = """
    usage: slotstore demo [--workers N] [--increments N] [--dir DIR] [--keep]
      --workers N      worker processes besides the victim (default 3)
      --increments N   increments per worker (default 200000)
      --dir DIR        where to create the store (default: a new folder under $TMPDIR or /tmp)
      --keep           keep the store file afterwards, to inspect it
    """

    /// The victim stops inside its third string write: by then it has made
    /// exactly this many increments, so the expected total is exact.
    static let victimWrites = 3

    static func run(_ arguments: inout Arguments) throws -> Int32 {
        let workers = try arguments.integerOption("--workers", default: 3, in: 1...32)
        let increments = try arguments.integerOption("--increments", default: 200_000, in: DemoWorker.writeEvery...10_000_000)
        let directoryOption = try arguments.option("--dir")
        let keep = arguments.flag("--keep")
        try arguments.finish()

        let directory = try directoryOption ?? makeTemporaryDirectory()
        let path = directory + "/demo.slots"
        defer {
            if !keep {
                try? SlotStore.remove(at: path)
                if directoryOption == nil { rmdir(directory) }
            }
        }
        let victimID = workers
        let schema = DemoWorker.schema(workers: workers + 1)
        let store = try SlotStore(path: path, schema: schema, options: OpenOptions(mode: .create))
        let requests = try store.scalar("requests", as: Int64.self)
        let motd = try store.string("motd")

        say("SlotStore demo")
        say("  store   \(path) (\(schema.fields.count) fields: requests, worker.0 … worker.\(victimID), motd)")
        say("  plan    \(workers) workers each add 1 to \"requests\" \(increments) times and rewrite \"motd\" every \(DemoWorker.writeEvery);")
        say("          a victim process will stop in the middle of a locked write and be killed there,")
        say("          and a quarter of the way in, the store is compacted in place while the workers write")
        say("")

        // 1. The victim: same program, told to halt mid-write holding the lock.
        let victimIncrements = victimWrites * DemoWorker.writeEvery
        let victim = try spawnWorker(path: path, id: victimID, count: increments,
                                     fault: "midWrite:hold:\(victimWrites)", captureOutput: true)
        try waitForHolding(victim)
        let held = try store.status
        say("● victim PID \(victim.processIdentifier) stopped inside its write of \"motd\", holding the lock")
        say("  lock holder: PID \(held.lockHolderPID.map(String.init) ?? "none"); journal: \(held.journalDirty ? "dirty, \(held.journalRecords) record(s) of the old value" : "clean")")

        // 2. The workers start; their first string write will queue behind the victim.
        let children = try (0..<workers).map { id in try spawnWorker(path: path, id: id, count: increments, fault: nil, captureOutput: false) }
        say("● started \(workers) workers: PIDs \(children.map { String($0.processIdentifier) }.joined(separator: ", "))")
        usleep(150_000)  // display only: let the workers pile up behind the lock
        say("  requests so far \(requests.load()); workers wait on the lock held by the victim")

        // 3. Kill the victim while it holds the lock.
        kill(victim.processIdentifier, SIGKILL)
        victim.waitUntilExit()
        say("● SIGKILL sent to PID \(victim.processIdentifier) while it held the lock (it died: signal \(victim.terminationReason == .uncaughtSignal ? victim.terminationStatus : 0))")

        // 4. A quarter of the way in, a compaction in place gives "motd" more
        // room while the workers write. This process's own handles (requests,
        // motd) were resolved before it and carry on in the new file too.
        let expected = Int64(workers * increments + victimIncrements)
        while requests.load() < expected / 4 { sched_yield() }  // an exact wait on the store itself
        // The lock's counters belong to a file: keep the old file's, with the victim's recovery.
        let recovered = try store.status
        let writing = children.filter(\.isRunning).count
        // Taken before: the handle reports the live file's capacity once the compaction grew it.
        let capacityBefore = motd.capacity
        let plan = try SlotStore.compact(at: path, capacities: ["motd": 2 * capacityBefore])
        let resized = plan.fields.first { $0.name == "motd" }.map { "\($0.from ?? "") → \($0.to ?? "")" } ?? ""
        say("● compacted in place at \(requests.load()) requests while \(writing) workers wrote: motd \(resized), file generation \(store.generation)")

        // 5. Live progress until the workers finish.
        while children.contains(where: \.isRunning) {
            let status = try store.status
            say("  requests \(pad(requests.load()))  lock acquisitions \(pad(status.lockAcquisitions))  recoveries \(status.recoveries)  file generation \(store.generation)")
            usleep(100_000)  // display refresh, not synchronisation: waitUntilExit follows
        }
        for child in children { child.waitUntilExit() }
        let failed = children.filter { $0.terminationReason != .exit || $0.terminationStatus != 0 }

        // 6. The verdict.
        let status = try store.status
        let total = requests.load()
        let perWorker = try (0...victimID).map { try store.scalar("worker.\($0)", as: Int64.self).load() }
        let message = try motd.load()
        let intact = SelfCheckingText.isIntact(message)
        say("")
        say("● all workers finished")
        say("  recovery   \(recovered.recoveries) interrupted write rolled back (dead holder PID \(recovered.lastRecoveredPID.map(String.init) ?? "none")); lock free: \(status.lockHolderPID == nil ? "yes" : "no"); journal: \(status.journalDirty ? "dirty" : "clean")")
        say("  motd       \"\(message)\" (checksum \(intact ? "intact" : "BROKEN"))")
        say("  per worker \(perWorker.map(String.init).joined(separator: ", ")) (victim: \(victimIncrements) before it died)")
        say("  requests   \(total) = \(workers) × \(increments) + \(victimIncrements) → \(total == expected ? "exact" : "WRONG, expected \(expected)")")
        let capacity = try store.string("motd").capacity
        let compacted = store.generation == 2 && capacity == 2 * capacityBefore
        say("  compaction generation \(store.generation), motd holds up to \(capacity) bytes; "
            + (writing > 0 ? "the \(writing) workers writing during it carried on in the new file"
                           : "the workers had all finished before it (a fast machine or few increments), so it ran on a quiet store"))

        let perWorkerExact = perWorker == Array(repeating: Int64(increments), count: workers) + [Int64(victimIncrements)]
        let ok = failed.isEmpty && total == expected && perWorkerExact && intact && recovered.recoveries >= 1
            && !status.journalDirty && status.lockHolderPID == nil && compacted
        say(ok ? "✓ no update lost, nothing torn, no stuck lock, none lost across the compaction" : "✗ the demo found a problem (see above)")
        if keep { say("  kept \(path); try `slotstore inspect \(path)`") }
        store.close()
        return ok ? ExitStatus.success : ExitStatus.problem
    }

    private static func say(_ line: String) { Output.out(line) }

    private static func pad<T: BinaryInteger>(_ value: T) -> String {
        let text = String(value)
        return String(repeating: " ", count: max(0, 8 - text.count)) + text
    }

    private static func makeTemporaryDirectory() throws -> String {
        let base = ProcessInfo.processInfo.environment["TMPDIR"] ?? "/tmp"
        var template = Array((base + "/slotstore-demo-XXXXXX").utf8CString)
        guard template.withUnsafeMutableBufferPointer({ mkdtemp($0.baseAddress!) }) != nil else {
            throw SlotStoreError.systemCallFailed(path: base, call: "mkdtemp", errno: errno)
        }
        return String(decoding: template.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    private static func spawnWorker(path: String, id: Int, count: Int, fault: String?, captureOutput: Bool) throws -> Process {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath()
        process.arguments = ["_worker", "demo", path, String(id), String(count)]
        var environment = ProcessInfo.processInfo.environment
        environment["SLOTSTORE_FAULT"] = fault
        process.environment = environment
        if captureOutput { process.standardOutput = Pipe() }
        try process.run()
        return process
    }

    /// Blocks until the victim prints that it holds the lock (an exact wait on its pipe).
    private static func waitForHolding(_ victim: Process) throws {
        guard let pipe = victim.standardOutput as? Pipe else { return }
        var received = Data()
        while !String(decoding: received, as: UTF8.self).contains("SLOTSTORE-HOLDING") {
            let chunk = pipe.fileHandleForReading.availableData
            if chunk.isEmpty { throw SlotStoreError.invalidValue(path: "demo", field: "victim", detail: "the victim exited before holding the lock") }
            received.append(chunk)
        }
    }
}

/// The demo's worker loop: count, and rewrite a shared string now and then.
enum DemoWorker {
    static let writeEvery = 50

    static func schema(workers: Int) -> Schema {
        Schema(version: 1, fields: [.int64("requests")] + (0..<workers).map { .int64("worker.\($0)") }
            + [.string("motd", capacity: 96)])
    }

    static func run(path: String, id: Int, count: Int) throws -> Int32 {
        let store = try SlotStore(path: path)
        let requests = try store.scalar("requests", as: Int64.self)
        let mine = try store.scalar("worker.\(id)", as: Int64.self)
        let motd = try store.string("motd")
        for index in 1...count {
            requests.add(1)
            mine.add(1)
            if index % writeEvery == 0 {
                try motd.store(SelfCheckingText.make("worker \(id) update \(index / writeEvery)", length: 40 + index % 40))
            }
        }
        return ExitStatus.success
    }
}
