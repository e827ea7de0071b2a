// Little-endian field access on byte arrays, for the header and journal
// records that are parsed from `pread` copies rather than the live mapping.
// Endianness is always explicit so a big-endian reader would fail loudly on
// the byte-order mark instead of misreading sizes.

extension Array where Element == UInt8 {
    func littleEndian<T: FixedWidthInteger>(_: T.Type, at offset: Int) -> T {
        var value: T = 0
        for index in 0..<MemoryLayout<T>.size {
            value |= T(truncatingIfNeeded: self[offset + index]) << (8 * index)
        }
        return value
    }

    mutating func setLittleEndian<T: FixedWidthInteger>(_ value: T, at offset: Int) {
        for index in 0..<MemoryLayout<T>.size {
            self[offset + index] = UInt8(truncatingIfNeeded: value >> (8 * index))
        }
    }
}

/// Rounds `value` up to a multiple of `alignment`, a power of two.
@inline(__always)
func roundUp(_ value: Int, to alignment: Int) -> Int {
    (value + alignment - 1) & ~(alignment - 1)
}
