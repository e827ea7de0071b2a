import Foundation

/// `slotstore completion bash|zsh`: a completion script made from the
/// command table and each command's usage, so it never falls behind them.
enum CompletionCommand: Command {
    static let name = "completion"
    static let abstract = "print a bash or zsh completion script"
    static let usage = """
    usage: slotstore completion bash|zsh
      Prints a script that completes slotstore's commands, their flags, file
      paths, and for get, set, add and remove the store's field names (by running
      `slotstore inspect --json` on the store being typed).
      bash: source <(slotstore completion bash), or save it as
            ~/.local/share/bash-completion/completions/slotstore
      zsh:  slotstore completion zsh > ~/.zsh/completions/_slotstore (a folder in
            your $fpath, before compinit runs), or source <(slotstore completion zsh)
    """

    static func run(_ arguments: inout Arguments) throws -> Int32 {
        let shell = try arguments.positional("shell (bash or zsh)")
        try arguments.finish()
        switch shell {
        case "bash": Output.out(bashScript)
        case "zsh": Output.out(zshScript)
        default: throw UsageError("expected bash or zsh, found \"\(shell)\"")
        }
        return ExitStatus.success
    }

    /// A command's flags as its usage lists them, with whether each takes a
    /// value (shown as `--flag VALUE`) and the first line of its description.
    struct Flag {
        let name: String
        let takesValue: Bool
        let summary: String
    }

    static var visibleCommands: [any Command.Type] { CommandLineTool.commands.filter { !$0.hidden } }

    /// Flags shared by every command: `--help`, and `--allow-other-owner` for those that open a store.
    static let commonFlags = [Flag(name: "--help", takesValue: false, summary: "show this command's options")]

    static func flags(of command: any Command.Type) -> [Flag] {
        var flags: [String: Flag] = [:]
        var order: [String] = []
        // Text in backquotes shows other commands (`slotstore inspect --json`): not this one's flags.
        let lines = command.usage.split(separator: "\n", omittingEmptySubsequences: false).map { line in
            line.split(separator: "`", omittingEmptySubsequences: false).enumerated()
                .map { $0.offset % 2 == 0 ? String($0.element) : "" }.joined()
        }
        for line in lines {
            var rest = Substring(line)
            while let start = rest.range(of: "--") {
                let tail = rest[start.lowerBound...]
                let name = String(tail.prefix { $0 == "-" || $0.isLetter || $0.isNumber })
                rest = tail.dropFirst(max(2, name.count))
                guard name.count > 2, name.dropFirst(2).first?.isLetter == true else { continue }
                let after = rest.first == " " || rest.first == "=" ? rest.dropFirst() : ""
                let takesValue = after.first.map { $0.isUppercase || $0.isNumber } ?? false
                // The description: the text after the flag and its value, on a line that starts with the flag.
                var summary = ""
                if line.trimmingCharacters(in: .whitespaces).hasPrefix(name) {
                    let words = after.split(separator: " ", maxSplits: 1, omittingEmptySubsequences: true)
                    let text = takesValue ? (words.count > 1 ? String(words[1]) : "") : String(after)
                    summary = text.trimmingCharacters(in: .whitespaces)
                }
                if let known = flags[name] {
                    flags[name] = Flag(name: name, takesValue: known.takesValue || takesValue,
                                       summary: known.summary.isEmpty ? summary : known.summary)
                } else {
                    flags[name] = Flag(name: name, takesValue: takesValue, summary: summary)
                    order.append(name)
                }
            }
        }
        let opensStores = command.name != "demo" && command.name != "completion"
        return order.compactMap { flags[$0] } + commonFlags
            + (opensStores ? [Flag(name: "--allow-other-owner", takesValue: false, summary: "open a store that belongs to another user")] : [])
    }

    /// Commands whose second positional is a field name.
    static let fieldCommands: Set<String> = ["get", "set", "add", "remove"]

    static var bashScript: String {
        let names = visibleCommands.map { $0.name }.joined(separator: " ")
        let cases = visibleCommands.map { command in
            let all = flags(of: command)
            return "        \(command.name)) flags=\"\(all.map(\.name).joined(separator: " "))\"; "
                + "valued=\"\(all.filter(\.takesValue).map(\.name).joined(separator: " "))\" ;;"
        }.joined(separator: "\n")
        return """
        # bash completion for slotstore (from `slotstore completion bash`)
        _slotstore_fields() {
            # The field names of the store at $1, from `slotstore inspect --json`.
            "$1" inspect "$2" --json --quiet 2>/dev/null \\
                | awk '/^  "fields" : \\[/ { on = 1; next } on && /^  []"]/ { exit }
                       on && /^      "name" : / { sub(/^      "name" : "/, ""); sub(/",?$/, ""); print }'
        }

        _slotstore() {
            local cur="${COMP_WORDS[COMP_CWORD]}" prev="${COMP_WORDS[COMP_CWORD-1]}"
            local commands="\(names)"
            if [[ $COMP_CWORD -eq 1 ]]; then
                COMPREPLY=($(compgen -W "$commands --help --version" -- "$cur"))
                return
            fi
            local command="${COMP_WORDS[1]}" flags="" valued=""
            case "$command" in
        \(cases)
                *) return ;;
            esac
            local flag
            for flag in $valued; do
                if [[ "$prev" == "$flag" ]]; then
                    case "$flag" in
                        --schema|--output|--dir) COMPREPLY=($(compgen -f -- "$cur")) ;;
                        *) COMPREPLY=() ;;
                    esac
                    return
                fi
            done
            if [[ "$cur" == -* ]]; then
                COMPREPLY=($(compgen -W "$flags" -- "$cur"))
                return
            fi
            # Count the positionals before the word being completed.
            local index=2 positionals=0 store=""
            while [[ $index -lt $COMP_CWORD ]]; do
                local word="${COMP_WORDS[index]}"
                if [[ "$word" == -* ]]; then
                    [[ " $valued " == *" $word "* ]] && index=$((index + 1))
                else
                    [[ $positionals -eq 0 ]] && store="$word"
                    positionals=$((positionals + 1))
                fi
                index=$((index + 1))
            done
            case "$command" in
                completion) COMPREPLY=($(compgen -W "bash zsh" -- "$cur")) ;;
                demo) COMPREPLY=() ;;
                \(fieldCommands.sorted().joined(separator: "|")))
                    if [[ $positionals -eq 1 ]]; then
                        COMPREPLY=($(compgen -W "$(_slotstore_fields "${COMP_WORDS[0]}" "$store")" -- "$cur"))
                    elif [[ $positionals -eq 0 ]]; then
                        COMPREPLY=($(compgen -f -- "$cur"))
                    fi ;;
                *) COMPREPLY=($(compgen -f -- "$cur")) ;;
            esac
        }

        complete -o filenames -F _slotstore slotstore
        """
    }

    static var zshScript: String {
        func quoted(_ text: String) -> String { "'" + text.replacingOccurrences(of: "'", with: "'\\''") + "'" }
        func escaped(_ text: String) -> String {
            text.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "[", with: "\\[")
                .replacingOccurrences(of: "]", with: "\\]").replacingOccurrences(of: ":", with: "\\:")
        }
        let described = visibleCommands.map { "        " + quoted("\($0.name):" + escaped($0.abstract)) }.joined(separator: "\n")
        let cases = visibleCommands.map { command in
            let specs = flags(of: command).map { flag in
                let action = flag.takesValue
                    ? ":" + escaped(flag.name.dropFirst(2).replacingOccurrences(of: "-", with: " ")) + ":"
                        + (["--schema", "--output", "--dir"].contains(flag.name) ? "_files" : " ")
                    : ""
                return quoted("\(flag.name)[\(escaped(flag.summary))]\(action)")
            }
            let positionals: [String]
            switch command.name {
            case "completion": positionals = [quoted("1:shell:(bash zsh)")]
            case "demo": positionals = []
            case let name where fieldCommands.contains(name):
                positionals = [quoted("1:store:_files"), quoted("2:field:_slotstore_fields"), quoted("*:value: ")]
            default: positionals = [quoted("*:file:_files")]
            }
            return "        \(command.name)) _arguments -s \\\n            " + (specs + positionals).joined(separator: " \\\n            ") + " ;;"
        }.joined(separator: "\n")
        return """
        #compdef slotstore
        # zsh completion for slotstore (from `slotstore completion zsh`)

        _slotstore_fields() {
            # The field names of the store named before, from `slotstore inspect --json`.
            local store=${words[2]}
            local -a fields
            fields=(${(f)"$(${_slotstore_program:-slotstore} inspect "$store" --json --quiet 2>/dev/null \\
                | awk '/^  "fields" : \\[/ { on = 1; next } on && /^  [\\]"]/ { exit }
                       on && /^      "name" : / { sub(/^      "name" : "/, ""); sub(/",?$/, ""); print }')"})
            _describe -t fields 'field' fields
        }

        _slotstore() {
            local -a commands
            commands=(
        \(described)
            )
            if (( CURRENT == 2 )); then
                _describe -t commands 'slotstore command' commands
                return
            fi
            local command=${words[2]} _slotstore_program=${words[1]}
            shift words
            (( CURRENT-- ))
            case $command in
        \(cases)
            esac
        }

        if [[ $zsh_eval_context[-1] == loadautofunc ]]; then
            _slotstore "$@"
        else
            compdef _slotstore slotstore
        fi
        """
    }
}
