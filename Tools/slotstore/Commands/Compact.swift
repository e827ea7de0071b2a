import Foundation
@_spi(Tools) import SlotStore

/// `slotstore compact PATH`
enum CompactCommand: Command {
    static let name = "compact"
    static let abstract = "rewrite a store: drop tombstones, resize maps, migrate the schema, upgrade the format"
    static let usage = """
    usage: slotstore compact PATH [--schema NEW.json] [--capacity FIELD=N ...] [--output NEWPATH]
                                  [--allow-narrowing] [--allow-retyping] [--allow-dropping]
                                  [--dry-run] [--json] [--quiet] [--lock-timeout T]
      Writes a new store with maps rebuilt (tombstones gone, at a new capacity if
      asked), values carried into the new schema by field name, and the current
      format. Adding fields, widening numbers and growing capacities are always
      allowed; narrowing, retyping and dropping need their flag, and a value that
      does not fit its new type stops the compaction with nothing changed.
      Without --output, the result replaces PATH atomically, also while other
      processes use the store: they carry on in the new file. While they do, it
      may only add fields, grow strings and bytes, and change a map's capacity;
      other changes need them to close it first. With --output, PATH stays
      in service and the result is a snapshot.
      --schema NEW.json    migrate to this schema (the format `slotstore create` takes); fields
                           are matched by name; without it the stored schema is kept
      --capacity FIELD=N   new capacity of a map, string or bytes field (or an array's count); repeatable
      --output NEWPATH     write the result to NEWPATH (which must not exist) and leave PATH as it is
      --allow-narrowing    allow a smaller number type or capacity, if every stored value fits
      --allow-retyping     allow another type (numbers, Booleans and strings convert), if every
                           stored value converts back to exactly itself
      --allow-dropping     allow fields of PATH that the new schema lacks to be dropped with their values
      --dry-run            print the plan (sizes before and after, each field's fate) and change
                           nothing; says if the compaction would be refused now because other
                           processes have the store open
      --json               print the plan as JSON: {path, output, bytesBefore, bytesAfter, formatBefore,
                           formatAfter, schemaVersion, dryRun, fields: [{name, fate, from, to}],
                           refusedWhileInUse (dry run, only when it would be)}
      --quiet              no progress on standard error (shown for compactions over a second:
                           a bar on a terminal, one line per step otherwise)
    \(Settings.lockTimeoutUsage)
    """

    static func run(_ arguments: inout Arguments) throws -> Int32 {
        let path = try arguments.positional("store path")
        let schemaPath = try arguments.option("--schema")
        var capacities: [String: Int] = [:]
        while let text = try arguments.option("--capacity") {
            let parts = text.split(separator: "=", maxSplits: 1).map(String.init)
            guard parts.count == 2, !parts[0].isEmpty, let capacity = Int(parts[1]), capacity > 0 else {
                throw UsageError("--capacity takes FIELD=N with a positive whole number, found \"\(text)\"")
            }
            capacities[parts[0]] = capacity
        }
        let output = try arguments.option("--output")
        let migration = MigrationOptions(allowNarrowing: arguments.flag("--allow-narrowing"),
                                         allowRetyping: arguments.flag("--allow-retyping"),
                                         allowDropping: arguments.flag("--allow-dropping"))
        let dryRun = arguments.flag("--dry-run")
        let json = arguments.flag("--json")
        let quiet = arguments.flag("--quiet")
        Settings.lockTimeout = try arguments.durationOption("--lock-timeout") ?? Settings.lockTimeout
        try arguments.finish()
        let schema = try schemaPath.map { try Schema(json: Array(readInputFile($0, what: "schema")), source: $0) }
        let plan = try LockWait.run(path: path) {
            try ProgressDisplay.run(quiet: quiet) { progress in
                try SlotStore.compact(at: path, output: output, schema: schema, capacities: capacities,
                                      migration: migration, dryRun: dryRun, allowOtherOwner: Settings.allowOtherOwner,
                                      lockTimeout: Settings.lockTimeout, progress: progress)
            }
        }
        if json {
            try JSONOutput.print(plan)
            return ExitStatus.success
        }
        Output.out("\(plan.path) → \(plan.output)\(dryRun ? " (dry run: nothing written)" : "")")
        Output.out("  size     \(plan.bytesBefore) → \(plan.bytesAfter) bytes")
        Output.out("  format   \(plan.formatBefore) → \(plan.formatAfter); schema version \(plan.schemaVersion)")
        for field in plan.fields {
            let change = switch (field.from, field.to) {
            case (let from?, let to?) where from == to: from
            case (let from?, let to?): "\(from) → \(to)"
            case (nil, let to?): "new, \(to)"
            case (let from?, nil): "dropped, was \(from)"
            default: ""
            }
            Output.out("  \(field.fate.padding(toLength: 7, withPad: " ", startingAt: 0))  \(field.name): \(change)")
        }
        if let refusal = plan.refusedWhileInUse {
            Output.out("  refused  \(refusal) (`slotstore inspect \(path)` lists them)")
        }
        return ExitStatus.success
    }
}
