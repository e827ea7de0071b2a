import SlotStore

/// `slotstore set PATH FIELD[INDEX] VALUE` or `PATH MAP[KEY] VALUE`
enum SetCommand: Command {
    static let name = "set"
    static let abstract = "replace one field's value, array element or map entry (checked against its type)"
    static let usage = """
    usage: slotstore set PATH FIELD VALUE [--json] [--lock-timeout T]
           slotstore set PATH FIELD[INDEX] VALUE [--json] [--lock-timeout T]
           slotstore set PATH MAP[KEY] VALUE [--ttl T] [--json] [--lock-timeout T]
           slotstore set PATH MAP --key K VALUE [--ttl T] [--json] [--lock-timeout T]
      VALUE is parsed by the field's stored type: 42, -1.5, nan, true, text for
      strings, 0x0a0b or text for bytes, a JSON array [1,2,3] for arrays, and
      for maps a JSON list of entries [{"key":"a","value":1}, …], which becomes
      the map's whole content. FIELD[INDEX] sets one element of an array (from 0).
      MAP[KEY] inserts or replaces one entry, VALUE parsed by the map's value
      type; a full map that may grow grows first. \(GetCommand.keyRules)
      A value that does not fit the type or capacity is an error; nothing is written.
      --key K              the map key as one whole argument, instead of in brackets
      --ttl T              the entry expires T after now (30s, 500ms, 2m, 1h, 7d), in a map with
                           a cache policy; without it the entry never expires; in a full map
                           that evicts, says when a live entry was evicted to make room
      --json               print {"field": NAME, "value": VALUE} of the stored value
                           ({"field": MAP, "key": KEY, "value": VALUE} for an entry)
    \(Settings.lockTimeoutUsage)
    """

    /// The options after the positionals; a new option is one more field and one more line in `parse`.
    struct Options {
        var key: String?
        var json = false
        var ttl: Duration?

        static func parse(_ arguments: inout Arguments) throws -> Options {
            var options = Options()
            options.key = try arguments.option("--key")
            options.json = arguments.flag("--json")
            options.ttl = try arguments.timeToLiveOption("--ttl")
            Settings.lockTimeout = try arguments.durationOption("--lock-timeout") ?? Settings.lockTimeout
            return options
        }
    }

    static func run(_ arguments: inout Arguments) throws -> Int32 {
        let path = try arguments.positional("store path")
        let reference = try FieldReference(arguments.positional(FieldReference.synopsis))
        let text = try arguments.positional("VALUE")
        let options = try Options.parse(&arguments)
        try arguments.finish()
        return try LockWait.run(path: path) {
            try write(path: path, reference: reference, text: text, options: options)
        }
    }

    private static func write(path: String, reference: FieldReference, text: String, options: Options) throws -> Int32 {
        let store = try SlotStore(path: path, options: Settings.options(.open))
        defer { store.close() }
        let target = try reference.resolve(in: store.schema, path: path, key: options.key)
        guard let declared = store.schema.field(named: target.name)?.type else {
            throw SlotStoreError.unknownField(path: path, name: target.name, available: store.schema.fields.map(\.name))
        }
        if options.ttl != nil {
            guard case .entry = target, case .map = declared else {
                throw UsageError("--ttl sets one map entry's time to live: name the entry as MAP[KEY] (or MAP --key K)")
            }
        }
        let stored: FieldValue?
        switch (target, declared) {
        case (.whole(let name), _):
            // A map that grows takes up to its maximum: `setValue` grows it to
            // what the entries need before writing them.
            var parseAs = declared
            if case .map(let key, let value, _) = declared, let growth = store.schema.field(named: name)?.growth {
                parseAs = .map(key: key, value: value, capacity: growth.maxCapacity)
            }
            try store.setValue(try FieldValue.parse(text, as: parseAs, field: name, path: path), for: name)
            stored = try store.value(of: name)
        case (.element(let name, let index), .array(let element, _)):
            try store.setValue(try FieldValue.parse(text, as: .scalar(element), field: target.description, path: path), for: name, at: index)
            stored = try store.value(of: name, at: index)
        case (.entry(let name, let key), .map(_, let valueType, _)):
            let outcome = try store.setValue(try FieldValue.parse(text, as: valueType, field: target.description, path: path),
                                             for: name, key: key, ttl: options.ttl)
            if outcome.forcible { Output.error("\(path): \(outcome.evicted) live entry of \(name) evicted to make room") }
            stored = try store.value(of: name, key: key)
        default:
            throw SlotStoreError.invalidValue(path: path, field: target.name, detail: "\(target.description) does not match \(declared)")
        }
        // Another process may remove the entry between the write and this read.
        guard let stored else {
            Output.out("\(target.description) was set, and removed by another process before it could be read back")
            return ExitStatus.success
        }
        if options.json { try JSONOutput.print(target.report(stored)) }
        else { Output.out("\(target.description) = \(stored)") }
        return ExitStatus.success
    }
}
