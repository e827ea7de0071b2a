import Glibc

extension SlotStore {
    /// Rewrites a store into a new file: maps rebuilt without tombstones (at a
    /// new capacity if asked), values carried into a new schema, the format
    /// upgraded to the current version.
    ///
    /// Fields are matched by name. Safe changes (new fields, widening, larger
    /// capacities) always apply; narrowing, retyping and dropping need their
    /// flag in `migration`, and a value that does not fit its new type fails
    /// the whole compaction with nothing changed.
    ///
    /// The source is read under its lock, so no locked write is half-copied.
    /// Without `output` (or with `output == path`) the new file replaces `path`
    /// atomically by `rename`. Processes that have the store open meanwhile
    /// lose nothing: their lock-free writes are stopped and drained before
    /// the copy, their locked writes wait for it, and every handle's next
    /// operation carries on in the new file. While others have it open, a
    /// compaction in place may only add fields and give fields more room
    /// (their handles must keep working); dropping, retyping or shrinking
    /// needs them to close it first (``SlotStoreError/storeInUse(path:operation:)``).
    /// With `output`, the source stays in service and the result is a
    /// snapshot. A crash at any point leaves the source as it was, or the
    /// new file in place with the old one retired (the rename decides), and
    /// at most a hidden `.NAME.compacting-PID` file beside it.
    ///
    /// - Parameters:
    ///   - path: the store to compact.
    ///   - output: where to write the result; nil replaces `path`.
    ///   - schema: the new schema; nil keeps the stored one.
    ///   - capacities: new capacities by field name (maps, strings, bytes) or counts (arrays).
    ///   - migration: what the migration may do beyond safe changes.
    ///   - dryRun: only compute and return the plan.
    ///   - allowOtherOwner: compact a store that belongs to another user (the result keeps its mode, and is owned by the caller).
    ///   - progress: called with a line per step, for large stores.
    @discardableResult
    public static func compact(at path: String, output: String? = nil, schema: Schema? = nil, capacities: [String: Int] = [:],
                               migration: MigrationOptions = MigrationOptions(), dryRun: Bool = false,
                               allowOtherOwner: Bool = false,
                               progress: ((String) -> Void)? = nil) throws(SlotStoreError) -> CompactionPlan {
        let destination = output ?? path
        let inPlace = destination == path
        if !inPlace, case .success(_?) = Syscall.kind(at: destination) { throw .alreadyExists(path: destination) }
        var sourceOptions = OpenOptions(mode: .open)
        sourceOptions.allowOtherOwner = allowOtherOwner
        let source = try SlotStore(path: path, options: sourceOptions)
        defer { source.close() }
        let target = try targetSchema(source.schema, schema, capacities: capacities, path: path)
        // In place with other openers: they carry on in the new file, so it is
        // "live", and every field they may hold a handle to must keep working.
        var live = false
        if inPlace && !dryRun, case .success(false) = OpenGate.tryExclusive(source.core.file.fd) {
            let changed = source.schema.fields.filter { old in
                guard let new = target.field(named: old.name) else { return true }
                return !old.type.acceptsLiveSwitch(to: new.type)
            }
            guard changed.isEmpty else {
                let names = changed.map { "\"\($0.name)\"" }.joined(separator: ", ")
                throw .storeInUse(path: path, operation: "compaction in place that drops, retypes or shrinks \(names) (while processes use the store, fields may only be added or given more room)")
            }
            live = true
        }
        var plan = try makePlan(source: source, target: target, output: destination, migration: migration, dryRun: dryRun)
        if dryRun { return plan }

        var info = stat()
        let mode = fstat(source.core.file.fd, &info) == 0 ? UInt32(info.st_mode & 0o7777) : 0o600
        TemporaryFiles.removeStale(for: destination)
        let temporary = TemporaryFiles.path(for: destination, kind: "compacting")
        unlink(temporary)
        defer { unlink(temporary) }
        var options = OpenOptions(mode: .create, fileMode: mode,
                                  cacheLineAligned: source.core.header.flags.contains(.cacheLineAligned))
        options.initialGeneration = source.core.header.generation &+ 1
        let result = try SlotStore(path: temporary, schema: target, options: options)
        result.core.journaling = false
        defer { result.close() }

        // Hold the source's lock from the first byte copied until the new
        // file is in place: locked writers wait, the copy is one consistent
        // moment, and (live) lock-free writers are stopped and drained first.
        let sourceCore = source.core
        try sourceCore.transaction { () throws(SlotStoreError) in
            if live {
                try sourceCore.beginRetirement(timeout: sourceCore.lockTimeout)
                sourceCore.fault(.afterRetiring)
            }
            do throws(SlotStoreError) {
                try copy(from: sourceCore, to: result.core, target: target, plan: plan, path: path, progress: progress)
                try result.sync()
                let successor = result.core.fileIdentity
                result.close()
                try place(temporary, at: destination, replacing: inPlace)
                if live {
                    sourceCore.fault(.afterRename)
                    sourceCore.finishRetirement(successor: successor ?? (0, 0), generation: options.initialGeneration)
                }
            } catch {
                if live { sourceCore.abandonRetirement() }
                throw error
            }
        }
        plan.bytesAfter = Int(try SlotStore.inspect(at: destination).format.fileSize)
        progress?("wrote \(destination)\(live ? "; the processes using it switch to it on their next operation" : "")")
        return plan
    }

    /// Copies every field of `target` that the source has, converted; call holding both locks or with the target private.
    private static func copy(from source: StoreCore, to result: StoreCore, target: Schema, plan: CompactionPlan,
                             path: String, progress: ((String) -> Void)?) throws(SlotStoreError) {
        try result.transaction { () throws(SlotStoreError) in
            for field in target.fields {
                guard let old = source.layout.field(named: field.name),
                      let new = result.layout.field(named: field.name) else { continue }
                progress?("copying \(field.name) (\(old.type))")
                let value = try source.readValue(old, locked: true)
                let fate = plan.fields.first { $0.name == field.name }?.fate ?? "copy"
                let converted = try MigrationRules.migrate(value, from: old.type, to: new.type, fate: fate,
                                                           field: field.name, path: path)
                try result.writeValue(converted, to: new)
            }
        }
    }

    /// Puts the finished temporary file at `destination`: `rename` over the
    /// source in place (the commit point), `link` to a new path otherwise.
    private static func place(_ temporary: String, at destination: String, replacing: Bool) throws(SlotStoreError) {
        if replacing {
            guard rename(temporary, destination) == 0 else {
                throw Syscall.fileError(Errno(errno), path: destination, call: "rename", operation: "put the compacted store in place")
            }
        } else if link(temporary, destination) != 0 {
            let code = errno
            throw code == EEXIST ? .alreadyExists(path: destination)
                : Syscall.fileError(Errno(code), path: destination, call: "link", operation: "put the compacted store in place")
        }
        TemporaryFiles.syncDirectory(of: destination)
    }

    static func targetSchema(_ stored: Schema, _ given: Schema?, capacities: [String: Int], path: String) throws(SlotStoreError) -> Schema {
        var target = given ?? stored
        for (name, capacity) in capacities.sorted(by: { $0.key < $1.key }) {
            guard let index = target.fields.firstIndex(where: { $0.name == name }) else {
                throw .unknownField(path: path, name: name, available: target.fields.map(\.name))
            }
            switch target.fields[index].type {
            case .map(let key, let value, _): target.fields[index].type = .map(key: key, value: value, capacity: capacity)
            case .string: target.fields[index].type = .string(capacity: capacity)
            case .bytes: target.fields[index].type = .bytes(capacity: capacity)
            case .array(let element, _): target.fields[index].type = .array(of: element, count: capacity)
            case .scalar:
                throw .invalidValue(path: path, field: name, detail: "a capacity applies to maps, strings, bytes and arrays, and \(name) is \(target.fields[index].type)")
            }
        }
        try target.validate()
        return target
    }

    static func makePlan(source: SlotStore, target: Schema, output: String, migration: MigrationOptions,
                         dryRun: Bool) throws(SlotStoreError) -> CompactionPlan {
        var fields: [CompactionPlan.FieldPlan] = []
        var refusals: [String] = []
        for field in target.fields {
            guard let old = source.schema.field(named: field.name) else {
                fields.append(.init(name: field.name, fate: "new", from: nil, to: field.type.description))
                continue
            }
            switch MigrationRules.fate(of: field.name, from: old.type, to: field.type, options: migration) {
            case .success(let fate): fields.append(.init(name: field.name, fate: fate, from: old.type.description, to: field.type.description))
            case .failure(let refusal): refusals.append(refusal.reason)
            }
        }
        for field in source.schema.fields where target.field(named: field.name) == nil {
            if migration.allowDropping {
                fields.append(.init(name: field.name, fate: "drop", from: field.type.description, to: nil))
            } else {
                refusals.append("field \"\(field.name)\" would be dropped with its value; pass the dropping flag (--allow-dropping) to drop it")
            }
        }
        guard refusals.isEmpty else { throw .migrationRefused(path: source.path, reasons: refusals) }
        let after = Layout(schema: target, schemaBytes: target.jsonBytes().count, pageSize: Int(source.core.header.pageSize),
                           cacheLineAligned: source.core.header.flags.contains(.cacheLineAligned))
        return CompactionPlan(path: source.path, output: output, bytesBefore: Int(source.core.header.fileSize),
                              bytesAfter: after.fileSize, formatBefore: source.core.header.formatVersion,
                              formatAfter: "\(FileHeader.currentMajor).\(FileHeader.currentMinor)",
                              schemaVersion: target.version, fields: fields, dryRun: dryRun)
    }
}
