import Synchronization

/// A handle to a fixed-count array field.
///
/// Element loads and stores are single atomic instructions and take no lock.
/// ``snapshot()`` returns the whole array as it was at one moment, even while
/// other processes write; ``store(_:)`` replaces the whole array under the
/// lock, all or nothing.
public struct ArrayField<Value: SlotScalar>: Sendable, FieldHandle {
    @usableFromInline let gate: LockFreeGate
    @usableFromInline let elements: MappedAddress
    @usableFromInline let elementWrites: MappedAddress
    @usableFromInline let sequenceWord: MappedAddress

    /// The number of elements.
    public let count: Int

    /// The field's number in its file, for the slow paths.
    @usableFromInline let fieldIndex: Int
    /// The store, file and field this handle was resolved in (see ``FieldReference``).
    /// Last: the words the inlined operations use come first, as before it existed.
    @usableFromInline let reference: FieldReference

    @usableFromInline
    init(reference: FieldReference) {
        let (core, layout) = (reference.core, reference.layout)
        self.reference = reference
        self.fieldIndex = reference.layout.index
        self.gate = core.gate
        self.count = if case .array(_, let count) = layout.type { count } else { 0 }
        self.elements = core.address(layout.payloadOffset)
        self.elementWrites = core.address(layout.secondWordOffset)
        self.sequenceWord = core.address(layout.sequenceOffset)
    }

    @usableFromInline var core: StoreCore { reference.core }
    var layout: FieldLayout { reference.layout }

    /// The field's name.
    public var name: String { layout.name }

    /// The element at `index`, which must be in `0..<count`.
    @inlinable @inline(__always)
    public func load(at index: Int) -> Value {
        precondition(index >= 0 && index < count, "index \(index) out of range 0..<\(count)")
        if _fastPath(!gate.isRetired) { return elements.advanced(by: index &* Value.scalarType.byteWidth).loadScalar(Value.self) }
        return FieldReference.readLockFree(reference.session, reference.core, field: fieldIndex) { words in
            words.payload.advanced(by: index &* Value.scalarType.byteWidth).loadScalar(Value.self)
        }
    }

    /// Replaces the element at `index`, which must be in `0..<count`.
    @inlinable @inline(__always)
    public func store(_ value: Value, at index: Int) {
        precondition(index >= 0 && index < count, "index \(index) out of range 0..<\(count)")
        if let marker = gate.enter() {
            ArrayField.store(value, at: index, elements: elements, writes: elementWrites)
            return gate.leave(marker, notifying: fieldIndex)
        }
        FieldReference.writeLockFree(reference.session, reference.core, field: fieldIndex) { words in
            ArrayField.store(value, at: index, elements: words.payload, writes: words.elementWrites)
        }
    }

    @inlinable @inline(__always)
    static func store(_ value: Value, at index: Int, elements: MappedAddress, writes: MappedAddress) {
        MappedAddress.writeElement(value._slotBits, width: Value.scalarType.byteWidth,
                                   at: elements.advanced(by: index &* Value.scalarType.byteWidth), counting: writes)
    }

    /// Stores `desired` at `index` if the element there is still `expected`,
    /// without a lock. `index` must be in `0..<count`.
    ///
    /// One atomic compare-exchange of the element's width, counted like an
    /// element store so ``snapshot()`` stays one moment. Floating-point
    /// elements compare bit patterns (a NaN can be exchanged; `0.0` and
    /// `-0.0` differ), which lets a loop add to a `Double` element:
    ///
    /// ```swift
    /// var current = sums.load(at: bucket)
    /// while case (false, let found) = sums.compareExchange(expected: current, desired: current + seconds, at: bucket) {
    ///     current = found
    /// }
    /// ```
    ///
    /// - Returns: whether it stored, and the element found (which is `expected` when it stored).
    @inlinable @inline(__always)
    public func compareExchange(expected: Value, desired: Value, at index: Int) -> (exchanged: Bool, original: Value) {
        precondition(index >= 0 && index < count, "index \(index) out of range 0..<\(count)")
        let offset = index &* Value.scalarType.byteWidth
        if let marker = gate.enter() {
            defer { gate.leave(marker, notifying: fieldIndex) }
            return MappedAddress.compareExchangeElement(expected: expected, desired: desired,
                                                        at: elements.advanced(by: offset), counting: elementWrites)
        }
        return FieldReference.writeLockFree(reference.session, reference.core, field: fieldIndex) { words in
            MappedAddress.compareExchangeElement(expected: expected, desired: desired,
                                                 at: words.payload.advanced(by: offset), counting: words.elementWrites)
        }
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
        if _slowPath(gate.isRetired) { return try readRetired(into: &buffer) }
        if buffer.count != count { buffer = [Value](repeating: elements.loadScalarRelaxed(Value.self), count: count) }
        // Inlined so the client specializes it; the copy itself is one
        // non-generic call that captures only a pointer.
        let bytes = count &* Value.scalarType.byteWidth
        try buffer.withUnsafeMutableBufferPointer { destination -> Result<Void, SlotStoreError> in
            let base = UnsafeMutableRawPointer(destination.baseAddress!)
            // The uncontended attempt, inlined: both words unchanged around one copy.
            // Bool takes the out-of-line path, which also normalizes its bytes.
            if Value.self != Bool.self {
                let sequence = SequenceWord(sequenceWord)
                let writes = ElementWriteCounter(elementWrites)
                if let before = sequence.beginRead() {
                    let writesBefore = writes.beginRead()
                    elements.copyBytes(to: base, count: bytes)
                    if sequence.endRead(before) && writes.endRead(writesBefore) { return Result<Void, SlotStoreError>.success(()) }
                }
            }
            return Result { () throws(SlotStoreError) in try core.readArraySnapshot(field: fieldIndex, into: base) }
        }.get()
    }

    /// Replaces every element, all or nothing. `values` must hold exactly ``count`` elements.
    @inlinable
    public func store(_ values: [Value]) throws(SlotStoreError) {
        guard values.count == count else { throw core.arrayCountError(field: fieldIndex, given: values.count) }
        do {
            try values.withUnsafeBytes { bytes in
                Result { () throws(SlotStoreError) in
                    try core.storeWholeArray(field: fieldIndex, from: bytes.baseAddress!)
                }
            }.get()
        } catch .storeRetired {
            try storeRetired(values)
        }
    }

    // The retired paths stay out of line: an inlinable function that calls
    // itself is not inlined, and these run once per handle per compaction.

    @usableFromInline @inline(never)
    func readRetired(into buffer: inout [Value]) throws(SlotStoreError) { try rebound().read(into: &buffer) }

    @usableFromInline @inline(never)
    func storeRetired(_ values: [Value]) throws(SlotStoreError) { try rebound().store(values) }

    func checkCount(_ given: Int) throws(SlotStoreError) {
        guard given == count else {
            throw .invalidValue(path: core.path, field: name, detail: "expected exactly \(counted(count, "element")), found \(given)")
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
        ArrayField.store(value, at: index, elements: elements, writes: elementWrites)
    }
}

extension ArrayField where Value: SlotInteger {
    /// Adds `delta` to the element at `index`, without a lock, and returns the
    /// element's new value. `index` must be in `0..<count`.
    ///
    /// One atomic add of the element's width (`lock xadd`), so concurrent adds
    /// from any number of threads and processes all count: a histogram's
    /// buckets can be shared instead of kept per worker.
    ///
    /// ```swift
    /// let buckets = try store.array("latency_buckets", of: UInt64.self)
    /// buckets.add(1, at: bucket(for: latency))
    /// ```
    ///
    /// Like `ScalarField`'s integer `add(_:)`, the add wraps around on overflow
    /// (`UInt8.max + 1` is `0`, `Int64.max + 1` is `Int64.min`); the by-name
    /// ``SlotStore/SlotStore/add(_:to:)`` is the one that refuses instead. Integer
    /// elements only: `Bool`, `Float` and `Double` arrays have no `add`
    /// (for a floating-point sum, loop on ``compareExchange(expected:desired:at:)``).
    /// The add is counted like an element store, so ``snapshot()`` stays one
    /// moment, and it follows an in-place compaction like every handle call.
    @inlinable @inline(__always) @discardableResult
    public func add(_ delta: Value, at index: Int) -> Value {
        precondition(index >= 0 && index < count, "index \(index) out of range 0..<\(count)")
        let offset = index &* Value.scalarType.byteWidth
        if let marker = gate.enter() {
            defer { gate.leave(marker, notifying: fieldIndex) }
            return MappedAddress.addElement(delta, at: elements.advanced(by: offset), counting: elementWrites)
        }
        return FieldReference.writeLockFree(reference.session, reference.core, field: fieldIndex) { words in
            MappedAddress.addElement(delta, at: words.payload.advanced(by: offset), counting: words.elementWrites)
        }
    }

    /// The locked single-element add of a transaction; call with the lock held.
    func addElement(_ delta: Value, at index: Int) throws(SlotStoreError) -> Value {
        guard index >= 0 && index < count else {
            throw .invalidValue(path: core.path, field: name, detail: "index \(index) is out of range 0..<\(count)")
        }
        let byteOffset = index * Value.scalarType.byteWidth
        try core.recordUndo(offset: layout.payloadOffset + (byteOffset & ~7), length: 8, sequenceOffset: layout.sequenceOffset)
        // Atomic even under the lock: lock-free adds from other processes take no lock.
        return MappedAddress.addElement(delta, at: elements.advanced(by: byteOffset), counting: elementWrites)
    }
}
