import Foundation
import Glibc
import Testing
@testable import SlotStore

/// The `slotstore` tool's manners: waiting for the lock out loud, messages in
/// its own terms, plurals, help that lists every flag, a dry run that says
/// when it would be refused, inspect's attached processes, tidy JSON, and
/// shell completion. Real processes against real files.
@Suite("slotstore manners", .timeLimit(.minutes(5)))
struct CLIMannersTests {
    let directory = TemporaryDirectory()

    static let schema = Schema(version: 1, fields: [
        .int64("count"), .string("motd", capacity: 32), .array("slots", of: .int64, count: 3),
        .map("sessions", key: .string(capacity: 8), value: .scalar(.int64), capacity: 4),
    ])

    func slotstore(_ arguments: String...) throws -> ProcessResult { try Tool.run(arguments) }

    func store(_ name: String, schema: Schema = CLIMannersTests.schema) throws -> String {
        let path = directory.file(name)
        let schemaPath = directory.file(name + ".schema.json")
        writeFileBytes(schemaPath, schema.jsonBytes())
        let made = try slotstore("create", path, "--schema", schemaPath)
        #expect(made.succeeded, "\(made)")
        return path
    }

    /// Swift API spellings that a CLI user can't act on.
    static let apiTerms = [".createOrOpen", ".create ", "open mode", "OpenOptions", "allowOtherOwner", "SlotStore object",
                           "a handle", "inside a transaction", "sync()", "lockTimeout", "MigrationOptions"]

    func expectCLITerms(_ text: String, sourceLocation: SourceLocation = #_sourceLocation) {
        for term in Self.apiTerms {
            #expect(!text.contains(term), "API term \"\(term)\" in: \(text)", sourceLocation: sourceLocation)
        }
    }

    // MARK: demo

    @Test("the demo's compaction overlaps the workers' writes by construction, and its closing lines report what it measured")
    func demoOverlapsItsCompaction() throws {
        let result = try slotstore("demo", "--workers", "2", "--increments", "300", "--dir", directory.path)
        #expect(result.succeeded, "\(result)")
        let lines = result.stdout.split(separator: "\n").map(String.init)
        // Paused at 100 of 300 (after the victim's 150), then 50 lock-free increments each before the rename.
        #expect(lines.contains { $0.hasPrefix("  while it held the lock (this process, PID ") && $0.hasSuffix("), 2 workers made 100 increments (requests 350 → 450)") },
                "\(result.stdout)")
        #expect(lines.contains("  compaction generation 2, motd holds up to 192 bytes; 100 increments landed during it, from 2 of 2 workers; the workers finished in generation 2, 2"),
                "\(result.stdout)")
        #expect(lines.last == "✓ no update lost, nothing torn, no stuck lock, none lost across the compaction")
    }

    // MARK: --lock-timeout

    @Test("a set behind a held lock notes the holder on stderr after half a second, then gives up at --lock-timeout, changing nothing")
    func lockTimeoutNote() throws {
        let path = try store("held.slots")
        let holder = try Tool.Holder(["_worker", "hold-lock", path])
        defer { holder.kill() }
        let started = monotonicNow()
        let result = try slotstore("set", path, "motd", "hello", "--lock-timeout", "1500ms")
        let seconds = Double(monotonicNow() - started) / 1e9
        #expect(result.status == 2 && !result.signaled, "\(result)")
        let lines = result.stderr.split(separator: "\n").map(String.init)
        #expect(lines.count == 2, "a note, then the error: \(result.stderr)")
        #expect(lines.first?.hasPrefix("slotstore set: waiting for the lock held by PID \(holder.pid) (") == true, "\(lines)")
        #expect(lines.first?.contains("which is running; gives up after 1.5 s in all (--lock-timeout)") == true, "\(lines)")
        #expect(lines.last?.contains("the store's lock was not acquired within 1.5 s") == true, "\(lines)")
        #expect(lines.last?.contains("held by PID \(holder.pid)") == true && lines.last?.contains("--lock-timeout") == true)
        expectCLITerms(result.stderr)
        // The timeout is the one given, not the 5 s default.
        #expect(seconds >= 1.4 && seconds < 4.5, "took \(seconds) s")
        holder.kill()
        #expect(try slotstore("get", path, "motd").stdout == "\n", "the value is unchanged")
    }

    @Test("a get of a string left mid-write by a live holder notes it and gives up at --lock-timeout (the issue's silent 5 s)")
    func lockTimeoutOnMidWriteRead() throws {
        let path = try store("midwrite.slots")
        let holder = try Tool.Holder(["_worker", "set-string", path, "motd", "new value"],
                                     environment: ["SLOTSTORE_FAULT": "midWrite:hold"])
        defer { holder.kill() }
        let result = try slotstore("get", path, "motd", "--lock-timeout", "1s")
        #expect(result.status == 2, "\(result)")
        #expect(result.stderr.contains("slotstore get: waiting for the lock held by PID \(holder.pid)"), "\(result.stderr)")
        // The reader waits out the write, then for the writer's lock: either way it names the holder and the timeout.
        #expect(result.stderr.contains("no consistent read of field \"motd\" within 1 s")
                || result.stderr.contains("the store's lock was not acquired within 1 s; it is held by PID \(holder.pid)"), "\(result.stderr)")
        #expect(result.stderr.contains("--lock-timeout"))
        expectCLITerms(result.stderr)
        // Numbers are read lock-free: no wait, no note.
        let number = try slotstore("get", path, "count", "--lock-timeout", "1s")
        #expect(number.succeeded && number.stdout == "0\n" && number.stderr.isEmpty, "\(number)")
    }

    @Test("compact, dump, add and load take --lock-timeout too; a free lock prints no note; a bad duration is a usage error")
    func lockTimeoutEverywhere() throws {
        let path = try store("many.slots")
        let dump = directory.file("many.json")
        #expect(try slotstore("dump", path, "--output", dump).succeeded)
        let quick = try slotstore("set", path, "motd", "hi", "--lock-timeout", "2s")
        #expect(quick.succeeded && quick.stderr.isEmpty, "\(quick)")
        let holder = try Tool.Holder(["_worker", "hold-lock", path])
        defer { holder.kill() }
        for arguments in [["compact", path, "--capacity", "motd=64"], ["dump", path], ["add", path, "count", "1"],
                          ["load", path, dump], ["repair", path]] {
            let result = try Tool.run(arguments + ["--lock-timeout", "600ms"])
            if arguments[0] == "repair" {
                // repair never waits for a running holder: it refuses at once, naming it.
                #expect(result.status == 1 && result.stderr.contains("PID \(holder.pid) is running"), "\(result)")
                continue
            }
            #expect(result.status == 2, "\(arguments[0]): \(result)")
            #expect(result.stderr.contains("slotstore \(arguments[0]): waiting for the lock held by PID \(holder.pid)"), "\(arguments[0]): \(result.stderr)")
            #expect(result.stderr.contains("not acquired within 600 ms"), "\(arguments[0]): \(result.stderr)")
        }
        for bad in ["soon", "-1s", "5h"] {
            let result = try slotstore("get", path, "count", "--lock-timeout", bad)
            #expect(result.status == 2 && result.stderr.contains("--lock-timeout takes a duration such as 500ms, 2s or 1m"), "\(bad): \(result)")
        }
        for good in ["500ms", "2", "1.5s", "1m", "0"] {
            // Past the parsing, to the missing store.
            let result = try slotstore("get", directory.file("missing.slots"), "count", "--lock-timeout", good)
            #expect(result.status == 2 && result.stderr.contains("no store exists here"), "\(good): \(result)")
        }
    }

    // MARK: Messages, plurals, JSON

    @Test("errors a CLI user meets name the CLI's commands and flags, not the Swift API")
    func messagesInCLITerms() throws {
        let missing = try slotstore("get", directory.file("none.slots"), "count")
        #expect(missing.status == 2 && missing.stderr.contains("slotstore create"), "\(missing)")
        let path = try store("terms.slots")
        let again = try slotstore("create", path, "--schema", directory.file("terms.slots.schema.json"))
        #expect(again.status == 2 && again.stderr.contains("already exists"), "\(again)")
        let unknown = try slotstore("get", path, "nope")
        #expect(unknown.status == 2 && unknown.stderr.contains("slotstore inspect"), "\(unknown)")
        let full = try slotstore("set", path, "sessions",
                                 #"[{"key":"a","value":1},{"key":"b","value":2},{"key":"c","value":3},{"key":"d","value":4},{"key":"e","value":5}]"#)
        #expect(full.status == 2, "\(full)")
        var outputs = [missing, again, unknown, full].map(\.stderr)
        if getuid() == 0 {
            // As root: a store owned by another user, refused without --allow-other-owner.
            chown(path, 4321, 4321)
            let foreign = try slotstore("get", path, "count")
            #expect(foreign.status == 2 && foreign.stderr.contains("--allow-other-owner"), "\(foreign)")
            #expect(try slotstore("get", path, "count", "--allow-other-owner").succeeded)
            outputs.append(foreign.stderr)
            chown(path, 0, 0)
        }
        let holder = try Tool.Holder(["_worker", "hold-lock", path])
        defer { holder.kill() }
        let inUse = try slotstore("compact", path, "--schema", schemaFile(dropping: "motd"), "--allow-dropping", "--lock-timeout", "100ms")
        #expect(inUse.status == 2 && inUse.stderr.contains("other processes have the store open"), "\(inUse)")
        outputs.append(inUse.stderr)
        for text in outputs { expectCLITerms(text) }
    }

    @Test("counts take their noun's number: 1 field, 1 record, 1 entry; 2 fields")
    func plurals() throws {
        let one = Schema(version: 1, fields: [.string("motd", capacity: 16)])
        let path = directory.file("one.slots")
        writeFileBytes(directory.file("one.json"), one.jsonBytes())
        let created = try slotstore("create", path, "--schema", directory.file("one.json"))
        #expect(created.stdout == "created \(path): 1 field, schema version 1, mode 600\n", "\(created)")
        // A writer killed mid-write leaves one journal record.
        let killed = try Tool.run(["_worker", "set-string", path, "motd", "interrupted"], environment: ["SLOTSTORE_FAULT": "midWrite:kill"])
        #expect(killed.killedBySIGKILL)
        let inspected = try slotstore("inspect", path)
        #expect(inspected.stdout.contains("1 field\n"), "\(inspected.stdout)")
        #expect(inspected.stdout.contains("dirty: 1 record, "), "\(inspected.stdout)")
        let verified = try slotstore("verify", path)
        #expect(verified.stdout.contains("holds 1 record ("), "\(verified.stdout)")
        let planned = try slotstore("repair", path, "--dry-run")
        #expect(planned.stdout.contains("(1 journal record)") || planned.stdout.contains("(1 record, "), "\(planned.stdout)")
        let dump = directory.file("one-dump.json")
        #expect(try slotstore("dump", path, "--output", dump).succeeded)
        let loaded = try slotstore("load", directory.file("loaded.slots"), dump)
        #expect(loaded.stdout == "loaded 1 field into \(directory.file("loaded.slots")) (created)\n", "\(loaded)")
        let two = try store("two.slots")
        #expect(try slotstore("inspect", two).stdout.contains("4 fields\n"))
        #expect(try slotstore("set", two, "sessions", #"[{"key":"a","value":1}]"#).succeeded)
        #expect(try slotstore("inspect", two).stdout.contains("1 entry, 0 tombstones, capacity 4"))
        for output in [created.stdout, inspected.stdout, verified.stdout, planned.stdout, loaded.stdout] {
            #expect(!output.contains("(s)"), "\(output)")
        }
    }

    @Test("no message in the tool or the library spells a plural as (s)")
    func noParenthesizedPlurals() throws {
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        var offenders: [String] = []
        for folder in ["Sources/SlotStore", "Tools/slotstore"] {
            let base = root.appendingPathComponent(folder).path
            for file in FileManager.default.enumerator(atPath: base)?.compactMap({ $0 as? String }) ?? []
            where file.hasSuffix(".swift") && !file.hasSuffix("Torture.swift") {
                let text = try String(contentsOfFile: base + "/" + file, encoding: .utf8)
                for (number, line) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated()
                where line.contains("(s)") && line.contains("\"") && !line.trimmingCharacters(in: .whitespaces).hasPrefix("//") {
                    offenders.append("\(folder)/\(file):\(number + 1): \(line.trimmingCharacters(in: .whitespaces))")
                }
            }
        }
        #expect(offenders.isEmpty, "\(offenders.joined(separator: "\n"))")
    }

    @Test("empty JSON arrays print as [], and a string holding \"[ ]\" keeps its spaces")
    func emptyJSONArrays() throws {
        let path = try store("json.slots")
        let verified = try slotstore("verify", path, "--json")
        #expect(verified.stdout.contains("\"findings\" : [],"), "\(verified.stdout)")
        #expect(verified.stdout.contains("\"notes\" : [],"), "\(verified.stdout)")
        let inspected = try slotstore("inspect", path, "--json")
        #expect(inspected.stdout.contains("\"attached\" : [],"), "\(inspected.stdout)")
        let empty = try slotstore("get", path, "sessions", "--json")
        #expect(empty.stdout == "{\n  \"field\" : \"sessions\",\n  \"value\" : []\n}\n", "\(empty.stdout)")
        for output in [verified.stdout, inspected.stdout, empty.stdout] {
            #expect(!output.contains("[\n\n"), "\(output)")
            _ = try JSONSerialization.jsonObject(with: Data(output.utf8))
        }
        let bracketed = try slotstore("set", path, "motd", "[ ] {\n\n}", "--json")
        #expect(bracketed.stdout.contains(#""value" : "[ ] {\n\n}""#), "\(bracketed.stdout)")
    }

    // MARK: Help

    @Test("every command's --help lists every flag its code reads; get and set explain maps and FIELD[INDEX]; compact each option")
    func helpListsEveryFlag() throws {
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        let overview = try slotstore("--help").stdout
        let commands = overview.split(separator: "\n").compactMap { line -> String? in
            guard line.hasPrefix("  "), let word = line.split(separator: " ").first, word.allSatisfy(\.isLetter) else { return nil }
            return String(word)
        }
        #expect(commands.count >= 13, "\(commands)")
        let read = try NSRegularExpression(pattern: #"(?:flag|option|integerOption|durationOption)\("(--[a-z-]+)""#)
        var checked = 0
        for command in commands {
            let file = root.appendingPathComponent("Tools/slotstore/Commands/\(command.prefix(1).uppercased() + command.dropFirst()).swift").path
            guard let source = try? String(contentsOfFile: file, encoding: .utf8) else {
                Issue.record("no source file \(file) for command \(command)")
                continue
            }
            let help = try slotstore(command, "--help")
            #expect(help.succeeded && help.stdout.hasPrefix("usage: slotstore \(command)"), "\(command): \(help)")
            let flags = Set(read.matches(in: source, range: NSRange(source.startIndex..., in: source)).compactMap {
                Range($0.range(at: 1), in: source).map { String(source[$0]) }
            })
            // The torture's --worker is how it starts its own worker processes, not an option for people.
            for flag in flags.subtracting(command == "torture" ? ["--worker"] : []).sorted() {
                // Listed in the synopsis and described on a line of its own.
                #expect(help.stdout.contains(flag), "\(command) --help does not mention \(flag)")
                #expect(help.stdout.split(separator: "\n").contains { $0.trimmingCharacters(in: .whitespaces).hasPrefix(flag) },
                        "\(command) --help does not describe \(flag) on a line of its own")
                checked += 1
            }
        }
        #expect(checked >= 40, "only \(checked) flags found: the pattern no longer matches how commands read flags")
        let get = try slotstore("get", "--help").stdout, set = try slotstore("set", "--help").stdout
        for help in [get, set] {
            #expect(help.contains("FIELD[INDEX]") && help.contains("maps") && help.contains("--lock-timeout"), "\(help)")
        }
        #expect(set.contains(#"[{"key":"a","value":1}"#), "\(set)")
    }

    // MARK: compact --dry-run

    func schemaFile(dropping name: String) throws -> String {
        let path = directory.file("without-\(name).json")
        writeFileBytes(path, Schema(version: 2, fields: Self.schema.fields.filter { $0.name != name }).jsonBytes())
        return path
    }

    @Test("compact --dry-run says a drop would be refused while another process has the store open, and changes nothing")
    func dryRunSaysRefused() throws {
        let path = try store("dry.slots")
        let dropping = try schemaFile(dropping: "motd")
        let quiet = try slotstore("compact", path, "--schema", dropping, "--allow-dropping", "--dry-run")
        #expect(quiet.succeeded && !quiet.stdout.contains("refused"), "\(quiet)")
        let holder = try Tool.Holder(["_worker", "hold-lock", path])
        defer { holder.kill() }
        var before = fileBytes(path)
        let planned = try slotstore("compact", path, "--schema", dropping, "--allow-dropping", "--dry-run")
        #expect(planned.succeeded, "\(planned)")
        #expect(planned.stdout.contains("  refused  other processes have the store open, so the compaction in place that drops, retypes or shrinks \"motd\""),
                "\(planned.stdout)")
        let json = try JSONSerialization.jsonObject(with: Data(try slotstore("compact", path, "--schema", dropping, "--allow-dropping",
                                                                                "--dry-run", "--json").stdout.utf8)) as? [String: Any]
        #expect((json?["refusedWhileInUse"] as? String)?.contains("\"motd\"") == true, "\(String(describing: json))")
        #expect(fileBytes(path) == before, "the dry runs changed the file")
        // What the dry run announced is what the real run does (its open leaves bookkeeping in the lock region).
        let real = try slotstore("compact", path, "--schema", dropping, "--allow-dropping", "--lock-timeout", "200ms")
        #expect(real.status == 2 && real.stderr.contains("drops, retypes or shrinks \"motd\""), "\(real)")
        before = fileBytes(path)
        // Growing a field is allowed while others use the store: no refusal announced.
        let growing = try slotstore("compact", path, "--capacity", "motd=64", "--dry-run")
        #expect(growing.succeeded && !growing.stdout.contains("refused"), "\(growing)")
        // With --output the source stays in service: nothing to refuse.
        let elsewhere = try slotstore("compact", path, "--schema", dropping, "--allow-dropping", "--dry-run", "--output", directory.file("out.slots"))
        #expect(elsewhere.succeeded && !elsewhere.stdout.contains("refused"), "\(elsewhere)")
        #expect(fileBytes(path) == before, "the dry runs changed the file")
    }

    // MARK: inspect

    @Test("inspect lists the processes attached, by PID, in text and JSON; a killed one is gone")
    func inspectListsAttached() throws {
        let path = try store("attached.slots", schema: .sample)
        // fork-inherit writes under the lock, so it goes first; its child shares its open, not a slot of its own.
        let second = try Tool.Holder(["_worker", "fork-inherit", path], marker: "parent-ready")
        let first = try Tool.Holder(["_worker", "hold-lock", path])
        defer { first.kill(); second.kill() }
        let text = try slotstore("inspect", path)
        let pids = [first.pid, second.pid].sorted()
        #expect(text.stdout.contains("  attached  2 processes: PID \(pids[0])"), "\(text.stdout)")
        #expect(text.stdout.contains("PID \(pids[1])"), "\(text.stdout)")
        let report = try JSONSerialization.jsonObject(with: Data(try slotstore("inspect", path, "--json").stdout.utf8)) as? [String: Any]
        let attached = (report?["attached"] as? [[String: Any]]) ?? []
        #expect(attached.compactMap { $0["pid"] as? Int }.sorted() == pids.map(Int.init), "\(attached)")
        #expect(attached.allSatisfy { ($0["inAnotherPIDNamespace"] as? Bool) == false && (($0["slots"] as? Int) ?? 0) >= 1 })
        first.kill()
        let after = try slotstore("inspect", path)
        // It added to "requests" lock-free, so it holds a thread slot besides its attachment slot.
        #expect(after.stdout.contains("  attached  1 process: PID \(second.pid) (2 slots)\n"), "\(after.stdout)")
    }

    // MARK: completion

    @Test("completion bash passes bash -n and completes commands, flags and the store's field names")
    func bashCompletion() throws {
        let script = try slotstore("completion", "bash")
        #expect(script.succeeded, "\(script)")
        let file = directory.file("slotstore.bash")
        writeFileBytes(file, Array(script.stdout.utf8))
        let syntax = try shell("/bin/bash", ["-n", file])
        #expect(syntax.status == 0, "\(syntax.stderr)")
        let path = try store("complete.slots")
        let probe = """
        source \(file)
        t() { COMP_WORDS=("$@"); COMP_CWORD=$((${#COMP_WORDS[@]} - 1)); COMPREPLY=(); _slotstore; echo "${COMPREPLY[*]}"; }
        t \(Tool.executable) ""
        t \(Tool.executable) co
        t \(Tool.executable) compact x --allow-
        t \(Tool.executable) get \(path) ""
        t \(Tool.executable) get \(path) --lock-timeout 1s mo
        t \(Tool.executable) completion ""
        """
        let result = try shell("/bin/bash", ["-c", probe])
        let lines = result.stdout.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        #expect(result.status == 0 && lines.count >= 6, "\(result.stdout) \(result.stderr)")
        guard lines.count >= 6 else { return }
        let all = Set(lines[0].split(separator: " ").map(String.init))
        #expect(all.isSuperset(of: ["demo", "create", "inspect", "get", "set", "add", "dump", "metrics", "load", "compact",
                                    "verify", "repair", "completion", "--help", "--version"]), "\(lines[0])")
        #expect(!all.contains("_worker"))
        #expect(lines[1] == "compact completion")
        #expect(lines[2] == "--allow-narrowing --allow-retyping --allow-dropping --allow-other-owner")
        #expect(lines[3] == "count motd slots sessions")
        #expect(lines[4] == "motd")
        #expect(lines[5] == "bash zsh")
    }

    @Test("completion zsh passes zsh -n and its functions list the commands and the store's field names")
    func zshCompletion() throws {
        guard FileManager.default.isExecutableFile(atPath: "/usr/bin/zsh") else {
            // Not installed here: the bash test covers the shared parts.
            return
        }
        let script = try slotstore("completion", "zsh")
        let file = directory.file("_slotstore")
        writeFileBytes(file, Array(script.stdout.utf8))
        #expect(try shell("/usr/bin/zsh", ["-n", file]).status == 0)
        let path = try store("zcomplete.slots")
        // compinit's helpers stubbed: _describe prints the candidates it was given.
        let probe = """
        compdef() { : }
        _describe() { print -r -- "${(j: :)${(@P)4}}" }
        _arguments() { print -r -- "arguments $*" }
        source \(file)
        words=(\(Tool.executable) ''); CURRENT=2; _slotstore
        words=(\(Tool.executable) get \(path) ''); CURRENT=4; _slotstore
        _slotstore_program=\(Tool.executable); words=(get \(path) ''); _slotstore_fields
        """
        let result = try shell("/usr/bin/zsh", ["-f", "-c", probe])
        let lines = result.stdout.split(separator: "\n").map(String.init)
        #expect(result.status == 0 && lines.count == 3, "\(result.stdout) \(result.stderr)")
        guard lines.count == 3 else { return }
        #expect(lines[0].hasPrefix("demo:") && lines[0].contains(" completion:print a bash or zsh completion script"), "\(lines[0])")
        #expect(lines[1].contains("--lock-timeout[") && lines[1].contains("2:field:_slotstore_fields"), "\(lines[1])")
        #expect(lines[2] == "count motd slots sessions")
    }

    func shell(_ executable: String, _ arguments: [String]) throws -> ProcessResult {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = arguments
        let out = Pipe(), err = Pipe()
        process.standardOutput = out
        process.standardError = err
        try process.run()
        let output = out.fileHandleForReading.readDataToEndOfFile()
        let errors = err.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return ProcessResult(status: process.terminationStatus, signaled: process.terminationReason == .uncaughtSignal,
                             stdout: String(decoding: output, as: UTF8.self), stderr: String(decoding: errors, as: UTF8.self))
    }
}

private func monotonicNow() -> UInt64 {
    var time = timespec()
    clock_gettime(CLOCK_MONOTONIC, &time)
    return UInt64(time.tv_sec) * 1_000_000_000 + UInt64(time.tv_nsec)
}
