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
    /// lose nothing: their lock-free writes carry on during the copy and are
    /// stopped and drained only for a second copy of the scalars and arrays
    /// at the end, their locked writes wait for it, and every handle's next
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
    ///   - progress: called as each step starts, goes and ends, for large stores.
    @discardableResult
    public static func compact(at path: String, output: String? = nil, schema: Schema? = nil, capacities: [String: Int] = [:],
                               migration: MigrationOptions = MigrationOptions(), dryRun: Bool = false,
                               allowOtherOwner: Bool = false,
                               progress: ((WorkProgress) -> Void)? = nil) throws(SlotStoreError) -> CompactionPlan {
        let plan = try compact(at: path, output: output, schema: schema, capacities: capacities, migration: migration,
                               dryRun: dryRun, allowOtherOwner: allowOtherOwner, progress: progress,
                               lockTimeout: nil, onlyIfCapacity: nil)
        guard let plan else { throw .invalidValue(path: path, field: "", detail: "the compaction was skipped") }
        return plan
    }

    /// ``compact(at:output:schema:capacities:migration:dryRun:allowOtherOwner:progress:)``,
    /// waiting at most `lockTimeout` for the source's lock (and to open it):
    /// for `slotstore compact --lock-timeout`.
    @_spi(Tools) @discardableResult
    public static func compact(at path: String, output: String?, schema: Schema?, capacities: [String: Int],
                               migration: MigrationOptions, dryRun: Bool, allowOtherOwner: Bool,
                               lockTimeout: Duration, progress: ((WorkProgress) -> Void)?) throws(SlotStoreError) -> CompactionPlan {
        let seconds = OpenOptions(lockTimeout: lockTimeout).lockTimeoutSeconds
        let plan = try compact(at: path, output: output, schema: schema, capacities: capacities, migration: migration,
                               dryRun: dryRun, allowOtherOwner: allowOtherOwner, progress: progress,
                               lockTimeout: seconds, onlyIfCapacity: nil)
        guard let plan else { throw .invalidValue(path: path, field: "", detail: "the compaction was skipped") }
        return plan
    }

    /// ``compact(at:output:schema:capacities:migration:dryRun:allowOtherOwner:progress:)``,
    /// with the source opened with `lockTimeout` (nil: the default), and, for
    /// a map growth, done only if map `onlyIfCapacity.field` still has that
    /// capacity in the file it opens (nil when it hasn't: nothing was done).
    static func compact(at path: String, output: String? = nil, schema: Schema? = nil, capacities: [String: Int] = [:],
                        migration: MigrationOptions = MigrationOptions(), dryRun: Bool = false,
                        allowOtherOwner: Bool = false, progress: ((WorkProgress) -> Void)? = nil,
                        lockTimeout: Double?, onlyIfCapacity: (field: String, capacity: Int)?) throws(SlotStoreError) -> CompactionPlan? {
        // A compaction that waited for the lock of a file another compaction
        // replaced meanwhile starts again, on the new file.
        var attempt = 0
        while true {
            do {
                return try compactOnce(at: path, output: output, schema: schema, capacities: capacities, migration: migration,
                                       dryRun: dryRun, allowOtherOwner: allowOtherOwner, progress: progress,
                                       lockTimeout: lockTimeout, onlyIfCapacity: onlyIfCapacity)
            } catch .storeRetired where attempt < 8 {
                attempt += 1
            }
        }
    }

    private static func compactOnce(at path: String, output: String?, schema: Schema?, capacities: [String: Int],
                                    migration: MigrationOptions, dryRun: Bool, allowOtherOwner: Bool,
                                    progress: ((WorkProgress) -> Void)?, lockTimeout: Double?,
                                    onlyIfCapacity: (field: String, capacity: Int)?) throws(SlotStoreError) -> CompactionPlan? {
        let destination = output ?? path
        let inPlace = destination == path
        if !inPlace, case .success(_?) = Syscall.kind(at: destination) { throw .alreadyExists(path: destination) }
        // Plan first from the header and schema read with pread: a dry run,
        // or a compaction its plan refuses, writes nothing to the store, not
        // even the lock bookkeeping that a first opener resets.
        let (storedHeader, storedSchema) = try StoreCore.readStored(at: path)
        let planned = try makePlan(schema: storedSchema, header: storedHeader, path: path,
                                   target: targetSchema(storedSchema, schema, capacities: capacities, path: path),
                                   output: destination, migration: migration, dryRun: dryRun)
        if dryRun {
            var plan = planned
            if inPlace { plan.refusedWhileInUse = try refusalWhileInUse(at: path, from: storedSchema, to: targetSchema(storedSchema, schema, capacities: capacities, path: path)) }
            return plan
        }
        var sourceOptions = OpenOptions(mode: .open)
        sourceOptions.allowOtherOwner = allowOtherOwner
        if let lockTimeout { sourceOptions.lockTimeout = .nanoseconds(Int64(lockTimeout * 1e9)) }
        let source = try SlotStore(path: path, options: sourceOptions)
        defer { source.close() }
        if let onlyIfCapacity {
            guard case .map(_, _, let capacity)? = source.schema.field(named: onlyIfCapacity.field)?.type,
                  capacity == onlyIfCapacity.capacity else { return nil }
        }
        // Planned again from the file now open, which another compaction may have replaced meanwhile.
        let target = try targetSchema(source.schema, schema, capacities: capacities, path: path)
        // In place with other openers: they carry on in the new file, so it is
        // "live", and every field they may hold a handle to must keep working.
        var live = false
        if inPlace && !dryRun, case .success(false) = OpenGate.tryExclusive(source.core.file.fd) {
            if let operation = liveSwitchRefusal(from: source.schema, to: target) {
                throw .storeInUse(path: path, operation: operation)
            }
            live = true
        }
        var plan = try makePlan(schema: source.schema, header: source.core.header, path: path, target: target,
                                output: destination, migration: migration, dryRun: false)

        var info = stat()
        let mode = fstat(source.core.file.fd, &info) == 0 ? UInt32(info.st_mode & 0o7777) : 0o600
        TemporaryFiles.removeStale(for: destination)
        // Unique, and created exclusively: two compactions of one store (two
        // threads, or same-numbered processes in two PID namespaces) never
        // build into, or rename, each other's file.
        let unique = String(UInt64.random(in: 0...UInt64.max), radix: 36)
        let temporary = TemporaryFiles.path(for: destination, kind: "compacting", unique: unique)
        var options = OpenOptions(mode: .create, fileMode: mode,
                                  cacheLineAligned: source.core.header.flags.contains(.cacheLineAligned))
        options.initialGeneration = source.core.header.generation &+ 1
        // A file of format 1.0 has no seed yet (0): it gets a random one.
        options.initialHashSeed = source.core.header.hashSeed == 0 ? nil : source.core.header.hashSeed
        options.claimsProcessSlot = false  // its per-process slots are the source's, copied below
        if onlyIfCapacity != nil {
            // A growth happens by itself, inside some insert: it keeps the
            // file's format, so 1.x builds sharing a 1.x store can follow it.
            // Only a compaction or migration someone asked for upgrades.
            options.initialFormat = (source.core.header.formatMajor, source.core.header.formatMinor)
        }
        let result: SlotStore
        do {
            result = try SlotStore(path: temporary, schema: target, options: options)
        } catch {
            // No room for the new file, say: the caller knows the store, not the hidden name it was built under.
            throw error.replacingPath(temporary, with: destination)
        }
        defer {
            result.close()
            unlink(temporary)  // gone already once renamed or linked into place
        }
        result.core.journaling = false
        try keepOwner(of: source.core, for: result.core, live: live, path: path)

        // Hold the source's lock from the first byte copied until the new
        // file is in place: locked writers wait, and the copy is one
        // consistent moment for everything written under the lock. Lock-free
        // writers (scalars and array elements) are not stopped for the bulk
        // of the copy: in place, they are stopped and drained only for the
        // second pass, which copies again just the fields they can write
        // (kilobytes), so their pause doesn't grow with the maps.
        let sourceCore = source.core
        try sourceCore.transaction { () throws(SlotStoreError) in
            do throws(SlotStoreError) {
                try copy(from: sourceCore, to: result.core, target: target, plan: plan, path: path,
                         lockFreeWritableOnly: false, progress: progress)
                // The bulk of the flushing happens before anyone pauses.
                try result.sync()
                if inPlace {
                    sourceCore.fault(.afterBulkCopy)
                    // Also when nobody else had it open at the check above:
                    // a process opening it since may be writing lock-free.
                    try sourceCore.beginRetirement(timeout: sourceCore.lockTimeout, barrierRequired: live)
                    sourceCore.fault(.afterRetiring)
                    try copy(from: sourceCore, to: result.core, target: target, plan: plan, path: path,
                             lockFreeWritableOnly: true, progress: nil)
                    try result.sync()
                }
                // Processes can open the new file from its rename on: hold its
                // lock until its directory entry is durable, so no durable
                // commit lands in a file a power loss could still unname.
                try result.core.acquireLock()
                defer { result.core.releaseLock() }
                if inPlace {
                    // Marked before the rename: a compactor dying between the
                    // two leaves "retired" on a file still at its path, which
                    // the next process to take its lock makes live again.
                    sourceCore.finishRetirement(successor: result.core.fileIdentity ?? (0, 0), generation: options.initialGeneration)
                }
                try place(temporary, at: destination, replacing: inPlace)
                if live { sourceCore.fault(.afterRename) }
            } catch {
                if inPlace { sourceCore.abandonRetirement() }
                throw error
            }
        }
        plan.bytesAfter = result.core.file.size
        progress?(WorkProgress(step: "wrote \(destination)\(live ? "; the processes using it switch to it on their next operation" : "")", completed: 1, total: 1))
        return plan
    }

    /// The operation a compaction in place from `stored` to `target` would be
    /// refused as while others have the store open, or nil: their handles
    /// must keep working, so fields may only be added or given more room.
    /// A noun phrase, for ``SlotStoreError/storeInUse(path:operation:)``.
    private static func liveSwitchRefusal(from stored: Schema, to target: Schema) -> String? {
        let changed = stored.fields.filter { old in
            guard let new = target.field(named: old.name) else { return true }
            return !old.type.acceptsLiveSwitch(to: new.type) || old.perProcess != new.perProcess
        }
        guard !changed.isEmpty else { return nil }
        let names = changed.map { "\"\($0.name)\"" }.joined(separator: ", ")
        return "compaction in place that drops, retypes or shrinks \(names) (while processes use the store, fields may only be added or given more room)"
    }

    /// For a dry run: the refusal a compaction in place would meet now, with
    /// the same test of byte 0's lock that it makes, asked read-only of the
    /// kernel (`F_OFD_GETLK`), so nothing in the file changes.
    private static func refusalWhileInUse(at path: String, from stored: Schema, to target: Schema) throws(SlotStoreError) -> String? {
        guard let operation = liveSwitchRefusal(from: stored, to: target) else { return nil }
        let image = try FileImage.open(path, writable: false)
        defer { image.close() }
        guard case .success(true) = OpenGate.othersHaveOpen(image.fd) else { return nil }
        return "other processes have the store open, so the \(operation) would be refused, with nothing changed; "
            + "close the store in those processes first, or write the result to another path"
    }

    /// Gives the new file the source's owner when it differs (a compaction by
    /// another user allowed with `allowOtherOwner`): the processes that follow
    /// a live compaction refuse a file that isn't their user's.
    private static func keepOwner(of source: StoreCore, for result: StoreCore, live: Bool, path: String) throws(SlotStoreError) {
        var old = stat(), new = stat()
        guard fstat(source.file.fd, &old) == 0, fstat(result.file.fd, &new) == 0,
              old.st_uid != new.st_uid || old.st_gid != new.st_gid else { return }
        if fchown(result.file.fd, old.st_uid, old.st_gid) != 0 && live {
            throw .permissionDenied(path: path, operation: "give the compacted store its owner (user \(old.st_uid)), which the processes using it need in order to follow it; compact as that user or as root, or when they have closed it")
        }
    }

    /// Copies every field of `target` that the source has, converted (or, with
    /// `lockFreeWritableOnly`, the scalars and arrays again, which lock-free
    /// writers may have changed since); call holding both locks or with the
    /// target private. Maps go entry by entry between the two mappings.
    private static func copy(from source: StoreCore, to result: StoreCore, target: Schema, plan: CompactionPlan, path: String,
                             lockFreeWritableOnly: Bool, progress: ((WorkProgress) -> Void)?) throws(SlotStoreError) {
        try result.transaction { () throws(SlotStoreError) in
            for field in target.fields {
                guard let old = source.layout.field(named: field.name),
                      let new = result.layout.field(named: field.name) else { continue }
                if lockFreeWritableOnly && !old.type.isLockFreeWritable { continue }
                let fate = plan.fields.first { $0.name == field.name }?.fate ?? "copy"
                let step = "copying \(field.name)"
                if old.perProcess != nil && old.perProcess == new.perProcess && old.type == new.type {
                    // Each live process's contribution stays its own (see `copyContributions`).
                    try result.copyContributions(from: source, old, to: new)
                    continue
                }
                if old.type.isMap && new.type.isMap {
                    let copy = MapCopy(from: MapTable(core: source, field: old), to: MapTable(core: result, field: new),
                                       fate: fate, path: path)
                    try copy.run(step: step, progress: progress) { start, end in
                        source.file.releasePages(from: start, to: end)
                    }
                    continue
                }
                progress?(WorkProgress(step: step, completed: 0, total: 1))
                let value = try source.readValue(old, locked: true)
                let converted = try MigrationRules.migrate(value, from: old.type, to: new.type, fate: fate,
                                                           field: field.name, path: path)
                try result.writeValue(converted, to: new)
                progress?(WorkProgress(step: step, completed: 1, total: 1))
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
        // A map that grew keeps its room through a migration to a schema that
        // still declares its first capacity: only --capacity shrinks it.
        for index in target.fields.indices {
            guard let old = stored.field(named: target.fields[index].name),
                  case .map(let key, let value, let capacity) = target.fields[index].type,
                  case .map(_, _, let grown) = old.type, old.growth != nil, grown > capacity else { continue }
            let limit = target.fields[index].growth?.maxCapacity ?? grown
            target.fields[index].type = .map(key: key, value: value, capacity: min(grown, max(limit, capacity)))
        }
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

    static func makePlan(schema stored: Schema, header: FileHeader, path: String, target: Schema, output: String,
                         migration: MigrationOptions, dryRun: Bool) throws(SlotStoreError) -> CompactionPlan {
        var fields: [CompactionPlan.FieldPlan] = []
        var refusals: [String] = []
        for field in target.fields {
            guard let old = stored.field(named: field.name) else {
                fields.append(.init(name: field.name, fate: "new", from: nil, to: field.planDescription))
                continue
            }
            switch MigrationRules.fate(of: field.name, from: old.type, to: field.type, options: migration) {
            case .success(let fate): fields.append(.init(name: field.name, fate: fate, from: old.planDescription, to: field.planDescription))
            case .failure(let refusal): refusals.append(refusal.reason)
            }
        }
        for field in stored.fields where target.field(named: field.name) == nil {
            if migration.allowDropping {
                fields.append(.init(name: field.name, fate: "drop", from: field.planDescription, to: nil))
            } else {
                refusals.append("field \"\(field.name)\" would be dropped with its value; pass the dropping flag (--allow-dropping) to drop it")
            }
        }
        guard refusals.isEmpty else { throw .migrationRefused(path: path, reasons: refusals) }
        let after = Layout(schema: target, schemaBytes: target.jsonBytes().count, pageSize: Int(header.pageSize),
                           cacheLineAligned: header.flags.contains(.cacheLineAligned))
        return CompactionPlan(path: path, output: output, bytesBefore: Int(header.fileSize),
                              bytesAfter: after.fileSize, formatBefore: header.formatVersion,
                              formatAfter: FileHeader.versionString(for: target),
                              schemaVersion: target.version, fields: fields, dryRun: dryRun)
    }
}

extension Field {
    /// The type as a plan shows it, with a map's growth and cache policies:
    /// "map<string[32], int64>[1024], grows ×2 at 90% up to 4000000",
    /// "map<string[32], int64>[1024], cache: expiring entries, evicts when full".
    var planDescription: String {
        type.description + (growth.map { ", \($0)" } ?? "") + (cache.map { ", cache: \($0)" } ?? "")
    }
}
