import SlotStore

/// `slotstore get PATH FIELD[INDEX]` or `PATH MAP[KEY]`
enum GetCommand: Command {
    static let name = "get"
    static let abstract = "print one field's value, array element or map entry"
    static let usage = """
    usage: slotstore get PATH FIELD [--json] [--lock-timeout T]
           slotstore get PATH FIELD[INDEX] [--json] [--lock-timeout T]
           slotstore get PATH MAP[KEY] [--json] [--lock-timeout T]
           slotstore get PATH MAP --key K [--json] [--lock-timeout T]
      Prints the value typed by the stored schema: numbers and true/false bare,
      strings as text, bytes as 0x… hex, arrays as [a, b, …], maps as
      {"key": value, …}. FIELD[INDEX] prints one element of an array (from 0).
      MAP[KEY] prints one entry's value of a map; exit status 1, with a line on
      standard error, when the map has no such key. \(keyRules)
      Numbers are read lock-free; a string, bytes, array or map read waits
      while a write of it is in progress, up to the lock timeout.
      --key K              the map key as one whole argument, instead of in brackets
      --json               print {"field": NAME, "value": VALUE} (bytes as {"base64": …},
                           a map as [{"key": K, "value": V}, …]); for a map entry
                           {"field": MAP, "key": KEY, "value": VALUE}
    \(Settings.lockTimeoutUsage)
    """

    /// How keys are written, shared by get, set, add and remove.
    static let keyRules = """
    Keys are read by the map's key
      type: string keys as text (everything between the first [ and the last ]),
      integer keys in decimal or 0x hex, bytes keys as 0x and hex digit pairs.
    """

    static func run(_ arguments: inout Arguments) throws -> Int32 {
        let path = try arguments.positional("store path")
        let reference = try FieldReference(arguments.positional(FieldReference.synopsis))
        let key = try arguments.option("--key")
        let json = arguments.flag("--json")
        Settings.lockTimeout = try arguments.durationOption("--lock-timeout") ?? Settings.lockTimeout
        try arguments.finish()
        let (target, value) = try LockWait.run(path: path) { () throws -> (FieldTarget, FieldValue?) in
            let store = try SlotStore(path: path, options: Settings.options(.open))
            defer { store.close() }
            let target = try reference.resolve(in: store.schema, path: path, key: key)
            switch target {
            case .whole(let name): return (target, try store.value(of: name))
            case .element(let name, let index): return (target, try store.value(of: name, at: index))
            case .entry(let name, let key): return (target, try store.value(of: name, key: key))
            }
        }
        guard let value else {
            Output.error("slotstore get: \(path): map \"\(target.name)\" has no key \(target.keyDescription); "
                + "`slotstore get \(path) \(target.name)` lists its entries")
            return ExitStatus.problem
        }
        if json {
            try JSONOutput.print(target.report(value))
        } else if case .string(let text) = value {
            Output.out(text)
        } else {
            Output.out(value.description)
        }
        return ExitStatus.success
    }
}

/// The `--json` shape of get, set and add: `key` only for a map entry.
struct FieldValueReport: Encodable {
    let field: String
    let key: FieldValue?
    let value: FieldValue
}
