/// What this process knows about the transaction it is journaling: which data
/// bytes its records already cover, and how much journal room their seals took.
///
/// It lives in process memory, next to the mapping, and is touched only while
/// this process holds the store's lock: the lock holder is the only writer of
/// the journal, so nothing another process does can make it stale while it is
/// in use. It describes one transaction and is reset when that transaction's
/// journal is cleared (commit or rollback, see ``transactionEnded()``) and again
/// when a record is written into a clean journal.
///
/// Coverage is a sparse bitmap of 8-byte data words, one `UInt64` of bits per
/// 512 bytes of data, so "is this range already covered" costs one hash lookup
/// per 512 bytes of the range, whatever the number of records: a transaction of
/// many records (a map `load`) is linear in its records, not quadratic. A range
/// counts as covered when every one of its words is inside some earlier record
/// (not necessarily one record): rollback runs newest first, so each byte ends
/// at the image of the oldest record that holds it, taken before this
/// transaction first changed it; and a seal copies the final bytes of every
/// record's whole range, so a redo writes each covered byte's final value.
///
/// Most transactions write a handful of fields, and for those the journal's
/// own record headers are checked by a scan (`UndoJournal.scanForCover`),
/// which costs less than hashing; the bitmap is built, from every record so
/// far, only once a transaction passes ``scanLimit`` records. (The scan finds
/// a range only inside one earlier record: a missed union costs one more
/// record, never correctness.)
final class JournalCoverage: @unchecked Sendable {
    private static let blockBytes = 512
    /// Records a transaction may have before the bitmap replaces the scan.
    static let scanLimit = 8

    /// Whether this transaction's records are in the bitmap (past ``scanLimit``).
    @exclusivity(unchecked) private(set) var indexing = false

    /// The journal offset up to which records are in `covered`; 0 while no
    /// record is. Records the inlined first-record path wrote are indexed when
    /// the general path first sees them.
    @exclusivity(unchecked) private(set) var indexedEnd = 0
    /// Word bits per 512-byte block of the data region, keyed by offset / 512.
    @exclusivity(unchecked) private var covered: [Int: UInt64] = [:]
    /// Journal bytes this transaction's seals and new-value areas take.
    @exclusivity(unchecked) var sealBytes = 0
    /// The journal room seals may take, computed once (see `UndoJournal.record`).
    @exclusivity(unchecked) var sealAllowance: Int?

    /// Forgets the transaction: its journal was cleared. One load and a
    /// predictable branch when the transaction never left the inlined first-record path.
    @inline(__always)
    func transactionEnded() {
        if _slowPath(indexedEnd != 0) { reset() }
    }

    func reset() {
        indexedEnd = 0
        sealBytes = 0
        if !covered.isEmpty { covered.removeAll(keepingCapacity: covered.count <= 4096) }
        indexing = false
    }

    /// The transaction outgrew the scan: index its records from `start` on.
    func startIndexing(at start: Int) {
        indexing = true
        indexedEnd = start
    }

    /// Notes a record written while scanning (nothing to index yet).
    func noteUnindexed(recordEnd: Int) {
        indexedEnd = recordEnd
    }

    /// Starts indexing a transaction whose first record begins at `start`.
    func begin(at start: Int) {
        reset()
        indexedEnd = start
    }

    /// Whether every 8-byte word of `offset..<offset+length` is in an indexed record.
    func covers(offset: Int, length: Int) -> Bool {
        guard length > 0 else { return true }
        guard offset >= 0, offset % 8 == 0, length % 8 == 0, !covered.isEmpty else { return false }
        var word = offset / 8
        let endWord = word + length / 8
        while word < endWord {
            let block = word / (JournalCoverage.blockBytes / 8)
            let first = word % 64
            let last = min(64, first + (endWord - word))
            let mask = JournalCoverage.bits(first..<last)
            guard let bits = covered[block], bits & mask == mask else { return false }
            word += last - first
        }
        return true
    }

    /// Adds a record of `offset..<offset+length` that ends at journal offset `recordEnd`.
    func add(offset: Int, length: Int, recordEnd: Int) {
        indexedEnd = recordEnd
        guard length > 0, offset >= 0 else { return }
        // Only whole words count: a range off word boundaries (never written;
        // damage at most) must not claim bytes it did not save.
        var word = (offset + 7) / 8
        let endWord = (offset + length) / 8
        while word < endWord {
            let block = word / (JournalCoverage.blockBytes / 8)
            let first = word % 64
            let last = min(64, first + (endWord - word))
            covered[block, default: 0] |= JournalCoverage.bits(first..<last)
            word += last - first
        }
    }

    @inline(__always)
    private static func bits(_ range: Range<Int>) -> UInt64 {
        let count = range.count
        let run: UInt64 = count == 64 ? ~0 : (1 << UInt64(count)) - 1
        return run << UInt64(range.lowerBound)
    }
}
