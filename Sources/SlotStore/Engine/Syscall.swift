import Glibc

// Every system call SlotStore makes goes through these wrappers: `EINTR` is
// retried, `errno` is captured at once, and failures become `SlotStoreError`
// values that name the path and the call.

/// The text of an `errno` value, as `strerror` gives it.
func errnoDescription(_ code: Int32) -> String {
    guard let text = strerror(code) else { return "error \(code)" }
    return String(cString: text)
}

enum Syscall {
    /// Runs `body` until it does not fail with `EINTR`; returns its result or the `errno` it left.
    @inline(__always)
    static func retrying<T: BinaryInteger>(_ body: () -> T) -> Result<T, Errno> {
        while true {
            let result = body()
            if result >= 0 { return .success(result) }
            let code = errno
            if code != EINTR { return .failure(Errno(code)) }
        }
    }

    /// Maps an `errno` from a file operation to the error a user can act on.
    static func fileError(_ code: Errno, path: String, call: String, operation: String) -> SlotStoreError {
        switch code.rawValue {
        case EACCES, EPERM, EROFS: .permissionDenied(path: path, operation: operation)
        case ENOENT: .fileNotFound(path: path)
        case ELOOP: .symbolicLink(path: path)
        case EISDIR: .notARegularFile(path: path, found: "directory")
        case ENOSPC, EDQUOT: .noSpace(path: path, neededBytes: 0)
        default: .systemCallFailed(path: path, call: call, errno: code.rawValue)
        }
    }

    static func open(_ path: String, flags: Int32, mode: mode_t = 0) -> Result<Int32, Errno> {
        retrying { Glibc.open(path, flags | O_CLOEXEC, mode) }
    }

    /// What `lstat` finds at the path: nil when nothing exists there.
    static func kind(at path: String) -> Result<FileKind?, Errno> {
        var info = stat()
        if lstat(path, &info) != 0 {
            let code = errno
            return code == ENOENT ? .success(nil) : .failure(Errno(code))
        }
        return .success(FileKind(mode: info.st_mode))
    }

    static func size(of fd: Int32) -> Result<(kind: FileKind, size: Int, owner: uid_t), Errno> {
        var info = stat()
        guard fstat(fd, &info) == 0 else { return .failure(Errno(errno)) }
        return .success((FileKind(mode: info.st_mode), Int(info.st_size), info.st_uid))
    }

    /// Reads up to `count` bytes at `offset`; fewer only at the end of the file.
    static func read(_ fd: Int32, count: Int, at offset: Int) -> Result<[UInt8], Errno> {
        var bytes = [UInt8](repeating: 0, count: count)
        var done = 0
        while done < count {
            let result = bytes.withUnsafeMutableBytes { buffer in
                retrying { pread(fd, buffer.baseAddress! + done, count - done, off_t(offset + done)) }
            }
            switch result {
            case .failure(let code): return .failure(code)
            case .success(0): return .success(Array(bytes[0..<done]))
            case .success(let n): done += n
            }
        }
        return .success(bytes)
    }

    static func write(_ fd: Int32, _ bytes: [UInt8], at offset: Int) -> Result<Void, Errno> {
        var done = 0
        while done < bytes.count {
            let result = bytes.withUnsafeBytes { buffer in
                retrying { pwrite(fd, buffer.baseAddress! + done, bytes.count - done, off_t(offset + done)) }
            }
            switch result {
            case .failure(let code): return .failure(code)
            case .success(let n): done += n
            }
        }
        return .success(())
    }
}

/// An `errno` value.
struct Errno: Error, Equatable {
    let rawValue: Int32
    init(_ rawValue: Int32) { self.rawValue = rawValue }
}

/// The type of a directory entry, from `st_mode`.
enum FileKind: Equatable {
    case regular, directory, symbolicLink, other(String)

    init(mode: mode_t) {
        switch mode & S_IFMT {
        case S_IFREG: self = .regular
        case S_IFDIR: self = .directory
        case S_IFLNK: self = .symbolicLink
        case S_IFCHR: self = .other("character device")
        case S_IFBLK: self = .other("block device")
        case S_IFIFO: self = .other("named pipe")
        case S_IFSOCK: self = .other("socket")
        default: self = .other("file of unknown type")
        }
    }

    var name: String {
        switch self {
        case .regular: "regular file"
        case .directory: "directory"
        case .symbolicLink: "symbolic link"
        case .other(let name): name
        }
    }
}
