import Glibc
import SlotStore

/// Shows the library's ``WorkProgress`` reports on standard error, for the
/// commands that walk a whole store (dump, load, verify, inspect, compact).
///
/// Nothing appears for an operation that finishes within a second. After
/// that, on a terminal, one line is redrawn in place as a bar (step, bar,
/// percentage, counts, elapsed time) at most ten times a second, and erased
/// when the operation ends, so the command's own output starts on a clean
/// line. Elsewhere (a log, a pipe) each step gets one line when it ends, with
/// its count and duration: a log shows what took the time without a line per
/// report. `--quiet` shows nothing.
final class ProgressDisplay {
    private let enabled: Bool
    private let terminal: Bool
    private let started = ProgressDisplay.now()
    /// Reports before this moment are only remembered.
    private let showAfter: UInt64
    private var current: WorkProgress?
    private var stepStarted: UInt64 = 0
    private var lastDrawn: UInt64 = 0
    private var barShown = false

    /// - Parameters:
    ///   - quiet: show nothing (`--quiet`).
    ///   - delay: how long an operation runs before anything shows (tests pass 0).
    init(quiet: Bool, delay: Double = ProgressDisplay.defaultDelay) {
        enabled = !quiet
        terminal = isatty(STDERR_FILENO) == 1
        showAfter = started + UInt64(max(0, delay) * 1e9)
    }

    /// One second, or `SLOTSTORE_PROGRESS_DELAY` seconds (for tests that need the lines of a quick operation).
    static var defaultDelay: Double {
        guard let text = getenv("SLOTSTORE_PROGRESS_DELAY").flatMap({ String(validatingCString: $0) }),
              let seconds = Double(text), seconds >= 0 else { return 1 }
        return seconds
    }

    /// The closure to hand to the library, or nil when quiet (so it skips even the reports).
    var reporter: ((WorkProgress) -> Void)? {
        enabled ? { [self] in self.report($0) } : nil
    }

    func report(_ progress: WorkProgress) {
        guard enabled else { return }
        let now = ProgressDisplay.now()
        if let current, current.step != progress.step {
            endStep(current, at: now)
        }
        if current?.step != progress.step { stepStarted = now }
        current = progress
        if progress.total > 0 && progress.completed >= progress.total {
            endStep(progress, at: now)
            current = nil
            return
        }
        if terminal && now >= showAfter && (now - lastDrawn >= 100_000_000 || !barShown) {
            draw(progress, at: now)
        }
    }

    /// Call when the operation is over (done or failed): ends the last step and erases the bar.
    func finish() {
        guard enabled else { return }
        if let current { endStep(current, at: ProgressDisplay.now()) }
        current = nil
        if barShown { write("\r\u{1B}[K") }
        barShown = false
    }

    private func endStep(_ progress: WorkProgress, at now: UInt64) {
        guard now >= showAfter else { return }
        if terminal {
            draw(progress, at: now)
        } else {
            let seconds = Double(now - stepStarted) / 1e9
            let counts = progress.total > 1 ? ": \(ProgressDisplay.grouped(progress.completed)) of \(ProgressDisplay.grouped(progress.total))" : ""
            write("slotstore: \(progress.step)\(counts) (\(ProgressDisplay.seconds(seconds)))\n")
        }
    }

    private func draw(_ progress: WorkProgress, at now: UInt64) {
        lastDrawn = now
        barShown = true
        var columns = 80
        var size = winsize()
        if ioctl(STDERR_FILENO, UInt(TIOCGWINSZ), &size) == 0 && size.ws_col >= 40 { columns = Int(size.ws_col) }
        let elapsed = ProgressDisplay.seconds(Double(now - started) / 1e9)
        var tail = " " + elapsed
        var bar = ""
        if progress.total > 0 {
            let fraction = min(1, Double(progress.completed) / Double(progress.total))
            tail = " \(Int(fraction * 100))% \(ProgressDisplay.grouped(progress.completed))/\(ProgressDisplay.grouped(progress.total))" + tail
            let width = 24
            let filled = Int(fraction * Double(width))
            bar = " [" + String(repeating: "#", count: filled) + String(repeating: ".", count: width - filled) + "]"
        }
        var step = progress.step
        let room = columns - 1 - bar.count - tail.count
        if step.count > room { step = String(step.prefix(max(8, room - 1))) + "…" }
        write("\r\u{1B}[K" + step + bar + tail)
    }

    private func write(_ text: String) { Output.write(STDERR_FILENO, text) }

    static func now() -> UInt64 {
        var time = timespec()
        clock_gettime(CLOCK_MONOTONIC, &time)
        return UInt64(time.tv_sec) * 1_000_000_000 + UInt64(time.tv_nsec)
    }

    static func grouped(_ value: Int) -> String {
        let digits = Array(String(value))
        var result = ""
        for (index, digit) in digits.enumerated() {
            if index > 0 && (digits.count - index) % 3 == 0 && digit != "-" && digits[index - 1] != "-" { result.append(",") }
            result.append(digit)
        }
        return result
    }

    static func seconds(_ value: Double) -> String {
        let tenths = Int((value * 10).rounded())
        return "\(tenths / 10).\(tenths % 10) s"
    }
}

extension ProgressDisplay {
    /// Runs `body` with a display for `--quiet` or not, and always ends it,
    /// also when `body` throws (so an error message starts on a clean line).
    static func run<R>(quiet: Bool, _ body: (((WorkProgress) -> Void)?) throws -> R) rethrows -> R {
        let display = ProgressDisplay(quiet: quiet)
        defer { display.finish() }
        return try body(display.reporter)
    }
}
