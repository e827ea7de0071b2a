import Foundation
import Glibc
import Testing
@testable import SlotStore

/// Waiting for a change across processes (`wait(untilChangedFrom:timeout:)`,
/// `changes()`): real waiter processes asleep in the kernel, real writers,
/// real SIGKILLs.
///
/// The waiter processes run with `SLOTSTORE_WAIT_RECHECK_MS` at ten minutes,
/// so only a wake can end their sleep within a test: a test that times a
/// wait tells a wake from the re-check every waiter also makes.
@Suite("Waiting for a change", .timeLimit(.minutes(5)))
struct WaitTests {
    let directory = TemporaryDirectory()

    static let schema = Schema(version: 1, fields: [
        .int64("x"), .int64("y"), .array("a", of: .int64, count: 4), .string("s", capacity: 32),
        .bytes("b", capacity: 16), .map("m", key: .string(capacity: 16), value: .scalar(.int64), capacity: 8),
        .int64("ping"), .int64("pong"), .int64("stop"),
    ])

    /// Waiters that only a wake (or their own timeout) can end.
    static let noRecheck = ["SLOTSTORE_WAIT_RECHECK_MS": "600000"]

    func makeStore(_ name: String = "w.slots") throws -> SlotStore {
        try SlotStore(path: directory.file(name), schema: WaitTests.schema)
    }

    enum Write: String, CaseIterable, Sendable {
        case scalarStore, scalarAdd, firstWriteOfAProcess, transaction, byNameAdd, arrayElementAdd, wholeArray, string, bytes,
             mapInsert, mapRemove, storeWide
    }

    /// The waiter process's arguments for `write`, and what it prints after it.
    func waiter(for write: Write, path: String) -> (arguments: [String], expected: String) {
        switch write {
        case .scalarStore: (["scalar", path, "x", "0", "20000"], "changed 7")
        case .scalarAdd, .byNameAdd, .firstWriteOfAProcess: (["scalar", path, "x", "0", "20000"], "changed 1")
        case .transaction: (["scalar", path, "y", "0", "20000"], "changed 9")
        case .arrayElementAdd: (["array", path, "a", "20000"], "changed 0,0,5,0")
        case .wholeArray: (["array", path, "a", "20000"], "changed 1,2,3,4")
        case .string: (["string", path, "s", "", "20000"], "changed hello")
        case .bytes: (["bytes", path, "b", "", "20000"], "changed abc")
        case .mapInsert: (["map", path, "m", "k", "-", "20000"], "changed 3")
        case .mapRemove: (["map", path, "m", "gone", "1", "20000"], "changed -")
        case .storeWide: (["store", path, "20000"], "changed")
        }
    }

    func perform(_ write: Write, on store: SlotStore) throws {
        let x = try store.scalar("x", as: Int64.self)
        switch write {
        case .scalarStore: x.store(7)
        case .scalarAdd: x.add(1)
        case .firstWriteOfAProcess:
            // A process's first lock-free write claims a thread slot: the handles' slow path.
            let result = try Tool.run(["_worker", "increment", store.path, "x", "1"])
            #expect(result.succeeded, "\(result)")
        case .transaction:
            let y = try store.scalar("y", as: Int64.self)
            try store.transaction { tx in try tx.store(9, to: y) }
        case .byNameAdd: _ = try store.add(.int(1), to: "x")
        case .arrayElementAdd: try store.array("a", of: Int64.self).add(5, at: 2)
        case .wholeArray: try store.array("a", of: Int64.self).store([1, 2, 3, 4])
        case .string: try store.string("s").store("hello")
        case .bytes: try store.bytes("b").store(Array("abc".utf8))
        case .mapInsert: try store.map("m", key: String.self, value: Int64.self).set(3, for: "k")
        case .mapRemove: try store.map("m", key: String.self, value: Int64.self).remove("gone")
        case .storeWide: try store.string("s").store("anything")
        }
    }

    @Test("a write by another process wakes a waiter asleep in the kernel within the test's bound, for every kind of write",
          arguments: Write.allCases)
    func writeWakesWaiter(write: Write) throws {
        let store = try makeStore()
        if write == .mapRemove { try store.map("m", key: String.self, value: Int64.self).set(1, for: "gone") }
        // This thread's first lock-free write claims a thread slot (the slow
        // path, tested by firstWriteOfAProcess); the writes below take the inlined one.
        try store.scalar("stop", as: Int64.self).add(0)
        let (arguments, expected) = waiter(for: write, path: store.path)
        let process = try Tool.start(["_wait-worker"] + arguments, environment: WaitTests.noRecheck)
        try #require(waitUntilAsleepInChangeWait(process.pid, threads: 1), "the waiter never fell asleep")
        let start = ContinuousClock.now
        try perform(write, on: store)
        let result = process.wait(killingAfter: 30)
        let elapsed = ContinuousClock.now - start
        #expect(result.succeeded, "\(result)")
        #expect(result.stdout.trimmingCharacters(in: .whitespacesAndNewlines) == expected)
        // Without a wake it would sleep until its 20 s timeout.
        #expect(elapsed < .seconds(5), "the wake took \(elapsed)")
    }

    @Test("a waiter SIGKILLed at any point costs writers nothing afterwards: its bit is gone after one write, and later writes make no system call")
    func killedWaiterCostsNothing() throws {
        let store = try makeStore()
        let x = try store.scalar("x", as: Int64.self)
        let core = store.core
        let bit = ChangeNotification.waiterBit(field: 0)
        var random = SeededRandom(state: 14)
        for round in 0..<8 {
            let waiter = try Tool.start(["_wait-worker", "loop", store.path, "x"])
            var writer: Tool.Running?
            if round % 2 == 0 {
                // Killed asleep.
                try #require(waitUntilAsleepInChangeWait(waiter.pid, threads: 1))
            } else {
                // Killed anywhere in its loop of waking, re-registering and sleeping, under a stream of writes.
                writer = try Tool.start(["_worker", "increment", store.path, "x", "200000"])
                usleep(UInt32(1000 + random.below(20_000)))
            }
            kill(waiter.pid, SIGKILL)
            let killed = waiter.wait(killingAfter: 30)
            #expect(killed.killedBySIGKILL)
            if let writer { #expect(writer.wait(killingAfter: 30).succeeded) }
            // One write may find the dead waiter's bit: it clears it (one wake nobody hears).
            x.add(1)
            #expect(core.waiterMapWord(0).pointee.load(ordering: .relaxed) & bit == 0, "round \(round): the dead waiter's bit outlived a write")
            let sequence = core.wakeSequence.pointee.load(ordering: .relaxed)
            for _ in 0..<10_000 { x.add(1) }
            #expect(core.wakeSequence.pointee.load(ordering: .relaxed) == sequence, "round \(round): writes kept waking a dead waiter")
        }
        // And a new waiter is woken as before.
        let waiter = try Tool.start(["_wait-worker", "scalar", store.path, "x", String(x.load()), "20000"], environment: WaitTests.noRecheck)
        try #require(waitUntilAsleepInChangeWait(waiter.pid, threads: 1))
        let start = ContinuousClock.now
        x.add(1)
        #expect(waiter.wait(killingAfter: 30).stdout.hasPrefix("changed"))
        #expect(ContinuousClock.now - start < .seconds(5))
    }

    /// Found by the outside attack: the forwarding path of a handle resolved
    /// before a compaction wrote without waking, so waiters saw its writes
    /// only at their 100 ms re-check.
    @Test("a handle resolved before a compaction in place wakes waiters in the new file")
    func oldHandleWakes() throws {
        let store = try makeStore("old-handle.slots")
        let x = try store.scalar("x", as: Int64.self)
        x.add(1)
        try SlotStore.compact(at: store.path)
        x.add(1)  // follows the compaction; the next writes take the forwarding path
        #expect(store.generation == 2)
        let waiter = try Tool.start(["_wait-worker", "scalar", store.path, "x", String(x.load()), "20000"], environment: WaitTests.noRecheck)
        try #require(waitUntilAsleepInChangeWait(waiter.pid, threads: 1))
        let start = ContinuousClock.now
        x.add(1)
        #expect(waiter.wait(killingAfter: 30).stdout.hasPrefix("changed"))
        #expect(ContinuousClock.now - start < .seconds(5), "woken, not found at a re-check (which is 10 minutes here)")
    }

    @Test("a writer killed holding the lock mid-transaction: its waiters wake once another process rolls the write back")
    func rollbackWakesWaiters() throws {
        let path = directory.file("rollback.slots")
        let store = try SlotStore(path: path, schema: .sample)
        let alice = try store.scalar("alice", as: Int64.self)
        alice.store(100)
        // The transfer stores alice = 60 and bob = 40 (visible lock-free) and stops holding the lock.
        let holder = try Tool.Holder(["_worker", "transfer-once", path, "alice", "bob", "40"],
                                     environment: ["SLOTSTORE_FAULT": "afterWrite:hold"])
        try #require(holder.isHolding)
        #expect(alice.load() == 60)
        let scalarWaiter = try Tool.start(["_wait-worker", "scalar", path, "alice", "60", "20000"], environment: WaitTests.noRecheck)
        let storeWaiter = try Tool.start(["_wait-worker", "store", path, "20000"], environment: WaitTests.noRecheck)
        try #require(waitUntilAsleepInChangeWait(scalarWaiter.pid, threads: 1))
        try #require(waitUntilAsleepInChangeWait(storeWaiter.pid, threads: 1))
        holder.kill()
        // This process recovers: it takes the lock (EOWNERDEAD, rollback) and
        // releases it without committing anything of its own.
        let start = ContinuousClock.now
        try store.core.acquireLock()
        store.core.releaseLock()
        let scalarResult = scalarWaiter.wait(killingAfter: 30)
        let storeResult = storeWaiter.wait(killingAfter: 30)
        let elapsed = ContinuousClock.now - start
        #expect(scalarResult.stdout.trimmingCharacters(in: .whitespacesAndNewlines) == "changed 100", "\(scalarResult)")
        #expect(storeResult.stdout.trimmingCharacters(in: .whitespacesAndNewlines) == "changed", "\(storeResult)")
        #expect(elapsed < .seconds(5), "the waiters woke after \(elapsed)")
        #expect(alice.load() == 100)
        #expect(try store.status.recoveries == 1)
    }

    @Test("a spurious wake does not end a wait on an unchanged value")
    func spuriousWake() throws {
        let store = try makeStore()
        let x = try store.scalar("x", as: Int64.self)
        x.store(3)
        let core = store.core
        let outcome = BlockingThread.run { () throws(SlotStoreError) -> Int64 in try x.wait(untilChangedFrom: 3, timeout: .milliseconds(600)) }
        try #require(waitUntilAsleepInChangeWait(getpid(), threads: 1, on: core))
        let start = ContinuousClock.now
        for _ in 0..<50 { core.wakeEveryWaiter() }
        #expect(try outcome.result() == 3)
        #expect(ContinuousClock.now - start > .milliseconds(300), "the wait ended before its timeout")
    }

    @Test("a write that wakes nobody (a process of an earlier build) is seen at the next re-check, within 100 ms, not at the timeout")
    func lostWakeSeenAtRecheck() throws {
        let store = try makeStore()
        let x = try store.scalar("x", as: Int64.self)
        let core = store.core
        let outcome = BlockingThread.run { () throws(SlotStoreError) -> Int64 in try x.wait(untilChangedFrom: 0, timeout: .seconds(30)) }
        try #require(waitUntilAsleepInChangeWait(getpid(), threads: 1, on: core))
        let start = ContinuousClock.now
        // What an earlier build's writer does: the store alone.
        core.address(core.layout.fields[0].payloadOffset).atomic(Int64.self).pointee.store(42, ordering: .releasing)
        #expect(try outcome.result() == 42)
        #expect(ContinuousClock.now - start < .seconds(3))
    }

    @Test("ping-pong of plain stores between two processes, 2,000 rounds: no change is missed (the store-load race)")
    func pingPongMissesNothing() throws {
        let store = try makeStore()
        let ping = try store.scalar("ping", as: Int64.self)
        let pong = try store.scalar("pong", as: Int64.self)
        let rounds = 2000
        let answerer = try Tool.start(["_wait-worker", "pong", store.path, String(rounds)], environment: WaitTests.noRecheck)
        // Started once it has read ping's first value.
        try #require(waitUntilAsleepInChangeWait(answerer.pid, threads: 1))
        // A missed wake leaves the answerer asleep until its 20 s timeout: give up after 5 s.
        var answered = false
        defer { if !answered { kill(answerer.pid, SIGKILL); _ = answerer.wait(killingAfter: 30) } }
        var last: Int64 = 0
        for round in Int64(1)...Int64(rounds) {
            ping.store(round)
            last = try pong.wait(untilChangedFrom: last, timeout: .seconds(5))
            try #require(last == round, "round \(round): no answer within 5 s")
        }
        let result = answerer.wait(killingAfter: 30)
        answered = true
        #expect(result.stdout.trimmingCharacters(in: .whitespacesAndNewlines) == "answered \(rounds)", "\(result)")
    }

    @Test("changes() yields the value now, then increasing values up to the last add of another process")
    func changesAcrossProcesses() async throws {
        let store = try makeStore()
        let x = try store.scalar("x", as: Int64.self)
        var iterator = x.changes().makeAsyncIterator()
        let first = try await iterator.next()
        #expect(first == 0)
        let writer = try Tool.start(["_worker", "increment", store.path, "x", "300"])
        var seen: [Int64] = [0]
        while seen.last != 300, let next = try await iterator.next() { seen.append(next) }
        #expect(writer.wait(killingAfter: 30).succeeded)
        #expect(seen.last == 300)
        #expect(zip(seen, seen.dropFirst()).allSatisfy { $0 < $1 }, "not increasing: \(seen)")
    }

    @Test("changes() in another process sees each value this process writes while it sleeps")
    func changesInAnotherProcess() throws {
        let store = try makeStore()
        let x = try store.scalar("x", as: Int64.self)
        let consumer = try Tool.start(["_wait-worker", "changes", store.path, "x", "3"], environment: WaitTests.noRecheck)
        for value in Int64(1)...3 {
            try #require(waitUntilAsleepInChangeWait(consumer.pid, threads: 1), "the consumer never fell asleep before \(value)")
            x.store(value)
        }
        let result = consumer.wait(killingAfter: 30)
        #expect(result.stdout.trimmingCharacters(in: .whitespacesAndNewlines) == "values 0 1 2 3", "\(result)")
    }

    @Test("cancelling the task that iterates changes() ends the iteration within a second, though no value changes")
    func cancellationEndsChanges() throws {
        let store = try makeStore()
        let worker = try Tool.start(["_wait-worker", "cancel", store.path, "x", "stop"], environment: WaitTests.noRecheck)
        // Its main thread waits for "stop"; the sequence's thread waits for "x".
        try #require(waitUntilAsleepInChangeWait(worker.pid, threads: 2))
        try store.scalar("stop", as: Int64.self).store(1)
        let result = worker.wait(killingAfter: 30)
        let words = result.stdout.split(separator: " ")
        #expect(words.count == 4 && words[0] == "ended", "\(result)")
        let microseconds = words.count == 4 ? Int(words[2]) ?? .max : .max
        #expect(microseconds < 1_000_000, "cancellation took \(microseconds) us")
    }

    @Test("close() wakes this process's waiting threads, which throw storeClosed")
    func closeWakesWaiters() throws {
        let store = try makeStore()
        let x = try store.scalar("x", as: Int64.self)
        let core = store.core
        let outcome = BlockingThread.run { () throws(SlotStoreError) -> Int64 in try x.wait(untilChangedFrom: 0, timeout: .seconds(30)) }
        try #require(waitUntilAsleepInChangeWait(getpid(), threads: 1, on: core))
        let start = ContinuousClock.now
        store.close()
        #expect(throws: SlotStoreError.storeClosed(path: store.path)) { try outcome.result() }
        #expect(ContinuousClock.now - start < .seconds(3))
        #expect(throws: SlotStoreError.storeClosed(path: store.path)) { try x.wait(untilChangedFrom: 0, timeout: .seconds(1)) }
    }

    @Test("a timeout returns the value known; .zero only checks")
    func timeouts() throws {
        let store = try makeStore()
        let x = try store.scalar("x", as: Int64.self)
        let s = try store.string("s")
        let start = ContinuousClock.now
        #expect(try x.wait(untilChangedFrom: 0, timeout: .milliseconds(120)) == 0)
        #expect(ContinuousClock.now - start >= .milliseconds(120))
        #expect(try x.wait(untilChangedFrom: 5, timeout: .zero) == 0)
        #expect(try s.wait(untilChangedFrom: "", timeout: .zero) == "")
        let map = try store.map("m", key: String.self, value: Int64.self)
        #expect(try map.wait(for: "k", untilChangedFrom: 1, timeout: .zero) == nil)
        #expect(try map.wait(for: "k", untilChangedFrom: nil, timeout: .zero) == nil)
        let mark = try store.changeMark()
        #expect(try store.wait(untilChangedFrom: mark, timeout: .zero) == mark)
        x.store(1)
        #expect(try store.wait(untilChangedFrom: mark, timeout: .zero) != mark)
    }

    @Test("floating-point values compare as bits: NaN stays NaN, 0.0 to -0.0 is a change")
    func floatingPointBits() throws {
        let value = try SlotStore.value(Double.self, at: directory.file("d.slots"))
        value.store(.nan)
        #expect(try value.wait(untilChangedFrom: .nan, timeout: .zero).isNaN)
        value.store(-0.0)
        #expect(try value.wait(untilChangedFrom: 0.0, timeout: .zero).sign == .minus)
    }

    @Test("the waiter words sit in reserved zero bytes: a file of an earlier format has none set, and writes to it wake nobody")
    func oldFilesHaveNobodyWaiting() throws {
        #expect(MemoryLayout<pthread_mutex_t>.size <= ChangeNotification.lockedChangesOffset)
        #expect(ChangeNotification.waiterMapOffset >= LockRegion.bytes)
        #expect(ChangeNotification.wakeSequenceOffset + 4 <= LockRegion.threadSlotsOffset)
        let fixture = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Fixtures/format-1.0.slots")
        let path = directory.file("old.slots")
        try FileManager.default.copyItem(atPath: fixture.path, toPath: path)
        let store = try SlotStore(path: path)
        let core = store.core
        #expect(core.waiterMapWord(0).pointee.load(ordering: .relaxed) == 0)
        #expect(core.waiterMapWord(1).pointee.load(ordering: .relaxed) == 0)
        #expect(core.wakeSequence.pointee.load(ordering: .relaxed) == 0)
        try store.scalar("requests", as: Int64.self).add(1)
        try store.transaction { _ in }
        #expect(core.wakeSequence.pointee.load(ordering: .relaxed) == 0)
    }
}

/// Waits (polling, bounded at 10 s) until `threads` threads of process `pid`
/// sleep in a change wait: a shared `FUTEX_WAIT` (op 0) on a word at offset
/// 184 of a page, the wake sequence's place in a page-aligned lock region
/// (in this process: on `core`'s wake sequence itself, since other tests'
/// waiters run here too). What `/proc/PID/task/TID/syscall` says, exactly.
func waitUntilAsleepInChangeWait(_ pid: Int32, threads: Int, on core: StoreCore? = nil) -> Bool {
    let exact = core.map { UInt64(UInt(bitPattern: UnsafeRawPointer($0.wakeSequence))) }
    #if arch(x86_64)
    let futex = "202"
    #else
    let futex = "98"
    #endif
    for _ in 0..<20_000 {
        let tasks = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/task")) ?? []
        var asleep = 0
        for task in tasks {
            guard let text = try? String(contentsOfFile: "/proc/\(pid)/task/\(task)/syscall", encoding: .utf8) else { continue }
            let words = text.split(separator: " ")
            guard words.count > 3, words[0] == futex, words[2] == "0x0",
                  let address = UInt64(words[1].dropFirst(2), radix: 16),
                  exact.map({ address == $0 }) ?? (address & 0xFFF == UInt64(ChangeNotification.wakeSequenceOffset))
            else { continue }
            asleep += 1
        }
        if asleep >= threads { return true }
        usleep(500)
    }
    return false
}

extension Tool.Running {
    /// Waits for the process, SIGKILLing it first if it runs `seconds` more:
    /// a waiter that misses its wake would otherwise hang the test.
    func wait(killingAfter seconds: Double) -> ProcessResult {
        let process = self.process
        let deadline = DispatchWorkItem {
            if process.isRunning { kill(process.processIdentifier, SIGKILL) }
        }
        DispatchQueue.global().asyncAfter(deadline: .now() + seconds, execute: deadline)
        let result = wait()
        deadline.cancel()
        return result
    }
}

/// A blocking call run on a thread of its own, for tests that act while it blocks.
final class BlockingThread<T: Sendable>: @unchecked Sendable {
    private var outcome: Result<T, SlotStoreError>?
    private let done = DispatchSemaphore(value: 0)

    static func run(_ body: @escaping @Sendable () throws(SlotStoreError) -> T) -> BlockingThread {
        let thread = BlockingThread()
        Thread.detachNewThread {
            thread.outcome = Result { () throws(SlotStoreError) in try body() }
            thread.done.signal()
        }
        return thread
    }

    /// Waits for the call (at most 60 s) and returns what it returned.
    func result() throws(SlotStoreError) -> T {
        guard done.wait(timeout: .now() + 60) == .success, let outcome else {
            throw .invalidValue(path: "-", field: "-", detail: "the blocking call did not return within 60 s")
        }
        return try outcome.get()
    }
}

/// The README's "Waiting for a change" snippet, as written there (with a temporary path), run.
@Suite("README: waiting for a change", .timeLimit(.minutes(5)))
struct WaitReadmeTests {
    let directory = TemporaryDirectory()

    @Test("the README snippet compiles and runs")
    func readmeSnippet() async throws {
        let config = try SlotStore(path: directory.file("config.slots"), schema: Schema(version: 1, fields: [
            .int64("config_version"), .string("motd", capacity: 128),
        ]))
        let configVersion = try config.scalar("config_version", as: Int64.self)
        let banner = try config.string("motd")

        // On a worker thread: sleep until another process bumps the version, at most 5 s.
        var known = configVersion.load()
        configVersion.add(1)  // (another process, in the README)
        let seen = try configVersion.wait(untilChangedFrom: known, timeout: .seconds(5))
        if seen != known {
            known = seen  // reload the configuration here
        }
        #expect(known == 1)

        // In Swift concurrency: the value now, then each new one; cancelling the task ends the loop.
        let watcher = Task {
            for try await text in banner.changes() {
                print("motd:", text)
            }
        }
        watcher.cancel()
        try await watcher.value
    }
}
