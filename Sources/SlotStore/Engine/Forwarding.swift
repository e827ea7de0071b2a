import Synchronization

/// Where a retired file's fields are in the live file: for handles resolved
/// before a compaction in place (or a map growth, which is one), so that
/// their every call after it costs a few loads, not a lookup by name.
///
/// A handle keeps the engine it was resolved in; once that file is retired,
/// each call goes the slow way through its session. Looking the field up by
/// name there (hashing the name, copying the field's layout, checking its
/// type) took 400 ns for an `add` and 4 µs for a string store, forever after
/// the first compaction, for every handle a service resolved at start. So a
/// retired engine keeps this table: the live engine, and for each of its
/// field numbers the field's number there (-1 when the live file has no
/// such field, or one a handle can't switch to). `StoreSession.follow()`
/// fills it, under the session's lock, whenever it switches to a new file;
/// readers take no lock: a sequence word around the plain atomic words
/// makes them retry a read that overlapped a refill.
final class Forwarding: @unchecked Sendable {
    private let sequence = Atomic<UInt64>(0)
    /// The live engine's address; 0 until the first fill. The session keeps
    /// every engine alive until it closes, so an unretained address is valid.
    private let live = Atomic<UInt>(0)
    private let fieldNumbers: UnsafeMutablePointer<Atomic<Int>>
    private let fieldCount: Int

    init(fieldCount: Int) {
        self.fieldCount = fieldCount
        fieldNumbers = .allocate(capacity: max(fieldCount, 1))
        for index in 0..<max(fieldCount, 1) { (fieldNumbers + index).initialize(to: Atomic(-1)) }
    }

    deinit {
        fieldNumbers.deinitialize(count: max(fieldCount, 1))
        fieldNumbers.deallocate()
    }

    /// Points the table at `core`: `numbers[i]` is field `i`'s number there, or -1.
    /// Call with the session's lock held (one writer at a time).
    func fill(live core: StoreCore, numbers: [Int]) {
        let begun = sequence.load(ordering: .relaxed)
        sequence.store(begun &+ 1, ordering: .relaxed)
        atomicMemoryFence(ordering: .releasing)
        live.store(UInt(bitPattern: Unmanaged.passUnretained(core).toOpaque()), ordering: .relaxed)
        for (index, number) in numbers.prefix(fieldCount).enumerated() {
            fieldNumbers[index].store(number, ordering: .relaxed)
        }
        sequence.store(begun &+ 2, ordering: .releasing)
    }

    /// The live engine and field `index`'s number there, or nil when the table
    /// was never filled, doesn't know the field, or that engine is retired too.
    func lookUp(_ index: Int) -> (StoreCore, Int)? {
        guard index >= 0, index < fieldCount else { return nil }
        while true {
            let begun = sequence.load(ordering: .acquiring)
            if begun & 1 != 0 { continue }
            let bits = live.load(ordering: .relaxed)
            let number = fieldNumbers[index].load(ordering: .relaxed)
            atomicMemoryFence(ordering: .acquiring)
            guard sequence.load(ordering: .relaxed) == begun else { continue }
            guard bits != 0, number >= 0, let address = UnsafeRawPointer(bitPattern: bits) else { return nil }
            let core = Unmanaged<StoreCore>.fromOpaque(address).takeUnretainedValue()
            guard !core.gate.isRetired, core.isAttachedHere else { return nil }
            return (core, number)
        }
    }
}
