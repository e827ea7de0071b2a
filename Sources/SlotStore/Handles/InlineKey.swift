/// A map key of at most `capacity` bytes, held inline: no heap storage and no
/// reference count, so a lookup with it costs no retain or release.
///
/// Use it for a map whose schema key is a `string` or `bytes` of key capacity
/// at most `capacity`, when the key comes from a buffer of your own (a
/// request's bytes, a fixed-size identifier) rather than a `String`:
///
/// ```swift
/// let sessions = try store.map("sessions", key: InlineKey<32>.self, value: Int64.self)
/// let id = try InlineKey<32>("a1b2c3")               // or from bytes, a buffer, a Span
/// try sessions.set(1_767_225_600, for: id)
/// let expires = try sessions.get(id)                 // lock-free, no retain
/// ```
///
/// A map stores keys as bytes, so an `InlineKey` and a `String` (or
/// `[UInt8]`) with the same bytes are the same key: an entry set through a
/// `MapField<String, _>` handle is found through a `MapField<InlineKey<32>, _>`
/// handle of the same map, and the other way round.
///
/// Constructing a key longer than `capacity` throws ``InlineKeyError/tooLong(size:capacity:)``.
/// A key that fits `capacity` but not the map's key capacity (with an
/// `InlineKey<64>` on a map of key capacity 32) throws
/// ``SlotStoreError/valueTooLarge(path:field:capacity:size:)`` from the
/// map's methods, as a `String` key does. Looking a map up with a
/// `capacity` below its key capacity throws
/// ``SlotStoreError/wrongFieldType(path:name:expected:found:)``, since
/// iterating the map could meet keys that don't fit.
///
/// Two keys are equal when their bytes are, whatever their text; the type is
/// `BitwiseCopyable`, so copying one copies `capacity + 8` bytes and nothing else.
public struct InlineKey<let capacity: Int>: SlotMapKey, BitwiseCopyable, CustomStringConvertible {
    /// The key's bytes, then zeros up to `capacity` (zeros, so two keys of
    /// the same bytes are the same image, whatever they were built from).
    @usableFromInline var storage: InlineArray<capacity, UInt8>
    /// How many bytes of `storage` are the key; always in 0...capacity.
    @usableFromInline var length: Int

    /// The key made of `bytes`, copied.
    ///
    /// - Throws: ``InlineKeyError/tooLong(size:capacity:)`` when `bytes` has
    ///   more than `capacity` bytes.
    @inlinable
    public init(_ bytes: UnsafeRawBufferPointer) throws(InlineKeyError) {
        guard bytes.count <= capacity else { throw .tooLong(size: bytes.count, capacity: capacity) }
        self.init(unchecked: bytes)
    }

    /// The key made of `bytes`: an array, a slice, a buffer pointer, a string's `utf8` view.
    ///
    /// - Throws: ``InlineKeyError/tooLong(size:capacity:)`` when `bytes` has
    ///   more than `capacity` bytes.
    @inlinable
    public init(_ bytes: some Sequence<UInt8>) throws(InlineKeyError) {
        // Contiguous bytes (arrays, buffers, native strings' UTF-8) are one
        // copy. (No typed-throws closure here: one crashes the 6.3 compiler.)
        var made: Self?
        if let size = bytes.withContiguousStorageIfAvailable({ buffer -> Int in
            if buffer.count <= capacity { made = Self(unchecked: UnsafeRawBufferPointer(buffer)) }
            return buffer.count
        }) {
            guard let made else { throw .tooLong(size: size, capacity: capacity) }
            self = made
            return
        }
        self.init(unchecked: UnsafeRawBufferPointer(start: nil, count: 0))
        var size = 0
        for byte in bytes {
            if size < capacity { storage[size] = byte }
            size += 1
        }
        // Counted to the end, so the error says how long the key was.
        guard size <= capacity else { throw .tooLong(size: size, capacity: capacity) }
        length = size
    }

    /// The key made of a span's bytes, copied.
    ///
    /// - Throws: ``InlineKeyError/tooLong(size:capacity:)`` when `bytes` has
    ///   more than `capacity` bytes.
    @inlinable
    public init(_ bytes: Span<UInt8>) throws(InlineKeyError) {
        self = try bytes.withUnsafeBytes { buffer throws(InlineKeyError) in try Self(buffer) }
    }

    /// The key made of `string`'s UTF-8 bytes: the same key as `string` itself
    /// in a map of `String` keys.
    ///
    /// - Throws: ``InlineKeyError/tooLong(size:capacity:)`` when the UTF-8 form
    ///   has more than `capacity` bytes.
    @inlinable
    public init(_ string: some StringProtocol) throws(InlineKeyError) {
        try self.init(string.utf8)
    }

    /// `bytes`, whose count the caller has checked against `capacity`.
    @inlinable
    init(unchecked bytes: UnsafeRawBufferPointer) {
        storage = InlineArray(repeating: 0)
        length = bytes.count
        var destination = storage.mutableSpan
        destination.withUnsafeMutableBytes { $0.copyMemory(from: bytes) }
    }

    /// The number of bytes in the key, from 0 to `capacity`.
    @inlinable
    public var count: Int { length }

    /// Calls `body` with the key's bytes, which are valid only during the call.
    @inlinable
    public func withUnsafeBytes<R, E: Error>(_ body: (UnsafeRawBufferPointer) throws(E) -> R) throws(E) -> R {
        // Through the inline array's span: no allocation, no reference count.
        // (A parameter the optimizer can't address in place is copied to the
        // stack first: `capacity + 8` bytes, no retain.)
        try storage.span.withUnsafeBytes { all throws(E) in
            try body(UnsafeRawBufferPointer(rebasing: all[..<length]))
        }
    }

    /// The key as the `slotstore` tool prints map keys: its text in double
    /// quotes when it is valid UTF-8, else `0x` and its bytes in hexadecimal.
    public var description: String {
        withUnsafeBytes { bytes in
            if let text = String(validating: bytes, as: UTF8.self) {
                var quoted = "\""
                for character in text {
                    switch character {
                    case "\\": quoted += "\\\\"
                    case "\"": quoted += "\\\""
                    case "\n": quoted += "\\n"
                    default: quoted.append(character)
                    }
                }
                return quoted + "\""
            }
            let digits: [Character] = Array("0123456789abcdef")
            var hex = "0x"
            for byte in bytes {
                hex.append(digits[Int(byte >> 4)])
                hex.append(digits[Int(byte & 0x0F)])
            }
            return hex
        }
    }

    /// Whether two keys have the same bytes.
    @inlinable
    public static func == (left: Self, right: Self) -> Bool {
        left.withUnsafeBytes { leftBytes in right.withUnsafeBytes { rightBytes in leftBytes.elementsEqual(rightBytes) } }
    }

    /// Hashes the key's bytes (not the zeros after them).
    @inlinable
    public func hash(into hasher: inout Hasher) {
        withUnsafeBytes { hasher.combine(bytes: $0) }
    }

    // MARK: SlotMapKey

    /// `string` and `bytes` keys of key capacity at most `capacity`: every
    /// key such a map holds fits, so iterating it never meets one that doesn't.
    public static func _isCompatibleKey(with type: FieldType) -> Bool {
        switch type {
        case .string(let keyCapacity), .bytes(let keyCapacity): keyCapacity <= capacity
        default: false
        }
    }

    /// Says which key types the handle accepts, for the error when the schema's isn't one.
    public static var _keyDescription: String { "InlineKey<\(capacity)> (string or bytes keys of key capacity at most \(capacity))" }

    /// The stored bytes, lent in place.
    @inlinable
    public func _withKeyBytes<R, E: Error>(_ body: (UnsafeRawBufferPointer) throws(E) -> R) throws(E) -> R {
        try withUnsafeBytes(body)
    }

    /// A copy of a stored key. The map's key capacity is at most `capacity`
    /// (checked when the handle was looked up), so nothing is cut; the clamp
    /// only keeps a damaged length from writing past the storage.
    public init(_keyBytes bytes: UnsafeRawBufferPointer) {
        self.init(unchecked: UnsafeRawBufferPointer(rebasing: bytes.prefix(capacity)))
    }
}

/// Why an ``InlineKey`` could not be made.
public enum InlineKeyError: Error, Hashable, Sendable, CustomStringConvertible {
    /// The key has `size` bytes, more than the `capacity` of the ``InlineKey`` type.
    case tooLong(size: Int, capacity: Int)

    /// The error as one sentence: what was expected, what was found, what to do.
    public var description: String {
        switch self {
        case .tooLong(let size, let capacity):
            "a key of \(size) bytes does not fit InlineKey<\(capacity)>, which holds at most \(capacity) bytes; " +
                "shorten the key, or use an InlineKey whose capacity is the map's key capacity"
        }
    }
}
