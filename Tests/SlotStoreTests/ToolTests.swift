import Foundation
import Glibc
import Testing
@testable import SlotStore

/// The `slotstore` executable, run as real processes against real files.
// The limit catches a hang, not slowness: in a full parallel run the
// suite's tests can wait behind long ones (the torture, the power-loss
// explorer) for the test runner's few threads.
@Suite("slotstore tool", .timeLimit(.minutes(5)))
struct ToolTests {
    let directory = TemporaryDirectory()

    /// A field of every kind, so each parser, printer and JSON form is exercised.
    static let schema = Schema(version: 3, fields: [
        .int8("i8"), .int16("i16"), .int32("i32"), .int64("i64"),
        .uint8("u8"), .uint16("u16"), .uint32("u32"), .uint64("u64"),
        .float("f32"), .double("f64"), .bool("flag"),
        .string("name", capacity: 24), .bytes("blob", capacity: 8),
        .array("ints", of: .int64, count: 4), .array("reals", of: .double, count: 3),
        .array("flags", of: .bool, count: 2), .array("tiny", of: .int8, count: 5),
    ])

    static var fieldNames: [String] { schema.fields.map(\.name) }

    // MARK: Happy paths

    @Test("create with --mode 0644 and --cache-line-aligned; the default is 0600, unaligned; an existing path is refused")
    func create() throws {
        let path = directory.file("aligned.slots")
        let made = try slotstore("create", path, "--schema", schemaFile(), "--mode", "0644", "--cache-line-aligned")
        expectSuccess(made)
        #expect(made.stdout == "created \(path): \(Self.schema.fields.count) fields, schema version 3, mode 644\n")
        #expect(permissions(path) == 0o644)
        let inspection = try slotstore("inspect", path)
        expectSuccess(inspection)
        #expect(inspection.stdout.contains("cache-line aligned"))
        let report = try jsonObject(slotstore("inspect", path, "--json").stdout)
        #expect(bool(dictionary(report["format"])?["cacheLineAligned"]) == true)
        // Every field on its own 64-byte line.
        let offsets = (report["fields"] as? [Any] ?? []).compactMap { int(dictionary($0)?["offset"]) }
        #expect(offsets.count == Self.schema.fields.count)
        #expect(offsets.allSatisfy { $0 % 64 == 0 } && Set(offsets.map { $0 / 64 }).count == offsets.count)

        let plain = directory.file("plain.slots")
        expectSuccess(try slotstore("create", plain, "--schema", schemaFile()))
        #expect(permissions(plain) == 0o600)
        #expect(bool(dictionary(try jsonObject(slotstore("inspect", plain, "--json").stdout)["format"])?["cacheLineAligned"]) == false)

        let before = fileBytes(path)
        let again = try slotstore("create", path, "--schema", schemaFile())
        expectFailure(again, status: 2, naming: path)
        #expect(fileBytes(path) == before)
    }

    @Test("inspect prints the lock and journal lines and every field with its type")
    func inspectText() throws {
        let path = try createStore("inspect.slots")
        expectSuccess(try slotstore("set", path, "i64", "12345"))
        let result = try slotstore("inspect", path)
        expectSuccess(result)
        let lines = result.stdout.split(separator: "\n").map(String.init)
        #expect(lines.first == path)
        #expect(lines.contains("  lock      free"))
        #expect(lines.contains("  journal   clean"))
        #expect(lines.contains { $0.hasPrefix("  format    \(FileHeader.versionString(for: Self.schema)), page ") })
        #expect(lines.contains { $0.hasPrefix("  schema    version 3, hash 0x") && $0.hasSuffix("\(Self.schema.fields.count) fields") })
        #expect(lines.contains { $0.hasPrefix("  regions   header 0+") && $0.contains("lock ") && $0.contains("journal ") && $0.contains("data ") })
        for field in Self.schema.fields {
            #expect(lines.contains { $0.hasPrefix("    \(field.name) ") && $0.contains(" \(field.type.description) ") },
                    "no row for \(field.name) in:\n\(result.stdout)")
        }
        #expect(lines.contains { $0.hasPrefix("    i64 ") && $0.hasSuffix("  12345") })
        #expect(lines.contains { $0.hasPrefix("    ints ") && $0.hasSuffix("  …") }, "arrays show no value")
    }

    struct ValueCase: Sendable, CustomTestStringConvertible {
        let field: String
        let input: String
        /// What `set` echoes after `FIELD = `.
        let stored: String
        /// What `get` prints (strings bare).
        let printed: String
        var testDescription: String { "\(field) \(input)" }

        init(_ field: String, _ input: String, _ stored: String? = nil, printed: String? = nil) {
            self.field = field
            self.input = input
            self.stored = stored ?? input
            self.printed = printed ?? stored ?? input
        }
    }

    static let values: [ValueCase] = [
        ValueCase("i8", "-128"), ValueCase("i8", "127"),
        ValueCase("i16", "32767"), ValueCase("i32", "-2147483648"),
        ValueCase("i64", "9223372036854775807"), ValueCase("i64", "-9223372036854775808"),
        ValueCase("u8", "255"), ValueCase("u16", "65535"), ValueCase("u32", "4294967295"),
        ValueCase("u64", "18446744073709551615"),
        ValueCase("f32", "2.5"), ValueCase("f32", "0.1", "0.10000000149011612"),
        ValueCase("f64", "-1.25"), ValueCase("f64", "1e300", "1e+300"), ValueCase("f64", "3.0", "3"),
        ValueCase("f64", "nan"), ValueCase("f64", "-inf"), ValueCase("f64", "-0"),
        ValueCase("flag", "true"), ValueCase("flag", "false"), ValueCase("flag", "1", "true"),
        ValueCase("name", "hello, world", "\"hello, world\"", printed: "hello, world"),
        ValueCase("name", "", "\"\"", printed: ""),
        ValueCase("name", "héllo ✓", "\"héllo ✓\"", printed: "héllo ✓"),
        ValueCase("blob", "0x00ff10", "0x00ff10"), ValueCase("blob", "0xDEADBEEF", "0xdeadbeef"),
        ValueCase("blob", "abc", "0x616263"),
        ValueCase("ints[3]", "-7"), ValueCase("ints[0]", "9223372036854775807"),
        ValueCase("tiny[4]", "-128"), ValueCase("flags[1]", "true"), ValueCase("reals[2]", "0.5"),
        ValueCase("ints", "[1,2,3,-4]", "[1, 2, 3, -4]"),
        ValueCase("reals", "[0.5, -2, 1e3]", "[0.5, -2, 1000]"),
        ValueCase("flags", "[true,false]", "[true, false]"),
        ValueCase("tiny", "[-128,0,1,2,127]", "[-128, 0, 1, 2, 127]"),
    ]

    @Test("set then get, for every type, array elements and whole arrays", arguments: values)
    func setAndGet(_ value: ValueCase) throws {
        let path = try createStore("value.slots")
        let set = try slotstore("set", path, value.field, value.input)
        expectSuccess(set)
        #expect(set.stdout == "\(value.field) = \(value.stored)\n")
        let get = try slotstore("get", path, value.field)
        expectSuccess(get)
        #expect(get.stdout == value.printed + "\n")
    }

    @Test("an array element write changes only that element")
    func elementWrite() throws {
        let path = try createStore("element.slots")
        expectSuccess(try slotstore("set", path, "ints", "[10,20,30,40]"))
        expectSuccess(try slotstore("set", path, "ints[3]", "-1"))
        #expect(try slotstore("get", path, "ints").stdout == "[10, 20, 30, -1]\n")
        #expect(try slotstore("get", path, "ints[2]").stdout == "30\n")
    }

    @Test("add returns the new value, for signed, unsigned and floating-point fields")
    func add() throws {
        let path = try createStore("add.slots")
        #expect(try slotstore("add", path, "i64", "5").stdout == "5\n")
        #expect(try slotstore("add", path, "i64", "-7").stdout == "-2\n")
        #expect(try slotstore("get", path, "i64").stdout == "-2\n")
        #expect(try slotstore("add", path, "i8", "127").stdout == "127\n")
        #expect(try slotstore("add", path, "u32", "4294967295").stdout == "4294967295\n")
        #expect(try slotstore("add", path, "u32", "-1").stdout == "4294967294\n")
        #expect(try slotstore("add", path, "f64", "0.25").stdout == "0.25\n")
        #expect(try slotstore("add", path, "f64", "-1").stdout == "-0.75\n")
        #expect(try slotstore("add", path, "f32", "1.5").stdout == "1.5\n")
        let json = try slotstore("add", path, "i16", "300", "--json")
        expectSuccess(json)
        let report = try jsonObject(json.stdout)
        #expect(Set(report.keys) == ["field", "value"])
        #expect(report["field"] as? String == "i16" && int(report["value"]) == 300)
        #expect(try slotstore("get", path, "i16").stdout == "300\n")
    }

    // MARK: Values that do not fit

    struct RefusalCase: Sendable, CustomTestStringConvertible {
        let label: String
        /// Set first, and expected to stay.
        let seed: (field: String, value: String)?
        let arguments: [String]
        /// Read afterwards with `get`, and what it must print.
        let check: (field: String, printed: String)
        /// Text stderr must contain (besides the path).
        let mentions: [String]
        var testDescription: String { label }
    }

    static let refusals: [RefusalCase] = [
        RefusalCase(label: "int8 above its range", seed: ("i8", "-5"), arguments: ["set", "i8", "128"],
                    check: ("i8", "-5"), mentions: ["\"i8\"", "outside the range of int8"]),
        RefusalCase(label: "int8 below its range", seed: ("i8", "-5"), arguments: ["set", "i8", "-129"],
                    check: ("i8", "-5"), mentions: ["outside the range of int8"]),
        RefusalCase(label: "negative uint8", seed: ("u8", "7"), arguments: ["set", "u8", "-1"],
                    check: ("u8", "7"), mentions: ["outside the range of uint8"]),
        RefusalCase(label: "uint64 above its range", seed: ("u64", "7"), arguments: ["set", "u64", "18446744073709551616"],
                    check: ("u64", "7"), mentions: ["outside the range of uint64"]),
        RefusalCase(label: "a fraction for an integer", seed: ("i32", "7"), arguments: ["set", "i32", "1.5"],
                    check: ("i32", "7"), mentions: ["\"i32\""]),
        RefusalCase(label: "not a Boolean", seed: ("flag", "true"), arguments: ["set", "flag", "maybe"],
                    check: ("flag", "true"), mentions: ["expected true or false"]),
        RefusalCase(label: "string over capacity", seed: ("name", "kept"), arguments: ["set", "name", String(repeating: "x", count: 25)],
                    check: ("name", "kept"), mentions: ["\"name\"", "capacity is 24"]),
        RefusalCase(label: "multi-byte string over capacity", seed: ("name", "kept"), arguments: ["set", "name", String(repeating: "é", count: 13)],
                    check: ("name", "kept"), mentions: ["26 bytes", "capacity is 24"]),
        RefusalCase(label: "bytes over capacity", seed: ("blob", "0x01"), arguments: ["set", "blob", "0x000102030405060708"],
                    check: ("blob", "0x01"), mentions: ["\"blob\"", "capacity is 8"]),
        RefusalCase(label: "add overflowing int8", seed: ("i8", "100"), arguments: ["add", "i8", "28"],
                    check: ("i8", "100"), mentions: ["128 is outside the range of int8"]),
        RefusalCase(label: "add underflowing uint8", seed: ("u8", "0"), arguments: ["add", "u8", "-1"],
                    check: ("u8", "0"), mentions: ["outside the range of uint8"]),
        RefusalCase(label: "add to a Boolean", seed: ("flag", "true"), arguments: ["add", "flag", "1"],
                    check: ("flag", "true"), mentions: ["add needs an integer or floating-point field"]),
        RefusalCase(label: "add a fraction to an integer", seed: ("i64", "1"), arguments: ["add", "i64", "0.5"],
                    check: ("i64", "1"), mentions: ["\"i64\""]),
        RefusalCase(label: "too few elements", seed: ("ints", "[1,2,3,4]"), arguments: ["set", "ints", "[1,2,3]"],
                    check: ("ints", "[1, 2, 3, 4]"), mentions: ["expected exactly 4 elements, found 3"]),
        RefusalCase(label: "too many elements", seed: ("ints", "[1,2,3,4]"), arguments: ["set", "ints", "[1,2,3,4,5]"],
                    check: ("ints", "[1, 2, 3, 4]"), mentions: ["expected exactly 4 elements, found 5"]),
        RefusalCase(label: "an element out of range", seed: ("tiny", "[1,2,3,4,5]"), arguments: ["set", "tiny", "[9,9,9,9,300]"],
                    check: ("tiny", "[1, 2, 3, 4, 5]"), mentions: ["outside the range of int8"]),
        RefusalCase(label: "set index out of range", seed: ("ints", "[1,2,3,4]"), arguments: ["set", "ints[4]", "9"],
                    check: ("ints", "[1, 2, 3, 4]"), mentions: ["index 4 is out of range 0..<4"]),
        RefusalCase(label: "get index out of range", seed: nil, arguments: ["get", "tiny[5]"],
                    check: ("tiny", "[0, 0, 0, 0, 0]"), mentions: ["index 5 is out of range 0..<5"]),
        RefusalCase(label: "an index on a scalar", seed: ("i64", "3"), arguments: ["set", "i64[0]", "9"],
                    check: ("i64", "3"), mentions: ["an index needs an array field"]),
        RefusalCase(label: "not a JSON array", seed: ("ints", "[1,2,3,4]"), arguments: ["set", "ints", "1,2,3,4"],
                    check: ("ints", "[1, 2, 3, 4]"), mentions: ["expected a JSON array"]),
        RefusalCase(label: "get an unknown field", seed: nil, arguments: ["get", "nope"],
                    check: ("i64", "0"), mentions: ["no field named \"nope\"", fieldNames.joined(separator: ", ")]),
        RefusalCase(label: "set an unknown field", seed: nil, arguments: ["set", "nope", "1"],
                    check: ("i64", "0"), mentions: ["no field named \"nope\"", fieldNames.joined(separator: ", ")]),
        RefusalCase(label: "add to an unknown field", seed: nil, arguments: ["add", "nope", "1"],
                    check: ("i64", "0"), mentions: ["no field named \"nope\"", fieldNames.joined(separator: ", ")]),
    ]

    @Test("a value that does not fit is an error (exit 2, one line naming the path) and the stored value stays",
          arguments: refusals)
    func refused(_ refusal: RefusalCase) throws {
        let path = try createStore("refused.slots")
        if let seed = refusal.seed { expectSuccess(try slotstore("set", path, seed.field, seed.value)) }
        let before = try bytesOutsideLockRegion(path)
        var arguments = refusal.arguments
        arguments.insert(path, at: 1)
        let result = try slotstore(arguments)
        expectFailure(result, status: 2, naming: path)
        #expect(result.stdout.isEmpty)
        for text in refusal.mentions { #expect(result.stderr.contains(text), "stderr lacks \(text): \(result.stderr)") }
        #expect(try bytesOutsideLockRegion(path) == before, "the refused command wrote to the store")
        #expect(try slotstore("get", path, refusal.check.field).stdout == refusal.check.printed + "\n")
    }

    // MARK: JSON output

    @Test("--json of create, inspect, get, set, add, verify, repair and load parse and have the documented keys")
    func jsonShapes() throws {
        let path = directory.file("json.slots")
        let created = try slotstore("create", path, "--schema", schemaFile(), "--json")
        expectSuccess(created)
        let inspectKeys: Set<String> = ["path", "format", "schema", "regions", "lock", "journal", "fields", "attached"]
        #expect(Set(try jsonObject(created.stdout).keys) == inspectKeys)

        expectSuccess(try slotstore("set", path, "name", "json"))
        expectSuccess(try slotstore("set", path, "blob", "0x0a0bff"))
        let inspected = try slotstore("inspect", path, "--json")
        expectSuccess(inspected)
        let report = try jsonObject(inspected.stdout)
        #expect(Set(report.keys) == inspectKeys)
        #expect(report["path"] as? String == path)
        let format = try #require(dictionary(report["format"]))
        #expect(format["version"] as? String == FileHeader.versionString(for: Self.schema))
        #expect(int(format["fileSize"]) == fileBytes(path).count)
        #expect(int(format["generation"]) == 1)
        #expect(format["createdAt"] is String && int(format["pageSize"]).map { $0 >= 4096 } == true)
        let schema = try #require(dictionary(report["schema"]))
        #expect(int(schema["version"]) == 3 && int(schema["fields"]) == Self.schema.fields.count)
        #expect((schema["hash"] as? String)?.hasPrefix("0x") == true)
        let regions = (report["regions"] as? [Any] ?? []).compactMap(dictionary)
        #expect(regions.compactMap { $0["name"] as? String } == ["header", "lock", "journal", "schema", "data"])
        #expect(regions.allSatisfy { int($0["offset"]) != nil && int($0["size"]).map { $0 > 0 } == true })
        let lock = try #require(dictionary(report["lock"]))
        #expect(lock["state"] as? String == "free" && bool(lock["holderAlive"]) == false)
        #expect(lock["holderPID"] == nil, "nil optionals are omitted")
        for key in ["acquisitions", "recoveries", "resets"] { #expect(int(lock[key]) != nil, "lock.\(key)") }
        let journal = try #require(dictionary(report["journal"]))
        #expect(journal["state"] as? String == "clean" && int(journal["records"]) == 0 && int(journal["bytes"]) == 0)
        let fields = (report["fields"] as? [Any] ?? []).compactMap(dictionary)
        #expect(fields.compactMap { $0["name"] as? String } == Self.fieldNames)
        #expect(fields.compactMap { $0["type"] as? String } == Self.schema.fields.map(\.type.description))
        #expect(fields.first { $0["name"] as? String == "name" }?["value"] as? String == "json")
        #expect(dictionary(fields.first { $0["name"] as? String == "blob" }?["value"])?["base64"] as? String == "Cgv/")
        #expect(fields.first { $0["name"] as? String == "ints" }?["value"] == nil, "arrays have no value in the listing")
        #expect(fields.allSatisfy { bool($0["midWrite"]) == false && Set($0.keys).isSubset(of: ["midWrite", "name", "offset", "size", "type", "value"]) })

        let get = try jsonObject(slotstore("get", path, "blob", "--json").stdout)
        #expect(Set(get.keys) == ["field", "value"])
        #expect(get["field"] as? String == "blob" && dictionary(get["value"])?["base64"] as? String == "Cgv/")
        let element = try jsonObject(slotstore("set", path, "ints[1]", "-9", "--json").stdout)
        #expect(element["field"] as? String == "ints[1]" && int(element["value"]) == -9)
        let array = try jsonObject(slotstore("get", path, "ints", "--json").stdout)
        #expect((array["value"] as? [Any])?.compactMap(int) == [0, -9, 0, 0])
        let special = try jsonObject(slotstore("set", path, "f64", "-inf", "--json").stdout)
        #expect(special["value"] as? String == "-inf", "JSON has no number for -inf")
        let flag = try jsonObject(slotstore("set", path, "flag", "true", "--json").stdout)
        #expect(Set(flag.keys) == ["field", "value"] && bool(flag["value"]) == true)
        let added = try jsonObject(slotstore("add", path, "u64", "41", "--json").stdout)
        #expect(added["field"] as? String == "u64" && int(added["value"]) == 41)

        let verified = try slotstore("verify", path, "--json")
        expectSuccess(verified)
        let verification = try jsonObject(verified.stdout)
        #expect(Set(verification.keys) == ["path", "ok", "checked", "findings", "notes"])
        #expect(verification["path"] as? String == path && bool(verification["ok"]) == true)
        #expect(verification["checked"] as? [String] == ["header", "schema", "layout", "lock", "journal", "fields"])
        #expect((verification["findings"] as? [Any])?.isEmpty == true)

        for dryRun in [false, true] {
            let repaired = try slotstore(["repair", path, "--json"] + (dryRun ? ["--dry-run"] : []))
            expectSuccess(repaired)
            let repair = try jsonObject(repaired.stdout)
            #expect(Set(repair.keys) == ["path", "dryRun", "actions"], "refused is omitted when nil: \(repair.keys)")
            #expect(repair["path"] as? String == path && bool(repair["dryRun"]) == dryRun)
            #expect((repair["actions"] as? [Any])?.isEmpty == true)
        }

        let dumpPath = directory.file("json-dump.json")
        expectSuccess(try slotstore("dump", path, "--output", dumpPath))
        let loaded = try slotstore("load", directory.file("json-loaded.slots"), dumpPath, "--json")
        expectSuccess(loaded)
        let load = try jsonObject(loaded.stdout)
        #expect(Set(load.keys) == ["path", "created", "fields"])
        #expect(bool(load["created"]) == true && int(load["fields"]) == Self.schema.fields.count)
    }

    // MARK: Dump and load

    /// Values in every type, set through the tool.
    func fillEveryType(_ path: String) throws {
        let settings: [(String, String)] = [
            ("i8", "-100"), ("i16", "-30000"), ("i32", "2000000000"), ("i64", "-9223372036854775808"),
            ("u8", "200"), ("u16", "60000"), ("u32", "4000000000"), ("u64", "18446744073709551615"),
            ("f32", "0.1"), ("f64", "nan"), ("flag", "true"), ("name", "✓ \"q\" \\ x\ny"),
            ("blob", "0x00ff7f80"), ("ints", "[-1,0,1,9223372036854775807]"), ("reals", "[\"-0\",\"inf\",2.5]"),
            ("flags", "[false,true]"), ("tiny", "[-128,-1,0,1,127]"),
        ]
        for (field, value) in settings { expectSuccess(try slotstore("set", path, field, value)) }
    }

    @Test("dump, load into a new path, dump again: the two dumps are byte-equal")
    func dumpLoadRoundTrip() throws {
        let path = try createStore("original.slots")
        try fillEveryType(path)
        let first = try slotstore("dump", path)
        expectSuccess(first)
        let dump = try jsonObject(first.stdout)
        #expect(dump["format"] as? String == "slotstore-dump" && int(dump["formatVersion"]) == 1)
        let values = try #require(dictionary(dump["values"]))
        #expect(Set(values.keys) == Set(Self.fieldNames))
        #expect(values["f64"] as? String == "nan" && values["name"] as? String == "✓ \"q\" \\ x\ny")
        #expect((values["reals"] as? [Any])?.count == 3)
        let dumpPath = directory.file("dump.json")
        writeFileBytes(dumpPath, Array(first.stdout.utf8))

        let copy = directory.file("copy.slots")
        let loaded = try slotstore("load", copy, dumpPath, "--mode", "0640")
        expectSuccess(loaded)
        #expect(loaded.stdout == "loaded \(Self.schema.fields.count) fields into \(copy) (created)\n")
        #expect(permissions(copy) == 0o640)
        let second = try slotstore("dump", copy)
        expectSuccess(second)
        #expect(second.stdout == first.stdout)
        // --output writes the same text.
        let outputPath = directory.file("dump-output.json")
        expectSuccess(try slotstore("dump", copy, "--output", outputPath))
        #expect(fileBytes(outputPath) == Array(first.stdout.utf8))
        #expect(try slotstore("verify", copy).succeeded)
    }

    @Test("load into an existing store changes the dump's values together and keeps the others")
    func loadIntoExisting() throws {
        let path = try createStore("existing.slots")
        expectSuccess(try slotstore("set", path, "i64", "1"))
        expectSuccess(try slotstore("set", path, "name", "untouched"))
        let dumpPath = try writeDump("partial.json", values: #"{"i64": 99, "u8": 5, "ints": [4,3,2,1], "blob": {"base64": "AQID"}, "flag": true}"#)
        let loaded = try slotstore("load", path, dumpPath)
        expectSuccess(loaded)
        #expect(loaded.stdout == "loaded 5 fields into \(path)\n")
        #expect(try slotstore("get", path, "i64").stdout == "99\n")
        #expect(try slotstore("get", path, "u8").stdout == "5\n")
        #expect(try slotstore("get", path, "ints").stdout == "[4, 3, 2, 1]\n")
        #expect(try slotstore("get", path, "blob").stdout == "0x010203\n")
        #expect(try slotstore("get", path, "flag").stdout == "true\n")
        #expect(try slotstore("get", path, "name").stdout == "untouched\n")
        let inspection = try jsonObject(slotstore("inspect", path, "--json").stdout)
        #expect(dictionary(inspection["journal"])?["state"] as? String == "clean")
    }

    @Test("load of a dump with a value that does not fit is refused with exit 2 and changes nothing",
          arguments: [
              #"{"i64": 99, "name": "new", "i8": 300}"#,
              #"{"i64": 99, "name": "this string is longer than twenty-four bytes"}"#,
              #"{"i64": 99, "ints": [1, 2, 3]}"#,
              #"{"i64": 99, "flag": "yes"}"#,
              #"{"i64": 99, "nope": 1}"#,
          ])
    func loadRefused(values: String) throws {
        let path = try createStore("load-refused.slots")
        expectSuccess(try slotstore("set", path, "i64", "1"))
        expectSuccess(try slotstore("set", path, "name", "old"))
        let before = try slotstore("dump", path).stdout
        let bytes = try bytesOutsideLockRegion(path)
        let dumpPath = try writeDump("bad.json", values: values)
        let result = try slotstore("load", path, dumpPath)
        expectFailure(result, status: 2, naming: path)
        // The lock region's counters record the tool's open; nothing else may change.
        #expect(try bytesOutsideLockRegion(path) == bytes)
        #expect(try slotstore("dump", path).stdout == before)
    }

    @Test("load refuses a file that is not a dump, and a newer dump format, naming the dump")
    func loadNotADump() throws {
        let path = try createStore("not-a-dump.slots")
        let bytes = try bytesOutsideLockRegion(path)
        let text = directory.file("text.json")
        writeFileBytes(text, Array("hello".utf8))
        let newer = directory.file("newer.json")
        writeFileBytes(newer, Array(#"{"format":"slotstore-dump","formatVersion":2,"schema":\#(Self.schema.json),"values":{}}"#.utf8))
        let other = directory.file("other.json")
        writeFileBytes(other, Array(#"{"format":"something-else","formatVersion":1,"schema":\#(Self.schema.json),"values":{}}"#.utf8))
        for dump in [text, newer, other, directory.file("missing.json")] {
            let result = try slotstore("load", path, dump)
            #expect(!result.signaled && result.status == 2, "\(dump): \(result)")
            #expect(firstLine(result.stderr).contains(dump), "\(result.stderr)")
        }
        #expect(try bytesOutsideLockRegion(path) == bytes)
    }

    // MARK: Files that are not usable stores

    enum BadFile: String, CaseIterable, Sendable {
        case missing, directory, empty, truncatedHeader, truncatedData, randomBytes, wrongVersion

        /// The code `verify` reports, or nil when there is no file to verify (exit 2).
        var verifyCode: String? {
            switch self {
            case .missing, .directory: nil
            case .empty: "empty"
            case .truncatedHeader, .truncatedData: "truncated"
            case .randomBytes: "magic"
            case .wrongVersion: "version"
            }
        }
    }

    /// Builds the bad file from a valid store's bytes.
    func makeBadFile(_ kind: BadFile) throws -> String {
        let path = directory.file("bad-\(kind.rawValue).slots")
        if kind == .missing { return path }
        if kind == .directory {
            try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: false)
            return path
        }
        let valid = try createStore("valid-\(kind.rawValue).slots")
        expectSuccess(try slotstore("set", valid, "i64", "7"))
        let bytes = fileBytes(valid)
        switch kind {
        case .empty: writeFileBytes(path, [])
        case .truncatedHeader: writeFileBytes(path, Array(bytes.prefix(100)))
        case .truncatedData: writeFileBytes(path, Array(bytes.prefix(bytes.count - 100)))
        case .randomBytes:
            var random = SystemRandomNumberGenerator()
            writeFileBytes(path, (0..<bytes.count).map { _ in UInt8.random(in: 0...255, using: &random) })
        case .wrongVersion:
            writeFileBytes(path, bytes)
            var header = try FileHeader.decode(Array(bytes.prefix(FileHeader.size)), path: path)
            header.formatMajor = 3
            patchFile(path, at: 0, header.encoded())
            patchFile(path, at: FileHeader.copyOffset, header.encoded())
        case .missing, .directory: break
        }
        return path
    }

    @Test("every command on a file that is not a usable store: no crash, the documented exit, one line naming the path, nothing written",
          arguments: BadFile.allCases)
    func badFiles(_ kind: BadFile) throws {
        let path = try makeBadFile(kind)
        let dumpPath = try writeDump("good.json", values: #"{"i64": 1}"#)
        let before = fileBytes(path)
        var commands: [[String]] = [
            ["inspect", path], ["inspect", path, "--json"], ["get", path, "i64"], ["set", path, "i64", "1"],
            ["add", path, "i64", "1"], ["dump", path],
        ]
        // On a missing path load creates a store: that is its job, not an error.
        if kind != .missing { commands.append(["load", path, dumpPath]) }
        for command in commands {
            expectFailure(try slotstore(command), status: 2, naming: path)
        }

        let verify = try slotstore("verify", path)
        let verifyJSON = try slotstore("verify", path, "--json")
        let repair = try slotstore("repair", path)
        let repairJSON = try slotstore("repair", path, "--json")
        if let code = kind.verifyCode {
            // A file is there: verify reports a finding and repair refuses (exit 1).
            #expect(!verify.signaled && verify.status == 1, "\(verify)")
            #expect(verify.stdout.hasPrefix("\(path): 1 problem found\n") && verify.stdout.contains("  \(code): "), "\(verify.stdout)")
            #expect(verify.stderr.isEmpty)
            let report = try jsonObject(verifyJSON.stdout)
            #expect(verifyJSON.status == 1 && bool(report["ok"]) == false)
            #expect((report["findings"] as? [Any])?.compactMap { dictionary($0)?["code"] as? String } == [code])
            expectFailure(repair, status: 1, naming: path)
            // A newer version in both copies is not damage: repair says to use a newer build, not to restore.
            #expect(repair.stderr.contains(kind == .wrongVersion ? "it is not damaged: use a newer slotstore" : "refused: neither header copy is intact"),
                    "\(repair.stderr)")
            #expect(repair.stdout.isEmpty)
            let refusal = try jsonObject(repairJSON.stdout)
            #expect(repairJSON.status == 1 && (refusal["refused"] as? String)?.isEmpty == false)
            #expect((refusal["actions"] as? [Any])?.isEmpty == true)
        } else {
            for result in [verify, verifyJSON, repair, repairJSON] {
                expectFailure(result, status: 2, naming: path)
            }
        }
        if kind == .wrongVersion {
            #expect(try slotstore("get", path, "i64").stderr.contains("format version 3.\(FileHeader.version(for: Self.schema).minor)"))
        }
        if kind == .missing {
            #expect(!FileManager.default.fileExists(atPath: path), "a read-only command created the store")
        } else if kind != .directory {
            #expect(fileBytes(path) == before, "a command wrote to the bad file")
        }
    }

    @Test("an unreadable store: every command exits 2 with one line naming the path (as user nobody)",
          .enabled(if: getuid() == 0 && FileManager.default.isExecutableFile(atPath: "/usr/bin/setpriv")))
    func unreadable() throws {
        let shared = TemporaryDirectory(on: "/tmp")
        chmod(shared.path, 0o755)
        let path = shared.file("root-only.slots")
        expectSuccess(try slotstore("create", path, "--schema", schemaFile()))
        let dumpPath = shared.file("dump.json")
        writeFileBytes(dumpPath, Array(#"{"format":"slotstore-dump","formatVersion":1,"schema":\#(Self.schema.json),"values":{"i64":1}}"#.utf8))
        chmod(dumpPath, 0o644)
        let before = fileBytes(path)
        for command in [["inspect", path], ["get", path, "i64"], ["set", path, "i64", "1"], ["add", path, "i64", "1"],
                        ["dump", path], ["load", path, dumpPath], ["verify", path], ["repair", path]] {
            let result = try runAsNobody([Tool.executable] + command)
            expectFailure(result, status: 2, naming: path)
            #expect(result.stderr.contains("permission denied"), "\(command[0]): \(result.stderr)")
        }
        #expect(fileBytes(path) == before)
    }

    // MARK: Usage errors and help

    @Test("usage errors: unknown command, unknown option, missing or malformed arguments exit 2 without a crash")
    func usageErrors() throws {
        let path = try createStore("usage.slots")
        let bytes = try bytesOutsideLockRegion(path)
        let newPath = directory.file("never.slots")
        let missingSchema = directory.file("missing-schema.json")
        let cases: [(arguments: [String], firstLine: String)] = [
            (["bogus"], "slotstore: unknown command \"bogus\""),
            (["get", path, "i64", "--bogus"], "slotstore get: unknown option --bogus"),
            (["inspect", path, "--jsn"], "slotstore inspect: unknown option --jsn"),
            (["verify", path, "extra"], "slotstore verify: unexpected argument \"extra\""),
            (["get"], "slotstore get: missing store path"),
            (["get", path], "slotstore get: missing FIELD, FIELD[INDEX] or MAP[KEY]"),
            (["set", path, "i64"], "slotstore set: missing VALUE"),
            (["add", path, "i64"], "slotstore add: missing N"),
            (["add", path, "i64", "lots"], "slotstore add: N must be a number, found \"lots\""),
            (["set", path, "ints[x]", "1"], "slotstore set: expected FIELD or FIELD[INDEX]"),
            (["get", path, "ints[-1]"], "slotstore get: expected FIELD or FIELD[INDEX]"),
            (["repair"], "slotstore repair: missing store path"),
            (["load", path], "slotstore load: missing dump file"),
            (["dump", path, "--output"], "slotstore dump: --output needs a value"),
            (["create", newPath], "slotstore create: --schema SCHEMA.json is required"),
            (["create", newPath, "--schema", missingSchema], "slotstore create: \(missingSchema): cannot read the schema: no such file"),
            (["create", newPath, "--schema", try schemaFile(), "--mode", "999"], "slotstore create: --mode takes octal permissions"),
            (["load", path, directory.file("d.json"), "--mode", "rw"], "slotstore load: --mode takes octal permissions"),
            (["demo", "--workers", "0"], "slotstore demo: --workers takes a whole number from 1 to 32"),
        ]
        for (arguments, expected) in cases {
            let result = try slotstore(arguments)
            #expect(!result.signaled && result.status == 2, "\(arguments): \(result)")
            #expect(firstLine(result.stderr).hasPrefix(expected), "\(arguments): \(result.stderr)")
            #expect(result.stdout.isEmpty, "\(arguments): \(result.stdout)")
        }
        // A schema that is not valid is an error about the schema file, on one line.
        let badSchema = directory.file("bad-schema.json")
        writeFileBytes(badSchema, Array(#"{"version":1,"fields":[{"name":"a","type":"array","count":2}]}"#.utf8))
        let invalid = try slotstore("create", newPath, "--schema", badSchema)
        expectFailure(invalid, status: 2, naming: badSchema)
        #expect(!FileManager.default.fileExists(atPath: newPath))
        #expect(try bytesOutsideLockRegion(path) == bytes)

        // No command at all: the overview, exit 2.
        let bare = try slotstore([String]())
        #expect(!bare.signaled && bare.status == 2 && bare.stderr.hasPrefix("usage: slotstore <command>") && bare.stdout.isEmpty)
    }

    @Test("--help for every command, and for the tool, exits 0 with the usage")
    func help() throws {
        for command in ["create", "inspect", "get", "set", "add", "dump", "load", "verify", "repair", "demo", "_worker"] {
            for flag in command == "get" ? ["--help", "-h"] : ["--help"] {
                let result = try slotstore(command, flag)
                expectSuccess(result)
                #expect(result.stdout.hasPrefix("usage: slotstore \(command) "), "\(command) \(flag): \(result.stdout)")
                #expect(result.stderr.isEmpty)
            }
        }
        // --help wins over other arguments, so it never touches a store.
        let helped = try slotstore("repair", directory.file("no-such.slots"), "--help")
        expectSuccess(helped)
        #expect(!FileManager.default.fileExists(atPath: directory.file("no-such.slots")))
        for words in [["--help"], ["-h"], ["help"]] {
            let result = try slotstore(words)
            expectSuccess(result)
            for command in ["create", "inspect", "get", "set", "add", "dump", "load", "verify", "repair"] {
                #expect(result.stdout.contains("\n  \(command) "), "the overview lists \(command)")
            }
            #expect(!result.stdout.contains("_worker"), "hidden commands are not listed")
        }
        let version = try slotstore("--version")
        expectSuccess(version)
        #expect(version.stdout.hasPrefix("slotstore "))
    }

    // MARK: verify and repair on planted damage

    @Test("a flipped header byte: verify finds header-checksum, repair restores it from the copy, values intact")
    func damagedHeader() throws {
        let path = try createStore("header.slots")
        expectSuccess(try slotstore("set", path, "i64", "4242"))
        expectSuccess(try slotstore("set", path, "name", "survives"))
        let original = fileBytes(path)
        patchFile(path, at: 40, [original[40] ^ 0xFF])
        let damaged = fileBytes(path)

        let verify = try slotstore("verify", path)
        #expect(verify.status == 1 && verify.stdout.contains("  header-checksum: "), "\(verify)")
        #expect(verify.stdout.contains("the copy at offset 2048 is intact"))
        #expect(try findingCodes(path) == ["header-checksum"])
        expectFailure(try slotstore("get", path, "i64"), status: 2, naming: path)
        #expect(fileBytes(path) == damaged, "verify and a refused open wrote nothing")

        let dryRun = try slotstore("repair", path, "--dry-run")
        expectSuccess(dryRun)
        #expect(dryRun.stdout.contains("would:") && dryRun.stdout.contains("restore the header from its copy at offset 2048"))
        #expect(fileBytes(path) == damaged, "--dry-run wrote")

        let repair = try slotstore("repair", path)
        expectSuccess(repair)
        #expect(repair.stdout.hasPrefix("\(path): did:\n  - restore the header from its copy at offset 2048"), "\(repair.stdout)")
        #expect(Array(fileBytes(path).prefix(4096)) == Array(original.prefix(4096)), "the header page is as before the damage")
        #expect(try slotstore("verify", path).succeeded)
        #expect(try slotstore("get", path, "i64").stdout == "4242\n")
        #expect(try slotstore("get", path, "name").stdout == "survives\n")
        #expect(try slotstore("repair", path).stdout == "\(path): nothing to repair\n")
    }

    @Test("a damaged header copy: verify finds header-copy, the store still opens, repair rewrites the copy")
    func damagedHeaderCopy() throws {
        let path = try createStore("copy.slots")
        expectSuccess(try slotstore("set", path, "i64", "77"))
        let original = fileBytes(path)
        patchFile(path, at: FileHeader.copyOffset + 40, [original[FileHeader.copyOffset + 40] ^ 0xFF])
        let damaged = fileBytes(path)

        let verify = try slotstore("verify", path)
        #expect(verify.status == 1 && verify.stdout.contains("  header-copy: "), "\(verify)")
        #expect(try findingCodes(path) == ["header-copy"])
        #expect(fileBytes(path) == damaged)
        #expect(try slotstore("get", path, "i64").stdout == "77\n", "the primary header is intact")

        let repair = try slotstore("repair", path, "--json")
        expectSuccess(repair)
        let report = try jsonObject(repair.stdout)
        #expect(report["actions"] as? [String] == ["rewrite the header copy at offset 2048 from the header"])
        #expect(report["refused"] == nil)
        #expect(Array(fileBytes(path).prefix(4096)) == Array(original.prefix(4096)))
        #expect(try slotstore("verify", path).succeeded)
        #expect(try slotstore("get", path, "i64").stdout == "77\n")
    }

    @Test("both header copies damaged: verify finds it, repair refuses (exit 1) and writes nothing")
    func bothHeadersDamaged() throws {
        let path = try createStore("both.slots")
        let original = fileBytes(path)
        patchFile(path, at: 40, [original[40] ^ 0xFF])
        patchFile(path, at: FileHeader.copyOffset + 40, [original[FileHeader.copyOffset + 40] ^ 0xFF])
        let damaged = fileBytes(path)
        let verify = try slotstore("verify", path)
        #expect(verify.status == 1 && verify.stdout.contains("header-checksum") && verify.stdout.contains("the header copy is unusable too"))
        let repair = try slotstore("repair", path)
        expectFailure(repair, status: 1, naming: path)
        #expect(repair.stderr.contains("refused: neither header copy is intact"))
        #expect(fileBytes(path) == damaged)
    }

    @Test("truncation: verify exits 1, repair does not crash and does not claim success", arguments: [1, 4096, 70_000])
    func truncated(cut: Int) throws {
        let path = try createStore("truncated.slots")
        let original = fileBytes(path)
        writeFileBytes(path, Array(original.prefix(original.count - cut)))
        let truncated = fileBytes(path)
        let verify = try slotstore("verify", path)
        #expect(!verify.signaled && verify.status == 1, "\(verify)")
        #expect(try findingCodes(path).contains("truncated"))
        let repair = try slotstore("repair", path)
        #expect(!repair.signaled && repair.status == 1, "\(repair)")
        #expect(!repair.stdout.contains("did:") && !repair.stdout.contains("nothing to repair"))
        #expect(repair.stderr.contains("refused"))
        let json = try jsonObject(slotstore("repair", path, "--json").stdout)
        #expect(json["refused"] is String)
        #expect(fileBytes(path) == truncated)
        // Still verify's problem afterwards: nothing was falsely mended.
        #expect(try slotstore("verify", path).status == 1)
    }

    @Test("corrupted stored schema bytes: verify finds schema, repair refuses, nothing is written")
    func corruptSchema() throws {
        let path = try createStore("schema.slots")
        let header = try FileHeader.decode(Array(fileBytes(path).prefix(FileHeader.size)), path: path)
        patchFile(path, at: Int(header.schemaOffset) + 3, Array("XX".utf8))
        let damaged = fileBytes(path)
        let verify = try slotstore("verify", path)
        #expect(verify.status == 1 && verify.stdout.contains("  schema: "), "\(verify)")
        #expect(try findingCodes(path) == ["schema"])
        let repair = try slotstore("repair", path)
        expectFailure(repair, status: 1, naming: path)
        #expect(repair.stderr.contains("the stored schema is damaged"))
        expectFailure(try slotstore("get", path, "i64"), status: 2, naming: path)
        expectFailure(try slotstore("inspect", path), status: 2, naming: path)
        #expect(fileBytes(path) == damaged)
    }

    @Test("a writer SIGKILLed mid-write: verify finds journal-dirty and lock-owner-dead, --dry-run writes nothing, repair rolls back")
    func dirtyJournal() throws {
        let path = try createStore("dirty.slots")
        expectSuccess(try slotstore("set", path, "name", "old value"))
        expectSuccess(try slotstore("set", path, "i64", "5"))
        let writer = try Tool.run(["_worker", "set-string", path, "name", "new value, never landed"],
                                  environment: ["SLOTSTORE_FAULT": "midWrite:kill"])
        try #require(writer.killedBySIGKILL, "the writer should die by SIGKILL mid-write: \(writer)")
        let dirty = fileBytes(path)

        let verify = try slotstore("verify", path)
        #expect(verify.status == 1, "\(verify)")
        #expect(verify.stdout.contains("  journal-dirty: ") && verify.stdout.contains("  lock-owner-dead: "))
        let codes = try findingCodes(path)
        #expect(codes.contains("journal-dirty") && codes.contains("lock-owner-dead"), "\(codes)")
        let inspect = try slotstore("inspect", path)
        expectSuccess(inspect)
        #expect(inspect.stdout.contains("  lock      needs recovery: held by PID "))
        #expect(inspect.stdout.contains("  journal   dirty: 1 record, "))
        let inspection = try jsonObject(slotstore("inspect", path, "--json").stdout)
        #expect(dictionary(inspection["lock"])?["state"] as? String == "needs-recovery")
        #expect(bool(dictionary(inspection["lock"])?["holderAlive"]) == false)
        #expect(dictionary(inspection["journal"])?["state"] as? String == "dirty")
        // The interrupted field is marked, with no (torn) value; the others show theirs.
        #expect(inspect.stdout.split(separator: "\n").contains { $0.hasPrefix("    name ") && $0.hasSuffix("  (mid-write; the journal holds the old value)") },
                "\(inspect.stdout)")
        let fields = (inspection["fields"] as? [Any] ?? []).compactMap(dictionary)
        let interrupted = try #require(fields.first { $0["name"] as? String == "name" })
        #expect(bool(interrupted["midWrite"]) == true && interrupted["value"] == nil)
        #expect(fields.filter { bool($0["midWrite"]) == true }.count == 1)
        #expect(int(fields.first { $0["name"] as? String == "i64" }?["value"]) == 5)
        #expect(fileBytes(path) == dirty, "verify and inspect wrote")

        let plan = try slotstore("repair", path, "--dry-run")
        expectSuccess(plan)
        #expect(plan.stdout.hasPrefix("\(path): would:\n"))
        #expect(plan.stdout.contains("roll back the interrupted write in the journal"))
        let planJSON = try jsonObject(slotstore("repair", path, "--dry-run", "--json").stdout)
        #expect(bool(planJSON["dryRun"]) == true && (planJSON["actions"] as? [String])?.isEmpty == false)
        #expect(planJSON["refused"] == nil)
        #expect(fileBytes(path) == dirty, "--dry-run wrote")

        let repair = try slotstore("repair", path)
        expectSuccess(repair)
        #expect(repair.stdout.hasPrefix("\(path): did:\n"))
        #expect(repair.stdout.contains("roll back the interrupted write in the journal"))
        let after = try slotstore("verify", path)
        #expect(after.succeeded, "\(after)")
        #expect(try slotstore("get", path, "name").stdout == "old value\n")
        #expect(try slotstore("get", path, "i64").stdout == "5\n")
        let repaired = try jsonObject(slotstore("inspect", path, "--json").stdout)
        #expect(dictionary(repaired["lock"])?["state"] as? String == "free")
        #expect(dictionary(repaired["journal"])?["state"] as? String == "clean")
        #expect((repaired["fields"] as? [Any] ?? []).compactMap(dictionary).allSatisfy { bool($0["midWrite"]) == false })
        #expect(try slotstore("repair", path).stdout == "\(path): nothing to repair\n")
        expectSuccess(try slotstore("set", path, "name", "writable again"))
    }

    @Test("repair while another process has the store open recovers a SIGKILLed holder's lock; the lock is free afterwards")
    func repairWithAnotherOpener() throws {
        let path = try createStore("opener.slots")
        expectSuccess(try slotstore("set", path, "name", "kept"))
        // This test process is the other opener, for the whole test.
        let store = try SlotStore(path: path)
        defer { store.close() }
        let holder = try Tool.Holder(["_worker", "hold-lock", path])
        try #require(holder.isHolding)
        let pid = holder.pid
        holder.kill()
        #expect(try store.status.lockHolderPID == pid && !store.status.lockHolderAlive)

        // The holder died with nothing half written: verify notes it, a writer or repair takes it over.
        let verify = try slotstore("verify", path)
        #expect(verify.status == 0 && verify.stdout.contains("note: the lock is held by PID \(pid)"), "\(verify.stdout)")
        #expect(try !findingCodes(path).contains("lock-owner-dead"))

        let plan = try slotstore("repair", path, "--dry-run")
        expectSuccess(plan)
        #expect(plan.stdout.contains("recover the lock left by PID \(pid) (not running)"), "\(plan.stdout)")
        #expect(try store.status.lockHolderPID == pid, "--dry-run recovered the lock")

        let repair = try slotstore("repair", path)
        expectSuccess(repair)
        #expect(repair.stdout.hasPrefix("\(path): did:\n  - recover the lock left by PID \(pid) (not running)"), "\(repair.stdout)")
        let status = try store.status
        #expect(status.lockHolderPID == nil && !status.lockNeedsRecovery && !status.journalDirty)
        #expect(status.recoveries == 1 && status.lastRecoveredPID == pid)
        let lock = try #require(dictionary(try jsonObject(slotstore("inspect", path, "--json").stdout)["lock"]))
        #expect(lock["state"] as? String == "free" && lock["holderPID"] == nil)
        #expect(try slotstore("verify", path).succeeded)
        // The lock really is usable: by the tool, and by this process.
        expectSuccess(try slotstore("set", path, "name", "after repair"))
        try store.string("name").store("in process")
        #expect(try slotstore("get", path, "name").stdout == "in process\n")
    }

    @Test("repair while another process has the store open rolls back a SIGKILLed writer's interrupted write")
    func repairRollsBackWithAnotherOpener() throws {
        let path = try createStore("opener-write.slots")
        expectSuccess(try slotstore("set", path, "name", "the old value"))
        let store = try SlotStore(path: path)
        defer { store.close() }
        let writer = try Tool.Holder(["_worker", "set-string", path, "name", "a new value, never"],
                                     environment: ["SLOTSTORE_FAULT": "midWrite:hold"])
        try #require(writer.isHolding)
        writer.kill()
        #expect(try store.status.journalDirty)
        let codes = try findingCodes(path)
        #expect(codes.contains("journal-dirty") && codes.contains("lock-owner-dead"), "\(codes)")
        let repair = try slotstore("repair", path)
        expectSuccess(repair)
        #expect(repair.stdout.contains("roll back its interrupted write (1 journal record)"), "\(repair.stdout)")
        #expect(try !store.status.journalDirty && store.status.lockHolderPID == nil)
        #expect(try store.string("name").load() == "the old value")
        #expect(try slotstore("get", path, "name").stdout == "the old value\n")
        #expect(try slotstore("verify", path).succeeded)
    }

    @Test("repair refuses (exit 1, naming the PID) while a live process holds the lock, and changes nothing")
    func repairRefusesLiveHolder() throws {
        let path = try createStore("live.slots")
        expectSuccess(try slotstore("set", path, "name", "unchanged"))
        let holder = try Tool.Holder(["_worker", "hold-lock", path])
        defer { if holder.process.isRunning { holder.kill() } }
        try #require(holder.isHolding)
        let before = fileBytes(path)

        for arguments in [["repair", path], ["repair", path, "--dry-run"]] {
            let result = try slotstore(arguments)
            expectFailure(result, status: 1, naming: path)
            #expect(result.stderr.contains("refused: PID \(holder.pid) is running and holds the lock"), "\(result.stderr)")
            #expect(result.stdout.isEmpty)
        }
        let json = try slotstore("repair", path, "--json")
        #expect(json.status == 1)
        let report = try jsonObject(json.stdout)
        #expect((report["refused"] as? String)?.contains("PID \(holder.pid)") == true)
        #expect((report["actions"] as? [Any])?.isEmpty == true && bool(report["dryRun"]) == false)
        #expect(fileBytes(path) == before, "a refused repair wrote")
        #expect(holder.isHolding)

        holder.kill()
        // Now the holder is gone and nobody has the store open: repair resets the lock.
        let repair = try slotstore("repair", path)
        expectSuccess(repair)
        #expect(repair.stdout.contains("reset the lock held by PID \(holder.pid)"), "\(repair.stdout)")
        #expect(try slotstore("verify", path).succeeded)
        #expect(try slotstore("get", path, "name").stdout == "unchanged\n")
    }

    @Test("verify and inspect never write, and inspect does not wait for a live lock holder")
    func readOnlyCommands() throws {
        let path = try createStore("readonly.slots")
        try fillEveryType(path)
        let clean = fileBytes(path)
        for arguments in [["verify", path], ["verify", path, "--json"], ["inspect", path], ["inspect", path, "--json"]] {
            expectSuccess(try slotstore(arguments))
        }
        #expect(fileBytes(path) == clean)

        let holder = try Tool.Holder(["_worker", "hold-lock", path])
        defer { if holder.process.isRunning { holder.kill() } }
        try #require(holder.isHolding)
        let held = fileBytes(path)
        let inspect = try slotstore("inspect", path)
        expectSuccess(inspect)
        #expect(inspect.stdout.contains("  lock      held by PID \(holder.pid) (running)"), "\(inspect.stdout)")
        let lock = try #require(dictionary(try jsonObject(slotstore("inspect", path, "--json").stdout)["lock"]))
        #expect(lock["state"] as? String == "held" && int(lock["holderPID"]) == Int(holder.pid) && bool(lock["holderAlive"]) == true)
        let verify = try slotstore("verify", path)
        #expect(verify.succeeded, "a live holder with a clean journal is not a problem: \(verify)")
        #expect(try slotstore("verify", path, "--json").succeeded)
        #expect(fileBytes(path) == held, "inspect or verify wrote while the lock was held")
        #expect(holder.isHolding)
    }

    // MARK: Known product issues (see the report)

    @Test("a string field holding nan, inf, -inf or -0 survives dump and load", arguments: ["nan", "inf", "-inf", "-0"])
    func specialStringRoundTrip(text: String) throws {
        let path = try createStore("special-string.slots")
        expectSuccess(try slotstore("set", path, "name", text))
        let dumped = try slotstore("dump", path)
        expectSuccess(dumped)
        let dumpPath = directory.file("special.json")
        writeFileBytes(dumpPath, Array(dumped.stdout.utf8))
        let loaded = try slotstore("load", directory.file("special-copy.slots"), dumpPath)
        #expect(loaded.succeeded, "\(loaded.stderr)")
        #expect(try slotstore("get", directory.file("special-copy.slots"), "name").stdout == text + "\n")
    }

    @Test("a refused load into a new path leaves no store behind")
    func refusedLoadCreatesNothing() throws {
        let dumpPath = try writeDump("bad-new.json", values: #"{"i8": 300}"#)
        let path = directory.file("new-from-bad-dump.slots")
        let result = try slotstore("load", path, dumpPath)
        expectFailure(result, status: 2, naming: path)
        #expect(!FileManager.default.fileExists(atPath: path))
        let leftovers = try FileManager.default.contentsOfDirectory(atPath: directory.path).filter { $0.contains("loading") }
        #expect(leftovers.isEmpty, "temporary files left: \(leftovers)")
    }
}

// MARK: Helpers

extension ToolTests {
    func slotstore(_ arguments: String...) throws -> ProcessResult { try Tool.run(arguments) }
    func slotstore(_ arguments: [String]) throws -> ProcessResult { try Tool.run(arguments) }

    /// The suite's schema as a file, for `create --schema`.
    func schemaFile() throws -> String {
        let path = directory.file("schema.json")
        if !FileManager.default.fileExists(atPath: path) { writeFileBytes(path, Self.schema.jsonBytes()) }
        return path
    }

    /// A new store with the suite's schema, made by the tool.
    func createStore(_ name: String, sourceLocation: SourceLocation = #_sourceLocation) throws -> String {
        let path = directory.file(name)
        let result = try slotstore("create", path, "--schema", schemaFile())
        try #require(result.succeeded, "create failed: \(result)", sourceLocation: sourceLocation)
        return path
    }

    /// A dump file with the suite's schema and these values (a JSON object).
    func writeDump(_ name: String, values: String) throws -> String {
        let path = directory.file(name)
        writeFileBytes(path, Array(#"{"format":"slotstore-dump","formatVersion":1,"schema":\#(Self.schema.json),"values":\#(values)}"#.utf8))
        return path
    }

    /// The finding codes of `verify --json`.
    func findingCodes(_ path: String) throws -> [String] {
        let report = try jsonObject(slotstore("verify", path, "--json").stdout)
        return (report["findings"] as? [Any] ?? []).compactMap { dictionary($0)?["code"] as? String }
    }

    func permissions(_ path: String) -> Int? {
        (try? FileManager.default.attributesOfItem(atPath: path)[.posixPermissions] as? NSNumber)?.intValue
    }

    func expectSuccess(_ result: ProcessResult, sourceLocation: SourceLocation = #_sourceLocation) {
        #expect(result.succeeded, "expected success: \(result)", sourceLocation: sourceLocation)
    }

    /// A clean failure: no signal, this exit status, and exactly one line on stderr naming `path`.
    func expectFailure(_ result: ProcessResult, status: Int32, naming path: String, sourceLocation: SourceLocation = #_sourceLocation) {
        #expect(!result.signaled, "killed by signal \(result.status): \(result)", sourceLocation: sourceLocation)
        #expect(result.status == status, "expected exit \(status): \(result)", sourceLocation: sourceLocation)
        let lines = result.stderr.split(separator: "\n", omittingEmptySubsequences: false)
        #expect(lines.count == 2 && lines[1].isEmpty, "expected one line on stderr: \(result.stderr)", sourceLocation: sourceLocation)
        #expect(result.stderr.contains(path), "stderr does not name \(path): \(result.stderr)", sourceLocation: sourceLocation)
    }
}

private func firstLine(_ text: String) -> String {
    String(text.prefix { $0 != "\n" })
}

private func jsonObject(_ text: String, sourceLocation: SourceLocation = #_sourceLocation) throws -> [String: Any] {
    let parsed = try JSONSerialization.jsonObject(with: Data(text.utf8))
    return try #require(parsed as? [String: Any], "not a JSON object: \(text)", sourceLocation: sourceLocation)
}

private func dictionary(_ value: Any?) -> [String: Any]? { value as? [String: Any] }

private func int(_ value: Any?) -> Int? {
    if let value = value as? Int { return value }
    return (value as? NSNumber)?.intValue
}

private func bool(_ value: Any?) -> Bool? {
    if let value = value as? Bool { return value }
    if let number = value as? NSNumber { return number.boolValue }
    return nil
}
