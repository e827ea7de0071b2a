import Glibc
import Synchronization

/// The bytes of a per-process field (see ``PerProcessAggregate``); every
/// field of this kind starts on a cache line, and each process's slot is a
/// line of its own, so processes writing at once never share one.
///
/// ```
/// header line  0  fold sequence u64   odd while a fold (or its rollback) changes the base
///              8  base u64            the folded contributions (mostRecent: the value itself)
///             16  base has value u64  1 once the base holds a value (max and min)
/// slot s       0  value u64           this process's contribution, written lock-free by it alone
///  (64 bytes)  8  has value u64       1 once it stored (max and min: an unset slot doesn't count)
///             16  owner token u64     random, per attachment; kept across a compaction
///             24  state u32           0 empty, 1 claimed, 2 inherited (copied by a compaction)
///             28  owner PID i32       for tools, and the inherited slots' liveness check
///             32  owner PID namespace u32
/// ```
///
/// A process claims slot `s` by taking the OFD write lock on byte
/// `processSlotLockBase + s` of the file (the kernel drops it when the
/// process dies, in whatever PID namespace), then, under the store's lock,
/// folds whatever a gone owner left there and writes its token. Slots of
/// per-process fields are claimed together: slot `s` of every such field
/// belongs to the same process.
enum PerProcessLayout {
    static let foldSequenceOffset = 0
    static let baseOffset = 8
    static let baseHasValueOffset = 16
    static let lineBytes = 64
    static let valueOffset = 0
    static let hasValueOffset = 8
    static let tokenOffset = 16
    static let stateOffset = 24
    static let ownerPIDOffset = 28
    static let ownerNamespaceOffset = 32
    /// What a fold journals of the header: the base and its flag.
    static let headerJournalBytes = 16
    /// What a fold or a claim journals of a slot: everything up to the namespace, padded.
    static let slotJournalBytes = 40
    /// The OFD lock byte of process slot 0: past the thread slots' bytes (2^40 + slot).
    static let processSlotLockBase = 1 << 41

    static let empty: UInt32 = 0
    static let claimed: UInt32 = 1
    static let inherited: UInt32 = 2

    static func bytes(processSlots: Int) -> Int { lineBytes * (1 + processSlots) }
}

extension FieldLayout {
    func slotOffset(_ slot: Int) -> Int { offset + PerProcessLayout.lineBytes * (1 + slot) }
    var baseOffset: Int { offset + PerProcessLayout.baseOffset }
}

/// This attachment's process slot: its index and the token that marks its contributions.
struct ProcessSlotClaim: Sendable, Hashable {
    let slot: Int
    let token: UInt64
}

/// A per-process field's words, read from a mapping.
struct ProcessSlotWords {
    let base: MappedAddress
    let field: FieldLayout

    func word(_ offset: Int) -> UnsafeMutablePointer<Atomic<UInt64>> { base.advanced(by: offset).atomic(UInt64.self) }
    func half(_ offset: Int) -> UnsafeMutablePointer<Atomic<UInt32>> { base.advanced(by: offset).atomic(UInt32.self) }

    func state(_ slot: Int) -> UInt32 { half(field.slotOffset(slot) + PerProcessLayout.stateOffset).pointee.load(ordering: .acquiring) }
    func token(_ slot: Int) -> UInt64 { word(field.slotOffset(slot) + PerProcessLayout.tokenOffset).pointee.load(ordering: .relaxed) }
    func value(_ slot: Int) -> UInt64 { word(field.slotOffset(slot) + PerProcessLayout.valueOffset).pointee.load(ordering: .acquiring) }
    func hasValue(_ slot: Int) -> Bool { word(field.slotOffset(slot) + PerProcessLayout.hasValueOffset).pointee.load(ordering: .acquiring) != 0 }
    func owner(_ slot: Int) -> (pid: Int32, namespace: UInt32) {
        let at = field.slotOffset(slot)
        return (Int32(bitPattern: half(at + PerProcessLayout.ownerPIDOffset).pointee.load(ordering: .relaxed)),
                half(at + PerProcessLayout.ownerNamespaceOffset).pointee.load(ordering: .relaxed))
    }
    var baseBits: UInt64 { word(field.baseOffset).pointee.load(ordering: .acquiring) }
    var baseHasValue: Bool { word(field.offset + PerProcessLayout.baseHasValueOffset).pointee.load(ordering: .acquiring) != 0 }

    /// The aggregate as the words read now (the caller makes it consistent).
    func aggregateBits() -> UInt64 {
        ProcessSlotWords.aggregate(field) { word($0).pointee.load(ordering: .acquiring) }
    }

    /// The aggregate of `field` from its words as `load` reads them (by file
    /// offset, 8 bytes): through a mapping, or from a file image for tools.
    static func aggregate(_ field: FieldLayout, load: (Int) -> UInt64) -> UInt64 {
        guard let aggregate = field.perProcess, case .scalar(let type) = field.type else { return 0 }
        let base = load(field.baseOffset)
        if aggregate == .mostRecent { return base }
        // One pass, no allocation: a read is a lock-free path.
        var integerTotal = base
        var floatTotal = type.isFloatingPoint ? type.double(fromBits: base) : 0
        var extreme: UInt64? = load(field.offset + PerProcessLayout.baseHasValueOffset) != 0 ? base : nil
        for slot in 0..<field.processSlots {
            let at = field.slotOffset(slot)
            guard UInt32(truncatingIfNeeded: load(at + PerProcessLayout.stateOffset)) != PerProcessLayout.empty else { continue }
            let bits = load(at + PerProcessLayout.valueOffset)
            switch aggregate {
            case .sum, .liveSum:
                if type.isFloatingPoint { floatTotal += type.double(fromBits: bits) } else { integerTotal &+= bits }
            case .max, .min:
                guard load(at + PerProcessLayout.hasValueOffset) != 0 else { continue }
                extreme = extreme.map { type.extreme($0, bits, largest: aggregate == .max) } ?? bits
            case .mostRecent:
                break
            }
        }
        switch aggregate {
        case .sum, .liveSum: return type.isFloatingPoint ? type.bits(fromDouble: floatTotal) : type.truncated(integerTotal)
        case .max, .min: return extreme ?? 0
        case .mostRecent: return base
        }
    }
}

extension ScalarType {
    /// A floating-point value's bits as a Double.
    func double(fromBits bits: UInt64) -> Double {
        self == .float ? Double(Float(bitPattern: UInt32(truncatingIfNeeded: bits))) : Double(bitPattern: bits)
    }

    func bits(fromDouble value: Double) -> UInt64 {
        self == .float ? UInt64(Float(value).bitPattern) : value.bitPattern
    }

    /// The low `byteWidth` bytes: integer sums wrap around at the type's width, as its handles' `add` does.
    func truncated(_ bits: UInt64) -> UInt64 {
        byteWidth == 8 ? bits : bits & ((1 << (8 * UInt64(byteWidth))) - 1)
    }

    /// `a + b` in this type.
    func sum(_ a: UInt64, _ b: UInt64) -> UInt64 {
        isFloatingPoint ? bits(fromDouble: double(fromBits: a) + double(fromBits: b)) : truncated(a &+ b)
    }

    /// The larger (or smaller) of two values of this type; NaN loses to any number.
    func extreme(_ a: UInt64, _ b: UInt64, largest: Bool) -> UInt64 {
        switch value(fromBits: a) {
        case .int(let x):
            guard case .int(let y) = value(fromBits: b) else { return a }
            return (largest ? y > x : y < x) ? b : a
        case .uint(let x):
            guard case .uint(let y) = value(fromBits: b) else { return a }
            return (largest ? y > x : y < x) ? b : a
        default:
            let x = double(fromBits: a), y = double(fromBits: b)
            if y.isNaN { return a }
            if x.isNaN { return b }
            return (largest ? y > x : y < x) ? b : a
        }
    }
}

extension StoreCore {
    /// The per-process fields that have process slots.
    var slottedFields: [FieldLayout] { layout.fields.filter { $0.processSlots > 0 } }

    func processSlotWords(_ field: FieldLayout) -> ProcessSlotWords { ProcessSlotWords(base: file.base, field: field) }

    /// The aggregate of per-process field `field`, read consistently without the lock.
    func readAggregate(_ field: FieldLayout) throws(SlotStoreError) -> UInt64 {
        let words = processSlotWords(field)
        return try readConsistently(sequence: address(field.offset + PerProcessLayout.foldSequenceOffset), writes: nil,
                                    field: field.index) { words.aggregateBits() }
    }

    /// The words a lock-free write of this process to `field` goes to: its
    /// slot's value and has-value words, or the base (mostRecent, or no slot).
    func contributionWords(_ field: FieldLayout) -> (value: MappedAddress, hasValue: MappedAddress?) {
        if field.processSlots > 0, let claim = processSlot, claim.slot < field.processSlots {
            let at = field.slotOffset(claim.slot)
            return (address(at + PerProcessLayout.valueOffset), address(at + PerProcessLayout.hasValueOffset))
        }
        return (address(field.baseOffset), address(field.offset + PerProcessLayout.baseHasValueOffset))
    }

    // MARK: Claiming a slot

    /// Claims this open's process slot (preferring `preference`, the slot a
    /// process had in the file it follows from, with its token), then, under
    /// the lock, folds what gone processes left: in the slot it took, and in
    /// every claimed slot whose OFD lock nobody holds. Call once, at open.
    func attachProcessSlot(preferring preference: ProcessSlotClaim?) throws(SlotStoreError) {
        guard processSlot == nil else { return }
        let fields = slottedFields
        guard let first = fields.first, isAttachedHere, file.descriptorIsOpen else { return }
        let count = first.processSlots
        let words = processSlotWords(first)
        // Empty slots first, so a slot a compaction carried over for a live
        // process that hasn't followed yet is taken only when nothing else is free.
        var candidates: [Int] = []
        if let preference, preference.slot < count { candidates.append(preference.slot) }
        candidates += (0..<count).filter { words.state($0) == PerProcessLayout.empty && $0 != preference?.slot }
        candidates += (0..<count).filter { words.state($0) != PerProcessLayout.empty && $0 != preference?.slot }
        let token = preference?.token ?? (UInt64.random(in: 1...UInt64.max))
        for slot in candidates where OpenGate.tryClaimByte(file.fd, PerProcessLayout.processSlotLockBase + slot) {
            processSlot = ProcessSlotClaim(slot: slot, token: token)
            break
        }
        try foldGoneContributions(takingOver: true)
    }

    /// Folds (or, for liveSum, clears) the slots of processes that are gone,
    /// and with `takingOver` takes over this process's own slot; each slot in
    /// a transaction of its own. `predecessor`: the file this process follows
    /// from, still open, to tell whether an inherited slot's owner lives there.
    func foldGoneContributions(takingOver: Bool, predecessor: StoreCore? = nil) throws(SlotStoreError) {
        let fields = slottedFields
        guard let first = fields.first else { return }
        if takingOver, let claim = processSlot {
            try transaction { () throws(SlotStoreError) in try takeOver(claim, fields: fields) }
        }
        let words = processSlotWords(first)
        for slot in 0..<first.processSlots where slot != processSlot?.slot && words.state(slot) != PerProcessLayout.empty {
            guard isGone(slot, words: words, predecessor: predecessor) else { continue }
            try transaction { () throws(SlotStoreError) in
                // Checked again under the lock: another opener may have folded it.
                guard words.state(slot) != PerProcessLayout.empty, isGone(slot, words: words, predecessor: predecessor) else { return }
                for field in fields { try fold(field, slot: slot) }
            }
        }
    }

    /// Whether the owner of `slot` is gone. A claimed slot's owner holds its
    /// OFD lock in this file while it lives. An inherited one was copied by a
    /// compaction for a process that had it in the file before: that process
    /// may not have followed yet, so it is gone only if provably so: neither
    /// this file's lock nor the predecessor's is held (checked by a process
    /// that still has the predecessor open, in that order: a follower takes
    /// the new lock before it lets the old one go), or its PID, in this PID
    /// namespace, names no process.
    private func isGone(_ slot: Int, words: ProcessSlotWords, predecessor: StoreCore?) -> Bool {
        let byte = PerProcessLayout.processSlotLockBase + slot
        switch words.state(slot) {
        case PerProcessLayout.claimed:
            return !OpenGate.byteHeldByOthers(file.fd, byte)
        case PerProcessLayout.inherited:
            if let predecessor, predecessor.file.descriptorIsOpen,
               !OpenGate.byteHeldByOthers(predecessor.file.fd, byte), !OpenGate.byteHeldByOthers(file.fd, byte) {
                return true
            }
            let owner = words.owner(slot)
            guard owner.pid > 0, owner.namespace != 0, owner.namespace == ProcessIdentity.pidNamespace else { return false }
            return kill(owner.pid, 0) != 0 && errno == ESRCH
        default:
            return false
        }
    }

    /// Makes `claim.slot` this process's in every slotted field: a slot
    /// carrying its token (carried over by a compaction) is adopted, one left
    /// by a gone owner folded first; a slot elsewhere with its token (its
    /// preferred one was taken) is moved into it. Call holding the lock.
    private func takeOver(_ claim: ProcessSlotClaim, fields: [FieldLayout]) throws(SlotStoreError) {
        for field in fields {
            let words = processSlotWords(field)
            let mine = field.slotOffset(claim.slot)
            if words.state(claim.slot) != PerProcessLayout.empty && words.token(claim.slot) != claim.token {
                try fold(field, slot: claim.slot)
            }
            try recordUndo(offset: mine, length: PerProcessLayout.slotJournalBytes, sequenceOffset: field.offset)
            for other in 0..<field.processSlots where other != claim.slot
                && words.state(other) == PerProcessLayout.inherited && words.token(other) == claim.token {
                let from = field.slotOffset(other)
                try recordUndo(offset: from, length: PerProcessLayout.slotJournalBytes, sequenceOffset: field.offset)
                let sequence = SequenceWord(address(field.offset))
                sequence.beginWrite()
                words.word(mine).pointee.store(words.value(other), ordering: .relaxed)
                words.word(mine + PerProcessLayout.hasValueOffset).pointee.store(words.hasValue(other) ? 1 : 0, ordering: .relaxed)
                clearSlot(words, from)
                sequence.endWrite()
            }
            words.word(mine + PerProcessLayout.tokenOffset).pointee.store(claim.token, ordering: .relaxed)
            words.half(mine + PerProcessLayout.ownerPIDOffset).pointee.store(UInt32(bitPattern: pid), ordering: .relaxed)
            words.half(mine + PerProcessLayout.ownerNamespaceOffset).pointee.store(ProcessIdentity.pidNamespace, ordering: .relaxed)
            words.half(mine + PerProcessLayout.stateOffset).pointee.store(PerProcessLayout.claimed, ordering: .releasing)
        }
    }

    /// Folds slot `slot` of `field` into the base (or drops it, for liveSum)
    /// and empties it. Journaled, and inside the fold sequence, so a reader
    /// never counts it twice or not at all. Call holding the lock.
    func fold(_ field: FieldLayout, slot: Int) throws(SlotStoreError) {
        guard let aggregate = field.perProcess, case .scalar(let type) = field.type else { return }
        let words = processSlotWords(field)
        let at = field.slotOffset(slot)
        try recordUndo(offset: field.baseOffset, length: PerProcessLayout.headerJournalBytes, sequenceOffset: field.offset)
        try recordUndo(offset: at, length: PerProcessLayout.slotJournalBytes, sequenceOffset: field.offset)
        let sequence = SequenceWord(address(field.offset))
        sequence.beginWrite()
        let value = words.value(slot)
        let base = words.word(field.baseOffset)
        let baseHasValue = words.word(field.offset + PerProcessLayout.baseHasValueOffset)
        switch aggregate {
        case .sum:
            base.pointee.store(type.sum(base.pointee.load(ordering: .relaxed), value), ordering: .relaxed)
        case .max, .min:
            if words.hasValue(slot) {
                let folded = words.baseHasValue ? type.extreme(words.baseBits, value, largest: aggregate == .max) : value
                base.pointee.store(folded, ordering: .relaxed)
                baseHasValue.pointee.store(1, ordering: .relaxed)
            }
        case .liveSum, .mostRecent:
            break
        }
        fault(.midWrite)
        clearSlot(words, at)
        sequence.endWrite()
    }

    private func clearSlot(_ words: ProcessSlotWords, _ at: Int) {
        words.half(at + PerProcessLayout.stateOffset).pointee.store(PerProcessLayout.empty, ordering: .relaxed)
        for offset in [PerProcessLayout.valueOffset, PerProcessLayout.hasValueOffset, PerProcessLayout.tokenOffset] {
            words.word(at + offset).pointee.store(0, ordering: .relaxed)
        }
        words.word(at + PerProcessLayout.ownerPIDOffset).pointee.store(0, ordering: .relaxed)
    }

    /// Writes the aggregate under the lock (`setValue`, `load`, a migration):
    /// the base becomes what makes the fields read `bits` now. For sum and
    /// liveSum that is `bits` minus the contributions in the slots; for max
    /// and min the base is `bits` and the live processes' own values still
    /// count. Call holding the lock.
    func writeAggregate(_ bits: UInt64, to field: FieldLayout) throws(SlotStoreError) {
        guard let aggregate = field.perProcess, case .scalar(let type) = field.type else { return }
        let words = processSlotWords(field)
        try recordUndo(offset: field.baseOffset, length: PerProcessLayout.headerJournalBytes, sequenceOffset: field.offset)
        let sequence = SequenceWord(address(field.offset))
        sequence.beginWrite()
        var base = bits
        if aggregate == .sum || aggregate == .liveSum {
            for slot in 0..<field.processSlots where words.state(slot) != PerProcessLayout.empty {
                base = type.isFloatingPoint
                    ? type.bits(fromDouble: type.double(fromBits: base) - type.double(fromBits: words.value(slot)))
                    : type.truncated(base &- words.value(slot))
            }
        }
        words.word(field.baseOffset).pointee.store(base, ordering: .relaxed)
        words.word(field.offset + PerProcessLayout.baseHasValueOffset).pointee.store(1, ordering: .relaxed)
        fault(.midWrite)
        sequence.endWrite()
        fault(.afterWrite)
    }

    // MARK: Compaction

    /// Copies per-process field `old` of `source` into `new` of `self` (both
    /// with the same aggregate and slot count): gone processes' slots folded
    /// (or dropped), live processes' slots copied by index with their token,
    /// marked inherited, so each process finds its contribution when it
    /// follows. Call holding both locks, lock-free writers stopped.
    func copyContributions(from source: StoreCore, _ old: FieldLayout, to new: FieldLayout) throws(SlotStoreError) {
        guard let aggregate = old.perProcess, case .scalar(let type) = old.type else { return }
        let from = source.processSlotWords(old)
        let to = processSlotWords(new)
        var base = from.baseBits
        var baseHasValue = from.baseHasValue
        // Every slot written: this runs twice (the second time with lock-free
        // writers stopped), and a process may have died in between.
        for slot in 0..<new.processSlots { clearSlot(to, new.slotOffset(slot)) }
        for slot in 0..<old.processSlots where from.state(slot) != PerProcessLayout.empty {
            let own = slot == source.processSlot?.slot
            let live = !own && !source.isGone(slot, words: from, predecessor: nil)
            if live && slot < new.processSlots {
                let at = new.slotOffset(slot), was = old.slotOffset(slot)
                for offset in [PerProcessLayout.valueOffset, PerProcessLayout.hasValueOffset, PerProcessLayout.tokenOffset] {
                    to.word(at + offset).pointee.store(from.word(was + offset).pointee.load(ordering: .relaxed), ordering: .relaxed)
                }
                let owner = from.owner(slot)
                to.half(at + PerProcessLayout.ownerPIDOffset).pointee.store(UInt32(bitPattern: owner.pid), ordering: .relaxed)
                to.half(at + PerProcessLayout.ownerNamespaceOffset).pointee.store(owner.namespace, ordering: .relaxed)
                to.half(at + PerProcessLayout.stateOffset).pointee.store(PerProcessLayout.inherited, ordering: .relaxed)
                continue
            }
            switch aggregate {
            case .sum: base = type.sum(base, from.value(slot))
            case .max, .min:
                if from.hasValue(slot) {
                    base = baseHasValue ? type.extreme(base, from.value(slot), largest: aggregate == .max) : from.value(slot)
                    baseHasValue = true
                }
            case .liveSum, .mostRecent: break
            }
        }
        to.word(new.baseOffset).pointee.store(base, ordering: .relaxed)
        to.word(new.offset + PerProcessLayout.baseHasValueOffset).pointee.store(baseHasValue ? 1 : 0, ordering: .relaxed)
    }
}
