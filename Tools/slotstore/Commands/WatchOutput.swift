import Foundation
import Glibc
import Synchronization

/// Where `slotstore watch` puts its refreshes: a terminal redrawn in place,
/// or lines (text blocks, or JSON objects) for a pipe or a file.
struct WatchOutput {
    enum Mode { case terminal, plain, json }

    let mode: Mode
    private let screen: TerminalScreen?

    init(mode: Mode) {
        self.mode = mode
        screen = mode == .terminal ? TerminalScreen.shared : nil
    }

    /// Takes the terminal over (alternate screen, no cursor, keys unbuffered); nothing for lines.
    func begin() { screen?.begin() }

    /// Gives the terminal back as it was.
    func end() { screen?.end() }

    /// Whether the window was resized since the last refresh (then it is redrawn at once).
    var hasResize: Bool { screen?.resized.load(ordering: .relaxed) ?? false }

    func takeResize() -> Bool { screen?.resized.exchange(false, ordering: .relaxed) ?? false }

    /// Shows one refresh; false when standard output is gone (a closed pipe).
    func show(_ view: WatchView, rates: RateHistory.Rates) throws -> Bool {
        switch mode {
        case .json:
            return LineWriter.write(try view.json(rates: rates) + "\n")
        case .plain:
            return LineWriter.write(view.lines(width: 80, fancy: false, rates: rates).joined(separator: "\n") + "\n\n")
        case .terminal:
            guard let screen else { return false }
            let size = TerminalScreen.size()
            var lines = view.lines(width: size.columns, fancy: true, rates: rates)
            if lines.count > size.rows {
                let hidden = lines.count - size.rows + 1
                lines = Array(lines.prefix(size.rows - 1)) + ["… \(hidden) more lines: a taller window, or name the fields to watch"]
            }
            // One column short of the width: writing the last column leaves the
            // cursor waiting to wrap, and some terminals then clear it with the line's end.
            let fitted = lines.map { TerminalScreen.fit($0, columns: size.columns - 1) }
            // Home, each line then "clear to its end", then clear below: no flicker, no scrolling.
            return screen.draw("\u{1B}[H" + fitted.joined(separator: "\u{1B}[K\r\n") + "\u{1B}[K\u{1B}[J")
        }
    }
}

/// Writes whole strings to standard output, telling when it is gone.
enum LineWriter {
    static func write(_ text: String, to fd: Int32 = STDOUT_FILENO) -> Bool {
        var text = text
        return text.withUTF8 { bytes in
            var done = 0
            while done < bytes.count {
                let written = Glibc.write(fd, bytes.baseAddress! + done, bytes.count - done)
                if written < 0 {
                    if errno == EINTR { continue }
                    return false
                }
                done += written
            }
            return true
        }
    }
}

/// The terminal while `slotstore watch` draws on it: the alternate screen,
/// the cursor hidden, keys read one at a time without echo (for `q`), and
/// everything put back however the program ends: `q`, Ctrl-C (SIGINT, exit
/// status 0), SIGTERM, SIGHUP or SIGQUIT (exit status 128 + the signal), an
/// error, or the end of `--count`.
///
/// The signals are blocked in every thread and taken by one thread with
/// `sigwait`, not by a signal handler: restoring then runs as ordinary code,
/// under the same lock as drawing, so a frame is never cut in the middle of
/// an escape sequence and nothing async-signal-unsafe runs in a handler.
final class TerminalScreen: Sendable {
    static let shared = TerminalScreen()

    private struct State: @unchecked Sendable {
        var active = false
        /// The settings of standard input when it is a terminal, to restore.
        var saved: termios?
    }

    private let state = Mutex(State())
    let resized = Atomic<Bool>(false)

    /// Enter the alternate screen and hide the cursor; leave it and show the cursor.
    private static let enter = "\u{1B}[?1049h\u{1B}[?25l\u{1B}[H\u{1B}[2J"
    private static let leave = "\u{1B}[?25h\u{1B}[?1049l"

    private static var handledSignals: sigset_t {
        var set = sigset_t()
        sigemptyset(&set)
        for signal in [SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGWINCH] { sigaddset(&set, signal) }
        return set
    }

    func begin() {
        // Before any thread starts: the ones started here inherit the mask.
        var signals = TerminalScreen.handledSignals
        pthread_sigmask(SIG_BLOCK, &signals, nil)
        let readsKeys = state.withLock { state -> Bool in
            var keys = false
            if isatty(STDIN_FILENO) == 1 {
                var settings = termios()
                if tcgetattr(STDIN_FILENO, &settings) == 0 {
                    state.saved = settings
                    settings.c_lflag &= ~tcflag_t(ICANON | ECHO)
                    withUnsafeMutableBytes(of: &settings.c_cc) { characters in
                        characters[Int(VMIN)] = 1
                        characters[Int(VTIME)] = 0
                    }
                    keys = tcsetattr(STDIN_FILENO, TCSANOW, &settings) == 0
                }
            }
            _ = LineWriter.write(TerminalScreen.enter)
            state.active = true
            return keys
        }
        let signalThread = Thread { [self] in
            var set = TerminalScreen.handledSignals
            var received: Int32 = 0
            while sigwait(&set, &received) == 0 {
                if received == SIGWINCH {
                    resized.store(true, ordering: .relaxed)
                    continue
                }
                quit(status: received == SIGINT ? 0 : 128 + received)
            }
        }
        signalThread.start()
        if readsKeys {
            let keyThread = Thread { [self] in
                var key: UInt8 = 0
                while true {
                    let count = read(STDIN_FILENO, &key, 1)
                    if count < 0 && errno == EINTR { continue }
                    if count <= 0 { return }
                    if key == UInt8(ascii: "q") || key == UInt8(ascii: "Q") { quit(status: 0) }
                }
            }
            keyThread.start()
        }
    }

    /// Puts the terminal back; only the first call does anything.
    func end() {
        state.withLock { state in
            guard state.active else { return }
            state.active = false
            _ = LineWriter.write(TerminalScreen.leave)
            if var saved = state.saved { tcsetattr(STDIN_FILENO, TCSANOW, &saved) }
        }
    }

    /// Puts the terminal back and ends the process from a thread other than the main one.
    private func quit(status: Int32) -> Never {
        end()
        _exit(status)
    }

    /// Draws a frame unless the terminal was already given back; false if the terminal is gone.
    func draw(_ frame: String) -> Bool {
        state.withLock { state in
            guard state.active else { return true }
            return LineWriter.write(frame)
        }
    }

    /// The window's size, or 80 × 24 when the terminal doesn't say.
    static func size() -> (columns: Int, rows: Int) {
        var window = winsize()
        let asked = withUnsafeMutablePointer(to: &window) { ioctl(STDOUT_FILENO, UInt(TIOCGWINSZ), $0) }
        guard asked == 0, window.ws_col > 0, window.ws_row > 0 else { return (80, 24) }
        return (max(Int(window.ws_col), 10), max(Int(window.ws_row), 3))
    }

    /// `text` cut to `columns` terminal columns, ending in `…` when cut.
    /// East Asian wide characters and emoji take two columns.
    static func fit(_ text: String, columns: Int) -> String {
        var used = 0
        var result = ""
        for character in text {
            let width = columnsTaken(by: character)
            if used + width > columns - 1 {
                // Room for the rest, if this is the last character; else cut with an ellipsis.
                let rest = text[text.index(text.startIndex, offsetBy: result.count)...]
                if rest.reduce(0, { $0 + columnsTaken(by: $1) }) + used <= columns { return text }
                return result + "…"
            }
            used += width
            result.append(character)
        }
        return result
    }

    static func columnsTaken(by character: Character) -> Int {
        guard let scalar = character.unicodeScalars.first?.value else { return 0 }
        let wide: [ClosedRange<UInt32>] = [
            0x1100...0x115F, 0x2E80...0xA4CF, 0xAC00...0xD7A3, 0xF900...0xFAFF, 0xFE30...0xFE4F,
            0xFF00...0xFF60, 0xFFE0...0xFFE6, 0x1F300...0x1F64F, 0x1F900...0x1FAFF, 0x20000...0x3FFFD,
        ]
        return wide.contains { $0.contains(scalar) } ? 2 : 1
    }
}
