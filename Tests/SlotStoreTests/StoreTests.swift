import Foundation
import Glibc
import Testing
@testable import SlotStore

@Suite("Store: open, handles, transactions, lifecycle")
struct StoreTests {
    let directory = TemporaryDirectory()

    @Test("creates a store, then reopens it with the same values after closing, on tmpfs and on disk",
          arguments: ["/dev/shm", "/var/tmp"])
    func createAndReopen(base: String) throws {
        let directory = TemporaryDirectory(on: base)
        let path = directory.file("a.slots")
        do {
            let store = try SlotStore(path: path, schema: .sample)
            #expect(store.created)
            try store.scalar("requests", as: Int64.self).store(41)
            try store.scalar("requests", as: Int64.self).add(1)
            try store.scalar("load", as: Double.self).store(0.75)
            try store.scalar("enabled", as: Bool.self).store(true)
            try store.string("motd").store("hello, world")
            try store.bytes("blob").store([1, 2, 3])
            try store.array("latency", of: Double.self).store(1.5, at: 63)
            store.close()
        }
        let reopened = try SlotStore(path: path, schema: .sample)
        #expect(!reopened.created)
        #expect(try reopened.scalar("requests", as: Int64.self).load() == 42)
        #expect(try reopened.scalar("load", as: Double.self).load() == 0.75)
        #expect(try reopened.scalar("enabled", as: Bool.self).load())
        #expect(try reopened.string("motd").load() == "hello, world")
        #expect(try reopened.bytes("blob").load() == [1, 2, 3])
        #expect(try reopened.array("latency", of: Double.self).load(at: 63) == 1.5)
        // With no schema, the stored one is used, as tools do.
        let bySchemaInFile = try SlotStore(path: path)
        #expect(bySchemaInFile.schema == .sample)
    }

    @Test("a new store is zeroed and its file has mode 0600 by default")
    func defaults() throws {
        let path = directory.file("z.slots")
        let store = try SlotStore(path: path, schema: .sample)
        #expect(try store.scalar("requests", as: Int64.self).load() == 0)
        #expect(try store.string("motd").load() == "")
        #expect(try store.array("buckets", of: Int64.self).snapshot() == Array(repeating: 0, count: 16))
        var info = stat()
        stat(path, &info)
        #expect(info.st_mode & 0o777 == 0o600)
        let shared = try SlotStore(path: directory.file("m.slots"), schema: .sample, options: OpenOptions(fileMode: 0o644))
        stat(shared.path, &info)
        #expect(info.st_mode & 0o777 == 0o644)
    }

    @Test("integer add wraps, compare-exchange succeeds only on the expected value")
    func integerOperations() throws {
        let store = try SlotStore(path: directory.file("i.slots"), schema: .sample)
        let small = try store.scalar("small", as: Int8.self)
        small.store(127)
        #expect(small.add(1) == -128)
        let mask = try store.scalar("mask", as: UInt32.self)
        #expect(mask.add(0) == 0)
        #expect(mask.add(UInt32.max) == UInt32.max)
        #expect(mask.compareExchange(expected: 5, desired: 6) == (false, UInt32.max))
        #expect(mask.compareExchange(expected: UInt32.max, desired: 6) == (true, UInt32.max))
        #expect(mask.load() == 6)
        #expect(mask.exchange(9) == 6)
    }

    @Test("double add goes through compare-exchange and returns the new value")
    func doubleAdd() throws {
        let value = try SlotStore.value(Double.self, at: directory.file("v.slots"))
        #expect(value.add(1.25) == 1.25)
        #expect(value.add(2.5) == 3.75)
        // The one-liner opens the same store again.
        #expect(try SlotStore.value(Double.self, at: directory.file("v.slots")).load() == 3.75)
    }

    @Test("a string over capacity throws, naming field, capacity and size, and leaves the value unchanged")
    func stringTooLarge() throws {
        let store = try SlotStore(path: directory.file("s.slots"), schema: .sample)
        let motd = try store.string("motd")
        try motd.store("kept")
        let tooLong = String(repeating: "é", count: 65)  // 130 UTF-8 bytes
        #expect(throws: SlotStoreError.valueTooLarge(path: store.path, field: "motd", capacity: 128, size: 130)) {
            try motd.store(tooLong)
        }
        #expect(try motd.load() == "kept")
        #expect(try store.status.journalDirty == false)
        let exact = String(repeating: "x", count: 128)
        try motd.store(exact)
        #expect(try motd.load() == exact)
        var buffer = [UInt8]()
        #expect(try motd.read(into: &buffer) == 128)
        #expect(buffer.count == 128)
    }

    @Test("read(into:) a raw buffer copies the value and refuses a buffer smaller than the capacity")
    func rawBufferRead() throws {
        let store = try SlotStore(path: directory.file("raw.slots"), schema: .sample)
        let motd = try store.string("motd")
        try motd.store("héllo")
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 200, alignment: 1)
        defer { buffer.deallocate() }
        buffer.initializeMemory(as: UInt8.self, repeating: 0xEE)
        let length = try motd.read(into: buffer)
        #expect(length == 6)
        #expect(String(decoding: UnsafeRawBufferPointer(rebasing: buffer[0..<length]), as: UTF8.self) == "héllo")
        // An unaligned buffer of exactly the capacity holds the longest value.
        let exact = String(repeating: "z", count: 128)
        try motd.store(exact)
        let unaligned = UnsafeMutableRawBufferPointer(rebasing: buffer[1..<129])
        #expect(try motd.read(into: unaligned) == 128)
        #expect(String(decoding: UnsafeRawBufferPointer(unaligned), as: UTF8.self) == exact)
        let small = UnsafeMutableRawBufferPointer(rebasing: buffer[0..<127])
        #expect(throws: SlotStoreError.invalidValue(path: store.path, field: "motd",
                                                    detail: "the buffer holds 127 bytes, less than the field's capacity of 128; pass a buffer of at least `capacity` bytes")) {
            try motd.read(into: small)
        }
        let blob = try store.bytes("blob")
        try blob.store([0, 9, 0])
        #expect(try blob.read(into: buffer) == 3)
        #expect(Array(buffer[0..<3]) == [0, 9, 0])
    }

    @Test("bytes keep trailing zero bytes exactly")
    func bytesExact() throws {
        let store = try SlotStore(path: directory.file("b.slots"), schema: .sample)
        let blob = try store.bytes("blob")
        try blob.store([0, 7, 0, 0])
        #expect(try blob.load() == [0, 7, 0, 0])
        #expect(throws: SlotStoreError.self) { try blob.store([UInt8](repeating: 1, count: 33)) }
        #expect(try blob.load() == [0, 7, 0, 0])
    }

    @Test("whole-array writes need the exact count and replace every element")
    func arrays() throws {
        let store = try SlotStore(path: directory.file("arr.slots"), schema: .sample)
        let buckets = try store.array("buckets", of: Int64.self)
        try buckets.store(Array(0..<16))
        #expect(try buckets.snapshot() == Array(0..<16))
        #expect(throws: SlotStoreError.self) { try buckets.store([1, 2, 3]) }
        #expect(try buckets.snapshot() == Array(0..<16))
        buckets.store(-5, at: 3)
        #expect(buckets.load(at: 3) == -5)
    }

    @Test("whole-array writes of every element width keep every element, odd counts included")
    func arraysOfEveryWidth() throws {
        let store = try SlotStore(path: directory.file("widths.slots"), schema: Schema(version: 1, fields: [
            .array("bytes", of: .uint8, count: 13), .array("shorts", of: .int16, count: 7),
            .array("floats", of: .float, count: 5), .array("flags", of: .bool, count: 9),
            .array("words", of: .uint64, count: 3),
        ]))
        let bytes = try store.array("bytes", of: UInt8.self)
        let shorts = try store.array("shorts", of: Int16.self)
        let floats = try store.array("floats", of: Float.self)
        let flags = try store.array("flags", of: Bool.self)
        let words = try store.array("words", of: UInt64.self)
        let byteValues = (0..<13).map { UInt8(255 - $0 * 7) }
        let shortValues: [Int16] = [-32768, -1, 0, 1, 12345, 32767, -300]
        let floatValues: [Float] = [-0.5, 1e-30, .infinity, 3.25, -7]
        let flagValues = (0..<9).map { $0 % 3 == 0 }
        let wordValues: [UInt64] = [.max, 0, 0x0123_4567_89AB_CDEF]
        try bytes.store(byteValues)
        try shorts.store(shortValues)
        try floats.store(floatValues)
        try flags.store(flagValues)
        try words.store(wordValues)
        #expect(try bytes.snapshot() == byteValues)
        #expect(try shorts.snapshot() == shortValues)
        #expect(try floats.snapshot() == floatValues)
        #expect(try flags.snapshot() == flagValues)
        #expect(try words.snapshot() == wordValues)
        #expect((0..<7).map { shorts.load(at: $0) } == shortValues)
    }

    @Test("a transaction commits every write, or none when its body throws")
    func transactions() throws {
        struct Refused: Error {}
        let store = try SlotStore(path: directory.file("t.slots"), schema: .sample)
        let alice = try store.scalar("alice", as: Int64.self)
        let bob = try store.scalar("bob", as: Int64.self)
        let motd = try store.string("motd")
        let buckets = try store.array("buckets", of: Int64.self)
        alice.store(100)
        try store.transaction { tx in
            try tx.store(tx.load(alice) - 30, to: alice)
            try tx.add(30, to: bob)
            try tx.store("moved 30", to: motd)
            try tx.store(7, at: 2, of: buckets)
        }
        #expect(alice.load() == 70 && bob.load() == 30)
        #expect(try motd.load() == "moved 30")
        #expect(buckets.load(at: 2) == 7)

        #expect(throws: Refused.self) {
            try store.transaction { tx in
                try tx.store(0, to: alice)
                try tx.store(999, to: bob)
                try tx.store("should vanish", to: motd)
                try tx.store(Array(repeating: 1, count: 16), to: buckets)
                try tx.store(9, at: 2, of: buckets)
                throw Refused()
            }
        }
        #expect(alice.load() == 70 && bob.load() == 30)
        #expect(try motd.load() == "moved 30")
        #expect(try buckets.snapshot() == [0, 0, 7] + Array(repeating: 0, count: 13))
        #expect(try store.status.journalDirty == false)
    }

    @Test("a too-large value inside a transaction rolls back the writes before it")
    func transactionPartialFailure() throws {
        let store = try SlotStore(path: directory.file("tp.slots"), schema: .sample)
        let alice = try store.scalar("alice", as: Int64.self)
        let blob = try store.bytes("blob")
        #expect(throws: SlotStoreError.self) {
            try store.transaction { tx in
                try tx.store(5, to: alice)
                try tx.store([UInt8](repeating: 0, count: 40), to: blob)
            }
        }
        #expect(alice.load() == 0)
    }

    @Test("a locked handle write inside a transaction is refused instead of deadlocking")
    func nestedLock() throws {
        let store = try SlotStore(path: directory.file("n.slots"), schema: .sample)
        let motd = try store.string("motd")
        #expect(throws: SlotStoreError.nestedTransaction(path: store.path)) {
            try store.transaction { _ in try motd.store("nested") }
        }
        try motd.store("fine afterwards")
        #expect(try motd.load() == "fine afterwards")
    }

    @Test("a missing field and a wrongly typed handle give errors naming the field")
    func lookupErrors() throws {
        let store = try SlotStore(path: directory.file("l.slots"), schema: .sample)
        #expect {
            _ = try store.scalar("nope", as: Int64.self)
        } throws: { error in
            guard case .unknownField(_, "nope", let available) = error as? SlotStoreError else { return false }
            return available.contains("requests")
        }
        #expect(throws: SlotStoreError.wrongFieldType(path: store.path, name: "requests", expected: "double", found: "int64")) {
            _ = try store.scalar("requests", as: Double.self)
        }
        #expect(throws: SlotStoreError.self) { _ = try store.array("latency", of: Float.self) }
        #expect(throws: SlotStoreError.self) { _ = try store.string("blob") }
        #expect(throws: SlotStoreError.self) { _ = try store.bytes("motd") }
    }

    @Test("open modes: create-only refuses an existing file, open-only a missing one")
    func modes() throws {
        let path = directory.file("mode.slots")
        #expect(throws: SlotStoreError.fileNotFound(path: path)) {
            _ = try SlotStore(path: path, schema: .sample, options: OpenOptions(mode: .open))
        }
        _ = try SlotStore(path: path, schema: .sample, options: OpenOptions(mode: .create))
        #expect(throws: SlotStoreError.alreadyExists(path: path)) {
            _ = try SlotStore(path: path, schema: .sample, options: OpenOptions(mode: .create))
        }
        _ = try SlotStore(path: path, options: OpenOptions(mode: .open))
    }

    @Test("remove deletes the file; a process that has it open keeps working on its mapping")
    func remove() throws {
        let path = directory.file("r.slots")
        let store = try SlotStore(path: path, schema: .sample)
        let requests = try store.scalar("requests", as: Int64.self)
        requests.store(5)
        try SlotStore.remove(at: path)
        #expect(!FileManager.default.fileExists(atPath: path))
        #expect(requests.add(1) == 6)
        try store.string("motd").store("still mapped")
        let fresh = try SlotStore(path: path, schema: .sample)
        #expect(fresh.created)
        #expect(try fresh.scalar("requests", as: Int64.self).load() == 0)
        #expect(throws: SlotStoreError.fileNotFound(path: directory.file("none"))) { try SlotStore.remove(at: directory.file("none")) }
    }

    @Test("sync flushes and durable commits work on a disk-backed folder")
    func durability() throws {
        let disk = TemporaryDirectory(on: "/var/tmp")
        let store = try SlotStore(path: disk.file("d.slots"), schema: .sample,
                                  options: OpenOptions(durability: .flushOnCommit))
        let motd = try store.string("motd")
        try motd.store("durable")
        try store.transaction { tx in try tx.add(1, to: store.scalar("alice", as: Int64.self)) }
        try store.sync()
        #expect(try motd.load() == "durable")
    }

    @Test("power-loss simulation of a durable commit: a record of another transaction is ignored, a sealed one is redone, an unsealed one undone")
    func durableRecordChecks() throws {
        let path = directory.file("checked.slots")
        let schema = Schema(version: 1, fields: [.int64("a"), .int64("b")])
        let journalOffset: Int
        let dataOffset: Int
        do {
            let store = try SlotStore(path: path, schema: schema, options: OpenOptions(durability: .flushOnCommit))
            try store.transaction { tx in try tx.store(7, to: store.scalar("a", as: Int64.self)) }
            journalOffset = store.core.layout.journalOffset
            dataOffset = try #require(store.core.layout.field(named: "a")).offset
            #expect(store.core.journal.records().records.isEmpty, "committed: the journal is clean")
            store.close()
        }
        // The committed transaction's record is still in the region, sealed
        // with the new value 7, behind a clean header.
        let bytes = fileBytes(path)
        func u64(_ offset: Int) -> UInt64 { bytes[offset..<offset + 8].enumerated().reduce(0) { $0 | UInt64($1.element) << (8 * $1.offset) } }
        func littleEndian(_ value: UInt64) -> [UInt8] { (0..<8).map { UInt8(truncatingIfNeeded: value >> (8 * $0)) } }
        let record = journalOffset + UndoJournal.headerBytes
        let nonce = u64(journalOffset + UndoJournal.transactionOffset)
        #expect(nonce != 0 && u64(record + 8) == 8 && u64(record + 24) >> 32 == UndoJournal.checkMarkerWithSeal)
        let used = littleEndian(UInt64(UndoJournal.recordHeaderBytes + 2 * 8 + 8))
        func crash(nonce: UInt64, sealed: Bool, dataOnDisk: Int64) {
            patchFile(path, at: journalOffset, used)
            patchFile(path, at: journalOffset + UndoJournal.transactionOffset, littleEndian(nonce))
            if !sealed { patchFile(path, at: record + UndoJournal.recordHeaderBytes + 8, littleEndian(0)) }
            patchFile(path, at: dataOffset, littleEndian(UInt64(bitPattern: dataOnDisk)))
        }

        // Another transaction's header reached the disk, its record did not:
        // the stale record fails its check and nothing is applied.
        // Each open below is the only opener (closed at once), so it recovers.
        func reopenedValue() throws -> FieldValue {
            let store = try SlotStore(path: path)
            defer { store.close() }
            return try store.value(of: "a")
        }
        crash(nonce: nonce ^ 0x5A5A, sealed: true, dataOnDisk: 7)
        #expect(try reopenedValue() == .int(7))
        // The seal reached the disk, the data did not: the commit is redone.
        crash(nonce: nonce, sealed: true, dataOnDisk: 0)
        #expect(try reopenedValue() == .int(7))
        // The new data reached the disk, the seal did not: undone, whole.
        crash(nonce: nonce, sealed: false, dataOnDisk: 7)
        #expect(try reopenedValue() == .int(0))
    }

    @Test("power-loss simulation: a sealed durable commit that grew a string is redone whole when none of its data reached the disk")
    func durableStringGrowthRedo() throws {
        let path = directory.file("grow.slots")
        let schema = Schema(version: 1, fields: [.string("s", capacity: 64)])
        let longer = String(repeating: "x", count: 40)
        let journalOffset: Int
        let field: FieldLayout
        var before: [UInt8] = []
        do {
            let store = try SlotStore(path: path, schema: schema, options: OpenOptions(durability: .flushOnCommit))
            try store.string("s").store("ab")
            field = try #require(store.core.layout.field(named: "s"))
            journalOffset = store.core.layout.journalOffset
            before = Array(fileBytes(path)[field.offset..<field.offset + field.size])
            try store.string("s").store(longer)
            store.close()
        }
        // The journal as the commit left it on disk (sealed, then cleared in
        // memory only) and the field's bytes as before the commit.
        let bytes = fileBytes(path)
        func u64(_ offset: Int) -> UInt64 { bytes[offset..<offset + 8].enumerated().reduce(0) { $0 | UInt64($1.element) << (8 * $1.offset) } }
        let record = journalOffset + UndoJournal.headerBytes
        let length = Int(u64(record + 8))
        #expect(length >= 8 + 40, "the record covers the new value's bytes: \(length)")
        let used = UInt64(UndoJournal.recordHeaderBytes + 2 * length + 8)
        patchFile(path, at: journalOffset, (0..<8).map { UInt8(truncatingIfNeeded: used >> (8 * $0)) })
        patchFile(path, at: field.offset, before)
        let reopened = try SlotStore(path: path)
        defer { reopened.close() }
        #expect(try reopened.value(of: "s") == .string(longer))
    }

    @Test("cache-line-aligned stores keep that layout on reopen")
    func cacheLineAligned() throws {
        let path = directory.file("c.slots")
        let store = try SlotStore(path: path, schema: .sample, options: OpenOptions(cacheLineAligned: true))
        try store.scalar("requests", as: Int64.self).store(3)
        store.close()
        let reopened = try SlotStore(path: path, schema: .sample)
        #expect(reopened.core.header.flags.contains(.cacheLineAligned))
        #expect(reopened.core.layout.fields.allSatisfy { $0.offset % 64 == 0 })
        #expect(try reopened.scalar("requests", as: Int64.self).load() == 3)
    }

    @Test("the lock counts acquisitions and records no holder when free")
    func status() throws {
        let store = try SlotStore(path: directory.file("st.slots"), schema: .sample)
        let before = try store.status.lockAcquisitions
        try store.string("motd").store("x")
        try store.transaction { _ in }
        let status = try store.status
        #expect(status.lockAcquisitions == before + 2)
        #expect(status.lockHolderPID == nil)
        #expect(status.journalDirty == false)
        #expect(status.lockResets >= 1)
    }

    @Test("close() waits for a transaction in another thread, then later locked writes fail cleanly")
    func closeWaitsForTransaction() throws {
        let path = directory.file("close.slots")
        let store = try SlotStore(path: path, schema: .sample)
        let motd = try store.string("motd")
        let inside = DispatchSemaphore(value: 0)
        let finish = DispatchSemaphore(value: 0)
        let closed = DispatchSemaphore(value: 0)
        let worker = Thread {
            try? store.transaction { tx in
                try tx.store("written inside", to: motd)
                inside.signal()
                finish.wait()
            }
        }
        worker.start()
        inside.wait()
        let closer = Thread {
            store.close()
            closed.signal()
        }
        closer.start()
        #expect(closed.wait(timeout: .now() + .milliseconds(100)) == .timedOut, "close() returned while a transaction held the lock")
        finish.signal()
        closed.wait()
        let reopened = try SlotStore(path: path, schema: .sample, options: OpenOptions(lockTimeout: .milliseconds(500)))
        #expect(try reopened.string("motd").load() == "written inside")
        #expect(try reopened.status.lockHolderPID == nil)
        try reopened.string("motd").store("lock is free")
    }

    @Test("a lock timeout of 'forever' is accepted")
    func hugeTimeout() throws {
        let store = try SlotStore(path: directory.file("forever.slots"), schema: .sample,
                                  options: OpenOptions(lockTimeout: .seconds(Int64.max)))
        try store.string("motd").store("ok")
        #expect(try store.string("motd").load() == "ok")
    }
}
