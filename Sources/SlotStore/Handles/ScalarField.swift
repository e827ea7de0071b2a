import Synchronization

/// A handle to an integer, floating-point or Boolean field.
///
/// Get one once with ``SlotStore/scalar(_:as:)``; every call after that is a
/// single atomic instruction on the shared mapping: no lookup, no allocation,
/// no lock. Every process sees a store as soon as it returns.
///
/// ```swift
/// let requests = try store.scalar("requests", as: Int64.self)
/// requests.add(1)
/// ```
///
/// If another process compacts the store in place, the handle's next call
/// carries on in the new file (see ``SlotStore/refresh()``).
public struct ScalarField<Value: SlotScalar>: Sendable, FieldHandle {
    @usableFromInline let gate: LockFreeGate
    @usableFromInline let word: MappedAddress
    /// The slot's file offset, for the transaction's undo record.
    @usableFromInline let offset: Int

    /// The field's number in its file, for the slow paths.
    @usableFromInline let fieldIndex: Int
    /// The store, file and field this handle was resolved in (see ``FieldReference``).
    /// Last: the words the inlined operations use come first, as before it existed.
    @usableFromInline let reference: FieldReference

    @usableFromInline
    init(reference: FieldReference) {
        self.reference = reference
        self.fieldIndex = reference.layout.index
        self.gate = reference.core.gate
        self.word = reference.core.address(reference.layout.offset)
        self.offset = reference.layout.offset
    }

    @usableFromInline var core: StoreCore { reference.core }

    /// The field's name.
    public var name: String { reference.layout.name }

    /// The current value.
    @inlinable @inline(__always)
    public func load() -> Value {
        if _fastPath(!gate.isRetired) { return word.loadScalar(Value.self) }
        return FieldReference.readLockFree(reference.session, reference.core, field: fieldIndex) { words in words.payload.loadScalar(Value.self) }
    }

    /// Replaces the value.
    @inlinable @inline(__always)
    public func store(_ value: Value) {
        if let marker = gate.enter() {
            word.storeScalar(value)
            return gate.leave(marker, notifying: fieldIndex)
        }
        FieldReference.writeLockFree(reference.session, reference.core, field: fieldIndex) { words in words.payload.storeScalar(value) }
    }

    /// Replaces the value and returns the one it replaced.
    @inlinable @inline(__always) @discardableResult
    public func exchange(_ value: Value) -> Value {
        if let marker = gate.enter() {
            defer { gate.leave(marker, notifying: fieldIndex) }
            return word.exchangeScalar(value)
        }
        return FieldReference.writeLockFree(reference.session, reference.core, field: fieldIndex) { words in words.payload.exchangeScalar(value) }
    }

    /// Stores `desired` if the value is still `expected`.
    ///
    /// - Returns: whether it stored, and the value found (which is `expected` when it stored).
    @inlinable @inline(__always)
    public func compareExchange(expected: Value, desired: Value) -> (exchanged: Bool, original: Value) {
        if let marker = gate.enter() {
            defer { gate.leave(marker, notifying: fieldIndex) }
            return word.compareExchangeScalar(expected: expected, desired: desired)
        }
        return FieldReference.writeLockFree(reference.session, reference.core, field: fieldIndex) { words in
            words.payload.compareExchangeScalar(expected: expected, desired: desired)
        }
    }
}

extension ScalarField where Value: SlotInteger {
    /// Adds `delta`, wrapping around on overflow, and returns the new value.
    @inlinable @inline(__always) @discardableResult
    public func add(_ delta: Value) -> Value {
        if let marker = gate.enter() {
            defer { gate.leave(marker, notifying: fieldIndex) }
            return word.addScalar(delta)
        }
        return FieldReference.writeLockFree(reference.session, reference.core, field: fieldIndex) { words in words.payload.addScalar(delta) }
    }
}

extension ScalarField where Value: BinaryFloatingPoint {
    /// Adds `delta` atomically (a compare-exchange loop) and returns the new value.
    @inlinable @discardableResult
    public func add(_ delta: Value) -> Value {
        if let marker = gate.enter() {
            defer { gate.leave(marker, notifying: fieldIndex) }
            return ScalarField.add(delta, to: word)
        }
        return FieldReference.writeLockFree(reference.session, reference.core, field: fieldIndex) { words in ScalarField.add(delta, to: words.payload) }
    }

    @inlinable @inline(__always)
    static func add(_ delta: Value, to word: MappedAddress) -> Value {
        var current = word.loadScalarRelaxed(Value.self)
        while true {
            let next = current + delta
            let (exchanged, original) = word.compareExchangeScalar(expected: current, desired: next)
            if exchanged { return next }
            current = original
        }
    }
}
