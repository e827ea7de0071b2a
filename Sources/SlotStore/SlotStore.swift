import Glibc

/// A store of named, typed slots in a file that every process maps `MAP_SHARED`.
///
/// Open (or create) a store once, look up typed handles once, then use the
/// handles on the hot path:
///
/// ```swift
/// let store = try SlotStore(path: "/dev/shm/app.slots", schema: Schema(version: 1, fields: [
///     .int64("requests"), .double("load"), .string("motd", capacity: 128),
/// ]))
/// let requests = try store.scalar("requests", as: Int64.self)
/// requests.add(1)                                  // one atomic instruction
/// try store.string("motd").store("all systems go") // locked, journaled
/// ```
///
/// Every process that opens the same path sees every write at once; the file
/// keeps the values after every process has exited. A process killed at any
/// instruction, even while holding the lock, leaves no torn value and no
/// stuck lock: the next process to take the lock rolls its write back.
public final class SlotStore: Sendable {
    @usableFromInline let session: StoreSession

    /// The engine of the file now at the path (the newest this process switched to).
    var core: StoreCore { session.current }

    /// Whether this open created the file.
    public let created: Bool

    /// The path the store was opened at.
    public var path: String { core.path }

    /// The schema stored in the file.
    public var schema: Schema { core.schema }

    /// Opens the store at `path`, creating it if it is missing and the options allow.
    ///
    /// Opening validates the file (magic, format version, header checksum,
    /// sizes against the real file size, the stored schema) before it writes
    /// anything, and then compares `schema` with the stored one.
    ///
    /// - Parameters:
    ///   - path: The store file. Use `/dev/shm/…` for memory-speed without disk
    ///     write-back, or a local file system path for data that outlives a reboot.
    ///   - schema: The fields you expect. Required to create; when nil, an
    ///     existing store opens with its stored schema, as tools do.
    ///   - options: Create or open, file mode, lock timeout, durability, layout.
    /// - Throws: ``SlotStoreError`` naming the path and the problem; a file that
    ///   fails validation is left unchanged.
    public init(path: String, schema: Schema? = nil, options: OpenOptions = OpenOptions()) throws(SlotStoreError) {
        let opened: (StoreCore, created: Bool)
        do {
            opened = try StoreCore.open(path: path, schema: schema, options: options)
        } catch .schemaMismatch(let path, let differences) {
            guard let migration = options.migration, let schema else { throw .schemaMismatch(path: path, differences: differences) }
            _ = try SlotStore.compact(at: path, schema: schema, migration: migration, allowOtherOwner: options.allowOtherOwner)
            opened = try StoreCore.open(path: path, schema: schema, options: options)
        }
        self.session = StoreSession(core: opened.0, options: options)
        self.created = opened.created
    }

    /// Opens or creates a store holding one scalar field named `value`, and
    /// returns its handle: the counterpart of Python's `Value('d', 0.0)`.
    ///
    /// ```swift
    /// let hits = try SlotStore.value(Double.self, at: "/dev/shm/hits")
    /// hits.add(1.5)
    /// ```
    public static func value<Value: SlotScalar>(_ type: Value.Type, at path: String,
                                                options: OpenOptions = OpenOptions()) throws(SlotStoreError) -> ScalarField<Value> {
        let store = try SlotStore(path: path, schema: Schema(version: 1, fields: [Field("value", .scalar(Value.scalarType))]),
                                  options: options)
        return try store.scalar("value", as: type)
    }

    // MARK: Handles

    /// The live engine and field `name` in it.
    private func layout(of name: String) throws(SlotStoreError) -> (StoreCore, FieldLayout) {
        let core = try session.live(after: session.current)
        guard let field = core.layout.field(named: name) else {
            throw .unknownField(path: path, name: name, available: core.layout.fields.map(\.name))
        }
        return (core, field)
    }

    /// The handle of scalar field `name`, whose stored type must be `Value`'s.
    public func scalar<Value: SlotScalar>(_ name: String, as type: Value.Type = Value.self) throws(SlotStoreError) -> ScalarField<Value> {
        let (core, field) = try layout(of: name)
        guard case .scalar(Value.scalarType) = field.type else {
            throw .wrongFieldType(path: path, name: name, expected: Value.scalarType.rawValue, found: field.type.description)
        }
        if let aggregate = field.perProcess {
            throw .wrongFieldType(path: path, name: name, expected: "\(Value.scalarType.rawValue) written in common (scalar(_:as:))",
                                  found: "\(field.type) per process (\(aggregate.rawValue)); use perProcess(_:as:)")
        }
        return ScalarField(reference: FieldReference(session: session, core: core, layout: field))
    }

    /// This open's slot in the store's per-process fields (see
    /// ``PerProcessAggregate``): the index tools show its contribution under.
    /// Nil when the store has none, or every slot was taken.
    public var processSlot: Int? { core.processSlot?.slot }

    /// The handle of per-process field `name` (see ``PerProcessAggregate``),
    /// whose stored type must be `Value`'s.
    ///
    /// - Throws: ``SlotStoreError/wrongFieldType(path:name:expected:found:)``
    ///   for a field that isn't per process or of another type, and, for a
    ///   `liveSum` field, ``SlotStoreError/processSlotsFull(path:field:slots:)``
    ///   when this open found every process slot held: its contribution could
    ///   not be dropped at its death. (Other aggregates then write to the
    ///   folded base under the lock, where a gone process's contribution would
    ///   have gone anyway.)
    public func perProcess<Value: SlotScalar>(_ name: String, as type: Value.Type = Value.self) throws(SlotStoreError) -> PerProcessField<Value> {
        let (core, field) = try layout(of: name)
        guard case .scalar(Value.scalarType) = field.type, let aggregate = field.perProcess else {
            throw .wrongFieldType(path: path, name: name, expected: "\(Value.scalarType.rawValue) per process",
                                  found: field.perProcess.map { "\(field.type) per process (\($0.rawValue))" } ?? "\(field.type) written in common; use scalar(_:as:)")
        }
        if aggregate == .liveSum && core.processSlot == nil {
            throw .processSlotsFull(path: path, field: name, slots: field.processSlots)
        }
        return PerProcessField(reference: FieldReference(session: session, core: core, layout: field))
    }

    /// The handle of array field `name`, whose elements must be of `Value`'s type.
    public func array<Value: SlotScalar>(_ name: String, of type: Value.Type = Value.self) throws(SlotStoreError) -> ArrayField<Value> {
        let (core, field) = try layout(of: name)
        guard case .array(Value.scalarType, _) = field.type else {
            throw .wrongFieldType(path: path, name: name, expected: "array<\(Value.scalarType.rawValue)>", found: field.type.description)
        }
        return ArrayField(reference: FieldReference(session: session, core: core, layout: field))
    }

    /// The handle of string field `name`.
    public func string(_ name: String) throws(SlotStoreError) -> StringField {
        let (core, field) = try layout(of: name)
        guard case .string = field.type else {
            throw .wrongFieldType(path: path, name: name, expected: "string", found: field.type.description)
        }
        return StringField(field: VariableField(reference: FieldReference(session: session, core: core, layout: field)))
    }

    /// The handle of bytes field `name`.
    public func bytes(_ name: String) throws(SlotStoreError) -> BytesField {
        let (core, field) = try layout(of: name)
        guard case .bytes = field.type else {
            throw .wrongFieldType(path: path, name: name, expected: "bytes", found: field.type.description)
        }
        return BytesField(field: VariableField(reference: FieldReference(session: session, core: core, layout: field)))
    }

    // MARK: Transactions and lifecycle

    /// Runs `body` holding the store's lock; its writes happen all or nothing.
    ///
    /// If `body` throws, every write it made is rolled back and the error is
    /// rethrown. If the process dies inside `body`, the next process to take
    /// the lock rolls the writes back. Don't call a handle's locked writes
    /// (string, bytes, whole-array `store`) inside `body`: use the
    /// transaction's methods, or you get ``SlotStoreError/nestedTransaction(path:)``.
    ///
    /// ```swift
    /// try store.transaction { tx in
    ///     let amount: Int64 = 10
    ///     try tx.store(tx.load(alice) - amount, to: alice)
    ///     try tx.store(tx.load(bob) + amount, to: bob)
    /// }
    /// ```
    @discardableResult
    @inlinable
    public func transaction<R>(_ body: (borrowing Transaction) throws -> R) throws -> R {
        // Inlinable, so the client specializes it for R and its closure.
        let transaction = Transaction(session: session, core: try session.lockLive())
        return try transaction.core.finishTransaction {
            let result = try body(transaction)
            try transaction.throwDeferredFailure()
            return result
        }
    }

    /// Runs `body` on the live engine holding its lock, all or nothing.
    func lockedTransaction<R>(_ body: (StoreCore) throws(SlotStoreError) -> R) throws(SlotStoreError) -> R {
        let core = try session.lockLive()
        do {
            return try core.finishTransaction { try body(core) }
        } catch let error as SlotStoreError {
            throw error
        } catch {
            preconditionFailure("unreachable: the body and the engine throw only SlotStoreError, found \(error)")
        }
    }

    /// Switches to the file now at the path if another process compacted the
    /// store in place; returns whether it switched.
    ///
    /// Handles switch by themselves on their next operation, so this is only
    /// needed to switch at a moment of your choosing, or to learn why a switch
    /// failed: if the new file can't be opened, or no longer has a field a
    /// handle uses with a type it can follow (a later compaction dropped or
    /// changed it), that handle's lock-free writes keep going to the retired
    /// file, its throwing calls throw, and this throws the reason once.
    @discardableResult
    public func refresh() throws(SlotStoreError) -> Bool {
        let before = session.current
        let after = try session.live(after: before)
        if let failure = session.takeSwitchFailure() { throw failure }
        return after !== before
    }

    /// The generation of the file this process uses: 1 when created, one more
    /// with each compaction. It grows here when this process follows an
    /// in-place compaction.
    public var generation: UInt64 { core.header.generation }

    /// Flushes every change to the file on disk (`msync`); on tmpfs it returns at once.
    public func sync() throws(SlotStoreError) {
        try session.live(after: core).file.flush()
    }

    /// Unmaps the store and releases this process's hold on it.
    ///
    /// It waits for other threads' transactions and locked writes to finish
    /// (later ones, and every other call that takes the lock or looks up a
    /// field, fail with ``SlotStoreError/storeClosed(path:)``), because
    /// unmapping a held lock would leave it stuck for every process. Calling it
    /// inside a transaction is a programming error. Lock-free handle calls
    /// (scalar and element loads and stores) must not race with `close()`:
    /// a handle used after it faults deterministically. Without `close()`,
    /// the store is unmapped when the store and all its handles are gone.
    public func close() {
        session.close()
    }

    /// Deletes the store file at `path`. Processes that have it open keep
    /// working on their mapping; the next open at `path` creates a new store.
    public static func remove(at path: String) throws(SlotStoreError) {
        switch Syscall.kind(at: path) {
        case .failure(let code): throw Syscall.fileError(code, path: path, call: "lstat", operation: "look up the store")
        case .success(nil): throw .fileNotFound(path: path)
        case .success(.some(.regular)): break
        case .success(.some(.symbolicLink)): throw .symbolicLink(path: path)
        case .success(let kind?): throw .notARegularFile(path: path, found: kind.name)
        }
        if unlink(path) != 0 {
            throw Syscall.fileError(Errno(errno), path: path, call: "unlink", operation: "remove the store")
        }
    }
}
