import Foundation
import Glibc
import Testing
@testable import SlotStore

/// Opening and creating at the edges: a missing directory, and an open gate
/// held exclusively by a process that stopped.
@Suite("open edges", .timeLimit(.minutes(5)))
struct OpenEdgeTests {
    static let schema = Schema(version: 1, fields: [.int64("n")])

    @Test("creating in a missing directory names the directory and the remedy, for every way to create")
    func missingDirectory() throws {
        let directory = TemporaryDirectory()
        let missing = directory.file("no/such/dir")
        let path = missing + "/app.slots"
        for mode in [OpenOptions.Mode.createOrOpen, .create] {
            #expect(throws: SlotStoreError.directoryNotFound(path: path, directory: missing)) {
                try SlotStore(path: path, schema: OpenEdgeTests.schema, options: OpenOptions(mode: mode))
            }
        }
        #expect(throws: SlotStoreError.fileNotFound(path: path)) {
            try SlotStore(path: path, schema: OpenEdgeTests.schema, options: OpenOptions(mode: .open))
        }
        // create(at:) builds under a hidden name: its error names the caller's path all the same.
        #expect(throws: SlotStoreError.directoryNotFound(path: path, directory: missing)) {
            try SlotStore.create(at: path, schema: OpenEdgeTests.schema, values: ["n": .int(1)])
        }
        let message = SlotStoreError.directoryNotFound(path: path, directory: missing).description
        #expect(message.contains("mkdir -p \(missing)") && !message.contains("createOrOpen"))
    }

    @Test("an opener waits for an exclusive open gate at most the lock timeout, then says why")
    func stoppedExclusiveHolder() throws {
        let directory = TemporaryDirectory()
        let path = directory.file("gate.slots")
        try SlotStore(path: path, schema: OpenEdgeTests.schema).close()
        waitUntilNoOpener(path)
        // Another open file description holds the gate exclusively and never
        // lets go, as a stopped compactor or first opener would.
        let fd = open(path, O_RDWR | O_CLOEXEC)
        #expect(fd >= 0)
        var holding = true
        defer { if holding { close(fd) } }
        guard case .success(true) = OpenGate.tryExclusive(fd) else {
            Issue.record("could not take the open gate exclusively")
            return
        }
        let started = StoreCore.monotonicNanoseconds()
        do {
            _ = try SlotStore(path: path, options: OpenOptions(mode: .open, lockTimeout: .milliseconds(300)))
            Issue.record("the open returned while another process held the gate exclusively")
        } catch {
            guard case .storeInUse(let named, let operation) = error else {
                Issue.record("expected storeInUse, got \(error)")
                return
            }
            #expect(named == path && operation.contains("exclusively"))
        }
        let waited = Double(StoreCore.monotonicNanoseconds() - started) / 1e9
        #expect(waited >= 0.3, "it gave up before the lock timeout (\(waited) s)")
        // Once the holder lets go, opening works.
        close(fd)
        holding = false
        let store = try SlotStore(path: path, options: OpenOptions(mode: .open))
        store.close()
    }
}

extension OpenEdgeTests {
    @Test("create(at:) refuses what is at the path by what it is: a directory is not a store that exists")
    func createAtNonFile() throws {
        let directory = TemporaryDirectory()
        let path = directory.file("adir")
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: false)
        #expect(throws: SlotStoreError.notARegularFile(path: path, found: "directory")) {
            try SlotStore.create(at: path, schema: OpenEdgeTests.schema, values: [:])
        }
        let file = directory.file("existing.slots")
        try SlotStore(path: file, schema: OpenEdgeTests.schema).close()
        #expect(throws: SlotStoreError.alreadyExists(path: file)) {
            try SlotStore.create(at: file, schema: OpenEdgeTests.schema, values: [:])
        }
    }
}
