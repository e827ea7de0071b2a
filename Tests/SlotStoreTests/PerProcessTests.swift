import Foundation
import Glibc
import Testing
@testable import SlotStore

/// Per-process fields: each process writes its own slot, a read aggregates,
/// and a gone process's slot is folded (or dropped) by the next opener.
@Suite("Per-process fields", .timeLimit(.minutes(5)))
struct PerProcessTests {
    let directory = TemporaryDirectory()

    static var schema: Schema { (try? Schema(json: Array(PerProcessWorkerSchema.json.utf8))) ?? Schema(version: 0, fields: []) }

    func makeStore(_ name: String) throws -> (String, SlotStore) {
        let path = directory.file(name)
        return (path, try SlotStore(path: path, schema: Self.schema))
    }

    func value(_ store: SlotStore, _ name: String) throws -> FieldValue { try store.value(of: name) }

    // MARK: Schema and format

    @Test("the declaration: JSON key perProcess, integer and floating-point scalars only, in the schema hash")
    func declaration() throws {
        let json = #"{"version":1,"fields":[{"name":"inflight","type":"int64","perProcess":"liveSum"}]}"#
        let schema = try Schema(json: Array(json.utf8))
        #expect(schema.fields[0] == .int64("inflight", perProcess: .liveSum))
        #expect(String(decoding: schema.jsonBytes(), as: UTF8.self) == #"{"fields":[{"name":"inflight","perProcess":"liveSum","type":"int64"}],"version":1}"#)
        #expect(schema.canonicalDescription == "inflight:int64@liveSum")
        #expect(Schema(version: 1, fields: [.int64("inflight")]).canonicalDescription == "inflight:int64")
        #expect(schema.fieldsHash != Schema(version: 1, fields: [.int64("inflight")]).fieldsHash)
        for bad in [Field("b", .scalar(.bool), perProcess: .sum), Field("s", .string(capacity: 8), perProcess: .max),
                    Field("a", .array(of: .int64, count: 2), perProcess: .sum)] {
            #expect(throws: SlotStoreError.self) { try Schema(version: 1, fields: [bad]).validate() }
        }
        #expect(throws: SlotStoreError.self) {
            try Schema(json: Array(#"{"version":1,"fields":[{"name":"x","type":"int64","perProcess":"average"}]}"#.utf8))
        }
    }

    @Test("test vector: the layout of a per-process field, format 1.2; a store without one stays 1.1 as before")
    func layoutVector() throws {
        let (path, store) = try makeStore("vector.slots")
        let layout = store.core.layout
        let slots = LockRegion.threadSlotCount(lockSize: layout.lockSize)
        #expect(store.core.header.formatMinor == 2)
        // 4096-byte pages: a 16 KiB lock region holds 252 thread slots, so 252 process slots.
        if layout.pageSize == 4096 {
            #expect(slots == 252)
            // The example in FileFormat.md.
            #expect(layout.fields.map { $0.offset - layout.dataOffset } == [0, 16_192, 32_384, 48_576, 64_768, 64_832])
            #expect(layout.fields.map(\.size) == [16_192, 16_192, 16_192, 16_192, 64, 8])
        }
        let inflight = try #require(layout.field(named: "inflight"))
        #expect(inflight.offset == layout.dataOffset && inflight.offset % 64 == 0)
        #expect(inflight.size == 64 * (1 + slots) && inflight.processSlots == slots)
        let last = try #require(layout.field(named: "last"))
        #expect(last.processSlots == 0 && last.size == 64)  // mostRecent: one shared word
        let go = try #require(layout.field(named: "go"))
        #expect(go.offset == last.offset + 64 && go.size == 8)
        // This open's slot: value at slot offset + 0, token at +16, state 1 (claimed) at +24, PID at +28.
        let mine = try #require(store.processSlot)
        try store.perProcess("inflight", as: Int64.self).add(3)
        let bytes = fileBytes(path)
        let at = inflight.offset + 64 * (1 + mine)
        func u64(_ offset: Int) -> UInt64 { bytes[offset..<offset + 8].reversed().reduce(0) { $0 << 8 | UInt64($1) } }
        func u32(_ offset: Int) -> UInt32 { bytes[offset..<offset + 4].reversed().reduce(0) { $0 << 8 | UInt32($1) } }
        #expect(u64(at) == 3)
        #expect(u64(at + 16) == store.core.processSlot?.token && u64(at + 16) != 0)
        #expect(u32(at + 24) == 1 && Int32(bitPattern: u32(at + 28)) == getpid())
        #expect(u64(inflight.offset) == 0 && u64(inflight.offset + 8) == 0)  // fold sequence and base

        let plain = try SlotStore(path: directory.file("plain.slots"), schema: Schema(version: 1, fields: [.int64("a"), .int64("b")]))
        #expect(plain.core.header.formatMinor == 1)
        #expect(plain.core.layout.fields.map(\.offset) == [plain.core.layout.dataOffset, plain.core.layout.dataOffset + 8])
    }

    @Test("a store of a newer minor format is refused with a clear error, and nothing is written")
    func newerMinorRefused() throws {
        let (path, store) = try makeStore("minor.slots")
        var header = store.core.header
        store.close()
        header.formatMinor = FileHeader.currentMinor + 1
        patchFile(path, at: 0, header.encoded())
        let before = fileBytes(path)
        #expect(throws: SlotStoreError.unsupportedVersion(path: path, found: "1.\(FileHeader.currentMinor + 1)", supported: "1.0 to 1.\(FileHeader.currentMinor)")) {
            try SlotStore(path: path)
        }
        #expect(fileBytes(path) == before)
    }

    @Test("Fixtures/format-1.1.slots (made by the build before 1.2) opens, and compaction adds per-process fields as 1.2")
    func formatOneOneFixture() throws {
        let fixture = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Fixtures/format-1.1.slots")
        let path = directory.file("old11.slots")
        try FileManager.default.copyItem(atPath: fixture.path, toPath: path)
        let old = try SlotStore(path: path)
        var target = old.schema
        #expect(old.core.header.formatMinor == 1)
        #expect(try old.value(of: "inflight") == .int(7) && old.value(of: "requests") == .int(1234))
        #expect(try old.value(of: "motd") == .string("written by format 1.1"))
        // This build lays out the same schema exactly as the fixture's build did.
        let same = try SlotStore(path: directory.file("same.slots"), schema: old.schema)
        #expect(same.core.header.formatMinor == 1 && same.core.header.schemaHash == old.core.header.schemaHash)
        #expect(same.core.layout.fields.map(\.offset) == old.core.layout.fields.map(\.offset))
        #expect(same.core.header.dataOffset == old.core.header.dataOffset && same.core.header.fileSize == old.core.header.fileSize)
        old.close()
        waitUntilNoOpener(path)

        target.fields[0].perProcess = .liveSum
        target.fields[1].perProcess = .sum
        let plan = try SlotStore.compact(at: path, schema: target)
        #expect(plan.formatBefore == "1.1" && plan.formatAfter == "1.2")
        let upgraded = try SlotStore(path: path)
        #expect(upgraded.core.header.formatMinor == 2)
        // The values became the folded bases of the new per-process fields.
        #expect(try upgraded.value(of: "inflight") == .int(7) && upgraded.value(of: "requests") == .int(1234))
        try upgraded.perProcess("requests", as: Int64.self).add(1)
        #expect(try upgraded.value(of: "requests") == .int(1235))
        #expect(try SlotStore.verify(at: path).ok)
    }

    // MARK: Semantics

    @Test("aggregates of several attachments: sum, liveSum, max, min, mostRecent; a closed one's liveSum is dropped at the next open")
    func aggregates() throws {
        let (path, first) = try makeStore("agg.slots")
        let second = try SlotStore(path: path)
        #expect(first.processSlot != nil && second.processSlot != nil && first.processSlot != second.processSlot)
        for (store, delta) in [(first, Int64(2)), (second, 5)] {
            try store.perProcess("inflight", as: Int64.self).add(delta)
            try store.perProcess("requests", as: Int64.self).add(delta * 10)
        }
        #expect(try value(first, "inflight") == .int(7) && value(first, "requests") == .int(70))
        // max and min over each attachment's current value, not over every value ever stored.
        try first.perProcess("peak", as: Double.self).store(100)
        try first.perProcess("peak", as: Double.self).store(-3)
        try second.perProcess("peak", as: Double.self).store(-7.5)
        #expect(try value(first, "peak") == .double(-3))
        try second.perProcess("peak", as: Double.self).store(.nan)
        #expect(try value(first, "peak") == .double(-3))  // NaN is ignored
        // A slot that never stored doesn't count: the min of 4 and nothing is 4, not 0.
        try second.perProcess("low", as: Int64.self).store(4)
        #expect(try value(first, "low") == .int(4))
        try first.perProcess("last", as: Int64.self).store(1)
        try second.perProcess("last", as: Int64.self).store(2)
        #expect(try value(first, "last") == .int(2))
        #expect(try first.perProcess("inflight", as: Int64.self).contribution == 2)

        let secondSlot = try #require(second.processSlot)
        second.close()
        // Not dropped by a read: only the next claimer folds.
        #expect(try value(first, "inflight") == .int(7))
        // A process that another test spawns at this moment shares second's
        // descriptor (and so its slot's lock) until its exec closes it: wait
        // for the kernel to say the lock is free, as the next opener asks it.
        while OpenGate.byteHeldByOthers(first.core.file.fd, PerProcessLayout.processSlotLockBase + secondSlot) { sched_yield() }
        let third = try SlotStore(path: path)
        #expect(try value(third, "inflight") == .int(2))
        #expect(try value(third, "requests") == .int(70))
        #expect(try value(third, "peak") == .double(-3))
        #expect(try value(third, "low") == .int(4))  // folded: a gone process's min stays
        #expect(try value(third, "last") == .int(2))
        // The by-name API sees the aggregate too, and writing it sets the total.
        try third.setValue(.int(10), for: "inflight")
        #expect(try value(third, "inflight") == .int(10) && first.perProcess("inflight", as: Int64.self).contribution == 2)
        #expect(throws: SlotStoreError.self) { try first.scalar("inflight", as: Int64.self) }
        #expect(throws: SlotStoreError.self) { try first.perProcess("go", as: Int64.self) }
    }

    // MARK: Real processes

    @Test("SIGKILL of a process holding contributions: liveSum drops it at the next open (and repair), sum keeps it")
    func killedHolder() throws {
        let (path, store) = try makeStore("kill.slots")
        let holders = try [("3", "40"), ("4", "50")].map { inflight, requests in
            try Tool.Holder(["_perprocess", "hold", path, inflight, requests, "9.5", "-2", "11"])
        }
        #expect(try value(store, "inflight") == .int(7) && value(store, "requests") == .int(90))
        #expect(try value(store, "peak") == .double(9.5) && value(store, "low") == .int(-2))
        holders[0].kill()
        // A read never folds: the dead holder's +3 still counts until a claimer or repair.
        #expect(try value(store, "inflight") == .int(7))
        let report = try SlotStore.repair(at: path)
        #expect(report.actions.contains { $0.contains("per-process") }, "\(report.actions)")
        #expect(try value(store, "inflight") == .int(4))
        #expect(try value(store, "requests") == .int(90))
        holders[1].kill()
        let next = try SlotStore(path: path)
        #expect(try value(next, "inflight") == .int(0))
        #expect(try value(next, "requests") == .int(90))
        #expect(try value(next, "peak") == .double(9.5) && value(next, "low") == .int(-2) && value(next, "last") == .int(11))
        #expect(try SlotStore.verify(at: path).ok)
    }

    @Test("slots are reused over many worker generations: the file doesn't grow and the aggregates stay exact")
    func generations() throws {
        let (path, store) = try makeStore("gen.slots")
        let size = fileBytes(path).count
        let slotCount = try #require(store.core.layout.field(named: "inflight")).processSlots
        var killed = 0
        // More generations than slots, so every slot is claimed again and again.
        for round in 0..<(slotCount + 20) / 10 {
            let workers = try (0..<8).map { _ in try Tool.start(["_perprocess", "requests", path, "100"]) }
            let victims = try (0..<2).map { _ in try Tool.Holder(["_perprocess", "hold", path, "1", "1", "\(round)", "0", "0"]) }
            for result in workers.map({ $0.wait() }) { #expect(result.succeeded, "\(result.stderr)") }
            for victim in victims { victim.kill(); killed += 1 }
        }
        let reader = try SlotStore(path: path)
        let rounds = (slotCount + 20) / 10
        #expect(try value(reader, "requests") == .int(Int64(rounds * 800 + killed)))
        #expect(try value(reader, "inflight") == .int(0))
        #expect(try value(reader, "peak") == .double(Double(rounds - 1)))
        #expect(fileBytes(path).count == size)
        _ = store
    }

    @Test("a compaction in place while processes hold contributions: each keeps its own, and a dead one's is still dropped")
    func compactionInPlace() throws {
        let (path, store) = try makeStore("compact.slots")
        let first = try Tool.Holder(["_perprocess", "hold", path, "3", "10", "1", "0", "0"])
        let second = try Tool.Holder(["_perprocess", "hold", path, "5", "20", "2", "0", "0"])
        let doomed = try Tool.Holder(["_perprocess", "hold", path, "7", "30", "3", "0", "0"])
        let gone = try Tool.Holder(["_perprocess", "hold", path, "100", "40", "4", "0", "0"])
        gone.kill()  // dead before the compaction: its slot is folded by the copy
        #expect(try value(store, "inflight") == .int(115))
        store.close()
        try SlotStore.compact(at: path)
        let after = try SlotStore(path: path)
        #expect(after.generation == 2)
        #expect(try value(after, "inflight") == .int(15))  // 3 + 5 + 7 carried over, 100 dropped
        #expect(try value(after, "requests") == .int(100))
        doomed.kill()  // dead after the compaction, before following: its PID names no process
        #expect(try value(SlotStore(path: path), "inflight") == .int(8))
        // Each live holder subtracts 1 in the new file and still owns the rest.
        let reports = [first, second].map { holder in
            holder.send("go")
            return holder.readLine()
        }
        #expect(reports.allSatisfy { $0.hasPrefix("after generation 2") }, "\(reports)")
        #expect(Set(reports) == ["after generation 2 contribution 2", "after generation 2 contribution 4"])
        let check = try SlotStore(path: path)
        #expect(try value(check, "inflight") == .int(6))  // 3-1 + 5-1 kept
        #expect(try value(check, "requests") == .int(100))
        #expect(try value(check, "peak") == .double(4))
        first.kill()
        second.kill()
        let last = try SlotStore(path: path)
        #expect(try value(last, "inflight") == .int(0) && value(last, "requests") == .int(100))
    }

    @Test("a forked child writes a slot of its own, not its parent's")
    func forkedChild() throws {
        let (path, store) = try makeStore("fork.slots")
        let result = try Tool.run(["_perprocess", "fork", path])
        #expect(result.succeeded, "\(result.stderr)")
        let lines = result.stdout.split(separator: "\n").map(String.init)
        let child = try #require(lines.first { $0.hasPrefix("child") })
        let parent = try #require(lines.first { $0.hasPrefix("parent") })
        #expect(child.hasSuffix("contribution 5") && parent.hasSuffix("contribution 1"), "\(lines)")
        #expect(child.split(separator: " ")[2] != parent.split(separator: " ")[2], "\(lines)")
        // Both gone: liveSum back to 0, sum keeps all 6.
        let next = try SlotStore(path: path)
        #expect(try value(next, "inflight") == .int(0) && value(next, "requests") == .int(6))
        _ = store
    }
}

extension PerProcessTests {
    @Test("slotstore gauges-demo: liveSum back to exactly the parked requests after kills, sum keeps every completed one")
    func gaugesDemo() throws {
        let result = try Tool.run(["gauges-demo", "--workers", "4", "--kills", "2", "--dir", directory.path])
        #expect(result.succeeded, "\(result.stdout)\(result.stderr)")
        #expect(result.stdout.contains("✓ all 2 live workers parked inside a request: inflight 2 (liveSum)"), "\(result.stdout)")
        #expect(result.stdout.contains("✓ every worker stopped: inflight 0 (liveSum)"), "\(result.stdout)")
        #expect(!result.stdout.contains("✗"), "\(result.stdout)")
    }

    @Test("get, inspect and metrics show the aggregate")
    func tools() throws {
        let (path, store) = try makeStore("tools.slots")
        let holder = try Tool.Holder(["_perprocess", "hold", path, "3", "40", "2.5", "-1", "9"])
        try store.perProcess("inflight", as: Int64.self).add(2)
        #expect(try Tool.run(["get", path, "inflight"]).stdout == "5\n")
        #expect(try Tool.run(["get", path, "requests"]).stdout == "40\n")
        let inspect = try Tool.run(["inspect", path]).stdout
        #expect(inspect.split(separator: "\n").contains { $0.contains("inflight") && $0.hasSuffix("5") }, "\(inspect)")
        let metrics = try Tool.run(["metrics", path]).stdout
        #expect(metrics.contains("\nslotstore_inflight 5\n") && metrics.contains("\nslotstore_peak 2.5\n") && metrics.contains("\nslotstore_low -1\n"), "\(metrics)")
        holder.kill()
    }
}

extension PerProcessTests {
    @Test("every slot taken: liveSum refuses a handle (processSlotsFull), sum falls back to the base; a gone owner's slot taken again is folded first")
    func slotsFull() throws {
        let (path, store) = try makeStore("full.slots")
        let slotCount = try #require(store.core.layout.field(named: "inflight")).processSlots
        let holder = try Tool.Holder(["_perprocess", "hold", path, "3", "30", "1", "0", "0"])
        var opens = [store]
        for _ in 0..<(slotCount - 2) { opens.append(try SlotStore(path: path)) }
        #expect(Set(opens.compactMap(\.processSlot)).count == slotCount - 1)
        let extra = try SlotStore(path: path)
        #expect(extra.processSlot == nil)
        #expect(throws: SlotStoreError.processSlotsFull(path: path, field: "inflight", slots: slotCount)) {
            try extra.perProcess("inflight", as: Int64.self)
        }
        try extra.perProcess("requests", as: Int64.self).add(5)  // to the base, under the lock
        #expect(try value(store, "requests") == .int(35))
        extra.close()
        // The only free slot is the killed holder's, still carrying its +3: the next open folds it before taking it.
        holder.kill()
        let reclaim = try SlotStore(path: path)
        #expect(reclaim.processSlot != nil)
        #expect(try value(reclaim, "inflight") == .int(0))
        #expect(try value(reclaim, "requests") == .int(35))
        for open in opens { open.close() }
    }
}

extension PerProcessTests {
    /// `slotstore _perprocess hold …` in a PID namespace of its own; returns the
    /// unshare process once the worker holds its contributions.
    func holdInOtherNamespace(_ path: String, inflight: String) throws -> LineProcess {
        let process = try LineProcess(PIDNamespaces.unshare, ["--pid", "--fork", "--mount-proc", Tool.executable,
                                                              "_perprocess", "hold", path, inflight, "1", "0", "0", "0"])
        #expect(process.line(startingWith: "SLOTSTORE-HOLDING") != nil)
        return process
    }

    /// SIGKILL of the namespace's first process ends the namespace.
    func killNamespace(_ process: LineProcess) {
        for child in childPIDs(of: process.pid) { kill(child, SIGKILL) }
        process.process.waitUntilExit()
    }

    @Test("another PID namespace: a holder's liveSum is dropped after SIGKILL (its OFD lock tells), and after a compaction a follower folds it",
          .enabled(if: PIDNamespaces.available, "needs `unshare --pid --fork` (root)"))
    func otherPIDNamespace() throws {
        let (path, store) = try makeStore("ns.slots")
        let foreign = try holdInOtherNamespace(path, inflight: "7")
        #expect(try value(store, "inflight") == .int(7))
        killNamespace(foreign)
        #expect(try value(SlotStore(path: path), "inflight") == .int(0))

        // After a compaction, a slot carried over for a process of another
        // namespace can't be judged by its PID: the follower, which still has
        // the old file open, sees neither file's lock held and folds it.
        let follower = try Tool.Holder(["_perprocess", "hold", path, "3", "1", "0", "0", "0"])
        let doomed = try holdInOtherNamespace(path, inflight: "7")
        store.close()
        try SlotStore.compact(at: path)
        killNamespace(doomed)
        let fresh = try SlotStore(path: path)
        let before = try value(fresh, "inflight")
        #expect(before == .int(10), "\(before)")  // kept: its owner might not have followed yet
        follower.send("go")
        #expect(follower.readLine() == "after generation 2 contribution 2")
        #expect(try value(fresh, "inflight") == .int(2))
        follower.kill()
    }
}

/// The worker's schema, as the `_perprocess` command declares it.
enum PerProcessWorkerSchema {
    static let json = """
    {"version":1,"fields":[{"name":"inflight","type":"int64","perProcess":"liveSum"},\
    {"name":"requests","type":"int64","perProcess":"sum"},{"name":"peak","type":"double","perProcess":"max"},\
    {"name":"low","type":"int64","perProcess":"min"},{"name":"last","type":"int64","perProcess":"mostRecent"},\
    {"name":"go","type":"int64"}]}
    """
}
