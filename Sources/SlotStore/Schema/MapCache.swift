/// A map's cache policy: its entries may expire, and with ``evict`` a full
/// map makes room by evicting instead of failing.
///
/// Every entry of a map with a cache policy carries an *entry word* (8 bytes
/// in its bucket, see the FileFormat article): a deadline in milliseconds
/// since the Unix epoch on the system's real-time clock (0: never expires)
/// and a recently-used bit.
///
/// ```swift
/// let schema = Schema(version: 1, fields: [
///     .map("pages", key: .string(capacity: 64), value: .bytes(capacity: 4_096), capacity: 10_000,
///          cache: MapCache(evict: true)),
/// ])
/// let pages = try store.map("pages", key: String.self, value: [UInt8].self)
/// try pages.set(body, for: "/index.html", ttl: .seconds(30))
/// ```
///
/// - `evict: false`: entries expire (see ``MapField/set(_:for:ttl:)``), and
///   a full map reuses an expired entry's room; with none, an insert fails
///   with ``SlotStoreError/mapFull(path:field:capacity:count:)``, or the map
///   grows if it has a ``MapGrowth`` policy.
/// - `evict: true`: an insert into a full map evicts one entry: the first
///   from the map's clock hand that is expired or was not used since the
///   hand last passed it (see <doc:GettingStarted#Maps-as-caches>). Cannot be
///   combined with growth.
///
/// JSON: `"cache": {"evict": true}` on the map field (`{}` for expiry only).
public struct MapCache: Sendable, Hashable, Codable, CustomStringConvertible {
    /// Whether an insert into a full map evicts an entry instead of failing.
    public var evict: Bool

    /// A cache policy; `evict` false: entries expire, and a full map fails or grows as before.
    public init(evict: Bool = false) {
        self.evict = evict
    }

    /// "expiring entries" or "expiring entries, evicts when full".
    public var description: String { evict ? "expiring entries, evicts when full" : "expiring entries" }

    private enum CodingKeys: String, CodingKey, CaseIterable { case evict }

    /// Decodes `{"evict": true}`; `evict` may be left out (false). Any other
    /// key is an error: a misspelled policy ("evicts", "ttl") must not be
    /// silently ignored.
    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        let known = Set(CodingKeys.allCases.map(\.stringValue))
        if let unknown = try decoder.container(keyedBy: CacheKey.self).allKeys.first(where: { !known.contains($0.stringValue) }) {
            throw DecodingError.dataCorruptedError(
                forKey: .evict, in: container,
                debugDescription: "unknown cache key \"\(unknown.stringValue)\"; a cache policy has only \"evict\" (true or false); time-to-live is given per entry")
        }
        self.init(evict: try container.decodeIfPresent(Bool.self, forKey: .evict) ?? false)
    }

    /// Encodes `{"evict": …}`.
    public func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(evict, forKey: .evict)
    }

    private struct CacheKey: CodingKey {
        let stringValue: String
        var intValue: Int? { nil }
        init(stringValue: String) { self.stringValue = stringValue }
        init?(intValue: Int) { nil }
    }

    func validate(field: String, type: FieldType, growth: MapGrowth?) throws(SlotStoreError) {
        guard type.isMap else {
            throw .invalidSchema("field \"\(field)\" declares a cache policy, which only maps have; it is \(type)")
        }
        if evict && growth != nil {
            throw .invalidSchema("map field \"\(field)\" declares both growth and eviction; a map either grows or evicts when full: remove \"growth\" or set \"evict\" to false")
        }
    }
}
