import Glibc

/// JSON tokens and values read from a ``JSONSource``, with the rules the
/// dump loader has always had (it used Foundation's decoder): any
/// whitespace, members in any order, the first of two same-named members
/// wins, one trailing comma before `]` or `}` is allowed, strings must be
/// valid UTF-8 with no raw control characters and no lone surrogates, and a
/// value decodes as ``FieldValue`` does (see ``fieldValue()``).
final class JSONValueReader {
    let source: JSONSource
    /// Reused for strings that are read and dropped (member names, skipped values).
    var scratch: [UInt8] = []

    init(source: JSONSource) {
        self.source = source
        scratch.reserveCapacity(256)
    }

    // MARK: Strings

    /// Reads a string (the position at its opening quote, after whitespace)
    /// into `into`, emptied first: unescaped UTF-8 bytes.
    func string(into bytes: inout [UInt8]) throws(DumpReadError) {
        bytes.removeAll(keepingCapacity: true)
        let start = source.location
        guard try source.peek() == 0x22, !source.atEnd else {
            throw source.error("expected a string, found \(source.describeNext())")
        }
        source.advance()
        var ascii = true
        while true {
            let chunk = try source.available()
            guard chunk.count > 0 else { throw source.error("the string that starts at column \(start.column) is not closed before the end of the file") }
            var index = 0
            var bits: UInt8 = 0
            while index < chunk.count {
                let byte = chunk[index]
                if byte == 0x22 || byte == 0x5C || byte < 0x20 { break }
                bits |= byte
                index &+= 1
            }
            if bits & 0x80 != 0 { ascii = false }
            if index > 0 { bytes.append(contentsOf: UnsafeBufferPointer(rebasing: chunk[0..<index])) }
            source.advance(by: index)
            guard index < chunk.count else { continue }
            let byte = chunk[index]
            if byte == 0x22 {
                source.advance()
                break
            }
            if byte < 0x20 {
                throw source.error("a string holds a raw control character (byte 0x\(String(byte, radix: 16))); JSON needs it escaped, as \\n or \\u00\(byte < 16 ? "0" : "")\(String(byte, radix: 16))")
            }
            try escape(into: &bytes)
        }
        if !ascii {
            let valid = bytes.withUnsafeBytes { JSONSink.isValidUTF8($0) }
            guard valid else { throw source.error("the string that starts here is not valid UTF-8", at: start) }
        }
    }

    /// One escape sequence, the position at its backslash.
    private func escape(into bytes: inout [UInt8]) throws(DumpReadError) {
        let start = source.location
        source.advance()
        let kind = try source.peek()
        source.advance()
        switch kind {
        case UInt8(ascii: "\""): bytes.append(0x22)
        case UInt8(ascii: "\\"): bytes.append(0x5C)
        case UInt8(ascii: "/"): bytes.append(0x2F)
        case UInt8(ascii: "b"): bytes.append(0x08)
        case UInt8(ascii: "f"): bytes.append(0x0C)
        case UInt8(ascii: "n"): bytes.append(0x0A)
        case UInt8(ascii: "r"): bytes.append(0x0D)
        case UInt8(ascii: "t"): bytes.append(0x09)
        case UInt8(ascii: "u"):
            var scalar = try hex4(start)
            if scalar >= 0xD800 && scalar < 0xDC00 {
                // A high surrogate needs its low half right after it.
                guard try source.peek() == UInt8(ascii: "\\") else { throw loneSurrogate(start) }
                source.advance()
                guard try source.peek() == UInt8(ascii: "u") else { throw loneSurrogate(start) }
                source.advance()
                let low = try hex4(start)
                guard low >= 0xDC00 && low < 0xE000 else { throw loneSurrogate(start) }
                scalar = 0x10000 + ((scalar - 0xD800) << 10) + (low - 0xDC00)
            } else if scalar >= 0xDC00 && scalar < 0xE000 {
                throw loneSurrogate(start)
            }
            guard let value = Unicode.Scalar(scalar) else { throw loneSurrogate(start) }
            bytes.append(contentsOf: UTF8.encode(value)!)
        default:
            throw source.error("unknown escape \\\(source.atEnd ? "" : String(Unicode.Scalar(kind))) in a string; JSON has \\\" \\\\ \\/ \\b \\f \\n \\r \\t and \\uXXXX", at: start)
        }
    }

    private func loneSurrogate(_ start: JSONSource.Location) -> DumpReadError {
        source.error("a \\u escape names half of a UTF-16 surrogate pair without the other half", at: start)
    }

    private func hex4(_ start: JSONSource.Location) throws(DumpReadError) -> UInt32 {
        var value: UInt32 = 0
        for _ in 0..<4 {
            let byte = try source.peek()
            let digit: UInt8
            switch byte {
            case UInt8(ascii: "0")...UInt8(ascii: "9"): digit = byte - UInt8(ascii: "0")
            case UInt8(ascii: "a")...UInt8(ascii: "f"): digit = byte - UInt8(ascii: "a") + 10
            case UInt8(ascii: "A")...UInt8(ascii: "F"): digit = byte - UInt8(ascii: "A") + 10
            default: throw source.error("expected four hexadecimal digits after \\u", at: start)
            }
            value = value << 4 | UInt32(digit)
            source.advance()
        }
        return value
    }

    /// Reads a member name and its colon (the position at the name's quote, after whitespace).
    func memberName() throws(DumpReadError) -> [UInt8] {
        var name: [UInt8] = []
        try string(into: &name)
        try source.expect(UInt8(ascii: ":"), "':' after the member name \"\(String(decoding: name, as: UTF8.self))\"")
        return name
    }

    /// A map entry's member name.
    enum MemberKind { case key, value, expiresAt, other }

    /// Reads a member name and its colon, telling "key", "value" and a cache
    /// map entry's "expiresAt" apart without keeping the name.
    func memberKind() throws(DumpReadError) -> MemberKind {
        try string(into: &scratch)
        let kind: MemberKind = scratch.withUnsafeBytes { name in
            if name.count == 3 && name[0] == 0x6B && name[1] == 0x65 && name[2] == 0x79 { return .key }  // key
            if name.count == 5 && name[0] == 0x76 && name[1] == 0x61 && name[2] == 0x6C && name[3] == 0x75 && name[4] == 0x65 { return .value }
            if name.count == 9 && name.elementsEqual("expiresAt".utf8) { return .expiresAt }
            return .other
        }
        try source.expect(UInt8(ascii: ":"), "':' after the member name \"\(String(decoding: scratch, as: UTF8.self))\"")
        return kind
    }

    // MARK: Containers

    /// After an element or member: true at `,` (consumed), false at the
    /// closing `close` (consumed, also after one trailing comma).
    func next(_ close: UInt8, in what: @autoclosure () -> String) throws(DumpReadError) -> Bool {
        try source.skipWhitespace()
        let byte = try source.peek()
        if byte == UInt8(ascii: ","), !source.atEnd {
            source.advance()
            try source.skipWhitespace()
            if try source.peek() == close, !source.atEnd {
                source.advance()
                return false
            }
            return true
        }
        if byte == close, !source.atEnd {
            source.advance()
            return false
        }
        throw source.error("expected ',' or '\(Character(Unicode.Scalar(close)))' in \(what()), found \(source.describeNext())")
    }

    /// After the opening bracket: true when the container is empty (its close consumed).
    func isEmpty(_ close: UInt8) throws(DumpReadError) -> Bool {
        try source.skipWhitespace()
        if try source.peek() == close, !source.atEnd {
            source.advance()
            return true
        }
        return false
    }

    /// Reads and drops any JSON value, checking its syntax.
    func skipValue() throws(DumpReadError) {
        try source.skipWhitespace()
        switch try source.peek() {
        case UInt8(ascii: "\""):
            try string(into: &scratch)
        case UInt8(ascii: "{"):
            source.advance()
            guard try !isEmpty(UInt8(ascii: "}")) else { return }
            repeat {
                try source.skipWhitespace()
                _ = try memberName()
                try skipValue()
            } while try next(UInt8(ascii: "}"), in: "an object")
        case UInt8(ascii: "["):
            source.advance()
            guard try !isEmpty(UInt8(ascii: "]")) else { return }
            repeat { try skipValue() } while try next(UInt8(ascii: "]"), in: "an array")
        case UInt8(ascii: "t"), UInt8(ascii: "f"), UInt8(ascii: "n"):
            _ = try literal()
        default:
            _ = try number()
        }
    }

    /// `true`, `false` or `null` (nil).
    func literal() throws(DumpReadError) -> Bool? {
        let start = source.location
        var word: [UInt8] = []
        while word.count < 5 {
            let byte = try source.peek()
            guard byte >= UInt8(ascii: "a") && byte <= UInt8(ascii: "z"), !source.atEnd else { break }
            word.append(byte)
            source.advance()
        }
        switch word {
        case Array("true".utf8): return true
        case Array("false".utf8): return false
        case Array("null".utf8): return nil
        default: throw source.error("expected a value, found \"\(String(decoding: word, as: UTF8.self))\"", at: start)
        }
    }

    // MARK: Numbers

    /// A JSON number as ``FieldValue`` decodes one: integer syntax within
    /// Int64 is `.int`, then within UInt64 `.uint`; anything else is read as
    /// the nearest double, which is `.int`/`.uint` when it is a whole number in
    /// range and `.double` otherwise. Out of the double range is an error.
    func number() throws(DumpReadError) -> FieldValue {
        let start = source.location
        let chunk = try source.available()
        var length = 0
        while length < chunk.count && JSONValueReader.isNumberByte(chunk[length]) { length &+= 1 }
        if _fastPath(length < chunk.count) {
            // The whole token is in the buffer: parse it in place.
            let value = try JSONValueReader.number(UnsafeBufferPointer(rebasing: chunk[0..<length]), source: source, at: start)
            source.advance(by: length)
            return value
        }
        // The token runs past the buffer: gather it.
        var token: [UInt8] = []
        while true {
            let byte = try source.peek()
            guard !source.atEnd, JSONValueReader.isNumberByte(byte) else { break }
            token.append(byte)
            source.advance()
        }
        return try token.withUnsafeBufferPointer { text throws(DumpReadError) in try JSONValueReader.number(text, source: source, at: start) }
    }

    @inline(__always)
    static func isNumberByte(_ byte: UInt8) -> Bool {
        (byte >= 0x30 && byte <= 0x39) || byte == 0x2D || byte == 0x2B || byte == 0x2E || byte == 0x45 || byte == 0x65
    }

    /// Checks a number token against JSON's grammar and converts it.
    static func number(_ text: UnsafeBufferPointer<UInt8>, source: JSONSource, at start: JSONSource.Location) throws(DumpReadError) -> FieldValue {
        let count = text.count
        var index = 0
        let negative = count > 0 && text[0] == 0x2D
        if negative { index = 1 }
        var magnitude: UInt64 = 0
        var overflow = false
        let wholeStart = index
        while index < count, text[index] >= 0x30 && text[index] <= 0x39 {
            let (times, o1) = magnitude.multipliedReportingOverflow(by: 10)
            let (sum, o2) = times.addingReportingOverflow(UInt64(text[index] &- 0x30))
            magnitude = sum
            overflow = overflow || o1 || o2
            index &+= 1
        }
        let shown = { String(decoding: text, as: UTF8.self) }
        guard index > wholeStart else {
            if count == 0 { throw source.error("expected a value, found \(source.describeNext())", at: start) }
            throw source.error(negative ? "expected digits after '-' in \(shown())" : "expected a value, found \(shown())", at: start)
        }
        guard !(text[wholeStart] == 0x30 && index - wholeStart > 1) else {
            throw source.error("a number may not start with 0 unless it is 0 (found \(shown()))", at: start)
        }
        var integer = true
        if index < count && text[index] == 0x2E {
            integer = false
            index &+= 1
            let fraction = index
            while index < count, text[index] >= 0x30 && text[index] <= 0x39 { index &+= 1 }
            guard index > fraction else { throw source.error("expected digits after the decimal point in \(shown())", at: start) }
        }
        if index < count && (text[index] == 0x65 || text[index] == 0x45) {
            integer = false
            index &+= 1
            if index < count && (text[index] == 0x2B || text[index] == 0x2D) { index &+= 1 }
            let digits = index
            while index < count, text[index] >= 0x30 && text[index] <= 0x39 { index &+= 1 }
            guard index > digits else { throw source.error("expected digits in the exponent of \(shown())", at: start) }
        }
        guard index == count else { throw source.error("\(shown()) is not a number", at: start) }
        if integer && !overflow {
            if !negative && magnitude <= UInt64(Int64.max) { return .int(Int64(magnitude)) }
            if negative && magnitude <= UInt64(Int64.max) + 1 { return .int(magnitude == UInt64(Int64.max) + 1 ? .min : -Int64(magnitude)) }
            if !negative { return .uint(magnitude) }
        }
        var terminated = Array(text)
        terminated.append(0)
        let value = terminated.withUnsafeBufferPointer { bytes in
            bytes.withMemoryRebound(to: CChar.self) { strtod($0.baseAddress!, nil) }
        }
        guard value.isFinite else {
            throw source.error("the number \(shown()) is outside the range of a double", at: start)
        }
        if let exact = Int64(exactly: value) { return .int(exact) }
        if let exact = UInt64(exactly: value) { return .uint(exact) }
        return .double(value)
    }

    // MARK: Values

    /// A value as ``FieldValue`` decodes one: true/false, a number, a string
    /// ("nan", "inf", "-inf" and "-0" are doubles), an array (of values, or of
    /// map entries `{"key": …, "value": …}`), or `{"base64": "…"}`.
    func fieldValue() throws(DumpReadError) -> FieldValue {
        try source.skipWhitespace()
        let start = source.location
        switch try source.peek() {
        case UInt8(ascii: "\""):
            var bytes: [UInt8] = []
            try string(into: &bytes)
            return JSONValueReader.textValue(bytes)
        case UInt8(ascii: "["):
            source.advance()
            guard try !isEmpty(UInt8(ascii: "]")) else { return .array([]) }
            var values: [FieldValue] = []
            var entries: [FieldValue.MapEntry] = []
            repeat {
                try source.skipWhitespace()
                let elementStart = source.location
                let element = try element()
                switch element {
                case .value(let value): values.append(value)
                case .entry(let entry): entries.append(entry)
                }
                if !values.isEmpty && !entries.isEmpty {
                    throw source.error("an array mixes map entries {\"key\": …, \"value\": …} with other values", at: elementStart)
                }
            } while try next(UInt8(ascii: "]"), in: "an array")
            return entries.isEmpty ? .array(values) : .map(entries)
        case UInt8(ascii: "{"):
            guard case .value(let value) = try element() else {
                throw source.error("a map entry {\"key\": …, \"value\": …} stands alone; map entries go in an array", at: start)
            }
            return value
        case UInt8(ascii: "t"), UInt8(ascii: "f"), UInt8(ascii: "n"):
            guard let flag = try literal() else {
                throw source.error("expected a number, true/false, a string, an array or {\"base64\": …}, found null", at: start)
            }
            return .bool(flag)
        default:
            return try number()
        }
    }

    /// The value of a JSON string: the special doubles, or text.
    static func textValue(_ bytes: [UInt8]) -> FieldValue {
        switch bytes.count {
        case 2 where bytes == Array("-0".utf8): .double(-0.0)
        case 3 where bytes == Array("nan".utf8): .double(.nan)
        case 3 where bytes == Array("inf".utf8): .double(.infinity)
        case 4 where bytes == Array("-inf".utf8): .double(-.infinity)
        default: .string(String(decoding: bytes, as: UTF8.self))
        }
    }

    enum Element {
        case value(FieldValue)
        case entry(FieldValue.MapEntry)
    }

    /// An array element: a value, or an object that is either `{"base64": …}`
    /// or a map entry (its other members ignored, as before).
    private func element() throws(DumpReadError) -> Element {
        try source.skipWhitespace()
        guard try source.peek() == UInt8(ascii: "{") else { return .value(try fieldValue()) }
        let start = source.location
        source.advance()
        var names = Set<[UInt8]>()
        var key: FieldValue?
        var value: FieldValue?
        var base64: [UInt8]?
        var onlyBase64 = true
        if try !isEmpty(UInt8(ascii: "}")) {
            repeat {
                try source.skipWhitespace()
                let name = try memberName()
                let first = names.insert(name).inserted
                try source.skipWhitespace()
                if name == Array("base64".utf8) {
                    if try source.peek() == UInt8(ascii: "\"") {
                        var text: [UInt8] = []
                        try string(into: &text)
                        if first { base64 = text }
                    } else {
                        onlyBase64 = false
                        try skipValue()
                    }
                    continue
                }
                onlyBase64 = false
                if name == Array("key".utf8) && first { key = try fieldValue() }
                else if name == Array("value".utf8) && first { value = try fieldValue() }
                else { try skipValue() }
            } while try next(UInt8(ascii: "}"), in: "an object")
        }
        if onlyBase64, let base64 {
            guard let bytes = JSONValueReader.base64Decoded(base64) else {
                throw source.error("the \"base64\" text is not valid base64 (standard alphabet, padded with '=' to a multiple of 4, no spaces)", at: start)
            }
            return .value(.bytes(bytes))
        }
        if let key, let value { return .entry(.init(key: key, value: value)) }
        throw source.error("expected {\"base64\": \"…\"} or a map entry {\"key\": …, \"value\": …}, found an object with "
                           + (names.isEmpty ? "no members" : "the members " + names.map { "\"\(String(decoding: $0, as: UTF8.self))\"" }.sorted().joined(separator: ", ")),
                           at: start)
    }

    /// Strict base64, as Foundation's `Data(base64Encoded:)` reads it: the
    /// standard alphabet, length a multiple of 4, `=` padding only at the end.
    static func base64Decoded(_ text: [UInt8]) -> [UInt8]? {
        guard text.count % 4 == 0 else { return nil }
        var result: [UInt8] = []
        result.reserveCapacity(text.count / 4 * 3)
        func sextet(_ byte: UInt8) -> UInt32? {
            switch byte {
            case UInt8(ascii: "A")...UInt8(ascii: "Z"): UInt32(byte - UInt8(ascii: "A"))
            case UInt8(ascii: "a")...UInt8(ascii: "z"): UInt32(byte - UInt8(ascii: "a") + 26)
            case UInt8(ascii: "0")...UInt8(ascii: "9"): UInt32(byte - UInt8(ascii: "0") + 52)
            case UInt8(ascii: "+"): 62
            case UInt8(ascii: "/"): 63
            default: nil
            }
        }
        var index = 0
        while index < text.count {
            let last = index + 4 == text.count
            let padding = last ? (text[index + 3] == UInt8(ascii: "=") ? (text[index + 2] == UInt8(ascii: "=") ? 2 : 1) : 0) : 0
            var word: UInt32 = 0
            for offset in 0..<(4 - padding) {
                guard let value = sextet(text[index + offset]) else { return nil }
                word = word << 6 | value
            }
            word <<= 6 * UInt32(padding)
            result.append(UInt8(truncatingIfNeeded: word >> 16))
            if padding < 2 { result.append(UInt8(truncatingIfNeeded: word >> 8)) }
            if padding < 1 { result.append(UInt8(truncatingIfNeeded: word)) }
            index += 4
        }
        return result
    }
}
