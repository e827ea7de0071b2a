import Glibc

/// Open-file-description (OFD) locks on byte 0 of the store file, which decide
/// race-free whether any other process has the store open.
///
/// Every process that opens a store holds a shared lock on byte 0 for as long
/// as it has it open; the kernel drops it when the descriptor closes or the
/// process dies, however it dies. An opener first tries for an exclusive lock:
/// getting it proves nobody else has the store open, so it may reset the lock
/// region and roll back a leftover journal before downgrading to shared. OFD
/// locks (unlike classic `fcntl` locks) belong to the open file description,
/// so a second open of the same store in one process, or closing an unrelated
/// descriptor to the same file, does not drop them. The downgrade from
/// exclusive to shared is atomic, so no reset can slip in between.
enum OpenGate {
    // From <bits/fcntl-linux.h>; hidden from Swift's Glibc module because
    // they are GNU extensions.
    static let getLock: Int32 = 36       // F_OFD_GETLK
    static let setLock: Int32 = 37       // F_OFD_SETLK

    /// Tries for the exclusive lock without waiting.
    static func tryExclusive(_ fd: Int32) -> Result<Bool, Errno> {
        var request = lockRequest(type: Int16(F_WRLCK))
        if fcntl(fd, setLock, &request) == 0 { return .success(true) }
        let code = errno
        return code == EAGAIN || code == EACCES ? .success(false) : .failure(Errno(code))
    }

    /// Takes (or downgrades to) the shared lock, waiting while another
    /// process holds the exclusive one (a first opener's brief reset, or a
    /// compaction in place with nobody else attached), for at most `timeout`
    /// seconds: false when it was still held then.
    ///
    /// Tries without blocking, in short sleeps, rather than `F_OFD_SETLKW`,
    /// which has no timeout: a stopped compactor would hang every opener.
    static func shared(_ fd: Int32, timeout: Double) -> Result<Bool, Errno> {
        var request = lockRequest(type: Int16(F_RDLCK))
        let deadline = StoreCore.monotonicNanoseconds() + UInt64(max(0, timeout) * 1e9)
        var pause: UInt32 = 50
        while true {
            if fcntl(fd, setLock, &request) == 0 { return .success(true) }
            let code = errno
            guard code == EAGAIN || code == EACCES || code == EINTR else { return .failure(Errno(code)) }
            if StoreCore.monotonicNanoseconds() >= deadline { return .success(false) }
            usleep(pause)
            pause = min(pause * 2, 10_000)
        }
    }

    /// Whether some open file description other than `fd`'s holds a lock that
    /// conflicts with an exclusive one: that is, whether another opener exists.
    static func othersHaveOpen(_ fd: Int32) -> Result<Bool, Errno> {
        var request = lockRequest(type: Int16(F_WRLCK))
        guard fcntl(fd, getLock, &request) == 0 else { return .failure(Errno(errno)) }
        return .success(request.l_type != Int16(F_UNLCK))
    }

    /// Whether another open file description holds the exclusive lock on
    /// byte 0 (a first opener resetting the store, or a compaction in place
    /// with nobody else attached): what makes an opener wait. An error reads as "no".
    static func heldExclusivelyByOthers(_ fd: Int32) -> Bool {
        var request = lockRequest(type: Int16(F_RDLCK))
        guard fcntl(fd, getLock, &request) == 0 else { return false }
        return request.l_type == Int16(F_WRLCK)
    }

    /// Tries for the exclusive lock on one byte without waiting: how a thread
    /// slot is claimed. The kernel drops it when the descriptor closes or the
    /// process dies.
    static func tryClaimByte(_ fd: Int32, _ byte: Int) -> Bool {
        var request = lockRequest(type: Int16(F_WRLCK), start: byte)
        return fcntl(fd, setLock, &request) == 0
    }

    /// Tries for a write lock over every byte, to infinity, without waiting:
    /// granted only if no other open file description holds any lock on the
    /// file. How a leftover temporary file is proven abandoned (see `TemporaryFiles`).
    static func tryClaimWholeFile(_ fd: Int32) -> Bool {
        var request = lockRequest(type: Int16(F_WRLCK))
        request.l_len = 0  // to the end of the file and beyond
        return fcntl(fd, setLock, &request) == 0
    }

    /// Whether an open file description other than `fd`'s holds a lock on `byte`.
    /// An error reads as "held", which only makes a waiter wait longer.
    static func byteHeldByOthers(_ fd: Int32, _ byte: Int) -> Bool {
        var request = lockRequest(type: Int16(F_WRLCK), start: byte)
        guard fcntl(fd, getLock, &request) == 0 else { return true }
        return request.l_type != Int16(F_UNLCK)
    }

    private static func lockRequest(type: Int16, start: Int = 0) -> flock {
        var request = flock()
        request.l_type = type
        request.l_whence = Int16(SEEK_SET)
        request.l_start = start
        request.l_len = 1
        request.l_pid = 0  // must be 0 for OFD locks
        return request
    }
}
