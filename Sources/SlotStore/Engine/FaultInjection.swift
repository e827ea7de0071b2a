import Glibc

/// Crash points inside a locked write, for tests and the demo.
///
/// Set `SLOTSTORE_FAULT=<point>:<action>[:<n>]` in a process's environment to
/// act at the n-th time (default 1st) that process reaches `point`:
/// `kill` raises SIGKILL there; `hold` prints `SLOTSTORE-HOLDING <pid>` on
/// standard output and waits until something kills the process; `wait` prints
/// the same and carries on once the process receives SIGUSR1. The variable
/// is read once; without it each point costs one predictable branch.
@usableFromInline
enum FaultPoint: String, CaseIterable, Sendable {
    /// The lock is held; nothing is journaled or written.
    case beforeJournal
    /// The undo record is published; the data is untouched.
    case afterJournal
    /// Half of the new bytes are written.
    case midWrite
    /// The new value is written; the journal is not yet cleared.
    case afterWrite
    /// A map removal moved an entry back into the hole and may move more:
    /// the map's move sequence word is odd (once per entry moved).
    case midShift
    /// An insert into a full cache map (see ``MapCache``) removed an entry
    /// to make room (journaled, the clock bits swept may be cleared) and has
    /// not inserted yet.
    case afterEviction
    /// The journal is cleared (committed); the lock is still held.
    case beforeUnlock
    /// Compaction in place while others have the store open: the new file is
    /// at the path, the old one not yet marked retired, its lock held.
    case afterRename
    /// Compaction in place: everything is copied once and the new file
    /// flushed, with lock-free writers still running; they are not stopped yet.
    case afterBulkCopy
    /// Compaction in place: lock-free writers are stopped and drained, and
    /// the fields they write are not copied again yet.
    case afterRetiring
    /// Between the two halves of an array element write (its count in the
    /// element-write counter and its store), in any path. Debug builds only:
    /// the lock-free element store is inlined into its caller, and release
    /// builds keep it to the count and the store.
    case elementWrite

    /// The points inside every locked write (the compaction points are separate).
    static let writePoints: [FaultPoint] = [.beforeJournal, .afterJournal, .midWrite, .afterWrite, .beforeUnlock]
}

@usableFromInline
enum FaultInjection {
    private enum Action { case kill, hold, wait }

    private struct Plan: Sendable {
        let point: FaultPoint
        let action: Action
        let countdown: Int
    }

    private static let plan: Plan? = {
        guard let raw = getenv("SLOTSTORE_FAULT") else { return nil }
        let parts = String(cString: raw).split(separator: ":").map(String.init)
        // A misspelled point or action disables injection rather than killing somewhere unexpected.
        guard let first = parts.first, let point = FaultPoint(rawValue: first) else { return nil }
        let action: Action
        switch parts.count > 1 ? parts[1] : "kill" {
        case "kill": action = .kill
        case "hold": action = .hold
        case "wait": action = .wait
        default: return nil
        }
        let countdown = parts.count > 2 ? Int(parts[2]) ?? 1 : 1
        return Plan(point: point, action: action, countdown: max(1, countdown))
    }()

    /// Only touched by the thread holding the store lock, or (element writes,
    /// which take none) by a single-threaded test worker: plain state is enough.
    nonisolated(unsafe) private static var hits = 0

    @usableFromInline static let enabled = plan != nil

    @usableFromInline @inline(never)
    static func trigger(_ point: FaultPoint) {
        guard let plan, plan.point == point else { return }
        hits += 1
        guard hits == plan.countdown else { return }
        switch plan.action {
        case .kill:
            break
        case .hold:
            announceHolding()
            while true { pause() }
        case .wait:
            // Blocked before the announcement, so a SIGUSR1 sent right after it waits for sigwait.
            var signals = sigset_t()
            sigemptyset(&signals)
            sigaddset(&signals, SIGUSR1)
            pthread_sigmask(SIG_BLOCK, &signals, nil)
            announceHolding()
            var received: Int32 = 0
            sigwait(&signals, &received)
            return
        }
        kill(getpid(), SIGKILL)
        while true { pause() }
    }

    private static func announceHolding() {
        let line = "SLOTSTORE-HOLDING \(getpid())\n"
        _ = line.withCString { write(STDOUT_FILENO, $0, strlen($0)) }
    }
}
