import Foundation
import Glibc
import SlotStore

/// `slotstore demo`: the main job, shown live. Worker processes share
/// counters and a string; one is SIGKILLed while it holds the lock in the
/// middle of a write; the store is compacted in place (its string given more
/// room) while the others write; they carry on and the final counts are exact.
///
/// The compaction overlaps the workers' writes by construction, not by
/// timing, so a release build on a fast machine shows the same thing as a
/// debug build: the workers stop a third of the way in; the compaction
/// starts; once it holds the lock (its first progress report) it lets them
/// go and waits until each has made its next ``DemoWorker/writeEvery``
/// lock-free increments and is blocked on its next locked write, which can
/// only go ahead after the rename, in the new file. Every closing line
/// reports what was measured in this run.
enum DemoCommand: Command {
    static let name = "demo"
    static let abstract = "show processes sharing a store while one is killed holding the lock"
    static let usage = """
    usage: slotstore demo [--workers N] [--increments N] [--dir DIR] [--keep]
      Worker processes add to shared counters and rewrite a shared string; a
      victim is SIGKILLed while it holds the lock in the middle of a write; a
      third of the way in, the store is compacted in place while the workers
      write (they wait for it), and the final counts are checked.
      --workers N      worker processes besides the victim (default 3)
      --increments N   increments per worker (default 200000, at least 150)
      --dir DIR        where to create the store (default: a new folder under $TMPDIR or /tmp)
      --keep           keep the store file afterwards, to inspect it
    """

    /// The victim stops inside its third string write: by then it has made
    /// exactly this many increments, so the expected total is exact.
    static let victimWrites = 3

    static func run(_ arguments: inout Arguments) throws -> Int32 {
        let workers = try arguments.integerOption("--workers", default: 3, in: 1...32)
        let increments = try arguments.integerOption("--increments", default: 200_000, in: DemoWorker.minimumCount...10_000_000)
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
        say("  store   \(path) (\(schema.fields.count) fields: requests, worker.0 … worker.\(victimID), motd, compacting)")
        say("  plan    \(counted(workers, "worker")) each add 1 to \"requests\" \(increments) times and rewrite \"motd\" every \(DemoWorker.writeEvery);")
        say("          a victim process will stop in the middle of a locked write and be killed there,")
        say("          and a third of the way in, the store is compacted in place while the workers write")
        say("")

        // 1. The victim: same program, told to halt mid-write holding the lock.
        let victimIncrements = victimWrites * DemoWorker.writeEvery
        let victim = try spawnWorker(path: path, id: victimID, count: increments, pause: 0,
                                     fault: "midWrite:hold:\(victimWrites)", captureOutput: true)
        try waitForHolding(victim)
        let held = try store.status
        say("● victim PID \(victim.processIdentifier) stopped inside its write of \"motd\", holding the lock")
        say("  lock holder: PID \(held.lockHolderPID.map(String.init) ?? "none"); journal: \(held.journalDirty ? "dirty, \(counted(held.journalRecords, "record")) of the old value" : "clean")")

        // 2. The workers start; their first string write will queue behind the victim.
        let pause = DemoWorker.pausePoint(count: increments)
        let children = try (0..<workers).map { id in
            try spawnWorker(path: path, id: id, count: increments, pause: pause, fault: nil, captureOutput: true)
        }
        say("● started \(counted(workers, "worker")): PIDs \(children.map { String($0.processIdentifier) }.joined(separator: ", "))")
        usleep(150_000)  // display only: let the workers pile up behind the lock
        say("  requests so far \(requests.load()); workers wait on the lock held by the victim")

        // 3. Kill the victim while it holds the lock.
        kill(victim.processIdentifier, SIGKILL)
        victim.waitUntilExit()
        say("● SIGKILL sent to PID \(victim.processIdentifier) while it held the lock (it died: signal \(victim.terminationReason == .uncaughtSignal ? victim.terminationStatus : 0))")

        // 4. A third of the way in, every worker stops (after a string write,
        // so its next 50 increments are lock-free) and the compaction in
        // place starts, giving "motd" more room. It holds the lock from its
        // first progress report to the rename: there the workers are let go
        // and it waits until each has made its 50 lock-free increments and is
        // blocked on its next locked write, which goes ahead in the new file.
        // This process's own handles (requests, motd) carry on there too.
        let expected = Int64(workers * increments + victimIncrements)
        let counters = try (0..<workers).map { try store.scalar("worker.\($0)", as: Int64.self) }
        let released = try store.scalar("compacting", as: Bool.self)
        // Exact waits on the store itself (a worker that died is not waited for).
        while zip(counters, children).contains(where: { $0.load() < Int64(pause) && $1.isRunning }) { sched_yield() }
        // The lock's counters belong to a file: keep the old file's, with the victim's recovery.
        let recovered = try store.status
        // Taken before: the handle reports the live file's capacity once the compaction grew it.
        let capacityBefore = motd.capacity
        var overlap: (requestsBefore: Int64, requestsAfter: Int64, perWorker: [Int64], holder: Int32?)?
        let plan = try SlotStore.compact(at: path, capacities: ["motd": 2 * capacityBefore]) { _ in
            guard overlap == nil else { return }
            let before = counters.map { $0.load() }
            let requestsBefore = requests.load()
            let holder = try? store.status.lockHolderPID
            released.store(true)
            let target = Int64(pause + DemoWorker.writeEvery)
            let deadline = ProgressDisplay.now() + 30_000_000_000
            while zip(counters, children).contains(where: { $0.load() < target && $1.isRunning }) && ProgressDisplay.now() < deadline {
                sched_yield()
            }
            overlap = (requestsBefore, requests.load(), zip(counters, before).map { $0.load() - $1 }, holder)
        }
        let resized = plan.fields.first { $0.name == "motd" }.map { "\($0.from ?? "") → \($0.to ?? "")" } ?? ""
        let during = overlap.map { $0.requestsAfter - $0.requestsBefore } ?? 0
        let writing = overlap?.perWorker.filter { $0 > 0 }.count ?? 0
        // A lookup follows the compaction: the generation is then the new file's.
        let motdAfter = try store.string("motd")
        say("● compacted in place: motd \(resized), now file generation \(store.generation)")
        if let overlap {
            let holder = overlap.holder.map { $0 == getpid() ? "this process, PID \($0)" : "PID \($0)" } ?? "no process"
            say("  while it held the lock (\(holder)), \(counted(writing, "worker")) made \(counted(Int(during), "increment"))"
                + " (requests \(overlap.requestsBefore) → \(overlap.requestsAfter))")
        } else {
            say("  it reported no progress, so nothing was measured during it")
        }

        // 5. Live progress until the workers finish.
        while children.contains(where: \.isRunning) {
            let status = try store.status
            say("  requests \(pad(requests.load()))  lock acquisitions \(pad(status.lockAcquisitions))  recoveries \(status.recoveries)  file generation \(store.generation)")
            usleep(100_000)  // display refresh, not synchronisation: waitUntilExit follows
        }
        for child in children { child.waitUntilExit() }
        let failed = children.filter { $0.terminationReason != .exit || $0.terminationStatus != 0 }
        // Each worker prints the generation of the file its handles ended in.
        let finishedIn = children.map { child -> UInt64? in
            guard let pipe = child.standardOutput as? Pipe else { return nil }
            let text = String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
            return text.split(separator: "\n").last { $0.hasPrefix("finished in generation ") }
                .flatMap { UInt64($0.dropFirst("finished in generation ".count)) }
        }

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
        let capacity = motdAfter.capacity
        let compacted = store.generation == 2 && capacity == 2 * capacityBefore
        let generations = finishedIn.map { $0.map(String.init) ?? "?" }
        let allInNewFile = finishedIn.allSatisfy { $0 == store.generation }
        say("  compaction generation \(store.generation), motd holds up to \(capacity) bytes; \(counted(Int(during), "increment")) landed during it,"
            + " from \(writing) of \(counted(workers, "worker")); \(workers == 1 ? "the worker" : "the workers") finished in generation \(generations.joined(separator: ", "))")

        let perWorkerExact = perWorker == Array(repeating: Int64(increments), count: workers) + [Int64(victimIncrements)]
        let ok = failed.isEmpty && total == expected && perWorkerExact && intact && recovered.recoveries >= 1
            && !status.journalDirty && status.lockHolderPID == nil && compacted && writing == workers && allInNewFile
        say(ok ? "✓ no update lost, nothing torn, no stuck lock, none lost across the compaction" : "✗ the demo found a problem (see above)")
        if keep { say("  kept \(path); try `slotstore inspect \(path)`") }
        store.close()
        return ok ? ExitStatus.success : ExitStatus.problem
    }

    private static func say(_ line: String) { Output.out(line) }

    private static func counted(_ count: Int, _ noun: String) -> String { Plural.count(count, noun) }

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

    /// `pause` 0: never pause (the victim, which dies before any pause point).
    private static func spawnWorker(path: String, id: Int, count: Int, pause: Int, fault: String?, captureOutput: Bool) throws -> Process {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath()
        process.arguments = ["_worker", "demo", path, String(id), String(count), String(pause)]
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
    /// Room for a pause, the increments during the compaction, and some after it.
    static let minimumCount = 3 * writeEvery

    /// Where a worker of `count` increments stops until the compaction has
    /// begun: about a third of the way, just after a string write.
    static func pausePoint(count: Int) -> Int { max(writeEvery, count / 3 / writeEvery * writeEvery) }

    static func schema(workers: Int) -> Schema {
        Schema(version: 1, fields: [.int64("requests")] + (0..<workers).map { .int64("worker.\($0)") }
            + [.string("motd", capacity: 96), .bool("compacting")])
    }

    /// Stops after increment `pause` until the Boolean "compacting" is set,
    /// and at the end prints the generation of the file its handles are in.
    static func run(path: String, id: Int, count: Int, pause: Int) throws -> Int32 {
        let store = try SlotStore(path: path)
        let requests = try store.scalar("requests", as: Int64.self)
        let mine = try store.scalar("worker.\(id)", as: Int64.self)
        let motd = try store.string("motd")
        let compacting = try store.scalar("compacting", as: Bool.self)
        for index in 1...count {
            requests.add(1)
            mine.add(1)
            if index % writeEvery == 0 {
                try motd.store(SelfCheckingText.make("worker \(id) update \(index / writeEvery)", length: 40 + index % 40))
            }
            if index == pause {
                while !compacting.load() { usleep(200) }  // the demo sets it once the compaction holds the lock
            }
        }
        // A load through the handle: its generation is the file it lands in.
        _ = requests.load()
        Output.out("finished in generation \(store.generation)")
        return ExitStatus.success
    }
}
