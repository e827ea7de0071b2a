import Synchronization

/// The undo journal: before-images of the bytes a locked write is changing.
///
/// ```
/// header (64 bytes)   used bytes u64 (0 = clean; the commit point), writer PID i32
/// record              data offset u64, length u64, sequence offset u64, reserved u64,
///                     then `length` bytes of the old value (a multiple of 8)
/// ```
///
/// A writer appends a record, publishes it by storing the new used size, and
/// only then changes the data; committing stores 0. A process that dies at any
/// instruction therefore leaves either a clean journal or records covering
/// every byte it may have changed, and rolling those back in reverse order
/// restores the state before the write. Records are only ever touched while
/// holding the store's lock.
struct UndoJournal: @unchecked Sendable {
    static let headerBytes = 64
    static let recordHeaderBytes = 32

    let base: MappedAddress
    let capacity: Int
    let journalOffset: Int
    /// The data region, so records pointing elsewhere (damage) are never applied.
    let dataRange: Range<Int>
    let fileBase: MappedAddress

    var usedBytes: UnsafeMutablePointer<Atomic<UInt64>> { base.atomic(UInt64.self) }
    var writerPID: UnsafeMutablePointer<Atomic<Int32>> { base.advanced(by: 8).atomic(Int32.self) }

    var isDirty: Bool { usedBytes.pointee.load(ordering: .acquiring) != 0 }

    struct Record: Equatable, Sendable {
        let dataOffset: Int
        let length: Int
        let sequenceOffset: Int
        /// Where the before-image starts, relative to the journal region.
        let imageOffset: Int
    }

    /// Records the current bytes at `dataOffset..<dataOffset+length` unless
    /// this transaction already recorded exactly that range.
    @inline(__always)
    func record(dataOffset: Int, length: Int, sequenceOffset: Int, pid: Int32, path: String,
                beforePublishing flush: ((Range<Int>) throws(SlotStoreError) -> Void)? = nil) throws(SlotStoreError) {
        let used = Int(clamping: usedBytes.pointee.load(ordering: .relaxed))
        // Only this transaction wrote the journal since the lock was taken (a
        // dead holder's records were rolled back then), so a size past the
        // region means the file was damaged under us: refuse, don't trap.
        guard used <= capacity - UndoJournal.headerBytes else {
            throw .corruptHeader(path: path, detail: "the undo journal claims \(used) bytes but holds \(capacity - UndoJournal.headerBytes)")
        }
        var cursor = UndoJournal.headerBytes
        let end = UndoJournal.headerBytes + used
        while cursor < end {
            let header = base.advanced(by: cursor)
            let offset = Int(clamping: header.atomic(UInt64.self).pointee.load(ordering: .relaxed))
            let recordedLength = Int(clamping: header.advanced(by: 8).atomic(UInt64.self).pointee.load(ordering: .relaxed))
            if offset == dataOffset && recordedLength == length { return }
            guard recordedLength <= end - cursor else { break }
            cursor += UndoJournal.recordHeaderBytes + recordedLength
        }
        let needed = UndoJournal.recordHeaderBytes + length
        guard end + needed <= capacity else {
            throw .transactionTooLarge(path: path, neededBytes: used + needed, journalBytes: capacity - UndoJournal.headerBytes)
        }
        let header = base.advanced(by: end)
        header.atomic(UInt64.self).pointee.store(UInt64(dataOffset), ordering: .relaxed)
        header.advanced(by: 8).atomic(UInt64.self).pointee.store(UInt64(length), ordering: .relaxed)
        header.advanced(by: 16).atomic(UInt64.self).pointee.store(UInt64(sequenceOffset), ordering: .relaxed)
        header.advanced(by: 24).atomic(UInt64.self).pointee.store(0, ordering: .relaxed)
        header.advanced(by: UndoJournal.recordHeaderBytes)
            .copyBytes(from: fileBase.pointer + dataOffset, count: length)
        if used == 0 { writerPID.pointee.store(pid, ordering: .relaxed) }
        if let flush { try flush((journalOffset + end)..<(journalOffset + end + needed)) }
        // Publishing the size is what makes the record count: a death before
        // this store leaves the data untouched and the record ignored.
        usedBytes.pointee.store(UInt64(used + needed), ordering: .releasing)
    }

    /// Marks the transaction committed.
    @inline(__always)
    func clear() { usedBytes.pointee.store(0, ordering: .releasing) }

    /// Parses the published records, stopping at the first one that does not
    /// fit the journal or points outside the data region.
    func records() -> (records: [Record], damaged: String?) {
        UndoJournal.parse(usedBytes: Int(clamping: usedBytes.pointee.load(ordering: .acquiring)), capacity: capacity,
                          dataRange: dataRange) { offset in
            base.advanced(by: offset).atomic(UInt64.self).pointee.load(ordering: .relaxed)
        }
    }

    /// The record parser shared by the live journal and the tools, which read
    /// a `pread` copy of the region; `word(offset)` reads the u64 at a journal offset.
    static func parse(usedBytes used: Int, capacity: Int, dataRange: Range<Int>,
                      word: (Int) -> UInt64) -> (records: [Record], damaged: String?) {
        guard used > 0 else { return ([], nil) }
        guard used <= capacity - headerBytes else {
            return ([], "the journal claims \(used) used bytes but holds \(capacity - headerBytes)")
        }
        var result: [Record] = []
        var cursor = headerBytes
        let end = headerBytes + used
        while cursor < end {
            guard end - cursor >= recordHeaderBytes else {
                return (result, "a record header at journal offset \(cursor) is cut off")
            }
            let offset = Int(clamping: word(cursor))
            let length = Int(clamping: word(cursor + 8))
            let sequence = Int(clamping: word(cursor + 16))
            let imageStart = cursor + recordHeaderBytes
            guard length > 0, length % 8 == 0, offset % 8 == 0, length <= end - imageStart,
                  offset >= dataRange.lowerBound, offset <= dataRange.upperBound - length else {
                return (result, "record \(result.count) (offset \(offset), length \(length)) lies outside the data region or the journal")
            }
            guard sequence == 0 || (sequence % 8 == 0 && dataRange.contains(sequence) && sequence + 8 <= dataRange.upperBound) else {
                return (result, "record \(result.count) names sequence word \(sequence), outside the data region")
            }
            result.append(Record(dataOffset: offset, length: length, sequenceOffset: sequence, imageOffset: imageStart))
            cursor = imageStart + length
        }
        return (result, nil)
    }

    /// Restores every before-image, newest first, then clears the journal.
    ///
    /// Each restored field's sequence word is made odd while its bytes change
    /// and then advanced to a new even value, so a seqlock reader that started
    /// before the dead writer can't accept a mix of new and restored bytes.
    /// - Returns: the number of records restored.
    @discardableResult
    func rollBack(beforeClearing: (() -> Void)? = nil) -> Int {
        let (parsed, _) = records()
        for record in parsed.reversed() {
            let sequence = record.sequenceOffset == 0 ? nil : fileBase.advanced(by: record.sequenceOffset).atomic(UInt64.self)
            if let sequence {
                let value = sequence.pointee.load(ordering: .relaxed)
                if value & 1 == 0 { sequence.pointee.store(value &+ 1, ordering: .relaxed) }
                atomicMemoryFence(ordering: .releasing)
            }
            // Word by word with atomic stores: lock-free readers of scalars and
            // array elements see each word either old or restored, never torn.
            for word in stride(from: 0, to: record.length, by: 8) {
                let old = base.advanced(by: record.imageOffset + word).atomic(UInt64.self).pointee.load(ordering: .relaxed)
                fileBase.advanced(by: record.dataOffset + word).atomic(UInt64.self).pointee.store(old, ordering: .relaxed)
            }
            if let sequence {
                let value = sequence.pointee.load(ordering: .relaxed)
                sequence.pointee.store((value | 1) &+ 1, ordering: .releasing)
            }
        }
        beforeClearing?()
        clear()
        return parsed.count
    }
}
