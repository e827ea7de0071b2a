import SlotStore

/// A store's values in the Prometheus text exposition format, version 0.0.4
/// (https://prometheus.io/docs/instrumenting/exposition_formats/), for
/// `slotstore metrics`.
///
/// The rules, which DocC's Tools article repeats for operators:
/// - Each field is one metric family named prefix + the field's name, with
///   every character outside `[a-zA-Z0-9_:]` (a field name's `-` and `.`)
///   replaced by `_`, and a `_` in front if it would start with a digit.
/// - A family is a `counter` when its field is numeric (an integer or
///   floating-point scalar, array or map value) and its name ends in `_total`,
///   the Prometheus naming convention for counters; every other one is a `gauge`.
///   (Nothing else in a schema tells a counter from a gauge, and a misnamed
///   counter only loses `rate()`'s reset handling, not data.)
/// - A scalar is one sample; a Boolean is 0 or 1; an array is one sample per
///   element with an `index` label; a map whose values are scalars is one
///   sample per entry with a `key` label (string keys as they are, integer
///   keys in decimal, bytes keys as `0x` hex).
/// - A string is an info metric: a gauge named with `_info` appended, whose
///   one sample is 1 with the text in a `value` label (the `build_info`
///   pattern). Bytes fields and maps whose values are not scalars have no
///   numeric reading and are left out, each with a `#` comment line saying so.
/// - Two fields whose names sanitize to one metric name (`a-b` and `a.b`): the
///   first in the schema keeps it, the other is left out with a comment (the
///   format forbids a family twice).
enum PrometheusText {
    /// Whether `name` is a valid metric name (`[a-zA-Z_:][a-zA-Z0-9_:]*`); an empty prefix is allowed.
    static func isValidName(_ name: String, allowingEmpty: Bool = false) -> Bool {
        guard let first = name.unicodeScalars.first else { return allowingEmpty }
        return isNameStart(first) && name.unicodeScalars.allSatisfy(isNameCharacter)
    }

    static func isNameStart(_ scalar: Unicode.Scalar) -> Bool {
        (scalar >= "a" && scalar <= "z") || (scalar >= "A" && scalar <= "Z") || scalar == "_" || scalar == ":"
    }

    static func isNameCharacter(_ scalar: Unicode.Scalar) -> Bool {
        isNameStart(scalar) || (scalar >= "0" && scalar <= "9")
    }

    /// `prefix + field`, with every character a metric name can't hold replaced by `_`.
    static func metricName(prefix: String, field: String) -> String {
        var name = String(String.UnicodeScalarView((prefix + field).unicodeScalars.map { isNameCharacter($0) ? $0 : "_" }))
        if let first = name.unicodeScalars.first, !isNameStart(first) { name = "_" + name }
        return name
    }

    /// A label value with backslash, double quote and line feed escaped, as the format requires.
    static func escapeLabelValue(_ text: String) -> String {
        var escaped = ""
        escaped.reserveCapacity(text.utf8.count)
        for character in text.unicodeScalars {
            switch character {
            case "\\": escaped += "\\\\"
            case "\"": escaped += "\\\""
            case "\n": escaped += "\\n"
            default: escaped.unicodeScalars.append(character)
            }
        }
        return escaped
    }

    /// `# HELP` text with backslash and line feed escaped (a double quote needs none there).
    static func escapeHelp(_ text: String) -> String {
        text.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "\n", with: "\\n")
    }

    /// A sample value as Prometheus parses it: integers exactly, floating
    /// point as Swift's shortest round-trip text (a `float` field's as a
    /// `Float`, so 0.1 stays "0.1"), and `NaN`, `+Inf`, `-Inf`.
    static func sampleValue(_ value: FieldValue, type: ScalarType) -> String? {
        switch value {
        case .int(let number): return String(number)
        case .uint(let number): return String(number)
        case .bool(let flag): return flag ? "1" : "0"
        case .double(let number):
            if number.isNaN { return "NaN" }
            if number.isInfinite { return number < 0 ? "-Inf" : "+Inf" }
            return type == .float ? Float(number).description : number.description
        default: return nil
        }
    }

    /// The text of every field of `fields`, read by `read` (one field at a
    /// time), each family once, in schema order.
    static func render(fields: [Field], prefix: String, read: (String) throws -> FieldValue) throws -> String {
        var lines: [String] = []
        var taken: [String: String] = [:]  // metric name -> field that has it

        func family(_ name: String, field: Field, type: String, samples: [(labels: String, value: String)]) {
            if let owner = taken[name] {
                lines.append("# slotstore: field \"\(escapeHelp(field.name))\" left out: its metric name \(name) is taken by field \"\(escapeHelp(owner))\"")
                return
            }
            taken[name] = field.name
            lines.append("# HELP \(name) SlotStore field \(escapeHelp(field.name)) (\(field.type))")
            lines.append("# TYPE \(name) \(type)")
            for sample in samples { lines.append("\(name)\(sample.labels) \(sample.value)") }
        }
        func kind(_ name: String, _ element: ScalarType) -> String {
            element != .bool && name.hasSuffix("_total") ? "counter" : "gauge"
        }
        func leftOut(_ field: Field, _ why: String) {
            lines.append("# slotstore: field \"\(escapeHelp(field.name))\" (\(field.type)) left out: \(why)")
        }

        for field in fields {
            let name = metricName(prefix: prefix, field: field.name)
            switch field.type {
            case .scalar(let type):
                guard let value = sampleValue(try read(field.name), type: type) else { continue }
                family(name, field: field, type: kind(name, type), samples: [("", value)])
            case .array(let element, _):
                guard case .array(let values) = try read(field.name) else { continue }
                let samples = values.enumerated().compactMap { index, value in
                    sampleValue(value, type: element).map { (labels: "{index=\"\(index)\"}", value: $0) }
                }
                family(name, field: field, type: kind(name, element), samples: samples)
            case .map(_, .scalar(let valueType), _):
                guard case .map(let entries) = try read(field.name) else { continue }
                let samples = entries.compactMap { entry in
                    sampleValue(entry.value, type: valueType).map { (labels: "{key=\"\(escapeLabelValue(keyText(entry.key)))\"}", value: $0) }
                }
                family(name, field: field, type: kind(name, valueType), samples: samples)
            case .string:
                guard case .string(let text) = try read(field.name) else { continue }
                family(name + "_info", field: field, type: "gauge", samples: [("{value=\"\(escapeLabelValue(text))\"}", "1")])
            case .bytes:
                leftOut(field, "bytes have no numeric reading")
            case .map:
                leftOut(field, "only maps whose values are numbers or Booleans become series")
            }
        }
        return lines.map { $0 + "\n" }.joined()
    }

    /// A map key as its label value.
    static func keyText(_ key: FieldValue) -> String {
        switch key {
        case .string(let text): text
        case .bytes(let bytes): "0x" + bytes.map { ($0 < 16 ? "0" : "") + String($0, radix: 16) }.joined()
        default: key.description
        }
    }
}
