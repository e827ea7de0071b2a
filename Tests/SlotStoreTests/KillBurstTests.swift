import Foundation
import Glibc
import Testing
@testable import SlotStore

/// Kill bursts: several processes killed milliseconds apart while the rest
/// contend for the lock. glibc's robust mutex can lose a wake-up here (the
/// kernel wakes one waiter when a holder dies; if that waiter is killed too
/// before it takes the lock, the lock is free and nobody wakes the other
/// sleepers), so a waiter that slept through its whole timeout would throw
/// `lockTimeout` on a free lock. Transactions here hold the lock for about
/// 100 µs at most, so any `lockTimeout` within a second is such a lost wake-up.
@Suite("kill bursts", .serialized, .timeLimit(.minutes(5)))
struct KillBurstTests {
    static let schema = Schema(version: 1, fields: [.int64("n"), .int64("timeouts"), .int64("round"), .int64("parked")])

    @Test("no lockTimeout on a free lock after bursts of SIGKILLs")
    func noLostWakeUpAfterKillBursts() throws {
        let directory = TemporaryDirectory()
        let path = directory.file("bursts.slots")
        let store = try SlotStore(path: path, schema: KillBurstTests.schema)
        defer { store.close() }
        let round = try store.scalar("round", as: Int64.self)
        let parked = try store.scalar("parked", as: Int64.self)
        let workerCount = 5
        let rounds = ProcessInfo.processInfo.environment["SLOTSTORE_KILL_BURST_ROUNDS"].flatMap(Int.init) ?? 200
        var random = SeededRandom(state: 2026)
        var nextID = 0
        // A worker is started only between rounds and returns once it is in
        // its loop, so five processes contend whatever the machine's speed.
        func spawn() throws -> Tool.Holder {
            nextID += 1
            return try Tool.Holder(["_worker", "lock-rounds", path, String(nextID), "1000"], marker: "SLOTSTORE-LOOPING")
        }
        var workers = try (0..<workerCount).map { _ in try spawn() }
        var killed = 0
        for number in 0..<Int64(rounds) {
            parked.store(0)
            round.store(2 * number + 1)
            usleep(UInt32(10_000 + random.below(20_000)))  // let them run 10-30 ms: the workload's pace
            var victims = Array(0..<workerCount)
            victims.shuffle(using: &random)
            let burst = victims.prefix(1 + random.below(3))
            for (position, victim) in burst.enumerated() {
                if position > 0 { usleep(UInt32(1_000 + random.below(2_000))) }  // 1-3 ms apart
                kill(workers[victim].pid, SIGKILL)
            }
            // Stop: each survivor finishes its lock attempt and parks. One that
            // lost its wake-up sleeps out its timeout first: that is the failure.
            round.store(2 * number + 2)
            for victim in burst {
                let process = workers[victim].process
                process.waitUntilExit()
                #expect(process.terminationReason == .uncaughtSignal && process.terminationStatus == SIGKILL,
                        "worker \(victim) ended otherwise: status \(process.terminationStatus)")
                killed += 1
            }
            let survivors = Int64(workerCount - burst.count)
            var polls = 0
            while parked.load() < survivors && polls < 10_000 { usleep(500); polls += 1 }  // no event to wait on; bounded
            #expect(parked.load() == survivors, "round \(number): \(parked.load()) of \(survivors) survivors parked")
            for victim in burst { workers[victim] = try spawn() }
        }
        round.store(-1)
        for worker in workers {
            worker.process.waitUntilExit()
            #expect(worker.process.terminationReason == .exit && worker.process.terminationStatus == 0,
                    "a worker failed with status \(worker.process.terminationStatus)")
        }
        let timeouts = try store.scalar("timeouts", as: Int64.self).load()
        #expect(timeouts == 0, "\(timeouts) lockTimeout(s) on a lock no live process held for long")
        let status = try store.status
        #expect(status.recoveries > 0, "some kills hit a lock holder, whose write was rolled back")
        // The lock is usable at once afterwards.
        let n = try store.scalar("n", as: Int64.self)
        try store.transaction { tx in try tx.store(tx.load(n) + 1, to: n) }
        print("kill bursts: \(rounds) rounds, \(killed) processes killed, \(status.recoveries) recoveries, \(timeouts) lock timeouts")
    }
}
