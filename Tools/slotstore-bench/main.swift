import Glibc

// slotstore-bench: `slotstore bench [--json] [--quick] [--dir DIR] [--floor]`.
// Prints numbers; asserts no time. See BenchCommand.usage.

let arguments = Array(CommandLine.arguments.dropFirst())
if arguments.first == "--wait-child" {
    exit(WaitChild.main(Array(arguments.dropFirst())))
}
if arguments.first == "--child" {
    exit(ChildRole.main(Array(arguments.dropFirst())))
}
exit(BenchCommand.run(arguments))
