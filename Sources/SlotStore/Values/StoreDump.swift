import Foundation
import Glibc

/// The dump file of `slotstore dump` and `slotstore load`: a versioned
/// header, the schema, and every value, as one JSON object.
@_spi(Tools)
public enum StoreDump {
    /// The value of the dump's `format` member.
    public static let formatName = "slotstore-dump"
    /// The newest dump format this build writes and reads.
    public static let currentVersion = 1
    /// How many map entries a dump sorts at once (16 bytes each): a larger
    /// map is sorted in ranges of keys, one walk of the map per range, so
    /// memory stays flat whatever the map's size.
    static let sortBatchEntries = 1 << 21
}

extension SlotStore {
    /// Writes every value as a dump to `fd`, all read under the store's lock
    /// as one snapshot, in the form the tool has always printed (keys sorted,
    /// two-space indentation, a final newline).
    ///
    /// Nothing is materialized: scalars, arrays, strings and bytes are read
    /// one field at a time; a map is walked in place, its entries sorted by
    /// key through 16-byte records (a key prefix and a bucket index) and
    /// written straight from their buckets. The lock is held throughout, so
    /// a slow reader of `fd` holds up the store's writers: write to a file.
    ///
    /// - Parameters:
    ///   - fd: where the text goes (buffered; the caller owns the descriptor).
    ///   - outputName: the output's name for errors.
    ///   - progress: called per map as it starts, every 64 Ki entries, and at its end.
    @_spi(Tools)
    public func writeDump(to fd: Int32, outputName: String, progress: ((WorkProgress) -> Void)? = nil) throws(SlotStoreError) {
        try writeDump(to: fd, outputName: outputName, progress: progress, batchEntries: StoreDump.sortBatchEntries)
    }

    /// ``writeDump(to:outputName:progress:)`` sorting maps `batchEntries` entries at a time (tests make it small).
    func writeDump(to fd: Int32, outputName: String, progress: ((WorkProgress) -> Void)?, batchEntries: Int) throws(SlotStoreError) {
        let sink = JSONSink(fd: fd, name: outputName)
        let schemaText = try StoreDump.schemaText(schema, path: path)
        try lockedTransaction { core throws(SlotStoreError) in
            sink.byte(UInt8(ascii: "{"))
            sink.newline(1)
            sink.member("format")
            sink.string(StoreDump.formatName)
            sink.byte(UInt8(ascii: ","))
            sink.newline(1)
            sink.member("formatVersion")
            sink.int(Int64(StoreDump.currentVersion))
            sink.byte(UInt8(ascii: ","))
            sink.newline(1)
            sink.member("schema")
            sink.text(schemaText)
            sink.byte(UInt8(ascii: ","))
            sink.newline(1)
            sink.member("values")
            sink.byte(UInt8(ascii: "{"))
            // Foundation's sorted keys: by UTF-8 bytes (field names are ASCII).
            let fields = core.layout.fields.sorted { Array($0.name.utf8).lexicographicallyPrecedes(Array($1.name.utf8)) }
            for (index, field) in fields.enumerated() {
                if index > 0 { sink.byte(UInt8(ascii: ",")) }
                sink.newline(2)
                sink.byte(0x22)
                sink.text(field.name)
                sink.text("\" : ")
                if case .map = field.type {
                    try StoreDump.writeMap(MapTable(core: core, field: field), to: sink, level: 2, progress: progress,
                                           batchEntries: batchEntries)
                } else {
                    sink.value(try core.readValue(field, locked: true), level: 2)
                }
                // A failed write ends the dump now, not after the whole store.
                if let failure = sink.failure { throw failure }
            }
            sink.newline(1)
            sink.byte(UInt8(ascii: "}"))
            sink.newline(0)
            sink.byte(UInt8(ascii: "}"))
            sink.byte(0x0A)
        }
        try sink.finish()
    }
}

extension StoreDump {
    /// The schema as Foundation's pretty printer writes it, indented one
    /// level (it is small: encoding it whole is fine).
    static func schemaText(_ schema: Schema, path: String) throws(SlotStoreError) -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        let data: Data
        do { data = try encoder.encode(schema) } catch {
            throw .corruptSchema(path: path, detail: "the schema cannot be written as JSON: \(error)")
        }
        return String(decoding: data, as: UTF8.self).replacingOccurrences(of: "\n", with: "\n  ")
    }

    /// One entry's place in the sort: the key's first bytes (after the
    /// prefix every key shares) or an integer key made order-preserving,
    /// then 4 more key bytes above the bucket index.
    struct SortRecord {
        var prefix: UInt64
        var tail: UInt64
        @inline(__always) var bucket: Int { Int(tail & 0xFFFF_FFFF) }
        @inline(__always) var order: (UInt64, UInt64) { (prefix, tail >> 32) }
    }

    /// A map's entries in the order `FieldValue.sortsBefore` gives (numbers
    /// numerically, strings and bytes by their bytes), written from the mapping.
    static func writeMap(_ table: MapTable, to sink: JSONSink, level: Int, progress: ((WorkProgress) -> Void)?,
                         batchEntries: Int = StoreDump.sortBatchEntries) throws(SlotStoreError) {
        guard case .map(let keyType, let valueType, _) = table.field.type else { return }
        let name = table.field.name
        // A cache map's expired entries are not dumped; one moment for every walk below.
        let hasEntryWords = table.geometry.entryWordBytes != 0
        let now: UInt64? = hasEntryWords ? table.cursor.nowMilliseconds() : nil
        let isInteger: Bool
        let signed: Bool
        switch keyType {
        case .scalar(let scalar):
            isInteger = true
            signed = scalar.isSigned
        default:
            isInteger = false
            signed = false
        }

        // Pass 1: the entry count, and for string and bytes keys the prefix
        // all keys share (so the sort records hold bytes that differ) and
        // whether every string key is valid UTF-8.
        var count = 0
        var sharedPrefix = Int.max
        var first: UnsafeRawBufferPointer?
        var invalidText = false
        let isString: Bool = if case .string = keyType { true } else { false }
        table.forEachHoldingLock(liveAt: now) { _, key, _ in
            count += 1
            guard !isInteger else { return }
            if let first {
                let limit = min(sharedPrefix, key.count, first.count)
                var same = 0
                while same < limit && key[same] == first[same] { same += 1 }
                sharedPrefix = same
            } else {
                first = key
                sharedPrefix = key.count
            }
            if isString && !invalidText && !JSONSink.isValidUTF8(key) { invalidText = true }
        }
        if sharedPrefix == .max { sharedPrefix = 0 }
        progress?(WorkProgress(step: "dumping map \(name)", completed: 0, total: count))
        if count == 0 {
            sink.text("[")
            sink.newline(0)
            sink.newline(level)
            sink.text("]")
            progress?(WorkProgress(step: "dumping map \(name)", completed: 0, total: 0))
            return
        }
        if invalidText {
            // A damaged key: old dumps sorted the repaired text, so do exactly that.
            do {
                sink.value(try table.core.readValue(table.field, locked: true), level: level)
            }
            progress?(WorkProgress(step: "dumping map \(name)", completed: count, total: count))
            return
        }

        let skip = sharedPrefix
        @inline(__always) func record(_ index: Int, _ key: UnsafeRawBufferPointer) -> SortRecord {
            if isInteger {
                var bits: UInt64 = 0
                for byte in 0..<min(8, key.count) { bits |= UInt64(key[byte]) << (8 * UInt64(byte)) }
                let value = keyType.scalarValueBits(bits)
                return SortRecord(prefix: signed ? value ^ (1 << 63) : value, tail: UInt64(index))
            }
            var prefix: UInt64 = 0
            for position in 0..<8 {
                let at = skip + position
                prefix = prefix << 8 | (at < key.count ? UInt64(key[at]) : 0)
            }
            var more: UInt64 = 0
            for position in 8..<12 {
                let at = skip + position
                more = more << 8 | (at < key.count ? UInt64(key[at]) : 0)
            }
            return SortRecord(prefix: prefix, tail: more << 32 | UInt64(index))
        }
        let keyAt = { (index: Int) -> UnsafeRawBufferPointer in table.keyHoldingLock(at: index) }
        @inline(__always) func precedes(_ a: SortRecord, _ b: SortRecord) -> Bool {
            if a.order != b.order { return a.order < b.order }
            if isInteger { return a.bucket < b.bucket }
            // Same first bytes: compare whole keys (shorter first when one is a prefix).
            let left = keyAt(a.bucket)
            let right = keyAt(b.bucket)
            let shared = min(left.count, right.count)
            let compared = shared > 0 ? memcmp(left.baseAddress!, right.baseAddress!, shared) : 0
            return compared != 0 ? compared < 0 : left.count < right.count
        }

        // Key ranges of at most `batchEntries` entries each (by 65,536 bins
        // of the prefix between the smallest and the largest), so the
        // records stay bounded whatever the map's size.
        var lowest: UInt64 = 0
        var shift: UInt64 = 0
        var ranges: [Range<Int>] = [0..<(1 << 16)]
        if count > batchEntries {
            var highest: UInt64 = 0
            lowest = .max
            table.forEachHoldingLock(liveAt: now) { index, key, _ in
                let prefix = record(index, key).prefix
                lowest = min(lowest, prefix)
                highest = max(highest, prefix)
            }
            while (highest - lowest) >> shift >= 1 << 16 { shift += 1 }
            var histogram = [Int](repeating: 0, count: 1 << 16)
            table.forEachHoldingLock(liveAt: now) { index, key, _ in histogram[Int((record(index, key).prefix - lowest) >> shift)] += 1 }
            ranges = []
            var start = 0
            var inRange = 0
            for bin in 0..<(1 << 16) {
                if inRange > 0 && inRange + histogram[bin] > batchEntries {
                    ranges.append(start..<bin)
                    start = bin
                    inRange = 0
                }
                inRange += histogram[bin]
            }
            ranges.append(start..<(1 << 16))
        }

        let keyLevel = level + 2
        // A bucket's last word, touched before writing when it lies on another cache line (a string value's tail).
        let lastWord = min(table.geometry.entryBytes, MapGeometry.bucketPrefixBytes + table.geometry.keyBytes + 64) - 8
        var records: [SortRecord] = []
        records.reserveCapacity(min(count, batchEntries))
        var written = 0
        sink.byte(UInt8(ascii: "["))
        for range in ranges {
            records.removeAll(keepingCapacity: true)
            let whole = ranges.count == 1
            table.forEachHoldingLock(liveAt: now) { index, key, _ in
                let entry = record(index, key)
                if whole || range.contains(Int((entry.prefix &- lowest) >> shift)) { records.append(entry) }
            }
            // In place: the standard library's sort is a merge sort whose scratch
            // buffer would add half the records again to the dump's memory.
            records.withUnsafeMutableBufferPointer { StoreDump.sortInPlace($0, by: precedes) }
            for (position, entry) in records.enumerated() {
                if position & 31 == 0 {
                    // Touch the next 32 entries' buckets in one tight loop: their
                    // cache misses overlap instead of stalling each write in turn.
                    var touch: UInt64 = 0
                    for ahead in records[position..<min(position + 32, records.count)] {
                        let bucket = table.bucket(ahead.bucket)
                        touch &+= bucket.advanced(by: 8).atomic(UInt64.self).pointee.load(ordering: .relaxed)
                        // The value's line too, when the bucket spans more than one.
                        if lastWord > 64 { touch &+= bucket.advanced(by: lastWord).atomic(UInt64.self).pointee.load(ordering: .relaxed) }
                    }
                    sink.touched &+= touch
                }
                if written > 0 { sink.byte(UInt8(ascii: ",")) }
                sink.newline(level + 1)
                let bucket = entry.bucket
                let deadline = hasEntryWords
                    ? table.cursor.entryWord(table.bucket(bucket)).pointee.load(ordering: .relaxed) & MapExpiry.deadlineMask : 0
                if deadline != 0 {
                    // Its deadline first, as sorted keys put it: {"expiresAt": ms, "key": …, "value": …}.
                    sink.byte(UInt8(ascii: "{"))
                    sink.newline(level + 2)
                    sink.text("\"expiresAt\" : ")
                    sink.int(Int64(deadline))
                    sink.byte(UInt8(ascii: ","))
                    sink.newline(level + 2)
                    sink.text("\"key\" : ")
                } else {
                    sink.mapEntryOpen(level: level + 1)
                }
                let key = keyAt(bucket)
                switch keyType {
                case .scalar(let scalar):
                    var bits: UInt64 = 0
                    for byte in 0..<min(8, key.count) { bits |= UInt64(key[byte]) << (8 * UInt64(byte)) }
                    sink.scalar(scalar, bits: bits)
                case .string: sink.string(key)
                default: sink.base64Object(key, level: keyLevel)
                }
                sink.mapEntryMiddle(level: level + 1)
                writeValueArea(table.valueAreaHoldingLock(at: bucket), type: valueType, to: sink, level: keyLevel)
                sink.mapEntryClose(level: level + 1)
                written += 1
                if written & 0xFFFF == 0 {
                    progress?(WorkProgress(step: "dumping map \(name)", completed: written, total: count))
                    if let failure = sink.failure { throw failure }
                }
            }
        }
        sink.newline(level)
        sink.byte(UInt8(ascii: "]"))
        progress?(WorkProgress(step: "dumping map \(name)", completed: written, total: count))
    }

    /// A bucket's value area as JSON, as `MapCodec.read` reads it.
    static func writeValueArea(_ area: MappedAddress, type: FieldType, to sink: JSONSink, level: Int) {
        switch type {
        case .scalar(let scalar):
            sink.scalar(scalar, bits: area.loadBits(width: scalar.byteWidth))
        case .array(let element, let count):
            sink.byte(UInt8(ascii: "["))
            for index in 0..<count {
                if index > 0 { sink.byte(UInt8(ascii: ",")) }
                sink.newline(level + 1)
                sink.scalar(element, bits: area.advanced(by: index * element.byteWidth).loadBits(width: element.byteWidth))
            }
            if count == 0 { sink.newline(0) }
            sink.newline(level)
            sink.byte(UInt8(ascii: "]"))
        case .string(let capacity), .bytes(let capacity):
            let length = Int(min(area.atomic(UInt64.self).pointee.load(ordering: .relaxed), UInt64(capacity)))
            let bytes = UnsafeRawBufferPointer(start: area.advanced(by: 8).pointer, count: length)
            if case .string = type { sink.string(bytes) } else { sink.base64Object(bytes, level: level) }
        case .map:
            sink.text("[")
            sink.newline(0)
            sink.newline(level)
            sink.text("]")
        }
    }
}

extension StoreDump {
    /// Sorts `items` in place: quicksort (median of three, the smaller side
    /// first so the stack stays shallow), insertion sort for short ranges,
    /// heapsort when a range splits badly too often. No scratch memory.
    static func sortInPlace<T>(_ items: UnsafeMutableBufferPointer<T>, by less: (T, T) -> Bool) {
        var stack: [(Int, Int, Int)] = [(0, items.count, 2 * (Int.bitWidth - items.count.leadingZeroBitCount))]
        while let (low, high, depth) = stack.popLast() {
            var low = low
            var high = high
            var depth = depth
            while high - low > 16 {
                if depth == 0 {
                    heapSort(UnsafeMutableBufferPointer(rebasing: items[low..<high]), by: less)
                    low = high
                    break
                }
                depth -= 1
                let middle = low + (high - low) / 2
                if less(items[middle], items[low]) { items.swapAt(middle, low) }
                if less(items[high - 1], items[middle]) {
                    items.swapAt(high - 1, middle)
                    if less(items[middle], items[low]) { items.swapAt(middle, low) }
                }
                let pivot = items[middle]
                var left = low
                var right = high - 1
                while left <= right {
                    while less(items[left], pivot) { left += 1 }
                    while less(pivot, items[right]) { right -= 1 }
                    if left <= right {
                        items.swapAt(left, right)
                        left += 1
                        right -= 1
                    }
                }
                // [low, right] and [left, high) remain; loop on the smaller, push the larger.
                if right + 1 - low < high - left {
                    stack.append((left, high, depth))
                    high = right + 1
                } else {
                    stack.append((low, right + 1, depth))
                    low = left
                }
            }
            if high - low > 1 {
                for index in (low + 1)..<high {
                    let item = items[index]
                    var at = index
                    while at > low && less(item, items[at - 1]) {
                        items[at] = items[at - 1]
                        at -= 1
                    }
                    items[at] = item
                }
            }
        }
    }

    private static func heapSort<T>(_ items: UnsafeMutableBufferPointer<T>, by less: (T, T) -> Bool) {
        func siftDown(_ start: Int, _ end: Int) {
            var root = start
            while 2 * root + 1 < end {
                var child = 2 * root + 1
                if child + 1 < end && less(items[child], items[child + 1]) { child += 1 }
                guard less(items[root], items[child]) else { return }
                items.swapAt(root, child)
                root = child
            }
        }
        guard items.count > 1 else { return }
        for start in stride(from: items.count / 2 - 1, through: 0, by: -1) { siftDown(start, items.count) }
        for end in stride(from: items.count - 1, to: 0, by: -1) {
            items.swapAt(0, end)
            siftDown(0, end)
        }
    }
}

extension FieldType {
    /// An integer key's stored bits as the 64-bit pattern of its value
    /// (sign-extended for signed types), for ordering.
    func scalarValueBits(_ raw: UInt64) -> UInt64 {
        guard case .scalar(let scalar) = self else { return raw }
        switch scalar.value(fromBits: raw) {
        case .int(let value): return UInt64(bitPattern: value)
        case .uint(let value): return value
        default: return raw
        }
    }
}

extension MapTable {
    /// The key bytes of the live entry in bucket `index`, straight from the
    /// mapping (as ``forEachHoldingLock(_:)`` lends them). Call holding the lock.
    func keyHoldingLock(at index: Int) -> UnsafeRawBufferPointer {
        let bucket = self.bucket(index)
        let meta = bucket.advanced(by: 8).atomic(UInt64.self).pointee.load(ordering: .relaxed)
        let length = min(Int((meta >> 8) & 0xFF_FFFF), geometry.keyCapacity)
        return UnsafeRawBufferPointer(start: bucket.advanced(by: MapGeometry.bucketPrefixBytes).pointer, count: length)
    }

    /// The value area of bucket `index`. Call holding the lock.
    func valueAreaHoldingLock(at index: Int) -> MappedAddress {
        bucket(index).advanced(by: geometry.valueOffset)
    }
}
