/// How the contributions of the processes using a per-process field add up
/// to the one value every reader sees.
///
/// A per-process field gives each attached process a slot of its own, which
/// it writes lock-free without contending with the others; a read combines
/// the slots with the contributions already folded in from processes that
/// are gone. What happens to a process's contribution when it dies (or
/// closes the store) is what tells the aggregates apart:
///
/// | aggregate    | a read gives                          | a gone process's contribution |
/// |--------------|---------------------------------------|-------------------------------|
/// | `sum`        | the sum of every contribution         | stays (folded in)             |
/// | `liveSum`    | the sum of the live processes' ones   | dropped                       |
/// | `max`, `min` | the largest or smallest contribution  | stays (folded in)             |
/// | `mostRecent` | the value stored last by any process  | stays                         |
///
/// `sum` is for counters, which must never go backwards when a worker dies;
/// `liveSum` for gauges such as requests in flight, which must not leak the
/// +1 of a worker killed mid-request. A dead process's slot is folded (or
/// cleared) by the next process that opens the store, and by
/// ``SlotStore/repair(at:dryRun:allowOtherOwner:)``; never by a reader, so a
/// read writes nothing. Until then a read still counts it.
///
/// For `float` and `double` fields, `max` and `min` ignore NaN (IEEE 754
/// `maximumNumber`), a `sum` adds in an order that depends on the slots, so
/// its last bits may differ from one fold to the next, and `mostRecent` gives
/// back the stored bits exactly.
///
/// Declared on integer and floating-point scalars:
///
/// ```swift
/// let schema = Schema(version: 1, fields: [
///     .int64("requests", perProcess: .sum),
///     .int64("inflight", perProcess: .liveSum),
///     .double("peak_rss_mb", perProcess: .max),
/// ])
/// ```
///
/// In the JSON form of a schema the aggregate is the key `perProcess`:
/// `{"name":"inflight","type":"int64","perProcess":"liveSum"}`.
public enum PerProcessAggregate: String, Sendable, Hashable, Codable, CaseIterable {
    /// The sum of every process's contribution, dead processes' included.
    case sum
    /// The sum of the contributions of the processes that have the store open.
    case liveSum
    /// The largest contribution, dead processes' included.
    case max
    /// The smallest contribution, dead processes' included.
    case min
    /// The value any process stored last.
    case mostRecent

    /// Whether each process has a slot of its own. `mostRecent` has none: the
    /// order of stores to one shared word is the only exact "last" across
    /// processes (clocks differ between time namespaces, and two stores can
    /// fall in the same tick), so its processes store to that word.
    var hasSlots: Bool { self != .mostRecent }

    /// Whether a gone process's contribution is dropped rather than folded in.
    var dropsDeadContributions: Bool { self == .liveSum }
}
