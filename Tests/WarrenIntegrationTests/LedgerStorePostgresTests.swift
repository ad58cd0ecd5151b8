import Foundation
import Testing
@_spi(WarrenTransport) import Warren
import WarrenTestSupport

@testable import WarrenLedger

/// The ledger's stores, each test on SQLite and on PostgreSQL alike, and what only PostgreSQL does (`LedgerStoreTests`
/// holds what needs no server).
@Suite("Ledger stores (SQLite, PostgreSQL)", .tags(.postgres), .needs(.postgres))
struct LedgerStorePostgresTests {
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
        try await withRunning([first, second]) {
            async let one: Void = first.migrate()
            async let two: Void = second.migrate()
            _ = try await (one, two)
            #expect(try await first.schemaVersion() == PostgresLedgerDatabase.migrations.last?.version)
        }
    }

    @Test(arguments: StoreKind.allCases)
    func aJobDueLaterIsPendingWithItsDueTimeAndARunKeepsItsScheduleAndTick(_ kind: StoreKind) async throws {
        try await withStore(kind) { store in
            try await store.migrate()
            var published = event(.published, "due", at: 1_000)
            published.dueAtMs = 3_601_000
            try await store.record([published])
            var job = try #require(try await store.job(messageID: "due"))
            #expect(job.state == .pending)
            #expect(job.dueAtMs == 3_601_000)
            try await store.record([event(.started, "due", attempt: 1, at: 3_601_200)])
            job = try #require(try await store.job(messageID: "due"))
            #expect(job.state == .running && job.dueAtMs == 3_601_000, "a later event without it keeps the due time")

            // A run's start says its schedule and tick; its settlement (which may come first) says the same.
            var ack = event(.ack, "run", attempt: 1, at: 5_050)
            (ack.schedule, ack.scheduledForMs) = ("cleanup", 5_000)
            var started = event(.started, "run", attempt: 1, at: 5_010)
            (started.schedule, started.scheduledForMs) = ("cleanup", 5_000)
            try await store.record([ack])
            try await store.record([started, event(.published, "run", at: 5_001)])
            job = try #require(try await store.job(messageID: "run"))
            #expect(job.state == .succeeded)
            #expect(job.schedule == "cleanup" && job.scheduledForMs == 5_000 && job.dueAtMs == nil)
            let json = String(decoding: try JSONEncoder().encode(job.summary), as: UTF8.self)
            #expect(json.contains("\"schedule\":\"cleanup\"") && json.contains("\"scheduled_for_ms\":5000"))
            #expect(json.contains("\"due_at_ms\":null"), "absent as null: one shape for every parser")

            // Pruning: a job due later than the cutoff for unfinished jobs is kept until it is due; one that is not due
            // later goes.
            var later = event(.published, "due-later", at: 10_000)
            later.dueAtMs = 10_000_000
            try await store.record([later, event(.published, "forgotten", at: 10_000)])
            _ = try await store.prune(
                RetentionPolicy(unfinished: .seconds(60), maxJobs: nil), nowMs: 10_000 + 120_000)
            #expect(try await store.job(messageID: "due-later")?.state == .pending, "kept: not due yet")
            #expect(try await store.job(messageID: "forgotten") == nil, "an unfinished job past the cutoff goes")
            _ = try await store.prune(
                RetentionPolicy(unfinished: .seconds(60), maxJobs: nil), nowMs: 10_000_000 + 120_000)
            #expect(try await store.job(messageID: "due-later") == nil, "past its due time and the cutoff: it goes")
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
    /// is bounded before it reaches the database, so the test makes the database itself refuse), running while `body`
    /// runs.
    func withRefusingStore(_ body: (PostgresLedgerStore) async throws -> Void) async throws {
        let postgres = try await LocalPostgres.shared()
        let url = try await postgres.newDatabaseURL()
        let store = try PostgresLedgerStore(url: url, logger: TestBroker.quietLogger())
        try await store.withRunning {
            try await store.migrate()
            try await postgres.execute(
                """
                CREATE FUNCTION refuse_bad() RETURNS trigger AS $$ BEGIN
                    IF NEW.message_id = 'bad' THEN RAISE EXCEPTION 'refused by the test'; END IF; RETURN NEW;
                END $$ LANGUAGE plpgsql;
                CREATE TRIGGER refuse_bad BEFORE INSERT ON events FOR EACH ROW EXECUTE FUNCTION refuse_bad();
                """, in: url)
            try await body(store)
        }
    }

    @Test func aBatchThatFailsLeavesNothingBehind() async throws {
        try await withRefusingStore { store throws in
            let bad = event(.ack, "bad", attempt: 1, at: 2)
            await #expect(throws: (any Error).self) {
                try await store.record([event(.started, "good", attempt: 1, at: 1), bad])
            }
            #expect(try await store.eventCount() == 0, "one transaction: the good event went too")
            #expect(try await store.job(messageID: "good") == nil)
        }
    }

    @Test func aBadBatchInAGroupCommitFailsAloneAndTheOthersAreKept() async throws {
        try await withRefusingStore { store throws in
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
