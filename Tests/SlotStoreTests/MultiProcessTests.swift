import Foundation
import Glibc
import Testing
@testable import SlotStore

/// Real processes (the `slotstore` binary) sharing one store.
@Suite("Multi-process", .timeLimit(.minutes(5)))
struct MultiProcessTests {
    let directory = TemporaryDirectory()

    static let counters = Schema(version: 1, fields: [.int64("total"), .int64("c0"), .int64("c1"), .int64("c2"), .int64("c3")])

    @Test("4 processes × 50,000 increments on one counter end exact")
    func sharedCounter() throws {
        let path = directory.file("shared.slots")
        let store = try SlotStore(path: path, schema: Self.counters)
        let workers = try (0..<4).map { _ in try Tool.start(["_worker", "increment", path, "total", "50000"]) }
        for result in workers.map({ $0.wait() }) { #expect(result.succeeded, "\(result.stderr)") }
        #expect(try store.scalar("total", as: Int64.self).load() == 200_000)
    }

    @Test("4 processes each incrementing its own field end exact")
    func separateCounters() throws {
        let path = directory.file("separate.slots")
        let store = try SlotStore(path: path, schema: Self.counters, options: OpenOptions(cacheLineAligned: true))
        let workers = try (0..<4).map { try Tool.start(["_worker", "increment", path, "c\($0)", "30000"]) }
        for result in workers.map({ $0.wait() }) { #expect(result.succeeded, "\(result.stderr)") }
        for index in 0..<4 { #expect(try store.scalar("c\(index)", as: Int64.self).load() == 30_000) }
        #expect(try store.scalar("total", as: Int64.self).load() == 0)
    }

    @Test("transactions moving amounts between two fields keep the sum")
    func transfersKeepSum() throws {
        let path = directory.file("bank.slots")
        let store = try SlotStore(path: path, schema: .sample)
        let alice = try store.scalar("alice", as: Int64.self)
        let bob = try store.scalar("bob", as: Int64.self)
        alice.store(1_000_000)
        let workers = try (0..<3).map { try Tool.start(["_worker", "transfer", path, "alice", "bob", "3000", "\($0 + 1)"]) }
        // Sample the invariant while they run: inside a transaction the two fields are one moment.
        var samples = 0
        while workers.contains(where: { $0.process.isRunning }) && samples < 2000 {
            try store.transaction { tx in #expect(tx.load(alice) + tx.load(bob) == 1_000_000) }
            samples += 1
        }
        for result in workers.map({ $0.wait() }) { #expect(result.succeeded, "\(result.stderr)") }
        #expect(alice.load() + bob.load() == 1_000_000)
        #expect(alice.load() != 1_000_000 || bob.load() != 0, "some transfer happened")
    }

    @Test("readers running during writes never see a torn string")
    func stringsNeverTorn() throws {
        let path = directory.file("strings.slots")
        let store = try SlotStore(path: path, schema: .sample)
        try store.string("motd").store(SelfCheck.make("initial", length: 60))
        let writers = try (0..<2).map { try Tool.start(["_worker", "write-strings", path, "motd", "4000", "\($0)"]) }
        let readers = try (0..<2).map { _ in try Tool.start(["_worker", "read-strings", path, "motd", "40000"]) }
        for result in (writers + readers).map({ $0.wait() }) {
            #expect(result.succeeded, "\(result.stdout) \(result.stderr)")
        }
        #expect(SelfCheck.isIntact(try store.string("motd").load()))
    }

    @Test("readers running during whole-array writes never see a mixed array")
    func arraysNeverTorn() throws {
        let path = directory.file("arrays.slots")
        let store = try SlotStore(path: path, schema: .sample)
        try store.array("buckets", of: Int64.self).store(Array(repeating: 5, count: 16))
        let writers = try (0..<2).map { try Tool.start(["_worker", "write-arrays", path, "buckets", "4000", "\($0 + 1)"]) }
        let readers = try (0..<2).map { _ in try Tool.start(["_worker", "read-arrays", path, "buckets", "40000"]) }
        for result in (writers + readers).map({ $0.wait() }) {
            #expect(result.succeeded, "\(result.stdout) \(result.stderr)")
        }
    }

    @Test("8 processes creating the same store at once: exactly one creates, all open it")
    func concurrentCreation() throws {
        for round in 0..<3 {
            let path = directory.file("race-\(round).slots")
            let openers = try (0..<8).map { _ in try Tool.start(["_worker", "open", path, Schema.sample.json]) }
            let results = openers.map { $0.wait() }
            for result in results { #expect(result.succeeded, "\(result.stderr)") }
            #expect(results.filter { $0.stdout.contains("created") }.count == 1)
            #expect(results.filter { $0.stdout.contains("opened") }.count == 7)
            let store = try SlotStore(path: path, schema: .sample, options: OpenOptions(mode: .open))
            #expect(store.schema == .sample)
            let leftovers = try FileManager.default.contentsOfDirectory(atPath: directory.path).filter { $0.contains("creating") }
            #expect(leftovers.isEmpty, "temporary files left: \(leftovers)")
        }
    }
}

/// The worker's self-checking text, re-implemented here so the test checks it independently.
enum SelfCheck {
    static func make(_ prefix: String, length: Int) -> String {
        var body = prefix + ":"
        while body.utf8.count < length { body += String(body.utf8.count % 10) }
        return body + "#" + String(checksum(body), radix: 16)
    }

    static func isIntact(_ text: String) -> Bool {
        guard let hash = text.lastIndex(of: "#") else { return false }
        return String(checksum(String(text[..<hash])), radix: 16) == text[text.index(after: hash)...]
    }

    private static func checksum(_ text: String) -> UInt32 {
        var hash: UInt32 = 2_166_136_261
        for byte in text.utf8 { hash = (hash ^ UInt32(byte)) &* 16_777_619 }
        return hash
    }
}
