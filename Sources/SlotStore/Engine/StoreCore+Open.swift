import Glibc

extension StoreCore {
    /// Opens the store at `path`, creating it if the mode allows and the path is free.
    /// - Returns: the engine, and whether this call created the file.
    static func open(path: String, schema: Schema?, options: OpenOptions) throws(SlotStoreError) -> (StoreCore, created: Bool) {
        if let schema { try schema.validate() }
        // Each failed round means another process changed the path just now
        // (a creator, a remover, a compaction in place renaming its file over
        // it). Rounds go on, backing off, for up to the lock timeout: back-to-
        // back compactions (a map growing under heavy inserts) beat a fixed
        // few rounds, and a waiting opener is what the lock timeout allows.
        var backoffMicroseconds: UInt32 = 20
        let deadline = ContinuousClock.now + .milliseconds(Int64(max(options.lockTimeoutSeconds, 0.05) * 1000))
        for round in 0... {
            if round > 0 {
                guard ContinuousClock.now < deadline else { break }
                usleep(backoffMicroseconds)
                backoffMicroseconds = min(backoffMicroseconds * 2, 5_000)
            }
            switch Syscall.kind(at: path) {
            case .failure(let code):
                throw Syscall.fileError(code, path: path, call: "lstat", operation: "look up the store")
            case .success(nil):
                guard options.mode != .open else { throw .fileNotFound(path: path) }
                guard let schema else { throw .fileNotFound(path: path) }
                let created = try createFile(path: path, schema: schema, options: options)
                if !created && options.mode == .create { throw .alreadyExists(path: path) }
                if let core = try openExisting(path: path, schema: schema, options: options, justCreated: created) { return (core, created) }
            case .success(.symbolicLink?):
                throw .symbolicLink(path: path)
            case .success(let kind?):
                guard options.mode != .create else { throw .alreadyExists(path: path) }
                guard kind == .regular else { throw .notARegularFile(path: path, found: kind.name) }
                if let core = try openExisting(path: path, schema: schema, options: options) { return (core, false) }
            }
        }
        throw .systemCallFailed(path: path, call: "open (the path kept changing under concurrent create and remove)", errno: EAGAIN)
    }

    /// Builds a complete store under a temporary name and links it into place,
    /// so no opener can ever see a half-written header.
    /// - Returns: false if another process linked its store first.
    private static func createFile(path: String, schema: Schema, options: OpenOptions) throws(SlotStoreError) -> Bool {
        let schemaBytes = schema.jsonBytes()
        let pageSize = Int(sysconf(Int32(_SC_PAGESIZE)))
        let version = options.initialFormat ?? FileHeader.version(for: schema)
        let layout = Layout(schema: schema, schemaBytes: schemaBytes.count, pageSize: pageSize,
                            cacheLineAligned: options.cacheLineAligned, mapLayout: MapLayoutVersion.forFormat(major: version.major))
        let header = FileHeader(
            formatMajor: version.major, formatMinor: version.minor,
            pageSize: UInt32(pageSize),
            flags: options.cacheLineAligned ? [.cacheLineAligned] : [],
            lockABI: LockRegion.currentABI,
            fileSize: UInt64(layout.fileSize),
            lockOffset: UInt64(layout.lockOffset), lockSize: UInt64(layout.lockSize),
            journalOffset: UInt64(layout.journalOffset), journalSize: UInt64(layout.journalSize),
            schemaOffset: UInt64(layout.schemaOffset), schemaSize: UInt64(layout.schemaSize),
            schemaLength: UInt32(schemaBytes.count), schemaChecksum: CRC32C.checksum(schemaBytes),
            dataOffset: UInt64(layout.dataOffset), dataSize: UInt64(layout.dataSize),
            schemaVersion: UInt64(schema.version), schemaHash: schema.fieldsHash,
            generation: options.initialGeneration, createdAtNanoseconds: nowNanoseconds(),
            hashSeed: options.initialHashSeed ?? UInt64.random(in: 0...UInt64.max))

        TemporaryFiles.removeStale(for: path)
        let (fd, temporary): (Int32, String)
        switch TemporaryFiles.createClaimed(for: path, mode: mode_t(options.fileMode & 0o7777)) {
        case .success(let created): (fd, temporary) = created
        case .failure(let code) where code.rawValue == ENOENT || code.rawValue == ENOTDIR:
            throw .directoryNotFound(path: path, directory: TemporaryFiles.directory(of: path))
        case .failure(let code):
            throw Syscall.fileError(code, path: path, call: "open", operation: "create a file in its directory")
        }
        defer {
            unlink(temporary)  // before the claim ends, so no remover races for the name
            TemporaryFiles.release(fd)
        }
        // The process umask must not narrow the mode the caller asked for.
        _ = fchmod(fd, mode_t(options.fileMode & 0o7777))
        // Allocate every byte now: a full disk or /dev/shm fails here with a
        // clear error, never later as a SIGBUS on a store through the mapping.
        let allocation = posix_fallocate(fd, 0, off_t(layout.fileSize))
        if allocation != 0 {
            if allocation == ENOSPC || allocation == EDQUOT { throw .noSpace(path: path, neededBytes: layout.fileSize) }
            throw .systemCallFailed(path: path, call: "posix_fallocate of \(layout.fileSize) bytes", errno: allocation)
        }
        let headerBytes = header.encoded()
        var lockBytes = [UInt8](repeating: 0, count: LockRegion.bytes)
        lockBytes.withUnsafeMutableBytes { buffer in
            LockRegion.initialize(buffer.baseAddress!.assumingMemoryBound(to: pthread_mutex_t.self))
        }
        lockBytes.replaceSubrange(LockRegion.bootIDOffset..<(LockRegion.bootIDOffset + 16), with: LockRegion.currentBootID)
        let writes: [([UInt8], Int)] = [
            (headerBytes, 0), (headerBytes, FileHeader.copyOffset),
            (lockBytes, layout.lockOffset), (schemaBytes, layout.schemaOffset),
        ]
        for (bytes, offset) in writes {
            if case .failure(let code) = Syscall.write(fd, bytes, at: offset) {
                throw Syscall.fileError(code, path: path, call: "pwrite", operation: "write the new store")
            }
        }
        // On a disk, the content must be durable before the name points at it,
        // or a power loss could leave a linked file of zeros.
        if case .failure(let code) = Syscall.retrying({ fsync(fd) }) {
            throw Syscall.fileError(code, path: path, call: "fsync", operation: "write the new store")
        }
        guard try TemporaryFiles.link(temporary, to: path, operation: "put the new store in place") else { return false }
        TemporaryFiles.syncDirectory(of: path)
        return true
    }

    /// Validates and maps an existing store, then passes the open gate.
    /// Nothing is written to the file unless every check passed.
    /// - Returns: nil if the file vanished between lookup and open.
    private static func openExisting(path: String, schema: Schema?, options: OpenOptions,
                                     justCreated: Bool = false) throws(SlotStoreError) -> StoreCore? {
        let fd: Int32
        switch Syscall.open(path, flags: O_RDWR | O_NOFOLLOW) {
        case .success(let opened): fd = opened
        case .failure(let code) where code.rawValue == ENOENT: return nil
        case .failure(let code):
            throw Syscall.fileError(code, path: path, call: "open", operation: "open the store for reading and writing")
        }
        var ownsDescriptor = true
        defer { if ownsDescriptor { Glibc.close(fd) } }
        // One fstat for the owner check and validation (an open is a handful of system calls; each counts).
        let info: (kind: FileKind, size: Int, owner: uid_t)
        switch Syscall.size(of: fd) {
        case .success(let value): info = value
        case .failure(let code): throw Syscall.fileError(code, path: path, call: "fstat", operation: "examine the file")
        }
        if !options.allowOtherOwner, info.owner != geteuid() {
            throw .ownedByAnotherUser(path: path, owner: info.owner, user: geteuid())
        }

        let (header, storedSchema) = try readValidated(fd: fd, path: path, kind: info.kind, size: info.size)
        if let schema {
            let differences = storedSchema.differences(to: schema)
            guard differences.isEmpty else { throw .schemaMismatch(path: path, differences: differences) }
        }
        let layout = try Layout(header: header, schema: storedSchema, path: path)
        ownsDescriptor = false
        let file = try MappedFile(path: path, fd: fd, size: Int(header.fileSize), writable: true)
        let core = StoreCore(path: path, file: file, header: header, layout: layout, schema: storedSchema, options: options)
        try core.passOpenGate(justCreated: justCreated)
        // Compaction replaces the file by renaming a new one over the path
        // while it holds the exclusive open lock; an opener that waited on the
        // old file must not use it. Same inode as the path now, or start over.
        guard core.isStillAtPath() else { return nil }
        if options.claimsProcessSlot && layout.fields.contains(where: { $0.processSlots > 0 }) {
            do {
                try core.attachProcessSlot(preferring: options.processSlotPreference)
            } catch .storeRetired {
                // Compacted in place since the check above (the slot is
                // claimed under the lock, which a retired file refuses): the
                // path names the new file now, so start over there.
                core.close()
                return nil
            } catch {
                core.close()
                throw error
            }
        }
        return core
    }

    /// Whether the path still names the file this core has open.
    func isStillAtPath() -> Bool {
        var named = stat()
        guard let identity, lstat(path, &named) == 0 else { return false }
        return identity.device == UInt64(named.st_dev) && identity.inode == UInt64(named.st_ino)
    }

    /// The validated header and stored schema of the store at `path`, read
    /// without opening it for writing (no open gate, nothing written).
    static func readStored(at path: String) throws(SlotStoreError) -> (FileHeader, Schema) {
        let fd: Int32
        switch Syscall.open(path, flags: O_RDONLY | O_NOFOLLOW) {
        case .success(let opened): fd = opened
        case .failure(let code): throw Syscall.fileError(code, path: path, call: "open", operation: "read the store")
        }
        defer { Glibc.close(fd) }
        return try readValidated(fd: fd, path: path)
    }

    /// Reads and checks the header and the stored schema with `pread`, never
    /// through a mapping, so a truncated file gives an error rather than SIGBUS.
    static func readValidated(fd: Int32, path: String) throws(SlotStoreError) -> (FileHeader, Schema) {
        switch Syscall.size(of: fd) {
        case .success(let info): return try readValidated(fd: fd, path: path, kind: info.kind, size: info.size)
        case .failure(let code): throw Syscall.fileError(code, path: path, call: "fstat", operation: "examine the file")
        }
    }

    /// ``readValidated(fd:path:)`` given what `fstat` already said of the file.
    static func readValidated(fd: Int32, path: String, kind: FileKind, size: Int) throws(SlotStoreError) -> (FileHeader, Schema) {
        guard kind == .regular else { throw .notARegularFile(path: path, found: kind.name) }
        guard size > 0 else { throw .emptyFile(path: path) }
        let headerBytes: [UInt8]
        switch Syscall.read(fd, count: FileHeader.size, at: 0) {
        case .success(let bytes): headerBytes = bytes
        case .failure(let code): throw Syscall.fileError(code, path: path, call: "pread", operation: "read the header")
        }
        if headerBytes.count < FileHeader.size, headerBytes.count >= 8, Array(headerBytes[0..<8]) == FileHeader.magic {
            throw .truncated(path: path, expectedBytes: FileHeader.size, foundBytes: size)
        }
        let header = try FileHeader.decode(headerBytes, path: path)
        try header.validateRegions(actualFileSize: size, path: path)
        guard header.lockABI == LockRegion.currentABI else {
            throw .incompatibleLock(path: path, found: LockRegion.describeABI(header.lockABI),
                                    expected: LockRegion.describeABI(LockRegion.currentABI))
        }
        let schemaBytes: [UInt8]
        switch Syscall.read(fd, count: Int(header.schemaLength), at: Int(header.schemaOffset)) {
        case .success(let bytes): schemaBytes = bytes
        case .failure(let code): throw Syscall.fileError(code, path: path, call: "pread", operation: "read the stored schema")
        }
        let checksum = CRC32C.checksum(schemaBytes)
        guard checksum == header.schemaChecksum else {
            throw .corruptSchema(path: path, detail: "its checksum is \(checksum), the header says \(header.schemaChecksum)")
        }
        let schema: Schema
        do {
            schema = try Schema.decodingStored(schemaBytes, source: "the stored schema")
        } catch {
            throw .corruptSchema(path: path, detail: error.description)
        }
        guard schema.fieldsHash == header.schemaHash, UInt64(schema.version) == header.schemaVersion else {
            throw .corruptSchema(path: path, detail: "the stored schema does not match the hash and version in the header")
        }
        return (header, schema)
    }

    /// Takes this process's shared open lock; if it is the only opener, first
    /// resets the lock region and rolls back a leftover journal.
    /// `justCreated`: this call linked the file into place, all zeros but its
    /// header, lock and schema, so there is nothing to repair (and walking a
    /// big map's buckets to learn that would touch every page of the file).
    private func passOpenGate(justCreated: Bool) throws(SlotStoreError) {
        switch OpenGate.tryExclusive(file.fd) {
        case .failure(let code):
            throw .systemCallFailed(path: path, call: "fcntl(F_OFD_SETLK)", errno: code.rawValue)
        case .success(true):
            resetAsOnlyOpener(nothingToRepair: justCreated && !journal.isDirty)
        case .success(false):
            break
        }
        switch OpenGate.shared(file.fd, timeout: lockTimeout) {
        case .success(true):
            break
        case .success(false):
            throw .storeInUse(path: path, operation: "opening (another process held the store exclusively for over \(lockTimeout) s: a first opener resetting it, or a compaction in place; if that process is stopped, continue or kill it)")
        case .failure(let code):
            throw .systemCallFailed(path: path, call: "fcntl(F_OFD_SETLK)", errno: code.rawValue)
        }
    }

    /// No other process has the store open, so nothing can hold or wait on
    /// the mutex: whatever its bytes say (a holder from before a reboot, from
    /// a PID namespace that is gone) is stale.
    func resetAsOnlyOpener(nothingToRepair: Bool = false) {
        let journalWasDirty = journal.isDirty
        let staleHolder = lock.holder.pointee.load(ordering: .relaxed)
        lock.initializeMutex()
        if !nothingToRepair {
            repairDataAfterInterruptedWrite()
            // A compaction or growth killed mid-way left its half-built file
            // beside the store; with nobody else here, nobody else will build
            // one now, and a map that stopped growing would never remove it.
            TemporaryFiles.removeStale(for: path)
        }
        resolveInterruptedRetirement()
        // Thread slots need no reset: a slot means something only while its
        // OFD lock is held, and claiming one clears it.
        if journalWasDirty {
            recordRecovered(fromHolderWord: staleHolder)
            lock.lastRecoveryTime.pointee.store(StoreCore.nowNanoseconds(), ordering: .relaxed)
            let count = lock.recoveries.pointee.load(ordering: .relaxed)
            lock.recoveries.pointee.store(count &+ 1, ordering: .relaxed)
        }
        let resets = lock.resets.pointee.load(ordering: .relaxed)
        lock.resets.pointee.store(resets &+ 1, ordering: .relaxed)
        if durable { try? file.flush() }
    }
}
