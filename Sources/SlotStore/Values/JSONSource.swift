import Glibc

/// A problem with a dump file: its path, the line and column (in bytes, from
/// 1) where it was found, and a sentence saying what was expected, what was
/// found and, for a value, which store and field refused it.
@_spi(Tools)
public struct DumpReadError: Error, CustomStringConvertible, Sendable {
    /// The dump's path.
    public let path: String
    /// Where in the dump, when known.
    public let line: Int?
    /// The byte column on that line, from 1.
    public let column: Int?
    /// What is wrong and what to do.
    public let message: String

    /// `PATH: line L, column C: MESSAGE`.
    public var description: String {
        if let line, let column { return "\(path): line \(line), column \(column): \(message)" }
        return "\(path): \(message)"
    }
}

/// Bytes of a JSON text read through a 1 MiB buffer, from a descriptor
/// (never the whole file in memory) or from bytes already in memory, with
/// the line and column of every position for errors.
///
/// Newlines can only appear in JSON's whitespace, so lines are counted by
/// ``skipWhitespace()`` alone. At the end of the input ``peek()`` returns 0,
/// a byte no valid token starts with.
final class JSONSource {
    static let bufferBytes = 1 << 20

    let path: String
    private let fd: Int32
    private let buffer: UnsafeMutablePointer<UInt8>
    private let capacity: Int
    /// The input's offset of `buffer[0]`.
    private var bufferOrigin = 0
    private(set) var position = 0
    private var end = 0
    private(set) var atEnd = false
    /// Where reading started, and whether that can be returned to with pread.
    let seekable: Bool
    private var line = 1
    /// The input offset of the current line's first byte.
    private var lineStart = 0
    /// When set, every byte consumed is also appended here (a member kept for later).
    private var recording: [UInt8]?
    private var recordedUpTo = 0
    /// Called with the input offset whenever the buffer is refilled.
    var onRefill: ((Int) -> Void)?
    private var failure: DumpReadError?

    /// Reads `fd` from its current offset; `seekable` when pread works on it.
    init(fd: Int32, path: String) {
        self.fd = fd
        self.path = path
        capacity = JSONSource.bufferBytes
        buffer = .allocate(capacity: capacity)
        seekable = lseek(fd, 0, SEEK_CUR) >= 0
    }

    /// Reads `bytes` (a member kept from a stream that cannot be re-read),
    /// reporting positions as from `origin` at `line`/`lineStart`.
    init(bytes: [UInt8], path: String, origin: (offset: Int, line: Int, lineStart: Int)) {
        fd = -1
        self.path = path
        capacity = max(bytes.count, 1)
        let storage = UnsafeMutablePointer<UInt8>.allocate(capacity: capacity)
        bytes.withUnsafeBufferPointer { if let base = $0.baseAddress { storage.update(from: base, count: bytes.count) } }
        buffer = storage
        end = bytes.count
        bufferOrigin = origin.offset
        line = origin.line
        lineStart = origin.lineStart
        seekable = false
    }

    deinit { buffer.deallocate() }

    /// The input offset of the next byte.
    var offset: Int { bufferOrigin + position }

    /// A mark to come back to with ``rewind(to:)`` (seekable descriptors only).
    struct Mark {
        let offset: Int
        let line: Int
        let lineStart: Int
    }

    var mark: Mark { Mark(offset: offset, line: line, lineStart: lineStart) }

    /// Continues reading at `mark`.
    func rewind(to mark: Mark) {
        bufferOrigin = mark.offset
        position = 0
        end = 0
        atEnd = false
        line = mark.line
        lineStart = mark.lineStart
    }

    // MARK: Bytes

    @inline(__always)
    func peek() throws(DumpReadError) -> UInt8 {
        if _slowPath(position == end) {
            try refill()
            if atEnd { return 0 }
        }
        return buffer[position]
    }

    @inline(__always)
    func advance() { position &+= 1 }

    /// The bytes from the position up to the end of the buffer (refilled when empty); empty at the end.
    @inline(__always)
    func available() throws(DumpReadError) -> UnsafeBufferPointer<UInt8> {
        if _slowPath(position == end) { try refill() }
        return UnsafeBufferPointer(start: buffer + position, count: end - position)
    }

    func advance(by count: Int) { position &+= count }

    private func refill() throws(DumpReadError) {
        if let failure { throw failure }
        guard !atEnd else { return }
        flushRecording()
        bufferOrigin += end
        position = 0
        end = 0
        recordedUpTo = 0
        guard fd >= 0 else {
            atEnd = true
            return
        }
        while true {
            let n = seekable ? pread(fd, buffer, capacity, off_t(bufferOrigin)) : read(fd, buffer, capacity)
            if n < 0 {
                if errno == EINTR { continue }
                failure = DumpReadError(path: path, line: nil, column: nil,
                                        message: "cannot read the dump: \(String(cString: strerror(errno)))")
                throw failure!
            }
            end = n
            if n == 0 { atEnd = true }
            break
        }
        onRefill?(bufferOrigin)
    }

    // MARK: Recording

    func startRecording() {
        recording = []
        recordedUpTo = position
    }

    func stopRecording() -> [UInt8] {
        flushRecording()
        defer { recording = nil }
        return recording ?? []
    }

    private func flushRecording() {
        guard recording != nil else { return }
        if position > recordedUpTo {
            recording!.append(contentsOf: UnsafeBufferPointer(start: buffer + recordedUpTo, count: position - recordedUpTo))
        }
        recordedUpTo = position
    }

    // MARK: Whitespace and errors

    /// Skips spaces, tabs, carriage returns and newlines, counting lines.
    @inline(__always)
    func skipWhitespace() throws(DumpReadError) {
        while true {
            if _slowPath(position == end) {
                try refill()
                if atEnd { return }
            }
            let byte = buffer[position]
            if byte == 0x20 || byte == 0x09 || byte == 0x0D {
                position &+= 1
            } else if byte == 0x0A {
                position &+= 1
                line &+= 1
                lineStart = bufferOrigin + position
            } else {
                return
            }
        }
    }

    /// A place in the input, for errors about what starts there.
    struct Location {
        let line: Int
        let column: Int
    }

    /// The line and column of the position.
    var location: Location { Location(line: line, column: offset - lineStart + 1) }

    func error(_ message: String, at place: Location? = nil) -> DumpReadError {
        let place = place ?? location
        return DumpReadError(path: path, line: place.line, column: place.column, message: message)
    }

    /// What is at the position, for "found …" in errors: the kind of value
    /// that starts there, or the word or character itself.
    func describeNext() -> String {
        guard let byte = try? peek(), !atEnd else { return "the end of the file" }
        switch byte {
        case UInt8(ascii: "\""): return "a string"
        case UInt8(ascii: "{"): return "an object"
        case UInt8(ascii: "["): return "an array"
        case UInt8(ascii: "-"), UInt8(ascii: "0")...UInt8(ascii: "9"): return "a number"
        case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"):
            var word = ""
            var index = position
            while index < end && word.count < 24, (buffer[index] | 0x20) >= UInt8(ascii: "a") && (buffer[index] | 0x20) <= UInt8(ascii: "z") {
                word.append(Character(Unicode.Scalar(buffer[index])))
                index += 1
            }
            return "'\(word)'"
        case 0x21...0x7E: return "'\(Character(Unicode.Scalar(byte)))'"
        default: return "byte 0x\(String(byte, radix: 16))"
        }
    }

    /// Consumes `byte` after whitespace, or throws naming what was expected instead.
    @inline(__always)
    func expect(_ byte: UInt8, _ what: @autoclosure () -> String) throws(DumpReadError) {
        try skipWhitespace()
        guard try peek() == byte, !atEnd else { throw error("expected \(what()), found \(describeNext())") }
        position &+= 1
    }
}
