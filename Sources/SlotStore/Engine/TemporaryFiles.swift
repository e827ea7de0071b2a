import CSlotStore
import Foundation
import Glibc

/// The hidden files that creation, `slotstore load` and compaction build
/// beside a store before linking or renaming them into place:
/// `.NAME.creating-PID-…`, `.NAME.loading-PID-…`, `.NAME.compacting-PID-…`.
///
/// A process killed while building one leaves it behind; the next process to
/// build one for the same store removes the leftovers. Whether a builder is
/// still at work is decided by OFD locks, which the kernel drops when the
/// builder dies, in whatever PID namespace: never by the PID in the name
/// (informational only), which in another PID namespace names another
/// process, or none.
///
/// - A `creating` file's builder holds an OFD write lock on byte
///   ``builderLockByte`` from just after creating it until it is linked into
///   place (a byte no store use conflicts with: the open gate uses byte 0 and
///   thread slots 2^40 + n).
/// - A `loading` or `compacting` file is itself a store, which its builder
///   keeps open (the open gate's shared lock on byte 0) until it is in place.
///
/// So a leftover is stale exactly when a write lock over the whole file can
/// be taken; the remover takes it, removes the file, then lets it go. A
/// builder that created its file but had not yet claimed it fails to claim
/// it, or finds its name gone, and starts again under a new name.
enum TemporaryFiles {
    static let kinds = ["creating", "loading", "compacting"]

    /// The byte a `creating` file's builder holds locked while it builds: far
    /// past the thread slots' bytes (2^40 + slot), and OFD locks may cover
    /// bytes beyond the end of a file.
    static let builderLockByte = 1 << 41

    /// A fresh temporary name: the PID for people reading a directory
    /// listing, and a random part so no two builders (threads, or processes
    /// with the same PID in two PID namespaces) ever share one.
    static func path(for store: String, kind: String, unique: String? = nil) -> String {
        let (directory, name) = split(store)
        let unique = unique ?? String(UInt64.random(in: 0...UInt64.max), radix: 36)
        return "\(directory).\(name).\(kind)-\(getpid())-\(unique)"
    }

    /// Creates a new `creating` file for `store`, exclusively, with `mode`,
    /// and claims it (see the type's description). The caller closes the
    /// descriptor with ``release(_:)`` once the file is linked into place or
    /// given up.
    static func createClaimed(for store: String, mode: mode_t) -> Result<(fd: Int32, path: String), Errno> {
        // A lost race with a remover is rare and each round takes a new name:
        // a few rounds are plenty; then whatever keeps removing it is named.
        for _ in 0..<16 {
            let temporary = path(for: store, kind: "creating", unique: String(UInt32.random(in: 0...UInt32.max)))
            let fd: Int32
            switch Syscall.open(temporary, flags: O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW, mode: mode) {
            case .success(let opened): fd = opened
            case .failure(let code) where code.rawValue == EEXIST: continue
            case .failure(let code): return .failure(code)
            }
            // A forked child must not keep a dead builder's claim alive (see CSlotStore.h).
            let registered = slotstore_fork_register_descriptor(fd, nil, 0, 1) == 1
            // Claimed, and still ours at the name: a remover that got the lock
            // first has removed the file (or is about to), so start again.
            if OpenGate.tryClaimByte(fd, builderLockByte) && names(temporary, fd) {
                return .success((fd, temporary))
            }
            if registered { slotstore_fork_unregister_descriptor(fd) }
            Glibc.close(fd)
        }
        return .failure(Errno(EAGAIN))
    }

    /// Closes a descriptor from ``createClaimed(for:mode:)``, which ends the claim.
    static func release(_ fd: Int32) {
        slotstore_fork_unregister_descriptor(fd)
        Glibc.close(fd)
    }

    /// Links a finished temporary file to `store`.
    /// - Returns: false if something is already at `store`.
    /// - Throws: a clear error if the temporary file vanished (removed by a
    ///   build that decides liveness by PID, or by hand), never a misleading
    ///   "no store exists here".
    static func link(_ temporary: String, to store: String, operation: String) throws(SlotStoreError) -> Bool {
        guard Glibc.link(temporary, store) != 0 else { return true }
        let code = errno
        if code == EEXIST { return false }
        if code == ENOENT {
            throw .systemCallFailed(path: store, call: "link of the temporary file \(temporary) to \(operation) (another process removed it while it was being built; try again, and update any process that runs an older SlotStore)", errno: code)
        }
        throw Syscall.fileError(Errno(code), path: store, call: "link", operation: operation)
    }

    /// Removes this store's leftovers that no live process is building.
    static func removeStale(for store: String) {
        let (directory, name) = split(store)
        // A temporary store is itself created through a temporary file, named
        // `..NAME.compacting-PID-….creating-…`.
        let prefixes = [".\(name).", "..\(name)."]
        guard let entries = try? FileManager.default.contentsOfDirectory(atPath: directory.isEmpty ? "." : directory) else { return }
        for entry in entries {
            guard let prefix = prefixes.last(where: { entry.hasPrefix($0) }) else { continue }
            let rest = entry.dropFirst(prefix.count)
            guard let kind = kinds.first(where: { rest.hasPrefix($0 + "-") }),
                  rest.dropFirst(kind.count + 1).first?.isNumber == true else { continue }
            removeIfStale(directory + entry)
        }
    }

    /// The directory that holds `path`, as a path of its own ("." or "/" when that is it).
    static func directory(of path: String) -> String {
        guard let slash = path.lastIndex(of: "/") else { return "." }
        return slash == path.startIndex ? "/" : String(path[..<slash])
    }

    /// Removes `temporary` if no open file description holds any lock on it:
    /// its builder is gone. Files this process can't open for writing are
    /// left alone: not proven stale.
    static func removeIfStale(_ temporary: String) {
        guard case .success(let fd) = Syscall.open(temporary, flags: O_RDWR | O_NOFOLLOW | O_NONBLOCK) else { return }
        defer { Glibc.close(fd) }
        // Held across the unlink: a builder that has not claimed its file yet
        // fails to, and starts over under a new name.
        guard OpenGate.tryClaimWholeFile(fd), names(temporary, fd) else { return }
        unlink(temporary)
    }

    /// Whether `path` still names the file open as `fd`.
    static func names(_ path: String, _ fd: Int32) -> Bool {
        var named = stat(), open = stat()
        return lstat(path, &named) == 0 && fstat(fd, &open) == 0 && named.st_dev == open.st_dev && named.st_ino == open.st_ino
    }

    /// Makes a link or rename in `path`'s directory durable.
    static func syncDirectory(of path: String) {
        let fd = Glibc.open(directory(of: path), O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard fd >= 0 else { return }
        _ = fsync(fd)
        Glibc.close(fd)
    }

    /// The directory (with a trailing slash, or empty) and the file name.
    static func split(_ path: String) -> (directory: String, name: String) {
        guard let slash = path.lastIndex(of: "/") else { return ("", path) }
        return (String(path[...slash]), String(path[path.index(after: slash)...]))
    }
}
