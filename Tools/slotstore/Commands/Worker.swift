import Foundation
import Glibc
import SlotStore

/// `slotstore _worker ROLE ...`: the processes that the demo and the tests
/// start. Each role does one checkable job on a store and reports on stdout.
/// Fault points (crash tests) are chosen with the `SLOTSTORE_FAULT` variable.
enum WorkerCommand: Command {
    static let name = "_worker"
    static let abstract = "a worker process for the demo and the tests"
    static let hidden = true
    static let usage = """
    usage: slotstore _worker ROLE PATH ...
      increment PATH FIELD COUNT           add 1 to an int64 field COUNT times
      transfer PATH FROM TO COUNT SEED     move amounts between two int64 fields in transactions
      write-strings PATH FIELD COUNT ID    write self-checking strings
      read-strings PATH FIELD COUNT        read strings, exit 1 on a torn one
      write-arrays PATH FIELD COUNT ID     write whole arrays whose elements are all equal
      read-arrays PATH FIELD COUNT         snapshot arrays, exit 1 on a mixed one
      set-string PATH FIELD VALUE          one locked string write (for fault points)
      set-array PATH FIELD VALUE           one whole-array write of VALUE everywhere
      transfer-once PATH FROM TO AMOUNT    one transaction moving AMOUNT
      hold-lock PATH                       take the lock, print SLOTSTORE-HOLDING, wait to be killed
      open PATH SCHEMA-JSON                open or create, print "created" or "opened"
      demo PATH ID COUNT                   the demo's worker loop
      map-work PATH FIELD COUNT ID         add 1 to shared keys k0…k9; insert w<ID>-<i>, remove the odd ones
      map-set PATH FIELD KEY VALUE         one map insert or replace (string key, int64 value)
      map-remove PATH FIELD KEY            one map removal
      live-work PATH ID                    until the bool "stop" is set: add 1 to "hits", store the
                                           count in "slots"[ID], add 1 to "sessions"["w<ID>"], now and
                                           then store "note"; then print the count and the generation
      fork-use PATH                        (sample schema) write, fork; the child writes through the
                                           parent's store: prints "child-ready PID holder H" (H: the lock
                                           holder PID inside its transaction), adds 1 to "requests" until
                                           "enabled" is true, prints "child-done N generation G"; the
                                           parent waits for it and exits with its status
      fork-inherit PATH                    (sample schema) write, fork; the child never uses the store,
                                           prints "child-ready PID" and exits at end of input; the parent
                                           prints "parent-ready PID" and waits to be killed
    """

    static func run(_ arguments: inout Arguments) throws -> Int32 {
        let role = try arguments.positional("role")
        let path = try arguments.positional("store path")
        switch role {
        case "open":
            let json = try arguments.positional("schema JSON")
            let schema = try Schema(json: Array(json.utf8))
            let store = try SlotStore(path: path, schema: schema)
            Output.out(store.created ? "created" : "opened")
        case "increment":
            let store = try SlotStore(path: path)
            let counter = try store.scalar(try arguments.positional("field"), as: Int64.self)
            let count = try number(arguments.positional("count"))
            for _ in 0..<count { counter.add(1) }
            Output.out("done \(count)")
        case "transfer":
            let store = try SlotStore(path: path)
            let from = try store.scalar(try arguments.positional("from"), as: Int64.self)
            let to = try store.scalar(try arguments.positional("to"), as: Int64.self)
            let count = try number(arguments.positional("count"))
            var random = SplitMix(seed: UInt64(try number(arguments.positional("seed"))))
            for index in 0..<count {
                let amount = Int64(random.next() % 100)
                let (source, target) = index % 2 == 0 ? (from, to) : (to, from)
                try store.transaction { tx in
                    try tx.store(tx.load(source) - amount, to: source)
                    try tx.store(tx.load(target) + amount, to: target)
                }
            }
            Output.out("done \(count)")
        case "write-strings":
            let store = try SlotStore(path: path)
            let field = try store.string(try arguments.positional("field"))
            let count = try number(arguments.positional("count"))
            let id = try arguments.positional("id")
            for index in 0..<count {
                try field.store(SelfCheckingText.make("w\(id)-\(index)", length: 8 + index % (field.capacity - 24)))
            }
            Output.out("done \(count)")
        case "read-strings":
            let store = try SlotStore(path: path)
            let field = try store.string(try arguments.positional("field"))
            let count = try number(arguments.positional("count"))
            for _ in 0..<count {
                let value = try field.load()
                guard value.isEmpty || SelfCheckingText.isIntact(value) else {
                    Output.out("torn \(value)")
                    return ExitStatus.problem
                }
            }
            Output.out("done \(count)")
        case "write-arrays":
            let store = try SlotStore(path: path)
            let field = try store.array(try arguments.positional("field"), of: Int64.self)
            let count = try number(arguments.positional("count"))
            let id = Int64(try number(arguments.positional("id")))
            for index in 0..<count {
                try field.store([Int64](repeating: id * 1_000_000 + Int64(index), count: field.count))
            }
            Output.out("done \(count)")
        case "read-arrays":
            let store = try SlotStore(path: path)
            let field = try store.array(try arguments.positional("field"), of: Int64.self)
            let count = try number(arguments.positional("count"))
            var buffer: [Int64] = []
            for _ in 0..<count {
                try field.read(into: &buffer)
                guard Set(buffer).count == 1 else {
                    Output.out("torn \(buffer)")
                    return ExitStatus.problem
                }
            }
            Output.out("done \(count)")
        case "set-string":
            let store = try SlotStore(path: path)
            try store.string(try arguments.positional("field")).store(try arguments.positional("value"))
            Output.out("done")
        case "set-array":
            let store = try SlotStore(path: path)
            let field = try store.array(try arguments.positional("field"), of: Int64.self)
            let value = Int64(try number(arguments.positional("value")))
            try field.store([Int64](repeating: value, count: field.count))
            Output.out("done")
        case "transfer-once":
            let store = try SlotStore(path: path)
            let from = try store.scalar(try arguments.positional("from"), as: Int64.self)
            let to = try store.scalar(try arguments.positional("to"), as: Int64.self)
            let amount = Int64(try number(arguments.positional("amount")))
            try store.transaction { tx in
                try tx.store(tx.load(from) - amount, to: from)
                try tx.store(tx.load(to) + amount, to: to)
            }
            Output.out("done")
        case "hold-lock":
            let store = try SlotStore(path: path)
            try store.transaction { _ in
                Output.out("SLOTSTORE-HOLDING \(getpid())")
                while true { pause() }
            }
        case "map-work":
            let store = try SlotStore(path: path)
            let map = try store.map(try arguments.positional("field"), key: String.self, value: Int64.self)
            let count = try number(arguments.positional("count"))
            let id = try arguments.positional("id")
            for index in 0..<count {
                try map.add(1, for: "k\(index % 10)")
                try map.set(Int64(index), for: "w\(id)-\(index)")
                if index % 2 == 1 { try map.remove("w\(id)-\(index)") }
            }
            Output.out("done \(count)")
        case "map-set":
            let store = try SlotStore(path: path)
            let map = try store.map(try arguments.positional("field"), key: String.self, value: Int64.self)
            let key = try arguments.positional("key")
            try map.set(Int64(try number(arguments.positional("value"))), for: key)
            Output.out("done")
        case "map-remove":
            let store = try SlotStore(path: path)
            let map = try store.map(try arguments.positional("field"), key: String.self, value: Int64.self)
            Output.out(try map.remove(try arguments.positional("key")) ? "removed" : "absent")
        case "live-work":
            let id = try number(arguments.positional("id"))
            let store = try SlotStore(path: path)
            let hits = try store.scalar("hits", as: Int64.self)
            let stop = try store.scalar("stop", as: Bool.self)
            let slots = try store.array("slots", of: Int64.self)
            let note = try store.string("note")
            let sessions = try store.map("sessions", key: String.self, value: Int64.self)
            var done: Int64 = 0
            while !stop.load() {
                hits.add(1)                    // lock-free
                slots.store(done + 1, at: id)  // lock-free element store
                try sessions.add(1, for: "w\(id)")  // locked, journaled
                if done % 64 == 0 { try note.store("w\(id)-\(done)") }
                done += 1
            }
            Output.out("done \(done) generation \(store.generation)")
        case "fork-use", "fork-inherit":
            try arguments.finish()
            return try ForkWorker.run(path: path, childUsesStore: role == "fork-use")
        case "demo":
            return try DemoWorker.run(path: path, id: number(arguments.positional("id")),
                                      count: number(arguments.positional("count")))
        default:
            throw UsageError("unknown worker role \"\(role)\"")
        }
        try arguments.finish()
        return ExitStatus.success
    }

    static func number(_ text: String) throws(UsageError) -> Int {
        guard let value = Int(text), value >= 0 else { throw UsageError("expected a whole number, found \"\(text)\"") }
        return value
    }
}

/// The `fork()` workers: the tests never fork themselves (a forked copy of a
/// test runner with its threads is not something to run code in).
enum ForkWorker {
    static func run(path: String, childUsesStore: Bool) throws -> Int32 {
        // What the starting process let this one inherit (Foundation's
        // Process passes a socket whose closing tells it the process exited)
        // must not live on in the child, or the starter would take the
        // parent's death for the child's. The child closes exactly those, so
        // the store's descriptors, opened below, are all it inherits.
        let listed = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/fd")) ?? []
        // Still open once the listing's own descriptor is closed again.
        let inherited = listed.compactMap { Int32($0) }.filter { fd in
            var info = stat()
            return fd > 2 && fstat(fd, &info) == 0
        }
        let store = try SlotStore(path: path)
        let requests = try store.scalar("requests", as: Int64.self)
        let motd = try store.string("motd")
        let enabled = try store.scalar("enabled", as: Bool.self)
        // Before forking: a thread slot cached in this thread's TLS, the
        // lock taken once under this PID, both inherited by the child.
        requests.add(1)
        try motd.store("parent \(getpid())")
        let child = fork()
        guard child >= 0 else { throw UsageError("fork failed: \(String(cString: strerror(errno)))") }
        if child == 0 {
            for fd in inherited { close(fd) }
            // Only write(2) and _exit(2) around here: no buffered output or
            // exit handlers of the parent run twice.
            guard childUsesStore else {
                Output.out("child-ready \(getpid())")
                var byte: UInt8 = 0
                while read(STDIN_FILENO, &byte, 1) > 0 {}
                _exit(0)
            }
            do {
                requests.add(1)
                try motd.store("child \(getpid())")
                let holder = try store.transaction { _ in store.status.lockHolderPID ?? 0 }
                Output.out("child-ready \(getpid()) holder \(holder)")
                var count = 1
                while !enabled.load() {
                    requests.add(1)
                    count += 1
                    sched_yield()
                }
                try motd.store("child done")
                Output.out("child-done \(count) generation \(store.generation)")
                store.close()
                _exit(0)
            } catch {
                Output.error("child: \(error)")
                _exit(1)
            }
        }
        guard childUsesStore else {
            Output.out("parent-ready \(getpid())")
            while true { pause() }
        }
        var status: Int32 = 0
        while waitpid(child, &status, 0) < 0 && errno == EINTR {}
        store.close()
        return status & 0x7F == 0 ? (status >> 8) & 0xFF : ExitStatus.problem
    }
}

/// Text that carries its own checksum, so a reader can tell a torn value.
enum SelfCheckingText {
    static func make(_ prefix: String, length: Int) -> String {
        var body = prefix + ":"
        while body.utf8.count < length { body += String(body.utf8.count % 10) }
        return body + "#" + String(checksum(body), radix: 16)
    }

    static func isIntact(_ text: String) -> Bool {
        guard let hash = text.lastIndex(of: "#") else { return false }
        return String(checksum(String(text[..<hash])), radix: 16) == text[text.index(after: hash)...]
    }

    private static func checksum(_ text: String) -> UInt32 {
        var hash: UInt32 = 2_166_136_261
        for byte in text.utf8 { hash = (hash ^ UInt32(byte)) &* 16_777_619 }
        return hash
    }
}

/// A small seeded generator (SplitMix64), so runs are reproducible.
struct SplitMix {
    private var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
