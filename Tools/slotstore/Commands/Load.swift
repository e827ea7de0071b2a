import Glibc
@_spi(Tools) import SlotStore

/// `slotstore load PATH DUMP.json`
enum LoadCommand: Command {
    static let name = "load"
    static let abstract = "write every value of a dump in one transaction (creating the store if needed)"
    static let usage = """
    usage: slotstore load PATH DUMP.json [--mode 0644] [--json] [--quiet] [--lock-timeout T]
      Reads the dump as it goes (never the whole file in memory). If PATH does
      not exist, a store is created from the dump's schema under a hidden name
      beside PATH, filled as the dump is read, flushed, and put in place only
      when complete: a refused or interrupted load leaves nothing at PATH.
      Into an existing store, every value is checked against the stored schema
      first (one pass over the dump), then all are written in one transaction
      (a second pass): all or nothing. Fields the dump lacks keep their values.
      Errors name the dump's line and column.
      --mode OCTAL   permissions of a created store (default 0600)
      --json         print {"path": …, "created": …, "fields": N}
      --quiet        no progress on standard error (shown for loads over a second)
    \(Settings.lockTimeoutUsage)
    """

    struct Report: Encodable {
        let path: String
        let created: Bool
        let fields: Int
    }

    static func run(_ arguments: inout Arguments) throws -> Int32 {
        let path = try arguments.positional("store path")
        let dumpPath = try arguments.positional("dump file")
        let modeText = try arguments.option("--mode") ?? "0600"
        guard let mode = UInt32(modeText, radix: 8), mode <= 0o7777 else {
            throw UsageError("--mode takes octal permissions such as 0600 or 0644, found \"\(modeText)\"")
        }
        let json = arguments.flag("--json")
        let quiet = arguments.flag("--quiet")
        Settings.lockTimeout = try arguments.durationOption("--lock-timeout") ?? Settings.lockTimeout
        try arguments.finish()
        let report = try LockWait.run(path: path) {
            try ProgressDisplay.run(quiet: quiet) { progress in
                try SlotStore.load(dumpAt: dumpPath, into: path, options: Settings.options(.open, fileMode: mode), progress: progress)
            }
        }
        if json { try JSONOutput.print(Report(path: path, created: report.created, fields: report.fields)) }
        else { Output.out("loaded \(Plural.count(report.fields, "field")) into \(path)\(report.created ? " (created)" : "")") }
        return ExitStatus.success
    }
}
