import Foundation

/// A field's value without its Swift type: what tools read and write by name.
///
/// Its JSON form is a number for integers and finite floating-point values,
/// `true`/`false`, a string, an array, `{"base64": "…"}` for bytes, and the
/// strings `"nan"`, `"inf"`, `"-inf"` and `"-0"` for the floating-point
/// values JSON has no number for.
public enum FieldValue: Sendable, Hashable, CustomStringConvertible {
    /// A signed integer (`int8` … `int64`).
    case int(Int64)
    /// An unsigned integer (`uint8` … `uint64`).
    case uint(UInt64)
    /// A floating-point number (`float`, `double`).
    case double(Double)
    /// A Boolean.
    case bool(Bool)
    /// A UTF-8 string.
    case string(String)
    /// A byte string.
    case bytes([UInt8])
    /// The elements of an array field.
    case array([FieldValue])
    /// The entries of a map field, sorted by key.
    case map([MapEntry])

    /// One key and value of a map.
    public struct MapEntry: Sendable, Hashable, Codable {
        /// The key.
        public var key: FieldValue
        /// The value.
        public var value: FieldValue
        /// Creates an entry.
        public init(key: FieldValue, value: FieldValue) {
            self.key = key
            self.value = value
        }
    }

    /// The value as the CLI prints it: numbers and Booleans bare, strings quoted, bytes in hex.
    public var description: String {
        switch self {
        case .int(let value): String(value)
        case .uint(let value): String(value)
        case .double(let value): FieldValue.format(value)
        case .bool(let value): String(value)
        case .string(let value): "\"" + value.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "\"", with: "\\\"").replacingOccurrences(of: "\n", with: "\\n") + "\""
        case .bytes(let value): "0x" + value.map { String(format: "%02x", $0) }.joined()
        case .array(let values): "[" + values.map(\.description).joined(separator: ", ") + "]"
        case .map(let entries): "{" + entries.map { "\($0.key): \($0.value)" }.joined(separator: ", ") + "}"
        }
    }

    static func format(_ value: Double) -> String {
        if value.isNaN { return "nan" }
        if value.isInfinite { return value < 0 ? "-inf" : "inf" }
        if value == 0 && value.sign == .minus { return "-0" }
        if value == value.rounded(), abs(value) < 1e15 { return String(Int64(value)) }
        return String(value)
    }
}

extension FieldValue: Codable {
    /// Decodes any JSON value this enum's JSON form allows; conversion to a
    /// field's type happens in ``converted(to:field:path:)``.
    public init(from decoder: any Decoder) throws {
        let container = try decoder.singleValueContainer()
        if let value = try? container.decode(Bool.self) { self = .bool(value); return }
        if let value = try? container.decode(Int64.self) { self = .int(value); return }
        if let value = try? container.decode(UInt64.self) { self = .uint(value); return }
        if let value = try? container.decode(Double.self) { self = .double(value); return }
        if let value = try? container.decode(String.self) {
            switch value {
            case "nan": self = .double(.nan)
            case "inf": self = .double(.infinity)
            case "-inf": self = .double(-.infinity)
            case "-0": self = .double(-0.0)
            default: self = .string(value)
            }
            return
        }
        if let value = try? container.decode([FieldValue].self) { self = .array(value); return }
        if let entries = try? container.decode([MapEntry].self) { self = .map(entries); return }
        if let object = try? container.decode([String: String].self), let text = object["base64"], object.count == 1,
           let data = Data(base64Encoded: text) {
            self = .bytes(Array(data))
            return
        }
        throw DecodingError.dataCorruptedError(in: container, debugDescription: "expected a number, true/false, a string, an array or {\"base64\": …}")
    }

    /// Encodes the value in its JSON form.
    public func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        switch self {
        case .int(let value): try container.encode(value)
        case .uint(let value): try container.encode(value)
        case .double(let value):
            if value.isFinite && !(value == 0 && value.sign == .minus) { try container.encode(value) }
            else { try container.encode(FieldValue.format(value)) }
        case .bool(let value): try container.encode(value)
        case .string(let value): try container.encode(value)
        case .bytes(let value): try container.encode(["base64": Data(value).base64EncodedString()])
        case .array(let values): try container.encode(values)
        case .map(let entries): try container.encode(entries)
        }
    }
}

extension FieldValue {
    /// The value converted to `type`, or an error naming the field when it doesn't fit:
    /// out of the integer range, over capacity, wrong element count, or the wrong kind.
    /// Never truncates or wraps.
    public func converted(to type: FieldType, field: String, path: String) throws(SlotStoreError) -> FieldValue {
        func refuse(_ detail: String) -> SlotStoreError { .invalidValue(path: path, field: field, detail: detail) }
        switch type {
        case .scalar(let scalar):
            return try convertedScalar(to: scalar, refuse)
        case .array(let element, let count):
            guard case .array(let values) = self else { throw refuse("expected an array of \(count) \(element.rawValue) values, found \(self)") }
            guard values.count == count else { throw refuse("expected exactly \(counted(count, "element")), found \(values.count)") }
            var converted: [FieldValue] = []
            converted.reserveCapacity(count)
            for value in values { converted.append(try value.convertedScalar(to: element, refuse)) }
            return .array(converted)
        case .string(let capacity):
            guard case .string(let text) = self.specialNumberAsText else { throw refuse("expected a string, found \(self)") }
            guard text.utf8.count <= capacity else {
                throw .valueTooLarge(path: path, field: field, capacity: capacity, size: text.utf8.count)
            }
            return .string(text)
        case .bytes(let capacity):
            let bytes: [UInt8]
            switch self.specialNumberAsText {
            case .bytes(let value): bytes = value
            case .string(let text): bytes = Array(text.utf8)
            default: throw refuse("expected bytes ({\"base64\": …} or a string), found \(self)")
            }
            guard bytes.count <= capacity else { throw .valueTooLarge(path: path, field: field, capacity: capacity, size: bytes.count) }
            return .bytes(bytes)
        case .map(let keyType, let valueType, let capacity):
            let entries: [MapEntry]
            switch self {
            case .map(let given): entries = given
            case .array(let given) where given.isEmpty: entries = []
            default: throw refuse("expected a map ([{\"key\": …, \"value\": …}, …]), found \(self)")
            }
            guard entries.count <= capacity else {
                throw .mapFull(path: path, field: field, capacity: capacity, count: entries.count)
            }
            var converted: [MapEntry] = []
            converted.reserveCapacity(entries.count)
            var seen = Set<FieldValue>()
            for entry in entries {
                let key = try entry.key.converted(to: keyType, field: "\(field) key", path: path)
                guard seen.insert(key).inserted else { throw refuse("the key \(key) appears twice") }
                converted.append(MapEntry(key: key, value: try entry.value.converted(to: valueType, field: "\(field)[\(key)]", path: path)))
            }
            return .map(converted.sorted { $0.key.sortsBefore($1.key) })
        }
    }

    /// JSON has no number for nan, ±inf and -0, so the dump writes them as
    /// strings and decoding reads those strings as doubles; for a string or
    /// bytes field they are the text they were.
    private var specialNumberAsText: FieldValue {
        if case .double(let value) = self, !value.isFinite || (value == 0 && value.sign == .minus) {
            return .string(FieldValue.format(value))
        }
        return self
    }

    private func convertedScalar(to type: ScalarType, _ refuse: (String) -> SlotStoreError) throws(SlotStoreError) -> FieldValue {
        switch type {
        case .bool:
            guard case .bool = self else { throw refuse("expected true or false, found \(self)") }
            return self
        case .float, .double:
            let value: Double
            switch self {
            case .double(let number): value = number
            case .int(let number): value = Double(number)
            case .uint(let number): value = Double(number)
            default: throw refuse("expected a number, found \(self)")
            }
            if type == .float, value.isFinite, Float(value).isInfinite {
                throw refuse("\(value) is outside the range of float")
            }
            return .double(type == .float ? Double(Float(value)) : value)
        default:
            let range = FieldValue.integerRange(of: type)
            let number: Int128
            switch self {
            case .int(let value): number = Int128(value)
            case .uint(let value): number = Int128(value)
            case .double(let value) where value.rounded() == value && value.isFinite && abs(value) < 1e19:
                number = Int128(value)
            default: throw refuse("expected an integer, found \(self)")
            }
            guard range.contains(number) else {
                throw refuse("\(number) is outside the range of \(type.rawValue), \(range.lowerBound)...\(range.upperBound)")
            }
            return type.isSigned ? .int(Int64(number)) : .uint(UInt64(number))
        }
    }

    /// The values an integer scalar type holds (`0...0` for other types);
    /// also what the CLI checks a map's integer keys against.
    @_spi(Tools)
    public static func integerRange(of type: ScalarType) -> ClosedRange<Int128> {
        switch type {
        case .int8: Int128(Int8.min)...Int128(Int8.max)
        case .int16: Int128(Int16.min)...Int128(Int16.max)
        case .int32: Int128(Int32.min)...Int128(Int32.max)
        case .int64: Int128(Int64.min)...Int128(Int64.max)
        case .uint8: 0...Int128(UInt8.max)
        case .uint16: 0...Int128(UInt16.max)
        case .uint32: 0...Int128(UInt32.max)
        case .uint64: 0...Int128(UInt64.max)
        default: 0...0
        }
    }

    /// Parses command-line text as a value of `type`: `42`, `-1.5`, `true`,
    /// text for strings, `0x0a0b` or text for bytes, `[1,2,3]` (JSON) for arrays.
    public static func parse(_ text: String, as type: FieldType, field: String, path: String) throws(SlotStoreError) -> FieldValue {
        let raw: FieldValue
        switch type {
        case .string: raw = .string(text)
        case .bytes:
            if text.hasPrefix("0x"), let bytes = FieldValue.hexBytes(String(text.dropFirst(2))) { raw = .bytes(bytes) }
            else { raw = .bytes(Array(text.utf8)) }
        case .array, .map:
            guard let decoded = try? JSONDecoder().decode(FieldValue.self, from: Data(text.utf8)) else {
                let example = type.isMap ? "a JSON list of entries like [{\"key\":\"a\",\"value\":1}]" : "a JSON array like [1,2,3]"
                throw .invalidValue(path: path, field: field, detail: "expected \(example), found \(text)")
            }
            raw = decoded
        case .scalar(.bool):
            switch text { case "true", "1": raw = .bool(true); case "false", "0": raw = .bool(false)
            default: throw .invalidValue(path: path, field: field, detail: "expected true or false, found \"\(text)\"") }
        case .scalar(let scalar) where scalar.isInteger:
            if let value = Int64(text) { raw = .int(value) }
            else if let value = UInt64(text) { raw = .uint(value) }
            else if let value = Int128(text) { throw .invalidValue(path: path, field: field, detail: "\(value) is outside the range of \(scalar.rawValue)") }
            else { throw .invalidValue(path: path, field: field, detail: "expected an integer, found \"\(text)\"") }
        case .scalar:
            switch text.lowercased() {
            case "nan": raw = .double(.nan)
            case "inf", "+inf", "infinity": raw = .double(.infinity)
            case "-inf", "-infinity": raw = .double(-.infinity)
            default:
                guard let value = Double(text) else { throw .invalidValue(path: path, field: field, detail: "expected a number, found \"\(text)\"") }
                raw = .double(value)
            }
        }
        return try raw.converted(to: type, field: field, path: path)
    }

    /// The order of map keys in dumps: numbers numerically, strings and bytes by their bytes.
    func sortsBefore(_ other: FieldValue) -> Bool {
        switch (self, other) {
        case (.int(let a), .int(let b)): a < b
        case (.uint(let a), .uint(let b)): a < b
        case (.string(let a), .string(let b)): Array(a.utf8).lexicographicallyPrecedes(Array(b.utf8))
        case (.bytes(let a), .bytes(let b)): a.lexicographicallyPrecedes(b)
        default: description < other.description
        }
    }

    static func hexBytes(_ text: String) -> [UInt8]? {
        guard text.count % 2 == 0 else { return nil }
        var bytes: [UInt8] = []
        var index = text.startIndex
        while index < text.endIndex {
            let next = text.index(index, offsetBy: 2)
            guard let byte = UInt8(text[index..<next], radix: 16) else { return nil }
            bytes.append(byte)
            index = next
        }
        return bytes
    }
}

extension ScalarType {
    var isSigned: Bool {
        switch self {
        case .int8, .int16, .int32, .int64: true
        default: false
        }
    }
}
