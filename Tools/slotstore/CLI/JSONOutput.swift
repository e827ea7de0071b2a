import Foundation
import SlotStore

/// JSON output shared by every `--json` flag: pretty, keys sorted, so the
/// shape is stable and diffs are readable.
enum JSONOutput {
    static func encode(_ value: some Encodable) throws -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        return tidyEmptyContainers(String(decoding: try encoder.encode(value), as: UTF8.self))
    }

    /// Foundation prints an empty array as `[`, a blank line and `]` (and an
    /// empty object likewise): print `[]` and `{}`. Only outside strings,
    /// where a bracket followed by nothing but layout whitespace is empty.
    static func tidyEmptyContainers(_ json: String) -> String {
        var result = ""
        result.reserveCapacity(json.utf8.count)
        var inString = false
        var escaped = false
        var pending: (open: Character, text: String)?
        for character in json {
            if inString {
                result.append(character)
                if escaped { escaped = false } else if character == "\\" { escaped = true } else if character == "\"" { inString = false }
                continue
            }
            if let open = pending?.open {
                if character == "\n" || character == " " {
                    pending?.text.append(character)
                    continue
                }
                if (open == "[" && character == "]") || (open == "{" && character == "}") {
                    result.append(open)
                    result.append(character)
                    pending = nil
                    continue
                }
                result += pending?.text ?? ""
                pending = nil
            }
            if character == "[" || character == "{" {
                pending = (character, String(character))
            } else {
                result.append(character)
                if character == "\"" { inString = true }
            }
        }
        if let pending { result += pending.text }
        return result
    }

    static func print(_ value: some Encodable) throws {
        Output.out(try encode(value))
    }
}

/// Reads a whole file for the commands that take JSON input.
func readInputFile(_ path: String, what: String) throws -> Data {
    // A FileHandle also reads a pipe (`--schema <(…)`), which contents(atPath:) refuses.
    guard let data = FileManager.default.contents(atPath: path)
            ?? FileHandle(forReadingAtPath: path).flatMap({ try? $0.readToEnd() ?? Data() }) else {
        var isDirectory: ObjCBool = false
        let exists = FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory)
        throw InputError("\(path): cannot read the \(what): \(exists ? (isDirectory.boolValue ? "it is a directory" : "permission denied") : "no such file")")
    }
    return data
}
