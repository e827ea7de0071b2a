/// The words after the subcommand: options (`--name value`, `--flag`) and positionals.
struct Arguments {
    private var words: [String]

    init(_ words: [String]) { self.words = words }

    /// Removes `--name` and returns whether it was present.
    mutating func flag(_ name: String) -> Bool {
        guard let index = words.firstIndex(of: name) else { return false }
        words.remove(at: index)
        return true
    }

    /// Removes `--name VALUE` (or `--name=VALUE`) and returns the value.
    mutating func option(_ name: String) throws(UsageError) -> String? {
        if let index = words.firstIndex(where: { $0.hasPrefix(name + "=") }) {
            let value = String(words[index].dropFirst(name.count + 1))
            words.remove(at: index)
            return value
        }
        guard let index = words.firstIndex(of: name) else { return nil }
        guard index + 1 < words.count else { throw UsageError("\(name) needs a value") }
        let value = words[index + 1]
        words.removeSubrange(index...(index + 1))
        return value
    }

    /// Removes `--name N` and parses it as an integer in `range`.
    mutating func integerOption(_ name: String, default defaultValue: Int, in range: ClosedRange<Int>) throws(UsageError) -> Int {
        guard let text = try option(name) else { return defaultValue }
        guard let value = Int(text), range.contains(value) else {
            throw UsageError("\(name) takes a whole number from \(range.lowerBound) to \(range.upperBound), found \"\(text)\"")
        }
        return value
    }

    /// Removes `--name DURATION` and parses it: a number with the unit `ms`,
    /// `s` or `m` (`500ms`, `2s`, `1.5s`, `1m`), or a bare number of seconds.
    mutating func durationOption(_ name: String) throws(UsageError) -> Duration? {
        guard let text = try option(name) else { return nil }
        guard let duration = Arguments.parseDuration(text) else {
            throw UsageError("\(name) takes a duration such as 500ms, 2s or 1m (a bare number is seconds), found \"\(text)\"")
        }
        return duration
    }

    /// Removes `--name DURATION` for a time to live: the units of
    /// ``durationOption(_:)`` and also `h` and `d` (`30s`, `2h`, `7d`), up to
    /// 10 years (a deadline is a 63-bit millisecond count: no overflow).
    mutating func timeToLiveOption(_ name: String) throws(UsageError) -> Duration? {
        guard let text = try option(name) else { return nil }
        let units: [(suffix: String, seconds: Double)] = [("ms", 1e-3), ("s", 1), ("m", 60), ("h", 3600), ("d", 86_400), ("", 1)]
        for unit in units where text.hasSuffix(unit.suffix) {
            guard let number = Double(text.dropLast(unit.suffix.count)), number.isFinite, number > 0,
                  number * unit.seconds <= 86_400 * 3653 else { continue }
            return .milliseconds(Int64((number * unit.seconds * 1000).rounded(.up)))
        }
        throw UsageError("\(name) takes a positive duration such as 500ms, 30s, 5m, 2h or 7d (a bare number is seconds; at most 10 years), found \"\(text)\"")
    }

    static func parseDuration(_ text: String) -> Duration? {
        let units: [(suffix: String, nanoseconds: Double)] = [("ms", 1e6), ("s", 1e9), ("m", 60e9), ("", 1e9)]
        for unit in units where text.hasSuffix(unit.suffix) {
            guard let number = Double(text.dropLast(unit.suffix.count)), number.isFinite, number >= 0,
                  number * unit.nanoseconds <= 1e9 * 86_400 * 365 else { continue }
            return .nanoseconds(Int64(number * unit.nanoseconds))
        }
        return nil
    }

    /// Removes and returns the next positional argument, naming it in the error if missing.
    mutating func positional(_ what: String) throws(UsageError) -> String {
        guard let index = words.firstIndex(where: { !$0.hasPrefix("--") || $0 == "--" }) else {
            throw UsageError("missing \(what)")
        }
        return words.remove(at: index)
    }

    /// Fails if anything is left over, such as a misspelled option.
    func finish() throws(UsageError) {
        guard let first = words.first else { return }
        throw UsageError(first.hasPrefix("--") ? "unknown option \(first)" : "unexpected argument \"\(first)\"")
    }
}
