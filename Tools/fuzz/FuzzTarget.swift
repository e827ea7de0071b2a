import Glibc
import Synchronization

// libFuzzer target over everything that reads an untrusted store file:
// verify, open (header, regions, schema, layout, lock reset, journal
// rollback), reads and a few writes through the handles, inspect, repair,
// and verify again. Compiled into one module with the library sources (see
// run.sh), so it also reaches internal types.
//
// The first input byte selects modes:
//   bit 2 clear  the rest of the input is the file itself (arbitrary bytes);
//   bit 2 set    patch mode: the next byte picks one of the valid stores built
//                at initialization, and the rest is a list of patches, each
//                [op][offset: 3 bytes LE][length][bytes]: op even overwrites at
//                offset (modulo the size), op odd truncates there. Small inputs
//                reach every region, which raw 80 KB files rarely do;
//   bit 0        fix up the schema checksum and both header checksums, so
//                mutations reach the checks behind them;
//   bit 1        also fix up the schema hash and version from the stored schema.
// With SLOTSTORE_FUZZ_SEEDS=DIR, initialization writes seeds of both kinds there.

private let workDirectory: String = {
    let base = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : (getenv("TMPDIR").map { String(cString: $0) } ?? "/tmp")
    var template = Array((base + "/slotstore-fuzz-XXXXXX").utf8CString)
    guard template.withUnsafeMutableBufferPointer({ mkdtemp($0.baseAddress!) }) != nil else { fatalError("mkdtemp failed") }
    return String(decoding: template.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
}()

private func writeFile(_ path: String, _ bytes: [UInt8]) {
    let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
    guard fd >= 0 else { fatalError("cannot write \(path): errno \(errno)") }
    var done = 0
    bytes.withUnsafeBytes { buffer in
        while done < buffer.count {
            let count = write(fd, buffer.baseAddress! + done, buffer.count - done)
            if count <= 0 { break }
            done += count
        }
    }
    close(fd)
}

private func readFile(_ path: String) -> [UInt8] {
    let fd = open(path, O_RDONLY | O_CLOEXEC)
    guard fd >= 0 else { return [] }
    defer { close(fd) }
    var result: [UInt8] = []
    var buffer = [UInt8](repeating: 0, count: 65_536)
    while true {
        let count = read(fd, &buffer, buffer.count)
        if count <= 0 { break }
        result += buffer.prefix(count)
    }
    return result
}

private func fixUp(_ bytes: inout [UInt8], rehash: Bool) {
    for headerOffset in [0, FileHeader.copyOffset] where bytes.count >= headerOffset + FileHeader.size {
        let schemaOffset = bytes.littleEndian(UInt64.self, at: headerOffset + 72)
        let schemaLength = UInt64(bytes.littleEndian(UInt32.self, at: headerOffset + 88))
        if schemaOffset < UInt64(bytes.count), schemaLength <= UInt64(bytes.count) - schemaOffset {
            let schema = bytes[Int(schemaOffset)..<Int(schemaOffset + schemaLength)]
            bytes.setLittleEndian(CRC32C.checksum(schema), at: headerOffset + 92)
            if rehash, let parsed = try? Schema(json: schema) {
                bytes.setLittleEndian(UInt64(truncatingIfNeeded: parsed.version), at: headerOffset + 112)
                bytes.setLittleEndian(parsed.fieldsHash, at: headerOffset + 120)
            }
        }
        let checksum = CRC32C.checksum(bytes[headerOffset..<(headerOffset + FileHeader.checksumOffset)])
        bytes.setLittleEndian(checksum, at: headerOffset + FileHeader.checksumOffset)
    }
}

/// Reads every field and makes a few locked writes, over whatever the file holds.
private func exercise(_ store: SlotStore) {
    for field in store.schema.fields {
        _ = try? store.value(of: field.name)
        switch field.type {
        case .map:
            if let map = try? store.map(field.name, key: String.self, value: Int64.self) {
                _ = try? map.get("a")
                _ = try? map.add(1, for: "fuzz")
                _ = try? map.remove("b")
                _ = try? map.entries()
            }
            if let map = try? store.map(field.name, key: Int64.self, value: String.self) {
                _ = try? map.get(1)
                _ = try? map.set("x", for: 2)
                _ = try? map.remove(3)
            }
        case .string:
            _ = try? store.string(field.name).store("fuzz")
        case .bytes:
            _ = try? store.bytes(field.name).store([1, 2, 3])
        case .array(.int64, let count):
            _ = try? store.array(field.name, of: Int64.self).store([Int64](repeating: 7, count: count))
        case .scalar(.int64):
            _ = try? store.transaction { tx in try tx.add(1, to: store.scalar(field.name, as: Int64.self)) }
        default:
            break
        }
    }
    _ = try? store.status
}

private let seedSchemas = [
    Schema(version: 1, fields: [
        .int64("requests"), .double("load"), .bool("enabled"), .int8("small"), .uint32("mask"),
        .array("buckets", of: .int64, count: 16), .array("flags", of: .bool, count: 3),
        .string("motd", capacity: 40), .bytes("blob", capacity: 24),
        .map("hits", key: .string(capacity: 12), value: .scalar(.int64), capacity: 12),
    ]),
    Schema(version: 2, fields: [
        .int64("a"), .map("names", key: .scalar(.int64), value: .string(capacity: 16), capacity: 6),
    ]),
]

/// Valid, filled stores, the bases of patch mode.
private let bases: [[UInt8]] = seedSchemas.enumerated().compactMap { index, schema in
    let path = workDirectory + "/base-\(index).slots"
    unlink(path)
    guard let store = try? SlotStore(path: path, schema: schema) else { return nil }
    exercise(store)
    if let hits = try? store.map("hits", key: String.self, value: Int64.self) {
        for key in 0..<8 { _ = try? hits.set(Int64(key), for: "k\(key)") }
        _ = try? hits.remove("k3")
    }
    store.close()
    let bytes = readFile(path)
    unlink(path)
    return bytes
}

private func writeSeeds(to directory: String) {
    for (index, bytes) in bases.enumerated() {
        for mode: UInt8 in [0, 1, 3] { writeFile(directory + "/seed-\(index)-mode-\(mode)", [mode] + bytes) }
        // Patch mode: one small overwrite at the start of each region and field.
        var offsets = [0, 32, 96, FileHeader.copyOffset + 40]
        if let header = try? FileHeader.decode(Array(bytes.prefix(FileHeader.size)), path: "seed"),
           let schema = try? Schema(json: bytes[Int(header.schemaOffset)..<Int(header.schemaOffset + UInt64(header.schemaLength))]),
           let layout = try? Layout(header: header, schema: schema, path: "seed") {
            offsets += [layout.lockOffset, layout.journalOffset, layout.schemaOffset + 20] + layout.fields.map(\.offset)
        }
        for (number, offset) in offsets.enumerated() {
            let patch: [UInt8] = [0, UInt8(offset & 0xFF), UInt8(offset >> 8 & 0xFF), UInt8(offset >> 16 & 0xFF), 1, 0xFF]
            writeFile(directory + "/patch-\(index)-\(number)", [5, UInt8(index)] + patch)
        }
    }
}

private func patched(_ input: ArraySlice<UInt8>) -> [UInt8] {
    guard let first = input.first, !bases.isEmpty else { return [] }
    var bytes = bases[Int(first) % bases.count]
    var cursor = input.index(after: input.startIndex)
    while cursor + 5 <= input.endIndex, !bytes.isEmpty {
        let op = input[cursor]
        let offset = (Int(input[cursor + 1]) | Int(input[cursor + 2]) << 8 | Int(input[cursor + 3]) << 16) % bytes.count
        let length = Int(input[cursor + 4])
        cursor += 5
        if op & 1 == 1 {
            bytes.removeSubrange(offset...)
            continue
        }
        let data = input[cursor..<min(input.endIndex, cursor + length)]
        cursor += data.count
        for (index, byte) in data.enumerated() where offset + index < bytes.count { bytes[offset + index] = byte }
    }
    return bytes
}

@_cdecl("LLVMFuzzerInitialize")
public func fuzzerInitialize(_ argc: UnsafeMutablePointer<Int32>,
                             _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?>) -> Int32 {
    _ = bases
    if let seeds = getenv("SLOTSTORE_FUZZ_SEEDS") { writeSeeds(to: String(cString: seeds)) }
    return 0
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzerTestOneInput(_ data: UnsafePointer<UInt8>, _ size: Int) -> Int32 {
    guard size > 0 else { return 0 }
    let mode = data[0]
    let input = UnsafeBufferPointer(start: data + 1, count: size - 1)
    var bytes = mode & 4 == 4 ? patched(Array(input)[...]) : Array(input)
    if mode & 1 == 1 { fixUp(&bytes, rehash: mode & 2 == 2) }
    let path = workDirectory + "/input.slots"
    unlink(path)
    writeFile(path, bytes)
    _ = try? SlotStore.verify(at: path)
    _ = try? SlotStore.inspect(at: path)
    if let store = try? SlotStore(path: path, options: OpenOptions(mode: .open, lockTimeout: .milliseconds(5))) {
        exercise(store)
        store.close()
    }
    _ = try? SlotStore.repair(at: path)
    _ = try? SlotStore.verify(at: path)
    unlink(path)
    return 0
}
