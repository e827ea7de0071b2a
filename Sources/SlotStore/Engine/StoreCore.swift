import Glibc
import Synchronization

/// The engine behind a ``SlotStore``: the mapping, the lock, the journal, and
/// the write and read protocols every handle uses.
@usableFromInline
final class StoreCore: @unchecked Sendable {
    let path: String
    @usableFromInline let file: MappedFile
    let header: FileHeader
    let layout: Layout
    let schema: Schema
    let lock: LockRegion
    let journal: UndoJournal
    let lockTimeout: Double
    /// Opened with ``OpenOptions/allowOtherOwner``: a map growth compacts it the same way.
    let allowsOtherOwner: Bool
    let durable: Bool
    /// What cache maps read deadlines on (``OpenOptions/clock``); held so a
    /// manual clock's word, which map cursors point at, outlives them.
    let clock: CacheClock
    /// Cached: glibc no longer caches `getpid()`, and it is written at every
    /// lock acquisition. A forked child never locks through its parent's
    /// engine: it opens its own (see `isAttachedHere`), with its own PID.
    let pid: Int32
    /// The thread slot this open claimed for itself (see `LockRegion`); nil when all were taken.
    let attachmentSlot: Int?
    /// What an acquisition writes at the holder offset: the PID and the attachment slot.
    let holderWord: UInt64
    /// The process's fork generation when this engine was opened: a child of
    /// `fork()` sees another, and re-opens the store instead of using this.
    let forkGeneration: UInt64
    /// The thread holding the lock through this object, so a nested lock
    /// becomes an error instead of a self-deadlock.
    private let lockingThread = Atomic<UInt>(0)
    /// Set once the lock found this file retired and another file at its path (see ``acquireLock()``).
    private let confirmedRetired = Atomic<Bool>(false)
    /// Threads of this process inside `acquireLock`…`releaseLock`; `close()`
    /// waits for none, because unmapping under a held robust mutex would
    /// leave it stuck for every process (the kernel can't mark a mutex it
    /// can no longer reach as owner-dead).
    private let lockUsers: LockUsers
    /// False only while compaction fills a new store that no other process
    /// can see yet: a crash then leaves just a temporary file, so the undo
    /// journal (which holds at most 1 MiB of a large map) is not needed.
    nonisolated(unsafe) var journaling = true
    /// Read once: a static flag would cost a lazy-initialization check at every fault point.
    let faultsEnabled = FaultInjection.enabled
    /// The retirement word and this core's thread-slot cache key, for inlined handle code.
    @usableFromInline let gate: LockFreeGate
    /// This process's thread slots in the file (see `Retirement`).
    let threadSlots: LockedState<ThreadSlots>
    private static let nextNumber = Atomic<UInt64>(1)
    /// The file's device and inode, from open: what "still at the path" compares.
    let identity: (device: UInt64, inode: UInt64)?
    /// By field index: the entry count at which an insert grows the map
    /// (`Int.max` for fields that don't grow; see ``MapGrowth``).
    let growthCounts: [Int]
    /// A map growth an insert asked for (field index and the capacity it
    /// found), run as soon as the lock is released. Set and taken only by the
    /// thread holding the lock, so plain storage is enough.
    nonisolated(unsafe) var pendingGrowth: (field: Int, capacity: Int)?
    /// Why the last growth of a map failed, by field index: shown instead of
    /// `mapFull`, and it keeps inserts below the full capacity from trying again.
    let growthFailures = LockedState<[Int: SlotStoreError]>([:])
    /// Once this file is retired: where its fields are in the live file (see ``Forwarding``).
    let forwarding: Forwarding
    /// This process's threads waiting for a change in this file (see `ChangeWaiting`).
    let waiters = ChangeWaiters()
    /// This open's slot in the per-process fields (see `PerProcessLayout`);
    /// nil without such fields, or with every slot taken. Set once, during
    /// the open, before any other thread sees this engine.
    nonisolated(unsafe) var processSlot: ProcessSlotClaim?

    init(path: String, file: MappedFile, header: FileHeader, layout: Layout, schema: Schema, options: OpenOptions) {
        self.path = path
        self.file = file
        self.header = header
        self.layout = layout
        self.schema = schema
        self.lock = LockRegion(base: file.base.advanced(by: layout.lockOffset))
        self.journal = UndoJournal(base: file.base.advanced(by: layout.journalOffset), capacity: layout.journalSize,
                                   journalOffset: layout.journalOffset,
                                   dataRange: layout.dataOffset..<(layout.dataOffset + layout.dataSize),
                                   fileBase: file.base)
        self.lockTimeout = options.lockTimeoutSeconds
        self.allowsOtherOwner = options.allowOtherOwner
        self.durable = options.durability == .flushOnCommit
        self.clock = options.clock
        self.pid = getpid()
        self.forkGeneration = file.forkGeneration
        let attachmentSlot = lock.claimAttachmentSlot(fd: file.fd, pid: pid,
                                                      slotCount: LockRegion.threadSlotCount(lockSize: layout.lockSize))
        self.attachmentSlot = attachmentSlot
        self.holderWord = LockRegion.holderWord(pid: pid, attachmentSlot: attachmentSlot)
        self.threadSlots = LockedState(ThreadSlots(held: attachmentSlot.map { [$0] } ?? []))
        var info = stat()
        self.identity = fstat(file.fd, &info) == 0 ? (UInt64(info.st_dev), UInt64(info.st_ino)) : nil
        let number = StoreCore.nextNumber.wrappingAdd(1, ordering: .relaxed).oldValue
        self.gate = LockFreeGate(retirement: file.base.advanced(by: layout.lockOffset + LockRegion.retirementOffset),
                                 store: number)
        self.lockUsers = LockUsers(store: number)
        self.forwarding = Forwarding(fieldCount: layout.fields.count)
        self.growthCounts = layout.fields.map { field in
            guard case .map(_, _, let capacity) = field.type,
                  let growth = schema.field(named: field.name)?.growth else { return Int.max }
            return growth.growthCount(capacity: capacity)
        }
        ChangeNotification.prepareProcess()
    }

    @inlinable
    func address(_ offset: Int) -> MappedAddress { file.base.advanced(by: offset) }

    /// A crash point for tests (see `FaultInjection`); one predictable branch otherwise.
    @inline(__always)
    func fault(_ point: FaultPoint) {
        if _slowPath(faultsEnabled) { FaultInjection.trigger(point) }
    }

    // MARK: The lock

    @usableFromInline
    func acquireLock() throws(SlotStoreError) {
        // In a forked child: the session re-opens the store (see `StoreSession.follow`).
        if _slowPath(!isAttachedHere) { throw .storeRetired(path: path) }
        let me = UInt(pthread_self())
        if lockingThread.load(ordering: .relaxed) == me { throw .nestedTransaction(path: path) }
        // Marked before touching the mutex, so close() never unmaps under it.
        guard lockUsers.enter() else { throw .storeClosed(path: path) }
        // A file this engine saw retired and gone from its path stays so:
        // handles from before a compaction go on to the live file without
        // locking this one and looking at the path (a stat) on every call.
        if _slowPath(confirmedRetired.load(ordering: .relaxed)) {
            lockUsers.leave()
            throw .storeRetired(path: path)
        }
        let code = lock.tryLock()
        if _slowPath(code != 0) {
            do {
                try lockAndRecover(afterTry: code)
            } catch {
                lockUsers.leave()
                throw error
            }
        }
        lockingThread.store(me, ordering: .relaxed)
        lock.holder.pointee.store(holderWord, ordering: .relaxed)
        let count = lock.acquisitions.pointee.load(ordering: .relaxed)
        lock.acquisitions.pointee.store(count &+ 1, ordering: .relaxed)
        if _slowPath(lock.retirement.pointee.load(ordering: .relaxed) != Retirement.live) {
            try checkRetirementHoldingLock()
        }
    }

    /// Compaction in place holds the lock from "retiring" to "retired", so with
    /// the lock held the word should read retired, and the file be gone from
    /// its path. Anything else (a damaged word, a retired file put back at its
    /// path) is made live, so no caller chases a successor that isn't there.
    @inline(never)
    private func checkRetirementHoldingLock() throws(SlotStoreError) {
        if lock.retirement.pointee.load(ordering: .relaxed) == Retirement.retired && !isStillAtPath() {
            confirmedRetired.store(true, ordering: .relaxed)
            releaseLock()
            throw .storeRetired(path: path)
        }
        lock.retirement.pointee.store(Retirement.live, ordering: .releasing)
    }

    @inline(never)
    private func lockAndRecover(afterTry code: Int32) throws(SlotStoreError) {
        switch lock.lock(timeout: lockTimeout, afterTry: code) {
        case .success(.clean):
            break
        case .success(.ownerDied):
            try recoverAfterOwnerDeath()
        case .failure(.timedOut):
            throw lockTimeoutError()
        case .failure(.unrecoverable):
            throw .lockUnrecoverable(path: path)
        case .failure(.failed(let code)):
            throw .systemCallFailed(path: path, call: "pthread_mutex_clocklock", errno: code)
        }
    }

    func releaseLock() {
        let growth = pendingGrowth
        if _slowPath(growth != nil) { pendingGrowth = nil }
        lock.holder.pointee.store(0, ordering: .relaxed)
        lockingThread.store(0, ordering: .relaxed)
        lock.unlock()
        // Every release, even of a lock that journaled nothing (the by-name
        // `add` is an atomic read-modify-write without an undo record), and
        // while still counted as a lock user, so close() can't unmap under it.
        notifyAfterLockedChange()
        lockUsers.leave()
        if let growth { growMap(field: growth.field, from: growth.capacity) }
    }

    /// Refuses new lock users, waits for the current ones, then unmaps.
    func close() {
        // Inherited through fork(): the threads counted belong to the parent.
        guard isAttachedHere else { return file.close() }
        precondition(lockingThread.load(ordering: .relaxed) != UInt(pthread_self()),
                     "close() called inside a transaction of the same store")
        waiters.close(self)
        lockUsers.close()
        file.close()
    }

    /// The one path after `EOWNERDEAD`: roll the dead writer's journal back,
    /// settle every seqlock, count the recovery, then mark the mutex consistent.
    private func recoverAfterOwnerDeath() throws(SlotStoreError) {
        let deadHolder = lock.holder.pointee.load(ordering: .relaxed)
        repairDataAfterInterruptedWrite(mayHaveLostPower: false)
        resolveInterruptedRetirement()
        recordRecovered(fromHolderWord: deadHolder)
        lock.lastRecoveryTime.pointee.store(StoreCore.nowNanoseconds(), ordering: .relaxed)
        let count = lock.recoveries.pointee.load(ordering: .relaxed)
        lock.recoveries.pointee.store(count &+ 1, ordering: .relaxed)
        if lock.markConsistent() != 0 {
            lock.unlock()
            throw .lockUnrecoverable(path: path)
        }
    }

    /// Rolls back a dirty journal and makes every odd sequence word even.
    /// Called with the lock held, or with no other process attached.
    /// `mayHaveLostPower`: the first opener since nobody had the store open
    /// (after a reboot, possibly a power loss) also walks every map bucket;
    /// a process recovering a dead holder's lock doesn't need to.
    func repairDataAfterInterruptedWrite(mayHaveLostPower: Bool = true) {
        rollBackJournal()
        for field in layout.fields where field.hasSequence {
            SequenceWord(address(field.sequenceOffset)).settle()
        }
        // Every bucket write is journaled with its sequence word, which the
        // rollback makes even again, so an odd bucket is only possible after
        // a power loss without flushOnCommit, and only the first opener walks
        // the buckets for one. A writer that died holding the lock is undone
        // by the journal alone: walking a 2M-entry map (470 MB) took 0.1-0.2 s,
        // which every lock-free writer waiting on the lock after a compactor
        // died (writes wait for the lock then) had to sit through.
        for field in layout.fields where field.type.isMap {
            let table = MapTable(core: self, field: field)
            if mayHaveLostPower { table.settleOddBuckets() } else { table.moveSequence.settle() }
        }
        for field in layout.fields where field.perProcess != nil {
            SequenceWord(address(field.offset + PerProcessLayout.foldSequenceOffset)).settle()
        }
    }

    /// Runs `body` under the lock; commits if it returns, rolls back if it
    /// throws. Inlined: the engine's own writes (string stores, map words)
    /// then pay for no closure context and no error conversion.
    @inline(__always)
    func transaction<R>(_ body: () throws(SlotStoreError) -> R) throws(SlotStoreError) -> R {
        try acquireLock()
        let result: R
        do throws(SlotStoreError) {
            result = try body()
        } catch {
            abort()
            throw error
        }
        try commitAndRelease()
        return result
    }

    /// Runs `body` with the lock already held by this thread (see
    /// ``acquireLock()``); commits if it returns, rolls back if it throws.
    @inlinable
    func finishTransaction<R>(_ body: () throws -> R) throws -> R {
        let result: R
        do {
            result = try body()
        } catch {
            abort()
            throw error
        }
        try commitAndRelease()
        return result
    }

    /// Rolls back everything the transaction wrote and releases the lock.
    @usableFromInline
    func abort() {
        rollBackJournal()
        releaseLock()
    }

    /// Restores the journal's before-images; in durable mode the restored
    /// data reaches the disk before the cleared journal does.
    func rollBackJournal() {
        // Undoing a map removal moves entries: readers retry misses meanwhile.
        let changed = journal.isDirty
        let moving = changed ? MapTable.beginRollback(in: self) : []
        defer {
            MapTable.endRollback(moving)
            // Lock-free readers may have seen the values rolled back: a change,
            // whose waiters the release of the lock wakes.
            if changed { countLockedChange() }
        }
        journal.rollBack(beforeClearing: durable ? { try? self.file.flush(offset: self.layout.dataOffset, count: self.layout.dataSize) } : nil)
        if durable { flushClearedHeader() }
    }

    /// Flushes the cleared journal header; once that returned, no journal is
    /// left on disk for the next transaction to step around. Throws what the flush threw.
    @discardableResult
    private func flushClearedHeader() -> SlotStoreError? {
        do {
            try file.flush(offset: layout.journalOffset, count: UndoJournal.headerBytes)
        } catch {
            return error
        }
        journal.forgetTransaction()
        return nil
    }

    /// Commits (clearing the journal is the commit point) and unlocks. A flush
    /// that fails before the commit point rolls back; one that fails after it
    /// reports that the transaction is committed but its durability in doubt.
    ///
    /// A durable commit of sealed records costs one flush (the seals and the
    /// data together) and leaves the cleared header unflushed: on disk the
    /// sealed journal stays "used" until the kernel, a `sync()` or the next
    /// durable transaction writes the header, and recovering it writes the same
    /// values again. The next durable transaction keeps it whole until then
    /// (see `UndoJournal.record`).
    @usableFromInline
    func commitAndRelease() throws(SlotStoreError) {
        // Counted before the commit point: a commit that then fails rolls
        // back, which counts again (a spurious change, never a missed one).
        if journal.isDirty { countLockedChange() }
        if durable && journal.isDirty && journal.seal() {
            // One flush writes the seals and the data: after a power loss,
            // sealed records are redone, so whatever part of the data reached
            // the disk, the transaction is whole. The range covers the whole
            // data region (a longer new string reaches bytes its old value did
            // not cover); msync writes only the dirty pages.
            do {
                try file.flush(offset: layout.journalOffset, count: layout.dataOffset + layout.dataSize - layout.journalOffset)
            } catch {
                // Withdrawn on disk too before the rollback flushes the data,
                // or a power loss could redo a commit reported as failed.
                journal.unseal()
                try? file.flush(offset: layout.journalOffset, count: layout.journalSize)
                abort()
                throw error
            }
            journal.clear()
        } else if durable && journal.isDirty {
            // A record the journal had no room to seal: the data, then the cleared journal.
            do {
                try file.flush(offset: layout.dataOffset, count: layout.dataSize)
            } catch {
                abort()
                throw error
            }
            journal.clear()
            if let error = flushClearedHeader() {
                fault(.beforeUnlock)
                releaseLock()
                throw .committedButNotFlushed(path: path, detail: error.description)
            }
        } else {
            journal.clear()
        }
        fault(.beforeUnlock)
        releaseLock()
    }

    // MARK: Locked writes

    /// Records the before-image of `offset..<offset+length`; call with the lock held, before changing those bytes.
    @inline(__always)
    func recordUndo(offset: Int, length: Int, sequenceOffset: Int) throws(SlotStoreError) {
        // The common case, a transaction's first record with no durability or
        // fault injection, inlined into the write; everything else out of line.
        if _fastPath(!durable && !faultsEnabled && journaling),
           journal.recordFirst(dataOffset: offset, length: length, sequenceOffset: sequenceOffset, pid: pid) {
            return
        }
        try recordUndoInGeneral(offset: offset, length: length, sequenceOffset: sequenceOffset)
    }

    @inline(never)
    private func recordUndoInGeneral(offset: Int, length: Int, sequenceOffset: Int) throws(SlotStoreError) {
        fault(.beforeJournal)
        guard journaling else { return }
        if durable {
            // The record and the size that publishes it reach the disk in one
            // flush before the data changes; its checksum covers the order.
            let allowance = journal.coverage.sealAllowance ?? {
                let computed = UndoJournal.sealAllowance(journalSize: layout.journalSize, schema: schema)
                journal.coverage.sealAllowance = computed
                return computed
            }()
            if let end = try journal.record(dataOffset: offset, length: length, sequenceOffset: sequenceOffset,
                                            pid: pid, path: path, durable: true, sealAllowance: allowance,
                                            retireSealedJournal: { () throws(SlotStoreError) in
                                                try file.flush(offset: layout.journalOffset, count: UndoJournal.headerBytes)
                                            }) {
                try file.flush(offset: journal.journalOffset, count: end)
            }
        } else {
            _ = try journal.record(dataOffset: offset, length: length, sequenceOffset: sequenceOffset, pid: pid, path: path)
        }
        fault(.afterJournal)
    }

    /// Makes the field's sequence word odd: readers retry until its `endWrite()`.
    @inline(__always)
    func beginSeqlockWrite(_ field: FieldLayout) -> SequenceWord {
        let sequence = SequenceWord(address(field.sequenceOffset))
        sequence.beginWrite()
        return sequence
    }

    /// Replaces a string or bytes field's value in its own transaction.
    /// Non-generic and borrowing the layout, so a handle's store passes no
    /// references through a closure (a retain and release each).
    func storeVariable(_ field: FieldLayout, _ source: UnsafeRawBufferPointer) throws(SlotStoreError) {
        try transaction { () throws(SlotStoreError) in try writeVariable(field, source) }
    }

    /// Replaces a string or bytes field's value. Call with the lock held.
    func writeVariable(_ field: FieldLayout, _ source: UnsafeRawBufferPointer) throws(SlotStoreError) {
        let capacity = field.payloadCapacity
        guard source.count <= capacity else {
            throw .valueTooLarge(path: path, field: field.name, capacity: capacity, size: source.count)
        }
        let lengthWord = address(field.secondWordOffset).atomic(UInt64.self)
        let oldLength = Int(min(lengthWord.pointee.load(ordering: .relaxed), UInt64(capacity)))
        // The longer of the two values: rolling back needs the old bytes, and a
        // durable commit's seal (redone after a power loss) needs every new one.
        try recordUndo(offset: field.secondWordOffset, length: 8 + roundUp(max(oldLength, source.count), to: 8),
                       sequenceOffset: field.sequenceOffset)
        let sequence = beginSeqlockWrite(field)
        let payload = address(field.payloadOffset)
        if let bytes = source.baseAddress {
            if _slowPath(faultsEnabled) {
                // Half, the crash point, the rest: a kill here leaves a torn value to roll back.
                let half = source.count / 2
                payload.copyShortBytes(from: bytes, count: half)
                fault(.midWrite)
                payload.advanced(by: half).copyShortBytes(from: bytes + half, count: source.count - half)
            } else {
                payload.copyShortBytes(from: bytes, count: source.count)
            }
        } else {
            fault(.midWrite)
        }
        lengthWord.pointee.store(UInt64(source.count), ordering: .relaxed)
        sequence.endWrite()
        fault(.afterWrite)
    }

    // MARK: Lock-free reads

    /// Calls `copy` until it ran while the field's sequence word (and, for
    /// arrays, the element-write counter) stayed even and unchanged.
    ///
    /// A writer that died mid-write leaves the word odd; after a bounded number
    /// of retries the reader takes the lock once, which rolls that write back,
    /// so a reader never spins forever.
    @inline(__always)
    func readConsistently<R>(_ field: FieldLayout, checkingElementWrites: Bool, _ copy: () -> R) throws(SlotStoreError) -> R {
        try readConsistently(sequence: address(field.sequenceOffset),
                             writes: checkingElementWrites ? address(field.secondWordOffset) : nil,
                             field: field.index, copy)
    }

    /// The same, given the words directly, so hot readers don't copy a `FieldLayout`.
    @inline(__always)
    func readConsistently<R>(sequence sequenceWord: MappedAddress, writes writesWord: MappedAddress?, field index: Int,
                             _ copy: () -> R) throws(SlotStoreError) -> R {
        let sequence = SequenceWord(sequenceWord)
        let writes = writesWord.map(ElementWriteCounter.init)
        var retry = ReadRetry()
        while true {
            if let before = sequence.beginRead() {
                let writesBefore = writes?.beginRead() ?? 0
                let result = copy()
                if sequence.endRead(before) && writes?.endRead(writesBefore) ?? true { return result }
            }
            // An odd word that stays odd may be a dead writer's (taking the
            // lock recovers it); one that keeps changing is live traffic.
            try retry.wait(core: self, field: layout.fields[index].name, stalled: sequence.isOdd)
        }
    }

    /// A consistent copy of array field number `field` into `destination`.
    /// Every SlotScalar but Bool has the same in-memory form as its stored
    /// little-endian bits, so the copy is bytes; Bool bytes are then
    /// normalized to 0 or 1 so a damaged byte can't become an invalid Bool.
    @usableFromInline
    func readArraySnapshot(field index: Int, into destination: UnsafeMutableRawPointer) throws(SlotStoreError) {
        let field = layout.fields[index]
        guard case .array(let element, let count) = field.type else { return }
        let bytes = count * element.byteWidth
        let source = address(field.payloadOffset)
        try readConsistently(field, checkingElementWrites: true) {
            source.copyBytes(to: destination, count: bytes)
        }
        if element == .bool {
            let flags = destination.assumingMemoryBound(to: UInt8.self)
            for offset in 0..<count where flags[offset] > 1 { flags[offset] = 1 }
        }
    }

    /// Replaces every element of array field number `field` from `source`
    /// (count × width bytes in the elements' in-memory form). Call with the
    /// lock held. Non-generic: each element is one atomic store of its width,
    /// so lock-free element readers never see a torn element.
    @usableFromInline
    func writeWholeArray(field index: Int, from source: UnsafeRawPointer) throws(SlotStoreError) {
        let field = layout.fields[index]
        guard case .array(let element, let count) = field.type else { return }
        let width = element.byteWidth
        try recordUndo(offset: field.payloadOffset, length: roundUp(count * width, to: 8), sequenceOffset: field.sequenceOffset)
        let sequence = beginSeqlockWrite(field)
        let destination = address(field.payloadOffset)
        let half = count / 2
        let byteMask: UInt8 = element == .bool ? 1 : 0xFF
        MappedAddress.storeElements(from: source, to: destination, width: width, range: 0..<half, byteMask: byteMask)
        fault(.midWrite)
        MappedAddress.storeElements(from: source, to: destination, width: width, range: half..<count, byteMask: byteMask)
        sequence.endWrite()
        fault(.afterWrite)
    }

    /// ``writeWholeArray(field:from:)`` in its own transaction.
    @usableFromInline
    func storeWholeArray(field index: Int, from source: UnsafeRawPointer) throws(SlotStoreError) {
        try transaction { () throws(SlotStoreError) in try writeWholeArray(field: index, from: source) }
    }

    @usableFromInline
    func arrayCountError(field index: Int, given: Int) -> SlotStoreError {
        let field = layout.fields[index]
        let count = if case .array(_, let count) = field.type { count } else { 0 }
        return .invalidValue(path: path, field: field.name, detail: "expected exactly \(counted(count, "element")), found \(given)")
    }

    /// Journals a scalar's 8-byte slot before a transaction changes it.
    @usableFromInline
    func recordScalarUndo(offset: Int) throws(SlotStoreError) {
        try recordUndo(offset: offset, length: 8, sequenceOffset: 0)
    }

    /// The fault points after a transaction's scalar write.
    @usableFromInline
    func afterScalarWrite() {
        // A scalar has no half-written state; "mid-write" is the moment between
        // this field and the next one of the transaction.
        fault(.midWrite)
        fault(.afterWrite)
    }

    @inline(never)
    func settleStalledWriter() throws(SlotStoreError) {
        do {
            try acquireLock()
        } catch .storeRetired {
            return  // the lock was taken and released: a dead writer is rolled back
        }
        releaseLock()
    }

    // MARK: Helpers

    /// Whether a process of this PID namespace is running: only a fallback
    /// for holders that recorded no attachment slot (see `HolderIdentity`).
    static func isAlive(_ pid: Int32) -> Bool {
        guard pid > 0 else { return false }
        return kill(pid, 0) == 0 || errno == EPERM
    }

    static func monotonicNanoseconds() -> UInt64 {
        var now = timespec()
        clock_gettime(CLOCK_MONOTONIC, &now)
        return UInt64(now.tv_sec) * 1_000_000_000 + UInt64(now.tv_nsec)
    }

    static func nowNanoseconds() -> Int64 {
        var now = timespec()
        clock_gettime(CLOCK_REALTIME, &now)
        return Int64(now.tv_sec) * 1_000_000_000 + Int64(now.tv_nsec)
    }
}
