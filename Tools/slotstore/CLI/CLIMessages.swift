import SlotStore

/// The library's errors in the CLI's own terms: its commands and flags
/// instead of Swift API names (open modes, `OpenOptions`, handles,
/// transactions). The library's own descriptions stay as they are for
/// library users; only the cases whose remedy names the API are rewritten.
enum CLIMessages {
    static func describe(_ error: SlotStoreError) -> String {
        switch error {
        case .fileNotFound(let path):
            return "\(path): no store exists here; create it (`slotstore create \(path) --schema SCHEMA.json`, "
                + "or `slotstore load \(path) DUMP.json`) or check the path"
        case .alreadyExists(let path):
            return "\(path): a file already exists here; `slotstore \(Settings.command)` does not replace it: "
                + "choose another path, or remove it first (`slotstore inspect \(path)` shows what it is)"
        case .unknownField(let path, let name, let available):
            return "\(path): no field named \"\(name)\"; the store has "
                + (available.isEmpty ? "no fields" : available.joined(separator: ", "))
                + " (`slotstore inspect \(path)` lists them with their types)"
        case .wrongFieldType(let path, let name, _, let found):
            return "\(path): field \"\(name)\" is \(found), which `slotstore \(Settings.command)` does not apply to"
                + (Settings.command == "add" ? " (add takes integer and floating-point fields); use `slotstore set`" : "")
        case .mapFull(let path, let field, let capacity, let count):
            return "\(path): map \"\(field)\" is full: \(Plural.count(count, "entry", plural: "entries")) for a capacity of \(capacity); "
                + "remove entries, or give it a larger capacity (`slotstore compact \(path) --capacity \(field)=N`); nothing was inserted"
        case .storeInUse(let path, let operation):
            return "\(path): \(operation) is refused while other processes have the store open, and nothing was changed; "
                + "stop them first (`slotstore inspect \(path)` lists them), or write the result elsewhere (`--output NEWPATH`)"
        case .readTimeout(let path, let field, let seconds):
            return "\(path): no consistent read of field \"\(field)\" within \(LockWait.describe(.nanoseconds(Int64(seconds * 1e9)))): "
                + "a write of it stayed in progress (or writers kept changing it) all that time; "
                + "`slotstore inspect \(path)` shows who holds the lock; wait longer with --lock-timeout"
        case .ownedByAnotherUser(let path, let owner, let user):
            return "\(path): the file belongs to user \(owner), not to your user \(user); a store someone else created "
                + "could be hostile, so it is refused. Run as its owner, or allow it with --allow-other-owner"
        case .lockTimeout(let path, let pid, let alive, let otherNamespace, let seconds):
            let holder = pid == 0 ? "another process" : HolderName.describe(pid: pid, inAnotherPIDNamespace: otherNamespace)
                + (alive ? ", which is running" : ", which is not running")
            return "\(path): the store's lock was not acquired within \(LockWait.describe(.nanoseconds(Int64(seconds * 1e9)))); "
                + "it is held by \(holder); nothing was changed. Find out why that process holds it, "
                + "or wait longer with --lock-timeout"
        case .transactionTooLarge(let path, let needed, let journal) where Settings.command == "load":
            return "\(path): loading the dump changes \(needed) bytes at once, but the store's undo journal holds \(journal), "
                + "and nothing was written; load it into a new store instead (a path that does not exist yet)"
        case .schemaMismatch(let path, let differences):
            return "\(path): the schema differs from the stored one: \(differences.map(\.description).joined(separator: "; ")); "
                + "nothing was changed; migrate the store first (`slotstore compact \(path) --schema NEW.json`)"
        default:
            return error.description
        }
    }
}
