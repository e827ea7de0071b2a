/// Converts map keys and values between ``FieldValue`` and their bytes in a bucket.
enum MapCodec {
    /// The key's bytes as stored: UTF-8 or raw bytes, or an integer's bits as 8 little-endian bytes.
    static func keyBytes(_ key: FieldValue, type: FieldType) -> [UInt8] {
        switch (type, key) {
        case (.string, .string(let text)): return Array(text.utf8)
        case (.bytes, .bytes(let bytes)): return bytes
        case (.scalar(let scalar), _):
            let bits = scalar.bits(of: key)
            return (0..<8).map { UInt8(truncatingIfNeeded: bits >> (8 * $0)) }
        default: return []
        }
    }

    static func key(from bytes: UnsafeRawBufferPointer, type: FieldType) -> FieldValue {
        switch type {
        case .string: return .string(String(decoding: bytes, as: UTF8.self))
        case .bytes: return .bytes(Array(bytes))
        case .scalar(let scalar):
            var bits: UInt64 = 0
            for index in 0..<min(8, bytes.count) { bits |= UInt64(bytes[index]) << (8 * UInt64(index)) }
            return scalar.value(fromBits: bits)
        default: return .bytes(Array(bytes))
        }
    }

    /// Writes an already converted value into a bucket's value area.
    static func write(_ value: FieldValue, type: FieldType, to area: MappedAddress) {
        switch (type, value) {
        case (.scalar(let scalar), _):
            area.storeBits(scalar.bits(of: value), width: 8)
        case (.array(let element, _), .array(let values)):
            for (index, item) in values.enumerated() {
                area.advanced(by: index * element.byteWidth).storeBits(element.bits(of: item), width: element.byteWidth)
            }
        case (.string, .string(let text)):
            writeVariable(Array(text.utf8), to: area)
        case (.bytes, .bytes(let bytes)):
            writeVariable(bytes, to: area)
        default:
            break
        }
    }

    static func writeVariable(_ bytes: [UInt8], to area: MappedAddress) {
        area.atomic(UInt64.self).pointee.store(UInt64(bytes.count), ordering: .relaxed)
        bytes.withUnsafeBytes { source in
            if let base = source.baseAddress { area.advanced(by: 8).copyBytes(from: base, count: source.count) }
        }
    }

    /// Reads a value area (in the mapping under a seqlock, or in a copied image).
    static func read(type: FieldType, from area: MappedAddress) -> FieldValue {
        switch type {
        case .scalar(let scalar):
            return scalar.value(fromBits: area.loadBits(width: scalar.byteWidth))
        case .array(let element, let count):
            return .array((0..<count).map { element.value(fromBits: area.advanced(by: $0 * element.byteWidth).loadBits(width: element.byteWidth)) })
        case .string(let capacity), .bytes(let capacity):
            let length = Int(min(area.atomic(UInt64.self).pointee.load(ordering: .relaxed), UInt64(capacity)))
            let bytes = area.advanced(by: 8).bytes(count: length)
            if case .string = type { return .string(String(decoding: bytes, as: UTF8.self)) }
            return .bytes(bytes)
        case .map:
            return .map([])
        }
    }
}
