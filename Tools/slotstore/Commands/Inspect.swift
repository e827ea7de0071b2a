import Foundation
@_spi(Tools) import SlotStore

/// `slotstore inspect PATH`: read-only, lock-free look at a store.
enum InspectCommand: Command {
    static let name = "inspect"
    static let abstract = "show a store's header, lock, journal and fields (read-only, no lock)"
    static let usage = """
    usage: slotstore inspect PATH [--json] [--quiet]
      Reads the file without mapping it or taking its lock, so it works on a store
      whose lock is stuck or whose owner is hung. Maps are read a few MiB at a
      time, so memory stays flat whatever their size.
      Lists the processes that have the store open (their PIDs, marked when they
      are in another PID namespace, such as another container), told by the
      locks the kernel holds for them, so a process that died is never listed,
      with the lock-region slots each holds when more than one (one per open of
      the store, and one per thread that has written lock-free).
      --json    print the report as JSON (keys: path, format, schema, regions, lock, journal,
                fields, attached)
      --quiet   no progress on standard error (shown for reads over a second)
    """

    static func run(_ arguments: inout Arguments) throws -> Int32 {
        let path = try arguments.positional("store path")
        let json = arguments.flag("--json")
        let quiet = arguments.flag("--quiet")
        try arguments.finish()
        let report = try ProgressDisplay.run(quiet: quiet) { progress in try SlotStore.inspect(at: path, progress: progress) }
        if json {
            try JSONOutput.print(report)
            return ExitStatus.success
        }
        let f = report.format
        var lines = [
            report.path,
            "  format    \(f.version), page \(f.pageSize), \(f.fileSize) bytes, generation \(f.generation), created \(f.createdAt)\(f.cacheLineAligned ? ", cache-line aligned" : "")",
            "  schema    version \(report.schema.version), hash \(report.schema.hash), \(Plural.count(report.schema.fields, "field"))",
            "  regions   " + report.regions.map { "\($0.name) \($0.offset)+\($0.size)" }.joined(separator: ", "),
            "  lock      " + describe(report.lock),
            "            acquisitions \(report.lock.acquisitions), recoveries \(report.lock.recoveries), resets \(report.lock.resets)"
                + (report.lock.lastRecoveredPID.map { ", last recovered from PID \($0)" + (report.lock.lastRecoveredInAnotherPIDNamespace ? " in another PID namespace" : "") } ?? "")
                + (report.lock.retirement == "live" ? "" : "; \(report.lock.retirement == "retiring" ? "being compacted in place right now" : report.lock.retirement)"),
            "  attached  " + describe(report.attached),
            "  journal   " + (report.journal.state == "clean" ? "clean" : "dirty: \(Plural.count(report.journal.records, "record")), \(Plural.count(report.journal.bytes, "byte"))"),
            "  fields",
        ]
        let nameWidth = max(4, report.fields.map(\.name.count).max() ?? 0)
        let typeWidth = max(4, report.fields.map(\.type.count).max() ?? 0)
        lines.append("    " + pad("name", nameWidth) + "  " + pad("type", typeWidth) + "  " + left("offset", 8) + "  " + left("size", 7) + "  value")
        for field in report.fields {
            lines.append("    " + pad(field.name, nameWidth) + "  " + pad(field.type, typeWidth) + "  " + left(String(field.offset), 8)
                         + "  " + left(String(field.size), 7) + "  "
                         + (field.midWrite ? "(mid-write; the journal holds the old value)"
                            : field.map.map(describe) 
                            ?? field.value?.description ?? "…"))
        }
        Output.out(lines.joined(separator: "\n"))
        return ExitStatus.success
    }

    /// A map's occupancy on one line: the load counts tombstones (they slow
    /// probes as entries do), with three decimals so 0.005 shows.
    static func describe(_ map: StoreInspection.MapStatistics) -> String {
        func lengths(_ probe: StoreInspection.ProbeLengths) -> String {
            "mean \(String(format: "%.2f", probe.mean)), p99 \(probe.p99), max \(probe.max)"
        }
        let entries = if let live = map.live, let expired = map.expired {
            "\(Plural.count(live, "live entry", plural: "live entries")), \(expired) expired (not yet reclaimed)"
        } else {
            Plural.count(map.count, "entry", plural: "entries")
        }
        return "\(entries), \(Plural.count(map.tombstones, "tombstone")), capacity \(map.capacity)"
            + (map.growth.map { " (\($0))" } ?? "") + (map.cache.map { ", cache: \($0)" } ?? "") + ", \(map.buckets) buckets, "
            + "load \(String(format: "%.3f", map.loadFactor)) (entries and tombstones); "
            + "probe length of a hit \(lengths(map.probeLengths)); of a miss \(lengths(map.missProbeLengths))"
    }

    /// "PID 12 (3 slots), PID 40 in another PID namespace", or "no process".
    static func describe(_ attached: [StoreInspection.AttachedProcess]) -> String {
        guard !attached.isEmpty else { return "no process" }
        return Plural.count(attached.count, "process", plural: "processes") + ": " + attached.map { process in
            "PID \(process.pid)" + (process.inAnotherPIDNamespace ? " in another PID namespace" : "")
                + (process.slots > 1 ? " (\(process.slots) slots)" : "")
        }.joined(separator: ", ")
    }

    static func describe(_ lock: StoreInspection.Lock) -> String {
        // A PID from another PID namespace (a container sharing the file)
        // names another process here, or none: say which namespace it is.
        let holder = "PID \(lock.holderPID.map(String.init) ?? "?")" + (lock.holderInAnotherPIDNamespace ? " in another PID namespace" : "")
        return switch lock.state {
        case "free": "free"
        case "held": "held by \(holder) (running)"
        case "stale": "stale: held by \(holder) before a reboot; the next first opener resets it"
        default: "needs recovery: held by \(holder), which is not running; the next writer recovers it"
        }
    }

    private static func pad(_ text: String, _ width: Int) -> String {
        text + String(repeating: " ", count: max(0, width - text.count))
    }

    private static func left(_ text: String, _ width: Int) -> String {
        String(repeating: " ", count: max(0, width - text.count)) + text
    }
}
