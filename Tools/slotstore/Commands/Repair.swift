@_spi(Tools) import SlotStore

/// `slotstore repair PATH`
enum RepairCommand: Command {
    static let name = "repair"
    static let abstract = "recover a dead holder's lock, roll back an interrupted write, restore the header"
    static let usage = """
    usage: slotstore repair PATH [--dry-run] [--json] [--lock-timeout T]
      With no running process holding the lock: recovers a dead holder's lock,
      rolls back an interrupted write, resets a lock left from before a reboot,
      and restores a damaged header from its copy. Says what it did. Refuses
      (exit 1) while a running process holds the lock, naming its PID.
      --dry-run   print what it would do and change nothing
      --json      print {"path": …, "dryRun": …, "actions": […], "refused": …}
    \(Settings.lockTimeoutUsage)
                           (repair takes the lock only to recover a dead holder's while
                           other processes have the store open)
    """

    static func run(_ arguments: inout Arguments) throws -> Int32 {
        let path = try arguments.positional("store path")
        let dryRun = arguments.flag("--dry-run")
        let json = arguments.flag("--json")
        Settings.lockTimeout = try arguments.durationOption("--lock-timeout") ?? Settings.lockTimeout
        try arguments.finish()
        let report = try LockWait.run(path: path) {
            try SlotStore.repair(at: path, dryRun: dryRun, allowOtherOwner: Settings.allowOtherOwner, lockTimeout: Settings.lockTimeout)
        }
        if json {
            try JSONOutput.print(report)
        } else if let refused = report.refused {
            Output.error("slotstore repair: \(path): refused: \(refused)")
        } else if report.actions.isEmpty {
            Output.out("\(path): nothing to repair")
        } else {
            Output.out("\(path): \(dryRun ? "would" : "did"):")
            for action in report.actions { Output.out("  - \(action)") }
        }
        return report.refused == nil ? ExitStatus.success : ExitStatus.problem
    }
}
