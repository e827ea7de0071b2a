import Synchronization

/// A handle to a fixed-count array field.
///
/// Element loads and stores are single atomic instructions and take no lock.
/// ``snapshot()`` returns the whole array as it was at one moment, even while
/// other processes write; ``store(_:)`` replaces the whole array under the
/// lock, all or nothing.
public struct ArrayField<Value: SlotScalar>: Sendable {
    @usableFromInline let core: StoreCore
    @usableFromInline let elements: MappedAddress
    @usableFromInline let elementWrites: MappedAddress
    @usableFromInline let fieldIndex: Int
    @usableFromInline let sequenceWord: MappedAddress
    let layout: FieldLayout

    /// The number of elements.
    public let count: Int

    init(core: StoreCore, layout: FieldLayout, count: Int) {
        self.core = core
        self.layout = layout
        self.count = count
        self.elements = core.address(layout.payloadOffset)
        self.elementWrites = core.address(layout.secondWordOffset)
        self.fieldIndex = layout.index
        self.sequenceWord = core.address(layout.sequenceOffset)
    }

    /// The field's name.
    public var name: String { layout.name }

    /// The element at `index`, which must be in `0..<count`.
    @inlinable @inline(__always)
    public func load(at index: Int) -> Value {
        precondition(index >= 0 && index < count, "index \(index) out of range 0..<\(count)")
        return elements.advanced(by: index &* Value.scalarType.byteWidth).loadScalar(Value.self)
    }

    /// Replaces the element at `index`, which must be in `0..<count`.
    @inlinable @inline(__always)
    public func store(_ value: Value, at index: Int) {
        precondition(index >= 0 && index < count, "index \(index) out of range 0..<\(count)")
        elements.advanced(by: index &* Value.scalarType.byteWidth).storeScalar(value)
        // Counted after the store: a snapshot that saw this counter unchanged
        // either missed the store or can be ordered after it.
        elementWrites.atomic(UInt64.self).pointee.wrappingAdd(1, ordering: .releasing)
    }

    /// All elements as of one moment.
    @inlinable
    public func snapshot() throws(SlotStoreError) -> [Value] {
        var values = [Value](repeating: elements.loadScalarRelaxed(Value.self), count: count)
        try read(into: &values)
        return values
    }

    /// Fills `buffer` with all elements as of one moment. Allocates nothing when
    /// `buffer` already holds ``count`` elements.
    @inlinable
    public func read(into buffer: inout [Value]) throws(SlotStoreError) {
        if buffer.count != count { buffer = [Value](repeating: elements.loadScalarRelaxed(Value.self), count: count) }
        // Inlined so the client specializes it; the copy itself is one
        // non-generic call that captures only a pointer.
        let bytes = count &* Value.scalarType.byteWidth
        try buffer.withUnsafeMutableBufferPointer { destination -> Result<Void, SlotStoreError> in
            let base = UnsafeMutableRawPointer(destination.baseAddress!)
            // The uncontended attempt, inlined: both words unchanged around one copy.
            // Bool takes the out-of-line path, which also normalizes its bytes.
            if Value.self != Bool.self {
                let sequence = sequenceWord.atomic(UInt64.self)
                let writes = elementWrites.atomic(UInt64.self)
                let before = sequence.pointee.load(ordering: .acquiring)
                let writesBefore = writes.pointee.load(ordering: .acquiring)
                if before & 1 == 0 {
                    elements.copyBytes(to: base, count: bytes)
                    atomicMemoryFence(ordering: .acquiring)
                    if writes.pointee.load(ordering: .relaxed) == writesBefore
                        && sequence.pointee.load(ordering: .relaxed) == before { return Result<Void, SlotStoreError>.success(()) }
                }
            }
            return Result { () throws(SlotStoreError) in try core.readArraySnapshot(field: fieldIndex, into: base) }
        }.get()
    }

    /// Replaces every element, all or nothing. `values` must hold exactly ``count`` elements.
    @inlinable
    public func store(_ values: [Value]) throws(SlotStoreError) {
        guard values.count == count else { throw core.arrayCountError(field: fieldIndex, given: values.count) }
        try values.withUnsafeBytes { bytes in
            Result { () throws(SlotStoreError) in
                try core.storeWholeArray(field: fieldIndex, from: bytes.baseAddress!)
            }
        }.get()
    }

    func checkCount(_ given: Int) throws(SlotStoreError) {
        guard given == count else {
            throw .invalidValue(path: core.path, field: name, detail: "expected exactly \(count) elements, found \(given)")
        }
    }

    @inline(__always)
    func loadRelaxed(_ index: Int) -> Value {
        elements.advanced(by: index &* Value.scalarType.byteWidth).loadScalarRelaxed(Value.self)
    }

    /// The locked whole-array write; call with the lock held.
    func writeAll(_ values: [Value]) throws(SlotStoreError) {
        try values.withUnsafeBytes { bytes in
            Result { () throws(SlotStoreError) in try core.writeWholeArray(field: fieldIndex, from: bytes.baseAddress!) }
        }.get()
    }

    /// The locked single-element write of a transaction; call with the lock held.
    func writeElement(_ value: Value, at index: Int) throws(SlotStoreError) {
        guard index >= 0 && index < count else {
            throw .invalidValue(path: core.path, field: name, detail: "index \(index) is out of range 0..<\(count)")
        }
        let byteOffset = index * Value.scalarType.byteWidth
        let word = byteOffset & ~7
        try core.recordUndo(offset: layout.payloadOffset + word, length: 8, sequenceOffset: layout.sequenceOffset)
        elements.advanced(by: byteOffset).storeScalar(value)
        elementWrites.atomic(UInt64.self).pointee.wrappingAdd(1, ordering: .releasing)
    }
}
