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

    /// A sentence describing the difference.
    public var description: String {
        switch self {
        case .version(let stored, let given): "schema version: stored \(stored), given \(given)"
        case .added(let name, let type): "field \"\(name)\" (\(type)) added"
        case .removed(let name, let type): "field \"\(name)\" (\(type)) removed"
        case .retyped(let name, let stored, let given): "field \"\(name)\" retyped from \(stored) to \(given)"
        case .resized(let name, let stored, let given): "field \"\(name)\" resized from \(stored) to \(given)"
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
        let storedByName = Dictionary(fields.map { ($0.name, $0.type) }, uniquingKeysWith: { first, _ in first })
        let givenByName = Dictionary(given.fields.map { ($0.name, $0.type) }, uniquingKeysWith: { first, _ in first })
        for field in given.fields {
            guard let storedType = storedByName[field.name] else {
                result.append(.added(name: field.name, type: field.type))
                continue
            }
            if storedType == field.type { continue }
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
