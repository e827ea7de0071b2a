import Synchronization

/// The undo journal: before-images of the bytes a locked write is changing.
///
/// ```
/// header (64 bytes)   used bytes u64 (0 = clean), writer PID i32 at 8,
///                     transaction u64 at 16 (random per durable transaction; 0 otherwise)
/// record              data offset u64, length u64, sequence offset u64, check u64,
///                     then `length` bytes of the old value (a multiple of 8);
///                     a durable record with room then has a seal u64 and
///                     `length` bytes for the new value, filled at commit
/// check               0, or (durable) a marker in the high half (which also
///                     says whether the record has room for the new value) and
///                     the CRC-32C of the transaction, the three words and the old value
/// seal                0 until commit, then the marker and the CRC-32C of the
///                     transaction, the data offset and the new value
/// ```
///
/// A writer appends a record, publishes it by storing the new used size, and
/// only then changes the data; committing stores 0. A process that dies at any
/// instruction therefore leaves either a clean journal or records covering
/// every byte it may have changed, and rolling those back in reverse order
/// restores the state before the write. Records are only ever touched while
/// holding the store's lock.
///
/// Durable transactions (``OpenOptions/Durability/flushOnCommit``) must also
/// survive a power loss, where the disk keeps any subset of the pages one
/// `msync` was writing. Their records carry checksums that include the
/// transaction's random number, so one `msync` writes a record and the size that
/// publishes it together: a record that did not reach the disk whole (or an
/// older transaction's record left at that place) fails its check and ends
/// the journal, and its data was not yet touched. At commit each record is
/// sealed with the new value of its bytes, and one `msync` writes the seals
/// and the data together. Recovery then redoes a journal whose every record
/// is sealed (the transaction committed, whatever part of the data reached the
/// disk) and undoes any other. So a durable one-field commit costs two
/// flushes. Seals take only the room beyond every field once, and a record
/// without room for its seal makes the commit flush the data, then the cleared
/// journal.
///
/// The cleared header after a sealed commit is not flushed, so the disk may
/// still hold that sealed journal, "used". The next durable transaction must
/// not break it on disk while that header could still count it: its first
/// flush either changes only the region's first 512-byte sector (written
/// whole) or comes after a flush of the cleared header. CrashRecovery.md
/// ("Power loss") has the whole argument.
struct UndoJournal: @unchecked Sendable {
    static let headerBytes = 64
    /// The unit a disk writes whole: a power loss leaves each 512-byte sector
    /// of a page old or new, never mixed (the model in CrashRecovery.md).
    static let sectorBytes = 512
    static let recordHeaderBytes = 32
    static let transactionOffset = 16
    /// The high half of a durable record's check word: without room for the
    /// new value, or with it (and then of its seal too).
    static let checkMarker: UInt64 = 0x5353_4A31
    static let checkMarkerWithSeal: UInt64 = 0x5353_4A32

    let base: MappedAddress
    let capacity: Int
    let journalOffset: Int
    /// The data region, so records pointing elsewhere (damage) are never applied.
    let dataRange: Range<Int>
    let fileBase: MappedAddress
    /// This process's index of the current transaction's records (process memory).
    let coverage = JournalCoverage()

    var usedBytes: UnsafeMutablePointer<Atomic<UInt64>> { base.atomic(UInt64.self) }
    var writerPID: UnsafeMutablePointer<Atomic<Int32>> { base.advanced(by: 8).atomic(Int32.self) }
    var transaction: UnsafeMutablePointer<Atomic<UInt64>> { base.advanced(by: UndoJournal.transactionOffset).atomic(UInt64.self) }

    var isDirty: Bool { usedBytes.pointee.load(ordering: .acquiring) != 0 }

    struct Record: Equatable, Sendable {
        let dataOffset: Int
        let length: Int
        let sequenceOffset: Int
        /// Where the before-image starts, relative to the journal region.
        let imageOffset: Int
        /// Where the seal word starts, for a durable record with room for one.
        let sealOffset: Int?
    }

    /// The bytes a record of `length` takes after its header, given its check word.
    /// Saturates instead of overflowing: a damaged length must fail the bounds checks, not trap.
    static func payloadBytes(length: Int, check: UInt64) -> Int {
        guard check >> 32 == checkMarkerWithSeal else { return length }
        let (doubled, overflow) = length.multipliedReportingOverflow(by: 2)
        return overflow || doubled > Int.max - 8 ? Int.max : doubled + 8
    }

    private func word(_ offset: Int) -> UInt64 { base.advanced(by: offset).atomic(UInt64.self).pointee.load(ordering: .relaxed) }
    private func setWord(_ offset: Int, _ value: UInt64) { base.advanced(by: offset).atomic(UInt64.self).pointee.store(value, ordering: .relaxed) }

    /// ``record(dataOffset:length:sequenceOffset:pid:path:durable:)`` for the
    /// common case, without its checks and branches: the first record of a
    /// non-durable transaction, which fits. The same words; false (nothing
    /// written) for any other case, which takes the general path.
    @inline(__always)
    func recordFirst(dataOffset: Int, length: Int, sequenceOffset: Int, pid: Int32) -> Bool {
        guard usedBytes.pointee.load(ordering: .relaxed) == 0,
              length >= 0, length <= capacity &- UndoJournal.headerBytes &- UndoJournal.recordHeaderBytes else { return false }
        let end = UndoJournal.headerBytes
        writerPID.pointee.store(pid, ordering: .relaxed)
        transaction.pointee.store(0, ordering: .relaxed)
        writeRecord(at: end, dataOffset: dataOffset, length: length, sequenceOffset: sequenceOffset)
        setWord(end &+ 24, 0)
        publish(usedBytes: UndoJournal.recordHeaderBytes &+ length)
        return true
    }

    /// Writes a record's first three header words and its before-image at
    /// journal offset `end`; returns where the image starts. The check word
    /// and publishing the size are the caller's.
    @inline(__always) @discardableResult
    private func writeRecord(at end: Int, dataOffset: Int, length: Int, sequenceOffset: Int) -> Int {
        setWord(end, UInt64(dataOffset))
        setWord(end &+ 8, UInt64(length))
        setWord(end &+ 16, UInt64(sequenceOffset))
        let image = end &+ UndoJournal.recordHeaderBytes
        base.advanced(by: image).copyShortBytes(from: fileBase.pointer + dataOffset, count: length)
        return image
    }

    /// Records the current bytes at `dataOffset..<dataOffset+length` unless
    /// records of this transaction already cover that range.
    ///
    /// A durable record gets room for its seal and new value only while the
    /// seals of this transaction fit in `sealAllowance`: the journal room beyond
    /// what every field once without seals needs. So a transaction that writes
    /// each field once always fits, and a record that got no room makes the
    /// commit take the path without seals.
    ///
    /// - Parameter retireSealedJournal: called before the first record of a
    ///   durable transaction when that record would change journal bytes past
    ///   the first sector and the disk may still hold the previous transaction's
    ///   sealed journal (see ``clear()``); it must flush the cleared header.
    /// - Returns: for a durable record, the journal bytes (from the region's
    ///   start) that one flush must write before the data changes; nil otherwise.
    @inline(__always)
    func record(dataOffset: Int, length: Int, sequenceOffset: Int, pid: Int32, path: String,
                durable: Bool = false, sealAllowance: Int = 0,
                retireSealedJournal: () throws(SlotStoreError) -> Void = {}) throws(SlotStoreError) -> Int? {
        let used = Int(clamping: usedBytes.pointee.load(ordering: .relaxed))
        // Only this transaction wrote the journal since the lock was taken (a
        // dead holder's records were rolled back then), so a size past the
        // region means the file was damaged under us: refuse, don't trap.
        guard used <= capacity - UndoJournal.headerBytes else {
            throw .corruptHeader(path: path, detail: "the undo journal claims \(used) bytes but holds \(capacity - UndoJournal.headerBytes)")
        }
        let end = UndoJournal.headerBytes + used
        if used == 0 { coverage.begin(at: end) }
        // Already covered: earlier records of this transaction hold an older
        // image of every byte of the range (see `JournalCoverage`). A few
        // records are scanned; past that, the index answers.
        if !coverage.indexing {
            switch scanForCover(upTo: end, offset: dataOffset, length: length) {
            case .covered: return nil
            case .notCovered: break
            case .tooManyRecords:
                coverage.startIndexing(at: UndoJournal.headerBytes)
                indexUnindexedRecords(upTo: end)
                if coverage.covers(offset: dataOffset, length: length) { return nil }
            }
        } else {
            if coverage.indexedEnd < end { indexUnindexedRecords(upTo: end) }
            if coverage.covers(offset: dataOffset, length: length) { return nil }
        }
        let sealRoom = length + 8
        var sealable = durable && coverage.sealBytes <= sealAllowance - sealRoom
        var needed = UndoJournal.recordHeaderBytes + length + (sealable ? sealRoom : 0)
        if sealable && end + needed > capacity {
            sealable = false
            needed = UndoJournal.recordHeaderBytes + length
        }
        guard end + needed <= capacity else {
            throw .transactionTooLarge(path: path, neededBytes: used + needed, journalBytes: capacity - UndoJournal.headerBytes)
        }
        if used == 0 {
            // After a sealed commit the disk may still hold that journal behind a
            // header saying "used" (the commit does not flush the cleared
            // header). This first record's flush may reach the disk in any part:
            // confined to the first sector (which a disk writes whole), it
            // leaves either the old header with the old records intact (redone:
            // the same values again) or the new header; past it, it could break
            // an old seal while the old header stays, and recovery would roll a
            // committed transaction back. So the cleared header goes first.
            if durable && transaction.pointee.load(ordering: .relaxed) != 0 && end + needed > UndoJournal.sectorBytes {
                try retireSealedJournal()
            }
            writerPID.pointee.store(pid, ordering: .relaxed)
            // A random number per durable transaction (not a counter, which a
            // power loss could set back): an earlier transaction's record left
            // where this one's did not reach the disk never passes its checks.
            var number: UInt64 = 0
            while durable && number == 0 { number = UInt64.random(in: 1...UInt64.max) }
            transaction.pointee.store(number, ordering: .relaxed)
        }
        let image = writeRecord(at: end, dataOffset: dataOffset, length: length, sequenceOffset: sequenceOffset)
        if durable {
            let number = transaction.pointee.load(ordering: .relaxed)
            let crc = CRC32C.checksum(words: 4 + length / 8) { index in
                switch index {
                case 0: number
                case 1...3: word(end + (index - 1) * 8)
                default: word(image + (index - 4) * 8)
                }
            }
            setWord(end + 24, (sealable ? UndoJournal.checkMarkerWithSeal : UndoJournal.checkMarker) << 32 | UInt64(crc))
            if sealable { setWord(image + length, 0) }
        } else {
            setWord(end + 24, 0)
        }
        publish(usedBytes: used + needed)
        if coverage.indexing {
            coverage.add(offset: dataOffset, length: length, recordEnd: end + needed)
        } else {
            coverage.noteUnindexed(recordEnd: end + needed)
        }
        if sealable { coverage.sealBytes += sealRoom }
        return durable ? end + needed : nil
    }

    enum ScanResult { case covered, notCovered, tooManyRecords }

    /// Whether one of the records before `end` holds all of `offset..<offset+length`,
    /// reading their headers; `tooManyRecords` past `JournalCoverage.scanLimit`.
    @inline(__always)
    private func scanForCover(upTo end: Int, offset: Int, length: Int) -> ScanResult {
        var cursor = UndoJournal.headerBytes
        var records = 0
        while cursor &+ UndoJournal.recordHeaderBytes <= end {
            records &+= 1
            if records > JournalCoverage.scanLimit { return .tooManyRecords }
            let start = Int(clamping: word(cursor))
            let count = Int(clamping: word(cursor &+ 8))
            if start <= offset && offset &+ length <= start &+ count { return .covered }
            let payload = UndoJournal.payloadBytes(length: count, check: word(cursor &+ 24))
            guard payload <= end &- cursor &- UndoJournal.recordHeaderBytes else { break }
            cursor &+= UndoJournal.recordHeaderBytes &+ payload
        }
        return .notCovered
    }

    /// Adds to the coverage index the records written since it was last
    /// updated: those of the inlined first-record path, which does not touch it.
    @inline(never)
    private func indexUnindexedRecords(upTo end: Int) {
        var cursor = max(coverage.indexedEnd, UndoJournal.headerBytes)
        while cursor + UndoJournal.recordHeaderBytes <= end {
            let offset = Int(clamping: word(cursor))
            let length = Int(clamping: word(cursor + 8))
            let payload = UndoJournal.payloadBytes(length: length, check: word(cursor + 24))
            guard payload <= end - cursor - UndoJournal.recordHeaderBytes else { break }
            cursor += UndoJournal.recordHeaderBytes + payload
            coverage.add(offset: offset, length: length, recordEnd: cursor)
        }
    }

    /// The journal room seals may take in a store with this layout: the
    /// region's record room beyond what a transaction writing every field
    /// once, without seals, needs (`Layout.journalRecordBytes`). Giving seals
    /// only that room keeps the promise that such a transaction fits.
    static func sealAllowance(journalSize: Int, schema: Schema) -> Int {
        max(0, journalSize - headerBytes - Layout.journalRecordBytes(for: schema))
    }

    /// Seals every durable record with the current (new) value of its bytes.
    /// - Returns: whether every record is sealed, so that one flush of the
    ///   journal and the data together commits the transaction.
    func seal() -> Bool {
        let (parsed, _) = records()
        let number = transaction.pointee.load(ordering: .relaxed)
        guard number != 0, !parsed.isEmpty, parsed.allSatisfy({ $0.sealOffset != nil }) else { return false }
        for record in parsed {
            guard let seal = record.sealOffset else { continue }
            base.advanced(by: seal + 8).copyBytes(from: fileBase.pointer + record.dataOffset, count: record.length)
            let crc = UndoJournal.sealChecksum(transaction: number, record: record) { word($0) }
            setWord(seal, UndoJournal.checkMarkerWithSeal << 32 | UInt64(crc))
        }
        return true
    }

    /// Withdraws the seals, so a commit whose flush failed is rolled back, not redone.
    func unseal() {
        for record in records().records { if let seal = record.sealOffset { setWord(seal, 0) } }
    }

    static func sealChecksum(transaction: UInt64, record: Record, word: (Int) -> UInt64) -> UInt32 {
        let seal = record.sealOffset ?? 0
        return CRC32C.checksum(words: 2 + record.length / 8) { index in
            switch index {
            case 0: transaction
            case 1: UInt64(record.dataOffset)
            default: word(seal + 8 + (index - 2) * 8)
            }
        }
    }

    /// Whether `records` are a whole durable transaction that reached its
    /// commit: every one sealed, with an intact seal.
    func isSealed(_ records: [Record]) -> Bool {
        let number = transaction.pointee.load(ordering: .relaxed)
        guard number != 0, !records.isEmpty else { return false }
        return records.allSatisfy { record in
            guard let seal = record.sealOffset else { return false }
            let check = word(seal)
            return check >> 32 == UndoJournal.checkMarkerWithSeal
                && UInt32(truncatingIfNeeded: check) == UndoJournal.sealChecksum(transaction: number, record: record) { word($0) }
        }
    }

    /// Marks the transaction committed (or rolled back): stores 0 as the used
    /// size, and forgets this process's index of its records.
    ///
    /// The transaction number stays: after a sealed commit, whose cleared
    /// header is not flushed, a nonzero number beside 0 used bytes says that the
    /// disk may still hold that sealed journal, which the next durable
    /// transaction must not overwrite before the cleared header is on disk
    /// (see `record`). Whoever flushes the cleared header calls
    /// ``forgetTransaction()`` once that flush returned.
    @inline(__always)
    func clear() {
        usedBytes.pointee.store(0, ordering: .releasing)
        coverage.transactionEnded()
    }

    /// The cleared header is on disk: no sealed journal is left to protect.
    func forgetTransaction() { transaction.pointee.store(0, ordering: .relaxed) }

    /// Parses the published records, stopping at the first one that does not
    /// fit the journal or points outside the data region.
    func records() -> (records: [Record], damaged: String?) {
        UndoJournal.parse(usedBytes: Int(clamping: usedBytes.pointee.load(ordering: .acquiring)), capacity: capacity,
                          dataRange: dataRange, transaction: transaction.pointee.load(ordering: .relaxed)) { word($0) }
    }

    /// The record parser shared by the live journal and the tools, which read
    /// a `pread` copy of the region; `word(offset)` reads the u64 at a journal offset.
    ///
    /// In a durable transaction (`transaction` ≠ 0) the first record that fails
    /// its check ends the journal without being damage: it is the one a power
    /// loss cut off, and its data was never touched.
    static func parse(usedBytes used: Int, capacity: Int, dataRange: Range<Int>, transaction: UInt64 = 0,
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
            let check = word(cursor + 24)
            let imageStart = cursor + recordHeaderBytes
            let payload = payloadBytes(length: length, check: check)
            if transaction != 0 {
                guard check >> 32 == checkMarker || check >> 32 == checkMarkerWithSeal, length % 8 == 0,
                      payload <= end - imageStart else {
                    return (result, nil)
                }
                let crc = CRC32C.checksum(words: 4 + length / 8) { index in
                    switch index {
                    case 0: transaction
                    case 1...3: word(cursor + (index - 1) * 8)
                    default: word(imageStart + (index - 4) * 8)
                    }
                }
                guard UInt32(truncatingIfNeeded: check) == crc else { return (result, nil) }
            }
            guard length > 0, length % 8 == 0, offset % 8 == 0, payload <= end - imageStart,
                  offset >= dataRange.lowerBound, offset <= dataRange.upperBound - length else {
                return (result, "record \(result.count) (offset \(offset), length \(length)) lies outside the data region or the journal")
            }
            guard sequence == 0 || (sequence % 8 == 0 && dataRange.contains(sequence) && sequence + 8 <= dataRange.upperBound) else {
                return (result, "record \(result.count) names sequence word \(sequence), outside the data region")
            }
            let sealOffset = transaction != 0 && check >> 32 == checkMarkerWithSeal ? imageStart + length : nil
            result.append(Record(dataOffset: offset, length: length, sequenceOffset: sequence, imageOffset: imageStart,
                                 sealOffset: sealOffset))
            cursor = imageStart + payload
        }
        return (result, nil)
    }

    /// Restores every before-image, newest first, then clears the journal; or,
    /// for a sealed durable transaction (see ``isSealed(_:)``) and `redoingSealed`,
    /// writes every new value instead, completing it.
    ///
    /// Each restored field's sequence word is made odd while its bytes change
    /// and then advanced to a new even value, so a seqlock reader that started
    /// before the dead writer can't accept a mix of new and restored bytes.
    /// - Returns: the number of records restored or redone.
    /// Makes the records up to `usedBytes` count: the one publish of the protocol.
    ///
    /// Publishing the size is what makes a record count: a death before this
    /// store leaves the data untouched and the record ignored. The release
    /// store orders the record before the size; the release fence after it
    /// orders the size before every later store, the data writes the record
    /// protects, so no other process (or the compiler) can see changed data
    /// without the record that undoes it. (On x86 both cost nothing: stores
    /// stay in order, so they only stop the compiler.)
    @inline(__always)
    func publish(usedBytes size: Int) {
        usedBytes.pointee.store(UInt64(size), ordering: .releasing)
        atomicMemoryFence(ordering: .releasing)
    }

    @discardableResult
    func rollBack(redoingSealed: Bool = true, beforeClearing: (() -> Void)? = nil) -> Int {
        let (parsed, _) = records()
        let redo = redoingSealed && isSealed(parsed)
        for record in redo ? parsed : parsed.reversed() {
            let sequence = record.sequenceOffset == 0 ? nil : SequenceWord(fileBase.advanced(by: record.sequenceOffset))
            sequence?.beginWrite()
            // Word by word with atomic stores: lock-free readers of scalars and
            // array elements see each word either old or restored, never torn.
            let image = redo ? (record.sealOffset ?? 0) + 8 : record.imageOffset
            for word in stride(from: 0, to: record.length, by: 8) {
                let value = base.advanced(by: image + word).atomic(UInt64.self).pointee.load(ordering: .relaxed)
                fileBase.advanced(by: record.dataOffset + word).atomic(UInt64.self).pointee.store(value, ordering: .relaxed)
            }
            sequence?.endWrite()
        }
        beforeClearing?()
        clear()
        return parsed.count
    }
}
