/// Maps that grow by themselves (see ``MapGrowth``): an insert that brings a
/// map to its growth count, or finds it full, asks for a growth while it
/// holds the lock; the growth runs as that thread releases the lock, as a
/// compaction in place giving the map twice the capacity, which every
/// process using the store follows.
extension StoreCore {
    /// Asks for `field` to grow once the lock is released. Call holding the lock.
    /// `full`: the insert found no room; otherwise it crossed the threshold,
    /// which is not retried after a failed growth until the map is full.
    func requestGrowth(field: Int, capacity: Int, full: Bool) {
        // A compaction's new file (journaling off) is filled before anyone can
        // use it, and must not be grown under the compaction's feet.
        guard journaling, growthCounts[field] != Int.max else { return }
        if !full, growthFailures.withLock({ $0[field] != nil }) { return }
        pendingGrowth = (field, capacity)
    }

    /// Grows the map unless another process already did; a failure is kept
    /// for ``growthFailure(field:)``. Call without the lock.
    func growMap(field index: Int, from capacity: Int) {
        let field = layout.fields[index]
        guard let growth = schema.field(named: field.name)?.growth else { return }
        let target = growth.nextCapacity(after: capacity)
        guard target > capacity else { return }
        do throws(SlotStoreError) {
            try SlotStore.growMap(at: path, field: field.name, from: capacity, to: target,
                                  lockTimeout: lockTimeout, allowOtherOwner: allowsOtherOwner)
            growthFailures.withLock { $0[index] = nil }
        } catch {
            growthFailures.withLock { $0[index] = error }
        }
    }

    /// Why the last growth of the map at `index` failed, if it did.
    func growthFailure(field index: Int) -> SlotStoreError? {
        growthFailures.withLock { $0[index] }
    }
}

extension SlotStore {
    /// Gives map `field` the capacity `target` by a compaction in place, if
    /// the store at `path` still has it at `capacity` (another process may
    /// have grown it meanwhile; then nothing is done).
    static func growMap(at path: String, field: String, from capacity: Int, to target: Int,
                        lockTimeout: Double, allowOtherOwner: Bool) throws(SlotStoreError) {
        _ = try compact(at: path, capacities: [field: target], allowOtherOwner: allowOtherOwner,
                        lockTimeout: lockTimeout, onlyIfCapacity: (field, capacity))
    }
}
