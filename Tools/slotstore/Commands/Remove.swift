import SlotStore

/// `slotstore remove PATH MAP[KEY]`
enum RemoveCommand: Command {
    static let name = "remove"
    static let abstract = "remove one entry of a map"
    static let usage = """
    usage: slotstore remove PATH MAP[KEY] [--json] [--lock-timeout T]
           slotstore remove PATH MAP --key K [--json] [--lock-timeout T]
      Removes the entry for KEY from a map, in one journaled step under the
      store's lock, and says whether it was there: exit status 0 when it was
      removed, 1 when the map had no such key (nothing changed).
      \(GetCommand.keyRules)
      --key K              the map key as one whole argument, instead of in brackets
      --json               print {"field": MAP, "key": KEY, "removed": true|false}
    \(Settings.lockTimeoutUsage)
    """

    static func run(_ arguments: inout Arguments) throws -> Int32 {
        let path = try arguments.positional("store path")
        let reference = try FieldReference(arguments.positional("MAP[KEY]"))
        let key = try arguments.option("--key")
        let json = arguments.flag("--json")
        Settings.lockTimeout = try arguments.durationOption("--lock-timeout") ?? Settings.lockTimeout
        try arguments.finish()
        let (target, entryKey, removed) = try LockWait.run(path: path) { () throws -> (FieldTarget, FieldValue, Bool) in
            let store = try SlotStore(path: path, options: Settings.options(.open))
            defer { store.close() }
            let target = try reference.resolve(in: store.schema, path: path, key: key)
            guard case .entry(let name, let key) = target else {
                let type = store.schema.field(named: target.name)?.type
                guard case .map? = type else {
                    throw SlotStoreError.wrongFieldType(path: path, name: target.name, expected: "map", found: type.map { "\($0)" } ?? "")
                }
                throw UsageError("remove needs a key: MAP[KEY] or MAP --key K; to empty the whole map use `slotstore set \(path) \(target.name) '[]'`")
            }
            return (target, key, try store.removeValue(of: name, key: key))
        }
        if json { try JSONOutput.print(RemovalReport(field: target.name, key: entryKey, removed: removed)) }
        else if removed { Output.out("removed \(target.description)") }
        else { Output.out("\(target.description) was not there; nothing removed") }
        return removed ? ExitStatus.success : ExitStatus.problem
    }
}

/// The `--json` shape of remove.
struct RemovalReport: Encodable {
    let field: String
    let key: FieldValue
    let removed: Bool
}
