import Foundation
import Glibc
import Synchronization
import Testing
@testable import SlotStore

/// Compaction in place while other processes (and other objects in this one)
/// use the store: nothing lost, and everyone carries on in the new file.
@Suite("Compaction while the store is in use", .serialized, .timeLimit(.minutes(5)))
struct LiveCompactionTests {
    let directory = TemporaryDirectory()

    static let schema = Schema(version: 1, fields: [
        .int64("hits"), .bool("stop"), .array("slots", of: .int64, count: 4), .string("note", capacity: 32),
        .map("sessions", key: .string(capacity: 16), value: .scalar(.int64), capacity: 16),
    ])

    @Test("handles, transactions and by-name calls resolved before a compaction in place carry on in the new file")
    func handlesFollowInProcess() throws {
        let path = directory.file("follow.slots")
        let store = try SlotStore(path: path, schema: Self.schema)
        let hits = try store.scalar("hits", as: Int64.self)
        let slots = try store.array("slots", of: Int64.self)
        let note = try store.string("note")
        let sessions = try store.map("sessions", key: String.self, value: Int64.self)
        hits.add(5)
        slots.store(7, at: 1)
        try note.store("before")
        try sessions.set(1, for: "a")

        // Another SlotStore object is another opener: this is the live path.
        let plan = try SlotStore.compact(at: path, capacities: ["sessions": 1000, "note": 64])
        #expect(plan.fields.contains { $0.name == "sessions" })
        #expect(store.generation == 1, "nothing switches before the next operation")

        #expect(hits.add(1) == 6, "the add went to the new file, which holds the old value")
        #expect(store.generation == 2)
        #expect(!hits.core.file.descriptorIsOpen, "the retired file's descriptor is closed once followed (its mapping stays for old handles)")
        slots.store(8, at: 2)
        #expect(try slots.snapshot() == [0, 7, 8, 0])
        #expect(try note.load() == "before")
        try note.store(String(repeating: "x", count: 60))  // the new capacity
        try sessions.set(2, for: "b")
        #expect(try sessions.get("a") == 1 && sessions.count == 2 && sessions.capacity == 1000)
        try store.transaction { tx in
            try tx.add(10, to: hits)
            try tx.store(3, for: "c", in: sessions)
        }
        #expect(try store.value(of: "hits") == .int(16))
        #expect(try store.refresh() == false, "already on the newest file")

        // A fresh open sees everything written through the old handles.
        let fresh = try SlotStore(path: path)
        #expect(fresh.generation == 2)
        #expect(try fresh.scalar("hits", as: Int64.self).load() == 16)
        #expect(try fresh.array("slots", of: Int64.self).snapshot() == [0, 7, 8, 0])
        #expect(try fresh.string("note").load() == String(repeating: "x", count: 60))
        #expect(try fresh.map("sessions", key: String.self, value: Int64.self).entries().count == 3)
        #expect(try SlotStore.verify(at: path).findings == [])
    }

    @Test("two compactions of one store at once, from two threads, keep every value")
    func concurrentCompactions() throws {
        let path = directory.file("twice.slots")
        // A map large enough that the two copies overlap in time.
        let store = try SlotStore(path: path, schema: Schema(version: 1, fields: [
            .int64("hits"), .map("sessions", key: .string(capacity: 16), value: .scalar(.int64), capacity: 20_000),
        ]))
        let hits = try store.scalar("hits", as: Int64.self)
        let sessions = try store.map("sessions", key: String.self, value: Int64.self)
        hits.store(42)
        try store.transaction { tx in
            for index in 0..<10_000 { try tx.store(Int64(index), for: "k\(index)", in: sessions) }
        }
        let errors = Mutex<[String]>([])
        let done = DispatchGroup()
        for _ in 0..<2 {
            done.enter()
            Thread.detachNewThread {
                do { try SlotStore.compact(at: path, capacities: ["sessions": 24_000]) }
                catch { errors.withLock { $0.append("\(error)") } }
                done.leave()
            }
        }
        done.wait()
        #expect(errors.withLock { $0 } == [])
        #expect(hits.load() == 42)
        #expect(try sessions.entries().count == 10_000 && sessions.get("k7777") == 7777)
        #expect(store.generation == 3, "both compactions happened, one after the other")
        #expect(try SlotStore.verify(at: path).findings == [])
    }

    @Test("a handle whose field a later compaction dropped stays on the retired file and refresh() says so; the others follow")
    func droppedFieldStaysBehind() throws {
        let path = directory.file("dropped.slots")
        let store = try SlotStore(path: path, schema: Self.schema)
        let hits = try store.scalar("hits", as: Int64.self)
        let slots = try store.array("slots", of: Int64.self)
        // Live (this store is attached), then with nobody on the new file yet: exclusive, so dropping is allowed.
        try SlotStore.compact(at: path)
        let v2 = Schema(version: 2, fields: Self.schema.fields.filter { $0.name != "hits" })
        try SlotStore.compact(at: path, schema: v2, migration: MigrationOptions(allowDropping: true))
        slots.store(5, at: 0)
        hits.add(100)
        #expect(try SlotStore(path: path).array("slots", of: Int64.self).snapshot() == [5, 0, 0, 0], "the array handle followed")
        #expect(throws: SlotStoreError.self) { try store.refresh() }
        #expect(try store.refresh() == false, "reported once")
    }

    @Test("processes writing lock-free and locked through three compactions in place lose nothing and end in the newest file")
    func processesCarryOn() throws {
        let path = directory.file("busy.slots")
        let store = try SlotStore(path: path, schema: Self.schema)
        let sessions = try store.map("sessions", key: String.self, value: Int64.self)
        let workers = try (0..<3).map { try Tool.start(["_worker", "live-work", path, String($0)]) }
        var expectedProgress: Int64 = 200
        func waitForProgress() throws {
            // An exact wait on the store itself: every worker has done more work.
            for id in 0..<3 {
                while (try sessions.get("w\(id)") ?? 0) < expectedProgress { sched_yield() }
            }
            expectedProgress += 200
        }
        try waitForProgress()
        for round in 1...3 {
            try SlotStore.compact(at: path, capacities: ["sessions": 16 * (round + 1)])
            try waitForProgress()
        }
        try store.scalar("stop", as: Bool.self).store(true)  // a handle from generation 0
        var counts: [Int64] = []
        for worker in workers {
            let result = worker.wait()
            #expect(result.status == 0, "worker failed: \(result.stderr)")
            let words = result.stdout.split(whereSeparator: \.isWhitespace)
            counts.append(words.count >= 4 ? Int64(words[1]) ?? -1 : -1)
            #expect(words.count >= 4 && words[3] == "4", "every worker ends in generation 4 (created as 1): \(result.stdout)")
        }
        let final = try SlotStore(path: path)
        #expect(final.generation == 4)
        #expect(try final.scalar("hits", as: Int64.self).load() == counts.reduce(0, +), "every lock-free add landed exactly once")
        #expect(try final.array("slots", of: Int64.self).snapshot() == counts + [0])
        let finalSessions = try final.map("sessions", key: String.self, value: Int64.self)
        for (id, count) in counts.enumerated() { #expect(try finalSessions.get("w\(id)") == count) }
        #expect(finalSessions.capacity == 64)
        #expect(try SlotStore.verify(at: path).findings == [])
    }

    /// The copy of the whole store (maps of millions of entries take most of
    /// a second) happens before lock-free writers are stopped: they stop only
    /// for the second pass over the fields they write. The compactor is held
    /// right after its first pass, holding the lock; lock-free adds from this
    /// process must complete meanwhile (before, they waited for the whole
    /// copy, then threw lockTimeout), and must all be in the new file.
    @Test("lock-free writes carry on while a compaction in place copies the store, and none is lost")
    func lockFreeWritesDuringTheCopy() throws {
        let path = directory.file("bulk.slots")
        let store = try SlotStore(path: path, schema: Self.schema, options: OpenOptions(lockTimeout: .seconds(2)))
        let hits = try store.scalar("hits", as: Int64.self)
        let slots = try store.array("slots", of: Int64.self)
        let sessions = try store.map("sessions", key: String.self, value: Int64.self)
        for index in 0..<10 { try sessions.set(Int64(index), for: "k\(index)") }
        hits.add(1)
        slots.add(1, at: 3)

        let compactor = try Tool.Holder(["compact", path, "--capacity", "sessions=40"],
                                        environment: ["SLOTSTORE_FAULT": "afterBulkCopy:wait"])
        defer { if compactor.isHolding { compactor.kill() } }
        #expect(compactor.isHolding, "the compactor stopped after its first copy, holding the lock")
        #expect(try store.status.lockHolderPID == compactor.pid)

        // On another thread, so a writer that blocks fails the test instead of hanging it.
        let done = DispatchSemaphore(value: 0)
        let writer = Thread {
            for _ in 0..<10_000 { hits.add(1) }
            for _ in 0..<1_000 { slots.add(1, at: 3) }
            done.signal()
        }
        writer.start()
        let finished = done.wait(timeout: .now() + 30) == .success
        #expect(finished, "lock-free adds waited for the compactor's copy")
        #expect(store.generation == 1, "still the old file: the compaction has not finished")

        kill(compactor.pid, SIGUSR1)
        compactor.process.waitUntilExit()
        #expect(compactor.process.terminationStatus == 0)
        if !finished { done.wait() }
        // Every add made during the copy reached the new file through the second pass.
        #expect(hits.load() == 10_001)
        #expect(store.generation == 2)
        let fresh = try SlotStore(path: path)
        #expect(try fresh.scalar("hits", as: Int64.self).load() == 10_001)
        #expect(try fresh.array("slots", of: Int64.self).snapshot() == [0, 0, 0, 1_001])
        let freshSessions = try fresh.map("sessions", key: String.self, value: Int64.self)
        #expect(freshSessions.capacity == 40 && freshSessions.count == 10)
        #expect(try SlotStore.verify(at: path).findings == [])
    }

    @Test("a compactor killed after its first copy, after stopping the writers, or after renaming, leaves the writers losing nothing",
          arguments: ["afterBulkCopy", "afterRetiring", "afterRename"])
    func compactorKilled(point: String) throws {
        let path = directory.file("killed-\(point).slots")
        let store = try SlotStore(path: path, schema: Self.schema)
        let sessions = try store.map("sessions", key: String.self, value: Int64.self)
        let workers = try (0..<2).map { try Tool.start(["_worker", "live-work", path, String($0)]) }
        for id in 0..<2 { while (try sessions.get("w\(id)") ?? 0) < 200 { sched_yield() } }

        let killed = try Tool.run(["compact", path, "--capacity", "sessions=40"], environment: ["SLOTSTORE_FAULT": "\(point):kill"])
        #expect(killed.signaled, "the compactor died at \(point): \(killed.stderr)")
        // The writers recover the lock and go on, in the old file (the rename
        // did not happen) or in the new one (it did).
        let base = try sessions.get("w0") ?? 0
        while (try sessions.get("w0") ?? 0) < base + 200 { sched_yield() }
        try store.scalar("stop", as: Bool.self).store(true)
        var counts: [Int64] = []
        for worker in workers {
            let result = worker.wait()
            #expect(result.status == 0, "worker failed: \(result.stderr)")
            let words = result.stdout.split(whereSeparator: \.isWhitespace)
            counts.append(words.count >= 2 ? Int64(words[1]) ?? -1 : -1)
        }
        let final = try SlotStore(path: path)
        #expect(final.generation == (point == "afterRename" ? 2 : 1))
        #expect(try final.scalar("hits", as: Int64.self).load() == counts.reduce(0, +))
        let finalSessions = try final.map("sessions", key: String.self, value: Int64.self)
        for (id, count) in counts.enumerated() { #expect(try finalSessions.get("w\(id)") == count) }
        #expect(try SlotStore.verify(at: path).findings == [])
    }
}
