import Foundation
import Glibc
import Testing
@testable import SlotStore

/// `slotstore get/set/add/remove PATH 'map[key]'`: one map entry at a time,
/// keys read by the map's stored key type. The real binary against real files.
@Suite("slotstore per-key map commands", .timeLimit(.minutes(5)))
struct PerKeyToolTests {
    let directory = TemporaryDirectory()

    /// A map of each key kind, and fields of other kinds for the refusals.
    static let schema = Schema(version: 1, fields: [
        .map("hits", key: .string(capacity: 8), value: .scalar(.int64), capacity: 16),
        .map("owners", key: .scalar(.int32), value: .string(capacity: 8), capacity: 16),
        .map("blobs", key: .bytes(capacity: 4), value: .scalar(.double), capacity: 16),
        .map("ratios", key: .scalar(.uint8), value: .scalar(.float), capacity: 4),
        .map("small", key: .string(capacity: 8), value: .scalar(.int8), capacity: 4),
        .array("ints", of: .int64, count: 4),
        .string("motd", capacity: 16),
    ])

    // MARK: String keys

    @Test("string keys: set, get, add and remove one entry; brackets inside the key and --key for awkward keys")
    func stringKeys() throws {
        let path = try createStore()
        #expect(try run("set", path, "hits[/a]", "3").stdout == "hits[\"/a\"] = 3\n")
        #expect(try run("get", path, "hits[/a]").stdout == "3\n")
        // Everything between the first [ and the final ] is the key.
        #expect(try run("set", path, "hits[a]b[c]", "4").succeeded)
        #expect(try run("get", path, "hits", "--key", "a]b[c").stdout == "4\n")
        // --key: keys that look like options, the empty key, spaces.
        #expect(try run("set", path, "hits", "--key", "--x", "5").stdout == "hits[\"--x\"] = 5\n")
        #expect(try run("set", path, "hits", "--key=", "6").stdout == "hits[\"\"] = 6\n")
        #expect(try run("get", path, "hits[]").stdout == "6\n")
        #expect(try run("set", path, "hits[ sp ]", "7").succeeded)
        #expect(try run("add", path, "hits[/a]", "10").stdout == "13\n")
        #expect(try run("add", path, "hits[new]", "-2").stdout == "-2\n", "a missing key starts at 0")
        #expect(try run("get", path, "hits").stdout == #"{"": 6, " sp ": 7, "--x": 5, "/a": 13, "a]b[c": 4, "new": -2}"# + "\n")
        let removed = try run("remove", path, "hits[/a]")
        #expect(removed.succeeded && removed.stdout == "removed hits[\"/a\"]\n", "\(removed)")
        #expect(try run("get", path, "hits").stdout == #"{"": 6, " sp ": 7, "--x": 5, "a]b[c": 4, "new": -2}"# + "\n")
        #expect(try SlotStore.verify(at: path).findings == [])
    }

    @Test("--json of get, set, add and remove: the map's name, the key in its JSON form, the value")
    func jsonShapes() throws {
        let path = try createStore()
        let set = try json(run("set", path, "hits[/a]", "3", "--json"))
        #expect(set["field"] as? String == "hits" && set["key"] as? String == "/a" && (set["value"] as? NSNumber)?.intValue == 3)
        let got = try json(run("get", path, "hits", "--key", "/a", "--json"))
        #expect(got["field"] as? String == "hits" && got["key"] as? String == "/a" && (got["value"] as? NSNumber)?.intValue == 3)
        let added = try json(run("add", path, "owners[0x10]", "1", "--json"))
        #expect(added.isEmpty, "add to a map of strings is refused: \(added)")
        let bytes = try json(run("add", path, "blobs[0x0a0b]", "0.5", "--json"))
        #expect((bytes["key"] as? [String: String])?["base64"] == "Cgs=" && (bytes["value"] as? NSNumber)?.doubleValue == 0.5, "\(bytes)")
        let removed = try json(run("remove", path, "hits[/a]", "--json"), status: 0)
        #expect(removed["removed"] as? Bool == true && removed["field"] as? String == "hits" && removed["key"] as? String == "/a")
        let again = try json(run("remove", path, "hits[/a]", "--json"), status: 1)
        #expect(again["removed"] as? Bool == false, "\(again)")
        // An element keeps its old shape.
        let element = try json(run("get", path, "ints[2]", "--json"))
        #expect(element["field"] as? String == "ints[2]" && element["key"] == nil)
    }

    // MARK: Integer and bytes keys

    @Test("integer keys in decimal, negative and 0x hex name the same entries; bytes keys in 0x hex")
    func integerAndBytesKeys() throws {
        let path = try createStore()
        #expect(try run("set", path, "owners[42]", "alice").stdout == "owners[42] = \"alice\"\n")
        #expect(try run("get", path, "owners[0x2a]").stdout == "alice\n")
        #expect(try run("set", path, "owners[-0x10]", "bob").succeeded)
        #expect(try run("get", path, "owners[-16]").stdout == "bob\n")
        #expect(try run("set", path, "owners[+7]", "carol").succeeded)
        #expect(try run("get", path, "owners").stdout == #"{-16: "bob", 7: "carol", 42: "alice"}"# + "\n")
        #expect(try run("set", path, "owners[-2147483648]", "min").succeeded, "the type's own bounds are keys")
        #expect(try run("remove", path, "owners[0x2A]").succeeded)

        #expect(try run("set", path, "blobs[0x0A0b]", "1.5").stdout == "blobs[0x0a0b] = 1.5\n")
        #expect(try run("get", path, "blobs[0x0a0b]").stdout == "1.5\n")
        #expect(try run("set", path, "blobs[0x]", "2").succeeded, "0x alone is the empty key")
        #expect(try run("get", path, "blobs").stdout == "{0x: 2, 0x0a0b: 1.5}\n")
        #expect(try run("add", path, "ratios[0xff]", "0.25").stdout == "0.25\n")
        #expect(try run("add", path, "ratios[255]", "0.5").stdout == "0.75\n")
    }

    // MARK: Absent keys

    @Test("an absent key: get exits 1 with one line naming path, map and key; remove exits 1 and says so; nothing changes")
    func absentKeys() throws {
        let path = try createStore()
        #expect(try run("set", path, "hits[there]", "1").succeeded)
        let before = try bytesOutsideLockRegion(path)
        let missing = try run("get", path, "hits[/nope]")
        #expect(!missing.signaled && missing.status == 1 && missing.stdout.isEmpty, "\(missing)")
        #expect(missing.stderr == "slotstore get: \(path): map \"hits\" has no key \"/nope\"; `slotstore get \(path) hits` lists its entries\n")
        let json = try run("get", path, "owners[5]", "--json")
        #expect(json.status == 1 && json.stdout.isEmpty && json.stderr.contains("map \"owners\" has no key 5"), "\(json)")
        let bytes = try run("get", path, "blobs[0x00]")
        #expect(bytes.status == 1 && bytes.stderr.contains("map \"blobs\" has no key 0x00"), "\(bytes)")
        let remove = try run("remove", path, "hits[/nope]")
        #expect(!remove.signaled && remove.status == 1 && remove.stdout == "hits[\"/nope\"] was not there; nothing removed\n" && remove.stderr.isEmpty,
                "\(remove)")
        #expect(try bytesOutsideLockRegion(path) == before)
    }

    // MARK: Refusals: nothing changes

    struct Refusal: CustomTestStringConvertible, Sendable {
        let label: String
        let arguments: [String]
        let mentions: [String]
        var testDescription: String { label }
    }

    static let refusals: [Refusal] = [
        Refusal(label: "string key over the key capacity", arguments: ["set", "hits[123456789]", "1"],
                mentions: ["bad key for map \"hits\"", "expected string keys of at most 8 bytes (string[8])", "found \"123456789\" (9 bytes of UTF-8)",
                           "use a shorter key, or give the map a larger key capacity", "nothing was read or changed"]),
        Refusal(label: "over-capacity key through --key, to get", arguments: ["get", "hits", "--key", "ééééé"],
                mentions: ["bad key for map \"hits\"", "(10 bytes of UTF-8)"]),
        Refusal(label: "bytes key over the key capacity", arguments: ["set", "blobs[0x0102030405]", "1"],
                mentions: ["expected bytes keys of at most 4 bytes (bytes[4])", "found \"0x0102030405\" (5 bytes)"]),
        Refusal(label: "bytes key as text", arguments: ["set", "blobs[ab]", "1"],
                mentions: ["written as 0x and pairs of hex digits", "found \"ab\"", "write the key in hex (0x6162 is the UTF-8 of that text)"]),
        Refusal(label: "bytes key with an odd hex digit", arguments: ["remove", "blobs[0x123]"],
                mentions: ["found \"0x123\"", "two hex digits"]),
        Refusal(label: "integer key that is not a number", arguments: ["set", "owners[abc]", "x"],
                mentions: ["expected int32 keys, in decimal or 0x hex, from -2147483648 to 2147483647", "found \"abc\"", "give the key as a whole number"]),
        Refusal(label: "integer key out of range", arguments: ["add", "ratios[256]", "1"],
                mentions: ["expected uint8 keys", "found \"256\" (out of range)", "give a key in that range"]),
        Refusal(label: "negative key of an unsigned map", arguments: ["remove", "ratios[-1]"], mentions: ["found \"-1\" (out of range)"]),
        Refusal(label: "value of the wrong type", arguments: ["set", "hits[seeded]", "lots"],
                mentions: ["field \"hits[\"seeded\"]\"", "expected an integer, found \"lots\"", "unchanged"]),
        Refusal(label: "value over the value capacity", arguments: ["set", "owners[1]", "far-too-long"],
                mentions: ["does not fit field \"owners[1]\", whose capacity is 8"]),
        Refusal(label: "value out of the value type's range", arguments: ["set", "small[a]", "300"],
                mentions: ["300 is outside the range of int8"]),
        Refusal(label: "add that overflows", arguments: ["add", "small[seeded]", "127"],
                mentions: ["128 is outside the range of int8"]),
        Refusal(label: "add to a map of strings", arguments: ["add", "owners[1]", "1"],
                mentions: ["add needs a map of integer or floating-point values"]),
        Refusal(label: "insert into a full map that cannot grow", arguments: ["set", "small[fifth]", "1"],
                mentions: ["map \"small\" is full", "--capacity small=N", "nothing was inserted"]),
        Refusal(label: "a key on a field that is not a map", arguments: ["set", "motd[a]", "x"],
                mentions: ["a key a map field, and motd is string[16]"]),
        Refusal(label: "remove of a field that is not a map", arguments: ["remove", "motd"],
                mentions: ["field \"motd\" is string[16], which `slotstore remove` does not apply to"]),
    ]

    @Test("a bad key or value is one line naming the path (exit 2), and the store is unchanged", arguments: refusals)
    func refused(_ refusal: Refusal) throws {
        let path = try createStore()
        for (field, value) in [("hits[seeded]", "1"), ("small[seeded]", "1"), ("small[b]", "2"), ("small[c]", "3"), ("small[d]", "4")] {
            try #require(try run("set", path, field, value).succeeded)
        }
        let dump = try run("dump", path).stdout
        let before = try bytesOutsideLockRegion(path)
        var arguments = refusal.arguments
        arguments.insert(path, at: 1)
        let result = try run(arguments)
        #expect(!result.signaled && result.status == 2 && result.stdout.isEmpty, "\(result)")
        let lines = result.stderr.split(separator: "\n", omittingEmptySubsequences: false)
        #expect(lines.count == 2 && lines[1].isEmpty, "one line on stderr: \(result.stderr)")
        #expect(result.stderr.hasPrefix("slotstore \(refusal.arguments[0]): \(path): "), "\(result.stderr)")
        for text in refusal.mentions { #expect(result.stderr.contains(text), "stderr lacks \(text): \(result.stderr)") }
        #expect(try bytesOutsideLockRegion(path) == before, "the refused command wrote to the store")
        #expect(try run("dump", path).stdout == dump)
    }

    @Test("usage errors: a key in brackets and --key at once, --key on an array, a subscript not at the end, remove without a key")
    func usageErrors() throws {
        let path = try createStore()
        let cases: [(arguments: [String], firstLine: String)] = [
            (["get", path, "hits[a]", "--key", "b"], "slotstore get: give the key either in brackets (hits[KEY]) or with --key, not both"),
            (["get", path, "ints", "--key", "1"], "slotstore get: --key applies to map fields, and ints is array<int64>[4]"),
            (["set", path, "hits[a]x", "1"], "slotstore set: expected FIELD, FIELD[INDEX] or MAP[KEY], found \"hits[a]x\""),
            (["remove", path, "hits"], "slotstore remove: remove needs a key: MAP[KEY] or MAP --key K"),
            (["add", path, "ints[1]", "1"], "slotstore add: \(path): invalid value for field \"ints\": add works on a whole numeric field or one map entry"),
            (["get", path], "slotstore get: missing FIELD, FIELD[INDEX] or MAP[KEY]"),
        ]
        let before = try bytesOutsideLockRegion(path)
        for (arguments, expected) in cases {
            let result = try run(arguments)
            #expect(!result.signaled && result.status == 2 && result.stdout.isEmpty, "\(arguments): \(result)")
            #expect(result.stderr.hasPrefix(expected), "\(arguments): \(result.stderr)")
        }
        #expect(try bytesOutsideLockRegion(path) == before)
    }

    // MARK: Growth

    /// A store whose map `hits` (capacity 4) is full and may grow: filled
    /// without a growth policy, then given one by a compaction, which keeps
    /// the capacity (only inserts grow a map).
    func fullGrowableStore() throws -> String {
        let path = directory.file("growable.slots")
        let fixed = Schema(version: 1, fields: [.map("hits", key: .string(capacity: 8), value: .scalar(.int64), capacity: 4)])
        let grows = Schema(version: 2, fields: [.map("hits", key: .string(capacity: 8), value: .scalar(.int64), capacity: 4,
                                                     growth: MapGrowth(maxCapacity: 64))])
        writeFileBytes(directory.file("fixed.json"), fixed.jsonBytes())
        writeFileBytes(directory.file("grows.json"), grows.jsonBytes())
        try #require(try run("create", path, "--schema", directory.file("fixed.json")).succeeded)
        for key in ["a", "b", "c", "d"] { try #require(try run("set", path, "hits[\(key)]", "1").succeeded) }
        try #require(try run("compact", path, "--schema", directory.file("grows.json")).succeeded)
        let map = try #require(try SlotStore.inspect(at: path).fields.first { $0.name == "hits" }?.map)
        try #require(map.count == 4 && map.capacity == 4 && map.growth != nil, "\(map)")
        return path
    }

    @Test("set and add of a new key into a full map that may grow grow it and insert; a replacement does not grow it",
          arguments: ["set", "add"])
    func growsWhenFull(command: String) throws {
        let path = try fullGrowableStore()
        #expect(try run(command, path, "hits[a]", "5").succeeded)
        #expect(try SlotStore.inspect(at: path).fields.first { $0.name == "hits" }?.map?.capacity == 4, "a replacement needs no room")
        let result = try run(command, path, "hits[e]", "7")
        #expect(result.succeeded && result.stdout == (command == "set" ? "hits[\"e\"] = 7\n" : "7\n"), "\(result)")
        let map = try #require(try SlotStore.inspect(at: path).fields.first { $0.name == "hits" }?.map)
        #expect(map.count == 5 && map.capacity == 8, "\(map)")
        #expect(try run("get", path, "hits").stdout == (command == "set" ? #"{"a": 5, "b": 1, "c": 1, "d": 1, "e": 7}"# : #"{"a": 6, "b": 1, "c": 1, "d": 1, "e": 7}"#) + "\n")
        #expect(try SlotStore.verify(at: path).findings == [])
    }

    @Test("set of a whole map with more entries than its capacity grows a map that may grow, and refuses past its maximum")
    func wholeMapSetGrows() throws {
        let path = try fullGrowableStore()
        let entries = (0..<40).map { #"{"key":"k\#($0)","value":\#($0)}"# }.joined(separator: ",")
        let result = try run("set", path, "hits", "[\(entries)]")
        #expect(result.succeeded, "\(result)")
        let map = try #require(try SlotStore.inspect(at: path).fields.first { $0.name == "hits" }?.map)
        #expect(map.count == 40 && map.capacity == 64, "\(map)")
        let before = try bytesOutsideLockRegion(path)
        let tooMany = (0..<65).map { #"{"key":"k\#($0)","value":1}"# }.joined(separator: ",")
        let refused = try run("set", path, "hits", "[\(tooMany)]")
        #expect(refused.status == 2 && refused.stderr.contains("full"), "\(refused)")
        #expect(try bytesOutsideLockRegion(path) == before)
    }

    // MARK: Several processes at once

    @Test("adds to one new key from many processes at once insert it once and lose no addition")
    func concurrentAdds() throws {
        let path = try createStore()
        let processes = 24
        // Started together, so their opens, inserts and read-modify-writes overlap.
        let running = try (0..<processes).map { index in
            try Tool.start(["add", path, "hits[shared]", "1"] + (index % 2 == 0 ? [] : ["--json"]))
        }
        let results = running.map { $0.wait() }
        let failed = results.filter { !$0.succeeded }
        #expect(failed.isEmpty, "\(failed)")
        #expect(try run("get", path, "hits").stdout == "{\"shared\": \(processes)}\n")
        #expect(try SlotStore.verify(at: path).findings == [])
    }

    // MARK: The library API under the commands

    @Test("the by-name entry API converts keys by the stored key type and refuses what does not fit")
    func libraryAPI() throws {
        let path = directory.file("api.slots")
        let store = try SlotStore(path: path, schema: Self.schema)
        defer { store.close() }
        try store.setValue(.int(3), for: "hits", key: .string("/a"))
        #expect(try store.value(of: "hits", key: .string("/a")) == .int(3))
        #expect(try store.value(of: "hits", key: .string("/b")) == nil)
        try store.setValue(.string("x"), for: "owners", key: .uint(7))
        #expect(try store.value(of: "owners", key: .int(7)) == .string("x"), "an integer key of either sign form")
        #expect(try store.add(.int(2), to: "hits", key: .string("/a")) == .int(5))
        #expect(try store.add(.double(0.5), to: "ratios", key: .int(1)) == .double(0.5))
        #expect(throws: SlotStoreError.valueTooLarge(path: path, field: "hits key", capacity: 8, size: 9)) {
            try store.setValue(.int(1), for: "hits", key: .string("123456789"))
        }
        #expect(throws: SlotStoreError.self) { try store.setValue(.int(1), for: "owners", key: .string("seven")) }
        #expect(throws: SlotStoreError.self) { try store.setValue(.string("x"), for: "hits", key: .string("/a")) }
        #expect(throws: SlotStoreError.self) { try store.setValue(.int(200), for: "small", key: .string("a")) }
        #expect(throws: SlotStoreError.self) { try store.add(.int(Int64.max), to: "hits", key: .string("/a")) }
        #expect(try store.value(of: "hits", key: .string("/a")) == .int(5), "the refused writes changed nothing")
        #expect(try store.value(of: "small", key: .string("a")) == nil)
        #expect(throws: SlotStoreError.self) { try store.add(.int(1), to: "motd", key: .string("a")) }
        #expect(try store.removeValue(of: "hits", key: .string("/a")))
        #expect(try !store.removeValue(of: "hits", key: .string("/a")))
        let hits = try store.map("hits", key: String.self, value: Int64.self)
        #expect(hits.count == 0)
    }
}

// MARK: Time to live

extension PerKeyToolTests {
    @Test("set --ttl gives a cache map's entry its deadline (on the real-time clock), reports an eviction, and is refused elsewhere")
    func timeToLive() throws {
        let path = directory.file("cache.slots")
        let schema = Schema(version: 1, fields: [
            .map("sessions", key: .string(capacity: 16), value: .scalar(.int64), capacity: 2, cache: MapCache(evict: true)),
            .map("plain", key: .string(capacity: 8), value: .scalar(.int64), capacity: 4),
        ])
        writeFileBytes(directory.file("cache.json"), schema.jsonBytes())
        try #require(try run("create", path, "--schema", directory.file("cache.json")).succeeded)
        let before = CacheClock.system.millisecondsSinceEpoch
        #expect(try run("set", path, "sessions[a]", "1", "--ttl", "1h").succeeded)
        let after = CacheClock.system.millisecondsSinceEpoch
        let store = try SlotStore(path: path)
        let sessions = try store.map("sessions", key: String.self, value: Int64.self)
        // The deadline is now + 1 h: read it back through dump's expiresAt.
        let dump = try run("dump", path)
        let match = try #require(dump.stdout.firstMatch(of: /"expiresAt" : (\d+)/), "\(dump.stdout)")
        let deadline = try #require(Int64(match.1))
        #expect(deadline >= before + 3_600_000 && deadline <= after + 3_600_000 + 20, "\(deadline) not an hour after \(before)...\(after)")
        #expect(try sessions.get("a") == 1)

        // Full and evicting: the third insert evicts a live entry and says so on standard error.
        #expect(try run("set", path, "sessions[b]", "2").succeeded)
        let evicting = try run("set", path, "sessions[c]", "3", "--ttl", "30s")
        #expect(evicting.succeeded && evicting.stderr.contains("1 live entry of sessions evicted to make room"), "\(evicting)")
        #expect(sessions.count == 2)
        #expect(try sessions.get("c") == 3)

        // Refused, changing nothing: a ttl on a map without a cache policy, on a whole field, and a bad duration.
        let unchanged = try bytesOutsideLockRegion(path)
        let plain = try run("set", path, "plain[a]", "1", "--ttl", "5s")
        #expect(plain.status == 2 && plain.stderr.contains("needs a map with a cache policy"), "\(plain)")
        let whole = try run("set", path, "plain", "[]", "--ttl", "5s")
        #expect(whole.status == 2 && whole.stderr.contains("--ttl sets one map entry"), "\(whole)")
        let bad = try run("set", path, "sessions[a]", "1", "--ttl", "soon")
        #expect(bad.status == 2 && bad.stderr.contains("--ttl takes a positive duration"), "\(bad)")
        #expect(try bytesOutsideLockRegion(path) == unchanged)
    }
}

// MARK: Helpers

extension PerKeyToolTests {
    func run(_ arguments: String...) throws -> ProcessResult { try Tool.run(arguments) }
    func run(_ arguments: [String]) throws -> ProcessResult { try Tool.run(arguments) }

    func createStore(sourceLocation: SourceLocation = #_sourceLocation) throws -> String {
        let schema = directory.file("schema.json")
        if !FileManager.default.fileExists(atPath: schema) { writeFileBytes(schema, Self.schema.jsonBytes()) }
        let path = directory.file("store-\(UInt32.random(in: 0...UInt32.max)).slots")
        let result = try run("create", path, "--schema", schema)
        try #require(result.succeeded, "create failed: \(result)", sourceLocation: sourceLocation)
        return path
    }

    /// The `--json` object a command printed; empty when it printed none (a refusal).
    func json(_ result: ProcessResult, status: Int32? = nil, sourceLocation: SourceLocation = #_sourceLocation) throws -> [String: Any] {
        if let status { #expect(result.status == status, "\(result)", sourceLocation: sourceLocation) }
        guard !result.stdout.isEmpty else { return [:] }
        return try #require(try JSONSerialization.jsonObject(with: Data(result.stdout.utf8)) as? [String: Any], sourceLocation: sourceLocation)
    }
}
