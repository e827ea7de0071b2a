import SlotStore

/// `slotstore add PATH FIELD N`
enum AddCommand: Command {
    static let name = "add"
    static let abstract = "add to a numeric field atomically (no overflow)"
    static let usage = """
    usage: slotstore add PATH FIELD N [--json]
      Adds N (negative to subtract) to an integer or floating-point field in one
      atomic step and prints the new value. An integer result outside the field's
      range is an error and the value stays unchanged.
      --json   print {"field": NAME, "value": NEW-VALUE}
    """

    static func run(_ arguments: inout Arguments) throws -> Int32 {
        let path = try arguments.positional("store path")
        let field = try arguments.positional("FIELD")
        let text = try arguments.positional("N")
        let json = arguments.flag("--json")
        try arguments.finish()
        let delta: FieldValue
        if let integer = Int64(text) { delta = .int(integer) }
        else if let number = Double(text), number.isFinite { delta = .double(number) }
        else { throw UsageError("N must be a number, found \"\(text)\"") }
        let store = try SlotStore(path: path, options: Settings.options(.open))
        defer { store.close() }
        let result = try store.add(delta, to: field)
        if json { try JSONOutput.print(FieldValueReport(field: field, value: result)) }
        else { Output.out(result.description) }
        return ExitStatus.success
    }
}
