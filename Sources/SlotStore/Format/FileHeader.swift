/// The fixed 256-byte header at offset 0 of every store, and its copy at
/// offset 2048 (a different disk sector), kept for `slotstore repair`.
///
/// The header is written once, when the file is built under a temporary name,
/// and never changes during ordinary operation: a process that crashes can't
/// tear it. Everything that changes at run time lives in the lock region.
/// The byte layout is specified in the FileFormat article of the DocC catalog.
struct FileHeader: Equatable, Sendable {
    static let size = 256
    static let copyOffset = 2048
    static let magic: [UInt8] = Array("SlotStor".utf8)
    /// Written little-endian; a big-endian reader sees 0x0D0C0B0A.
    static let byteOrderMark: UInt32 = 0x0A0B_0C0D
    static let currentMajor: UInt16 = 1
    /// 1.1 added map fields and the hash seed at offset 144; 1.0 files open unchanged
    /// and compaction upgrades them. 1.2 added per-process fields, which an
    /// older reader can't ignore: only a store that has one is written as
    /// 1.2 (see ``minor(for:)``), and a minor above this one is refused.
    /// 1.3 added maps with a cache policy (an entry word in each bucket, the
    /// clock hand at map header offset 32), which an older reader would
    /// misplace every value of: only a store with such a map is 1.3.
    static let currentMinor: UInt16 = 3

    /// The minor version a store of `schema` is written with: the lowest that
    /// has every feature it uses, so a store without per-process fields stays
    /// 1.1, byte for byte what builds before 1.2 write, and they can open it.
    static func minor(for schema: Schema) -> UInt16 { schema.hasCacheMaps ? 3 : schema.hasPerProcessFields ? 2 : 1 }
    static let checksumOffset = 252

    struct Flags: OptionSet, Sendable {
        let rawValue: UInt32
        /// Every field starts on its own 64-byte cache line.
        static let cacheLineAligned = Flags(rawValue: 1 << 0)
    }

    var formatMajor: UInt16 = FileHeader.currentMajor
    var formatMinor: UInt16 = FileHeader.currentMinor
    var pageSize: UInt32
    var flags: Flags
    var lockABI: UInt32
    var fileSize: UInt64
    var lockOffset: UInt64
    var lockSize: UInt64
    var journalOffset: UInt64
    var journalSize: UInt64
    var schemaOffset: UInt64
    var schemaSize: UInt64
    var schemaLength: UInt32
    var schemaChecksum: UInt32
    var dataOffset: UInt64
    var dataSize: UInt64
    var schemaVersion: UInt64
    var schemaHash: UInt64
    var generation: UInt64
    var createdAtNanoseconds: Int64
    /// Random at creation; seeds every map's hash so keys chosen by an
    /// outsider can't be made to collide.
    var hashSeed: UInt64 = 0

    var formatVersion: String { "\(formatMajor).\(formatMinor)" }

    func encoded() -> [UInt8] {
        var bytes = [UInt8](repeating: 0, count: FileHeader.size)
        bytes.replaceSubrange(0..<8, with: FileHeader.magic)
        bytes.setLittleEndian(FileHeader.byteOrderMark, at: 8)
        bytes.setLittleEndian(formatMajor, at: 12)
        bytes.setLittleEndian(formatMinor, at: 14)
        bytes.setLittleEndian(UInt32(FileHeader.size), at: 16)
        bytes.setLittleEndian(pageSize, at: 20)
        bytes.setLittleEndian(flags.rawValue, at: 24)
        bytes.setLittleEndian(lockABI, at: 28)
        bytes.setLittleEndian(fileSize, at: 32)
        bytes.setLittleEndian(lockOffset, at: 40)
        bytes.setLittleEndian(lockSize, at: 48)
        bytes.setLittleEndian(journalOffset, at: 56)
        bytes.setLittleEndian(journalSize, at: 64)
        bytes.setLittleEndian(schemaOffset, at: 72)
        bytes.setLittleEndian(schemaSize, at: 80)
        bytes.setLittleEndian(schemaLength, at: 88)
        bytes.setLittleEndian(schemaChecksum, at: 92)
        bytes.setLittleEndian(dataOffset, at: 96)
        bytes.setLittleEndian(dataSize, at: 104)
        bytes.setLittleEndian(schemaVersion, at: 112)
        bytes.setLittleEndian(schemaHash, at: 120)
        bytes.setLittleEndian(generation, at: 128)
        bytes.setLittleEndian(createdAtNanoseconds, at: 136)
        bytes.setLittleEndian(hashSeed, at: 144)
        bytes.setLittleEndian(CRC32C.checksum(bytes[0..<FileHeader.checksumOffset]), at: FileHeader.checksumOffset)
        return bytes
    }

    /// Parses a header, checking magic, byte order, major version and checksum, in that order,
    /// so the error names the most basic problem first.
    static func decode(_ bytes: [UInt8], path: String) throws(SlotStoreError) -> FileHeader {
        guard bytes.count >= size else {
            throw .truncated(path: path, expectedBytes: size, foundBytes: bytes.count)
        }
        guard Array(bytes[0..<8]) == magic else {
            throw .notAStore(path: path, foundMagic: describeMagic(Array(bytes[0..<8])))
        }
        let mark = bytes.littleEndian(UInt32.self, at: 8)
        guard mark == byteOrderMark else {
            throw .corruptHeader(path: path, detail: "byte-order mark is 0x\(String(mark, radix: 16)), expected 0x0a0b0c0d (a file from a big-endian machine, or damage)")
        }
        let major = bytes.littleEndian(UInt16.self, at: 12)
        let minor = bytes.littleEndian(UInt16.self, at: 14)
        guard major == currentMajor, minor <= currentMinor else {
            throw .unsupportedVersion(path: path, found: "\(major).\(minor)", supported: "\(currentMajor).0 to \(currentMajor).\(currentMinor)")
        }
        let stored = bytes.littleEndian(UInt32.self, at: checksumOffset)
        let computed = CRC32C.checksum(bytes[0..<checksumOffset])
        guard stored == computed else {
            throw .headerChecksumMismatch(path: path, stored: stored, computed: computed)
        }
        let headerSize = bytes.littleEndian(UInt32.self, at: 16)
        guard headerSize == UInt32(size) else {
            throw .corruptHeader(path: path, detail: "the header size field says \(headerSize), format \(major).x uses \(size)")
        }
        return FileHeader(
            formatMajor: major, formatMinor: minor,
            pageSize: bytes.littleEndian(UInt32.self, at: 20),
            flags: Flags(rawValue: bytes.littleEndian(UInt32.self, at: 24)),
            lockABI: bytes.littleEndian(UInt32.self, at: 28),
            fileSize: bytes.littleEndian(UInt64.self, at: 32),
            lockOffset: bytes.littleEndian(UInt64.self, at: 40),
            lockSize: bytes.littleEndian(UInt64.self, at: 48),
            journalOffset: bytes.littleEndian(UInt64.self, at: 56),
            journalSize: bytes.littleEndian(UInt64.self, at: 64),
            schemaOffset: bytes.littleEndian(UInt64.self, at: 72),
            schemaSize: bytes.littleEndian(UInt64.self, at: 80),
            schemaLength: bytes.littleEndian(UInt32.self, at: 88),
            schemaChecksum: bytes.littleEndian(UInt32.self, at: 92),
            dataOffset: bytes.littleEndian(UInt64.self, at: 96),
            dataSize: bytes.littleEndian(UInt64.self, at: 104),
            schemaVersion: bytes.littleEndian(UInt64.self, at: 112),
            schemaHash: bytes.littleEndian(UInt64.self, at: 120),
            generation: bytes.littleEndian(UInt64.self, at: 128),
            createdAtNanoseconds: bytes.littleEndian(Int64.self, at: 136),
            hashSeed: bytes.littleEndian(UInt64.self, at: 144))
    }

    /// Checks that the regions are page-aligned, ordered, non-overlapping and
    /// inside both the header's file size and the file's real size.
    func validateRegions(actualFileSize: Int, path: String) throws(SlotStoreError) {
        let page = UInt64(pageSize)
        guard pageSize >= 4096, pageSize <= 1 << 20, pageSize & (pageSize - 1) == 0 else {
            throw .corruptHeader(path: path, detail: "page size \(pageSize) is not a power of two from 4096 to 1048576")
        }
        let regions: [(String, UInt64, UInt64)] = [
            ("lock", lockOffset, lockSize), ("journal", journalOffset, journalSize),
            ("schema", schemaOffset, schemaSize), ("data", dataOffset, dataSize),
        ]
        var end = page  // the first page holds the header and its copy
        for (name, offset, size) in regions {
            guard offset % page == 0, size % page == 0, size > 0 else {
                throw .corruptHeader(path: path, detail: "the \(name) region (offset \(offset), size \(size)) is not page-aligned")
            }
            guard offset >= end, offset <= fileSize, size <= fileSize - offset else {
                throw .corruptHeader(path: path, detail: "the \(name) region (offset \(offset), size \(size)) overlaps another region or extends beyond the file size \(fileSize) in the header")
            }
            end = offset + size
        }
        guard end == fileSize else {
            throw .corruptHeader(path: path, detail: "the regions end at \(end) but the header says the file is \(fileSize) bytes")
        }
        guard UInt64(schemaLength) <= schemaSize else {
            throw .corruptHeader(path: path, detail: "the stored schema's length \(schemaLength) exceeds its region of \(schemaSize) bytes")
        }
        guard UInt64(actualFileSize) >= fileSize else {
            throw .truncated(path: path, expectedBytes: Int(clamping: fileSize), foundBytes: actualFileSize)
        }
        guard UInt64(actualFileSize) == fileSize else {
            throw .corruptHeader(path: path, detail: "the file is \(actualFileSize) bytes but its header says \(fileSize)")
        }
    }

    private static func describeMagic(_ bytes: [UInt8]) -> String {
        if bytes.allSatisfy({ $0 == 0 }) { return "zero bytes" }
        if bytes.allSatisfy({ $0 >= 0x20 && $0 < 0x7F }) { return "\"\(String(decoding: bytes, as: UTF8.self))\"" }
        return bytes.map { byte in
            let digits = String(byte, radix: 16)
            return digits.count == 1 ? "0" + digits : digits
        }.joined(separator: " ")
    }
}
