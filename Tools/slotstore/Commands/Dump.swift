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
      per 100K entries); the lock is held until the last byte is written, so
      prefer --output to a slow pipe. Bytes are {"base64": …}; nan, inf, -inf
      and -0 are strings.
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
            try LockWait.run(path: path) {
                try ProgressDisplay.run(quiet: quiet) { progress in
                    try store.writeDump(to: STDOUT_FILENO, outputName: "standard output", progress: progress)
                }
            }
            return ExitStatus.success
        }
        try OutputFile.write(output, what: "dump") { fd in
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
