import CSlotStore
import Glibc
import Synchronization

/// The lock region: one robust, process-shared pthread mutex and the
/// bookkeeping that tools read without taking it.
///
/// ```
/// offset  size  field
///      0    40  pthread_mutex_t (glibc x86-64), padded to 56
///     56     8  locked changes (see `ChangeNotification`)
///     64     4  holder PID (0 when free), written by the holder
///     68     4  holder's attachment slot + 1 (0: none recorded), written with the PID
///     72     8  acquisitions
///     80     8  recoveries (owner-died rollbacks and rollbacks at reset)
///     88     8  resets by a first opener
///     96     4  PID whose death was last recovered from
///    100     4  that PID's namespace (inode of /proc/PID/ns/pid; 0 unknown)
///    104     8  time of the last recovery, ns since 1970
///    112    16  boot ID of the machine when the lock was last reset
///    128     8  retirement: 0 live, 1 being compacted in place, 2 retired
///    136     8  the successor's generation (when retired)
///    144     8  the successor's device number
///    152     8  the successor's inode number
///    160     8  time of retirement, ns since 1970
///    168    16  waiter map: one bit per field (index mod 128) (see `ChangeNotification`)
///    184     4  wake sequence: the futex word waiters sleep on
///    256        thread slots, 64 bytes each, to the end of the region:
///               in-flight word u64 (1 while a lock-free write runs), owner PID u32,
///               owner's PID namespace u32 (inode of /proc/self/ns/pid)
/// ```
///
/// Every open claims one thread slot for itself, its attachment slot, which
/// it never writes lock-free through: the holder word names it, so whether
/// the holder lives is whether that slot's OFD lock is held, which the kernel
/// answers across PID namespaces (see `HolderIdentity`).
///
/// A thread slot belongs to whichever open file description holds the OFD
/// write lock on byte `threadSlotLockBase + slot` of the file, so a slot of a
/// process that died is free again, however it died.
///
/// The mutex state is never trusted across the moment when no process has the
/// store open: the first opener re-initializes it (see `OpenGate`), because a
/// lock word left by a process that vanished without the kernel seeing it die
/// (a reboot, a gone PID namespace) would otherwise stay held forever.
struct LockRegion: @unchecked Sendable {
    /// The bookkeeping before the thread slots, which tools read.
    static let bytes = 168
    static let holderOffset = 64
    static let acquisitionsOffset = 72
    static let recoveriesOffset = 80
    static let resetsOffset = 88
    static let lastRecoveredPIDOffset = 96
    static let lastRecoveredPIDNamespaceOffset = 100
    static let lastRecoveryTimeOffset = 104
    static let bootIDOffset = 112
    static let retirementOffset = 128
    static let successorGenerationOffset = 136
    static let successorDeviceOffset = 144
    static let successorInodeOffset = 152
    static let retirementTimeOffset = 160
    static let threadSlotsOffset = 256
    static let threadSlotBytes = 64
    static let slotOwnerOffset = 8
    static let slotPIDNamespaceOffset = 12
    /// The OFD lock byte of thread slot 0; far past any header field, and
    /// OFD locks may cover bytes beyond the end of the file.
    static let threadSlotLockBase = 1 << 40

    /// How many thread slots a lock region of `size` bytes holds.
    static func threadSlotCount(lockSize: Int) -> Int { max(0, (lockSize - threadSlotsOffset) / threadSlotBytes) }

    /// glibc's robust-mutex lock word: owner TID in the low 30 bits.
    /// Pauses (each some 10-140 cycles) a locker spends watching a held lock before it sleeps.
    static let spinLimit = 200
    static let futexOwnerDied: UInt32 = 0x4000_0000
    static let futexWaiters: UInt32 = 0x8000_0000
    static let futexTIDMask: UInt32 = 0x3FFF_FFFF

    let base: MappedAddress

    var mutex: UnsafeMutablePointer<pthread_mutex_t> { base.pointer.assumingMemoryBound(to: pthread_mutex_t.self) }
    var holderPID: UnsafeMutablePointer<Atomic<Int32>> { base.advanced(by: LockRegion.holderOffset).atomic(Int32.self) }
    /// The holder PID and, above it, the holder's attachment slot + 1: one
    /// 8-byte store at each acquisition and release, as cheap as the PID alone.
    var holder: UnsafeMutablePointer<Atomic<UInt64>> { base.advanced(by: LockRegion.holderOffset).atomic(UInt64.self) }
    var acquisitions: UnsafeMutablePointer<Atomic<UInt64>> { base.advanced(by: LockRegion.acquisitionsOffset).atomic(UInt64.self) }
    var recoveries: UnsafeMutablePointer<Atomic<UInt64>> { base.advanced(by: LockRegion.recoveriesOffset).atomic(UInt64.self) }
    var resets: UnsafeMutablePointer<Atomic<UInt64>> { base.advanced(by: LockRegion.resetsOffset).atomic(UInt64.self) }
    var lastRecoveredPID: UnsafeMutablePointer<Atomic<Int32>> { base.advanced(by: LockRegion.lastRecoveredPIDOffset).atomic(Int32.self) }
    var lastRecoveredPIDNamespace: UnsafeMutablePointer<Atomic<UInt32>> { base.advanced(by: LockRegion.lastRecoveredPIDNamespaceOffset).atomic(UInt32.self) }
    var lastRecoveryTime: UnsafeMutablePointer<Atomic<Int64>> { base.advanced(by: LockRegion.lastRecoveryTimeOffset).atomic(Int64.self) }
    var retirement: UnsafeMutablePointer<Atomic<UInt64>> { base.advanced(by: LockRegion.retirementOffset).atomic(UInt64.self) }
    var successorGeneration: UnsafeMutablePointer<Atomic<UInt64>> { base.advanced(by: LockRegion.successorGenerationOffset).atomic(UInt64.self) }
    var successorDevice: UnsafeMutablePointer<Atomic<UInt64>> { base.advanced(by: LockRegion.successorDeviceOffset).atomic(UInt64.self) }
    var successorInode: UnsafeMutablePointer<Atomic<UInt64>> { base.advanced(by: LockRegion.successorInodeOffset).atomic(UInt64.self) }
    var retirementTime: UnsafeMutablePointer<Atomic<Int64>> { base.advanced(by: LockRegion.retirementTimeOffset).atomic(Int64.self) }

    /// Thread slot `slot`'s in-flight word.
    func inFlight(_ slot: Int) -> UnsafeMutablePointer<Atomic<UInt64>> {
        base.advanced(by: LockRegion.threadSlotsOffset + slot * LockRegion.threadSlotBytes).atomic(UInt64.self)
    }

    /// Thread slot `slot`'s owner PID (for tools; ownership itself is the OFD lock).
    func slotOwner(_ slot: Int) -> UnsafeMutablePointer<Atomic<Int32>> {
        base.advanced(by: LockRegion.threadSlotsOffset + slot * LockRegion.threadSlotBytes + LockRegion.slotOwnerOffset).atomic(Int32.self)
    }

    /// Thread slot `slot`'s owner's PID namespace (for tools and the holder check).
    func slotPIDNamespace(_ slot: Int) -> UnsafeMutablePointer<Atomic<UInt32>> {
        base.advanced(by: LockRegion.threadSlotsOffset + slot * LockRegion.threadSlotBytes + LockRegion.slotPIDNamespaceOffset).atomic(UInt32.self)
    }

    /// The holder word for `pid` whose attachment slot is `slot`.
    static func holderWord(pid: Int32, attachmentSlot slot: Int?) -> UInt64 {
        UInt64(UInt32(bitPattern: pid)) | UInt64(slot.map { $0 + 1 } ?? 0) << 32
    }

    /// The raw futex word, for tools: whether the mutex is held and whether its owner died.
    var lockWord: UInt32 { base.atomic(UInt32.self).pointee.load(ordering: .relaxed) }

    /// Whether the calling thread holds the mutex (glibc keeps the owner's TID
    /// in the word), through this mapping or another of the same file.
    var heldByCallingThread: Bool { lockWord & LockRegion.futexTIDMask == UInt32(truncatingIfNeeded: slotstore_gettid()) }

    /// Identifies the mutex ABI: C library, architecture and `sizeof(pthread_mutex_t)`.
    /// Stored in the header; a process with another ABI refuses the store.
    static var currentABI: UInt32 {
        #if arch(x86_64)
        let arch: UInt32 = 1
        #elseif arch(arm64)
        let arch: UInt32 = 2
        #else
        let arch: UInt32 = 255
        #endif
        let glibc: UInt32 = 1  // the Glibc module; musl (static SDK) would be 2
        return glibc << 24 | arch << 16 | UInt32(MemoryLayout<pthread_mutex_t>.size)
    }

    static func describeABI(_ abi: UInt32) -> String {
        let libc = switch abi >> 24 { case 1: "glibc"; case 2: "musl"; default: "libc #\(abi >> 24)" }
        let arch = switch (abi >> 16) & 0xFF { case 1: "x86_64"; case 2: "arm64"; default: "architecture #\((abi >> 16) & 0xFF)" }
        return "\(libc) on \(arch) with a \(abi & 0xFFFF)-byte mutex"
    }

    /// Writes a fresh robust, process-shared mutex over whatever was there.
    /// Only for a caller that knows no other process has the store open.
    func initializeMutex() {
        LockRegion.initialize(mutex)
        holder.pointee.store(0, ordering: .releasing)
        let boot = LockRegion.currentBootID
        for (index, byte) in boot.enumerated() {
            base.advanced(by: LockRegion.bootIDOffset + index).atomic(UInt8.self).pointee.store(byte, ordering: .relaxed)
        }
    }

    /// The kernel's boot ID (16 bytes), so tools can tell a lock left from before a reboot.
    static let currentBootID: [UInt8] = {
        let fd = open("/proc/sys/kernel/random/boot_id", O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return [UInt8](repeating: 0, count: 16) }
        defer { close(fd) }
        var text = [UInt8](repeating: 0, count: 64)
        let count = read(fd, &text, text.count)
        let hex = String(decoding: text.prefix(max(0, count)), as: UTF8.self).filter(\.isHexDigit)
        var bytes: [UInt8] = []
        var index = hex.startIndex
        while bytes.count < 16, let next = hex.index(index, offsetBy: 2, limitedBy: hex.endIndex), index < hex.endIndex {
            bytes.append(UInt8(hex[index..<next], radix: 16) ?? 0)
            index = next
        }
        return bytes + [UInt8](repeating: 0, count: 16 - bytes.count)
    }()

    static func initialize(_ mutex: UnsafeMutablePointer<pthread_mutex_t>) {
        UnsafeMutableRawPointer(mutex).initializeMemory(as: UInt8.self, repeating: 0, count: MemoryLayout<pthread_mutex_t>.size)
        var attributes = pthread_mutexattr_t()
        pthread_mutexattr_init(&attributes)
        pthread_mutexattr_setpshared(&attributes, CInt(PTHREAD_PROCESS_SHARED))
        pthread_mutexattr_setrobust(&attributes, CInt(PTHREAD_MUTEX_ROBUST))
        // No priority inheritance: PI futexes resolve owner TIDs in the
        // waiter's PID namespace, which breaks sharing across containers.
        pthread_mutex_init(mutex, &attributes)
        pthread_mutexattr_destroy(&attributes)
    }

    enum Acquired { case clean, ownerDied }
    enum Failure: Error { case timedOut, unrecoverable, failed(Int32) }

    /// One attempt without waiting: 0 when taken, else what `lock(timeout:afterTry:)` gets.
    @inline(__always)
    func tryLock() -> Int32 { pthread_mutex_trylock(mutex) }

    /// Takes the mutex, waiting at most `timeout` seconds; `code` is the result of a ``tryLock()`` already made.
    func lock(timeout: Double, afterTry code: Int32) -> Result<Acquired, Failure> {
        var code = code
        // Critical sections are tens of nanoseconds: watch the lock word for a
        // moment (plain loads, no line ping-pong) before sleeping in the
        // kernel, whose wake-up alone costs microseconds. A dead owner's word
        // reads free (TID 0), so the retry then gets EOWNERDEAD at once.
        // Only while nobody sleeps on it: a spinner must not keep overtaking
        // a waiter the kernel is waking, or that waiter could time out.
        var spins = 0
        while code == EBUSY && spins < LockRegion.spinLimit && lockWord & LockRegion.futexWaiters == 0 {
            slotstore_cpu_relax()
            spins += 1
            if lockWord & LockRegion.futexTIDMask == 0 { code = pthread_mutex_trylock(mutex) }
        }
        if code == EBUSY { code = waitInSlices(timeout: timeout) }
        switch code {
        case 0: return .success(.clean)
        case EOWNERDEAD: return .success(.ownerDied)
        case ETIMEDOUT: return .failure(.timedOut)
        case ENOTRECOVERABLE: return .failure(.unrecoverable)
        default: return .failure(.failed(code))
        }
    }

    /// How long one sleep on the mutex lasts before the waiter looks at the lock again.
    ///
    /// glibc's robust mutex can lose a wake-up: when a holder dies, the kernel
    /// wakes one waiter; if that waiter is killed before it takes the lock, the
    /// lock is free, the waiters bit is clear, and the other sleepers are never
    /// woken (see the kill-burst test). A sleep cut into slices retries the
    /// lock at the end of each one, so a free lock is taken within a slice,
    /// and the timeout keeps its meaning: a live holder kept the lock that long.
    static let waitSliceNanoseconds: Int64 = 10_000_000

    /// Sleeps on the mutex in slices until it is taken or `timeout` seconds
    /// (on the monotonic clock) have passed; the last word is one more try,
    /// so ETIMEDOUT means the lock was held at the very end too.
    private func waitInSlices(timeout: Double) -> Int32 {
        let deadline = Int64(StoreCore.monotonicNanoseconds()) + Int64(max(0, timeout) * 1e9)
        while true {
            let remaining = deadline - Int64(StoreCore.monotonicNanoseconds())
            guard remaining > 0 else {
                let code = pthread_mutex_trylock(mutex)
                return code == EBUSY ? ETIMEDOUT : code
            }
            let code = slotstore_mutex_lock_for(mutex, min(LockRegion.waitSliceNanoseconds, remaining))
            if code != ETIMEDOUT { return code }
        }
    }

    /// After `EOWNERDEAD` and repair: without this call the next unlock would
    /// make the mutex `ENOTRECOVERABLE` forever.
    func markConsistent() -> Int32 { pthread_mutex_consistent(mutex) }

    @inline(__always)
    func unlock() { pthread_mutex_unlock(mutex) }
}
