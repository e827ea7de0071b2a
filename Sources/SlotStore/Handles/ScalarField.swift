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
public struct ScalarField<Value: SlotScalar>: Sendable {
    @usableFromInline let session: StoreSession
    @usableFromInline let core: StoreCore
    @usableFromInline let gate: LockFreeGate
    @usableFromInline let word: MappedAddress
    /// The slot's file offset, for the transaction's undo record.
    @usableFromInline let offset: Int
    @usableFromInline let fieldIndex: Int
    let layout: FieldLayout

    init(session: StoreSession, core: StoreCore, layout: FieldLayout) {
        self.session = session
        self.core = core
        self.gate = core.gate
        self.layout = layout
        self.word = core.address(layout.offset)
        self.offset = layout.offset
        self.fieldIndex = layout.index
    }

    /// The field's name.
    public var name: String { layout.name }

    /// The current value.
    @inlinable @inline(__always)
    public func load() -> Value {
        if _fastPath(!gate.isRetired) { return word.loadScalar(Value.self) }
        return session.readLockFree(core, field: fieldIndex) { words in words.payload.loadScalar(Value.self) }
    }

    /// Replaces the value.
    @inlinable @inline(__always)
    public func store(_ value: Value) {
        if let marker = gate.enter() {
            word.storeScalar(value)
            return gate.leave(marker)
        }
        session.writeLockFree(core, field: fieldIndex) { words in words.payload.storeScalar(value) }
    }

    /// Replaces the value and returns the one it replaced.
    @inlinable @inline(__always) @discardableResult
    public func exchange(_ value: Value) -> Value {
        if let marker = gate.enter() {
            defer { gate.leave(marker) }
            return word.exchangeScalar(value)
        }
        return session.writeLockFree(core, field: fieldIndex) { words in words.payload.exchangeScalar(value) }
    }

    /// Stores `desired` if the value is still `expected`.
    ///
    /// - Returns: whether it stored, and the value found (which is `expected` when it stored).
    @inlinable @inline(__always)
    public func compareExchange(expected: Value, desired: Value) -> (exchanged: Bool, original: Value) {
        if let marker = gate.enter() {
            defer { gate.leave(marker) }
            return word.compareExchangeScalar(expected: expected, desired: desired)
        }
        return session.writeLockFree(core, field: fieldIndex) { words in
            words.payload.compareExchangeScalar(expected: expected, desired: desired)
        }
    }

    /// This handle on `core`, which must be the same store's: transactions
    /// use it for a handle resolved before a switch to a compacted file.
    @usableFromInline
    func bound(to core: StoreCore, in session: StoreSession) -> ScalarField {
        precondition(session === self.session, "\"\(name)\" belongs to another store than this transaction")
        if core === self.core { return self }
        guard let field = core.layout.field(named: name), field.type == layout.type else {
            preconditionFailure("field \"\(name)\" belongs to another store than this transaction")
        }
        return ScalarField(session: session, core: core, layout: field)
    }
}

extension ScalarField where Value: SlotInteger {
    /// Adds `delta`, wrapping around on overflow, and returns the new value.
    @inlinable @inline(__always) @discardableResult
    public func add(_ delta: Value) -> Value {
        if let marker = gate.enter() {
            defer { gate.leave(marker) }
            return word.addScalar(delta)
        }
        return session.writeLockFree(core, field: fieldIndex) { words in words.payload.addScalar(delta) }
    }
}

extension ScalarField where Value: BinaryFloatingPoint {
    /// Adds `delta` atomically (a compare-exchange loop) and returns the new value.
    @inlinable @discardableResult
    public func add(_ delta: Value) -> Value {
        if let marker = gate.enter() {
            defer { gate.leave(marker) }
            return ScalarField.add(delta, to: word)
        }
        return session.writeLockFree(core, field: fieldIndex) { words in ScalarField.add(delta, to: words.payload) }
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
