import Glibc

/// What `slotstore repair` did, or would do with `--dry-run`.
public struct RepairReport: Sendable, Codable, Hashable {
    /// The repaired path.
    public var path: String
    /// Whether this was only a plan.
    public var dryRun: Bool
    /// Each action, as a sentence, in the order taken.
    public var actions: [String]
    /// Why repair refused to act (a live lock holder, no intact header), or nil.
    public var refused: String?
}

extension SlotStore {
    /// Mends what can be mended without losing acknowledged data:
    /// restores a damaged header from its copy (or the copy from the header),
    /// recovers a lock whose holder died, rolls back an interrupted write,
    /// and resets a lock left from before a reboot.
    ///
    /// It refuses, naming the PID, while a running process holds the lock,
    /// and refuses when neither header copy is intact.
    ///
    /// - Parameters:
    ///   - path: the store file.
    ///   - dryRun: report the plan without changing anything.
    ///   - allowOtherOwner: repair a store that belongs to another user.
    /// - Throws: only when there is no file to repair.
    public static func repair(at path: String, dryRun: Bool = false, allowOtherOwner: Bool = false) throws(SlotStoreError) -> RepairReport {
        try repair(at: path, dryRun: dryRun, allowOtherOwner: allowOtherOwner, lockTimeout: OpenOptions().lockTimeout)
    }

    /// ``repair(at:dryRun:allowOtherOwner:)``, waiting at most `lockTimeout`
    /// for the lock (taken to recover a dead holder's while others have the
    /// store open) and to open the store: for `slotstore repair --lock-timeout`.
    @_spi(Tools)
    public static func repair(at path: String, dryRun: Bool, allowOtherOwner: Bool, lockTimeout: Duration) throws(SlotStoreError) -> RepairReport {
        var openOptions = OpenOptions(mode: .open, lockTimeout: lockTimeout)
        openOptions.allowOtherOwner = allowOtherOwner
        let image = try FileImage.open(path, writable: !dryRun)
        var report = RepairReport(path: path, dryRun: dryRun, actions: [], refused: nil)
        var imageOpen = true
        defer { if imageOpen { image.close() } }

        // 1. The header: keep two identical intact copies.
        let header: FileHeader
        switch (image.header, image.headerCopy) {
        case (.success(let primary), .success) where image.headerBytes == image.headerCopyBytes:
            header = primary
        case (.success(let primary), _):
            header = primary
            report.actions.append("rewrite the header copy at offset \(FileHeader.copyOffset) from the header")
            if !dryRun { try write(image.headerBytes, at: FileHeader.copyOffset, image) }
        case (.failure(let error), .success(let copy)):
            header = copy
            report.actions.append("restore the header from its copy at offset \(FileHeader.copyOffset) (\(error))")
            if !dryRun { try write(image.headerCopyBytes, at: 0, image) }
        case (.failure(.unsupportedVersion(_, let found, let supported)), .failure(.unsupportedVersion)):
            // Both copies say the same newer version: a store written by a
            // newer build, not a damaged one. Nothing to repair here.
            report.refused = "the store has format version \(found), newer than this slotstore reads (\(supported)); it is not damaged: use a newer slotstore"
            return report
        case (.failure(let error), .failure):
            report.refused = "neither header copy is intact (\(error)); restore the store from a dump"
            return report
        }
        let schema: Schema
        switch image.schema(for: header) {
        case .success(let decoded): schema = decoded
        case .failure(let error):
            report.refused = "\(error); restore the store from a dump"
            return report
        }
        guard header.lockABI == LockRegion.currentABI else {
            report.refused = "the store's lock was made for \(LockRegion.describeABI(header.lockABI)); repair it with a slotstore built for that"
            return report
        }
        let layout: Layout
        do {
            layout = try Layout(header: header, schema: schema, path: path)
        } catch {
            report.refused = "\(error); restore the store from a dump"
            return report
        }
        let state = StoreFileState(image: image, header: header, layout: layout)
        let lock = state.lock
        let oddFields = layout.fields.filter { field in
            field.hasSequence ? state.sequence(of: field) & 1 == 1
                : field.type.isMap && state.mapScan(field).interrupted
        }.map(\.name)

        // 2. The lock and the journal.
        if case .success(true) = OpenGate.othersHaveOpen(image.fd) {
            // Other processes have the store open: the lock can't be reset under
            // them, but a dead holder's lock is recovered by taking it.
            if lock.state == "held" {
                report.refused = "\(lock.holderName) is running and holds the lock; nothing was changed. Stop or debug that process, then repair again"
                return report
            }
            if lock.state == "needs-recovery" || lock.state == "stale" {
                report.actions.append("recover the lock left by \(lock.holderName) (not running) and roll back its interrupted write (\(counted(state.journalRecords.count, "journal record")))")
                if !dryRun {
                    image.close()
                    imageOpen = false
                    let store = try SlotStore(path: path, options: openOptions)
                    try store.core.settleStalledWriter()
                    store.close()
                }
            }
        } else {
            // Nobody else has it open: whatever the lock word says is stale.
            if lock.state != "free" {
                let why = lock.state == "stale" ? "left from before a reboot" : lock.state == "held" ? "recorded for a process that no longer has the store open" : "not running"
                report.actions.append("reset the lock held by \(lock.holderName) (\(why))")
            }
            if state.journalUsed != 0 {
                report.actions.append("roll back the interrupted write in the journal (\(counted(state.journalRecords.count, "record")), \(counted(state.journalUsed, "byte"))), or complete it if it is a durable commit with every record sealed")
            }
            if !oddFields.isEmpty {
                report.actions.append("settle the sequence words of \(oddFields.joined(separator: ", "))")
            }
            if !dryRun && (lock.state != "free" || state.journalUsed != 0 || !oddFields.isEmpty) {
                // A normal open by the only opener performs exactly this reset.
                image.close()
                imageOpen = false
                let store = try SlotStore(path: path, options: openOptions)
                store.close()
            }
        }
        // 3. Per-process contributions of processes that are gone: an open folds them.
        let gone = goneContributions(state: state, layout: layout, fd: image.fd)
        if !gone.isEmpty && report.refused == nil {
            report.actions.append("fold the per-process contributions of \(gone.count) process slot\(gone.count == 1 ? "" : "s") whose \(gone.count == 1 ? "process is" : "processes are") gone (liveSum fields drop them), in \(layout.fields.filter { $0.processSlots > 0 }.map(\.name).joined(separator: ", "))")
            if !dryRun {
                if imageOpen {
                    image.close()
                    imageOpen = false
                }
                let store = try SlotStore(path: path, options: openOptions)
                store.close()
            }
        }
        return report
    }

    /// The process slots holding a contribution whose owner's OFD lock nobody holds.
    private static func goneContributions(state: StoreFileState, layout: Layout, fd: Int32) -> [Int] {
        guard let field = layout.fields.first(where: { $0.processSlots > 0 }) else { return [] }
        return (0..<field.processSlots).filter { slot in
            let at = field.slotOffset(slot)
            return state.data(at + PerProcessLayout.stateOffset, count: 4).bits(at + PerProcessLayout.stateOffset, width: 4) == UInt64(PerProcessLayout.claimed)
                && !OpenGate.byteHeldByOthers(fd, PerProcessLayout.processSlotLockBase + slot)
        }
    }

    private static func write(_ bytes: [UInt8], at offset: Int, _ image: FileImage) throws(SlotStoreError) {
        if case .failure(let code) = Syscall.write(image.fd, bytes, at: offset) {
            throw Syscall.fileError(code, path: image.path, call: "pwrite", operation: "rewrite the header")
        }
        _ = fsync(image.fd)
    }
}
