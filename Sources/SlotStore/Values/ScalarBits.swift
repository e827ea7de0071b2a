import Synchronization

/// Conversions between a scalar's stored bits (zero-extended to 64) and ``FieldValue``.
extension ScalarType {
    func value(fromBits raw: UInt64) -> FieldValue {
        switch self {
        case .int8: .int(Int64(Int8(truncatingIfNeeded: raw)))
        case .int16: .int(Int64(Int16(truncatingIfNeeded: raw)))
        case .int32: .int(Int64(Int32(truncatingIfNeeded: raw)))
        case .int64: .int(Int64(bitPattern: raw))
        case .uint8: .uint(raw & 0xFF)
        case .uint16: .uint(raw & 0xFFFF)
        case .uint32: .uint(raw & 0xFFFF_FFFF)
        case .uint64: .uint(raw)
        case .float: .double(Double(Float(bitPattern: UInt32(truncatingIfNeeded: raw))))
        case .double: .double(Double(bitPattern: raw))
        case .bool: .bool(raw & 0xFF != 0)
        }
    }

    /// The bits of a value already converted to this type (see ``FieldValue/converted(to:field:path:)``).
    func bits(of value: FieldValue) -> UInt64 {
        let mask = byteWidth == 8 ? UInt64.max : (1 << (8 * UInt64(byteWidth))) - 1
        switch value {
        case .int(let number): return UInt64(bitPattern: number) & mask
        case .uint(let number): return number & mask
        case .double(let number): return self == .float ? UInt64(Float(number).bitPattern) : number.bitPattern
        case .bool(let flag): return flag ? 1 : 0
        default: return 0
        }
    }
}

extension MappedAddress {
    /// The scalar of `width` bytes here, zero-extended, loaded atomically.
    @inlinable
    func loadBits(width: Int) -> UInt64 {
        switch width {
        case 8: atomic(UInt64.self).pointee.load(ordering: .acquiring)
        case 4: UInt64(atomic(UInt32.self).pointee.load(ordering: .acquiring))
        case 2: UInt64(atomic(UInt16.self).pointee.load(ordering: .acquiring))
        default: UInt64(atomic(UInt8.self).pointee.load(ordering: .acquiring))
        }
    }

    /// Elements `range` of `width` bytes from `source` (unaligned, in memory
    /// form) to `destination`, each one relaxed atomic store, so a lock-free
    /// element reader never sees a torn element. One loop per width: a width
    /// switch per element was most of a whole-array write. `byteMask` keeps
    /// Bool bytes 0 or 1.
    static func storeElements(from source: UnsafeRawPointer, to destination: MappedAddress, width: Int,
                              range: Range<Int>, byteMask: UInt8) {
        switch width {
        case 8:
            let words = destination.atomic(UInt64.self)
            for item in range { words[item].store(source.loadUnaligned(fromByteOffset: item &* 8, as: UInt64.self), ordering: .relaxed) }
        case 4:
            let words = destination.atomic(UInt32.self)
            for item in range { words[item].store(source.loadUnaligned(fromByteOffset: item &* 4, as: UInt32.self), ordering: .relaxed) }
        case 2:
            let words = destination.atomic(UInt16.self)
            for item in range { words[item].store(source.loadUnaligned(fromByteOffset: item &* 2, as: UInt16.self), ordering: .relaxed) }
        default:
            let bytes = destination.atomic(UInt8.self)
            for item in range { bytes[item].store(source.load(fromByteOffset: item, as: UInt8.self) & byteMask, ordering: .relaxed) }
        }
    }

    @inlinable
    func storeBits(_ bits: UInt64, width: Int) {
        switch width {
        case 8: atomic(UInt64.self).pointee.store(bits, ordering: .releasing)
        case 4: atomic(UInt32.self).pointee.store(UInt32(truncatingIfNeeded: bits), ordering: .releasing)
        case 2: atomic(UInt16.self).pointee.store(UInt16(truncatingIfNeeded: bits), ordering: .releasing)
        default: atomic(UInt8.self).pointee.store(UInt8(truncatingIfNeeded: bits), ordering: .releasing)
        }
    }
}
