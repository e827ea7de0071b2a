import Glibc
import SlotStore

/// Open and close, `sync()`, durable commits.
enum SystemBenchmarks {
    /// A lone bytes field of this capacity makes a store file of exactly 1 MiB
    /// (checked, and said in the row's note): 3 pages of header, lock and
    /// schema, a 127-page journal (room for a before-image of every field) and
    /// a 126-page data region.
    static let oneMiBPayload = 516_032

    /// The disk rows: `sync()` and durable commits.
    static func runDisk(_ bench: Bench, _ workspace: Workspace) throws {
        try sync(bench, workspace)
        try durableCommits(bench, workspace)
    }

    static func openClose(_ bench: Bench, _ workspace: Workspace) throws {
        let path = workspace.path("open-1mib.slots")
        do {
            let store = try SlotStore(path: path, schema: Schema(version: 1, fields: [
                .bytes("payload", capacity: oneMiBPayload),
            ]), options: OpenOptions(mode: .create))
            store.close()
        }
        defer { workspace.remove(path) }
        let size = Workspace.fileSize(path) ?? 0
        let sizeNote = size == 1 << 20 ? "file of 1 MiB" : "file of \(Format.grouped(size)) bytes (not 1 MiB)"
        try bench.measure("open + close of a 1 MiB store", medium: workspace.shmMedium, floor: .same(FloorOp.open),
                          note: "SlotStore(path:, mode: .open) validates header and schema; \(sizeNote)") { n in
            var created = 0
            for _ in 0..<n {
                let store = try SlotStore(path: path, options: OpenOptions(mode: .open))
                if store.created { created += 1 }
                store.close()
            }
            consume(UInt64(created))
        }
    }

    static func sync(_ bench: Bench, _ workspace: Workspace) throws {
        let path = workspace.path("sync.slots", onDisk: true)
        let store = try SlotStore(path: path, schema: Schema(version: 1, fields: [.int64("counter")]),
                                  options: OpenOptions(mode: .create))
        defer { store.close(); workspace.remove(path) }
        let counter = try store.scalar("counter", as: Int64.self)
        try store.sync()
        try bench.measureSelfTimed("sync() with one dirty page", medium: workspace.diskMedium,
                                   floor: .same(FloorOp.msync, .disk),
                                   note: "only sync() is timed, not the store that dirties the page; \(Format.grouped(Workspace.fileSize(path) ?? 0)) B file",
                                   countFlushes: true) { n in
            var total: UInt64 = 0
            for index in 0..<n {
                counter.store(Int64(index))
                let start = monotonicNanoseconds()
                try store.sync()
                total += monotonicNanoseconds() - start
            }
            return total
        }
    }

    static func durableCommits(_ bench: Bench, _ workspace: Workspace) throws {
        let path = workspace.path("durable.slots", onDisk: true)
        let store = try SlotStore(path: path, schema: Schema(version: 1, fields: [.int64("a"), .int64("b")]),
                                  options: OpenOptions(mode: .create, durability: .flushOnCommit))
        defer { store.close(); workspace.remove(path) }
        let a = try store.scalar("a", as: Int64.self)
        let b = try store.scalar("b", as: Int64.self)
        try store.sync()
        try bench.measure("durable transaction, one int64 field", medium: workspace.diskMedium,
                          floor: .nearest(FloorOp.durableWrite, .disk),
                          note: "durability .flushOnCommit; the floor's plain undo journal flushes 3 times",
                          countFlushes: true) { n in
            for index in 0..<n {
                try store.transaction { tx in try tx.store(Int64(index), to: a) }
            }
        }
        try bench.measure("durable transaction, two int64 fields", medium: workspace.diskMedium,
                          floor: .nearest(FloorOp.durableWrite, .disk), note: "durability .flushOnCommit; the floor writes one field",
                          countFlushes: true) { n in
            for index in 0..<n {
                try store.transaction { tx in
                    try tx.store(Int64(index), to: a)
                    try tx.store(Int64(index), to: b)
                }
            }
        }
    }
}
