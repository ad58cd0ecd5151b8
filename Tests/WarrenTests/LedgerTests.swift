import Foundation
import SQLiteNIO
import Synchronization
import Testing
@_spi(WarrenTransport) import Warren
import WarrenAMQP
import WarrenTestSupport

@testable import WarrenLedger

/// The stores every ledger test runs against.
enum StoreKind: String, CaseIterable, Sendable, CustomTestStringConvertible {
    case sqlite, postgres
    var testDescription: String { rawValue }
}

/// A fresh store of `kind`: a SQLite file of its own, or a new database on the test process's PostgreSQL.
func withStore<T>(_ kind: StoreKind, _ body: (SQLLedgerStore) async throws -> T) async throws -> T {
    switch kind {
    case .sqlite:
        return try await withSQLiteStore { store, _ in try await body(store) }
    case .postgres:
        let url = try await LocalPostgres.shared().newDatabaseURL()
        let store = try PostgresLedgerStore(url: url, logger: TestBroker.quietLogger())
        do {
            let result = try await body(store)
            try? await store.close()
            return result
        } catch {
            try? await store.close()
            throw error
        }
    }
}

/// A store in a file of its own, removed afterwards.
func withSQLiteStore<T>(_ body: (SQLiteLedgerStore, String) async throws -> T) async throws -> T {
    let path = FileManager.default.temporaryDirectory.appendingPathComponent("ledger-\(UUID().uuidString).sqlite").path
    defer { for suffix in ["", "-wal", "-shm"] { try? FileManager.default.removeItem(atPath: path + suffix) } }
    let store = try await SQLiteLedgerStore(path: path)
    do {
        let result = try await body(store, path)
        try? await store.close()
        return result
    } catch {
        try? await store.close()
        throw error
    }
}

@Suite("Ledger stores (SQLite, PostgreSQL)", .tags(.postgres), .needs(.postgres))
struct LedgerStoreTests {
    func event(_ kind: WarrenEvent.Kind, _ id: String, attempt: Int? = nil, at: Int64, error: String? = nil)
        -> WarrenEvent
    {
        WarrenEvent(
            event: kind, messageID: id, type: "email.welcome", queue: "emails", attempt: attempt, atMs: at,
            error: error, host: "w1")
    }

    @Test func migrationsRunOnceOnPostgreSQLTooEvenTwoAtATime() async throws {
        let url = try await LocalPostgres.shared().newDatabaseURL()
        let first = try PostgresLedgerStore(url: url, logger: TestBroker.quietLogger())
        let second = try PostgresLedgerStore(url: url, logger: TestBroker.quietLogger())
        async let one: Void = first.migrate()
        async let two: Void = second.migrate()
        _ = try await (one, two)
        #expect(try await first.schemaVersion() == PostgresLedgerDatabase.migrations.last?.version)
        try await first.close()
        try await second.close()
    }

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

    @Test(arguments: StoreKind.allCases)
    func aJobFollowsItsLatestEventWhateverOrderTheyArriveIn(_ kind: StoreKind) async throws {
        try await withStore(kind) { store in
            try await store.migrate()
            #expect(try await store.job(messageID: "a") == nil)
            // The worker started before the publisher's confirm came back: `published` arrives last and later.
            try await store.record([event(.started, "a", attempt: 1, at: 100)])
            #expect(try await store.job(messageID: "a")?.state == .running)
            try await store.record([event(.published, "a", at: 150)])
            var job = try #require(try await store.job(messageID: "a"))
            #expect(job.state == .running && job.publishedAtMs == 150, "a late `published` never sets a job back")
            var retry = event(.retry, "a", attempt: 1, at: 200, error: "421 busy")
            retry.nextAttemptAtMs = 1200
            try await store.record([retry])
            job = try #require(try await store.job(messageID: "a"))
            #expect(job.state == .retrying && job.nextAttemptAtMs == 1200 && job.lastError == "421 busy")
            try await store.record([event(.started, "a", attempt: 2, at: 1210), event(.ack, "a", attempt: 2, at: 1250)])
            job = try #require(try await store.job(messageID: "a"))
            #expect(job.state == .succeeded && job.attempts == 2)
            #expect(job.timeline.map(\.attempt) == [1, 2] && job.timeline.map(\.outcome) == ["retry", "ack"])
            #expect(
                job.timeline[0].error == "421 busy" && job.timeline[1].startedAtMs == 1210
                    && job.timeline[1].endedAtMs == 1250)

            var letter = event(.deadLetter, "b", attempt: 1, at: 300, error: "550 no such mailbox")
            letter.reason = "rejected"
            letter.body = "{}"
            try await store.record([event(.published, "b", at: 290), event(.started, "b", attempt: 1, at: 295), letter])
            job = try #require(try await store.job(messageID: "b"))
            #expect(job.state == .deadLettered && job.reason == "rejected" && job.publishedAtMs == 290)
            #expect(try await store.eventCount() == 8)
        }
    }

    @Test(arguments: StoreKind.allCases)
    func aSettlementInTheSameMillisecondAsItsStartWinsWhateverOrderTheyArriveIn(_ kind: StoreKind) async throws {
        try await withStore(kind) { store in
            try await store.migrate()
            try await store.record([event(.ack, "same", attempt: 1, at: 500)])
            try await store.record([event(.started, "same", attempt: 1, at: 500)])
            let job = try #require(try await store.job(messageID: "same"))
            #expect(job.state == .succeeded)
            #expect(
                job.timeline.count == 1 && job.timeline.first?.startedAtMs == 500
                    && job.timeline.first?.outcome == "ack")
        }
    }

    @Test(arguments: StoreKind.allCases)
    func aSettlementWithItsStartFoldedInIsAWholeAttempt(_ kind: StoreKind) async throws {
        try await withStore(kind) { store in
            try await store.migrate()
            var ack = event(.ack, "short", attempt: 2, at: 900)
            ack.startedAtMs = 880
            ack.durationMs = 20
            try await store.record([event(.published, "short", at: 700), ack])
            let job = try #require(try await store.job(messageID: "short"))
            #expect(job.state == .succeeded && job.attempts == 2)
            #expect(
                job.timeline == [
                    JobStatus.Attempt(
                        attempt: 2, startedAtMs: 880, endedAtMs: 900, outcome: "ack", durationMs: 20, host: "w1")
                ])
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

    @Test(arguments: StoreKind.allCases)
    func deadLettersAreGroupedByFailure(_ kind: StoreKind) async throws {
        try await withStore(kind) { store in
            try await store.migrate()
            func letter(_ id: String, at: Int64, error: String, reason: String = "rejected", queue: String = "emails")
                -> WarrenEvent
            {
                var letter = event(.deadLetter, id, attempt: 1, at: at, error: error)
                letter.reason = reason
                letter.queue = queue
                return letter
            }
            try await store.record([
                letter("a", at: 100, error: "550 mailbox 1@x does not exist"),
                letter("b", at: 300, error: "550 mailbox 22@x does not exist"),
                letter("c", at: 200, error: "421 busy", reason: "retries-exhausted"),
                letter("d", at: 400, error: "550 mailbox 333@x does not exist", queue: "reports"),
            ])
            let groups = try await store.failureGroups(matching: FailureGroupQuery())
            #expect(groups.map(\.count) == [3, 1], "most recently seen first")
            let mailbox = try #require(groups.first)
            #expect(
                mailbox.error == "550 mailbox #@x does not exist" && mailbox.reason == "rejected"
                    && mailbox.type == "email.welcome")
            #expect(
                mailbox.firstAtMs == 100 && mailbox.lastAtMs == 400
                    && ["a", "b", "d"].contains(mailbox.sampleMessageID))
            #expect(try await store.failureGroups(matching: FailureGroupQuery(queue: "emails")).map(\.count) == [2, 1])
            #expect(
                try await store.failureGroups(matching: FailureGroupQuery(sinceMs: 150, untilMs: 350)).map(\.count) == [
                    1, 1,
                ])
            #expect(try await store.failureGroups(matching: FailureGroupQuery(limit: 1)).count == 1)

            // A group's dead letters, page by page; one dead letter whole.
            let first = try await store.deadLetters(matching: DeadLetterQuery(groupID: mailbox.groupID, limit: 2))
            #expect(
                first.deadLetters.map(\.messageID) == ["d", "b"]
                    && first.deadLetters.allSatisfy { $0.body == nil && $0.headers == nil })
            let second = try await store.deadLetters(
                matching: DeadLetterQuery(groupID: mailbox.groupID, limit: 2, after: first.next))
            #expect(second.deadLetters.map(\.messageID) == ["a"] && second.next == nil)
            #expect(
                try await store.deadLetters(matching: DeadLetterQuery(queue: "emails", sinceMs: 150)).deadLetters.map(
                    \.messageID) == ["b", "c"])
            var hostile = letter("e", at: 500, error: "<script>alert(1)</script>")
            hostile.headers = ["x-note": "<b>bold</b>", "x-warren-attempt": "1"]
            hostile.body = "<script>alert('body')</script>"
            hostile.bodyEncoding = "utf8"
            hostile.bodyTruncated = true
            try await store.record([hostile])
            let whole = try #require(try await store.deadLetters(messageID: "e").first)
            #expect(
                whole.headers == ["x-note": "<b>bold</b>", "x-warren-attempt": "1"]
                    && whole.body == "<script>alert('body')</script>")
            #expect(
                whole.bodyEncoding == "utf8" && whole.bodyTruncated == true && whole.reason == "rejected"
                    && whole.groupID != nil)
            #expect(try await store.deadLetters(messageID: "nobody").isEmpty)
        }
    }

    /// A PostgreSQL store whose database refuses any event of message id `bad` (a trigger: anything a publisher can send
    /// is bounded before it reaches the database, so the test makes the database itself refuse). The caller closes it.
    func refusingStore() async throws -> PostgresLedgerStore {
        let postgres = try await LocalPostgres.shared()
        let url = try await postgres.newDatabaseURL()
        let store = try PostgresLedgerStore(url: url, logger: TestBroker.quietLogger())
        try await store.migrate()
        try await postgres.execute(
            """
            CREATE FUNCTION refuse_bad() RETURNS trigger AS $$ BEGIN
                IF NEW.message_id = 'bad' THEN RAISE EXCEPTION 'refused by the test'; END IF; RETURN NEW;
            END $$ LANGUAGE plpgsql;
            CREATE TRIGGER refuse_bad BEFORE INSERT ON events FOR EACH ROW EXECUTE FUNCTION refuse_bad();
            """, in: url)
        return store
    }

    @Test func aBatchThatFailsLeavesNothingBehind() async throws {
        let store = try await refusingStore()
        do {
            let bad = event(.ack, "bad", attempt: 1, at: 2)
            await #expect(throws: (any Error).self) {
                try await store.record([event(.started, "good", attempt: 1, at: 1), bad])
            }
            #expect(try await store.eventCount() == 0, "one transaction: the good event went too")
            #expect(try await store.job(messageID: "good") == nil)
        }
        try await store.close()
    }

    @Test func aBadBatchInAGroupCommitFailsAloneAndTheOthersAreKept() async throws {
        let store = try await refusingStore()
        do {
            let commits = GroupCommit(store: store, queue: "warren.ledger")
            let bad = event(.ack, "bad", attempt: 1, at: 2)
            // Handed over together: the first write takes whatever is waiting, the rest go in the next group.
            let batches = ["good-1", "bad", "good-2", "good-3"].map { id in
                (id, id == "bad" ? bad : event(.ack, id, attempt: 1, at: 3))
            }
            let results = await withTaskGroup(of: (String, Bool).self) { group in
                for (id, batch) in batches {
                    group.addTask {
                        do {
                            try await commits.record([batch])
                            return (id, true)
                        } catch {
                            return (id, false)
                        }
                    }
                }
                return await group.reduce(into: [String: Bool]()) { $0[$1.0] = $1.1 }
            }
            #expect(results == ["good-1": true, "bad": false, "good-2": true, "good-3": true])
            #expect(try await store.eventCount() == 3)
        }
        try await store.close()
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

    @Test(arguments: StoreKind.allCases)
    func searchesPageByCursorNewestFirstAndFilter(_ kind: StoreKind) async throws {
        try await withStore(kind) { store in
            try await store.migrate()
            // 120 jobs: every third dead-lettered; ten of them in the same millisecond, to page through a tie.
            var events: [WarrenEvent] = []
            for index in 0..<120 {
                let id = String(format: "job-%03d", index)
                let at = Int64(index < 10 ? 1_000 : 1_000 + index * 10)
                var settled = event(index % 3 == 0 ? .deadLetter : .ack, id, attempt: 1, at: at + 1)
                settled.queue = index % 2 == 0 ? "emails" : "reports"
                if index % 3 == 0 { settled.reason = "rejected" }
                events += [event(.published, id, at: at - 1), event(.started, id, attempt: 1, at: at), settled]
            }
            try await store.record(events)

            var seen: [String] = []
            var query = JobQuery(limit: 7)
            var pages = 0
            repeat {
                let page = try await store.jobs(matching: query)
                #expect(page.jobs.count <= 7)
                seen += page.jobs.map(\.messageID)
                query.after = page.next
                pages += 1
                // Recorded meanwhile: newer than every page, never shifts the next one.
                if pages == 2 { try await store.record([event(.started, "late", attempt: 1, at: 99_999)]) }
            } while query.after != nil && pages < 100
            #expect(seen.count == 120 && Set(seen).count == 120, "every job once, none twice, none missed")
            #expect(seen.first == "job-119" && seen.last == "job-000", "newest first; ties by message id, descending")
            #expect(pages == 18)

            let dead = try await store.jobs(
                matching: JobQuery(queue: "emails", type: "email.welcome", state: .deadLettered, limit: 500))
            #expect(dead.jobs.count == 20 && dead.next == nil)
            #expect(
                dead.jobs.allSatisfy { $0.state == .deadLettered && $0.queue == "emails" && $0.reason == "rejected" })
            let window = try await store.jobs(matching: JobQuery(sinceMs: 1_500, untilMs: 1_600))
            #expect(window.jobs.map(\.messageID) == (50..<60).reversed().map { String(format: "job-%03d", $0) })
            #expect(try await store.jobs(matching: JobQuery(type: "nothing")).jobs.isEmpty)
            // A cursor survives its trip through a URL.
            let cursor = LedgerCursor(atMs: 42, messageID: "a:b/c+d é")
            #expect(LedgerCursor(token: cursor.token) == cursor)
            #expect(LedgerCursor(token: "not a cursor!") == nil && LedgerCursor(token: "") == nil)
        }
    }

    @Test(arguments: StoreKind.allCases)
    func pruningKeepsWhatThePolicySaysAndBoundsTheSize(_ kind: StoreKind) async throws {
        try await withStore(kind) { store in
            try await store.migrate()
            let day: Int64 = 86_400_000
            let now = 100 * day
            var letter = event(.deadLetter, "old-failure", attempt: 1, at: now - 20 * day)
            letter.reason = "rejected"
            letter.body = "{}"
            try await store.record([
                event(.ack, "old-success", attempt: 1, at: now - 8 * day),
                event(.ack, "new-success", attempt: 1, at: now - 6 * day),
                letter,
                event(.started, "stuck", attempt: 1, at: now - 40 * day),
                event(.started, "running", attempt: 1, at: now - 1 * day),
            ])
            let policy = RetentionPolicy(
                succeeded: .seconds(7 * 86_400), deadLettered: .seconds(15 * 86_400), unfinished: .seconds(30 * 86_400),
                maxJobs: nil)
            let pruned = try await store.prune(policy, nowMs: now)
            #expect(pruned == PruneResult(jobs: 3, events: 3))
            #expect(try await store.job(messageID: "old-success") == nil)
            #expect(try await store.job(messageID: "stuck") == nil)
            #expect(try await store.job(messageID: "old-failure") == nil)
            #expect(try await store.job(messageID: "new-success")?.state == .succeeded)
            #expect(try await store.job(messageID: "running")?.state == .running)
            #expect(try await store.prune(policy, nowMs: now) == PruneResult(), "nothing more to prune")

            // Bounded: 2,500 more jobs, at most 1,000 kept, the oldest go first.
            try await store.record(
                (0..<2_500).map { event(.ack, String(format: "bulk-%04d", $0), attempt: 1, at: now + Int64($0)) })
            var bound = RetentionPolicy.keepEverything
            bound.maxJobs = 1_000
            let bounded = try await store.prune(bound, nowMs: now)
            #expect(bounded.jobs == 1_502)
            #expect(try await store.job(messageID: "bulk-2499") != nil)
            #expect(try await store.job(messageID: "bulk-1499") == nil)
            #expect(try await store.job(messageID: "bulk-1500") != nil)
            #expect(try await store.eventCount() == 1_000)
        }
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

    @Test(arguments: StoreKind.allCases)
    func aBigBatchIsRecordedAndARedeliveredOneAddsNothing(_ kind: StoreKind) async throws {
        try await withStore(kind) { store in
            try await store.migrate()
            let many = (0..<1_000).flatMap { index in
                [
                    event(.started, "job-\(index)", attempt: 1, at: Int64(index)),
                    event(.ack, "job-\(index)", attempt: 1, at: Int64(index) + 1),
                ]
            }
            try await store.record(many)
            #expect(try await store.eventCount() == 2_000)
            #expect(try await store.job(messageID: "job-999")?.state == .succeeded)
            // Redelivered after a crash between its commit and its ack: recorded once.
            try await store.record(Array(many[1_000..<1_100]))
            #expect(try await store.eventCount() == 2_000)
            #expect(try await store.job(messageID: "job-520")?.timeline.count == 1)
        }
    }
}

/// Events → ledger → status through the real broker.
@Suite("Ledger against RabbitMQ", .serialized, .tags(.broker, .postgres), .needs(.broker, .postgres), .deletesItsQueues)
struct LedgerBrokerTests {
    @Test(arguments: StoreKind.allCases)
    func statusFollowsTheJobAndARestartedLedgerLosesNothing(_ kind: StoreKind) async throws {
        try await withCleanups { cleanups in
            _ = testMetrics  // the process's metrics, bootstrapped before the ledger makes its gauge
            let url = try await TestBroker.url()
            let queue = TestBroker.uniqueName()
            let exchange = TestBroker.uniqueName("events")
            let ledgerQueue = TestBroker.uniqueName("ledger")
            try await withStore(kind) { store in
                let transport = RabbitMQTransport(
                    endpoints: [try AMQPEndpoint(uri: url)], logger: TestBroker.quietLogger())
                try await transport.start()
                cleanups.add { await transport.close() }
                let events = WarrenEventPublisher(
                    transport: transport, options: EventOptions(exchange: exchange, flushInterval: .milliseconds(20)),
                    logger: TestBroker.quietLogger())

                func startLedger() async throws -> (Ledger, Task<Void, any Error>) {
                    let ledgerTransport = RabbitMQTransport(
                        endpoints: [try AMQPEndpoint(uri: url)], logger: TestBroker.quietLogger())
                    let ledger = Ledger(
                        transport: ledgerTransport, store: store, queue: ledgerQueue, exchange: exchange,
                        logger: TestBroker.quietLogger())
                    let running = Task { try await ledger.run() }
                    try await ledger.waitUntilConsuming(timeout: .seconds(30))
                    return (ledger, running)
                }
                var (ledger, running) = try await startLedger()

                let release = Release()
                let registration = HandlerRegistration(
                    WelcomeEmail.self, queue: queue,
                    options: HandlerOptions(retry: RetryPolicy(maxAttempts: 2, backoff: .explicit([.seconds(1)])))
                ) { email, context in
                    if email.email.hasPrefix("slow") { await release.wait() }
                    if email.email.hasPrefix("flaky"), context.attempt == 1 { throw Flaky() }
                    if email.email.hasPrefix("bounce") { throw Reject("550 no such mailbox") }
                }
                let worker = try await RunningWorker.start(
                    queue: queue, registrations: [registration], configuration: WorkerConfiguration(events: events))
                cleanups.add { await worker.stop() }
                let publisher = WarrenPublisher(transport: transport, events: events)
                for id in ["ok", "flaky", "bounce", "slow"] {
                    try await publisher.publish(
                        WelcomeEmail(userId: id, email: "\(id)@example.com"), to: .queue(queue), messageID: id)
                }

                #expect(
                    try await eventually { try await store.job(messageID: "slow")?.state == .running },
                    "running while its handler runs")
                #expect(
                    try await eventually { try await store.job(messageID: "flaky")?.state == .retrying },
                    "retrying between attempts")
                #expect(try await eventually { try await store.job(messageID: "flaky")?.state == .succeeded })
                #expect(try await eventually { try await store.job(messageID: "ok")?.state == .succeeded })
                #expect(try await eventually { try await store.job(messageID: "bounce")?.state == .deadLettered })
                let letter = try #require(try await store.job(messageID: "bounce"))
                #expect(letter.reason == "rejected" && letter.lastError?.contains("550") == true)
                let lag = try testMetrics.expectGauge("warren_ledger_lag_seconds", [("queue", ledgerQueue)])
                #expect(lag.lastValue.map { $0 >= 0 && $0 < 60 } == true, "the ledger reports how far behind it is")
                let flaky = try #require(try await store.job(messageID: "flaky"))
                #expect(flaky.timeline.map(\.outcome) == ["retry", "ack"] && flaky.publishedAtMs != nil)

                // The ledger stops; the worker goes on. Its events wait in the ledger's queue until a ledger runs again.
                ledger.shutdown()
                try await running.value
                release.open()
                // A queue of the test's own on the events exchange: once the settlement of "later" reaches it, the broker
                // has routed the same batch to the ledger's queue, where it waits.
                let probe = try await worker.connect()
                let probeChannel = try await probe.openChannel()
                let tap = TestBroker.uniqueName("tap")
                try await probeChannel.queueDeclare(tap, exclusive: true)
                try await probeChannel.queueBind(tap, exchange: exchange, routingKey: "#")
                try await publisher.publish(
                    WelcomeEmail(userId: "later", email: "later@example.com"), to: .queue(queue), messageID: "later")
                #expect(
                    try await eventually {
                        while let result = try await probeChannel.get(queue: tap, noAck: true) {
                            let batch = try WarrenEvent.decodeBatch(result.delivery.body)
                            if batch.contains(where: { $0.messageID == "later" && $0.event == .ack }) { return true }
                        }
                        return false
                    }, "the settlement of later was published")
                #expect(
                    try await probeChannel.queueStatus(ledgerQueue).messageCount > 0,
                    "its events wait in the ledger's queue")
                await probe.close()
                (ledger, running) = try await startLedger()
                #expect(
                    try await eventually { try await store.job(messageID: "later")?.state == .succeeded },
                    "recorded once a ledger runs again")
                #expect(try await eventually { try await store.job(messageID: "slow")?.state == .succeeded })
                ledger.shutdown()
                try await running.value
            }
        }
    }
}
