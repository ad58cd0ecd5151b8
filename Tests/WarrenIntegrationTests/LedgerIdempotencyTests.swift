import Foundation
import Synchronization
import Testing
@_spi(WarrenTransport) import Warren
import WarrenTestSupport
import WarrenTesting

@testable import WarrenLedger

/// The idempotency store on the ledger's stores: what one worker handled is a duplicate for every other worker on
/// the same store (on PostgreSQL, another process's store object; on SQLite, the one process's store).
@Suite("A shared idempotency store on the ledger (SQLite, PostgreSQL)", .tags(.postgres), .needs(.postgres))
struct LedgerIdempotencyTests {
    /// Two store objects on one database where the database has several writers (PostgreSQL), one otherwise.
    func withTwoStores(_ kind: StoreKind, _ body: (SQLLedgerStore, SQLLedgerStore) async throws -> Void) async throws {
        switch kind {
        case .sqlite:
            try await withStore(.sqlite) { store in
                try await store.migrate()
                try await body(store, store)
            }
        case .postgres:
            let url = try await LocalPostgres.shared().newDatabaseURL()
            let first = try PostgresLedgerStore(url: url, logger: TestBroker.quietLogger())
            let second = try PostgresLedgerStore(url: url, logger: TestBroker.quietLogger())
            try await withRunning([first, second]) {
                try await first.migrate()
                try await second.migrate()
                try await body(first, second)
            }
        }
    }

    @Test(arguments: StoreKind.allCases)
    func anIDRecordedByOneWorkerIsKnownToAnotherUntilItsRetentionEnds(_ kind: StoreKind) async throws {
        try await withTwoStores(kind) { one, two in
            let clock = Atomic<Int64>(1_000_000)
            let now: @Sendable () -> Int64 = { clock.load(ordering: .relaxed) }
            let first = LedgerIdempotencyStore(store: one, retention: .seconds(60), now: now)
            let second = LedgerIdempotencyStore(store: two, retention: .seconds(60), now: now)
            #expect(try await !second.contains("cleanup@2026-12-07T10:00:00Z", scope: "orders-cleanup/cleanup"))
            try await first.record("cleanup@2026-12-07T10:00:00Z", scope: "orders-cleanup/cleanup")
            try await first.record("cleanup@2026-12-07T10:00:00Z", scope: "orders-cleanup/cleanup")
            #expect(try await second.contains("cleanup@2026-12-07T10:00:00Z", scope: "orders-cleanup/cleanup"))
            #expect(try await !second.contains("cleanup@2026-12-07T10:00:00Z", scope: "other/cleanup"))
            #expect(try await !second.contains("cleanup@2026-12-07T10:00:01Z", scope: "orders-cleanup/cleanup"))

            // A NUL cannot be stored in PostgreSQL's text: such an id is never remembered, never an error.
            try await first.record("bad\0id", scope: "q")
            #expect(try await !second.contains("bad\0id", scope: "q"))
            #expect(try await !second.contains("bad\u{FFFD}id", scope: "q"))

            clock.store(1_000_000 + 60_000, ordering: .relaxed)
            #expect(try await second.contains("cleanup@2026-12-07T10:00:00Z", scope: "orders-cleanup/cleanup"))
            clock.store(1_000_000 + 60_001, ordering: .relaxed)
            #expect(
                try await !second.contains("cleanup@2026-12-07T10:00:00Z", scope: "orders-cleanup/cleanup"),
                "older than its retention: forgotten")
            try await first.record("fresh", scope: "q")
            #expect(try await second.pruneExpired() == 1, "the expired id is deleted, the fresh one kept")
            #expect(try await second.contains("fresh", scope: "q"))
        }
    }

    @Test(arguments: StoreKind.allCases)
    func aDuplicateIsDroppedOnAnotherWorkerNotOnlyWhereItWasFirstHandled(_ kind: StoreKind) async throws {
        try await withTwoStores(kind) { one, two in
            let recorder = Recorder()
            func registration(_ store: SQLLedgerStore) -> HandlerRegistration {
                HandlerRegistration(
                    WelcomeEmail.self, queue: "emails",
                    options: HandlerOptions(idempotency: LedgerIdempotencyStore(store: store))
                ) { email, context in recorder.record(email, context) }
            }
            let first = try await WarrenTestHarness(registrations: [registration(one)])
            let second = try await WarrenTestHarness(registrations: [registration(two)])
            let email = WelcomeEmail(userId: "1", email: "once@example.com")
            let handled = try await first.send(email, to: "emails", messageID: "cleanup@2026-12-07T10:00:00Z")
            let again = try await second.send(email, to: "emails", messageID: "cleanup@2026-12-07T10:00:00Z")
            let other = try await second.send(email, to: "emails", messageID: "cleanup@2026-12-07T10:00:10Z")
            #expect(handled.outcome == .acked && !handled.duplicate)
            #expect(again.outcome == .acked && again.duplicate, "the other worker knew it")
            #expect(other.outcome == .acked && !other.duplicate)
            #expect(recorder.calls(for: "once@example.com").count == 2)
            await first.stop()
            await second.stop()
        }
    }
}
