/// The element type of a scalar field or of an array field's elements.
///
/// Every scalar occupies an 8-byte slot in the file (64 bytes with
/// ``OpenOptions/cacheLineAligned``), whatever its width, so that every access
/// is one aligned atomic instruction.
public enum ScalarType: String, Sendable, Hashable, CaseIterable, Codable {
    case int8, int16, int32, int64
    case uint8, uint16, uint32, uint64
    case float, double, bool

    /// The number of bytes one value occupies: 1, 2, 4 or 8.
    public var byteWidth: Int {
        switch self {
        case .int8, .uint8, .bool: 1
        case .int16, .uint16: 2
        case .int32, .uint32, .float: 4
        case .int64, .uint64, .double: 8
        }
    }

    /// Whether the type is one of the signed or unsigned integer types.
    public var isInteger: Bool {
        switch self {
        case .float, .double, .bool: false
        default: true
        }
    }

    /// Whether the type is `float` or `double`.
    public var isFloatingPoint: Bool { self == .float || self == .double }
}

/// The type of a field: a scalar, a fixed-count array of scalars, a
/// fixed-capacity UTF-8 string or byte string, or a keyed map of those.
public indirect enum FieldType: Sendable, Hashable, CustomStringConvertible {
    /// One integer, floating-point or Boolean value.
    case scalar(ScalarType)
    /// `count` elements of one scalar type.
    case array(of: ScalarType, count: Int)
    /// A UTF-8 string of at most `capacity` bytes.
    case string(capacity: Int)
    /// A byte string of at most `capacity` bytes.
    case bytes(capacity: Int)
    /// A hash map of at most `capacity` entries. Keys are a fixed-capacity
    /// `string` or `bytes`, or an integer scalar; values are any non-map type.
    case map(key: FieldType, value: FieldType, capacity: Int)

    /// The type as the schema's JSON spells it, for example `array<double>[64]`.
    public var description: String {
        switch self {
        case .scalar(let type): type.rawValue
        case .array(let element, let count): "array<\(element.rawValue)>[\(count)]"
        case .string(let capacity): "string[\(capacity)]"
        case .bytes(let capacity): "bytes[\(capacity)]"
        case .map(let key, let value, let capacity): "map<\(key), \(value)>[\(capacity)]"
        }
    }

    /// The kind of type without its size, used to tell a retyped field from a resized one.
    var kindName: String {
        switch self {
        case .scalar(let type): type.rawValue
        case .array(let element, _): "array<\(element.rawValue)>"
        case .string: "string"
        case .bytes: "bytes"
        case .map(let key, let value, _): "map<\(key), \(value)>"
        }
    }

    /// Whether values of this type can be map keys: strings, bytes and integers.
    var isValidMapKey: Bool {
        switch self {
        case .string, .bytes: true
        case .scalar(let scalar): scalar.isInteger
        default: false
        }
    }

    var isMap: Bool {
        if case .map = self { return true }
        return false
    }

    /// Whether handles write this type without the lock (scalar stores and
    /// array element stores, adds and compare-exchanges): what a compaction
    /// in place copies again once those writers are stopped.
    var isLockFreeWritable: Bool {
        switch self {
        case .scalar, .array: true
        default: false
        }
    }
}
