/// A Swift type that can be a map key: `String` (a `string` key), `[UInt8]`
/// (a `bytes` key), ``InlineKey`` (either, without a reference count) or an
/// integer type (an integer key of that type).
public protocol SlotMapKey: Sendable, Hashable {
    /// Whether keys of the schema's `type` are this Swift type. Implementation detail.
    static func _isCompatibleKey(with type: FieldType) -> Bool
    /// The type as a wrong-field-type error names it. Implementation detail.
    static var _keyDescription: String { get }
    /// Lends the key's stored bytes. Implementation detail. Generic over the
    /// error so a lookup that cannot fail pays for no error plumbing.
    func _withKeyBytes<R, E: Error>(_ body: (UnsafeRawBufferPointer) throws(E) -> R) throws(E) -> R
    /// Rebuilds a key from its stored bytes. Implementation detail. The
    /// bytes are always a copy in process memory, never the store's mapping.
    init(_keyBytes bytes: UnsafeRawBufferPointer)
}

extension SlotMapKey {
    /// The type's name.
    public static var _keyDescription: String { "\(Self.self)" }
}

/// A Swift type that can be a map value: any ``SlotScalar`` (a scalar value),
/// `String` (a `string` value), and `[Element]` for an array value, or for a
/// `bytes` value when `Element` is `UInt8`.
public protocol SlotMapValue: Sendable {
    /// Whether values of the schema's `type` are this Swift type. Implementation detail.
    static func _isCompatible(with type: FieldType) -> Bool
    /// The value's size in bytes when it exceeds what `type` holds, else nil. Implementation detail.
    func _excessSize(for type: FieldType) -> Int?
    /// Writes the value into a bucket's value area. Implementation detail:
    /// the area is opaque outside SlotStore, so only the library's own
    /// conformances can write through it.
    func _write(to area: SlotMapValueArea, type: FieldType)
    /// Reads a value from a bucket's value area. Implementation detail (see ``_write(to:type:)``).
    static func _read(from area: SlotMapValueArea, type: FieldType) -> Self
    /// Whether the value is one scalar stored in the area's first 8-byte word,
    /// which lookups then read without a buffer. Implementation detail.
    static var _isWord: Bool { get }
    /// The value from that word (only when `_isWord`). Implementation detail.
    static func _fromWord(_ bits: UInt64) -> Self
    /// The value as that word (only when `_isWord`). Implementation detail.
    var _word: UInt64 { get }
}

/// A map value's bytes, lent to the library's own ``SlotMapValue``
/// conformances. Opaque outside SlotStore: a type conformed elsewhere can't
/// read or write a store's file through it (it may point into the mapping).
public struct SlotMapValueArea {
    @usableFromInline let pointer: UnsafeMutableRawPointer

    @usableFromInline
    init(_ pointer: UnsafeMutableRawPointer) { self.pointer = pointer }
}

extension SlotMapValue {
    /// Not a single word: strings, bytes and arrays.
    @inlinable
    public static var _isWord: Bool { false }
    /// Unused for values that are not a single word.
    @inlinable
    public var _word: UInt64 { 0 }
    /// Unused for values that are not a single word.
    @inlinable
    public static func _fromWord(_ bits: UInt64) -> Self {
        withUnsafeBytes(of: bits) { _read(from: SlotMapValueArea(UnsafeMutableRawPointer(mutating: $0.baseAddress!)), type: .scalar(.uint64)) }
    }
}

extension String: SlotMapKey, SlotMapValue {
    /// `string` keys.
    public static func _isCompatibleKey(with type: FieldType) -> Bool { _isCompatible(with: type) }
    /// `string` values.
    public static func _isCompatible(with type: FieldType) -> Bool {
        if case .string = type { return true }
        return false
    }
    /// The UTF-8 bytes, borrowed through a span (no retain of the string's
    /// storage, which `withContiguousStorageIfAvailable` pays per call).
    @inlinable
    public func _withKeyBytes<R, E: Error>(_ body: (UnsafeRawBufferPointer) throws(E) -> R) throws(E) -> R {
        try utf8.span.withUnsafeBytes { bytes throws(E) in try body(bytes) }
    }
    /// Decodes UTF-8, repairing invalid bytes.
    public init(_keyBytes bytes: UnsafeRawBufferPointer) { self = String(decoding: bytes, as: UTF8.self) }
    /// The UTF-8 length when over capacity.
    public func _excessSize(for type: FieldType) -> Int? {
        guard case .string(let capacity) = type, utf8.count > capacity else { return nil }
        return utf8.count
    }
    /// Length, then bytes.
    public func _write(to value: SlotMapValueArea, type: FieldType) {
        let area = value.pointer
        var copy = self
        copy.withUTF8 { bytes in MapCodecRaw.writeVariable(UnsafeRawBufferPointer(bytes), to: area) }
    }
    /// Length, then bytes.
    public static func _read(from value: SlotMapValueArea, type: FieldType) -> String {
        MapCodecRaw.readVariable(from: UnsafeRawPointer(value.pointer), type: type) { String(decoding: $0, as: UTF8.self) }
    }
}

extension Array: SlotMapKey where Element == UInt8 {
    /// `bytes` keys.
    public static func _isCompatibleKey(with type: FieldType) -> Bool {
        if case .bytes = type { return true }
        return false
    }
    /// The bytes themselves.
    @inlinable
    public func _withKeyBytes<R, E: Error>(_ body: (UnsafeRawBufferPointer) throws(E) -> R) throws(E) -> R {
        try MapTable.withBytes(of: self, body)
    }
    /// A copy of the bytes.
    public init(_keyBytes bytes: UnsafeRawBufferPointer) { self = Array(bytes) }
}

extension Array: SlotMapValue where Element: SlotScalar {
    /// `array` values of `Element`, and `bytes` values for `[UInt8]`.
    public static func _isCompatible(with type: FieldType) -> Bool {
        switch type {
        case .array(let element, _): return element == Element.scalarType
        case .bytes: return Element.self == UInt8.self
        default: return false
        }
    }
    /// For arrays, any count other than the field's; for bytes, a length over capacity.
    public func _excessSize(for type: FieldType) -> Int? {
        switch type {
        case .array(_, let count): return self.count == count ? nil : self.count
        case .bytes(let capacity): return self.count > capacity ? self.count : nil
        default: return nil
        }
    }
    /// Elements at their width, or length and bytes.
    public func _write(to value: SlotMapValueArea, type: FieldType) {
        let area = value.pointer
        if case .bytes = type {
            withUnsafeBytes { MapCodecRaw.writeVariable($0, to: area) }
            return
        }
        let address = MappedAddress(area)
        for (index, element) in enumerated() {
            address.advanced(by: index * Element.scalarType.byteWidth).storeBits(element._slotBits, width: Element.scalarType.byteWidth)
        }
    }
    /// Elements at their width, or length and bytes.
    public static func _read(from value: SlotMapValueArea, type: FieldType) -> [Element] {
        let area = UnsafeRawPointer(value.pointer)
        if case .bytes = type {
            return MapCodecRaw.readVariable(from: area, type: type) { bytes in bytes.map { Element(_slotBits: UInt64($0)) } }
        }
        guard case .array(_, let count) = type else { return [] }
        let address = MappedAddress(UnsafeMutableRawPointer(mutating: area))
        return (0..<count).map { Element(_slotBits: address.advanced(by: $0 * Element.scalarType.byteWidth).loadBits(width: Element.scalarType.byteWidth)) }
    }
}

extension SlotMapKey where Self: SlotInteger {
    /// Integer keys of this type.
    public static func _isCompatibleKey(with type: FieldType) -> Bool { type == .scalar(Self.scalarType) }
    /// The integer's bits as 8 little-endian bytes.
    @inlinable
    public func _withKeyBytes<R, E: Error>(_ body: (UnsafeRawBufferPointer) throws(E) -> R) throws(E) -> R {
        let bits = _slotBits.littleEndian
        return try withUnsafeBytes(of: bits) { bytes in Result { () throws(E) in try body(bytes) } }.get()
    }
    /// From 8 little-endian bytes.
    public init(_keyBytes bytes: UnsafeRawBufferPointer) {
        var bits: UInt64 = 0
        for index in 0..<Swift.min(8, bytes.count) { bits |= UInt64(bytes[index]) << (8 * UInt64(index)) }
        self.init(_slotBits: bits)
    }
}

extension SlotMapValue where Self: SlotScalar {
    /// Scalar values of this type.
    public static func _isCompatible(with type: FieldType) -> Bool { type == .scalar(Self.scalarType) }
    /// Always fits.
    @inlinable
    public func _excessSize(for type: FieldType) -> Int? { nil }
    /// One atomic 8-byte word.
    @inlinable
    public func _write(to value: SlotMapValueArea, type: FieldType) {
        let area = value.pointer
        MappedAddress(area).storeBits(_slotBits, width: 8)
    }
    /// One atomic load of the type's width.
    @inlinable
    public static func _read(from value: SlotMapValueArea, type: FieldType) -> Self {
        Self(_slotBits: MappedAddress(value.pointer).loadBits(width: Self.scalarType.byteWidth))
    }
    /// A scalar is one word.
    @inlinable
    public static var _isWord: Bool { true }
    /// The word's low bytes (`init(_slotBits:)` truncates to the type's width).
    @inlinable
    public static func _fromWord(_ bits: UInt64) -> Self { Self(_slotBits: bits) }
    /// The stored bits, as `_write` stores them.
    @inlinable
    public var _word: UInt64 { _slotBits }
}

extension Int8: SlotMapKey, SlotMapValue {}
extension Int16: SlotMapKey, SlotMapValue {}
extension Int32: SlotMapKey, SlotMapValue {}
extension Int64: SlotMapKey, SlotMapValue {}
extension UInt8: SlotMapKey, SlotMapValue {}
extension UInt16: SlotMapKey, SlotMapValue {}
extension UInt32: SlotMapKey, SlotMapValue {}
extension UInt64: SlotMapKey, SlotMapValue {}
extension Float: SlotMapValue {}
extension Double: SlotMapValue {}
extension Bool: SlotMapValue {}

/// Length-prefixed byte areas inside map buckets.
enum MapCodecRaw {
    static func writeVariable(_ bytes: UnsafeRawBufferPointer, to area: UnsafeMutableRawPointer) {
        MappedAddress(area).atomic(UInt64.self).pointee.store(UInt64(bytes.count), ordering: .relaxed)
        if let base = bytes.baseAddress { (area + 8).copyMemory(from: base, byteCount: bytes.count) }
    }

    static func readVariable<R>(from area: UnsafeRawPointer, type: FieldType, _ make: (UnsafeRawBufferPointer) -> R) -> R {
        let capacity: Int
        switch type {
        case .string(let value), .bytes(let value): capacity = value
        default: capacity = 0
        }
        let length = Int(min(MappedAddress(UnsafeMutableRawPointer(mutating: area)).atomic(UInt64.self).pointee.load(ordering: .relaxed), UInt64(capacity)))
        return make(UnsafeRawBufferPointer(start: area + 8, count: length))
    }
}
