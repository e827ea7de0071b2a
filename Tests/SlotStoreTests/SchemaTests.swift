import Foundation
import Testing
@testable import SlotStore

@Suite("Schema")
struct SchemaTests {
    @Test("decodes the JSON form from the issue and encodes it back")
    func jsonRoundTrip() throws {
        let json = #"{"version":1,"fields":[{"name":"requests","type":"int64"},{"name":"latency","type":"array","of":"double","count":64},{"name":"motd","type":"string","capacity":128}]}"#
        let schema = try Schema(json: Array(json.utf8))
        #expect(schema == Schema(version: 1, fields: [.int64("requests"), .array("latency", of: .double, count: 64), .string("motd", capacity: 128)]))
        #expect(try Schema(json: schema.jsonBytes()) == schema)
    }

    @Test("every scalar type and bytes round-trip through JSON")
    func everyType() throws {
        let fields = ScalarType.allCases.map { Field("f.\($0.rawValue)", .scalar($0)) }
            + ScalarType.allCases.map { Field("a-\($0.rawValue)", .array(of: $0, count: 3)) }
            + [.bytes("raw_bytes", capacity: 7)]
        let schema = Schema(version: 42, fields: fields)
        #expect(try Schema(json: schema.jsonBytes(pretty: true)) == schema)
    }

    @Test("rejects bad names, duplicates, sizes and unknown types with a message naming the problem",
          arguments: [
            (#"{"version":1,"fields":[]}"#, "at least one field"),
            (#"{"version":1,"fields":[{"name":"","type":"int64"}]}"#, "must not be empty"),
            (#"{"version":1,"fields":[{"name":"a b","type":"int64"}]}"#, "may hold only"),
            (#"{"version":1,"fields":[{"name":"x","type":"int64"},{"name":"x","type":"bool"}]}"#, "unique"),
            (#"{"version":1,"fields":[{"name":"x","type":"int128"}]}"#, "unknown type \"int128\""),
            (#"{"version":1,"fields":[{"name":"x","type":"array","of":"double","count":0}]}"#, "count from 1"),
            (#"{"version":1,"fields":[{"name":"x","type":"string","capacity":0}]}"#, "capacity from 1"),
            (#"{"version":1,"fields":[{"name":"x","type":"string"}]}"#, "capacity"),
            (#"{"version":-1,"fields":[{"name":"x","type":"bool"}]}"#, "version"),
            (#"not json"#, "not a valid schema"),
          ])
    func rejectsInvalid(json: String, expected: String) {
        #expect {
            _ = try Schema(json: Array(json.utf8))
        } throws: { error in
            guard case .invalidSchema(let message) = error as? SlotStoreError else { return false }
            return message.contains(expected)
        }
    }

    @Test("a 65-byte name is refused, a 64-byte one accepted")
    func nameLength() throws {
        try Schema(version: 1, fields: [.int64(String(repeating: "a", count: 64))]).validate()
        #expect(throws: SlotStoreError.self) {
            try Schema(version: 1, fields: [.int64(String(repeating: "a", count: 65))]).validate()
        }
    }

    @Test("differences name added, removed, retyped and resized fields and the version")
    func differences() {
        let stored = Schema(version: 1, fields: [.int64("a"), .string("s", capacity: 8), .double("d"), .bool("gone")])
        let given = Schema(version: 2, fields: [.int64("a"), .string("s", capacity: 16), .int64("d"), .bool("new")])
        let differences = stored.differences(to: given)
        #expect(differences.contains(.version(stored: 1, given: 2)))
        #expect(differences.contains(.resized(name: "s", stored: .string(capacity: 8), given: .string(capacity: 16))))
        #expect(differences.contains(.retyped(name: "d", stored: .scalar(.double), given: .scalar(.int64))))
        #expect(differences.contains(.added(name: "new", type: .scalar(.bool))))
        #expect(differences.contains(.removed(name: "gone", type: .scalar(.bool))))
        #expect(stored.differences(to: stored).isEmpty)
    }

    @Test("the schema hash depends on the fields, not on JSON formatting")
    func hashStable() throws {
        let schema = Schema.sample
        #expect(try Schema(json: schema.jsonBytes(pretty: true)).fieldsHash == schema.fieldsHash)
        var changed = schema
        changed.fields[0] = .int32("requests")
        #expect(changed.fieldsHash != schema.fieldsHash)
    }
}

@Suite("File format")
struct FormatTests {
    @Test("CRC-32C matches the standard check value")
    func crcCheckValue() {
        #expect(CRC32C.checksum(Array("123456789".utf8)) == 0xE306_9283)
    }

    @Test("the header round-trips and detects any flipped byte")
    func headerRoundTrip() throws {
        let layout = Layout(schema: .sample, schemaBytes: 300, pageSize: 4096, cacheLineAligned: false)
        let header = FileHeader(pageSize: 4096, flags: [], lockABI: LockRegion.currentABI, fileSize: UInt64(layout.fileSize),
                                lockOffset: UInt64(layout.lockOffset), lockSize: UInt64(layout.lockSize),
                                journalOffset: UInt64(layout.journalOffset), journalSize: UInt64(layout.journalSize),
                                schemaOffset: UInt64(layout.schemaOffset), schemaSize: UInt64(layout.schemaSize),
                                schemaLength: 300, schemaChecksum: 7, dataOffset: UInt64(layout.dataOffset),
                                dataSize: UInt64(layout.dataSize), schemaVersion: 1, schemaHash: 99, generation: 1,
                                createdAtNanoseconds: 123)
        let bytes = header.encoded()
        #expect(bytes.count == FileHeader.size)
        #expect(try FileHeader.decode(bytes, path: "p") == header)
        try header.validateRegions(actualFileSize: layout.fileSize, path: "p")
        for offset in stride(from: 16, to: FileHeader.size, by: 7) {
            var damaged = bytes
            damaged[offset] ^= 0x10
            #expect(throws: SlotStoreError.self) { _ = try FileHeader.decode(damaged, path: "p") }
        }
    }

    @Test("fields are 8-byte aligned, or on their own cache line when asked", arguments: [false, true])
    func alignment(cacheLine: Bool) {
        let layout = Layout(schema: .sample, schemaBytes: 10, pageSize: 4096, cacheLineAligned: cacheLine)
        var previousEnd = layout.dataOffset
        for field in layout.fields {
            #expect(field.offset % (cacheLine ? 64 : 8) == 0)
            #expect(field.offset >= previousEnd)
            #expect(field.size >= FieldLayout.slotSize(of: field.type, mapLayout: layout.mapLayout))
            if cacheLine { #expect(field.size % 64 == 0) }
            previousEnd = field.offset + field.size
        }
        #expect(previousEnd <= layout.dataOffset + layout.dataSize)
        #expect(layout.dataOffset % 4096 == 0 && layout.journalOffset % 4096 == 0)
    }
}
