import CSlotStore
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
      set-element PATH FIELD INDEX VALUE   one lock-free int64 element store (for the elementWrite fault point)
      add-element PATH FIELD INDEX DELTA   one lock-free int64 element add (for the elementWrite fault point)
      add-elements PATH FIELD COUNT        add 1 to element i % count of an int64 array for i in 0..<COUNT
                                           (COUNT 0: until the bool "stop" is set); print the number of
                                           adds and the generation
      transfer-once PATH FROM TO AMOUNT    one transaction moving AMOUNT
      hold-lock PATH                       take the lock, print SLOTSTORE-HOLDING, wait to be killed
      lock-rounds PATH ID TIMEOUT-MS       while "round" is odd: add 1 to "n" in a transaction (2 IDs in 3
                                           sleep 100 us inside it); a lockTimeout adds 1 to "timeouts";
                                           at each even round add 1 to "parked" and wait; end when < 0
      open PATH SCHEMA-JSON                open or create, print "created" or "opened"
      demo PATH ID COUNT PAUSE             the demo's worker loop: after increment PAUSE (0: never), wait for
                                           the bool "compacting"; print "finished in generation G"
      map-work PATH FIELD COUNT ID         add 1 to shared keys k0…k9; insert w<ID>-<i>, remove the odd ones
      map-grow PATH FIELD COUNT ID         set g<ID>-<i> to i for i < COUNT in a map that grows, storing i + 1
                                           in the int64 array "progress"[ID] after each; print "done COUNT
                                           generation G"
      map-set PATH FIELD KEY VALUE         one map insert or replace (string key, int64 value)
    \(CacheWorker.usage)
      map-remove PATH FIELD KEY            one map removal
      compact-loop PATH COUNT              compact in place COUNT times, one after another
      map-churn PATH FIELD COUNT ID LIVE   insert c<ID>-<i> (value i) for i < COUNT, removing c<ID>-<i-LIVE>
                                           after each; int64 "high" is 1 + the last inserted i, and "low" is
                                           set past an i before c<ID>-<i> is removed; every 8th step a
                                           transaction removes t<ID>-0…3 and aborts
      map-read-present PATH FIELD KEYS ID WALK
                                           until the key "stop" is present: get and contains p0…p<KEYS-1>
                                           (value its index) and the live c<ID>-<i> between "low" and "high";
                                           every WALK-th round entries() (each key present all along exactly
                                           once); exit 1 on a miss of a key present all along; print counts
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
        case "set-element":
            let store = try SlotStore(path: path)
            let field = try store.array(try arguments.positional("field"), of: Int64.self)
            let index = try number(arguments.positional("index"))
            let value = Int64(try number(arguments.positional("value")))
            guard index < field.count else { throw UsageError("index \(index) is out of range 0..<\(field.count)") }
            field.store(value, at: index)
            Output.out("done")
        case "add-element":
            let store = try SlotStore(path: path)
            let field = try store.array(try arguments.positional("field"), of: Int64.self)
            let index = try number(arguments.positional("index"))
            let delta = Int64(try number(arguments.positional("delta")))
            guard index < field.count else { throw UsageError("index \(index) is out of range 0..<\(field.count)") }
            Output.out("done \(field.add(delta, at: index))")
        case "add-elements":
            let store = try SlotStore(path: path)
            let field = try store.array(try arguments.positional("field"), of: Int64.self)
            let count = try number(arguments.positional("count"))
            let stop = count == 0 ? try store.scalar("stop", as: Bool.self) : nil
            var done = 0
            while count == 0 ? !(stop?.load() ?? true) : done < count {
                field.add(1, at: done % field.count)  // lock-free
                done += 1
            }
            Output.out("done \(done) generation \(store.generation)")
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
        case "lock-rounds":
            // The kill-burst pattern of the robust-mutex lost wake-up: short
            // transactions (two IDs in three sleep 100 µs inside them) while the round word is
            // odd; at an even round each worker counts itself parked once and
            // waits; a negative round ends it. A lockTimeout adds 1 to
            // "timeouts" and goes on.
            let id = try number(arguments.positional("id"))
            let timeout = try number(arguments.positional("timeout in ms"))
            let store = try SlotStore(path: path, options: OpenOptions(mode: .open, lockTimeout: .milliseconds(timeout)))
            let n = try store.scalar("n", as: Int64.self)
            let timeouts = try store.scalar("timeouts", as: Int64.self)
            let round = try store.scalar("round", as: Int64.self)
            let parked = try store.scalar("parked", as: Int64.self)
            var parkedIn = round.load()  // a worker started between rounds is not counted
            Output.out("SLOTSTORE-LOOPING \(getpid())")
            while true {
                let now = round.load()
                if now < 0 { break }
                if now % 2 == 0 {
                    if now != parkedIn { parked.add(1); parkedIn = now }
                    usleep(200)
                    continue
                }
                do {
                    try store.transaction { tx in
                        try tx.store(tx.load(n) + 1, to: n)
                        if id % 3 != 0 { usleep(100) }
                    }
                } catch SlotStoreError.lockTimeout(_, let holder, let alive, _, _) {
                    timeouts.add(1)
                    Output.error("lockTimeout: holder PID \(holder), alive \(alive)")
                }
            }
            Output.out("done")
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
        case "map-grow":
            let store = try SlotStore(path: path)
            let map = try store.map(try arguments.positional("field"), key: String.self, value: Int64.self)
            let count = try number(arguments.positional("count"))
            let id = try number(arguments.positional("id"))
            let progress = try store.array("progress", of: Int64.self)
            for index in 0..<count {
                try map.set(Int64(index), for: "g\(id)-\(index)")
                progress.store(Int64(index + 1), at: id)
            }
            Output.out("done \(count) generation \(store.generation)")
        case "cache-set":
            return try CacheWorker.run(path: path, &arguments)
        case "map-set":
            let store = try SlotStore(path: path)
            let map = try store.map(try arguments.positional("field"), key: String.self, value: Int64.self)
            let key = try arguments.positional("key")
            try map.set(Int64(try number(arguments.positional("value"))), for: key)
            Output.out("done")
        case "compact-loop":
            let count = try number(arguments.positional("count"))
            for _ in 0..<count { try SlotStore.compact(at: path) }
            Output.out("compacted \(count)")
        case "map-remove":
            let store = try SlotStore(path: path)
            let map = try store.map(try arguments.positional("field"), key: String.self, value: Int64.self)
            Output.out(try map.remove(try arguments.positional("key")) ? "removed" : "absent")
        case "map-churn":
            let store = try SlotStore(path: path)
            let map = try store.map(try arguments.positional("field"), key: String.self, value: Int64.self)
            let count = try number(arguments.positional("count"))
            let id = try arguments.positional("id")
            let live = try number(arguments.positional("live"))
            let low = try store.scalar("low", as: Int64.self)
            let high = try store.scalar("high", as: Int64.self)
            // Four more keys, removed in transactions that every 8th step
            // abort: their rollbacks move the other keys forward again.
            let tentative = (0..<4).map { "t\(id)-\($0)" }
            for key in tentative { try map.set(-1, for: key) }
            struct Abort: Error {}
            for index in 0..<count {
                try map.set(Int64(index), for: "c\(id)-\(index)")
                high.store(Int64(index + 1))
                if index % 8 == 0 {
                    do {
                        try store.transaction { tx in
                            for key in tentative { _ = try tx.remove(key, from: map) }
                            throw Abort()
                        }
                    } catch is Abort {}
                }
                if index >= live {
                    // Published before the removal: a reader that sees a lower
                    // "low" after missing a key knows the key was present.
                    low.store(Int64(index - live + 1))
                    guard try map.remove("c\(id)-\(index - live)") else {
                        Output.out("lost c\(id)-\(index - live)")
                        return ExitStatus.problem
                    }
                }
            }
            Output.out("done \(count)")
        case "map-read-present":
            let store = try SlotStore(path: path)
            let map = try store.map(try arguments.positional("field"), key: String.self, value: Int64.self)
            let keys = try number(arguments.positional("keys"))
            let id = try arguments.positional("id")
            let walkEvery = max(1, try number(arguments.positional("walk")))
            let low = try store.scalar("low", as: Int64.self)
            let high = try store.scalar("high", as: Int64.self)
            let names = (0..<keys).map { "p\($0)" }
            // A timer signal every 50 µs whose handler sleeps 20 µs: the
            // reader stops at random points inside its probes, as a preempted
            // one would, only far more often, and the writer moves keys meanwhile.
            signal(SIGALRM) { _ in
                var pause = timespec(tv_sec: 0, tv_nsec: 20_000)
                nanosleep(&pause, nil)
            }
            var interval = itimerval(it_interval: timeval(tv_sec: 0, tv_usec: 50), it_value: timeval(tv_sec: 0, tv_usec: 50))
            setitimer(__itimer_which_t(ITIMER_REAL.rawValue), &interval, nil)
            defer {
                var off = itimerval()
                setitimer(__itimer_which_t(ITIMER_REAL.rawValue), &off, nil)
            }
            var lookups = 0
            var churned = 0
            var walks = 0
            var round = 0
            while try !map.contains("stop") {
                for (index, name) in names.enumerated() {
                    // get takes the one-word probe, contains the general lookup: both must find it.
                    guard try map.get(name) == Int64(index), try map.contains(name) else {
                        Output.out("missed \(name) after \(lookups) lookups")
                        return ExitStatus.problem
                    }
                    lookups += 2
                }
                // The churning keys: inserted after others and moved back as
                // those are removed, so a removal often moves the key a probe is after.
                for _ in 0..<4 {
                let from = low.load()
                let to = high.load()
                var index = from
                while index < to {
                    let name = "c\(id)-\(index)"
                    let value = try index % 2 == 0 ? map.get(name) : (map.contains(name) ? index : nil)
                    if value == nil && index >= low.load() {
                        Output.out("missed \(name), present all along, after \(lookups) lookups")
                        return ExitStatus.problem
                    }
                    if let value, value != index {
                        Output.out("\(name) holds \(value)")
                        return ExitStatus.problem
                    }
                    lookups += 1
                    churned += 1
                    index += 1
                }
                }
                if round % walkEvery == 0 {
                    // Every key present all through the walk is listed exactly once:
                    // the p keys, and the c keys inserted before it and removed after it.
                    let inserted = high.load()
                    let entries = try map.entries()
                    let kept = low.load()
                    var seen: [String: Int] = [:]
                    for (key, _) in entries { seen[key, default: 0] += 1 }
                    let expected = names + (kept..<max(kept, inserted)).map { "c\(id)-\($0)" }
                    if let wrong = expected.first(where: { seen[$0] != 1 }) {
                        Output.out("entries() listed \(wrong) \(seen[wrong] ?? 0) times")
                        return ExitStatus.problem
                    }
                    walks += 1
                }
                round += 1
            }
            Output.out("done \(lookups) lookups (\(churned) of churning keys), \(walks) walks")
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
        case "fork-grandchild":
            try arguments.finish()
            return try ForkWorker.grandchild(path: path)
        case "demo":
            // The demo's workers die with it (`slotstore demo | head -3` kills
            // the demo by SIGPIPE), instead of holding the store's lock for ever.
            _ = slotstore_die_with_parent()
            return try DemoWorker.run(path: path, id: number(arguments.positional("id")),
                                      count: number(arguments.positional("count")), pause: number(arguments.positional("pause")))
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
                let holder = try store.transaction { _ in try store.status.lockHolderPID ?? 0 }
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

extension ForkWorker {
    /// Parent, child and grandchild each use the store (a lock-free add and a
    /// locked string store); the grandchild forks from a child that had
    /// re-attached. Prints "counter N motd TEXT" from the parent at the end;
    /// exits with the first failure's status.
    static func grandchild(path: String) throws -> Int32 {
        let store = try SlotStore(path: path)
        let requests = try store.scalar("requests", as: Int64.self)
        let motd = try store.string("motd")
        requests.add(1)
        func waitFor(_ pid: pid_t) -> Int32 {
            var status: Int32 = 0
            while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
            return status & 0x7F == 0 ? (status >> 8) & 0xFF : 128 + (status & 0x7F)
        }
        let child = fork()
        guard child >= 0 else { throw UsageError("fork failed: \(String(cString: strerror(errno)))") }
        if child == 0 {
            requests.add(1)
            guard (try? motd.store("child")) != nil else { _exit(3) }
            let grandchild = fork()
            if grandchild == 0 {
                requests.add(1)
                guard (try? motd.store("grandchild")) != nil else { _exit(4) }
                _exit(0)
            }
            _exit(grandchild < 0 ? 5 : waitFor(grandchild))
        }
        let status = waitFor(child)
        Output.out("counter \(requests.load()) motd \((try? motd.load()) ?? "?")")
        store.close()
        return status
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
