import Synchronization

/// What a ``SlotStore`` keeps across a compaction in place: the path, the
/// options, and the files this process has used there, newest current.
///
/// When another process compacts the store in place, the old file is marked
/// retired (see `Retirement`) and every handle's next operation comes here to
/// find the successor, open it once, and carry on there. Retired engines stay
/// mapped until the store closes, because handles resolved against them may
/// still be in use on other threads.
@usableFromInline
final class StoreSession: Sendable {
    let path: String
    let options: OpenOptions
    private let engines: LockedState<Engines>

    struct Engines {
        var current: StoreCore
        var retired: [StoreCore] = []
        /// Why following the last retirement failed, for ``SlotStore/refresh()``.
        var switchFailure: SlotStoreError?
    }

    init(core: StoreCore, options: OpenOptions) {
        self.path = core.path
        var options = options
        options.mode = .open
        options.migration = nil
        self.options = options
        self.engines = LockedState(Engines(current: core))
        self.newest = Atomic(StoreSession.bits(core))
    }

    /// The newest engine, read without the mutex (transactions start here):
    /// an unretained reference, valid because `engines` keeps every engine
    /// alive until the store is closed.
    private let newest: Atomic<UInt>

    var current: StoreCore {
        // The bits are never 0: they always hold a live engine's address.
        Unmanaged<StoreCore>.fromOpaque(UnsafeRawPointer(bitPattern: newest.load(ordering: .acquiring))!).takeUnretainedValue()
    }

    private static func bits(_ core: StoreCore) -> UInt { UInt(bitPattern: Unmanaged.passUnretained(core).toOpaque()) }

    /// Set by ``close()`` before any engine is unmapped: calls that would read
    /// the mapping check it first and throw `storeClosed` instead of faulting.
    private let closed = Atomic<Bool>(false)

    /// Throws `storeClosed` once ``close()`` has begun.
    func ensureOpen() throws(SlotStoreError) {
        if _slowPath(closed.load(ordering: .acquiring)) { throw .storeClosed(path: path) }
    }

    /// `core` if it is live, else the newest engine, switching to the successor at the path if needed.
    func live(after core: StoreCore) throws(SlotStoreError) -> StoreCore {
        try ensureOpen()
        if _fastPath(!core.gate.isRetired && core.isAttachedHere) { return core }
        // Handles resolved before a switch come here on every call: no mutex
        // when this process has already switched.
        let newest = current
        if !newest.gate.isRetired && newest.isAttachedHere { return newest }
        return try follow()
    }

    /// Switches to the successor of every retired file, in order; returns the newest engine.
    @discardableResult
    func follow() throws(SlotStoreError) -> StoreCore {
        try engines.withLock { engines throws(SlotStoreError) -> StoreCore in
            try ensureOpen()
            if !engines.current.isAttachedHere { try reattachAfterFork(&engines) }
            while engines.current.gate.isRetired {
                let old = engines.current
                do throws(SlotStoreError) {
                    // This process's contribution follows it (see `PerProcessLayout`).
                    var following = options
                    following.processSlotPreference = old.processSlot
                    let next = try StoreCore.open(path: path, schema: nil, options: following).0
                    // While the old file is still open here: fold the slots the
                    // compaction carried over for processes that died before following.
                    try? next.foldGoneContributions(takingOver: false, predecessor: old)
                    if next.gate.isRetired {
                        // Marked retired yet at the path: taking the lock makes
                        // it live (see acquireLock), unless it was just replaced too.
                        do throws(SlotStoreError) {
                            try next.acquireLock()
                            next.releaseLock()
                        } catch .storeRetired {
                        } catch {
                            throw error
                        }
                    }
                    // Followed whatever the new schema: a handle whose field was
                    // dropped or changed by a compaction (possible once every
                    // process that had the store open switched) stays on the
                    // retired file, and ``liveField(_:_:)`` says why.
                    engines.retired.append(old)
                    old.retireDescriptor()
                    engines.current = next
                    newest.store(StoreSession.bits(next), ordering: .releasing)
                    engines.switchFailure = nil
                    StoreSession.forward(engines.retired, to: next)
                } catch {
                    engines.switchFailure = error
                    throw error
                }
            }
            return engines.current
        }
    }

    /// In a child of `fork()`: opens the store again, so the child has its own
    /// descriptor, OFD locks, PID and thread slots. The inherited engine stays
    /// mapped for handles resolved against it (they come here, as after a
    /// compaction); the fork handler closed its descriptor (see `MappedFile`),
    /// and its parent's threads, counted in it, don't exist here.
    private func reattachAfterFork(_ engines: inout Engines) throws(SlotStoreError) {
        let inherited = engines.current
        do throws(SlotStoreError) {
            let own = try StoreCore.open(path: path, schema: nil, options: options).0
            engines.retired.append(inherited)
            engines.current = own
            newest.store(StoreSession.bits(own), ordering: .releasing)
            StoreSession.forward(engines.retired, to: own)
        } catch {
            engines.switchFailure = error
            throw error
        }
    }

    /// The error of the last failed switch, or of a handle whose field the
    /// new file no longer has; reported once.
    func takeSwitchFailure() -> SlotStoreError? {
        engines.withLock { engines in
            defer { engines.switchFailure = nil }
            return engines.switchFailure
        }
    }

    /// Points every retired engine's ``Forwarding`` at `live`: each field to
    /// the field of the same name there, if a handle can switch to its type.
    /// Call holding the engines' lock.
    private static func forward(_ retired: [StoreCore], to live: StoreCore) {
        for old in retired {
            let numbers = old.layout.fields.map { field -> Int in
                guard let found = live.layout.field(named: field.name),
                      field.type.acceptsLiveSwitch(to: found.type, perProcess: field.perProcess, found.perProcess) else { return -1 }
                return found.index
            }
            old.forwarding.fill(live: live, numbers: numbers)
        }
    }

    /// Field number `index` of `core`, in the live engine.
    func liveField(_ core: StoreCore, _ index: Int) throws(SlotStoreError) -> (StoreCore, FieldLayout) {
        if core.gate.isRetired, let (live, number) = core.forwarding.lookUp(index) {
            try ensureOpen()
            return (live, live.layout.fields[number])
        }
        let live = try live(after: core)
        do {
            return (live, try resolve(core.layout.fields[index], in: live))
        } catch {
            // A later compaction dropped or changed the field (see `follow()`).
            engines.withLock { $0.switchFailure = error }
            throw error
        }
    }

    /// Locks the live engine, following retirements; returns it locked.
    @usableFromInline
    func lockLive() throws(SlotStoreError) -> StoreCore {
        // The common case holds one reference: the engine it returns. The
        // lock comes first: `acquireLock` refuses a closed engine before it
        // touches the mapping, and checks retirement once it holds the lock.
        let newest = current
        do {
            try newest.acquireLock()
            return newest
        } catch .storeRetired {
            return try lockLiveSlowly()  // compacted in place: follow
        }
    }

    @inline(never)
    private func lockLiveSlowly() throws(SlotStoreError) -> StoreCore {
        var core = try live(after: current)
        while true {
            do {
                try core.acquireLock()
                return core
            } catch .storeRetired {
                core = try follow()
            }
        }
    }

    /// The slow path of a lock-free write: the store is retiring or retired,
    /// or this thread has no slot cached yet. Runs `write` on the live file,
    /// marked in flight or under the lock.
    ///
    /// If the successor can't be opened, the write goes to the retired file
    /// (lock-free writes can't throw); ``SlotStore/refresh()`` reports why.
    @usableFromInline @inline(never)
    func writeLockFree<R>(_ core: StoreCore, field index: Int, _ write: (FieldWords) -> R) -> R {
        // A handle from before a compaction, once this process follows it: a few loads.
        if core.gate.isRetired, let (live, number) = core.forwarding.lookUp(index),
           let marker = live.gate.enter() {
            let result = write(FieldWords(live, fieldNumber: number))
            live.notifyAfterLockFreeWrite(field: number)
            live.gate.leave(marker)
            return result
        }
        var core = core
        var field = core.layout.fields[index]
        while true {
            if core.gate.isRetired || !core.isAttachedHere {
                guard let (live, liveField) = try? liveField(core, field.index) else { return notified(core, field, write) }
                (core, field) = (live, liveField)
            }
            if let marker = core.gate.enter() ?? core.enterClaimingThreadSlot() {
                let result = notified(core, field, write)
                core.gate.leave(marker)
                return result
            }
            // Being retired, or no thread slot free: the compactor holds the
            // lock from "retiring" to "retired", so a write under it is
            // either copied or goes to the successor.
            if core.lock.heldByCallingThread {
                return notified(core, field, write)  // inside a transaction through another object on this file
            }
            do {
                try core.acquireLock()
            } catch .storeRetired {
                continue
            } catch .lockTimeout {
                // A compaction of a large store may outlast the timeout, and a
                // write with neither a slot nor the lock could be lost by one:
                // wait on. (A lock-free write can't throw; the holder is alive,
                // or the lock would have been recovered.)
                continue
            } catch .nestedTransaction {
                return notified(core, field, write)  // this thread holds the lock already
            } catch .storeClosed {
                preconditionFailure("\(path): a handle was used after close()")
            } catch {
                return notified(core, field, write)  // an unusable lock: as before compaction existed
            }
            let result = notified(core, field, write)
            core.releaseLock()
            return result
        }
    }

    /// `write`, then a wake of the field's waiters if one may wait (see `ChangeNotification`).
    private func notified<R>(_ core: StoreCore, _ field: FieldLayout, _ write: (FieldWords) -> R) -> R {
        let result = write(FieldWords(core, field))
        core.notifyAfterLockFreeWrite(field: field.index)
        return result
    }

    /// The slow path of a lock-free read of a retired file.
    @usableFromInline @inline(never)
    func readLockFree<R>(_ core: StoreCore, field index: Int, _ read: (FieldWords) -> R) -> R {
        if core.gate.isRetired, let (live, number) = core.forwarding.lookUp(index) {
            return read(FieldWords(live, fieldNumber: number))
        }
        guard let (live, field) = try? liveField(core, index) else { return read(FieldWords(core, core.layout.fields[index])) }
        return read(FieldWords(live, field))
    }

    /// Closes every engine this process used at the path.
    func close() {
        closed.store(true, ordering: .releasing)
        let all = engines.withLock { $0.retired + [$0.current] }
        for core in all { core.close() }
    }
}

/// The words a lock-free operation touches, for inlined handle code.
@usableFromInline
struct FieldWords {
    /// The scalar, or an array's first element.
    @usableFromInline let payload: MappedAddress
    /// An array's element-write counter (a scalar's own word otherwise; a
    /// per-process field's has-value word).
    @usableFromInline let elementWrites: MappedAddress
    /// Whether a write must set the has-value word (per-process max and min).
    @usableFromInline let marksValue: Bool

    init(_ core: StoreCore, _ field: FieldLayout) {
        if field.perProcess != nil {
            // This process's own slot in this file (its base without one).
            let words = core.contributionWords(field)
            payload = words.value
            elementWrites = words.hasValue ?? words.value
            marksValue = field.perProcess == .max || field.perProcess == .min
            return
        }
        payload = core.address(field.payloadOffset)
        elementWrites = field.hasSequence ? core.address(field.secondWordOffset) : payload
        marksValue = false
    }

    /// The words of field number `number` of `core`, read in place (copying
    /// the field's layout costs retains of its name and type).
    init(_ core: StoreCore, fieldNumber number: Int) {
        let layout = core.layout
        if let aggregate = layout.fields[number].perProcess {
            let words = core.contributionWords(layout.fields[number])
            payload = words.value
            elementWrites = words.hasValue ?? words.value
            marksValue = aggregate == .max || aggregate == .min
            return
        }
        payload = core.address(layout.fields[number].payloadOffset)
        elementWrites = layout.fields[number].hasSequence ? core.address(layout.fields[number].secondWordOffset) : payload
        marksValue = false
    }
}

extension FieldType {
    /// Whether a handle resolved for a field of this type keeps working on a
    /// field of `other`: the same type, or a string, bytes or map with more room.
    func acceptsLiveSwitch(to other: FieldType) -> Bool {
        acceptsLiveSwitch(to: other, perProcess: nil, nil)
    }

    /// The same, for fields with their per-process aggregates, which must not
    /// change: a per-process handle writes a slot, a plain one the shared word.
    func acceptsLiveSwitch(to other: FieldType, perProcess aggregate: PerProcessAggregate?, _ otherAggregate: PerProcessAggregate?) -> Bool {
        guard aggregate == otherAggregate else { return false }
        return switch (self, other) {
        case (.string(let old), .string(let new)), (.bytes(let old), .bytes(let new)): new >= old
        case (.map(let oldKey, let oldValue, _), .map(let newKey, let newValue, _)): oldKey == newKey && oldValue == newValue
        default: self == other
        }
    }
}
