import Glibc
@_spi(Tools) import SlotStore

/// `slotstore dump PATH`
enum DumpCommand: Command {
    static let name = "dump"
    static let abstract = "print the schema and every value as JSON (one consistent snapshot)"
    static let usage = """
    usage: slotstore dump PATH [--output FILE] [--quiet] [--lock-timeout T]
      Prints {"format":"slotstore-dump","formatVersion":1,"schema":…,"values":{…}}.
      All values are read under the store's lock, as one snapshot, and written
      as they are read (a map of any size takes no more memory than a few MiB
      per 100K entries). To a file the lock is held until the last byte is
      written; to a pipe or a terminal, the dump goes first to an unnamed
      temporary file in $TMPDIR (or /var/tmp), and is copied out after the lock
      is released, so a slow reader never holds up the store's writers. Bytes
      are {"base64": …}; nan, inf, -inf and -0 are strings.
      --output FILE   write the dump to FILE instead of standard output (built
                      under a hidden name beside it and renamed when complete)
      --quiet         no progress on standard error (shown for dumps over a second)
      --json          accepted and ignored: the dump is always JSON
    \(Settings.lockTimeoutUsage)
    """

    static func run(_ arguments: inout Arguments) throws -> Int32 {
        let path = try arguments.positional("store path")
        let output = try arguments.option("--output")
        let quiet = arguments.flag("--quiet")
        _ = arguments.flag("--json")  // dump always prints JSON
        Settings.lockTimeout = try arguments.durationOption("--lock-timeout") ?? Settings.lockTimeout
        try arguments.finish()
        let store = try LockWait.run(path: path) { try SlotStore(path: path, options: Settings.options(.open)) }
        defer { store.close() }
        guard let output else {
            var info = stat()
            if fstat(STDOUT_FILENO, &info) == 0 && (info.st_mode & S_IFMT) == S_IFREG {
                try LockWait.run(path: path) {
                    try ProgressDisplay.run(quiet: quiet) { progress in
                        try store.writeDump(to: STDOUT_FILENO, outputName: "standard output", progress: progress)
                    }
                }
            } else {
                try Spool.through { fd in
                    try LockWait.run(path: path) {
                        try ProgressDisplay.run(quiet: quiet) { progress in
                            try store.writeDump(to: fd, outputName: "a temporary file", progress: progress)
                        }
                    }
                }
            }
            return ExitStatus.success
        }
        // A dump holds every value: it gets the store's permissions (0600 by default), not the umask's.
        var storeInfo = stat()
        let mode = stat(path, &storeInfo) == 0 ? storeInfo.st_mode & 0o666 : 0o600
        try OutputFile.write(output, what: "dump", mode: mode) { fd in
            try LockWait.run(path: path) {
                try ProgressDisplay.run(quiet: quiet) { progress in
                    try store.writeDump(to: fd, outputName: output, progress: progress)
                }
            }
        }
        return ExitStatus.success
    }
}

/// A file a command writes whole: built under a hidden name in the same
/// folder and renamed over `path` only when complete, so a failed or killed
/// command never leaves a truncated file where a good one is expected.
enum OutputFile {
    static func write(_ path: String, what: String, mode: mode_t = 0o644, _ body: (Int32) throws -> Void) throws {
        let slash = path.lastIndex(of: "/")
        let directory = slash.map { String(path[...$0]) } ?? ""
        let name = slash.map { String(path[path.index(after: $0)...]) } ?? path
        let temporary = "\(directory).\(name).writing-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        let fd = open(temporary, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode)
        guard fd >= 0 else {
            throw InputError("\(path): cannot write the \(what) there: \(String(cString: strerror(errno))); choose a writable folder")
        }
        var finished = false
        defer {
            close(fd)
            if !finished { unlink(temporary) }
        }
        _ = fchmod(fd, mode)  // the umask must not widen or narrow what the caller asked for
        try body(fd)
        guard fsync(fd) == 0 || errno == EINVAL else {
            throw InputError("\(path): cannot flush the \(what): \(String(cString: strerror(errno)))")
        }
        guard rename(temporary, path) == 0 else {
            throw InputError("\(path): cannot put the \(what) in place: \(String(cString: strerror(errno)))")
        }
        finished = true
    }
}

/// An unnamed temporary file that a command fills under the store's lock and
/// copies to standard output after releasing it: a reader at the other end of
/// a pipe (`| less`, `| ssh`, a stalled consumer) then can't keep the lock.
enum Spool {
    static func through(_ fill: (Int32) throws -> Void) throws {
        let directory = ProcessInfoTemporary.directory
        // Created and unlinked at once: nothing is left behind, even if this process is killed.
        var template = Array("\(directory)/.slotstore-dump-XXXXXX".utf8CString)
        let fd = template.withUnsafeMutableBufferPointer { mkstemp($0.baseAddress!) }
        if fd >= 0 { template.withUnsafeBufferPointer { _ = unlink($0.baseAddress!) } }
        guard fd >= 0 else {
            throw InputError("\(directory): cannot create a temporary file for the dump there: \(String(cString: strerror(errno))); set TMPDIR to a writable folder with room for the dump, or use --output FILE")
        }
        defer { close(fd) }
        try fill(fd)
        var offset: off_t = 0
        var buffer = [UInt8](repeating: 0, count: 1 << 20)
        while true {
            let count = buffer.withUnsafeMutableBytes { pread(fd, $0.baseAddress, $0.count, offset) }
            if count < 0 && errno == EINTR { continue }
            guard count >= 0 else { throw InputError("cannot read back the spooled dump: \(String(cString: strerror(errno)))") }
            if count == 0 { return }
            var written = 0
            while written < count {
                let n = buffer.withUnsafeBytes { write(STDOUT_FILENO, $0.baseAddress! + written, count - written) }
                if n < 0 && errno == EINTR { continue }
                guard n > 0 else { throw InputError("cannot write the dump to standard output: \(String(cString: strerror(errno)))") }
                written += n
            }
            offset += off_t(count)
        }
    }
}

/// $TMPDIR if set, else /var/tmp (disk-backed on most systems, unlike /tmp on some).
enum ProcessInfoTemporary {
    static var directory: String {
        if let value = getenv("TMPDIR"), let text = String(validatingCString: value), !text.isEmpty { return text }
        return "/var/tmp"
    }
}
