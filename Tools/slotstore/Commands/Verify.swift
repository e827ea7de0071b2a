@_spi(Tools) import SlotStore

/// `slotstore verify PATH`
enum VerifyCommand: Command {
    static let name = "verify"
    static let abstract = "check a store's integrity (never writes); exit 1 on any finding"
    static let usage = """
    usage: slotstore verify PATH [--json] [--quiet]
      Checks magic, version, both header copies and checksums, sizes against the
      file, the stored schema, the field layout, the journal, the lock and each
      field's invariants. Prints every finding; exits 0 when clean, 1 when
      anything was found, 2 when there is no file to check. Never writes.
      Maps are read a few MiB at a time, so memory stays flat whatever their size.
      --json    print {"path": …, "ok": …, "checked": […], "findings": [{"code": …, "message": …}], "notes": […]}
      --quiet   no progress on standard error (shown for checks over a second)
    """

    struct Report: Encodable {
        let path: String
        let ok: Bool
        let checked: [String]
        let findings: [VerificationReport.Finding]
        let notes: [String]
    }

    static func run(_ arguments: inout Arguments) throws -> Int32 {
        let path = try arguments.positional("store path")
        let json = arguments.flag("--json")
        let quiet = arguments.flag("--quiet")
        try arguments.finish()
        let report = try ProgressDisplay.run(quiet: quiet) { progress in try SlotStore.verify(at: path, progress: progress) }
        if json {
            try JSONOutput.print(Report(path: report.path, ok: report.ok, checked: report.checked, findings: report.findings,
                                        notes: report.notes))
        } else if report.ok {
            Output.out("\(path): ok (checked \(report.checked.joined(separator: ", ")))")
            for note in report.notes { Output.out("  note: \(note)") }
        } else {
            Output.out("\(path): \(report.findings.count) problem\(report.findings.count == 1 ? "" : "s") found")
            for finding in report.findings { Output.out("  \(finding)") }
            for note in report.notes { Output.out("  note: \(note)") }
        }
        return report.ok ? ExitStatus.success : ExitStatus.problem
    }
}
