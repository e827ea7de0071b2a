/// CRC-32C (Castagnoli), the checksum of the header and the stored schema.
///
/// Table-driven and portable; these checksums cover a few hundred bytes at
/// open, so a hardware CRC instruction would not be measurable.
enum CRC32C {
    private static let table: [UInt32] = (0..<256).map { index in
        var crc = UInt32(index)
        for _ in 0..<8 { crc = (crc & 1) != 0 ? (crc >> 1) ^ 0x82F6_3B78 : crc >> 1 }
        return crc
    }

    static func checksum(_ bytes: some Sequence<UInt8>) -> UInt32 {
        var crc: UInt32 = 0xFFFF_FFFF
        for byte in bytes { crc = table[Int((crc ^ UInt32(byte)) & 0xFF)] ^ (crc >> 8) }
        return crc ^ 0xFFFF_FFFF
    }

    /// The checksum of `count` little-endian words, `word(index)` each: how
    /// the journal checks records it reads word by word from a mapping or a copy.
    static func checksum(words count: Int, _ word: (Int) -> UInt64) -> UInt32 {
        var crc: UInt32 = 0xFFFF_FFFF
        for index in 0..<count {
            var value = word(index)
            for _ in 0..<8 {
                crc = table[Int((crc ^ UInt32(truncatingIfNeeded: value)) & 0xFF)] ^ (crc >> 8)
                value >>= 8
            }
        }
        return crc ^ 0xFFFF_FFFF
    }
}

/// 64-bit FNV-1a, the schema hash: stable, cheap, and not a security boundary.
enum FNV1a {
    static func hash(_ bytes: some Sequence<UInt8>) -> UInt64 {
        var hash: UInt64 = 0xCBF2_9CE4_8422_2325
        for byte in bytes { hash = (hash ^ UInt64(byte)) &* 0x0000_0100_0000_01B3 }
        return hash
    }
}
