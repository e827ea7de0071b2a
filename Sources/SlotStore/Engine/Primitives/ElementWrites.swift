import Synchronization

/// An array's element-write counter (the word after its sequence word):
/// lock-free element stores count themselves here, so a snapshot reader that
/// finds it unchanged around its copy knows no element store was counted
/// meanwhile. Locked writers of the whole array use the sequence word instead.
///
/// ```
/// element writer (no lock)             snapshot reader (no lock)
/// counter += 1 (acquire and release)   s = sequence.beginRead(), c = counter
/// store the element (release)          copy every element
///                                      sequence.endRead(s) && counter == c
/// ```
///
/// Counting before storing closes the window of a writer preempted between
/// its store and its count (a snapshot could combine that stored, uncounted
/// element with a later element's newer value). It leaves the mirror image:
/// writers that counted before a snapshot began and store during its copy
/// can still give it elements from two moments (see CrashRecovery.md).
@usableFromInline
struct ElementWriteCounter {
    @usableFromInline let word: UnsafeMutablePointer<Atomic<UInt64>>

    @inlinable @inline(__always)
    init(_ address: MappedAddress) { word = address.atomic(UInt64.self) }

    /// The count before a snapshot's copy.
    @inlinable @inline(__always)
    func beginRead() -> UInt64 { word.pointee.load(ordering: .acquiring) }

    /// Whether no element store was counted since ``beginRead()``; call after
    /// the sequence word's `endRead`, whose fence orders the copy before this load.
    @inlinable @inline(__always)
    func endRead(_ begun: UInt64) -> Bool { word.pointee.load(ordering: .relaxed) == begun }
}

extension MappedAddress {
    /// The one element write, for every path (a handle's lock-free store, a
    /// transaction's, a by-name `setValue(_:for:at:)`): counts the write in the
    /// array's element-write counter, then stores the element.
    ///
    /// Counted first, with a read-modify-write that is a barrier both ways:
    /// the store can't become visible before the count, so a snapshot (which
    /// reads the counter before and after its copy, see
    /// `StoreCore.readConsistently`) that copied this element's new value sees
    /// the counter moved and retries. Counted after the store, a writer
    /// preempted between the two left a stored but uncounted element that a
    /// snapshot could combine with a later element's newer value.
    @inlinable @inline(__always)
    static func writeElement(_ bits: UInt64, width: Int, at element: MappedAddress, counting writes: MappedAddress) {
        writes.atomic(UInt64.self).pointee.wrappingAdd(1, ordering: .acquiringAndReleasing)
        #if DEBUG
        // A preemption between the two halves, for tests (see `FaultPoint.elementWrite`).
        if _slowPath(FaultInjection.enabled) { FaultInjection.trigger(.elementWrite) }
        #endif
        // Releasing: a snapshot whose copy reads this value also sees the count above.
        switch width {
        case 8: element.atomic(UInt64.self).pointee.store(bits, ordering: .releasing)
        case 4: element.atomic(UInt32.self).pointee.store(UInt32(truncatingIfNeeded: bits), ordering: .releasing)
        case 2: element.atomic(UInt16.self).pointee.store(UInt16(truncatingIfNeeded: bits), ordering: .releasing)
        default: element.atomic(UInt8.self).pointee.store(UInt8(truncatingIfNeeded: bits), ordering: .releasing)
        }
    }
}

// The element read-modify-writes: the same protocol as `writeElement`, with an
// atomic read-modify-write in place of the store. Counted first for the same
// reason; the RMW's release half orders the count before the new value, as
// the store's release does.
extension MappedAddress {
    /// Counts the write, then adds `delta` to the element (wrapping); returns the new value.
    @inlinable @inline(__always)
    static func addElement<Value: SlotInteger>(_ delta: Value, at element: MappedAddress, counting writes: MappedAddress) -> Value {
        writes.atomic(UInt64.self).pointee.wrappingAdd(1, ordering: .acquiringAndReleasing)
        #if DEBUG
        if _slowPath(FaultInjection.enabled) { FaultInjection.trigger(.elementWrite) }
        #endif
        return element.addScalar(delta)
    }

    /// Counts the write, then stores `desired` in the element if it holds
    /// `expected`. A failed exchange is counted too (it costs a concurrent
    /// snapshot one retry): counting only after the comparison would leave the
    /// window `writeElement` closes.
    @inlinable @inline(__always)
    static func compareExchangeElement<Value: SlotScalar>(expected: Value, desired: Value, at element: MappedAddress,
                                                         counting writes: MappedAddress) -> (exchanged: Bool, original: Value) {
        writes.atomic(UInt64.self).pointee.wrappingAdd(1, ordering: .acquiringAndReleasing)
        #if DEBUG
        if _slowPath(FaultInjection.enabled) { FaultInjection.trigger(.elementWrite) }
        #endif
        return element.compareExchangeScalar(expected: expected, desired: desired)
    }
}
