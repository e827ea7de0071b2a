import Testing
@testable import SlotStore

/// A compaction that its plan refuses, and a dry run, leave every byte of the
/// store as it was, even when nobody else has it open (a first opener would
/// reset the lock bookkeeping, which the error's "nothing was changed" denies).
@Suite("compaction refusals change nothing")
struct CompactionRefusalTests {
    @Test("a refused compaction and a dry run of a store nobody has open leave its bytes unchanged")
    func refusedCompactionWritesNothing() throws {
        let directory = TemporaryDirectory()
        let path = directory.file("refused.slots")
        let store = try SlotStore(path: path, schema: Schema(version: 1, fields: [.int64("keep"), .string("gone", capacity: 16)]))
        try store.string("gone").store("value")
        store.close()
        waitUntilNoOpener(path)
        let before = fileBytes(path)
        let dropping = Schema(version: 2, fields: [.int64("keep")])
        #expect {
            try SlotStore.compact(at: path, schema: dropping)
        } throws: { error in
            guard case .migrationRefused(let named, let reasons) = error as? SlotStoreError else { return false }
            return named == path && reasons.contains { $0.contains("\"gone\"") }
        }
        let unchangedByRefusal = fileBytes(path) == before  // a Bool: the bytes themselves are too long to print
        #expect(unchangedByRefusal, "the refused compaction wrote to the store")
        let plan = try SlotStore.compact(at: path, schema: dropping, migration: MigrationOptions(allowDropping: true), dryRun: true)
        #expect(plan.dryRun && plan.fields.contains { $0.name == "gone" && $0.fate == "drop" })
        let unchangedByDryRun = fileBytes(path) == before
        #expect(unchangedByDryRun, "the dry run wrote to the store")
    }
}
