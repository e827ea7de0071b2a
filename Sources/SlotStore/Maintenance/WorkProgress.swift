/// How far a long whole-store operation (compaction, load, dump, verify,
/// inspect) has come, reported to a caller that shows progress.
///
/// An operation reports each step when it starts (`completed == 0`), then now
/// and then as it goes (about every 64 Ki units, never per entry), and once
/// more when the step is done (`completed == total`). A display decides what
/// to show: the `slotstore` tool draws a bar on a terminal, prints one line
/// per step otherwise, and nothing for operations that finish within a second.
public struct WorkProgress: Sendable, Equatable {
    /// What is being done, in the tool's words: "copying sessions", "checking map requests".
    public var step: String
    /// Units of this step done so far (entries for maps, bytes otherwise).
    public var completed: Int
    /// Units in this step; 0 when not known in advance.
    public var total: Int

    /// A progress report.
    public init(step: String, completed: Int, total: Int) {
        self.step = step
        self.completed = completed
        self.total = total
    }
}
