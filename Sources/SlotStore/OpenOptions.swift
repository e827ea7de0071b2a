/// How ``SlotStore`` opens or creates a store.
public struct OpenOptions: Sendable {
    /// Whether opening may create the store, must create it, or must find it.
    public enum Mode: Sendable, Hashable {
        /// Open the store, creating it if the path is free (the default).
        case createOrOpen
        /// Create the store; fail with ``SlotStoreError/alreadyExists(path:)`` if anything is at the path.
        case create
        /// Open an existing store; fail with ``SlotStoreError/fileNotFound(path:)`` if there is none.
        case open
    }

    /// What a committed write survives.
    public enum Durability: Sendable, Hashable {
        /// Committed writes survive the death of any process at once; they
        /// reach the disk when the kernel writes dirty pages back or at
        /// ``SlotStore/sync()``. Nothing orders the journal's pages before the
        /// data's on the way to disk, so after a power loss a write that was in
        /// progress can be found half done: use ``flushOnCommit`` where that matters.
        case processCrash
        /// Every locked write and transaction is flushed (`msync`) before it
        /// returns, so it also survives a power loss: each checksummed journal
        /// record reaches the disk before the data it protects, and one flush
        /// at commit writes the data with the records sealed by their new
        /// values, which recovery redoes. Costs one flush per changed field and
        /// one per commit: two for a one-field write. Every process writing the
        /// store must use it for the guarantee to hold. Lock-free scalar and
        /// array-element writes are not flushed: call ``SlotStore/sync()``.
        case flushOnCommit
    }

    /// Create, open, or either. Default: ``Mode/createOrOpen``.
    public var mode: Mode
    /// Permission bits of a created file. Default: `0o600`, owner only.
    public var fileMode: UInt32
    /// How long a locked write waits for the lock before failing with
    /// ``SlotStoreError/lockTimeout(path:holderPID:holderAlive:holderInAnotherPIDNamespace:seconds:)``. Default: 5 seconds.
    public var lockTimeout: Duration
    /// Default: ``Durability/processCrash``.
    public var durability: Durability
    /// Place every field on its own 64-byte cache line, so hot counters written
    /// by different processes don't contend for one line. Applies when creating
    /// a store; an existing store keeps its layout. Default: `false`.
    public var cacheLineAligned: Bool

    /// When the given schema differs from the stored one: nil (the default)
    /// fails with ``SlotStoreError/schemaMismatch(path:differences:)``; a value
    /// migrates the store to the given schema first, as ``SlotStore/compact(at:output:schema:capacities:migration:dryRun:allowOtherOwner:progress:)``
    /// does, with these permissions. Migration rewrites the file, so no other
    /// process may have the store open then.
    public var migration: MigrationOptions?

    /// Open a store whose file belongs to another user. Default: `false`, so a
    /// file planted by someone else in a shared directory such as `/dev/shm`
    /// is refused with ``SlotStoreError/ownedByAnotherUser(path:owner:user:)``.
    public var allowOtherOwner: Bool = false

    /// The clock that deadlines of cache maps (see ``MapCache``) are read
    /// on. Default: ``CacheClock/system``, the real-time clock; tests pass a
    /// ``CacheClock/manual(startingAt:)`` clock to expire entries without sleeping.
    public var clock: CacheClock = .system

    /// The generation written into a created header; compaction sets it.
    var initialGeneration: UInt64 = 1
    /// For a compaction's new file: the source's map hash seed, so each map's
    /// entries land where they were (or, in a map twice as large, in two runs
    /// in the same order): the copy writes the new file front to back instead
    /// of at random, several times faster for maps bigger than the caches.
    /// Nil: a new random seed.
    var initialHashSeed: UInt64?
    /// For a map's own growth: the source file's format version, kept, so a
    /// store that builds of format 1.x share is never upgraded behind their
    /// backs (they could not follow it into 2.0). Nil: the version the schema
    /// needs (``FileHeader/version(for:)``), as any other compaction writes.
    var initialFormat: (major: UInt16, minor: UInt16)?
    /// For a process following a compaction in place: the process slot it
    /// had in the file before, and its token (see `PerProcessLayout`).
    var processSlotPreference: ProcessSlotClaim?
    /// False for a compaction's new file, whose slots the copy fills.
    var claimsProcessSlot = true

    /// Creates options; every parameter has the default described on its property.
    public init(mode: Mode = .createOrOpen, fileMode: UInt32 = 0o600, lockTimeout: Duration = .seconds(5),
                durability: Durability = .processCrash, cacheLineAligned: Bool = false,
                migration: MigrationOptions? = nil) {
        self.mode = mode
        self.fileMode = fileMode
        self.lockTimeout = lockTimeout
        self.durability = durability
        self.cacheLineAligned = cacheLineAligned
        self.migration = migration
    }

    var lockTimeoutSeconds: Double {
        let (seconds, attoseconds) = lockTimeout.components
        // Clamped to about 31 years, so "wait forever" can't overflow a timespec.
        return min(1e9, max(0, Double(seconds) + Double(attoseconds) / 1e18))
    }
}
