import Foundation
import Glibc
import Testing
@testable import SlotStore

/// A `changes()` sequence and `close()`: its next value after the store closed
/// is `storeClosed`, never a read of the unmapped file (found by the outside
/// attack: SIGSEGV in `ScalarField.load()` from the iterator).
@Suite("Change sequences and close()", .serialized, .timeLimit(.minutes(5)))
struct ChangesAfterCloseTests {
    let directory = TemporaryDirectory()

    static let schema = Schema(version: 1, fields: [
        .int64("a"), .string("s", capacity: 16), .bytes("b", capacity: 16), .array("r", of: .int64, count: 4),
        .map("m", key: .string(capacity: 8), value: .scalar(.int64), capacity: 8),
    ])

    /// Runs `next()` once and says whether it threw `storeClosed`.
    static func nextThrowsClosed<S: AsyncSequence>(_ sequence: S) async -> Bool where S.Failure == SlotStoreError {
        var iterator = sequence.makeAsyncIterator()
        do {
            _ = try await iterator.next(isolation: nil)
            return false
        } catch .storeClosed {
            return true
        } catch {
            return false
        }
    }

    @Test("a sequence first iterated after close() throws storeClosed, for every handle kind")
    func firstNextAfterClose() async throws {
        let store = try SlotStore(path: directory.file("closed.slots"), schema: Self.schema)
        let a = try store.scalar("a", as: Int64.self), s = try store.string("s"), b = try store.bytes("b")
        let r = try store.array("r", of: Int64.self), m = try store.map("m", key: String.self, value: Int64.self)
        let sequences = (a.changes(), s.changes(), b.changes(), r.changes(), m.changes(for: "k"))
        store.close()
        #expect(await Self.nextThrowsClosed(sequences.0))
        #expect(await Self.nextThrowsClosed(sequences.1))
        #expect(await Self.nextThrowsClosed(sequences.2))
        #expect(await Self.nextThrowsClosed(sequences.3))
        #expect(await Self.nextThrowsClosed(sequences.4))
    }

    @Test("close() while a changes() loop follows a busy writer in another process: the loop ends, nothing crashes")
    func closeDuringLoop() async throws {
        let path = directory.file("busy.slots")
        _ = try SlotStore(path: path, schema: Self.schema)
        let writer = try Tool.start(["_worker", "increment", path, "a", "2000000000"])
        defer { kill(writer.pid, SIGKILL); _ = writer.wait() }
        for _ in 0..<20 {
            let store = try SlotStore(path: path)
            let a = try store.scalar("a", as: Int64.self)
            let started = AsyncStream<Void>.makeStream()
            let loop = Task { () -> Int in
                var seen = 0
                do {
                    for try await _ in a.changes() {
                        seen += 1
                        if seen == 1 { started.continuation.yield() }
                    }
                } catch {
                    #expect(error as? SlotStoreError == .storeClosed(path: path))
                }
                return seen
            }
            for await _ in started.stream { break }
            store.close()
            let seen = await loop.value
            #expect(seen >= 1)
        }
    }
}
