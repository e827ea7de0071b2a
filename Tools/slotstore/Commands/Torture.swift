import Glibc
import SlotStore
import Synchronization

/// `slotstore torture`: worker processes run a seeded mix of checkable
/// operations on one store while the parent SIGKILLs them, alone or in bursts
/// of up to three a few milliseconds apart, many of them holding the lock,
/// restarts them, and checks every invariant against an exact model of what
/// was acknowledged.
///
/// Each worker reports on its standard output (a pipe to the parent) one byte
/// `b` before it starts an operation and one byte `a` once it returns, and a
/// few text lines (`h` hello with its starting state, `t` a lock or read
/// timeout, `q` resting at the parent's request after a burst, `v` a
/// violation it saw, `x` a fatal error, `d` done). The parent
/// replays the worker's seeded generator, so it knows the operation after the
/// last `a`: the one that was in flight when a kill hit (only if its `b`
/// arrived). After each kill the parent takes the lock itself (which recovers
/// a dead holder), reads the victims' state and accepts exactly the model
/// before or after each one's in-flight operation, then restarts them.
///
/// Kills are scheduled by operation count, not by time: every operation a
/// worker begins adds one to the store's `control.operations`, and the n-th
/// scheduled kill comes when that count reaches a point drawn from the seed,
/// as do its victim, its kind and its burst. So a seed replays the same
/// schedule; what processes can't replay is how far each worker got between
/// two looks of the parent at the count (the summary prints that lag).
enum TortureCommand: Command {
    static let name = "torture"
    static let abstract = "crash-torture a store: SIGKILL random workers, alone and in bursts, check every invariant"
    static let usage = """
    usage: slotstore torture [--processes N] [--seconds S] [--operations N] [--kill-every N] [--burst N]
                             [--lock-timeout MS] [--durable] [--compact-every MS] [--seed X] [PATH]
      --processes N       worker processes (default 4, at most 16)
      --seconds S         how long the workers run at most (default 10)
      --operations N      stop once the workers have begun N operations (default: no limit)
      --kill-every N      mean number of operations, all workers together, between
                          scheduled kills (default 20000; 300 with --durable)
      --burst N           most workers one scheduled kill or kill of a lock holder SIGKILLs,
                          1-3 ms apart (default 3; 1 kills one at a time)
      --lock-timeout MS   the workers' lock timeout (default 1000; 5000, the library's, with
                          --durable, whose holders wait for the disk). A worker's lock or read
                          timeout is counted and reported (and how many named no live holder:
                          a waiter asleep on a free lock), not a violation
      --durable           workers commit with .flushOnCommit (msync before each locked write
                          returns), on a disk-backed file system: PATH on tmpfs is refused,
                          and the default temporary folder is the first disk-backed one of
                          $TMPDIR, /var/tmp and /tmp
      --compact-every MS  mean time between compactions in place while the workers run
                          (default 0: none; the first one comes within the first half of the run)
      --seed X            seed of the operations, the kills, the fault points and the
                          compactions (default: random, printed)
      PATH                the store to create, which must not exist; it is kept afterwards.
                          Default: a new temporary folder, removed afterwards
    Workers increment their own counters and array elements (lock-free), move
    amounts between accounts in transactions (one in eight pausing 50-300 us
    inside, so others sleep on the lock), write self-checking strings and bytes,
    uniform arrays, insert, remove and add to map entries, and churn many distinct
    keys through a second map that grows by itself (16 up to 4096 entries; the
    live set rises and falls, so it grows again and again), one at a time or two
    in a transaction. A third of the worker processes stop at a write fault point
    holding the lock (SLOTSTORE_FAULT=<point>:hold), a third in the first growth
    they make (afterBulkCopy, afterRetiring or afterRename), and are killed there; the others are killed when the count of operations begun reaches a
    point drawn from the seed (so a seed replays its kill schedule), at once or
    just as they start a locked operation. Most kills are bursts: after the first
    victim, one or two more workers die 1-3 ms apart, preferring workers inside a
    locked operation (a waiter the last unlock or death may just have woken).
    After a burst the survivors rest until each has finished its operation, so a
    waiter left asleep on a free lock is not rescued by others' traffic and shows
    as a lock timeout "with no live holder". With --compact-every, a thread of
    this process compacts the store in place (SlotStore.compact) while workers run and die, moving the map
    between two capacities; about one compaction in four is instead a `slotstore
    compact` process that must die by SIGKILL at SLOTSTORE_FAULT=afterRetiring:kill
    or afterRename:kill (while one runs, only workers holding the lock at a fault
    point are killed, one at a time, so its own recovery is counted exactly); at
    low tide a compaction also shrinks the growing map. Every check reads every
    entry of both maps against the model, and each new file at the path is
    checked against the one before (a growth keeps the map and doubles the growing
    map). Two cache maps run on a clock the parent moves (control.clock, read
    by each worker into its manual clock before each cache operation and
    reported, so the parent knows every deadline): one evicts, with room for
    half the workers' keys, so it is full most of the time; the other only
    expires, refusing inserts when full of live entries. Workers set their keys
    there with and without a time to live (set, and safeSet in the evicting
    map), remove them, read them and call removeExpired(); one start in six
    stops holding the lock right after an eviction (afterEviction) and is
    killed there. Every check reads every key of both: values intact, never
    an older write or a removed one, expired exactly at the deadline and then
    invisible to get, the walk and count exactly the live entries, never over
    capacity, nothing gone from the map that never evicts before its deadline.
    Every invariant must hold across the switches to the new files,
    recoveries are totalled over every file the path held, and the parent's store
    must end in the newest generation; a compaction refused with a clear error
    (store in use, lock timeout) is counted as failed, and a run without any
    compaction fails. Prints one line of figures; exits 1 if any invariant failed.
    """

    static func run(_ arguments: inout Arguments) throws -> Int32 {
        let durable = arguments.flag("--durable")
        let lockTimeout = try arguments.integerOption("--lock-timeout", default: durable ? 5_000 : 1_000, in: 1...3_600_000)
        if let spec = try arguments.option("--worker") {
            let path = try arguments.positional("store path")
            try arguments.finish()
            return TortureWorker.run(spec: spec, path: path, lockTimeoutMS: lockTimeout, durable: durable)
        }
        let processes = try arguments.integerOption("--processes", default: 4, in: 1...TortureSchema.maximumProcesses)
        let seconds = try arguments.integerOption("--seconds", default: 10, in: 1...86_400)
        let operationLimit = try arguments.integerOption("--operations", default: 0, in: 0...Int(Int64.max))
        let killEvery = try arguments.integerOption("--kill-every", default: durable ? 300 : 20_000, in: 1...1_000_000_000)
        let burst = try arguments.integerOption("--burst", default: 3, in: 1...TortureSchema.maximumProcesses)
        let compactEvery = try arguments.integerOption("--compact-every", default: 0, in: 0...3_600_000)
        let seed: UInt64
        if let text = try arguments.option("--seed") {
            guard let value = UInt64(text) else { throw UsageError("--seed takes a whole number, found \"\(text)\"") }
            seed = value
        } else {
            seed = UInt64.random(in: 0...999_999)
        }
        var path = try? arguments.positional("store path")
        try arguments.finish()

        // The parent must never stop at a fault point meant for a worker.
        unsetenv("SLOTSTORE_FAULT")
        var directory: String?
        if let path {
            if durable { try requireDiskBacked(folderOf: path) }
        } else {
            directory = try makeTemporaryDirectory(diskBacked: durable)
            path = directory! + "/torture.slots"
        }
        defer {
            removeLeftovers(beside: path!)
            if let directory {
                try? SlotStore.remove(at: directory + "/torture.slots")
                rmdir(directory)
            }
        }
        let settings = TortureRun.Settings(processes: processes, seconds: seconds, operationLimit: UInt64(operationLimit),
                                           killEvery: killEvery, burst: burst, lockTimeoutMS: lockTimeout,
                                           durable: durable, compactEveryMS: compactEvery, seed: seed)
        let run = try TortureRun(path: path!, settings: settings)
        let violations = run.execute()
        return violations == 0 ? ExitStatus.success : ExitStatus.problem
    }

    /// A compactor (or a worker growing the map) killed during its compaction
    /// leaves its new file beside the store, `.NAME.compacting-PID-UNIQUE`
    /// (see TemporaryFiles); the next compaction would remove it, but there is
    /// none. Every process of the run has ended: all such files are leftovers.
    private static func removeLeftovers(beside path: String) {
        let slash = path.lastIndex(of: "/")
        let folder = slash.map { String(path[...$0]) } ?? ""
        let name = slash.map { String(path[path.index(after: $0)...]) } ?? path
        let prefixes = [".\(name).compacting-"]
        guard let stream = opendir(folder.isEmpty ? "." : folder) else { return }
        defer { closedir(stream) }
        while let entry = readdir(stream) {
            let file = withUnsafeBytes(of: entry.pointee.d_name) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
            if prefixes.contains(where: { file.hasPrefix($0) }) { unlink(folder + file) }
        }
    }

    /// A new private folder under `$TMPDIR` (or `/tmp`); with `diskBacked`,
    /// under the first of `$TMPDIR`, `/var/tmp` and `/tmp` that is not in memory.
    private static func makeTemporaryDirectory(diskBacked: Bool) throws -> String {
        let configured = getenv("TMPDIR").map { String(cString: $0) }.flatMap { $0.isEmpty ? nil : $0 }
        var base = configured ?? "/tmp"
        if diskBacked {
            let candidates = [configured, "/var/tmp", "/tmp"].compactMap { $0 }
            guard let found = candidates.first(where: { memoryFileSystem(at: $0) == nil && access($0, W_OK) == 0 }) else {
                let found = candidates.map { "\($0) (\(memoryFileSystem(at: $0) ?? "not writable"))" }.joined(separator: ", ")
                throw InputError("--durable needs a disk-backed folder for its temporary store, and found only \(found); "
                                 + "give a PATH on a disk-backed file system")
            }
            base = found
        }
        var template = Array((base + "/slotstore-torture-XXXXXX").utf8CString)
        guard template.withUnsafeMutableBufferPointer({ mkdtemp($0.baseAddress!) }) != nil else {
            throw SlotStoreError.systemCallFailed(path: base, call: "mkdtemp", errno: errno)
        }
        return String(decoding: template.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    /// Refuses a store path whose folder is in memory: a flush there reaches no disk, so a durable run would prove nothing.
    private static func requireDiskBacked(folderOf path: String) throws {
        let slash = path.lastIndex(of: "/")
        let folder = slash.map { $0 == path.startIndex ? "/" : String(path[..<$0]) } ?? "."
        if let kind = memoryFileSystem(at: folder) {
            throw InputError("--durable: \(path) would be on \(kind), a file system in memory, where msync reaches no disk; "
                             + "expected a disk-backed file system: give a PATH on one (such as /var/tmp/torture.slots), "
                             + "or no PATH for a disk-backed temporary folder")
        }
    }

    /// The name of the in-memory file system `path` is on (tmpfs, ramfs), or
    /// nil for any other (or if it can't be told). Read from the mount table,
    /// as Glibc's module does not export `statfs`: the file system of the
    /// longest mount point that contains the resolved path, the later one of two mounts on one point.
    static func memoryFileSystem(at path: String) -> String? {
        guard let resolved = realpath(path, nil) else { return nil }
        let target = String(cString: resolved)
        free(resolved)
        guard let table = fopen("/proc/self/mountinfo", "r") else { return nil }
        defer { fclose(table) }
        var best: (point: String, type: String)?
        var line: UnsafeMutablePointer<CChar>?
        var capacity = 0
        defer { free(line) }
        while getline(&line, &capacity, table) > 0, let line {
            // ID PARENT MAJOR:MINOR ROOT MOUNT-POINT OPTIONS [OPTIONAL...] - TYPE SOURCE SUPER-OPTIONS
            let words = String(cString: line).split(separator: " ", omittingEmptySubsequences: true)
            guard words.count > 5, let dash = words.firstIndex(of: "-"), dash + 1 < words.count else { continue }
            let point = unescapeMountPoint(words[4])
            let inside = point == "/" || target == point || target.hasPrefix(point + "/")
            if inside && point.count >= (best?.point.count ?? 0) { best = (point, String(words[dash + 1])) }
        }
        guard let type = best?.type, type == "tmpfs" || type == "ramfs" else { return nil }
        return type
    }

    /// Mount points in the mount table write space, tab, newline and backslash as `\\ooo` octal.
    private static func unescapeMountPoint(_ text: Substring) -> String {
        var bytes: [UInt8] = []
        var utf8 = Array(text.utf8)[...]
        while let byte = utf8.popFirst() {
            if byte == UInt8(ascii: "\\"), utf8.count >= 3, let code = UInt8(String(decoding: utf8.prefix(3), as: UTF8.self), radix: 8) {
                bytes.append(code)
                utf8 = utf8.dropFirst(3)
            } else {
                bytes.append(byte)
            }
        }
        return String(decoding: bytes, as: UTF8.self)
    }
}

// MARK: - The store and the operations

enum TortureSchema {
    static let maximumProcesses = 16
    static let accounts = 4
    static let accountStart: Int64 = 1000
    static let texts = 2
    static let textCapacity = 160
    static let blobs = 2
    static let blobCapacity = 96
    static let arrays = 2
    static let arrayCount = 24
    static let ownKeys = 12
    static let sharedKeys = 8

    static func make(processes: Int) -> Schema {
        // control.operations counts the operations the workers begin: the
        // clock the kills are scheduled by. control.quiet asks them to rest.
        // control.clock: the cache maps' time (see ``TortureSchema/clockStart``).
        var fields: [Field] = [.int64("control.stop"), .int64("control.quiet"), .int64("control.operations"), .int64("control.clock")]
        for slot in 0..<processes { fields += [.int64("counter.\(slot)"), .int64("witness.\(slot)")] }
        fields += (0..<accounts).map { .int64("account.\($0)") }
        fields += (0..<texts).map { .string("text.\($0)", capacity: textCapacity) }
        fields += (0..<blobs).map { .bytes("blob.\($0)", capacity: blobCapacity) }
        fields += (0..<arrays).map { .array("uniform.\($0)", of: .int64, count: arrayCount) }
        fields.append(.map("map", key: .string(capacity: 16), value: .scalar(.int64),
                           capacity: processes * ownKeys + sharedKeys + 8))
        // One element per worker, written lock-free (add and store).
        fields.append(.array("tally", of: .int64, count: processes))
        fields.append(.map("grow", key: .string(capacity: 16), value: .scalar(.int64), capacity: growInitialCapacity,
                           growth: MapGrowth(maxCapacity: growMaximumCapacity)))
        // The cache maps: one that evicts, at half the keys its workers use,
        // so it is full most of the time; one that only expires, full at
        // times (an insert then reuses an expired entry's room, or is refused).
        fields.append(.map(cacheMaps[0], key: .string(capacity: 16), value: .bytes(capacity: cacheValueBytes),
                           capacity: cacheCapacity(map: 0, processes: processes), cache: MapCache(evict: true)))
        fields.append(.map(cacheMaps[1], key: .string(capacity: 16), value: .bytes(capacity: cacheValueBytes),
                           capacity: cacheCapacity(map: 1, processes: processes), cache: MapCache(evict: false)))
        return Schema(version: 1, fields: fields)
    }

    // MARK: Cache maps

    /// The evicting map and the expiring one, by number (0 and 1).
    static let cacheMaps = ["cache", "ttl"]
    /// Each worker's keys in each cache map.
    static let cacheKeys = [10, 8]
    static func cacheCapacity(map: Int, processes: Int) -> Int {
        map == 0 ? max(8, processes * cacheKeys[0] / 2) : max(8, processes * cacheKeys[1] * 3 / 4)
    }
    /// Where the cache maps' clock starts (ms). The parent alone moves
    /// `control.clock`, in its own transactions, by the milliseconds the run
    /// has lasted; each worker reads it into its manual clock
    /// (``CacheClock/manual(startingAt:)``) before each cache operation and
    /// reports the time it read, so the parent knows every deadline written
    /// and checks expiry at an exact time of its own, with no margin.
    static let clockStart: UInt64 = 1_000_000

    static func cacheKey(map: Int, slot: Int, _ key: Int) -> String { "\(map == 0 ? "c" : "t")\(slot).\(key)" }

    /// The worker slot and key number of a key of cache map `map`, or nil for a key no worker makes.
    static func parseCacheKey(map: Int, _ key: String) -> (slot: Int, key: Int)? {
        guard key.hasPrefix(map == 0 ? "c" : "t"), let dot = key.firstIndex(of: "."),
              let slot = Int(key[key.index(after: key.startIndex)..<dot]), let number = Int(key[key.index(after: dot)...]),
              slot >= 0, (0..<cacheKeys[map]).contains(number), cacheKey(map: map, slot: slot, number) == key else { return nil }
        return (slot, number)
    }

    /// One write of a cache entry, as its owner's model keeps it.
    struct CacheEntry: Equatable, CustomStringConvertible {
        /// Drawn by the write from the worker's seeded stream: tells one write from any other.
        var stamp: UInt64
        /// The deadline the write gave it (ms on the shared clock), 0 for none.
        var deadline: UInt64

        func isExpired(at now: UInt64) -> Bool { deadline != 0 && deadline <= now }
        var description: String { "\(String(stamp, radix: 16))@\(deadline == 0 ? "never" : String(deadline))" }
    }

    static let cacheValueBytes = 24

    /// A cache entry's value: map, slot and key it belongs to, stamp and
    /// deadline, and an FNV-1a-32 of the rest: a torn value, a value under
    /// another key, or a deadline that is not the entry's shows.
    static func cacheValue(map: Int, slot: Int, key: Int, _ entry: CacheEntry) -> [UInt8] {
        var bytes: [UInt8] = [UInt8(map), UInt8(slot), UInt8(key), 0]
        withUnsafeBytes(of: entry.stamp.littleEndian) { bytes += $0 }
        withUnsafeBytes(of: entry.deadline.littleEndian) { bytes += $0 }
        let sum = fnv32(bytes[...])
        withUnsafeBytes(of: sum.littleEndian) { bytes += $0 }
        return bytes
    }

    /// The entry a cache value records, or nil when it is torn or belongs to another key.
    static func parseCacheValue(_ bytes: [UInt8], map: Int, slot: Int, key: Int) -> CacheEntry? {
        guard bytes.count == cacheValueBytes, bytes[0] == UInt8(map), Int(bytes[1]) == slot, Int(bytes[2]) == key, bytes[3] == 0 else { return nil }
        func word(_ at: Int) -> UInt64 { bytes[at..<(at + 8)].reversed().reduce(UInt64(0)) { $0 << 8 | UInt64($1) } }
        let sum = bytes[20..<24].reversed().reduce(UInt32(0)) { $0 << 8 | UInt32($1) }
        guard sum == fnv32(bytes[..<20]) else { return nil }
        return CacheEntry(stamp: word(4), deadline: word(12))
    }

    /// The map that grows by itself: small at first, so churning workers grow it many times.
    static let growInitialCapacity = 16
    static let growMaximumCapacity = 4_096

    /// The most live keys one worker keeps in the growing map at high tide:
    /// all of them together stay well below the maximum, so `mapFull` there
    /// is a failure, not the workload.
    static func churnPeak(processes: Int) -> Int { max(8, min(400, 2_800 / processes)) }

    static func churnKey(slot: Int, _ number: Int) -> String { "g\(slot).\(number)" }

    /// The worker slot and key number of a key of the growing map, or nil for a key no worker makes.
    static func parseChurnKey(_ key: String) -> (slot: Int, number: Int)? {
        guard key.hasPrefix("g"), let dot = key.firstIndex(of: "."),
              let slot = Int(key[key.index(after: key.startIndex)..<dot]),
              let number = Int(key[key.index(after: dot)...]), number >= 0, slot >= 0 else { return nil }
        guard churnKey(slot: slot, number) == key else { return nil }
        return (slot, number)
    }

    /// A digest of a worker's entries in the growing map, for its hello line.
    static func digest(churn: [Int: Int64]) -> UInt64 {
        var hash: UInt64 = 0xCBF2_9CE4_8422_2325
        for (number, value) in churn.sorted(by: { $0.key < $1.key }) {
            hash = (hash ^ UInt64(number)) &* 0x100_0000_01B3
            hash = (hash ^ UInt64(bitPattern: value)) &* 0x100_0000_01B3
        }
        return hash
    }

    static func ownKey(slot: Int, _ key: Int) -> String { "w\(slot).\(key)" }
    static func sharedKey(_ key: Int) -> String { "shared.\(key)" }

    /// The worker slot and own key of a key of `map`, or nil for another key.
    static func parseOwnKey(_ key: String) -> (slot: Int, key: Int)? {
        guard key.hasPrefix("w"), let dot = key.firstIndex(of: "."),
              let slot = Int(key[key.index(after: key.startIndex)..<dot]), let number = Int(key[key.index(after: dot)...]),
              (0..<ownKeys).contains(number), slot >= 0, ownKey(slot: slot, number) == key else { return nil }
        return (slot, number)
    }

    /// The number of a shared key of `map`, or nil for another key.
    static func parseSharedKey(_ key: String) -> Int? {
        guard key.hasPrefix("shared."), let number = Int(key.dropFirst(7)), (0..<sharedKeys).contains(number),
              sharedKey(number) == key else { return nil }
        return number
    }

    /// A digest of a worker's own map entries, for its hello line.
    static func digest(_ values: [Int64?]) -> UInt64 {
        var hash: UInt64 = 0xCBF2_9CE4_8422_2325
        for value in values {
            let bits = value.map { UInt64(bitPattern: $0) &+ 1 } ?? 0
            hash = (hash ^ bits) &* 0x100_0000_01B3
        }
        return hash
    }

    /// A string that carries its own checksum.
    static func text(length: Int, salt: UInt64) -> String {
        SelfCheckingText.make("t\(salt % 100_000)", length: length)
    }

    static func textIntact(_ text: String) -> Bool { text.isEmpty || SelfCheckingText.isIntact(text) }

    /// `length` bytes: random payload, then the FNV-1a-32 of the payload, little-endian.
    static func blob(length: Int, salt: UInt64) -> [UInt8] {
        var random = SplitMix(seed: salt)
        var bytes = (0..<(length - 4)).map { _ in UInt8(truncatingIfNeeded: random.next()) }
        let sum = fnv32(bytes[...])
        bytes += [UInt8(sum & 0xFF), UInt8(sum >> 8 & 0xFF), UInt8(sum >> 16 & 0xFF), UInt8(sum >> 24)]
        return bytes
    }

    static func blobIntact(_ bytes: [UInt8]) -> Bool {
        if bytes.isEmpty { return true }
        guard bytes.count >= 4 else { return false }
        let sum = fnv32(bytes[..<(bytes.count - 4)])
        let tail = bytes.suffix(4).reversed().reduce(UInt32(0)) { $0 << 8 | UInt32($1) }
        return sum == tail
    }

    static func uniform(_ values: [Int64]) -> Bool { values.allSatisfy { $0 == values.first } }

    private static func fnv32(_ bytes: ArraySlice<UInt8>) -> UInt32 {
        var hash: UInt32 = 2_166_136_261
        for byte in bytes { hash = (hash ^ UInt32(byte)) &* 16_777_619 }
        return hash
    }
}

/// One worker operation. Generated from the worker's seeded stream with a
/// fixed number of draws, so the parent can replay the stream exactly.
enum TortureOp: Equatable {
    case increment
    /// With a pause (µs) inside the transaction, one transfer in eight: a
    /// holder that keeps the lock a while, so others fall asleep waiting
    /// for it, and a kill can catch one the kernel has just woken.
    case transfer(from: Int, to: Int, amount: Int64, pause: UInt32)
    case text(field: Int, length: Int, salt: UInt64)
    case blob(field: Int, length: Int, salt: UInt64)
    case uniform(field: Int, value: Int64)
    case mapSet(key: Int, value: Int64)
    case mapRemove(key: Int)
    case mapAdd(key: Int, delta: Int64)
    /// Adds 1 to a key every worker shares and, in the same transaction, 1 to
    /// the worker's own witness counter, which tells whether an in-flight add landed.
    case sharedAdd(key: Int)
    /// A lock-free read of a string, bytes or array, checked for tearing.
    case check(target: Int)
    /// Adds to, or stores, the worker's own element of `tally`: lock-free element writes.
    case tallyAdd(delta: Int64)
    case tallyStore(value: Int64)
    /// One insert, removal or update of the worker's keys in the growing map
    /// (see ``ChurnState``); an insert may grow the map as it returns.
    case churn(pick: UInt64, value: Int64)
    /// Two inserts or two removals in the growing map in one transaction: a
    /// transaction that finds the map full rolls back, and runs again once
    /// the map has grown.
    case churnPair(pick: UInt64, value: Int64)
    /// Sets one of the worker's keys in a cache map (0 evicting, 1 expiring)
    /// with a time to live of `ttl` ms (0: none); `safe`: by `safeSet`,
    /// which never evicts a live entry. Refused (`mapFull`) when no room
    /// can be made without evicting a live entry.
    case cacheSet(map: Int, key: Int, ttl: UInt64, stamp: UInt64, safe: Bool)
    case cacheRemove(map: Int, key: Int)
    /// Lock-free reads of one of the worker's keys (checked against its
    /// model) and of `other` worker's key (checked for tearing and expiry).
    case cacheRead(map: Int, key: Int, other: UInt64)
    /// `removeExpired()`: then none of the worker's keys expired at its time is left.
    case cacheSweep(map: Int)

    var takesLock: Bool {
        switch self {
        case .increment, .check, .tallyAdd, .tallyStore, .cacheRead: false
        default: true
        }
    }

    /// Whether it works on a cache map (and reads the shared clock first).
    var isCache: Bool {
        switch self {
        case .cacheSet, .cacheRemove, .cacheRead, .cacheSweep: true
        default: false
        }
    }

    var isChurn: Bool {
        switch self {
        case .churn, .churnPair: true
        default: false
        }
    }

    static func next(_ random: inout SplitMix) -> TortureOp {
        let a = random.next(), b = random.next(), c = random.next()
        switch a % 100 {
        case 0..<14:
            return .increment
        case 14..<22:
            let map = Int(b >> 8 & 1)
            let key = Int((b >> 16) % UInt64(TortureSchema.cacheKeys[0]))
            switch b % 16 {
            case 0..<6:
                // A third without a deadline; the others live 20-620 ms of the shared clock.
                return .cacheSet(map: 0, key: key, ttl: c % 3 == 0 ? 0 : 20 + (c >> 8) % 600, stamp: c, safe: (b >> 12) % 4 == 0)
            case 6..<9:
                return .cacheSet(map: 1, key: key % TortureSchema.cacheKeys[1], ttl: c % 3 == 0 ? 0 : 20 + (c >> 8) % 600,
                                 stamp: c, safe: false)
            case 9..<11:
                return .cacheRemove(map: map, key: key % TortureSchema.cacheKeys[map])
            case 11..<15:
                return .cacheRead(map: map, key: key % TortureSchema.cacheKeys[map], other: c)
            default:
                return .cacheSweep(map: map)
            }
        case 22..<35:
            let from = Int(b % UInt64(TortureSchema.accounts))
            let to = (from + 1 + Int(c % UInt64(TortureSchema.accounts - 1))) % TortureSchema.accounts
            let pause = (c >> 32) % 8 == 0 ? UInt32(50 + (c >> 40) % 251) : 0
            return .transfer(from: from, to: to, amount: Int64(1 + (c >> 16) % 100), pause: pause)
        case 35..<42:
            return .text(field: Int(b % UInt64(TortureSchema.texts)),
                         length: 8 + Int((b >> 8) % UInt64(TortureSchema.textCapacity - 24)), salt: c)
        case 42..<49:
            return .blob(field: Int(b % UInt64(TortureSchema.blobs)),
                         length: 4 + Int((b >> 8) % UInt64(TortureSchema.blobCapacity - 3)), salt: c)
        case 49..<55:
            return .uniform(field: Int(b % UInt64(TortureSchema.arrays)), value: Int64(bitPattern: c))
        case 55..<61:
            return .mapSet(key: Int(b % UInt64(TortureSchema.ownKeys)), value: Int64(c % 1_000_000))
        case 61..<66:
            return .mapRemove(key: Int(b % UInt64(TortureSchema.ownKeys)))
        case 66..<71:
            return .mapAdd(key: Int(b % UInt64(TortureSchema.ownKeys)), delta: Int64(1 + c % 9))
        case 71..<76:
            return .sharedAdd(key: Int(b % UInt64(TortureSchema.sharedKeys)))
        case 76..<80:
            return .tallyAdd(delta: Int64(1 + b % 1_000))
        case 80..<81:
            return .tallyStore(value: Int64(b % 1_000_000_000))
        case 81..<92:
            return .churn(pick: b, value: Int64(c % 1_000_000_000))
        case 92..<95:
            return .churnPair(pick: b, value: Int64(c % 1_000_000_000))
        default:
            return .check(target: Int(b % UInt64(TortureSchema.texts + TortureSchema.blobs + TortureSchema.arrays)))
        }
    }

    static func seed(run: UInt64, slot: Int, incarnation: Int) -> UInt64 {
        var mixer = SplitMix(seed: run ^ (UInt64(slot + 1) &* 0x9E37_79B9_7F4A_7C15) ^ (UInt64(incarnation + 1) &* 0xC2B2_AE3D_27D4_EB4F))
        return mixer.next()
    }
}

// MARK: - Churn in the growing map

/// A worker's keys in the growing map: `g<slot>.<n>`, each `n` inserted once
/// (`next` counts up across incarnations), so many distinct keys pass through
/// a live set that follows a tide: it rises to the peak over 4 x peak churn
/// operations and falls back over as many, and the map grows (and, after a
/// compaction that shrinks it, grows again) as all workers' tides rise.
///
/// An operation's keys depend on the live set, which the worker and the
/// parent both keep, in the same order: from a restart on (keys sorted), each
/// applies the same operations. The parent passes `next` and `applied` to a
/// restarted worker; the live keys the worker reads from the store.
struct ChurnState: Equatable {
    /// The next key number to insert.
    var next = 0
    /// Churn operations applied: the tide's clock.
    var applied = 0
    /// The live key numbers, in the order both sides keep them.
    var order: [Int] = []

    /// One key's change: its new value, or nil for a removal.
    struct Change: Equatable {
        let number: Int
        let value: Int64?
    }

    /// The live set the tide aims for after `applied` operations: 0 up to `peak` and back.
    static func target(applied: Int, peak: Int) -> Int {
        let half = 4 * peak
        let phase = applied % (2 * half)
        return phase < half ? phase * peak / half : (2 * half - phase) * peak / half
    }

    /// The changes `pick` and `value` make now: `pair` inserts two new keys
    /// (rising tide, or nothing live) or removes two live ones, in one transaction;
    /// otherwise one insert, removal or update, mostly toward the tide.
    func changes(pick: UInt64, value: Int64, pair: Bool, peak: Int) -> [Change] {
        let live = order.count
        let rising = live < ChurnState.target(applied: applied, peak: peak)
        if pair {
            if rising || live < 2 { return [Change(number: next, value: value), Change(number: next + 1, value: value ^ 0x55)] }
            let first = Int(pick % UInt64(live))
            let second = (first + 1 + Int((pick >> 20) % UInt64(live - 1))) % live
            return [Change(number: order[first], value: nil), Change(number: order[second], value: nil)]
        }
        let roll = (pick >> 40) % 8
        let chosen = live > 0 ? order[Int(pick % UInt64(live))] : 0
        if live == 0 || (rising && roll < 7) || (!rising && roll == 7) { return [Change(number: next, value: value)] }
        if rising || roll == 6 { return [Change(number: chosen, value: value)] }
        return [Change(number: chosen, value: nil)]
    }

    /// Applies `changes` (from ``changes(pick:value:pair:peak:)``) to the entries and the state.
    mutating func apply(_ changes: [Change], to entries: inout [Int: Int64]) {
        applied += 1
        for change in changes {
            if let value = change.value {
                if entries.updateValue(value, forKey: change.number) == nil {
                    order.append(change.number)
                    next = max(next, change.number + 1)
                }
            } else if entries.removeValue(forKey: change.number) != nil, let index = order.firstIndex(of: change.number) {
                order.swapAt(index, order.count - 1)
                order.removeLast()
            }
        }
    }
}

// MARK: - The worker

/// `slotstore torture --worker SLOT:INCARNATION:SEED:NEXT:APPLIED [--lock-timeout MS] [--durable] PATH`:
/// runs operations until the store's `control.stop` is set, reporting each on
/// standard output. NEXT and APPLIED are its churn state (see ``ChurnState``).
enum TortureWorker {
    static func run(spec: String, path: String, lockTimeoutMS: Int, durable: Bool) -> Int32 {
        let parts = spec.split(separator: ":").compactMap { UInt64($0) }
        guard parts.count == 5, parts[0] < UInt64(TortureSchema.maximumProcesses), parts[3] < 1 << 40, parts[4] < 1 << 40 else {
            Output.error("slotstore torture: --worker takes SLOT:INCARNATION:SEED:NEXT:APPLIED, found \"\(spec)\"")
            return ExitStatus.usage
        }
        var options = OpenOptions(mode: .open, lockTimeout: .milliseconds(lockTimeoutMS),
                                  durability: durable ? .flushOnCommit : .processCrash)
        // Set from control.clock before each cache operation (see TortureSchema.clockStart).
        options.clock = .manual(startingAt: Int64(TortureSchema.clockStart))
        do {
            try loop(slot: Int(parts[0]), seed: parts[2], churn: ChurnState(next: Int(parts[3]), applied: Int(parts[4])),
                     path: path, options: options)
            return ExitStatus.success
        } catch {
            line("x error \(error)")
            return ExitStatus.problem
        }
    }

    /// One unbuffered write per report; a dead parent ends the worker by SIGPIPE.
    static func emit(_ byte: UInt8) {
        var byte = byte
        while write(STDOUT_FILENO, &byte, 1) < 0 && errno == EINTR {}
    }

    static func line(_ text: String) {
        Output.out(String(text.map { $0 == "\n" ? " " : $0 }))
    }

    /// A lock or read timeout: counted and reported by the parent, not fatal,
    /// because a waiter that sleeps through a free lock (the lost wake-up of a
    /// robust mutex whose woken waiter was killed) must show as a figure of the
    /// run, not end it.
    static func isTimeout(_ error: any Error) -> Bool {
        switch error as? SlotStoreError {
        case .lockTimeout?, .readTimeout?: true
        case .invalidValue(_, _, let detail)?: isFailedGrowth(detail)
        default: false
        }
    }

    /// The detail of the error an insert throws when the map is full and its
    /// growth failed: with a short lock timeout, the growth's compaction timed
    /// out waiting for the lock or for a lock-free writer, a timeout too.
    /// (The library wraps that error in `invalidValue`, so only its text tells.)
    static func isFailedGrowth(_ detail: String) -> Bool {
        detail.contains("growing it failed") && (detail.contains("lock was not acquired within") || detail.contains("stayed inside a lock-free write"))
    }

    /// `orphaned` for a lock timeout with no live holder (PID 0, or a dead
    /// one: the lock was free, or free to recover, all along), `held` for one
    /// naming a live holder, `read` for a read timeout.
    static func timeoutKind(_ error: any Error) -> String {
        switch error as? SlotStoreError {
        case .lockTimeout(_, let holder, let alive, _, _)?: holder == 0 || !alive ? "orphaned" : "held"
        case .invalidValue?: "growth"
        default: "read"
        }
    }

    /// The worker's handles on its store, and its starting state.
    struct Opened {
        let store: SlotStore
        let stop: ScalarField<Int64>
        let quiet: ScalarField<Int64>
        let operations: ScalarField<Int64>
        let counter: ScalarField<Int64>
        let witness: ScalarField<Int64>
        let accounts: [ScalarField<Int64>]
        let texts: [StringField]
        let blobs: [BytesField]
        let arrays: [ArrayField<Int64>]
        let map: MapField<String, Int64>
        let ownKeys: [String]
        let own: [Int64?]
        let tally: ArrayField<Int64>
        let grow: MapField<String, Int64>
        /// This worker's entries in the growing map, by key number.
        let churn: [Int: Int64]
        let clock: ScalarField<Int64>
        let cacheMaps: [MapField<String, [UInt8]>]
        /// This worker's entries in each cache map, as the store holds them (expired ones included).
        let cache: [[TortureSchema.CacheEntry?]]

        init(slot: Int, path: String, options: OpenOptions) throws {
            let store = try SlotStore(path: path, options: options)
            self.store = store
            stop = try store.scalar("control.stop", as: Int64.self)
            quiet = try store.scalar("control.quiet", as: Int64.self)
            operations = try store.scalar("control.operations", as: Int64.self)
            counter = try store.scalar("counter.\(slot)", as: Int64.self)
            witness = try store.scalar("witness.\(slot)", as: Int64.self)
            accounts = try (0..<TortureSchema.accounts).map { try store.scalar("account.\($0)", as: Int64.self) }
            texts = try (0..<TortureSchema.texts).map { try store.string("text.\($0)") }
            blobs = try (0..<TortureSchema.blobs).map { try store.bytes("blob.\($0)") }
            arrays = try (0..<TortureSchema.arrays).map { try store.array("uniform.\($0)", of: Int64.self) }
            let map = try store.map("map", key: String.self, value: Int64.self)
            self.map = map
            let ownKeys = (0..<TortureSchema.ownKeys).map { TortureSchema.ownKey(slot: slot, $0) }
            self.ownKeys = ownKeys
            own = try ownKeys.map { try map.get($0) }
            tally = try store.array("tally", of: Int64.self)
            let grow = try store.map("grow", key: String.self, value: Int64.self)
            self.grow = grow
            var churn: [Int: Int64] = [:]
            try grow.forEach { key, value in
                if let parsed = TortureSchema.parseChurnKey(key), parsed.slot == slot { churn[parsed.number] = value }
            }
            self.churn = churn
            clock = try store.scalar("control.clock", as: Int64.self)
            let cacheMaps = try TortureSchema.cacheMaps.map { try store.map($0, key: String.self, value: [UInt8].self) }
            self.cacheMaps = cacheMaps
            // Read holding the lock: a lock-free read may see an entry removed
            // by another process's transaction that its death then rolls back.
            cache = try store.transaction { _ in
                try (0..<2).map { map in
                    try (0..<TortureSchema.cacheKeys[map]).map { key in
                        try cacheMaps[map].getStale(TortureSchema.cacheKey(map: map, slot: slot, key)).flatMap {
                            TortureSchema.parseCacheValue($0.value, map: map, slot: slot, key: key)
                        }
                    }
                }
            }
        }
    }

    private static func loop(slot: Int, seed: UInt64, churn startingChurn: ChurnState, path: String, options: OpenOptions) throws {
        // Opening recovers a dead holder, and reading the map may wait for a
        // stalled writer: a timeout there is reported (`t -`) and retried.
        var opened: Opened?
        while opened == nil {
            do {
                opened = try Opened(slot: slot, path: path, options: options)
            } catch where isTimeout(error) {
                line("t - \(timeoutKind(error)) \(error)")
            } catch {
                throw OpeningFailure(error: error)
            }
        }
        let handles = opened!
        let (store, stop, quiet, operations) = (handles.store, handles.stop, handles.quiet, handles.operations)
        let (counter, witness) = (handles.counter, handles.witness)
        let (accounts, texts, blobs, arrays, map, ownKeys) = (handles.accounts, handles.texts, handles.blobs, handles.arrays, handles.map, handles.ownKeys)
        let (tally, grow) = (handles.tally, handles.grow)
        let peak = TortureSchema.churnPeak(processes: tally.count)

        // Only this worker writes these, so it can check them exactly.
        var counterModel = counter.load()
        var witnessModel = witness.load()
        var own = handles.own
        var tallyModel = tally.load(at: slot)
        var churn = handles.churn
        var churnState = startingChurn
        churnState.order = churn.keys.sorted()
        churnState.next = max(churnState.next, (churnState.order.last ?? -1) + 1)
        line("h \(counterModel) \(witnessModel) \(TortureSchema.digest(own)) \(tallyModel) \(TortureSchema.digest(churn: churn))")

        func violation(_ text: String) { line("v worker \(slot) (PID \(getpid())): \(text)") }
        func checkOwn(_ key: Int) throws {
            let found = try map.get(ownKeys[key])
            if found != own[key] { violation("map key \(ownKeys[key]) reads \(found.map(String.init) ?? "absent"), expected \(own[key].map(String.init) ?? "absent")") }
        }
        /// A lock-free read of one of this worker's keys in the growing map,
        /// racing the others' inserts, backward shifts and growths.
        func checkChurn(_ number: Int) throws {
            let key = TortureSchema.churnKey(slot: slot, number)
            let found = try grow.get(key)
            if found != churn[number] {
                violation("grow key \(key) reads \(found.map(String.init) ?? "absent"), expected \(churn[number].map(String.init) ?? "absent") (map capacity \(grow.capacity), generation \(store.generation))")
            }
        }

        let (clock, cacheMaps) = (handles.clock, handles.cacheMaps)
        let manualClock = options.clock
        var cache = handles.cache
        // The shared clock's time this worker's cache operation reads, and the keys' names.
        var now = TortureSchema.clockStart
        let cacheNames = (0..<2).map { map in (0..<TortureSchema.cacheKeys[map]).map { TortureSchema.cacheKey(map: map, slot: slot, $0) } }
        /// Checks one of this worker's cache keys against its model at `now`:
        /// never another write's value, never torn, expired exactly when the
        /// deadline says, invisible to get once expired; absent only when
        /// evicted (map 0), or expired by the shared clock (reclaimed by a
        /// process whose time was later than this one's).
        func checkCache(_ map: Int, _ key: Int) throws {
            let name = cacheNames[map][key]
            let expected = cache[map][key]
            if let (bytes, expired) = try cacheMaps[map].getStale(name) {
                guard let found = TortureSchema.parseCacheValue(bytes, map: map, slot: slot, key: key) else {
                    violation("\(name) holds a torn or foreign value \(bytes)")
                    return
                }
                if found != expected {
                    violation("\(name) holds \(found), the worker's model \(expected.map(\.description) ?? "absent") (clock \(now))")
                } else if expired != found.isExpired(at: now) {
                    violation("getStale(\(name)) says expired \(expired) for deadline \(found.deadline) at \(now)")
                }
            } else if map == 1, let expected, !expected.isExpired(at: UInt64(clamping: clock.load())) {
                violation("\(name) (\(expected)) is gone from the expiring map, which never evicts, before its deadline (clock \(clock.load()))")
            }
            if let bytes = try cacheMaps[map].get(name) {
                let found = TortureSchema.parseCacheValue(bytes, map: map, slot: slot, key: key)
                if found == nil || found != expected || expected!.isExpired(at: now) {
                    violation("get(\(name)) returned \(found.map(\.description) ?? "a torn value") at \(now), the worker's model \(expected.map(\.description) ?? "absent")")
                }
            }
        }

        /// A set (or safeSet) of a cache key; nil when refused as the map is full.
        func setCache(_ value: [UInt8], map: Int, key: Int, ttl: Duration?, safe: Bool) throws -> MapSetOutcome? {
            let result = Result { () throws(SlotStoreError) -> MapSetOutcome in
                safe ? try cacheMaps[map].safeSet(value, for: cacheNames[map][key], ttl: ttl)
                    : try cacheMaps[map].set(value, for: cacheNames[map][key], ttl: ttl)
            }
            if case .failure(.mapFull) = result { return nil }
            return try result.get()
        }

        var random = SplitMix(seed: seed)
        while stop.load() == 0 {
            let generation = quiet.load()
            if generation != 0 {
                // Asked to rest after a burst: report it, and start nothing until the request ends.
                line("q \(generation)")
                while quiet.load() == generation && stop.load() == 0 { usleep(200) }
                continue
            }
            let op = TortureOp.next(&random)
            if op.isCache {
                // Before `b`: the parent knows the time of the operation it then begins.
                now = UInt64(clamping: clock.load())
                manualClock.set(millisecondsSinceEpoch: Int64(now))
                line("k \(now)")
            }
            emit(UInt8(ascii: "b"))
            operations.add(1)
            // Whether the operation's write happened: a timeout before it
            // means the operation did not happen (`t 0`), after it (in a
            // check that reads back) that it did (`t 1`, then `a`).
            var applied = false
            do {
                switch op {
                case .increment:
                    let value = counter.add(1)
                    applied = true
                    counterModel += 1
                    if value != counterModel { violation("counter.\(slot) is \(value) after an increment, expected \(counterModel)") }
                case .transfer(let from, let to, let amount, let pause):
                    let (source, target) = (accounts[from], accounts[to])
                    try store.transaction { tx in
                        try tx.store(tx.load(source) - amount, to: source)
                        if pause > 0 { usleep(pause) }
                        try tx.store(tx.load(target) + amount, to: target)
                    }
                    applied = true
                case .text(let field, let length, let salt):
                    try texts[field].store(TortureSchema.text(length: length, salt: salt))
                    applied = true
                case .blob(let field, let length, let salt):
                    try blobs[field].store(TortureSchema.blob(length: length, salt: salt))
                    applied = true
                case .uniform(let field, let value):
                    try arrays[field].store([Int64](repeating: value, count: TortureSchema.arrayCount))
                    applied = true
                case .mapSet(let key, let value):
                    try map.set(value, for: ownKeys[key])
                    applied = true
                    own[key] = value
                    try checkOwn(key)
                case .mapRemove(let key):
                    let removed = try map.remove(ownKeys[key])
                    applied = true
                    if removed != (own[key] != nil) { violation("removing \(ownKeys[key]) returned \(removed), the worker's model says \(own[key] != nil)") }
                    own[key] = nil
                    try checkOwn(key)
                case .mapAdd(let key, let delta):
                    let value = try map.add(delta, for: ownKeys[key])
                    applied = true
                    own[key] = (own[key] ?? 0) + delta
                    if value != own[key] { violation("adding \(delta) to \(ownKeys[key]) returned \(value), expected \(own[key]!)") }
                    try checkOwn(key)
                case .sharedAdd(let key):
                    try store.transaction { tx in
                        try tx.add(1, for: TortureSchema.sharedKey(key), in: map)
                        try tx.add(1, to: witness)
                    }
                    applied = true
                    witnessModel += 1
                    if witness.load() != witnessModel { violation("witness.\(slot) is \(witness.load()), expected \(witnessModel)") }
                case .tallyAdd(let delta):
                    let value = tally.add(delta, at: slot)
                    applied = true
                    tallyModel += delta
                    if value != tallyModel { violation("tally[\(slot)] is \(value) after adding \(delta), expected \(tallyModel)") }
                case .tallyStore(let value):
                    tally.store(value, at: slot)
                    applied = true
                    tallyModel = value
                    if tally.load(at: slot) != value { violation("tally[\(slot)] reads \(tally.load(at: slot)) after storing \(value)") }
                case .churn(let pick, let value), .churnPair(let pick, let value):
                    var pair = false
                    if case .churnPair = op { pair = true }
                    let changes = churnState.changes(pick: pick, value: value, pair: pair, peak: peak)
                    if pair {
                        var attempts = 0
                        while true {
                            do {
                                try store.transaction { tx in
                                    for change in changes {
                                        let key = TortureSchema.churnKey(slot: slot, change.number)
                                        if let value = change.value {
                                            try tx.store(value, for: key, in: grow)
                                        } else if try !tx.remove(key, from: grow) {
                                            violation("removing \(key) in a transaction found it absent")
                                        }
                                    }
                                }
                                break
                            } catch SlotStoreError.mapFull where attempts < 3 {
                                // Rolled back; the map grew as the lock was released.
                                attempts += 1
                                line("f")
                            }
                        }
                    } else if let value = changes[0].value {
                        try grow.set(value, for: TortureSchema.churnKey(slot: slot, changes[0].number))
                    } else if try !grow.remove(TortureSchema.churnKey(slot: slot, changes[0].number)) {
                        violation("removing \(TortureSchema.churnKey(slot: slot, changes[0].number)) found it absent")
                    }
                    applied = true
                    churnState.apply(changes, to: &churn)
                    for change in changes { try checkChurn(change.number) }
                    if !churnState.order.isEmpty { try checkChurn(churnState.order[Int((pick >> 8) % UInt64(churnState.order.count))]) }
                    // Its capacity only grows (or shrinks by the parent's compactions): checked by the parent, file by file.
                    let capacity = grow.capacity
                    if capacity > TortureSchema.growMaximumCapacity || capacity < TortureSchema.growInitialCapacity {
                        violation("the growing map has capacity \(capacity), outside \(TortureSchema.growInitialCapacity)...\(TortureSchema.growMaximumCapacity)")
                    }
                case .cacheSet(let map, let key, let ttl, let stamp, let safe):
                    let entry = TortureSchema.CacheEntry(stamp: stamp, deadline: ttl == 0 ? 0 : now + ttl)
                    let value = TortureSchema.cacheValue(map: map, slot: slot, key: key, entry)
                    let duration: Duration? = ttl == 0 ? nil : .milliseconds(ttl)
                    guard let outcome = try setCache(value, map: map, key: key, ttl: duration, safe: safe) else {
                        // Rolled back: every entry was live, and this set may not evict one.
                        if map == 0 && !safe { violation("an evicting set of \(cacheNames[map][key]) found the map full") }
                        line("n")
                        continue
                    }
                    applied = true
                    cache[map][key] = entry
                    if outcome.evicted > 0 {
                        if safe || map == 1 { violation("\(safe ? "safeSet" : "a set in the map that never evicts") of \(cacheNames[map][key]) evicted a live entry") }
                        if outcome.evicted != 1 || !outcome.inserted { violation("a set of \(cacheNames[map][key]) replaced an entry and evicted \(outcome.evicted)") }
                        line("e")
                    }
                    try checkCache(map, key)
                case .cacheRemove(let map, let key):
                    let removed = try cacheMaps[map].remove(cacheNames[map][key])
                    applied = true
                    let expected = cache[map][key]
                    if removed && (expected == nil || expected!.isExpired(at: now)) {
                        violation("removing \(cacheNames[map][key]) found a live entry, the worker's model \(expected.map(\.description) ?? "absent") at \(now)")
                    }
                    if !removed && map == 1, let expected, !expected.isExpired(at: UInt64(clamping: clock.load())) {
                        violation("removing \(cacheNames[map][key]) (\(expected)) from the map that never evicts found no live entry (clock \(clock.load()))")
                    }
                    cache[map][key] = nil
                    try checkCache(map, key)
                case .cacheRead(let map, let key, let other):
                    applied = true
                    try checkCache(map, key)
                    let otherSlot = Int(other % UInt64(tally.count))
                    let otherKey = Int((other >> 8) % UInt64(TortureSchema.cacheKeys[map]))
                    let name = TortureSchema.cacheKey(map: map, slot: otherSlot, otherKey)
                    if let (bytes, expired) = try cacheMaps[map].getStale(name) {
                        if let found = TortureSchema.parseCacheValue(bytes, map: map, slot: otherSlot, key: otherKey) {
                            if expired != found.isExpired(at: now) { violation("getStale(\(name)) says expired \(expired) for deadline \(found.deadline) at \(now)") }
                        } else {
                            violation("\(name) holds a torn or foreign value \(bytes)")
                        }
                    }
                case .cacheSweep(let map):
                    let removed = try cacheMaps[map].removeExpired()
                    applied = true
                    line("r \(removed)")
                    for key in 0..<TortureSchema.cacheKeys[map] where cache[map][key]?.isExpired(at: now) == true {
                        if let (bytes, _) = try cacheMaps[map].getStale(cacheNames[map][key]) {
                            violation("\(cacheNames[map][key]) (\(bytes)) expired at \(now) and is still there after removeExpired at \(now)")
                        }
                        cache[map][key] = nil
                    }
                case .check(let target):
                    // Changes nothing: a timeout in it leaves the model as it is either way.
                    applied = true
                    if target < TortureSchema.texts {
                        let value = try texts[target].load()
                        if !TortureSchema.textIntact(value) { violation("torn read of text.\(target): \(value)") }
                    } else if target < TortureSchema.texts + TortureSchema.blobs {
                        let value = try blobs[target - TortureSchema.texts].load()
                        if !TortureSchema.blobIntact(value) { violation("torn read of blob.\(target - TortureSchema.texts): \(value)") }
                    } else {
                        let index = target - TortureSchema.texts - TortureSchema.blobs
                        let value = try arrays[index].snapshot()
                        if !TortureSchema.uniform(value) { violation("torn snapshot of uniform.\(index): \(value)") }
                    }
                }
            } catch where isTimeout(error) {
                line("t \(applied ? 1 : 0) \(timeoutKind(error)) \(error)")
                if !applied { continue }
            } catch {
                throw OperationFailure(operation: op, applied: applied, error: error)
            }
            emit(UInt8(ascii: "a"))
        }
        line("d")
        store.close()
    }
}

/// A worker's start (opening the store, reading its state) that failed.
struct OpeningFailure: Error, CustomStringConvertible {
    let error: any Error
    var description: String { "opening the store and reading the worker's state failed: \(error)" }
}

/// A worker's operation that failed with an error the torture doesn't expect: ends the worker, reported as `x`.
struct OperationFailure: Error, CustomStringConvertible {
    let operation: TortureOp
    let applied: Bool
    let error: any Error
    var description: String { "\(operation) (\(applied ? "after" : "before") its write) failed: \(error)" }
}

// MARK: - The parent

final class TortureRun {
    static let faultPoints = ["beforeJournal", "afterJournal", "midWrite", "afterWrite", "beforeUnlock"]
    /// The points of a compaction in place, reached in a worker only by a
    /// growth of the map its insert asked for: a worker stopped at one holds
    /// the lock in the middle of a growth (at afterRename, the new file's lock too).
    static let growthFaultPoints = ["afterBulkCopy", "afterRetiring", "afterRename"]

    /// What the command line chose.
    struct Settings {
        var processes: Int
        var seconds: Int
        /// Stop once the workers have begun this many operations; 0 for no limit.
        var operationLimit: UInt64 = 0
        /// Mean operations between scheduled kills.
        var killEvery: Int
        /// Most workers one kill takes.
        var burst: Int = 3
        var lockTimeoutMS: Int = 5_000
        var durable = false
        var compactEveryMS: Int = 0
        var seed: UInt64
    }

    /// What the store holds of one worker's: all of it written by that worker alone.
    struct Model: Equatable, CustomStringConvertible {
        var counter: Int64 = 0
        var witness: Int64 = 0
        var own = [Int64?](repeating: nil, count: TortureSchema.ownKeys)
        var tally: Int64 = 0
        /// Its entries in the growing map, by key number.
        var churn: [Int: Int64] = [:]
        /// Its entries in each cache map, by key number: the last write the
        /// parent knows of, or as last seen (an entry seen gone stays gone).
        /// Not part of `==`: a cache entry may vanish (see ``cacheMismatch(in:now:)``).
        var cache: [[TortureSchema.CacheEntry?]] = TortureSchema.cacheKeys.map { [TortureSchema.CacheEntry?](repeating: nil, count: $0) }

        static func == (left: Model, right: Model) -> Bool {
            left.counter == right.counter && left.witness == right.witness && left.own == right.own
                && left.tally == right.tally && left.churn == right.churn
        }

        /// Why `found` (read from the store at `now`) can't be this model's
        /// cache entries, or nil if it can: each key holds this model's
        /// entry, or nothing when that is allowed: always in the evicting
        /// map, and in the other only if the entry has expired.
        func cacheMismatch(in found: Model, slot: Int, now: UInt64) -> String? {
            for map in 0..<2 {
                for key in 0..<TortureSchema.cacheKeys[map] {
                    let name = TortureSchema.cacheKey(map: map, slot: slot, key)
                    let expected = cache[map][key]
                    if let seen = found.cache[map][key] {
                        if seen != expected { return "\(name) holds \(seen), the model \(expected.map(\.description) ?? "absent")" }
                    } else if map == 1, let expected, !expected.isExpired(at: now) {
                        return "\(name) (\(expected)) is gone from the map that never evicts before its deadline (clock \(now))"
                    }
                }
            }
            return nil
        }

        var description: String {
            let ownText = own.map { $0.map(String.init) ?? "-" }.joined(separator: ",")
            return "counter \(counter), witness \(witness), own [\(ownText)], tally \(tally), "
                + "\(churn.count) grow entries (digest \(String(TortureSchema.digest(churn: churn), radix: 16)))"
        }

        /// Where `other`'s growing-map entries differ from these, for a violation's text.
        func churnDifference(from other: Model, slot: Int) -> String {
            let numbers = Set(churn.keys).union(other.churn.keys).filter { churn[$0] != other.churn[$0] }.sorted()
            guard !numbers.isEmpty else { return "" }
            let listed = numbers.prefix(6).map { number in
                "\(TortureSchema.churnKey(slot: slot, number)) \(other.churn[number].map(String.init) ?? "absent") (model \(churn[number].map(String.init) ?? "absent"))"
            }
            return "; grow keys differing: " + listed.joined(separator: ", ") + (numbers.count > 6 ? ", ..." : "")
        }
    }

    /// The part of a kill the seed decides: how many more workers die after
    /// the first, how long after one another, and the draws that pick them.
    /// Always the same number of draws, so one kill's burst never shifts the next.
    struct BurstPlan {
        var extraVictims = 0
        var gapsMicroseconds: [UInt32] = []
        var picks: [UInt64] = []

        static func draw(_ random: inout SplitMix, burst: Int) -> BurstPlan {
            var plan = BurstPlan()
            plan.extraVictims = Int(random.next() % UInt64(burst))
            for _ in 0..<(burst - 1) {
                // 1-3 ms: long enough for the kernel to have woken a waiter
                // after the death before, short enough to kill it before it
                // takes the lock on a busy machine.
                plan.gapsMicroseconds.append(UInt32(1_000 + random.next() % 2_001))
                plan.picks.append(random.next())
            }
            return plan
        }
    }

    /// One kill of the schedule, all drawn from the seed.
    struct ScheduledKill {
        /// The value of `control.operations` at which it comes due.
        var at: UInt64
        /// The first victim, or the next running worker after it.
        var slot: Int
        /// Kill the victim just as it reports starting a locked operation, not at once.
        var atLockedBegin: Bool
        /// Then wait this long first (none below 100): into the lock, or still waiting for it.
        var lockedBeginDelay: UInt64
        var burst: BurstPlan
    }

    /// A worker marked to die when it next starts a locked operation.
    struct LockedBeginKill {
        /// Or when `control.operations` reaches this, whatever the worker does.
        var deadline: UInt64
        var delay: UInt64
        var burst: BurstPlan
    }

    struct Slot {
        var pid: pid_t = 0
        var fd: Int32 = -1
        var incarnation = -1
        var random = SplitMix(seed: 0)
        /// The operation after the last acknowledged one.
        var pending: TortureOp = .increment
        /// Whether the worker reported starting `pending`.
        var begun = false
        var fault: String?
        /// Once it holds the lock at its fault point: how long to let others
        /// pile up waiting (none below 1000 µs), and the burst its kill starts.
        var holderDelay: UInt64 = 0
        var holderBurst = BurstPlan()
        /// The worker printed SLOTSTORE-HOLDING: it waits at a fault point holding the lock.
        var holding = false
        var finished = false
        var text: [UInt8]?
        var model = Model()
        /// Its churn state, kept in step with the worker's (see ``ChurnState``).
        var churnState = ChurnState()
        /// Dead; its state is read (and the in-flight operation resolved) at the parent's next transaction.
        var awaitingRead = false
        var killAtLockedBegin: LockedBeginKill?
        /// The last quiet request (see `restartGate`) it reported resting for.
        var restingGeneration: Int64 = 0
        /// The shared clock's time its last cache operation read (its `k` line): `pending`'s, if that is one.
        var pendingClock: UInt64 = TortureSchema.clockStart
        var running: Bool { pid != 0 }
    }

    enum Phase {
        case running
        /// Workers were killed (one, or a burst); waiting until the parent
        /// holds the lock once (or another worker is seen holding it) to
        /// settle the recovery count. `expected` is the range of recoveries
        /// their deaths make (see ``recoveryRange(of:)``); `gapsBefore`, the
        /// files the path held that were never observed, before the kill.
        /// holding the lock at a fault point.
        case resolving(victims: [Int], recoveriesBefore: UInt64, expected: ClosedRange<Int>, gapsBefore: Int)
    }

    /// At most one compaction in place at a time.
    enum Compaction {
        case idle
        /// A thread of this process runs `SlotStore.compact` to `capacity`.
        case inProcess(job: CompactionJob, thread: pthread_t, capacity: Int)
        /// A `slotstore compact` process that should die by SIGKILL at `point`, its output so far.
        case subprocess(pid: pid_t, fd: Int32, point: String, capacity: Int, output: [UInt8])
        /// The compactor process is reaped; the parent's next lock settles its recovery.
        case settling(point: String, killed: Bool)
    }

    struct FileID: Hashable {
        let device: UInt64
        let inode: UInt64
    }

    let path: String
    let settings: Settings
    let processes: Int
    let seconds: Int
    let seed: UInt64
    let executable: String
    let store: SlotStore
    var slots: [Slot]
    var shared = [Int64](repeating: 0, count: TortureSchema.sharedKeys)
    var phase = Phase.running
    var stopping = false

    // The kill schedule: its own stream, drawn in order, so the n-th kill is the same in every run of a seed.
    var killRandom: SplitMix
    var nextKill: ScheduledKill
    /// How long a worker marked to die at its next locked operation may take to start one, in operations.
    let lockedBeginPatience: UInt64
    /// After a burst the survivors are asked to rest (`control.quiet` set to
    /// a new generation): each finishes its operation, reports `q` and waits.
    /// The victims restart once every survivor rests. A waiter the burst left
    /// asleep on a free lock (its wake-up went to a victim) is otherwise
    /// woken soon by the others' traffic; with nobody else taking the lock, it
    /// sleeps until its lock timeout, which the run counts. Past the deadline
    /// (the lock timeout and 2 s), a survivor that never rested is a violation.
    var restartGate: (survivors: [Int], generation: Int64, deadline: Double)?
    var quietGeneration: Int64 = 0

    // Compaction in place.
    /// Mean seconds between compactions; 0 for none.
    let compactEvery: Double
    /// The two capacities the map moves between: the schema's, and twice
    /// that. Both hold every entry the workers can make.
    let mapCapacities: [Int]
    /// Its own stream, so runs without compaction draw as they always did.
    var compactionRandom: SplitMix
    var compaction = Compaction.idle
    var nextCompaction = Double.infinity
    var nextCompactionBySubprocess = false
    /// A store opened on each file the path has held, by generation, and never
    /// used for an operation, so it never follows a compaction: its status
    /// stays that file's. Recoveries are counted per file, so the total over
    /// every file is what the kills are checked against.
    var observers: [UInt64: SlotStore] = [:]
    /// The device and inode of each observed file, to tell the one at the path from the replaced ones.
    var observedFiles: [UInt64: FileID] = [:]
    /// The capacity "map" has in the file at the path (only the parent's compactions change it).
    var mapCapacity: Int
    /// The newest generation observed when the compaction under way started.
    var compactionStartedAt: UInt64 = 0
    /// Compactions of the parent's that also shrank the growing map (so that it grows again), and the ones
    /// refused because the map had meanwhile outgrown the capacity asked for.
    var growShrinks = 0
    var growShrinksRefused = 0
    /// While a compactor process runs, and until the parent has taken the lock
    /// after its death: the recoveries before it and the kills of workers
    /// holding the lock since. Scheduled kills and bursts wait meanwhile, so
    /// the recoveries in this span are exactly these kills and the compactor's death.
    /// `holderKills`: the range of recoveries those kills make (see ``recoveryRange(of:)``).
    var compactorEpoch: (recoveriesBefore: UInt64, holderKills: ClosedRange<Int>, gapsBefore: Int)?

    // Handles.
    let stop: ScalarField<Int64>
    let quiet: ScalarField<Int64>
    let operationCount: ScalarField<Int64>
    let counters: [ScalarField<Int64>]
    let witnesses: [ScalarField<Int64>]
    let accounts: [ScalarField<Int64>]
    let texts: [StringField]
    let blobs: [BytesField]
    let arrays: [ArrayField<Int64>]
    let map: MapField<String, Int64>
    let tally: ArrayField<Int64>
    let grow: MapField<String, Int64>
    let churnPeak: Int
    let clockField: ScalarField<Int64>
    let cacheMaps: [MapField<String, [UInt8]>]
    /// The parent's store reads the cache maps at this clock, always set to `clockNow`.
    let parentClock = CacheClock.manual(startingAt: Int64(TortureSchema.clockStart))
    /// The shared clock's time: the parent alone moves it (see ``advanceClock(_:)``).
    var clockNow = TortureSchema.clockStart
    var runStart = 0.0

    // Figures.
    var operations = 0
    var kills = 0
    var killsHolding = 0
    var faultHolds = 0
    var bursts = 0
    var burstVictims = 0
    var lockTimeouts = 0
    /// Lock timeouts that named no live holder: a waiter slept through a free lock.
    var orphanedLockTimeouts = 0
    var scheduledKills = 0
    var scheduleDigest: UInt64 = 0xCBF2_9CE4_8422_2325
    var totalKillLag: UInt64 = 0
    var maximumKillLag: UInt64 = 0
    var violations: [String] = []
    var reportedGlobal = Set<String>()
    var initialRecoveries: UInt64 = 0
    var compactionsDone = 0
    var compactionsFailed = 0
    var compactorsKilled = 0
    var compactorsKilledAfterRename = 0
    /// The recoveries the deaths of the compactor processes accounted for.
    var compactorRecoveries = 0
    var killsDuringCompactions = 0
    var killedCompactorPIDs: [pid_t] = []
    /// The recoveries that followed kills of workers (more than the kills holding the lock when a growth's dead holder held two files' locks).
    var killRecoveries = 0
    /// Kills of workers stopped in a growth, at afterBulkCopy, afterRetiring, afterRename.
    var killsAtGrowthPoints = [0, 0, 0]
    /// Recovery checks whose lower bound was waived, as a file the path held since the kill was never observed.
    var settlesAcrossUnobservedFiles = 0
    /// Transactions that found the growing map full, rolled back, and ran again once it had grown.
    var transactionsFoundFull = 0
    /// Checks of every entry of both maps against the model (the parent's transactions).
    var checks = 0
    // Cache maps.
    /// Live entries evicted by the workers' acknowledged sets (their `e` lines).
    var cacheEvictions = 0
    /// Sets refused as the map was full of live entries (safeSet, or the map that never evicts).
    var cacheSetsRefused = 0
    /// Entries the workers' removeExpired() calls removed.
    var cacheSwept = 0
    /// Expired entries the parent's checks found still in a cache map (invisible to get, seen by getStale).
    var expiredSeen = 0
    /// Entries the parent's model held and a check found gone: evicted or reclaimed.
    var cacheEntriesGone = 0
    /// Parent checks that found the evicting map full.
    var cacheFullChecks = 0
    /// Workers killed holding the lock at afterEviction, and killed inside any cache operation.
    var killsInEviction = 0
    var killsInCacheOperations = 0

    init(path: String, settings: Settings) throws {
        self.path = path
        self.settings = settings
        self.processes = settings.processes
        self.seconds = settings.seconds
        self.compactEvery = Double(settings.compactEveryMS) / 1000
        self.seed = settings.seed
        self.killRandom = SplitMix(seed: seed ^ 0x5EED_5EED_5EED_5EED)
        self.lockedBeginPatience = UInt64(max(64, settings.killEvery / 4))
        self.nextKill = ScheduledKill(at: 0, slot: 0, atLockedBegin: false, lockedBeginDelay: 0, burst: BurstPlan())
        self.compactionRandom = SplitMix(seed: seed ^ 0xC0_4AC7_C0_4AC7)
        let capacity = processes * TortureSchema.ownKeys + TortureSchema.sharedKeys + 8
        self.mapCapacities = [capacity, 2 * capacity]
        self.mapCapacity = capacity
        self.slots = Array(repeating: Slot(), count: processes)
        executable = TortureRun.selfExecutable()
        // A short lock timeout: the parent must keep reading the pipes (and
        // killing workers that stop holding the lock) while it waits.
        var options = OpenOptions(mode: .create, lockTimeout: .milliseconds(20), durability: settings.durable ? .flushOnCommit : .processCrash)
        options.clock = parentClock
        let store = try SlotStore(path: path, schema: TortureSchema.make(processes: processes), options: options)
        self.store = store
        stop = try store.scalar("control.stop", as: Int64.self)
        quiet = try store.scalar("control.quiet", as: Int64.self)
        operationCount = try store.scalar("control.operations", as: Int64.self)
        counters = try (0..<processes).map { try store.scalar("counter.\($0)", as: Int64.self) }
        witnesses = try (0..<processes).map { try store.scalar("witness.\($0)", as: Int64.self) }
        accounts = try (0..<TortureSchema.accounts).map { try store.scalar("account.\($0)", as: Int64.self) }
        texts = try (0..<TortureSchema.texts).map { try store.string("text.\($0)") }
        blobs = try (0..<TortureSchema.blobs).map { try store.bytes("blob.\($0)") }
        arrays = try (0..<TortureSchema.arrays).map { try store.array("uniform.\($0)", of: Int64.self) }
        map = try store.map("map", key: String.self, value: Int64.self)
        tally = try store.array("tally", of: Int64.self)
        grow = try store.map("grow", key: String.self, value: Int64.self)
        churnPeak = TortureSchema.churnPeak(processes: processes)
        clockField = try store.scalar("control.clock", as: Int64.self)
        cacheMaps = try TortureSchema.cacheMaps.map { try store.map($0, key: String.self, value: [UInt8].self) }
        clockField.store(Int64(TortureSchema.clockStart))
        for account in accounts { account.store(TortureSchema.accountStart) }
        // Lock-free writes are durable only after sync(): the starting balances are what every check sums to.
        if settings.durable { try store.sync() }
        // Many files (every compaction and growth makes one), each mapped (and
        // its descriptor open) by this process's store and by its observer until the end.
        var limit = rlimit()
        if getrlimit(RLIMIT_NOFILE_VALUE, &limit) == 0 && limit.rlim_cur < limit.rlim_max {
            limit.rlim_cur = limit.rlim_max
            _ = setrlimit(RLIMIT_NOFILE_VALUE, &limit)
        }
        if observe()?.generation != 1 { violation("the new store is not generation 1") }
        initialRecoveries = totalRecoveries()
        nextKill = drawKill(after: 0)
    }

    static func selfExecutable() -> String {
        var buffer = [CChar](repeating: 0, count: 4096)
        let count = readlink("/proc/self/exe", &buffer, buffer.count - 1)
        guard count > 0 else { return CommandLine.arguments[0] }
        return String(decoding: buffer.prefix(count).map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    func violation(_ text: String) {
        violations.append(text)
        if violations.count <= 20 { Output.error("torture: VIOLATION: \(text)") }
    }

    func now() -> Double {
        var time = timespec()
        clock_gettime(CLOCK_MONOTONIC, &time)
        return Double(time.tv_sec) + Double(time.tv_nsec) / 1e9
    }

    /// Operations the workers have begun (each adds one before it starts), the clock of the kill schedule.
    func operationsBegun() -> UInt64 { UInt64(clamping: operationCount.load()) }

    /// The kill after the one due at `previous`: a fixed number of draws, so the schedule depends on the seed alone.
    func drawKill(after previous: UInt64) -> ScheduledKill {
        let unit = Double(killRandom.next() >> 11) / Double(1 << 53)
        let gap = max(1, UInt64(Double(settings.killEvery) * (0.5 + unit)))
        let slot = Int(killRandom.next() % UInt64(processes))
        let atLockedBegin = killRandom.next() % 5 >= 2
        let delay = killRandom.next() % 300
        let burst = BurstPlan.draw(&killRandom, burst: min(settings.burst, processes))
        return ScheduledKill(at: previous + gap, slot: slot, atLockedBegin: atLockedBegin, lockedBeginDelay: delay, burst: burst)
    }

    // MARK: Run

    /// Runs the torture and returns the number of violations.
    func execute() -> Int {
        signal(SIGPIPE, SIG_IGN)
        let start = now()
        runStart = start
        let deadline = start + Double(seconds)
        for slot in 0..<processes { spawn(slot) }
        var stopDeadline = Double.infinity
        if compactEvery > 0 { scheduleCompaction(from: start, first: true) }

        while true {
            flushControl()
            tickClock()
            let time = now()
            if !stopping && (time >= deadline || reachedOperationLimit()) {
                stopping = true
                setControl(stop, 1)
                stopDeadline = time + 60
                for index in slots.indices { slots[index].killAtLockedBegin = nil }
            }
            if stopping {
                let idle = slots.allSatisfy { !$0.running && !$0.awaitingRead }
                if idle, case .running = phase, case .idle = compaction { break }
                if time > stopDeadline {
                    violation("workers did not stop (or a compaction did not end) within 60 s of the stop flag")
                    for index in slots.indices where slots[index].running { killWorker(index) }
                    break
                }
            }
            serviceCompaction()
            // Growths replace the file at any moment: look at each new one as soon as possible.
            observe()

            switch phase {
            case .resolving(let victims, let before, let expected, let gapsBefore):
                service(timeout: 0)
                if let holder = slots.indices.first(where: { slots[$0].running && slots[$0].holding }) {
                    // Mutual exclusion: a worker holding the lock now took it
                    // after every victim that held it died (recovering it), or
                    // none of them held it.
                    settle(victims: victims, before: before, expected: expected, gapsBefore: gapsBefore)
                    killHolder(holder)
                } else if parentTransaction() {
                    settle(victims: victims, before: before, expected: expected, gapsBefore: gapsBefore)
                    phase = .running
                    restartResolved()
                }
            case .running:
                if slots.contains(where: \.awaitingRead) {
                    if parentTransaction() { restartResolved() }
                    service(timeout: 0)
                } else {
                    service(timeout: stopping ? 10 : 1)
                }
                if case .running = phase, let holder = slots.indices.first(where: { slots[$0].running && slots[$0].holding }) {
                    killHolder(holder)
                    continue
                }
                if restartGate != nil, case .running = phase, !slots.contains(where: \.awaitingRead) { restartResolved() }
                // While a compactor process runs, only workers holding the lock at a fault point are killed.
                guard !stopping, case .running = phase, compactorEpoch == nil else { continue }
                let count = operationsBegun()
                if let index = slots.indices.first(where: { slots[$0].running && (slots[$0].killAtLockedBegin.map { count >= $0.deadline } ?? false) }) {
                    let plan = slots[index].killAtLockedBegin!.burst
                    slots[index].killAtLockedBegin = nil
                    killBurst(first: index, plan: plan)
                } else if count >= nextKill.at && (settings.operationLimit == 0 || nextKill.at < settings.operationLimit) {
                    // With --operations, only kills scheduled before the limit: the
                    // stop can wait (for a burst to settle) past a later one, which
                    // would then fire in one run and not in another.
                    fire(nextKill, count: count)
                    nextKill = drawKill(after: nextKill.at)
                }
            }
        }
        return finish(elapsed: now() - start)
    }

    /// With --operations: the workers began that many, and every kill the
    /// schedule puts before it has happened and been settled, so a seed
    /// makes the same kills in every run.
    func reachedOperationLimit() -> Bool {
        guard settings.operationLimit > 0, operationsBegun() >= settings.operationLimit else { return false }
        guard nextKill.at >= settings.operationLimit, case .running = phase else { return false }
        return !slots.contains { $0.awaitingRead || $0.killAtLockedBegin != nil }
    }

    /// Carries out a scheduled kill that came due at `count` operations.
    func fire(_ kill: ScheduledKill, count: UInt64) {
        scheduledKills += 1
        for word in [kill.at, UInt64(kill.slot), kill.atLockedBegin ? 1 : 0, UInt64(kill.burst.extraVictims)] {
            scheduleDigest = (scheduleDigest ^ word) &* 0x100_0000_01B3
        }
        let lag = count - kill.at
        totalKillLag += lag
        maximumKillLag = max(maximumKillLag, lag)
        let order = (0..<processes).map { (kill.slot + $0) % processes }
        guard let victim = order.first(where: { slots[$0].running && slots[$0].killAtLockedBegin == nil }) else { return }
        if kill.atLockedBegin {
            slots[victim].killAtLockedBegin = LockedBeginKill(deadline: count + lockedBeginPatience, delay: kill.lockedBeginDelay,
                                                              burst: kill.burst)
        } else {
            killBurst(first: victim, plan: kill.burst)
        }
    }

    // MARK: Workers

    func spawn(_ index: Int) {
        var slot = slots[index]
        slot.incarnation += 1
        let workerSeed = TortureOp.seed(run: seed, slot: index, incarnation: slot.incarnation)
        slot.random = SplitMix(seed: workerSeed)
        slot.pending = TortureOp.next(&slot.random)
        slot.begun = false
        slot.holding = false
        slot.finished = false
        slot.text = nil
        slot.killAtLockedBegin = nil
        // The worker starts from its keys in the store, in sorted order: so does the model.
        slot.churnState.order = slot.model.churn.keys.sorted()
        slot.churnState.next = max(slot.churnState.next, (slot.churnState.order.last ?? -1) + 1)
        // The fault point and what follows its hold, from this incarnation's
        // own stream: the same in every run of the seed, whenever it starts.
        // One start in three stops in the first growth it makes (if any),
        // one in three at a write point, the others nowhere.
        var plan = SplitMix(seed: TortureOp.seed(run: seed ^ 0xFA17_FA17_FA17_FA17, slot: index, incarnation: slot.incarnation))
        let kind = plan.next() % 3
        let point = TortureRun.faultPoints[Int(plan.next() % UInt64(TortureRun.faultPoints.count))]
        let hit = 1 + plan.next() % 100
        let growthPoint = TortureRun.growthFaultPoints[Int(plan.next() % UInt64(TortureRun.growthFaultPoints.count))]
        slot.fault = kind == 0 ? "\(point):hold:\(hit)" : kind == 1 ? "\(growthPoint):hold" : nil
        // Of the others, half stop at an eviction (of a live or an expired
        // entry, in either cache map), holding the lock, with the entry removed
        // and the insert not made: the kill must bring the entry back.
        if kind == 2 && hit % 2 == 0 { slot.fault = "afterEviction:hold:\(1 + hit % 7)" }
        slot.holderDelay = plan.next() % 3000
        slot.holderBurst = BurstPlan.draw(&plan, burst: min(settings.burst, processes))

        let spec = "\(index):\(slot.incarnation):\(workerSeed):\(slot.churnState.next):\(slot.churnState.applied)"
        var arguments = [executable, "torture", "--worker", spec, "--lock-timeout", "\(settings.lockTimeoutMS)"]
        if settings.durable { arguments.append("--durable") }
        let (pid, readEnd) = spawn(arguments + [path], fault: slot.fault, alsoStandardError: false)
        slot.pid = pid
        slot.fd = readEnd
        slots[index] = slot
    }

    func fatal(_ text: String) -> Never {
        Output.error("torture: \(text)")
        for slot in slots where slot.running { kill(slot.pid, SIGKILL) }
        if case .subprocess(let pid, _, _, _, _) = compaction { kill(pid, SIGKILL) }
        exit(ExitStatus.usage)
    }

    /// Reads whatever the workers wrote, waiting at most `timeout` ms for the first byte.
    func service(timeout: Int32) {
        var descriptors = slots.filter(\.running).map { pollfd(fd: $0.fd, events: Int16(POLLIN), revents: 0) }
        guard !descriptors.isEmpty else {
            if timeout > 0 { usleep(UInt32(timeout) * 1000) }
            return
        }
        let ready = poll(&descriptors, nfds_t(descriptors.count), timeout)
        guard ready > 0 else { return }
        for descriptor in descriptors where descriptor.revents != 0 {
            guard let index = slots.firstIndex(where: { $0.running && $0.fd == descriptor.fd }) else { continue }
            if !read(index) { exited(index) }
        }
        if case .running = phase, !stopping, compactorEpoch == nil {
            // A worker that just reported starting a locked operation, while it is marked to be killed then.
            for index in slots.indices where slots[index].running && slots[index].begun && slots[index].pending.takesLock {
                guard let kill = slots[index].killAtLockedBegin else { continue }
                slots[index].killAtLockedBegin = nil
                if kill.delay >= 100 { usleep(UInt32(kill.delay - 100)) }
                killBurst(first: index, plan: kill.burst)
                return
            }
        }
    }

    /// Reads the slot's pipe until it would block; returns false at end of file.
    @discardableResult
    func read(_ index: Int) -> Bool {
        var buffer = [UInt8](repeating: 0, count: 65_536)
        while true {
            let count = Glibc.read(slots[index].fd, &buffer, buffer.count)
            if count == 0 { return false }
            if count < 0 {
                if errno == EINTR { continue }
                return true
            }
            for byte in buffer.prefix(count) { consume(index, byte) }
        }
    }

    func consume(_ index: Int, _ byte: UInt8) {
        if slots[index].text != nil {
            if byte == UInt8(ascii: "\n") {
                let line = String(decoding: slots[index].text!, as: UTF8.self)
                slots[index].text = nil
                handle(index, line)
            } else {
                slots[index].text!.append(byte)
            }
            return
        }
        switch byte {
        case UInt8(ascii: "b"):
            slots[index].begun = true
        case UInt8(ascii: "a"):
            acknowledge(index)
        case UInt8(ascii: "\n"):
            break
        default:
            slots[index].text = [byte]
        }
    }

    func acknowledge(_ index: Int) {
        operations += 1
        var slot = slots[index]
        if !slot.begun { violation("worker \(index) acknowledged an operation it never started") }
        apply(slot.pending, to: &slot.model, churn: &slot.churnState, sharedToo: true, clock: slot.pendingClock)
        slot.begun = false
        slot.pending = TortureOp.next(&slot.random)
        slots[index] = slot
    }

    /// The worker's begun operation timed out before it changed anything: the model moves on without it.
    func skip(_ index: Int) {
        if !slots[index].begun { violation("worker \(index) reported a timeout of an operation it never started") }
        slots[index].begun = false
        slots[index].pending = TortureOp.next(&slots[index].random)
    }

    /// Applies `op` to the model; `clock`: the shared clock's time the worker read for it (a cache operation).
    func apply(_ op: TortureOp, to model: inout Model, churn state: inout ChurnState, sharedToo: Bool, clock: UInt64) {
        switch op {
        case .cacheSet(let map, let key, let ttl, let stamp, _):
            model.cache[map][key] = TortureSchema.CacheEntry(stamp: stamp, deadline: ttl == 0 ? 0 : clock + ttl)
        case .cacheRemove(let map, let key): model.cache[map][key] = nil
        case .cacheSweep(let map):
            for key in model.cache[map].indices where model.cache[map][key]?.isExpired(at: clock) == true { model.cache[map][key] = nil }
        case .cacheRead: break
        case .increment: model.counter += 1
        case .mapSet(let key, let value): model.own[key] = value
        case .mapRemove(let key): model.own[key] = nil
        case .mapAdd(let key, let delta): model.own[key] = (model.own[key] ?? 0) + delta
        case .sharedAdd(let key):
            model.witness += 1
            if sharedToo { shared[key] += 1 }
        case .tallyAdd(let delta): model.tally &+= delta
        case .tallyStore(let value): model.tally = value
        case .churn(let pick, let value):
            state.apply(state.changes(pick: pick, value: value, pair: false, peak: churnPeak), to: &model.churn)
        case .churnPair(let pick, let value):
            state.apply(state.changes(pick: pick, value: value, pair: true, peak: churnPeak), to: &model.churn)
        case .transfer, .text, .blob, .uniform, .check: break
        }
    }

    func handle(_ index: Int, _ line: String) {
        if line.hasPrefix("SLOTSTORE-HOLDING") {
            slots[index].holding = true
        } else if line.hasPrefix("h ") {
            let model = slots[index].model
            let expected = "h \(model.counter) \(model.witness) \(TortureSchema.digest(model.own)) \(model.tally) \(TortureSchema.digest(churn: model.churn))"
            if line != expected {
                violation("worker \(index) started from \(line.dropFirst(2)), the model says \(expected.dropFirst(2)) (counter witness digest tally grow-digest)")
            }
        } else if line.hasPrefix("k "), let time = UInt64(line.dropFirst(2)) {
            if time > clockNow || time < slots[index].pendingClock {
                violation("worker \(index) read the shared clock at \(time), after \(slots[index].pendingClock) and with the parent's at \(clockNow)")
            }
            slots[index].pendingClock = time
        } else if line == "e" {
            cacheEvictions += 1
        } else if line == "n" {
            // A cache set refused as the map was full of live entries: rolled back, the model moves on without it.
            cacheSetsRefused += 1
            skip(index)
        } else if line.hasPrefix("r "), let removed = Int(line.dropFirst(2)) {
            cacheSwept += removed
        } else if line == "f" {
            // A transaction found the growing map full, rolled back, and runs again in the grown map.
            transactionsFoundFull += 1
        } else if line.hasPrefix("t ") {
            // `t 0`: the begun operation timed out before it changed anything;
            // `t 1`: after (its `a` follows); `t -`: while opening.
            lockTimeouts += 1
            let words = line.split(separator: " ", maxSplits: 3)
            if words.count > 2 && words[2] == "orphaned" { orphanedLockTimeouts += 1 }
            if lockTimeouts <= 10 { Output.error("torture: note: worker \(index) (PID \(slots[index].pid)) timed out: \(words.last ?? "")") }
            if line.hasPrefix("t 0 ") { skip(index) }
        } else if line.hasPrefix("q "), let generation = Int64(line.dropFirst(2)) {
            slots[index].restingGeneration = generation
        } else if line.hasPrefix("v ") {
            violation(String(line.dropFirst(2)))
        } else if line.hasPrefix("x ") {
            violation("worker \(index) failed: \(line.dropFirst(2))")
        } else if line == "d" {
            slots[index].finished = true
        } else {
            violation("worker \(index) wrote an unexpected line: \(line)")
        }
    }

    /// End of file from a worker nobody killed: it finished after the stop flag, or it died.
    func exited(_ index: Int) {
        let pid = slots[index].pid
        let status = reap(pid)
        close(slots[index].fd)
        slots[index].fd = -1
        slots[index].pid = 0
        if slots[index].finished && status == 0 { return }
        violation("worker \(index) (PID \(pid)) ended by itself with \(describe(status)) before the stop flag")
        slots[index].awaitingRead = true
    }

    func reap(_ pid: pid_t) -> Int32 {
        var status: Int32 = 0
        while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
        return status
    }

    func describe(_ status: Int32) -> String {
        status & 0x7F == 0 ? "exit status \((status >> 8) & 0xFF)" : "signal \(status & 0x7F)"
    }

    // MARK: Kills

    /// Kills a worker waiting at its fault point with the lock, and the rest of its burst.
    func killHolder(_ index: Int) {
        faultHolds += 1
        // Let other workers pile up waiting on the lock first, sometimes.
        let delay = slots[index].holderDelay
        if delay >= 1000 { usleep(UInt32(delay - 1000)) }
        killBurst(first: index, plan: slots[index].holderBurst)
    }

    /// SIGKILLs `first` and then, 1-3 ms apart, the plan's extra victims,
    /// preferring workers inside a locked operation: the holder's death wakes
    /// one waiter, and a woken waiter killed before it takes the lock is what
    /// leaves a free lock with its other waiters asleep. Then enters the
    /// resolving phase. No extras while a compactor process runs: its recovery
    /// is counted only against kills at fault points.
    func killBurst(first: Int, plan: BurstPlan) {
        let before = totalRecoveries()
        let gapsBefore = unobservedGenerations
        var victims: [Int] = []
        var expected = 0...0
        func take(_ index: Int) {
            let range = recoveryRange(of: index)
            expected = (expected.lowerBound + range.lowerBound)...(expected.upperBound + range.upperBound)
            if slots[index].holding, let fault = slots[index].fault,
               let point = TortureRun.growthFaultPoints.firstIndex(where: { fault.hasPrefix($0 + ":") }) {
                killsAtGrowthPoints[point] += 1
            }
            if slots[index].holding, slots[index].fault?.hasPrefix("afterEviction:") == true { killsInEviction += 1 }
            if slots[index].begun && slots[index].pending.isCache { killsInCacheOperations += 1 }
            switch compaction {
            case .inProcess, .subprocess: killsDuringCompactions += 1
            case .idle, .settling: break
            }
            killWorker(index)
            kills += 1
            victims.append(index)
        }
        take(first)
        // No extras once the stop flag is set: a worker that sees it exits on
        // its own, and one that did so just before its SIGKILL is no failure.
        let extras = compactorEpoch == nil && !stopping ? plan.extraVictims : 0
        for extra in 0..<extras {
            usleep(plan.gapsMicroseconds[extra])
            // Fresh news of who is inside a locked operation (or holding at a fault point).
            for index in slots.indices where slots[index].running { read(index) }
            let candidates = slots.indices.filter { slots[$0].running }
            guard !candidates.isEmpty else { break }
            let inside = candidates.filter { slots[$0].begun && slots[$0].pending.takesLock }
            let pool = inside.isEmpty ? candidates : inside
            take(pool[Int(plan.picks[extra] % UInt64(pool.count))])
        }
        if victims.count > 1 {
            bursts += 1
            burstVictims += victims.count
        }
        if victims.count > 1 && !stopping {
            quietGeneration += 1
            setControl(quiet, quietGeneration)
            // The deadline starts once the request is in the store (see flushControl).
            restartGate = (slots.indices.filter { slots[$0].running }, quietGeneration, .infinity)
            flushControl()
        }
        phase = .resolving(victims: victims, recoveriesBefore: before, expected: expected, gapsBefore: gapsBefore)
    }

    /// The recoveries the death of the worker at `index` can make: one if it
    /// was seen holding the lock at a fault point, none or one otherwise.
    /// A worker may be growing the map (its begun operation an insert there):
    /// from the growth's rename until the new file's directory entry is
    /// durable it holds the new file's lock too (see SlotStore.compact), so
    /// its death can make two (the replaced file's, counted as owed, and
    /// the new file's); stopped at afterRename, at least one.
    func recoveryRange(of index: Int) -> ClosedRange<Int> {
        let slot = slots[index]
        let growing = slot.begun && slot.pending.isChurn
        return (slot.holding ? 1 : 0)...(growing ? 2 : 1)
    }

    func killWorker(_ index: Int) {
        let pid = slots[index].pid
        kill(pid, SIGKILL)
        let status = reap(pid)
        if status & 0x7F != SIGKILL {
            violation("worker \(index) (PID \(pid)) ended with \(describe(status)) before its SIGKILL")
        }
        // The write end died with the worker: read to end of file.
        _ = fcntl(slots[index].fd, F_SETFL, 0)
        while read(index) {}
        close(slots[index].fd)
        slots[index].fd = -1
        slots[index].pid = 0
        slots[index].killAtLockedBegin = nil
        slots[index].awaitingRead = true
    }

    /// Called once the victims' deaths are settled: each victim that died
    /// holding the lock is recovered by exactly one lock acquisition, whoever
    /// made it (a later victim of the same burst included). Only one holds the
    /// lock at a time, but a victim that recovered an earlier one's death can
    /// die holding it in turn: so at most one recovery per victim (two for
    /// one that was growing the map), and at least one per victim seen
    /// holding the lock at a fault point. Unless a file the path held since
    /// the kill was never observed (replaced before the parent looked): a
    /// recovery counted there is invisible, so only the upper bound holds.
    func settle(victims: [Int], before: UInt64, expected: ClosedRange<Int>, gapsBefore: Int) {
        let named = victims.map(String.init).joined(separator: ", ")
        if compactorEpoch != nil {
            // Checked together with the compactor's own recovery once it is settled.
            killsHolding += expected.lowerBound
            compactorEpoch!.holderKills = (compactorEpoch!.holderKills.lowerBound + expected.lowerBound)
                ... (compactorEpoch!.holderKills.upperBound + expected.upperBound)
            if expected.lowerBound != victims.count {
                violation("worker(s) \(named) were killed away from a fault point while a compactor process ran (a bug of the torture)")
            }
            return
        }
        let delta = Int(totalRecoveries() &- before)
        if delta > expected.upperBound {
            violation("\(delta) recoveries followed the death of worker(s) \(named), expected at most \(expected.upperBound)")
        }
        killsHolding += min(delta, victims.count)
        killRecoveries += delta
        if delta < expected.lowerBound {
            if unobservedGenerations != gapsBefore {
                settlesAcrossUnobservedFiles += 1
            } else {
                let points = victims.filter { slots[$0].fault != nil }.map { "\($0) at \(slots[$0].fault!)" }.joined(separator: ", ")
                violation("\(expected.lowerBound) of worker(s) \(named) were killed holding the lock at a fault point (\(points)) but \(delta) recoveries followed")
            }
        }
    }

    // MARK: The parent's checks

    /// Everything the workers wrote that the model predicts, read in one
    /// transaction: every entry of both maps, parsed back to its writer.
    struct StoreState {
        var workers: [Model]
        var shared: [Int64]
        /// Problems no single worker's model explains: keys nobody writes, counts that disagree with the entries.
        var problems: [String] = []
        var growCapacity = 0
        var growCount = 0
        /// Expired entries still in the cache maps; whether the evicting one was full.
        var expired = 0
        var cacheFull = false
    }

    /// Reads every key any worker may have in the cache maps, at the parent's
    /// clock `now`, into `state`, checking what holds whatever the model:
    /// each value intact and its key's; `getStale` calls it expired exactly
    /// when its deadline has come; `get` returns it exactly when it is not
    /// expired; the walk (`entries()`) and `count` show exactly the live
    /// ones; never more entries than the capacity.
    func readCache(into state: inout StoreState, now: UInt64) throws {
        for map in 0..<2 {
            let field = cacheMaps[map]
            var live: [String: [UInt8]] = [:]
            var present = 0
            for slot in 0..<processes {
                for key in 0..<TortureSchema.cacheKeys[map] {
                    let name = TortureSchema.cacheKey(map: map, slot: slot, key)
                    guard let (bytes, expired) = try field.getStale(name) else { continue }
                    present += 1
                    guard let entry = TortureSchema.parseCacheValue(bytes, map: map, slot: slot, key: key) else {
                        state.problems.append("\(name) holds a torn or foreign value \(bytes)")
                        continue
                    }
                    state.workers[slot].cache[map][key] = entry
                    if expired != entry.isExpired(at: now) {
                        state.problems.append("getStale(\(name)) says expired \(expired) for \(entry) at \(now)")
                    }
                    let visible = try field.get(name)
                    if expired {
                        state.expired += 1
                        if visible != nil { state.problems.append("get(\(name)) returned \(entry), expired at \(now)") }
                    } else {
                        live[name] = bytes
                        if visible != bytes { state.problems.append("get(\(name)) returned \(visible.map { "\($0)" } ?? "nothing"), getStale \(entry) (live at \(now))") }
                    }
                }
            }
            let walked = try field.entries()
            let strays = walked.filter { live[$0.key] != $0.value }.map(\.key)
            if !strays.isEmpty || walked.count != live.count {
                state.problems.append("\(TortureSchema.cacheMaps[map]): the walk shows \(walked.count) entries at \(now), \(live.count) are live"
                                      + (strays.isEmpty ? "" : "; not live or other values: \(strays.prefix(6).joined(separator: ", "))"))
            }
            let count = field.count
            if count != live.count { state.problems.append("\(TortureSchema.cacheMaps[map]) counts \(count) live entries at \(now), holds \(live.count)") }
            let capacity = TortureSchema.cacheCapacity(map: map, processes: processes)
            if present > capacity { state.problems.append("\(TortureSchema.cacheMaps[map]) holds \(present) entries, over its capacity \(capacity)") }
            if map == 0 && present == capacity { state.cacheFull = true }
        }
    }

    /// Reads the store's state; call inside the parent's transaction.
    func readState(_ tx: borrowing Transaction) throws -> StoreState {
        var state = StoreState(workers: (0..<processes).map { index in
            Model(counter: tx.load(counters[index]), witness: tx.load(witnesses[index]))
        }, shared: [Int64](repeating: 0, count: TortureSchema.sharedKeys))
        let tallies = tx.load(tally)
        if tallies.count == processes { for index in 0..<processes { state.workers[index].tally = tallies[index] } }
        var strays: [String] = []
        let mapEntries = try map.entries()
        for (key, value) in mapEntries {
            if let (slot, number) = TortureSchema.parseOwnKey(key), slot < processes {
                state.workers[slot].own[number] = value
            } else if let number = TortureSchema.parseSharedKey(key) {
                state.shared[number] = value
            } else {
                strays.append("map[\(key)] = \(value)")
            }
        }
        let growEntries = try grow.entries()
        for (key, value) in growEntries {
            if let (slot, number) = TortureSchema.parseChurnKey(key), slot < processes, state.workers[slot].churn[number] == nil {
                state.workers[slot].churn[number] = value
            } else {
                strays.append("grow[\(key)] = \(value)")
            }
        }
        if !strays.isEmpty { state.problems.append("keys no worker wrote: \(strays.prefix(6).joined(separator: ", "))") }
        if map.count != mapEntries.count { state.problems.append("the map counts \(map.count) entries but holds \(mapEntries.count)") }
        state.growCount = grow.count
        state.growCapacity = grow.capacity
        if state.growCount != growEntries.count {
            state.problems.append("the growing map counts \(state.growCount) entries but holds \(growEntries.count)")
        }
        if state.growCapacity < TortureSchema.growInitialCapacity || state.growCapacity > TortureSchema.growMaximumCapacity
            || growEntries.count > state.growCapacity {
            state.problems.append("the growing map holds \(growEntries.count) entries at capacity \(state.growCapacity), "
                                  + "outside \(TortureSchema.growInitialCapacity)...\(TortureSchema.growMaximumCapacity)")
        }
        try readCache(into: &state, now: clockNow)
        return state
    }

    /// Takes the lock once (recovering any dead holder), checks the invariants
    /// and resolves every dead worker's state. False on a lock timeout.
    ///
    /// Holding the lock, the parent first reads every pipe: a locked operation
    /// that committed before the parent took the lock was announced (`b`)
    /// before it started, so each live worker's locked state (its own map
    /// keys, its keys in the growing map, its witness, its share of the
    /// shared keys) is now the model, or the model after its begun operation.
    /// Counters and tallies are lock-free and only checked for dead workers.
    /// Every entry of both maps is read and must belong to a worker's model.
    func parentTransaction() -> Bool {
        var global: [String] = []
        var state: StoreState?
        var ended: [Int] = []
        do {
            try store.transaction { tx in
                // The clock moves first: what the workers read of it from now on is the time of this check.
                try advanceClock(tx)
                ended = []
                for index in slots.indices where slots[index].running && !read(index) { ended.append(index) }
                let total = accounts.reduce(Int64(0)) { $0 + tx.load($1) }
                if total != Int64(TortureSchema.accounts) * TortureSchema.accountStart {
                    global.append("the accounts sum to \(total), expected \(Int64(TortureSchema.accounts) * TortureSchema.accountStart)")
                }
                for (index, field) in texts.enumerated() where !TortureSchema.textIntact(tx.load(field)) {
                    global.append("text.\(index) fails its checksum: \(tx.load(field))")
                }
                for (index, field) in blobs.enumerated() where !TortureSchema.blobIntact(tx.load(field)) {
                    global.append("blob.\(index) fails its checksum: \(tx.load(field))")
                }
                for (index, field) in arrays.enumerated() where !TortureSchema.uniform(tx.load(field)) {
                    global.append("uniform.\(index) is not uniform: \(tx.load(field))")
                }
                state = try readState(tx)
            }
        } catch SlotStoreError.lockTimeout {
            return false
        } catch {
            fatal("the parent's transaction failed: \(error)")
        }
        guard let state else { return false }
        checks += 1
        expiredSeen += state.expired
        if state.cacheFull { cacheFullChecks += 1 }
        // The parent's store may have switched to a file nobody watches yet.
        observe()
        global += state.problems
        // A broken invariant stays broken: report each distinct finding once.
        for text in global where reportedGlobal.insert(text).inserted { violation(text) }
        var sharedInFlight = [Int64](repeating: 0, count: TortureSchema.sharedKeys)
        for index in slots.indices where slots[index].running || slots[index].awaitingRead {
            let found = state.workers[index]
            if slots[index].awaitingRead {
                resolve(index, found)
            } else {
                let slot = slots[index]
                var before = slot.model
                before.counter = found.counter
                before.tally = found.tally
                var after = before
                var afterChurn = slot.churnState
                if slot.begun {
                    apply(slot.pending, to: &after, churn: &afterChurn, sharedToo: false, clock: slot.pendingClock)
                    if case .sharedAdd(let key) = slot.pending { sharedInFlight[key] += 1 }
                }
                let beforeMismatch = before.cacheMismatch(in: found, slot: index, now: clockNow)
                let afterMismatch = slot.begun ? after.cacheMismatch(in: found, slot: index, now: clockNow) : beforeMismatch
                if !(found == before && beforeMismatch == nil) && !(found == after && afterMismatch == nil) {
                    violation("live worker \(index) (incarnation \(slot.incarnation)) has \(found); expected \(before)"
                              + (slot.begun ? " or, with its begun \(slot.pending), \(after)" : " (no locked operation begun)")
                              + before.churnDifference(from: found, slot: index)
                              + (beforeMismatch.map { "; cache: \($0)" } ?? "") + (slot.begun ? afterMismatch.map { "; after it: \($0)" } ?? "" : ""))
                }
                adoptCache(found, into: index)
            }
        }
        for key in 0..<TortureSchema.sharedKeys where state.shared[key] < shared[key] || state.shared[key] > shared[key] + sharedInFlight[key] {
            violation("\(TortureSchema.sharedKey(key)) is \(state.shared[key]); acknowledged adds make \(shared[key]), \(sharedInFlight[key]) more were begun")
        }
        // A worker waiting for its restart (or done) writes nothing: its state is its model.
        for index in slots.indices where !(slots[index].running || slots[index].awaitingRead) {
            let mismatch = slots[index].model.cacheMismatch(in: state.workers[index], slot: index, now: clockNow)
            if state.workers[index] != slots[index].model || mismatch != nil {
                violation("worker \(index), not running, has \(state.workers[index]); its model is \(slots[index].model)"
                          + slots[index].model.churnDifference(from: state.workers[index], slot: index) + (mismatch.map { "; cache: \($0)" } ?? ""))
            }
            adoptCache(state.workers[index], into: index)
        }
        for index in ended { exited(index) }
        return true
    }

    /// The dead worker's state must be the model, or the model after its in-flight operation.
    func resolve(_ index: Int, _ found: Model) {
        var slot = slots[index]
        let before = slot.model
        var after = before
        var afterChurn = slot.churnState
        if slot.begun { apply(slot.pending, to: &after, churn: &afterChurn, sharedToo: false, clock: slot.pendingClock) }
        let beforeMismatch = before.cacheMismatch(in: found, slot: index, now: clockNow)
        let afterMismatch = slot.begun ? after.cacheMismatch(in: found, slot: index, now: clockNow) : beforeMismatch
        let fitsBefore = found == before && beforeMismatch == nil
        let fitsAfter = slot.begun && found == after && afterMismatch == nil
        // A cache operation changes only cache entries: when both fit (its key
        // gone, as evicted), either will do, as the check adopts what it found.
        if fitsBefore && !(fitsAfter && slot.pending.isCache) {
            slot.model = before
        } else if fitsAfter {
            slot.model = after
            slot.churnState = afterChurn
            if case .sharedAdd(let key) = slot.pending { shared[key] += 1 }
        } else {
            violation("worker \(index) (incarnation \(slot.incarnation)) left \(found) after its death; expected \(before)"
                      + (slot.begun ? " or, with its in-flight \(slot.pending), \(after)" : " (no operation was in flight)")
                      + before.churnDifference(from: found, slot: index)
                      + (beforeMismatch.map { "; cache: \($0)" } ?? "") + (slot.begun ? afterMismatch.map { "; after it: \($0)" } ?? "" : ""))
            slot.model = found
            slot.churnState = afterChurn
        }
        slot.begun = false
        slot.awaitingRead = false
        slots[index] = slot
        adoptCache(found, into: index)
    }

    /// After a check under the lock, the model's cache entries become what
    /// was found: an entry found gone (evicted, or expired and reclaimed)
    /// stays gone until its worker writes the key again, so from now on it
    /// must never be seen again, nor an older write.
    func adoptCache(_ found: Model, into index: Int) {
        for map in 0..<2 {
            for key in 0..<TortureSchema.cacheKeys[map] where slots[index].model.cache[map][key] != nil && found.cache[map][key] == nil {
                cacheEntriesGone += 1
            }
        }
        slots[index].model.cache = found.cache
    }

    /// Moves the shared clock to the milliseconds the run has lasted (never
    /// back), inside the parent's transaction `tx`.
    func advanceClock(_ tx: borrowing Transaction) throws {
        // Stored even when it has not moved: a transaction the store ran again in the file a compaction made.
        let target = max(clockNow, TortureSchema.clockStart + UInt64(max(0, (now() - runStart) * 1000)))
        try tx.store(Int64(target), to: clockField)
        clockNow = target
        parentClock.set(millisecondsSinceEpoch: Int64(target))
    }

    /// Moves the shared clock every 5 ms or so between the parent's checks,
    /// in a transaction of its own (not a lock-free store, which would wait
    /// for a worker stopped in a growth: see ``flushControl()``).
    func tickClock() {
        guard case .running = phase, now() - runStart >= Double(clockNow - TortureSchema.clockStart) / 1000 + 0.005 else { return }
        do {
            try store.transaction { tx in try advanceClock(tx) }
        } catch SlotStoreError.lockTimeout {
        } catch SlotStoreError.storeInUse {
        } catch {
            fatal("the parent's move of the clock failed: \(error)")
        }
    }

    /// The parent's writes of the control words, in order, not yet in the store.
    var pendingControl: [(field: ScalarField<Int64>, value: Int64)] = []

    /// Writes `value` to a control word as soon as the parent can take the lock (see ``flushControl()``).
    func setControl(_ field: ScalarField<Int64>, _ value: Int64) {
        pendingControl.append((field, value))
        flushControl()
    }

    /// Writes the pending control words in one transaction; false if the lock was busy.
    ///
    /// Not lock-free stores: while a worker is stopped at afterRetiring in a
    /// growth, lock-free writers wait for the lock it holds, with no timeout,
    /// and the parent must go on reading the pipes to kill it. A transaction
    /// gives up after the parent's 20 ms lock timeout, and is tried again on
    /// every turn of the loop.
    @discardableResult
    func flushControl() -> Bool {
        guard !pendingControl.isEmpty else { return true }
        let writes = pendingControl
        do {
            try store.transaction { tx in
                for write in writes { try tx.store(write.value, to: write.field) }
            }
        } catch SlotStoreError.lockTimeout {
            return false
        } catch SlotStoreError.storeInUse {
            // Following a compaction in place into the new file, whose
            // compactor (nobody else had it open) holds it exclusively while
            // it copies: longer than 20 ms on a loaded machine. Next turn.
            return false
        } catch {
            fatal("the parent's write of a control word failed: \(error)")
        }
        pendingControl.removeAll()
        if let gate = restartGate, gate.deadline == .infinity {
            restartGate!.deadline = now() + Double(settings.lockTimeoutMS) / 1000 + 2
        }
        return true
    }

    func restartResolved() {
        guard !stopping else { return }
        if let gate = restartGate {
            let restless = gate.survivors.filter { slots[$0].running && slots[$0].restingGeneration != gate.generation }
            if !restless.isEmpty {
                if now() < gate.deadline { return }
                violation("worker(s) \(restless.map(String.init).joined(separator: ", ")) did not come to rest within "
                          + "\(settings.lockTimeoutMS / 1000 + 2) s of the quiet request after a burst, though a lock timeout ends any wait for the lock")
            }
            restartGate = nil
            setControl(quiet, 0)
        }
        for index in slots.indices where !slots[index].running && !slots[index].awaitingRead && !slots[index].finished {
            spawn(index)
        }
    }

    // MARK: Compaction in place

    /// The recoveries counted by every file the path has held, plus one for
    /// each replaced file whose lock a dead process still holds.
    ///
    /// A replaced file's lock is taken only by a process that was already
    /// waiting for it when it was retired (it then sees the retirement and lets
    /// go), so a worker killed holding it may be recovered by another such
    /// waiter at any later moment, or never. Counted as owed from its death,
    /// it adds to the window of the kill that caused it, like any other.
    /// (Not so for the file at the path: its recovery is due at the next lock.)
    func totalRecoveries() -> UInt64 {
        // A compaction or a growth may have just put its file at the path.
        observe()
        let current = pathIdentity()
        var total: UInt64 = 0
        for (generation, observer) in observers {
            guard let status = try? observer.status else { continue }
            total &+= status.recoveries
            if observedFiles[generation] != current && TortureRun.owesRecovery(status) { total &+= 1 }
        }
        return total
    }

    /// A dead process holds the lock and nobody has counted its recovery yet.
    /// A recoverer records the dead PID before it counts the recovery and
    /// records itself as the holder only after, so while it is at work this
    /// reads false: the recovery is never counted twice, and uncounted only
    /// between two adjacent stores.
    static func owesRecovery(_ status: StoreStatus) -> Bool {
        status.lockNeedsRecovery && status.lockHolderPID != status.lastRecoveredPID
    }

    /// Replaced files whose lock a dead process still holds (never recovered: nobody uses them).
    func unrecoveredReplacedFiles() -> Int {
        let current = pathIdentity()
        return observers.filter { observedFiles[$0.key] != current && ((try? $0.value.status).map(TortureRun.owesRecovery) ?? false) }.count
    }

    func pathIdentity() -> FileID? {
        var info = stat()
        guard stat(path, &info) == 0 else { return nil }
        return FileID(device: UInt64(info.st_dev), inode: UInt64(info.st_ino))
    }

    /// Watches the file now at the path, if no observer has it yet, and returns its observer.
    ///
    /// Workers' growths replace the file at any moment, so the file opened is
    /// taken for the one `stat` saw only if the path still names it after the
    /// open. A file replaced before the parent looked is never observed: its
    /// recoveries go uncounted, so the lower bounds of the recovery checks
    /// whose window it falls in are waived (counted as unobserved generations).
    @discardableResult
    func observe() -> SlotStore? {
        for attempt in 0..<50 {
            guard let identity = pathIdentity() else {
                violation("the store at the path vanished")
                return nil
            }
            if let generation = observedFiles.first(where: { $0.value == identity })?.key { return observers[generation] }
            let observer: SlotStore
            do {
                observer = try SlotStore(path: path, options: OpenOptions(mode: .open, lockTimeout: .milliseconds(20)))
            } catch .storeInUse where attempt < 49 {
                // A compaction in place nobody else had open holds the store
                // exclusively while it copies; on a loaded machine that
                // outlasts the parent's short wait (kept short so the pipes
                // are read). The documented answer is to try again.
                continue
            } catch {
                violation("opening the store at the path failed: \(error)")
                return nil
            }
            guard pathIdentity() == identity else {
                observer.close()
                continue
            }
            let found = observer.generation
            if let known = observers[found] {
                violation("two files at the path have generation \(found)")
                observer.close()
                return known
            }
            observers[found] = observer
            observedFiles[found] = identity
            record(observer)
            return observer
        }
        violation("the file at the path changed 50 times while the parent opened it")
        return nil
    }

    /// The capacities of "map" and "grow" in each observed file, by generation.
    var fileShapes: [UInt64: (map: Int, grow: Int)] = [:]
    var newestObserved: UInt64 = 0
    /// Generations the path held that the parent never saw (replaced first).
    var unobservedGenerations = 0
    /// Growths seen as the step from one observed generation to the next.
    var growthsSeen = 0
    /// The capacities the parent's compactions gave the growing map.
    var requestedGrowCapacities: Set<Int> = []

    /// Checks a newly observed file against the one before it: a growth keeps
    /// "map" and doubles "grow" (up to its maximum); a compaction of the
    /// parent's changes "map" (it alternates) and leaves "grow" as it was or
    /// at a capacity it asked for. So between compactions the growing map's
    /// capacity only grows, one doubling per generation.
    func record(_ observer: SlotStore) {
        let generation = observer.generation
        func capacity(_ name: String) -> Int {
            if case .map(_, _, let capacity)? = observer.schema.field(named: name)?.type { return capacity }
            return -1
        }
        let shape = (map: capacity("map"), grow: capacity("grow"))
        fileShapes[generation] = shape
        if generation < newestObserved {
            violation("the path went back from generation \(newestObserved) to \(generation)")
        } else if newestObserved > 0 && generation > newestObserved + 1 {
            unobservedGenerations += Int(generation - newestObserved - 1)
        }
        newestObserved = max(newestObserved, generation)
        let valid = shape.grow == TortureSchema.growMaximumCapacity
            || (shape.grow >= TortureSchema.growInitialCapacity && shape.grow < TortureSchema.growMaximumCapacity && shape.grow & (shape.grow - 1) == 0)
        if !valid { violation("generation \(generation) has the growing map at capacity \(shape.grow): no growth or compaction of the torture makes that") }
        guard generation > 1, let previous = fileShapes[generation - 1] else { return }
        if previous.map == shape.map {
            let doubled = min(TortureSchema.growMaximumCapacity, previous.grow * 2)
            if shape.grow != doubled || doubled == previous.grow {
                violation("generation \(generation) keeps the map's capacity (\(shape.map)), so a growth made it, but the growing map went from \(previous.grow) to \(shape.grow)")
            }
            growthsSeen += 1
        } else if shape.grow != previous.grow && !requestedGrowCapacities.contains(shape.grow) {
            violation("generation \(generation), made by a compaction of the parent's (the map went from \(previous.map) to \(shape.map)), "
                      + "has the growing map at \(shape.grow), from \(previous.grow): the parent asked for neither")
        }
    }

    /// Checks the generation and the map capacity of the file at the path once
    /// a compaction attempt is over: at least one generation past the one at
    /// its start if `renamed` (growths add more), and "map" as the parent's
    /// compactions left it (growths keep it).
    func checkPath(after what: String, renamed: Bool, startedAt generation: UInt64) {
        guard let observer = observe() else { return }
        if renamed && observer.generation <= generation {
            violation("after \(what) the store at the path is generation \(observer.generation), expected more than \(generation)")
        }
        if case .map(_, _, let capacity)? = observer.schema.field(named: "map")?.type, capacity != mapCapacity {
            violation("after \(what) the map's capacity is \(capacity), expected \(mapCapacity)")
            mapCapacity = capacity
        }
    }

    func compactionUniform() -> Double { Double(compactionRandom.next() >> 11) / Double(1 << 53) }

    /// The next compaction: when, and whether by a compactor process that dies at a fault point (1 in 4).
    func scheduleCompaction(from time: Double, first: Bool = false) {
        var wait = compactEvery * (0.5 + compactionUniform())
        // A run sees at least one compaction, however long the mean.
        if first { wait = min(wait, Double(seconds) * (0.25 + 0.25 * compactionUniform())) }
        nextCompaction = time + wait
        nextCompactionBySubprocess = compactionRandom.next() % 4 == 0
    }

    /// Starts, follows and settles the compactions; called on every turn of the loop.
    func serviceCompaction() {
        switch compaction {
        case .idle:
            guard !stopping, now() >= nextCompaction else { return }
            // Grow the map, or shrink it back.
            let capacity = mapCapacity == mapCapacities[0] ? mapCapacities[1] : mapCapacities[0]
            observe()
            compactionStartedAt = newestObserved
            if nextCompactionBySubprocess {
                // Its death is one more recovery, which can't be told apart from
                // a killed worker's: start it between kills, and make only kills
                // at fault points (exactly one recovery each) until it is settled.
                guard case .running = phase, !slots.contains(where: \.awaitingRead) else { return }
                for index in slots.indices { slots[index].killAtLockedBegin = nil }
                compactorEpoch = (totalRecoveries(), 0...0, unobservedGenerations)
                let point = compactionRandom.next() % 2 == 0 ? "afterRetiring" : "afterRename"
                let (pid, fd) = spawnCompactor(point: point, capacity: capacity)
                compaction = .subprocess(pid: pid, fd: fd, point: point, capacity: capacity, output: [])
            } else {
                // At low tide, shrink the growing map too, so the rising tide grows it again:
                // to the live entries and the operations in flight, and a quarter more.
                var capacities = ["map": capacity]
                let live = slots.reduce(0) { $0 + $1.model.churn.count } + 4 * processes
                var shrunk = TortureSchema.growInitialCapacity
                while shrunk < live + live / 4 + 32 { shrunk *= 2 }
                if shrunk < grow.capacity {
                    capacities["grow"] = shrunk
                    requestedGrowCapacities.insert(shrunk)
                }
                let job = CompactionJob(path: path, capacities: capacities)
                compaction = .inProcess(job: job, thread: startThread(job), capacity: capacity)
            }
            scheduleCompaction(from: now())

        case .inProcess(let job, let thread, let capacity):
            guard let outcome = job.outcome.withLock({ $0 }) else { return }
            pthread_join(thread, nil)
            compaction = .idle
            switch outcome {
            case .success:
                compactionsDone += 1
                if job.capacities["grow"] != nil { growShrinks += 1 }
                mapCapacity = capacity
                checkPath(after: "compaction \(compactionsDone + compactorsKilled) (in this process, map capacity \(capacity))",
                          renamed: true, startedAt: compactionStartedAt)
            case .failure(let error):
                switch error {
                case .storeInUse, .lockTimeout:
                    compactionsFailed += 1
                    if compactionsFailed <= 5 { Output.error("torture: note: a compaction in place was refused: \(error)") }
                case .migrationRefused(_, let reasons) where job.capacities["grow"] != nil
                    && reasons.allSatisfy({ $0.hasPrefix("map \"grow\" holds") }):
                    // The workers' tide rose past the shrunk capacity while the compaction waited: refused, nothing changed.
                    growShrinksRefused += 1
                default:
                    violation("a compaction in place (capacities \(job.capacities.sorted { $0.key < $1.key })) failed: \(error)")
                }
                checkPath(after: "a failed compaction", renamed: false, startedAt: compactionStartedAt)
            }

        case .subprocess(let pid, let fd, let point, let capacity, var output):
            drain(fd, into: &output)
            var status: Int32 = 0
            let reaped = waitpid(pid, &status, WNOHANG)
            guard reaped == pid else {
                if reaped < 0 && errno != EINTR { fatal("waitpid of the compactor \(pid) failed: errno \(errno)") }
                compaction = .subprocess(pid: pid, fd: fd, point: point, capacity: capacity, output: output)
                return
            }
            drain(fd, into: &output)
            close(fd)
            let killed = status & 0x7F == SIGKILL
            if killed {
                compactorsKilled += 1
                killedCompactorPIDs.append(pid)
            } else {
                let text = String(decoding: output, as: UTF8.self).split(separator: "\n").joined(separator: " | ")
                violation("`slotstore compact` (PID \(pid)) with SLOTSTORE_FAULT=\(point):kill ended with \(describe(status)), not by SIGKILL: \(text)")
            }
            // The rename is the commit point: past it, the new file is the store.
            if (killed && point == "afterRename") || (!killed && status == 0) {
                if killed { compactorsKilledAfterRename += 1 }
                mapCapacity = capacity
            }
            compaction = .settling(point: point, killed: killed)

        case .settling(let point, let killed):
            // The parent's lock, taken after the compactor died, recovered it if nobody had.
            guard case .running = phase, !slots.contains(where: \.awaitingRead), parentTransaction() else { return }
            restartResolved()
            guard case .running = phase, !slots.contains(where: \.awaitingRead), let epoch = compactorEpoch else { return }
            checkPath(after: "a compactor killed at \(point)", renamed: killed && point == "afterRename", startedAt: compactionStartedAt)
            // A compactor dies holding the old file's lock: one recovery (or
            // one dead holder left in the replaced file). Killed after its
            // rename, it also holds the new file's lock (held until the
            // rename is durable): recovered by a process that had the new
            // file open, one more; or reset by the first process to open it
            // after the death, which the store does not count as a recovery.
            let delta = Int(totalRecoveries() &- epoch.recoveriesBefore)
            let allowed = !killed ? 0...0 : point == "afterRename" ? 1...2 : 1...1
            let kills = epoch.holderKills
            let low = kills.lowerBound + allowed.lowerBound, high = kills.upperBound + allowed.upperBound
            if delta > high || (delta < low && unobservedGenerations == epoch.gapsBefore) {
                violation("while a compactor process ran (killed at \(point): \(killed)), workers were killed holding the lock "
                          + "(making \(kills) recoveries): the store files count \(delta) recoveries, expected \(low)...\(high)")
            }
            if delta < low && unobservedGenerations != epoch.gapsBefore { settlesAcrossUnobservedFiles += 1 }
            // Shared out for the figures: the compactor's share within its own range.
            let compactorShare = max(allowed.lowerBound, min(allowed.upperBound, delta - kills.lowerBound))
            compactorRecoveries += compactorShare
            killRecoveries += delta - compactorShare
            compactorEpoch = nil
            compaction = .idle
        }
    }

    /// Ends a compaction still under way when the run is cut short.
    func abandonCompaction() {
        switch compaction {
        case .idle, .settling:
            break
        case .inProcess(let job, let thread, _):
            // It ends by itself (a lock timeout at worst, once no worker holds the lock).
            for index in slots.indices where slots[index].running { killWorker(index) }
            pthread_join(thread, nil)
            if case .failure(let error)? = job.outcome.withLock({ $0 }) { Output.error("torture: note: the last compaction failed: \(error)") }
        case .subprocess(let pid, let fd, _, _, _):
            kill(pid, SIGKILL)
            _ = reap(pid)
            close(fd)
            killedCompactorPIDs.append(pid)
            violation("the compactor process \(pid) was still running at the end")
        }
        compaction = .idle
        compactorEpoch = nil
    }

    func drain(_ fd: Int32, into output: inout [UInt8]) {
        var buffer = [UInt8](repeating: 0, count: 4096)
        while true {
            let count = Glibc.read(fd, &buffer, buffer.count)
            if count < 0 && errno == EINTR { continue }
            guard count > 0 else { return }
            if output.count < 65_536 { output += buffer.prefix(count) }
        }
    }

    /// `slotstore compact PATH --capacity map=N --allow-narrowing` with SLOTSTORE_FAULT=`point`:kill; its output goes to a pipe.
    func spawnCompactor(point: String, capacity: Int) -> (pid_t, Int32) {
        spawn([executable, "compact", path, "--capacity", "map=\(capacity)", "--allow-narrowing"],
              fault: "\(point):kill", alsoStandardError: true)
    }

    /// Starts this binary with `arguments`, this environment with SLOTSTORE_FAULT
    /// replaced by `fault`, and its standard output (and error) on a
    /// non-blocking pipe whose read end it returns.
    func spawn(_ arguments: [String], fault: String?, alsoStandardError: Bool) -> (pid_t, Int32) {
        var ends: [Int32] = [0, 0]
        // Close-on-exec, so no other child inherits an end (the parent spawns from one thread).
        guard pipe(&ends) == 0 else { fatal("pipe failed: errno \(errno)") }
        for end in ends { _ = fcntl(end, F_SETFD, FD_CLOEXEC) }
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        posix_spawn_file_actions_adddup2(&actions, ends[1], STDOUT_FILENO)
        if alsoStandardError { posix_spawn_file_actions_adddup2(&actions, ends[1], STDERR_FILENO) }
        var environment: [String] = []
        var entry = environ
        while let pointer = entry.pointee {
            let text = String(cString: pointer)
            if !text.hasPrefix("SLOTSTORE_FAULT=") { environment.append(text) }
            entry += 1
        }
        if let fault { environment.append("SLOTSTORE_FAULT=\(fault)") }
        let argv = arguments.map { strdup($0) } + [nil]
        let envp = environment.map { strdup($0) } + [nil]
        var pid: pid_t = 0
        let code = posix_spawn(&pid, executable, &actions, nil, argv, envp)
        posix_spawn_file_actions_destroy(&actions)
        for pointer in argv + envp { free(pointer) }
        close(ends[1])
        guard code == 0 else { fatal("posix_spawn of \(executable) failed: errno \(code)") }
        _ = fcntl(ends[0], F_SETFL, O_NONBLOCK)
        return (pid, ends[0])
    }

    func startThread(_ job: CompactionJob) -> pthread_t {
        var thread = pthread_t()
        let context = Unmanaged.passRetained(job).toOpaque()
        let code = pthread_create(&thread, nil, { context in
            Unmanaged<CompactionJob>.fromOpaque(context!).takeRetainedValue().run()
            return nil
        }, context)
        guard code == 0 else { fatal("pthread_create failed: errno \(code)") }
        return thread
    }

    // MARK: The end

    func finish(elapsed: Double) -> Int {
        abandonCompaction()
        for index in slots.indices where slots[index].running { killWorker(index) }
        // No worker is left: the next transaction recovers whatever remains.
        var attempts = 0
        while !parentTransaction() {
            attempts += 1
            if attempts > 500 { violation("the parent could not take the lock after every worker ended"); break }
        }
        // Every entry of both maps, the tallies and counters: exactly the model, nothing in flight.
        do {
            let state = try store.transaction { tx in try readState(tx) }
            for problem in state.problems where reportedGlobal.insert(problem).inserted { violation(problem) }
            for index in 0..<processes {
                let mismatch = slots[index].model.cacheMismatch(in: state.workers[index], slot: index, now: clockNow)
                if state.workers[index] != slots[index].model || mismatch != nil {
                    violation("worker \(index)'s final state is \(state.workers[index]), the model says \(slots[index].model)"
                              + slots[index].model.churnDifference(from: state.workers[index], slot: index) + (mismatch.map { "; cache: \($0)" } ?? ""))
                }
            }
            for key in 0..<TortureSchema.sharedKeys where state.shared[key] != shared[key] {
                violation("\(TortureSchema.sharedKey(key)) is \(state.shared[key]), the model says \(shared[key])")
            }
            let modelled = slots.reduce(0) { $0 + $1.model.churn.count }
            if state.growCount != modelled { violation("the growing map counts \(state.growCount) entries, the model \(modelled)") }
        } catch {
            violation("the final check failed: \(error)")
        }
        if let status = try? store.status, status.journalDirty || status.lockHolderPID != nil || status.lockNeedsRecovery {
            violation("after the run the journal is \(status.journalDirty ? "dirty" : "clean") and the lock is held by \(status.lockHolderPID.map(String.init) ?? "nobody")\(status.lockNeedsRecovery ? ", needing recovery" : "")")
        }
        // The parent's store follows every compaction and growth: it ends on the newest file.
        let generation = store.generation
        observe()
        checkPath(after: "the run", renamed: false, startedAt: 0)
        if generation != newestObserved {
            violation("the parent's store ends in generation \(generation), the path holds generation \(newestObserved)")
        }
        // Every generation is one rename: a compaction of the parent's, a compactor killed after its rename, or a growth.
        let growths = Int(newestObserved) - 1 - compactionsDone - compactorsKilledAfterRename
        if growths < 0 {
            violation("the path holds generation \(newestObserved), fewer than \(compactionsDone) compactions and \(compactorsKilledAfterRename) compactors killed after their rename make")
        }
        let growCapacity = fileShapes[newestObserved]?.grow ?? 0
        if map.capacity != mapCapacity { violation("the parent's map handle says capacity \(map.capacity), the file at the path has \(mapCapacity)") }
        if grow.capacity != growCapacity { violation("the parent's handle on the growing map says capacity \(grow.capacity), the file at the path has \(growCapacity)") }
        if compactEvery > 0 && compactionsDone + compactorsKilled == 0 { violation("--compact-every \(Int(compactEvery * 1000)) but no compaction happened") }
        // Recoveries are counted in each file: total them over every file the path held.
        let unrecovered = unrecoveredReplacedFiles()
        let recoveries = totalRecoveries() &- initialRecoveries &- UInt64(unrecovered)
        if recoveries + UInt64(unrecovered) != UInt64(killRecoveries + compactorRecoveries) {
            violation("the store files count \(recoveries) recoveries" + (unrecovered > 0 ? " and \(unrecovered) dead holder(s) of replaced files" : "")
                      + " but kills of workers were followed by \(killRecoveries)"
                      + (compactEvery > 0 ? " and \(compactorsKilled) deaths of compactors by \(compactorRecoveries)" : ""))
        }
        store.close()
        for observer in observers.values { observer.close() }
        do {
            let report = try SlotStore.verify(at: path)
            for finding in report.findings { violation("verify: \(finding)") }
        } catch {
            violation("verify failed: \(error)")
        }
        let rate = elapsed > 0 ? Int(Double(operations) / elapsed) : 0
        let compactions = compactEvery == 0 ? ""
            : "compactions done \(compactionsDone) (shrinking the growing map \(growShrinks), refused as it outgrew the shrink \(growShrinksRefused)), "
              + "compactions killed \(compactorsKilled) (\(compactorsKilledAfterRename) after the rename), "
              + "compactor recoveries \(compactorRecoveries), "
              + "compactions failed \(compactionsFailed), kills during compactions \(killsDuringCompactions), "
        let growth = "growths \(growths) (\(growthsSeen) seen file to file), grow capacity \(growCapacity) of \(TortureSchema.growMaximumCapacity), "
            + "grow entries \(slots.reduce(0) { $0 + $1.model.churn.count }) of \(slots.reduce(0) { $0 + $1.churnState.next }) keys inserted, "
            + "kills during growths \(killsAtGrowthPoints.reduce(0, +)) (afterBulkCopy \(killsAtGrowthPoints[0]), "
            + "afterRetiring \(killsAtGrowthPoints[1]), afterRename \(killsAtGrowthPoints[2])), "
            + "transactions that found the map full \(transactionsFoundFull), checks of every entry \(checks), "
            + "generation \(generation), unobserved generations \(unobservedGenerations) (\(settlesAcrossUnobservedFiles) recovery checks waived), "
            + "unrecovered in replaced files \(unrecovered), "
        let cacheFigures = "cache evictions \(cacheEvictions), cache sets refused as full \(cacheSetsRefused), "
            + "expired entries seen \(expiredSeen), removed by removeExpired \(cacheSwept), cache entries gone \(cacheEntriesGone), "
            + "checks finding the cache full \(cacheFullChecks), kills in eviction \(killsInEviction), "
            + "kills in cache operations \(killsInCacheOperations), clock \(clockNow - TortureSchema.clockStart) ms, "
        // (No "operations " here: the summary's figures are found by name.)
        let bound = settings.operationLimit > 0 ? "\(seconds) s (or \(settings.operationLimit) operations)" : "\(seconds) s"
        let meanLag = scheduledKills > 0 ? totalKillLag / UInt64(scheduledKills) : 0
        let digest = String(scheduleDigest, radix: 16)
        Output.out("torture: \(processes) processes, \(bound)\(settings.durable ? ", durable" : ""), seed \(seed): "
                   + "operations \(operations) (\(rate)/s), kills \(kills), bursts \(bursts) (\(burstVictims) workers), "
                   + "kills holding the lock \(killsHolding) (\(faultHolds) at fault points), "
                   + "recoveries \(recoveries) (after kills \(killRecoveries)), lock timeouts \(lockTimeouts) (\(orphanedLockTimeouts) with no live holder), "
                   + "scheduled kills \(scheduledKills) (schedule \(digest), lag mean \(meanLag) max \(maximumKillLag) operations), "
                   + "\(compactions)\(growth)\(cacheFigures)violations \(violations.count)")
        return violations.count
    }
}

/// One compaction in place by a thread of the parent, with the result for the parent's loop.
final class CompactionJob: Sendable {
    let path: String
    let capacities: [String: Int]
    let outcome = Mutex<Result<Void, SlotStoreError>?>(nil)

    init(path: String, capacities: [String: Int]) {
        self.path = path
        self.capacities = capacities
    }

    func run() {
        let result: Result<Void, SlotStoreError>
        do {
            // Shrinking a map is narrowing: allowed, as every entry fits (or the compaction is refused).
            try SlotStore.compact(at: path, capacities: capacities, migration: MigrationOptions(allowNarrowing: true))
            result = .success(())
        } catch {
            result = .failure(error)
        }
        outcome.withLock { $0 = result }
    }
}

private let RLIMIT_NOFILE_VALUE = __rlimit_resource_t(RLIMIT_NOFILE.rawValue)
