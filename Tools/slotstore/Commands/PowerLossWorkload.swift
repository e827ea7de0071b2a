import Foundation
import Glibc
import SlotStore

/// The durable workload whose flushes the power-loss explorer records, and the
/// check it runs on every crash image. Both run in processes of their own.
///
/// The workload appends its own records to the flush log (see `FlushRecorder`
/// in the library), between the library's flush records:
///
/// ```
/// B <transaction> <commit|rollback>\n          an attempt begins
/// A <transaction> <byte count>\n<state JSON>    the attempt's commit returned (acknowledged)
/// M <text>\n                                    a marker (the check's reopen)
/// ```
enum PowerLossWorkload {
    static let schema = Schema(version: 1, fields: [
        .int64("counter"),
        .double("ratio"),
        .bool("flag"),
        .array("samples", of: .int64, count: 300),
        .string("note", capacity: 24 * 1024),
        .bytes("blob", capacity: 600),
        .map("index", key: .string(capacity: 24), value: .scalar(.int64), capacity: 96),
    ])

    /// Lengths the note takes: a few bytes up to tens of KB. The schema's
    /// journal (the 64 KiB minimum) has about 22 KB beyond every field once, the
    /// room seals may take; so the longest notes get no room for a seal, and
    /// their commits take the path without seals.
    static let noteLengths = [3, 40, 300, 700, 2_000, 6_000, 12_000, 24_000]

    struct Abandoned: Error {}

    /// Creates the store, flushes it whole (the explorer's starting image),
    /// then runs `transactions` seeded attempts, logging each one.
    static func run(path: String, seed: UInt64, transactions: Int, log: String) throws {
        do {
            let created = try SlotStore(path: path, schema: schema, options: OpenOptions(mode: .create))
            created.close()
        }
        let store = try SlotStore(path: path, options: OpenOptions(mode: .open, durability: .flushOnCommit))
        defer { store.close() }
        let counter = try store.scalar("counter", as: Int64.self)
        let ratio = try store.scalar("ratio", as: Double.self)
        let flag = try store.scalar("flag", as: Bool.self)
        let samples = try store.array("samples", of: Int64.self)
        let note = try store.string("note")
        let blob = try store.bytes("blob")
        let index = try store.map("index", key: String.self, value: Int64.self)
        try store.sync()
        try append(log, "A 0 ", state: store)

        var random = SplitMix(seed: seed)
        var keys: [String] = []
        for number in 1...transactions {
            let rollingBack = random.next() % 5 == 0
            // Shapes 0 and 1 are one locked write each, which can't be
            // abandoned midway: an attempt that rolls back is a transaction.
            let shape = random.next() % 8 + (rollingBack ? 2 : 0)
            try append(log, "B \(number) \(rollingBack ? "rollback" : "commit")\n")
            let noteLength = noteLengths[Int(random.next() % UInt64(noteLengths.count))]
            let text = String(repeating: Character(UnicodeScalar(UInt8(97 + number % 26))), count: noteLength)
            let mapChanges = Int(random.next() % 6)
            do {
                switch shape {
                case 0:
                    // One locked write outside a transaction: a string, then a whole array.
                    try note.store(text)
                case 1:
                    try samples.store((0..<300).map { Int64(number * 1000 + $0) })
                default:
                    try store.transaction { tx in
                        // Some transactions begin with the long record, some with a scalar.
                        if shape >= 6 { try tx.store(text, to: note) }
                        try tx.add(1, to: counter)
                        if shape % 2 == 0 { try tx.store(Double(number) / 8, to: ratio) }
                        if shape % 3 == 0 { try tx.store(number % 2 == 0, to: flag) }
                        if shape >= 4 { try tx.store((0..<300).map { Int64(number * 7 + $0) }, to: samples) }
                        if shape != 3 && shape < 6 { try tx.store(text, to: note) }
                        if shape == 5 || shape == 7 { try tx.store((0..<(number * 37 % 600)).map { UInt8(truncatingIfNeeded: $0 &* number) }, to: blob) }
                        if shape == 6 { try tx.store(Int64(-number), at: number % 300, of: samples) }
                        for change in 0..<mapChanges {
                            if change % 2 == 0 || keys.isEmpty {
                                let key = "k\(number)-\(change)"
                                if keys.count < 90 { keys.append(key) } else { continue }
                                try tx.store(Int64(number), for: key, in: index)
                            } else {
                                let key = keys[Int(random.next() % UInt64(keys.count))]
                                try tx.store(Int64(number * 100 + change), for: key, in: index)
                            }
                        }
                        if shape == 7, let key = keys.first { _ = try tx.remove(key, from: index) }
                        if rollingBack { throw Abandoned() }
                    }
                }
                try append(log, "A \(number) ", state: store)
            } catch is Abandoned {}
            // Keys a rolled-back attempt added are gone again, and removed ones.
            let present = Set(try index.entries().map(\.key))
            keys.removeAll { !present.contains($0) }
        }
    }

    /// Every value of the store as compact JSON with sorted keys: what two
    /// states are compared by.
    static func stateJSON(_ store: SlotStore) throws -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return String(decoding: try encoder.encode(try store.values()), as: UTF8.self)
    }

    static func append(_ log: String, _ text: String, state store: SlotStore) throws {
        let state = Array(try stateJSON(store).utf8)
        try append(log, Array("\(text)\(state.count)\n".utf8) + state)
    }

    static func append(_ log: String, _ text: String) throws {
        try append(log, Array(text.utf8))
    }

    static func append(_ log: String, _ bytes: [UInt8]) throws {
        let fd = open(log, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw InputError("\(log): cannot open the flush log for appending (errno \(errno))") }
        defer { close(fd) }
        var done = 0
        try bytes.withUnsafeBytes { buffer in
            while done < buffer.count {
                let written = write(fd, buffer.baseAddress! + done, buffer.count - done)
                if written < 0 && errno == EINTR { continue }
                guard written > 0 else { throw InputError("\(log): cannot append to the flush log (errno \(errno))") }
                done += written
            }
        }
    }

    /// Opens a crash image as its first opener (which recovers it), with
    /// durability, as the writers had it; prints its state, whether `verify`
    /// is clean, and whether a reopen reads the same.
    static func check(path: String, log: String?) throws {
        let first: String
        do {
            let store = try SlotStore(path: path, options: OpenOptions(mode: .open, durability: .flushOnCommit))
            first = try stateJSON(store)
            store.close()
        }
        if let log { try append(log, "M reopen\n") }
        let report = try SlotStore.verify(at: path)
        let again: String
        do {
            let store = try SlotStore(path: path, options: OpenOptions(mode: .open, durability: .flushOnCommit))
            again = try stateJSON(store)
            store.close()
        }
        Output.out("state \(first)")
        Output.out(report.ok ? "verify ok" : "verify " + report.findings.map { "\($0)" }.joined(separator: "; "))
        Output.out(again == first ? "reopen same" : "reopen differs \(again)")
    }
}
