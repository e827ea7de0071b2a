import Glibc

/// Facts about the machine, printed with the results (compare ratios within one run, not times across runs).
struct Machine {
    let cpu: String
    let cpus: Int
    let kernel: String
    let loadAverage: String

    static func current() -> Machine {
        var cpu = "unknown"
        if let text = readText("/proc/cpuinfo") {
            for line in text.split(separator: "\n") where line.hasPrefix("model name") {
                if let colon = line.firstIndex(of: ":") {
                    cpu = String(line[line.index(after: colon)...]).trimmingSpaces()
                }
                break
            }
        }
        var name = utsname()
        uname(&name)
        let release = withUnsafeBytes(of: name.release) { String(cString: $0.bindMemory(to: CChar.self).baseAddress!) }
        let load = readText("/proc/loadavg")?.split(separator: " ").prefix(3).joined(separator: " ") ?? "unknown"
        return Machine(cpu: cpu, cpus: CPU.online, kernel: "Linux " + release, loadAverage: load)
    }

    static func readText(_ path: String) -> String? {
        let fd = open(path, O_RDONLY)
        guard fd >= 0 else { return nil }
        return String(decoding: Spawn.readAll(fd), as: UTF8.self)
    }
}

extension StringProtocol {
    func trimmingSpaces() -> String {
        var text = Substring(self)
        while let first = text.first, first == " " || first == "\t" { text.removeFirst() }
        while let last = text.last, last == " " || last == "\t" || last == "\n" { text.removeLast() }
        return String(text)
    }
}

enum Report {
    static let allocationsExplained =
        "allocs/op: calls to malloc, calloc, realloc, posix_memalign, aligned_alloc and memalign made by this process " +
        "(Swift runtime, glibc, SlotStore) per operation, counted during the timed repetitions through the process's " +
        "relocation slots; two-process rows count this process's half."

    static func table(_ rows: [Row], settings: Settings, machine: Machine, floor: Floor?, workspace: Workspace,
                      allocationNote: String?) -> String {
        var out = ""
        out += "SlotStore benchmark\(settings.quick ? " (--quick)" : "")\n"
        out += "machine: \(machine.cpu), \(machine.cpus) CPUs online, \(machine.kernel), load average \(machine.loadAverage) at start\n"
        out += "ns per operation: median of \(settings.repetitions) timed repetitions of ~\(settings.targetNanoseconds / 1_000_000) ms " +
            "(two-process rows ~\(settings.contentionNanoseconds / 1_000_000) ms) after a warm-up, with min and max; " +
            "media: \(workspace.shmMedium) = \(settings.shmDirectory), \(workspace.diskMedium) = \(settings.diskDirectory)\n"
        out += allocationsExplained + "\n"
        if let allocationNote { out += "allocation counter: \(allocationNote)\n" }
        if let warning = workspace.diskWarning { out += "warning: \(warning)\n" }
        if let floor {
            out += "floor: \(floor.source), built and run in this invocation (shared-memory sections before the SlotStore rows, " +
                "disk sections just before the disk rows); ratio = SlotStore median / floor median; " +
                "\"~\" marks the nearest floor row where the floor does less or different work (see the note)\n"
        }
        out += "\n"
        var header = "op".padded(to: 58) + " " + "medium".padded(to: 6) + "median".leftPadded(to: 10) +
            "min".leftPadded(to: 10) + "max".leftPadded(to: 10) + "allocs/op".leftPadded(to: 10)
        if floor != nil { header += " |" + "floor".leftPadded(to: 10) + "ratio".leftPadded(to: 8) + "  floor op" }
        out += header + "\n"
        out += String(repeating: "-", count: header.count + (floor != nil ? 30 : 0)) + "\n"
        for row in rows {
            // A value row: its value in the median column, no min, max or allocations.
            var line = row.op.padded(to: 58) + " " + row.medium.padded(to: 6) + (row.unit != nil
                ? Format.fixed(row.median, 1).leftPadded(to: 10) + "-".leftPadded(to: 10) + "-".leftPadded(to: 10) + "-".leftPadded(to: 10)
                : Format.nanoseconds(row.median).leftPadded(to: 10) +
                    Format.nanoseconds(row.minimum).leftPadded(to: 10) +
                    Format.nanoseconds(row.maximum).leftPadded(to: 10) +
                    (row.allocationsPerOp.map { Format.fixed($0, 2) } ?? "n/a").leftPadded(to: 10))
            if floor != nil {
                if let reference = row.floor, let median = row.floorMedian, let ratio = row.ratio {
                    line += " |" + Format.nanoseconds(median).leftPadded(to: 10) +
                        ((reference.sameWork ? "" : "~") + Format.fixed(ratio, 2)).leftPadded(to: 8) + "  " + reference.op
                } else if let reference = row.floor {
                    line += " |" + "-".leftPadded(to: 10) + "-".leftPadded(to: 8) + "  (floor row missing: \(reference.op))"
                } else {
                    line += " |" + "-".leftPadded(to: 10) + "-".leftPadded(to: 8) + "  -"
                }
            }
            out += line + "\n"
        }
        let notes = rows.filter { $0.note != nil || $0.flushesPerOp != nil || $0.unit != nil }
        if !notes.isEmpty {
            out += "\nnotes:\n"
            for row in notes {
                var parts: [String] = []
                if let unit = row.unit { parts.append("\(Format.fixed(row.median, 1)) \(unit) (a value, not ns)") }
                if let flushes = row.flushesPerOp { parts.append("msync calls per op: \(Format.fixed(flushes, 2)) (counted)") }
                if let note = row.note { parts.append(note) }
                out += "  \(row.op): \(parts.joined(separator: "; "))\n"
            }
        }
        return out
    }

    static func json(_ rows: [Row], settings: Settings, machine: Machine, floor: Floor?, workspace: Workspace,
                     allocationNote: String?) -> String {
        func number(_ value: Double?) -> String {
            guard let value, value.isFinite else { return "null" }
            return Format.fixed(value, 3)
        }
        var items: [String] = []
        for row in rows {
            // A value row has no times: its value and unit instead.
            let time = row.unit == nil
            var fields: [(String, String)] = [
                ("op", quote(row.op)), ("medium", quote(row.medium)),
                ("median_ns", number(time ? row.median : nil)), ("min_ns", number(time ? row.minimum : nil)),
                ("max_ns", number(time ? row.maximum : nil)),
                ("allocations_per_op", number(row.allocationsPerOp)),
                ("floor_op", row.floor.map { quote($0.op) } ?? "null"),
                ("floor_median_ns", number(row.floorMedian)),
                ("ratio", number(row.ratio)),
                ("floor_same_work", row.floor.map { $0.sameWork ? "true" : "false" } ?? "null"),
                ("repetitions", String(row.samples.count)),
                ("ops_per_repetition", String(row.opsPerRepetition)),
            ]
            if let flushes = row.flushesPerOp { fields.append(("flushes_per_op", number(flushes))) }
            if let unit = row.unit { fields.append(contentsOf: [("value", number(row.median)), ("unit", quote(unit))]) }
            if let note = row.note { fields.append(("note", quote(note))) }
            items.append("{" + fields.map { "\(quote($0.0)):\($0.1)" }.joined(separator: ",") + "}")
        }
        let machineFields = [
            "\"cpu\":\(quote(machine.cpu))", "\"cpus\":\(machine.cpus)", "\"kernel\":\(quote(machine.kernel))",
            "\"load_average\":\(quote(machine.loadAverage))",
            "\"shm_dir\":\(quote(settings.shmDirectory))", "\"disk_dir\":\(quote(settings.diskDirectory))",
        ]
        var top = [
            "\"rows\":[\n" + items.joined(separator: ",\n") + "\n]",
            "\"machine\":{" + machineFields.joined(separator: ",") + "}",
            "\"quick\":\(settings.quick)",
            "\"repetitions\":\(settings.repetitions)",
            "\"allocations\":\(quote(allocationsExplained + (allocationNote.map { " " + $0 } ?? "")))",
            "\"floor\":\(floor.map { quote($0.source) } ?? "null")",
        ]
        if let warning = workspace.diskWarning { top.append("\"warning\":\(quote(warning))") }
        return "{" + top.joined(separator: ",\n") + "}\n"
    }

    static func quote(_ text: String) -> String {
        var result = "\""
        for scalar in text.unicodeScalars {
            switch scalar {
            case "\"": result += "\\\""
            case "\\": result += "\\\\"
            case "\n": result += "\\n"
            case "\t": result += "\\t"
            case "\r": result += "\\r"
            default:
                if scalar.value < 0x20 {
                    let hex = String(scalar.value, radix: 16)
                    result += "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
                } else {
                    result.unicodeScalars.append(scalar)
                }
            }
        }
        return result + "\""
    }
}
