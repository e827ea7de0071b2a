/// Reads and writes made while holding the store's lock, all or nothing.
///
/// You get one inside ``SlotStore/transaction(_:)``. Every write records the
/// bytes it replaces in the undo journal first; if the closure throws, or the
/// process dies before the transaction returns, those bytes are restored
/// (by this process, or by the next process to take the lock).
///
/// Readers outside the transaction never block: they see each field either
/// before or after each write, never torn. To read several fields as of one
/// moment, read them inside a transaction.
public struct Transaction: ~Copyable {
    let core: StoreCore

    init(core: StoreCore) { self.core = core }

    private func check(_ other: StoreCore, _ name: String) {
        precondition(other === core, "field \"\(name)\" belongs to another store than this transaction")
    }

    /// The value of a scalar field.
    public func load<Value>(_ field: ScalarField<Value>) -> Value {
        check(field.core, field.name)
        return field.load()
    }

    /// Replaces the value of a scalar field.
    public func store<Value>(_ value: Value, to field: ScalarField<Value>) throws(SlotStoreError) {
        check(field.core, field.name)
        try core.recordUndo(offset: field.layout.offset, length: 8, sequenceOffset: 0)
        field.store(value)
        // A scalar has no half-written state; "mid-write" is the moment between
        // this field and the next one of the transaction.
        FaultInjection.reach(.midWrite)
        FaultInjection.reach(.afterWrite)
    }

    /// Adds `delta` to an integer field (wrapping) and returns the new value.
    @discardableResult
    public func add<Value: SlotInteger>(_ delta: Value, to field: ScalarField<Value>) throws(SlotStoreError) -> Value {
        check(field.core, field.name)
        try core.recordUndo(offset: field.layout.offset, length: 8, sequenceOffset: 0)
        let result = field.add(delta)
        FaultInjection.reach(.midWrite)
        FaultInjection.reach(.afterWrite)
        return result
    }

    /// The value of a string field.
    public func load(_ field: StringField) -> String {
        check(field.field.core, field.name)
        return String(decoding: field.field.readLocked(), as: UTF8.self)
    }

    /// Replaces the value of a string field.
    public func store(_ value: String, to field: StringField) throws(SlotStoreError) {
        check(field.field.core, field.name)
        try field.field.write(value.utf8)
    }

    /// The value of a bytes field.
    public func load(_ field: BytesField) -> [UInt8] {
        check(field.field.core, field.name)
        return field.field.readLocked()
    }

    /// Replaces the value of a bytes field.
    public func store(_ value: some Collection<UInt8>, to field: BytesField) throws(SlotStoreError) {
        check(field.field.core, field.name)
        try field.field.write(value)
    }

    /// All elements of an array field.
    public func load<Value>(_ field: ArrayField<Value>) -> [Value] {
        check(field.core, field.name)
        return (0..<field.count).map { field.loadRelaxed($0) }
    }

    /// Replaces every element of an array field; `values` must hold exactly `field.count` elements.
    public func store<Value>(_ values: [Value], to field: ArrayField<Value>) throws(SlotStoreError) {
        check(field.core, field.name)
        try field.checkCount(values.count)
        try field.writeAll(values)
    }

    /// Replaces one element of an array field.
    public func store<Value>(_ value: Value, at index: Int, of field: ArrayField<Value>) throws(SlotStoreError) {
        check(field.core, field.name)
        try field.writeElement(value, at: index)
    }
}
