import Glibc

/// A flush log read back: every page's versions as the flushes saw them, and
/// the workload's records between the flushes (see `FlushRecorder` in the
/// library and `PowerLossWorkload`).
struct PowerLossHistory {
    enum Event {
        /// Flush number `index` (into `flushes`).
        case flush(Int)
        case begin(transaction: Int, rollsBack: Bool)
        case acknowledged(transaction: Int, state: String)
        case marker(String)
    }

    struct Flush {
        /// The pages the `msync` writes.
        let pages: Range<Int>
    }

    struct Version {
        /// The flush whose snapshot first showed this content; -1 for the base.
        let flush: Int
        let bytes: [UInt8]
        /// A hash per 512-byte sector, to tell images apart cheaply.
        let sectorHashes: [UInt64]
    }

    static let sectorBytes = 512

    let pageSize: Int
    let fileSize: Int
    var pageCount: Int { (fileSize + pageSize - 1) / pageSize }
    private(set) var flushes: [Flush] = []
    private(set) var events: [Event] = []
    /// versions[page][0] is the base (what the disk held before the first flush
    /// of the log, or the first flush's snapshot); later ones in flush order.
    private(set) var versions: [[Version]] = []

    /// Reads the log's records for `path`. With `base`, that is what the disk
    /// held before the log began; without, the first flush's snapshot is,
    /// and the log's flushes are numbered from the one after it.
    init(log bytes: [UInt8], path: String, base: [UInt8]?) throws {
        var cursor = 0
        var pageSize = 0
        var fileSize = base?.count ?? 0
        var sawFirst = base != nil
        var versions: [[Version]] = []
        if let base {
            pageSize = Int(sysconf(Int32(_SC_PAGESIZE)))
            versions = PowerLossHistory.pages(of: base, pageSize: pageSize).map { [Version(flush: -1, bytes: $0)] }
        }
        func line() throws -> [Substring] {
            guard let end = bytes[cursor...].firstIndex(of: 10) else {
                throw InputError("flush log: a record at byte \(cursor) has no end of line")
            }
            defer { cursor = end + 1 }
            return String(decoding: bytes[cursor..<end], as: UTF8.self).split(separator: " ", maxSplits: 6).map { $0 }
        }
        func take(_ count: Int) throws -> [UInt8] {
            guard count >= 0, cursor + count <= bytes.count else { throw InputError("flush log: cut off at byte \(cursor)") }
            defer { cursor += count }
            return Array(bytes[cursor..<cursor + count])
        }
        while cursor < bytes.count {
            let words = try line()
            switch words.first {
            case "F":
                guard words.count == 7, let start = Int(words[1]), let end = Int(words[2]), let size = Int(words[3]),
                      let page = Int(words[4]), let count = Int(words[5]) else {
                    throw InputError("flush log: a malformed flush record at byte \(cursor)")
                }
                var changed: [(Int, [UInt8])] = []
                for _ in 0..<count {
                    let header = try line()
                    guard let index = header.first.flatMap({ Int($0) }) else { throw InputError("flush log: a malformed page record") }
                    changed.append((index, try take(min(page, size - index * page))))
                }
                guard String(words[6]) == path else { continue }
                if !sawFirst {
                    // The store's first logged flush writes every page: the base.
                    sawFirst = true
                    pageSize = page
                    fileSize = size
                    versions = Array(repeating: [], count: (size + page - 1) / page)
                    for (index, content) in changed { versions[index] = [Version(flush: -1, bytes: content)] }
                    guard versions.allSatisfy({ !$0.isEmpty }) else { throw InputError("flush log: the first flush of \(path) does not hold every page") }
                    continue
                }
                guard page == pageSize, size == fileSize else { throw InputError("flush log: \(path) changed size or page size") }
                let number = flushes.count
                flushes.append(Flush(pages: start / page..<(end + page - 1) / page))
                for (index, content) in changed where index < versions.count {
                    versions[index].append(Version(flush: number, bytes: content))
                }
                events.append(.flush(number))
            case "B":
                guard words.count == 3, let number = Int(words[1]) else { throw InputError("flush log: a malformed begin record") }
                events.append(.begin(transaction: number, rollsBack: words[2] == "rollback"))
            case "A":
                guard words.count == 3, let number = Int(words[1]), let count = Int(words[2]) else {
                    throw InputError("flush log: a malformed acknowledgement record")
                }
                events.append(.acknowledged(transaction: number, state: String(decoding: try take(count), as: UTF8.self)))
            case "M":
                events.append(.marker(words.dropFirst().joined(separator: " ")))
            default:
                throw InputError("flush log: an unknown record at byte \(cursor)")
            }
        }
        guard sawFirst else { throw InputError("flush log: no flush of \(path)") }
        self.pageSize = pageSize
        self.fileSize = fileSize
        self.versions = versions
    }

    static func pages(of bytes: [UInt8], pageSize: Int) -> [[UInt8]] {
        stride(from: 0, to: bytes.count, by: pageSize).map { Array(bytes[$0..<min(bytes.count, $0 + pageSize)]) }
    }

    /// For each page, the index of its newest version as of flush `flush`'s snapshot.
    func newest(atFlush flush: Int) -> [Int] {
        versions.map { list in (list.lastIndex { $0.flush <= flush }) ?? 0 }
    }
}

extension PowerLossHistory.Version {
    init(flush: Int, bytes: [UInt8]) {
        self.flush = flush
        self.bytes = bytes
        sectorHashes = stride(from: 0, to: bytes.count, by: PowerLossHistory.sectorBytes).map { start in
            var hash: UInt64 = 0xCBF2_9CE4_8422_2325
            for byte in bytes[start..<min(bytes.count, start + PowerLossHistory.sectorBytes)] {
                hash = (hash ^ UInt64(byte)) &* 0x100_0000_01B3
            }
            return hash
        }
    }
}

/// One crash image: each page at one of its versions, or torn between two at sector boundaries.
struct CrashImage {
    enum Page: Hashable {
        case whole(Int)
        /// Sectors whose bit is set in `mask` come from version `new`, the others from `old`.
        case torn(old: Int, new: Int, mask: UInt64)
    }

    /// Only the pages that differ from their durable version.
    var pages: [Int: Page]
    /// Where the image came from, for the report.
    var origin: String

    func bytes(_ history: PowerLossHistory, durable: [Int]) -> [UInt8] {
        var result: [UInt8] = []
        result.reserveCapacity(history.fileSize)
        for page in 0..<history.pageCount {
            result += content(of: page, history, durable: durable)
        }
        return result
    }

    func content(of page: Int, _ history: PowerLossHistory, durable: [Int]) -> [UInt8] {
        let versions = history.versions[page]
        switch pages[page] ?? .whole(durable[page]) {
        case .whole(let version):
            return versions[version].bytes
        case .torn(let old, let new, let mask):
            var bytes = versions[old].bytes
            let newer = versions[new].bytes
            for sector in 0..<(bytes.count + PowerLossHistory.sectorBytes - 1) / PowerLossHistory.sectorBytes where mask >> UInt64(sector) & 1 == 1 {
                let range = sector * PowerLossHistory.sectorBytes..<min(bytes.count, (sector + 1) * PowerLossHistory.sectorBytes)
                bytes.replaceSubrange(range, with: newer[range])
            }
            return bytes
        }
    }

    /// A hash of the image's bytes, from the sector hashes of the pages that
    /// differ from the durable ones (the rest are the same in every image of
    /// a crash point).
    func hash(_ history: PowerLossHistory, durable: [Int]) -> UInt64 {
        var hash: UInt64 = 0x9E37_79B9_7F4A_7C15
        func mix(_ value: UInt64) { hash = (hash ^ value) &* 0xFF51_AFD7_ED55_8CCD; hash ^= hash >> 29 }
        for (page, choice) in pages.sorted(by: { $0.key < $1.key }) {
            let versions = history.versions[page]
            let sectors: [UInt64]
            switch choice {
            case .whole(let version):
                sectors = versions[version].sectorHashes
            case .torn(let old, let new, let mask):
                sectors = versions[old].sectorHashes.indices.map { mask >> UInt64($0) & 1 == 1 ? versions[new].sectorHashes[$0] : versions[old].sectorHashes[$0] }
            }
            if sectors == versions[durable[page]].sectorHashes { continue }
            mix(UInt64(page))
            for sector in sectors { mix(sector) }
        }
        return hash
    }
}
