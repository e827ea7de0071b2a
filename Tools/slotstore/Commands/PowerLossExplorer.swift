import Foundation
import Glibc

/// The crash-state explorer: from a durable workload's flush log, the disk
/// images a power loss could leave, each opened by a fresh process and checked.
///
/// The model (CrashRecovery.md, "Power loss"): while flush `k` runs (every
/// earlier flush returned), each page of the file holds its version as of the
/// last flush that covered it and returned, or any newer version up to the
/// moment of the crash (flush `k`'s own, or the kernel writing a page back on
/// its own); a page may be torn between two versions at 512-byte sectors, which
/// are written whole. A correct store recovers every such image to exactly the
/// last acknowledged transaction or the one in flight, whole; `verify` finds
/// nothing; a reopen reads the same. Power loss during recovery: the recovery
/// of some images has its own flushes recorded and cut off the same way, and
/// each of those images must recover to what the uninterrupted recovery gave.
struct PowerLossExplorer {
    struct Settings {
        var seed: UInt64 = 1
        var images = 400
        var transactions = 16
        var directory = NSTemporaryDirectory()
        var jobs = 2
        /// Every n-th checked image also has its recovery cut off; 0 for none.
        var recoveryEvery = 20
        var keep: String?
    }

    struct CrashPoint {
        let flush: Int
        let durable: [Int]
        let newest: [Int]
        let acknowledged: Int
        let acceptable: [String]
        let context: String
    }

    struct Job {
        let image: CrashImage
        let point: Int
        let recordRecovery: Bool
        /// For a recovery cut-off: the state the uninterrupted recovery gave.
        let parentState: String?
    }

    struct Failure {
        let description: String
        let imagePath: String
    }

    let settings: Settings
    let executable: String
    let workDirectory: String
    private(set) var failures: [Failure] = []
    private(set) var checked = 0
    private(set) var recoveryChecked = 0
    private(set) var recoveriesCut = 0

    init(settings: Settings) throws {
        self.settings = settings
        executable = try PowerLossExplorer.selfExecutable()
        var template = Array((settings.directory + "/slotstore-power-loss-XXXXXX").utf8CString)
        guard template.withUnsafeMutableBufferPointer({ mkdtemp($0.baseAddress!) }) != nil else {
            throw InputError("\(settings.directory): cannot make a working folder there (errno \(errno)); pass --dir with a writable folder")
        }
        workDirectory = String(decoding: template.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    func removeWorkDirectory() { try? FileManager.default.removeItem(atPath: workDirectory) }

    // MARK: Running

    /// Runs the workload, checks the images, prints the report; returns whether every image passed.
    mutating func run() throws -> Bool {
        let started = DispatchTime.now().uptimeNanoseconds
        let store = workDirectory + "/workload.slots"
        let log = workDirectory + "/workload.log"
        let status = try run([executable, "_power-loss", "workload", store, "--seed", String(settings.seed),
                              "--transactions", String(settings.transactions)],
                             output: workDirectory + "/workload.out", log: log)
        guard status == 0 else {
            throw InputError("the workload failed (exit status \(status)): \(read(workDirectory + "/workload.out"))")
        }
        let history = try PowerLossHistory(log: Array(try Data(contentsOf: URL(fileURLWithPath: log))), path: store, base: nil)
        let points = PowerLossExplorer.crashPoints(history)
        let images = selectImages(history, points)
        var recoveryJobs: [(Job, String)] = []
        try check(images, history, points) { job, output in
            guard job.recordRecovery, let state = output.state else { return }
            recoveryJobs.append((job, state))
        }
        for (job, state) in recoveryJobs {
            try cutRecovery(of: job, state: state, history, points)
        }
        let seconds = Double(DispatchTime.now().uptimeNanoseconds - started) / 1e9
        let attempts = history.events.reduce(into: (0, 0)) { counts, event in
            if case .begin(_, let rollsBack) = event { if rollsBack { counts.1 += 1 } else { counts.0 += 1 } }
        }
        Output.out("power-loss explorer: seed \(settings.seed), \(attempts.0 + attempts.1) attempts (\(attempts.0) to commit, \(attempts.1) rolled back), \(history.flushes.count) flushes of a \(history.fileSize)-byte store")
        Output.out("  crash points \(points.count), images \(checked), recovery cut-offs \(recoveryChecked) from \(recoveriesCut) recoveries")
        Output.out("  failing images \(failures.count), \(String(format: "%.1f", seconds)) s")
        for failure in failures.prefix(10) {
            Output.out("  FAIL \(failure.description)")
            Output.out("       image: \(failure.imagePath)")
        }
        if failures.count > 10 { Output.out("  … and \(failures.count - 10) more") }
        return failures.isEmpty
    }

    // MARK: Crash points

    static func crashPoints(_ history: PowerLossHistory) -> [CrashPoint] {
        var finalStates: [Int: String] = [:]
        for case .acknowledged(let number, let state) in history.events { finalStates[number] = state }
        var durable = Array(repeating: 0, count: history.pageCount)
        var acknowledged: (Int, String)?
        var inFlight: (number: Int, rollsBack: Bool)?
        var points: [CrashPoint] = []
        for event in history.events {
            switch event {
            case .begin(let number, let rollsBack):
                inFlight = (number, rollsBack)
            case .acknowledged(let number, let state):
                acknowledged = (number, state)
                inFlight = nil
            case .marker:
                break
            case .flush(let index):
                let newest = history.newest(atFlush: index)
                if let acknowledged {
                    var acceptable = [acknowledged.1]
                    var context = "transaction \(acknowledged.0) acknowledged"
                    if let inFlight {
                        context += ", attempt \(inFlight.number) in flight (\(inFlight.rollsBack ? "rolls back" : "commits"))"
                        if !inFlight.rollsBack, let state = finalStates[inFlight.number] { acceptable.append(state) }
                    }
                    points.append(CrashPoint(flush: index, durable: durable, newest: newest, acknowledged: acknowledged.0,
                                             acceptable: acceptable, context: context))
                }
                for page in history.flushes[index].pages where page < durable.count { durable[page] = newest[page] }
            }
        }
        return points
    }

    // MARK: Images

    /// The systematic images of every crash point (nothing of the flush
    /// arrived, all of it, each page alone, all but each page, and the first
    /// sector of each page torn from the rest), then seeded random mixes,
    /// without duplicates, up to `settings.images`.
    func selectImages(_ history: PowerLossHistory, _ points: [CrashPoint]) -> [(CrashImage, Int)] {
        var seen = Set<UInt64>()
        var chosen: [(CrashImage, Int)] = []
        func consider(_ image: CrashImage, _ point: Int) {
            let key = image.hash(history, durable: points[point].durable) ^ UInt64(points[point].flush) &* 0x9E37_79B9
            if seen.insert(key).inserted { chosen.append((image, point)) }
        }
        let sectors = history.pageSize / PowerLossHistory.sectorBytes
        let allSectors: UInt64 = sectors >= 64 ? ~0 : (1 << UInt64(sectors)) - 1
        var levels: [[(CrashImage, Int)]] = [[], []]
        for (index, point) in points.enumerated() {
            let variable = (0..<history.pageCount).filter { point.newest[$0] != point.durable[$0] }
            let all = Dictionary(uniqueKeysWithValues: variable.map { ($0, CrashImage.Page.whole(point.newest[$0])) })
            levels[0].append((CrashImage(pages: [:], origin: "nothing of the flush"), index))
            levels[0].append((CrashImage(pages: all, origin: "all of the flush"), index))
            // The first sector of the flush's first page holds what makes a
            // journal count (its header): everything but it, and it alone.
            let first = history.flushes[point.flush].pages.lowerBound
            // Each page the flush writes, alone: a later page of a journal
            // flush without its first one is how records get overwritten
            // behind a header that still counts them.
            for page in history.flushes[point.flush].pages where variable.contains(page) && variable.count > 1 {
                levels[0].append((CrashImage(pages: [page: .whole(point.newest[page])], origin: "only page \(page) newer"), index))
            }
            if variable.contains(first) {
                var others = all
                others[first] = .torn(old: point.durable[first], new: point.newest[first], mask: allSectors & ~1)
                levels[0].append((CrashImage(pages: others, origin: "all of the flush but sector 0 of page \(first)"), index))
                others = [first: .torn(old: point.durable[first], new: point.newest[first], mask: 1)]
                levels[0].append((CrashImage(pages: others, origin: "only sector 0 of page \(first)"), index))
            }
            for page in variable {
                levels[1].append((CrashImage(pages: [page: .whole(point.newest[page])], origin: "only page \(page) newer"), index))
                if variable.count > 1 {
                    var rest = all
                    rest[page] = nil
                    levels[1].append((CrashImage(pages: rest, origin: "all but page \(page) newer"), index))
                }
                let torn = CrashImage.Page.torn(old: point.durable[page], new: point.newest[page], mask: 1)
                levels[1].append((CrashImage(pages: [page: torn], origin: "page \(page): only sector 0 newer"), index))
                let tornRest = CrashImage.Page.torn(old: point.durable[page], new: point.newest[page], mask: allSectors & ~1)
                var others = all
                others[page] = tornRest
                levels[1].append((CrashImage(pages: others, origin: "all newer but sector 0 of page \(page)"), index))
            }
        }
        var random = SplitMix(seed: settings.seed ^ 0x5EED)
        for (image, point) in levels[0] where chosen.count < settings.images { consider(image, point) }
        var second = levels[1]
        // A seeded shuffle, so a budget smaller than the systematic images still spreads over all crash points.
        for index in second.indices.reversed() where index > 0 {
            second.swapAt(index, Int(random.next() % UInt64(index + 1)))
        }
        for (image, point) in second where chosen.count < settings.images * 3 / 5 { consider(image, point) }
        let candidates = points.indices.filter { index in (0..<history.pageCount).contains { points[index].newest[$0] != points[index].durable[$0] } }
        var attempts = 0
        while chosen.count < settings.images && !candidates.isEmpty && attempts < settings.images * 20 {
            attempts += 1
            let index = candidates[Int(random.next() % UInt64(candidates.count))]
            consider(randomImage(history, points[index], &random, allSectors: allSectors), index)
        }
        // Whatever room is left (few random images are new): the remaining systematic ones.
        for (image, point) in second where chosen.count < settings.images { consider(image, point) }
        return chosen
    }

    func randomImage(_ history: PowerLossHistory, _ point: CrashPoint, _ random: inout SplitMix, allSectors: UInt64) -> CrashImage {
        var pages: [Int: CrashImage.Page] = [:]
        var described: [String] = []
        for page in 0..<history.pageCount where point.newest[page] != point.durable[page] {
            let low = point.durable[page], high = point.newest[page]
            let roll = random.next() % 100
            if roll < 40 { continue }
            let newer = low + 1 + Int(random.next() % UInt64(high - low))
            if roll < 75 {
                pages[page] = .whole(newer)
                described.append("\(page)=v\(newer)")
            } else {
                let older = low + Int(random.next() % UInt64(newer - low))
                let mask = random.next() & allSectors
                pages[page] = .torn(old: older, new: newer, mask: mask)
                described.append("\(page)=v\(older)/v\(newer) torn \(String(mask, radix: 2))")
            }
        }
        return CrashImage(pages: pages, origin: "random: " + (described.isEmpty ? "nothing newer" : described.joined(separator: ", ")))
    }

    // MARK: Checking

    struct CheckOutput {
        var state: String?
        var verify: String?
        var reopen: String?
        var problem: String?
    }

    /// Checks `images` in up to `settings.jobs` fresh processes at a time.
    mutating func check(_ images: [(CrashImage, Int)], _ history: PowerLossHistory, _ points: [CrashPoint],
                        recovered: (Job, CheckOutput) -> Void) throws {
        let jobs = images.enumerated().map { index, item in
            Job(image: item.0, point: item.1,
                recordRecovery: settings.recoveryEvery > 0 && index % settings.recoveryEvery == 0, parentState: nil)
        }
        try runJobs(jobs, history, points, base: nil, recovered: recovered)
    }

    /// Cuts off the recovery of `job`'s image at each of its flushes.
    mutating func cutRecovery(of job: Job, state: String, _ history: PowerLossHistory, _ points: [CrashPoint]) throws {
        let point = points[job.point]
        let imagePath = path(for: job, index: -1)
        let image = job.image.bytes(history, durable: point.durable)
        try Data(image).write(to: URL(fileURLWithPath: imagePath))
        let log = imagePath + ".log"
        let status = try run([executable, "_power-loss", "check", imagePath], output: imagePath + ".out", log: log)
        defer { for suffix in ["", ".log", ".out"] { unlink(imagePath + suffix) } }
        guard status == 0 else { return }  // reported by the first check already
        let recovery = try PowerLossHistory(log: Array(try Data(contentsOf: URL(fileURLWithPath: log))), path: imagePath, base: image)
        // Only recovery's flushes: those before the check's reopen.
        var cut: [PowerLossHistory.Event] = []
        for event in recovery.events {
            if case .marker = event { break }
            cut.append(event)
        }
        recoveriesCut += 1
        var durable = Array(repeating: 0, count: recovery.pageCount)
        var random = SplitMix(seed: settings.seed ^ UInt64(job.point) &* 0x9E37_79B9 ^ UInt64(recoveriesCut))
        let sectors = recovery.pageSize / PowerLossHistory.sectorBytes
        let allSectors: UInt64 = sectors >= 64 ? ~0 : (1 << UInt64(sectors)) - 1
        var subPoints: [CrashPoint] = []
        var subImages: [(CrashImage, Int)] = []
        for case .flush(let index) in cut {
            let newest = recovery.newest(atFlush: index)
            let subPoint = CrashPoint(flush: index, durable: durable, newest: newest, acknowledged: point.acknowledged,
                                      acceptable: [state], context: point.context + "; recovery cut off in its flush \(index)")
            subPoints.append(subPoint)
            let variable = (0..<recovery.pageCount).filter { newest[$0] != durable[$0] }
            if !variable.isEmpty {
                subImages.append((CrashImage(pages: Dictionary(uniqueKeysWithValues: variable.map { ($0, .whole(newest[$0])) }),
                                             origin: "recovery: all of the flush"), subPoints.count - 1))
                for _ in 0..<2 {
                    subImages.append((randomImage(recovery, subPoint, &random, allSectors: allSectors), subPoints.count - 1))
                }
            }
            for page in recovery.flushes[index].pages where page < durable.count { durable[page] = newest[page] }
        }
        let jobs = subImages.map { Job(image: $0.0, point: $0.1, recordRecovery: false, parentState: state) }
        let before = checked
        try runJobs(jobs, recovery, subPoints, base: job, recovered: { _, _ in })
        recoveryChecked += checked - before
        checked = before
    }

    private mutating func runJobs(_ jobs: [Job], _ history: PowerLossHistory, _ points: [CrashPoint], base: Job?,
                                  recovered: (Job, CheckOutput) -> Void) throws {
        var running: [pid_t: (Job, String)] = [:]
        var next = 0
        while next < jobs.count || !running.isEmpty {
            while next < jobs.count && running.count < max(1, settings.jobs) {
                let job = jobs[next]
                let imagePath = path(for: job, index: next) + (base == nil ? "" : "-r")
                try Data(job.image.bytes(history, durable: points[job.point].durable)).write(to: URL(fileURLWithPath: imagePath))
                let pid = try spawn([executable, "_power-loss", "check", imagePath], output: imagePath + ".out", log: nil)
                running[pid] = (job, imagePath)
                next += 1
            }
            var status: Int32 = 0
            let pid = waitpid(-1, &status, 0)
            if pid < 0 {
                if errno == EINTR { continue }
                throw InputError("waitpid failed (errno \(errno)) with \(running.count) checks running")
            }
            guard let (job, imagePath) = running.removeValue(forKey: pid) else { continue }
            checked += 1
            var output = parse(read(imagePath + ".out"))
            if !(status & 0x7F == 0 && (status >> 8) & 0xFF == 0) {
                output.problem = "the check exited with status \(status >> 8 & 0xFF) (signal \(status & 0x7F)): "
                    + read(imagePath + ".out").suffix(400) + read(imagePath + ".err").suffix(400)
            }
            let point = points[job.point]
            if let problem = judge(output, point) {
                var description = "flush \(point.flush) (\(point.context)); \(job.image.origin): \(problem)"
                if let base { description = "[recovery of \(base.image.origin)] " + description }
                var kept = imagePath
                if let keep = settings.keep {
                    kept = keep + "/" + (imagePath as NSString).lastPathComponent
                    try? FileManager.default.removeItem(atPath: kept)
                    try? FileManager.default.copyItem(atPath: imagePath, toPath: kept)
                }
                failures.append(Failure(description: description, imagePath: settings.keep == nil ? "(pass --keep DIR to keep it)" : kept))
            } else {
                recovered(job, output)
            }
            for suffix in ["", ".out", ".err"] { unlink(imagePath + suffix) }
        }
    }

    /// Nil when the image recovered correctly; otherwise what is wrong.
    func judge(_ output: CheckOutput, _ point: CrashPoint) -> String? {
        if let problem = output.problem { return problem }
        guard let state = output.state else { return "the check printed no state" }
        var problems: [String] = []
        if !point.acceptable.contains(state) {
            let differences = point.acceptable.map { PowerLossExplorer.differingFields(state, $0).joined(separator: ", ") }
            problems.append("recovered to a state that is neither the acknowledged one (fields differing: \(differences[0]))"
                + (differences.count > 1 ? " nor the one in flight (differing: \(differences[1]))" : " (nothing else was in flight)"))
        }
        if output.verify != "ok" { problems.append("verify: \(output.verify ?? "no result")") }
        if output.reopen != "same" { problems.append("a reopen reads differently: \(output.reopen?.prefix(200) ?? "no result")") }
        return problems.isEmpty ? nil : problems.joined(separator: "; ")
    }

    func parse(_ text: String) -> CheckOutput {
        var output = CheckOutput()
        for line in text.split(separator: "\n") {
            if line.hasPrefix("state ") { output.state = String(line.dropFirst(6)) }
            else if line.hasPrefix("verify ") { output.verify = String(line.dropFirst(7)) }
            else if line.hasPrefix("reopen ") { output.reopen = String(line.dropFirst(7)) }
        }
        return output
    }

    static func differingFields(_ a: String, _ b: String) -> [String] {
        guard let left = try? JSONSerialization.jsonObject(with: Data(a.utf8)) as? [String: Any],
              let right = try? JSONSerialization.jsonObject(with: Data(b.utf8)) as? [String: Any] else { return ["(unreadable)"] }
        return Set(left.keys).union(right.keys).sorted().filter { key in
            guard let x = left[key], let y = right[key] else { return true }
            return PowerLossExplorer.canonical(x) != PowerLossExplorer.canonical(y)
        }
    }

    static func canonical(_ value: Any) -> String {
        guard let data = try? JSONSerialization.data(withJSONObject: [value], options: [.sortedKeys]) else { return "\(value)" }
        return String(decoding: data, as: UTF8.self)
    }

    // MARK: Processes

    func path(for job: Job, index: Int) -> String {
        workDirectory + "/image-\(job.point)-\(index)"
    }

    func read(_ path: String) -> String {
        (try? String(contentsOfFile: path, encoding: .utf8)) ?? ""
    }

    /// Runs one process to its end; returns its exit status (128 + signal if killed).
    func run(_ arguments: [String], output: String, log: String?) throws -> Int32 {
        let pid = try spawn(arguments, output: output, log: log)
        var status: Int32 = 0
        while waitpid(pid, &status, 0) < 0 {
            guard errno == EINTR else { throw InputError("waitpid failed (errno \(errno))") }
        }
        return status & 0x7F == 0 ? (status >> 8) & 0xFF : 128 + (status & 0x7F)
    }

    /// Starts `arguments` with standard output in `output`, standard error
    /// in `output` with ".err" for ".out", and the flush log set to `log`.
    func spawn(_ arguments: [String], output: String, log: String?) throws -> pid_t {
        var environment = ProcessInfo.processInfo.environment
        environment["SLOTSTORE_FAULT"] = nil
        environment["SLOTSTORE_FLUSH_LOG"] = log
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        let errorPath = output.hasSuffix(".out") ? String(output.dropLast(4)) + ".err" : output + ".err"
        posix_spawn_file_actions_addopen(&actions, STDOUT_FILENO, output, O_WRONLY | O_CREAT | O_TRUNC, 0o600)
        posix_spawn_file_actions_addopen(&actions, STDERR_FILENO, errorPath, O_WRONLY | O_CREAT | O_TRUNC, 0o600)
        let argv: [UnsafeMutablePointer<CChar>?] = arguments.map { strdup($0) } + [nil]
        let envp: [UnsafeMutablePointer<CChar>?] = environment.map { strdup("\($0.key)=\($0.value)") } + [nil]
        defer { for pointer in argv + envp { free(pointer) } }
        var pid: pid_t = 0
        let code = posix_spawn(&pid, executable, &actions, nil, argv, envp)
        guard code == 0 else { throw InputError("\(executable): cannot start it (posix_spawn errno \(code))") }
        return pid
    }

    static func selfExecutable() throws -> String {
        var buffer = [CChar](repeating: 0, count: 4097)
        let count = readlink("/proc/self/exe", &buffer, 4096)
        guard count > 0 else { throw InputError("/proc/self/exe: cannot find this executable (errno \(errno))") }
        return String(decoding: buffer[0..<count].map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }
}
