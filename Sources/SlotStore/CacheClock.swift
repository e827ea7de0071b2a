import Glibc
import Synchronization

/// The clock that a store's cache maps (see ``MapCache``) read for
/// deadlines: the system's real-time clock, or a manual clock for tests.
///
/// Deadlines are milliseconds since the Unix epoch on `CLOCK_REALTIME`, not
/// on `CLOCK_MONOTONIC`: a store outlives reboots, and the monotonic clock
/// starts again near zero at each boot, so a deadline written before a
/// reboot would then lie hours or years ahead. The price is that a step of
/// the wall clock (an administrator's `date -s`, a large NTP correction; not
/// NTP's usual slewing) moves every deadline with it: stepped forward, entries
/// expire early; stepped back, they live longer by the step. Every process
/// reads the same clock, so they agree on what has expired.
///
/// ```swift
/// let clock = CacheClock.manual(startingAt: 1_700_000_000_000)
/// var options = OpenOptions()
/// options.clock = clock
/// let store = try SlotStore(path: path, schema: schema, options: options)
/// try sessions.set(token, for: "u1", ttl: .seconds(30))
/// clock.advance(by: .seconds(31))   // "u1" is expired now, without sleeping
/// ```
public struct CacheClock: Sendable {
    let manual: ManualTime?

    /// The system's real-time clock (`CLOCK_REALTIME`), read on every
    /// operation that checks a deadline: the default.
    public static var system: CacheClock { CacheClock(manual: nil) }

    /// A clock that stands still at `milliseconds` since the Unix epoch until
    /// ``advance(by:)`` or ``set(millisecondsSinceEpoch:)`` moves it: for tests
    /// of expiry that never sleep. Copies share the time.
    public static func manual(startingAt milliseconds: Int64) -> CacheClock {
        CacheClock(manual: ManualTime(milliseconds: UInt64(clamping: max(1, milliseconds))))
    }

    /// The time now, in milliseconds since the Unix epoch.
    public var millisecondsSinceEpoch: Int64 {
        Int64(clamping: manual?.word.pointee.load(ordering: .relaxed) ?? CacheClock.systemMilliseconds())
    }

    /// Moves a manual clock forward by `duration`; does nothing to the
    /// system clock. The clock reads whole milliseconds, and steps below a
    /// millisecond add up: a thousand steps of 1 µs move it by 1 ms.
    public func advance(by duration: Duration) {
        guard let manual, duration > .zero else { return }
        let (seconds, attoseconds) = duration.components
        let milliseconds = seconds.multipliedReportingOverflow(by: 1000)
        guard !milliseconds.overflow else { return }
        let whole = milliseconds.partialValue.addingReportingOverflow(attoseconds / 1_000_000_000_000_000).partialValue
        let carried = manual.carry(nanoseconds: UInt64((attoseconds % 1_000_000_000_000_000) / 1_000_000_000))
        _ = manual.word.pointee.wrappingAdd(UInt64(bitPattern: whole) &+ carried, ordering: .relaxed)
    }

    /// Sets a manual clock to `milliseconds` since the Unix epoch; does nothing to the system clock.
    public func set(millisecondsSinceEpoch milliseconds: Int64) {
        manual?.word.pointee.store(UInt64(clamping: max(1, milliseconds)), ordering: .relaxed)
    }

    /// The manual clock's word, which a map cursor reads without retaining
    /// the clock (the store's engine holds it); nil for the system clock.
    var word: UnsafeMutablePointer<Atomic<UInt64>>? { manual?.word }

    /// `CLOCK_REALTIME` in milliseconds, at least 1 (0 means "no deadline").
    @inline(__always)
    static func systemMilliseconds() -> UInt64 { milliseconds(of: CLOCK_REALTIME) }

    /// `CLOCK_REALTIME_COARSE` in milliseconds: the time at the kernel's last
    /// tick, read from the vDSO without touching the clock hardware (about a
    /// fifth of `CLOCK_REALTIME` here). Never ahead of `CLOCK_REALTIME`, and
    /// behind it by less than a tick (1 to 10 ms with HZ from 1000 to 100).
    @inline(__always)
    static func coarseMilliseconds() -> UInt64 { milliseconds(of: CLOCK_REALTIME_COARSE) }

    /// `clock` in milliseconds since the Unix epoch, at least 1 (0 means "no deadline").
    @inline(__always)
    private static func milliseconds(of clock: clockid_t) -> UInt64 {
        var now = timespec()
        clock_gettime(clock, &now)
        guard now.tv_sec > 0 else { return 1 }
        return UInt64(now.tv_sec) &* 1000 &+ UInt64(now.tv_nsec) / 1_000_000
    }

    /// One tick of the coarse clock in whole milliseconds, rounded up (at
    /// least 1): `CLOCK_REALTIME_COARSE` plus this is never behind `CLOCK_REALTIME`.
    static let coarseResolutionMilliseconds: UInt64 = {
        var resolution = timespec()
        guard clock_getres(CLOCK_REALTIME_COARSE, &resolution) == 0 else { return coarseLagMilliseconds }
        let nanoseconds = UInt64(max(resolution.tv_sec, 0)) * 1_000_000_000 + UInt64(max(resolution.tv_nsec, 0))
        return max(1, (nanoseconds + 999_999) / 1_000_000)
    }()

    /// How far the coarse clock may lag the real-time clock, with room to
    /// spare: a tick is at most 10 ms.
    static let coarseLagMilliseconds: UInt64 = 20

    /// Whether `deadline` (ms) is still ahead on the real-time clock: by the
    /// coarse clock when the deadline is more than a tick away either way, and
    /// by `CLOCK_REALTIME` only within that window, so the check is exact and
    /// a lock-free read of an entry far from its deadline costs a coarse read.
    @inline(__always)
    static func systemIsBefore(_ deadline: UInt64) -> Bool {
        let coarse = coarseMilliseconds()
        if deadline > coarse &+ coarseLagMilliseconds { return true }
        if deadline <= coarse { return false }
        return systemMilliseconds() < deadline
    }

    /// A manual clock's time, in memory of its own so a cursor can point at it.
    final class ManualTime: @unchecked Sendable {
        let word: UnsafeMutablePointer<Atomic<UInt64>>
        /// The nanoseconds below a millisecond that advances left over.
        private let remainder = Mutex<UInt64>(0)

        /// Adds `nanoseconds` (< 1 ms) to the remainder; returns the whole milliseconds it made.
        func carry(nanoseconds: UInt64) -> UInt64 {
            remainder.withLock { total in
                total += nanoseconds
                let carried = total / 1_000_000
                total %= 1_000_000
                return carried
            }
        }

        init(milliseconds: UInt64) {
            word = UnsafeMutablePointer<Atomic<UInt64>>.allocate(capacity: 1)
            word.initialize(to: Atomic(milliseconds))
        }

        deinit {
            word.deinitialize(count: 1)
            word.deallocate()
        }
    }
}
