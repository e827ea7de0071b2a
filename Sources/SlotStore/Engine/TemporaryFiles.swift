import Foundation
import Glibc

/// The hidden files that creation, `slotstore load` and compaction build
/// beside a store before linking or renaming them into place:
/// `.NAME.creating-PID-…`, `.NAME.loading-PID`, `.NAME.compacting-PID`.
/// A process killed while building one leaves it behind; the next process
/// to build one for the same store removes those whose PID is gone.
enum TemporaryFiles {
    static let kinds = ["creating", "loading", "compacting"]

    static func path(for store: String, kind: String, unique: String? = nil) -> String {
        let (directory, name) = split(store)
        return "\(directory).\(name).\(kind)-\(getpid())" + (unique.map { "-\($0)" } ?? "")
    }

    /// Removes this store's leftovers whose creating process is no longer running.
    static func removeStale(for store: String) {
        let (directory, name) = split(store)
        // A temporary store is itself created through a temporary file, named
        // `..NAME.compacting-PID.creating-…`: the first PID owns both.
        let prefixes = [".\(name).", "..\(name)."]
        guard let entries = try? FileManager.default.contentsOfDirectory(atPath: directory.isEmpty ? "." : directory) else { return }
        for entry in entries {
            guard let prefix = prefixes.last(where: { entry.hasPrefix($0) }) else { continue }
            let rest = entry.dropFirst(prefix.count)
            guard let kind = kinds.first(where: { rest.hasPrefix($0 + "-") }) else { continue }
            let digits = rest.dropFirst(kind.count + 1).prefix { $0.isNumber }
            guard let pid = Int32(digits), pid > 0, !StoreCore.isAlive(pid) else { continue }
            unlink(directory + entry)
        }
    }

    /// The directory that holds `path`, as a path of its own ("." or "/" when that is it).
    static func directory(of path: String) -> String {
        guard let slash = path.lastIndex(of: "/") else { return "." }
        return slash == path.startIndex ? "/" : String(path[..<slash])
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
