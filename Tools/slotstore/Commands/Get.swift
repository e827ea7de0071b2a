import SlotStore

/// `slotstore get PATH FIELD[INDEX]`
enum GetCommand: Command {
    static let name = "get"
    static let abstract = "print one field's value"
    static let usage = """
    usage: slotstore get PATH FIELD [--json] [--lock-timeout T]
           slotstore get PATH FIELD[INDEX] [--json] [--lock-timeout T]
      Prints the value typed by the stored schema: numbers and true/false bare,
      strings as text, bytes as 0x… hex, arrays as [a, b, …], maps as
      {"key": value, …}. FIELD[INDEX] prints one element of an array (from 0).
      Numbers are read lock-free; a string, bytes, array or map read waits
      while a write of it is in progress, up to the lock timeout.
      --json               print {"field": NAME, "value": VALUE} (bytes as {"base64": …},
                           a map as [{"key": K, "value": V}, …])
    \(Settings.lockTimeoutUsage)
    """

    static func run(_ arguments: inout Arguments) throws -> Int32 {
        let path = try arguments.positional("store path")
        let field = try FieldReference(arguments.positional("FIELD or FIELD[INDEX]"))
        let json = arguments.flag("--json")
        Settings.lockTimeout = try arguments.durationOption("--lock-timeout") ?? Settings.lockTimeout
        try arguments.finish()
        let value = try LockWait.run(path: path) {
            let store = try SlotStore(path: path, options: Settings.options(.open))
            defer { store.close() }
            return try field.index.map { try store.value(of: field.name, at: $0) } ?? store.value(of: field.name)
        }
        if json {
            try JSONOutput.print(FieldValueReport(field: field.description, value: value))
        } else if case .string(let text) = value {
            Output.out(text)
        } else {
            Output.out(value.description)
        }
        return ExitStatus.success
    }
}

/// The `--json` shape of get, set and add.
struct FieldValueReport: Encodable {
    let field: String
    let value: FieldValue
}
