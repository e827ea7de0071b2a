import SlotStore

/// `slotstore add PATH FIELD N`
enum AddCommand: Command {
    static let name = "add"
    static let abstract = "add to a numeric field atomically (no overflow)"
    static let usage = """
    usage: slotstore add PATH FIELD N [--json] [--lock-timeout T]
      Adds N (negative to subtract) to an integer or floating-point field in one
      atomic step, under the store's lock, and prints the new value. An integer
      result outside the field's range is an error and the value stays unchanged.
      --json               print {"field": NAME, "value": NEW-VALUE}
    \(Settings.lockTimeoutUsage)
    """

    static func run(_ arguments: inout Arguments) throws -> Int32 {
        let path = try arguments.positional("store path")
        let field = try arguments.positional("FIELD")
        let text = try arguments.positional("N")
        let json = arguments.flag("--json")
        Settings.lockTimeout = try arguments.durationOption("--lock-timeout") ?? Settings.lockTimeout
        try arguments.finish()
        let delta: FieldValue
        if let integer = Int64(text) { delta = .int(integer) }
        else if let number = Double(text), number.isFinite { delta = .double(number) }
        else { throw UsageError("N must be a number, found \"\(text)\"") }
        let result = try LockWait.run(path: path) {
            let store = try SlotStore(path: path, options: Settings.options(.open))
            defer { store.close() }
            return try store.add(delta, to: field)
        }
        if json { try JSONOutput.print(FieldValueReport(field: field, value: result)) }
        else { Output.out(result.description) }
        return ExitStatus.success
    }
}
