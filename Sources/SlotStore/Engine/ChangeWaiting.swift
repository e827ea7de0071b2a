import CSlotStore
import Glibc
import Synchronization

/// The threads of this process waiting in one engine's file, so that
/// ``StoreCore/close()`` never unmaps the words they sleep on: it wakes them
/// and waits until each has left.
final class ChangeWaiters: Sendable {
    private struct State {
        var active = 0
        var closed = false
    }

    private let state = LockedState(State())

    /// Counts the calling thread in; throws `storeClosed` once ``close(_:)`` began.
    func enter(_ core: StoreCore) throws(SlotStoreError) {
        try state.withLock { state throws(SlotStoreError) in
            guard !state.closed else { throw .storeClosed(path: core.path) }
            state.active += 1
        }
    }

    func leave() {
        state.withLock { $0.active -= 1 }
    }

    /// Wakes every sleeper of the file unless it is closing (its mapping may
    /// be gone): cancellation's way to end one thread's sleep.
    func wakeAll(_ core: StoreCore) {
        state.withLock { state in
            guard !state.closed else { return }
            ChangeNotification.wakeAll(sequence: core.lock.base.advanced(by: ChangeNotification.wakeSequenceOffset))
        }
    }

    /// Refuses new waiters, wakes the sleeping ones and waits until every one
    /// has left (each leaves within microseconds of its wake).
    func close(_ core: StoreCore) {
        let sleeping = state.withLock { state in
            state.closed = true
            return state.active
        }
        guard sleeping > 0 else { return }
        ChangeNotification.wakeAll(sequence: core.lock.base.advanced(by: ChangeNotification.wakeSequenceOffset))
        while state.withLock({ $0.active }) > 0 {
            // A woken waiter still has to be scheduled; nothing to sleep on
            // but its exit, which takes microseconds.
            var pause = timespec(tv_sec: 0, tv_nsec: 50_000)
            nanosleep(&pause, nil)
        }
    }
}

/// Ends the sleep of a thread waiting on behalf of a cancelled task.
final class WaitCancellation: Sendable {
    private struct State {
        var cancelled = false
        var sleepingIn: StoreCore?
    }

    private let state = LockedState(State())

    /// Records the file the waiting thread is about to sleep in; whether the wait is cancelled.
    func isCancelled(sleepingIn core: StoreCore) -> Bool {
        state.withLock { state in
            state.sleepingIn = core
            return state.cancelled
        }
    }

    /// Marks the wait cancelled and wakes the file its thread sleeps in.
    ///
    /// The wake moves the file's wake sequence, so a thread that read the
    /// sequence before this and checked the flag before it was set can't
    /// fall asleep: its `futex_wait` finds the word changed. Every other
    /// sleeper of the file wakes too, re-checks, and sleeps again.
    func cancel() {
        let core = state.withLock { state in
            state.cancelled = true
            return state.sleepingIn
        }
        core?.waiters.wakeAll(core!)
    }
}

/// What a waiter watches: one field, or every field of the store.
struct WaitTarget {
    let session: StoreSession?
    var core: StoreCore
    /// The field's layout in ``core``; nil for the whole store.
    var field: FieldLayout?

    /// The waiter's bits in the map words: one field's bit, or all of them.
    var bits: (UInt64, UInt64) {
        guard let field else { return (.max, .max) }
        let bit = ChangeNotification.waiterBit(field: field.index)
        return (field.index >> 6) & 1 == 0 ? (bit, 0) : (0, bit)
    }

    /// Whether the file was compacted in place (or this is a fork() child's
    /// inherited engine); read only while counted in ``StoreCore/waiters``,
    /// so the mapping is there.
    var needsFollowing: Bool { session != nil && (core.gate.isRetired || !core.isAttachedHere) }

    /// Moves to the live file.
    mutating func follow() throws(SlotStoreError) {
        guard let session else { return }
        let live = try session.live(after: core)
        if let field { self.field = try session.resolve(field, in: live) }
        core = live
    }
}

extension StoreCore {
    /// How long a wait for `timeout` lasts, in nanoseconds (saturating).
    static func nanoseconds(_ timeout: Duration) -> Int64 {
        let (seconds, attoseconds) = timeout.components
        guard seconds >= 0 else { return 0 }
        guard seconds < Int64.max / 1_000_000_000 - 1 else { return .max }
        return seconds * 1_000_000_000 + attoseconds / 1_000_000_000
    }

    /// Blocks until `changed` returns a value, `timeout` passes (nil), or
    /// `cancellation` fires (nil). `changed` is the truth: it compares the
    /// current value with the one the caller knows. A wake only makes it run
    /// sooner, so a spurious wake costs one check and a lost one at most
    /// ``ChangeNotification/recheckNanoseconds``.
    static func waitForChange<T>(_ target: WaitTarget, timeout: Duration, cancellation: WaitCancellation? = nil,
                                 _ changed: () throws(SlotStoreError) -> T?) throws(SlotStoreError) -> T? {
        let limit = nanoseconds(timeout)
        let started = Int64(bitPattern: monotonicNanoseconds())
        let deadline = limit > Int64.max - started ? Int64.max : started + limit
        var target = target
        // The file and wake sequence this waiter last registered at: until the
        // sequence moves, nobody has cleared its bits (see ChangeNotification).
        var registered: (core: ObjectIdentifier, sequence: UInt32)?
        while true {
            let core = try enterLive(&target)
            defer { core.waiters.leave() }
            let sequence = core.wakeSequence.pointee.load(ordering: .acquiring)
            if let cancellation, cancellation.isCancelled(sleepingIn: core) { return nil }
            if registered?.core != ObjectIdentifier(core) || registered?.sequence != sequence {
                let (low, high) = target.bits
                if low != 0 { core.waiterMapWord(0).pointee.bitwiseOr(low, ordering: .sequentiallyConsistent) }
                if high != 0 { core.waiterMapWord(1).pointee.bitwiseOr(high, ordering: .sequentiallyConsistent) }
                ChangeNotification.fullBarrierEverywhere()
                registered = (ObjectIdentifier(core), sequence)
            }
            if let value = try changed() { return value }
            let remaining = deadline - Int64(bitPattern: monotonicNanoseconds())
            guard remaining > 0 else { return nil }
            let word = UnsafeMutableRawPointer(core.wakeSequence).assumingMemoryBound(to: UInt32.self)
            _ = slotstore_futex_wait(word, sequence, min(remaining, ChangeNotification.recheckNanoseconds))
        }
    }
}

extension StoreCore {
    /// `read` while counted in the live file's waiters, following a
    /// compaction first: a change sequence's first read of each `next()`,
    /// which a concurrent `close()` must not unmap under (it waits for
    /// counted threads, and refuses new ones with `storeClosed`).
    static func readCounted<T>(_ reference: FieldReference, _ read: () throws(SlotStoreError) -> T) throws(SlotStoreError) -> T {
        var target = WaitTarget(session: reference.session, core: reference.core, field: reference.layout)
        let core = try enterLive(&target)
        defer { core.waiters.leave() }
        return try read()
    }

    /// Counts the calling thread in the waiters of `target`'s file, following
    /// compactions first, and returns that file's engine; the caller leaves
    /// its `waiters` when done. Counted in before the first touch of the
    /// mapping, so close() waits for it (or refuses it with `storeClosed`).
    static func enterLive(_ target: inout WaitTarget) throws(SlotStoreError) -> StoreCore {
        while true {
            try target.core.waiters.enter(target.core)
            guard target.needsFollowing else { return target.core }
            target.core.waiters.leave()
            try target.follow()
        }
    }
}

/// Runs a blocking wait on a thread of its own, so an `AsyncSequence` of
/// changes never blocks Swift's cooperative pool (two threads on a
/// two-core machine) while it waits; a cancelled task wakes the thread.
enum BlockingWait {
    /// The thread's entry: a retained box holding its work.
    private final class Work {
        let run: () -> Void
        init(_ run: @escaping () -> Void) { self.run = run }
    }

    /// Starts `body` on a new detached thread; false when the system refused one.
    static func startThread(_ body: @escaping @Sendable () -> Void) -> Bool {
        let work = Unmanaged.passRetained(Work(body)).toOpaque()
        var attributes = pthread_attr_t()
        pthread_attr_init(&attributes)
        defer { pthread_attr_destroy(&attributes) }
        pthread_attr_setdetachstate(&attributes, CInt(PTHREAD_CREATE_DETACHED))
        // The check reads a value (a snapshot at most): a small stack will do.
        pthread_attr_setstacksize(&attributes, 512 * 1024)
        var thread = pthread_t()
        let code = pthread_create(&thread, &attributes, { raw in
            guard let raw else { return nil }
            Unmanaged<Work>.fromOpaque(raw).takeRetainedValue().run()
            return nil
        }, work)
        if code != 0 {
            Unmanaged<Work>.fromOpaque(work).release()
            return false
        }
        return true
    }

    /// Runs `wait` (a blocking wait that returns nil when cancelled) on a
    /// thread of its own and suspends until it returns; cancelling the task
    /// ends the wait within microseconds. If no thread can be started, waits
    /// in re-check slices on the task instead, calling `wait` with a zero timeout.
    static func run<T: Sendable>(_ wait: @escaping @Sendable (WaitCancellation?, Duration) throws(SlotStoreError) -> T?)
        async throws(SlotStoreError) -> T? {
        let cancellation = WaitCancellation()
        let outcome: Result<T?, SlotStoreError>? = await withTaskCancellationHandler {
            await withCheckedContinuation { (continuation: CheckedContinuation<Result<T?, SlotStoreError>?, Never>) in
                let started = startThread {
                    continuation.resume(returning: Result { () throws(SlotStoreError) in
                        try wait(cancellation, .seconds(Int64.max / 1_000_000_000))
                    })
                }
                if !started { continuation.resume(returning: nil) }
            }
        } onCancel: {
            cancellation.cancel()
        }
        if let outcome { return try outcome.get() }
        while !Task.isCancelled {
            if let value = try wait(nil, .zero) { return value }
            try? await Task.sleep(for: .nanoseconds(ChangeNotification.recheckNanoseconds))
        }
        return nil
    }
}

/// The `AsyncSequence` behind every handle's `changes()`: the value when
/// iteration starts, then each value that differs from the one before it.
struct ChangeSequence<Element: Sendable>: AsyncSequence, Sendable {
    typealias Failure = SlotStoreError

    /// The current value.
    let read: @Sendable () throws(SlotStoreError) -> Element
    /// Blocks until the value differs from the given one (returning it), or
    /// the timeout passes or the cancellation fires (nil).
    let wait: @Sendable (Element, WaitCancellation?, Duration) throws(SlotStoreError) -> Element?
    /// Whether two values are the same (bit for bit, for floating point).
    let same: @Sendable (Element, Element) -> Bool

    func makeAsyncIterator() -> Iterator { Iterator(sequence: self) }

    struct Iterator: AsyncIteratorProtocol {
        let sequence: ChangeSequence
        /// The value returned last; nil before the first (for a map's
        /// `Element`, itself optional, `.some(nil)` is "absent").
        var last: Element?

        mutating func next(isolation actor: isolated (any Actor)?) async throws(SlotStoreError) -> Element? {
            if Task.isCancelled { return nil }
            let current = try sequence.read()
            guard let previous = last, sequence.same(current, previous) else {
                last = current
                return current
            }
            let wait = sequence.wait
            guard let changed = try await BlockingWait.run({ (cancellation, timeout) throws(SlotStoreError) in
                try wait(previous, cancellation, timeout)
            }) else { return nil }
            last = changed
            return changed
        }

        mutating func next() async throws(SlotStoreError) -> Element? {
            try await next(isolation: nil)
        }
    }
}
