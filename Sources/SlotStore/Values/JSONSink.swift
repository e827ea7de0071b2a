import Glibc

/// Buffered JSON text to a file descriptor, in the exact form the tool's
/// `JSONOutput` (Foundation's encoder, pretty-printed with sorted keys and
/// unescaped slashes) gives: `"key" : value`, two spaces per level, empty
/// containers as `[\n\n<indent>]`, integers in decimal, doubles as Swift's
/// shortest round-trip text without a trailing `.0`, strings with `"`, `\`
/// and control characters escaped (`\b \f \n \r \t`, else `\u00xx`), and
/// everything else, `/` and non-ASCII included, as is.
///
/// A whole dump never exists as one string: bytes go to a 1 MiB buffer that
/// is written out whenever it fills. A failed write is kept (later output is
/// dropped) and thrown by ``finish()``, so the hot paths carry no error path.
final class JSONSink {
    static let bufferBytes = 1 << 20

    private let fd: Int32
    /// The output's name in errors: a path, or "standard output".
    let name: String
    private let buffer: UnsafeMutablePointer<UInt8>
    private var used = 0
    private(set) var failure: SlotStoreError?
    /// Keeps the dump's bucket-touching loads from being dropped.
    var touched: UInt64 = 0
    /// Bytes handed to the descriptor so far.
    private(set) var written = 0

    init(fd: Int32, name: String) {
        self.fd = fd
        self.name = name
        buffer = .allocate(capacity: JSONSink.bufferBytes)
    }

    deinit { buffer.deallocate() }

    // MARK: Raw output

    @inline(__always)
    func byte(_ value: UInt8) {
        if _slowPath(used == JSONSink.bufferBytes) { drain() }
        buffer[used] = value
        used &+= 1
    }

    func bytes(_ source: UnsafeRawBufferPointer) {
        guard let base = source.baseAddress, source.count > 0 else { return }
        if source.count > JSONSink.bufferBytes - used {
            drain()
            if source.count >= JSONSink.bufferBytes {
                writeOut(UnsafeRawPointer(base), source.count)
                return
            }
        }
        (buffer + used).update(from: base.assumingMemoryBound(to: UInt8.self), count: source.count)
        used &+= source.count
    }

    func text(_ value: StaticString) {
        bytes(UnsafeRawBufferPointer(start: value.utf8Start, count: value.utf8CodeUnitCount))
    }

    func text(_ value: String) {
        var value = value
        value.withUTF8 { bytes(UnsafeRawBufferPointer($0)) }
    }

    /// A newline and the indentation of `level` (two spaces each).
    @inline(__always)
    func newline(_ level: Int) {
        if _slowPath(JSONSink.bufferBytes - used < 1 + 2 * level) { drain() }
        if _slowPath(1 + 2 * level > JSONSink.bufferBytes) {
            byte(0x0A)
            for _ in 0..<(2 * level) { byte(0x20) }
            return
        }
        buffer[used] = 0x0A
        (buffer + used + 1).initialize(repeating: 0x20, count: 2 * level)
        used &+= 1 + 2 * level
    }

    /// `"name" : ` for a member whose name needs no escaping (field names,
    /// the dump's own keys).
    func member(_ name: StaticString) {
        byte(0x22)
        text(name)
        text("\" : ")
    }

    /// Writes out what is buffered and throws the first write failure.
    func finish() throws(SlotStoreError) {
        drain()
        if let failure { throw failure }
    }

    private func drain() {
        if used > 0 { writeOut(UnsafeRawPointer(buffer), used) }
        used = 0
    }

    private func writeOut(_ start: UnsafeRawPointer, _ count: Int) {
        guard failure == nil else { return }
        var done = 0
        while done < count {
            let n = Glibc.write(fd, start + done, count - done)
            if n < 0 {
                if errno == EINTR { continue }
                failure = errno == ENOSPC || errno == EDQUOT ? .noSpace(path: name, neededBytes: count - done)
                    : .systemCallFailed(path: name, call: "write", errno: errno)
                return
            }
            done += n
        }
        written += count
    }

    // MARK: Values

    func bool(_ value: Bool) { value ? text("true") : text("false") }

    /// A signed integer in decimal.
    func int(_ value: Int64) {
        if value < 0 {
            byte(UInt8(ascii: "-"))
            uint(value.magnitude)
        } else {
            uint(UInt64(value))
        }
    }

    /// An unsigned integer in decimal, without a String.
    func uint(_ value: UInt64) {
        if _slowPath(JSONSink.bufferBytes - used < 20) { drain() }
        var digits: (UInt64, UInt64, UInt64) = (0, 0, 0)  // 24 bytes of scratch
        let count = withUnsafeMutableBytes(of: &digits) { scratch -> Int in
            var rest = value
            var position = 24
            repeat {
                position -= 1
                scratch[position] = UInt8(truncatingIfNeeded: rest % 10) &+ 0x30
                rest /= 10
            } while rest != 0
            (buffer + used).update(from: scratch.baseAddress!.assumingMemoryBound(to: UInt8.self) + position, count: 24 - position)
            return 24 - position
        }
        used &+= count
    }

    /// A double as JSON has it: a number when finite and not -0, else the
    /// strings "nan", "inf", "-inf" and "-0" (see ``FieldValue``).
    func double(_ value: Double) {
        guard value.isFinite, !(value == 0 && value.sign == .minus) else {
            byte(0x22)
            text(FieldValue.format(value))
            byte(0x22)
            return
        }
        // Foundation's encoder: the shortest round-trip text, minus a trailing ".0".
        var description = value.description
        if description.hasSuffix(".0") { description.removeLast(2) }
        text(description)
    }

    /// A scalar from its stored bits, as ``ScalarType/value(fromBits:)`` reads them.
    @inline(__always)
    func scalar(_ type: ScalarType, bits raw: UInt64) {
        switch type {
        case .int8: int(Int64(Int8(truncatingIfNeeded: raw)))
        case .int16: int(Int64(Int16(truncatingIfNeeded: raw)))
        case .int32: int(Int64(Int32(truncatingIfNeeded: raw)))
        case .int64: int(Int64(bitPattern: raw))
        case .uint8: uint(raw & 0xFF)
        case .uint16: uint(raw & 0xFFFF)
        case .uint32: uint(raw & 0xFFFF_FFFF)
        case .uint64: uint(raw)
        case .float: double(Double(Float(bitPattern: UInt32(truncatingIfNeeded: raw))))
        case .double: double(Double(bitPattern: raw))
        case .bool: bool(raw & 0xFF != 0)
        }
    }

    private static let hexDigits: StaticString = "0123456789abcdef"

    /// A string from UTF-8 bytes, quoted and escaped. Bytes that are not
    /// valid UTF-8 become U+FFFD, as `String(decoding:as:)` makes them.
    func string(_ source: UnsafeRawBufferPointer) {
        if _slowPath(!JSONSink.isValidUTF8(source)) {
            var repaired = String(decoding: source, as: UTF8.self)
            repaired.withUTF8 { escaped(UnsafeRawBufferPointer($0)) }
            return
        }
        escaped(source)
    }

    func string(_ value: String) {
        var value = value
        value.withUTF8 { escaped(UnsafeRawBufferPointer($0)) }
    }

    private func escaped(_ source: UnsafeRawBufferPointer) {
        byte(0x22)
        var runStart = 0
        var index = 0
        let count = source.count
        while index < count {
            let value = source[index]
            if _fastPath(value >= 0x20 && value != 0x22 && value != 0x5C) {
                index &+= 1
                continue
            }
            bytes(UnsafeRawBufferPointer(rebasing: source[runStart..<index]))
            byte(0x5C)
            switch value {
            case 0x22: byte(0x22)
            case 0x5C: byte(0x5C)
            case 0x08: byte(UInt8(ascii: "b"))
            case 0x0C: byte(UInt8(ascii: "f"))
            case 0x0A: byte(UInt8(ascii: "n"))
            case 0x0D: byte(UInt8(ascii: "r"))
            case 0x09: byte(UInt8(ascii: "t"))
            default:
                text("u00")
                let digits = JSONSink.hexDigits.utf8Start
                byte(digits[Int(value >> 4)])
                byte(digits[Int(value & 0xF)])
            }
            index &+= 1
            runStart = index
        }
        bytes(UnsafeRawBufferPointer(rebasing: source[runStart..<count]))
        byte(0x22)
    }

    /// Whether `bytes` are valid UTF-8, without allocating: ASCII words are
    /// skipped eight bytes at a time.
    static func isValidUTF8(_ bytes: UnsafeRawBufferPointer) -> Bool {
        var index = 0
        let count = bytes.count
        while index &+ 8 <= count, bytes.loadUnaligned(fromByteOffset: index, as: UInt64.self) & 0x8080_8080_8080_8080 == 0 {
            index &+= 8
        }
        while index < count && bytes[index] < 0x80 { index &+= 1 }
        // By hand: the standard library's decoder was a fifth of a dump of non-ASCII strings.
        // The rules are Unicode's (no overlong forms, no surrogates, nothing past U+10FFFF).
        @inline(__always) func continuation(_ at: Int) -> Bool { at < count && bytes[at] & 0xC0 == 0x80 }
        while index < count {
            let lead = bytes[index]
            if lead < 0x80 {
                index &+= 1
            } else if lead < 0xC2 {
                return false
            } else if lead < 0xE0 {
                guard continuation(index + 1) else { return false }
                index &+= 2
            } else if lead < 0xF0 {
                guard continuation(index + 1), continuation(index + 2) else { return false }
                let second = bytes[index + 1]
                if (lead == 0xE0 && second < 0xA0) || (lead == 0xED && second > 0x9F) { return false }
                index &+= 3
            } else if lead < 0xF5 {
                guard continuation(index + 1), continuation(index + 2), continuation(index + 3) else { return false }
                let second = bytes[index + 1]
                if (lead == 0xF0 && second < 0x90) || (lead == 0xF4 && second > 0x8F) { return false }
                index &+= 4
            } else {
                return false
            }
        }
        return true
    }

    private static let base64Alphabet: StaticString = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"

    /// `{"base64" : "…"}` at `level`, as Foundation encodes `["base64": Data(…).base64EncodedString()]`.
    func base64Object(_ source: UnsafeRawBufferPointer, level: Int) {
        byte(UInt8(ascii: "{"))
        newline(level + 1)
        member("base64")
        byte(0x22)
        let alphabet = JSONSink.base64Alphabet.utf8Start
        var index = 0
        let count = source.count
        while index &+ 3 <= count {
            let word = UInt32(source[index]) << 16 | UInt32(source[index + 1]) << 8 | UInt32(source[index + 2])
            byte(alphabet[Int(word >> 18)])
            byte(alphabet[Int((word >> 12) & 63)])
            byte(alphabet[Int((word >> 6) & 63)])
            byte(alphabet[Int(word & 63)])
            index &+= 3
        }
        if count - index == 1 {
            let word = UInt32(source[index]) << 16
            byte(alphabet[Int(word >> 18)])
            byte(alphabet[Int((word >> 12) & 63)])
            text("==")
        } else if count - index == 2 {
            let word = UInt32(source[index]) << 16 | UInt32(source[index + 1]) << 8
            byte(alphabet[Int(word >> 18)])
            byte(alphabet[Int((word >> 12) & 63)])
            byte(alphabet[Int((word >> 6) & 63)])
            byte(UInt8(ascii: "="))
        }
        byte(0x22)
        newline(level)
        byte(UInt8(ascii: "}"))
    }

    /// Any value, with nested lines at `level + 1` and its closing bracket at `level`.
    func value(_ value: FieldValue, level: Int) {
        switch value {
        case .int(let number): int(number)
        case .uint(let number): uint(number)
        case .double(let number): double(number)
        case .bool(let flag): bool(flag)
        case .string(let text): string(text)
        case .bytes(let data): data.withUnsafeBytes { base64Object($0, level: level) }
        case .array(let items):
            byte(UInt8(ascii: "["))
            for (index, item) in items.enumerated() {
                if index > 0 { byte(UInt8(ascii: ",")) }
                newline(level + 1)
                self.value(item, level: level + 1)
            }
            if items.isEmpty { newline(0) }
            newline(level)
            byte(UInt8(ascii: "]"))
        case .map(let entries):
            byte(UInt8(ascii: "["))
            for (index, entry) in entries.enumerated() {
                if index > 0 { byte(UInt8(ascii: ",")) }
                newline(level + 1)
                mapEntryOpen(level: level + 1)
                self.value(entry.key, level: level + 2)
                mapEntryMiddle(level: level + 1)
                self.value(entry.value, level: level + 2)
                mapEntryClose(level: level + 1)
            }
            if entries.isEmpty { newline(0) }
            newline(level)
            byte(UInt8(ascii: "]"))
        }
    }

    /// `{`, then the `"key" : ` line of a map entry whose braces are at `level`.
    @inline(__always)
    func mapEntryOpen(level: Int) {
        byte(UInt8(ascii: "{"))
        newline(level + 1)
        text("\"key\" : ")
    }

    /// `,` and the `"value" : ` line.
    @inline(__always)
    func mapEntryMiddle(level: Int) {
        byte(UInt8(ascii: ","))
        newline(level + 1)
        text("\"value\" : ")
    }

    @inline(__always)
    func mapEntryClose(level: Int) {
        newline(level)
        byte(UInt8(ascii: "}"))
    }
}
