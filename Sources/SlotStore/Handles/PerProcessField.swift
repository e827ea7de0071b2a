import Synchronization

/// A handle to a per-process field: each process writes its own
/// contribution, lock-free, and a read gives the aggregate of all of them
/// (see ``PerProcessAggregate``).
///
/// Get one once with ``SlotStore/perProcess(_:as:)``; every write after that
/// is one atomic instruction on this process's own slot (a cache line no
/// other process writes), as cheap as a ``ScalarField``'s. ``load()`` reads
/// every slot, so it costs more than a plain scalar's load.
///
/// ```swift
/// let inflight = try store.perProcess("inflight", as: Int64.self)
/// inflight.add(1)
/// defer { inflight.add(-1) }  // a worker killed before this runs leaks nothing
/// ```
///
/// If another process compacts the store in place, the handle's next call
/// carries on in the new file, and this process's contribution with it.
/// After `fork()`, a child writes a slot of its own, never its parent's.
public struct PerProcessField<Value: SlotScalar>: Sendable, FieldHandle {
    @usableFromInline let gate: LockFreeGate
    /// This process's contribution (the shared value for mostRecent).
    @usableFromInline let word: MappedAddress
    /// Its has-value word, written once (max and min only; nil otherwise).
    @usableFromInline let marks: MappedAddress?
    @usableFromInline let fieldIndex: Int
    @usableFromInline let reference: FieldReference

    @usableFromInline
    init(reference: FieldReference) {
        self.reference = reference
        self.fieldIndex = reference.layout.index
        self.gate = reference.core.gate
        let words = reference.core.contributionWords(reference.layout)
        self.word = words.value
        let aggregate = reference.layout.perProcess
        self.marks = aggregate == .max || aggregate == .min ? words.hasValue : nil
    }

    /// The field's name.
    public var name: String { reference.layout.name }

    /// How the contributions add up.
    public var aggregate: PerProcessAggregate { reference.layout.perProcess ?? .sum }

    /// The aggregate of every process's contribution and of those folded in
    /// from processes that are gone. Reads every slot; writes nothing.
    public func load() -> Value {
        var target = (reference.core, reference.layout)
        if reference.core.gate.isRetired || !reference.core.isAttachedHere, let live = try? reference.live() {
            target = (live.core, live.layout)
        }
        let bits = (try? target.0.readAggregate(target.1)) ?? target.0.processSlotWords(target.1).aggregateBits()
        return Value(_slotBits: bits)
    }

    /// This process's own contribution (for mostRecent, the shared value).
    public var contribution: Value {
        // A forked child's own slot is in the engine it opened, not the inherited one.
        if _fastPath(!gate.isRetired && reference.core.isAttachedHere) { return word.loadScalar(Value.self) }
        return FieldReference.readLockFree(reference.session, reference.core, field: fieldIndex) { words in words.payload.loadScalar(Value.self) }
    }

    /// Replaces this process's contribution (for mostRecent, the value every process reads).
    @inlinable @inline(__always)
    public func store(_ value: Value) {
        if let marker = gate.enter() {
            word.storeScalar(value)
            if let marks { PerProcessField.mark(marks) }
            return gate.leave(marker)
        }
        FieldReference.writeLockFree(reference.session, reference.core, field: fieldIndex) { words in
            words.payload.storeScalar(value)
            PerProcessField.mark(words.elementWrites, if: words.marksValue)
        }
    }

    /// Records that the slot holds a value: a plain store the first time
    /// only, so later writes pay one load of their own line.
    @inlinable @inline(__always)
    static func mark(_ word: MappedAddress, if marking: Bool = true) {
        guard marking else { return }
        let flag = word.atomic(UInt64.self)
        if flag.pointee.load(ordering: .relaxed) == 0 { flag.pointee.store(1, ordering: .releasing) }
    }
}

extension PerProcessField where Value: SlotInteger {
    /// Adds `delta` (negative to subtract) to this process's contribution,
    /// wrapping around on overflow, and returns the contribution after it.
    @inlinable @inline(__always) @discardableResult
    public func add(_ delta: Value) -> Value {
        if let marker = gate.enter() {
            defer { gate.leave(marker) }
            if let marks { PerProcessField.mark(marks) }
            return word.addScalar(delta)
        }
        return FieldReference.writeLockFree(reference.session, reference.core, field: fieldIndex) { words in
            PerProcessField.mark(words.elementWrites, if: words.marksValue)
            return words.payload.addScalar(delta)
        }
    }
}

extension PerProcessField where Value: BinaryFloatingPoint {
    /// Adds `delta` to this process's contribution (a compare-exchange loop)
    /// and returns the contribution after it.
    @inlinable @discardableResult
    public func add(_ delta: Value) -> Value {
        if let marker = gate.enter() {
            defer { gate.leave(marker) }
            if let marks { PerProcessField.mark(marks) }
            return ScalarField<Value>.add(delta, to: word)
        }
        return FieldReference.writeLockFree(reference.session, reference.core, field: fieldIndex) { words in
            PerProcessField.mark(words.elementWrites, if: words.marksValue)
            return ScalarField<Value>.add(delta, to: words.payload)
        }
    }
}
