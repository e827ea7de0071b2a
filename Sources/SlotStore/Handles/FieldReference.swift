/// What every handle holds to find its field: the store it was looked up
/// from, the file it was resolved in, and the field's layout there.
///
/// This is the one place a handle follows an in-place compaction. A handle's
/// own calls check its file's retirement word (one relaxed load, inlined)
/// and, once it reads retired, resolve the field in the live file with
/// ``live()``; a transaction resolves it in its locked file with
/// ``bound(to:in:)``. Both look the field up by name and accept it only with a
/// type the handle can keep using (see `FieldType.acceptsLiveSwitch`), and
/// both throw ``SlotStoreError/wrongFieldType(path:name:expected:found:)`` or
/// ``SlotStoreError/unknownField(path:name:available:)`` otherwise, so a
/// stale handle's throwing calls throw instead of trapping.
@usableFromInline
struct FieldReference: Sendable {
    /// Nil for the engine's own reads and writes of a file it has locked (by-name calls).
    @usableFromInline let session: StoreSession?
    @usableFromInline let core: StoreCore
    let layout: FieldLayout

    init(session: StoreSession?, core: StoreCore, layout: FieldLayout) {
        self.session = session
        self.core = core
        self.layout = layout
    }

    /// The field's number in ``core``'s layout.
    @usableFromInline var index: Int { layout.index }

    /// This field in the live file: itself while its file is live, else the
    /// field of the same name in the file now at the path.
    func live() throws(SlotStoreError) -> FieldReference {
        guard let session else { throw .storeRetired(path: core.path) }
        let (core, field) = try session.liveField(core, layout.index)
        return FieldReference(session: session, core: core, layout: field)
    }

    /// This field in `core`, the file a transaction of `session` has locked.
    func bound(to core: StoreCore, in session: StoreSession) throws(SlotStoreError) -> FieldReference {
        if core === self.core { return self }
        guard session === self.session else {
            throw .invalidValue(path: session.path, field: layout.name, detail: "the handle was looked up from another SlotStore object (of \(self.core.path)) than this transaction's; look the handle up from the store whose transaction uses it")
        }
        return FieldReference(session: session, core: core, layout: try session.resolve(layout, in: core))
    }

    /// The slow path of a lock-free read: the handle's file is retired.
    /// A field the live file no longer has (or has with another type) is read
    /// in the retired file; ``SlotStore/refresh()`` reports why. Static over
    /// the three words it needs: inlined callers then pass those, not the
    /// whole reference (a copy that cost the inlined loop around the fast path
    /// a register).
    @usableFromInline @inline(never)
    static func readLockFree<R>(_ session: StoreSession?, _ core: StoreCore, field index: Int, _ read: (FieldWords) -> R) -> R {
        guard let session else { return read(FieldWords(core, core.layout.fields[index])) }
        return session.readLockFree(core, field: index, read)
    }

    /// The slow path of a lock-free write (see `StoreSession.writeLockFree`).
    @usableFromInline @inline(never)
    static func writeLockFree<R>(_ session: StoreSession?, _ core: StoreCore, field index: Int, _ write: (FieldWords) -> R) -> R {
        guard let session else { return write(FieldWords(core, core.layout.fields[index])) }
        return session.writeLockFree(core, field: index, write)
    }
}

/// A handle made of a ``FieldReference``: what following a compaction rebuilds.
@usableFromInline
protocol FieldHandle {
    init(reference: FieldReference)
    var reference: FieldReference { get }
}

extension FieldHandle {
    /// This handle on the live file, after an in-place compaction retired its own.
    @usableFromInline
    func rebound() throws(SlotStoreError) -> Self { Self(reference: try reference.live()) }

    /// This handle in the file a transaction of `session` has locked.
    @usableFromInline
    func bound(to core: StoreCore, in session: StoreSession) throws(SlotStoreError) -> Self {
        if core === reference.core { return self }
        return Self(reference: try reference.bound(to: core, in: session))
    }
}

extension StoreSession {
    /// `field`, resolved in an older file of this store, in `core`: the field
    /// of the same name, if its type lets a handle carry on (the same type, or
    /// a string, bytes or map with more room). The one check every handle's
    /// compaction-following goes through.
    func resolve(_ field: FieldLayout, in core: StoreCore) throws(SlotStoreError) -> FieldLayout {
        guard let found = core.layout.field(named: field.name) else {
            throw .unknownField(path: path, name: field.name, available: core.layout.fields.map(\.name))
        }
        guard field.type.acceptsLiveSwitch(to: found.type, perProcess: field.perProcess, found.perProcess) else {
            throw .wrongFieldType(path: path, name: field.name,
                                  expected: "\(field.type) (the type its handle was looked up with, before a compaction in place changed the field; look the handle up again)",
                                  found: found.type.description)
        }
        return found
    }
}
