/// Where a key lives in a map's bucket table: its hash, its home bucket and
/// the probe order, for each ``MapLayoutVersion``. Pure arithmetic, so the
/// engine (through `MapCursor`), `verify` and `inspect` (over file images)
/// share this one definition.
struct MapAddressing: Sendable {
    let layout: MapLayoutVersion
    let bucketCount: Int
    /// The map's seed (``MapHash/mapSeed(store:fieldIndex:)``).
    let seed: UInt64

    init(layout: MapLayoutVersion, bucketCount: Int, seed: UInt64) {
        self.layout = layout
        self.bucketCount = bucketCount
        self.seed = seed
    }

    init(geometry: MapGeometry, storeSeed: UInt64, fieldIndex: Int) {
        self.init(layout: geometry.version, bucketCount: geometry.bucketCount,
                  seed: MapHash.mapSeed(store: storeSeed, fieldIndex: fieldIndex))
    }

    /// The hash of `key` in this layout.
    @inline(__always)
    func hash(_ key: UnsafeRawBufferPointer) -> UInt64 {
        layout == .v2 ? MapHash.lanes(key, seed: seed) : MapHash.chained(key, seed: seed)
    }

    /// The bucket a key of hash `hash` probes first. Layout 2 scales the hash
    /// to the bucket count, `(hash × count) >> 64`: any count works, and homes
    /// follow hash order. Layout 1 (power-of-two counts) masks it.
    @inline(__always)
    func home(ofHash hash: UInt64) -> Int {
        layout == .v2 ? Int(truncatingIfNeeded: hash.multipliedFullWidth(by: UInt64(truncatingIfNeeded: bucketCount)).high)
            : Int(truncatingIfNeeded: hash) & (bucketCount &- 1)
    }

    @inline(__always)
    func home(of key: UnsafeRawBufferPointer) -> Int { home(ofHash: hash(key)) }

    /// The bucket after `index`, wrapping at the end of the table.
    @inline(__always)
    func next(_ index: Int) -> Int {
        let following = index &+ 1
        return following == bucketCount ? 0 : following
    }

    /// The bucket before `index`, wrapping at the start of the table.
    @inline(__always)
    func previous(_ index: Int) -> Int { index == 0 ? bucketCount &- 1 : index &- 1 }

    /// `index + offset` wrapped into the table (`0 <= offset < bucketCount`).
    @inline(__always)
    func advanced(_ index: Int, by offset: Int) -> Int {
        let target = index &+ offset
        return target >= bucketCount ? target &- bucketCount : target
    }

    /// How many steps forward from `start` reach `end`, wrapping.
    @inline(__always)
    func distance(from start: Int, to end: Int) -> Int {
        let steps = end &- start
        return steps < 0 ? steps &+ bucketCount : steps
    }
}
