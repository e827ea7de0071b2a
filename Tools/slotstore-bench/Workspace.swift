import Glibc

/// The folders the benchmark's stores live in: one under the shared-memory
/// folder and one under the disk-backed folder, both removed at the end.
final class Workspace {
    let shm: String
    let disk: String
    let shmMedium: String
    let diskMedium: String
    /// Why the disk folder may not measure a disk, if it may not.
    let diskWarning: String?
    private var created: [String] = []

    init(settings: Settings) throws(BenchFailure) {
        let shmRoot = try Workspace.checkedDirectory(settings.shmDirectory, option: "shared-memory folder")
        let diskRoot = try Workspace.checkedDirectory(settings.diskDirectory, option: "--dir")
        shmMedium = Workspace.basename(shmRoot)
        diskMedium = Workspace.basename(diskRoot)
        diskWarning = Workspace.isMemoryBacked(diskRoot)
            ? "\(diskRoot) is on tmpfs/ramfs: the sync and durable rows measure no disk" : nil
        let suffix = "slotstore-bench.\(getpid())"
        shm = shmRoot + "/" + suffix
        disk = diskRoot + "/" + suffix
        try makeDirectory(shm)
        try makeDirectory(disk)
    }

    /// A fresh path for a store file named `name` in the shm (or disk) folder.
    func path(_ name: String, onDisk: Bool = false) -> String {
        (onDisk ? disk : shm) + "/" + name
    }

    func remove(_ path: String) {
        unlink(path)
    }

    /// Deletes every file in the benchmark's folders, then the folders.
    func cleanUp() {
        for directory in created.reversed() {
            if let handle = opendir(directory) {
                while let entry = readdir(handle) {
                    let name = withUnsafeBytes(of: entry.pointee.d_name) { raw in
                        String(cString: raw.bindMemory(to: CChar.self).baseAddress!)
                    }
                    if name != "." && name != ".." { unlink(directory + "/" + name) }
                }
                closedir(handle)
            }
            rmdir(directory)
        }
        created.removeAll()
    }

    /// A new private folder under `$TMPDIR` (or /tmp), removed with the workspace.
    /// Not under the shared-memory folder: containers often mount /dev/shm noexec,
    /// and the floor's binary goes here.
    func temporaryDirectory() throws(BenchFailure) -> String {
        let root = getenv("TMPDIR").flatMap { String(validatingCString: $0) }.flatMap { $0.isEmpty ? nil : $0 } ?? "/tmp"
        var template = Array((root + "/slotstore-bench-floor.XXXXXX").utf8CString)
        guard let made = template.withUnsafeMutableBufferPointer({ mkdtemp($0.baseAddress!) }) else {
            throw BenchFailure("cannot create a temporary folder in \(root): \(errorText(errno)); set TMPDIR to a writable folder")
        }
        let path = String(cString: made)
        created.append(path)
        return path
    }

    private func makeDirectory(_ path: String) throws(BenchFailure) {
        guard mkdir(path, 0o700) == 0 else {
            throw BenchFailure("cannot create \(path): \(errorText(errno))")
        }
        created.append(path)
    }

    static func checkedDirectory(_ path: String, option: String) throws(BenchFailure) -> String {
        var trimmed = path
        while trimmed.count > 1 && trimmed.hasSuffix("/") { trimmed.removeLast() }
        var status = stat()
        guard stat(trimmed, &status) == 0 else {
            throw BenchFailure("\(option) \(path): \(errorText(errno))")
        }
        guard status.st_mode & S_IFMT == S_IFDIR else { throw BenchFailure("\(option) \(path): not a directory") }
        guard access(trimmed, W_OK | X_OK) == 0 else { throw BenchFailure("\(option) \(path): not writable") }
        return trimmed
    }

    static func basename(_ path: String) -> String {
        let parts = path.split(separator: "/")
        return parts.last.map(String.init) ?? "/"
    }

    /// Whether `path` is on tmpfs or ramfs (statfs's f_type, the struct's first word on Linux;
    /// statfs is reached through dlsym because the Glibc module doesn't import sys/vfs.h).
    static func isMemoryBacked(_ path: String) -> Bool {
        typealias StatfsFunction = @convention(c) (UnsafePointer<CChar>?, UnsafeMutableRawPointer?) -> Int32
        guard let symbol = dlsym(nil, "statfs") else { return false }
        let statfs = unsafeBitCast(symbol, to: StatfsFunction.self)
        var buffer = [UInt64](repeating: 0, count: 64)
        let status = buffer.withUnsafeMutableBytes { bytes in path.withCString { statfs($0, bytes.baseAddress) } }
        guard status == 0 else { return false }
        let type = buffer[0] & 0xFFFF_FFFF
        return type == 0x0102_1994 || type == 0x8584_58F6  // TMPFS_MAGIC, RAMFS_MAGIC
    }

    static func fileSize(_ path: String) -> Int? {
        var status = stat()
        guard stat(path, &status) == 0 else { return nil }
        return Int(status.st_size)
    }
}
