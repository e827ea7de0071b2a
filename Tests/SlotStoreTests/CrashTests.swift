import Foundation
import Glibc
import Testing
@testable import SlotStore

/// Processes killed with a real SIGKILL at each point of a locked write.
@Suite("Crash recovery", .timeLimit(.minutes(5)))
struct CrashTests {
    let directory = TemporaryDirectory()

    enum Operation: String, CaseIterable, Sendable {
        case string, array, transfer
    }

    static let points: [FaultPoint] = FaultPoint.writePoints

    /// Sets the known old state, runs one write in a worker that kills itself
    /// at `point`, and returns the store (opened before the worker, so the
    /// next lock acquisition goes through EOWNERDEAD, not the first-open reset).
    func crash(_ operation: Operation, at point: FaultPoint, name: String) throws -> SlotStore {
        let path = directory.file(name)
        let store = try SlotStore(path: path, schema: .sample)
        try store.string("motd").store("old value, long enough to be written in two halves")
        try store.array("buckets", of: Int64.self).store(Array(repeating: 1, count: 16))
        try store.scalar("alice", as: Int64.self).store(100)
        let arguments: [String] = switch operation {
        case .string: ["_worker", "set-string", path, "motd", "NEW VALUE that differs in every byte from the old one"]
        case .array: ["_worker", "set-array", path, "buckets", "2"]
        case .transfer: ["_worker", "transfer-once", path, "alice", "bob", "40"]
        }
        let result = try Tool.run(arguments, environment: ["SLOTSTORE_FAULT": "\(point.rawValue):kill"])
        #expect(result.killedBySIGKILL, "the worker should die by SIGKILL at \(point): \(result)")
        return store
    }

    func expectValues(_ store: SlotStore, _ operation: Operation, new: Bool) throws {
        switch operation {
        case .string:
            #expect(try store.string("motd").load() == (new ? "NEW VALUE that differs in every byte from the old one"
                                                          : "old value, long enough to be written in two halves"))
        case .array:
            #expect(try store.array("buckets", of: Int64.self).snapshot() == Array(repeating: new ? 2 : 1, count: 16))
        case .transfer:
            let alice = try store.scalar("alice", as: Int64.self).load()
            let bob = try store.scalar("bob", as: Int64.self).load()
            #expect(alice == (new ? 60 : 100) && bob == (new ? 40 : 0))
        }
    }

    @Test("a holder killed at any point of a write: the next writer recovers; values are fully old or fully new",
          arguments: Operation.allCases, points)
    func killedHolderRecovered(operation: Operation, point: FaultPoint) throws {
        let store = try crash(operation, at: point, name: "\(operation)-\(point).slots")
        let before = try store.status
        #expect(before.lockNeedsRecovery, "the dead holder's lock should be marked owner-died")
        #expect(before.journalDirty == (point != .beforeJournal && point != .beforeUnlock))
        // The next lock acquisition by anyone rolls the interrupted write back.
        try store.scalar("requests", as: Int64.self).store(1)
        try store.transaction { _ in }
        let after = try store.status
        #expect(after.recoveries == before.recoveries + 1)
        #expect(!after.journalDirty && after.lockHolderPID == nil && !after.lockNeedsRecovery)
        // Committed (journal cleared) before the kill: new; anything earlier: old.
        try expectValues(store, operation, new: point == .beforeUnlock)
        // And the store keeps working for everyone.
        #expect(try Tool.run(["_worker", "set-string", store.path, "motd", "after"]).succeeded)
        #expect(try store.string("motd").load() == "after")
    }

    @Test("a writer killed mid-write when nobody else has the store open: the next opener rolls it back",
          arguments: Operation.allCases)
    func rolledBackAtOpen(operation: Operation) throws {
        let path: String
        do {
            let store = try crash(operation, at: .midWrite, name: "open-\(operation).slots")
            path = store.path
            store.close()
        }
        waitUntilNoOpener(path)
        let reopened = try SlotStore(path: path, schema: .sample)
        let status = try reopened.status
        #expect(!status.journalDirty && status.recoveries >= 1 && status.lockHolderPID == nil)
        try expectValues(reopened, operation, new: false)
        try reopened.string("motd").store("writable")
    }

    @Test("a reader meeting a write left half-done by a dead process returns the old value instead of spinning")
    func readerAfterDeadWriter() throws {
        let path = directory.file("reader.slots")
        let store = try SlotStore(path: path, schema: .sample)
        let motd = try store.string("motd")
        try motd.store("the old value")
        let holder = try Tool.Holder(["_worker", "set-string", path, "motd", "a new value that never lands"],
                                     environment: ["SLOTSTORE_FAULT": "midWrite:hold"])
        #expect(holder.isHolding)
        holder.kill()
        // The sequence word is odd now: the reader retries, then takes the lock once, which recovers.
        #expect(try motd.load() == "the old value")
        #expect(try store.status.recoveries >= 1)
    }

    @Test("a reader meeting a live writer stuck mid-write gets a lock timeout naming it, not a hang")
    func readerAfterStuckWriter() throws {
        let path = directory.file("stuck.slots")
        let store = try SlotStore(path: path, schema: .sample, options: OpenOptions(lockTimeout: .milliseconds(300)))
        let motd = try store.string("motd")
        let holder = try Tool.Holder(["_worker", "set-string", path, "motd", "stuck"],
                                     environment: ["SLOTSTORE_FAULT": "midWrite:hold"])
        defer { holder.kill() }
        #expect(throws: SlotStoreError.lockTimeout(path: path, holderPID: holder.pid, holderAlive: true, holderInAnotherPIDNamespace: false, seconds: 0.3)) {
            _ = try motd.load()
        }
    }

    @Test("a lock held by a live process is never reset by another opener; the timeout names the holder")
    func noResetWhileOpen() throws {
        let path = directory.file("held.slots")
        _ = try SlotStore(path: path, schema: .sample)
        let holder = try Tool.Holder(["_worker", "hold-lock", path])
        #expect(holder.isHolding)
        // A second process opens while the holder has it open: no exclusive open lock, no reset.
        let store = try SlotStore(path: path, schema: .sample, options: OpenOptions(lockTimeout: .milliseconds(200)))
        #expect(try store.status.lockHolderPID == holder.pid && store.status.lockHolderAlive)
        #expect(throws: SlotStoreError.lockTimeout(path: path, holderPID: holder.pid, holderAlive: true, holderInAnotherPIDNamespace: false, seconds: 0.2)) {
            try store.string("motd").store("blocked")
        }
        #expect(try store.scalar("requests", as: Int64.self).add(1) == 1, "lock-free writes go on meanwhile")
        holder.kill()
        try store.string("motd").store("recovered")
        #expect(try store.status.recoveries == 1)
    }

    /// The mutex bytes of a store whose lock was taken by `tid` and never
    /// released, with no owner-died mark: what a reboot or a vanished PID
    /// namespace leaves behind.
    func leaveLockedBy(tid: Int32, path: String) throws {
        let store = try SlotStore(path: path, schema: .sample)
        store.close()
        waitUntilNoOpener(path)
        try plantLock(tid: tid, path: path)
    }

    func plantLock(tid: Int32, path: String) throws {
        let header = try FileHeader.decode(Array(fileBytes(path).prefix(FileHeader.size)), path: path)
        let lockOffset = Int(header.lockOffset)
        var word = [UInt8](repeating: 0, count: 12)
        word.setLittleEndian(UInt32(bitPattern: tid), at: 0)  // __lock: owner TID, no waiter or owner-died bits
        word.setLittleEndian(UInt32(1), at: 4)                // __count
        word.setLittleEndian(tid, at: 8)                      // __owner
        patchFile(path, at: lockOffset, word)
        var holder = [UInt8](repeating: 0, count: 4)
        holder.setLittleEndian(tid, at: 0)
        patchFile(path, at: lockOffset + LockRegion.holderOffset, holder)
    }

    @Test("reboot simulation: a mutex left locked by a PID that no longer exists does not hang the next opener")
    func lockedByDeadPID() throws {
        let path = directory.file("reboot-dead.slots")
        var deadPID: Int32 = 4_000_000
        while kill(deadPID, 0) == 0 || errno != ESRCH { deadPID -= 1 }
        try leaveLockedBy(tid: deadPID, path: path)
        waitUntilNoOpener(path)
        let store = try SlotStore(path: path, schema: .sample, options: OpenOptions(lockTimeout: .seconds(1)))
        try store.string("motd").store("no hang")
        #expect(try store.string("motd").load() == "no hang")
        #expect(try store.status.lockResets >= 2)
    }


    @Test("reboot simulation: a mutex left locked under a live unrelated PID, with a dirty journal, opens and rolls back")
    func lockedByLiveUnrelatedPID() throws {
        let path = directory.file("reboot-live.slots")
        // A crashed writer leaves a dirty journal; then the lock word is made to
        // look held by PID 1, alive but unrelated (as after a reboot).
        do {
            let store = try crash(.string, at: .afterWrite, name: "reboot-live.slots")
            store.close()
        }
        waitUntilNoOpener(path)
        // Opening to plant the lock word would roll the journal back, so plant it directly.
        try plantLock(tid: 1, path: path)
        waitUntilNoOpener(path)
        let store = try SlotStore(path: path, schema: .sample, options: OpenOptions(lockTimeout: .seconds(1)))
        #expect(try store.status.recoveries >= 1, "the dirty journal was rolled back at open")
        try expectValues(store, .string, new: false)
        try store.string("motd").store("no hang")
        #expect(try !store.status.journalDirty)
    }

    @Test("a worker killed mid-transfer many times in a row never breaks the sum")
    func repeatedKills() throws {
        let path = directory.file("repeat.slots")
        let store = try SlotStore(path: path, schema: .sample)
        let alice = try store.scalar("alice", as: Int64.self)
        let bob = try store.scalar("bob", as: Int64.self)
        alice.store(500)
        for round in 0..<20 {
            let point = FaultPoint.writePoints[round % FaultPoint.writePoints.count]
            let result = try Tool.run(["_worker", "transfer", path, "alice", "bob", "50", "\(round)"],
                                      environment: ["SLOTSTORE_FAULT": "\(point.rawValue):kill:\(1 + round % 7)"])
            #expect(result.killedBySIGKILL)
            try store.transaction { tx in #expect(tx.load(alice) + tx.load(bob) == 500) }
        }
        #expect(try store.status.recoveries >= 10)
    }

    @Test("slotstore load killed in the middle of its transaction leaves every value as before")
    func loadKilledMidway() throws {
        let path = directory.file("load-target.slots")
        let store = try SlotStore(path: path, schema: .sample)
        try store.scalar("requests", as: Int64.self).store(1)
        try store.string("motd").store("before the load")
        let dumpPath = directory.file("dump.json")
        let dump = """
        {"format":"slotstore-dump","formatVersion":1,"schema":\(Schema.sample.json),
         "values":{"requests":99,"motd":"after the load","alice":5,"bob":6,"buckets":[1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16]}}
        """
        writeFileBytes(dumpPath, Array(dump.utf8))
        let killed = try Tool.run(["load", path, dumpPath], environment: ["SLOTSTORE_FAULT": "afterWrite:kill:3"])
        #expect(killed.killedBySIGKILL)
        // Lock-free readers may see a dead transaction's writes until the next
        // lock acquisition rolls them back; take the lock, as any writer would.
        let recoveries = try store.status.recoveries
        try store.transaction { _ in }
        #expect(try store.status.recoveries == recoveries + 1)
        #expect(try store.value(of: "requests") == .int(1))
        #expect(try store.string("motd").load() == "before the load")
        #expect(try store.scalar("alice", as: Int64.self).load() == 0)
        let loaded = try Tool.run(["load", path, dumpPath])
        #expect(loaded.succeeded, "\(loaded.stderr)")
        #expect(try store.value(of: "requests") == .int(99))
        #expect(try store.string("motd").load() == "after the load")
    }
}
