/// What a migration may do beyond the safe changes.
///
/// Always allowed: adding a field (it starts zero or empty), widening an
/// integer or floating-point type (`int32` to `int64`, `uint16` to `int32`,
/// `float` to `double`, an integer of up to 32 bits to `double`), and growing a
/// string, bytes, array count or map capacity. Anything else needs its flag,
/// and even then a value that does not fit its new type exactly is an error:
/// a migration never rounds, truncates or wraps (`double` 0.1 does not narrow
/// to `float`; 0.5 does).
public struct MigrationOptions: Sendable, Hashable {
    /// Allow smaller integer or floating-point types, capacities, counts.
    public var allowNarrowing: Bool
    /// Allow changing a field's kind where every value converts: numbers and
    /// Booleans to and from strings (through their text), Booleans to and
    /// from the integers 0 and 1, bytes holding UTF-8 to strings.
    public var allowRetyping: Bool
    /// Allow removing fields and their values.
    public var allowDropping: Bool

    /// Creates options; every permission is off unless given.
    public init(allowNarrowing: Bool = false, allowRetyping: Bool = false, allowDropping: Bool = false) {
        self.allowNarrowing = allowNarrowing
        self.allowRetyping = allowRetyping
        self.allowDropping = allowDropping
    }
}

/// What compaction will do (or did): sizes, formats, and each field's fate.
public struct CompactionPlan: Sendable, Hashable, Codable {
    /// One field's fate.
    public struct FieldPlan: Sendable, Hashable, Codable {
        /// The field's name.
        public var name: String
        /// `copy`, `rehash` (a map rebuilt without tombstones), `widen`, `grow`,
        /// `narrow`, `retype`, `drop` or `new`.
        public var fate: String
        /// Its type in the source, absent for a new field.
        public var from: String?
        /// Its type in the result, absent for a dropped field.
        public var to: String?
    }

    /// The source store.
    public var path: String
    /// Where the result goes (the source path when compacting in place).
    public var output: String
    /// The source's size in bytes.
    public var bytesBefore: Int
    /// The result's size in bytes.
    public var bytesAfter: Int
    /// The source's format version.
    public var formatBefore: String
    /// The result's format version (always the current one).
    public var formatAfter: String
    /// The result's schema version.
    public var schemaVersion: Int
    /// Every field of the source and the result.
    public var fields: [FieldPlan]
    /// Whether this was only a plan.
    public var dryRun: Bool
    /// For a dry run in place: a sentence saying the compaction would be
    /// refused right now (with ``SlotStoreError/storeInUse(path:operation:)``)
    /// because other processes have the store open and the plan drops,
    /// retypes or shrinks fields they may hold handles to; nil when it would
    /// not be. Checked with the same test of the file's locks that the
    /// compaction makes, read-only: the dry run still changes nothing.
    public var refusedWhileInUse: String?
}

struct MigrationRefusal: Error {
    let reason: String
    init(_ reason: String) { self.reason = reason }
}

enum MigrationRules {
    /// `value` in the target type. Arrays grow with zeros and shrink only over
    /// zeros; a retyped value goes through its text (numbers and Booleans to
    /// and from strings) or 0/1 (Booleans and integers); and whatever the
    /// fate, the result must convert back to exactly the old value, so a
    /// migration never rounds, truncates or wraps.
    static func migrate(_ value: FieldValue, from old: FieldType, to new: FieldType, fate: String,
                        field: String, path: String) throws(SlotStoreError) -> FieldValue {
        func refuse(_ why: String) -> SlotStoreError { .migrationRefused(path: path, reasons: ["field \"\(field)\": \(why)"]) }
        var input = value
        if case .array(let values) = value, case .array(let element, let count) = new {
            if values.count < count {
                input = .array(values + Array(repeating: element.isFloatingPoint ? .double(0) : element == .bool ? .bool(false) : .int(0),
                                              count: count - values.count))
            } else if values.count > count {
                guard values[count...].allSatisfy({ $0 == .int(0) || $0 == .uint(0) || $0 == .double(0) || $0 == .bool(false) }) else {
                    throw refuse("shrinking the array from \(values.count) to \(counted(count, "element")) would drop non-zero values")
                }
                input = .array(Array(values[..<count]))
            }
        }
        let converted: FieldValue
        do {
            converted = fate == "retype" ? try retyped(input, to: new, field: field, path: path)
                : try input.converted(to: new, field: field, path: path)
        } catch {
            throw refuse(error.description)
        }
        if fate == "narrow" || fate == "widen" {
            // A grown array can't convert back to the old count; its elements
            // were checked one by one above.
            if let back = try? converted.converted(to: old, field: field, path: path), !same(back, input.trimmedLike(old)) {
                throw refuse("the value \(input) would change to \(converted) in \(new)")
            }
        }
        return converted
    }

    /// Retyping through text or 0/1.
    private static func retyped(_ value: FieldValue, to new: FieldType, field: String, path: String) throws(SlotStoreError) -> FieldValue {
        switch (value, new) {
        case (.string(let text), .scalar), (.string(let text), .array), (.string(let text), .map):
            return try FieldValue.parse(text, as: new, field: field, path: path)
        case (.bytes(let bytes), .string):
            guard let text = String(validating: bytes, as: UTF8.self) else {
                throw .invalidValue(path: path, field: field, detail: "the bytes are not valid UTF-8")
            }
            return try FieldValue.string(text).converted(to: new, field: field, path: path)
        case (.int, .string), (.uint, .string), (.double, .string), (.bool, .string):
            let text = if case .string(let quoted) = FieldValue.string(value.description) { quoted } else { value.description }
            return try FieldValue.string(text).converted(to: new, field: field, path: path)
        case (.bool(let flag), .scalar(let scalar)) where scalar.isInteger:
            return try FieldValue.int(flag ? 1 : 0).converted(to: new, field: field, path: path)
        case (.int(let number), .scalar(.bool)) where number == 0 || number == 1:
            return .bool(number == 1)
        case (.uint(let number), .scalar(.bool)) where number == 0 || number == 1:
            return .bool(number == 1)
        default:
            return try value.converted(to: new, field: field, path: path)
        }
    }

    /// Equal, with NaN equal to NaN.
    static func same(_ a: FieldValue, _ b: FieldValue) -> Bool {
        switch (a, b) {
        case (.double(let x), .double(let y)): return x == y || (x.isNaN && y.isNaN)
        case (.array(let xs), .array(let ys)): return xs.count == ys.count && zip(xs, ys).allSatisfy { same($0, $1) }
        case (.map(let xs), .map(let ys)):
            return xs.count == ys.count && zip(xs, ys).allSatisfy { same($0.key, $1.key) && same($0.value, $1.value) }
        default: return a == b
        }
    }

    /// The fate of a field whose type changes from `old` to `new`, or an error
    /// sentence when `options` forbid it.
    static func fate(of name: String, from old: FieldType, to new: FieldType, options: MigrationOptions) -> Result<String, MigrationRefusal> {
        if old == new { return .success(old.isMap ? "rehash" : "copy") }
        let change = classify(old, new)
        switch change {
        case "widen", "grow": return .success(change)
        case "narrow":
            return options.allowNarrowing ? .success(change)
                : .failure(MigrationRefusal("field \"\(name)\" would narrow from \(old) to \(new); pass the narrowing flag (--allow-narrowing) if every value fits"))
        default:
            return options.allowRetyping ? .success("retype")
                : .failure(MigrationRefusal("field \"\(name)\" would change type from \(old) to \(new); pass the retyping flag (--allow-retyping) if its values convert"))
        }
    }

    /// `widen`, `grow`, `narrow` or `retype`.
    static func classify(_ old: FieldType, _ new: FieldType) -> String {
        switch (old, new) {
        case (.scalar(let a), .scalar(let b)):
            return scalarChange(a, b)
        case (.array(let a, let countA), .array(let b, let countB)):
            let element = a == b ? "copy" : scalarChange(a, b)
            if element == "retype" { return "retype" }
            if element == "narrow" || countB < countA { return "narrow" }
            return countB > countA ? "grow" : "widen"
        case (.string(let a), .string(let b)), (.bytes(let a), .bytes(let b)):
            return b > a ? "grow" : "narrow"
        case (.map(let keyA, let valueA, let capA), .map(let keyB, let valueB, let capB)):
            let parts = [keyA == keyB ? "copy" : classify(keyA, keyB), valueA == valueB ? "copy" : classify(valueA, valueB),
                         capB == capA ? "copy" : capB > capA ? "grow" : "narrow"]
            if parts.contains("retype") { return "retype" }
            if parts.contains("narrow") { return "narrow" }
            if parts.contains("widen") { return "widen" }
            return "grow"
        default:
            return "retype"
        }
    }

    private static func scalarChange(_ a: ScalarType, _ b: ScalarType) -> String {
        if a == b { return "copy" }
        if a == .bool || b == .bool { return "retype" }
        switch (a.isFloatingPoint, b.isFloatingPoint) {
        case (true, true): return b.byteWidth > a.byteWidth ? "widen" : "narrow"
        case (false, true): return b == .double && a.byteWidth <= 4 ? "widen" : "narrow"
        case (true, false): return "retype"
        case (false, false):
            let oldRange = FieldValue.integerRange(of: a), newRange = FieldValue.integerRange(of: b)
            return newRange.lowerBound <= oldRange.lowerBound && newRange.upperBound >= oldRange.upperBound ? "widen" : "narrow"
        }
    }
}

extension FieldValue {
    /// For the round-trip check: an array padded for a larger count compares
    /// over the old count only.
    func trimmedLike(_ type: FieldType) -> FieldValue {
        if case .array(let values) = self, case .array(_, let count) = type, values.count > count {
            return .array(Array(values[..<count]))
        }
        return self
    }
}
