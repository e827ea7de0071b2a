import CSlotStore
import Glibc
import Synchronization

/// An open store file and its `MAP_SHARED` mapping.
///
/// The file descriptor also carries the process's shared open-file-description
/// lock, which tells other openers that this process uses the store; both live
/// exactly as long as the mapping.
@usableFromInline
final class MappedFile: @unchecked Sendable {
    let path: String
    let fd: Int32
    let size: Int
    let writable: Bool
    @usableFromInline let base: MappedAddress
    private let isClosed = Atomic<Bool>(false)
    private let descriptorOpen = Atomic<Bool>(true)
    /// The process's fork generation at open, and whether a forked child's
    /// handler detaches the mapping and closes the descriptor (see
    /// CSlotStore.h): a child must not keep a dead parent's OFD locks alive
    /// (a mapping references the open file description as a descriptor
    /// does), nor close the number again.
    let forkGeneration: UInt64
    private let closedInForkedChildren: Bool

    init(path: String, fd: Int32, size: Int, writable: Bool) throws(SlotStoreError) {
        let protection = writable ? (PROT_READ | PROT_WRITE) : PROT_READ
        guard let address = mmap(nil, size, protection, MAP_SHARED, fd, 0), address != MAP_FAILED else {
            let code = errno
            Glibc.close(fd)
            throw code == ENOMEM
                ? .systemCallFailed(path: path, call: "mmap of \(size) bytes", errno: code)
                : Syscall.fileError(Errno(code), path: path, call: "mmap", operation: "map the file")
        }
        self.path = path
        self.fd = fd
        self.size = size
        self.writable = writable
        self.base = MappedAddress(address)
        self.forkGeneration = slotstore_fork_generation()
        self.closedInForkedChildren = slotstore_fork_register_descriptor(fd, address, UInt64(size), writable ? 1 : 0) == 1
    }

    func address(at offset: Int) -> MappedAddress {
        precondition(offset >= 0 && offset < size, "offset \(offset) outside the mapping of \(size) bytes")
        return base.advanced(by: offset)
    }

    /// Flushes the pages covering `offset..<offset+count` to the file.
    func flush(offset: Int = 0, count: Int? = nil) throws(SlotStoreError) {
        let page = Int(sysconf(Int32(_SC_PAGESIZE)))
        let start = offset & ~(page - 1)
        let end = min(size, offset + (count ?? size))
        guard end > start else { return }
        if _slowPath(FlushRecorder.enabled) { FlushRecorder.willFlush(self, start: start, end: end, pageSize: page) }
        if msync(base.pointer + start, end - start, MS_SYNC) != 0 {
            throw Syscall.fileError(Errno(errno), path: path, call: "msync", operation: "flush the store to disk")
        }
    }

    /// Takes the pages wholly inside `start..<end` out of this process's page
    /// tables (`MADV_DONTNEED`): for a whole-store pass over a file bigger
    /// than the memory it should use. The data is untouched: in a shared file
    /// mapping, a dropped page stays in the page cache (dirty ones included)
    /// and comes back on the next access; other processes never notice.
    func releasePages(from start: Int, to end: Int) {
        let page = Int(sysconf(Int32(_SC_PAGESIZE)))
        let first = (max(start, 0) + page - 1) & ~(page - 1)
        let last = min(end, size) & ~(page - 1)
        guard last > first, !closed else { return }
        _ = madvise(base.pointer + first, last - first, MADV_DONTNEED)
    }

    /// Maps the pages of `start..<end` writable in one system call
    /// (`MADV_POPULATE_WRITE`, Linux 5.14) before a pass that writes them all,
    /// instead of one page fault per page. Best effort: older kernels refuse,
    /// and the pages then fault in as they are written.
    func populateForWriting(from start: Int, to end: Int) {
        let page = Int(sysconf(Int32(_SC_PAGESIZE)))
        let first = max(start, 0) & ~(page - 1)
        let last = min(end, size)
        guard last > first, !closed else { return }
        let populateWrite: Int32 = 23
        _ = madvise(base.pointer + first, last - first, populateWrite)
    }

    /// Drops the file mapping and descriptor now. The address range stays
    /// reserved with no access until deinit, so a stale handle faults
    /// deterministically rather than reading whatever is mapped there later.
    func close() {
        guard !isClosed.exchange(true, ordering: .acquiringAndReleasing) else { return }
        // Withdrawn before the mapping goes: a child forked in between must
        // not map the file over the reservation.
        if closedInForkedChildren && !closedByForkHandler { slotstore_fork_unregister_descriptor(fd) }
        _ = mmap(base.pointer, size, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0)
        closeDescriptor()
    }

    /// Closes the descriptor and keeps the mapping: for a file a compaction
    /// retired, whose mapping handles may still read (to learn it is retired)
    /// but whose descriptor nobody needs, so following many compactions does
    /// not use up descriptors. Callers make sure nothing uses `fd` afterwards.
    func closeDescriptor() {
        guard descriptorOpen.exchange(false, ordering: .acquiringAndReleasing), !closedByForkHandler else { return }
        // Withdrawn first: once closed, the number may name another file.
        if closedInForkedChildren { slotstore_fork_unregister_descriptor(fd) }
        Glibc.close(fd)
    }

    var descriptorIsOpen: Bool { descriptorOpen.load(ordering: .acquiring) && !closedByForkHandler }

    /// In a child of `fork()`, the handler closed the inherited descriptor.
    private var closedByForkHandler: Bool { closedInForkedChildren && forkGeneration != slotstore_fork_generation() }

    var closed: Bool { isClosed.load(ordering: .acquiring) }

    deinit {
        closeDescriptor()
        munmap(base.pointer, size)
    }
}
