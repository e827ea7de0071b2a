import CSlotStore
import Glibc
import Synchronization

/// An address inside a store's mapping.
///
/// This and ``MappedFile`` are the audited layer: every pointer into the
/// mapping is made here, from offsets that `Layout` placed inside the mapped
/// size. Handles keep a strong reference to the `MappedFile`, so an address
/// never outlives its mapping (except after an explicit `close()`, which
/// replaces the mapping with an inaccessible reservation so a use after close
/// faults at once instead of touching unrelated memory).
@usableFromInline
struct MappedAddress: @unchecked Sendable {
    @usableFromInline let pointer: UnsafeMutableRawPointer

    @usableFromInline
    init(_ pointer: UnsafeMutableRawPointer) { self.pointer = pointer }

    @inlinable
    func advanced(by offset: Int) -> MappedAddress { MappedAddress(pointer + offset) }

    /// The word at this address as an atomic. The address must be aligned to `T`'s size.
    @inlinable
    func atomic<T: AtomicRepresentable>(_: T.Type) -> UnsafeMutablePointer<Atomic<T>> {
        pointer.assumingMemoryBound(to: Atomic<T>.self)
    }

    /// Copies `count` bytes from here into `destination` (a seqlock reader's racy copy).
    @inlinable
    func copyBytes(to destination: UnsafeMutableRawPointer, count: Int) {
        destination.copyMemory(from: pointer, byteCount: count)
    }

    /// ``copyBytes(to:count:)`` for a short value (a string or bytes field read).
    @inlinable @inline(__always)
    func copyShortBytes(to destination: UnsafeMutableRawPointer, count: Int) {
        MappedAddress.copyShort(from: UnsafeRawPointer(pointer), to: destination, count: count)
    }

    /// ``copyBytes(from:count:)`` for a short value (a string write, a journal record).
    @inlinable @inline(__always)
    func copyShortBytes(from source: UnsafeRawPointer, count: Int) {
        MappedAddress.copyShort(from: source, to: pointer, count: count)
    }

    /// Up to 128 bytes in inlined 16- and 8-byte moves instead of a `memmove`
    /// call, which costs about as much as a whole 64-byte seqlock read. (A
    /// plain 8-byte loop gets vectorized with overlap checks that cost more
    /// than the copy.) Either side may be unaligned; longer copies call `memmove`.
    @inlinable @inline(__always)
    static func copyShort(from source: UnsafeRawPointer, to destination: UnsafeMutableRawPointer, count: Int) {
        guard count <= 128 else { return destination.copyMemory(from: source, byteCount: count) }
        var offset = 0
        while offset &+ 16 <= count {
            destination.storeBytes(of: source.loadUnaligned(fromByteOffset: offset, as: SIMD2<UInt64>.self),
                                   toByteOffset: offset, as: SIMD2<UInt64>.self)
            offset &+= 16
        }
        if offset &+ 8 <= count {
            destination.storeBytes(of: source.loadUnaligned(fromByteOffset: offset, as: UInt64.self), toByteOffset: offset, as: UInt64.self)
            offset &+= 8
        }
        while offset < count {
            destination.storeBytes(of: source.load(fromByteOffset: offset, as: UInt8.self), toByteOffset: offset, as: UInt8.self)
            offset &+= 1
        }
    }

    /// Copies `count` bytes from `source` to here.
    @inlinable
    func copyBytes(from source: UnsafeRawPointer, count: Int) {
        pointer.copyMemory(from: source, byteCount: count)
    }

    /// A copy of `count` bytes from here.
    func bytes(count: Int) -> [UInt8] {
        [UInt8](unsafeUninitializedCapacity: count) { buffer, initialized in
            if count > 0 { buffer.baseAddress!.initialize(from: pointer.assumingMemoryBound(to: UInt8.self), count: count) }
            initialized = count
        }
    }
}

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
        if msync(base.pointer + start, end - start, MS_SYNC) != 0 {
            throw Syscall.fileError(Errno(errno), path: path, call: "msync", operation: "flush the store to disk")
        }
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

// Atomic access to a scalar of any SlotScalar type. Synchronization's atomic
// operations exist per storage width, not for a generic `Atomic<T>`, so these
// dispatch on the type's width; in specialized code the switch folds away and
// each call is one instruction of the right width.
extension MappedAddress {
    @inlinable @inline(__always)
    func loadScalar<Value: SlotScalar>(_: Value.Type) -> Value {
        switch Value.scalarType.byteWidth {
        case 8: Value(_slotBits: atomic(UInt64.self).pointee.load(ordering: .acquiring))
        case 4: Value(_slotBits: UInt64(atomic(UInt32.self).pointee.load(ordering: .acquiring)))
        case 2: Value(_slotBits: UInt64(atomic(UInt16.self).pointee.load(ordering: .acquiring)))
        default: Value(_slotBits: UInt64(atomic(UInt8.self).pointee.load(ordering: .acquiring)))
        }
    }

    @inlinable @inline(__always)
    func loadScalarRelaxed<Value: SlotScalar>(_: Value.Type) -> Value {
        switch Value.scalarType.byteWidth {
        case 8: Value(_slotBits: atomic(UInt64.self).pointee.load(ordering: .relaxed))
        case 4: Value(_slotBits: UInt64(atomic(UInt32.self).pointee.load(ordering: .relaxed)))
        case 2: Value(_slotBits: UInt64(atomic(UInt16.self).pointee.load(ordering: .relaxed)))
        default: Value(_slotBits: UInt64(atomic(UInt8.self).pointee.load(ordering: .relaxed)))
        }
    }

    @inlinable @inline(__always)
    func storeScalar<Value: SlotScalar>(_ value: Value) {
        let bits = value._slotBits
        switch Value.scalarType.byteWidth {
        case 8: atomic(UInt64.self).pointee.store(bits, ordering: .releasing)
        case 4: atomic(UInt32.self).pointee.store(UInt32(truncatingIfNeeded: bits), ordering: .releasing)
        case 2: atomic(UInt16.self).pointee.store(UInt16(truncatingIfNeeded: bits), ordering: .releasing)
        default: atomic(UInt8.self).pointee.store(UInt8(truncatingIfNeeded: bits), ordering: .releasing)
        }
    }

    @inlinable @inline(__always)
    func exchangeScalar<Value: SlotScalar>(_ value: Value) -> Value {
        let bits = value._slotBits
        switch Value.scalarType.byteWidth {
        case 8: return Value(_slotBits: atomic(UInt64.self).pointee.exchange(bits, ordering: .acquiringAndReleasing))
        case 4: return Value(_slotBits: UInt64(atomic(UInt32.self).pointee.exchange(UInt32(truncatingIfNeeded: bits), ordering: .acquiringAndReleasing)))
        case 2: return Value(_slotBits: UInt64(atomic(UInt16.self).pointee.exchange(UInt16(truncatingIfNeeded: bits), ordering: .acquiringAndReleasing)))
        default: return Value(_slotBits: UInt64(atomic(UInt8.self).pointee.exchange(UInt8(truncatingIfNeeded: bits), ordering: .acquiringAndReleasing)))
        }
    }

    /// Compares stored bits, so `Double` compares bit patterns (a NaN can be exchanged).
    @inlinable @inline(__always)
    func compareExchangeScalar<Value: SlotScalar>(expected: Value, desired: Value) -> (exchanged: Bool, original: Value) {
        let old = expected._slotBits, new = desired._slotBits
        switch Value.scalarType.byteWidth {
        case 8:
            let r = atomic(UInt64.self).pointee.compareExchange(expected: old, desired: new, ordering: .acquiringAndReleasing)
            return (r.exchanged, Value(_slotBits: r.original))
        case 4:
            let r = atomic(UInt32.self).pointee.compareExchange(expected: UInt32(truncatingIfNeeded: old), desired: UInt32(truncatingIfNeeded: new), ordering: .acquiringAndReleasing)
            return (r.exchanged, Value(_slotBits: UInt64(r.original)))
        case 2:
            let r = atomic(UInt16.self).pointee.compareExchange(expected: UInt16(truncatingIfNeeded: old), desired: UInt16(truncatingIfNeeded: new), ordering: .acquiringAndReleasing)
            return (r.exchanged, Value(_slotBits: UInt64(r.original)))
        default:
            let r = atomic(UInt8.self).pointee.compareExchange(expected: UInt8(truncatingIfNeeded: old), desired: UInt8(truncatingIfNeeded: new), ordering: .acquiringAndReleasing)
            return (r.exchanged, Value(_slotBits: UInt64(r.original)))
        }
    }

    /// Wrapping add of two's-complement bits; returns the new value.
    @inlinable @inline(__always)
    func addScalar<Value: SlotInteger>(_ delta: Value) -> Value {
        let bits = delta._slotBits
        switch Value.scalarType.byteWidth {
        case 8: return Value(_slotBits: atomic(UInt64.self).pointee.wrappingAdd(bits, ordering: .acquiringAndReleasing).newValue)
        case 4: return Value(_slotBits: UInt64(atomic(UInt32.self).pointee.wrappingAdd(UInt32(truncatingIfNeeded: bits), ordering: .acquiringAndReleasing).newValue))
        case 2: return Value(_slotBits: UInt64(atomic(UInt16.self).pointee.wrappingAdd(UInt16(truncatingIfNeeded: bits), ordering: .acquiringAndReleasing).newValue))
        default: return Value(_slotBits: UInt64(atomic(UInt8.self).pointee.wrappingAdd(UInt8(truncatingIfNeeded: bits), ordering: .acquiringAndReleasing).newValue))
        }
    }
}
