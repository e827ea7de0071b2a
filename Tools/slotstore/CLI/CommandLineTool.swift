import Foundation
import SlotStore

/// The `slotstore` dispatcher: finds the command in the table, runs it, and
/// turns errors into one line on stderr and an exit status.
enum CommandLineTool {
    static let version = "0.1.0"

    static let commands: [any Command.Type] = [
        DemoCommand.self,
        CreateCommand.self,
        InspectCommand.self,
        GetCommand.self,
        SetCommand.self,
        AddCommand.self,
        RemoveCommand.self,
        DumpCommand.self,
        MetricsCommand.self,
        WatchCommand.self,
        LoadCommand.self,
        CompactCommand.self,
        VerifyCommand.self,
        RepairCommand.self,
        CompletionCommand.self,
        TortureCommand.self,
        WorkerCommand.self,
        WaitWorkerCommand.self,
        PerProcessWorkerCommand.self,
        GaugesDemoCommand.self,
        PowerLossCommand.self,
    ]

    static func run(_ words: [String]) -> Int32 {
        guard let name = words.first else {
            Output.error(overview)
            return ExitStatus.usage
        }
        if name == "--help" || name == "-h" || name == "help" {
            Output.out(overview)
            return ExitStatus.success
        }
        if name == "--version" {
            Output.out("slotstore \(version)")
            return ExitStatus.success
        }
        guard let command = commands.first(where: { $0.name == name }) else {
            Output.error("slotstore: unknown command \"\(name)\"\n\n\(overview)")
            return ExitStatus.usage
        }
        var arguments = Arguments(Array(words.dropFirst()))
        Settings.allowOtherOwner = arguments.flag("--allow-other-owner")
        Settings.command = name
        if arguments.flag("--help") || arguments.flag("-h") {
            Output.out(command.usage)
            return ExitStatus.success
        }
        do {
            return try command.run(&arguments)
        } catch let error as UsageError {
            Output.error("slotstore \(name): \(error)\n\(command.usage)")
            return ExitStatus.usage
        } catch let error as InputError {
            Output.error("slotstore \(name): \(error)")
            return ExitStatus.usage
        } catch let error as SlotStoreError {
            Output.error("slotstore \(name): \(CLIMessages.describe(error))")
            return ExitStatus.usage
        } catch {
            Output.error("slotstore \(name): \(error)")
            return ExitStatus.usage
        }
    }

    static var overview: String {
        let visible = commands.filter { !$0.hidden }
        let width = (visible.map { $0.name.count }.max() ?? 0) + 2
        let rows = visible.map { command in
            "  " + command.name.padding(toLength: width, withPad: " ", startingAt: 0) + command.abstract
        }
        return """
        usage: slotstore <command> [options]

        Shared typed slots in a memory-mapped file, safe across processes and crashes.

        commands:
        \(rows.joined(separator: "\n"))

        Run `slotstore <command> --help` for a command's options. Every command that opens a
        store refuses one owned by another user unless given --allow-other-owner.
        """
    }
}

/// Options that apply to every command.
enum Settings {
    /// Set once from `--allow-other-owner` before the command runs.
    nonisolated(unsafe) static var allowOtherOwner = false
    /// The running command's name, for messages.
    nonisolated(unsafe) static var command = ""
    /// How long a command waits for the store's lock: `--lock-timeout`, read
    /// by each command that may take it, before it opens the store.
    nonisolated(unsafe) static var lockTimeout = OpenOptions().lockTimeout

    /// Open options for a command, with the global settings applied.
    static func options(_ mode: OpenOptions.Mode, fileMode: UInt32 = 0o600, cacheLineAligned: Bool = false) -> OpenOptions {
        var options = OpenOptions(mode: mode, fileMode: fileMode, lockTimeout: lockTimeout, cacheLineAligned: cacheLineAligned)
        options.allowOtherOwner = allowOtherOwner
        return options
    }

    /// `--lock-timeout` as the usages show it.
    static let lockTimeoutUsage = """
      --lock-timeout T     how long to wait for the store's lock, held by another process,
                           before giving up: 500ms, 2s, 1m (default 5s); a note on standard
                           error names the holder after half a second of waiting
    """
}
