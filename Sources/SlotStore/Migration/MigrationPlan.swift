/// What a migration may do beyond the safe changes.
///
/// Always allowed: adding a field (it starts zero or empty), widening an
/// integer or floating-point type (`int32` to `int64`, `uint16` to `int32`,
/// `float` to `double`, an integer of up to 32 bits to `double`), and growing a
/// string, bytes, array count or map capacity. Anything else needs its flag,
/// and even then a value that does not fit its new type is an error: a
/// migration never truncates or wraps.
public struct MigrationOptions: Sendable, Hashable {
    /// Allow smaller integer or floating-point types, capacities, counts.
    public var allowNarrowing: Bool
    /// Allow changing a field's kind (for example `int64` to `string`) where values convert.
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
}

struct MigrationRefusal: Error {
    let reason: String
    init(_ reason: String) { self.reason = reason }
}

enum MigrationRules {
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
