import Glibc

/// A store file read with `pread` for the tools: never mapped (so truncation
/// can't raise SIGBUS), never locked, and tolerant of damage so `verify` can
/// report every problem rather than the first.
struct FileImage {
    let path: String
    let fd: Int32
    let size: Int
    let owner: uid_t
    /// The header at offset 0, or why it is unusable.
    let header: Result<FileHeader, SlotStoreError>
    /// The copy at offset 2048, or why it is unusable.
    let headerCopy: Result<FileHeader, SlotStoreError>
    /// The raw bytes of both, so repair copies an intact header byte for byte
    /// (keeping fields a newer minor version added that this build doesn't know).
    let headerBytes: [UInt8]
    let headerCopyBytes: [UInt8]

    /// Opens the file (read-only unless `writable`) and decodes both header copies.
    /// Throws only when there is no file to look at.
    static func open(_ path: String, writable: Bool) throws(SlotStoreError) -> FileImage {
        switch Syscall.kind(at: path) {
        case .failure(let code): throw Syscall.fileError(code, path: path, call: "lstat", operation: "look up the store")
        case .success(nil): throw .fileNotFound(path: path)
        case .success(.symbolicLink?): throw .symbolicLink(path: path)
        case .success(let kind?) where kind != .regular: throw .notARegularFile(path: path, found: kind.name)
        case .success: break
        }
        let fd: Int32
        switch Syscall.open(path, flags: (writable ? O_RDWR : O_RDONLY) | O_NOFOLLOW) {
        case .success(let opened): fd = opened
        case .failure(let code):
            throw Syscall.fileError(code, path: path, call: "open", operation: writable ? "open the store for repair" : "read the store")
        }
        let info: (kind: FileKind, size: Int, owner: uid_t)
        switch Syscall.size(of: fd) {
        case .success(let value): info = value
        case .failure(let code):
            Glibc.close(fd)
            throw Syscall.fileError(code, path: path, call: "fstat", operation: "examine the file")
        }
        guard info.kind == .regular else {
            Glibc.close(fd)
            throw .notARegularFile(path: path, found: info.kind.name)
        }
        func decodeHeader(at offset: Int) -> Result<FileHeader, SlotStoreError> {
            guard info.size > 0 else { return .failure(.emptyFile(path: path)) }
            guard case .success(let bytes) = Syscall.read(fd, count: FileHeader.size, at: offset) else {
                return .failure(.systemCallFailed(path: path, call: "pread", errno: errno))
            }
            guard bytes.count == FileHeader.size else {
                return .failure(.truncated(path: path, expectedBytes: offset + FileHeader.size, foundBytes: info.size))
            }
            return Result { () throws(SlotStoreError) in
                let header = try FileHeader.decode(bytes, path: path)
                try header.validateRegions(actualFileSize: info.size, path: path)
                return header
            }
        }
        func raw(at offset: Int) -> [UInt8] {
            guard case .success(let bytes) = Syscall.read(fd, count: FileHeader.size, at: offset) else { return [] }
            return bytes
        }
        return FileImage(path: path, fd: fd, size: info.size, owner: info.owner,
                         header: decodeHeader(at: 0), headerCopy: decodeHeader(at: FileHeader.copyOffset),
                         headerBytes: raw(at: 0), headerCopyBytes: raw(at: FileHeader.copyOffset))
    }

    func close() { Glibc.close(fd) }

    /// `count` bytes at `offset`, or fewer at the end of the file.
    func bytes(at offset: Int, count: Int) -> [UInt8] {
        guard count > 0, case .success(let bytes) = Syscall.read(fd, count: count, at: offset) else { return [] }
        return bytes
    }

    /// The stored schema, checked against the header's length, checksum, hash and version.
    func schema(for header: FileHeader) -> Result<Schema, SlotStoreError> {
        let bytes = self.bytes(at: Int(header.schemaOffset), count: Int(header.schemaLength))
        let checksum = CRC32C.checksum(bytes)
        guard checksum == header.schemaChecksum else {
            return .failure(.corruptSchema(path: path, detail: "its checksum is \(checksum), the header says \(header.schemaChecksum)"))
        }
        let schema: Schema
        do {
            schema = try Schema(json: bytes, source: "the stored schema")
        } catch {
            return .failure(.corruptSchema(path: path, detail: error.description))
        }
        guard schema.fieldsHash == header.schemaHash, UInt64(schema.version) == header.schemaVersion else {
            return .failure(.corruptSchema(path: path, detail: "the stored schema does not match the hash and version in the header"))
        }
        return .success(schema)
    }
}

/// Little-endian reads from a region copied out of the file.
struct RegionBytes {
    let bytes: [UInt8]
    /// The file offset of `bytes[0]`.
    let origin: Int

    func u64(_ fileOffset: Int) -> UInt64 {
        let at = fileOffset - origin
        guard at >= 0, at + 8 <= bytes.count else { return 0 }
        return bytes.littleEndian(UInt64.self, at: at)
    }

    func bits(_ fileOffset: Int, width: Int) -> UInt64 {
        let at = fileOffset - origin
        guard at >= 0, at + width <= bytes.count else { return 0 }
        switch width {
        case 8: return bytes.littleEndian(UInt64.self, at: at)
        case 4: return UInt64(bytes.littleEndian(UInt32.self, at: at))
        case 2: return UInt64(bytes.littleEndian(UInt16.self, at: at))
        default: return UInt64(bytes[at])
        }
    }

    func slice(_ fileOffset: Int, count: Int) -> [UInt8] {
        let at = fileOffset - origin
        guard at >= 0, count >= 0, at + count <= bytes.count else { return [] }
        return Array(bytes[at..<(at + count)])
    }
}
