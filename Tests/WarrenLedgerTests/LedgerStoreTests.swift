import Foundation
import SQLiteNIO
import Synchronization
import Testing
@_spi(WarrenTransport) import Warren
import WarrenTestSupport

@testable import WarrenLedger

/// The ledger's store on its embedded SQLite, and what needs no store at all (`LedgerStorePostgresTests` runs the
/// rest on both stores).
@Suite("Ledger stores (SQLite)")
struct LedgerStoreTests {
    @Test func aPurgedDeadLetterEndsItsJobWithoutAnotherAttempt() {
        let events = [
            WarrenEvent(event: .published, messageID: "p", type: "t", queue: "q", atMs: 1_000),
            WarrenEvent(
                event: .deadLetter, messageID: "p", type: "t", queue: "q", attempt: 2, atMs: 1_100, error: "boom",
                reason: "rejected"),
            WarrenEvent(event: .purged, messageID: "p", type: "t", queue: "q", atMs: 1_200),
        ]
        let update = JobUpdate.fold(events)
        #expect(update.map(\.status) == ["purged"] && update.first?.attempts == 2 && update.first?.lastError == "boom")
        #expect(JobStatus.timeline(of: events).map(\.outcome) == ["dead-letter"], "a purge is not an attempt")
        #expect(JobState.all.contains(.purged))
    }

    @Test func migrationsAreVersionedAndRunOnce() async throws {
        try await withSQLiteStore { store, path in
            try await store.migrate()
            try await store.migrate()
            #expect(try await store.schemaVersion() == SQLiteLedgerDatabase.migrations.last?.version)
            // A second process opening the same file finds it migrated.
            let again = try await SQLiteLedgerStore(path: path)
            try await again.migrate()
            #expect(try await again.schemaVersion() == SQLiteLedgerDatabase.migrations.last?.version)
            try await again.close()
        }
    }

    @Test func errorsAreMaskedSoThatFailuresOfOneKindGroupTogether() {
        #expect(
            FailureFingerprint.mask("550 mailbox 4711@example.com does not exist")
                == "550 mailbox #@example.com does not exist")
        #expect(
            FailureFingerprint.mask("order 0b9e6c1a-47f2-4c1e-9d3a-5b2f8e7c6d10 not found (took 1520 ms)")
                == "order <uuid> not found (took # ms)")
        #expect(FailureFingerprint.mask("object 5f2b9c1e8a7d not in shard s12") == "object <hex> not in shard s#")
        #expect(FailureFingerprint.mask("HTTP 503 from api-7.internal:8443") == "HTTP 503 from api-#.internal:#")
        #expect(
            FailureFingerprint.mask("user 123 has no mailbox") == "user # has no mailbox",
            "a three-digit id is not a status code")
        #expect(
            FailureFingerprint.mask("Reject: 550 mailbox 42@x does not exist")
                == "Reject: 550 mailbox #@x does not exist")
        #expect(FailureFingerprint.mask(String(repeating: "x", count: 5_000)).count == 500)
        // Stable across processes and releases: a group's id may be kept in a URL or a note.
        #expect(
            FailureFingerprint.groupID(
                type: "email.welcome", reason: "rejected", error: "550 mailbox 1@x does not exist")
                == FailureFingerprint.groupID(
                    type: "email.welcome", reason: "rejected", error: "550 mailbox 22@x does not exist"))
        #expect(
            FailureFingerprint.groupID(
                type: "email.welcome", reason: "rejected", error: "550 mailbox 1@x does not exist")
                == "4ba209d319ac59eb")
        #expect(
            FailureFingerprint.groupID(
                type: "email.welcome", reason: "retries-exhausted", error: "550 mailbox 1@x does not exist")
                != FailureFingerprint.groupID(
                    type: "email.welcome", reason: "rejected", error: "550 mailbox 1@x does not exist"))
    }

    @Test func aCancelledLeaderWritesForNobodyElseAndTheOthersAreStillCommitted() async throws {
        // A write that honours cancellation, as a database driver does; the first two writes block until released.
        let written = Mutex<[[Int]]>([])
        let writing = AwaitableState<[Int]>([])
        let released = AwaitableState<Set<[Int]>>([])
        let commits = GroupCommit<Int> { items in
            try Task.checkCancellation()
            if items == [1] || items == [2, 3] {
                writing.update { $0 = items }
                try await released.wait { $0.contains(items) }
            }
            written.withLock { $0.append(items) }
        }
        let first = Task { try await commits.record([1]) }
        try await writing.wait { $0 == [1] }
        // Two more hand their batches over while the first write runs: the next leader takes both.
        let second = Task { try await commits.record([2]) }
        #expect(try await eventually(pollEvery: .milliseconds(1)) { commits.waitingCount == 1 })
        let third = Task { try await commits.record([3]) }
        #expect(try await eventually(pollEvery: .milliseconds(1)) { commits.waitingCount == 2 })
        released.update { $0.insert([1]) }
        try await first.value
        try await writing.wait { $0 == [2, 3] }
        // The leader of [2, 3] is cancelled mid-write: it fails alone; the third batch is not failed with it, nor
        // written by a cancelled task, but led again and committed.
        second.cancel()
        await #expect(throws: CancellationError.self) { try await second.value }
        try await third.value
        #expect(written.withLock { $0 } == [[1], [3]])
    }

    @Test func aVersion1FileIsUpgradedInPlace() async throws {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent(
            "ledger-v1-\(UUID().uuidString).sqlite"
        ).path
        defer { for suffix in ["", "-wal", "-shm"] { try? FileManager.default.removeItem(atPath: path + suffix) } }
        // The file as schema version 1 left it, with a job in it.
        let old = try await SQLiteConnection.open(storage: .file(path: path))
        _ = try await old.query(
            "CREATE TABLE ledger_migrations (version INTEGER PRIMARY KEY, applied_at_ms INTEGER NOT NULL)")
        for statement in SQLiteLedgerDatabase.migrations[0].statements { _ = try await old.query(statement) }
        _ = try await old.query("INSERT INTO ledger_migrations VALUES (1, 0)")
        _ = try await old.query(
            "INSERT INTO jobs (message_id, type, queue, status, attempts, published_at_ms, updated_at_ms) VALUES ('kept', 't', 'q', 'succeeded', 1, 30, 20)"
        )
        _ = try await old.query(
            "INSERT INTO dead_letters (message_id, at_ms, queue, type, reason, error) VALUES ('old', 5, 'q', 't', 'rejected', 'user 4711 not found')"
        )
        try await old.close()

        let store = try await SQLiteLedgerStore(path: path)
        #expect(try await store.schemaVersion() == 1)
        try await store.migrate()
        #expect(try await store.schemaVersion() == SQLiteLedgerDatabase.migrations.last?.version)
        let job = try #require(try await store.job(messageID: "kept"))
        #expect(job.state == .succeeded && job.updatedAtMs == 30, "the latest of its times")
        #expect(try await store.jobs(matching: JobQuery(state: .succeeded)).jobs.map(\.messageID) == ["kept"])
        let groups = try await store.failureGroups(matching: FailureGroupQuery())
        #expect(
            groups.map(\.error) == ["user # not found"]
                && groups.first?.groupID
                    == FailureFingerprint.groupID(type: "t", reason: "rejected", error: "user 1 not found")
        )
        try await store.close()
    }
}
