import Foundation
import Logging
import Synchronization
import Warren

/// An ``IdempotencyStore`` on the ledger's SQL store, shared by every worker that uses the same store: a message id
/// handled by one worker is a duplicate for all of them, and stays one after a restart, for ``retention``.
///
/// On PostgreSQL every process of every host that opens the same database shares it; on SQLite, the workers of the one
/// process that writes the file (give them the same ``SQLLedgerStore``). The store must be migrated
/// (``SQLLedgerStore/migrate()``) first.
///
/// What it guarantees is what ``IdempotencyStore`` says: an id is recorded after its handler succeeded and before the
/// ack, so a copy that arrives after that record is acked without running the handler; two copies handled at the
/// same moment by two workers (neither recorded yet) both run. A run of a recurring job has one message id per tick
/// (`<schedule>@<tick>`), so with this store a tick published twice runs once, wherever its copies land.
///
/// A message id or scope with a NUL character (which PostgreSQL's text cannot hold) is never remembered.
///
/// Each check is one indexed read and each record one insert. Ids older than ``retention`` no longer count, and every
/// thousandth record deletes up to a thousand of them, so the table holds about one retention's worth of ids.
public final class LedgerIdempotencyStore: IdempotencyStore {
    public let store: SQLLedgerStore
    /// How long a handled id is remembered.
    public let retention: Duration
    private let now: @Sendable () -> Int64
    private let logger: Logger
    private let recordsSincePrune = Atomic<Int>(0)

    /// - Parameters:
    ///   - store: a migrated ledger store.
    ///   - retention: how long a handled id is remembered (default seven days; from one second to a hundred years);
    ///     longer than any redelivery or replay you want caught.
    public convenience init(
        store: SQLLedgerStore, retention: Duration = .seconds(7 * 86_400),
        logger: Logger = Logger(label: "warren.ledger.idempotency")
    ) {
        self.init(
            store: store, retention: retention, logger: logger, now: { Int64(Date().timeIntervalSince1970 * 1000) })
    }

    init(
        store: SQLLedgerStore, retention: Duration, logger: Logger = Logger(label: "warren.ledger.idempotency"),
        now: @escaping @Sendable () -> Int64
    ) {
        self.logger = logger
        self.store = store
        self.retention = min(max(retention, .seconds(1)), .seconds(100 * 365 * 86_400))
        self.now = now
    }

    private var cutoffMs: Int64 {
        let (seconds, attoseconds) = retention.components
        let retained = seconds.multipliedReportingOverflow(by: 1000)
        guard !retained.overflow else { return Int64.min }
        return now() - min(retained.partialValue + attoseconds / 1_000_000_000_000_000, now())
    }

    /// Whether a database's text can hold `text` (PostgreSQL's cannot hold NUL): an id that cannot be stored is never
    /// remembered, rather than stored as something another id could be.
    private static func storable(_ text: String) -> Bool { !text.utf8.contains(0) }

    public func contains(_ messageID: String, scope: String) async throws -> Bool {
        guard Self.storable(messageID), Self.storable(scope) else { return false }
        let p = store.database.dialect.placeholder
        return try await !store.database.read(
            """
            SELECT 1 AS known FROM idempotency_keys
            WHERE scope = \(p(1)) AND message_id = \(p(2)) AND recorded_at_ms >= \(p(3))
            """, [.text(scope), .text(messageID), .integer(cutoffMs)]
        ).isEmpty
    }

    public func record(_ messageID: String, scope: String) async throws {
        guard Self.storable(messageID), Self.storable(scope) else { return }
        let p = store.database.dialect.placeholder
        try await store.database.write(
            """
            INSERT INTO idempotency_keys (scope, message_id, recorded_at_ms) VALUES (\(p(1)), \(p(2)), \(p(3)))
            ON CONFLICT (scope, message_id) DO UPDATE SET recorded_at_ms = excluded.recorded_at_ms
            """, [.text(scope), .text(messageID), .integer(now())])
        if recordsSincePrune.add(1, ordering: .relaxed).newValue % 1_000 == 0 {
            // The handler succeeded and its id is recorded: a failed clean-up must not report it failed (the next
            // thousandth record tries again).
            do {
                try await pruneExpired()
            } catch {
                logger.warning(
                    "deleting expired idempotency ids failed; trying again later", metadata: ["error": "\(error)"])
            }
        }
    }

    /// Deletes up to `limit` ids older than ``retention``; returns how many.
    @discardableResult
    public func pruneExpired(limit: Int = 1_000) async throws -> Int {
        let p = store.database.dialect.placeholder
        let rows = try await store.database.write(
            """
            DELETE FROM idempotency_keys WHERE (scope, message_id) IN (
                SELECT scope, message_id FROM idempotency_keys WHERE recorded_at_ms < \(p(1)) LIMIT \(max(1, limit)))
            RETURNING 1 AS gone
            """, [.integer(cutoffMs)])
        return rows.count
    }
}
