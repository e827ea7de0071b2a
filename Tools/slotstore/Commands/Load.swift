import Foundation
import Glibc
import SlotStore

/// `slotstore load PATH DUMP.json`
enum LoadCommand: Command {
    static let name = "load"
    static let abstract = "write every value of a dump in one transaction (creating the store if needed)"
    static let usage = """
    usage: slotstore load PATH DUMP.json [--mode 0644] [--json]
      Into an existing store, every value is checked against the stored schema
      first, then all are written in one transaction: all or nothing. Fields the
      dump lacks keep their values. If PATH does not exist, a store is created
      from the dump's schema.
      --mode OCTAL   permissions of a created store (default 0600)
      --json         print {"path": …, "created": …, "fields": N}
    """

    struct Report: Encodable {
        let path: String
        let created: Bool
        let fields: Int
    }

    static func run(_ arguments: inout Arguments) throws -> Int32 {
        let path = try arguments.positional("store path")
        let dumpPath = try arguments.positional("dump file")
        let modeText = try arguments.option("--mode") ?? "0600"
        guard let mode = UInt32(modeText, radix: 8), mode <= 0o7777 else {
            throw UsageError("--mode takes octal permissions such as 0600 or 0644, found \"\(modeText)\"")
        }
        let json = arguments.flag("--json")
        try arguments.finish()
        let dump: DumpFile
        do {
            dump = try JSONDecoder().decode(DumpFile.self, from: readInputFile(dumpPath, what: "dump"))
        } catch let error as InputError {
            throw error
        } catch {
            throw InputError("\(dumpPath): not a slotstore dump: \(error.localizedDescription)")
        }
        guard dump.format == DumpFile.formatName else {
            throw InputError("\(dumpPath): expected format \"\(DumpFile.formatName)\", found \"\(dump.format)\"")
        }
        guard dump.formatVersion <= DumpFile.currentVersion else {
            throw InputError("\(dumpPath): dump format version \(dump.formatVersion) is newer than this tool's \(DumpFile.currentVersion); use a newer slotstore")
        }
        try dump.schema.validate()
        let created: Bool
        if FileManager.default.fileExists(atPath: path) {
            let store = try SlotStore(path: path, options: Settings.options(.open))
            defer { store.close() }
            try store.setValues(dump.values)
            created = false
        } else {
            try createLoaded(path: path, dump: dump, mode: mode)
            created = true
        }
        if json { try JSONOutput.print(Report(path: path, created: created, fields: dump.values.count)) }
        else { Output.out("loaded \(dump.values.count) fields into \(path)\(created ? " (created)" : "")") }
        return ExitStatus.success
    }

    /// Builds the new store completely before it appears at `path`.
    private static func createLoaded(path: String, dump: DumpFile, mode: UInt32) throws {
        try SlotStore.create(at: path, schema: dump.schema, values: dump.values, options: OpenOptions(fileMode: mode))
    }
}
