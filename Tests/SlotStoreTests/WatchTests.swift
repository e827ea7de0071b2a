import Foundation
import Glibc
import Testing
@testable import SlotStore

/// `slotstore watch`: the real binary, as a terminal program inside tmux
/// (keys sent, the pane captured) and as a line producer (`--json` parsed),
/// while this process changes the store, compacts it, grows its maps,
/// removes and replaces it.
///
/// The `--json` runs use a 30 s interval, so a line that arrives within
/// a few seconds of a write came from the change, not from the interval.
@Suite("slotstore watch", .serialized, .timeLimit(.minutes(3)))
struct WatchTests {
    let directory = TemporaryDirectory()

    static let schema = Schema(version: 1, fields: [
        .int64("requests"), .int64("inflight", perProcess: .liveSum), .int64("done_total", perProcess: .sum),
        .double("load"), .string("motd", capacity: 256), .array("latency", of: .uint64, count: 4),
        .map("hits", key: .string(capacity: 32), value: .scalar(.int64), capacity: 4, growth: MapGrowth(maxCapacity: 64)),
    ])

    func makeStore(_ name: String = "watch.slots") throws -> SlotStore {
        try SlotStore(path: directory.file(name), schema: WatchTests.schema)
    }

    // MARK: --json, not a terminal

    @Test("--json: one object per refresh, a refresh right after each change (per-process fields too), rates over the refreshes")
    func jsonLines() throws {
        let store = try makeStore()
        defer { store.close() }
        let watch = try WatchProcess(["watch", store.path, "--json", "--interval", "30", "--count", "7"])
        defer { watch.stop() }

        let first = try #require(watch.nextObject())
        #expect(first.values["requests"] as? Int == 0)
        #expect(first.rates.isEmpty, "no rate before a second refresh: \(first.rates)")
        let hits = try #require(first.values["hits"] as? [String: Any])
        #expect(hits["count"] as? Int == 0 && hits["capacity"] as? Int == 4)

        var lines = [first]
        /// The next line, which must come from `change` (within 5 s, so not from the 30 s interval).
        func after(_ what: String, _ change: () throws -> Void) throws -> WatchObject {
            let started = monotonicTestSeconds()
            try change()
            let line = try #require(watch.nextObject(), "no line after \(what): \(watch.errors())")
            #expect(monotonicTestSeconds() - started < 5, "the refresh after \(what) came from the interval, not the change")
            lines.append(line)
            return line
        }
        /// The rate `name` must have at `line`: the change since the oldest refresh within the interval (all here).
        func expectedRate(_ name: String, at line: WatchObject, basis: (WatchObject) -> Double?) -> Double? {
            guard let now = basis(line), let then = basis(first) else { return nil }
            return (now - then) / (line.time - first.time)
        }
        func expectRate(_ name: String, at line: WatchObject, basis: (WatchObject) -> Double?, sourceLocation: SourceLocation = #_sourceLocation) {
            let expected = expectedRate(name, at: line, basis: basis)
            let rate = line.rates[name] as? Double
            #expect(rate != nil && expected != nil && abs(rate! - expected!) <= abs(expected!) * 0.005 + 1e-9,
                    "rate of \(name): \(String(describing: rate)), expected \(String(describing: expected))", sourceLocation: sourceLocation)
        }

        let requests = try store.scalar("requests", as: Int64.self)
        let second = try after("an add to a scalar") { requests.add(1000) }
        #expect(second.values["requests"] as? Int == 1000)
        expectRate("requests", at: second) { ($0.values["requests"] as? Int).map(Double.init) }
        #expect((second.rates["requests"] as? Double ?? 0) > 0)

        // Per-process writes wake nobody: watch reads those fields every 100 ms.
        let done = try store.perProcess("done_total", as: Int64.self)
        let third = try after("a per-process add") { done.add(5) }
        #expect(third.values["done_total"] as? Int == 5)
        expectRate("done_total", at: third) { ($0.values["done_total"] as? Int).map(Double.init) }
        let inflight = try store.perProcess("inflight", as: Int64.self)
        let fourth = try after("a liveSum add") { inflight.add(3) }
        #expect(fourth.values["inflight"] as? Int == 3)
        #expect(fourth.rates["inflight"] == nil, "a gauge has no rate")

        let latency = try store.array("latency", of: UInt64.self)
        let fifth = try after("an array element add") { latency.add(4, at: 2) }
        #expect(fifth.values["latency"] as? [Int] == [0, 0, 4, 0])
        expectRate("latency", at: fifth) { line in (line.values["latency"] as? [Int]).map { Double($0.reduce(0, +)) } }

        let sixth = try after("a map add") { try store.map("hits", key: String.self, value: Int64.self).add(3, for: "/x") }
        let summary = try #require(sixth.values["hits"] as? [String: Any])
        #expect(summary["count"] as? Int == 1)
        let top = summary["top"] as? [[String: Any]]
        #expect(top?.first?["key"] as? String == "/x" && top?.first?["value"] as? Int == 3)

        let seventh = try after("a string store") { try store.string("motd").store("hello") }
        #expect(seventh.values["motd"] as? String == "hello")
        #expect(seventh.values["load"] as? Int == 0)

        let result = watch.finish()
        #expect(result.status == 0 && !result.signaled, "--count 7 ends it with status 0: \(result.stderr)")
        #expect(watch.remainingLines().isEmpty, "nothing after the 7th refresh")
    }

    @Test("named fields only; follows a compaction in place and a map's growth; stops with status 2 when the store is removed")
    func followsAndStopsWhenRemoved() throws {
        let store = try makeStore()
        let watch = try WatchProcess(["watch", store.path, "requests", "hits", "--json", "--interval", "30"])
        defer { watch.stop() }
        let first = try #require(watch.nextObject())
        #expect(Set(first.values.keys) == ["requests", "hits"])
        #expect(first.generation == 1)

        // A compaction in place: a refresh shows its generation, and later writes are seen.
        _ = try SlotStore.compact(at: store.path)
        _ = try #require(watch.nextObject { $0.generation == 2 }, "\(watch.errors())")
        try store.scalar("requests", as: Int64.self).store(41)
        _ = try #require(watch.nextObject { $0.values["requests"] as? Int == 41 && $0.generation == 2 }, "\(watch.errors())")

        // Growing the map (another compaction in place) past its 4 entries.
        let hits = try store.map("hits", key: String.self, value: Int64.self)
        for key in 1...6 { try hits.set(Int64(key), for: "/\(key)") }
        let line = try #require(watch.nextObject { ($0.values["hits"] as? [String: Any])?["count"] as? Int == 6 }, "\(watch.errors())")
        let summary = try #require(line.values["hits"] as? [String: Any])
        #expect((summary["capacity"] as? Int ?? 0) > 4, "the map grew: \(summary)")
        #expect(line.generation > 2)
        #expect((summary["top"] as? [[String: Any]])?.compactMap { $0["key"] as? String } == ["/6", "/5", "/4", "/3", "/2"],
                "the 5 largest, largest first")
        store.close()

        try SlotStore.remove(at: directory.file("watch.slots"))
        // The end of output, not the 30 s refresh of a watch that missed it.
        let next = watch.nextLine()
        #expect(next == nil, "no refresh after the store was removed: \(next ?? "")")
        watch.stop()
        let result = watch.finish()
        #expect(result.status == 2 && !result.signaled)
        #expect(result.stderr.contains(directory.file("watch.slots")) && result.stderr.contains("removed"), "\(result.stderr)")
    }

    @Test("stops with status 2, naming the path, when another store is renamed over it")
    func stopsWhenReplaced() throws {
        let store = try makeStore()
        defer { store.close() }
        let watch = try WatchProcess(["watch", store.path, "--json", "--interval", "30"])
        defer { watch.stop() }
        _ = try #require(watch.nextObject())
        let other = try makeStore("other.slots")
        other.close()
        #expect(rename(directory.file("other.slots"), store.path) == 0)
        let next = watch.nextLine()
        #expect(next == nil, "no refresh after the store was replaced: \(next ?? "")")
        watch.stop()
        let result = watch.finish()
        #expect(result.status == 2 && !result.signaled)
        #expect(result.stderr.contains(store.path) && result.stderr.contains("another file replaced the store"), "\(result.stderr)")
    }

    @Test("plain text when not a terminal: one block per refresh, bars of #, and bad arguments refused")
    func plainBlocksAndUsage() throws {
        let store = try makeStore()
        try store.array("latency", of: UInt64.self).store([1, 0, 4, 2])
        store.close()
        let result = try Tool.run(["watch", store.path, "latency", "requests", "--count", "2", "--interval", "0.1"])
        #expect(result.succeeded, "\(result.stderr)")
        let blocks = result.stdout.components(separatedBy: "\n\n").filter { !$0.isEmpty }
        #expect(blocks.count == 2, "\(result.stdout)")
        let lines = blocks.last?.split(separator: "\n").map(String.init) ?? []
        #expect(lines.first?.contains(store.path) == true)
        #expect(lines.contains { $0.hasPrefix("requests") && $0.hasSuffix("0  0/s") }, "\(lines)")
        let bars = lines.filter { $0.hasPrefix("  [") }.map { $0.filter { $0 == "#" }.count }
        #expect(bars.count == 4 && bars[1] == 0 && bars[2] > bars[3] && bars[3] > bars[0] && bars[0] > 0, "\(lines)")
        #expect(abs(Double(bars[0]) / Double(bars[2]) - 0.25) < 0.05, "scaled to the largest: \(bars)")

        for (arguments, expected) in [
            (["watch", store.path, "nosuch"], "no field named \"nosuch\""),
            (["watch", store.path, "--interval", "0"], "--interval takes a number of seconds from 0.1"),
            (["watch", store.path, "--count", "0"], "--count takes a whole number"),
            (["watch", directory.file("missing.slots")], "missing.slots"),
        ] {
            let refused = try Tool.run(arguments)
            #expect(refused.status == 2 && refused.stdout.isEmpty && refused.stderr.contains(expected), "\(arguments): \(refused.stderr)")
        }
    }

    // MARK: A terminal: tmux

    static let tmux = ["/usr/bin/tmux", "/usr/local/bin/tmux", "/opt/homebrew/bin/tmux"].first { FileManager.default.isExecutableFile(atPath: $0) }

    @Test("on a terminal: redrawn in place with values, rates and bars, fitted to the width; Ctrl-C and q restore the terminal and exit 0",
          .enabled(if: WatchTests.tmux != nil, "tmux is not installed (looked in /usr/bin, /usr/local/bin, /opt/homebrew/bin): the terminal test needs it"))
    func terminal() throws {
        let store = try makeStore()
        defer { store.close() }
        try store.array("latency", of: UInt64.self).store([1, 0, 4, 2])
        try store.string("motd").store(String(repeating: "long motd ", count: 25))
        let pane = try TmuxPane(tmux: WatchTests.tmux!, directory: directory, command: [Tool.executable, "watch", store.path])
        defer { pane.close() }

        // The first refresh: every field, on the alternate screen, no cursor.
        let shown = try pane.waitFor("the first refresh") { $0.contains { $0.hasPrefix("requests") } }
        #expect(pane.state == "1 0", "alternate screen on, cursor hidden: \(pane.state)")
        #expect(shown.allSatisfy { $0.count < 120 }, "fitted to 120 columns: \(shown.map(\.count).max() ?? 0)")
        let motd = shown.first { $0.hasPrefix("motd") }
        #expect(motd?.hasSuffix("…") == true, "a string wider than the window is cut: \(motd ?? "none")")
        let bars = shown.filter { $0.hasPrefix("  [") }.map { $0.filter { $0 == "█" }.count }
        #expect(bars.count == 4 && bars[2] > bars[3] && bars[3] > bars[0] && bars[1] == 0, "one bar per element, scaled: \(shown)")

        // A change: redrawn in place with the value and a rate.
        try store.scalar("requests", as: Int64.self).add(500)
        let changed = try pane.waitFor("the value 500 with a rate") { lines in
            lines.contains { $0.range(of: #"^requests\s+int64\s+500\s+\+[0-9.]+/s$"#, options: .regularExpression) != nil }
        }
        #expect(changed.filter { $0.hasPrefix("requests") }.count == 1, "redrawn in place, not appended: \(changed)")

        pane.send("C-c")
        let after = try pane.waitFor("the exit status and the terminal's modes") { $0.contains("END") }
        #expect(after.contains("EXIT=0"), "Ctrl-C exits with status 0: \(after)")
        #expect(pane.state == "0 1", "alternate screen off, cursor shown: \(pane.state)")
        let modes = after.joined(separator: " ").split(separator: " ")
        #expect(modes.contains("icanon") && modes.contains("echo") && !modes.contains("-icanon") && !modes.contains("-echo"),
                "line editing and echo restored: \(after)")

        // q quits too.
        let second = try TmuxPane(tmux: WatchTests.tmux!, directory: directory, command: [Tool.executable, "watch", store.path, "requests"])
        defer { second.close() }
        _ = try second.waitFor("the first refresh") { $0.contains { $0.hasPrefix("requests") } }
        second.send("q")
        let quit = try second.waitFor("the exit status") { $0.contains("END") }
        #expect(quit.contains("EXIT=0") && second.state == "0 1", "\(quit) \(second.state)")
    }
}

func monotonicTestSeconds() -> Double {
    var now = timespec()
    clock_gettime(CLOCK_MONOTONIC, &now)
    return Double(now.tv_sec) + Double(now.tv_nsec) / 1e9
}

/// One `--json` line of `slotstore watch`.
struct WatchObject {
    let time: Double
    let generation: Int
    let values: [String: Any]
    let rates: [String: Any]

    init?(_ line: String) {
        guard let object = (try? JSONSerialization.jsonObject(with: Data(line.utf8))) as? [String: Any],
              let time = object["time"] as? Double, let generation = object["generation"] as? Int,
              let values = object["values"] as? [String: Any], let rates = object["rates"] as? [String: Any] else { return nil }
        (self.time, self.generation, self.values, self.rates) = (time, generation, values, rates)
    }
}

/// A `slotstore watch` whose standard output is read line by line as it
/// comes (an exact wait on the pipe) and whose standard error is kept.
final class WatchProcess: @unchecked Sendable {
    private let process: Process
    private let out = Pipe()
    private let err = Pipe()
    private var buffered = Data()
    private var errorText = Data()
    private let errorDone = DispatchSemaphore(value: 0)

    init(_ arguments: [String]) throws {
        process = Tool.process(arguments, environment: [:])
        process.standardOutput = out
        process.standardError = err
        try process.run()
        DispatchQueue.global().async { [err] in
            self.errorText = err.fileHandleForReading.readDataToEndOfFile()
            self.errorDone.signal()
        }
    }

    /// The next line, waiting for it; nil at the end of output.
    func nextLine() -> String? {
        while true {
            if let newline = buffered.firstIndex(of: 0x0A) {
                let line = String(decoding: buffered[buffered.startIndex..<newline], as: UTF8.self)
                buffered = Data(buffered[buffered.index(after: newline)...])
                return line
            }
            let chunk = out.fileHandleForReading.availableData
            if chunk.isEmpty { return nil }
            buffered.append(chunk)
        }
    }

    /// The next line as a refresh; nil (recorded as an issue) at the end of output or for a line that isn't one.
    func nextObject(sourceLocation: SourceLocation = #_sourceLocation) -> WatchObject? {
        guard let line = nextLine() else { return nil }
        guard let object = WatchObject(line) else {
            Issue.record("not a refresh object: \(line)", sourceLocation: sourceLocation)
            return nil
        }
        return object
    }

    /// The first refresh for which `wanted` holds, skipping the ones before
    /// (a write may show in one refresh or, with a growth, in two); nil at the end of output.
    func nextObject(sourceLocation: SourceLocation = #_sourceLocation, where wanted: (WatchObject) -> Bool) -> WatchObject? {
        while let object = nextObject(sourceLocation: sourceLocation) {
            if wanted(object) { return object }
        }
        return nil
    }

    /// Every line left, up to the end of output.
    func remainingLines() -> [String] {
        var lines: [String] = []
        while let line = nextLine() { lines.append(line) }
        return lines
    }

    /// Waits for the process to exit by itself.
    func finish() -> (status: Int32, signaled: Bool, stderr: String) {
        process.waitUntilExit()
        errorDone.wait()
        return (process.terminationStatus, process.terminationReason == .uncaughtSignal, String(decoding: errorText, as: UTF8.self))
    }

    /// What it wrote on standard error so far, for a failure message (only once it has exited).
    func errors() -> String { process.isRunning ? "(still running)" : finish().stderr }

    func stop() {
        if process.isRunning { kill(process.processIdentifier, SIGKILL) }
        process.waitUntilExit()
    }
}

/// A tmux server of its own (a socket in the test's directory) running one
/// command in a 120 × 40 window, followed by its exit status and the
/// terminal's modes, so a test sees what the command left behind.
final class TmuxPane {
    let tmux: String
    let socket: String

    init(tmux: String, directory: TemporaryDirectory, command: [String]) throws {
        self.tmux = tmux
        socket = directory.file("tmux-\(UInt32.random(in: 0...UInt32.max)).sock")
        let quoted = command.map { "'" + $0.replacingOccurrences(of: "'", with: "'\\''") + "'" }.joined(separator: " ")
        // bash, which carries on after a child that handled Ctrl-C and exited 0 (dash would stop too).
        let script = "\(quoted); echo EXIT=$?; stty -a; echo END; exec sleep 600"
        let status = TmuxPane.spawnDetached([tmux, "-S", socket, "new-session", "-d", "-x", "120", "-y", "40", "/bin/bash", "-c", script])
        guard status == 0 else { throw TmuxFailure(description: "tmux new-session failed with status \(status)") }
    }

    /// Runs the client that starts the tmux server with nothing of this
    /// process's but /dev/null: the server lives on and keeps every
    /// descriptor it inherits, and `Process` learns that a child ended when
    /// a socket it shares with it closes, so a server holding that socket
    /// (or another test's pipe) would hang their waits for good.
    static func spawnDetached(_ arguments: [String]) -> Int32 {
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        for fd in [STDIN_FILENO, STDOUT_FILENO, STDERR_FILENO] {
            posix_spawn_file_actions_addopen(&actions, fd, "/dev/null", fd == STDIN_FILENO ? O_RDONLY : O_WRONLY, 0)
        }
        let open = ((try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/fd")) ?? []).compactMap(Int32.init)
        for fd in open where fd > STDERR_FILENO { posix_spawn_file_actions_addclose(&actions, fd) }
        // Every signal unblocked and at its default: this thread (a test
        // worker) blocks most, and a server that inherited that mask never
        // sees its panes' SIGCHLD, so it would never finish a kill-server.
        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        var none = sigset_t(), all = sigset_t()
        sigemptyset(&none)
        sigfillset(&all)
        posix_spawnattr_setsigmask(&attributes, &none)
        posix_spawnattr_setsigdefault(&attributes, &all)
        posix_spawnattr_setflags(&attributes, Int16(POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF))
        var pid: pid_t = 0
        let argv = arguments.map { strdup($0) } + [nil]
        defer { argv.forEach { free($0) } }
        guard posix_spawn(&pid, arguments[0], &actions, &attributes, argv, environ) == 0 else { return -1 }
        var status: Int32 = 0
        while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
        return status
    }

    struct TmuxFailure: Error, CustomStringConvertible { let description: String }

    @discardableResult
    func run(_ arguments: [String]) throws -> (status: Int32, output: String) {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: tmux)
        process.arguments = ["-S", socket] + arguments
        let out = Pipe()
        process.standardOutput = out
        process.standardError = out
        process.standardInput = FileHandle.nullDevice
        try process.run()
        let data = out.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return (process.terminationStatus, String(decoding: data, as: UTF8.self))
    }

    /// The pane's lines now, trailing blanks trimmed.
    func capture() -> [String] {
        let text = (try? run(["capture-pane", "-p"]).output) ?? ""
        return text.split(separator: "\n", omittingEmptySubsequences: false).map {
            String($0.reversed().drop { $0 == " " }.reversed())
        }
    }

    /// "1 0" while the alternate screen is on and the cursor hidden; "0 1" once both are back.
    var state: String {
        ((try? run(["display-message", "-p", "#{alternate_on} #{cursor_flag}"]).output) ?? "")
            .trimmingCharacters(in: .whitespacesAndNewlines)
    }

    func send(_ key: String) { _ = try? run(["send-keys", key]) }

    /// The pane's lines once `ready` holds for them. A pane has no event to
    /// wait on, so this captures it every 20 ms, for at most 20 s.
    func waitFor(_ what: String, _ ready: ([String]) -> Bool) throws -> [String] {
        let deadline = monotonicTestSeconds() + 20
        var lines = capture()
        while !ready(lines) {
            guard monotonicTestSeconds() < deadline else {
                throw TmuxFailure(description: "no \(what) in the pane after 20 s:\n" + lines.joined(separator: "\n"))
            }
            usleep(20_000)
            lines = capture()
        }
        return lines
    }

    func close() { _ = try? run(["kill-server"]) }
}
