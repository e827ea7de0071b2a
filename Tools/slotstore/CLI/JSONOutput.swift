import Foundation
import SlotStore

/// JSON output shared by every `--json` flag: pretty, keys sorted, so the
/// shape is stable and diffs are readable.
enum JSONOutput {
    static func encode(_ value: some Encodable) throws -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        return String(decoding: try encoder.encode(value), as: UTF8.self)
    }

    static func print(_ value: some Encodable) throws {
        Output.out(try encode(value))
    }
}

/// `NAME` or `NAME[INDEX]` on the command line.
struct FieldReference {
    let name: String
    let index: Int?

    init(_ text: String) throws(UsageError) {
        guard let open = text.firstIndex(of: "[") else {
            name = text
            index = nil
            return
        }
        guard text.hasSuffix("]"), let number = Int(text[text.index(after: open)..<text.index(before: text.endIndex)]), number >= 0 else {
            throw UsageError("expected FIELD or FIELD[INDEX] with a whole-number index, found \"\(text)\"")
        }
        name = String(text[..<open])
        index = number
    }

    var description: String { index.map { "\(name)[\($0)]" } ?? name }
}

/// Reads a whole file for the commands that take JSON input.
func readInputFile(_ path: String, what: String) throws -> Data {
    guard let data = FileManager.default.contents(atPath: path) else {
        var isDirectory: ObjCBool = false
        let exists = FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory)
        throw InputError("\(path): cannot read the \(what): \(exists ? (isDirectory.boolValue ? "it is a directory" : "permission denied") : "no such file")")
    }
    return data
}
