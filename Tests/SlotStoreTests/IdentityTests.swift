import Foundation
import Glibc
import Testing
@testable import SlotStore

/// A process started from any executable (`unshare`, or a `slotstore`
/// worker) whose stdout lines are read as they come, and whose stdin can be
/// closed to tell a waiting process to finish.
final class LineProcess {
    let process = Process()
    private let out = Pipe()
    private let input = Pipe()
    private var buffered = ""
    private var lines: [String] = []

    init(_ executable: String, _ arguments: [String], environment: [String: String] = [:]) throws {
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = arguments
        process.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 }
        process.standardOutput = out
        process.standardInput = input
        try process.run()
    }

    var pid: Int32 { process.processIdentifier }

    /// The first line starting with `prefix`, waiting for it; nil at end of output.
    func line(startingWith prefix: String) -> String? {
        while true {
            if let index = lines.firstIndex(where: { $0.hasPrefix(prefix) }) { return lines.remove(at: index) }
            let chunk = out.fileHandleForReading.availableData
            if chunk.isEmpty { return nil }
            buffered += String(decoding: chunk, as: UTF8.self)
            while let newline = buffered.firstIndex(of: "\n") {
                lines.append(String(buffered[..<newline]))
                buffered = String(buffered[buffered.index(after: newline)...])
            }
        }
    }

    /// Waits for the end of output: every process holding the pipe (children included) has exited.
    func drain() {
        while !out.fileHandleForReading.availableData.isEmpty {}
    }

    func closeInput() { try? input.fileHandleForWriting.close() }

    func killAndWait() {
        kill(process.processIdentifier, SIGKILL)
        process.waitUntilExit()
    }
}

/// The PIDs (as this process sees them) of the children of `pid`.
func childPIDs(of pid: Int32) -> [Int32] {
    let text = (try? String(contentsOfFile: "/proc/\(pid)/task/\(pid)/children", encoding: .utf8)) ?? ""
    return text.split(separator: " ").compactMap { Int32($0.trimmingCharacters(in: .whitespacesAndNewlines)) }
}

/// The owner PIDs of the store's thread slots that a live open file description holds.
func liveSlotOwners(_ path: String) throws -> [Int32] {
    let lock = try #require(try SlotStore.inspect(at: path).regions.first { $0.name == "lock" })
    let fd = open(path, O_RDONLY | O_CLOEXEC)
    try #require(fd >= 0)
    defer { close(fd) }
    var owners: [Int32] = []
    for slot in 0..<LockRegion.threadSlotCount(lockSize: lock.size) where OpenGate.byteHeldByOthers(fd, LockRegion.threadSlotLockBase + slot) {
        var owner: Int32 = 0
        _ = pread(fd, &owner, 4, off_t(lock.offset + LockRegion.threadSlotsOffset + slot * LockRegion.threadSlotBytes + LockRegion.slotOwnerOffset))
        owners.append(owner)
    }
    return owners
}

enum PIDNamespaces {
    static let unshare = "/usr/bin/unshare"

    /// Whether this process may make PID namespaces (root, and a kernel and
    /// sandbox that allow it): tried once, for real.
    static let available: Bool = {
        guard FileManager.default.isExecutableFile(atPath: unshare) else {
            print("PID namespace tests skipped: \(unshare) is missing (install util-linux)")
            return false
        }
        let probe = Process()
        probe.executableURL = URL(fileURLWithPath: unshare)
        probe.arguments = ["--pid", "--fork", "--mount-proc", "/bin/sh", "-c", "echo 4000 > /proc/sys/kernel/ns_last_pid"]
        probe.standardError = FileHandle.nullDevice
        guard (try? probe.run()) != nil else { return false }
        probe.waitUntilExit()
        if probe.terminationStatus != 0 {
            print("PID namespace tests skipped: `unshare --pid --fork --mount-proc` failed here (it needs root, or CAP_SYS_ADMIN, and a kernel that allows PID namespaces)")
        }
        return probe.terminationStatus == 0
    }()

    /// A PID no process of this namespace has: what `kill(pid, 0)` calls dead.
    static func unusedHostPID() -> Int32 {
        (1000...30_000).reversed().first { kill(Int32($0), 0) == -1 && errno == ESRCH }.map(Int32.init) ?? 29_999
    }
}

@Suite("Identity across PID namespaces", .serialized, .timeLimit(.minutes(5)))
struct PIDNamespaceTests {
    let directory = TemporaryDirectory()

    @Test("a lock holder in another PID namespace is named as such while it lives, recovered after SIGKILL, and its temporary file is kept only while it lives",
          .enabled(if: PIDNamespaces.available, "needs `unshare --pid --fork` (root)"))
    func holderInAnotherNamespace() throws {
        let path = directory.file("shared.slots")
        let output = directory.file("copy.slots")
        do {
            let store = try SlotStore(path: path, schema: .sample)
            try store.string("motd").store("before")
            store.close()
        }
        // The holder's PID in its namespace is one no host process has, so a
        // check by kill(pid, 0) on the host calls it dead while it runs.
        let namespacePID = PIDNamespaces.unusedHostPID()
        // In a new PID namespace (with its own /proc, to set the next PID),
        // `slotstore compact --output` stops at its first copied value,
        // holding the source's lock and building a temporary file for the output.
        let script = "echo \"$1\" > /proc/sys/kernel/ns_last_pid && \"$0\" compact \"$2\" --output \"$3\"; exit $?"
        let holder = try LineProcess(PIDNamespaces.unshare,
                                     ["--pid", "--fork", "--mount-proc", "/bin/sh", "-c", script,
                                      Tool.executable, String(namespacePID - 1), path, output],
                                     environment: ["SLOTSTORE_FAULT": "midWrite:hold"])
        defer { if holder.process.isRunning { holder.killAndWait() } }
        let holding = try #require(holder.line(startingWith: "SLOTSTORE-HOLDING "))
        #expect(holding == "SLOTSTORE-HOLDING \(namespacePID)")
        // unshare → sh (PID 1 there) → slotstore: its PID as this process sees it.
        let shell = try #require(childPIDs(of: holder.pid).first)
        let hostPID = try #require(childPIDs(of: shell).first)
        let nspid = try String(contentsOfFile: "/proc/\(hostPID)/status", encoding: .utf8)
            .split(separator: "\n").first { $0.hasPrefix("NSpid:") }
        #expect(nspid?.split(whereSeparator: \.isWhitespace).last.map(String.init) == String(namespacePID))

        // While it lives.
        let store = try SlotStore(path: path, options: OpenOptions(mode: .open, lockTimeout: .milliseconds(200)))
        let status = try store.status
        #expect(status.lockHolderPID == namespacePID && status.lockHolderAlive && status.lockHolderInAnotherPIDNamespace)
        #expect(!status.lockNeedsRecovery)
        let timeout = SlotStoreError.lockTimeout(path: path, holderPID: namespacePID, holderAlive: true,
                                                 holderInAnotherPIDNamespace: true, seconds: 0.2)
        #expect(throws: timeout) { try store.transaction { _ in } }
        #expect(timeout.description.contains("held by PID \(namespacePID) in another PID namespace (alive)"))
        let inspected = try SlotStore.inspect(at: path).lock
        #expect(inspected.state == "held" && inspected.holderAlive && inspected.holderInAnotherPIDNamespace)
        let inspect = try Tool.run(["inspect", path])
        #expect(inspect.stdout.contains("held by PID \(namespacePID) in another PID namespace (running)"), "\(inspect.stdout)")
        let repair = try SlotStore.repair(at: path, dryRun: true)
        #expect(repair.refused?.contains("PID \(namespacePID) in another PID namespace is running") == true, "\(repair)")
        func leftovers() throws -> [String] {
            try FileManager.default.contentsOfDirectory(atPath: directory.path).filter { $0.hasPrefix(".copy.slots.compacting-\(namespacePID)-") }
        }
        #expect(try leftovers().count == 1, "the holder's temporary output file")
        TemporaryFiles.removeStale(for: output)
        #expect(try leftovers().count == 1, "a live builder's temporary file is kept, whatever kill(pid, 0) says")

        // SIGKILL; unshare exits once its namespace's processes are gone: an exact wait.
        kill(hostPID, SIGKILL)
        holder.process.waitUntilExit()

        let dead = try store.status
        #expect(dead.lockHolderPID == namespacePID && !dead.lockHolderAlive && dead.lockHolderInAnotherPIDNamespace)
        #expect(dead.lockNeedsRecovery)
        let afterDeath = try Tool.run(["inspect", path])
        #expect(afterDeath.stdout.contains("needs recovery: held by PID \(namespacePID) in another PID namespace, which is not running"),
                "\(afterDeath.stdout)")
        TemporaryFiles.removeStale(for: output)
        #expect(try leftovers().isEmpty, "a dead builder's temporary file is removed")
        #expect(!FileManager.default.fileExists(atPath: output))

        // A process that opens now takes the lock over and carries on: its
        // open must leave the dead holder's slot record for the recovery to report.
        let late = try SlotStore(path: path, options: OpenOptions(mode: .open))
        defer { late.close() }
        try late.transaction { _ in }
        try store.string("motd").store("after")
        let recovered = try store.status
        #expect(recovered.recoveries == 1 && recovered.lockHolderPID == nil)
        #expect(recovered.lastRecoveredPID == namespacePID && recovered.lastRecoveredInAnotherPIDNamespace)
        let last = try Tool.run(["inspect", path])
        #expect(last.stdout.contains("last recovered from PID \(namespacePID) in another PID namespace"), "\(last.stdout)")
        #expect(try store.string("motd").load() == "after")
        store.close()
    }
}

@Suite("Holder identity and temporary files", .timeLimit(.minutes(5)))
struct HolderIdentityTests {
    let directory = TemporaryDirectory()

    @Test("the lock holder records its attachment slot; a holder of this namespace is named by its PID alone")
    func holderRecordsItsSlot() throws {
        let path = directory.file("holder.slots")
        _ = try SlotStore(path: path, schema: .sample)
        let holder = try Tool.Holder(["_worker", "hold-lock", path])
        defer { holder.kill() }
        let store = try SlotStore(path: path, options: OpenOptions(mode: .open, lockTimeout: .milliseconds(100)))
        let status = try store.status
        #expect(status.lockHolderPID == holder.pid && status.lockHolderAlive && !status.lockHolderInAnotherPIDNamespace)
        let word = store.core.lock.holder.pointee.load(ordering: .relaxed)
        let slot = Int(word >> 32) - 1
        #expect(slot >= 0 && store.core.lock.slotOwner(slot).pointee.load(ordering: .relaxed) == holder.pid)
        #expect(store.core.lock.slotPIDNamespace(slot).pointee.load(ordering: .relaxed) == ProcessIdentity.pidNamespace)
        #expect(ProcessIdentity.pidNamespace != 0)
        #expect(throws: SlotStoreError.lockTimeout(path: path, holderPID: holder.pid, holderAlive: true,
                                                   holderInAnotherPIDNamespace: false, seconds: 0.1)) {
            try store.transaction { _ in }
        }
    }

    @Test("a temporary file is removed only once its builder lets go of it")
    func temporaryFileLivesWithItsBuilder() throws {
        let store = directory.file("built.slots")
        let created = try TemporaryFiles.createClaimed(for: store, mode: 0o600).get()
        let name = String(created.path.split(separator: "/").last!)
        #expect(name.hasPrefix(".built.slots.creating-\(getpid())-"))
        TemporaryFiles.removeStale(for: store)
        #expect(FileManager.default.fileExists(atPath: created.path), "its builder holds it")
        TemporaryFiles.release(created.fd)
        TemporaryFiles.removeStale(for: store)
        #expect(!FileManager.default.fileExists(atPath: created.path), "nobody holds it")
    }

    @Test("a temporary file that vanished before its link gives an error naming it, not \"no store exists here\"")
    func vanishedTemporaryFile() throws {
        let store = directory.file("gone.slots")
        let temporary = TemporaryFiles.path(for: store, kind: "creating")
        do {
            _ = try TemporaryFiles.link(temporary, to: store, operation: "put the new store in place")
            Issue.record("linked a file that does not exist")
        } catch {
            guard case .systemCallFailed(let path, let call, let code) = error else {
                Issue.record("expected systemCallFailed, got \(error)")
                return
            }
            #expect(path == store && code == ENOENT)
            #expect(call.contains(temporary) && call.contains("removed it"))
        }
    }
}

@Suite("fork() after open", .serialized, .timeLimit(.minutes(5)))
struct ForkTests {
    let directory = TemporaryDirectory()

    @Test("a grandchild forked from a child that used the store re-attaches too: every generation's writes land")
    func grandchildOfAUsingChild() throws {
        let path = directory.file("fork-grandchild.slots")
        try SlotStore(path: path, schema: .sample).close()
        let result = try Tool.run(["_worker", "fork-grandchild", path])
        #expect(result.succeeded, "exit \(result.status), signaled \(result.signaled): \(result.stderr)")
        #expect(result.stdout == "counter 3 motd grandchild\n", "\(result.stdout)")
    }

    @Test("a forked child that uses its parent's store re-attaches: its own PID holds the lock, its own slots, its writes land through a compaction in place")
    func childUsesTheStore() throws {
        let path = directory.file("fork-use.slots")
        try SlotStore(path: path, schema: .sample).close()
        let worker = try LineProcess(Tool.executable, ["_worker", "fork-use", path])
        defer { if worker.process.isRunning { worker.killAndWait() } }
        let ready = try #require(worker.line(startingWith: "child-ready ")).split(separator: " ")
        let child = try #require(Int32(ready[1]))
        #expect(child != worker.pid)
        #expect(ready.count == 4 && Int32(ready[3]) == child, "the lock holder inside the child's transaction is the child: \(ready)")
        // Its own attachment slot and its own writer's slot, as well as the parent's.
        let owners = try liveSlotOwners(path)
        #expect(owners.filter { $0 == child }.count == 2, "\(owners)")
        #expect(owners.contains(worker.pid), "\(owners)")

        // A compaction in place by a third process while the child writes.
        let compaction = try Tool.run(["compact", path])
        #expect(compaction.succeeded, "\(compaction.stderr)")

        let store = try SlotStore(path: path, options: OpenOptions(mode: .open))
        defer { store.close() }
        #expect(store.generation == 2)
        try store.scalar("enabled", as: Bool.self).store(true)
        let done = try #require(worker.line(startingWith: "child-done ")).split(separator: " ")
        let childWrites = try #require(Int64(done[1]))
        #expect(done.last == "2", "the child followed the compaction: \(done)")
        worker.process.waitUntilExit()
        #expect(worker.process.terminationStatus == 0)
        #expect(try store.scalar("requests", as: Int64.self).load() == 1 + childWrites, "every lock-free add of both processes landed")
        #expect(try store.string("motd").load() == "child done")
    }

    @Test("a forked child that only inherits the store keeps nothing of it: after the parent's SIGKILL, a compaction that needs sole use succeeds while the child runs")
    func childOnlyInherits() throws {
        let path = directory.file("fork-inherit.slots")
        try SlotStore(path: path, schema: .sample).close()
        let worker = try LineProcess(Tool.executable, ["_worker", "fork-inherit", path])
        defer {
            worker.closeInput()
            if worker.process.isRunning { worker.killAndWait() }
        }
        let childLine = try #require(worker.line(startingWith: "child-ready ")).split(separator: " ")
        let child = try #require(Int32(childLine[1]))
        _ = try #require(worker.line(startingWith: "parent-ready "))
        worker.killAndWait()
        #expect(kill(child, 0) == 0, "the child still runs")

        let fd = open(path, O_RDONLY | O_CLOEXEC)
        #expect(fd >= 0)
        #expect(OpenGate.othersHaveOpen(fd) == .success(false), "no open lock outlives the parent")
        close(fd)
        #expect(try liveSlotOwners(path).isEmpty, "no thread slot outlives the parent")
        // Dropping a field in place is refused while any process has the store open.
        var reduced = Schema.sample
        reduced.fields.removeAll { $0.name == "blob" }
        _ = try SlotStore.compact(at: path, schema: reduced, migration: MigrationOptions(allowDropping: true))
        #expect(try SlotStore.inspect(at: path).fields.map(\.name).contains("blob") == false)
        #expect(kill(child, 0) == 0, "the child still runs")
        worker.closeInput()
        worker.drain()  // the child exits at the end of its input
    }
}
