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
    /// Unowned: a transaction lives only inside `SlotStore.transaction`'s
    /// closure, while the store holds its session (a retain and release per
    /// transaction otherwise); only the slow paths of stale handles use it.
    @usableFromInline unowned(unsafe) let session: StoreSession
    /// The locked engine, owned: it comes from `lockLive` already retained.
    @usableFromInline let core: StoreCore

    @usableFromInline
    init(session: StoreSession, core: StoreCore) {
        self.session = session
        self.core = core
    }

    // The scalar methods are inlinable so a client specializes them: a generic
    // call into the library would look up type metadata on every use.

    /// The value of a scalar field.
    // A handle resolved before this process followed an in-place compaction
    // is bound to the transaction's file first, out of line. The common case
    // reads the handle's words in place: copying a handle costs a retain per
    // reference it holds.

    /// The value of a scalar field.
    @inlinable
    public func load<Value>(_ field: ScalarField<Value>) -> Value {
        if _fastPath(field.core === core) { return field.word.loadScalar(Value.self) }
        return field.bound(to: core, in: session).word.loadScalar(Value.self)
    }

    /// Replaces the value of a scalar field.
    @inlinable
    public func store<Value>(_ value: Value, to field: ScalarField<Value>) throws(SlotStoreError) {
        guard _fastPath(field.core === core) else { return try store(value, to: field.bound(to: core, in: session)) }
        try core.recordScalarUndo(offset: field.offset)
        field.word.storeScalar(value)
        core.afterScalarWrite()
    }

    /// Adds `delta` to an integer field (wrapping) and returns the new value.
    @inlinable @discardableResult
    public func add<Value: SlotInteger>(_ delta: Value, to field: ScalarField<Value>) throws(SlotStoreError) -> Value {
        guard _fastPath(field.core === core) else { return try add(delta, to: field.bound(to: core, in: session)) }
        try core.recordScalarUndo(offset: field.offset)
        let result = field.word.addScalar(delta)
        core.afterScalarWrite()
        return result
    }

    /// The value of a string field.
    public func load(_ field: StringField) -> String {
        String(decoding: field.field.bound(to: core, in: session).readLocked(), as: UTF8.self)
    }

    /// Replaces the value of a string field.
    public func store(_ value: String, to field: StringField) throws(SlotStoreError) {
        try field.field.bound(to: core, in: session).write(value.utf8)
    }

    /// The value of a bytes field.
    public func load(_ field: BytesField) -> [UInt8] {
        field.field.bound(to: core, in: session).readLocked()
    }

    /// Replaces the value of a bytes field.
    public func store(_ value: some Collection<UInt8>, to field: BytesField) throws(SlotStoreError) {
        try field.field.bound(to: core, in: session).write(value)
    }

    /// All elements of an array field.
    public func load<Value>(_ field: ArrayField<Value>) -> [Value] {
        let field = field.bound(to: core, in: session)
        return (0..<field.count).map { field.loadRelaxed($0) }
    }

    /// Replaces every element of an array field; `values` must hold exactly `field.count` elements.
    public func store<Value>(_ values: [Value], to field: ArrayField<Value>) throws(SlotStoreError) {
        let field = field.bound(to: core, in: session)
        try field.checkCount(values.count)
        try field.writeAll(values)
    }

    /// Replaces one element of an array field.
    public func store<Value>(_ value: Value, at index: Int, of field: ArrayField<Value>) throws(SlotStoreError) {
        try field.bound(to: core, in: session).writeElement(value, at: index)
    }
}
