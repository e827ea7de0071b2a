import Foundation
import Glibc
import Testing
@testable import SlotStore

/// `ArrayField.add(_:at:)` and `compareExchange(expected:desired:at:)`: lock-free
/// read-modify-writes of one element, counted like element stores (so
/// snapshots stay one moment) and following compactions in place. The
/// concurrency tests use real `slotstore _worker` processes.
@Suite("Array element add and compare-exchange", .serialized, .timeLimit(.minutes(5)))
struct ArrayAddTests {
    let directory = TemporaryDirectory()

    static let schema = Schema(version: 1, fields: [
        .array("buckets", of: .int64, count: 8), .bool("stop"), .string("note", capacity: 16),
    ])

    /// How many of `0..<adds` land on `bucket` when add `i` goes to `i % buckets`.
    static func share(of adds: Int, bucket: Int, buckets: Int) -> Int64 {
        Int64(adds / buckets + (bucket < adds % buckets ? 1 : 0))
    }

    @Test("processes adding to shared histogram buckets at once give exact totals, and every snapshot meanwhile is a possible state")
    func concurrentProcesses() throws {
        let path = directory.file("histogram.slots")
        let store = try SlotStore(path: path, schema: Self.schema)
        let buckets = try store.array("buckets", of: Int64.self)
        let adds = 400_001  // not a multiple of 8: the buckets end unequal
        let workers = try (0..<4).map { _ in try Tool.start(["_worker", "add-elements", path, "buckets", "\(adds)"]) }
        // While they add: a snapshot's buckets never exceed the final totals,
        // and each later snapshot has every bucket at least where it was.
        var previous = [Int64](repeating: 0, count: 8)
        var snapshots = 0
        while workers.contains(where: { $0.process.isRunning }) {
            let now = try buckets.snapshot()
            #expect(zip(now, previous).allSatisfy { $0 >= $1 }, "a bucket went backwards: \(previous) then \(now)")
            previous = now
            snapshots += 1
        }
        for worker in workers {
            let result = worker.wait()
            #expect(result.succeeded, "worker failed: \(result.stderr)")
            #expect(result.stdout.hasPrefix("done \(adds) "))
        }
        let expected = (0..<8).map { 4 * Self.share(of: adds, bucket: $0, buckets: 8) }
        #expect(try buckets.snapshot() == expected, "every add from every process landed exactly once (\(snapshots) snapshots taken meanwhile)")
        #expect(expected.reduce(0, +) == Int64(4 * adds))
    }

    @Test("processes adding through three compactions in place by another process lose nothing and end in the newest file")
    func addsAcrossCompactions() throws {
        let path = directory.file("compacted.slots")
        let store = try SlotStore(path: path, schema: Self.schema)
        let buckets = try store.array("buckets", of: Int64.self)
        let workers = try (0..<2).map { _ in try Tool.start(["_worker", "add-elements", path, "buckets", "0"]) }
        var ownAdds = 0
        var progress: Int64 = 2_000
        func waitForProgress() throws {
            // An exact wait on the store itself: the buckets grew by more.
            while try buckets.snapshot().reduce(0, +) < progress { sched_yield() }
            progress += 2_000
        }
        try waitForProgress()
        for round in 1...3 {
            let compactor = try Tool.run(["compact", path, "--capacity", "note=\(16 + 8 * round)"])
            #expect(compactor.succeeded, "compaction \(round) failed: \(compactor.stderr)")
            // This process's handle was resolved in generation 1; it follows too.
            for index in 0..<8 { buckets.add(1, at: index); ownAdds += 1 }
            try waitForProgress()
        }
        try store.scalar("stop", as: Bool.self).store(true)  // a handle from generation 1
        var counts: [Int] = []
        for worker in workers {
            let result = worker.wait()
            #expect(result.succeeded, "worker failed: \(result.stderr)")
            let words = result.stdout.split(whereSeparator: \.isWhitespace)
            counts.append(words.count >= 4 ? Int(words[1]) ?? -1 : -1)
            #expect(words.count >= 4 && words[3] == "4", "the worker ends in generation 4 (created as 1): \(result.stdout)")
        }
        let final = try SlotStore(path: path)
        #expect(final.generation == 4)
        let expected = (0..<8).map { bucket in
            counts.map { Self.share(of: $0, bucket: bucket, buckets: 8) }.reduce(0, +) + Int64(ownAdds / 8)
        }
        #expect(try final.array("buckets", of: Int64.self).snapshot() == expected, "workers' adds: \(counts), this process's: \(ownAdds)")
        #expect(try SlotStore.verify(at: path).findings == [])
    }

    @Test("an element add preempted between its count and its add makes a concurrent snapshot retry, never mix moments")
    func preemptedAdders() throws {
        let path = directory.file("pair.slots")
        let store = try SlotStore(path: path, schema: Schema(version: 1, fields: [.array("pair", of: .int64, count: 8)]))
        let core = store.core
        let field = try #require(core.layout.field(named: "pair"))
        let first = core.address(field.payloadOffset).atomic(Int64.self)
        let last = core.address(field.payloadOffset + 7 * 8).atomic(Int64.self)
        var adders: [Tool.Holder] = []
        defer { for adder in adders { adder.kill() } }
        // X adds to pair[0], then Y to pair[7], both stopped inside their
        // element writes while the reader is between its first and last element.
        var attempts = 0
        let (a, b) = try core.readConsistently(field, checkingElementWrites: true) { () -> (Int64, Int64) in
            attempts += 1
            let a = first.pointee.load(ordering: .relaxed)
            if attempts == 1 {
                for index in [0, 7] {
                    do {
                        let adder = try Tool.Holder(["_worker", "add-element", path, "pair", "\(index)", "1"],
                                                    environment: ["SLOTSTORE_FAULT": "elementWrite:hold"])
                        adders.append(adder)
                        #expect(adder.isHolding, "the adder reached the element write's fault point")
                    } catch {
                        Issue.record("could not start the adder: \(error)")
                    }
                }
            }
            return (a, last.pointee.load(ordering: .relaxed))
        }
        #expect(!(a == 0 && b == 1), "the snapshot has pair[0] == 0 and pair[7] == 1, a state that never existed (\(attempts) attempts)")
        #expect(attempts > 1, "the adders' counts made the snapshot retry")
    }

    @Test("add wraps around on overflow at every width and leaves the neighbouring elements alone")
    func wrapping() throws {
        let store = try SlotStore(path: directory.file("wrap.slots"), schema: Schema(version: 1, fields: [
            .array("bytes", of: .uint8, count: 5), .array("small", of: .int8, count: 3),
            .array("shorts", of: .uint16, count: 3), .array("ints", of: .int32, count: 3), .array("longs", of: .int64, count: 2),
        ]))
        let bytes = try store.array("bytes", of: UInt8.self)
        bytes.store(255, at: 2)
        #expect(bytes.add(1, at: 2) == 0)
        #expect(bytes.add(3, at: 3) == 3)
        #expect(try bytes.snapshot() == [0, 0, 0, 3, 0])
        let small = try store.array("small", of: Int8.self)
        #expect(small.add(-1, at: 1) == -1)
        #expect(small.add(Int8.min, at: 1) == Int8.max, "-1 + Int8.min wraps to Int8.max")
        #expect(try small.snapshot() == [0, Int8.max, 0])
        let shorts = try store.array("shorts", of: UInt16.self)
        #expect(shorts.add(UInt16.max, at: 0) == UInt16.max && shorts.add(2, at: 0) == 1)
        let ints = try store.array("ints", of: Int32.self)
        ints.store(Int32.max, at: 2)
        #expect(ints.add(1, at: 2) == Int32.min)
        #expect(try ints.snapshot() == [0, 0, Int32.min])
        let longs = try store.array("longs", of: Int64.self)
        longs.store(.max, at: 1)
        #expect(longs.add(1, at: 1) == .min && longs.load(at: 0) == 0)
        #expect(try SlotStore(path: directory.file("wrap.slots")).value(of: "shorts") == .array([.uint(1), .uint(0), .uint(0)]))
    }

    @Test("compare-exchange stores only over the expected element, returns what it found, and counts itself")
    func compareExchange() throws {
        let store = try SlotStore(path: directory.file("cas.slots"), schema: Schema(version: 1, fields: [
            .array("ids", of: .uint32, count: 4), .array("sums", of: .double, count: 2),
        ]))
        let ids = try store.array("ids", of: UInt32.self)
        let counter = store.core.address(try #require(store.core.layout.field(named: "ids")).secondWordOffset).atomic(UInt64.self)
        ids.store(7, at: 1)
        let before = counter.pointee.load(ordering: .relaxed)
        let missed = ids.compareExchange(expected: 6, desired: 9, at: 1)
        #expect(!missed.exchanged && missed.original == 7)
        let hit = ids.compareExchange(expected: 7, desired: 9, at: 1)
        #expect(hit.exchanged && hit.original == 7)
        #expect(try ids.snapshot() == [0, 9, 0, 0])
        #expect(counter.pointee.load(ordering: .relaxed) == before + 2, "both attempts counted in the element-write counter")

        // Floating point compares bit patterns: a NaN can be replaced, and -0.0 is not 0.0.
        let sums = try store.array("sums", of: Double.self)
        sums.store(.nan, at: 0)
        #expect(sums.compareExchange(expected: .nan, desired: 1.5, at: 0).exchanged)
        #expect(sums.load(at: 0) == 1.5)
        #expect(!sums.compareExchange(expected: -0.0, desired: 2, at: 1).exchanged)
        #expect(sums.compareExchange(expected: 0.0, desired: 2, at: 1) == (true, 0.0))
        // The documented loop that adds to a Double element.
        var current = sums.load(at: 1)
        while case (false, let found) = sums.compareExchange(expected: current, desired: current + 0.25, at: 1) { current = found }
        #expect(try sums.snapshot() == [1.5, 2.25])
    }

    @Test("a transaction's element add commits with the transaction or rolls back with it; a bad index throws and changes nothing")
    func transactionAdd() throws {
        let path = directory.file("tx.slots")
        let store = try SlotStore(path: path, schema: Self.schema)
        let buckets = try store.array("buckets", of: Int64.self)
        let result = try store.transaction { tx in try tx.add(5, at: 3, of: buckets) }
        #expect(result == 5)
        struct Abort: Error {}
        #expect(throws: Abort.self) {
            try store.transaction { tx in
                #expect(try tx.add(10, at: 3, of: buckets) == 15)
                #expect(try tx.add(1, at: 4, of: buckets) == 1)
                throw Abort()
            }
        }
        #expect(try buckets.snapshot() == [0, 0, 0, 5, 0, 0, 0, 0], "the aborted adds were rolled back")
        #expect {
            try store.transaction { tx in
                try tx.add(1, at: 2, of: buckets)
                try tx.add(1, at: 8, of: buckets)
            }
        } throws: { error in
            "\(error)".contains("index 8 is out of range 0..<8") && "\(error)".contains("buckets") && "\(error)".contains(path)
        }
        #expect(try buckets.snapshot() == [0, 0, 0, 5, 0, 0, 0, 0], "the add before the bad index was rolled back too")
        // A handle from before a compaction in place is bound to the transaction's file.
        try SlotStore.compact(at: path, capacities: ["note": 40])
        try store.transaction { tx in try tx.add(2, at: 3, of: buckets) }
        #expect(try SlotStore(path: path).array("buckets", of: Int64.self).snapshot() == [0, 0, 0, 7, 0, 0, 0, 0])
    }

    @Test("add does not exist for Bool, Float and Double arrays: a call is a compile-time error naming SlotInteger")
    func refusedAtCompileTime() throws {
        let build = URL(fileURLWithPath: Tool.executable).deletingLastPathComponent()
        let modules = build.appendingPathComponent("Modules").path
        let moduleMap = build.appendingPathComponent("CSlotStore.build/module.modulemap").path
        let compiler = try #require(Self.swiftc(), "no swiftc on PATH beside the swift that runs these tests")
        func typecheck(_ source: String, _ name: String) throws -> ProcessResult {
            let file = directory.file(name + ".swift")
            try ("import SlotStore\n" + source).write(toFile: file, atomically: true, encoding: .utf8)
            let process = Process()
            process.executableURL = URL(fileURLWithPath: compiler)
            process.arguments = ["-typecheck", "-swift-version", "6", "-I", modules, "-Xcc", "-fmodule-map-file=\(moduleMap)", file]
            let errors = Pipe()
            process.standardError = errors
            process.standardOutput = FileHandle.nullDevice
            try process.run()
            let text = String(decoding: errors.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
            process.waitUntilExit()
            return ProcessResult(status: process.terminationStatus, signaled: false, stdout: "", stderr: text)
        }
        // The control: the same setup accepts an integer array's add.
        let control = try typecheck("func f(_ a: ArrayField<UInt64>) { a.add(1, at: 0) }", "control")
        #expect(control.succeeded, "the integer add should typecheck: \(control.stderr)")
        for type in ["Bool", "Float", "Double"] {
            let refused = try typecheck("func f(_ a: ArrayField<\(type)>) { a.add(\(type == "Bool" ? "true" : "1"), at: 0) }", type)
            #expect(!refused.succeeded)
            #expect(refused.stderr.contains("requires that '\(type)' conform to 'SlotInteger'"), "\(type): \(refused.stderr)")
        }
    }

    static func swiftc() -> String? {
        let path = ProcessInfo.processInfo.environment["PATH"] ?? ""
        return path.split(separator: ":").map { "\($0)/swiftc" }.first { FileManager.default.isExecutableFile(atPath: $0) }
    }
}
