import Synchronization

/// The shared machinery of string and bytes fields: a seqlock-protected
/// length and payload. Readers never take the lock; writers do.
@usableFromInline
struct VariableField: Sendable, FieldHandle {
    @usableFromInline let gate: LockFreeGate
    @usableFromInline let lengthWord: MappedAddress
    @usableFromInline let payload: MappedAddress
    @usableFromInline let sequence: MappedAddress
    /// Stored: computing it from the layout walks the field type on every read.
    /// This file's; ``liveCapacity`` is the live file's.
    @usableFromInline let capacity: Int

    /// The store, file and field this handle was resolved in (see ``FieldReference``).
    /// Last: the words the inlined operations use come first, as before it existed.
    @usableFromInline let reference: FieldReference

    @usableFromInline
    init(reference: FieldReference) {
        let (core, layout) = (reference.core, reference.layout)
        self.reference = reference
        self.gate = core.gate
        self.lengthWord = core.address(layout.secondWordOffset)
        self.payload = core.address(layout.payloadOffset)
        self.sequence = core.address(layout.sequenceOffset)
        self.capacity = layout.payloadCapacity
    }

    /// A field of `core` for the engine's own reads and writes (by-name calls), which follow no compaction.
    init(core: StoreCore, layout: FieldLayout) {
        self.init(reference: FieldReference(session: nil, core: core, layout: layout))
    }

    @usableFromInline var core: StoreCore { reference.core }
    var layout: FieldLayout { reference.layout }

    /// The capacity in the live file: a compaction in place (by another
    /// process or another store object) may have grown it since this handle
    /// was resolved. Falls back to this file's when the live file has no such
    /// field, whose calls then throw the reason.
    var liveCapacity: Int {
        if _slowPath(gate.isRetired), let live = try? rebound() { return live.capacity }
        return capacity
    }

    /// The current length, clamped so damaged bytes can't make a reader overrun.
    @inline(__always)
    func currentLength() -> Int {
        Int(min(lengthWord.atomic(UInt64.self).pointee.load(ordering: .relaxed), UInt64(capacity)))
    }

    /// A consistent copy of the value.
    func read() throws(SlotStoreError) -> [UInt8] {
        if gate.isRetired { return try rebound().read() }
        return try core.readConsistently(sequence: sequence, writes: nil, field: layout.index) { payload.bytes(count: currentLength()) }
    }

    /// One uncontended attempt to copy the value to `base` (at least
    /// ``capacity`` bytes): its length, or -1 when a writer was in the way and
    /// the caller must take the retrying path. Static over plain addresses so
    /// the inlined caller's closure captures no references (a retain each).
    @inlinable @inline(__always)
    static func readOnce(sequence: MappedAddress, lengthWord: MappedAddress, payload: MappedAddress, capacity: Int,
                         into base: UnsafeMutableRawPointer) -> Int {
        let sequenceWord = SequenceWord(sequence)
        guard let before = sequenceWord.beginRead() else { return -1 }
        let length = Int(min(lengthWord.atomic(UInt64.self).pointee.load(ordering: .relaxed), UInt64(capacity)))
        payload.copyShortBytes(to: base, count: length)
        return sequenceWord.endRead(before) ? length : -1
    }

    @usableFromInline @inline(never)
    func readRetrying(into base: UnsafeMutableRawPointer) throws(SlotStoreError) -> Int {
        try core.readConsistently(sequence: sequence, writes: nil, field: layout.index) {
            let length = currentLength()
            payload.copyBytes(to: base, count: length)
            return length
        }
    }

    /// Copies a consistent value into `buffer`, grown to ``capacity`` first if
    /// smaller; returns its length. What both handles' `read(into:)` do.
    @inlinable
    func read(into buffer: inout [UInt8]) throws(SlotStoreError) -> Int {
        // Rebound before sizing the buffer: the new file's capacity may be larger.
        if _slowPath(gate.isRetired) { return try readRetired(into: &buffer) }
        if buffer.count < capacity { buffer = [UInt8](repeating: 0, count: capacity) }
        // The first attempt is inlined and cannot fail; retries, recovery and
        // timeouts take the out-of-line path.
        let (sequence, lengthWord, payload, capacity) = (self.sequence, self.lengthWord, self.payload, self.capacity)
        let length = buffer.withUnsafeMutableBytes { destination in
            VariableField.readOnce(sequence: sequence, lengthWord: lengthWord, payload: payload, capacity: capacity,
                                   into: destination.baseAddress!)
        }
        if _fastPath(length >= 0) { return length }
        return try readRetrying(into: &buffer)
    }

    @usableFromInline @inline(never)
    func readRetrying(into buffer: inout [UInt8]) throws(SlotStoreError) -> Int {
        let field = self
        return try buffer.withUnsafeMutableBytes { destination in
            Result { () throws(SlotStoreError) in try field.readRetrying(into: destination.baseAddress!) }
        }.get()
    }

    /// Out of line: an inlinable function that calls itself is not inlined.
    @usableFromInline @inline(never)
    func readRetired(into buffer: inout [UInt8]) throws(SlotStoreError) -> Int {
        try rebound().read(into: &buffer)
    }

    /// Copies a consistent value into `buffer`, which must hold at least
    /// ``capacity`` bytes; returns its length. No array to check for sharing:
    /// the raw form of both handles' `read(into:)`.
    @inlinable
    func read(into buffer: UnsafeMutableRawBufferPointer) throws(SlotStoreError) -> Int {
        if _slowPath(gate.isRetired) { return try readRetired(into: buffer) }
        guard _fastPath(buffer.count >= capacity) else { throw bufferTooSmall(buffer.count) }
        guard let base = buffer.baseAddress else { return 0 }  // capacity 0: always empty
        return try readInPlace(into: base)
    }

    /// A consistent copy into `base` (at least ``capacity`` bytes) from this
    /// handle's file, retired or not; its length. The first attempt is inlined.
    @inlinable @inline(__always)
    func readInPlace(into base: UnsafeMutableRawPointer) throws(SlotStoreError) -> Int {
        let length = VariableField.readOnce(sequence: sequence, lengthWord: lengthWord, payload: payload,
                                            capacity: capacity, into: base)
        if _fastPath(length >= 0) { return length }
        return try readRetrying(into: base)
    }

    @usableFromInline @inline(never)
    func readRetired(into buffer: UnsafeMutableRawBufferPointer) throws(SlotStoreError) -> Int {
        try rebound().read(into: buffer)
    }

    @usableFromInline @inline(never)
    func bufferTooSmall(_ size: Int) -> SlotStoreError {
        .invalidValue(path: core.path, field: layout.name,
                      detail: "the buffer holds \(size) bytes, less than the field's capacity of \(capacity); pass a buffer of at least `capacity` bytes")
    }

    /// Replaces the value in its own transaction, on the live file.
    func store(_ bytes: some Collection<UInt8>) throws(SlotStoreError) {
        let direct = bytes.withContiguousStorageIfAvailable { buffer in
            Result { () throws(SlotStoreError) in try store(contiguous: UnsafeRawBufferPointer(buffer)) }
        }
        if let direct { return try direct.get() }
        try Array(bytes).withUnsafeBytes { buffer in
            Result { () throws(SlotStoreError) in try store(contiguous: buffer) }
        }.get()
    }

    /// Replaces the value with `bytes` in its own transaction, on the live file.
    func store(contiguous bytes: UnsafeRawBufferPointer) throws(SlotStoreError) {
        do {
            try core.storeVariable(layout, bytes)
        } catch .storeRetired {
            try rebound().store(contiguous: bytes)
        }
    }

    /// The value read under the lock, where no writer can interleave.
    func readLocked() -> [UInt8] { payload.bytes(count: currentLength()) }

    /// Replaces the value; call with the lock held.
    func write(_ bytes: some Collection<UInt8>) throws(SlotStoreError) {
        // Contiguous storage (arrays, native strings' UTF-8) is written without a copy.
        let direct = bytes.withContiguousStorageIfAvailable { buffer in
            Result { () throws(SlotStoreError) in try core.writeVariable(layout, UnsafeRawBufferPointer(buffer)) }
        }
        if let direct { return try direct.get() }
        let copy = Array(bytes)
        try copy.withUnsafeBytes { buffer in
            Result { () throws(SlotStoreError) in try core.writeVariable(layout, buffer) }
        }.get()
    }
}

/// A handle to a UTF-8 string field with a fixed capacity in bytes.
///
/// Reads return a consistent value even while another process writes, and
/// never take the lock. Writes take the lock and are journaled, so a writer
/// killed mid-write leaves the old value for everyone.
public struct StringField: Sendable {
    @usableFromInline let field: VariableField

    @usableFromInline init(field: VariableField) { self.field = field }

    /// The field's name.
    public var name: String { field.layout.name }
    /// The most UTF-8 bytes the field holds.
    public var capacity: Int { field.liveCapacity }

    /// The current value.
    public func load() throws(SlotStoreError) -> String {
        // Copied to the stack first: the String is then the only allocation
        // (none for a value of up to 15 bytes, which Swift stores inline).
        // The file is checked once, as every read does: a compaction in place
        // right after the check leaves this read with the value it replaced.
        let live = field.gate.isRetired ? try field.rebound() : field
        return try withUnsafeTemporaryAllocation(byteCount: live.capacity, alignment: 8) { buffer in
            Result { () throws(SlotStoreError) -> String in
                guard let base = buffer.baseAddress else { return "" }
                let length = try live.readInPlace(into: base)
                return String(decoding: UnsafeRawBufferPointer(rebasing: buffer[0..<length]), as: UTF8.self)
            }
        }.get()
    }

    /// Copies the current UTF-8 bytes into `buffer`, growing it to ``capacity``
    /// if it is smaller, and returns how many bytes the value has.
    /// Allocates nothing when `buffer` already holds ``capacity`` bytes.
    @inlinable
    public func read(into buffer: inout [UInt8]) throws(SlotStoreError) -> Int {
        try field.read(into: &buffer)
    }

    /// Copies the current UTF-8 bytes into `buffer` and returns how many bytes
    /// the value has: the fastest read, for a buffer you keep (no array
    /// uniqueness check).
    ///
    /// - Throws: ``SlotStoreError/invalidValue(path:field:detail:)`` when
    ///   `buffer` holds fewer than ``capacity`` bytes (the capacity of the live
    ///   file, which a compaction in place may have grown).
    @inlinable
    public func read(into buffer: UnsafeMutableRawBufferPointer) throws(SlotStoreError) -> Int {
        try field.read(into: buffer)
    }

    /// Replaces the value.
    ///
    /// - Throws: ``SlotStoreError/valueTooLarge(path:field:capacity:size:)`` when
    ///   its UTF-8 form exceeds ``capacity``; the stored value is then unchanged.
    public func store(_ value: String) throws(SlotStoreError) {
        // Borrowed through a span: no retain of the string's storage.
        try value.utf8.span.withUnsafeBytes { bytes throws(SlotStoreError) in try field.store(contiguous: bytes) }
    }
}

/// A handle to a byte-string field with a fixed capacity.
///
/// Same guarantees as ``StringField``, for arbitrary bytes.
public struct BytesField: Sendable {
    @usableFromInline let field: VariableField

    @usableFromInline init(field: VariableField) { self.field = field }

    /// The field's name.
    public var name: String { field.layout.name }
    /// The most bytes the field holds.
    public var capacity: Int { field.liveCapacity }

    /// The current value.
    public func load() throws(SlotStoreError) -> [UInt8] { try field.read() }

    /// Copies the current value into `buffer`, growing it to ``capacity`` if it
    /// is smaller, and returns the value's length.
    @inlinable
    public func read(into buffer: inout [UInt8]) throws(SlotStoreError) -> Int {
        try field.read(into: &buffer)
    }

    /// Copies the current value into `buffer` and returns its length: the
    /// fastest read, for a buffer you keep (no array uniqueness check).
    ///
    /// - Throws: ``SlotStoreError/invalidValue(path:field:detail:)`` when
    ///   `buffer` holds fewer than ``capacity`` bytes.
    @inlinable
    public func read(into buffer: UnsafeMutableRawBufferPointer) throws(SlotStoreError) -> Int {
        try field.read(into: buffer)
    }

    /// Replaces the value.
    ///
    /// - Throws: ``SlotStoreError/valueTooLarge(path:field:capacity:size:)`` when
    ///   it exceeds ``capacity``; the stored value is then unchanged.
    public func store(_ value: some Collection<UInt8>) throws(SlotStoreError) {
        try field.store(value)
    }
}
