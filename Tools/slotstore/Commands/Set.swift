import SlotStore

/// `slotstore set PATH FIELD[INDEX] VALUE`
enum SetCommand: Command {
    static let name = "set"
    static let abstract = "replace one field's value (checked against its type)"
    static let usage = """
    usage: slotstore set PATH FIELD VALUE [--json] [--lock-timeout T]
           slotstore set PATH FIELD[INDEX] VALUE [--json] [--lock-timeout T]
      VALUE is parsed by the field's stored type: 42, -1.5, nan, true, text for
      strings, 0x0a0b or text for bytes, a JSON array [1,2,3] for arrays, and
      for maps a JSON list of entries [{"key":"a","value":1}, …], which becomes
      the map's whole content. FIELD[INDEX] sets one element of an array (from 0).
      A value that does not fit the type or capacity is an error; nothing is written.
      --json               print {"field": NAME, "value": VALUE} of the stored value
    \(Settings.lockTimeoutUsage)
    """

    static func run(_ arguments: inout Arguments) throws -> Int32 {
        let path = try arguments.positional("store path")
        let field = try FieldReference(arguments.positional("FIELD or FIELD[INDEX]"))
        let text = try arguments.positional("VALUE")
        let json = arguments.flag("--json")
        Settings.lockTimeout = try arguments.durationOption("--lock-timeout") ?? Settings.lockTimeout
        try arguments.finish()
        return try LockWait.run(path: path) {
            try write(path: path, field: field, text: text, json: json)
        }
    }

    private static func write(path: String, field: FieldReference, text: String, json: Bool) throws -> Int32 {
        let store = try SlotStore(path: path, options: Settings.options(.open))
        defer { store.close() }
        guard let declared = store.schema.field(named: field.name) else {
            _ = try store.value(of: field.name)  // throws the unknown-field error with the list of fields
            return ExitStatus.usage
        }
        var type = declared.type
        if field.index != nil {
            guard case .array(let element, _) = declared.type else {
                throw SlotStoreError.invalidValue(path: path, field: field.name, detail: "an index needs an array field, and \(field.name) is \(declared.type)")
            }
            type = .scalar(element)
        }
        let value = try FieldValue.parse(text, as: type, field: field.description, path: path)
        if let index = field.index {
            try store.setValue(value, for: field.name, at: index)
        } else {
            try store.setValue(value, for: field.name)
        }
        let stored = try field.index.map { try store.value(of: field.name, at: $0) } ?? store.value(of: field.name)
        if json { try JSONOutput.print(FieldValueReport(field: field.description, value: stored)) }
        else { Output.out("\(field.description) = \(stored)") }
        return ExitStatus.success
    }
}
