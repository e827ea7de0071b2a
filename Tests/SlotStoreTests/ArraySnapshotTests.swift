import Foundation
import Glibc
import Testing
@testable import SlotStore

/// An array snapshot is the array as of one moment, even while other
/// processes store elements lock-free and are preempted in the middle of an
/// element write. The writers are real processes stopped at the
/// `elementWrite` fault point (between an element write's count in the
/// element-write counter and its store; a debug-build hook); the reader is
/// the engine's consistent read, whose copy the test splits in two so the
/// writers act between its first and its last element.
@Suite("Array snapshots", .serialized, .timeLimit(.minutes(5)))
struct ArraySnapshotTests {
    let directory = TemporaryDirectory()

    static let schema = Schema(version: 1, fields: [.array("pair", of: .int64, count: 8)])

    /// A writer process that stores `value` at `index` and stops inside the element write.
    func stoppedWriter(_ path: String, index: Int, value: Int, action: String) throws -> Tool.Holder {
        let writer = try Tool.Holder(["_worker", "set-element", path, "pair", "\(index)", "\(value)"],
                                     environment: ["SLOTSTORE_FAULT": "elementWrite:\(action)"])
        #expect(writer.isHolding, "the writer reached the element write's fault point")
        return writer
    }

    /// The first and last elements, read by the consistent-read loop, with
    /// `between` run once between them on the first attempt.
    func snapshot(_ store: SlotStore, between: () -> Void) throws -> (first: Int64, last: Int64, attempts: Int) {
        let core = store.core
        let field = try #require(core.layout.field(named: "pair"))
        let first = core.address(field.payloadOffset).atomic(Int64.self)
        let last = core.address(field.payloadOffset + 7 * 8).atomic(Int64.self)
        var attempts = 0
        let (a, b) = try core.readConsistently(field, checkingElementWrites: true) { () -> (Int64, Int64) in
            attempts += 1
            let a = first.pointee.load(ordering: .relaxed)
            if attempts == 1 { between() }
            return (a, last.pointee.load(ordering: .relaxed))
        }
        return (a, b, attempts)
    }

    @Test("two writers preempted inside their element writes during a snapshot don't make it mix an old and a newer element")
    func preemptedWriters() throws {
        let path = directory.file("pair.slots")
        let store = try SlotStore(path: path, schema: Self.schema)
        var writers: [Tool.Holder] = []
        defer { for writer in writers { writer.kill() } }
        // X writes pair[0] = 1, then Y writes pair[7] = 1: in memory, pair[7] == 1 only once pair[0] == 1.
        // Both stop inside their writes while the reader is between its first and its last element.
        let result = try snapshot(store) {
            do {
                writers.append(try stoppedWriter(path, index: 0, value: 1, action: "hold"))
                writers.append(try stoppedWriter(path, index: 7, value: 1, action: "hold"))
            } catch {
                Issue.record("could not start the writers: \(error)")
            }
        }
        #expect(!(result.first == 0 && result.last == 1),
                "the snapshot has pair[0] == 0 and pair[7] == 1, a state that never existed (\(result.attempts) attempts)")
    }

    /// The same when the preempted writers resume during the snapshot: each
    /// was counted before the snapshot began, and its store lands inside it.
    /// Counting before the store doesn't close this window (the symmetric
    /// case of the one above); closing it needs an in-flight count, a second
    /// read-modify-write per element store. Kept as a known issue.
    @Test("writers counted before a snapshot whose stores land during it (known issue: counting first doesn't cover it)")
    func resumedWriters() throws {
        let path = directory.file("resumed.slots")
        let store = try SlotStore(path: path, schema: Self.schema)
        let first = try stoppedWriter(path, index: 0, value: 1, action: "wait")
        let second = try stoppedWriter(path, index: 7, value: 1, action: "wait")
        defer { first.kill(); second.kill() }
        let result = try snapshot(store) {
            // X's store lands and X finishes, then Y's.
            kill(first.pid, SIGUSR1)
            first.process.waitUntilExit()
            kill(second.pid, SIGUSR1)
            second.process.waitUntilExit()
        }
        withKnownIssue("a writer counted before the snapshot and stored during it is invisible to the element-write counter", isIntermittent: true) {
            #expect(!(result.first == 0 && result.last == 1),
                    "the snapshot has pair[0] == 0 and pair[7] == 1, a state that never existed (\(result.attempts) attempts)")
        }
        #expect(first.process.terminationStatus == 0 && second.process.terminationStatus == 0)
        #expect(try store.array("pair", of: Int64.self).snapshot() == [1, 0, 0, 0, 0, 0, 0, 1])
    }
}
