import SlotStore

/// `slotstore _worker cache-set ...`: writes to a map with a cache policy,
/// for the multi-process tests of expiry and eviction.
enum CacheWorker {
    static let usage = """
      cache-set PATH FIELD COUNT ID TTL-MS [--clock-ms MS]
                                           set c<ID>-<i> to i for i < COUNT in a cache map, with a time to
                                           live of TTL-MS for even i (0: none), printing "set c<ID>-<i>
                                           evicted E" after each; --clock-ms: read deadlines on a manual
                                           clock standing at MS instead of the real-time clock (tests)
    """

    static func run(path: String, _ arguments: inout Arguments) throws -> Int32 {
        let clockMilliseconds = try arguments.option("--clock-ms")
        let field = try arguments.positional("field")
        let count = try WorkerCommand.number(arguments.positional("count"))
        let id = try arguments.positional("id")
        let ttl = try WorkerCommand.number(arguments.positional("ttl in milliseconds"))
        var options = OpenOptions()
        if let clockMilliseconds { options.clock = .manual(startingAt: Int64(try WorkerCommand.number(clockMilliseconds))) }
        let store = try SlotStore(path: path, options: options)
        let map = try store.map(field, key: String.self, value: Int64.self)
        for index in 0..<count {
            let key = "c\(id)-\(index)"
            let outcome = try map.set(Int64(index), for: key, ttl: ttl > 0 && index % 2 == 0 ? .milliseconds(ttl) : nil)
            Output.out("set \(key) evicted \(outcome.evicted)")
        }
        Output.out("done \(count)")
        return ExitStatus.success
    }
}
