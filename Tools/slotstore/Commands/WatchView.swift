import Foundation
import Glibc
import SlotStore

/// What `slotstore watch` shows for one refresh: the lines of the text
/// views and the object of `--json`, from a snapshot and its rates.
struct WatchView {
    let snapshot: WatchSnapshot
    let path: String
    let interval: Double
    let topEntries: Int
    /// Per map field, the entries the view shows: those with the largest
    /// values for a map of numbers, else the first by key.
    let shownEntries: [String: [FieldValue.MapEntry]]

    init(snapshot: WatchSnapshot, path: String, interval: Double, topEntries: Int) {
        self.snapshot = snapshot
        self.path = path
        self.interval = interval
        self.topEntries = topEntries
        var shown: [String: [FieldValue.MapEntry]] = [:]
        for watched in snapshot.fields {
            guard case .map(let entries) = watched.value else { continue }
            if case .map(_, .scalar(let valueType), _) = watched.field.type, valueType != .bool {
                // Largest first; ties (and NaN) in key order, so the list doesn't flicker.
                let ranked = entries.enumerated().sorted { left, right in
                    let a = left.element.value.number ?? -.infinity, b = right.element.value.number ?? -.infinity
                    return a != b && !(a.isNaN || b.isNaN) ? a > b : left.offset < right.offset
                }
                shown[watched.field.name] = ranked.prefix(topEntries).map(\.element)
            } else {
                shown[watched.field.name] = Array(entries.prefix(topEntries))
            }
        }
        shownEntries = shown
    }

    // MARK: Text

    /// The lines of one refresh. `fancy` draws bars with block characters
    /// (a terminal); otherwise with `#`, for logs and `grep`.
    func lines(width: Int, fancy: Bool, rates: RateHistory.Rates) -> [String] {
        var lines = [header(fancy: fancy)]
        if fancy { lines.append("") }
        let nameWidth = min(24, snapshot.fields.map { $0.field.name.count }.max() ?? 0)
        let typeWidth = min(32, snapshot.fields.map { typeLabel($0.field).count }.max() ?? 0)
        let counterWidth = min(24, snapshot.fields.filter(\.isCounter).map { $0.value.description.count }.max() ?? 0)
        for watched in snapshot.fields {
            let field = watched.field
            let lead = pad(field.name, nameWidth) + "  " + pad(typeLabel(field), typeWidth) + "  "
            let rate = rates.fields[field.name].map { "  " + WatchView.rateText($0) } ?? ""
            switch watched.value {
            case .array(let elements) where isIntegerArray(field):
                let total = elements.reduce(0.0) { $0 + ($1.number ?? 0) }
                lines.append(lead + "total " + WatchView.numberText(total) + rate)
                lines += bars(elements, width: width, fancy: fancy)
            case .map(let entries):
                lines.append(lead + mapSummary(field, count: entries.count))
                lines += mapEntries(field, rates: rates.entries[field.name] ?? [:])
            case .bytes(let bytes):
                lines.append(lead + "\(bytes.count) bytes" + (bytes.isEmpty ? "" : " " + watched.value.description))
            case let value where watched.isCounter:
                lines.append(lead + pad(value.description, counterWidth, right: true) + rate)
            case let value:
                lines.append(lead + WatchView.displayText(value.description))
            }
        }
        return lines
    }

    private func header(fancy: Bool) -> String {
        let every = "every " + FieldValue.double(interval).description + " s"
        if fancy {
            return "\(WatchView.displayText(path))  generation \(snapshot.generation)  \(every)  "
                + WatchView.clock(snapshot.wallTime, iso: false) + "  (q or Ctrl-C quits)"
        }
        return "\(WatchView.clock(snapshot.wallTime, iso: true))  \(WatchView.displayText(path))  generation \(snapshot.generation)"
    }

    private func typeLabel(_ field: Field) -> String {
        field.type.description + (field.perProcess.map { " " + $0.rawValue } ?? "")
    }

    private func isIntegerArray(_ field: Field) -> Bool {
        if case .array(let element, _) = field.type { return element.isInteger }
        return false
    }

    /// The most elements of one array drawn as bars; a larger array shows
    /// its first ones and how many more there are.
    static let barRows = 64

    /// One line per element: index, value, and a bar scaled to the largest.
    private func bars(_ elements: [FieldValue], width: Int, fancy: Bool) -> [String] {
        let largest = elements.compactMap(\.number).max() ?? 0
        let shown = elements.prefix(WatchView.barRows)
        let indexWidth = String(max(0, shown.count - 1)).count + 2
        let valueWidth = shown.map(\.description.count).max() ?? 1
        let room = max(4, width - 2 - indexWidth - 1 - valueWidth - 1 - 1)
        var lines = shown.enumerated().map { index, element -> String in
            let fraction = largest > 0 ? max(0, element.number ?? 0) / largest : 0
            let label = "  " + pad("[\(index)]", indexWidth) + " " + pad(element.description, valueWidth, right: true)
            let bar = WatchView.bar(fraction: fraction, room: room, fancy: fancy)
            return bar.isEmpty ? label : label + " " + bar
        }
        if elements.count > shown.count { lines.append("  … \(elements.count - shown.count) more elements") }
        return lines
    }

    /// A bar `fraction` of `room` columns long, in eighths of a column on a
    /// terminal; a value above zero always shows at least a sliver.
    static func bar(fraction: Double, room: Int, fancy: Bool) -> String {
        let eighths = fancy ? 8 : 1
        var units = Int((fraction * Double(room * eighths)).rounded())
        if fraction > 0 { units = max(units, 1) }
        guard fancy else { return String(repeating: "#", count: units) }
        let partial = ["", "▏", "▎", "▍", "▌", "▋", "▊", "▉"][units % 8]
        return String(repeating: "█", count: units / 8) + partial
    }

    private func mapSummary(_ field: Field, count: Int) -> String {
        guard case .map(_, let valueType, let capacity) = field.type else { return "\(count) entries" }
        var text = "\(count) of \(capacity) entries"
        if count > 0 {
            if case .scalar(let scalar) = valueType, scalar != .bool {
                text += count > topEntries ? ", the \(topEntries) largest:" : ":"
            } else {
                text += count > topEntries ? ", the first \(topEntries) by key:" : ":"
            }
        }
        return text
    }

    private func mapEntries(_ field: Field, rates: [FieldValue: Double]) -> [String] {
        let entries = shownEntries[field.name] ?? []
        let keyWidth = min(32, entries.map { WatchView.displayText($0.key.description).count }.max() ?? 0)
        let valueWidth = min(24, entries.map { WatchView.displayText($0.value.description).count }.max() ?? 0)
        return entries.map { entry in
            let rate = rates[entry.key].map { "  " + WatchView.rateText($0) } ?? ""
            return "  " + pad(WatchView.displayText(entry.key.description), keyWidth) + "  "
                + pad(WatchView.displayText(entry.value.description), valueWidth, right: entry.value.number != nil) + rate
        }
    }

    private func pad(_ text: String, _ width: Int, right: Bool = false) -> String {
        let missing = width - text.count
        guard missing > 0 else { return text }
        let spaces = String(repeating: " ", count: missing)
        return right ? spaces + text : text + spaces
    }

    /// `+523/s`, `+1.5/s`, `-2.0/s`, `0/s`.
    static func rateText(_ rate: Double) -> String {
        if rate == 0 { return "0/s" }
        let digits = abs(rate) >= 100 ? 0 : 1
        return (rate > 0 ? "+" : "") + String(format: "%.\(digits)f", rate) + "/s"
    }

    /// An integer total exactly, when a Double holds it exactly.
    static func numberText(_ number: Double) -> String {
        abs(number) < 9.0e15 ? String(Int64(number)) : String(number)
    }

    /// Text safe to print on a terminal: control characters (a store's string
    /// could hold an escape sequence) are shown as `\u{…}`.
    static func displayText(_ text: String) -> String {
        var safe = ""
        safe.reserveCapacity(text.utf8.count)
        for scalar in text.unicodeScalars {
            if scalar.value < 0x20 || (scalar.value >= 0x7F && scalar.value < 0xA0) {
                safe += "\\u{" + String(scalar.value, radix: 16) + "}"
            } else {
                safe.unicodeScalars.append(scalar)
            }
        }
        return safe
    }

    /// `12:04:05` (local time) or `2026-12-05T12:04:05.123Z`.
    static func clock(_ seconds: Double, iso: Bool) -> String {
        var time = time_t(seconds.rounded(.down))
        var parts = tm()
        if iso { gmtime_r(&time, &parts) } else { localtime_r(&time, &parts) }
        var buffer = [CChar](repeating: 0, count: 32)
        let length = strftime(&buffer, buffer.count, iso ? "%Y-%m-%dT%H:%M:%S" : "%H:%M:%S", &parts)
        let text = String(decoding: buffer.prefix(length).map { UInt8(bitPattern: $0) }, as: UTF8.self)
        guard iso else { return text }
        let milliseconds = min(999, Int((seconds - seconds.rounded(.down)) * 1000))
        return text + "." + String(format: "%03d", milliseconds) + "Z"
    }

    // MARK: JSON

    /// One line of `--json`.
    func json(rates: RateHistory.Rates) throws -> String {
        var values: [String: JSONValue] = [:]
        for watched in snapshot.fields {
            if case .map(let entries) = watched.value, case .map(_, _, let capacity) = watched.field.type {
                let keyed = rates.entries[watched.field.name] ?? [:]
                let top = (shownEntries[watched.field.name] ?? []).map { JSONMapEntry(key: $0.key, value: $0.value, rate: keyed[$0.key]) }
                values[watched.field.name] = .map(JSONMapSummary(count: entries.count, capacity: capacity, top: top))
            } else {
                values[watched.field.name] = .value(watched.value)
            }
        }
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        let line = JSONRefresh(time: snapshot.wallTime, generation: snapshot.generation, values: values, rates: rates.fields)
        return String(decoding: try encoder.encode(line), as: UTF8.self)
    }

    struct JSONRefresh: Encodable {
        let time: Double
        let generation: UInt64
        let values: [String: JSONValue]
        let rates: [String: Double]
    }

    enum JSONValue: Encodable {
        case value(FieldValue)
        case map(JSONMapSummary)

        func encode(to encoder: any Encoder) throws {
            switch self {
            case .value(let value): try value.encode(to: encoder)
            case .map(let summary): try summary.encode(to: encoder)
            }
        }
    }

    struct JSONMapSummary: Encodable {
        let count: Int
        let capacity: Int
        let top: [JSONMapEntry]
    }

    struct JSONMapEntry: Encodable {
        let key: FieldValue
        let value: FieldValue
        let rate: Double?
    }
}
