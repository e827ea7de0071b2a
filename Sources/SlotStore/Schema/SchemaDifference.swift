/// One way in which a schema differs from the one stored in a store.
public enum SchemaDifference: Sendable, Hashable, CustomStringConvertible {
    /// The schema versions differ.
    case version(stored: Int, given: Int)
    /// The given schema has a field the store lacks.
    case added(name: String, type: FieldType)
    /// The store has a field the given schema lacks.
    case removed(name: String, type: FieldType)
    /// A field changed its kind of type (for example `int64` to `double`).
    case retyped(name: String, stored: FieldType, given: FieldType)
    /// A field kept its kind but changed its count or capacity.
    case resized(name: String, stored: FieldType, given: FieldType)
    /// The same fields appear in a different order.
    case reordered(stored: [String], given: [String])
    /// A map's growth policy differs (nil: the map has a fixed capacity).
    case growthChanged(name: String, stored: MapGrowth?, given: MapGrowth?)
    /// A map's cache policy differs (nil: entries never expire nor are evicted).
    case cacheChanged(name: String, stored: MapCache?, given: MapCache?)
    /// A scalar's per-process aggregate differs (nil: a field every process writes in common).
    case perProcessChanged(name: String, stored: PerProcessAggregate?, given: PerProcessAggregate?)

    /// A sentence describing the difference.
    public var description: String {
        switch self {
        case .version(let stored, let given): "schema version: stored \(stored), given \(given)"
        case .added(let name, let type): "field \"\(name)\" (\(type)) added"
        case .removed(let name, let type): "field \"\(name)\" (\(type)) removed"
        case .retyped(let name, let stored, let given): "field \"\(name)\" retyped from \(stored) to \(given)"
        case .resized(let name, let stored, let given): "field \"\(name)\" resized from \(stored) to \(given)"
        case .growthChanged(let name, let stored, let given):
            "field \"\(name)\" growth changed from \(stored.map { "\"\($0)\"" } ?? "none (fixed capacity)") to \(given.map { "\"\($0)\"" } ?? "none (fixed capacity)")"
        case .cacheChanged(let name, let stored, let given):
            "field \"\(name)\" cache policy changed from \(stored.map { "\"\($0)\"" } ?? "none") to \(given.map { "\"\($0)\"" } ?? "none")"
        case .perProcessChanged(let name, let stored, let given):
            "field \"\(name)\" per-process aggregate changed from \(stored.map { "\"\($0.rawValue)\"" } ?? "none (shared)") to \(given.map { "\"\($0.rawValue)\"" } ?? "none (shared)")"
        case .reordered(let stored, let given):
            "fields reordered: stored \(stored.joined(separator: ", ")), given \(given.joined(separator: ", "))"
        }
    }
}

extension Schema {
    /// The differences between a stored schema (`self`) and `given`, empty when they match.
    public func differences(to given: Schema) -> [SchemaDifference] {
        var result: [SchemaDifference] = []
        if version != given.version { result.append(.version(stored: version, given: given.version)) }
        let storedByName = Dictionary(fields.map { ($0.name, $0) }, uniquingKeysWith: { first, _ in first })
        let givenByName = Dictionary(given.fields.map { ($0.name, $0.type) }, uniquingKeysWith: { first, _ in first })
        for field in given.fields {
            guard let stored = storedByName[field.name] else {
                result.append(.added(name: field.name, type: field.type))
                continue
            }
            let storedType = stored.type
            if stored.growth != field.growth {
                result.append(.growthChanged(name: field.name, stored: stored.growth, given: field.growth))
                continue
            }
            if stored.cache != field.cache {
                result.append(.cacheChanged(name: field.name, stored: stored.cache, given: field.cache))
                continue
            }
            if stored.perProcess != field.perProcess {
                result.append(.perProcessChanged(name: field.name, stored: stored.perProcess, given: field.perProcess))
                continue
            }
            if storedType == field.type || Schema.hasGrown(stored, from: field) { continue }
            if storedType.kindName == field.type.kindName {
                result.append(.resized(name: field.name, stored: storedType, given: field.type))
            } else {
                result.append(.retyped(name: field.name, stored: storedType, given: field.type))
            }
        }
        for field in fields where givenByName[field.name] == nil {
            result.append(.removed(name: field.name, type: field.type))
        }
        if result.isEmpty && fields.map(\.name) != given.fields.map(\.name) {
            result.append(.reordered(stored: fields.map(\.name), given: given.fields.map(\.name)))
        }
        return result
    }
}

extension Schema {
    /// Whether `stored` is `given`'s map after growing: the same keys and
    /// values and growth policy, at a capacity from `given`'s (the one a
    /// program declares and creates the store with) up to the policy's
    /// maximum. A program keeps opening a store whose maps grew with the
    /// schema it created it with.
    static func hasGrown(_ stored: Field, from given: Field) -> Bool {
        guard let growth = stored.growth, growth == given.growth,
              case .map(let storedKey, let storedValue, let storedCapacity) = stored.type,
              case .map(let givenKey, let givenValue, let givenCapacity) = given.type else { return false }
        return storedKey == givenKey && storedValue == givenValue
            && storedCapacity >= givenCapacity && storedCapacity <= growth.maxCapacity
    }
}
