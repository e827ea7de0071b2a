import Glibc

// MARK: Clock and sink

@inline(__always)
func monotonicNanoseconds() -> UInt64 {
    var now = timespec()
    clock_gettime(CLOCK_MONOTONIC, &now)
    return UInt64(now.tv_sec) &* 1_000_000_000 &+ UInt64(now.tv_nsec)
}

/// Results of benchmarked reads land here, so the optimizer cannot drop them.
nonisolated(unsafe) var benchSink: UInt64 = 0

@inline(never)
func consume(_ value: UInt64) { benchSink &+= value }

@inline(never)
func consume(_ value: Double) { benchSink &+= value.bitPattern }

// MARK: Rows

/// Which floor run a row is compared with (the floor is run once per store size and medium).
enum FloorRun: String, Sendable {
    /// /dev/shm, map of the big size.
    case main
    /// /dev/shm, map of 1K keys.
    case small
    /// The disk-backed folder: msync and the durable map put.
    case disk
}

/// The floor row that does the same work as a SlotStore row, or the nearest one.
struct FloorReference: Sendable {
    let run: FloorRun
    let op: String
    /// True when the floor row does the same work (same value size and
    /// medium); false when it is only the nearest primitive the floor measures.
    let sameWork: Bool
    static func same(_ op: String, _ run: FloorRun = .main) -> FloorReference { FloorReference(run: run, op: op, sameWork: true) }
    static func nearest(_ op: String, _ run: FloorRun = .main) -> FloorReference { FloorReference(run: run, op: op, sameWork: false) }
}

struct Row {
    var op: String
    var medium: String
    /// ns per operation, one per timed repetition (a value row: its one value, in `unit`).
    var samples: [Double]
    var opsPerRepetition: Int
    /// Heap allocation calls per operation in this process; nil when not counted.
    var allocationsPerOp: Double?
    var floor: FloorReference?
    var note: String?
    var flushesPerOp: Double?
    var floorMedian: Double?
    /// Nil for a timed row (`samples` in ns per operation); else a value row's
    /// unit, such as "bytes/entry": one sample, measured once, not a time.
    var unit: String? = nil

    var median: Double { Statistics.median(samples) }
    var minimum: Double { samples.min() ?? .nan }
    var maximum: Double { samples.max() ?? .nan }
    var ratio: Double? { floorMedian.map { median / $0 } }
}

enum Statistics {
    static func median(_ values: [Double]) -> Double {
        guard !values.isEmpty else { return .nan }
        let sorted = values.sorted()
        let middle = sorted.count / 2
        return sorted.count % 2 == 1 ? sorted[middle] : (sorted[middle - 1] + sorted[middle]) / 2
    }
}

// MARK: Settings

struct Settings {
    var quick = false
    var json = false
    var floor = false
    var diskDirectory = "/var/tmp"
    var shmDirectory = "/dev/shm"
    /// `--only` patterns: run only the rows matching one of them (all rows when empty).
    var only: [String] = []

    /// Timed repetitions per row.
    var repetitions: Int { quick ? 5 : 7 }
    /// Length of one timed repetition.
    var targetNanoseconds: UInt64 { quick ? 6_000_000 : 30_000_000 }
    /// Length of one repetition of a two-process row.
    var contentionNanoseconds: UInt64 { quick ? 25_000_000 : 120_000_000 }
    /// Entries of the big map.
    var bigMapEntries: Int { quick ? 125_000 : 1_000_000 }
    let smallMapEntries = 1_000
}

// MARK: The runner

/// Runs benchmark bodies in calibrated batches and collects rows.
final class Bench {
    let settings: Settings
    private(set) var rows: [Row] = []
    let countAllocations: Bool

    /// Rows `--only` left out, in the order met (listed when no row matched).
    private(set) var skipped: [String] = []

    init(settings: Settings, countAllocations: Bool) {
        self.settings = settings
        self.countAllocations = countAllocations
    }

    /// Whether `--only` lets row `op` run (remembering it as skipped if not).
    func selects(_ op: String) -> Bool {
        if Bench.matches(op, settings.only) { return true }
        if !skipped.contains(op) { skipped.append(op) }
        return false
    }

    /// Whether any of `ops` runs: a group of rows that share an expensive setup
    /// (keys, a filled map, a second process) skips it when none does.
    func selectsAny(_ ops: [String]) -> Bool {
        var any = false
        for op in ops where selects(op) { any = true }
        return any
    }

    /// Case-insensitive: a pattern with `*` or `?` is a glob over the whole
    /// name (fnmatch, so `[` works too), any other pattern a substring.
    static func matches(_ op: String, _ patterns: [String]) -> Bool {
        if patterns.isEmpty { return true }
        let name = op.lowercased()
        for pattern in patterns.map({ $0.lowercased() }) {
            if pattern.contains("*") || pattern.contains("?") {
                if fnmatch(pattern, name, 0) == 0 { return true }
            } else if name.contains(pattern) {
                return true
            }
        }
        return false
    }

    func progress(_ message: String) {
        printError("  " + message)
    }

    /// Times `body(n)`, which performs `n` operations, in batches sized to the
    /// target repetition length: a calibration, one untimed warm-up batch, then
    /// the timed repetitions. Allocations (and msync calls) are counted over the
    /// timed repetitions only. Returns nil, running nothing, for a row `--only` leaves out.
    @discardableResult
    func measure(_ op: String, medium: String, floor: FloorReference? = nil, note: String? = nil,
                 maxOps: Int = 1 << 40, countFlushes: Bool = false,
                 _ body: (Int) throws -> Void) throws -> Row? {
        try measureSelfTimed(op, medium: medium, floor: floor, note: note, maxOps: maxOps, countFlushes: countFlushes) { n in
            let start = monotonicNanoseconds()
            try body(n)
            return monotonicNanoseconds() - start
        }
    }

    /// Like ``measure``, for bodies that time only part of each operation
    /// themselves and return the nanoseconds that count.
    @discardableResult
    func measureSelfTimed(_ op: String, medium: String, floor: FloorReference? = nil, note: String? = nil,
                          maxOps: Int = 1 << 40, countFlushes: Bool = false,
                          _ body: (Int) throws -> UInt64) throws -> Row? {
        guard selects(op) else { return nil }
        let target = settings.targetNanoseconds
        var n = 1
        var perOp = 0.0
        while true {
            let elapsed = try body(n)
            if elapsed >= target / 8 || n >= maxOps {
                perOp = max(Double(elapsed) / Double(n), 0.05)
                break
            }
            n = min(maxOps, elapsed < target / 64 ? n * 8 : n * 2)
        }
        n = max(1, min(maxOps, Int(Double(target) / perOp)))
        _ = try body(n)
        var samples: [Double] = []
        samples.reserveCapacity(settings.repetitions)
        let allocationsBefore = CallCounters.allocations
        let msyncsBefore = CallCounters.msyncs
        for _ in 0..<settings.repetitions {
            let elapsed = try body(n)
            samples.append(Double(elapsed) / Double(n))
        }
        let totalOps = Double(n * settings.repetitions)
        let allocations = Double(CallCounters.allocations - allocationsBefore) / totalOps
        let flushes = Double(CallCounters.msyncs - msyncsBefore) / totalOps
        return record(Row(op: op, medium: medium, samples: samples, opsPerRepetition: n,
                          allocationsPerOp: countAllocations ? allocations : nil, floor: floor, note: note,
                          flushesPerOp: countFlushes ? flushes : nil))
    }

    /// Adds a row measured some other way.
    @discardableResult
    func record(_ row: Row) -> Row {
        var row = row
        if !countAllocations { row.allocationsPerOp = nil }
        rows.append(row)
        let value = row.unit.map { Format.fixed(row.median, 1).leftPadded(to: 10) + " " + $0 }
            ?? Format.nanoseconds(row.median).leftPadded(to: 10) + " ns/op"
        progress(String(describing: row.op).padded(to: 58) + " " + value)
        return row
    }

    func attachFloor(_ lookup: (FloorReference) -> Double?) {
        for index in rows.indices {
            if let reference = rows[index].floor { rows[index].floorMedian = lookup(reference) }
        }
    }
}

// MARK: Output

/// Writes all of `text` to a descriptor (stdout and stderr without C's FILE globals).
func writeAll(_ text: String, to fd: Int32) {
    var text = text
    text.withUTF8 { bytes in
        var offset = 0
        while offset < bytes.count {
            let written = write(fd, bytes.baseAddress! + offset, bytes.count - offset)
            if written > 0 { offset += written } else if written < 0 && errno == EINTR { continue } else { break }
        }
    }
}

func printError(_ text: String) { writeAll(text + "\n", to: STDERR_FILENO) }

/// `strerror` as a String.
func errorText(_ code: Int32) -> String { String(validatingCString: strerror(code)) ?? "errno \(code)" }

// MARK: Formatting helpers

enum Format {
    static func nanoseconds(_ value: Double) -> String {
        guard value.isFinite else { return "-" }
        if value < 10 { return fixed(value, 2) }
        if value < 1000 { return fixed(value, 1) }
        return fixed(value, 0)
    }

    /// `value` with `digits` decimals, without Foundation.
    static func fixed(_ value: Double, _ digits: Int) -> String {
        guard value.isFinite else { return value.isNaN ? "nan" : (value < 0 ? "-inf" : "inf") }
        var scale = 1.0
        for _ in 0..<digits { scale *= 10 }
        let negative = value < 0
        let scaled = (abs(value) * scale).rounded()
        guard scaled < 9e18 else { return String(value) }
        let integer = UInt64(scaled)
        let whole = integer / UInt64(scale)
        var result = (negative && integer != 0 ? "-" : "") + String(whole)
        if digits > 0 {
            var fraction = String(integer % UInt64(scale))
            while fraction.count < digits { fraction = "0" + fraction }
            result += "." + fraction
        }
        return result
    }

    static func grouped(_ value: Int) -> String {
        let digits = Array(String(value))
        var result = ""
        for (index, digit) in digits.enumerated() {
            if index > 0 && (digits.count - index) % 3 == 0 { result.append(",") }
            result.append(digit)
        }
        return result
    }
}

extension String {
    func padded(to width: Int) -> String {
        count >= width ? self : self + String(repeating: " ", count: width - count)
    }
    func leftPadded(to width: Int) -> String {
        count >= width ? self : String(repeating: " ", count: width - count) + self
    }
}
