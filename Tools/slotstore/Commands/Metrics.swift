import Glibc
import SlotStore

/// `slotstore metrics PATH [--prefix P] [--output FILE]`
enum MetricsCommand: Command {
    static let name = "metrics"
    static let abstract = "print the values in the Prometheus text format"
    static let usage = """
    usage: slotstore metrics PATH [--prefix P] [--output FILE] [--lock-timeout T]
      Prints every field in the Prometheus text exposition format 0.0.4, each
      read lock-free and consistently on its own (not the store as of one moment):
      numbers as gauges, or counters when the field's name ends in _total;
      Booleans as 0/1; arrays as one series per element (label index); maps with
      number or Boolean values as one series per entry (label key); strings as
      an info metric NAME_info{value="…"} 1. Bytes fields and other maps are left
      out, with a # comment. Metric names are the prefix and the field's name
      with - and . replaced by _.
      --prefix P     the metric name prefix (default slotstore_; "" for none)
      --output FILE  write to FILE atomically instead (a temporary file in its
                     directory, then rename), for the textfile collector
    \(Settings.lockTimeoutUsage)
    """

    static func run(_ arguments: inout Arguments) throws -> Int32 {
        let path = try arguments.positional("store path")
        let prefix = try arguments.option("--prefix") ?? "slotstore_"
        let output = try arguments.option("--output")
        Settings.lockTimeout = try arguments.durationOption("--lock-timeout") ?? Settings.lockTimeout
        try arguments.finish()
        guard PrometheusText.isValidName(prefix, allowingEmpty: true) else {
            throw UsageError("--prefix must be a metric name prefix ([a-zA-Z_:][a-zA-Z0-9_:]*), found \"\(prefix)\"")
        }
        let text = try LockWait.run(path: path) {
            let store = try SlotStore(path: path, options: Settings.options(.open))
            defer { store.close() }
            // Field by field, lock-free: a scrape never holds the lock writers need.
            return try PrometheusText.render(fields: store.schema.fields, prefix: prefix) { name in
                try store.value(of: name)
            }
        }
        if let output {
            try AtomicFile.write(text, to: output)
        } else if !text.isEmpty {
            Output.out(String(text.dropLast()))  // Output adds the last line feed
        }
        return ExitStatus.success
    }
}

/// A file replaced all at once: readers (node_exporter's textfile collector)
/// see the old content or the new, never a half-written file.
enum AtomicFile {
    /// Writes `text` to a temporary file in `path`'s directory, named so the
    /// collector (which reads only `*.prom`) ignores it, then renames it over
    /// `path`. The file gets mode 0644 less the umask, so a collector running
    /// as another user can read it.
    static func write(_ text: String, to path: String) throws {
        let slash = path.lastIndex(of: "/")
        let directory = slash.map { String(path[..<$0]) } ?? "."
        let base = slash.map { String(path[path.index(after: $0)...]) } ?? path
        guard !base.isEmpty else { throw InputError("\(path): --output needs a file name, found a directory path ending in /") }
        let temporary = "\(directory.isEmpty ? "" : directory)/.\(base).\(getpid())-\(UInt32.random(in: 0...UInt32.max)).tmp"
        let fd = open(temporary, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o644)
        guard fd >= 0 else {
            throw InputError("\(path): cannot create the temporary file \(temporary) beside it (\(errorText(errno))); expected a writable directory \(directory)")
        }
        var failure: String?
        var bytes = Array(text.utf8)
        bytes.withUnsafeMutableBytes { buffer in
            var done = 0
            while done < buffer.count {
                let written = Glibc.write(fd, buffer.baseAddress! + done, buffer.count - done)
                if written < 0 {
                    if errno == EINTR { continue }
                    failure = "writing \(temporary) failed (\(errorText(errno)))"
                    return
                }
                done += written
            }
        }
        if close(fd) != 0, failure == nil { failure = "closing \(temporary) failed (\(errorText(errno)))" }
        if failure == nil, rename(temporary, path) != 0 {
            failure = "renaming \(temporary) to \(path) failed (\(errorText(errno)))"
        }
        if let failure {
            unlink(temporary)
            throw InputError("\(path): \(failure); \(path) is unchanged. Check the disk has room and \(path) is not a directory")
        }
    }

    static func errorText(_ code: Int32) -> String { String(cString: strerror(code)) }
}
