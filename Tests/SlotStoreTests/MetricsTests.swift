import Foundation
import Glibc
import Testing
@testable import SlotStore

/// `slotstore metrics`: the real binary's output, parsed back with a small
/// parser of the Prometheus text exposition format 0.0.4 written here, so the
/// checks are on what a scraper would read, not on our own formatting code.
@Suite("slotstore metrics (Prometheus text format)", .serialized, .timeLimit(.minutes(5)))
struct MetricsTests {
    let directory = TemporaryDirectory()

    static let oddKeys = ["say \"hi\"", "back\\slash", "two\nlines", "ünïcödé 🙂", "", "all \\\"\n three"]

    static let schema = Schema(version: 1, fields: [
        .int64("requests_total"), .uint64("bytes.sent-total"), .double("temp.c"), .float("ratio"), .double("weird"),
        .uint64("big"), .int8("small"), .bool("up"), .bool("ok_total"),
        .array("lat-ms", of: .uint16, count: 3), .array("bucket_total", of: .uint64, count: 2), .array("flags", of: .bool, count: 2),
        .string("motd", capacity: 64), .bytes("blob", capacity: 8),
        .map("hits", key: .string(capacity: 32), value: .scalar(.int64), capacity: 16),
        .map("by-id", key: .scalar(.int64), value: .scalar(.double), capacity: 4),
        .map("seen", key: .bytes(capacity: 4), value: .scalar(.bool), capacity: 4),
        .map("names", key: .string(capacity: 8), value: .string(capacity: 8), capacity: 4),
        .int64("a-b"), .int64("a.b"), .string("x", capacity: 4), .int64("x_info"),
    ])

    /// A store with a value in every field, odd ones where the format needs escaping.
    func makeStore(_ name: String) throws -> String {
        let path = directory.file(name)
        let store = try SlotStore(path: path, schema: Self.schema)
        try store.scalar("requests_total", as: Int64.self).store(42)
        try store.scalar("bytes.sent-total", as: UInt64.self).store(7)
        try store.scalar("temp.c", as: Double.self).store(-1.5)
        try store.scalar("ratio", as: Float.self).store(0.1)
        try store.scalar("weird", as: Double.self).store(.nan)
        try store.scalar("big", as: UInt64.self).store(.max)
        try store.scalar("small", as: Int8.self).store(-128)
        try store.scalar("up", as: Bool.self).store(true)
        try store.scalar("ok_total", as: Bool.self).store(true)
        try store.array("lat-ms", of: UInt16.self).store([3, 0, 65535])
        try store.array("bucket_total", of: UInt64.self).store([1, 1 << 60])
        try store.array("flags", of: Bool.self).store([false, true])
        try store.string("motd").store("say \"hi\" \\ ünï\n🙂")
        try store.bytes("blob").store([1, 2])
        let hits = try store.map("hits", key: String.self, value: Int64.self)
        for (index, key) in Self.oddKeys.enumerated() { try hits.set(Int64(index) - 2, for: key) }
        let byID = try store.map("by-id", key: Int64.self, value: Double.self)
        try byID.set(.infinity, for: -3)
        try byID.set(2.5e-8, for: 12)
        let seen = try store.map("seen", key: [UInt8].self, value: Bool.self)
        try seen.set(true, for: [0x00, 0xAB])
        try store.map("names", key: String.self, value: String.self).set("v", for: "k")
        try store.scalar("a-b", as: Int64.self).store(1)
        try store.scalar("a.b", as: Int64.self).store(2)
        try store.string("x").store("y")
        try store.scalar("x_info", as: Int64.self).store(3)
        store.close()
        return path
    }

    @Test("every field becomes the series, type, labels and value the format says, with names sanitized and odd map keys escaped")
    func everyValue() throws {
        let path = try makeStore("all.slots")
        let result = try Tool.run(["metrics", path])
        #expect(result.succeeded, "metrics failed: \(result.stderr)")
        let parsed = try Exposition(result.stdout)

        let p = "slotstore_"
        #expect(parsed.types == [
            p + "requests_total": "counter", p + "bytes_sent_total": "counter", p + "temp_c": "gauge", p + "ratio": "gauge",
            p + "weird": "gauge", p + "big": "gauge", p + "small": "gauge", p + "up": "gauge", p + "ok_total": "gauge",
            p + "lat_ms": "gauge", p + "bucket_total": "counter", p + "flags": "gauge", p + "motd_info": "gauge",
            p + "hits": "gauge", p + "by_id": "gauge", p + "seen": "gauge", p + "a_b": "gauge", p + "x_info": "gauge",
        ], "one family per field, Booleans never counters, a _total number a counter")
        #expect(parsed.help[p + "bytes_sent_total"] == "SlotStore field bytes.sent-total (uint64)")
        #expect(parsed.help[p + "hits"] == "SlotStore field hits (map<string[32], int64>[16])")

        var expected: [Series: String] = [
            Series(p + "requests_total"): "42", Series(p + "bytes_sent_total"): "7", Series(p + "temp_c"): "-1.5",
            Series(p + "ratio"): "0.1", Series(p + "weird"): "NaN", Series(p + "big"): "18446744073709551615",
            Series(p + "small"): "-128", Series(p + "up"): "1", Series(p + "ok_total"): "1",
            Series(p + "lat_ms", ["index": "0"]): "3", Series(p + "lat_ms", ["index": "1"]): "0", Series(p + "lat_ms", ["index": "2"]): "65535",
            Series(p + "bucket_total", ["index": "0"]): "1", Series(p + "bucket_total", ["index": "1"]): "1152921504606846976",
            Series(p + "flags", ["index": "0"]): "0", Series(p + "flags", ["index": "1"]): "1",
            Series(p + "motd_info", ["value": "say \"hi\" \\ ünï\n🙂"]): "1",
            Series(p + "by_id", ["key": "-3"]): "+Inf", Series(p + "by_id", ["key": "12"]): "2.5e-08",
            Series(p + "seen", ["key": "0x00ab"]): "1",
            Series(p + "a_b"): "1",  // field "a-b", first in the schema
            Series(p + "x_info", ["value": "y"]): "1",  // string "x"; the int64 "x_info" after it is left out
        ]
        for (index, key) in Self.oddKeys.enumerated() { expected[Series(p + "hits", ["key": key])] = String(index - 2) }
        #expect(parsed.samples == expected)
        #expect(Double(parsed.samples[Series(p + "by_id", ["key": "12"])] ?? "") == 2.5e-8)

        // What is left out says so in a comment, and nothing else is.
        #expect(parsed.comments.count == 4, "\(parsed.comments)")
        #expect(parsed.comments.contains { $0.contains("\"blob\" (bytes[8]) left out") })
        #expect(parsed.comments.contains { $0.contains("\"names\"") && $0.contains("left out") })
        #expect(parsed.comments.contains { $0.contains("\"a.b\" left out: its metric name slotstore_a_b is taken by field \"a-b\"") })
        #expect(parsed.comments.contains { $0.contains("\"x_info\" left out: its metric name slotstore_x_info is taken by field \"x\"") })
    }

    @Test("--prefix replaces slotstore_; an empty prefix makes a name that starts with a digit start with _; a bad prefix is a usage error")
    func prefixes() throws {
        let path = directory.file("digits.slots")
        try SlotStore(path: path, schema: Schema(version: 1, fields: [.int64("9lives"), .double("a.b-c")])).close()
        let bare = try Exposition(try Tool.run(["metrics", path, "--prefix", ""]).stdout)
        #expect(bare.samples == [Series("_9lives"): "0", Series("a_b_c"): "0.0"])
        let app = try Exposition(try Tool.run(["metrics", path, "--prefix=app:cache_"]).stdout)
        #expect(Set(app.types.keys) == ["app:cache_9lives", "app:cache_a_b_c"])

        let bad = try Tool.run(["metrics", path, "--prefix", "my-app_"])
        #expect(bad.status == 2 && !bad.signaled)
        #expect(bad.stderr.contains("--prefix must be a metric name prefix") && bad.stderr.contains("\"my-app_\""), "\(bad.stderr)")
        #expect(bad.stdout.isEmpty)
    }

    @Test("--output replaces the file by a rename (readers see the old or the new file), readable by others, leaving no temporary file")
    func outputFile() throws {
        let path = try makeStore("out.slots")
        let textfiles = directory.file("textfile")
        try FileManager.default.createDirectory(atPath: textfiles, withIntermediateDirectories: false)
        let output = textfiles + "/slotstore.prom"
        try "old\n".write(toFile: output, atomically: false, encoding: .utf8)
        var before = stat()
        #expect(stat(output, &before) == 0)

        let result = try Tool.run(["metrics", path, "--output", output])
        #expect(result.succeeded, "\(result.stderr)")
        #expect(result.stdout.isEmpty)
        let written = try String(contentsOfFile: output, encoding: .utf8)
        #expect(written == (try Tool.run(["metrics", path]).stdout), "the file holds what standard output would")
        var after = stat()
        #expect(stat(output, &after) == 0)
        #expect(after.st_ino != before.st_ino, "a new file was renamed over the old one, not rewritten in place")
        let mask = umask(0)
        umask(mask)
        #expect(after.st_mode & 0o777 == 0o644 & ~mode_t(mask), "created 0644 less the umask, so a collector running as another user can read it")
        #expect(try FileManager.default.contentsOfDirectory(atPath: textfiles) == ["slotstore.prom"], "no temporary file is left")

        // A directory that doesn't exist: a clear error, and nothing written.
        let missing = directory.file("nowhere/slotstore.prom")
        let failed = try Tool.run(["metrics", path, "--output", missing])
        #expect(failed.status == 2 && !failed.signaled)
        #expect(failed.stderr.contains(missing) && failed.stderr.contains("No such file or directory"), "\(failed.stderr)")
        #expect(!FileManager.default.fileExists(atPath: directory.file("nowhere")))
    }

    @Test("metrics reads lock-free: it answers while another process holds the store's lock")
    func whileLocked() throws {
        let path = try makeStore("locked.slots")
        let holder = try Tool.Holder(["_worker", "hold-lock", path])
        defer { holder.kill() }
        #expect(holder.isHolding)
        let started = ContinuousClock.now
        let result = try Tool.run(["metrics", path])
        #expect(result.succeeded, "\(result.stderr)")
        #expect(ContinuousClock.now - started < .seconds(3), "no wait for the lock (its timeout is 5 s)")
        #expect(try Exposition(result.stdout).samples[Series("slotstore_requests_total")] == "42")
    }
}

/// One series: a metric name and its labels.
struct Series: Hashable, CustomStringConvertible {
    let name: String
    let labels: [String: String]
    init(_ name: String, _ labels: [String: String] = [:]) {
        self.name = name
        self.labels = labels
    }
    var description: String { name + (labels.isEmpty ? "" : "\(labels.sorted { $0.key < $1.key })") }
}

/// A small, strict parser of the text exposition format 0.0.4: `# HELP`,
/// `# TYPE` (before the family's samples, once per family), other `#` lines
/// as comments, and samples `name{label="value",…} value [timestamp]` with
/// label values unescaped (`\\`, `\"`, `\n`). Any deviation throws.
struct Exposition {
    var help: [String: String] = [:]
    var types: [String: String] = [:]
    var samples: [Series: String] = [:]
    var comments: [String] = []

    struct Malformed: Error, CustomStringConvertible {
        let description: String
    }

    init(_ text: String) throws {
        guard text.isEmpty || text.hasSuffix("\n") else { throw Malformed(description: "the text does not end with a line feed") }
        var familiesSeen: [String] = []
        for line in text.split(separator: "\n", omittingEmptySubsequences: false).dropLast().map(String.init) {
            func fail(_ why: String) -> Malformed { Malformed(description: "\(why): \(line)") }
            if line.isEmpty { continue }
            if line.hasPrefix("# HELP ") || line.hasPrefix("# TYPE ") {
                let rest = line.dropFirst(7)
                guard let space = rest.firstIndex(of: " ") else { throw fail("no text after the name") }
                let name = String(rest[..<space]), value = String(rest[rest.index(after: space)...])
                guard Exposition.isMetricName(name) else { throw fail("invalid metric name") }
                if line.hasPrefix("# HELP ") {
                    guard help[name] == nil else { throw fail("a second HELP") }
                    help[name] = try Exposition.unescape(value, quotes: false)
                } else {
                    guard types[name] == nil, !familiesSeen.contains(name) else { throw fail("a second TYPE, or a TYPE after samples") }
                    guard ["counter", "gauge", "histogram", "summary", "untyped"].contains(value) else { throw fail("unknown type") }
                    types[name] = value
                }
                continue
            }
            if line.hasPrefix("#") { comments.append(line); continue }
            // A sample.
            var rest = Substring(line)
            let name = String(rest.prefix { $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "_" || $0 == ":") })
            guard Exposition.isMetricName(name) else { throw fail("invalid metric name") }
            rest = rest.dropFirst(name.count)
            var labels: [String: String] = [:]
            if rest.first == "{" {
                rest = rest.dropFirst()
                while rest.first != "}" {
                    let label = String(rest.prefix { $0 != "=" })
                    guard Exposition.isLabelName(label) else { throw fail("invalid label name \"\(label)\"") }
                    rest = rest.dropFirst(label.count)
                    guard rest.hasPrefix("=\"") else { throw fail("no =\" after a label name") }
                    rest = rest.dropFirst(2)
                    var raw = ""
                    while let character = rest.first, character != "\"" {
                        raw.append(character)
                        rest = rest.dropFirst()
                        if character == "\\", let escaped = rest.first { raw.append(escaped); rest = rest.dropFirst() }
                    }
                    guard rest.first == "\"" else { throw fail("an unterminated label value") }
                    rest = rest.dropFirst()
                    guard labels[label] == nil else { throw fail("a label twice") }
                    labels[label] = try Exposition.unescape(raw, quotes: true)
                    if rest.first == "," { rest = rest.dropFirst() } else if rest.first != "}" { throw fail("no , or } after a label") }
                }
                rest = rest.dropFirst()
            }
            guard rest.first == " " else { throw fail("no space before the value") }
            let fields = rest.dropFirst().split(separator: " ", omittingEmptySubsequences: false)
            guard fields.count == 1 || (fields.count == 2 && Int64(fields[1]) != nil) else { throw fail("not one value and an optional timestamp") }
            let value = String(fields[0])
            guard ["NaN", "+Inf", "-Inf"].contains(value) || (Double(value).map { $0.isFinite } ?? false) else { throw fail("not a float value") }
            guard types[name] != nil else { throw fail("a sample before its family's TYPE") }
            if familiesSeen.last != name {
                guard !familiesSeen.contains(name) else { throw fail("a family's samples are not together") }
                familiesSeen.append(name)
            }
            let series = Series(name, labels)
            guard samples[series] == nil else { throw fail("a series twice") }
            samples[series] = value
        }
    }

    static func isMetricName(_ name: String) -> Bool {
        name.range(of: "^[a-zA-Z_:][a-zA-Z0-9_:]*$", options: .regularExpression) != nil
    }

    static func isLabelName(_ name: String) -> Bool {
        name.range(of: "^[a-zA-Z_][a-zA-Z0-9_]*$", options: .regularExpression) != nil && !name.hasPrefix("__")
    }

    /// `\\` and `\n` (and `\"` in a label value); any other escape is malformed, as is a raw line feed.
    static func unescape(_ text: String, quotes: Bool) throws -> String {
        var result = ""
        var escaping = false
        for character in text {
            if escaping {
                switch character {
                case "\\": result.append("\\")
                case "n": result.append("\n")
                case "\"" where quotes: result.append("\"")
                default: throw Malformed(description: "unknown escape \\\(character) in \(text)")
                }
                escaping = false
            } else if character == "\\" {
                escaping = true
            } else if character == "\n" || (quotes && character == "\"") {
                throw Malformed(description: "an unescaped \(character == "\n" ? "line feed" : "quote") in \(text)")
            } else {
                result.append(character)
            }
        }
        guard !escaping else { throw Malformed(description: "a trailing backslash in \(text)") }
        return result
    }
}
