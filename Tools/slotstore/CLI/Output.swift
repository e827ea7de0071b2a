import Glibc

/// Writes to standard output and standard error without buffering surprises
/// between processes (the demo's workers share the terminal).
enum Output {
    static func out(_ text: String) { write(STDOUT_FILENO, text + "\n") }
    static func error(_ text: String) { write(STDERR_FILENO, text + "\n") }

    /// All of `text`, as is (no newline added), retrying short writes and EINTR.
    static func write(_ fd: Int32, _ text: String) {
        var text = text
        text.withUTF8 { bytes in
            var done = 0
            while done < bytes.count {
                let n = Glibc.write(fd, bytes.baseAddress! + done, bytes.count - done)
                if n < 0 { if errno == EINTR { continue }; return }
                done += n
            }
        }
    }
}
