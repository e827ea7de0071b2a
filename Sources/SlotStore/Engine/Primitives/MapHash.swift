/// The hash functions of map keys, one per bucket layout (see ``MapLayoutVersion``).
///
/// Both are keyed multiply-fold hashes of the wyhash family: `fold(a, b)` is
/// the 128-bit product of `a` and `b` with its halves XORed. They differ in
/// their dependency chain, which is most of a small map's lookup:
///
/// - ``chained(_:seed:)`` (layout 1, files of format 1.x) folds every 8-byte
///   word into one running state: a 32-byte key is six dependent products.
/// - ``lanes(_:seed:)`` (layout 2, format 2.0) keeps two independent lanes and
///   folds two key words per product: a 32-byte key is two products the CPU
///   runs side by side, and one to combine them.
///
/// Both are specified byte for byte in FileFormat.md, with test vectors that
/// `MapTests` checks; another implementation must match them exactly, since
/// the hash decides which bucket an entry lives in.
enum MapHash {
    static let secret0: UInt64 = 0xA076_1D64_78BD_642F
    static let secret1: UInt64 = 0xE703_7ED1_A0B4_28DB
    static let secret2: UInt64 = 0x8EBC_6AF0_9C88_C6E3
    static let secret3: UInt64 = 0x5899_65CC_7537_4CC3

    @inline(__always)
    static func fold(_ a: UInt64, _ b: UInt64) -> UInt64 {
        let product = a.multipliedFullWidth(by: b)
        return product.high ^ product.low
    }

    /// The per-map seed: every map of every store hashes differently, so
    /// colliding keys can't be precomputed.
    static func mapSeed(store: UInt64, fieldIndex: Int) -> UInt64 {
        fold(store ^ 0x2D35_8DCC_AA6C_78A5, UInt64(fieldIndex) &+ 0x8BB8_4B93_962E_ACC9)
    }

    /// Layout 2's hash: two lanes over 32-byte blocks, a 16-byte block on the
    /// first lane, the last 0-15 bytes (zero-padded to two words) on the
    /// second, and the length folded in at the end.
    @inline(__always)
    static func lanes(_ key: UnsafeRawBufferPointer, seed: UInt64) -> UInt64 {
        var first = seed ^ secret0
        var second = seed ^ secret1
        let count = key.count
        // Wrapping arithmetic throughout: a key is at most 16 MiB, and overflow
        // checks were a sixth of a small map's lookup.
        if let bytes = key.baseAddress {
            var index = 0
            while count &- index >= 32 {
                first = fold(bytes.loadUnaligned(fromByteOffset: index, as: UInt64.self) ^ secret1,
                             bytes.loadUnaligned(fromByteOffset: index &+ 8, as: UInt64.self) ^ first)
                second = fold(bytes.loadUnaligned(fromByteOffset: index &+ 16, as: UInt64.self) ^ secret2,
                              bytes.loadUnaligned(fromByteOffset: index &+ 24, as: UInt64.self) ^ second)
                index &+= 32
            }
            if count &- index >= 16 {
                first = fold(bytes.loadUnaligned(fromByteOffset: index, as: UInt64.self) ^ secret1,
                             bytes.loadUnaligned(fromByteOffset: index &+ 8, as: UInt64.self) ^ first)
                index &+= 16
            }
            if index < count {
                let low = tailWord(bytes, from: index, to: count)
                let high = tailWord(bytes, from: index &+ 8, to: count)
                second = fold(low ^ secret2, high ^ second)
            }
        }
        return fold(first ^ secret3 ^ UInt64(truncatingIfNeeded: count), second ^ secret0)
    }

    /// The little-endian word of the bytes `start..<min(start + 8, end)`, zero-padded.
    @inline(__always)
    static func tailWord(_ bytes: UnsafeRawPointer, from start: Int, to end: Int) -> UInt64 {
        if end &- start >= 8 { return bytes.loadUnaligned(fromByteOffset: start, as: UInt64.self) }
        var word: UInt64 = 0
        var shift: UInt64 = 0
        var index = start
        while index < end {
            word |= UInt64(bytes.load(fromByteOffset: index, as: UInt8.self)) &<< shift
            shift &+= 8
            index &+= 1
        }
        return word
    }

    /// Layout 1's hash (files of format 1.x): one chain of products, a word at a time.
    @inline(__always)
    static func chained(_ key: UnsafeRawBufferPointer, seed: UInt64) -> UInt64 {
        var state = seed ^ secret0
        let count = key.count
        guard let bytes = key.baseAddress else { return fold(fold(state, secret2), secret3 ^ seed) }
        var index = 0
        while index &+ 8 <= count {
            state = fold(state ^ bytes.loadUnaligned(fromByteOffset: index, as: UInt64.self), secret1)
            index &+= 8
        }
        let tail = tailWord(bytes, from: index, to: count)
        state = fold(state ^ tail ^ UInt64(count), secret2)
        return fold(state, secret3 ^ seed)
    }
}
