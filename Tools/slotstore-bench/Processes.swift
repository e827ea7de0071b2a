import Glibc

/// Starting processes (the benchmark's own children and the C floor) and pinning CPUs.
enum Spawn {
    /// This executable, for child roles.
    static func executablePath() throws(BenchFailure) -> String {
        var buffer = [CChar](repeating: 0, count: 4097)
        let length = readlink("/proc/self/exe", &buffer, 4096)
        guard length > 0 else { throw BenchFailure("cannot read /proc/self/exe: \(errorText(errno))") }
        return String(decoding: buffer[0..<length].map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    /// Starts `path` with `arguments` (argv[0] is `path`). With `stdoutPipe`,
    /// the child's standard output goes to the returned descriptor.
    static func start(_ path: String, _ arguments: [String], environment: [String: String] = [:],
                      stdoutPipe: Bool = false) throws(BenchFailure) -> (pid: pid_t, stdout: Int32?) {
        var argv: [UnsafeMutablePointer<CChar>?] = ([path] + arguments).map { strdup($0) }
        argv.append(nil)
        defer { for pointer in argv { free(pointer) } }

        var envStrings: [String] = []
        var index = 0
        while let entry = environ[index] {
            let line = String(cString: entry)
            let name = line.split(separator: "=", maxSplits: 1).first.map(String.init) ?? line
            if environment[name] == nil { envStrings.append(line) }
            index += 1
        }
        for (name, value) in environment.sorted(by: { $0.key < $1.key }) { envStrings.append(name + "=" + value) }
        var envp: [UnsafeMutablePointer<CChar>?] = envStrings.map { strdup($0) }
        envp.append(nil)
        defer { for pointer in envp { free(pointer) } }

        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        var fds: [Int32] = [-1, -1]
        if stdoutPipe {
            guard pipe(&fds) == 0 else { throw BenchFailure("pipe failed: \(errorText(errno))") }
            posix_spawn_file_actions_addclose(&actions, fds[0])
            posix_spawn_file_actions_adddup2(&actions, fds[1], STDOUT_FILENO)
            posix_spawn_file_actions_addclose(&actions, fds[1])
        }
        var pid: pid_t = 0
        let status = posix_spawn(&pid, path, &actions, nil, argv, envp)
        if stdoutPipe { close(fds[1]) }
        guard status == 0 else {
            if stdoutPipe { close(fds[0]) }
            throw BenchFailure("cannot start \(path): \(errorText(status))")
        }
        return (pid, stdoutPipe ? fds[0] : nil)
    }

    /// Waits for `pid` and fails unless it exited with status 0.
    static func wait(_ pid: pid_t, _ what: String) throws(BenchFailure) {
        var status: Int32 = 0
        while waitpid(pid, &status, 0) < 0 {
            guard errno == EINTR else { throw BenchFailure("waitpid for \(what) failed: \(errorText(errno))") }
        }
        try check(status, what)
    }

    static func check(_ status: Int32, _ what: String) throws(BenchFailure) {
        let signal = status & 0x7F
        if signal != 0 { throw BenchFailure("\(what) was killed by signal \(signal)") }
        let code = (status >> 8) & 0xFF
        if code != 0 { throw BenchFailure("\(what) exited with status \(code)") }
    }

    /// Reads a descriptor to its end.
    static func readAll(_ fd: Int32) -> [UInt8] {
        var result: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 65536)
        while true {
            let count = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if count > 0 { result.append(contentsOf: chunk[0..<count]) }
            else if count < 0 && errno == EINTR { continue }
            else { break }
        }
        close(fd)
        return result
    }
}

/// Pins processes to CPUs so that "two processes" really run on two CPUs, as the floor does.
enum CPU {
    nonisolated(unsafe) private static var original: cpu_set_t?

    // glibc's affinity calls are behind _GNU_SOURCE, which the Glibc module doesn't define.
    private typealias AffinityFunction = @convention(c) (pid_t, Int, UnsafeMutableRawPointer?) -> Int32
    private static func call(_ name: String, _ set: inout cpu_set_t) -> Int32 {
        guard let symbol = dlsym(nil, name) else { return -1 }
        let function = unsafeBitCast(symbol, to: AffinityFunction.self)
        return withUnsafeMutableBytes(of: &set) { function(0, $0.count, $0.baseAddress) }
    }
    private static func sched_getaffinity(_ pid: pid_t, _ size: Int, _ set: inout cpu_set_t) -> Int32 { call("sched_getaffinity", &set) }
    private static func sched_setaffinity(_ pid: pid_t, _ size: Int, _ set: inout cpu_set_t) -> Int32 { call("sched_setaffinity", &set) }

    static var online: Int { max(1, sysconf(Int32(_SC_NPROCESSORS_ONLN))) }

    /// Pins the calling process to `cpu` (modulo the online count); no-op on one CPU.
    static func pin(_ cpu: Int) {
        guard online >= 2 else { return }
        if original == nil {
            var saved = cpu_set_t()
            if sched_getaffinity(0, MemoryLayout<cpu_set_t>.size, &saved) == 0 { original = saved }
        }
        var set = cpu_set_t()
        let bit = cpu % online
        withUnsafeMutableBytes(of: &set) { bytes in
            bytes[bit / 8] |= UInt8(1 << (bit % 8))
        }
        _ = sched_setaffinity(0, MemoryLayout<cpu_set_t>.size, &set)
    }

    /// Restores the affinity the process started with.
    static func unpin() {
        guard var saved = original else { return }
        _ = sched_setaffinity(0, MemoryLayout<cpu_set_t>.size, &saved)
    }
}
