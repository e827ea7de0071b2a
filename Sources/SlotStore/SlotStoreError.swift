/// Every error SlotStore throws.
///
/// Each case reads as a sentence through ``description``: the path, what was
/// expected, what was found, and what to do. ``code`` is a stable number for
/// logs and exit statuses.
public enum SlotStoreError: Error, Sendable, Equatable, CustomStringConvertible {
    /// No store exists at the path and the open mode does not create one.
    case fileNotFound(path: String)
    /// A file exists at the path and the open mode only creates.
    case alreadyExists(path: String)
    /// The final path component is a symbolic link, which SlotStore refuses.
    case symbolicLink(path: String)
    /// The path names a directory, device, socket or other non-regular file.
    case notARegularFile(path: String, found: String)
    /// The operating system denied access.
    case permissionDenied(path: String, operation: String)
    /// The file is empty: a creation that never finished, or not a store.
    case emptyFile(path: String)
    /// The file is shorter than its header says it must be.
    case truncated(path: String, expectedBytes: Int, foundBytes: Int)
    /// The file does not start with the SlotStore magic.
    case notAStore(path: String, foundMagic: String)
    /// The file's major format version is one this library cannot read.
    case unsupportedVersion(path: String, found: String, supported: String)
    /// The header's checksum does not match its bytes.
    case headerChecksumMismatch(path: String, stored: UInt32, computed: UInt32)
    /// The header's fields are inconsistent with each other or with the file.
    case corruptHeader(path: String, detail: String)
    /// The stored schema is damaged.
    case corruptSchema(path: String, detail: String)
    /// The lock in the file was made by a different C library or architecture.
    case incompatibleLock(path: String, found: String, expected: String)
    /// A schema given in code or JSON is not valid.
    case invalidSchema(String)
    /// The given schema differs from the stored one.
    case schemaMismatch(path: String, differences: [SchemaDifference])
    /// The store has no field with this name.
    case unknownField(path: String, name: String, available: [String])
    /// The field exists but has another type than the handle asked for.
    case wrongFieldType(path: String, name: String, expected: String, found: String)
    /// A value does not fit the field's capacity or count.
    case valueTooLarge(path: String, field: String, capacity: Int, size: Int)
    /// A value cannot be represented by the field's type.
    case invalidValue(path: String, field: String, detail: String)
    /// A map holds as many entries as its capacity allows.
    case mapFull(path: String, field: String, capacity: Int, count: Int)
    /// A migration would lose or change data in a way its options do not allow.
    case migrationRefused(path: String, reasons: [String])
    /// A compaction (or migration) in place can't run while the store is open
    /// elsewhere (other processes, or other ``SlotStore`` objects in this one):
    /// it would drop, retype, widen, narrow or resize a field their handles may
    /// use (only new fields, larger strings and bytes, and other map capacities
    /// are allowed then), or it could not stop their lock-free writes
    /// (`membarrier(2)` unavailable, or a thread stayed inside a lock-free write
    /// past the lock timeout). Nothing was changed.
    case storeInUse(path: String, operation: String)
    /// The store was closed in this process.
    case storeClosed(path: String)
    /// A consistent read did not succeed within the lock timeout because the field kept changing.
    case readTimeout(path: String, field: String, seconds: Double)
    /// The transaction committed, but flushing it to disk failed afterwards.
    ///
    /// Only a ``OpenOptions/Durability/flushOnCommit`` commit whose journal had
    /// no room to seal every record flushes after its commit point.
    case committedButNotFlushed(path: String, detail: String)
    /// The file belongs to another user and the options do not allow that.
    case ownedByAnotherUser(path: String, owner: UInt32, user: UInt32)
    /// The lock was not acquired within the timeout.
    ///
    /// `holderPID` is the PID the holder recorded, as its own PID namespace
    /// numbers it; `holderInAnotherPIDNamespace` says when that namespace is
    /// not this process's (a container sharing the file), where the same
    /// number names another process or none. `holderAlive` comes from a lock
    /// the kernel holds for the holder while it lives, so it is true across
    /// namespaces too.
    case lockTimeout(path: String, holderPID: Int32, holderAlive: Bool, holderInAnotherPIDNamespace: Bool, seconds: Double)
    /// The lock is permanently unusable until every process closes the store.
    case lockUnrecoverable(path: String)
    /// A lock was requested by a thread that already holds it.
    case nestedTransaction(path: String)
    /// A transaction changed more bytes than the undo journal holds.
    case transactionTooLarge(path: String, neededBytes: Int, journalBytes: Int)
    /// The file system has no room for the store.
    case noSpace(path: String, neededBytes: Int)
    /// Any other failed system call.
    case systemCallFailed(path: String, call: String, errno: Int32)
    /// The directory that should hold the store does not exist.
    case directoryNotFound(path: String, directory: String)
    /// The file was compacted in place: a new file replaced it at its path.
    /// A ``SlotStore`` follows by itself; you see this only from code holding
    /// the old file's engine directly.
    case storeRetired(path: String)
    /// Every process slot of a `liveSum` field is held by a live process, so
    /// this process's contribution could not be dropped at its death.
    case processSlotsFull(path: String, field: String, slots: Int)

    /// A stable number for this kind of error.
    public var code: Int {
        switch self {
        case .fileNotFound: 1
        case .alreadyExists: 2
        case .symbolicLink: 3
        case .notARegularFile: 4
        case .permissionDenied: 5
        case .emptyFile: 6
        case .truncated: 7
        case .notAStore: 8
        case .unsupportedVersion: 9
        case .headerChecksumMismatch: 10
        case .corruptHeader: 11
        case .corruptSchema: 12
        case .incompatibleLock: 13
        case .invalidSchema: 14
        case .schemaMismatch: 15
        case .unknownField: 16
        case .wrongFieldType: 17
        case .valueTooLarge: 18
        case .invalidValue: 19
        case .lockTimeout: 20
        case .lockUnrecoverable: 21
        case .nestedTransaction: 22
        case .transactionTooLarge: 23
        case .noSpace: 24
        case .systemCallFailed: 25
        case .mapFull: 26
        case .migrationRefused: 27
        case .storeInUse: 28
        case .storeClosed: 29
        case .readTimeout: 30
        case .committedButNotFlushed: 31
        case .ownedByAnotherUser: 32
        case .storeRetired: 33
        case .directoryNotFound: 34
        case .processSlotsFull: 35
        }
    }

    /// The same error naming `new` where it named `old`: for operations that
    /// build a store under a hidden temporary name, whose errors must name the
    /// path the caller gave.
    func replacingPath(_ old: String, with new: String) -> SlotStoreError {
        switch self {
        case .fileNotFound(let path): .fileNotFound(path: path == old ? new : path)
        case .alreadyExists(let path): .alreadyExists(path: path == old ? new : path)
        case .symbolicLink(let path): .symbolicLink(path: path == old ? new : path)
        case .notARegularFile(let path, let found): .notARegularFile(path: path == old ? new : path, found: found)
        case .permissionDenied(let path, let operation): .permissionDenied(path: path == old ? new : path, operation: operation)
        case .emptyFile(let path): .emptyFile(path: path == old ? new : path)
        case .truncated(let path, let expectedBytes, let foundBytes): .truncated(path: path == old ? new : path, expectedBytes: expectedBytes, foundBytes: foundBytes)
        case .notAStore(let path, let foundMagic): .notAStore(path: path == old ? new : path, foundMagic: foundMagic)
        case .unsupportedVersion(let path, let found, let supported): .unsupportedVersion(path: path == old ? new : path, found: found, supported: supported)
        case .headerChecksumMismatch(let path, let stored, let computed): .headerChecksumMismatch(path: path == old ? new : path, stored: stored, computed: computed)
        case .corruptHeader(let path, let detail): .corruptHeader(path: path == old ? new : path, detail: detail)
        case .corruptSchema(let path, let detail): .corruptSchema(path: path == old ? new : path, detail: detail)
        case .incompatibleLock(let path, let found, let expected): .incompatibleLock(path: path == old ? new : path, found: found, expected: expected)
        case .invalidSchema: self
        case .schemaMismatch(let path, let differences): .schemaMismatch(path: path == old ? new : path, differences: differences)
        case .unknownField(let path, let name, let available): .unknownField(path: path == old ? new : path, name: name, available: available)
        case .wrongFieldType(let path, let name, let expected, let found): .wrongFieldType(path: path == old ? new : path, name: name, expected: expected, found: found)
        case .valueTooLarge(let path, let field, let capacity, let size): .valueTooLarge(path: path == old ? new : path, field: field, capacity: capacity, size: size)
        case .invalidValue(let path, let field, let detail): .invalidValue(path: path == old ? new : path, field: field, detail: detail)
        case .mapFull(let path, let field, let capacity, let count): .mapFull(path: path == old ? new : path, field: field, capacity: capacity, count: count)
        case .migrationRefused(let path, let reasons): .migrationRefused(path: path == old ? new : path, reasons: reasons)
        case .storeInUse(let path, let operation): .storeInUse(path: path == old ? new : path, operation: operation)
        case .processSlotsFull(let path, let field, let slots): .processSlotsFull(path: path == old ? new : path, field: field, slots: slots)
        case .storeClosed(let path): .storeClosed(path: path == old ? new : path)
        case .readTimeout(let path, let field, let seconds): .readTimeout(path: path == old ? new : path, field: field, seconds: seconds)
        case .committedButNotFlushed(let path, let detail): .committedButNotFlushed(path: path == old ? new : path, detail: detail)
        case .ownedByAnotherUser(let path, let owner, let user): .ownedByAnotherUser(path: path == old ? new : path, owner: owner, user: user)
        case .lockTimeout(let path, let holderPID, let holderAlive, let holderInAnotherPIDNamespace, let seconds): .lockTimeout(path: path == old ? new : path, holderPID: holderPID, holderAlive: holderAlive, holderInAnotherPIDNamespace: holderInAnotherPIDNamespace, seconds: seconds)
        case .lockUnrecoverable(let path): .lockUnrecoverable(path: path == old ? new : path)
        case .nestedTransaction(let path): .nestedTransaction(path: path == old ? new : path)
        case .transactionTooLarge(let path, let neededBytes, let journalBytes): .transactionTooLarge(path: path == old ? new : path, neededBytes: neededBytes, journalBytes: journalBytes)
        case .noSpace(let path, let neededBytes): .noSpace(path: path == old ? new : path, neededBytes: neededBytes)
        case .systemCallFailed(let path, let call, let errno): .systemCallFailed(path: path == old ? new : path, call: call, errno: errno)
        case .directoryNotFound(let path, let directory): .directoryNotFound(path: path == old ? new : path, directory: directory)
        case .storeRetired(let path): .storeRetired(path: path == old ? new : path)
        }
    }

    /// The error as one sentence: path, expected, found, remedy.
    public var description: String {
        switch self {
        case .fileNotFound(let path):
            "\(path): no store exists here; create it (open mode .createOrOpen or .create, or `slotstore create`) or check the path"
        case .alreadyExists(let path):
            "\(path): a file already exists here and the open mode was create-only; open it instead, or remove it first"
        case .symbolicLink(let path):
            "\(path): the final path component is a symbolic link, which SlotStore refuses so a link cannot redirect writes; open the link's target path directly"
        case .notARegularFile(let path, let found):
            "\(path): expected a regular file, found a \(found); give the path of a store file"
        case .permissionDenied(let path, let operation):
            "\(path): permission denied to \(operation); check the file's owner and mode (stores are created 0600 by default)"
        case .emptyFile(let path):
            "\(path): the file is empty, not a store; remove it and create the store again"
        case .truncated(let path, let expected, let found):
            "\(path): the file is truncated: expected \(expected) bytes, found \(found); restore it from a dump or backup (`slotstore verify` describes the damage)"
        case .notAStore(let path, let magic):
            "\(path): not a SlotStore file: expected magic \"SlotStor\", found \(magic); check the path"
        case .unsupportedVersion(let path, let found, let supported):
            "\(path): the file has format version \(found), this library reads \(supported); use a newer SlotStore"
        case .headerChecksumMismatch(let path, let stored, let computed):
            "\(path): header checksum mismatch: stored \(hex(stored)), computed \(hex(computed)); the header is damaged, run `slotstore repair` to restore it from its copy"
        case .corruptHeader(let path, let detail):
            "\(path): the header is damaged: \(detail); run `slotstore verify` for details and `slotstore repair` to restore it from its copy"
        case .corruptSchema(let path, let detail):
            "\(path): the stored schema is damaged: \(detail); run `slotstore verify` for details"
        case .incompatibleLock(let path, let found, let expected):
            "\(path): the store's lock was made for \(found), this process uses \(expected); every process sharing a store must use the same C library and architecture"
        case .invalidSchema(let detail):
            "invalid schema: \(detail)"
        case .schemaMismatch(let path, let differences):
            "\(path): the schema differs from the stored one: \(differences.map(\.description).joined(separator: "; ")); open with the stored schema (pass none) or migrate the store"
        case .unknownField(let path, let name, let available):
            "\(path): no field named \"\(name)\"; the store has \(available.isEmpty ? "no fields" : available.joined(separator: ", ")); use one of those names (a handle looked up before a compaction that dropped its field can't follow it: look it up again)"
        case .wrongFieldType(let path, let name, let expected, let found):
            "\(path): field \"\(name)\" was asked for as \(expected) but is \(found) in the schema; use a handle of the stored type"
        case .valueTooLarge(let path, let field, let capacity, let size):
            "\(path): a value of \(size) bytes does not fit field \"\(field)\", whose capacity is \(capacity); shorten the value or give the field a larger capacity (the stored value is unchanged)"
        case .invalidValue(let path, let field, let detail):
            "\(path): invalid value for field \"\(field)\": \(detail); the stored value is unchanged"
        case .mapFull(let path, let field, let capacity, let count):
            "\(path): map \"\(field)\" is full: \(counted(count, "entry", plural: "entries")) for a capacity of \(capacity); remove entries, or give it a larger capacity (`slotstore compact PATH --capacity \(field)=N`, or `SlotStore.compact(at:capacities:)`); nothing was inserted"
        case .migrationRefused(let path, let reasons):
            "\(path): the migration was refused, nothing was changed: \(reasons.joined(separator: "; "))"
        case .storeInUse(let path, let operation):
            "\(path): \(operation) is refused while the store is open elsewhere (another process, or another SlotStore object in this one), and nothing was changed; close it there first, or write the result elsewhere (`slotstore compact --output NEWPATH`)"
        case .processSlotsFull(let path, let field, let slots):
            "\(path): per-process field \"\(field)\" (liveSum) has no slot for this process: all \(slots) are held by processes that have the store open, and without a slot of its own this process's contribution could not be dropped when it dies; close the SlotStore objects you don't need (each open holds one), or open the store in fewer processes"
        case .storeClosed(let path):
            "\(path): this store was closed in this process; open it again to use it"
        case .readTimeout(let path, let field, let seconds):
            "\(path): no consistent read of field \"\(field)\" within \(seconds) s because other writers kept changing it; read it inside a transaction, or raise the lock timeout"
        case .committedButNotFlushed(let path, let detail):
            "\(path): the transaction IS committed (do not retry it), but flushing it to disk failed afterwards: \(detail); check the disk, then call sync()"
        case .ownedByAnotherUser(let path, let owner, let user):
            "\(path): the file belongs to user \(owner), not to this process's user \(user); a store someone else created could be hostile, so it is refused. Open it as its owner, or allow it explicitly (OpenOptions.allowOtherOwner, `slotstore --allow-other-owner`)"
        case .lockTimeout(let path, let pid, let alive, let otherNamespace, let seconds):
            "\(path): the store's lock was not acquired within \(seconds) s; it is held by \(HolderIdentity.name(pid: pid, inAnotherPIDNamespace: otherNamespace))\(alive ? " (alive)" : pid == 0 ? "" : " (not running)"); find out why that process holds it, or raise the lock timeout"
        case .lockUnrecoverable(let path):
            "\(path): the store's lock is unrecoverable; close the store in every process, and the next opener resets it (or run `slotstore repair`)"
        case .nestedTransaction(let path):
            "\(path): this thread already holds the store's lock (inside a transaction); write through the transaction's methods instead of the handle's"
        case .transactionTooLarge(let path, let needed, let journal):
            "\(path): the transaction changes \(needed) bytes but the undo journal holds \(journal); split it into smaller transactions (nothing was written)"
        case .noSpace(let path, let needed):
            "\(path): no space left for \(needed) bytes; free space on the file system (or raise the size of /dev/shm) and try again"
        case .directoryNotFound(let path, let directory):
            "\(path): the directory \(directory) does not exist, so no store can be created in it; create the directory first (`mkdir -p \(directory)`) or check the path"
        case .storeRetired(let path):
            "\(path): this file was compacted in place and a new file replaced it at the same path; open the store again to use the new file"
        case .systemCallFailed(let path, let call, let errno):
            "\(path): \(call) failed: \(errnoDescription(errno)) (errno \(errno))"
        }
    }
}

private func hex(_ value: UInt32) -> String {
    let digits = String(value, radix: 16)
    return "0x" + String(repeating: "0", count: max(0, 8 - digits.count)) + digits
}

/// `count` and `noun` in the right number, for messages: "1 record", "2 records".
func counted(_ count: some BinaryInteger, _ noun: String, plural: String? = nil) -> String {
    "\(count) \(count == 1 ? noun : plural ?? noun + "s")"
}
