import Synchronization
import Foundation

// The JSON form: {"name":"latency","type":"array","of":"double","count":64},
// {"name":"sessions","type":"map","key":{"type":"string","capacity":32},
//  "value":{"type":"int64"},"capacity":100000}.
// Written by hand rather than synthesized so the shape stays flat and stable
// for operators who write schema files for the `slotstore` tool.
extension FieldType: Codable {
    private enum CodingKeys: String, CodingKey { case type, of, count, capacity, key, value }

    static var typeNames: [String] { ScalarType.allCases.map(\.rawValue) + ["array", "string", "bytes", "map"] }

    /// Decodes a type from the keys `type`, `of`, `count`, `capacity`, `key` and `value`.
    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        let typeName = try container.decode(String.self, forKey: .type)
        switch typeName {
        case "array":
            let elementName = try container.decode(String.self, forKey: .of)
            guard let element = ScalarType(rawValue: elementName) else {
                throw DecodingError.dataCorruptedError(
                    forKey: .of, in: container,
                    debugDescription: "unknown array element type \"\(elementName)\"; expected one of \(ScalarType.allCases.map(\.rawValue).joined(separator: ", "))")
            }
            self = .array(of: element, count: try container.decode(Int.self, forKey: .count))
        case "string":
            self = .string(capacity: try container.decode(Int.self, forKey: .capacity))
        case "bytes":
            self = .bytes(capacity: try container.decode(Int.self, forKey: .capacity))
        case "map":
            self = .map(key: try container.decode(FieldType.self, forKey: .key),
                        value: try container.decode(FieldType.self, forKey: .value),
                        capacity: try container.decode(Int.self, forKey: .capacity))
        default:
            guard let scalar = ScalarType(rawValue: typeName) else {
                throw DecodingError.dataCorruptedError(
                    forKey: .type, in: container,
                    debugDescription: "unknown type \"\(typeName)\"; expected one of \(FieldType.typeNames.joined(separator: ", "))")
            }
            self = .scalar(scalar)
        }
    }

    /// Encodes the type's keys.
    public func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        switch self {
        case .scalar(let scalar):
            try container.encode(scalar.rawValue, forKey: .type)
        case .array(let element, let count):
            try container.encode("array", forKey: .type)
            try container.encode(element.rawValue, forKey: .of)
            try container.encode(count, forKey: .count)
        case .string(let capacity):
            try container.encode("string", forKey: .type)
            try container.encode(capacity, forKey: .capacity)
        case .bytes(let capacity):
            try container.encode("bytes", forKey: .type)
            try container.encode(capacity, forKey: .capacity)
        case .map(let key, let value, let capacity):
            try container.encode("map", forKey: .type)
            try container.encode(key, forKey: .key)
            try container.encode(value, forKey: .value)
            try container.encode(capacity, forKey: .capacity)
        }
    }
}

extension Field: Codable {
    private enum CodingKeys: String, CodingKey { case name, growth, cache, perProcess }

    /// Decodes a field: its `name`, in the same object its type's keys, a
    /// map's optional `growth` ({"maxCapacity": N, "threshold": 0.9}) and
    /// `cache` ({"evict": true}), and a
    /// scalar's optional `perProcess` aggregate ("sum", "liveSum", "max",
    /// "min" or "mostRecent").
    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        let name = try container.decode(String.self, forKey: .name)
        do {
            let perProcess: PerProcessAggregate?
            if let aggregate = try container.decodeIfPresent(String.self, forKey: .perProcess) {
                guard let known = PerProcessAggregate(rawValue: aggregate) else {
                    throw DecodingError.dataCorruptedError(
                        forKey: .perProcess, in: container,
                        debugDescription: "unknown perProcess aggregate \"\(aggregate)\"; expected one of \(PerProcessAggregate.allCases.map(\.rawValue).joined(separator: ", "))")
                }
                perProcess = known
            } else {
                perProcess = nil
            }
            self.init(name, try FieldType(from: decoder), growth: try container.decodeIfPresent(MapGrowth.self, forKey: .growth),
                      cache: try container.decodeIfPresent(MapCache.self, forKey: .cache), perProcess: perProcess)
        } catch DecodingError.dataCorrupted(let context) {
            throw DecodingError.dataCorrupted(.init(codingPath: context.codingPath,
                                                    debugDescription: "field \"\(name)\": " + context.debugDescription))
        }
    }

    /// Encodes the field in its JSON form.
    public func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(name, forKey: .name)
        try container.encodeIfPresent(growth, forKey: .growth)
        try container.encodeIfPresent(cache, forKey: .cache)
        try container.encodeIfPresent(perProcess, forKey: .perProcess)
        try type.encode(to: encoder)
    }
}

extension Schema: Codable {
    private enum CodingKeys: String, CodingKey { case version, fields }

    /// Decodes a schema from its JSON form.
    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        self.init(version: try container.decode(Int.self, forKey: .version),
                  fields: try container.decode([Field].self, forKey: .fields))
    }

    /// Encodes the schema in its JSON form.
    public func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(version, forKey: .version)
        try container.encode(fields, forKey: .fields)
    }

    /// Decodes and validates a schema from JSON bytes.
    ///
    /// - Parameters:
    ///   - json: the schema's JSON form.
    ///   - source: where the JSON came from, named in errors.
    public init(json: some Sequence<UInt8>, source: String = "schema") throws(SlotStoreError) {
        let data = Data(json)
        let decoded: Schema
        do {
            decoded = try JSONDecoder().decode(Schema.self, from: data)
        } catch {
            throw .invalidSchema("\(source) is not a valid schema: \(Schema.describe(decodingError: error))")
        }
        try decoded.validate()
        self = decoded
    }

    /// The stored schema of a file, decoded once per process for each
    /// distinct JSON: decoding is most of the work of an open (a service's
    /// workers, and tools, open the same store again and again). Only valid
    /// schemas are kept, at most 64 (the oldest half is dropped when full).
    static func decodingStored(_ json: [UInt8], source: String) throws(SlotStoreError) -> Schema {
        if let known = storedSchemas.withLock({ $0.schemas[json] }) { return known }
        let schema = try Schema(json: json, source: source)
        storedSchemas.withLock { cache in
            if cache.order.count >= 64 {
                for old in cache.order.prefix(32) { cache.schemas[old] = nil }
                cache.order.removeFirst(32)
            }
            if cache.schemas.updateValue(schema, forKey: json) == nil { cache.order.append(json) }
        }
        return schema
    }

    private static let storedSchemas = LockedState(StoredSchemas())

    private struct StoredSchemas {
        var schemas: [[UInt8]: Schema] = [:]
        var order: [[UInt8]] = []
    }

    /// The schema as compact JSON with sorted keys, the form stored in the file.
    public func jsonBytes(pretty: Bool = false) -> [UInt8] {
        let encoder = JSONEncoder()
        encoder.outputFormatting = pretty ? [.sortedKeys, .prettyPrinted, .withoutEscapingSlashes] : [.sortedKeys, .withoutEscapingSlashes]
        // Encoding plain strings and integers cannot fail; an empty result would
        // be caught by the schema checksum and decoding on the next open.
        return (try? Array(encoder.encode(self))) ?? []
    }

    static func describe(decodingError error: any Error) -> String {
        switch error as? DecodingError {
        case .dataCorrupted(let context):
            return context.debugDescription + Schema.pathSuffix(context.codingPath)
        case .keyNotFound(let key, let context):
            return "missing key \"\(key.stringValue)\"" + Schema.pathSuffix(context.codingPath)
        case .typeMismatch(let type, let context):
            return "expected \(type)" + Schema.pathSuffix(context.codingPath)
        case .valueNotFound(let type, let context):
            return "missing \(type) value" + Schema.pathSuffix(context.codingPath)
        default:
            return "\(error)"
        }
    }

    private static func pathSuffix(_ path: [any CodingKey]) -> String {
        guard !path.isEmpty else { return "" }
        let rendered = path.map { key in key.intValue.map { "[\($0)]" } ?? ".\(key.stringValue)" }.joined()
        return " at \(rendered)"
    }
}
