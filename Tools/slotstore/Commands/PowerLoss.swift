import Foundation
import SlotStore

/// `slotstore _power-loss explore|workload|check`: the crash-state explorer
/// (see `PowerLossExplorer`) and the processes it starts.
enum PowerLossCommand: Command {
    static let name = "_power-loss"
    static let abstract = "the crash-state explorer: power-loss images of a durable workload, each checked"
    static let hidden = true
    static let usage = """
    usage: slotstore _power-loss explore [--seed N] [--images N] [--transactions N] [--jobs N]
                                         [--recovery-every N] [--dir DIR] [--keep DIR]
      Runs a seeded durable workload (scalars, a whole array, a string of 3 bytes to 24 KB,
      bytes, map inserts, replacements and removals, rolled-back attempts, commits with and
      without seals) with every flush recorded, then builds the disk images a power loss
      could leave (each page at its last flushed version or a newer one up to the crash,
      whole or torn at 512-byte sectors; systematic per crash point, then seeded random
      mixes), opens each in a fresh process and checks: exactly the last acknowledged
      transaction or the one in flight, whole; verify clean; a reopen reads the same.
      Every N-th image (--recovery-every, default 20; 0 for none) also has its recovery's
      own flushes cut off the same way. Exit 0 when every image passed, 1 otherwise.
        --seed N            workload and image seed (default 1)
        --images N          images to check (default 400)
        --transactions N    attempts in the workload (default 16)
        --jobs N            checks at a time (default 2)
        --dir DIR           folder for the working files (default the temporary folder)
        --keep DIR          copy failing images into DIR
    usage: slotstore _power-loss workload PATH --seed N --transactions N
      The workload alone (SLOTSTORE_FLUSH_LOG must name the log).
    usage: slotstore _power-loss check PATH
      Opens a crash image, prints "state …", "verify …", "reopen same|differs …".
    """

    static func run(_ arguments: inout Arguments) throws -> Int32 {
        let action = try arguments.positional("action (explore, workload or check)")
        switch action {
        case "explore":
            var settings = PowerLossExplorer.Settings()
            settings.seed = UInt64(try number(&arguments, "--seed") ?? 1)
            settings.images = try number(&arguments, "--images") ?? settings.images
            settings.transactions = try number(&arguments, "--transactions") ?? settings.transactions
            settings.jobs = try number(&arguments, "--jobs") ?? settings.jobs
            settings.recoveryEvery = try number(&arguments, "--recovery-every") ?? settings.recoveryEvery
            settings.directory = try arguments.option("--dir") ?? settings.directory
            settings.keep = try arguments.option("--keep")
            try arguments.finish()
            var explorer = try PowerLossExplorer(settings: settings)
            defer { explorer.removeWorkDirectory() }
            return try explorer.run() ? ExitStatus.success : ExitStatus.problem
        case "workload":
            let path = try arguments.positional("store path")
            let seed = UInt64(try number(&arguments, "--seed") ?? 1)
            let transactions = try number(&arguments, "--transactions") ?? 16
            try arguments.finish()
            guard let log = ProcessInfo.processInfo.environment["SLOTSTORE_FLUSH_LOG"] else {
                throw UsageError("the workload appends to the flush log: set SLOTSTORE_FLUSH_LOG to its path")
            }
            try PowerLossWorkload.run(path: path, seed: seed, transactions: transactions, log: log)
            return ExitStatus.success
        case "check":
            let path = try arguments.positional("image path")
            try arguments.finish()
            try PowerLossWorkload.check(path: path, log: ProcessInfo.processInfo.environment["SLOTSTORE_FLUSH_LOG"])
            return ExitStatus.success
        default:
            throw UsageError("expected explore, workload or check, found \"\(action)\"")
        }
    }

    private static func number(_ arguments: inout Arguments, _ option: String) throws -> Int? {
        guard let text = try arguments.option(option) else { return nil }
        guard let value = Int(text), value >= 0 else {
            throw UsageError("\(option) expects a whole number of at least 0, found \"\(text)\"")
        }
        return value
    }
}
