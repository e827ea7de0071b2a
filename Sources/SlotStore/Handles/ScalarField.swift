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
public struct ScalarField<Value: SlotScalar>: Sendable {
    @usableFromInline let core: StoreCore
    @usableFromInline let word: MappedAddress
    /// The slot's file offset, for the transaction's undo record.
    @usableFromInline let offset: Int
    let layout: FieldLayout

    init(core: StoreCore, layout: FieldLayout) {
        self.core = core
        self.layout = layout
        self.word = core.address(layout.offset)
        self.offset = layout.offset
    }

    /// The field's name.
    public var name: String { layout.name }

    /// The current value.
    @inlinable @inline(__always)
    public func load() -> Value {
        word.loadScalar(Value.self)
    }

    /// Replaces the value.
    @inlinable @inline(__always)
    public func store(_ value: Value) {
        word.storeScalar(value)
    }

    /// Replaces the value and returns the one it replaced.
    @inlinable @inline(__always) @discardableResult
    public func exchange(_ value: Value) -> Value {
        word.exchangeScalar(value)
    }

    /// Stores `desired` if the value is still `expected`.
    ///
    /// - Returns: whether it stored, and the value found (which is `expected` when it stored).
    @inlinable @inline(__always)
    public func compareExchange(expected: Value, desired: Value) -> (exchanged: Bool, original: Value) {
        word.compareExchangeScalar(expected: expected, desired: desired)
    }
}

extension ScalarField where Value: SlotInteger {
    /// Adds `delta`, wrapping around on overflow, and returns the new value.
    @inlinable @inline(__always) @discardableResult
    public func add(_ delta: Value) -> Value {
        word.addScalar(delta)
    }
}

extension ScalarField where Value: BinaryFloatingPoint {
    /// Adds `delta` atomically (a compare-exchange loop) and returns the new value.
    @inlinable @discardableResult
    public func add(_ delta: Value) -> Value {
        var current = word.loadScalarRelaxed(Value.self)
        while true {
            let next = current + delta
            let (exchanged, original) = word.compareExchangeScalar(expected: current, desired: next)
            if exchanged { return next }
            current = original
        }
    }
}
