import Foundation
import SlotStore

/// `slotstore create PATH --schema SCHEMA.json`
enum CreateCommand: Command {
    static let name = "create"
    static let abstract = "create a store from a schema file"
    static let usage = """
    usage: slotstore create PATH --schema SCHEMA.json [--mode 0644] [--cache-line-aligned] [--json]
      --schema FILE          the schema, e.g. {"version":1,"fields":[{"name":"requests","type":"int64"}]}
      --mode OCTAL           file permissions (default 0600)
      --cache-line-aligned   put every field on its own 64-byte cache line
      --json                 print the new store's inspection as JSON
    """

    static func run(_ arguments: inout Arguments) throws -> Int32 {
        let path = try arguments.positional("store path")
        guard let schemaPath = try arguments.option("--schema") else { throw UsageError("--schema SCHEMA.json is required") }
        let modeText = try arguments.option("--mode") ?? "0600"
        guard let mode = UInt32(modeText, radix: 8), mode <= 0o7777 else {
            throw UsageError("--mode takes octal permissions such as 0600 or 0644, found \"\(modeText)\"")
        }
        let aligned = arguments.flag("--cache-line-aligned")
        let json = arguments.flag("--json")
        try arguments.finish()
        let schema = try Schema(json: Array(readInputFile(schemaPath, what: "schema")), source: schemaPath)
        let store = try SlotStore(path: path, schema: schema,
                                  options: OpenOptions(mode: .create, fileMode: mode, cacheLineAligned: aligned))
        store.close()
        if json {
            try JSONOutput.print(SlotStore.inspect(at: path))
        } else {
            Output.out("created \(path): \(Plural.count(schema.fields.count, "field")), schema version \(schema.version), mode \(String(mode, radix: 8))")
        }
        return ExitStatus.success
    }
}
