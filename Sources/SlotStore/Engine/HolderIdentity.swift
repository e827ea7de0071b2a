import CSlotStore
import Glibc
import Synchronization

/// What identifies this process to others beyond its PID, which means
/// nothing to a process in another PID namespace (two containers sharing
/// `/dev/shm`): there, the same number is another process, or none.
enum ProcessIdentity {
    /// The inode number of `/proc/self/ns/pid`, which names this process's
    /// PID namespace; 0 when `/proc` can't tell. A process never changes PID
    /// namespace (`unshare` and `setns` move only its later children), so it
    /// is read once. The kernel's namespace inode numbers are 32-bit.
    static let pidNamespace: UInt32 = {
        var info = stat()
        guard stat("/proc/self/ns/pid", &info) == 0 else { return 0 }
        return UInt32(truncatingIfNeeded: info.st_ino)
    }()

    /// Whether a namespace recorded in a store (0: unknown) is known to differ from this process's.
    static func isOtherPIDNamespace(_ recorded: UInt32) -> Bool {
        recorded != 0 && pidNamespace != 0 && recorded != pidNamespace
    }
}

/// Who holds (or held) a store's lock, as far as the file and the kernel can tell.
///
/// The holder records its PID and its attachment slot (a thread slot it
/// claims at open and keeps while it has the store open; see `LockRegion`).
/// The kernel holds the slot's OFD lock exactly as long as that process
/// lives, in whatever PID namespace, so "another open file description holds
/// the slot's byte" proves the holder alive where `kill(pid, 0)` can't: a PID
/// from another namespace names another process here, or none.
struct HolderIdentity: Equatable {
    var pid: Int32
    var alive: Bool
    /// True only when the holder's PID namespace is known and differs from this process's.
    var inAnotherPIDNamespace: Bool

    static let none = HolderIdentity(pid: 0, alive: false, inAnotherPIDNamespace: false)

    /// "PID 12" or "PID 1 in another PID namespace".
    var name: String { HolderIdentity.name(pid: pid, inAnotherPIDNamespace: inAnotherPIDNamespace) }

    static func name(pid: Int32, inAnotherPIDNamespace: Bool) -> String {
        "PID \(pid)" + (inAnotherPIDNamespace ? " in another PID namespace" : "")
    }

    /// Identifies the holder from the lock region's holder word and its slot.
    /// - Parameters:
    ///   - word: the 8 bytes at `LockRegion.holderOffset`: PID, then slot + 1 (0: none recorded).
    ///   - slotCount: the region's thread slots.
    ///   - slotRecord: a slot's owner PID and PID namespace.
    ///   - slotHeld: whether some live open file description holds the slot's
    ///     OFD lock; nil when this process can't ask (no usable descriptor).
    static func identify(word: UInt64, slotCount: Int, slotRecord: (Int) -> (owner: Int32, pidNamespace: UInt32),
                         slotHeld: (Int) -> Bool?) -> HolderIdentity {
        let pid = Int32(truncatingIfNeeded: word)
        guard pid != 0 else { return .none }
        let slotPlusOne = Int(word >> 32)
        // The slot proves liveness only if it is still the holder's: a holder
        // of an earlier build records no slot (and leaves a newer holder's
        // slot number behind), and a dead holder's slot may be taken again.
        if slotPlusOne >= 1 && slotPlusOne <= slotCount {
            let slot = slotPlusOne - 1
            let record = slotRecord(slot)
            if record.owner == pid, let held = slotHeld(slot) {
                return HolderIdentity(pid: pid, alive: held,
                                      inAnotherPIDNamespace: ProcessIdentity.isOtherPIDNamespace(record.pidNamespace))
            }
        }
        return HolderIdentity(pid: pid, alive: StoreCore.isAlive(pid), inAnotherPIDNamespace: false)
    }

    /// The PID namespace recorded for the holder described by `word`, if its slot is still its own; else 0.
    static func recordedPIDNamespace(word: UInt64, slotCount: Int,
                                     slotRecord: (Int) -> (owner: Int32, pidNamespace: UInt32)) -> UInt32 {
        let pid = Int32(truncatingIfNeeded: word)
        let slotPlusOne = Int(word >> 32)
        guard pid != 0, slotPlusOne >= 1, slotPlusOne <= slotCount else { return 0 }
        let record = slotRecord(slotPlusOne - 1)
        return record.owner == pid ? record.pidNamespace : 0
    }
}

extension LockRegion {
    /// Claims thread slot `slot` for the open file description of `fd` if no
    /// other holds it, and writes this process's identity into it.
    func claimSlot(_ slot: Int, fd: Int32, pid: Int32) -> Bool {
        guard OpenGate.tryClaimByte(fd, LockRegion.threadSlotLockBase + slot) else { return false }
        // A dead owner may have left its word set; the slot is ours now.
        inFlight(slot).pointee.store(0, ordering: .releasing)
        slotOwner(slot).pointee.store(pid, ordering: .relaxed)
        slotPIDNamespace(slot).pointee.store(ProcessIdentity.pidNamespace, ordering: .relaxed)
        return true
    }

    /// Claims the lowest free slot for the attachment of a store just opened
    /// through `fd`: what proves this process alive to tools and lock waiters
    /// while it holds the lock. Nil when every slot is taken.
    ///
    /// The slot the holder word names is tried last: if that holder died, its
    /// record (PID and PID namespace) is what the recovery that follows
    /// reports, so an opener doesn't overwrite it while others are free.
    func claimAttachmentSlot(fd: Int32, pid: Int32, slotCount: Int) -> Int? {
        let holderSlot = Int(holder.pointee.load(ordering: .relaxed) >> 32) - 1
        for slot in 0..<slotCount where slot != holderSlot && claimSlot(slot, fd: fd, pid: pid) { return slot }
        return holderSlot >= 0 && holderSlot < slotCount && claimSlot(holderSlot, fd: fd, pid: pid) ? holderSlot : nil
    }

    /// A slot's owner PID and PID namespace, read from the mapping.
    func slotRecord(_ slot: Int) -> (owner: Int32, pidNamespace: UInt32) {
        (slotOwner(slot).pointee.load(ordering: .relaxed), slotPIDNamespace(slot).pointee.load(ordering: .relaxed))
    }
}

extension StoreCore {
    /// Who holds this store's lock now (``HolderIdentity/none`` when free).
    var lockHolder: HolderIdentity {
        let slots = threadSlotsForIdentity
        return HolderIdentity.identify(word: lock.holder.pointee.load(ordering: .relaxed), slotCount: slots.count,
                                       slotRecord: lock.slotRecord) { slot in
            // Our own slots are held through our own descriptor, which
            // F_OFD_GETLK does not report: they are this live process's.
            if slots.own.contains(slot) { return true }
            return slots.usable ? OpenGate.byteHeldByOthers(file.fd, LockRegion.threadSlotLockBase + slot) : nil
        }
    }

    /// The thread-slot facts the holder check needs, read without the slot
    /// mutex's state mattering in a forked child (whose descriptor the fork
    /// handler closed, so it may not ask the kernel through it).
    private var threadSlotsForIdentity: (count: Int, own: Set<Int>, usable: Bool) {
        let count = LockRegion.threadSlotCount(lockSize: layout.lockSize)
        guard isAttachedHere, file.descriptorIsOpen else { return (count, [], false) }
        return (count, threadSlots.withLock { $0.held }, true)
    }

    /// The error for a lock not acquired within the timeout, naming the holder truthfully.
    func lockTimeoutError() -> SlotStoreError {
        let holder = lockHolder
        return .lockTimeout(path: path, holderPID: holder.pid, holderAlive: holder.alive,
                            holderInAnotherPIDNamespace: holder.inAnotherPIDNamespace, seconds: lockTimeout)
    }

    /// Records the holder that died (or was left from before the last opener)
    /// as the one last recovered from: its PID and, if known, its PID namespace.
    func recordRecovered(fromHolderWord word: UInt64) {
        let slotCount = LockRegion.threadSlotCount(lockSize: layout.lockSize)
        lock.lastRecoveredPID.pointee.store(Int32(truncatingIfNeeded: word), ordering: .relaxed)
        lock.lastRecoveredPIDNamespace.pointee.store(
            HolderIdentity.recordedPIDNamespace(word: word, slotCount: slotCount, slotRecord: lock.slotRecord), ordering: .relaxed)
    }

    /// Whether this engine was opened in this process, not inherited through
    /// `fork()`: one load, on every locked call and on the lock-free slow path.
    @inline(__always)
    var isAttachedHere: Bool { forkGeneration == slotstore_fork_generation() }
}
