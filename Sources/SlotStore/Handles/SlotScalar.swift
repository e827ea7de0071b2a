/// A Swift type that can live in a scalar field or an array element:
/// `Int8` … `Int64`, `UInt8` … `UInt64`, `Float`, `Double` and `Bool`.
///
/// Each is accessed with one atomic instruction of its own width on the
/// mapped file.
public protocol SlotScalar: Sendable, Equatable {
    /// The schema type this Swift type stands for.
    static var scalarType: ScalarType { get }
    /// Creates a value from its stored bits (the low `byteWidth` bytes). Implementation detail.
    init(_slotBits bits: UInt64)
    /// The value's stored bits, zero-extended. Implementation detail.
    var _slotBits: UInt64 { get }
}

/// A ``SlotScalar`` integer type, which adds atomic `add` to its handles.
public protocol SlotInteger: SlotScalar, FixedWidthInteger {}

extension SlotInteger {
    /// Reinterprets the low bits as this type.
    @inlinable @inline(__always)
    public init(_slotBits bits: UInt64) { self.init(truncatingIfNeeded: bits) }
    /// The two's-complement bits, truncated to 64.
    @inlinable @inline(__always)
    public var _slotBits: UInt64 { UInt64(truncatingIfNeeded: self) & (UInt64.max >> (64 - Self.bitWidth)) }
}

extension Int8: SlotInteger {
    /// ``ScalarType/int8``.
    public static var scalarType: ScalarType { .int8 }
}
extension Int16: SlotInteger {
    /// ``ScalarType/int16``.
    public static var scalarType: ScalarType { .int16 }
}
extension Int32: SlotInteger {
    /// ``ScalarType/int32``.
    public static var scalarType: ScalarType { .int32 }
}
extension Int64: SlotInteger {
    /// ``ScalarType/int64``.
    public static var scalarType: ScalarType { .int64 }
}
extension UInt8: SlotInteger {
    /// ``ScalarType/uint8``.
    public static var scalarType: ScalarType { .uint8 }
}
extension UInt16: SlotInteger {
    /// ``ScalarType/uint16``.
    public static var scalarType: ScalarType { .uint16 }
}
extension UInt32: SlotInteger {
    /// ``ScalarType/uint32``.
    public static var scalarType: ScalarType { .uint32 }
}
extension UInt64: SlotInteger {
    /// ``ScalarType/uint64``.
    public static var scalarType: ScalarType { .uint64 }
}

extension Float: SlotScalar {
    /// ``ScalarType/float``.
    public static var scalarType: ScalarType { .float }
    /// The IEEE 754 bit pattern.
    @inlinable @inline(__always)
    public init(_slotBits bits: UInt64) { self.init(bitPattern: UInt32(truncatingIfNeeded: bits)) }
    /// The IEEE 754 bit pattern.
    @inlinable @inline(__always)
    public var _slotBits: UInt64 { UInt64(bitPattern.self) }
}

extension Double: SlotScalar {
    /// ``ScalarType/double``.
    public static var scalarType: ScalarType { .double }
    /// The IEEE 754 bit pattern.
    @inlinable @inline(__always)
    public init(_slotBits bits: UInt64) { self.init(bitPattern: bits) }
    /// The IEEE 754 bit pattern.
    @inlinable @inline(__always)
    public var _slotBits: UInt64 { bitPattern }
}

extension Bool: SlotScalar {
    /// ``ScalarType/bool``.
    public static var scalarType: ScalarType { .bool }
    /// Any non-zero byte reads as `true`, so a damaged byte can't make an invalid `Bool`.
    @inlinable @inline(__always)
    public init(_slotBits bits: UInt64) { self = (bits & 0xFF) != 0 }
    /// 1 or 0.
    @inlinable @inline(__always)
    public var _slotBits: UInt64 { self ? 1 : 0 }
}
