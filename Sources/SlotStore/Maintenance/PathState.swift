import Glibc

/// What is at a store's path now, compared with the file the store uses:
/// for a tool that watches one store for a long time (`slotstore watch`)
/// and must stop when the store it shows is no longer the one at the path.
@_spi(Tools)
public enum StorePathState: Sendable, Hashable {
    /// The file at the path is the one the store uses (after following any
    /// compaction in place, map growth included).
    case same
    /// Nothing is at the path any more: the store was removed or renamed away.
    case missing
    /// Another file is at the path, and it is not a compaction of this store
    /// (removed and created again, or another store renamed over it).
    case replaced
}

extension SlotStore {
    /// Compares the file at the path with the one this store uses, following
    /// a compaction in place first.
    ///
    /// A compactor marks the old file retired before it renames its successor
    /// into place, so a file at the path that differs from this store's while
    /// this store's file is not retired was put there by something else.
    /// An `lstat` and a few loads; no lock, nothing written.
    ///
    /// - Throws: ``SlotStoreError/storeClosed(path:)`` after ``close()``, or
    ///   the error of following an in-place compaction.
    @_spi(Tools)
    public func pathState() throws(SlotStoreError) -> StorePathState {
        var core = try session.live(after: session.current)
        // Each round follows one more compaction that renamed its file in
        // between; a store compacted this often is still being followed.
        for _ in 0..<64 {
            if core.isStillAtPath() { return .same }
            guard core.gate.isRetired || !core.isAttachedHere else { break }
            core = try session.live(after: core)
        }
        if core.gate.isRetired { return .same }
        var info = stat()
        if lstat(path, &info) != 0 {
            // Anything but "not there" (a directory we can no longer search)
            // says nothing about the store: keep watching.
            return errno == ENOENT || errno == ENOTDIR ? .missing : .same
        }
        return .replaced
    }
}
