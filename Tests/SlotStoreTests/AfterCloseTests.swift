import Foundation
import Synchronization
import Testing
@testable import SlotStore

/// Every throwing call on a closed store throws `storeClosed` instead of
/// touching the unmapped file (an outside client crashed with SIGSEGV in
/// `transaction`, `setValue`, `values()`, handle lookups, `refresh()`,
/// `sync()` and `status`).
@Suite("calls after close()")
struct AfterCloseTests {
    static let schema = Schema(version: 1, fields: [
        .int64("n"), .array("a", of: .int64, count: 4), .string("s", capacity: 32), .bytes("b", capacity: 16),
        .map("m", key: .string(capacity: 16), value: .scalar(.int64), capacity: 8),
    ])

    func expectClosed<R>(_ what: String, _ call: () throws -> R, sourceLocation: SourceLocation = #_sourceLocation) {
        do {
            _ = try call()
            Issue.record("\(what) after close() returned instead of throwing", sourceLocation: sourceLocation)
        } catch let error as SlotStoreError {
            guard case .storeClosed(let path) = error else {
                Issue.record("\(what) after close() threw \(error), not storeClosed", sourceLocation: sourceLocation)
                return
            }
            #expect(!path.isEmpty, sourceLocation: sourceLocation)
        } catch {
            Issue.record("\(what) after close() threw \(error)", sourceLocation: sourceLocation)
        }
    }

    @Test("every throwing call throws storeClosed, and another store object at the path keeps working")
    func throwingCallsAfterClose() throws {
        let directory = TemporaryDirectory()
        let path = directory.file("closed.slots")
        let store = try SlotStore(path: path, schema: AfterCloseTests.schema)
        let other = try SlotStore(path: path)
        defer { other.close() }
        let n = try store.scalar("n", as: Int64.self)
        let s = try store.string("s")
        let b = try store.bytes("b")
        let a = try store.array("a", of: Int64.self)
        let m = try store.map("m", key: String.self, value: Int64.self)
        try s.store("before")
        store.close()
        store.close()  // a second close is harmless

        expectClosed("transaction") { try store.transaction { tx in try tx.store(1, to: n) } }
        expectClosed("setValue") { try store.setValue(FieldValue.int(1), for: "n") }
        expectClosed("setValue(at:)") { try store.setValue(FieldValue.int(1), for: "a", at: 0) }
        expectClosed("setValues") { try store.setValues(["n": FieldValue.int(1)]) }
        expectClosed("add") { try store.add(FieldValue.int(1), to: "n") }
        expectClosed("values()") { try store.values() }
        expectClosed("value(of:)") { try store.value(of: "n") }
        expectClosed("value(of:at:)") { try store.value(of: "a", at: 1) }
        expectClosed("scalar(_:as:)") { try store.scalar("n", as: Int64.self) }
        expectClosed("array(_:of:)") { try store.array("a", of: Int64.self) }
        expectClosed("string(_:)") { try store.string("s") }
        expectClosed("bytes(_:)") { try store.bytes("b") }
        expectClosed("map(_:key:value:)") { try store.map("m", key: String.self, value: Int64.self) }
        expectClosed("refresh()") { try store.refresh() }
        expectClosed("sync()") { try store.sync() }
        expectClosed("status") { try store.status }
        expectClosed("string store") { try s.store("after") }
        expectClosed("bytes store") { try b.store([1, 2, 3]) }
        expectClosed("whole-array store") { try a.store([1, 2, 3, 4]) }
        expectClosed("map set") { try m.set(1, for: "k") }

        // Nothing reached the file, and the other object is unaffected.
        #expect(try other.string("s").load() == "before")
        try other.string("s").store("still fine")
        #expect(try other.string("s").load() == "still fine")
    }

    @Test("close() while threads keep taking the lock: each finishes its write or gets storeClosed, none touches the unmapped file")
    func closeUnderLockTraffic() throws {
        for round in 0..<20 {
            let directory = TemporaryDirectory()
            let store = try SlotStore(path: directory.file("traffic.slots"), schema: AfterCloseTests.schema)
            let text = try store.string("s")
            let n = try store.scalar("n", as: Int64.self)
            let writes = Atomic<Int>(0)
            let started = DispatchSemaphore(value: 0)
            let finished = DispatchGroup()
            let outcomes = LockedState<[String]>([])  // a pthread mutex: TSan sees it
            for thread in 0..<4 {
                finished.enter()
                Thread {
                    started.signal()
                    var outcome = "never refused"
                    while true {
                        do {
                            if thread % 2 == 0 { try text.store("t\(thread)") } else { try store.transaction { tx in try tx.store(tx.load(n) + 1, to: n) } }
                            writes.add(1, ordering: .relaxed)
                        } catch SlotStoreError.storeClosed {
                            outcome = "storeClosed"
                            break
                        } catch {
                            outcome = "\(error)"
                            break
                        }
                    }
                    outcomes.withLock { $0.append(outcome) }
                    finished.leave()
                }.start()
            }
            for _ in 0..<4 { started.wait() }
            while writes.load(ordering: .relaxed) < 200 * (round + 1) % 1000 + 50 { sched_yield() }
            store.close()
            finished.wait()
            #expect(outcomes.withLock { $0 } == Array(repeating: "storeClosed", count: 4), "round \(round)")
        }
    }
}
