import Glibc
import Synchronization

/// A test hook that logs every flush a process makes, with the pages it could write.
///
/// Set `SLOTSTORE_FLUSH_LOG=<file>` in a process's environment and each
/// ``MappedFile/flush(offset:count:)`` first appends to `<file>` the range it
/// is about to `msync` and a copy of every page of the mapping that changed
/// since the previous logged flush of the same file (all of them the first
/// time). From that log the crash-state explorer (`slotstore _power-loss`)
/// knows every page's version at every flush, and so what a power loss at any
/// moment can leave on disk. The variable is read once; without it each flush
/// costs one predictable branch next to an `msync`.
///
/// The log is a sequence of records; other writers (the explorer's workload)
/// append their own records to the same file between flushes:
///
/// ```
/// F <start> <end> <file size> <page size> <page count> <path>\n
///   then <page count> times: <page index>\n and the page's bytes
/// ```
///
/// `start..<end` is the page-aligned byte range of the `msync`.
enum FlushRecorder {
    static let logPath: String? = getenv("SLOTSTORE_FLUSH_LOG").map { String(cString: $0) }
    static let enabled = logPath != nil

    /// The mapping's bytes at the previous logged flush, per file path.
    private static let previous = Mutex<[String: [UInt8]]>([:])

    /// Logs a flush of `start..<end` of `file`, before it happens.
    static func willFlush(_ file: MappedFile, start: Int, end: Int, pageSize: Int) {
        guard let logPath else { return }
        let current = file.base.bytes(count: file.size)
        let old = previous.withLock { table in
            defer { table[file.path] = current }
            return table[file.path]
        }
        var changed: [Int] = []
        for page in 0..<(file.size + pageSize - 1) / pageSize {
            let range = page * pageSize..<min(file.size, (page + 1) * pageSize)
            if let old, old.count == current.count, old[range] == current[range] { continue }
            changed.append(page)
        }
        var record = Array("F \(start) \(end) \(file.size) \(pageSize) \(changed.count) \(file.path)\n".utf8)
        for page in changed {
            record += Array("\(page)\n".utf8)
            record += current[page * pageSize..<min(file.size, (page + 1) * pageSize)]
        }
        let fd = open(logPath, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0o600)
        guard fd >= 0 else { return }
        defer { close(fd) }
        var written = 0
        record.withUnsafeBytes { bytes in
            while written < bytes.count {
                let result = write(fd, bytes.baseAddress! + written, bytes.count - written)
                if result < 0 && errno == EINTR { continue }
                guard result > 0 else { return }
                written += result
            }
        }
    }
}
