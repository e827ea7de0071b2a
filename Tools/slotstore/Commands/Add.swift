import SlotStore

/// `slotstore add PATH FIELD N` or `PATH MAP[KEY] N`
enum AddCommand: Command {
    static let name = "add"
    static let abstract = "add to a numeric field or map entry atomically (no overflow)"
    static let usage = """
    usage: slotstore add PATH FIELD N [--json] [--lock-timeout T]
           slotstore add PATH MAP[KEY] N [--json] [--lock-timeout T]
           slotstore add PATH MAP --key K N [--json] [--lock-timeout T]
      Adds N (negative to subtract) to an integer or floating-point field in one
      atomic step, under the store's lock, and prints the new value. An integer
      result outside the field's range is an error and the value stays unchanged.
      MAP[KEY] adds to one entry of a map of integer or floating-point values,
      inserting 0 first when the key is missing (a full map that may grow grows
      first). \(GetCommand.keyRules)
      --key K              the map key as one whole argument, instead of in brackets
      --json               print {"field": NAME, "value": NEW-VALUE}
                           ({"field": MAP, "key": KEY, "value": NEW-VALUE} for an entry)
    \(Settings.lockTimeoutUsage)
    """

    static func run(_ arguments: inout Arguments) throws -> Int32 {
        let path = try arguments.positional("store path")
        let reference = try FieldReference(arguments.positional("FIELD or MAP[KEY]"))
        let text = try arguments.positional("N")
        let key = try arguments.option("--key")
        let json = arguments.flag("--json")
        Settings.lockTimeout = try arguments.durationOption("--lock-timeout") ?? Settings.lockTimeout
        try arguments.finish()
        let delta: FieldValue
        if let integer = Int64(text) { delta = .int(integer) }
        else if let number = Double(text), number.isFinite { delta = .double(number) }
        else { throw UsageError("N must be a number, found \"\(text)\"") }
        let (target, result) = try LockWait.run(path: path) { () throws -> (FieldTarget, FieldValue) in
            let store = try SlotStore(path: path, options: Settings.options(.open))
            defer { store.close() }
            let target = try reference.resolve(in: store.schema, path: path, key: key)
            switch target {
            case .whole(let name):
                return (target, try store.add(delta, to: name))
            case .entry(let name, let key):
                return (target, try store.add(delta, to: name, key: key))
            case .element(let name, _):
                throw SlotStoreError.invalidValue(path: path, field: name,
                    detail: "add works on a whole numeric field or one map entry, not on an array element; use `slotstore set \(path) \(target.description) VALUE`")
            }
        }
        if json { try JSONOutput.print(target.report(result)) }
        else { Output.out(result.description) }
        return ExitStatus.success
    }
}
