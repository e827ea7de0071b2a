import Glibc
import Synchronization

// Exact counts of heap allocations and of msync calls.
//
// At start-up every loaded ELF object's relocation slots (GOT entries) for
// malloc, calloc, realloc, posix_memalign, aligned_alloc, memalign and msync
// are pointed at the counting wrappers below, which forward to glibc's own
// functions. That covers the Swift runtime, Foundation, glibc's internal
// callers (glibc calls malloc through its PLT) and this executable, which
// contains the statically linked SlotStore module. `free` is untouched: the
// memory still comes from glibc's allocator.
//
// (Defining `malloc` in this executable would be simpler, but the gold
// linker that Swift uses on Linux does not export a protected-visibility
// definition that shared libraries reference, and Swift gives public
// symbols protected visibility, so the runtime would not see it.)

private typealias MallocFunction = @convention(c) (Int) -> UnsafeMutableRawPointer?
private typealias CallocFunction = @convention(c) (Int, Int) -> UnsafeMutableRawPointer?
private typealias ReallocFunction = @convention(c) (UnsafeMutableRawPointer?, Int) -> UnsafeMutableRawPointer?
private typealias MemalignFunction = @convention(c) (Int, Int) -> UnsafeMutableRawPointer?
private typealias PosixMemalignFunction = @convention(c) (UnsafeMutablePointer<UnsafeMutableRawPointer?>?, Int, Int) -> Int32
private typealias MsyncFunction = @convention(c) (UnsafeMutableRawPointer?, Int, Int32) -> Int32

let heapAllocationCalls = Atomic<UInt64>(0)
let msyncCalls = Atomic<UInt64>(0)

// glibc's implementations, stored before any slot is patched (atomics: no lazy
// initialisation and no exclusivity bookkeeping on the allocation path).
private let realMalloc = Atomic<UInt>(0)
private let realCalloc = Atomic<UInt>(0)
private let realRealloc = Atomic<UInt>(0)
private let realMemalign = Atomic<UInt>(0)
private let realPosixMemalign = Atomic<UInt>(0)
private let realAlignedAlloc = Atomic<UInt>(0)
private let realMsync = Atomic<UInt>(0)

/// A relaxed load and store, not a locked read-modify-write: the benchmark
/// process runs one thread, and a plain increment keeps the counting cost
/// (about a nanosecond) out of the timings of rows that allocate.
@inline(__always)
private func bump(_ counter: borrowing Atomic<UInt64>) {
    counter.store(counter.load(ordering: .relaxed) &+ 1, ordering: .relaxed)
}

@inline(__always)
private func original<F>(_ slot: borrowing Atomic<UInt>, as type: F.Type) -> F {
    unsafeBitCast(UnsafeRawPointer(bitPattern: slot.load(ordering: .relaxed))!, to: type)
}

private func countingMalloc(_ size: Int) -> UnsafeMutableRawPointer? {
    bump(heapAllocationCalls)
    return original(realMalloc, as: MallocFunction.self)(size)
}

private func countingCalloc(_ count: Int, _ size: Int) -> UnsafeMutableRawPointer? {
    bump(heapAllocationCalls)
    return original(realCalloc, as: CallocFunction.self)(count, size)
}

private func countingRealloc(_ pointer: UnsafeMutableRawPointer?, _ size: Int) -> UnsafeMutableRawPointer? {
    bump(heapAllocationCalls)
    return original(realRealloc, as: ReallocFunction.self)(pointer, size)
}

private func countingMemalign(_ alignment: Int, _ size: Int) -> UnsafeMutableRawPointer? {
    bump(heapAllocationCalls)
    return original(realMemalign, as: MemalignFunction.self)(alignment, size)
}

private func countingAlignedAlloc(_ alignment: Int, _ size: Int) -> UnsafeMutableRawPointer? {
    bump(heapAllocationCalls)
    return original(realAlignedAlloc, as: MemalignFunction.self)(alignment, size)
}

private func countingPosixMemalign(_ result: UnsafeMutablePointer<UnsafeMutableRawPointer?>?, _ alignment: Int, _ size: Int) -> Int32 {
    bump(heapAllocationCalls)
    return original(realPosixMemalign, as: PosixMemalignFunction.self)(result, alignment, size)
}

private func countingMsync(_ address: UnsafeMutableRawPointer?, _ length: Int, _ flags: Int32) -> Int32 {
    bump(msyncCalls)
    return original(realMsync, as: MsyncFunction.self)(address, length, flags)
}

/// The counters and whether they can be trusted.
enum CallCounters {
    /// Number of relocation slots pointed at the counting wrappers.
    nonisolated(unsafe) private(set) static var patchedSlots = 0
    /// Whether an allocation the Swift runtime must make was counted.
    nonisolated(unsafe) private(set) static var allocationsWork = false
    /// Whether an msync call made from the SlotStore module's object code was counted.
    nonisolated(unsafe) private(set) static var msyncWorks = false
    nonisolated(unsafe) private(set) static var problem: String?

    static var allocations: UInt64 { heapAllocationCalls.load(ordering: .relaxed) }
    static var msyncs: UInt64 { msyncCalls.load(ordering: .relaxed) }

    /// Patches the slots once, then checks both counters.
    static func install() {
        let table: [(name: String, wrapper: UnsafeRawPointer)] = [
            ("malloc", unsafeBitCast(countingMalloc as MallocFunction, to: UnsafeRawPointer.self)),
            ("calloc", unsafeBitCast(countingCalloc as CallocFunction, to: UnsafeRawPointer.self)),
            ("realloc", unsafeBitCast(countingRealloc as ReallocFunction, to: UnsafeRawPointer.self)),
            ("memalign", unsafeBitCast(countingMemalign as MemalignFunction, to: UnsafeRawPointer.self)),
            ("aligned_alloc", unsafeBitCast(countingAlignedAlloc as MemalignFunction, to: UnsafeRawPointer.self)),
            ("posix_memalign", unsafeBitCast(countingPosixMemalign as PosixMemalignFunction, to: UnsafeRawPointer.self)),
            ("msync", unsafeBitCast(countingMsync as MsyncFunction, to: UnsafeRawPointer.self)),
        ]
        // RTLD_DEFAULT finds glibc's definitions: this executable exports none of these names.
        for (name, _) in table {
            guard let symbol = dlsym(nil, name) else { problem = "dlsym(\(name)) failed"; return }
            let address = UInt(bitPattern: symbol)
            switch name {
            case "malloc": realMalloc.store(address, ordering: .relaxed)
            case "calloc": realCalloc.store(address, ordering: .relaxed)
            case "realloc": realRealloc.store(address, ordering: .relaxed)
            case "memalign": realMemalign.store(address, ordering: .relaxed)
            case "aligned_alloc": realAlignedAlloc.store(address, ordering: .relaxed)
            case "posix_memalign": realPosixMemalign.store(address, ordering: .relaxed)
            default: realMsync.store(address, ordering: .relaxed)
            }
        }
        do {
            patchedSlots = try GOTPatcher.patch(Dictionary(uniqueKeysWithValues: table.map { ($0.name, $0.wrapper) }))
        } catch {
            problem = error.message
            return
        }
        let before = allocations
        let count = Int(getpid() % 7) + 100
        let array = [Int](repeating: 1, count: count)
        allocationsWork = array.count == count && allocations > before
        if !allocationsWork { problem = "the allocation counter did not see a Swift array allocation" }
        let msyncsBefore = msyncs
        if let page = mmap(nil, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0), page != MAP_FAILED {
            _ = msync(page, 4096, MS_SYNC)
            munmap(page, 4096)
        }
        msyncWorks = msyncs == msyncsBefore + 1
        if !msyncWorks { problem = (problem.map { $0 + "; " } ?? "") + "the msync counter did not see an msync call" }
    }
}

/// A one-line failure with its reason.
struct BenchFailure: Error {
    let message: String
    init(_ message: String) { self.message = message }
}

/// Rewrites relocation slots (R_X86_64_JUMP_SLOT / GLOB_DAT, or the AArch64
/// equivalents) of every loaded object, the technique of `plthook`.
enum GOTPatcher {
    private typealias IterateFunction = @convention(c) (
        (@convention(c) (UnsafeMutableRawPointer?, Int, UnsafeMutableRawPointer?) -> Int32)?, UnsafeMutableRawPointer?) -> Int32

    private final class Context {
        var targets: [String: UnsafeRawPointer] = [:]
        var patched = 0
        var error: String?
    }

    #if arch(x86_64)
    private static let jumpSlot: UInt32 = 7, globDat: UInt32 = 6
    #elseif arch(arm64)
    private static let jumpSlot: UInt32 = 1026, globDat: UInt32 = 1025
    #else
    private static let jumpSlot: UInt32 = 0xFFFF_FFFF, globDat: UInt32 = 0xFFFF_FFFF
    #endif

    static func patch(_ targets: [String: UnsafeRawPointer]) throws(BenchFailure) -> Int {
        guard let symbol = dlsym(nil, "dl_iterate_phdr") else { throw BenchFailure("dl_iterate_phdr not found") }
        let iterate = unsafeBitCast(symbol, to: IterateFunction.self)
        let context = Context()
        context.targets = targets
        let opaque = Unmanaged.passRetained(context).toOpaque()
        defer { Unmanaged<Context>.fromOpaque(opaque).release() }
        _ = iterate({ info, _, data in
            let context = Unmanaged<Context>.fromOpaque(data!).takeUnretainedValue()
            GOTPatcher.visit(info!, context)
            return 0
        }, opaque)
        if let error = context.error { throw BenchFailure(error) }
        return context.patched
    }

    /// `info` is a `struct dl_phdr_info`: addr u64, name ptr, phdr ptr, phnum u16.
    private static func visit(_ info: UnsafeMutableRawPointer, _ context: Context) {
        let base = info.load(as: UInt.self)
        let name = info.load(fromByteOffset: 8, as: UnsafePointer<CChar>?.self).map { String(cString: $0) } ?? ""
        if name.contains("ld-linux") || name.contains("linux-vdso") { return }
        guard let phdrs = info.load(fromByteOffset: 16, as: UnsafePointer<Elf64_Phdr>?.self) else { return }
        let count = Int(info.load(fromByteOffset: 24, as: UInt16.self))
        var dynamic: UnsafePointer<Elf64_Dyn>?
        var relro: [Range<UInt>] = []
        for index in 0..<count {
            let header = phdrs[index]
            if header.p_type == UInt32(PT_DYNAMIC) { dynamic = UnsafePointer(bitPattern: base + UInt(header.p_vaddr)) }
            if header.p_type == UInt32(PT_GNU_RELRO) {
                relro.append((base + UInt(header.p_vaddr))..<(base + UInt(header.p_vaddr) + UInt(header.p_memsz)))
            }
        }
        guard var entry = dynamic else { return }
        var symtab: UInt = 0, strtab: UInt = 0, jmprel: UInt = 0, jmprelSize = 0, rela: UInt = 0, relaSize = 0
        // glibc has already added the load base to these on x86-64 and AArch64; the check covers loaders that don't.
        func address(_ value: UInt64) -> UInt { UInt(value) < base ? base + UInt(value) : UInt(value) }
        while entry.pointee.d_tag != Int64(DT_NULL) {
            let value = entry.pointee.d_un.d_val
            switch entry.pointee.d_tag {
            case Int64(DT_SYMTAB): symtab = address(value)
            case Int64(DT_STRTAB): strtab = address(value)
            case Int64(DT_JMPREL): jmprel = address(value)
            case Int64(DT_PLTRELSZ): jmprelSize = Int(value)
            case Int64(DT_RELA): rela = address(value)
            case Int64(DT_RELASZ): relaSize = Int(value)
            default: break
            }
            entry += 1
        }
        guard symtab != 0, strtab != 0 else { return }
        let symbols = UnsafePointer<Elf64_Sym>(bitPattern: symtab)!
        let strings = UnsafePointer<CChar>(bitPattern: strtab)!
        for (table, size) in [(jmprel, jmprelSize), (rela, relaSize)] where table != 0 && size > 0 {
            let relocations = UnsafePointer<Elf64_Rela>(bitPattern: table)!
            for index in 0..<(size / MemoryLayout<Elf64_Rela>.stride) {
                let relocation = relocations[index]
                let type = UInt32(truncatingIfNeeded: relocation.r_info)
                guard type == jumpSlot || type == globDat else { continue }
                let symbolIndex = Int(relocation.r_info >> 32)
                guard symbolIndex != 0 else { continue }
                let symbolName = String(cString: strings + Int(symbols[symbolIndex].st_name))
                guard let target = context.targets[symbolName] else { continue }
                let slot = base + UInt(relocation.r_offset)
                let page = slot & ~UInt(sysconf(Int32(_SC_PAGESIZE)) - 1)
                let inRelro = relro.contains { $0.contains(slot) }
                // Always made writable (a no-op for a page that already is);
                // RELRO pages go back to read-only afterwards.
                if mprotect(UnsafeMutableRawPointer(bitPattern: page), Int(sysconf(Int32(_SC_PAGESIZE))), PROT_READ | PROT_WRITE) != 0 {
                    context.error = "mprotect of a relocation page in \(name.isEmpty ? "the executable" : name) failed (errno \(errno))"
                    return
                }
                UnsafeMutablePointer<UnsafeRawPointer>(bitPattern: slot)!.pointee = target
                if inRelro { mprotect(UnsafeMutableRawPointer(bitPattern: page), Int(sysconf(Int32(_SC_PAGESIZE))), PROT_READ) }
                context.patched += 1
            }
        }
    }
}
