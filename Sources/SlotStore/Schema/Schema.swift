/// A named, typed field of a ``Schema``.
public struct Field: Sendable, Hashable {
    /// The field's name: 1 to 64 bytes of ASCII letters, digits, `_`, `-` and `.`.
    public var name: String
    /// The field's type.
    public var type: FieldType
    /// For a map, how it grows by itself; nil for a map of fixed capacity (and every other field).
    public var growth: MapGrowth?
    /// For a map, its cache policy: expiring entries, and eviction when full
    /// (see ``MapCache``); nil for a map without (and every other field).
    public var cache: MapCache?
    /// For an integer or floating-point scalar written by each process on its
    /// own, how the contributions add up (see ``PerProcessAggregate``); nil
    /// for a field every process writes in common.
    public var perProcess: PerProcessAggregate?

    /// Creates a field.
    public init(_ name: String, _ type: FieldType, growth: MapGrowth? = nil, cache: MapCache? = nil,
                perProcess: PerProcessAggregate? = nil) {
        self.name = name
        self.type = type
        self.growth = growth
        self.cache = cache
        self.perProcess = perProcess
    }

    /// An `int8` field; with `perProcess`, one whose processes each write their own contribution.
    public static func int8(_ name: String, perProcess: PerProcessAggregate? = nil) -> Field {
        Field(name, .scalar(.int8), perProcess: perProcess)
    }
    /// An `int16` field; with `perProcess`, one whose processes each write their own contribution.
    public static func int16(_ name: String, perProcess: PerProcessAggregate? = nil) -> Field {
        Field(name, .scalar(.int16), perProcess: perProcess)
    }
    /// An `int32` field; with `perProcess`, one whose processes each write their own contribution.
    public static func int32(_ name: String, perProcess: PerProcessAggregate? = nil) -> Field {
        Field(name, .scalar(.int32), perProcess: perProcess)
    }
    /// An `int64` field; with `perProcess`, one whose processes each write their own contribution.
    public static func int64(_ name: String, perProcess: PerProcessAggregate? = nil) -> Field {
        Field(name, .scalar(.int64), perProcess: perProcess)
    }
    /// A `uint8` field; with `perProcess`, one whose processes each write their own contribution.
    public static func uint8(_ name: String, perProcess: PerProcessAggregate? = nil) -> Field {
        Field(name, .scalar(.uint8), perProcess: perProcess)
    }
    /// A `uint16` field; with `perProcess`, one whose processes each write their own contribution.
    public static func uint16(_ name: String, perProcess: PerProcessAggregate? = nil) -> Field {
        Field(name, .scalar(.uint16), perProcess: perProcess)
    }
    /// A `uint32` field; with `perProcess`, one whose processes each write their own contribution.
    public static func uint32(_ name: String, perProcess: PerProcessAggregate? = nil) -> Field {
        Field(name, .scalar(.uint32), perProcess: perProcess)
    }
    /// A `uint64` field; with `perProcess`, one whose processes each write their own contribution.
    public static func uint64(_ name: String, perProcess: PerProcessAggregate? = nil) -> Field {
        Field(name, .scalar(.uint64), perProcess: perProcess)
    }
    /// A `float` field; with `perProcess`, one whose processes each write their own contribution.
    public static func float(_ name: String, perProcess: PerProcessAggregate? = nil) -> Field {
        Field(name, .scalar(.float), perProcess: perProcess)
    }
    /// A `double` field; with `perProcess`, one whose processes each write their own contribution.
    public static func double(_ name: String, perProcess: PerProcessAggregate? = nil) -> Field {
        Field(name, .scalar(.double), perProcess: perProcess)
    }
    /// A `bool` field.
    public static func bool(_ name: String) -> Field { Field(name, .scalar(.bool)) }
    /// A map field of at most `capacity` entries, or one that starts at
    /// `capacity` and grows by itself as `growth` says; with `cache`, its
    /// entries may expire and a full map may evict (see ``MapCache``).
    public static func map(_ name: String, key: FieldType, value: FieldType, capacity: Int, growth: MapGrowth? = nil,
                           cache: MapCache? = nil) -> Field {
        Field(name, .map(key: key, value: value, capacity: capacity), growth: growth, cache: cache)
    }
    /// An array field of `count` elements.
    public static func array(_ name: String, of element: ScalarType, count: Int) -> Field {
        Field(name, .array(of: element, count: count))
    }
    /// A UTF-8 string field holding at most `capacity` bytes.
    public static func string(_ name: String, capacity: Int) -> Field { Field(name, .string(capacity: capacity)) }
    /// A byte-string field holding at most `capacity` bytes.
    public static func bytes(_ name: String, capacity: Int) -> Field { Field(name, .bytes(capacity: capacity)) }
}

/// The layout contract of a store: a version number of your choosing and an
/// ordered list of named, typed fields.
///
/// A schema is written into the store when it is created, so any tool can read
/// the store without the program that made it. Opening a store with a schema
/// checks it against the stored one field by field.
///
/// ```swift
/// let schema = Schema(version: 1, fields: [
///     .int64("requests"),
///     .array("latency", of: .double, count: 64),
///     .string("motd", capacity: 128),
/// ])
/// ```
///
/// Its JSON form, used by the `slotstore` tool, is
/// `{"version":1,"fields":[{"name":"requests","type":"int64"},
/// {"name":"latency","type":"array","of":"double","count":64},
/// {"name":"motd","type":"string","capacity":128}]}`.
public struct Schema: Sendable, Hashable {
    /// The schema's version, chosen by you; compared when a store is opened.
    public var version: Int
    /// The fields, in file order.
    public var fields: [Field]

    /// Creates a schema.
    public init(version: Int, fields: [Field]) {
        self.version = version
        self.fields = fields
    }

    /// The largest capacity of a string or bytes field in bytes; an array may hold this many bytes / 8 elements.
    public static let maximumFieldBytes = 1 << 30
    /// The largest number of fields in one schema.
    public static let maximumFieldCount = 65_536
    /// The longest field name, in bytes.
    public static let maximumNameLength = 64

    /// The field with this name, if the schema has one.
    public func field(named name: String) -> Field? { fields.first { $0.name == name } }

    /// Checks names, sizes and uniqueness, throwing ``SlotStoreError/invalidSchema(_:)`` on the first problem.
    public func validate() throws(SlotStoreError) {
        guard version >= 0, version <= Int(UInt32.max) else {
            throw .invalidSchema("the schema version must be between 0 and \(UInt32.max), found \(version)")
        }
        guard !fields.isEmpty else { throw .invalidSchema("a schema needs at least one field, found none") }
        guard fields.count <= Schema.maximumFieldCount else {
            throw .invalidSchema("a schema holds at most \(Schema.maximumFieldCount) fields, found \(fields.count)")
        }
        var seen = Set<String>()
        for field in fields {
            try Schema.validateName(field.name)
            guard seen.insert(field.name).inserted else {
                throw .invalidSchema("field names must be unique, found \"\(field.name)\" twice")
            }
            try Schema.validate(field.type, name: field.name)
            if field.cache != nil, FieldLayout.slotSize(of: field.type, mapLayout: .v2, cache: field.cache) > Int(Int32.max) * 8 {
                throw .invalidSchema("map field \"\(field.name)\" would need \(FieldLayout.slotSize(of: field.type, mapLayout: .v2, cache: field.cache)) bytes; lower its capacity or its key and value sizes")
            }
            if let growth = field.growth {
                guard case .map(_, _, let capacity) = field.type else {
                    throw .invalidSchema("field \"\(field.name)\" declares growth, which only maps have; it is \(field.type)")
                }
                try growth.validate(field: field.name, capacity: capacity)
            }
            if let cache = field.cache { try cache.validate(field: field.name, type: field.type, growth: field.growth) }
            if let aggregate = field.perProcess {
                guard case .scalar(let scalar) = field.type, scalar != .bool else {
                    throw .invalidSchema("field \"\(field.name)\" is declared per process (\(aggregate.rawValue)), which only integer and floating-point scalars can be; it is \(field.type)")
                }
            }
        }
    }

    /// The largest number of entries in one map.
    public static let maximumMapEntries = 1 << 26
    /// The largest key capacity of a map, in bytes.
    public static let maximumMapKeyBytes = 4096

    static func validate(_ type: FieldType, name: String) throws(SlotStoreError) {
        switch type {
        case .scalar: break
        case .array(_, let count):
            guard count >= 1, count <= Schema.maximumFieldBytes / 8 else {
                throw .invalidSchema("array field \"\(name)\" needs a count from 1 to \(Schema.maximumFieldBytes / 8), found \(count)")
            }
        case .string(let capacity), .bytes(let capacity):
            guard capacity >= 1, capacity <= Schema.maximumFieldBytes else {
                throw .invalidSchema("field \"\(name)\" needs a capacity from 1 to \(Schema.maximumFieldBytes) bytes, found \(capacity)")
            }
        case .map(let key, let value, let capacity):
            guard key.isValidMapKey else {
                throw .invalidSchema("map field \"\(name)\" has key type \(key); keys must be a string, bytes or an integer type")
            }
            if case .string(let keyCapacity) = key, keyCapacity > maximumMapKeyBytes {
                throw .invalidSchema("map field \"\(name)\" has a key capacity of \(keyCapacity) bytes; the limit is \(maximumMapKeyBytes)")
            }
            if case .bytes(let keyCapacity) = key, keyCapacity > maximumMapKeyBytes {
                throw .invalidSchema("map field \"\(name)\" has a key capacity of \(keyCapacity) bytes; the limit is \(maximumMapKeyBytes)")
            }
            guard !value.isMap else { throw .invalidSchema("map field \"\(name)\" has a map as its value type; values must be scalars, arrays, strings or bytes") }
            try validate(key, name: name + ".key")
            try validate(value, name: name + ".value")
            guard capacity >= 1, capacity <= maximumMapEntries else {
                throw .invalidSchema("map field \"\(name)\" needs a capacity from 1 to \(maximumMapEntries) entries, found \(capacity)")
            }
            guard FieldLayout.slotSize(of: type, mapLayout: .v2) <= Int(Int32.max) * 8 else {
                throw .invalidSchema("map field \"\(name)\" would need \(FieldLayout.slotSize(of: type, mapLayout: .v2)) bytes; lower its capacity or its key and value sizes")
            }
        }
    }

    static func validateName(_ name: String) throws(SlotStoreError) {
        let bytes = Array(name.utf8)
        guard !bytes.isEmpty else { throw .invalidSchema("a field name must not be empty") }
        guard bytes.count <= maximumNameLength else {
            throw .invalidSchema("field name \"\(name)\" is \(bytes.count) bytes long; the limit is \(maximumNameLength)")
        }
        for byte in bytes {
            let ok = (byte >= 0x30 && byte <= 0x39) || (byte >= 0x41 && byte <= 0x5A) || (byte >= 0x61 && byte <= 0x7A)
                || byte == UInt8(ascii: "_") || byte == UInt8(ascii: "-") || byte == UInt8(ascii: ".")
            guard ok else {
                throw .invalidSchema("field name \"\(name)\" may hold only letters, digits, '_', '-' and '.'")
            }
        }
    }

    /// This schema with each growing map given the capacity that `values`
    /// need, as inserting their entries one by one would have grown it (at
    /// most its maximum; a map over that still fails with `mapFull`).
    func grown(toHold values: [String: FieldValue]) -> Schema {
        var result = self
        for index in result.fields.indices {
            guard let growth = result.fields[index].growth,
                  case .map(let key, let value, let capacity) = result.fields[index].type,
                  case .map(let entries)? = values[result.fields[index].name] else { continue }
            result.fields[index].type = .map(key: key, value: value, capacity: growth.capacity(toHold: entries.count, from: capacity))
        }
        return result
    }

    /// A stable text form of the fields, independent of JSON formatting; its
    /// hash is the schema hash stored in the file header.
    ///
    /// A per-process field adds "@" and its aggregate ("inflight:int64@liveSum"),
    /// and a map with a cache policy "@cache" or "@cache-evict": their layouts
    /// differ, so the hash must. Fields without them hash as before.
    var canonicalDescription: String {
        fields.map { field in
            "\(field.name):\(field.type)" + (field.perProcess.map { "@\($0.rawValue)" } ?? "")
                + (field.cache.map { $0.evict ? "@cache-evict" : "@cache" } ?? "")
        }.joined(separator: ";")
    }

    /// Whether a map has a cache policy: its buckets carry an entry word (format 2.0, as every store with a map).
    var hasCacheMaps: Bool { fields.contains { $0.cache != nil } }

    /// Whether a field is declared per process: such a store is format 1.2.
    var hasPerProcessFields: Bool { fields.contains { $0.perProcess != nil } }

    /// The 64-bit FNV-1a hash of ``canonicalDescription``.
    var fieldsHash: UInt64 { FNV1a.hash(Array(canonicalDescription.utf8)) }
}
