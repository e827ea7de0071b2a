import Synchronization

/// A handle's own copy of itself in the live file, once it has followed a
/// compaction in place (or a map growth, which is one).
///
/// Without it, every call of a handle resolved before the compaction built
/// the handle again in the live file (copying the field's layout, rebuilding
/// a map's geometry and cursor): a map `get` went from 12 ns to 225 ns for
/// the rest of the process's life, which with maps that grow is the common
/// case, not the rare one. The cache publishes each rebuilt handle once;
/// readers take no lock. Every published copy is kept until the handle (and
/// its copies) are gone, so a reader's unretained pointer is always valid:
/// one small object per compaction the handle followed.
@usableFromInline
final class FollowCache<Handle>: @unchecked Sendable {
    private final class Entry {
        let handle: Handle
        init(_ handle: Handle) { self.handle = handle }
    }

    private let current = Atomic<UInt>(0)
    private let published = LockedState<[Entry]>([])

    @usableFromInline init() {}

    /// The handle last published, if any; the caller checks it is still live.
    func latest() -> Handle? {
        let bits = current.load(ordering: .acquiring)
        guard bits != 0, let address = UnsafeRawPointer(bitPattern: bits) else { return nil }
        return Unmanaged<Entry>.fromOpaque(address).takeUnretainedValue().handle
    }

    /// Makes `handle` the one ``latest()`` returns.
    func publish(_ handle: Handle) {
        let entry = Entry(handle)
        published.withLock { $0.append(entry) }
        current.store(UInt(bitPattern: Unmanaged.passUnretained(entry).toOpaque()), ordering: .releasing)
    }
}
