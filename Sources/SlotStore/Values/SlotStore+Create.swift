import Glibc

extension SlotStore {
    /// Creates a store at `path` that already holds `values`, all at once.
    ///
    /// The store is built under a hidden temporary name and linked into place
    /// only when every value is written and flushed: a refused or interrupted
    /// call leaves nothing at `path`. Because nobody can see the store while
    /// it is built, its writes are not journaled, so maps of any size load.
    /// This is what `slotstore load` does for a path that does not exist.
    ///
    /// - Throws: ``SlotStoreError/alreadyExists(path:)`` if anything is at
    ///   `path` by the time the store is complete, and any error of a value
    ///   that does not fit its field (naming `path`).
    public static func create(at path: String, schema: Schema, values: [String: FieldValue],
                              options: OpenOptions = OpenOptions()) throws(SlotStoreError) {
        let temporary = TemporaryFiles.path(for: path, kind: "loading")
        do {
            try build(at: path, through: temporary, schema: schema, values: values, options: options)
        } catch {
            // The caller knows the path, not the hidden file it was built under.
            throw error.replacingPath(temporary, with: path)
        }
    }

    private static func build(at path: String, through temporary: String, schema: Schema, values: [String: FieldValue],
                              options: OpenOptions) throws(SlotStoreError) {
        try checkNothingAt(path)
        try schema.validate()
        let schema = schema.grown(toHold: values)
        var converted: [(String, FieldValue)] = []
        for (name, value) in values.sorted(by: { $0.key < $1.key }) {
            guard let field = schema.field(named: name) else {
                throw .unknownField(path: path, name: name, available: schema.fields.map(\.name))
            }
            converted.append((name, try value.converted(to: field.type, field: name, path: path)))
        }
        do {
            try build(at: path, through: temporary, schema: schema, options: options) { core in
                for (name, value) in converted { try core.writeValue(value, to: try core.field(named: name)) }
            }
        } catch let error as SlotStoreError {
            throw error
        } catch {
            // Only SlotStoreError is thrown above; say so plainly if that ever changes.
            throw .invalidValue(path: path, field: "", detail: "\(error)")
        }
    }

    /// Refuses a path where something already is, by what is there: a
    /// directory is not "a file that exists".
    static func checkNothingAt(_ path: String) throws(SlotStoreError) {
        switch Syscall.kind(at: path) {
        case .success(nil): break
        case .success(.some(.regular)): throw .alreadyExists(path: path)
        case .success(.some(.symbolicLink)): throw .symbolicLink(path: path)
        case .success(let kind?): throw .notARegularFile(path: path, found: kind.name)
        case .failure(let code): throw Syscall.fileError(code, path: path, call: "lstat", operation: "look up the path")
        }
    }

    /// Creates a store of `schema` at `temporary`, lets `fill` write into it
    /// under its lock without journaling (nobody else can have it open),
    /// flushes it and links it to `path` while still open (the open store is
    /// what tells a remover of leftovers, see `TemporaryFiles`, that its
    /// builder is at work). A throw from `fill`, or a crash, leaves nothing at
    /// `path`: a killed builder's file keeps its hidden name until the next
    /// builder for the same path removes it.
    static func build(at path: String, through temporary: String, schema: Schema, options: OpenOptions,
                      fill: (StoreCore) throws -> Void) throws {
        TemporaryFiles.removeStale(for: path)
        _ = Syscall.retrying { unlink(temporary) }
        defer { _ = Syscall.retrying { unlink(temporary) } }
        var createOptions = options
        createOptions.mode = .create
        let store = try SlotStore(path: temporary, schema: schema, options: createOptions)
        store.core.journaling = false
        do {
            try store.core.acquireLock()
            try store.core.finishTransaction { try fill(store.core) }
            try store.sync()
        } catch {
            store.close()
            throw error
        }
        defer { store.close() }
        guard try TemporaryFiles.link(temporary, to: path, operation: "put the new store in place") else {
            throw SlotStoreError.alreadyExists(path: path)
        }
        TemporaryFiles.syncDirectory(of: path)
    }
}
