import Foundation
import Glibc
@_spi(Tools) import SlotStore
import Synchronization

/// `slotstore watch PATH [FIELD...] [--interval S] [--json] [--count N]`
enum WatchCommand: Command {
    static let name = "watch"
    static let abstract = "show the values live, with rates and histograms"
    static let usage = """
    usage: slotstore watch PATH [FIELD...] [--interval S] [--json] [--count N]
      Shows every field (or the FIELDs named), refreshed when anything in the
      store changes or every S seconds, whichever comes first, at most ten
      times a second. Each field is read lock-free on its own (writers never
      wait for it; the view is not one moment of the whole store).
        integer scalars and per-process sum fields: the value and its rate
          per second over the last interval; other per-process fields show
          their aggregate (liveSum, max, min, mostRecent)
        integer arrays: their total and its rate, and one bar per element
          scaled to the largest (a histogram)
        maps: entries and capacity, then the 5 entries with the largest
          values (with rates for integer values), or the first 5 by key
        strings, bytes, floating point and Booleans as they are
      On a terminal the view is redrawn in place, fitted to the window; q or
      Ctrl-C quits and restores the terminal. Otherwise each refresh prints a
      block of lines and a blank line.
      It follows the store across compactions in place and map growth, and
      exits with status 2 if the store is removed or another file replaces it.
      While it waits, writers pay at most about ten wake system calls a second.
      --interval S  refresh at least every S seconds, and the span rates are
                    measured over (default 1; from 0.1 to 86400)
      --json        one JSON object per refresh and line:
                    {"time": UNIX SECONDS, "generation": N, "values":
                     {FIELD: VALUE, …}, "rates": {FIELD: PER SECOND, …}};
                    values as `dump` prints them, but a map's is
                    {"count", "capacity", "top": [{"key", "value", "rate"}]};
                    rates start with the second line
      --count N     stop after N refreshes (for scripts)
    """

    static func run(_ arguments: inout Arguments) throws -> Int32 {
        let path = try arguments.positional("store path")
        let json = arguments.flag("--json")
        let interval = try secondsOption(&arguments, "--interval", default: 1, in: 0.1...86_400)
        let countText = try arguments.option("--count")
        var names: [String] = []
        while let name = try? arguments.positional("FIELD") { if !names.contains(name) { names.append(name) } }
        try arguments.finish()
        var count: Int?
        if let countText {
            guard let value = Int(countText), value >= 1 else {
                throw UsageError("--count takes a whole number of refreshes from 1, found \"\(countText)\"")
            }
            count = value
        }

        let store = try SlotStore(path: path, options: Settings.options(.open))
        defer { store.close() }
        for name in names where store.schema.field(named: name) == nil {
            throw SlotStoreError.unknownField(path: path, name: name, available: store.schema.fields.map(\.name))
        }
        let mode: WatchOutput.Mode = json ? .json : (isatty(STDOUT_FILENO) == 1 ? .terminal : .plain)
        let watcher = Watcher(store: store, path: path, names: names.isEmpty ? nil : names,
                              interval: interval, count: count, output: WatchOutput(mode: mode))
        return try watcher.run()
    }

    /// `--name SECONDS` as a number of seconds in `range`.
    static func secondsOption(_ arguments: inout Arguments, _ name: String, default value: Double,
                              in range: ClosedRange<Double>) throws(UsageError) -> Double {
        guard let text = try arguments.option(name) else { return value }
        guard let seconds = Double(text), seconds.isFinite, range.contains(seconds) else {
            throw UsageError("\(name) takes a number of seconds from \(FieldValue.double(range.lowerBound)) to \(FieldValue.double(range.upperBound)), found \"\(text)\"")
        }
        return seconds
    }
}

/// Seconds on the monotonic clock, for intervals and rates (the wall clock can step).
func monotonicSeconds() -> Double {
    var now = timespec()
    clock_gettime(CLOCK_MONOTONIC, &now)
    return Double(now.tv_sec) + Double(now.tv_nsec) / 1e9
}

/// One field as read for a refresh.
struct WatchedField {
    let field: Field
    let value: FieldValue

    /// Whether the field counts something, so its rate is worth showing:
    /// integer scalars, and per-process sums (whose aggregate only grows).
    var isCounter: Bool {
        guard case .scalar(let type) = field.type else { return false }
        switch field.perProcess {
        case nil: return type.isInteger
        case .sum?: return type != .bool
        default: return false
        }
    }

    /// The number a rate is taken of: the value, or an integer array's total.
    var rateBasis: Double? {
        if isCounter { return value.number }
        if case .array(let element, _) = field.type, element.isInteger, case .array(let elements) = value {
            return elements.reduce(0) { $0 + ($1.number ?? 0) }
        }
        return nil
    }
}

extension FieldValue {
    /// The value as a number, for sorting, scaling and rates; nil for what isn't one.
    var number: Double? {
        switch self {
        case .int(let value): Double(value)
        case .uint(let value): Double(value)
        case .double(let value): value
        default: nil
        }
    }
}

/// One refresh: every watched field, when it was read.
struct WatchSnapshot {
    let time: Double
    let wallTime: Double
    let generation: UInt64
    let fields: [WatchedField]

    /// What tells two refreshes apart (the time doesn't): the values, and the
    /// generation, so that a compaction shows in the header at once.
    var values: [FieldValue] { [.uint(generation)] + fields.map(\.value) }
}

/// Rates per second from the refreshes of the last interval.
///
/// A counter's rate compares this refresh with the oldest one within the
/// interval (or the one before, when there is none that recent), so a view
/// redrawn ten times a second under traffic still shows a rate over about
/// one interval rather than the noise between two redraws, and an idle
/// counter's rate falls to 0 one interval after its last change.
struct RateHistory {
    let window: Double
    private var samples: [(time: Double, bases: [String: Double], entries: [String: [FieldValue: Double]])] = []

    init(window: Double) { self.window = window }

    struct Rates {
        var fields: [String: Double] = [:]
        var entries: [String: [FieldValue: Double]] = [:]
    }

    /// Records `snapshot` (with the map entries shown) and returns the rates at it.
    mutating func add(_ snapshot: WatchSnapshot, shownEntries: [String: [FieldValue.MapEntry]]) -> Rates {
        var bases: [String: Double] = [:]
        for watched in snapshot.fields { if let basis = watched.rateBasis { bases[watched.field.name] = basis } }
        var entries: [String: [FieldValue: Double]] = [:]
        for (name, shown) in shownEntries {
            var numbers: [FieldValue: Double] = [:]
            for entry in shown { if case .int = entry.value { numbers[entry.key] = entry.value.number } else if case .uint = entry.value { numbers[entry.key] = entry.value.number } }
            entries[name] = numbers
        }
        var rates = Rates()
        let reference = samples.first { snapshot.time - $0.time <= window * 1.001 } ?? samples.last
        if let reference, snapshot.time > reference.time {
            let elapsed = snapshot.time - reference.time
            for (name, basis) in bases {
                if let old = reference.bases[name] { rates.fields[name] = (basis - old) / elapsed }
            }
            for (name, numbers) in entries {
                guard let old = reference.entries[name] else { continue }
                var keyed: [FieldValue: Double] = [:]
                for (key, value) in numbers { if let before = old[key] { keyed[key] = (value - before) / elapsed } }
                rates.entries[name] = keyed
            }
        }
        samples.append((snapshot.time, bases, entries))
        // Keep what a later refresh may compare with: the last interval, and the one before it.
        while samples.count > 2, snapshot.time - samples[1].time > window * 1.001 { samples.removeFirst() }
        return rates
    }
}

/// Reads the store and decides when to refresh.
struct Watcher {
    let store: SlotStore
    let path: String
    let names: [String]?
    let interval: Double
    let count: Int?
    let output: WatchOutput

    /// How many map entries a map's summary shows.
    static let topEntries = 5
    /// The shortest time between two refreshes: at most ten a second.
    static let minimumGap = 0.1

    func run() throws -> Int32 {
        output.begin()
        do {
            let status = try loop()
            output.end()
            return status
        } catch {
            output.end()
            throw error
        }
    }

    private func loop() throws -> Int32 {
        var history = RateHistory(window: interval)
        var shown: [FieldValue]?
        var lastRefresh = -Double.infinity
        var nextRead = -Double.infinity
        var refreshes = 0
        while true {
            // At most ten reads a second, and reading stays under about a
            // quarter of a core however large the maps are. Nobody waits
            // meanwhile, so writers pay no wakes for it.
            Watcher.sleep(until: nextRead)
            // The mark before the read: a write after it makes the wait below return.
            let mark = try store.changeMark()
            let started = monotonicSeconds()
            let snapshot = try read()
            let now = monotonicSeconds()
            nextRead = now + max(Watcher.minimumGap, 3 * (now - started))
            let resized = output.takeResize()
            if shown == nil || now - lastRefresh >= interval * 0.999 || snapshot.values != shown! || resized {
                let view = WatchView(snapshot: snapshot, path: path, interval: interval, topEntries: Watcher.topEntries)
                let rates = history.add(snapshot, shownEntries: view.shownEntries)
                guard try output.show(view, rates: rates) else { return ExitStatus.success }  // the reader went away
                shown = snapshot.values
                lastRefresh = now
                refreshes += 1
                if let count, refreshes >= count { return ExitStatus.success }
            }
            try waitForChange(from: mark, orUntil: lastRefresh + interval, perProcess: snapshot)
        }
    }

    /// Returns when the store changed, a per-process field changed, the window
    /// was resized, or `deadline` passed. Waits in steps of at most 100 ms, so
    /// a removed or replaced store, a resize, or a per-process field (whose
    /// writes wake nobody) is noticed within that.
    private func waitForChange(from mark: ChangeMark, orUntil deadline: Double, perProcess snapshot: WatchSnapshot) throws {
        let perProcess = snapshot.fields.filter { $0.field.perProcess != nil }
        while true {
            try checkPath()
            if output.hasResize { return }
            let remaining = deadline - monotonicSeconds()
            if remaining <= 0 { return }
            let step = min(remaining, Watcher.minimumGap)
            let after = try store.wait(untilChangedFrom: mark, timeout: .nanoseconds(Int64(step * 1e9)))
            if after != mark { return }
            for watched in perProcess where try store.value(of: watched.field.name) != watched.value { return }
        }
    }

    /// Throws, naming the path, when the store is no longer the file at it.
    private func checkPath() throws {
        switch try store.pathState() {
        case .same: return
        case .missing:
            throw InputError("\(path): the store was removed (no file at the path any more); watch stops. Run it again once the store is back")
        case .replaced:
            throw InputError("\(path): another file replaced the store at this path (not a compaction of it); watch stops. Run it again to watch the new store")
        }
    }

    /// Every watched field's value and its type now.
    private func read() throws -> WatchSnapshot {
        // A compaction between listing and reading can drop a field: read again from its schema.
        for attempt in 0..<3 {
            // Both clocks at one moment: rates use the monotonic one, and a
            // consumer of --json can check them against the wall times it prints.
            let wallTime = Date().timeIntervalSince1970
            let time = monotonicSeconds()
            let schema = store.schema
            var fields: [WatchedField] = []
            var dropped: String?
            for name in names ?? schema.fields.map(\.name) {
                guard let watched = try readField(name) else {
                    dropped = name
                    break
                }
                fields.append(watched)
            }
            if let dropped {
                if names == nil && attempt < 2 { continue }
                throw InputError("\(path): field \"\(dropped)\" is no longer in the store (a compaction to generation \(store.generation) dropped it); watch stops. Run it again without that field")
            }
            return WatchSnapshot(time: time, wallTime: wallTime, generation: store.generation, fields: fields)
        }
        throw InputError("\(path): the store's fields kept changing under three reads in a row (compactions); watch stops")
    }

    /// One field's value and its type after the read, or nil when the store no longer has it.
    private func readField(_ name: String) throws -> WatchedField? {
        let value: FieldValue
        do {
            value = try store.value(of: name)
        } catch {
            if case .unknownField = error { return nil }
            throw error
        }
        // The schema after the read: a compaction in between has been followed.
        return store.schema.field(named: name).map { WatchedField(field: $0, value: value) }
    }

    static func sleep(until deadline: Double) {
        var remaining = deadline - monotonicSeconds()
        while remaining > 0 {
            var request = timespec(tv_sec: Int(remaining), tv_nsec: Int((remaining - remaining.rounded(.down)) * 1e9))
            _ = nanosleep(&request, nil)
            remaining = deadline - monotonicSeconds()
        }
    }
}
