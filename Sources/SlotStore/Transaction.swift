import Synchronization

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
    /// Why a load, which can't throw, could not use its handle in this
    /// transaction's file (see ``resolvedForLoad(_:)``), thrown by
    /// `SlotStore.transaction` after the body, rolling it back: a retained
    /// `DeferredFailure`'s address, 0 for none. One word with no destructor
    /// to run: an optional error here cost every transaction a few ns.
    @usableFromInline let deferredFailure = Atomic<UInt>(0)

    @usableFromInline
    init(session: StoreSession, core: StoreCore) {
        self.session = session
        self.core = core
    }

    deinit {
        let bits = deferredFailure.load(ordering: .relaxed)
        if _slowPath(bits != 0), let box = UnsafeRawPointer(bitPattern: bits) {
            Unmanaged<DeferredFailure>.fromOpaque(box).release()
        }
    }

    // The scalar methods are inlinable so a client specializes them: a generic
    // call into the library would look up type metadata on every use.
    //
    // A handle resolved in another file than the transaction's (before this
    // process followed an in-place compaction) is bound to the transaction's
    // file first, out of line, through ``FieldReference``: a field a later
    // compaction dropped or changed makes the throwing calls throw, and the
    // loads (which can't) make the whole transaction throw when its body
    // returns. The common case reads the handle's words in place: copying a
    // handle costs a retain per reference it holds.

    /// The value of a scalar field.
    ///
    /// If a compaction in place dropped the field or changed its type since
    /// the handle was looked up, this returns the value in the handle's old
    /// file, and the transaction then throws the reason and rolls back.
    @inlinable
    public func load<Value>(_ field: ScalarField<Value>) -> Value {
        if _fastPath(field.reference.core === core) { return field.word.loadScalar(Value.self) }
        return resolvedForLoad(field).word.loadScalar(Value.self)
    }

    /// Replaces the value of a scalar field.
    ///
    /// - Throws: ``SlotStoreError/wrongFieldType(path:name:expected:found:)`` or
    ///   ``SlotStoreError/unknownField(path:name:available:)`` when a compaction
    ///   in place changed or dropped the field since the handle was looked up.
    @inlinable
    public func store<Value>(_ value: Value, to field: ScalarField<Value>) throws(SlotStoreError) {
        guard _fastPath(field.reference.core === core) else { return try store(value, to: field.bound(to: core, in: session)) }
        try core.recordScalarUndo(offset: field.offset)
        field.word.storeScalar(value)
        core.afterScalarWrite()
    }

    /// Adds `delta` to an integer field (wrapping) and returns the new value.
    @inlinable @discardableResult
    public func add<Value: SlotInteger>(_ delta: Value, to field: ScalarField<Value>) throws(SlotStoreError) -> Value {
        guard _fastPath(field.reference.core === core) else { return try add(delta, to: field.bound(to: core, in: session)) }
        try core.recordScalarUndo(offset: field.offset)
        let result = field.word.addScalar(delta)
        core.afterScalarWrite()
        return result
    }

    /// The value of a string field (for a stale handle, see the scalar `load(_:)`).
    public func load(_ field: StringField) -> String {
        String(decoding: resolvedForLoad(field.field).readLocked(), as: UTF8.self)
    }

    /// Replaces the value of a string field.
    public func store(_ value: String, to field: StringField) throws(SlotStoreError) {
        try field.field.bound(to: core, in: session).write(value.utf8)
    }

    /// The value of a bytes field (for a stale handle, see the scalar `load(_:)`).
    public func load(_ field: BytesField) -> [UInt8] {
        resolvedForLoad(field.field).readLocked()
    }

    /// Replaces the value of a bytes field.
    public func store(_ value: some Collection<UInt8>, to field: BytesField) throws(SlotStoreError) {
        try field.field.bound(to: core, in: session).write(value)
    }

    /// All elements of an array field (for a stale handle, see the scalar `load(_:)`).
    public func load<Value>(_ field: ArrayField<Value>) -> [Value] {
        let field = resolvedForLoad(field)
        return (0..<field.count).map { field.loadRelaxed($0) }
    }

    /// Replaces every element of an array field; `values` must hold exactly `field.count` elements.
    public func store<Value>(_ values: [Value], to field: ArrayField<Value>) throws(SlotStoreError) {
        let field = try field.bound(to: core, in: session)
        try field.checkCount(values.count)
        try field.writeAll(values)
    }

    /// Replaces one element of an array field.
    public func store<Value>(_ value: Value, at index: Int, of field: ArrayField<Value>) throws(SlotStoreError) {
        try field.bound(to: core, in: session).writeElement(value, at: index)
    }

    /// Adds `delta` to one element of an integer array field (wrapping, like
    /// ``ArrayField/add(_:at:)``) and returns the element's new value.
    ///
    /// Rolled back with the transaction. A lock-free add to the same 8-byte
    /// word from outside the transaction, made while it runs, is rolled back
    /// with it, as for every transaction write (see CrashRecovery.md).
    ///
    /// - Throws: ``SlotStoreError/invalidValue(path:field:detail:)`` when
    ///   `index` is outside `0..<field.count`;
    ///   ``SlotStoreError/wrongFieldType(path:name:expected:found:)`` or
    ///   ``SlotStoreError/unknownField(path:name:available:)`` when a compaction
    ///   in place changed or dropped the field since the handle was looked up.
    @discardableResult
    public func add<Value: SlotInteger>(_ delta: Value, at index: Int, of field: ArrayField<Value>) throws(SlotStoreError) -> Value {
        try field.bound(to: core, in: session).addElement(delta, at: index)
    }

    // MARK: Stale handles

    /// `handle` bound to this transaction's file for a load, which can't
    /// throw: if the file can't serve it (a compaction dropped or changed its
    /// field), the handle itself, whose old file is still mapped, and the
    /// reason is kept for ``throwDeferredFailure()``.
    @usableFromInline @inline(never)
    func resolvedForLoad<Handle: FieldHandle>(_ handle: Handle) -> Handle {
        do {
            return try handle.bound(to: core, in: session)
        } catch {
            // The first reason is kept.
            if deferredFailure.load(ordering: .relaxed) == 0 {
                let box = Unmanaged.passRetained(DeferredFailure(error)).toOpaque()
                deferredFailure.store(UInt(bitPattern: box), ordering: .relaxed)
            }
            return handle
        }
    }

    /// Throws what a load of a stale handle could not: called by
    /// `SlotStore.transaction` once the body returns, so the transaction
    /// rolls back.
    @inlinable
    func throwDeferredFailure() throws(SlotStoreError) {
        let bits = deferredFailure.load(ordering: .relaxed)
        if _slowPath(bits != 0) { throw deferredError(bits) }
    }

    @usableFromInline
    func deferredError(_ bits: UInt) -> SlotStoreError {
        guard let box = UnsafeRawPointer(bitPattern: bits) else { return .storeRetired(path: core.path) }
        return Unmanaged<DeferredFailure>.fromOpaque(box).takeUnretainedValue().error
    }
}

/// A transaction's deferred error, allocated only when a load of a stale handle fails.
final class DeferredFailure {
    let error: SlotStoreError
    init(_ error: SlotStoreError) { self.error = error }
}
