import Glibc
import SlotStore

/// Single-process rows: scalars, array, string, transaction. One store on the
/// shared-memory folder, every field on its own cache line (as the floor's).
enum ScalarBenchmarks {
    static let schema = Schema(version: 1, fields: [
        .int64("counter"), .int64("cas"), .double("real"), .int64("a"), .int64("b"),
        .array("samples", of: .double, count: 64), .array("buckets", of: .uint64, count: 64), .string("text", capacity: 64),
    ])

    /// Two different 64-byte ASCII values, so consecutive writes change the bytes.
    static let text64 = [String(repeating: "a", count: 60) + "0123", String(repeating: "b", count: 60) + "4567"]

    /// Medians of uncontended rows, used to size the two-process rows.
    struct Baselines {
        var add = 5.0
        var stringWrite = 50.0
    }

    static func run(_ bench: Bench, _ workspace: Workspace) throws -> Baselines {
        let path = workspace.path("scalars.slots")
        let store = try SlotStore(path: path, schema: schema, options: OpenOptions(mode: .create, cacheLineAligned: true))
        defer { store.close(); workspace.remove(path) }
        let medium = workspace.shmMedium
        var baselines = Baselines()

        let counter = try store.scalar("counter", as: Int64.self)
        try bench.measure("int64 load", medium: medium, floor: .same(FloorOp.load),
                          note: "independent loads (throughput), as the floor's; the compiler may unroll either loop") { n in
            var sum: Int64 = 0
            for _ in 0..<n { sum &+= counter.load() }
            consume(UInt64(bitPattern: sum))
        }
        try bench.measure("int64 store", medium: medium) { n in
            for index in 0..<n { counter.store(Int64(index)) }
        }
        baselines.add = try bench.measure("int64 add", medium: medium, floor: .same(FloorOp.fetchAdd)) { n in
            var sum: Int64 = 0
            for _ in 0..<n { sum &+= counter.add(1) }
            consume(UInt64(bitPattern: sum))
        }?.median ?? baselines.add

        let cas = try store.scalar("cas", as: Int64.self)
        try bench.measure("int64 compare-exchange (succeeding)", medium: medium, floor: .nearest(FloorOp.fetchAdd),
                          note: "one locked RMW, like fetch_add") { n in
            var expected = cas.load()
            var failures: UInt64 = 0
            for _ in 0..<n {
                let result = cas.compareExchange(expected: expected, desired: expected &+ 1)
                if result.exchanged { expected &+= 1 } else { expected = result.original; failures &+= 1 }
            }
            consume(failures)
        }

        let real = try store.scalar("real", as: Double.self)
        try bench.measure("double add (CAS loop)", medium: medium, floor: .nearest(FloorOp.fetchAdd)) { n in
            var sum = 0.0
            for _ in 0..<n { sum += real.add(1) }
            consume(sum)
        }

        let samples = try store.array("samples", of: Double.self)
        try bench.measure("array<double>[64] element store", medium: medium, floor: .nearest(FloorOp.fetchAdd),
                          note: "store + atomic add to the element-write counter") { n in
            for index in 0..<n { samples.store(Double(index), at: index & 63) }
        }
        let buckets = try store.array("buckets", of: UInt64.self)
        try bench.measure("array<uint64>[64] element add", medium: medium, floor: .nearest(FloorOp.fetchAdd),
                          note: "atomic add to the element-write counter + atomic add to the element") { n in
            var sum: UInt64 = 0
            for index in 0..<n { sum &+= buckets.add(1, at: index & 63) }
            consume(sum)
        }
        try bench.measure("array<double>[64] snapshot read(into:)", medium: medium, floor: .nearest(FloorOp.seqlockRead512),
                          note: "the floor checks only a seqlock; an array also checks its element-write counter") { n in
            var buffer = [Double](repeating: 0, count: 64)
            var sum = 0.0
            for index in 0..<n {
                try samples.read(into: &buffer)
                sum += buffer[index & 63]
            }
            consume(sum)
        }
        try bench.measure("array<double>[64] snapshot() -> [Double]", medium: medium, floor: .nearest(FloorOp.seqlockRead512),
                          note: "returns a new array") { n in
            var sum = 0.0
            for index in 0..<n { sum += try samples.snapshot()[index & 63] }
            consume(sum)
        }
        try bench.measure("array<double>[64] whole-array store", medium: medium, floor: .same(FloorOp.write512),
                          note: "lock + journal + seqlock, 512 B") { n in
            var values = [Double](repeating: 1, count: 64)
            for index in 0..<n {
                values[0] = Double(index)
                try samples.store(values)
            }
        }

        let text = try store.string("text")
        try text.store(text64[0])
        try bench.measure("string[64] read(into:) 64 B", medium: medium, floor: .same(FloorOp.seqlockRead)) { n in
            var buffer = [UInt8](repeating: 0, count: 64)
            var sum = 0
            for _ in 0..<n {
                sum &+= try text.read(into: &buffer)
                sum &+= Int(buffer[63])
            }
            consume(UInt64(sum))
        }
        try bench.measure("string[64] read(into:) 64 B, raw buffer", medium: medium, floor: .same(FloorOp.seqlockRead),
                          note: "into an UnsafeMutableRawBufferPointer the caller keeps: no array uniqueness check") { n in
            let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 64, alignment: 8)
            defer { buffer.deallocate() }
            var sum = 0
            for _ in 0..<n {
                sum &+= try text.read(into: buffer)
                sum &+= Int(buffer[63])
            }
            consume(UInt64(sum))
        }
        try bench.measure("string[64] load() -> String, 64 B", medium: medium, floor: .nearest(FloorOp.seqlockRead),
                          note: "returns a new String") { n in
            var sum = 0
            for _ in 0..<n { sum &+= try text.load().utf8.count }
            consume(UInt64(sum))
        }
        baselines.stringWrite = try bench.measure("string[64] store 64 B", medium: medium, floor: .same(FloorOp.write64),
                                                  note: "lock + journal + seqlock") { n in
            for index in 0..<n { try text.store(text64[index & 1]) }
        }?.median ?? baselines.stringWrite

        let a = try store.scalar("a", as: Int64.self)
        let b = try store.scalar("b", as: Int64.self)
        try bench.measure("transaction writing two int64 fields", medium: medium, floor: .same(FloorOp.writePair),
                          note: "lock + one journal record per field") { n in
            for index in 0..<n {
                try store.transaction { tx in
                    try tx.store(Int64(index), to: a)
                    try tx.store(Int64(index), to: b)
                }
            }
        }
        return baselines
    }
}
