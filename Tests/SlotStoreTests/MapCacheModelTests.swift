import Testing
@testable import SlotStore

/// Random operations on a small cache map against a Swift dictionary that
/// knows each entry's value and deadline, on a manual clock moved at random.
/// Which entry an eviction takes is the map's choice (the clock bits are
/// not modelled): the model accepts any live entry as the victim as long as
/// the map reports exactly that many evictions, and checks everything else
/// exactly: values, expiry, insert-or-replace, mapFull only when every
/// entry is live, and that safeSet never evicts.
@Suite("Maps as caches against a model", .serialized, .timeLimit(.minutes(5)))
struct MapCacheModelTests {
    let directory = TemporaryDirectory()

    struct Entry {
        var value: Int64
        /// Milliseconds; nil: never expires.
        var deadline: Int64?
    }

    struct Model {
        var entries: [String: Entry] = [:]
        var now: Int64

        func isLive(_ key: String) -> Bool {
            guard let entry = entries[key] else { return false }
            return entry.deadline.map { now < $0 } ?? true
        }

        var live: [String: Int64] {
            entries.filter { isLive($0.key) }.mapValues(\.value)
        }
    }

    @Test("random sets, safeSets, adds, gets, removes, removeExpired and clock moves agree with the model",
          arguments: [false, true])
    func againstModel(evict: Bool) throws {
        let start: Int64 = 1_700_000_000_000
        let clock = CacheClock.manual(startingAt: start)
        var options = OpenOptions()
        options.clock = clock
        let capacity = 16
        let store = try SlotStore(path: directory.file("model-\(evict).slots"), schema: Schema(version: 1, fields: [
            .map("cache", key: .string(capacity: 8), value: .scalar(.int64), capacity: capacity, cache: MapCache(evict: evict)),
        ]), options: options)
        let map = try store.map("cache", key: String.self, value: Int64.self)
        var model = Model(now: start)
        var random = SeededRandom(state: evict ? 71 : 17)
        var evictions = 0
        var fullRefusals = 0

        func ttl() -> Duration? {
            random.chance(30) ? nil : .milliseconds(1 + random.below(3_000))
        }
        func deadline(_ ttl: Duration?) -> Int64? {
            ttl.map { model.now + $0.components.seconds * 1000 + $0.components.attoseconds / 1_000_000_000_000_000 }
        }
        /// After an insert that reported `evicted` live evictions: the live keys
        /// the map lost must be exactly that many, and never `key` itself.
        func settleEvictions(_ evicted: Int, inserting key: String, step: Int) throws {
            let actual = Set(try map.entries().map(\.key))
            let lost = Set(model.live.keys).subtracting(actual).subtracting([key])
            #expect(lost.count == evicted, "step \(step): lost \(lost.sorted()), reported \(evicted)")
            for victim in lost { model.entries[victim] = nil }
            evictions += lost.count
        }

        for step in 0..<4_000 {
            let key = "k\(random.below(40))"
            switch random.below(100) {
            case 0..<30, 30..<40:
                let safe = random.chance(25)
                let value = Int64(random.below(1_000_000))
                let life = ttl()
                let wasLive = model.isLive(key)
                let liveCount = model.live.count
                do {
                    let outcome = safe ? try map.safeSet(value, for: key, ttl: life) : try map.set(value, for: key, ttl: life)
                    #expect(outcome.inserted == !wasLive, "step \(step)")
                    #expect(!(safe || !evict) || outcome.evicted == 0, "step \(step): only an evicting set evicts")
                    model.entries[key] = Entry(value: value, deadline: deadline(life))
                    try settleEvictions(outcome.evicted, inserting: key, step: step)
                } catch SlotStoreError.mapFull {
                    #expect(!wasLive && liveCount == capacity && (safe || !evict),
                            "step \(step): mapFull with \(liveCount) live entries (safe \(safe))")
                    fullRefusals += 1
                }
            case 40..<50:
                let delta = Int64(random.below(10))
                let initial = Int64(random.below(100))
                let life = ttl()
                let plain = random.chance(30)
                let wasLive = model.isLive(key)
                let liveCount = model.live.count
                do {
                    let result = plain ? try map.add(delta, for: key) : try map.add(delta, for: key, initial: initial, ttl: life)
                    if wasLive {
                        model.entries[key]!.value += delta
                    } else {
                        model.entries[key] = Entry(value: (plain ? 0 : initial) + delta, deadline: plain ? nil : deadline(life))
                    }
                    #expect(result == model.entries[key]!.value, "step \(step)")
                    let actual = Set(try map.entries().map(\.key))
                    let lost = Set(model.live.keys).subtracting(actual)
                    #expect(lost.count <= (evict ? 1 : 0), "step \(step)")
                    for victim in lost { model.entries[victim] = nil }
                    evictions += lost.count
                } catch SlotStoreError.mapFull {
                    #expect(!wasLive && liveCount == capacity && !evict, "step \(step)")
                    fullRefusals += 1
                }
            case 50..<70:
                #expect(try map.get(key) == model.live[key], "step \(step): get \(key)")
                #expect(try map.contains(key) == model.isLive(key), "step \(step)")
            case 70..<75:
                let stale = try map.getStale(key)
                if model.isLive(key) {
                    #expect(stale?.value == model.entries[key]?.value && stale?.expired == false, "step \(step)")
                } else if let stale {
                    // Expired but not reclaimed yet: the model's last value.
                    #expect(stale.expired && stale.value == model.entries[key]?.value, "step \(step): \(stale)")
                }
            case 75..<85:
                #expect(try map.remove(key) == model.isLive(key), "step \(step)")
                model.entries[key] = nil
            case 85..<87:
                let removed = try map.removeExpired()
                let expired = model.entries.keys.filter { !model.isLive($0) }
                #expect(removed <= expired.count, "step \(step)")
                for key in expired {
                    #expect(try map.getStale(key) == nil, "step \(step): \(key) expired and still there")
                    model.entries[key] = nil
                }
            case 87..<90:
                #expect(map.count == model.live.count, "step \(step)")
                #expect(Dictionary(uniqueKeysWithValues: try map.entries().map { ($0.key, $0.value) }) == model.live, "step \(step)")
            default:
                let ms = random.below(1_500)
                clock.advance(by: .milliseconds(ms))
                model.now += Int64(ms)
            }
        }
        #expect(Dictionary(uniqueKeysWithValues: try map.entries().map { ($0.key, $0.value) }) == model.live)
        #expect(try SlotStore.verify(at: store.path).findings == [])
        // The run did reach the interesting states.
        if evict { #expect(evictions > 50, "\(evictions) evictions") } else { #expect(evictions == 0) }
        #expect(fullRefusals > 10, "\(fullRefusals) refusals of a full map")
    }
}
