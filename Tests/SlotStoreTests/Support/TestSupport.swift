import Foundation
import Glibc
import Testing
@testable import SlotStore

/// A private directory per test, removed afterwards.
final class TemporaryDirectory {
    let path: String

    init(on base: String = NSTemporaryDirectory()) {
        var template = Array((base + "/slotstore-test-XXXXXX").utf8CString)
        let made = template.withUnsafeMutableBufferPointer { mkdtemp($0.baseAddress!) }
        precondition(made != nil, "mkdtemp failed: \(errno)")
        path = String(decoding: template.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    func file(_ name: String) -> String { path + "/" + name }

    deinit { try? FileManager.default.removeItem(atPath: path) }
}

/// The outcome of a finished `slotstore` process.
struct ProcessResult {
    let status: Int32
    let signaled: Bool
    let stdout: String
    let stderr: String

    var succeeded: Bool { !signaled && status == 0 }
    var killedBySIGKILL: Bool { signaled && status == SIGKILL }
}

/// Runs the real `slotstore` binary, built beside the test bundle.
enum Tool {
    static let executable: String = {
        let candidates = [
            URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent().appendingPathComponent("slotstore").path,
            URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath().deletingLastPathComponent().appendingPathComponent("slotstore").path,
            URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
                .deletingLastPathComponent().deletingLastPathComponent().appendingPathComponent(".build/debug/slotstore").path,
        ]
        return candidates.first { FileManager.default.isExecutableFile(atPath: $0) } ?? candidates[0]
    }()

    /// A started process whose output is collected when it is awaited.
    final class Running: @unchecked Sendable {
        let process: Process
        private let out = Pipe()
        private let err = Pipe()
        private var outData = Data()
        private var errData = Data()
        private let readers = DispatchGroup()

        init(_ arguments: [String], environment: [String: String] = [:]) throws {
            process = Tool.process(arguments, environment: environment)
            process.standardOutput = out
            process.standardError = err
            try process.run()
            // Drain both pipes concurrently so a chatty child never blocks on a full pipe.
            readers.enter()
            DispatchQueue.global().async { [out] in self.outData = out.fileHandleForReading.readDataToEndOfFile(); self.readers.leave() }
            readers.enter()
            DispatchQueue.global().async { [err] in self.errData = err.fileHandleForReading.readDataToEndOfFile(); self.readers.leave() }
        }

        var pid: Int32 { process.processIdentifier }

        func wait() -> ProcessResult {
            process.waitUntilExit()
            readers.wait()
            return ProcessResult(status: process.terminationStatus,
                                 signaled: process.terminationReason == .uncaughtSignal,
                                 stdout: String(decoding: outData, as: UTF8.self),
                                 stderr: String(decoding: errData, as: UTF8.self))
        }
    }

    /// The `slotstore` binary with these arguments and extra environment, not yet started.
    static func process(_ arguments: [String], environment: [String: String]) -> Process {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: Tool.executable)
        process.arguments = arguments
        process.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 }
        return process
    }

    static func start(_ arguments: [String], environment: [String: String] = [:]) throws -> Running {
        try Running(arguments, environment: environment)
    }

    static func run(_ arguments: [String], environment: [String: String] = [:]) throws -> ProcessResult {
        try start(arguments, environment: environment).wait()
    }

    /// Starts a process that will print `SLOTSTORE-HOLDING` while holding the
    /// lock (or another `marker` when it is ready), and returns once it has
    /// (an exact wait on its output pipe).
    final class Holder {
        let process: Process
        private let out = Pipe()

        init(_ arguments: [String], environment: [String: String] = [:], marker: String = "SLOTSTORE-HOLDING") throws {
            process = Tool.process(arguments, environment: environment)
            process.standardOutput = out
            process.standardInput = input
            try process.run()
            var received = Data()
            while !String(decoding: received, as: UTF8.self).contains(marker) {
                let chunk = out.fileHandleForReading.availableData
                if chunk.isEmpty { break }
                received.append(chunk)
            }
            // What came after the marker's line, for readLine().
            if let newline = received.firstIndex(of: 0x0A, after: String(decoding: received, as: UTF8.self).range(of: marker)) {
                pending = Data(received[received.index(after: newline)...])
            }
        }

        private var pending = Data()
        private let input = Pipe()

        /// Writes a line to the process's standard input.
        func send(_ line: String) { input.fileHandleForWriting.write(Data((line + "\n").utf8)) }

        /// The process's next line of output (an exact wait on its pipe); "" at its end.
        func readLine() -> String {
            while !pending.contains(0x0A) {
                let chunk = out.fileHandleForReading.availableData
                if chunk.isEmpty { break }
                pending.append(chunk)
            }
            let end = pending.firstIndex(of: 0x0A) ?? pending.endIndex
            let line = String(decoding: pending[pending.startIndex..<end], as: UTF8.self)
            pending = end < pending.endIndex ? Data(pending[pending.index(after: end)...]) : Data()
            return line
        }

        var pid: Int32 { process.processIdentifier }
        var isHolding: Bool { process.isRunning }

        func kill() {
            Glibc.kill(process.processIdentifier, SIGKILL)
            process.waitUntilExit()
        }
    }
}

/// The raw bytes of a file, to prove an operation changed nothing.
func fileBytes(_ path: String) -> [UInt8] {
    (try? Array(Data(contentsOf: URL(fileURLWithPath: path)))) ?? []
}

func writeFileBytes(_ path: String, _ bytes: [UInt8]) {
    _ = FileManager.default.createFile(atPath: path, contents: Data(bytes), attributes: [.posixPermissions: 0o600])
}

/// Overwrites bytes at `offset` of an existing file, as damage or a test setup would.
func patchFile(_ path: String, at offset: Int, _ bytes: [UInt8]) {
    let fd = open(path, O_WRONLY)
    precondition(fd >= 0)
    _ = bytes.withUnsafeBytes { pwrite(fd, $0.baseAddress, bytes.count, off_t(offset)) }
    close(fd)
}

extension Schema {
    static let sample = Schema(version: 1, fields: [
        .int64("requests"), .double("load"), .bool("enabled"), .int8("small"), .uint32("mask"),
        .array("latency", of: .double, count: 64), .array("buckets", of: .int64, count: 16),
        .string("motd", capacity: 128), .bytes("blob", capacity: 32),
        .int64("alice"), .int64("bob"),
    ])

    var json: String { String(decoding: jsonBytes(), as: UTF8.self) }
}

/// Waits until no open file description holds the store's open lock.
///
/// Tests that need to be the first opener call this after closing the store:
/// a child that another test (running in parallel in this process) is
/// forking keeps a copy of every descriptor, and so of the open lock, until
/// it execs. That window has no event to wait on, so this polls, bounded.
func waitUntilNoOpener(_ path: String, sourceLocation: SourceLocation = #_sourceLocation) {
    let fd = open(path, O_RDONLY | O_CLOEXEC)
    guard fd >= 0 else { return }
    defer { close(fd) }
    for _ in 0..<5000 {
        if case .success(false) = OpenGate.othersHaveOpen(fd) { return }
        usleep(1000)
    }
    Issue.record("another open file description still holds \(path) after 5 s", sourceLocation: sourceLocation)
}

/// A seeded generator (SplitMix64): every run of a seeded test makes the same choices, so a failure replays.
struct SeededRandom: RandomNumberGenerator {
    var state: UInt64
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
    mutating func below(_ bound: Int) -> Int { bound <= 1 ? 0 : Int(next() % UInt64(bound)) }
    mutating func chance(_ percent: Int) -> Bool { below(100) < percent }
    mutating func pick<T>(_ values: [T]) -> T { values[below(values.count)] }
}

extension Data {
    /// The first `byte` at or after the UTF-8 offset where `range` ends in this data's text.
    fileprivate func firstIndex(of byte: UInt8, after range: Range<String.Index>?) -> Index? {
        guard let range else { return nil }
        let text = String(decoding: self, as: UTF8.self)
        let offset = text.utf8.distance(from: text.startIndex, to: range.upperBound)
        return self[(startIndex + offset)...].firstIndex(of: byte)
    }
}

/// The file's bytes with the lock region blanked: every open by a first
/// opener re-initializes the lock and counts it there, by design.
func bytesOutsideLockRegion(_ path: String) throws -> [UInt8] {
    var bytes = fileBytes(path)
    let header = try FileHeader.decode(Array(bytes.prefix(FileHeader.size)), path: path)
    let start = Int(header.lockOffset)
    let end = min(bytes.count, start + Int(header.lockSize))
    if start < end { bytes.replaceSubrange(start..<end, with: repeatElement(0, count: end - start)) }
    return bytes
}
