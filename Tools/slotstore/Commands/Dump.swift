import Foundation
import SlotStore

/// The dump file: a versioned header, the schema, and every value.
struct DumpFile: Codable {
    static let formatName = "slotstore-dump"
    static let currentVersion = 1

    var format: String
    var formatVersion: Int
    var schema: Schema
    var values: [String: FieldValue]
}

/// `slotstore dump PATH`
enum DumpCommand: Command {
    static let name = "dump"
    static let abstract = "print the schema and every value as JSON (one consistent snapshot)"
    static let usage = """
    usage: slotstore dump PATH [--output FILE]
      Prints {"format":"slotstore-dump","formatVersion":1,"schema":…,"values":{…}}.
      All values are read under the store's lock, as one snapshot. Bytes are
      {"base64": …}; nan, inf, -inf and -0 are strings.
      --output FILE   write the dump to FILE instead of standard output
    """

    static func run(_ arguments: inout Arguments) throws -> Int32 {
        let path = try arguments.positional("store path")
        let output = try arguments.option("--output")
        _ = arguments.flag("--json")  // dump always prints JSON
        try arguments.finish()
        let store = try SlotStore(path: path, options: Settings.options(.open))
        defer { store.close() }
        let dump = DumpFile(format: DumpFile.formatName, formatVersion: DumpFile.currentVersion,
                            schema: store.schema, values: try store.values())
        let text = try JSONOutput.encode(dump)
        if let output {
            guard FileManager.default.createFile(atPath: output, contents: Data((text + "\n").utf8)) else {
                throw InputError("\(output): cannot write the dump there")
            }
        } else {
            Output.out(text)
        }
        return ExitStatus.success
    }
}
