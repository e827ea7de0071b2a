import Foundation
import Glibc
import Testing
@testable import SlotStore

/// Every bad input gives its own error, and the file's bytes are unchanged afterwards.
@Suite("Bad input", .timeLimit(.minutes(5)))
struct BadInputTests {
    let directory = TemporaryDirectory()

    /// A valid store's bytes, closed.
    func validStore(_ name: String) throws -> (path: String, bytes: [UInt8], header: FileHeader) {
        let path = directory.file(name)
        let store = try SlotStore(path: path, schema: .sample)
        try store.scalar("requests", as: Int64.self).store(7)
        let header = store.core.header
        store.close()
        return (path, fileBytes(path), header)
    }

    /// Opens `path`, expects `check` to accept the error, and checks the bytes did not change.
    func expectRefused(_ path: String, schema: Schema? = .sample, _ check: (SlotStoreError) -> Bool,
                       sourceLocation: SourceLocation = #_sourceLocation) {
        let before = fileBytes(path)
        do {
            _ = try SlotStore(path: path, schema: schema)
            Issue.record("opening \(path) succeeded", sourceLocation: sourceLocation)
        } catch {
            #expect(check(error), "unexpected error: \(error)", sourceLocation: sourceLocation)
            #expect(error.description.contains(path), "the message names the path: \(error)", sourceLocation: sourceLocation)
        }
        #expect(fileBytes(path) == before, "the file changed", sourceLocation: sourceLocation)
    }

    @Test("missing file with open-only mode, or with no schema to create it")
    func missing() {
        let path = directory.file("missing.slots")
        #expect(throws: SlotStoreError.fileNotFound(path: path)) { _ = try SlotStore(path: path) }
        #expect(!FileManager.default.fileExists(atPath: path))
    }

    @Test("empty file")
    func empty() {
        let path = directory.file("empty.slots")
        writeFileBytes(path, [])
        expectRefused(path) { $0 == .emptyFile(path: path) }
    }

    @Test("truncated file, in the data and inside the header")
    func truncated() throws {
        let store = try validStore("t.slots")
        writeFileBytes(store.path, Array(store.bytes.prefix(store.bytes.count / 2)))
        expectRefused(store.path) {
            if case .truncated(_, store.bytes.count, store.bytes.count / 2) = $0 { return true }
            return false
        }
        writeFileBytes(store.path, Array(store.bytes.prefix(100)))
        expectRefused(store.path) {
            if case .truncated = $0 { return true }
            return false
        }
    }

    @Test("wrong magic, and random bytes")
    func notAStore() throws {
        let path = directory.file("text.slots")
        writeFileBytes(path, Array(String(repeating: "hello world\n", count: 1000).utf8))
        expectRefused(path) { $0 == .notAStore(path: path, foundMagic: "\"hello wo\"") }
        var random = SystemRandomNumberGenerator()
        writeFileBytes(path, (0..<20_000).map { _ in UInt8.random(in: 0...255, using: &random) })
        expectRefused(path) {
            if case .notAStore = $0 { return true }
            return false
        }
    }

    @Test("newer major format version")
    func newerVersion() throws {
        let store = try validStore("v.slots")
        var header = store.header
        header.formatMajor = 3
        patchFile(store.path, at: 0, header.encoded())
        expectRefused(store.path) { $0 == .unsupportedVersion(path: store.path, found: "3.\(store.header.formatMinor)", supported: "1.0 to 1.2, 2.0") }
    }

    @Test("a newer minor version is refused: it may hold fields this build can't read right (1.2 added per-process fields)")
    func newerMinor() throws {
        let store = try validStore("minor.slots")
        var header = store.header
        header.formatMinor = 7
        patchFile(store.path, at: 0, header.encoded())
        expectRefused(store.path) { $0 == .unsupportedVersion(path: store.path, found: "\(store.header.formatMajor).7", supported: "1.0 to 1.2, 2.0") }
    }

    @Test("header checksum mismatch")
    func checksum() throws {
        let store = try validStore("c.slots")
        patchFile(store.path, at: 200, [0xFF])
        expectRefused(store.path) {
            if case .headerChecksumMismatch = $0 { return true }
            return false
        }
    }

    @Test("header sizes beyond the file")
    func sizesBeyondFile() throws {
        let store = try validStore("s.slots")
        var header = store.header
        header.dataSize += 4096 * 16
        header.fileSize += 4096 * 16
        patchFile(store.path, at: 0, header.encoded())
        expectRefused(store.path) {
            $0 == .truncated(path: store.path, expectedBytes: Int(header.fileSize), foundBytes: store.bytes.count)
        }
        header = store.header
        header.schemaLength = UInt32(header.schemaSize + 1)
        patchFile(store.path, at: 0, header.encoded())
        expectRefused(store.path) {
            if case .corruptHeader = $0 { return true }
            return false
        }
    }

    @Test("damaged stored schema")
    func damagedSchema() throws {
        let store = try validStore("ds.slots")
        patchFile(store.path, at: Int(store.header.schemaOffset) + 3, Array("XX".utf8))
        expectRefused(store.path) {
            if case .corruptSchema = $0 { return true }
            return false
        }
    }

    @Test("schema mismatch says what differs")
    func schemaMismatch() throws {
        let store = try validStore("sm.slots")
        var given = Schema.sample
        given.version = 2
        given.fields.removeLast()
        given.fields.append(.float("extra"))
        given.fields[0] = .int32("requests")
        given.fields[7] = .string("motd", capacity: 256)
        expectRefused(store.path, schema: given) { error in
            guard case .schemaMismatch(_, let differences) = error else { return false }
            return differences.contains(.version(stored: 1, given: 2))
                && differences.contains(.removed(name: "bob", type: .scalar(.int64)))
                && differences.contains(.added(name: "extra", type: .scalar(.float)))
                && differences.contains(.retyped(name: "requests", stored: .scalar(.int64), given: .scalar(.int32)))
                && differences.contains(.resized(name: "motd", stored: .string(capacity: 128), given: .string(capacity: 256)))
        }
    }

    @Test("directory, symbolic link and named pipe are refused")
    func notRegular() throws {
        let store = try validStore("target.slots")
        let link = directory.file("link.slots")
        symlink(store.path, link)
        expectRefused(link) { $0 == .symbolicLink(path: link) }
        #expect(throws: SlotStoreError.symbolicLink(path: link)) { try SlotStore.remove(at: link) }
        #expect(throws: SlotStoreError.notARegularFile(path: directory.path, found: "directory")) {
            _ = try SlotStore(path: directory.path, schema: .sample)
        }
        let fifo = directory.file("fifo")
        mkfifo(fifo, 0o600)
        #expect(throws: SlotStoreError.notARegularFile(path: fifo, found: "named pipe")) {
            _ = try SlotStore(path: fifo, schema: .sample)
        }
    }

    @Test("permission denied, for a user who may not write the file",
          .enabled(if: getuid() == 0 && FileManager.default.isExecutableFile(atPath: "/usr/bin/setpriv")))
    func permissionDenied() throws {
        let shared = TemporaryDirectory(on: "/tmp")
        chmod(shared.path, 0o755)
        let path = shared.file("root-only.slots")
        _ = try SlotStore(path: path, schema: .sample)  // 0600, owned by root
        let before = fileBytes(path)
        // The tool binary sits under the checkout; let the unprivileged user reach it.
        let result = try runAsNobody([Tool.executable, "_worker", "open", path, Schema.sample.json])
        #expect(!result.succeeded)
        #expect(result.stderr.contains("permission denied"), "stderr: \(result.stderr)")
        #expect(result.stderr.contains(path))
        #expect(fileBytes(path) == before)
    }

    @Test("no space: creation fails with a clear error and leaves nothing behind",
          .enabled(if: getuid() == 0))
    func noSpace() throws {
        let mountPoint = TemporaryDirectory(on: "/tmp")
        guard mount("tmpfs", mountPoint.path, "tmpfs", 0, "size=64k") == 0 else {
            Issue.record("mounting a small tmpfs failed: errno \(errno)")
            return
        }
        defer { umount(mountPoint.path) }
        let path = mountPoint.file("big.slots")
        let big = Schema(version: 1, fields: [.bytes("payload", capacity: 1 << 20)])
        #expect {
            _ = try SlotStore(path: path, schema: big)
        } throws: { error in
            guard case .noSpace(path, let needed) = error as? SlotStoreError else { return false }
            return needed > 1 << 20
        }
        let leftovers = try FileManager.default.contentsOfDirectory(atPath: mountPoint.path)
        #expect(leftovers.isEmpty, "left behind: \(leftovers)")
    }

    @Test("a store owned by another user is refused unless allowed, in the library and the tool",
          .enabled(if: getuid() == 0))
    func otherOwner() throws {
        let path = directory.file("foreign.slots")
        _ = try SlotStore(path: path, schema: .sample)
        chown(path, 65534, 65534)
        expectRefused(path) { $0 == .ownedByAnotherUser(path: path, owner: 65534, user: 0) }
        var options = OpenOptions()
        options.allowOtherOwner = true
        let store = try SlotStore(path: path, schema: .sample, options: options)
        try store.scalar("requests", as: Int64.self).store(5)
        store.close()
        let refused = try Tool.run(["get", path, "requests"])
        #expect(refused.status == 2 && refused.stderr.contains("belongs to user 65534"), "\(refused.stderr)")
        let allowed = try Tool.run(["get", path, "requests", "--allow-other-owner"])
        #expect(allowed.succeeded && allowed.stdout == "5\n", "\(allowed)")
        #expect(try Tool.run(["inspect", path]).succeeded, "inspect reads any store it can read")
    }
}

/// Runs a command as user `nobody`, for permission tests under root.
func runAsNobody(_ command: [String]) throws -> ProcessResult {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: "/usr/bin/setpriv")
    process.arguments = ["--reuid=65534", "--regid=65534", "--clear-groups"] + command
    let err = Pipe()
    process.standardError = err
    process.standardOutput = Pipe()
    try process.run()
    let data = err.fileHandleForReading.readDataToEndOfFile()
    process.waitUntilExit()
    return ProcessResult(status: process.terminationStatus, signaled: process.terminationReason == .uncaughtSignal,
                         stdout: "", stderr: String(decoding: data, as: UTF8.self))
}
