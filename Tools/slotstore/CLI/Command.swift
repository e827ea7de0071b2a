import SlotStore

/// One `slotstore` subcommand. Each lives in its own file under `Commands/`
/// and is listed in ``CommandLineTool/commands``.
protocol Command: Sendable {
    /// The word after `slotstore`.
    static var name: String { get }
    /// One line for the command list.
    static var abstract: String { get }
    /// The usage line and the options, shown by `--help`.
    static var usage: String { get }
    /// Hidden commands serve the demo and the tests, not operators.
    static var hidden: Bool { get }
    /// Runs the command and returns the exit status.
    static func run(_ arguments: inout Arguments) throws -> Int32
}

extension Command {
    static var hidden: Bool { false }
}

/// Exit statuses shared by every command.
enum ExitStatus {
    static let success: Int32 = 0
    /// A problem found (verify) or an action refused (repair).
    static let problem: Int32 = 1
    /// A usage error, or a file that is not a usable store.
    static let usage: Int32 = 2
}

/// A problem with an input file the command was given (a schema or dump
/// file that is missing or malformed): one line on stderr, exit status 2.
struct InputError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

/// A usage mistake: printed with the command's usage, exit status 2.
struct UsageError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}
