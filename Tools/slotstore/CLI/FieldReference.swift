@_spi(Tools) import SlotStore

/// `NAME`, `NAME[INDEX]` or `NAME[KEY]` on the command line, as typed.
///
/// Everything between the first `[` and the final `]` is the subscript, so a
/// map key may itself hold brackets (`hits[a[1]]` is the key `a[1]`). Whether
/// it is an array index or a map key, and how a key is read, depends on the
/// field's stored type: ``resolve(in:path:key:)`` decides once the store is open.
/// Field names never hold `[` (the schema allows letters, digits, `_`, `-`, `.`).
struct FieldReference {
    let name: String
    /// The text between the brackets, or nil for a whole field.
    let subscriptText: String?

    static let synopsis = "FIELD, FIELD[INDEX] or MAP[KEY]"

    init(_ text: String) throws(UsageError) {
        guard let open = text.firstIndex(of: "[") else {
            name = text
            subscriptText = nil
            return
        }
        guard text.hasSuffix("]"), open != text.startIndex else {
            throw UsageError("expected \(FieldReference.synopsis), found \"\(text)\" (a subscript ends with the argument's last character, \"]\")")
        }
        name = String(text[..<open])
        subscriptText = String(text[text.index(after: open)..<text.index(before: text.endIndex)])
    }

    /// What the reference means in the store's schema: the whole field, one
    /// array element, or one map entry with its key parsed by the map's key
    /// type. `key` is `--key K`, the key as one whole argument instead of in brackets.
    func resolve(in schema: Schema, path: String, key keyOption: String?) throws -> FieldTarget {
        guard let field = schema.field(named: name) else {
            throw SlotStoreError.unknownField(path: path, name: name, available: schema.fields.map(\.name))
        }
        switch field.type {
        case .map(let keyType, _, _):
            if keyOption != nil && subscriptText != nil {
                throw UsageError("give the key either in brackets (\(name)[KEY]) or with --key, not both")
            }
            guard let text = keyOption ?? subscriptText else { return .whole(name) }
            return .entry(name, key: try MapKeyArgument.parse(text, as: keyType, field: name, path: path))
        case .array(_, let count):
            if keyOption != nil {
                throw UsageError("--key applies to map fields, and \(name) is \(field.type); give an element's index as \(name)[INDEX]")
            }
            guard let text = subscriptText else { return .whole(name) }
            guard let index = Int(text), index >= 0 else {
                throw UsageError("expected FIELD or FIELD[INDEX] with a whole-number index from 0 to \(count - 1) for array \(name), found \"\(name)[\(text)]\"")
            }
            return .element(name, index: index)
        default:
            guard keyOption == nil && subscriptText == nil else {
                // One line, not the usage: the command was well formed, the field is of another kind.
                throw SlotStoreError.invalidValue(path: path, field: name,
                    detail: "an index needs an array field and a key a map field, and \(name) is \(field.type); give the field's name alone")
            }
            return .whole(name)
        }
    }
}

/// A ``FieldReference`` resolved against the stored schema.
enum FieldTarget {
    case whole(String)
    case element(String, index: Int)
    case entry(String, key: FieldValue)

    var name: String {
        switch self {
        case .whole(let name), .element(let name, _), .entry(let name, _): name
        }
    }

    /// As messages show it: `hits`, `latency[2]`, `hits["/a"]`, `owners[42]`, `blobs[0x0a0b]`.
    var description: String {
        switch self {
        case .whole(let name): name
        case .element(let name, let index): "\(name)[\(index)]"
        case .entry(let name, let key): "\(name)[\(key)]"
        }
    }

    /// The key as messages show it (`"/a"`, `42`, `0x0a0b`); "" for a whole field or an element.
    var keyDescription: String {
        if case .entry(_, let key) = self { return key.description }
        return ""
    }

    /// The `--json` report of get, set and add: `{"field": "hits", "key": "/a", "value": 3}`
    /// for an entry (the key in its JSON form), `{"field": "latency[2]", "value": 2.5}` otherwise.
    func report(_ value: FieldValue) -> FieldValueReport {
        if case .entry(let name, let key) = self { return FieldValueReport(field: name, key: key, value: value) }
        return FieldValueReport(field: description, key: nil, value: value)
    }
}

/// A map key typed on the command line, read by the map's key type:
/// string keys as the text itself, integer keys in decimal or `0x` hex
/// (`-5`, `0x1f`, `-0x1f`), bytes keys as `0x` and pairs of hex digits.
enum MapKeyArgument {
    static func parse(_ text: String, as keyType: FieldType, field: String, path: String) throws(MapKeyError) -> FieldValue {
        let refuse = { (expected: String, problem: String?, remedy: String) in
            MapKeyError(path: path, field: field, expected: expected, found: text, problem: problem, remedy: remedy)
        }
        let growKey = "use a shorter key, or give the map a larger key capacity (`slotstore compact \(path) --schema NEW.json`)"
        switch keyType {
        case .string(let capacity):
            let size = text.utf8.count
            guard size <= capacity else {
                throw refuse("string keys of at most \(capacity) bytes (\(keyType))", "\(size) bytes of UTF-8", growKey)
            }
            return .string(text)
        case .bytes(let capacity):
            guard let bytes = hexBytes(text) else {
                let expected = "bytes keys (\(keyType)) written as 0x and pairs of hex digits"
                if text.hasPrefix("0x") || text.hasPrefix("0X") {
                    throw refuse(expected, nil, "give two hex digits (0-9, a-f) per byte after the 0x")
                }
                let hex = "0x" + text.utf8.map { String($0, radix: 16).leftPadded(to: 2) }.joined()
                throw refuse(expected, nil, "write the key in hex (\(hex.count > 66 ? hex.prefix(64) + "…" : hex) is the UTF-8 of that text)")
            }
            guard bytes.count <= capacity else {
                throw refuse("bytes keys of at most \(capacity) bytes (\(keyType))", "\(bytes.count) bytes", growKey)
            }
            return .bytes(bytes)
        case .scalar(let scalar) where scalar.isInteger:
            let range = FieldValue.integerRange(of: scalar)
            let expected = "\(scalar.rawValue) keys, in decimal or 0x hex, from \(range.lowerBound) to \(range.upperBound)"
            guard let number = integer(text) else { throw refuse(expected, nil, "give the key as a whole number such as 42 or 0x2a") }
            guard range.contains(number) else { throw refuse(expected, "out of range", "give a key in that range") }
            return number < 0 ? .int(Int64(number)) : .uint(UInt64(number))
        default:
            // The schema allows only strings, bytes and integers as keys; a
            // file saying otherwise was refused when the store was opened.
            throw refuse("a key type of string, bytes or an integer, but the map's key type is \(keyType)", nil,
                         "check the store with `slotstore verify \(path)`")
        }
    }

    /// `0x` and pairs of hex digits (`0x` alone is the empty key).
    static func hexBytes(_ text: String) -> [UInt8]? {
        guard text.hasPrefix("0x") || text.hasPrefix("0X") else { return nil }
        let digits = Array(text.utf8.dropFirst(2))
        guard digits.count % 2 == 0 else { return nil }
        var bytes: [UInt8] = []
        bytes.reserveCapacity(digits.count / 2)
        for pair in stride(from: 0, to: digits.count, by: 2) {
            guard let high = hexDigit(digits[pair]), let low = hexDigit(digits[pair + 1]) else { return nil }
            bytes.append(high << 4 | low)
        }
        return bytes
    }

    static func hexDigit(_ byte: UInt8) -> UInt8? {
        switch byte {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): byte - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): byte - UInt8(ascii: "a") + 10
        case UInt8(ascii: "A")...UInt8(ascii: "F"): byte - UInt8(ascii: "A") + 10
        default: nil
        }
    }

    /// Decimal, or `0x` hex, with an optional sign; nil for anything else.
    static func integer(_ text: String) -> Int128? {
        var digits = Substring(text)
        var negative = false
        if let sign = digits.first, sign == "-" || sign == "+" {
            negative = sign == "-"
            digits = digits.dropFirst()
        }
        // Int128(_:radix:) would accept a second sign; only digits may follow.
        let radix = digits.hasPrefix("0x") || digits.hasPrefix("0X") ? 16 : 10
        if radix == 16 { digits = digits.dropFirst(2) }
        guard !digits.isEmpty, digits.count <= 40, digits.allSatisfy({ $0.isHexDigit && (radix == 16 || $0.isNumber) }),
              let magnitude = Int128(digits, radix: radix) else { return nil }
        return negative ? -magnitude : magnitude
    }
}

/// A map key on the command line that does not parse or does not fit: one
/// line naming the path, the map, what its keys are and what was found, and
/// what to do. Exit status 2, and nothing is read or changed.
struct MapKeyError: Error, CustomStringConvertible {
    let path: String
    let field: String
    let expected: String
    let found: String
    /// What is wrong with what was found, when its text alone doesn't say: "40 bytes of UTF-8".
    let problem: String?
    let remedy: String

    var description: String {
        // A key far over capacity is shown by its start: its size is in `problem`.
        let shown = found.count > 80 ? String(found.prefix(72)) + "…" : found
        return "\(path): bad key for map \"\(field)\": expected \(expected), found \(FieldValue.string(shown))"
            + (problem.map { " (\($0))" } ?? "") + "; \(remedy); nothing was read or changed"
    }
}

extension String {
    func leftPadded(to width: Int) -> String {
        count >= width ? self : String(repeating: "0", count: width - count) + self
    }
}
