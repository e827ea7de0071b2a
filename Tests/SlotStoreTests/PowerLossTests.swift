import Foundation
import Testing
@testable import SlotStore

@Suite("Power loss and the durable journal", .timeLimit(.minutes(5)))
struct PowerLossTests {
    let directory = TemporaryDirectory()

    @Test("crash-state explorer, a seeded slice: every power-loss image of a durable workload recovers to one whole transaction")
    func explorerSlice() throws {
        // The same command, longer, is documented in CrashRecovery.md. This
        // slice (seed 3) also finds the failing images of a store without the
        // flush of the cleared header before a first record reaches past sector 0.
        let result = try Tool.run(["_power-loss", "explore", "--seed", "3", "--transactions", "20", "--images", "600",
                                   "--recovery-every", "25", "--dir", directory.path])
        #expect(result.status == 0, "\(result.stdout)\n\(result.stderr)")
        #expect(result.stdout.contains("failing images 0,"), "\(result.stdout)")
        let counts = result.stdout.split(separator: "\n").first { $0.contains("crash points") }.map(String.init) ?? ""
        #expect(counts.contains("images 600,"), "every image was checked: \(counts)")
        #expect(!counts.contains("from 0 recoveries"), "some recoveries were cut off: \(counts)")
    }

    @Test("a durable transaction writing each field once fits although an early large record could have had a seal; its commit takes the path without seals")
    func eachFieldOnceFitsDurably() throws {
        // Every field once needs about 50 KB of the 64 KiB journal; with a seal,
        // the first record alone would take 40 KB, leaving the second no room.
        let schema = Schema(version: 1, fields: [.string("first", capacity: 20_000), .bytes("second", capacity: 30_000)])
        let path = directory.file("fits.slots")
        let store = try SlotStore(path: path, schema: schema, options: OpenOptions(durability: .flushOnCommit))
        let first = try store.string("first")
        let second = try store.bytes("second")
        let text = String(repeating: "q", count: 20_000)
        let blob = (0..<30_000).map { UInt8(truncatingIfNeeded: $0) }
        var sealed: [Bool] = []
        try store.transaction { tx in
            try tx.store(text, to: first)
            try tx.store(blob, to: second)
            sealed = store.core.journal.records().records.map { $0.sealOffset != nil }
        }
        #expect(sealed == [false, false], "neither record fits its seal in the room beyond every field once")
        #expect(try first.load() == text)
        #expect(try second.load() == blob)
        // The path without seals flushed the cleared header: nothing left to protect.
        #expect(store.core.journal.transaction.pointee.load(ordering: .relaxed) == 0)

        // Small records keep their seals (one flush at commit), and the number
        // stays after that commit: the disk may still hold the sealed journal.
        let small = Schema(version: 1, fields: [.int64("a"), .int64("b")])
        let other = try SlotStore(path: directory.file("small.slots"), schema: small, options: OpenOptions(durability: .flushOnCommit))
        let a = try other.scalar("a", as: Int64.self)
        let b = try other.scalar("b", as: Int64.self)
        try other.transaction { tx in
            try tx.store(1, to: a)
            try tx.store(2, to: b)
            sealed = other.core.journal.records().records.map { $0.sealOffset != nil }
        }
        #expect(sealed == [true, true])
        #expect(other.core.journal.transaction.pointee.load(ordering: .relaxed) != 0)
        #expect(!other.core.journal.isDirty)
        store.close()
        other.close()
    }

    @Test("a transaction of 20,001 journal records (map inserts and array elements, each written twice) rolls back whole")
    func manyRecordsRollBack() throws {
        let entries = 15_000, elements = 5_000
        let schema = Schema(version: 1, fields: [
            .map("table", key: .scalar(.int64), value: .scalar(.int64), capacity: entries + 1),
            .array("cells", of: .int64, count: elements),
        ])
        let store = try SlotStore(path: directory.file("many.slots"), schema: schema)
        let table = try store.map("table", key: Int64.self, value: Int64.self)
        let cells = try store.array("cells", of: Int64.self)
        try table.set(-1, for: -1)
        try cells.store((0..<elements).map { Int64($0) })
        struct Abandon: Error {}
        let started = ContinuousClock.now
        #expect(throws: Abandon.self) {
            try store.transaction { tx in
                for key in 0..<Int64(entries) { try tx.store(key, for: key, in: table) }
                for index in 0..<elements { try tx.store(-1, at: index, of: cells) }
                // Covered by the records above: no new records (the journal
                // would not hold them), and their images stay the oldest.
                for key in 0..<Int64(entries) { try tx.store(key * 2, for: key, in: table) }
                for index in 0..<elements { try tx.store(-2, at: index, of: cells) }
                #expect(store.core.journal.records().records.count == 1 + entries + elements)
                throw Abandon()
            }
        }
        let elapsed = ContinuousClock.now - started
        print("20,001 records written and rolled back in \(elapsed)")
        #expect(try table.entries().map { [$0.key, $0.value] } == [[-1, -1]])
        #expect(try cells.snapshot() == (0..<elements).map { Int64($0) })
        // And committed, the same transaction's values all land.
        try store.transaction { tx in
            for key in 0..<Int64(entries) { try tx.store(key, for: key, in: table) }
            for key in 0..<Int64(entries) { try tx.store(key * 3, for: key, in: table) }
        }
        #expect(try table.get(14_999) == 44_997)
        #expect(try table.entries().count == entries + 1)
        store.close()
    }

    @Test("the coverage index: a range inside the union of earlier records is covered, one word outside is not, and a cleared journal forgets")
    func coverageIndex() {
        let coverage = JournalCoverage()
        coverage.begin(at: 64)
        coverage.add(offset: 4096, length: 512, recordEnd: 200)
        coverage.add(offset: 4096 + 512, length: 64, recordEnd: 300)
        #expect(coverage.covers(offset: 4096, length: 576))
        #expect(coverage.covers(offset: 4096 + 504, length: 16), "across two records and two 512-byte blocks")
        #expect(!coverage.covers(offset: 4096 + 512, length: 72), "one word past the second record")
        #expect(!coverage.covers(offset: 4088, length: 16), "one word before the first")
        #expect(coverage.covers(offset: 9000, length: 0))
        coverage.transactionEnded()
        #expect(coverage.indexedEnd == 0)
        #expect(!coverage.covers(offset: 4096, length: 8))
    }
}
