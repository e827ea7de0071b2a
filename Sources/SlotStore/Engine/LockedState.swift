import Foundation

/// State behind a pthread mutex (NSLock), for the engine's process-local
/// bookkeeping (a session's engines, a store's thread slots, the schema cache).
///
/// Not Synchronization's `Mutex`, for two reasons found by testing: it traps
/// ("unlock on a thread which hasn't acquired the lock") in the grandchild of
/// a forked child that had used a store, when that grandchild re-attaches;
/// and ThreadSanitizer can't see its futex, so it reports false races. A
/// plain pthread mutex has neither problem.
final class LockedState<State>: @unchecked Sendable {
    private var state: State
    private let lock = NSLock()

    init(_ state: State) { self.state = state }

    func withLock<R, E: Error>(_ body: (inout State) throws(E) -> R) throws(E) -> R {
        lock.lock()
        defer { lock.unlock() }
        return try body(&state)
    }
}
