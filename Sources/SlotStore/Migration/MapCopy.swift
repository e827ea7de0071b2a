/// Copies a map of one store into the same map of a new store, entry by entry
/// straight between the two mappings: the compaction's copy, and a growing
/// map's.
///
/// The old copy decoded the whole map into `FieldValue`s and inserted them
/// one journaled `set` at a time (25-38 µs per entry, and the whole map in
/// memory twice). Here a bucket's key and value bytes go from one mapping to
/// the other, and only a map whose key or value type changes decodes each
/// entry (one at a time, through the migration rules).
///
/// The destination is a new file that nobody else has open yet: no reader
/// can race the copy, and a crash leaves only an unfinished temporary file,
/// so nothing is journaled and no bucket's sequence word moves.
struct MapCopy {
    let source: MapTable
    let destination: MapTable
    /// Nil when each key and value can be copied as it is stored.
    let conversion: ((FieldValue.MapEntry) throws(SlotStoreError) -> FieldValue.MapEntry)?

    init(from source: MapTable, to destination: MapTable, fate: String, path: String) {
        self.source = source
        self.destination = destination
        let old = source.geometry, new = destination.geometry
        if MapCopy.bytesCarryOver(from: old.key, to: new.key) && old.value == new.value {
            conversion = nil
        } else {
            let oldType = source.field.type, newType = destination.field.type, name = source.field.name
            conversion = { entry throws(SlotStoreError) in
                // One entry as a one-entry map, so every rule of a map's migration applies unchanged.
                let migrated = try MigrationRules.migrate(.map([entry]), from: oldType, to: newType, fate: fate,
                                                          field: name, path: path)
                guard case .map(let entries) = migrated, let first = entries.first else {
                    throw .invalidValue(path: path, field: name, detail: "the entry for \(entry.key) did not convert to \(newType)")
                }
                return first
            }
        }
    }

    /// Whether a key's stored bytes mean the same key in the new type: the
    /// same type, or a string or bytes key given more room.
    static func bytesCarryOver(from old: FieldType, to new: FieldType) -> Bool {
        switch (old, new) {
        case (.string(let before), .string(let after)), (.bytes(let before), .bytes(let after)): after >= before
        default: old == new
        }
    }

    /// Copies every entry; call holding the source's lock. Reports progress
    /// every 64 Ki entries, and hands each 16 MiB of the source it has read
    /// to `dropRead` (file offsets, start and end), which drops those pages
    /// from this process's page tables, so a compaction's memory is the new
    /// file plus a window of the old one, not both files.
    func run(step: String, progress: ((WorkProgress) -> Void)?, dropRead: (Int, Int) -> Void) throws(SlotStoreError) {
        let total = Int(clamping: source.count.pointee.load(ordering: .relaxed))
        let capacity = destination.geometry.capacity
        let name = destination.field.name
        progress?(WorkProgress(step: step, completed: 0, total: total))
        let target = destination.field
        destination.core.file.populateForWriting(from: target.offset, to: target.offset + target.size)
        var copied = 0
        var dropped = 0
        let window = 16 << 20
        let bucketBytes = source.geometry.bucketBytes
        let bucketsStart = source.field.offset + MapGeometry.headerBytes
        let valueBytes = destination.geometry.valueBytes
        let epoch = destination.epoch
        // Entry words (cache maps, see MapExpiry): carried as they are when
        // both maps have them, expired entries included (a compaction does not
        // depend on the clock); "no deadline" when the map gains them. A map
        // that loses its cache policy drops the entries expired now, which
        // would otherwise come back to life.
        let sourceWords = source.geometry.entryWordBytes != 0
        let destinationWords = destination.geometry.entryWordBytes != 0
        let dropExpiredAt: UInt64? = sourceWords && !destinationWords ? source.cursor.nowMilliseconds() : nil
        @inline(__always) func carryEntryWord(from value: MappedAddress, to area: MappedAddress) {
            guard destinationWords else { return }
            let word = sourceWords ? value.advanced(by: -8).atomic(UInt64.self).pointee.load(ordering: .relaxed) : MapExpiry.usedBit
            area.advanced(by: -8).atomic(UInt64.self).pointee.store(word, ordering: .relaxed)
        }
        do {
            try source.forEachHoldingLock(liveAt: dropExpiredAt) { (index: Int, key: UnsafeRawBufferPointer, value: MappedAddress) throws(SlotStoreError) in
                guard copied < capacity else {
                    throw .migrationRefused(path: destination.core.path, reasons: [
                        "map \"\(name)\" holds \(counted(total, "entry", plural: "entries")) and its new capacity is \(capacity); give it a capacity of at least \(total)",
                    ])
                }
                if let conversion {
                    let entry = FieldValue.MapEntry(key: MapCodec.key(from: key, type: source.geometry.key),
                                                    value: MapCodec.read(type: source.geometry.value, from: value))
                    let converted = try conversion(entry)
                    let bytes = MapCodec.keyBytes(converted.key, type: destination.geometry.key)
                    guard bytes.count <= destination.geometry.keyCapacity else {
                        throw .migrationRefused(path: destination.core.path, reasons: [
                            "map \"\(name)\": the key \(converted.key) takes \(bytes.count) bytes, over the new key capacity \(destination.geometry.keyCapacity)",
                        ])
                    }
                    MapTable.withBytes(of: bytes) { newKey in
                        let area = insertFresh(newKey, epoch: epoch)
                        carryEntryWord(from: value, to: area)
                        MapCodec.write(converted.value, type: destination.geometry.value, to: area)
                    }
                } else {
                    let area = insertFresh(key, epoch: epoch)
                    area.copyBytes(from: value.pointer, count: valueBytes)
                    carryEntryWord(from: value, to: area)
                }
                copied += 1
                if copied & 0xFFFF == 0 {
                    progress?(WorkProgress(step: step, completed: copied, total: total))
                    let readUpTo = (index + 1) * bucketBytes
                    if readUpTo - dropped >= window {
                        dropRead(bucketsStart + dropped, bucketsStart + readUpTo)
                        dropped = readUpTo
                    }
                }
            }
        } catch let error as SlotStoreError {
            throw error
        } catch {
            throw .invalidValue(path: destination.core.path, field: name, detail: "\(error)")
        }
        // The walk and the count word must agree (minus the expired entries a
        // dropped policy left out): a map that does not is damaged, and a
        // copy would hide it (an epoch word damaged to another value reads as
        // an empty map). Nothing is renamed over the source.
        guard dropExpiredAt == nil ? copied == total : copied <= total else {
            throw .migrationRefused(path: source.core.path, reasons: [
                "map \"\(source.field.name)\" records \(counted(total, "entry", plural: "entries")) but its buckets hold \(copied): the file is damaged and a copy would hide it; run `slotstore verify \(source.core.path)`, then `slotstore repair` or restore the store from a dump",
            ])
        }
        destination.count.pointee.store(UInt64(copied), ordering: .relaxed)
        progress?(WorkProgress(step: step, completed: copied, total: total))
    }

    /// Puts a key that is not in the destination yet into the first empty
    /// bucket of its probe path, and returns its value area. Keys are unique
    /// in the source, so no key is compared; and the destination is new, so
    /// it has no tombstones and no reader to fence against. In a cache map
    /// the entry word is the 8 bytes before the value area.
    @inline(__always)
    private func insertFresh(_ key: UnsafeRawBufferPointer, epoch: UInt64) -> MappedAddress {
        let cursor = destination.cursor
        var index = cursor.home(of: key)
        while true {
            let bucket = cursor.bucket(index)
            let meta = bucket.advanced(by: 8).atomic(UInt64.self).pointee.load(ordering: .relaxed)
            if meta & 3 != MapTable.full {
                if let bytes = key.baseAddress {
                    bucket.advanced(by: MapGeometry.bucketPrefixBytes).copyBytes(from: bytes, count: key.count)
                }
                bucket.advanced(by: 8).atomic(UInt64.self).pointee.store(
                    MapTable.meta(state: MapTable.full, keyLength: key.count, epoch: epoch), ordering: .relaxed)
                return bucket.advanced(by: cursor.valueOffset)
            }
            index = cursor.next(index)
        }
    }
}
