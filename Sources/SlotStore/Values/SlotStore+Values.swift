/// Reading and writing fields by name with ``FieldValue``, for tools and
/// dynamic callers. Typed handles are faster; these check every value against
/// the stored schema and never truncate or wrap.
extension SlotStore {
    /// The current value of field `name`, read consistently without the lock.
    public func value(of name: String) throws(SlotStoreError) -> FieldValue {
        let core = try liveCore()
        let field = try core.field(named: name)
        return try core.readValue(field, locked: false)
    }

    /// Element `index` of array field `name`.
    public func value(of name: String, at index: Int) throws(SlotStoreError) -> FieldValue {
        let core = try liveCore()
        let field = try core.field(named: name)
        let (element, offset) = try core.elementAddress(field, index: index)
        return element.value(fromBits: core.address(offset).loadBits(width: element.byteWidth))
    }

    /// Every field's value as of one moment (read under the lock).
    public func values() throws(SlotStoreError) -> [String: FieldValue] {
        try lockedTransaction { core throws(SlotStoreError) in
            var result: [String: FieldValue] = [:]
            for field in core.layout.fields { result[field.name] = try core.readValue(field, locked: true) }
            return result
        }
    }

    /// Replaces field `name`'s value, after checking that it fits the field's type.
    public func setValue(_ value: FieldValue, for name: String) throws(SlotStoreError) {
        try setValues([name: value])
    }

    /// Replaces element `index` of array field `name`.
    public func setValue(_ value: FieldValue, for name: String, at index: Int) throws(SlotStoreError) {
        try lockedTransaction { core throws(SlotStoreError) in
            let field = try core.field(named: name)
            let (element, offset) = try core.elementAddress(field, index: index)
            let converted = try value.converted(to: .scalar(element), field: "\(name)[\(index)]", path: path)
            try core.recordUndo(offset: offset & ~7, length: 8, sequenceOffset: field.sequenceOffset)
            MappedAddress.writeElement(element.bits(of: converted), width: element.byteWidth,
                                       at: core.address(offset), counting: core.address(field.secondWordOffset))
        }
    }

    /// Replaces several fields in one transaction: all are checked first, then
    /// all are written, or none.
    public func setValues(_ values: [String: FieldValue]) throws(SlotStoreError) {
        try growMaps(toHold: values)
        try lockedTransaction { core throws(SlotStoreError) in
            var checked: [(FieldLayout, FieldValue)] = []
            for (name, value) in values.sorted(by: { $0.key < $1.key }) {
                let field = try core.field(named: name)
                checked.append((field, try value.converted(to: field.type, field: name, path: path)))
            }
            for (field, value) in checked { try core.writeValue(value, to: field) }
        }
    }

    /// Adds `delta` to numeric field `name` and returns the new value.
    ///
    /// Unlike a ``ScalarField``'s `add`, an integer result outside the field's
    /// range is an error and leaves the value unchanged.
    @discardableResult
    public func add(_ delta: FieldValue, to name: String) throws(SlotStoreError) -> FieldValue {
        // Under the lock, so a compaction in place can't miss it (it is a
        // read-modify-write of its own, not one of the handles' atomics).
        try lockedTransaction { core throws(SlotStoreError) in try add(delta, to: name, in: core) }
    }

    private func add(_ delta: FieldValue, to name: String, in core: StoreCore) throws(SlotStoreError) -> FieldValue {
        let field = try core.field(named: name)
        guard case .scalar(let type) = field.type, type != .bool else {
            throw .invalidValue(path: path, field: name, detail: "add needs an integer or floating-point field, and \(name) is \(field.type)")
        }
        // A per-process field: this process's own contribution.
        let word = field.perProcess != nil ? core.contributionWords(field).value : core.address(field.offset)
        if field.perProcess == .max || field.perProcess == .min, let marks = core.contributionWords(field).hasValue {
            marks.atomic(UInt64.self).pointee.store(1, ordering: .releasing)
        }
        while true {
            let oldBits = word.loadBits(width: type.byteWidth)
            let next: FieldValue
            switch (type.value(fromBits: oldBits), try delta.converted(to: .scalar(type.isFloatingPoint ? .double : .int64), field: name, path: path)) {
            case (.double(let current), .double(let step)):
                next = try FieldValue.double(current + step).converted(to: field.type, field: name, path: path)
            case (.int(let current), .int(let step)):
                next = try FieldValue.int(0).convertedSum(Int128(current) + Int128(step), type: field.type, field: name, path: path)
            case (.uint(let current), .int(let step)):
                next = try FieldValue.int(0).convertedSum(Int128(current) + Int128(step), type: field.type, field: name, path: path)
            default:
                throw .invalidValue(path: path, field: name, detail: "cannot add \(delta) to \(field.type)")
            }
            let newBits = type.bits(of: next)
            if word.compareExchangeBits(expected: oldBits, desired: newBits, width: type.byteWidth) { return next }
        }
    }
}

extension SlotStore {
    /// The engine of the live file, following an in-place compaction.
    func liveCore() throws(SlotStoreError) -> StoreCore {
        try session.live(after: session.current)
    }
}

extension FieldValue {
    fileprivate func convertedSum(_ sum: Int128, type: FieldType, field: String, path: String) throws(SlotStoreError) -> FieldValue {
        if let value = Int64(exactly: sum) { return try FieldValue.int(value).converted(to: type, field: field, path: path) }
        if let value = UInt64(exactly: sum) { return try FieldValue.uint(value).converted(to: type, field: field, path: path) }
        throw .invalidValue(path: path, field: field, detail: "\(sum) is outside the range of \(type)")
    }
}

extension MappedAddress {
    func compareExchangeBits(expected: UInt64, desired: UInt64, width: Int) -> Bool {
        switch width {
        case 8: atomic(UInt64.self).pointee.compareExchange(expected: expected, desired: desired, ordering: .acquiringAndReleasing).exchanged
        case 4: atomic(UInt32.self).pointee.compareExchange(expected: UInt32(truncatingIfNeeded: expected), desired: UInt32(truncatingIfNeeded: desired), ordering: .acquiringAndReleasing).exchanged
        case 2: atomic(UInt16.self).pointee.compareExchange(expected: UInt16(truncatingIfNeeded: expected), desired: UInt16(truncatingIfNeeded: desired), ordering: .acquiringAndReleasing).exchanged
        default: atomic(UInt8.self).pointee.compareExchange(expected: UInt8(truncatingIfNeeded: expected), desired: UInt8(truncatingIfNeeded: desired), ordering: .acquiringAndReleasing).exchanged
        }
    }
}

extension StoreCore {
    func field(named name: String) throws(SlotStoreError) -> FieldLayout {
        guard let field = layout.field(named: name) else {
            throw .unknownField(path: path, name: name, available: layout.fields.map(\.name))
        }
        return field
    }

    func elementAddress(_ field: FieldLayout, index: Int) throws(SlotStoreError) -> (ScalarType, Int) {
        guard case .array(let element, let count) = field.type else {
            throw .invalidValue(path: path, field: field.name, detail: "an index needs an array field, and \(field.name) is \(field.type)")
        }
        guard index >= 0 && index < count else {
            throw .invalidValue(path: path, field: field.name, detail: "index \(index) is out of range 0..<\(count)")
        }
        return (element, field.payloadOffset + index * element.byteWidth)
    }

    /// A field's value; `locked` means the caller holds the lock, so no seqlock retry is needed.
    func readValue(_ field: FieldLayout, locked: Bool) throws(SlotStoreError) -> FieldValue {
        switch field.type {
        case .scalar(let type) where field.perProcess != nil:
            // The aggregate; under the lock no fold is under way.
            return type.value(fromBits: locked ? processSlotWords(field).aggregateBits() : try readAggregate(field))
        case .scalar(let type):
            return type.value(fromBits: address(field.offset).loadBits(width: type.byteWidth))
        case .array(let element, let count):
            func read() -> FieldValue {
                FieldValue.array((0..<count).map { index in
                    element.value(fromBits: self.address(field.payloadOffset + index * element.byteWidth).loadBits(width: element.byteWidth))
                })
            }
            return locked ? read() : try readConsistently(field, checkingElementWrites: true, read)
        case .string, .bytes:
            let variable = VariableField(core: self, layout: field)
            let bytes = locked ? variable.readLocked() : try variable.read()
            if case .string = field.type { return .string(String(decoding: bytes, as: UTF8.self)) }
            return .bytes(bytes)
        case .map(let keyType, let valueType, _):
            // Each entry is read consistently; under the lock, the whole map is one moment.
            var entries: [FieldValue.MapEntry] = []
            do {
                try MapTable(core: self, field: field).forEach(locked: locked) { key, value in
                    entries.append(.init(key: MapCodec.key(from: key, type: keyType), value: MapCodec.read(type: valueType, from: value)))
                }
            } catch let error as SlotStoreError {
                throw error
            } catch {
                throw .invalidValue(path: path, field: field.name, detail: "\(error)")
            }
            return .map(entries.sorted { $0.key.sortsBefore($1.key) })
        }
    }

    /// Writes an already converted value; call with the lock held.
    func writeValue(_ value: FieldValue, to field: FieldLayout) throws(SlotStoreError) {
        switch (field.type, value) {
        case (.scalar(let type), _) where field.perProcess != nil:
            try writeAggregate(type.bits(of: value), to: field)
        case (.scalar(let type), _):
            try recordUndo(offset: field.offset, length: 8, sequenceOffset: 0)
            address(field.offset).storeBits(type.bits(of: value), width: type.byteWidth)
            fault(.midWrite)
            fault(.afterWrite)
        case (.array(let element, let count), .array(let values)):
            try recordUndo(offset: field.payloadOffset, length: roundUp(count * element.byteWidth, to: 8), sequenceOffset: field.sequenceOffset)
            let sequence = beginSeqlockWrite(field)
            for (index, item) in values.enumerated() {
                if index == count / 2 { fault(.midWrite) }
                address(field.payloadOffset + index * element.byteWidth).storeBits(element.bits(of: item), width: element.byteWidth)
            }
            sequence.endWrite()
            fault(.afterWrite)
        case (.string, .string(let text)):
            try VariableField(core: self, layout: field).write(text.utf8)
        case (.bytes, .bytes(let bytes)):
            try VariableField(core: self, layout: field).write(bytes)
        case (.map(let keyType, let valueType, _), .map(let entries)):
            let table = MapTable(core: self, field: field)
            try table.removeAll()
            for entry in entries {
                let key = MapCodec.keyBytes(entry.key, type: keyType)
                _ = try MapTable.withBytes(of: key) { keyBytes throws(SlotStoreError) in
                    try table.set(keyBytes) { MapCodec.write(entry.value, type: valueType, to: $0) }
                }
            }
        default:
            throw .invalidValue(path: path, field: field.name, detail: "\(value) does not match \(field.type)")
        }
    }
}

extension SlotStore {
    /// Before a whole-map write by name: grows each growing map in `values`
    /// to the capacity its entries need (one compaction in place, as the
    /// inserts one by one would have done in several), so the write fits.
    func growMaps(toHold values: [String: FieldValue]) throws(SlotStoreError) {
        let core = try liveCore()
        for field in core.schema.fields {
            guard let growth = field.growth, case .map(_, _, let capacity) = field.type,
                  case .map(let entries)? = values[field.name] else { continue }
            let target = growth.capacity(toHold: entries.count, from: capacity)
            guard target > capacity else { continue }
            try SlotStore.growMap(at: path, field: field.name, from: capacity, to: target,
                                  lockTimeout: core.lockTimeout, allowOtherOwner: core.allowsOtherOwner)
        }
    }
}
