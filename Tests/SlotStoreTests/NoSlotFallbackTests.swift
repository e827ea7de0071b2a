import Foundation
import Glibc
import Synchronization
import Testing
@testable import SlotStore

/// A lock-free write from a thread that finds every thread slot taken goes
/// under the lock instead, so a compaction in place can't lose it. When the
/// lock is held longer than the lock timeout, it keeps waiting: it used to
/// give up and write with neither a slot nor the lock.
@Suite("lock-free writes without a thread slot", .timeLimit(.minutes(5)))
struct NoSlotFallbackTests {
    @Test("with every slot taken and the lock held past the timeout, an add waits for the lock, then lands")
    func addWaitsForTheLock() throws {
        let directory = TemporaryDirectory()
        let path = directory.file("noslot.slots")
        let store = try SlotStore(path: path, schema: Schema(version: 1, fields: [.int64("n")]),
                                  options: OpenOptions(lockTimeout: .milliseconds(100)))
        defer { store.close() }
        let counter = try store.scalar("n", as: Int64.self)
        // Another open file description takes every thread slot, as other processes' threads would.
        let slots = LockRegion.threadSlotCount(lockSize: store.core.layout.lockSize)
        let fd = open(path, O_RDWR | O_CLOEXEC)
        #expect(fd >= 0)
        defer { close(fd) }
        // (The store's own open holds one already: its attachment slot.)
        let claimed = (0..<slots).filter { OpenGate.tryClaimByte(fd, LockRegion.threadSlotLockBase + $0) }.count
        #expect(claimed >= slots - 2, "only \(claimed) of \(slots) slots were free")

        let holder = try Tool.Holder(["_worker", "hold-lock", path])
        let done = DispatchSemaphore(value: 0)
        // A new thread: no slot cached, none free, so its add takes the lock path.
        Thread {
            counter.add(1)
            done.signal()
        }.start()
        // Nothing to wait on for "has not happened": a bounded wait, ten lock timeouts long.
        let returnedEarly = done.wait(timeout: .now() + .seconds(1)) == .success
        #expect(!returnedEarly, "the add returned while another process held the lock")
        #expect(counter.load() == 0, "the add wrote without the lock or a slot")
        holder.kill()
        if !returnedEarly { done.wait() }
        #expect(counter.load() == 1)
    }
}
