import Foundation
import Glibc
@_spi(Tools) import SlotStore

/// The note a command prints on standard error while it waits for a store's
/// lock, so a `get` behind a stuck writer doesn't hang silently for the
/// whole `--lock-timeout`.
///
/// A watcher thread sleeps half a second on a semaphore the command signals
/// when it is done (so a quick command never pays for it), then looks at the
/// lock a few times a second, reading the file with `pread` (it never opens
/// the store, which would count as another process attached to it), and
/// prints one line the first time another process holds the lock or holds
/// the store exclusively.
enum LockWait {
    static let noteDelay = 0.5
    static let pollInterval = 0.2

    static func run<R>(path: String, _ body: () throws -> R) rethrows -> R {
        let done = DispatchSemaphore(value: 0)
        let watcherFinished = DispatchSemaphore(value: 0)
        let command = Settings.command
        let timeout = Settings.lockTimeout
        let thread = Thread {
            defer { watcherFinished.signal() }
            var wait = noteDelay
            while done.wait(timeout: .now() + wait) == .timedOut {
                wait = pollInterval
                if let note = note(path: path, command: command, timeout: timeout) {
                    Output.error(note)
                    return
                }
            }
        }
        thread.start()
        defer {
            done.signal()
            watcherFinished.wait()  // no note after the command's own output
        }
        return try body()
    }

    /// The line to print if another process keeps this one waiting now, else nil.
    static func note(path: String, command: String, timeout: Duration) -> String? {
        guard let (lock, exclusive) = try? SlotStore.lockState(at: path) else { return nil }
        let limit = "gives up after \(describe(timeout)) in all (--lock-timeout)"
        if lock.state != "free", let pid = lock.holderPID, pid != getpid() || lock.holderInAnotherPIDNamespace {
            let holder = HolderName.describe(pid: pid, inAnotherPIDNamespace: lock.holderInAnotherPIDNamespace)
            let state = lock.holderAlive ? "running" : "not running"
            return "slotstore \(command): waiting for the lock held by \(holder), which is \(state); \(limit)"
        }
        if exclusive {
            return "slotstore \(command): waiting to open \(path): another process holds it exclusively "
                + "(a compaction in place, or a first opener resetting its lock); \(limit)"
        }
        return nil
    }

    /// `2 s`, `500 ms`, `1.5 s`.
    static func describe(_ duration: Duration) -> String {
        let (seconds, attoseconds) = duration.components
        let total = Double(seconds) + Double(attoseconds) / 1e18
        if total < 1 && total > 0 { return "\(Int((total * 1000).rounded())) ms" }
        return total == total.rounded() ? "\(Int(total)) s" : "\(total) s"
    }
}

/// How the CLI names a process: its PID and, when it can tell (same PID
/// namespace, readable `/proc`), its command line.
enum HolderName {
    static func describe(pid: Int32, inAnotherPIDNamespace: Bool) -> String {
        if inAnotherPIDNamespace { return "PID \(pid) in another PID namespace" }
        guard let command = commandLine(of: pid) else { return "PID \(pid)" }
        return "PID \(pid) (\(command))"
    }

    /// The first words of `/proc/PID/cmdline`, the program by its last path component.
    static func commandLine(of pid: Int32) -> String? {
        let fd = open("/proc/\(pid)/cmdline", O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var bytes = [UInt8](repeating: 0, count: 256)
        let count = read(fd, &bytes, bytes.count)
        guard count > 0 else { return nil }
        var words = bytes.prefix(count).split(separator: 0).map { String(decoding: $0, as: UTF8.self) }
        guard !words.isEmpty else { return nil }
        words[0] = String(words[0].split(separator: "/").last ?? Substring(words[0]))
        let text = words.prefix(4).joined(separator: " ")
        return text.count > 60 ? String(text.prefix(59)) + "…" : text
    }
}
