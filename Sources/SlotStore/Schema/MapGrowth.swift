/// How a map grows by itself: when an insert brings it to `threshold` of its
/// capacity, the map is rebuilt at twice the capacity (at most
/// `maxCapacity`), and every process using the store carries on in the new
/// file. ``SlotStoreError/mapFull(path:field:capacity:count:)`` is thrown
/// only at `maxCapacity`.
///
/// ```swift
/// let schema = Schema(version: 1, fields: [
///     .map("sessions", key: .string(capacity: 32), value: .scalar(.int64), capacity: 1_024,
///          growth: MapGrowth(maxCapacity: 4_000_000)),
/// ])
/// ```
///
/// Growing is a compaction in place of the store (see
/// ``SlotStore/compact(at:output:schema:capacities:migration:dryRun:allowOtherOwner:progress:)``),
/// run by the process whose insert crossed the threshold, right after that
/// insert's lock is released: locked writers wait for it, lock-free writers
/// pause only while the fields they write are copied a second time. Doubling
/// keeps the cost per insert constant: each entry is copied about twice over
/// the map's life.
///
/// An insert inside a ``SlotStore/transaction(_:)`` never grows the map in
/// the middle of the transaction: one that finds the map full throws
/// `mapFull`, the transaction rolls back, and the map doubles as its lock is
/// released; run the transaction again (a transaction inserting more entries
/// than the map's free room plus its capacity needs one more try per
/// doubling). A whole-map write by name (``SlotStore/setValue(_:for:)``,
/// `slotstore set`, `load` into an existing store) and
/// ``SlotStore/create(at:schema:values:options:)`` grow the map to what its
/// entries need first, at once.
public struct MapGrowth: Sendable, Hashable, Codable {
    /// The largest capacity the map may grow to.
    public var maxCapacity: Int
    /// The fraction of the capacity (from 0.5 to 1) at which an insert grows the map.
    public var threshold: Double

    /// A growth policy; `threshold` 0.9 grows a map when it is 90% full.
    public init(maxCapacity: Int, threshold: Double = 0.9) {
        self.maxCapacity = maxCapacity
        self.threshold = threshold
    }

    /// The capacity one growth gives a map of `capacity`: twice as much, at
    /// most ``maxCapacity``; `capacity` itself when it can't grow.
    func nextCapacity(after capacity: Int) -> Int {
        max(capacity, min(maxCapacity, capacity &* 2))
    }

    /// The entry count at which an insert into a map of `capacity` grows it;
    /// `Int.max` when it is at its largest.
    func growthCount(capacity: Int) -> Int {
        guard capacity < maxCapacity else { return Int.max }
        return max(1, min(capacity, Int((Double(capacity) * threshold).rounded(.up))))
    }

    /// The capacity a map of `capacity` reaches when `count` entries are
    /// inserted one by one: doubled at each growth count, up to the maximum.
    /// What a whole-map write (by name, `load`, `create(at:values:)`) gives it at once.
    func capacity(toHold count: Int, from capacity: Int) -> Int {
        var result = capacity
        while count >= growthCount(capacity: result) && result < maxCapacity { result = nextCapacity(after: result) }
        return result
    }

    private enum CodingKeys: String, CodingKey, CaseIterable { case maxCapacity, threshold }

    /// Decodes `{"maxCapacity": N, "threshold": T}`; the threshold may be left
    /// out (0.9). Any other key is an error: a misspelled or unsupported
    /// policy ("factor") must not be silently ignored.
    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        let known = Set(CodingKeys.allCases.map(\.stringValue))
        if let unknown = try decoder.container(keyedBy: AnyKey.self).allKeys.first(where: { !known.contains($0.stringValue) }) {
            throw DecodingError.dataCorruptedError(
                forKey: .maxCapacity, in: container,
                debugDescription: "unknown growth key \"\(unknown.stringValue)\"; a growth policy has \"maxCapacity\" and optionally \"threshold\" (maps double)")
        }
        self.init(maxCapacity: try container.decode(Int.self, forKey: .maxCapacity),
                  threshold: try container.decodeIfPresent(Double.self, forKey: .threshold) ?? 0.9)
    }

    private struct AnyKey: CodingKey {
        let stringValue: String
        var intValue: Int? { nil }
        init(stringValue: String) { self.stringValue = stringValue }
        init?(intValue: Int) { nil }
    }

    func validate(field: String, capacity: Int) throws(SlotStoreError) {
        guard threshold >= 0.5, threshold <= 1 else {
            throw .invalidSchema("map field \"\(field)\" has a growth threshold of \(threshold); it must be from 0.5 to 1 (the fraction of the capacity at which the map grows)")
        }
        guard maxCapacity >= capacity, maxCapacity <= Schema.maximumMapEntries else {
            throw .invalidSchema("map field \"\(field)\" may grow to \(maxCapacity) entries; that must be from its capacity (\(capacity)) to \(Schema.maximumMapEntries)")
        }
    }
}

extension MapGrowth: CustomStringConvertible {
    /// "grows ×2 at 90% up to 4000000".
    public var description: String {
        let percent = (threshold * 100).rounded() == threshold * 100 ? "\(Int(threshold * 100))" : "\(threshold * 100)"
        return "grows ×2 at \(percent)% up to \(maxCapacity)"
    }
}
